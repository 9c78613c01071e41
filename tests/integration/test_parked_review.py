"""Parked events under review: the per-limit summary, --older-than, `parked expire` and
`stats`' parkedOldestAgeMs, on every store.

The pure figures are checked with a given ``now_ms``; through the command line, which reads the
wall clock, an age is checked between the clock read before and after the command, and "old" and
"young" events are years apart (created in 2023, or when the test starts), never a race.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.streams import BASE_TIME, created, encode, process, progress, records, reset
from user_limits.bootstrap import open_store
from user_limits.cli import dead_letter_commands, parked_commands, projection_commands
from user_limits.operations.parked_review import (
    EXPIRED_REASON,
    DurationError,
    LimitSummary,
    expire_batches,
    expire_outcome,
    older_than,
    oldest_age_ms,
    parse_duration,
    summarize,
)
from user_limits.stores.base import LimitStore
from user_limits.stream.records import Outcome, ParkedEvent, Snapshot

DAY = 86_400_000


def clock_ms() -> int:
    return time.time_ns() // 1_000_000


def young(envelope: dict[str, Any], created_at: int) -> dict[str, Any]:
    return {**envelope, "createdAt": created_at}


def event(key: str, position: int, created_at: int | None) -> ParkedEvent:
    data = b"not an envelope" if created_at is None else encode({"createdAt": created_at, "payload": {"userId": "u"}})
    return ParkedEvent(key, position, data)


# -- durations


@pytest.mark.parametrize(
    ("text", "ms"), [("30d", 30 * DAY), ("12h", 12 * 3_600_000), ("90m", 90 * 60_000), ("45s", 45_000), ("0s", 0)]
)
def test_a_duration_is_a_number_and_a_unit(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize(
    "text", ["", "30", "d", "-1d", "1.5h", "30D", "30 d", " 30d", "1w", "1d12h", "\uff13d", "9" * 13 + "d", "30d\n"]
)
def test_a_bad_duration_is_refused(text: str) -> None:
    with pytest.raises(DurationError, match="bad duration"):
        parse_duration(text)


# -- the pure figures


def test_summary_per_limit() -> None:
    now = BASE_TIME + 100 * DAY
    events = [
        event("L1", 4, BASE_TIME + 2 * DAY),
        event("L1", 9, BASE_TIME + 5 * DAY),
        event("L1", 2, BASE_TIME + 3 * DAY),  # the oldest position is not the earliest createdAt
        event("L0", 7, BASE_TIME + 50 * DAY),
    ]
    assert summarize(events, now) == [
        LimitSummary("L0", 1, 7, 7, BASE_TIME + 50 * DAY, 50 * DAY, 0),
        LimitSummary("L1", 3, 2, 9, BASE_TIME + 2 * DAY, 98 * DAY, 0),
    ]
    assert oldest_age_ms(events, now) == 98 * DAY
    assert oldest_age_ms([], now) is None


def test_an_undecodable_parked_record_is_listed_without_an_age() -> None:
    now = BASE_TIME + DAY
    events = [event("L1", 3, None), event("L2", 1, None), event("L2", 2, BASE_TIME)]
    summaries = summarize(events, now)
    assert summaries == [LimitSummary("L1", 1, 3, 3, None, None, 1), LimitSummary("L2", 2, 1, 2, BASE_TIME, DAY, 1)]
    assert summaries[0].as_json() == {
        "userLimitId": "L1",
        "count": 1,
        "oldestPosition": 3,
        "newestPosition": 3,
        "oldestCreatedAt": None,
        "oldestAgeMs": None,
        "undated": 1,
    }
    assert older_than(events, now) == [events[2]]  # an undated event is never old enough to expire
    assert oldest_age_ms(events[:2], now) is None


def test_expire_batches_never_split_a_limit() -> None:
    events = [event(key, n, 0) for key, count in (("a", 3), ("b", 1), ("c", 2), ("d", 1)) for n in range(count)]
    assert list(expire_batches(events, 2)) == [{"a": "u"}, {"b": "u", "c": "u"}, {"d": "u"}]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(-5, 5)), unique_by=lambda x: x, max_size=12))
def test_expire_outcome_moves_exactly_the_old_events(parked: list[tuple[str, int]]) -> None:
    events = [event(key, position + 10, BASE_TIME + position * DAY) for key, position in parked]
    snapshot: Snapshot[Any] = Snapshot()
    for parked_event in events:
        snapshot.parked.setdefault(parked_event.key, []).append(parked_event)
    outcome = expire_outcome(snapshot, BASE_TIME)
    old = {parked_event for parked_event in events if created_at_of(parked_event) < BASE_TIME}
    assert {removed for _, removed in outcome.parked_removed} == old
    assert sorted(letter.data for _, letter in outcome.dead_letters) == sorted(e.data for e in old)
    assert all(letter.reason == EXPIRED_REASON and letter.sequence_number is None for _, letter in outcome.dead_letters)
    # Every dead letter comes before every removal: a store writing in index order keeps a copy.
    assert all(i < j for i, _ in outcome.dead_letters for j, _ in outcome.parked_removed)
    assert set(outcome.touched) == {e.key for e in old} and not outcome.states


def created_at_of(parked_event: ParkedEvent) -> int:
    value: int = json.loads(parked_event.data)["createdAt"]
    return value


# -- on every store, through the store protocol


def park(store: LimitStore, now: int) -> list[dict[str, Any]]:
    """Three old events (two limits) and one young one parked; returns them in that order."""
    old = [progress("L1", 5, "1", "0"), reset("L1", 7, BASE_TIME), progress("L2", 3, "2", "0", user_id="u2")]
    fresh = young(progress("L3", 4, "3", "0"), now)
    process(store, records([*old, fresh]))
    return [*old, fresh]


def test_the_expire_outcome_commits_on_every_store(store: LimitStore) -> None:
    now = clock_ms()
    old1, old2, old3, fresh = park(store, now)
    keys = {"L1": "u1", "L2": "u2", "L3": "u1"}
    outcome = store.apply_batch(keys, lambda snapshot: expire_outcome(snapshot, now - 30 * DAY))
    assert len(outcome.parked_removed) == 3
    assert [parked.data for parked in store.parked_events()] == [encode(fresh)]
    letters = store.dead_letters()
    assert sorted(letter.data for letter in letters) == sorted(encode(e) for e in (old1, old2, old3))
    assert {letter.reason for letter in letters} == {EXPIRED_REASON}
    assert all(letter.sequence_number is None and letter.shard_id is None for letter in letters)
    counts = store.stats()
    assert (counts.waiting, counts.dead_letters) == (1, 3)
    # A limit created after the expiry never sees the events that were moved.
    process(store, records([created("L1", 1)]))
    limit = store.user_limit("u1", "L1")
    assert limit is not None and limit.progress == 0 and limit.last_sequence_number == 1
    assert store.stats().applied == 1
    # Expiring again moves nothing: the young event stays.
    again = store.apply_batch(keys, lambda snapshot: expire_outcome(snapshot, now - 30 * DAY))
    assert again.parked_removed == [] and len(store.dead_letters()) == 3


def test_an_undecodable_parked_record_is_never_expired(store: LimitStore) -> None:
    bad = ParkedEvent("Lx", 3, b"\xff not json")
    store.apply_batch({"Lx": ""}, lambda _: Outcome(touched={"Lx": (None, 0)}, parked_added=[(0, bad)], size=1))
    store.apply_batch({"Lx": ""}, lambda snapshot: expire_outcome(snapshot, clock_ms()))
    assert store.parked_events() == [bad] and store.dead_letters() == []


# -- the command line, on every store


@pytest.fixture
def shared_memory(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """memory:// lives as long as its store object: the commands run in process share one."""
    if store_url != "memory://":
        return
    shared = open_store(store_url)  # its close() keeps what it holds
    for module in (parked_commands, projection_commands, dead_letter_commands):
        monkeypatch.setattr(module, "open_store", lambda url: shared if url == "memory://" else open_store(url))


