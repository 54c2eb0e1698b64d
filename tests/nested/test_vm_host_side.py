"""The embedded backend's host side of a VM port (podwire/kinds/vm_ports.py,
podwire/datapath/trunk.py), in a real VM (user-mode Linux,
``nested_world_wired``): the host agent, not the fixture, puts the VM's tap
on the bridge, keeps the VM port's port security on it (following its
allowed_address_pairs), and wires each trunk sub-port to its network.

What a user sees is checked: VLAN containers inside the VM reach each
other and a container on the host over IPv4 and IPv6; a removed sub-port
cuts its traffic and its host pieces go; a source outside the VM port's
addresses and pairs is dropped, and passes once it is a pair; a host agent
killed (-9) in the middle of wiring leaves nothing after its restart.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from podwire.kinds.common import short_name
from podwire.kinds.veth_bridge import bridge_name
from podwire.kinds.vm_ports import NET_END_PREFIX, TRUNK_END_PREFIX
from podwire.model import (
    AllowedAddressPair,
    NetworkCreate,
    PortBinding,
    PortUpdate,
    SubnetCreate,
)
from tests.fixtures.agent import netconf
from tests.fixtures.uml import NestedWorld
from tests.nested.helpers import assert_clean, containers, ping

pytestmark = pytest.mark.vm

VLAN_NET = "pwe-vlannet"
VLAN_V4 = "198.18.204.0/24"
VLAN_V6 = "2001:db8:9204::/64"
SPOOF = "198.18.200.77"


def _sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _until(what: str, test: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def _links(prefixes: tuple[str, ...] = (TRUNK_END_PREFIX, NET_END_PREFIX)) -> list[str]:
    out = _sh("ip", "-o", "link", "show")
    names = [line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line]
    return [n for n in names if n.startswith(prefixes)]


def _tap_program(tap: str) -> bool:
    return "pwtrunk" in _sh("tc", "filter", "show", "dev", tap, "ingress")


def _secured(ifname: str) -> bool:
    out = _sh("nft", "list", "set", "bridge", "podwire", "secured")
    return f'"{ifname}"' in out


def _no_ping(world: NestedWorld, netns: str | None, address: str, source: str = "") -> None:
    """Three echoes, none answered."""
    inside = f"ip netns exec {netns} " if netns else ""
    src = f"-I {source} " if source else ""
    answer = world.guest.run(f"{inside}busybox ping -c3 -W1 {src}{address}", timeout=30)
    assert answer.rc != 0, f"{address} answered: {answer.stdout}"


@pytest.fixture(scope="module")
def vlan_world(nested_world_wired: NestedWorld) -> Iterator[dict[str, Any]]:
    """A network of alice's joined through trunk sub-ports (datapath
    "vlan"), with a container on the host on it."""
    world = nested_world_wired
    with world.backend() as alice:
        net = alice.create_network(world.ctx(), NetworkCreate(name=VLAN_NET, datapath="vlan"))
        alice.create_subnet(world.ctx(), SubnetCreate(network_id=net.id, cidr=VLAN_V4))
        alice.create_subnet(world.ctx(), SubnetCreate(network_id=net.id, cidr=VLAN_V6))
    host_ns = "pwe-h" + uuid.uuid4().hex[:6]
    subprocess.run(["ip", "netns", "add", host_ns], check=True)
    conf = netconf(VLAN_NET, "1.0.0")
    try:
        added = world.host_agent.cni(
            "ADD", conf, container_id=host_ns, netns=f"/var/run/netns/{host_ns}"
        )
        assert added.code == 0, (added.stdout, added.stderr)
        yield {
            "network_id": net.id,
            "host_ips": [i["address"].split("/")[0] for i in added.json["ips"]],
        }
    finally:
        with contextlib.suppress(Exception):
            world.host_agent.cni(
                "DEL", conf, container_id=host_ns, netns=f"/var/run/netns/{host_ns}"
            )
        subprocess.run(["ip", "netns", "del", host_ns], check=False)
        with world.backend() as alice, contextlib.suppress(Exception):
            alice.delete_network(world.ctx(), net.id)
        # The host agent made this network's bridge (its container, the
        # sub-ports' access pairs); it is told of no network deletion here.
        subprocess.run(["ip", "link", "del", bridge_name(net.id)], check=False)


def _sub_port_of(world: NestedWorld, mac: str) -> tuple[str, str, int]:
    """(trunk id, sub-port id, VLAN id) of the container whose MAC is ``mac``."""
    with world.backend() as alice:
        (trunk,) = alice.list_trunks(world.ctx(), {"port_id": [world.vm_port_id]})
        for sp in trunk.sub_ports:
            if alice.get_port(world.ctx(), sp.port_id).mac_address == mac:
                return trunk.id, sp.port_id, sp.segmentation_id
    raise AssertionError(f"no sub-port with MAC {mac}")


def _host_clean(world: NestedWorld) -> None:
    """No access pair, no tap program, the tap still on its bridge with the
    VM port's security (the VM port is still there)."""
    _until("the access pairs are gone", lambda: _links() == [])
    _until("the tap's program is gone", lambda: not _tap_program(world.guest.tap))
    assert f"master {world.bridge}" in _sh("ip", "link", "show", world.guest.tap)
    assert _secured(world.guest.tap)
    assert not any(
        n.startswith(NET_END_PREFIX)
        for n in _sh("nft", "list", "set", "bridge", "podwire", "secured").split('"')
    )


