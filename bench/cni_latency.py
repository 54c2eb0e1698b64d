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

With ``--floor ../shared/floor/floor.c`` a column for the kernel's floor
(raw rtnetlink, exec'd per verb by the same harness) runs alternately with
the others, with podwire's and the reference's ratios to it, and issue 13's
goals are judged from this one run (``goals_issue13``). ``--plot FILE``
writes a PNG of every column's latency distributions (bench/plot_latency.py).

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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # bench.harness, also when imported by a sibling bench
    sys.path.insert(0, str(REPO))
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
    # (mode, verb) -> every latency measured, in seconds (for --plot)
    samples: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    # The plugin's daemon (podwire's agent), whose CPU each mode reports.
    daemon_pid: int | None = None

    def call(self, command: str, container_id: str, netns: str) -> float:
        return self.call_with_output(command, container_id, netns)[0]

    def argv(self, command: str, container_id: str, netns: str) -> list[str]:
        return [str(self.plugin)]

    def call_with_output(self, command: str, container_id: str, netns: str) -> tuple[float, bytes]:
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
        argv = self.argv(command, container_id, netns)
        start = time.perf_counter()
        proc = subprocess.run(argv, input=stdin, env=env, capture_output=True)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            self.errors.append(
                f"{command} {container_id}: exit {proc.returncode}: "
                f"{proc.stdout.decode(errors='replace')[:300]} "
                f"{proc.stderr.decode(errors='replace')[:300]}"
            )
        return elapsed, proc.stdout


class FloorSetup(Setup):
    """The kernel's floor (../shared/floor/floor.c: raw rtnetlink, no
    library) exec'd once per verb by this same harness, exactly like a
    plugin: ``floor add NSPATH HOSTIF IDX`` / ``floor del HOSTIF``."""

    def __init__(self, binary: Path, bridge: str) -> None:
        super().__init__("floor_exec", binary, {"cniVersion": CNI_VERSION, "name": "floor"})
        self.env = {"PF_BRIDGE": bridge}
        self._names: dict[str, tuple[str, int]] = {}
        self._lock = threading.Lock()
        self._next = 0
        # Host ends unique to this run (two benches may run side by side).
        self._tag = uuid.uuid4().hex[:4]

    def argv(self, command: str, container_id: str, netns: str) -> list[str]:
        with self._lock:
            if container_id not in self._names:
                self._next += 1
                self._names[container_id] = (f"pwf{self._tag}{self._next:x}", self._next)
            host_if, idx = self._names[container_id]
            if command == "DEL":
                del self._names[container_id]
        if command == "ADD":
            return [str(self.plugin), "add", f"/var/run/netns/{netns}", host_if, str(idx)]
        return [str(self.plugin), "del", host_if]


def floor_setup(source: Path, tmp: Path) -> FloorSetup:
    binary = tmp / "floor"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(source)], check=True)
    bridge = unique("pwlfl")
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    return FloorSetup(binary, bridge)


MAX_ERRORS = 5


class ColumnBroken(Exception):
    """A plugin set-up fails call after call."""


def run_pairs(
    setup: Setup, namespaces: Namespaces, n: int, workers: int, mode: str | None = None
) -> dict[str, Any]:
    """N ADD-then-DEL pairs, ``workers`` at once, in namespaces made beforehand
    (the runtime's work, not the plugin's), so the wall time is plugin time."""
    netns_list = [namespaces.create() for _ in range(n)]
    errors_before = len(setup.errors)

    def one(netns: str) -> tuple[float, float]:
        container_id = uuid.uuid4().hex
        if len(setup.errors) - errors_before >= MAX_ERRORS:
            raise ColumnBroken(f"{MAX_ERRORS} failed calls; last: {setup.errors[-1]}")
        return setup.call("ADD", container_id, netns), setup.call("DEL", container_id, netns)

    cpu_before = cpu_ticks(setup.daemon_pid)
    start = time.perf_counter()
    try:
        if workers == 1:
            results = [one(netns) for netns in netns_list]
        else:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(one, netns_list))
        wall = time.perf_counter() - start
        cpu_after = cpu_ticks(setup.daemon_pid)
    except ColumnBroken as exc:
        # A broken set-up (e.g. OVN not binding: 15 s per ADD) would hold the
        # run for an hour; its column says why instead.
        log(f"{setup.name}: giving up: {exc}")
        return {"aborted": str(exc)[:500], "errors": len(setup.errors) - errors_before}
    finally:
        for netns in netns_list:
            namespaces.delete(netns)
    if mode is not None:
        setup.samples[(mode, "ADD")] = [add for add, _ in results]
        setup.samples[(mode, "DEL")] = [delete for _, delete in results]
    return {
        "add": summary([add for add, _ in results]),
        "del": summary([delete for _, delete in results]),
        "wall_s": round(wall, 3),
        "pairs_per_s": round(n / wall, 2),
        **cpu_use(cpu_before, cpu_after, wall),
        "errors": len(setup.errors) - errors_before,
    }


