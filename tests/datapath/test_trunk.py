"""The trunk data path's host pieces on the real kernel (no VM): the tc BPF
programs pass the verifier for every table size, an access pair lands on
its bridge with its program, the tap's program is replaced and removed; a
port's security moves between two sets of pairs in one transaction. The
traffic through them is proven in a real VM: tests/nested/test_vm_host_side.py."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from podwire.datapath import trunk
from podwire.datapath.netlink import bpf, rtnl
from podwire.datapath.portsec import PortSecurityTable, port_elements
from podwire.datapath.vif import AddressPair, PortSecurity
from tests.fixtures.common import require_root


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


@pytest.fixture
def names() -> Iterator[dict[str, str]]:
    require_root()
    tag = uuid.uuid4().hex[:6]
    made = {"bridge": f"pwe-b{tag}", "tap": f"pwe-t{tag}", "peer": f"pwe-p{tag}"}
    made |= {"x": f"pwe-x{tag}", "y": f"pwe-y{tag}"}
    try:
        yield made
    finally:
        with rtnl() as host:
            for name in ("x", "tap", "bridge"):
                host.delete_link(made[name])


@pytest.mark.parametrize("size", [0, 1, 7])
def test_programs_pass_the_verifier(size: int) -> None:
    require_root()
    table = {vid: 1 for vid in range(1, size + 1)}
    for program in (bpf.pop_program(table), bpf.push_program(4094, 1)):
        os.close(bpf.load(program, "pwetest"))


def test_access_pair_and_tap_program(names: dict[str, str]) -> None:
    with rtnl() as host:
        host.add_bridge(names["bridge"], mtu=1500)
        # A veth end stands for the VM's tap.
        host.add_veth(names["tap"], names["peer"], mtu=1500, up=True)
        bridge = host.link(names["bridge"])
        tap = host.link(names["tap"])
    assert bridge is not None and tap is not None
    trunk.ensure_access(names["x"], names["y"], bridge.index, 1500, 5, tap.index)
    trunk.ensure_access(names["x"], names["y"], bridge.index, 1500, 5, tap.index)  # idempotent
    assert f"master {names['bridge']}" in _sh("ip", "link", "show", names["y"])
    assert trunk.PUSH_NAME in _sh("tc", "filter", "show", "dev", names["x"], "ingress")
    trunk.set_tap_vlans(names["tap"], {5: names["x"]})
    assert trunk.POP_NAME in _sh("tc", "filter", "show", "dev", names["tap"], "ingress")
    trunk.set_tap_vlans(names["tap"], {})
    assert trunk.POP_NAME not in _sh("tc", "filter", "show", "dev", names["tap"], "ingress")
    assert trunk.delete(names["x"]) and not trunk.delete(names["x"])
    assert names["y"] not in _sh("ip", "-o", "link", "show")


def test_change_port_moves_between_pair_sets() -> None:
    require_root()
    table = PortSecurityTable("pwe_" + uuid.uuid4().hex[:6])
    mac = "02:00:00:00:00:0e"
    one = PortSecurity(allowed=(AddressPair(ip="198.18.0.5", mac=mac),))
    two = PortSecurity(
        allowed=(AddressPair(ip="198.18.0.5", mac=mac), AddressPair(ip="198.18.0.6", mac=mac))
    )
    try:
        table.change_port("pwe-tap", None, two)
        assert table.has_port("pwe-tap", two)
        table.change_port("pwe-tap", two, one)
        src4 = _sh("nft", "list", "set", "bridge", table.table, "src4")
        assert "198.18.0.5" in src4 and "198.18.0.6" not in src4
        table.change_port("pwe-tap", one, None)
        assert not table.has_port("pwe-tap")
        assert "pwe-tap" not in _sh("nft", "list", "table", "bridge", table.table)
        assert port_elements("pwe-tap", one)["secured"] == ['"pwe-tap"']
    finally:
        table.remove_table()
