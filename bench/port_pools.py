"""Port pools: ADD latency on a pool hit against a pool miss (issue 12).

Prints one JSON object on stdout (progress on stderr). In one run, on the
embedded backend and on a real Neutron 29 with ML2/OVN (its own private
PostgreSQL, OVN NB/SB, northd, and a chassis: OVS userspace datapath +
ovn-controller), two real agent processes each: pools off (every ADD
creates its port: a miss) and pools on, filled before the timed ADDs (every
ADD takes a pre-created port: a hit; checked per ADD from the port's pool
mark). Each ADD runs through the real podwire-cni shim in a fresh network
namespace made outside the timed part; every ADD is then DELeted (not
timed). Reports p50/p90 per case, the hit/miss ratio of the p50s and the
goal (hit p50 at most 0.2 of miss p50 on Neutron), with the load average.

Run as root: ``.venv/bin/python bench/port_pools.py [--n 20] [--neutron-n 10]``
(``--no-neutron`` for the embedded backend only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.agent import AgentProcess, netconf, netns_path, short_tempdir  # noqa: E402
from tests.fixtures.common import unique  # noqa: E402

POOL_TAG = "podwire:purpose=pool"


def log(message: str) -> None:
    print(f"[port_pools {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def summary(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * 1000, 2),
        "min_ms": round(ordered[0] * 1000, 2),
    }


@contextlib.contextmanager
def agent_process(config_text: str) -> Iterator[AgentProcess]:
    base = short_tempdir("pwp")
    (base / "state").mkdir()
    config = base / "agent.toml"
    config.write_text(config_text)
    agent = AgentProcess(
        state_dir=base / "state",
        socket=base / "run" / "agent.sock",
        extra_args=["--config", str(config)],
    )
    try:
        agent.start(timeout=60)
        yield agent
    finally:
        agent.stop()
        if agent._backend is not None:
            with contextlib.suppress(Exception):
                agent._backend.close()
        shutil.rmtree(base, ignore_errors=True)


def wait_ready(agent: AgentProcess, count: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pools = agent.get("/v1/pools")["pools"]
        if sum(p["levels"]["ready"] for p in pools) >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the pool did not fill to {count} in {timeout:.0f} s")


def run_adds(agent: AgentProcess, network: str, n: int, port_of: Any) -> dict[str, Any]:
    """n timed ADDs (each in a fresh netns), then their DELs; hits counted
    from the attached port's pool mark."""
    samples: list[float] = []
    hits = 0
    done: list[tuple[str, str]] = []
    try:
        for _ in range(n):
            ns, cid = unique("pwp", 8), unique("pwp", 12)
            subprocess.run(["ip", "netns", "add", ns], check=True)
            done.append((ns, cid))
            started = time.perf_counter()
            answer = agent.cni("ADD", netconf(network), container_id=cid, netns=netns_path(ns))
            samples.append(time.perf_counter() - started)
            if answer.code != 0:
                raise RuntimeError(f"ADD failed: {answer.stdout!r}\n{agent.log()}")
            (record,) = [r for r in agent.attachments() if r["container_id"] == cid]
            hits += POOL_TAG in port_of(record["port_id"]).tags
    finally:
        for ns, cid in done:
            agent.cni("DEL", netconf(network), container_id=cid, netns=netns_path(ns))
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return {**summary(samples), "pool_hits": hits}


def pools_section(network: str, n: int) -> str:
    # min = n: every timed ADD finds a ready port; the take's refill runs
    # in the background meanwhile, as in use.
    return (
        "[pools]\nenabled = true\n"
        f"min = {n}\nmax = {n + 4}\nbatch = 4\nmax_creating = 4\nrefill_interval = 0.5\n"
        f'networks = ["{network}"]\n'
    )


