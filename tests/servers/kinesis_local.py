"""Fixtures for a real kinesis_local server: filled in by its store's work."""
