"""A real podwire agent as a subprocess, and the real CNI shim run as a
runtime runs it: shared by the test fixtures (tests/fixtures/agent.py) and
the benchmarks. Independent of pytest."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHIM = Path(sys.executable).parent / "podwire-cni"


@dataclass
class CniAnswer:
    code: int  # the process exit code
    stdout: bytes
    stderr: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None

    @property
    def error_code(self) -> int | None:
        body = self.json
        return body.get("code") if isinstance(body, dict) else None


@dataclass
class AgentProcess:
    state_dir: Path
    socket: Path
    extra_args: list[str] = field(default_factory=list)
    # Added to the agent's environment (e.g. PODWIRE_FAULTS); kept across restarts.
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _backend: Any = None

    # --- lifecycle -------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        log = open(self.state_dir / "agent.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "podwire.daemon",
                "--state-dir",
                str(self.state_dir),
                "--socket",
                str(self.socket),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.log()}")
            if self._listening():
                # The socket listens before the start-up reconcile; the first
                # answer comes after it.
                self.get("/v1/attachments")
                return
            time.sleep(0.05)
        raise RuntimeError(f"agent did not serve {self.socket} in {timeout}s:\n{self.log()}")

    def _listening(self) -> bool:
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(self.socket))
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return (self.state_dir / "agent.log").read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    # --- the backend, directly (same SQLite file as the agent's) --------------

    @property
    def config(self) -> Any:
        from podwire.config import load_config

        # The agent's own configuration: its --config file, then its state dir.
        args = self.extra_args
        path = Path(args[args.index("--config") + 1]) if "--config" in args else None
        return load_config(path, state_dir=self.state_dir)

    @property
    def backend(self) -> Any:
        if self._backend is None:
            from podwire.backends.registry import open_backend

            self._backend = open_backend(self.config)
        return self._backend

    @property
    def ctx(self) -> Any:
        from podwire.model import Context

        return Context.admin("default")

    def create_network(self, name: str, *cidrs: str, **fields: Any) -> Any:
        from podwire.model import NetworkCreate, SubnetCreate

        net = self.backend.create_network(self.ctx, NetworkCreate(name=name, **fields))
        for cidr in cidrs:
            self.backend.create_subnet(self.ctx, SubnetCreate(network_id=net.id, cidr=cidr))
        return self.backend.get_network(self.ctx, net.id)

    def ports(self, network_id: str | None = None) -> list[Any]:
        filters = {"network_id": [network_id]} if network_id else None
        return list(self.backend.list_ports(self.ctx, filters))

    def delete_network(self, network_id: str) -> None:
        """Delete the network as a user would, through the agent's API (which
        also removes its bridge), when the agent runs; else in the backend."""
        import httpx

        for port in self.ports(network_id):
            with contextlib.suppress(Exception):
                self.backend.delete_port(self.ctx, port.id)
        if self.proc is not None and self.proc.poll() is None:
            transport = httpx.HTTPTransport(uds=str(self.socket))
            with (
                contextlib.suppress(httpx.HTTPError),
                httpx.Client(transport=transport, base_url="http://podwire", timeout=30) as c,
            ):
                if c.delete(f"/v2.0/networks/{network_id}").status_code in (204, 404):
                    return
        with contextlib.suppress(Exception):
            self.backend.delete_network(self.ctx, network_id)

    # --- the local API ----------------------------------------------------------

    def get(self, path: str) -> Any:
        import httpx

        transport = httpx.HTTPTransport(uds=str(self.socket))
        with httpx.Client(transport=transport, base_url="http://podwire", timeout=30) as c:
            resp = c.get(path)
            resp.raise_for_status()
            return resp.json()

    def attachments(self) -> list[dict[str, Any]]:
        return list(self.get("/v1/attachments")["attachments"])

    # --- the shim, as a runtime runs it -----------------------------------------

    def cni(
        self,
        command: str | None,
        config: dict[str, Any] | bytes | None,
        *,
        container_id: str | None = None,
        netns: str | None = None,
        ifname: str | None = "eth0",
        args: str | None = None,
        socket_path: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
    ) -> CniAnswer:
        run_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        run_env["PODWIRE_AGENT_SOCKET"] = str(socket_path or self.socket)
        for var, value in (
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", container_id),
            ("CNI_NETNS", netns),
            ("CNI_IFNAME", ifname),
            ("CNI_ARGS", args),
            ("CNI_PATH", "/opt/cni/bin"),
        ):
            if value is not None:
                run_env[var] = value
        run_env.update(env or {})
        stdin = config if isinstance(config, bytes) else json.dumps(config or {}).encode()
        proc = subprocess.run(
            [str(SHIM)], input=stdin, env=run_env, capture_output=True, timeout=timeout
        )
        return CniAnswer(proc.returncode, proc.stdout, proc.stderr)


def netconf(network: str, version: str = "1.1.0", **extra: Any) -> dict[str, Any]:
    """A plugin config as libcni hands it to a plugin."""
    return {"cniVersion": version, "name": network, "type": "podwire", "network": network, **extra}


def short_tempdir(prefix: str = "pwa") -> Path:
    """A private directory with a short path (unix socket paths are <= 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
