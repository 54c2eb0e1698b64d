"""The vhostuser kind's pure logic: the decision, the VIF from a port's
binding and the node's configuration, the application's config file, the
device-info, and what the driver refuses before it makes anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from podwire.config import Config, load_config
from podwire.datapath.vhostuser import MAX_SOCKET_PATH, app_config
from podwire.datapath.vif import VhostUser
from podwire.errors import Exhausted, InvalidInput
from podwire.kinds import registry
from podwire.kinds.base import AttachmentRef, BuildContext, KindChoice, KindEnv
from podwire.kinds.vhostuser import VhostUserKind
from podwire.model import FixedIp, Network, Port, PortBinding, Subnet

NET_ID = "3f0e4a0c-1111-4222-8333-944455556666"
PORT_ID = "9a8b7c6d-aaaa-4bbb-8ccc-ddddeeeeffff"
CID = "c0ffee0123456789"


def _kind(config: Config) -> VhostUserKind:
    return VhostUserKind(KindEnv(config, None, None, lambda _n: False))  # type: ignore[arg-type]


def _vif(config: Config | None = None, **binding: object) -> VhostUser:
    config = config or Config()
    kind = _kind(config)
    port = Port(
        id=PORT_ID,
        project_id="p",
        network_id=NET_ID,
        mac_address="0a:70:77:01:02:03",
        fixed_ips=[FixedIp(subnet_id="s4", ip_address="198.18.7.10")],
        binding=PortBinding(**binding),  # type: ignore[arg-type]
    )
    subnet = Subnet(id="s4", project_id="p", network_id=NET_ID, ip_version=4, cidr="198.18.7.0/24")
    ref = AttachmentRef("a1", CID, "net1", NET_ID, PORT_ID)
    ctx = BuildContext(
        network=Network(id=NET_ID, project_id="p", datapath="vhostuser"),
        port=port,
        subnets=[subnet],
        config=config,
        ifname="net1",
        allocation=kind.allocate(ref, {}),
    )
    vif = kind.build(ctx)
    assert isinstance(vif, VhostUser)
    return vif


def test_decided_by_the_hint_or_the_binding() -> None:
    assert registry.decide(KindChoice(datapath_hint="vhostuser")) == "vhostuser"
    assert registry.decide(KindChoice(vif_type="vhostuser")) == "vhostuser"


def test_vif_from_the_node_config_and_the_binding() -> None:
    vif = _vif()
    assert vif.mode == "server"  # vhostuser.default_mode
    assert vif.socket_dir == f"/var/run/podwire/vhostuser/{CID}"
    assert vif.config_name == f"{CID}-net1"
    assert vif.ovs_ifname == vif.socket_name == "vhu9a8b7c6daaaa"
    assert vif.bridge == "br-dpdk" and not vif.wait_bound
    assert vif.iface_id == PORT_ID and vif.addresses == ("198.18.7.10/24",)
    # The binding's mode and socket name (only its file name) win.
    client = _vif(
        vif_type="vhostuser",
        vif_details={"vhostuser_mode": "client", "vhostuser_socket": "/x/y/vhuabc"},
    )
    assert client.mode == "client" and client.socket_name == "vhuabc"
    with pytest.raises(InvalidInput, match="vhostuser_mode"):
        _vif(vif_details={"vhostuser_mode": "both"})


def test_on_ovn_the_integration_bridge_and_the_binding_wait(tmp_path: Path) -> None:
    config = load_config(
        None,
        backend="ovn",
        **{"ovn.integration_bridge": "br-x", "ovn.ovs_db": "unix:/tmp/x.sock"},
    )
    vif = _vif(config)
    assert vif.bridge == "br-x" and vif.wait_bound and vif.ovs_db == "unix:/tmp/x.sock"


def test_the_application_config_and_device_info() -> None:
    vif = _vif(vif_details={"vhostuser_mode": "client"})
    conf = app_config(vif, "net1")
    assert conf["vhostname"] == vif.socket_name and conf["vhostmac"] == vif.mac
    assert conf["mode"] == "client" and conf["addresses"] == ["198.18.7.10/24"]
    info = _kind(Config()).device_info(vif, None)
    assert info == {
        "type": "vhost-user",
        "version": "1.1.0",
        "vhost-user": {"mode": "client", "path": f"{vif.socket_dir}/{vif.socket_name}"},
    }


def test_a_socket_path_over_107_bytes_is_refused_before_anything_is_made() -> None:
    long_root = "/run/" + "d" * 80
    config = load_config(None, **{"vhostuser.socket_root": long_root})
    with pytest.raises(InvalidInput, match="107"):
        _vif(config)  # the builder refuses, before the plug step
    assert not Path(long_root).exists()
    assert MAX_SOCKET_PATH == 107


def test_too_few_hugepages_are_refused_by_the_allocation() -> None:
    config = load_config(None, **{"vhostuser.hugepages_mb": 10**9})
    with pytest.raises(Exhausted, match="MiB of hugepages"):
        _kind(config).allocate(AttachmentRef("a1", CID, "net1", NET_ID, PORT_ID), {})


def test_a_container_id_that_is_no_file_name_is_refused() -> None:
    kind = _kind(Config())
    for bad in ("../x", "a/b", ".."):
        with pytest.raises(InvalidInput, match="container id"):
            kind.allocate(AttachmentRef("a1", bad, "net1", NET_ID, PORT_ID), {})
