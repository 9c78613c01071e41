"""migrate, as a property: whatever stream a store was fed, cut into whatever batches, with
checkpoints, the copy in another store (memory to SQLite, SQLite to memory, in any batch size)
holds the same limits, parked events, dead letters (in order), counters, checkpoints and asOf.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.streams import STREAM_ARN, cut_points, event_streams, process, record
from user_limits.bootstrap import open_store
from user_limits.operations.migrate import holds_anything, migrate
from user_limits.stores.base import LimitStore
from user_limits.stream.records import Checkpoint

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def held(store: LimitStore) -> dict[str, Any]:
    return {
        "limits": list(store.all_limits()),
        "parked": store.parked_events(),
        "dead letters": store.dead_letters(),
        "stats": store.stats(),
        "counters": store.counters(),
        "checkpoints": store.checkpoints(),
        "asOf": store.as_of(),
    }


@SETTINGS
@given(st.data(), st.booleans(), st.integers(1, 7))
def test_a_copy_holds_what_the_source_holds(data: st.DataObject, into_sqlite: bool, batch_size: int) -> None:
    stream = data.draw(event_streams())
    cuts = data.draw(cut_points(len(stream)))
    records = [record(value, n) for n, value in enumerate(stream)]
    with tempfile.TemporaryDirectory() as folder:
        sqlite = f"sqlite:///{Path(folder) / 'store.db'}"
        source, target = (open_store("memory://"), open_store(sqlite))
        if not into_sqlite:
            source, target = target, source
        bounds = [0, *sorted({cut for cut in cuts if 0 < cut < len(records)}), len(records)]
        for start, end in itertools.pairwise(bounds):
            batch = records[start:end]
            shard = f"shard-{start % 2}"
            process(source, batch, Checkpoint(STREAM_ARN, shard, str(batch[-1].sequence_number), 0))
        before = held(source)

        counts = migrate(source, target, batch_size)

        assert held(target) == before
        assert held(source) == before
        assert counts.limits == len(before["limits"]) and counts.dead_letters == len(before["dead letters"])
        assert holds_anything(target)
        source.close()
        target.close()
