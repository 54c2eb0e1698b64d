#!/usr/bin/env python3
"""Port create latency/throughput and 10,000-port listing, through the
Neutron API of a real `podwire server` subprocess and in-process (the
embedded backend called directly). Prints one JSON object.

Goals (issue 2): >= 300 ports/s with 8 API clients on SQLite; listing
10,000 ports in < 0.5 s.

API clients are separate processes (one httpx.Client each, keep-alive), so
the client side does not share a GIL; in-process clients are threads on one
backend object, as the API server's threadpool uses it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from podwire.backends.registry import open_backend  # noqa: E402
from podwire.config import load_config  # noqa: E402
from podwire.model import Context, NetworkCreate, PortCreate, SubnetCreate  # noqa: E402
from tests.fixtures.server import start_podwire_server  # noqa: E402


def summarize(latencies: list[float], wall: float) -> dict[str, Any]:
    ordered = sorted(latencies)
    p99_index = min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))
    return {
        "ports": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[p99_index] * 1000, 2),
        "ports_per_s": round(len(ordered) / wall, 1),
    }


# --- through the API ------------------------------------------------------------------


def _api_worker(url: str, token: str, network_id: str, count: int, start: Any, out: Any) -> None:
    headers = {"X-Auth-Token": token}
    body = {"port": {"network_id": network_id}}
    latencies = []
    with httpx.Client(base_url=url + "/v2.0", headers=headers, timeout=60) as client:
        client.get("/networks", params={"id": network_id})  # open the connection
        start.wait()
        t_begin = time.perf_counter()
        for _ in range(count):
            t0 = time.perf_counter()
            response = client.post("/ports", json=body)
            latencies.append(time.perf_counter() - t0)
            if response.status_code != 201:
                raise SystemExit(f"create failed: {response.status_code} {response.text}")
        t_end = time.perf_counter()
    out.put((latencies, t_begin, t_end))


def api_creates(url: str, token: str, network_id: str, clients: int, total: int) -> dict[str, Any]:
    ctx = mp.get_context("fork")
    start = ctx.Barrier(clients + 1)
    out = ctx.Queue()
    per_client = total // clients
    procs = [
        ctx.Process(target=_api_worker, args=(url, token, network_id, per_client, start, out))
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    start.wait()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        if p.exitcode != 0:
            raise SystemExit(f"an API client failed with exit code {p.exitcode}")
    latencies = [lat for r in results for lat in r[0]]
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    return summarize(latencies, wall)


def api_list(url: str, token: str, repeat: int) -> dict[str, Any]:
    """Time until the whole answer is received, and with the client's parse."""
    received, parsed = [], []
    count = 0
    with httpx.Client(base_url=url + "/v2.0", headers={"X-Auth-Token": token}, timeout=60) as c:
        for _ in range(repeat):
            t0 = time.perf_counter()
            response = c.get("/ports")
            t1 = time.perf_counter()
            if response.status_code != 200:
                raise SystemExit(f"list failed: {response.status_code} {response.text[:500]}")
            ports = orjson.loads(response.content)["ports"]
            parsed.append(time.perf_counter() - t0)
            received.append(t1 - t0)
            count = len(ports)
    return {
        "ports": count,
        "best_s": round(min(received), 3),
        "median_s": round(statistics.median(received), 3),
        "with_client_parse_best_s": round(min(parsed), 3),
        "with_client_parse_median_s": round(statistics.median(parsed), 3),
        "answer_bytes": len(response.content),
    }


# --- in-process ---------------------------------------------------------------------------


def inproc_creates(
    backend: Any, ctx: Context, network_id: str, threads: int, total: int
) -> dict[str, Any]:
    per_thread = total // threads
    barrier = threading.Barrier(threads + 1)
    results: list[tuple[list[float], float, float]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        latencies = []
        try:
            barrier.wait()
            t_begin = time.perf_counter()
            for _ in range(per_thread):
                t0 = time.perf_counter()
                backend.create_port(ctx, PortCreate(network_id=network_id))
                latencies.append(time.perf_counter() - t0)
            t_end = time.perf_counter()
            with lock:
                results.append((latencies, t_begin, t_end))
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    latencies = [lat for r in results for lat in r[0]]
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    return summarize(latencies, wall)


def inproc_list(backend: Any, ctx: Context, repeat: int) -> dict[str, Any]:
    times = []
    count = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        count = len(backend.list_ports(ctx))
        times.append(time.perf_counter() - t0)
    return {
        "ports": count,
        "best_s": round(min(times), 3),
        "median_s": round(statistics.median(times), 3),
    }


def fill_to(backend: Any, ctx: Context, network_id: str, size: int) -> None:
    have = len(backend.list_ports(ctx))
    for _ in range(size - have):
        backend.create_port(ctx, PortCreate(network_id=network_id))


def make_network(backend: Any, ctx: Context, name: str) -> str:
    net = backend.create_network(ctx, NetworkCreate(name=name))
    backend.create_subnet(ctx, SubnetCreate(network_id=net.id, cidr="198.18.0.0/16"))
    return net.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ports", type=int, default=800, help="ports per create run")
    parser.add_argument("--list-size", type=int, default=10_000)
    parser.add_argument("--list-repeat", type=int, default=5)
    parser.add_argument("--db-url", help="SQLAlchemy URL instead of SQLite (e.g. PostgreSQL)")
    parser.add_argument("--workers", type=int, default=1, help="podwire server --workers")
    args = parser.parse_args()

    report: dict[str, Any] = {
        "storage": "postgresql" if args.db_url else "sqlite",
        "cpus": os.cpu_count(),
        "ports_per_create_run": args.ports,
        "server_workers": args.workers,
        "goals": {"api_8_clients_ports_per_s": 300, "list_10000_s": 0.5},
    }

    with start_podwire_server(db_url=args.db_url, workers=args.workers) as server:
        token = server.tokens["alice"]
        ctx = Context(project_id=server.projects["alice"])
        # A second handle on the server's own database, to fill it quickly.
        config = load_config(
            None, state_dir=str(server.state_dir), **{"embedded.db_url": args.db_url}
        )
        filler = open_backend(config)
        try:
            network_id = make_network(filler, ctx, "bench-api")
            api: dict[str, Any] = {}
            api["create_1_client"] = api_creates(server.url, token, network_id, 1, args.ports)
            api["create_8_clients"] = api_creates(server.url, token, network_id, 8, args.ports)
            fill_to(filler, ctx, network_id, args.list_size)
            api["list"] = api_list(server.url, token, args.list_repeat)
            report["api"] = api
            # The same 10,000 ports listed by the backend itself, in-process.
            inproc_listing = inproc_list(filler, ctx, args.list_repeat)
        finally:
            filler.close()

    with tempfile.TemporaryDirectory(prefix="podwire-bench-") as tmp:
        config = load_config(None, state_dir=tmp, **{"embedded.db_url": args.db_url})
        backend = open_backend(config)
        try:
            ctx = Context(project_id="bench")
            network_id = make_network(backend, ctx, "bench-inproc")
            inproc: dict[str, Any] = {}
            inproc["create_1_thread"] = inproc_creates(backend, ctx, network_id, 1, args.ports)
            inproc["create_8_threads"] = inproc_creates(backend, ctx, network_id, 8, args.ports)
            inproc["list"] = inproc_listing
            report["in_process"] = inproc
        finally:
            backend.close()

    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
