"""Helpers the benchmarks and the test fixtures share (no pytest here)."""