def cpu_ticks(pid: int | None) -> tuple[int, int, int | None]:
    """(busy, total) jiffies of the whole machine, and the process's own
    (utime + stime of all its threads), from /proc."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    own = None
    if pid is not None:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat") as proc:
                parts = proc.read().rsplit(")", 1)[1].split()
            own = int(parts[11]) + int(parts[12])
    return sum(fields) - idle, sum(fields), own


def cpu_use(
    before: tuple[int, int, int | None], after: tuple[int, int, int | None], wall: float
) -> dict[str, float]:
    """Cores in use during the mode: the machine's, and the daemon's."""
    busy, total = after[0] - before[0], after[1] - before[1]
    out = {"machine_busy_cores": round((os.cpu_count() or 1) * busy / max(1, total), 2)}
    if before[2] is not None and after[2] is not None:
        hz = os.sysconf("SC_CLK_TCK")
        out["daemon_cores"] = round((after[2] - before[2]) / hz / wall, 2)
    return out


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
    """A private podwire agent: own state dir, own socket (embedded backend
    unless ``extra_args`` say otherwise)."""

    def __init__(self, tmp: Path, extra_args: list[str]) -> None:
        tmp.mkdir(exist_ok=True)
        self.state_dir = tmp / "agent-state"
        self.socket = tmp / "agent.sock"
        self.log_path = tmp / "agent.log"
        from bench.harness.nft import DefaultTableGuard

        # The agent keeps its nftables table when it stops: removed at stop().
        self._table = DefaultTableGuard()
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
        self._table.remove()


def podwire_setups(
    agent: Agent, c_shim: Path | None, python: bool, prefix: str = "podwire"
) -> tuple[str, list[Setup]]:
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
        setups.append(Setup(f"{prefix}_c", c_shim, config, daemon_pid=agent.proc.pid))
    if python:
        setups.append(
            Setup(
                f"{prefix}_python",
                python_shim(agent.socket.parent),
                config,
                daemon_pid=agent.proc.pid,
            )
        )
    return network, setups


def python_shim(tmp: Path) -> Path:
    """The Python shim as `make -C shim install` installs it without a C
    compiler: shim.py (stdlib only) run by the system python3 with -SI."""
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    script = tmp / "podwire-py"
    source = (REPO / "podwire" / "frontends" / "cni" / "shim.py").read_text()
    script.write_text(f"#!{python} -SI\n{source}")
    script.chmod(0o755)
    return script


def build_c_shim(tmp: Path) -> Path | None:
    dest = tmp / "podwire-cni"
    proc = subprocess.run(
        ["make", "-s", "-C", str(REPO / "shim"), f"BIN={dest}"], capture_output=True, text=True
    )
    if proc.returncode != 0:
        log(f"cannot build the C shim, skipping its column: {proc.stderr.strip()}")
        return None
    return dest


# ---------------------------------------------------------------- first packet

# Started in the new container's netns before its ADD (so that its own start
# is not timed), it waits for "go" on stdin, sent when ADD has returned (a
# container's process starts then), then sends a UDP probe to the peer every
# half millisecond and prints the CLOCK_MONOTONIC time of the first echo.
_PROBER = """
import select, socket, sys, time
peer = (sys.argv[1], 7007)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
print("ready", flush=True)
sys.stdin.readline()
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        s.sendto(b"probe", peer)
    except OSError:
        time.sleep(0.0005)
        continue
    if select.select([s], [], [], 0.0005)[0]:
        try:
            s.recv(16)
        except OSError:
            continue
        print(repr(time.monotonic()), flush=True)
        break
"""
_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 7007))
while True:
    data, addr = s.recvfrom(64)
    s.sendto(data, addr)
"""


