"""Benchmarks (bench/README.md); the issue #7 harness is bench/run.py."""
