"""Packets per second through two vhost-user ports on OVS-DPDK: the path
podwire builds (two CNI ADDs through a real agent: A in server mode, B in
client mode) against the same path built by hand with ovs-vsctl
(dpdkvhostuserclient to A's socket, dpdkvhostuser for B, its socket moved
next to B's config), in the same run, on the same private OVS-DPDK.

On each path, two dpdk-testpmd processes in io forwarding (A the vhost-user
server on its socket, B the client) bounce ``--bursts`` bursts of 32 packets
between each other through the bridge (action NORMAL); the figure is the
packets A and B received per second over ``--seconds``, after a warm-up.
The applications run as plain processes on the sockets (a container adds
nothing on the data path; tests/vhostuser/test_podman_vhostuser.py proves the
containers). Rounds alternate the order of the two paths; medians reported.

Prints one JSON object; progress on stderr. Run as root, alone on the
machine if the number matters (2 cores: OVS's PMD and two testpmds share
them): ``.venv/bin/python bench/vhostuser_pps.py [--rounds 6 --seconds 2]``.
It reserves its hugepages and gives them back.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.agent import AgentProcess, netconf
from tests.fixtures.ovs_dpdk import DpdkTestpmd, OvsDpdk, private_ovs_dpdk


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure(sock_a: str, sock_b: str, ovs: OvsDpdk, work: Path, args: Any) -> float:
    a = DpdkTestpmd(sock_a, server=True, log=work / "a.log", lcores="0,1")
    b = DpdkTestpmd(sock_b, server=False, log=work / "b.log", lcores="1,0")
    try:
        a.wait_for("testpmd>")
        b.wait_for("testpmd>")
        ovs.wait_link_up([p for p in ovs.ports() if p.startswith("vhu")])
        a.command(f"start tx_first {args.bursts}")
        b.command(f"start tx_first {args.bursts}")
        time.sleep(args.warmup)
        (rx_a0, _), (rx_b0, _) = a.stats(), b.stats()
        t0 = time.monotonic()
        time.sleep(args.seconds)
        (rx_a1, _), (rx_b1, _) = a.stats(), b.stats()
        elapsed = time.monotonic() - t0
        return ((rx_a1 - rx_a0) + (rx_b1 - rx_b0)) / elapsed
    finally:
        a.stop()
        b.stop()


def podwire_path(agent: AgentProcess, net: Any, client_port: str, root: Path) -> list[str]:
    from podwire.model import PortBinding, PortUpdate

    # B's port says client mode at each binding (a DEL gives it back unbound).
    binding = PortBinding(vif_type="vhostuser", vif_details={"vhostuser_mode": "client"})
    agent.backend.update_port(agent.ctx, client_port, PortUpdate(binding=binding))
    socks = []
    for cid, port in (("pw11bencha", None), ("pw11benchb", client_port)):
        conf = netconf(net.name)
        if port:
            conf = netconf(net.name, networks=[{"name": net.name, "port": port}])
            conf.pop("network")
        answer = agent.cni("ADD", conf, container_id=cid, netns="/proc/self/ns/net")
        if answer.code != 0:
            raise RuntimeError(f"ADD failed: {answer.stdout!r}")
        socks.append(answer.json["interfaces"][-1]["socketPath"])
    return socks


def podwire_del(agent: AgentProcess, net: Any) -> None:
    for cid in ("pw11bencha", "pw11benchb"):
        agent.cni("DEL", netconf(net.name), container_id=cid, netns="/proc/self/ns/net")


def hand_path(ovs: OvsDpdk, root: Path) -> list[str]:
    dir_a, dir_b = root / "hand-a", root / "hand-b"
    dir_a.mkdir()
    dir_b.mkdir()
    sock_a = dir_a / "vhuhanda"
    ovs.vsctl(
        "add-port", ovs.bridge, "vhuhanda", "--", "set", "Interface", "vhuhanda",
        "type=dpdkvhostuserclient", f"options:vhost-server-path={sock_a}",
    )  # fmt: skip
    ovs.vsctl("add-port", ovs.bridge, "vhuhandb", "--", "set", "Interface", "vhuhandb",
              "type=dpdkvhostuser")  # fmt: skip
    made = ovs.sock_dir / "vhuhandb"
    deadline = time.monotonic() + 5
    while not made.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    made.rename(dir_b / "vhuhandb")
    return [str(sock_a), str(dir_b / "vhuhandb")]


def hand_del(ovs: OvsDpdk, root: Path) -> None:
    ovs.vsctl("--if-exists", "del-port", "vhuhanda", "--", "--if-exists", "del-port", "vhuhandb")
    shutil.rmtree(root / "hand-a", ignore_errors=True)
    shutil.rmtree(root / "hand-b", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--bursts", type=int, default=8)
    args = parser.parse_args()

    from podwire.model import PortBinding, PortCreate

    base = Path(tempfile.mkdtemp(prefix="pw11b", dir="/tmp"))
    root = base / "s"
    root.mkdir()
    results: dict[str, list[float]] = {"podwire": [], "by_hand": []}
    with private_ovs_dpdk() as ovs:
        config = base / "agent.toml"
        config.write_text(
            f'[vhostuser]\nsocket_root = "{root}"\nbridge = "{ovs.bridge}"\n'
            f'ovs_db = "{ovs.remote}"\novs_socket_dir = "{ovs.sock_dir}"\n'
        )
        (base / "state").mkdir()
        agent = AgentProcess(
            state_dir=base / "state",
            socket=base / "agent.sock",
            extra_args=["--config", str(config)],
        )
        agent.start()
        try:
            net = agent.create_network("pw11bench", "198.18.115.0/24", datapath="vhostuser")
            port = agent.backend.create_port(
                agent.ctx,
                PortCreate(
                    network_id=net.id,
                    binding=PortBinding(
                        vif_type="vhostuser", vif_details={"vhostuser_mode": "client"}
                    ),
                ),
            )
            for round_ in range(args.rounds):
                order = ["podwire", "by_hand"] if round_ % 2 == 0 else ["by_hand", "podwire"]
                for path in order:
                    if path == "podwire":
                        socks = podwire_path(agent, net, port.id, root)
                    else:
                        socks = hand_path(ovs, root)
                    try:
                        pps = measure(socks[0], socks[1], ovs, base, args)
                    finally:
                        podwire_del(agent, net) if path == "podwire" else hand_del(ovs, root)
                    results[path].append(pps)
                    log(f"round {round_ + 1} {path}: {pps:,.0f} pps")
            agent.backend.delete_port(agent.ctx, port.id)
        finally:
            agent.stop()
            if agent._backend is not None:
                agent._backend.close()
    shutil.rmtree(base, ignore_errors=True)
    podwire, by_hand = statistics.median(results["podwire"]), statistics.median(results["by_hand"])
    print(
        json.dumps(
            {
                "bench": "vhostuser_pps",
                "forwarding": "testpmd io, A server / B client, OVS-DPDK action NORMAL",
                "rounds": args.rounds,
                "seconds": args.seconds,
                "bursts_in_flight": args.bursts * 2,
                "pps_podwire_median": round(podwire),
                "pps_by_hand_median": round(by_hand),
                "podwire_to_by_hand": round(podwire / by_hand, 3),
                "within_10_percent": abs(podwire / by_hand - 1) <= 0.10,
                "samples": {k: [round(v) for v in vs] for k, vs in results.items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