def _first_ipv4(result: bytes) -> str:
    for ip in json.loads(result).get("ips", []):
        if ":" not in ip["address"]:
            return str(ip["address"]).split("/")[0]
    raise RuntimeError("the ADD result has no IPv4 address")


def first_packet(setup: Setup, namespaces: Namespaces, samples: int) -> dict[str, Any]:
    """Time from ADD returning to the first packet answered by a peer on the
    same network: what a container started right after ADD waits for."""
    python = shutil.which("python3") or sys.executable
    peer_ns = namespaces.create()
    peer_id = uuid.uuid4().hex
    echo = None
    deltas: list[float] = []
    try:
        _, out = setup.call_with_output("ADD", peer_id, peer_ns)
        peer_ip = _first_ipv4(out)
        echo = subprocess.Popen(["ip", "netns", "exec", peer_ns, python, "-S", "-I", "-c", _ECHO])
        for _ in range(samples):
            netns = namespaces.create()
            container_id = uuid.uuid4().hex
            prober = subprocess.Popen(
                ["ip", "netns", "exec", netns, python, "-S", "-I", "-c", _PROBER, peer_ip],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert prober.stdout is not None and prober.stdin is not None
                prober.stdout.readline()  # "ready"
                setup.call("ADD", container_id, netns)
                added = time.monotonic()
                prober.stdin.write("go\n")
                prober.stdin.flush()
                line = prober.stdout.readline().strip()
                if line:
                    deltas.append(float(line) - added)
                else:
                    setup.errors.append(f"first packet: no answer from {peer_ip} within 30 s")
            finally:
                prober.kill()
                prober.wait()
                setup.call("DEL", container_id, netns)
                namespaces.delete(netns)
    finally:
        if echo is not None:
            echo.kill()
            echo.wait()
        setup.call("DEL", peer_id, peer_ns)
        namespaces.delete(peer_ns)
    return {
        "samples": len(deltas),
        "p50_ms": round(percentile(deltas, 50) * 1000, 2) if deltas else None,
        "max_ms": round(max(deltas) * 1000, 2) if deltas else None,
        "min_ms": round(min(deltas) * 1000, 2) if deltas else None,
    }


# ---------------------------------------------------------------- live attachments


def live_attachments(
    setup: Setup, agent: Agent | None, namespaces: Namespaces, count: int, workers: int
) -> dict[str, Any]:
    """``count`` attachments kept at once, then all deleted (``agent``: whose
    RSS to report, None for a plugin without a daemon)."""
    rss_before = agent.rss_mb() if agent is not None else None
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
    rss = agent.rss_mb() if agent is not None else None
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
        if "aborted" in podwire[mode] or "aborted" in reference[mode]:
            continue
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
    if not r or len(r) < 10:
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


def goals_issue13(result: dict[str, Any], column: str) -> dict[str, bool | None]:
    """Issue 13's goals: ratios to the reference and to the exec'd floor
    measured in this run."""
    ref = result["ratio_to_reference"].get(column) or {}
    floor = (result.get("ratio_to_floor") or {}).get(column) or {}

    def at_most(ratios: dict[str, Any], key: str, limit: float) -> bool | None:
        value = ratios.get(key)
        return None if value is None else value <= limit

    out: dict[str, bool | None] = {
        "sequential_add_p50_at_most_2x_exec_floor": at_most(floor, "sequential_add_p50", 2.0),
        "sequential_add_p50_at_most_half_reference": at_most(ref, "sequential_add_p50", 0.5),
        "sequential_del_p50_at_most_half_reference": at_most(ref, "sequential_del_p50", 0.5),
        "concurrent_throughput_at_least_2x_reference": (
            None
            if ref.get("concurrent_throughput") is None
            else ref["concurrent_throughput"] >= 2.0
        ),
        "concurrent_add_p99_no_worse_than_reference": at_most(ref, "concurrent_add_p99", 1.0),
    }
    live = result.get("live")
    if live:
        ratio = live.get("add_p99_last_over_first")
        out["live_p99_last_100_at_most_1_5x_first_100"] = None if ratio is None else ratio <= 1.5
        out["live_agent_rss_under_150mb"] = live["agent_rss_mb"] < 150
        out["live_1000_under_60s"] = (
            live["attachments"] >= 1000 and live["seconds_to_reach"] < 60 and not live["add_errors"]
        )
    return out


@contextlib.contextmanager
def ovn_agent(tmp: Path) -> Iterator[Agent]:
    """A private OVS + OVN (the test suite's own fixture code) and an agent on it."""
    sys.path.insert(0, str(REPO))
    from tests.fixtures.ovn import private_ovn

    with private_ovn() as env:
        config = tmp / "agent-ovn.toml"
        config.write_text(
            f'backend = "ovn"\n[ovn]\nnb_remotes = ["{env.nb_remote}"]\n'
            f'ovs_db = "{env.ovs_remote}"\nintegration_bridge = "{env.bridge}"\n'
        )
        agent = Agent(tmp / "ovn", ["--config", str(config)])
        try:
            yield agent
        finally:
            agent.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="ADD/DEL pairs per mode")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--live", type=int, default=1000, help="live attachments (0: skip)")
    parser.add_argument(
        "--live-reference",
        action="store_true",
        help="also keep --live attachments of the reference plugins and of the floor"
        " (the kernel's share)",
    )
    parser.add_argument("--no-python-shim", action="store_true", help="skip the Python column")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--no-podwire", action="store_true", help="only the reference column")
    parser.add_argument(
        "--ovn", action="store_true", help="add a column for podwire on a private OVS + OVN"
    )
    parser.add_argument(
        "--first-packet",
        type=int,
        default=20,
        help="samples of the time from ADD returning to the first packet (0: skip)",
    )
    parser.add_argument(
        "--floor",
        type=Path,
        metavar="FLOOR_C",
        help="add a column for the kernel's floor exec'd per verb (../shared/floor/floor.c)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="FILE",
        help="write a PNG of the latency distributions of every column to FILE",
    )
    parser.add_argument(
        "--agent-arg",
        action="append",
        default=[],
        help="extra argument for the embedded `podwire agent` (repeat)",
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
        "load_average_at_start": list(os.getloadavg()),
        "columns": {},
        "ratio_to_reference": {},
    }
    namespaces = Namespaces()
    tmp = Path(tempfile.mkdtemp(prefix="pw-bench-"))
    setups: list[Setup] = []
    with contextlib.ExitStack() as stack:
        # Undone in reverse: temp dir last, namespaces before agents stop.
        stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        stack.callback(log, "cleaned up")
        c_shim = build_c_shim(tmp)
        if not args.no_reference:
            reference = reference_setup(tmp)
            setups.append(reference)
            stack.callback(
                subprocess.run,
                ["ip", "link", "delete", reference.config["bridge"]],
                check=False,
                capture_output=True,
            )
        agent: Agent | None = None
        if not args.no_podwire:
            log("starting a private podwire agent (embedded backend)")
            started = time.perf_counter()
            agent = Agent(tmp / "embedded", args.agent_arg)
            stack.callback(agent.stop)
            result["agent_start_s"] = round(time.perf_counter() - started, 2)
            network, ours = podwire_setups(agent, c_shim, not args.no_python_shim)
            stack.callback(_delete_network, agent, network)
            setups.extend(ours)
        if args.floor is not None:
            floor = floor_setup(args.floor, tmp)
            setups.append(floor)
            stack.callback(
                subprocess.run,
                ["ip", "link", "delete", floor.env["PF_BRIDGE"]],
                check=False,
                capture_output=True,
            )
        stack.callback(namespaces.delete_all)

        # Warm-up: a pair each, so first-call costs (bridge creation, imports)
        # are not counted in any column.
        for setup in setups:
            run_pairs(setup, namespaces, 2, 1)
        run_modes(setups, namespaces, args, result)
        if args.first_packet:
            for setup in setups:
                broken = any("aborted" in m for m in result["columns"][setup.name].values())
                if (setup.name.endswith("_c") or setup.name == "reference") and not broken:
                    log(f"{setup.name}: time from ADD to the first packet, {args.first_packet}x")
                    result["columns"][setup.name]["first_packet"] = first_packet(
                        setup, namespaces, args.first_packet
                    )
        if "reference" in result["columns"]:
            for name, column in result["columns"].items():
                if name != "reference":
                    result["ratio_to_reference"][name] = ratios(
                        column, result["columns"]["reference"]
                    )
        if "floor_exec" in result["columns"]:
            floor_column = result["columns"]["floor_exec"]
            for name, column in result["columns"].items():
                if name != "floor_exec":
                    result.setdefault("ratio_to_floor", {})[name] = ratios(column, floor_column)
        c_setup = next((s for s in setups if s.name == "podwire_c"), None)
        if args.live and c_setup is not None and agent is not None:
            log(f"podwire_c: {args.live} live attachments, {args.concurrency} at once")
            result["live"] = live_attachments(
                c_setup, agent, namespaces, args.live, args.concurrency
            )
            reference_setup_ = next((s for s in setups if s.name == "reference"), None)
            if reference_setup_ is not None and args.live_reference:
                # Whether ADDs slow down as attachments accumulate because of
                # the kernel (the reference slows too) or because of podwire.
                log(f"reference: {args.live} live attachments, {args.concurrency} at once")
                result["live_reference"] = live_attachments(
                    reference_setup_, None, namespaces, args.live, args.concurrency
                )
            floor_setup_ = next((s for s in setups if s.name == "floor_exec"), None)
            if floor_setup_ is not None and args.live_reference:
                # The kernel's own slowdown: raw rtnetlink, nothing else.
                log(f"floor: {args.live} live attachments, {args.concurrency} at once")
                result["live_floor"] = live_attachments(
                    floor_setup_, None, namespaces, args.live, args.concurrency
                )
        if args.ovn and c_shim is not None:
            # Last, and alone: ovs-vswitchd and ovn-controller react to every
            # link change on the host, so while they run every other column
            # (the floor and the reference too) pays for their wake-ups.
            with contextlib.ExitStack() as ovn_stack:
                log("starting a private OVS + OVN and an agent on it")
                try:
                    ovn = ovn_stack.enter_context(ovn_agent(tmp))
                except BaseException as exc:  # pytest's skip outside pytest, a failed start
                    log(f"no OVN column: {exc}")
                    result["ovn_error"] = str(exc)[:500]
                else:
                    network, ours = podwire_setups(ovn, c_shim, False, prefix="podwire_ovn")
                    ovn_stack.callback(_delete_network, ovn, network)
                    for setup in ours:
                        run_pairs(setup, namespaces, 2, 1)
                    run_modes(ours, namespaces, args, result)
                    setups.extend(ours)
                    if "reference" in result["columns"]:
                        for setup in ours:
                            result["ratio_to_reference"][setup.name] = ratios(
                                result["columns"][setup.name], result["columns"]["reference"]
                            )
                    if "floor_exec" in result["columns"]:
                        for setup in ours:
                            result.setdefault("ratio_to_floor", {})[setup.name] = ratios(
                                result["columns"][setup.name], result["columns"]["floor_exec"]
                            )
        for setup in setups:
            if setup.errors:
                result["columns"][setup.name]["first_errors"] = setup.errors[:5]
        result["goals"] = goals(result, "podwire_c")
        result["goals_issue13"] = goals_issue13(result, "podwire_c")
        result["load_average_at_end"] = list(os.getloadavg())
        if args.plot is not None:
            from plot_latency import plot

            plot(args.plot, setups, result)
            log(f"plot written to {args.plot}")
        log("cleaning up")
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


