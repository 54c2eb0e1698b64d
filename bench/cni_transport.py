"""What the agent's socket costs a CNI call, without the kernel's work: N
CNI ``VERSION`` requests as the shims send them (POST /v1/cni, X-CNI-*
headers base64, the config on the body) to a real agent (embedded backend),
one at a time and then ``--concurrency`` at once, raw bytes on a unix socket
from this process (no fork/exec). Prints JSON: round-trip p50/p99 and the
agent process's CPU per request (utime + stime from /proc).

VERSION is parsed, validated and answered by the agent's CNI handler like any
verb, so the figure is the transport (accept, read, parse, hand-offs, answer)
plus the handler's parsing; an ADD adds the attach on top.

Run as root: ``.venv/bin/python bench/cni_transport.py [--n 2000]``.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cni_latency import Agent, percentile

BODY = json.dumps({"cniVersion": "1.1.0", "name": "pwbench", "type": "podwire"}).encode()


def request() -> bytes:
    env = {"Command": "VERSION", "ContainerID": "pwbench", "Ifname": "eth0", "Path": "/opt/cni"}
    lines = ["POST /v1/cni HTTP/1.1", "Host: podwire", f"Content-Length: {len(BODY)}"]
    lines.append("X-CNI-Encoding: base64")
    lines += [f"X-CNI-{k}: {base64.b64encode(v.encode()).decode()}" for k, v in env.items()]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + BODY


def one(path: str, payload: bytes) -> float:
    began = time.perf_counter()
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(path)
        conn.sendall(payload)
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    elapsed = time.perf_counter() - began
    if b"x-cni-exit: 0" not in reply.lower():
        raise RuntimeError(f"unexpected answer: {reply[:300]!r}")
    return elapsed


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(agent: Agent, n: int, concurrency: int) -> dict[str, Any]:
    path, payload = str(agent.socket), request()
    cpu0, wall0 = cpu_s(agent.proc.pid), time.perf_counter()
    if concurrency == 1:
        samples = [one(path, payload) for _ in range(n)]
    else:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            samples = list(pool.map(lambda _: one(path, payload), range(n)))
    wall = time.perf_counter() - wall0
    cpu = cpu_s(agent.proc.pid) - cpu0
    ms = [s * 1000 for s in samples]
    return {
        "concurrency": concurrency,
        "n": n,
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "per_s": round(n / wall, 1),
        "agent_cpu_ms_per_request": round(cpu * 1000 / n, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pwh-transport-"))
    agent = Agent(tmp, [])
    try:
        result = {
            "bench": "cni_transport",
            "load_average_at_start": os.getloadavg(),
            "sequential": run(agent, args.n, 1),
            "concurrent": run(agent, args.n, args.concurrency),
            "load_average_at_end": os.getloadavg(),
        }
    finally:
        agent.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
