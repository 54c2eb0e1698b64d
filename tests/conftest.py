"""Shared test set-up. Fixtures live in tests/fixtures/, one module per area,
so that each area's owner edits only its own file."""

pytest_plugins = [
    "tests.fixtures.neutron",
    "tests.fixtures.common",
    "tests.fixtures.netns",
    "tests.fixtures.backends",
    "tests.fixtures.postgres",
    "tests.fixtures.server",
    "tests.fixtures.agent",
    "tests.fixtures.ovn",
    "tests.fixtures.docker",
    "tests.fixtures.podman",
    "tests.fixtures.ovs_dpdk",
    "tests.fixtures.uml",
    "tests.fixtures.qemu",
]
