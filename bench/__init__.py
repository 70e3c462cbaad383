"""Benchmarks of the planner (DESIGN.md §8): `python -m bench.run [--quick]` writes RESULTS.md."""
