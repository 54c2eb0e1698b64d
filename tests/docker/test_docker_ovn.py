"""Docker on the OVN backend: the same plugin, the agent configured with
``backend = "ovn"`` on a private OVS + OVN; the container's interface is a
veth on the integration bridge (iface-id = the logical port)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.common import unique
from tests.fixtures.docker import DockerAgent, DockerEnv, PrivateDockerd, random_subnets
from tests.fixtures.ovn import OvnEnv

pytestmark = [pytest.mark.docker, pytest.mark.ovn, pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def ovn_docker(dockerd: PrivateDockerd, ovn_env: OvnEnv) -> Iterator[DockerEnv]:
    state = Path(tempfile.mkdtemp(prefix="pwdockovn-", dir="/tmp"))
    agent = DockerAgent(
        state_dir=state,
        driver=unique("podwire-o", 8),
        extra_toml=(
            'backend = "ovn"\n'
            "[ovn]\n"
            f'nb_remotes = ["{ovn_env.nb_remote}"]\n'
            f'ovs_db = "{ovn_env.ovs_remote}"\n'
            f'integration_bridge = "{ovn_env.bridge}"\n'
            "bind_timeout = 30.0\n"
        ),
    )
    try:
        agent.start()
        yield DockerEnv(dockerd, agent)
    finally:
        # Containers and networks go while the plugin still answers.
        dockerd.remove_all(driver=agent.driver)
        agent.close_backend()
        agent.stop()
        with contextlib.suppress(FileNotFoundError):
            agent.plugin_socket.unlink()
        shutil.rmtree(state, ignore_errors=True)


def test_containers_on_an_ovn_logical_switch(ovn_docker: DockerEnv, ovn_env: OvnEnv) -> None:
    env = ovn_docker
    v4, _ = random_subnets()
    net = unique("pwn")
    env.create_network(net, v4)
    backend_net = env.backend_network(net)
    c1, c2 = unique("c"), unique("c")
    env.run(c1, net)
    env.run(c2, net)

    lsps = set(ovn_env.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port").split())
    for c in (c1, c2):
        ep = env.endpoint(c, net)
        ports = [p for p in env.agent.ports(backend_net.id) if p.device_id == ep["EndpointID"]]
        assert len(ports) == 1
        port = ports[0]
        assert ep["IPAddress"] == port.fixed_ips[0].ip_address
        assert ep["MacAddress"] == port.mac_address
        assert port.binding.vif_type == "veth_ovs"
        assert port.id in lsps
    iface_ids = _ovs_iface_ids(ovn_env)
    assert all(p.id in iface_ids for p in env.agent.ports(backend_net.id))

    done = env.exec(
        c1, "ping", "-c", "3", "-W", "3", env.endpoint(c2, net)["IPAddress"], check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr

    endpoint_ports = {p.id for p in env.agent.ports(backend_net.id)}
    env.docker("rm", "-f", c1, c2)
    assert env.agent.ports(backend_net.id) == []
    left = set(ovn_env.nbctl("--bare", "--columns=name", "list", "Logical_Switch_Port").split())
    assert not endpoint_ports & left
    assert not endpoint_ports & set(_ovs_iface_ids(ovn_env))
    env.docker("network", "rm", net)
    assert backend_net.id not in ovn_env.nbctl("--bare", "--columns=name", "list", "Logical_Switch")


def _ovs_iface_ids(env: OvnEnv) -> list[str]:
    out = env.vsctl("--bare", "--columns=external_ids", "list", "Interface")
    return [w.split("=", 1)[1] for w in out.split() if w.startswith("iface-id=")]
