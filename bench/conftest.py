"""pytest-benchmark suite: `pytest bench/ --benchmark-only` (see bench/RESULTS.md)."""