@pytest.fixture
def parked_store(store_url: str, shared_memory: None) -> tuple[str, list[dict[str, Any]], int]:
    """A store (URL) holding the events of :func:`park`, and when the young one was created."""
    now = clock_ms()
    store = parked_commands.open_store(store_url)
    try:
        events = park(store, now)
    finally:
        store.close()
    return store_url, events, now


def test_parked_json_stays_the_envelopes_whole(run: Any, parked_store: Any) -> None:
    url, events, _ = parked_store
    result = run("parked", "--json", "--store", url)
    assert result.code == 0, result.err
    assert json.loads(result.out) == events  # sorted by limit, then position, as before


def test_parked_summary_json(run: Any, parked_store: Any) -> None:
    url, events, created_now = parked_store
    before = clock_ms()
    result = run("parked", "--summary", "--json", "--store", url)
    after = clock_ms()
    assert result.code == 0, result.err
    summaries = json.loads(result.out)
    ages = [summary.pop("oldestAgeMs") for summary in summaries]
    assert summaries == [
        {
            "userLimitId": "L1",
            "count": 2,
            "oldestPosition": 5,
            "newestPosition": 7,
            "oldestCreatedAt": events[0]["createdAt"],
            "undated": 0,
        },
        {
            "userLimitId": "L2",
            "count": 1,
            "oldestPosition": 3,
            "newestPosition": 3,
            "oldestCreatedAt": events[2]["createdAt"],
            "undated": 0,
        },
        {
            "userLimitId": "L3",
            "count": 1,
            "oldestPosition": 4,
            "newestPosition": 4,
            "oldestCreatedAt": created_now,
            "undated": 0,
        },
    ]
    for age, created_at in zip(ages, (events[0]["createdAt"], events[2]["createdAt"], created_now), strict=True):
        assert before - created_at <= age <= after - created_at


