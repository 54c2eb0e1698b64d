"""How fast "try again later" arrives: N CNI ADDs at once against a real
agent (embedded backend, real namespaces); the agent admits
max_in_flight + max_queued of them and must refuse the rest with code 11
without waiting behind the work it refuses (issue 14, goal: p99 under 100 ms
with 200 at once).

The requests are sent as the shims send them (POST /v1/cni on the agent's
unix socket, X-CNI-* headers base64), all connections opened first and the
requests then written at once from one asyncio loop in this process, so
fork/exec of 200 shims does not blur the agent's number. Each answer's time
is from the moment its request was written. Prints one JSON object on
stdout; progress goes to stderr. Namespaces are made before and removed
after the timed part; every admitted ADD is deleted again.

Run as root: ``.venv/bin/python bench/cni_refusal.py [--n 200] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cni_latency import Agent, percentile, random_subnet


def log(message: str) -> None:
    print(f"[cni_refusal {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def request(command: str, container_id: str, netns: str, config: dict[str, Any]) -> bytes:
    body = json.dumps(config).encode()
    env = {
        "Command": command,
        "ContainerID": container_id,
        "Netns": netns,
        "Ifname": "eth0",
        "Path": "/opt/cni/bin",
    }
    lines = ["POST /v1/cni HTTP/1.1", "Host: podwire", f"Content-Length: {len(body)}"]
    lines.append("X-CNI-Encoding: base64")
    lines += [f"X-CNI-{k}: {base64.b64encode(v.encode()).decode()}" for k, v in env.items()]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def one(socket: str, payload: bytes, start: asyncio.Event) -> tuple[float, int, int]:
    """(seconds from write to answer, X-CNI-Exit, CNI code or 0)."""
    reader, writer = await asyncio.open_unix_connection(socket, limit=1 << 20)
    await start.wait()
    began = time.perf_counter()
    writer.write(payload)
    await writer.drain()
    raw = await reader.read()
    elapsed = time.perf_counter() - began
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    exit_code = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"x-cni-exit:")
    )
    code = json.loads(body).get("code", 0) if exit_code else 0
    return elapsed, exit_code, code


async def burst(socket: str, payloads: list[bytes]) -> list[tuple[float, int, int]]:
    start = asyncio.Event()
    tasks = [asyncio.create_task(one(socket, p, start)) for p in payloads]
    await asyncio.sleep(0.5)  # every connection open before the first request
    start.set()
    return await asyncio.gather(*tasks)


def stats(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"n": 0}
    ms = [s * 1000 for s in samples]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="pw14-refusal-"))
    agent = Agent(tmp, [])
    names: list[str] = []
    rounds = []
    try:
        network = "pw14b" + uuid.uuid4().hex[:6]
        agent.cli("network", "create", network, "--subnet", random_subnet(22))
        config = {"cniVersion": "1.1.0", "name": network, "type": "podwire", "network": network}
        for r in range(args.rounds):
            names = [f"pw14b{uuid.uuid4().hex[:8]}" for _ in range(args.n)]
            for name in names:
                subprocess.run(["ip", "netns", "add", name], check=True)
            ids = [f"pw14b{r}{i:04d}" for i in range(args.n)]
            payloads = [
                request("ADD", cid, f"/var/run/netns/{ns}", config)
                for cid, ns in zip(ids, names, strict=True)
            ]
            log(f"round {r + 1}: {args.n} ADDs at once")
            answers = asyncio.run(burst(str(agent.socket), payloads))
            refused = [t for t, _, code in answers if code == 11]
            done = [t for t, exit_code, _ in answers if exit_code == 0]
            others = sorted({code for _, exit_code, code in answers if exit_code and code != 11})
            rounds.append(
                {"refused_11": stats(refused), "succeeded": stats(done), "other_codes": others}
            )
            log(f"round {r + 1}: {rounds[-1]}")
            deletes = [
                request("DEL", cid, f"/var/run/netns/{ns}", config)
                for (cid, ns, (_, exit_code, _)) in zip(ids, names, answers, strict=True)
                if exit_code == 0
            ]
            for i in range(0, len(deletes), 16):
                asyncio.run(burst(str(agent.socket), deletes[i : i + 16]))
            for name in names:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
            names = []
        agent.cli("network", "delete", network)
        all_refused = [r["refused_11"]["p99_ms"] for r in rounds if r["refused_11"]["n"]]
        print(
            json.dumps(
                {
                    "bench": "cni_refusal",
                    "n_at_once": args.n,
                    "admitted": "max_in_flight + max_queued (defaults 16 + 80)",
                    "rounds": rounds,
                    "refused_p99_ms_worst_round": max(all_refused) if all_refused else None,
                    "goal_p99_ms": 100,
                },
                indent=2,
            )
        )
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        agent.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
