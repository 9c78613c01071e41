"""Generic stream machinery: records, dead letters, parking, batch outcomes and checkpoints.

Nothing here knows about user limits: an event family plugs in through :class:`EventFamily`.
"""