def test_parked_table_is_the_summary(run: Any, parked_store: Any) -> None:
    url, _, _ = parked_store
    result = run("parked", "--store", url)
    assert result.code == 0, result.err
    rows = {line.split("│")[1].strip(): line for line in result.out.splitlines() if line.count("│") > 2}
    assert set(rows) == {"L1", "L2", "L3"}
    assert "oldest position" in result.out and "age" in result.out
    assert [cell.strip() for cell in rows["L1"].split("│")[2:5]] == ["2", "5", "7"]
    assert "2023-11-14" in rows["L1"]  # its oldest createdAt
    assert result.out.rstrip().endswith("4 parked, 3 limits")


def test_older_than_filters_the_list(run: Any, parked_store: Any) -> None:
    url, events, _ = parked_store
    summaries = json.loads(run("parked", "--summary", "--json", "--older-than", "30d", "--store", url).out)
    assert [(s["userLimitId"], s["count"]) for s in summaries] == [("L1", 2), ("L2", 1)]
    assert json.loads(run("parked", "--json", "--older-than", "30d", "--store", url).out) == events[:3]
    table = run("parked", "--older-than", "30d", "--store", url).out
    assert "L3" not in table and table.rstrip().endswith("3 parked older than 30d, 2 limits")
    # 99999 days ago is before 1970: nothing is that old.
    assert json.loads(run("parked", "--json", "--older-than", "99999d", "--store", url).out) == []


def test_expire_dry_run_changes_nothing(run: Any, parked_store: Any) -> None:
    url, _, _ = parked_store
    before = (run("parked", "--json", "--store", url).out, run("dead-letters", "--json", "--store", url).out)
    result = run("parked", "expire", "--older-than", "30d", "--dry-run", "--store", url)
    assert result.code == 0, result.err
    assert "would move 3 parked events of 2 limits" in result.out and "dry run" in result.out
    assert (run("parked", "--json", "--store", url).out, run("dead-letters", "--json", "--store", url).out) == before


def test_expire_moves_the_old_events_to_dead_letters(run: Any, parked_store: Any) -> None:
    url, events, _ = parked_store
    result = run("parked", "expire", "--older-than", "30d", "--store", url)
    assert result.code == 0, result.err
    assert result.out.strip() == "moved 3 parked events of 2 limits to dead letters (parked too long); 1 parked stay"
    assert json.loads(run("parked", "--json", "--store", url).out) == events[3:]
    letters = json.loads(run("dead-letters", "--json", "--store", url).out)
    # The raw bytes, exactly as they were parked.
    assert sorted(base64.b64decode(letter["data"]) for letter in letters) == sorted(encode(e) for e in events[:3])
    assert {letter["reason"] for letter in letters} == {EXPIRED_REASON}
    assert all(letter["sequenceNumber"] is None for letter in letters)
    stats = json.loads(run("stats", "--json", "--store", url).out)
    assert (stats["parked"], stats["deadLettered"]) == (1, 3)


