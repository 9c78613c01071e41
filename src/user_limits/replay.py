"""Replaying records through the batch path, in batches as they are read, with an optional
callback after each batch.

Records may come from a stream (JSON Lines as it is read): a batch is at most ``batch_size``
records and about :data:`MAX_BATCH_BYTES`, so memory stays bounded whatever the input's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from user_limits import bootstrap
from user_limits.errors import UserError
from user_limits.inputs import InputError
from user_limits.stores.base import LimitStore
from user_limits.stream.records import Counts, StreamRecord

MAX_BATCH_BYTES = 64 * 1024 * 1024


class ReplayFailed(UserError):
    """The store failed part-way through a replay; the batches before it stay committed."""


def batches(
    records: Iterable[StreamRecord], size: int, max_bytes: int = MAX_BATCH_BYTES
) -> Iterator[list[StreamRecord]]:
    """``records`` cut into lists of at most ``size`` records and about ``max_bytes`` (a record
    larger than that is a batch of its own)."""
    batch: list[StreamRecord] = []
    held = 0
    for record in records:
        if batch and held + len(record.data) > max_bytes:
            yield batch
            batch, held = [], 0
        batch.append(record)
        held += len(record.data)
        if len(batch) == size:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


def replay(
    store: LimitStore,
    records: Iterable[StreamRecord],
    batch_size: int = 1000,
    name: str = "input",
    on_batch: Callable[[int], None] | None = None,
) -> Counts:
    """Apply ``records`` in batches as they come; on a store failure raise ReplayFailed, on a
    malformed input InputError, saying what is committed (earlier batches stay). ``on_batch`` is
    called with the number of records of each batch committed."""
    processor = bootstrap.processor(store)
    total = Counts()
    committed = 0
    cut = batches(records, batch_size)
    while True:
        try:
            batch = next(cut, None)
        except InputError as error:
            if not committed:
                raise InputError(f"{error} (nothing of the file is applied)") from None
            raise InputError(
                f"{error} (the first {committed} records are committed, none after them; "
                "replaying it again once it is fixed is safe: what is committed is skipped)"
            ) from None
        if batch is None:
            return total
        result = processor.process(batch)
        if result.error is not None:
            first = committed + (result.first_uncommitted or 0)
            raise ReplayFailed(
                f"{name}: the store failed at record {first + 1}: {type(result.error).__name__}: {result.error} "
                f"(the {first} records before it are committed; replaying the file again is safe)"
            )
        committed += len(batch)
        total.add(result.counts)
        if on_batch is not None:
            on_batch(len(batch))
