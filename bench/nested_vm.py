"""ADD/DEL latency of the nested kinds inside a VM, in one run: a user-mode
Linux guest (tests/fixtures/uml.py) whose agent (node
mode nested, backend remote over the VM's NIC) serves every kind in turn
(agent.default_kind; VLAN through a network with datapath "vlan").

Timed inside the guest: the CNI shim run as a runtime runs it, N sequential
ADD then DEL of fresh netns per kind. Prints JSON. UML is slow and shares
two cores with everything else: compare the kinds within one run only.

veth_bridge is not in this run: its port security needs nf_tables, which the
UML kernel lacks (libnftables cannot open its netlink socket and the agent
aborts), so it cannot run inside this guest; its numbers are the host's
(bench/cni_latency.py).

    .venv/bin/python bench/nested_vm.py [N]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.agent import SHIM, netconf  # noqa: E402
from tests.fixtures.uml import PW9_NET, build_world  # noqa: E402

_TIMER = r"""
import json, os, statistics, subprocess, sys, time
shim, sock, conf, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
add, dele = [], []
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
    print(json.dumps({"bench": "nested_vm", "where": "user-mode Linux guest", **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
