"""The vhostuser kind through a real agent (embedded backend) on a private
OVS-DPDK, driven by the real CNI shim: the socket and the config file in
the container's directory, both modes, real packets through dpdk-testpmd,
CHECK, DEL leaving nothing, and clear refusals."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from podwire.model import PortBinding, PortCreate, PortUpdate
from tests.fixtures.agent import AgentProcess, netconf, netns_path, short_tempdir
from tests.fixtures.common import unique
from tests.fixtures.ovs_dpdk import DpdkTestpmd, OvsDpdk

pytestmark = [pytest.mark.dpdk, pytest.mark.root]


@dataclass
class VhostAgent:
    agent: AgentProcess
    ovs: OvsDpdk
    root: Path  # vhostuser.socket_root
    network: Any

    def add(self, container_id: str, netns: str, port: str | None = None) -> dict[str, Any]:
        conf = netconf(self.network.name)
        if port:
            conf = netconf(self.network.name, networks=[{"name": self.network.name, "port": port}])
            conf.pop("network")
        answer = self.agent.cni("ADD", conf, container_id=container_id, netns=netns)
        assert answer.code == 0, answer.stdout + answer.stderr
        return dict(answer.json)

    def cni(self, command: str, container_id: str, netns: str) -> Any:
        return self.agent.cni(
            command, netconf(self.network.name), container_id=container_id, netns=netns
        )

    def client_port(self, port_id: str | None = None) -> str:
        """A port whose binding says vhostuser, client mode (as Neutron answers
        at each binding); ``port_id``: say it again on that port (a DEL gives
        an adopted port back unbound)."""
        binding = PortBinding(vif_type="vhostuser", vif_details={"vhostuser_mode": "client"})
        if port_id:
            self.agent.backend.update_port(self.agent.ctx, port_id, PortUpdate(binding=binding))
            return port_id
        port = self.agent.backend.create_port(
            self.agent.ctx, PortCreate(network_id=self.network.id, binding=binding)
        )
        return str(port.id)


def agent_config(path: Path, ovs: OvsDpdk, root: Path, **extra: Any) -> Path:
    lines = [
        "[vhostuser]",
        f'socket_root = "{root}"',
        f'bridge = "{ovs.bridge}"',
        f'ovs_db = "{ovs.remote}"',
        f'ovs_socket_dir = "{ovs.sock_dir}"',
        *(f"{k} = {json.dumps(v)}" for k, v in extra.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def vhost_agent(ovs_dpdk: OvsDpdk, start_agent: Any, tmp_path: Path) -> Iterator[VhostAgent]:
    root = short_tempdir("pw11s")
    config = agent_config(tmp_path / "agent.toml", ovs_dpdk, root)
    agent: AgentProcess = start_agent("--config", str(config))
    network = agent.create_network(unique("pw11n"), "198.18.111.0/24", datapath="vhostuser")
    try:
        yield VhostAgent(agent, ovs_dpdk, root, network)
    finally:
        for record in agent.attachments() if agent.proc else []:
            agent.cni(
                "DEL",
                netconf(network.name),
                container_id=record["container_id"],
                ifname=record["ifname"],
            )
        for port in ovs_dpdk.ports():
            if port.startswith("vhu"):
                ovs_dpdk.vsctl("--if-exists", "del-port", port)
        shutil.rmtree(root, ignore_errors=True)


def _is_socket(path: Path) -> bool:
    return path.exists() and stat.S_ISSOCK(path.lstat().st_mode)


def _nothing_left(va: VhostAgent) -> None:
    assert [p for p in va.ovs.ports() if p.startswith("vhu")] == []
    assert list(va.root.iterdir()) == []
    assert list(va.ovs.sock_dir.iterdir()) == []
    assert va.agent.attachments() == []


def test_both_modes_pass_packets_and_del_leaves_nothing(
    vhost_agent: VhostAgent, make_netns: Any, tmp_path: Path
) -> None:
    va = vhost_agent
    ns_a, ns_b = netns_path(make_netns("pw11")), netns_path(make_netns("pw11"))
    cid_a, cid_b = unique("pw11ca", 10), unique("pw11cb", 10)

    # A: server mode (the network's default); B: client mode (its port says so).
    result_a = va.add(cid_a, ns_a)
    result_b = va.add(cid_b, ns_b, port=va.client_port())

    iface_a, iface_b = result_a["interfaces"][-1], result_b["interfaces"][-1]
    sock_a, sock_b = Path(iface_a["socketPath"]), Path(iface_b["socketPath"])
    assert sock_a.parent == va.root / cid_a and sock_b.parent == va.root / cid_b
    # No netdev in the container: no host interface either.
    assert len(result_a["interfaces"]) == 1 and iface_a["name"] == "eth0"
    conf_a = json.loads((va.root / cid_a / f"{cid_a}-eth0").read_text())
    conf_b = json.loads((va.root / cid_b / f"{cid_b}-eth0").read_text())
    assert conf_a["mode"] == "server" and conf_b["mode"] == "client"
    assert conf_a["vhostname"] == sock_a.name and conf_b["vhostname"] == sock_b.name
    assert conf_a["vhostmac"] == iface_a["mac"]
    assert conf_a["addresses"][0].startswith("198.18.111.")
    # Client mode: OVS made the socket; the agent moved it into B's directory.
    assert _is_socket(sock_b) and not _is_socket(sock_a)
    assert list(va.ovs.sock_dir.iterdir()) == []
    for ovs_type in ("dpdkvhostuserclient", "dpdkvhostuser"):
        found = va.ovs.vsctl("--bare", "--columns=name", "find", "Interface", f"type={ovs_type}")
        assert len(found.split()) == 1, ovs_type
    # network-status carries the device-info of type vhost-user.
    status = va.agent.get(f"/v1/containers/{cid_a}/network-status")
    info = status[0]["device-info"] if isinstance(status, list) else status
    assert "vhost-user" in json.dumps(info)

    # Real packets: A's testpmd is the vhost-user server, B's the client.
    a = DpdkTestpmd(str(sock_a), server=True, log=tmp_path / "a.log")
    b = DpdkTestpmd(str(sock_b), server=False, log=tmp_path / "b.log")
    try:
        a.wait_for("testpmd>")
        b.wait_for("testpmd>")
        names = [p for p in va.ovs.ports() if p.startswith("vhu")]
        va.ovs.wait_link_up(names)
        a.command("start tx_first")
        b.command("start tx_first")
        first = (a.stats(), b.stats())
        time.sleep(1.0)
        second = (a.stats(), b.stats())
        for before, after in zip(first, second, strict=True):
            assert after[0] > before[0] and after[1] > before[1], (first, second)
        # OVS counts the server-mode (dpdkvhostuserclient) port; OVS 3.1
        # keeps no statistics for dpdkvhostuser ports ("could not retrieve
        # stats" in dpctl/show), whoever holds their socket.
        ovs_port_a = va.ovs.vsctl(
            "--bare", "--columns=name", "find", "Interface", "type=dpdkvhostuserclient"
        ).strip()
        rx, tx = va.ovs.packets(ovs_port_a)
        assert rx > 0 and tx > 0, (rx, tx)
    finally:
        a.stop()
        b.stop()

    # CHECK passes, then notices B's socket removed by hand.
    assert va.cni("CHECK", cid_b, ns_b).code == 0
    sock_b.unlink()
    answer = va.cni("CHECK", cid_b, ns_b)
    assert answer.code != 0 and "socket" in json.dumps(answer.json)

    for cid, ns in ((cid_a, ns_a), (cid_b, ns_b)):
        assert va.cni("DEL", cid, ns).code == 0
        assert va.cni("DEL", cid, ns).code == 0  # idempotent
    _nothing_left(va)
    assert not os.path.exists(sock_a)


def test_client_mode_port_added_again_after_del_connects(
    vhost_agent: VhostAgent, make_netns: Any, tmp_path: Path
) -> None:
    """The same port, ADD, DEL, ADD (a container re-created on its port):
    OVS gets the same interface name again and must listen on the socket
    the second ADD moved, with an application connected in between."""
    va = vhost_agent
    ns, cid = netns_path(make_netns("pw11")), unique("pw11cr", 10)
    port = va.client_port()
    for round_ in range(2):
        result = va.add(cid, ns, port=va.client_port(port))
        assert json.loads(Path(va.root / cid / f"{cid}-eth0").read_text())["mode"] == "client"
        sock = result["interfaces"][-1]["socketPath"]
        app = DpdkTestpmd(sock, server=False, log=tmp_path / f"c{round_}.log")
        try:
            app.wait_for("testpmd>")
            va.ovs.wait_link_up([p for p in va.ovs.ports() if p.startswith("vhu")], timeout=10)
        finally:
            app.stop()
        assert va.cni("DEL", cid, ns).code == 0
    _nothing_left(va)


def test_after_an_ovs_restart_server_mode_reconnects_and_check_reports_client_mode_broken(
    vhost_agent: VhostAgent, make_netns: Any, tmp_path: Path
) -> None:
    """The choice documented in docs/vhostuser.md: in client mode OVS makes a
    new socket in its own directory and the moved one is dead; the agent
    does not move it again, CHECK says the attachment is broken. Server mode
    needs nothing: OVS reconnects to the application's socket."""
    va = vhost_agent
    ns_a, ns_b = netns_path(make_netns("pw11")), netns_path(make_netns("pw11"))
    cid_a, cid_b = unique("pw11ra", 10), unique("pw11rb", 10)
    sock_a = Path(va.add(cid_a, ns_a)["interfaces"][-1]["socketPath"])
    va.add(cid_b, ns_b, port=va.client_port())
    server_port = sock_a.name
    app = DpdkTestpmd(str(sock_a), server=True, log=tmp_path / "a.log")
    try:
        app.wait_for("testpmd>")
        va.ovs.wait_link_up([server_port])
        va.ovs.restart_vswitchd()
        # OVS reconnects by itself; testpmd's virtio-user server accepts the
        # new connection when it polls its link (a DPDK application does).
        deadline = time.monotonic() + 20
        while va.ovs.interface(server_port, "link_state") != "up":
            assert time.monotonic() < deadline, va.ovs.log()
            app.command("show port info 0")
            time.sleep(0.5)
        assert va.cni("CHECK", cid_a, ns_a).code == 0
    finally:
        app.stop()
    broken = va.cni("CHECK", cid_b, ns_b)
    assert broken.code != 0 and "re-created" in broken.json["msg"], broken.stdout
    for cid, ns in ((cid_a, ns_a), (cid_b, ns_b)):
        assert va.cni("DEL", cid, ns).code == 0
    _nothing_left(va)


def test_two_interfaces_of_one_container_share_its_directory(
    vhost_agent: VhostAgent, make_netns: Any
) -> None:
    va = vhost_agent
    ns, cid = netns_path(make_netns("pw11")), unique("pw11two", 10)
    conf = netconf(va.network.name)
    for ifname in ("net1", "net2"):
        answer = va.agent.cni("ADD", conf, container_id=cid, netns=ns, ifname=ifname)
        assert answer.code == 0, answer.stdout
    files = sorted(p.name for p in (va.root / cid).iterdir())
    assert f"{cid}-net1" in files and f"{cid}-net2" in files
    assert [p.name for p in va.root.iterdir()] == [cid]
    assert va.agent.cni("DEL", conf, container_id=cid, netns=ns, ifname="net1").code == 0
    # The other interface's config file (and directory) stay.
    assert sorted(p.name for p in (va.root / cid).iterdir()) == [f"{cid}-net2"]
    assert va.agent.cni("DEL", conf, container_id=cid, netns=ns, ifname="net2").code == 0
    _nothing_left(va)
