"""Text as every store can hold it: dead-letter reasons of bounded size, and any str kept exactly.

A dead letter's coordinates come from whoever built the Lambda event or the record, and its
reason may quote the bad value: a NUL (which no PostgreSQL text holds), a lone surrogate (which
is not UTF-8, so no store can encode it) or 450 kB of text must not fail the batch on every retry.

- :func:`bounded_reason` keeps a reason's head and tail, and says how much was left out.
- :func:`storable` turns any str into one with neither NUL nor lone surrogates, which
  :func:`unstored` turns back into the very same str. Text without them is stored as it is (the
  usual case, readable in the database); other text is stored as ``ESCAPE`` followed by its JSON
  string literal (ASCII: ``\\u0000``, ``\\ud800``), and so is any text that begins with ``ESCAPE``,
  so that reading is never ambiguous.
"""

from __future__ import annotations

import json

ESCAPE = "\x1b"  # ASCII ESC: begins no id, reason or coordinate a producer or AWS writes
# A reason longer than REASON_LIMIT characters keeps its first and last ones around a note, which
# makes it shorter than the limit again: bounding a bounded reason changes nothing.
REASON_LIMIT = 1100
REASON_HEAD = 800
REASON_TAIL = 200


def bounded_reason(reason: str) -> str:
    """``reason`` when short; otherwise its start and end around a note of how much is left out."""
    if len(reason) <= REASON_LIMIT:
        return reason
    left_out = len(reason) - REASON_HEAD - REASON_TAIL
    return reason[:REASON_HEAD] + _note(left_out) + reason[-REASON_TAIL:]


def _note(left_out: int) -> str:
    return f" […{left_out} characters left out…] "


def is_plain(text: str) -> bool:
    """Text every store holds as it is: no NUL, valid UTF-8 (no lone surrogate), not escaped-looking."""
    if "\x00" in text or text.startswith(ESCAPE):
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> str:
    return text if is_plain(text) else ESCAPE + json.dumps(text)


def unstored(text: str) -> str:
    if not text.startswith(ESCAPE):
        return text
    try:
        value = json.loads(text[1:])
    except ValueError:  # not written by storable: kept as it was read
        return text
    return value if isinstance(value, str) else text


def storable_or_none(text: str | None) -> str | None:
    return None if text is None else storable(text)


def unstored_or_none(text: str | None) -> str | None:
    return None if text is None else unstored(text)
