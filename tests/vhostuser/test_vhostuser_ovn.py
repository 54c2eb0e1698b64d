"""vhost-user on the OVN backend: the integration bridge is a netdev bridge
of the private OVS-DPDK, ovn-controller binds the vhost-user interfaces by
iface-id = the logical port, ADD returns once it has (ovn-installed), and
two dpdk-testpmd (server and client mode) pass packets to each other
through the OVN logical switch, port security on: each sends from its
port's MAC and address (the config file's vhostmac and addresses) to the
other's, and swaps them back (5tswap)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podwire.model import PortBinding, PortCreate
from tests.fixtures.agent import AgentProcess, netconf, netns_path, short_tempdir
from tests.fixtures.common import unique
from tests.fixtures.ovs_dpdk import DpdkTestpmd, OvnOnDpdk, OvsDpdk, ovn_on

pytestmark = [pytest.mark.dpdk, pytest.mark.ovn, pytest.mark.root]


@pytest.fixture(scope="module")
def ovn_dpdk(ovs_dpdk: OvsDpdk) -> Iterator[OvnOnDpdk]:
    with ovn_on(ovs_dpdk) as env:
        yield env


def test_two_vhost_user_ports_pass_packets_through_an_ovn_logical_switch(
    ovn_dpdk: OvnOnDpdk, start_agent: Any, make_netns: Any, tmp_path: Path
) -> None:
    ovs = ovn_dpdk.ovs
    root = short_tempdir("pw11o")
    config = tmp_path / "agent.toml"
    config.write_text(
        'backend = "ovn"\n[ovn]\n'
        f'nb_remotes = ["{ovn_dpdk.nb.remote}"]\nintegration_bridge = "{ovn_dpdk.bridge}"\n'
        f'ovs_db = "{ovs.remote}"\nbind_timeout = 20.0\n'
        f'[vhostuser]\nsocket_root = "{root}"\novs_socket_dir = "{ovs.sock_dir}"\n'
    )
    agent: AgentProcess = start_agent("--config", str(config))
    net = agent.create_network(unique("pw11o"), "198.18.116.0/24", datapath="vhostuser")
    port_b = agent.backend.create_port(
        agent.ctx,
        PortCreate(
            network_id=net.id,
            binding=PortBinding(vif_type="vhostuser", vif_details={"vhostuser_mode": "client"}),
        ),
    )
    ns_a, ns_b = netns_path(make_netns("pw11")), netns_path(make_netns("pw11"))
    cid_a, cid_b = unique("pw11oa", 10), unique("pw11ob", 10)
    conf_b = netconf(net.name, networks=[{"name": net.name, "port": port_b.id}])
    conf_b.pop("network")
    try:
        added_a = agent.cni("ADD", netconf(net.name), container_id=cid_a, netns=ns_a)
        added_b = agent.cni("ADD", conf_b, container_id=cid_b, netns=ns_b)
        assert added_a.code == 0 and added_b.code == 0, added_a.stdout + added_b.stdout
        apps = []
        for cid in (cid_a, cid_b):
            conf = json.loads((root / cid / f"{cid}-eth0").read_text())
            ifname = conf["vhostname"]
            ids = ovs.vsctl("get", "Interface", ifname, "external_ids")
            # Bound by ovn-controller before ADD returned.
            assert "ovn-installed" in ids and "iface-id" in ids, ids
            apps.append((root / cid / ifname, conf))
        (sock_a, a_conf), (sock_b, b_conf) = apps
        ip_a, ip_b = a_conf["addresses"][0].split("/")[0], b_conf["addresses"][0].split("/")[0]

        def app(sock: Path, server: bool, me: dict[str, Any], peer_mac: str, tx_ip: str) -> Any:
            return DpdkTestpmd(
                str(sock),
                server=server,
                log=tmp_path / f"{sock.name}.log",
                mac=me["vhostmac"],
                forward_mode="5tswap",
                extra=[f"--eth-peer=0,{peer_mac}", f"--tx-ip={tx_ip}"],
            )

        a = app(sock_a, True, a_conf, b_conf["vhostmac"], f"{ip_a},{ip_b}")
        b = app(sock_b, False, b_conf, a_conf["vhostmac"], f"{ip_b},{ip_a}")
        try:
            a.wait_for("testpmd>")
            b.wait_for("testpmd>")
            ovs.wait_link_up([sock_a.name, sock_b.name])
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

        for cid, ns, conf in ((cid_a, ns_a, netconf(net.name)), (cid_b, ns_b, conf_b)):
            assert agent.cni("DEL", conf, container_id=cid, netns=ns).code == 0
        assert [
            p for p in ovs.vsctl("list-ports", ovn_dpdk.bridge).split() if p.startswith("vhu")
        ] == []
        assert list(root.iterdir()) == [] and list(ovs.sock_dir.iterdir()) == []
    finally:
        for port in ovs.vsctl("list-ports", ovn_dpdk.bridge).split():
            if port.startswith("vhu"):
                ovs.vsctl("--if-exists", "del-port", port)
        shutil.rmtree(root, ignore_errors=True)
