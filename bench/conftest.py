"""pytest-benchmark suite: `pytest bench/ --benchmark-only` (the cases of `fastopt bench`)."""