def test_vlan_containers_reach_each_other_and_the_host(
    nested_world_wired: NestedWorld, vlan_world: dict[str, Any]
) -> None:
    world, guest = nested_world_wired, nested_world_wired.guest
    with containers(world, 2, VLAN_NET) as (c1, c2):
        # At once when ADD returned (the agent in the VM waited for the
        # host): each sub-port has its access pair, its network end secured.
        for c in (c1, c2):
            _, sub_id, _ = _sub_port_of(world, c["mac"])
            assert _secured(short_name(NET_END_PREFIX, sub_id))
            assert short_name(TRUNK_END_PREFIX, sub_id) in _links()
        assert _tap_program(guest.tap)
        assert any(":" in ip for ip in c1["ips"]) and any(":" not in ip for ip in c1["ips"])
        for address in c2["ips"] + vlan_world["host_ips"]:
            ping(guest, c1["netns"], address)
        ping(guest, c2["netns"], c1["ips"][0])
    assert_clean(world)
    _host_clean(world)


def test_removed_sub_port_cuts_its_traffic_and_its_host_pieces(
    nested_world_wired: NestedWorld, vlan_world: dict[str, Any]
) -> None:
    world, guest = nested_world_wired, nested_world_wired.guest
    host_v4 = next(ip for ip in vlan_world["host_ips"] if ":" not in ip)
    with containers(world, 1, VLAN_NET) as (c1,):
        ping(guest, c1["netns"], host_v4)
        trunk_id, sub_id, _ = _sub_port_of(world, c1["mac"])
        with world.backend() as alice:
            alice.remove_subports(world.ctx(), trunk_id, [sub_id])
        ends = {short_name(TRUNK_END_PREFIX, sub_id), short_name(NET_END_PREFIX, sub_id)}
        _until("the sub-port's access pair is gone", lambda: not ends & set(_links()))
        # Its rules go right after the pair (kinds/vm_ports.py, _remove_sub),
        # on the watcher's thread: an instant after the links, not with them.
        net_end = short_name(NET_END_PREFIX, sub_id)
        _until("the sub-port's rules are gone", lambda: not _secured(net_end))
        _no_ping(world, c1["netns"], host_v4)
    assert_clean(world)
    _host_clean(world)


