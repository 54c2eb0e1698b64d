"""podman as the real client: containers on a podwire network get their
addresses from the backend, reach each other, and give their ports back.

podman 4.3 runs the CNI plugin `podwire` (the compiled shim, or the Python one)
from a private plugin dir, with a private network config dir and storage; the
agent is a private process on the embedded backend.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.agent import AgentProcess
from tests.fixtures.common import unique
from tests.fixtures.podman import RUN_FLAGS, Podman

pytestmark = [pytest.mark.podman, pytest.mark.root, pytest.mark.slow]

PODWIRE = Path(sys.executable).parent / "podwire"


def random_subnets() -> tuple[str, str]:
    """A /24 in 198.18.0.0/15 and a /64 in 2001:db8::/32, random so that
    parallel tests rarely share one (they are on separate bridges anyway)."""
    third = random.randrange(512)
    v4 = f"198.{18 + third // 256}.{third % 256}.0/24"
    v6 = f"2001:db8:{random.randrange(1, 0xFFFF):x}::/64"
    return v4, v6


def podwire_cli(agent: AgentProcess, *args: str) -> Any:
    """The `podwire` CLI through the agent's socket, as a user runs it."""
    proc = subprocess.run(
        [str(PODWIRE), "--agent-socket", str(agent.socket), "--json", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"podwire {' '.join(args)}: {proc.stderr}{proc.stdout}"
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def create_network(agent: AgentProcess) -> tuple[str, dict[str, Any]]:
    name = unique("pwe2e")
    v4, v6 = random_subnets()
    podwire_cli(agent, "network", "create", name, "--subnet", v4, "--subnet", v6)
    network = podwire_cli(agent, "network", "show", name)
    return name, network


def ports_of(agent: AgentProcess, network: str) -> list[dict[str, Any]]:
    return list(podwire_cli(agent, "port", "list", "--network", network))


def interface(podman: Podman, container: str) -> tuple[str, set[str]]:
    """MAC and global addresses (without prefix) of eth0 inside a container."""
    link = podman.exec(container, "ip", "-o", "link", "show", "eth0").stdout
    mac = link.split("link/ether", 1)[1].split()[0]
    addrs = podman.exec(container, "ip", "-o", "addr", "show", "dev", "eth0").stdout
    found = set()
    for line in addrs.splitlines():
        fields = line.split()
        family = fields[2]
        address = fields[3].split("/")[0]
        if family in ("inet", "inet6") and not address.startswith("fe80:"):
            found.add(address)
    return mac, found


def ping(podman: Podman, container: str, address: str) -> subprocess.CompletedProcess[str]:
    command = "ping6" if ":" in address else "ping"
    return podman.exec(container, command, "-c", "2", "-W", "3", address, check=False)


def test_two_containers_get_backend_addresses_and_ping(
    agent_proc: AgentProcess, podman: Podman, busybox_rootfs: Path
) -> None:
    network, _ = create_network(agent_proc)
    cni_name = unique("pwcni")
    podman.add_network(cni_name, network, agent_proc.socket)

    first = podman.start(unique("pwc1-"), cni_name, busybox_rootfs)
    second = podman.start(unique("pwc2-"), cni_name, busybox_rootfs)
    names = podman.containers[:]

    ports = {p["device_id"]: p for p in ports_of(agent_proc, network)}
    assert set(ports) == {first, second}, ports
    seen: dict[str, set[str]] = {}
    for name, container_id in zip(names, (first, second), strict=True):
        port = ports[container_id]
        mac, addresses = interface(podman, name)
        assert mac == port["mac_address"]
        expected = {ip["ip_address"] for ip in port["fixed_ips"]}
        assert len(expected) == 2, port  # one v4 and one v6
        assert addresses == expected
        seen[name] = expected

    # Each pings the other, on v4 and on v6.
    for source, target in ((names[0], names[1]), (names[1], names[0])):
        for address in sorted(seen[target]):
            answer = ping(podman, source, address)
            assert answer.returncode == 0, f"{source} -> {address}: {answer.stdout}"

    attachments = [a for a in agent_proc.attachments() if a["container_id"] in (first, second)]
    assert len(attachments) == 2

    for name in names:
        podman.remove(name)
    assert ports_of(agent_proc, network) == []
    remaining = [a for a in agent_proc.attachments() if a["container_id"] in (first, second)]
    assert remaining == []


def test_python_shim_as_the_plugin(
    agent_proc: AgentProcess, podman: Podman, busybox_rootfs: Path, py_shim: Path
) -> None:
    """The fallback shim is a drop-in: podman gets the same kind of answer."""
    plugin = podman.plugin_dir / "podwire"
    plugin.unlink()
    plugin.symlink_to(py_shim)
    network, _ = create_network(agent_proc)
    cni_name = unique("pwcni")
    podman.add_network(cni_name, network, agent_proc.socket)

    name = unique("pwcp-")
    container_id = podman.start(name, cni_name, busybox_rootfs)
    (port,) = ports_of(agent_proc, network)
    assert port["device_id"] == container_id
    mac, addresses = interface(podman, name)
    assert mac == port["mac_address"]
    assert addresses == {ip["ip_address"] for ip in port["fixed_ips"]}

    podman.remove(name)
    assert ports_of(agent_proc, network) == []


def test_unknown_network_fails_the_container_and_leaks_nothing(
    agent_proc: AgentProcess, podman: Podman, busybox_rootfs: Path
) -> None:
    network, _ = create_network(agent_proc)
    cni_name = unique("pwcni")
    podman.add_network(cni_name, "no-such-network-" + unique(""), agent_proc.socket)
    name = unique("pwcx-")
    podman.containers.append(name)
    proc = podman(
        "run",
        "-d",
        "--name",
        name,
        *RUN_FLAGS,
        "--network",
        cni_name,
        "--rootfs",
        str(busybox_rootfs),
        "/bin/sleep",
        "60",
        check=False,
    )
    assert proc.returncode != 0
    assert "no-such-network" in proc.stderr
    assert ports_of(agent_proc, network) == []
    assert agent_proc.attachments() == []
