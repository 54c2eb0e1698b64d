"""The veth + Linux bridge driver in real namespaces, on a real bridge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from podwire.datapath.netlink import rtnl
from podwire.datapath.portsec import PortSecurityTable, eui64_link_local
from podwire.datapath.veth_bridge import VethBridgeDriver, bridge_mac
from podwire.datapath.vif import AddressPair, PortSecurity, Route, VethBridge
from podwire.errors import Conflict, DatapathError, Drift, InvalidInput, NotFound
from tests.fixtures.netns import DatapathEnv, ns_ping, ns_run

pytestmark = pytest.mark.root

V4_NET = "198.18.{n}.0/24"


def make_vif(
    env: DatapathEnv,
    bridge: str,
    host_number: int,
    *,
    subnet: int = 7,
    mac: str | None = None,
    mtu: int = 1400,
    extra_pairs: tuple[AddressPair, ...] = (),
    security: bool = True,
    routes: tuple[Route, ...] | None = None,
) -> VethBridge:
    mac = mac or f"02:00:00:00:{subnet:02x}:{host_number:02x}"
    v4 = f"198.18.{subnet}.{host_number}"
    v6 = f"2001:db8:{subnet}::{host_number:x}"
    allowed = (AddressPair(ip=v4, mac=mac), AddressPair(ip=v6, mac=mac), *extra_pairs)
    return VethBridge(
        port_id=f"port-{host_number}",
        network_id=f"net-{subnet}",
        mac=mac,
        addresses=(f"{v4}/24", f"{v6}/64"),
        routes=routes
        if routes is not None
        else (
            Route(destination="0.0.0.0/0", gateway=f"198.18.{subnet}.1"),
            Route(destination="::/0", gateway=f"2001:db8:{subnet}::1"),
        ),
        mtu=mtu,
        port_security=PortSecurity(enabled=security, allowed=allowed),
        bridge=bridge,
        host_ifname=env.host_ifname(),
        bridge_addresses=(f"198.18.{subnet}.1/24", f"2001:db8:{subnet}::1/64"),
    )


def ip_json(netns: str, *argv: str) -> list[dict]:
    out = ns_run(netns, "ip", "-j", *argv, check=True).stdout
    return json.loads(out or "[]")


def host_link_exists(name: str) -> bool:
    with rtnl() as host:
        return host.link(name) is not None


# --------------------------------------------------------------------------


def test_two_containers_ping_both_ways_v4_and_v6(datapath, make_netns_pair):
    driver = datapath.driver
    bridge = datapath.bridge()
    (ns_a, path_a), (ns_b, path_b) = make_netns_pair(), make_netns_pair()
    vif_a = make_vif(datapath, bridge, 10)
    vif_b = make_vif(datapath, bridge, 11)

    got = driver.plug(vif_a, path_a, "eth0")
    driver.plug(vif_b, path_b, "eth1")
    assert got.ifname == "eth0" and got.mac == vif_a.mac and got.sandbox == path_a
    assert got.host_ifname == vif_a.host_ifname and got.mtu == 1400

    # IPv6 usable at once: nothing tentative, first ping answers.
    addrs = ip_json(ns_a, "-6", "addr", "show", "dev", "eth0")[0]["addr_info"]
    global_v6 = [a for a in addrs if a["local"] == "2001:db8:7::a"]
    assert global_v6 and not global_v6[0].get("tentative")
    assert ns_ping(ns_a, "2001:db8:7::b")
    assert ns_ping(ns_b, "2001:db8:7::a")
    assert ns_ping(ns_a, "198.18.7.11")
    assert ns_ping(ns_b, "198.18.7.10")
    # The host answers on the gateway held by the bridge.
    assert ns_ping(ns_a, "198.18.7.1")
    assert ns_ping(ns_b, "2001:db8:7::1")

    link = ip_json(ns_a, "link", "show", "dev", "eth0")[0]
    assert link["address"] == vif_a.mac and link["mtu"] == 1400 and "UP" in link["flags"]
    lo = ip_json(ns_a, "link", "show", "dev", "lo")[0]
    assert "UP" in lo["flags"]
    v4 = {
        f"{a['local']}/{a['prefixlen']}"
        for a in ip_json(ns_a, "addr", "show", "dev", "eth0")[0]["addr_info"]
    }
    assert {"198.18.7.10/24", "2001:db8:7::a/64"} <= v4
    # The kernel's link-local is the EUI-64 one port security allows.
    assert f"{eui64_link_local(vif_a.mac)}/64" in v4
    routes4 = ip_json(ns_a, "route", "show", "default")
    assert routes4[0]["gateway"] == "198.18.7.1" and routes4[0]["dev"] == "eth0"
    routes6 = ip_json(ns_a, "-6", "route", "show", "default")
    assert routes6[0]["gateway"] == "2001:db8:7::1"

    # Host side: one bridge, both ends enslaved, the fixed MAC, MTU, no STP.
    with rtnl() as host:
        br = host.link(bridge)
        assert br is not None and br.kind == "bridge" and br.mtu == 1400
        assert br.mac == bridge_mac(bridge)
        ports = {x.name for x in host.links() if x.master == br.index}
        assert ports == {vif_a.host_ifname, vif_b.host_ifname}
    with open(f"/sys/class/net/{bridge}/bridge/stp_state") as stp:
        assert stp.read().strip() == "0"

    driver.check(vif_a, path_a, "eth0")
    driver.check(vif_b, path_b, "eth1")

    driver.unplug(vif_a, path_a, "eth0")
    driver.unplug(vif_b, path_b, "eth1")
    assert not host_link_exists(vif_a.host_ifname)
    assert ip_json(ns_a, "link", "show") and "eth0" not in ns_run(ns_a, "ip", "link").stdout


def test_port_security_drops_spoofed_and_passes_allowed(datapath, make_netns_pair):
    driver = datapath.driver
    bridge = datapath.bridge()
    (ns_a, path_a), (ns_b, path_b) = make_netns_pair(), make_netns_pair()
    pair = AddressPair(ip="198.18.7.128/25", mac="02:00:00:00:07:14")
    pair6 = AddressPair(ip="2001:db8:7::8000/113", mac="02:00:00:00:07:14")
    vif_a = make_vif(datapath, bridge, 20, extra_pairs=(pair, pair6))
    vif_b = make_vif(datapath, bridge, 21)
    driver.plug(vif_a, path_a, "eth0")
    driver.plug(vif_b, path_b, "eth0")
    assert ns_ping(ns_a, "198.18.7.21")

    # A source IP outside the allowed set: dropped on the bridge.
    ns_run(ns_a, "ip", "addr", "add", "198.18.7.99/24", "dev", "eth0", check=True)
    assert not ns_ping(ns_a, "198.18.7.21", source="198.18.7.99", tries=2)
    ns_run(ns_a, "ip", "-6", "addr", "add", "2001:db8:7::99/64", "dev", "eth0", "nodad", check=True)
    assert not ns_ping(ns_a, "2001:db8:7::15", source="2001:db8:7::99", tries=2)
    # (a neighbour entry still being resolved for the spoofed source would
    # keep sending solicitations from it: start resolution afresh)
    ns_run(ns_a, "ip", "neigh", "flush", "all")
    assert ns_ping(ns_a, "2001:db8:7::15", source="2001:db8:7::14", tries=2)

    # A source inside an allowed_address_pairs CIDR: passes.
    ns_run(ns_a, "ip", "addr", "add", "198.18.7.200/24", "dev", "eth0", check=True)
    ns_run(ns_a, "ip", "neigh", "flush", "all")
    assert ns_ping(ns_a, "198.18.7.21", source="198.18.7.200", tries=2)
    ns_run(
        ns_a, "ip", "-6", "addr", "add", "2001:db8:7::8001/64", "dev", "eth0", "nodad", check=True
    )
    ns_run(ns_a, "ip", "neigh", "flush", "all")
    assert ns_ping(ns_a, "2001:db8:7::15", source="2001:db8:7::8001", tries=2)

    # The right IP from a changed MAC: dropped.
    ns_run(ns_a, "ip", "link", "set", "eth0", "address", "02:00:00:00:07:99", check=True)
    ns_run(ns_a, "ip", "neigh", "flush", "all")
    ns_run(ns_b, "ip", "neigh", "flush", "all")
    assert not ns_ping(ns_a, "198.18.7.21", source="198.18.7.20", tries=2)
    # ...and back to the port's MAC it passes again (the drop was the MAC).
    ns_run(ns_a, "ip", "link", "set", "eth0", "address", vif_a.mac, check=True)
    ns_run(ns_b, "ip", "neigh", "flush", "all")
    assert ns_ping(ns_a, "198.18.7.21", source="198.18.7.20", tries=2)

    # Control: the same spoof passes when port security is off, so the drops
    # above were the rules, not the set-up.
    driver.unplug(vif_a, path_a, "eth0")
    open_vif = make_vif(datapath, bridge, 20, security=False)
    driver.plug(open_vif, path_a, "eth0")
    ns_run(ns_a, "ip", "addr", "add", "198.18.7.99/24", "dev", "eth0", check=True)
    assert ns_ping(ns_a, "198.18.7.21", source="198.18.7.99", tries=2)
    assert not PortSecurityTable(datapath.table).has_port(open_vif.host_ifname)


def test_vlan_tagged_frames_are_dropped(datapath, make_netns_pair):
    """A container must not hide an IP header behind an 802.1Q tag (the
    IP rules match untagged frames). No vlan kernel module here, so the
    frames are written raw: the same allowed IPv4/UDP packet, plain and
    tagged; only the plain one arrives."""
    driver = datapath.driver
    bridge = datapath.bridge()
    (ns_a, path_a), (ns_b, path_b) = make_netns_pair(), make_netns_pair()
    vif_a = make_vif(datapath, bridge, 30)
    vif_b = make_vif(datapath, bridge, 31)
    driver.plug(vif_a, path_a, "eth0")
    driver.plug(vif_b, path_b, "eth0")
    args = (vif_a.mac, vif_b.mac, "198.18.7.30", "198.18.7.31")
    assert _frames_received(ns_a, ns_b, *args, tagged=False) == 1
    assert _frames_received(ns_a, ns_b, *args, tagged=True) == 0
    # Control: without port security the bridge does carry the tagged frame.
    driver.unplug(vif_a, path_a, "eth0")
    driver.plug(make_vif(datapath, bridge, 30, security=False), path_a, "eth0")
    assert _frames_received(ns_a, ns_b, *args, tagged=True) == 1


_SENDER = r"""
import socket, struct, sys
src, dst = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
sip, dip, tagged = socket.inet_aton(sys.argv[3]), socket.inet_aton(sys.argv[4]), sys.argv[5] == "1"
data = b"podwire-test"
udp = struct.pack("!HHHH", 40000, 40000, 8 + len(data), 0) + data
hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, sip, dip)
csum = sum(struct.unpack("!10H", hdr))
csum = (csum & 0xFFFF) + (csum >> 16)
hdr = hdr[:10] + struct.pack("!H", ~((csum & 0xFFFF) + (csum >> 16)) & 0xFFFF) + hdr[12:]
tag = struct.pack("!HH", 0x8100, 5) if tagged else b""
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
s.send(dst + src + tag + struct.pack("!H", 0x0800) + hdr + udp)
"""

_RECEIVER = r"""
import socket, select
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind(("eth0", 0))
print("ready", flush=True)
n = 0
while select.select([s], [], [], 1.0)[0]:
    data, addr = s.recvfrom(2048)
    if b"podwire-test" in data and addr[2] != socket.PACKET_OUTGOING:
        n += 1
