"""Benchmarks behind ``make bench``: ``python -m bench.run [--quick]``. Speed is measured here, never in tests."""
