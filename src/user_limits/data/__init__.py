"""Data shipped with the package: the bundled sample stream (``sample_events.json``) of ``user-limits demo``."""

__all__: list[str] = []