print(n, flush=True)
"""


def _frames_received(
    ns_a: str, ns_b: str, src_mac: str, dst_mac: str, sip: str, dip: str, *, tagged: bool
) -> int:
    recv = subprocess.Popen(
        ["ip", "netns", "exec", ns_b, sys.executable, "-c", _RECEIVER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert recv.stdout is not None
        assert recv.stdout.readline().strip() == "ready"
        ns_run(
            ns_a,
            sys.executable,
            "-c",
            _SENDER,
            src_mac.replace(":", ""),
            dst_mac.replace(":", ""),
            sip,
            dip,
            "1" if tagged else "0",
            check=True,
        )
        out, _ = recv.communicate(timeout=10)
    finally:
        recv.kill()
        recv.wait()
    return int(out.strip())


# --------------------------------------------------------------------------
# unplug, failures, check, Docker mode


def _leftovers(env: DatapathEnv, vif: VethBridge) -> dict[str, bool]:
    return {
        "host_end": host_link_exists(vif.host_ifname),
        "rules": PortSecurityTable(env.table).has_port(vif.host_ifname),
    }


NOTHING = {"host_end": False, "rules": False}


def test_unplug_is_idempotent(datapath, make_netns_pair):
    driver = datapath.driver
    bridge = datapath.bridge()
    (_, path_a), (ns_b, path_b) = make_netns_pair(), make_netns_pair()
    vif = make_vif(datapath, bridge, 40)

    # Nothing there at all: success.
    driver.unplug(vif, path_a, "eth0")
    driver.unplug(vif, None, "eth0")

    driver.plug(vif, path_a, "eth0")
    assert _leftovers(datapath, vif) == {"host_end": True, "rules": True}
    driver.unplug(vif, path_a, "eth0")
    driver.unplug(vif, path_a, "eth0")
    assert _leftovers(datapath, vif) == NOTHING

    # The netns deleted before DEL (the kernel took the pair with it).
    vif2 = make_vif(datapath, bridge, 41)
    driver.plug(vif2, path_b, "eth0")
    subprocess.run(["ip", "netns", "del", ns_b], check=True)
    driver.unplug(vif2, path_b, "eth0")
    driver.unplug(vif2, path_b, "eth0")
    assert _leftovers(datapath, vif2) == NOTHING


def test_plug_failure_leaves_nothing(datapath, make_netns_pair):
    driver = datapath.driver
    bridge = datapath.bridge()
    ns, path = make_netns_pair()

    # ifname already taken inside the netns: the kernel refuses the pair.
    ns_run(ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0", check=True)
    vif = make_vif(datapath, bridge, 50)
    with pytest.raises(Conflict) as err:
        driver.plug(vif, path, "eth0")
    assert "eth0" in err.value.message and path in err.value.message
    assert _leftovers(datapath, vif) == NOTHING

    # Failure after the pair exists: a gateway that is not on-link.
    bad = make_vif(
        datapath, bridge, 51, routes=(Route(destination="0.0.0.0/0", gateway="198.19.0.1"),)
    )
    with pytest.raises(DatapathError) as err2:
        driver.plug(bad, path, "eth1")
    assert "eth1" in err2.value.message
    assert _leftovers(datapath, bad) == NOTHING
    assert "eth1" not in ns_run(ns, "ip", "link").stdout

    # A namespace that does not exist.
    with pytest.raises(NotFound) as err3:
        driver.plug(make_vif(datapath, bridge, 52), "/var/run/netns/pwd-no-such-ns", "eth0")
    assert "pwd-no-such-ns" in err3.value.message

    # A path that is not a network namespace.
    not_ns = make_vif(datapath, bridge, 53)
    with pytest.raises(InvalidInput):
        driver.plug(not_ns, "/proc/self/status", "eth0")
    assert _leftovers(datapath, not_ns) == NOTHING

    # Bad input never reaches the kernel.
    with pytest.raises(InvalidInput):
        driver.plug(make_vif(datapath, bridge, 54), path, "eth0; drop")
    with pytest.raises(InvalidInput):
        driver.plug(make_vif(datapath, bridge, 55, mac="01:00:5e:00:00:01"), path, "eth2")

    # The host end name taken: Conflict names it, the other port is untouched.
    good = make_vif(datapath, bridge, 56)
    driver.plug(good, path, "eth3")
    clash = make_vif(datapath, bridge, 57).model_copy(update={"host_ifname": good.host_ifname})
    with pytest.raises(Conflict) as err4:
        driver.plug(clash, path, "eth4")
    assert good.host_ifname in err4.value.message
    driver.check(good, path, "eth3")


def test_rules_refused_leave_no_pair_and_no_rules(datapath, make_netns_pair):
    """The rules are added beside the pair's creation: when nftables refuses
    them, the plug fails with its error, the pair is deleted, and the
    container end never came up."""
    driver = datapath.driver
    bridge = datapath.bridge()
    ns, path = make_netns_pair()
    # The driver's table holds a set of the wrong type under a name its
    # rules use: nftables refuses the table's set-up, and so the port's rules.
    nft_script = (
        f"add table bridge {datapath.table}\n"
        f"add set bridge {datapath.table} secured {{ type ipv4_addr; }}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=nft_script, text=True, check=True)
    vif = make_vif(datapath, bridge, 58)
    with pytest.raises(DatapathError, match="nftables refused"):
        driver.plug(vif, path, "eth0")
    assert not host_link_exists(vif.host_ifname)
    assert "eth0" not in ns_run(ns, "ip", "link").stdout
    # Once the table is sound again, the same port plugs and is secured.
    PortSecurityTable(datapath.table).remove_table()
    driver.plug(vif, path, "eth0")
    assert _leftovers(datapath, vif) == {"host_end": True, "rules": True}


def test_check_names_the_drifted_field(datapath, make_netns_pair):
    driver = datapath.driver
    bridge = datapath.bridge()
    ns, path = make_netns_pair()
    vif = make_vif(datapath, bridge, 60)
    driver.plug(vif, path, "eth0")
    driver.check(vif, path, "eth0")

    def drift() -> str | None:
        with pytest.raises(Drift) as err:
            driver.check(vif, path, "eth0")
        return err.value.field

    ns_run(ns, "ip", "addr", "del", "198.18.7.60/24", "dev", "eth0", check=True)
    assert drift() == "addresses"
    ns_run(ns, "ip", "addr", "add", "198.18.7.60/24", "dev", "eth0", check=True)
    ns_run(ns, "ip", "route", "replace", "default", "via", "198.18.7.1", "dev", "eth0", check=True)
    driver.check(vif, path, "eth0")

    ns_run(ns, "ip", "-6", "route", "del", "default", check=True)
    assert drift() == "routes"
    ns_run(ns, "ip", "-6", "route", "add", "default", "via", "2001:db8:7::1", check=True)
    driver.check(vif, path, "eth0")

    ns_run(ns, "ip", "link", "set", "eth0", "address", "02:00:00:00:07:ee", check=True)
    assert drift() == "mac"
    ns_run(ns, "ip", "link", "set", "eth0", "address", vif.mac, check=True)
    ns_run(ns, "ip", "link", "set", "eth0", "mtu", "1300", check=True)
    assert drift() == "mtu"
    ns_run(ns, "ip", "link", "set", "eth0", "mtu", "1400", check=True)
    driver.check(vif, path, "eth0")

    PortSecurityTable(datapath.table).remove_port(vif.host_ifname, vif.port_security)
    assert drift() == "port_security"
    with rtnl() as host:
        host.delete_link(vif.host_ifname)
    assert drift() == "host_ifname"


def test_docker_mode_leaves_container_end_in_host(datapath):
    driver = datapath.driver
    bridge = datapath.bridge()
    vif = make_vif(datapath, bridge, 70)
    ifname = datapath.host_ifname()  # a unique host-side name, as libnetwork's SrcName
    got = driver.plug(vif, None, ifname)
    assert got.ifname == ifname and got.sandbox is None
    with rtnl() as host:
        end = host.link(ifname)
        assert end is not None and end.mac == vif.mac and end.mtu == 1400 and end.kind == "veth"
        assert host.addresses(end.index) == [] or all(
            a.cidr.startswith("fe80:") for a in host.addresses(end.index)
        )
        br = host.link(bridge)
        assert br is not None and host.link(vif.host_ifname).master == br.index
    driver.check(vif, None, ifname)
    driver.unplug(vif, None, ifname)
    assert not host_link_exists(ifname)
    assert _leftovers(datapath, vif) == NOTHING
    driver.unplug(vif, None, ifname)


# --------------------------------------------------------------------------
# bridges, concurrency, registry


def test_concurrent_plugs_share_one_new_bridge(datapath, make_netns_pair):
    driver = datapath.driver
    bridge = datapath.bridge()
    targets = [make_netns_pair() for _ in range(6)]
    vifs = [make_vif(datapath, bridge, 80 + i) for i in range(len(targets))]
    errors: list[BaseException] = []

    def plug(vif: VethBridge, path: str) -> None:
        try:
            driver.plug(vif, path, "eth0")
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=plug, args=(v, p)) for v, (_, p) in zip(vifs, targets, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for vif, (_, path) in zip(vifs, targets, strict=True):
        driver.check(vif, path, "eth0")
    assert ns_ping(targets[0][0], "198.18.7.85")


def test_remove_bridge(datapath, make_netns_pair):
    driver = datapath.driver
    bridge = datapath.bridge()
    _, path = make_netns_pair()
    vif = make_vif(datapath, bridge, 90)
    driver.plug(vif, path, "eth0")
    with pytest.raises(Conflict):
        driver.remove_bridge(bridge)
    driver.unplug(vif, path, "eth0")
    assert driver.remove_bridge(bridge) is True
    assert driver.remove_bridge(bridge) is False
    # The next plug makes it again.
    driver.plug(vif, path, "eth0")
    assert host_link_exists(bridge)
    assert driver.remove_bridge(bridge, force=True) is True
    driver.unplug(vif, path, "eth0")


def test_kind_plugin_driver_and_describe():
    from podwire.config import Config
    from podwire.kinds import registry
    from podwire.kinds.base import KindEnv

    plugin = registry.plugin_class("veth_bridge")(KindEnv(Config(), None, None, lambda _: False))
    driver = plugin.driver()
    assert isinstance(driver, VethBridgeDriver)
    assert plugin.driver() is driver
    with pytest.raises(InvalidInput):
        registry.plugin_class("no_such_kind")
    described = plugin.describe()
    assert described.available, described.reason
    assert described.kinds == ["veth_bridge"]


def test_async_delete_unplug_returns_at_once_and_replug_waits(datapath, make_netns_pair):
    """async_delete=True: unplug takes the pair down and returns; a plug that
    needs the same names (DEL then ADD in one netns) waits for the delete."""
    driver = VethBridgeDriver(nft_table=datapath.table, async_delete=True)
    bridge = datapath.bridge()
    (ns_a, path_a), (_, path_b) = make_netns_pair(), make_netns_pair()
    vif_a = make_vif(datapath, bridge, 100)
    vif_b = make_vif(datapath, bridge, 101)
    driver.plug(vif_a, path_a, "eth0")
    driver.plug(vif_b, path_b, "eth0")
    assert ns_ping(ns_a, "198.18.7.101")

    driver.unplug(vif_a, path_a, "eth0")
    # Down at once: nothing passes while the kernel deletes it.
    with rtnl() as host:
        end = host.link(vif_a.host_ifname)
        assert end is None or not end.up
    driver.unplug(vif_a, path_a, "eth0")  # still idempotent

    # Same host end, same netns, same ifname, right away.
    driver.plug(vif_a, path_a, "eth0")
    driver.check(vif_a, path_a, "eth0")
    assert ns_ping(ns_a, "198.18.7.101")

    driver.unplug(vif_a, path_a, "eth0")
    driver.unplug(vif_b, path_b, "eth0")
    driver.flush()
    assert _leftovers(datapath, vif_a) == NOTHING
    assert _leftovers(datapath, vif_b) == NOTHING


def test_plug_into_a_process_netns_path(datapath, make_netns_pair):
    """Runtimes pass /proc/PID/ns/net as often as a /var/run/netns path."""
    name, path = make_netns_pair()
    sleeper = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "60"])
    try:
        proc_path = f"/proc/{sleeper.pid}/ns/net"
        deadline = time.monotonic() + 5
        while os.stat(proc_path).st_ino != os.stat(path).st_ino:
            assert time.monotonic() < deadline, "sleep never entered the netns"
            time.sleep(0.01)
        vif = make_vif(datapath, datapath.bridge(), 110)
        got = datapath.driver.plug(vif, proc_path, "eth0")
        assert got.sandbox == proc_path and got.ifname == "eth0"
        datapath.driver.check(vif, proc_path, "eth0")
        assert ns_ping(name, "198.18.7.1")
        datapath.driver.unplug(vif, proc_path, "eth0")
        assert _leftovers(datapath, vif) == NOTHING
    finally:
        sleeper.kill()
        sleeper.wait()


def neighbour_macs(netns: str) -> dict[str, str | None]:
    return {n["dst"]: n.get("lladdr") for n in ip_json(netns, "neigh", "show", "dev", "eth0")}


def test_reused_address_with_a_new_mac_is_announced(datapath, make_netns_pair):
    """A container that gets an address another had just before announces
    it: a peer that knew the old MAC switches without asking again."""
    driver = datapath.driver
    bridge = datapath.bridge()
    (ns_a, path_a), (_, path_b), (_, path_c) = (make_netns_pair() for _ in range(3))
    vif_a = make_vif(datapath, bridge, 20)
    vif_b = make_vif(datapath, bridge, 21)
    driver.plug(vif_a, path_a, "eth0")
    driver.plug(vif_b, path_b, "eth0")
    assert ns_ping(ns_a, "198.18.7.21") and ns_ping(ns_a, "2001:db8:7::15")
    assert neighbour_macs(ns_a)["198.18.7.21"] == vif_b.mac
    driver.unplug(vif_b, path_b, "eth0")

    vif_c = make_vif(datapath, bridge, 21, mac="02:00:00:00:07:99")
    driver.plug(vif_c, path_c, "eth0")
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        macs = neighbour_macs(ns_a)
        if macs.get("198.18.7.21") == vif_c.mac and macs.get("2001:db8:7::15") == vif_c.mac:
            break
        time.sleep(0.05)
    assert neighbour_macs(ns_a)["198.18.7.21"] == vif_c.mac
    assert neighbour_macs(ns_a)["2001:db8:7::15"] == vif_c.mac
    # What made it announce: both families' settings on the container end.
    for key in ("net/ipv4/conf/eth0/arp_notify", "net/ipv6/conf/eth0/ndisc_notify"):
        value = ns_run(ns_a, "cat", f"/proc/sys/{key}", check=True).stdout.strip()
        assert value == "1", key


def test_single_family_port_gets_only_its_familys_announcements(datapath, make_netns_pair):
    """An IPv4-only port announces through arp_notify (set with netlink) and
    writes no IPv6 sysctl; an IPv6-only port the reverse."""
    driver = datapath.driver
    bridge = datapath.bridge()
    (ns4, path4), (ns6, path6) = make_netns_pair(), make_netns_pair()
    base = make_vif(datapath, bridge, 22)
    v4 = base.model_copy(update={"addresses": ("198.18.7.22/24",), "routes": (base.routes[0],)})
    driver.plug(v4, path4, "eth0")
    v6_base = make_vif(datapath, bridge, 23)
    v6 = v6_base.model_copy(
        update={"addresses": ("2001:db8:7::17/64",), "routes": (v6_base.routes[1],)}
    )
    driver.plug(v6, path6, "eth0")

    def setting(ns: str, key: str) -> str:
        return ns_run(ns, "cat", f"/proc/sys/{key}", check=True).stdout.strip()

    assert setting(ns4, "net/ipv4/conf/eth0/arp_notify") == "1"
    assert setting(ns4, "net/ipv6/conf/eth0/ndisc_notify") == "0"
    assert setting(ns6, "net/ipv4/conf/eth0/arp_notify") == "0"
    assert setting(ns6, "net/ipv6/conf/eth0/ndisc_notify") == "1"