def bench_embedded(n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for case, pools in (("miss", False), ("hit", True)):
        name = unique("pwp")
        cidr = f"198.19.{int(name[-4:], 16) % 250}.0/24"
        text = pools_section(name, n) if pools else ""
        with agent_process(text) as agent:
            agent.create_network(name, cidr)
            if pools:
                wait_ready(agent, n)
            log(f"embedded: {n} ADDs, pool {case}")

            def port_of(port_id: str, agent: AgentProcess = agent) -> Any:
                return agent.backend.get_port(agent.ctx, port_id)

            out[case] = run_adds(agent, name, n, port_of)
            net = agent.backend.list_networks(agent.ctx, {"name": [name]})[0]
            agent.delete_network(net.id)
    out["hit_over_miss_p50"] = round(out["hit"]["p50_ms"] / out["miss"]["p50_ms"], 3)
    return out


def bench_neutron(n: int) -> dict[str, Any]:
    from podwire.backends.neutron import NeutronBackend
    from podwire.model import Context, NetworkCreate, SubnetCreate
    from tests.fixtures import postgres
    from tests.fixtures.neutron import neutron_chassis_for, running_neutron

    admin_ctx = Context.admin("pw12-admin")
    # The session fixture's own generator, outside pytest.
    make_server = postgres.postgres_server._get_wrapped_function()
    server_fixture = contextlib.contextmanager(make_server)
    out: dict[str, Any] = {}
    with server_fixture() as pg:
        db_url = pg.url(pg.create_database(unique("pwp_neutron_", 8)))
        log("neutron: starting Neutron (ML2/OVN) and a chassis")
        with running_neutron(db_url) as api, neutron_chassis_for(api) as chassis:
            admin = NeutronBackend(api.sdk())
            try:
                for case, pools in (("miss", False), ("hit", True)):
                    name = unique("pwp")
                    net = admin.create_network(
                        admin_ctx, NetworkCreate(name=name, port_security_enabled=False)
                    )
                    admin.create_subnet(
                        admin_ctx, SubnetCreate(network_id=net.id, cidr="198.18.126.0/24")
                    )
                    text = (
                        f'backend = "neutron"\nhost_id = "{chassis.hostname}"\n'
                        f'[neutron]\nendpoint = "{api.url}"\n'
                        f'[ovn]\novs_db = "{chassis.ovs_remote}"\n'
                        f'integration_bridge = "{chassis.bridge}"\nbind_timeout = 30.0\n'
                    ) + (pools_section(name, n) if pools else "")
                    with agent_process(text) as agent:
                        if pools:
                            wait_ready(agent, n)
                        log(f"neutron: {n} ADDs, pool {case}")
                        out[case] = run_adds(
                            agent, name, n, lambda pid: admin.get_port(admin_ctx, pid)
                        )
                        if pools:
                            agent.get("/v1/pools")
                            import httpx

                            transport = httpx.HTTPTransport(uds=str(agent.socket))
                            with httpx.Client(
                                transport=transport, base_url="http://podwire", timeout=300
                            ) as client:
                                client.post("/v1/pools/drain")
                    for port in admin.list_ports(admin_ctx, {"network_id": [net.id]}):
                        admin.delete_port(admin_ctx, port.id)
                    admin.delete_network(admin_ctx, net.id)
            finally:
                admin.close()
        pg.drop_database(db_url.rsplit("/", 1)[-1])
    out["hit_over_miss_p50"] = round(out["hit"]["p50_ms"] / out["miss"]["p50_ms"], 3)
    out["goal_hit_at_most_0_2_of_miss"] = out["hit_over_miss_p50"] <= 0.2
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20, help="timed ADDs per embedded case")
    parser.add_argument("--neutron-n", type=int, default=10, help="timed ADDs per Neutron case")
    parser.add_argument("--no-neutron", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (network namespaces)")
    result: dict[str, Any] = {"load_average_before": [round(x, 2) for x in os.getloadavg()]}
    result["embedded"] = bench_embedded(args.n)
    if not args.no_neutron:
        result["neutron"] = bench_neutron(args.neutron_n)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
