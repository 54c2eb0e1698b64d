"""`podwire agent ...` (the console script) and the CLI through the agent's
unix socket, which serves the Neutron API with admin rights."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.common import require_root, unique
from tests.fixtures.server import podwire_command


@pytest.fixture
def agent_socket() -> Iterator[Path]:
    require_root()
    base = Path(tempfile.mkdtemp(prefix="pwc", dir="/tmp"))
    sock = base / "run" / "agent.sock"
    log = open(base / "agent.log", "wb")  # noqa: SIM115 - handed to the process
    proc = subprocess.Popen(
        [*podwire_command(), "agent", "--state-dir", str(base / "state"), "--socket", str(sock)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (base / "agent.log").read_text()
            if sock.exists():
                with socket.socket(socket.AF_UNIX) as probe:
                    try:
                        probe.connect(str(sock))
                        break
                    except OSError:
                        pass
            assert time.monotonic() < deadline, "the agent did not serve its socket"
            time.sleep(0.05)
        assert sock.stat().st_mode & 0o777 == 0o600
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def test_cli_through_the_agent_socket(agent_socket: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*podwire_command(), "--agent-socket", str(agent_socket), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        return proc

    name = unique("ag-")
    run("network", "create", name, "--subnet", "198.18.90.0/24", "--subnet", "2001:db8:90::/64")
    port = json.loads(run("--json", "port", "create", "--network", name, "--name", "p").stdout)
    assert len(port["fixed_ips"]) == 2
    ports = json.loads(run("port", "list", "--json").stdout)
    assert [p["id"] for p in ports] == [port["id"]]
    assert name in run("network", "list").stdout
    run("port", "delete", port["id"])
    run("network", "delete", name)
    assert json.loads(run("--json", "network", "list").stdout) == []
