"""Snapshots: every limit of a store as JSON Lines, and their import into another store.

A snapshot line is a limit with the position of the last event it reflects. It is imported as an
event of its own that creates its limit: the stream engine then applies it with the sequence guard
(rule 3) and drains the limit's parked events above it (rule 7), through the one batch path.
"""
