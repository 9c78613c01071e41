"""Fixtures for a real postgres server: filled in by its store's work."""
