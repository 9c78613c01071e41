"""Fixtures for a real dynalite server: filled in by its store's work."""
