"""Helpers the benchmarks and the test fixtures share: real processes (an
agent and its CNI shim, ovsdb-server, OVS-DPDK, dpdk-testpmd). No pytest
here: a benchmark imports ``bench.harness``, never the test package; the
fixtures in tests/fixtures/ import these and add their component checks
(skip, or fail under CI) and clean-up."""
