"""CNI latency: podwire against the reference bridge + host-local plugins.

Prints one JSON object on stdout (progress goes to stderr). In one run, for
each plugin set-up: N ADD-then-DEL pairs, each in a fresh network namespace,
first one at a time, then CONCURRENCY at once: p50/p99 per verb and mode and
pairs per second; podwire's ratio to the reference; then, for podwire through
the compiled shim, LIVE attachments kept at once: the time to reach them, the
agent's RSS, and the ADD p99 of the last 100 against the first 100.

Every plugin is run exactly as a runtime runs it (fork/exec, CNI environment,
config on stdin), by the same harness, so the process start of each plugin is
part of its number, as it is for podman. Namespaces are created and deleted
outside the timed part.

Run as root: ``.venv/bin/python bench/cni_latency.py [--n 200] [--live 1000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path("/usr/lib/cni")
CNI_VERSION = "1.0.0"


def log(message: str) -> None:
    print(f"[cni_latency {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:6]


def random_subnet(prefix_len: int) -> str:
    """A random subnet inside 198.18.0.0/15, so concurrent runs rarely meet."""
    size = 1 << (32 - prefix_len)
    base = (198 << 24) | (18 << 16)
    offset = random.randrange((1 << 17) // size) * size
    value = base + offset
    return f"{value >> 24}.{(value >> 16) & 255}.{(value >> 8) & 255}.{value & 255}/{prefix_len}"


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 200 samples is the 2nd largest)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(samples: list[float]) -> dict[str, float | int]:
    if not samples:
        return {"count": 0}
    return {
        "count": len(samples),
        "p50_ms": round(percentile(samples, 50) * 1000, 2),
        "p99_ms": round(percentile(samples, 99) * 1000, 2),
        "mean_ms": round(sum(samples) / len(samples) * 1000, 2),
        "max_ms": round(max(samples) * 1000, 2),
    }


# ---------------------------------------------------------------- namespaces


class Namespaces:
    """Named netns made outside the timed part; all removed at the end."""

    def __init__(self) -> None:
        self.live: set[str] = set()
        self.lock = threading.Lock()

    def create(self) -> str:
        name = unique("pwb")
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        with self.lock:
            self.live.add(name)
        return name

    def delete(self, name: str) -> None:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)
        with self.lock:
            self.live.discard(name)

    def delete_all(self) -> None:
        for name in list(self.live):
            self.delete(name)


# ---------------------------------------------------------------- plugin set-ups


@dataclass
class Setup:
    """One column of the results: a plugin binary and its network config."""

    name: str
    plugin: Path
    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def call(self, command: str, container_id: str, netns: str) -> float:
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": f"/var/run/netns/{netns}",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(REFERENCE_DIR),
            **self.env,
        }
        stdin = json.dumps(self.config).encode()
        start = time.perf_counter()
        proc = subprocess.run([str(self.plugin)], input=stdin, env=env, capture_output=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            self.errors.append(
                f"{command} {container_id}: exit {proc.returncode}: "
                f"{proc.stdout.decode(errors='replace')[:300]} "
                f"{proc.stderr.decode(errors='replace')[:300]}"
            )
        return elapsed


def run_pairs(setup: Setup, namespaces: Namespaces, n: int, workers: int) -> dict[str, Any]:
    """N ADD-then-DEL pairs, ``workers`` at once, in namespaces made beforehand
    (the runtime's work, not the plugin's), so the wall time is plugin time."""
    netns_list = [namespaces.create() for _ in range(n)]
    errors_before = len(setup.errors)

    def one(netns: str) -> tuple[float, float]:
        container_id = uuid.uuid4().hex
        return setup.call("ADD", container_id, netns), setup.call("DEL", container_id, netns)

    start = time.perf_counter()
    try:
        if workers == 1:
            results = [one(netns) for netns in netns_list]
        else:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(one, netns_list))
        wall = time.perf_counter() - start
    finally:
        for netns in netns_list:
            namespaces.delete(netns)
    return {
        "add": summary([add for add, _ in results]),
        "del": summary([delete for _, delete in results]),
        "wall_s": round(wall, 3),
        "pairs_per_s": round(n / wall, 2),
        "errors": len(setup.errors) - errors_before,
    }


def reference_setup(tmp: Path) -> Setup:
    bridge = unique("pwlref")
    config = {
        "cniVersion": CNI_VERSION,
        "name": unique("pwbref-net-"),
        "type": "bridge",
        "bridge": bridge,
        "isGateway": False,
        "ipMasq": False,
        "ipam": {
            "type": "host-local",
            "subnet": random_subnet(20),
            "dataDir": str(tmp / "host-local"),
        },
    }
    return Setup("reference", REFERENCE_DIR / "bridge", config)


# ---------------------------------------------------------------- the podwire agent


class Agent:
    """A private podwire agent on the embedded backend: own state dir, own socket."""

    def __init__(self, tmp: Path, extra_args: list[str]) -> None:
        self.state_dir = tmp / "agent-state"
        self.socket = tmp / "agent.sock"
        self.log_path = tmp / "agent.log"
        podwire = shutil.which("podwire") or str(Path(sys.executable).parent / "podwire")
        self.podwire = podwire
        argv = [
            podwire,
            "agent",
            "--state-dir",
            str(self.state_dir),
            "--socket",
            str(self.socket),
            *extra_args,
        ]
        self.state_dir.mkdir()
        self.log_file = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the agent
        self.proc = subprocess.Popen(argv, stdout=self.log_file, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        transport = httpx.HTTPTransport(uds=str(self.socket))
        with httpx.Client(transport=transport, base_url="http://podwire", timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the agent exited: {self.log_path.read_text()[-2000:]}")
                if self.socket.exists():
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get("/v1/status").status_code == 200:
                            return
                time.sleep(0.05)
        raise RuntimeError(f"the agent did not answer within {timeout}s")

    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            [self.podwire, "--agent-socket", str(self.socket), *args],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"podwire {' '.join(args)}: {proc.stderr or proc.stdout}")
        return proc.stdout

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def podwire_setups(agent: Agent, c_shim: Path | None, python: bool) -> tuple[str, list[Setup]]:
    network = unique("pwbnet")
    agent.cli("network", "create", network, "--subnet", random_subnet(20))
    config = {
        "cniVersion": CNI_VERSION,
        "name": network,
        "type": "podwire",
        "network": network,
        "agentSocket": str(agent.socket),
    }
    setups = []
    if c_shim is not None:
        setups.append(Setup("podwire_c", c_shim, config))
    if python:
        script = shutil.which("podwire-cni") or str(Path(sys.executable).parent / "podwire-cni")
        setups.append(Setup("podwire_python", Path(script), config))
    return network, setups


def build_c_shim(tmp: Path) -> Path | None:
    dest = tmp / "podwire-cni"
    proc = subprocess.run(
        ["make", "-s", "-C", str(REPO / "shim"), f"BIN={dest}"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        log(f"cannot build the C shim, skipping its column: {proc.stderr.strip()}")
        return None
    return dest


# ---------------------------------------------------------------- live attachments


def live_attachments(
    setup: Setup, agent: Agent, namespaces: Namespaces, count: int, workers: int
) -> dict[str, Any]:
    """``count`` attachments kept at once, then all deleted."""
    rss_before = agent.rss_mb()
    done: list[tuple[str, str, float]] = []
    lock = threading.Lock()
    errors_before = len(setup.errors)

    log(f"  creating {count} namespaces")
    netns_list = [namespaces.create() for _ in range(count)]

    def add_one(netns: str) -> None:
        container_id = uuid.uuid4().hex
        took = setup.call("ADD", container_id, netns)
        with lock:
            done.append((container_id, netns, took))
            if len(done) % 100 == 0:
                log(f"  {len(done)} live attachments")

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(add_one, netns_list))
    reach = time.perf_counter() - start
    rss = agent.rss_mb()
    add_errors = len(setup.errors) - errors_before
    adds = [took for _, _, took in done]

    def del_one(item: tuple[str, str, float]) -> float:
        container_id, netns, _ = item
        return setup.call("DEL", container_id, netns)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        dels = list(pool.map(del_one, done))
    teardown = time.perf_counter() - start
    for netns in netns_list:
        namespaces.delete(netns)
    return {
        "attachments": count,
        "concurrency": workers,
        "seconds_to_reach": round(reach, 2),
        "add_errors": add_errors,
        "agent_rss_mb_before": rss_before,
        "agent_rss_mb": rss,
        "add_first_100": summary(adds[:100]),
        "add_last_100": summary(adds[-100:]),
        "add_p99_last_over_first": (
            round(percentile(adds[-100:], 99) / percentile(adds[:100], 99), 2)
            if len(adds) >= 200
            else None
        ),
        "del_all_seconds": round(teardown, 2),
        "del": summary(dels),
    }


# ---------------------------------------------------------------- the run


def ratios(podwire: dict[str, Any], reference: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for mode in ("sequential", "concurrent"):
        for verb in ("add", "del"):
            for stat in ("p50_ms", "p99_ms"):
                ours = podwire[mode][verb].get(stat)
                theirs = reference[mode][verb].get(stat)
                key = f"{mode}_{verb}_{stat[:-3]}"
                out[key] = round(ours / theirs, 3) if ours and theirs else None
        ours_tp = podwire[mode]["pairs_per_s"]
        theirs_tp = reference[mode]["pairs_per_s"]
        out[f"{mode}_throughput"] = round(ours_tp / theirs_tp, 3) if ours_tp and theirs_tp else None
    return out


def goals(result: dict[str, Any], column: str) -> dict[str, bool | None]:
    r = result["ratio_to_reference"].get(column)
    if not r:
        return {}
    out: dict[str, bool | None] = {
        "add_del_p50_at_most_half": all(
            r[f"{m}_{v}_p50"] is not None and r[f"{m}_{v}_p50"] <= 0.5
            for m in ("sequential", "concurrent")
            for v in ("add", "del")
        ),
        "p99_no_worse": all(
            r[f"{m}_{v}_p99"] is not None and r[f"{m}_{v}_p99"] <= 1.0
            for m in ("sequential", "concurrent")
            for v in ("add", "del")
        ),
        "concurrent_throughput_at_least_twice": (
            r["concurrent_throughput"] is not None and r["concurrent_throughput"] >= 2.0
        ),
    }
    live = result.get("live")
    if live:
        out["live_1000_under_60s"] = (
            live["attachments"] >= 1000 and live["seconds_to_reach"] < 60 and not live["add_errors"]
        )
        out["agent_under_150mb"] = live["agent_rss_mb"] < 150
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="ADD/DEL pairs per mode")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--live", type=int, default=1000, help="live attachments (0: skip)")
    parser.add_argument("--no-python-shim", action="store_true", help="skip the Python column")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--no-podwire", action="store_true", help="only the reference column")
    parser.add_argument(
        "--agent-arg",
        action="append",
        default=[],
        help="extra argument for `podwire agent` (repeat), e.g. --agent-arg=--backend=ovn",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("cni_latency: run as root (network namespaces)", file=sys.stderr)
        return 2

    result: dict[str, Any] = {
        "benchmark": "cni_latency",
        "n": args.n,
        "concurrency": args.concurrency,
        "host": {"cpus": os.cpu_count(), "kernel": platform.release()},
        "columns": {},
        "ratio_to_reference": {},
    }
    namespaces = Namespaces()
    tmp = Path(tempfile.mkdtemp(prefix="pw-bench-"))
    agent: Agent | None = None
    setups: list[Setup] = []
    network = None
    try:
        c_shim = build_c_shim(tmp)
        if not args.no_reference:
            setups.append(reference_setup(tmp))
        if not args.no_podwire:
            log("starting a private podwire agent")
            started = time.perf_counter()
            agent = Agent(tmp, args.agent_arg)
            result["agent_start_s"] = round(time.perf_counter() - started, 2)
            network, ours = podwire_setups(agent, c_shim, not args.no_python_shim)
            setups.extend(ours)
        # Warm-up: one pair each, so first-call costs (bridge creation, imports)
        # are not counted in either column.
        for setup in setups:
            run_pairs(setup, namespaces, 2, 1)
        for mode, workers in (("sequential", 1), ("concurrent", args.concurrency)):
            for setup in setups:
                log(f"{setup.name}: {args.n} ADD/DEL pairs, {mode} ({workers} at once)")
                column = result["columns"].setdefault(setup.name, {})
                column[mode] = run_pairs(setup, namespaces, args.n, workers)
        for setup in setups:
            if setup.errors:
                result["columns"][setup.name]["first_errors"] = setup.errors[:5]
        if "reference" in result["columns"]:
            for name, column in result["columns"].items():
                if name != "reference":
                    result["ratio_to_reference"][name] = ratios(
                        column, result["columns"]["reference"]
                    )
        c_setup = next((s for s in setups if s.name == "podwire_c"), None)
        if args.live and c_setup is not None and agent is not None:
            log(f"podwire_c: {args.live} live attachments, {args.concurrency} at once")
            result["live"] = live_attachments(
                c_setup, agent, namespaces, args.live, args.concurrency
            )
        result["goals"] = goals(result, "podwire_c")
    finally:
        log("cleaning up")
        namespaces.delete_all()
        if agent is not None:
            if network is not None:
                with contextlib.suppress(Exception):
                    agent.cli("network", "delete", network)
            agent.stop()
        for setup in setups:
            if setup.name == "reference":
                subprocess.run(
                    ["ip", "link", "delete", setup.config["bridge"]],
                    check=False,
                    capture_output=True,
                )
        shutil.rmtree(tmp, ignore_errors=True)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
