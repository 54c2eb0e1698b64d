"""Benchmarks (run as scripts); bench.harness is shared with the tests."""
