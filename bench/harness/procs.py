"""Processes the tests and the benchmarks both start: a private
ovsdb-server, daemons by their pidfiles, commands whose failure is an error.
Independent of pytest and of podwire (tests/fixtures/ovn.py and
bench/harness/ovs_dpdk.py use them)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

VSWITCH_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def unique(prefix: str, length: int = 6) -> str:
    """A short unique name with a prefix (tests.fixtures.common.unique)."""
    return prefix + uuid.uuid4().hex[:length]


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 30) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}"
        )
    return proc.stdout


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for whoever reaps detached daemons here."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def kill_pidfile(pidfile: Path, timeout: float = 5.0) -> None:
    """SIGTERM the daemon named in ``pidfile``, then SIGKILL if it lingers."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass
class OvsdbServer:
    """One ovsdb-server serving one database file on a private unix socket."""

    run_dir: Path
    name: str  # file stem: "conf", "nb", "sb"
    schema: Path

    @property
    def socket(self) -> Path:
        return self.run_dir / f"{self.name}.sock"

    @property
    def remote(self) -> str:
        return f"unix:{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / f"ovsdb-{self.name}.pid"

    def start(self) -> None:
        db = self.run_dir / f"{self.name}.db"
        run(["ovsdb-tool", "create", str(db), str(self.schema)])
        run(
            [
                "ovsdb-server",
                str(db),
                f"--remote=punix:{self.socket}",
                f"--pidfile={self.pidfile}",
                f"--log-file={self.run_dir / f'ovsdb-{self.name}.log'}",
                f"--unixctl={self.run_dir / f'ovsdb-{self.name}.ctl'}",
                "--detach",
                "--no-chdir",
            ]
        )

    def stop(self) -> None:
        kill_pidfile(self.pidfile)
