"""Where an ADD and a DEL spend their time inside the agent.

Runs an in-process ``Agent`` (embedded backend, private state dir, the real
veth_bridge driver) and N ADD-then-DEL pairs in fresh network namespaces,
one at a time, collecting the per-stage timings the agent logs at debug
level on ``podwire.agent.stages``. Prints JSON: p50 and mean per stage and
in total, per verb. No HTTP, no shim: compare with bench/cni_latency.py for
what the transport adds.

Run as root: ``.venv/bin/python bench/agent_stages.py [--n 100] [--live 0]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.samples: dict[str, list[dict[str, float]]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        what, stages = record.stages  # type: ignore[attr-defined]
        self.samples.setdefault(what, []).append(stages)


def pct(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(0, min(len(ordered), rank) - 1)]


def summarize(samples: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = list(dict.fromkeys(k for s in samples for k in s))
    for name in [*names, "total"]:
        values = [sum(s.values()) if name == "total" else s.get(name, 0.0) for s in samples]
        out[name] = {
            "p50_ms": round(pct(values, 50), 3),
            "mean_ms": round(sum(values) / len(values), 3),
            "p99_ms": round(pct(values, 99), 3),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--live", type=int, default=0, help="attachments kept live meanwhile")
    parser.add_argument("--profile", help="write cProfile stats of the timed part here")
    args = parser.parse_args()

    from bench.harness.nft import DefaultTableGuard
    from podwire.agent.core import Agent
    from podwire.agent.types import AttachRequest, DetachRequest, NetworkSelection
    from podwire.config import Config
    from podwire.model import NetworkCreate, SubnetCreate, parse

    collect = Collect()
    stage_log = logging.getLogger("podwire.agent.stages")
    stage_log.setLevel(logging.DEBUG)
    stage_log.addHandler(collect)
    stage_log.propagate = False

    tmp = Path(tempfile.mkdtemp(prefix="pw-stages-"))
    config = Config(state_dir=tmp, host_id="bench-" + uuid.uuid4().hex[:6])
    table = DefaultTableGuard()  # the agent keeps its nftables table: removed at the end
    agent = Agent.from_config(config)
    namespaces: list[str] = []
    network_id = None
    live: list[tuple[str, str]] = []
    result: dict[str, Any] = {"load_average_at_start": list(os.getloadavg()), "n": args.n}
    try:
        ctx = agent.ctx
        net = agent.backend.create_network(
            ctx, parse(NetworkCreate, {"name": "pwstages" + uuid.uuid4().hex[:6]}, kind="network")
        )
        network_id = net.id
        base = random.randrange(0, 32) * 4
        agent.backend.create_subnet(
            ctx,
            parse(
                SubnetCreate,
                {"network_id": net.id, "cidr": f"198.19.{base}.0/22", "ip_version": 4},
                kind="subnet",
            ),
        )

        def new_netns() -> str:
            name = "pwst" + uuid.uuid4().hex[:8]
            subprocess.run(["ip", "netns", "add", name], check=True)
            namespaces.append(name)
            return name

        for _ in range(args.live):
            ns = new_netns()
            cid = uuid.uuid4().hex
            agent.attach(
                AttachRequest(
                    container_id=cid,
                    netns=f"/run/netns/{ns}",
                    networks=[NetworkSelection(network=net.id, ifname="eth0")],
                    frontend="cni",
                )
            )
            live.append((cid, ns))
        collect.samples.clear()
        cpu = time.process_time()
        wall = time.perf_counter()
        profile = None
        if args.profile:
            import cProfile

            profile = cProfile.Profile()
            profile.enable()
        for _ in range(args.n):
            ns = new_netns()
            cid = uuid.uuid4().hex
            path = f"/run/netns/{ns}"
            agent.attach(
                AttachRequest(
                    container_id=cid,
                    netns=path,
                    networks=[NetworkSelection(network=net.id, ifname="eth0")],
                    frontend="cni",
                )
            )
            agent.detach(
                DetachRequest(
                    container_id=cid, ifname="eth0", netns=path, network=net.id, frontend="cni"
                )
            )
            subprocess.run(["ip", "netns", "delete", ns], check=True)
            namespaces.remove(ns)
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile)
        # CPU of this whole process (agent threads incl. background deletes)
        # per ADD+DEL pair: what bounds throughput on a 2-core host.
        result["cpu_ms_per_pair"] = round((time.process_time() - cpu) / args.n * 1e3, 2)
        result["wall_ms_per_pair"] = round((time.perf_counter() - wall) / args.n * 1e3, 2)
        result.update({verb: summarize(s) for verb, s in collect.samples.items()})
        result["load_average_at_end"] = list(os.getloadavg())
    finally:
        for cid, ns in live:
            agent.detach(
                DetachRequest(
                    container_id=cid,
                    ifname="eth0",
                    netns=f"/run/netns/{ns}",
                    network=network_id or "",
                    frontend="cni",
                )
            )
        for ns in namespaces:
            subprocess.run(["ip", "netns", "delete", ns], check=False)
        if network_id is not None:
            from podwire.kinds.veth_bridge import bridge_name

            bridge = bridge_name(network_id)
            try:
                agent.drivers("veth_bridge").remove_bridge(bridge, force=True)  # type: ignore[attr-defined]
            except Exception as exc:  # a bench cleans up what it can
                print(f"cannot remove {bridge}: {exc}", file=sys.stderr)
            agent.backend.delete_network(agent.ctx, network_id)
        agent.close()
        table.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    time.sleep(0)
    sys.exit(main())