def test_source_outside_the_pairs_is_dropped_until_it_is_a_pair(
    nested_world_wired: NestedWorld, vlan_world: dict[str, Any]
) -> None:
    """An address added by hand to the VM's NIC: its frames (ARP and IP)
    are dropped by the tap's port security; once it is one of the VM port's
    allowed_address_pairs they pass, and stop again when the pair goes."""
    world, guest = nested_world_wired, nested_world_wired.guest
    host_v4 = next(a for a in world.host_addresses if ":" not in a)
    guest.run(f"ip addr add {SPOOF}/32 dev eth0").check()
    try:
        _no_ping(world, None, host_v4, SPOOF)
        with world.backend() as alice:
            alice.update_port(
                world.ctx(),
                world.vm_port_id,
                PortUpdate(allowed_address_pairs=[AllowedAddressPair(ip_address=SPOOF)]),
            )
        started = time.monotonic()
        answer = guest.run(
            f"for i in $(seq 20); do busybox ping -c1 -W1 -I {SPOOF} {host_v4} && exit 0; done;"
            " exit 1",
            timeout=60,
        )
        assert answer.rc == 0, answer.stdout
        print(f"pair effective after {time.monotonic() - started:.2f} s")
        with world.backend() as alice:
            alice.update_port(world.ctx(), world.vm_port_id, PortUpdate(allowed_address_pairs=[]))
        _until(
            "the pair left the tap's rules",
            lambda: SPOOF not in _sh("nft", "list", "set", "bridge", "podwire", "src4"),
        )
        guest.run("ip neigh flush dev eth0; true")
        _no_ping(world, None, host_v4, SPOOF)
    finally:
        guest.run(f"ip addr del {SPOOF}/32 dev eth0")
        with world.backend() as alice:
            alice.update_port(world.ctx(), world.vm_port_id, PortUpdate(allowed_address_pairs=[]))


def test_kill_of_the_host_agent_mid_wiring_leaves_nothing_after_restart(
    nested_world_wired: NestedWorld, vlan_world: dict[str, Any]
) -> None:
    """The host agent dies (SIGKILL through its fault plan) right after it
    made a sub-port's access pair, before it recorded it done. The ADD in
    the VM, waiting for the host, fails (nested.host_wait_seconds) and is
    undone: the sub-port goes. The dead agent's pair stays until its
    restart, whose first pass removes it, its rules and the tap's program,
    from its record."""
    world, guest = nested_world_wired, nested_world_wired.guest
    agent = world.host_agent
    agent.env["PODWIRE_FAULTS"] = json.dumps(
        [{"point": "kind.veth_bridge.trunk_access", "action": "crash"}]
    )
    name = "pwek" + uuid.uuid4().hex[:6]
    guest.run(f"ip netns add {name}").check()
    try:
        agent.restart()
        proc = agent.proc
        assert proc is not None
        answer = guest.cni("ADD", VLAN_NET, container_id=name, netns=f"/run/netns/{name}")
        text = answer.stdout.decode()
        assert answer.code != 0, text
        assert "has not applied" in text, text
        assert proc.poll() is not None, "the host agent did not die"
        left = _links()
        assert len(left) == 2, left  # the dead agent's access pair
        assert_clean(world)
    finally:
        guest.cni("DEL", VLAN_NET, container_id=name, netns=f"/run/netns/{name}")
        guest.run(f"ip netns del {name}")
        agent.env.pop("PODWIRE_FAULTS", None)
        agent.stop()
        agent.start()
    _host_clean(world)


def test_pairs_are_on_the_tap_when_add_returns(nested_world_wired: NestedWorld) -> None:
    """ipvlan containers in the VM: the moment their ADD returned, the
    host's rules on the VM's tap already allow their addresses (the agent
    in the VM waited for the host's answer); after DEL they go."""
    world, guest = nested_world_wired, nested_world_wired.guest
    tap = guest.tap
    with containers(world, 2) as (c1, c2):
        rules = _sh("nft", "list", "set", "bridge", "podwire", "src4")
        rules += _sh("nft", "list", "set", "bridge", "podwire", "src6")
        for ip in c1["ips"] + c2["ips"]:
            assert f'"{tap}" . {guest.mac} . {ip}' in rules, (ip, rules)
        for address in world.host_addresses:
            ping(guest, c1["netns"], address)
    assert_clean(world)
    gone = c1["ips"] + c2["ips"]
    _until(
        "the containers' addresses left the tap's rules",
        lambda: (
            not any(
                ip in _sh("nft", "list", "set", "bridge", "podwire", s)
                for ip in gone
                for s in ("src4", "src6")
            )
        ),
    )


