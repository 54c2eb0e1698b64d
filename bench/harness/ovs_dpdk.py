"""A private OVS-DPDK, hugepages and dpdk-testpmd: shared by the test
fixtures (tests/fixtures/ovs_dpdk.py, which checks that the components are
there first and says why they are not) and bench/vhostuser_pps.py.
Independent of pytest. See tests/fixtures/ovs_dpdk.py for the design (own
network namespace, PMD sleep, socket-limit)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.harness.procs import VSWITCH_SCHEMA, OvsdbServer, kill_pidfile, unique
from bench.harness.procs import run as _run

VSWITCHD_DPDK = Path("/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk")
NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
HUGEPAGE_KB = 2048
# OVS's DPDK memory (MB): socket-mem and its limit. Its shared mempool takes
# the largest size that fits (150 MB of 256); with 128 MB, too little was left
# for a new vhost device ("failed to allocate memory for new device").
OVS_SOCKET_MB = 256
# One testpmd: EAL memory (MB) and mbufs, small enough for 2 cores / shared RAM.
TESTPMD_MB = 128
TESTPMD_MBUFS = 2048
# What the session reserves: OVS plus two testpmds plus slack (pages).
SESSION_PAGES = (OVS_SOCKET_MB + 2 * TESTPMD_MB + 2 * TESTPMD_MB) // 2


def free_hugepages() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("HugePages_Free:"):
            return int(line.split()[1])
    return 0


@contextlib.contextmanager
def hugepages(pages: int) -> Iterator[None]:
    """Reserve ``pages`` 2 MiB pages more than the machine has now; on exit
    give them back: to the recorded value when nobody else changed it
    meanwhile, else by taking off only what we added (other helpers on the
    machine may reserve theirs at the same time)."""
    before = int(NR_HUGEPAGES.read_text())
    target = before + pages
    NR_HUGEPAGES.write_text(str(target))
    try:
        got = int(NR_HUGEPAGES.read_text())
        if got < target:
            raise RuntimeError(f"asked the kernel for {target} hugepages, got {got}")
        yield
    finally:
        now = int(NR_HUGEPAGES.read_text())
        NR_HUGEPAGES.write_text(str(before if now == target else max(now - pages, 0)))


@dataclass
class OvsDpdk:
    """A running private OVS-DPDK. ``vsctl`` talks to its database."""

    run_dir: Path
    netns: str
    bridge: str
    db: OvsdbServer

    @property
    def remote(self) -> str:
        return self.db.remote

    @property
    def sock_dir(self) -> Path:
        """Where this vswitchd creates ``dpdkvhostuser`` sockets."""
        return self.run_dir / "vhu"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "ovs-vswitchd.pid"

    def env(self) -> dict[str, str]:
        d = str(self.run_dir)
        return {**os.environ, "OVS_RUNDIR": d, "OVS_LOGDIR": d, "OVS_DBDIR": d}

    def vsctl(self, *args: str) -> str:
        return _run(["ovs-vsctl", f"--db={self.remote}", "--timeout=20", *args], env=self.env())

    def log(self) -> str:
        path = self.run_dir / "ovs-vswitchd.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def start_vswitchd(self) -> None:
        _run(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                str(VSWITCHD_DPDK),
                self.remote,
                f"--pidfile={self.pidfile}",
                f"--log-file={self.run_dir / 'ovs-vswitchd.log'}",
                f"--unixctl={self.run_dir / 'ovs-vswitchd.ctl'}",
                "--detach",
                "--no-chdir",
            ],
            env=self.env(),
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while self.vsctl("get", "Open_vSwitch", ".", "dpdk_initialized").strip() != "true":
            if time.monotonic() > deadline:
                raise RuntimeError(f"OVS-DPDK did not initialize DPDK:\n{self.log()}")
            time.sleep(0.1)

    def stop_vswitchd(self) -> None:
        kill_pidfile(self.pidfile, timeout=10)

    def restart_vswitchd(self) -> None:
        self.stop_vswitchd()
        self.start_vswitchd()

    def interface(self, name: str, column: str) -> str:
        return self.vsctl("--if-exists", "get", "Interface", name, column).strip().strip('"')

    def ports(self) -> list[str]:
        return self.vsctl("list-ports", self.bridge).split()

    def wait_link_up(self, names: Sequence[str], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = {n: self.interface(n, "link_state") for n in names}
            if all(s == "up" for s in states.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"vhost-user links not up: {states}\n{self.log()}")
            time.sleep(0.1)

    def packets(self, name: str) -> tuple[int, int]:
        """(rx, tx) packets OVS counted on interface ``name``, live (the
        Interface table's statistics lag by up to 5 s)."""
        mgmt = f"unix:{self.run_dir / (self.bridge + '.mgmt')}"
        out = _run(["ovs-ofctl", "dump-ports", mgmt, name], env=self.env())
        rx = re.search(r"rx pkts=(\d+)", out)
        tx = re.search(r"tx pkts=(\d+)", out)
        return int(rx.group(1)) if rx else 0, int(tx.group(1)) if tx else 0


def ovs_dpdk_missing() -> str | None:
    """What a private OVS-DPDK needs and this machine lacks (None: nothing).
    The test fixture checks the same through its own helpers (skip or, in
    CI, fail)."""
    if os.geteuid() != 0:
        return "root privileges"
    for tool in ("ovsdb-tool", "ovsdb-server", "ovs-vsctl", "dpdk-testpmd"):
        if shutil.which(tool) is None:
            return f"command {tool!r}"
    if not VSWITCHD_DPDK.exists():
        return f"{VSWITCHD_DPDK} (Debian package openvswitch-switch-dpdk)"
    if not NR_HUGEPAGES.exists():
        return "hugepages (/proc/sys/vm/nr_hugepages)"
    return None


@contextlib.contextmanager
def private_ovs_dpdk(pages: int = SESSION_PAGES) -> Iterator[OvsDpdk]:
    """Start one (the caller checked that its components are there); stop
    it and give everything back on exit, even when the start fails."""
    run_dir = Path(tempfile.mkdtemp(prefix="pw11-ovs-", dir="/tmp"))
    env = OvsDpdk(
        run_dir=run_dir,
        netns=unique("pw11-ovs", 6),
        bridge=unique("pw11br", 6),
        db=OvsdbServer(run_dir, "conf", VSWITCH_SCHEMA),
    )
    env.sock_dir.mkdir()
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, run_dir, ignore_errors=True)
        stack.enter_context(hugepages(pages))
        _run(["ip", "netns", "add", env.netns])
        stack.callback(subprocess.run, ["ip", "netns", "del", env.netns], capture_output=True)
        stack.callback(env.db.stop)
        env.db.start()
        env.vsctl("--no-wait", "init")
        env.vsctl(
            "--no-wait",
            "set",
            "Open_vSwitch",
            ".",
            "other_config:dpdk-init=true",
            f"other_config:dpdk-socket-mem={OVS_SOCKET_MB}",
            f"other_config:dpdk-socket-limit={OVS_SOCKET_MB}",
            'other_config:dpdk-extra="--no-pci --iova-mode=va --in-memory"',
            "other_config:dpdk-lcore-mask=0x1",
            "other_config:pmd-cpu-mask=0x2",
            "other_config:pmd-maxsleep=500",
            # Relative to OVS_RUNDIR (the run directory).
            "other_config:vhost-sock-dir=vhu",
        )
        stack.callback(env.stop_vswitchd)
        env.start_vswitchd()
        env.vsctl("add-br", env.bridge, "--", "set", "Bridge", env.bridge, "datapath_type=netdev")
        yield env


