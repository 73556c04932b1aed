"""Benchmarks against named peers; run with `make bench`, never part of the test suite."""