def test_unbound_vm_port_leaves_the_bridge_and_comes_back(
    nested_world_wired: NestedWorld,
) -> None:
    """A VM port that is no longer bound to the host: its tap leaves the
    bridge and its rules go (a tap of no port reaches nothing); bound again,
    the host wires it again and the VM reaches the host's container."""
    world, guest = nested_world_wired, nested_world_wired.guest
    tap = guest.tap
    with world.backend("alice_service") as service:
        binding = service.get_port(world.ctx(), world.vm_port_id).binding
        service.update_port(
            world.ctx(), world.vm_port_id, PortUpdate(binding=PortBinding(host_id=""))
        )
        try:
            _until(
                "the tap left the bridge",
                lambda: " master " not in _sh("ip", "link", "show", tap),
            )
            _until("the tap's rules are gone", lambda: not _secured(tap))
        finally:
            service.update_port(world.ctx(), world.vm_port_id, PortUpdate(binding=binding))
    _until("the tap is back", lambda: f"master {world.bridge}" in _sh("ip", "link", "show", tap))
    assert _secured(tap)
    answer = guest.run(
        f"for i in $(seq 20); do busybox ping -c1 -W1 {world.host_addresses[0]} && exit 0; done;"
        " exit 1",
        timeout=60,
    )
    assert answer.rc == 0, answer.stdout


_SEND = r"""
import socket, struct, sys
dst_mac, src_mac, src_ip, dst_ip, port, payload = sys.argv[1:7]
def mac(m): return bytes(int(x, 16) for x in m.split(":"))
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
data = payload.encode()
udp = struct.pack("!HHHH", 40000, int(port), 8 + len(data), 0) + data
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
frame = mac(dst_mac) + mac(src_mac) + b"\x08\x00" + ip + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(3):
    s.send(frame)
"""

_LISTEN = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(0.2)
open(sys.argv[2], "w").close()
got = set()
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        got.add(s.recv(100).decode())
    except OSError:
        pass
    if "genuine" in got:  # sent last, on the same path: the spoofed one is past
        end = min(end, time.monotonic() + 0.5)
print(" ".join(sorted(got)))
"""


def test_crafted_frame_with_a_foreign_source_mac_is_dropped(
    nested_world_wired: NestedWorld,
) -> None:
    """Frames built by hand in the guest (AF_PACKET, no scapy) to the host's
    container: with the VM port's MAC and address one arrives; the same
    frame with a source MAC that is not the port's does not."""
    world, guest = nested_world_wired, nested_world_wired.guest
    (world.dir / "pwe_send.py").write_text(_SEND)
    (world.dir / "pwe_listen.py").write_text(_LISTEN)
    host_v4 = next(a for a in world.host_addresses if ":" not in a)
    host_mac = _sh(
        "ip", "netns", "exec", world.host_netns, "cat", "/sys/class/net/eth0/address"
    ).strip()
    vm_v4 = guest.run("ip -4 -o addr show dev eth0").stdout.split()[3].split("/")[0]
    port = str(20000 + uuid.uuid4().int % 20000)
    ready = world.dir / f"pwe_ready_{port}"
    listener = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            world.host_netns,
            "/usr/bin/python3",
            "-I",
            "-S",
            str(world.dir / "pwe_listen.py"),
            port,
            str(ready),
            "8",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _until("the listener is ready", ready.exists)
        send = f"/usr/bin/python3 -I -S {world.dir / 'pwe_send.py'} {host_mac}"
        guest.run(f"{send} 02:00:5e:10:00:99 {vm_v4} {host_v4} {port} spoofed").check()
        guest.run(f"{send} {guest.mac} {vm_v4} {host_v4} {port} genuine").check()
        out, _ = listener.communicate(timeout=30)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    assert out.split() == ["genuine"], out