def test_parked_oldest_age_in_stats(run: Any, parked_store: Any, tmp_path: Any) -> None:
    url, events, _ = parked_store
    before = clock_ms()
    stats = json.loads(run("stats", "--json", "--store", url).out)
    after = clock_ms()
    oldest = min(e["createdAt"] for e in events)  # L2's, at position 3
    assert list(stats) == [
        "applied",
        "skipped",
        "ignored",
        "parked",
        "deadLettered",
        "drifted",
        "parkedOldestAgeMs",
        "leases",
    ]
    assert before - oldest <= stats["parkedOldestAgeMs"] <= after - oldest
    assert "oldest parked event: " in run("stats", "--store", url).out
    # Nothing parked any more: null.
    assert run("parked", "expire", "--older-than", "0s", "--store", url).code == 0
    assert json.loads(run("stats", "--json", "--store", url).out)["parkedOldestAgeMs"] is None


@pytest.mark.parametrize(
    "args",
    [
        ["parked", "expire", "--older-than", "30d", "--store", "{url}"],
        ["parked", "expire", "--store", "{url}", "--older-than", "30d"],
        ["parked", "--store", "{url}", "expire", "--older-than", "30d"],
        ["parked", "--store", "{url}", "--older-than", "30d", "expire"],
        ["parked", "--older-than", "30d", "expire", "--store", "{url}"],
        ["parked", "--store", "{url}", "expire", "--older-than", "30d", "--store", "{url}"],
    ],
)
def test_store_and_older_than_in_every_position(run: Any, parked_store: Any, args: list[str]) -> None:
    url, events, _ = parked_store
    result = run(*(arg.format(url=url) for arg in args))
    assert result.code == 0, result.err
    assert result.out.startswith("moved 3 parked events")
    assert json.loads(run("parked", "--json", "--store", url).out) == events[3:]


def test_store_from_the_environment(run: Any, parked_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    url, events, _ = parked_store
    monkeypatch.setenv("USER_LIMITS_STORE", url)
    assert json.loads(run("parked", "--json").out) == events
    assert run("parked").out.rstrip().endswith("4 parked, 3 limits")
    assert run("parked", "expire", "--older-than", "30d").out.startswith("moved 3 parked events")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["parked", "--older-than", "30"], "bad duration '30'"),
        (["parked", "--json", "--older-than", "1.5h"], "bad duration '1.5h'"),
        (["parked", "expire", "--older-than", "-1d"], "bad duration '-1d'"),
        (["parked", "expire"], "parked expire needs --older-than DURATION"),
        (["parked", "--older-than", "1d", "expire", "--older-than", "2d"], "--older-than given twice"),
        (["parked", "--json", "expire", "--older-than", "1d"], "--json and --summary list parked events"),
        (["parked", "expire", "--older-than"], "requires an argument"),
    ],
)
def test_bad_command_lines_are_one_line(run: Any, store_url: str, args: list[str], message: str) -> None:
    result = run(*args, "--store", store_url) if args[-1] != "--older-than" else run(*args)
    assert result.code == 2
    assert result.out == ""
    assert len(result.err.splitlines()) == 1 and message in result.err, result.err


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (45_000, "45s"),
        (90 * 60_000, "1h 30m"),
        (30 * DAY + 3_600_000 + 5_000, "30d 1h"),
        (-120_000, "-2m"),
    ],
)
def test_ages_are_shown_in_their_two_largest_units(ms: int | None, text: str) -> None:
    assert parked_commands.age_text(ms) == text


def test_an_undecodable_parked_record_is_listed_with_no_age(run: Any, store_url: str, shared_memory: None) -> None:
    store = parked_commands.open_store(store_url)
    bad = ParkedEvent("Lx", 3, b"{}")  # no createdAt
    try:
        store.apply_batch({"Lx": ""}, lambda _: Outcome(touched={"Lx": (None, 0)}, parked_added=[(0, bad)], size=1))
    finally:
        store.close()
    (summary,) = json.loads(run("parked", "--summary", "--json", "--store", store_url).out)
    assert (summary["userLimitId"], summary["count"], summary["oldestAgeMs"], summary["undated"]) == ("Lx", 1, None, 1)
    table = run("parked", "--store", store_url).out
    assert "- (1 undated)" in table and table.rstrip().endswith("1 parked, 1 limits")
    assert json.loads(run("stats", "--json", "--store", store_url).out)["parkedOldestAgeMs"] is None
    assert run("parked", "expire", "--older-than", "0s", "--store", store_url).out.startswith("moved 0 parked events")
    assert json.loads(run("parked", "--json", "--store", store_url).out) == [{}]
