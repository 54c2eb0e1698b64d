"""vhost-user end to end with podman: two containers, each the network
sandbox of a "pod" made by podman through the podwire CNI plugin (so the
ADD and DEL are podman's own), and in each sandbox's network namespace an
application container that mounts only that sandbox's socket directory
(``<socket_root>/<sandbox id>``) at /var/run/vhostuser and runs dpdk-testpmd
on the socket the config file names. A is the vhost-user server (its
testpmd creates the socket), B the client (OVS's socket, moved there by the
agent). Packets pass between them through OVS-DPDK, counters move on both
sides; CHECK notices B's socket removed by hand; removing the sandboxes
(podman's CNI DEL) leaves nothing.

The application containers' root is busybox plus the host's /usr mounted
read-only (dpdk-testpmd and its libraries), as RECIPES.md suggests."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podwire.model import PortBinding, PortCreate
from tests.fixtures.agent import AgentProcess, netconf, short_tempdir
from tests.fixtures.common import require_command, unique
from tests.fixtures.ovs_dpdk import DpdkTestpmd, OvsDpdk
from tests.fixtures.podman import RUN_FLAGS, Podman
from tests.vhostuser.test_vhostuser_agent import agent_config

pytestmark = [pytest.mark.dpdk, pytest.mark.podman, pytest.mark.root]

MOUNT = "/var/run/vhostuser"


@pytest.fixture(scope="module")
def dpdk_rootfs(busybox_rootfs: Path) -> Iterator[Path]:
    """busybox, with /usr to be mounted from the host and the merged-usr links."""
    with_usr = Path(str(busybox_rootfs) + "-dpdk")
    shutil.copytree(busybox_rootfs, with_usr, symlinks=True)
    (with_usr / "usr").mkdir()
    for link in ("lib", "lib64"):
        (with_usr / link).symlink_to(f"usr/{link}")
    try:
        yield with_usr
    finally:
        shutil.rmtree(with_usr, ignore_errors=True)


def _app(podman: Podman, sandbox: str, sock_dir: Path, rootfs: Path, log: Path, **kw: Any) -> Any:
    """dpdk-testpmd in a container sharing ``sandbox``'s network namespace,
    with ``sock_dir`` mounted; the socket named by the config file there."""
    conf = next(p for p in sock_dir.iterdir() if p.name.startswith(sandbox))
    vhostname = json.loads(conf.read_text())["vhostname"]
    name = unique("pw11app", 6)
    podman.containers.append(name)
    prefix = podman.argv(
        "run",
        "-i",
        "--rm",
        "--name",
        name,
        *RUN_FLAGS,
        "--network",
        f"container:{sandbox}",
        "-v",
        f"{sock_dir}:{MOUNT}",
        "-v",
        "/usr:/usr:ro",
        "--rootfs",
        str(rootfs),
    )
    return DpdkTestpmd(f"{MOUNT}/{vhostname}", log=log, prefix=prefix, env=podman.env, **kw)


def test_two_podman_containers_pass_packets_through_ovs_dpdk(
    ovs_dpdk: OvsDpdk,
    start_agent: Any,
    podman: Podman,
    busybox_rootfs: Path,
    dpdk_rootfs: Path,
    tmp_path: Path,
) -> None:
    require_command("stdbuf")
    root = short_tempdir("pw11p")
    try:
        config = agent_config(tmp_path / "agent.toml", ovs_dpdk, root)
        agent: AgentProcess = start_agent("--config", str(config))
        net = agent.create_network(unique("pw11p"), "198.18.114.0/24", datapath="vhostuser")
        # A's port: the network's default (server); B's: a port whose binding
        # says client mode, handed to podman's CNI config by id.
        port_b = agent.backend.create_port(
            agent.ctx,
            PortCreate(
                network_id=net.id,
                binding=PortBinding(vif_type="vhostuser", vif_details={"vhostuser_mode": "client"}),
            ),
        )
        podman.add_network("pw11-a", net.name, agent.socket)
        path_b = podman.add_network("pw11-b", net.name, agent.socket)
        conflist = json.loads(path_b.read_text())
        conflist["plugins"][0]["networks"] = [{"name": net.name, "port": port_b.id}]
        del conflist["plugins"][0]["network"]
        path_b.write_text(json.dumps(conflist))

        sandbox_a = podman.start(unique("pw11sa", 6), "pw11-a", busybox_rootfs)
        sandbox_b = podman.start(unique("pw11sb", 6), "pw11-b", busybox_rootfs)
        dir_a, dir_b = root / sandbox_a, root / sandbox_b
        assert {p.name for p in root.iterdir()} == {sandbox_a, sandbox_b}

        a = _app(podman, sandbox_a, dir_a, dpdk_rootfs, tmp_path / "a.log", server=True)
        b = _app(podman, sandbox_b, dir_b, dpdk_rootfs, tmp_path / "b.log", server=False)
        try:
            a.wait_for("testpmd>", timeout=60)
            b.wait_for("testpmd>", timeout=60)
            names = [p for p in ovs_dpdk.ports() if p.startswith("vhu")]
            ovs_dpdk.wait_link_up(names)
            a.command("start tx_first")
            b.command("start tx_first")
            first = (a.stats(), b.stats())
            time.sleep(1.0)
            second = (a.stats(), b.stats())
            for before, after in zip(first, second, strict=True):
                assert after[0] > before[0] and after[1] > before[1], (first, second)
        finally:
            a.stop()
            b.stop()

        # CHECK (as a runtime runs it) notices B's socket removed by hand.
        record_b = next(r for r in agent.attachments() if r["container_id"] == sandbox_b)
        conf_b = netconf(net.name)
        assert agent.cni("CHECK", conf_b, container_id=sandbox_b, netns=record_b["netns"]).code == 0
        next(p for p in dir_b.iterdir() if p.name.startswith("vhu")).unlink()
        broken = agent.cni("CHECK", conf_b, container_id=sandbox_b, netns=record_b["netns"])
        assert broken.code != 0 and "socket" in broken.json["msg"], broken.stdout

        # podman's CNI DEL, at removal, leaves nothing.
        podman.remove(sandbox_a)
        podman.remove(sandbox_b)
        assert agent.attachments() == []
        assert [p for p in ovs_dpdk.ports() if p.startswith("vhu")] == []
        assert list(root.iterdir()) == [] and list(ovs_dpdk.sock_dir.iterdir()) == []
        agent.backend.delete_port(agent.ctx, port_b.id)
    finally:
        for port in ovs_dpdk.ports():
            if port.startswith("vhu"):
                ovs_dpdk.vsctl("--if-exists", "del-port", port)
        shutil.rmtree(root, ignore_errors=True)
