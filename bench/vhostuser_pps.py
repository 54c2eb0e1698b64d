"""Packets per second through two vhost-user ports on OVS-DPDK: the path
podwire builds (two CNI ADDs through a real agent: A in server mode, B in
client mode) against the same path built by hand with ovs-vsctl
(dpdkvhostuserclient to A's socket, dpdkvhostuser for B, its socket moved
next to B's config), in the same run, on the same private OVS-DPDK: each
path on its own netdev bridge (action NORMAL), both built once.

Each path gets two dpdk-testpmd processes in io forwarding (A the vhost-user
server on its socket, B the client) that bounce ``--bursts`` bursts of 32
packets each between each other. Measurement windows alternate between the
two paths (only one pair forwards at a time; the other is stopped): the
figure is the packets A and B received per second over ``--seconds``, after
``--warmup``. The applications run as plain processes on the sockets (a
container adds nothing on the data path; tests/vhostuser/test_podman_vhostuser.py
proves the containers). Medians over ``--rounds``.

Prints one JSON object; progress on stderr. Run as root, alone on the
machine if the number matters (2 cores: OVS's PMD and the testpmds share
them): ``.venv/bin/python bench/vhostuser_pps.py [--rounds 10 --seconds 1.5]``.
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

# The harness the tests' fixtures use too; no dependency on the test package.
from bench.harness.agent import AgentProcess, netconf
from bench.harness.ovs_dpdk import (
    DpdkTestpmd,
    OvsDpdk,
    ovs_dpdk_missing,
    private_ovs_dpdk,
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Pair:
    """The applications on one path's sockets (A server, B client): two
    testpmds (``--layout two-apps``), or one testpmd forwarding between both
    ports (``one-app``: one busy thread fewer on 2 cores, less noise)."""

    def __init__(self, name: str, socks: list[str], work: Path, args: Any) -> None:
        self.name = name
        self.args = args
        self.ports: list[tuple[DpdkTestpmd, int]]
        if args.layout == "one-app":
            a = DpdkTestpmd(socks[0], server=True, log=work / f"{name}.log", second=socks[1])
            self.apps = [a]
            self.ports = [(a, 0), (a, 1)]
        else:
            a = DpdkTestpmd(socks[0], server=True, log=work / f"{name}-a.log", lcores="0,1")
            b = DpdkTestpmd(socks[1], server=False, log=work / f"{name}-b.log", lcores="1,0")
            self.apps = [a, b]
            self.ports = [(a, 0), (b, 0)]

    def ready(self) -> None:
        for app in self.apps:
            app.wait_for("testpmd>")

    def _received(self) -> int:
        return sum(app.stats(port)[0] for app, port in self.ports)

    def window(self) -> float:
        """pps received on A's and B's ports together over one window."""
        for app in self.apps:
            app.command(f"start tx_first {self.args.bursts}")
        try:
            time.sleep(self.args.warmup)
            rx0 = self._received()
            t0 = time.monotonic()
            time.sleep(self.args.seconds)
            rx1 = self._received()
            elapsed = time.monotonic() - t0
        finally:
            for app in self.apps:
                app.command("stop")
        return (rx1 - rx0) / elapsed

    def stop(self) -> None:
        for app in self.apps:
            app.stop()


CIDS = ("pw11bencha", "pw11benchb")


def podwire_path(agent: AgentProcess, net: Any, client_port: str) -> list[str]:
    socks = []
    for cid, port in zip(CIDS, (None, client_port), strict=True):
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
    for cid in CIDS:
        agent.cni("DEL", netconf(net.name), container_id=cid, netns="/proc/self/ns/net")


def hand_path(ovs: OvsDpdk, bridge: str, root: Path) -> list[str]:
    """What podwire does, by hand: the same OVS interface types and options."""
    ovs.vsctl("add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=netdev")
    dir_a, dir_b = root / "hand-a", root / "hand-b"
    dir_a.mkdir()
    dir_b.mkdir()
    sock_a = dir_a / "vhuhanda"
    ovs.vsctl(
        "add-port", bridge, "vhuhanda", "--", "set", "Interface", "vhuhanda",
        "type=dpdkvhostuserclient", f"options:vhost-server-path={sock_a}",
    )  # fmt: skip
    ovs.vsctl("add-port", bridge, "vhuhandb", "--", "set", "Interface", "vhuhandb",
              "type=dpdkvhostuser")  # fmt: skip
    made = ovs.sock_dir / "vhuhandb"
    deadline = time.monotonic() + 5
    while not made.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    made.rename(dir_b / "vhuhandb")
    return [str(sock_a), str(dir_b / "vhuhandb")]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--bursts", type=int, default=8)
    parser.add_argument("--layout", choices=["two-apps", "one-app"], default="two-apps")
    args = parser.parse_args()

    from podwire.model import PortBinding, PortCreate

    missing = ovs_dpdk_missing()
    if missing:
        sys.exit(f"vhostuser_pps: {missing} is missing")
    base = Path(tempfile.mkdtemp(prefix="pw11b", dir="/tmp"))
    root = base / "s"
    root.mkdir()
    results: dict[str, list[float]] = {"podwire": [], "by_hand": []}
    # OVS (256 MB) and four testpmds (128 MB each), in 2 MiB pages, plus slack.
    with private_ovs_dpdk(pages=512) as ovs:
        hand_bridge = "pw11hand"
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
        pairs: dict[str, Pair] = {}
        net: Any = None
        port: Any = None
        try:
            net = agent.create_network("pw11bench", "198.18.115.0/24", datapath="vhostuser")
            binding = PortBinding(vif_type="vhostuser", vif_details={"vhostuser_mode": "client"})
            port = agent.backend.create_port(
                agent.ctx, PortCreate(network_id=net.id, binding=binding)
            )
            pairs["podwire"] = Pair("podwire", podwire_path(agent, net, port.id), base, args)
            pairs["by_hand"] = Pair("by_hand", hand_path(ovs, hand_bridge, root), base, args)
            for pair in pairs.values():
                pair.ready()
            ovs.wait_link_up([p for p in ovs.ports() if p.startswith("vhu")])
            ovs.wait_link_up(["vhuhanda", "vhuhandb"])
            for round_ in range(args.rounds):
                order = ["podwire", "by_hand"] if round_ % 2 == 0 else ["by_hand", "podwire"]
                for name in order:
                    pps = pairs[name].window()
                    results[name].append(pps)
                    log(f"round {round_ + 1} {name}: {pps:,.0f} pps")
        finally:
            for pair in pairs.values():
                pair.stop()
            if net is not None:
                podwire_del(agent, net)
            ovs.vsctl("--if-exists", "del-br", hand_bridge)
            if port is not None:
                agent.backend.delete_port(agent.ctx, port.id)
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
                "layout": args.layout,
                "rounds": args.rounds,
                "seconds": args.seconds,
                "packets_in_flight": args.bursts * 32 * len(pairs_apps(args)),
                "pps_podwire_median": round(podwire),
                "pps_by_hand_median": round(by_hand),
                "podwire_to_by_hand": round(podwire / by_hand, 3),
                "within_10_percent": abs(podwire / by_hand - 1) <= 0.10,
                "samples": {k: [round(v) for v in vs] for k, vs in results.items()},
            },
            indent=1,
        )
    )


def pairs_apps(args: Any) -> list[str]:
    return ["a"] if args.layout == "one-app" else ["a", "b"]


if __name__ == "__main__":
    main()
