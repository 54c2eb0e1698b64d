"""The agent on the OVN backend, driven as a runtime drives it: the real
``podwire-cni`` shim against a real agent process configured with
``backend = "ovn"`` on a private OVS + OVN; the CLI through the agent."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podwire.backends.ovn import OvnBackend
from podwire.model import Context
from tests.fixtures.agent import AgentProcess, netconf, netns_path, short_tempdir
from tests.fixtures.common import unique
from tests.fixtures.netns import ns_ping
from tests.fixtures.ovn import OvnEnv

pytestmark = [pytest.mark.ovn, pytest.mark.root]

ADMIN = Context.admin("default")
PODWIRE = Path(sys.executable).parent / "podwire"


@pytest.fixture
def ovn_agent(ovn_env: OvnEnv, start_agent: Any, tmp_path: Path) -> Iterator[AgentProcess]:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'backend = "ovn"\n'
        f"[ovn]\n"
        f'nb_remotes = ["{ovn_env.nb_remote}"]\n'
        f'ovs_db = "{ovn_env.ovs_remote}"\n'
        f'integration_bridge = "{ovn_env.bridge}"\n'
        f"bind_timeout = 20.0\n"
    )
    agent: AgentProcess = start_agent("--config", str(config))
    yield agent


@pytest.fixture
def nb(ovn_env: OvnEnv) -> Iterator[OvnBackend]:
    backend = OvnBackend([ovn_env.nb_remote])
    try:
        yield backend
    finally:
        backend.close()


def _cli(agent: AgentProcess, *args: str) -> str:
    proc = subprocess.run(
        [str(PODWIRE), "--agent-socket", str(agent.socket), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


@pytest.fixture
def ovn_network(ovn_agent: AgentProcess, nb: OvnBackend) -> Iterator[str]:
    """A network made through the CLI, talking to the agent on OVN."""
    name = unique("pwon")
    _cli(ovn_agent, "network", "create", name, "--subnet", "198.18.11.0/24")
    try:
        yield name
    finally:
        for net in nb.list_networks(ADMIN, {"name": [name]}):
            for port in nb.list_ports(ADMIN, {"network_id": [net.id]}):
                nb.delete_port(ADMIN, port.id)
            nb.delete_network(ADMIN, net.id)


def _ovs_ports(env: OvnEnv) -> list[str]:
    return env.vsctl("list-ports", env.bridge).split()


def _lsps(env: OvnEnv) -> list[str]:
    return env.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port").split()


def _no_ports(nb: OvnBackend, *device_ids: str) -> bool:
    """True once no port of these containers is left. Our replica of the
    northbound database follows the agent's writes within milliseconds; the
    short wait absorbs that, nothing else."""
    deadline = time.monotonic() + 5
    while nb.list_ports(ADMIN, {"device_id": list(device_ids)}):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _ip(answer: Any) -> str:
    return str(answer.json["ips"][0]["address"].split("/")[0])


def test_cni_add_ping_del_through_the_agent_on_ovn(
    ovn_agent: AgentProcess,
    ovn_network: str,
    ovn_env: OvnEnv,
    nb: OvnBackend,
    ovn_netns: Any,
) -> None:
    (ns1, _), (ns2, _) = ovn_netns(), ovn_netns()
    conf = netconf(ovn_network)
    a1 = ovn_agent.cni("ADD", conf, container_id="c-ovn-1", netns=netns_path(ns1))
    a2 = ovn_agent.cni("ADD", conf, container_id="c-ovn-2", netns=netns_path(ns2))
    assert a1.code == 0, a1.stdout
    assert a2.code == 0, a2.stdout
    ip1, ip2 = _ip(a1), _ip(a2)
    assert ip1.startswith("198.18.11.") and ip2.startswith("198.18.11.")

    # The port is in OVN, owned by the container, and bound (up) already.
    (port,) = nb.list_ports(ADMIN, {"device_id": ["c-ovn-1"]})
    assert port.fixed_ips[0].ip_address == ip1
    assert port.status == "ACTIVE"
    assert ovn_env.nbctl("get", "Logical_Switch_Port", port.id, "up").strip() == "true"

    assert ns_ping(ns1, ip2)
    assert ns_ping(ns2, ip1)

    # CHECK compares the live state; taking the port off the bridge is drift.
    assert ovn_agent.cni("CHECK", conf, container_id="c-ovn-1", netns=netns_path(ns1)).code == 0
    host_end = a1.json["interfaces"][0]["name"]
    ovn_env.vsctl("del-port", ovn_env.bridge, host_end)
    drift = ovn_agent.cni("CHECK", conf, container_id="c-ovn-1", netns=netns_path(ns1))
    assert drift.code != 0 and ovn_env.bridge in drift.json["msg"], drift.stdout

    # The CLI through the agent sees the same ports.
    listed = _cli(ovn_agent, "--json", "port", "list")
    assert port.id in listed

    for cid, ns in (("c-ovn-1", ns1), ("c-ovn-2", ns2)):
        assert ovn_agent.cni("DEL", conf, container_id=cid, netns=netns_path(ns)).code == 0
        assert ovn_agent.cni("DEL", conf, container_id=cid, netns=netns_path(ns)).code == 0
    assert _no_ports(nb, "c-ovn-1", "c-ovn-2")
    assert port.id not in _lsps(ovn_env)
    assert not [p for p in _ovs_ports(ovn_env) if p.startswith("pwv")]


def test_agent_restarted_between_add_and_del_still_deletes_cleanly(
    ovn_agent: AgentProcess,
    ovn_network: str,
    ovn_env: OvnEnv,
    nb: OvnBackend,
    ovn_netns: Any,
) -> None:
    ns, _ = ovn_netns()
    conf = netconf(ovn_network)
    added = ovn_agent.cni("ADD", conf, container_id="c-restart", netns=netns_path(ns))
    assert added.code == 0, added.stdout
    (port,) = nb.list_ports(ADMIN, {"device_id": ["c-restart"]})
    host_end = added.json["interfaces"][0]["name"]
    assert host_end in _ovs_ports(ovn_env)

    ovn_agent.restart()

    gone = ovn_agent.cni("DEL", conf, container_id="c-restart", netns=netns_path(ns))
    assert gone.code == 0, gone.stdout
    assert port.id not in _lsps(ovn_env)
    assert host_end not in _ovs_ports(ovn_env)
    assert not Path("/sys/class/net", host_end).exists()


def test_agent_killed_mid_add_rolls_back_on_restart(
    ovn_agent: AgentProcess,
    ovn_network: str,
    ovn_env: OvnEnv,
    nb: OvnBackend,
    ovn_netns: Any,
) -> None:
    """ovn-controller paused: ADD waits for the binding; the agent is killed
    (SIGKILL) right then; on restart it rolls the half-made ADD back (logical
    port, OVS port, veth) and a DEL afterwards succeeds with nothing to do."""
    ns, _ = ovn_netns()
    conf = netconf(ovn_network)
    controller = int((ovn_env.run_dir / "ovn-controller.pid").read_text())
    before_ovs = set(_ovs_ports(ovn_env))
    os.kill(controller, signal.SIGSTOP)
    try:
        pending: dict[str, Any] = {}

        def add() -> None:
            pending["answer"] = ovn_agent.cni(
                "ADD", conf, container_id="c-killed", netns=netns_path(ns), timeout=60
            )

        worker = threading.Thread(target=add)
        worker.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if set(_ovs_ports(ovn_env)) - before_ovs:
                break
            time.sleep(0.05)
        assert set(_ovs_ports(ovn_env)) - before_ovs, "ADD never reached the OVS step"
        ovn_agent.kill()
        worker.join(30)
    finally:
        os.kill(controller, signal.SIGCONT)
    assert pending["answer"].code != 0

    ovn_agent.start()
    ovn_agent.get("/v1/status")  # answered only after the start-up reconcile
    assert _no_ports(nb, "c-killed")
    assert set(_ovs_ports(ovn_env)) == before_ovs
    gone = ovn_agent.cni("DEL", conf, container_id="c-killed", netns=netns_path(ns))
    assert gone.code == 0, gone.stdout


def test_podwire_agent_command_with_ovn_flags(
    ovn_env: OvnEnv, nb: OvnBackend, ovn_netns: Any, tmp_path: Path
) -> None:
    """`podwire agent --backend ovn --ovn-nb REMOTE` (the user-facing command);
    the config file only names this test's private OVS and bridge."""
    base = short_tempdir()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[ovn]\novs_db = "{ovn_env.ovs_remote}"\nintegration_bridge = "{ovn_env.bridge}"\n'
    )
    agent = AgentProcess(state_dir=base / "state", socket=base / "agent.sock")
    agent.state_dir.mkdir(parents=True)
    proc = subprocess.Popen(
        [
            str(PODWIRE),
            "agent",
            "--config",
            str(config),
            "--backend",
            "ovn",
            "--ovn-nb",
            ovn_env.nb_remote,
            "--state-dir",
            str(agent.state_dir),
            "--socket",
            str(agent.socket),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    name = unique("pwoc")
    try:
        deadline = time.monotonic() + 30
        while not agent.socket.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the agent never opened its socket"
            time.sleep(0.05)
        status = agent.get("/v1/status")
        assert "ovn" in str(status)
        # The configured OVS database (not the default path) is the one its
        # kind describes: STATUS says veth_ovs is available (described in
        # the background: wait for the first description).
        deadline = time.monotonic() + 30
        while not (drivers := {d["name"]: d for d in agent.get("/v1/status")["drivers"]}):
            assert time.monotonic() < deadline, "no kind described"
            time.sleep(0.1)
        assert drivers["veth_ovs"]["available"], drivers["veth_ovs"]
        _cli(agent, "network", "create", name, "--subnet", "198.18.12.0/24")
        _, path = ovn_netns()
        added = agent.cni("ADD", netconf(name), container_id="c-cli", netns=path)
        assert added.code == 0, added.stdout
        assert _ip(added).startswith("198.18.12.")
        assert agent.cni("DEL", netconf(name), container_id="c-cli", netns=path).code == 0
        assert _no_ports(nb, "c-cli")
    finally:
        proc.terminate()
        proc.wait(20)
        for net in nb.list_networks(ADMIN, {"name": [name]}):
            for port in nb.list_ports(ADMIN, {"network_id": [net.id]}):
                nb.delete_port(ADMIN, port.id)
            nb.delete_network(ADMIN, net.id)
        shutil.rmtree(base, ignore_errors=True)
