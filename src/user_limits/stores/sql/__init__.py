"""The SQL stores: one mapping and one core (:mod:`.core`), two dialects (:mod:`.sqlite`, :mod:`.postgres`)."""

__all__: list[str] = []
