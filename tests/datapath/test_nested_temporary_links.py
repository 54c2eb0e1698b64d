"""The nested driver makes a container's macvlan/ipvlan/VLAN under a
temporary name (pwn- + 10 hex) inside the container's namespace and renames
it there; a process killed in between leaves the temporary link. The
driver's unplug (a DEL, or the start-up reconcile's undo of the unfinished
ADD) removes it, and nothing else in the namespace."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from podwire.datapath.nested import NestedDriver
from podwire.datapath.vif import MacvlanNested
from tests.fixtures.common import require_root

pytestmark = pytest.mark.root


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


def _links(ns: str) -> list[str]:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "link"], check=True, capture_output=True, text=True
    ).stdout
    return sorted(link["ifname"] for link in json.loads(out))


def test_unplug_removes_a_temporary_link_a_killed_plug_left() -> None:
    require_root()
    tag = uuid.uuid4().hex[:6]
    ns, parent = f"pwl-{tag}", f"pwl{tag}a"
    _ip("netns", "add", ns)
    try:
        _ip("link", "add", parent, "type", "veth", "peer", "name", f"pwl{tag}b")
        _ip("link", "set", parent, "up")
        # What a plug killed before its rename leaves: the macvlan, made in the
        # container's namespace under its temporary name.
        left = "pwn-" + uuid.uuid4().hex[:10]
        _ip("link", "add", left, "link", parent, "netns", ns, "type", "macvlan", "mode", "bridge")
        # Not the driver's: stays.
        _ip("-n", ns, "link", "add", "pwnotmine", "type", "veth", "peer", "name", "pwn0123456789a")
        assert left in _links(ns)

        vif = MacvlanNested(
            port_id=str(uuid.uuid4()),
            network_id=str(uuid.uuid4()),
            mac="0a:70:77:00:00:01",
            parent_ifname=parent,
        )
        NestedDriver("macvlan").unplug(vif, f"/var/run/netns/{ns}", "eth0")

        assert _links(ns) == ["lo", "pwn0123456789a", "pwnotmine"]
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", parent], capture_output=True)
