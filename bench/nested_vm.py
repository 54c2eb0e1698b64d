"""ADD/DEL latency of the nested kinds inside a VM, in one run: a user-mode
Linux guest (tests/fixtures/uml.py) whose agent (node
mode nested, backend remote over the VM's NIC) serves every kind in turn
(agent.default_kind; VLAN through a network with datapath "vlan").

Timed inside the guest: the CNI shim run as a runtime runs it, N sequential
ADD then DEL of fresh netns per kind. Prints JSON. UML is slow and shares
two cores with everything else: compare the kinds within one run only.

veth_bridge runs in the same guest, last: the UML kernel has nf_tables as a
module (the guest's init loads only 8021q, ipvlan and macvlan), so the bench
loads nf_tables, bridge and veth, stops the nested agent and starts one of
node mode "host" (alice's service token: it binds its ports) with its own
state directory. Its network (``pwo-bveth``) has its bridge inside the guest
only, with port security ON (nftables rules per port, as on a host). If the
modules do not load, veth_bridge's entry says why, and the run goes on.

    .venv/bin/python bench/nested_vm.py [N]
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.agent import SHIM, netconf  # noqa: E402
from tests.fixtures.uml import PW9_NET, Guest, build_world  # noqa: E402

_TIMER = r"""
import json, os, statistics, subprocess, sys, time
shim, sock, conf, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
add, dele = [], []

def once(name, verb):
    env = {"PODWIRE_AGENT_SOCKET": sock, "CNI_CONTAINERID": name, "CNI_IFNAME": "eth0",
           "CNI_NETNS": f"/run/netns/{name}", "CNI_PATH": "/opt/cni/bin", "PATH": "/usr/bin:/bin",
           "CNI_COMMAND": verb}
    return subprocess.run([shim], input=conf.encode(), env=env, capture_output=True)

# One untimed ADD/DEL first (the agent's first call to the API, its caches),
# tried three times: a first call lost under load is not what is measured.
warm = f"pw9w{os.getpid()}"
subprocess.run(["ip", "netns", "add", warm], check=True)
for attempt in range(3):
    if once(warm, "ADD").returncode == 0:
        break
    once(warm, "DEL")
    time.sleep(2)
once(warm, "DEL")
subprocess.run(["ip", "netns", "del", warm])
for i in range(n):
    name = f"pw9b{os.getpid()}x{i}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    env = {"PODWIRE_AGENT_SOCKET": sock, "CNI_CONTAINERID": name, "CNI_IFNAME": "eth0",
           "CNI_NETNS": f"/run/netns/{name}", "CNI_PATH": "/opt/cni/bin", "PATH": "/usr/bin:/bin"}
    for verb, out in (("ADD", add), ("DEL", dele)):
        t = time.monotonic()
        p = subprocess.run([shim], input=conf.encode(), env={**env, "CNI_COMMAND": verb},
                           capture_output=True)
        out.append((time.monotonic() - t) * 1000)
        if p.returncode:
            subprocess.run(["ip", "netns", "del", name])
            sys.exit(f"{verb} failed: {p.stdout!r}")
    subprocess.run(["ip", "netns", "del", name], check=True)
q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]
print(json.dumps({"n": n, "add_p50_ms": round(statistics.median(add), 1),
                  "add_p99_ms": round(q(add, 0.99), 1),
                  "del_p50_ms": round(statistics.median(dele), 1)}))
"""


def main(n: int = 20) -> int:
    from podwire.model import NetworkCreate, SubnetCreate

    results: dict[str, object] = {}
    with build_world([], "embedded") as world:
        guest = world.guest
        with world.backend() as alice:
            net = alice.create_network(
                world.ctx(), NetworkCreate(name="pw9-bvlan", datapath="vlan")
            )
            alice.create_subnet(
                world.ctx(), SubnetCreate(network_id=net.id, cidr="198.18.204.0/24")
            )
        timer = world.dir / "timer.py"
        timer.write_text(_TIMER)
        for kind, network in (
            ("ipvlan_nested", PW9_NET),
            ("macvlan_nested", PW9_NET),
            ("vlan_nested", "pw9-bvlan"),
        ):
            guest.restart_agent(default_kind=None if kind == "vlan_nested" else kind)
            conf = json.dumps(netconf(network, "1.0.0"))
            answer = guest.run(
                f"/usr/bin/python3 -I -S {timer} {SHIM} {guest.agent_socket} '{conf}' {n}",
                timeout=600,
            )
            results[kind] = json.loads(answer.stdout) if answer.rc == 0 else answer.stderr
        results["veth_bridge"] = _veth_bridge(world, guest, timer, n)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(
        json.dumps(
            {"bench": "nested_vm", "where": "user-mode Linux guest", "loadavg": load, **results},
            indent=2,
        )
    )
    return 0


def _veth_bridge(world: Any, guest: Guest, timer: Path, n: int) -> object:
    """veth_bridge (port security on) in the same guest, by an agent of
    node mode "host" on a network of its own (its bridge stays in the guest)."""
    from podwire.model import NetworkCreate, SubnetCreate

    loaded = guest.run(
        "for m in nf_tables bridge veth; do modprobe -d /run/modroot $m || exit 1; done"
    )
    if loaded.rc:
        return f"not run: modules did not load: {loaded.stderr.strip()}"
    with world.backend() as alice:
        net = alice.create_network(world.ctx(), NetworkCreate(name="pwo-bveth"))
        alice.create_subnet(world.ctx(), SubnetCreate(network_id=net.id, cidr="198.18.206.0/24"))
    config = world.dir / "vm" / "agent-veth.toml"
    config.write_text(
        f'state_dir = "/run/pwo-vb"\nhost_id = "pwo-vb-{world.dir.name}"\nbackend = "remote"\n'
        f'[remote]\nurl = "{world.guest_url}"\ntoken = "{world.tokens["alice_service"]}"\n'
        f'[agent]\nsocket = "{guest.agent_socket}"\n'
    )
    guest.stop_agent()
    host_mode = dataclasses.replace(guest, agent_config=config)
    host_mode.start_agent()
    try:
        conf = json.dumps(netconf("pwo-bveth", "1.0.0"))
        answer = guest.run(
            f"/usr/bin/python3 -I -S {timer} {SHIM} {guest.agent_socket} '{conf}' {n}",
            timeout=600,
        )
        security = guest.run("nft list tables bridge").stdout.strip()
        if answer.rc:
            return answer.stderr
        return {**json.loads(answer.stdout), "port_security": "on", "nft_tables": security}
    finally:
        host_mode.stop_agent()


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
