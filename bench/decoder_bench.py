"""The decoder choice by measurement: msgspec (the product's two-stage decode) against pydantic v2.

The same valid envelopes from the synthetic stream, split into handled types (envelope and payload
decoded) and ignored types (only the envelope matters). Three decoders:

- msgspec: ``user_limits.family.UserLimitFamily.decode``, what the product runs (envelope with the
  payload kept raw, then the payload of a handled type into its struct, finite decimals checked);
- pydantic, two steps: ``Envelope.model_validate_json`` then the payload model's ``model_validate``
  (what the reference handler does, and the usual way);
- pydantic, one pass: a ``TypeAdapter`` over envelopes tagged by type (callable discriminator),
  ``validate_json``, pydantic's fastest form for this shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from pydantic import Discriminator, StrictStr, Tag, TypeAdapter

from bench.reference_handler import PAYLOAD_MODELS, Envelope, Int64, LimitCreated, LimitReset, ProgressChanged, _Camel

FULL = {"records": 30_000, "runs": 5}
QUICK = {"records": 3_000, "runs": 1}
HANDLED = frozenset(PAYLOAD_MODELS)


class _EnvelopeBase(_Camel):
    aggregate_id: StrictStr
    context: dict[str, Any]
    created_at: Int64
    event_id: StrictStr
    sequence_number: Int64
    source: StrictStr


class CreatedEnvelope(_EnvelopeBase):
    type: Literal["USER_LIMIT_CREATED"]
    payload: LimitCreated


class ProgressEnvelope(_EnvelopeBase):
    type: Literal["USER_LIMIT_PROGRESS_CHANGED"]
    payload: ProgressChanged


class ResetEnvelope(_EnvelopeBase):
    type: Literal["USER_LIMIT_RESET"]
    payload: LimitReset


class OtherEnvelope(_EnvelopeBase):
    type: StrictStr
    payload: dict[str, Any]


def _tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in HANDLED else "other"


TaggedEnvelope = TypeAdapter[Any](
    Annotated[
        Annotated[CreatedEnvelope, Tag("USER_LIMIT_CREATED")]
        | Annotated[ProgressEnvelope, Tag("USER_LIMIT_PROGRESS_CHANGED")]
        | Annotated[ResetEnvelope, Tag("USER_LIMIT_RESET")]
        | Annotated[OtherEnvelope, Tag("other")],
        Discriminator(_tag),
    ]
)


def pydantic_two_step(data: bytes) -> object | None:
    envelope = Envelope.model_validate_json(data)
    model = PAYLOAD_MODELS.get(envelope.type)
    return None if model is None else model.model_validate(envelope.payload)


def pydantic_one_pass(data: bytes) -> object | None:
    envelope = TaggedEnvelope.validate_json(data)
    return None if isinstance(envelope, OtherEnvelope) else envelope.payload


def samples(records: int) -> tuple[list[bytes], list[bytes]]:
    """Valid envelopes of handled types and of ignored types, in stream order."""
    from user_limits.family import UserLimitFamily
    from user_limits.stream.engine import InvalidRecord
    from user_limits.testing.synthetic import generate

    family = UserLimitFamily()
    handled: list[bytes] = []
    ignored: list[bytes] = []
    for record in generate(records):
        try:
            event = family.decode(record.data)
        except InvalidRecord:
            continue
        (ignored if event is None else handled).append(record.data)
    return handled, ignored


def best_rate(decode: Callable[[bytes], object], items: Sequence[bytes], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        for data in items:
            decode(data)
        best = min(best, time.perf_counter() - started)
    return len(items) / best


def run(quick: bool = False) -> dict[str, object]:
    from user_limits.family import UserLimitFamily

    size = QUICK if quick else FULL
    handled, ignored = samples(size["records"])
    decoders: dict[str, Callable[[bytes], object]] = {
        "msgspec": UserLimitFamily().decode,
        "pydantic_two_step": pydantic_two_step,
        "pydantic_one_pass": pydantic_one_pass,
    }
    # Every decoder must accept the same records and say the same thing about which are handled.
    for name, decode in decoders.items():
        if any(decode(data) is None for data in handled) or any(decode(data) is not None for data in ignored):
            raise AssertionError(f"{name} disagrees with the product on which records are handled")
    rates = {
        kind: {name: best_rate(decode, items, size["runs"]) for name, decode in decoders.items()}
        for kind, items in (("handled", handled), ("ignored", ignored))
    }
    rows = []
    for kind, by_name in rates.items():
        fastest_pydantic = max(by_name["pydantic_two_step"], by_name["pydantic_one_pass"])
        ratio = by_name["msgspec"] / fastest_pydantic
        rows.append(
            {
                "metric": f"Decodes/s, {kind} types: msgspec vs pydantic (two-step / one-pass)",
                "figure": (
                    f"{by_name['msgspec']:,.0f} vs {by_name['pydantic_two_step']:,.0f} / "
                    f"{by_name['pydantic_one_pass']:,.0f} ({ratio:.1f}x)"
                ),
                "target": "msgspec faster",
                "met": ratio > 1,
            }
        )
    return {
        "handled_records": len(handled),
        "ignored_records": len(ignored),
        "runs": size["runs"],
        "decodes_per_second": {kind: {k: round(v) for k, v in by.items()} for kind, by in rates.items()},
        "rows": rows,
    }