def run_modes(
    setups: list[Setup], namespaces: Namespaces, args: argparse.Namespace, result: dict[str, Any]
) -> None:
    """Sequential, then ``--concurrency`` at once: each mode runs every
    column in turn, so that the columns of one mode share the machine's state."""
    for mode, workers in (("sequential", 1), ("concurrent", args.concurrency)):
        for setup in setups:
            log(f"{setup.name}: {args.n} ADD/DEL pairs, {mode} ({workers} at once)")
            column = result["columns"].setdefault(setup.name, {})
            if any("aborted" in stats for stats in column.values()):
                column[mode] = {"aborted": "skipped: an earlier mode failed"}
                continue
            column[mode] = run_pairs(setup, namespaces, args.n, workers, mode)


def _delete_network(agent: Agent, network: str) -> None:
    """The network, and its bridge on the embedded data path (the agent makes
    a bridge per network on first use and leaves it when the network goes)."""
    network_id = None
    with contextlib.suppress(Exception):
        network_id = json.loads(agent.cli("--json", "network", "show", network))["id"]
    with contextlib.suppress(Exception):
        agent.cli("network", "delete", network)
    if network_id is not None:
        from podwire.kinds.veth_bridge import bridge_name

        subprocess.run(["ip", "link", "delete", bridge_name(network_id)], capture_output=True)


if __name__ == "__main__":
    sys.exit(main())