_STATS = re.compile(r"RX-packets:\s+(\d+).*?TX-packets:\s+(\d+)", re.S)


class DpdkTestpmd:
    """dpdk-testpmd, interactive, io forwarding, on one vhost-user socket.
    ``server=True``: testpmd creates and listens on ``socket`` (the
    application is the vhost-user server)."""

    def __init__(
        self,
        socket: str,
        *,
        server: bool,
        log: Path,
        prefix: Sequence[str] = (),
        file_prefix: str | None = None,
        env: dict[str, str] | None = None,
        lcores: str = "0,1",
        mac: str | None = None,
        forward_mode: str = "io",
        extra: Sequence[str] = (),
        second: str | None = None,
    ) -> None:
        """``second``: a client-mode socket for a second port (net_virtio_user1),
        for one application forwarding between two vhost-user ports."""
        vdev = f"net_virtio_user0,path={socket}" + (",server=1" if server else "")
        if mac:
            vdev += f",mac={mac}"
        self.log_path = log
        argv = [
            *prefix,
            # Line-buffered: its answers are read from the log file.
            "stdbuf",
            "-oL",
            "dpdk-testpmd",
            "-l",
            lcores,
            "-m",
            str(TESTPMD_MB),
            "--iova-mode=va",
            "--no-pci",
            "--in-memory",
            "--single-file-segments",
            f"--file-prefix={file_prefix or unique('pw11tp', 6)}",
            f"--vdev={vdev}",
            *([f"--vdev=net_virtio_user1,path={second}"] if second else []),
            "--",
            "-i",
            "--no-lsc-interrupt",
            f"--forward-mode={forward_mode}",
            f"--total-num-mbufs={TESTPMD_MBUFS}",
            *extra,
        ]
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"testpmd exited ({self.proc.returncode}):\n{self.output()}")
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"testpmd never printed {text!r}:\n{self.output()}")
            time.sleep(0.1)

    def stats(self, port: int = 0) -> tuple[int, int]:
        """(rx, tx) packets of ``port``, as testpmd counts them."""
        before = len(_STATS.findall(self.output()))
        self.command(f"show port stats {port}")
        deadline = time.monotonic() + 10
        while True:
            found = _STATS.findall(self.output())
            if len(found) > before:
                rx, tx = found[-1]
                return int(rx), int(tx)
            if time.monotonic() > deadline:
                raise AssertionError(f"testpmd printed no stats:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.command("stop")
                self.command("quit")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
