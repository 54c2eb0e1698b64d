"""CNI spec logic that needs no agent: parsing, versions, result shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from podwire.agent.types import AttachedInterface, Attachment
from podwire.datapath.base import PluggedInterface
from podwire.datapath.vif import Route, VethBridge
from podwire.frontends.cni import versions
from podwire.frontends.cni.errors import CniError
from podwire.frontends.cni.handler import parse, parse_cni_args
from podwire.frontends.cni.result import render
from podwire.frontends.cni.selection import from_config
from podwire.model import FixedIp, Port, Subnet

NOW = datetime.now(UTC)


def _headers(**env: str) -> dict[str, str]:
    return {"x-cni-" + k.lower(): v for k, v in env.items()}


def _conf(version: str = "1.1.0", **extra: object) -> bytes:
    return json.dumps({"cniVersion": version, "name": "n", "type": "podwire", **extra}).encode()


def _code(headers: dict[str, str], body: bytes) -> int:
    with pytest.raises(CniError) as info:
        parse(headers, body)
    return info.value.code


def test_env_errors_are_code_4() -> None:
    ok = {"containerid": "abc", "netns": "/var/run/netns/x", "ifname": "eth0", "path": "/x"}
    assert _code(_headers(**ok), _conf()) == 4  # no command
    assert _code(_headers(command="FROB", **ok), _conf()) == 4
    assert _code(_headers(command="ADD", netns="/x", ifname="eth0"), _conf()) == 4
    assert _code(_headers(command="ADD", **{**ok, "containerid": "-bad"}), _conf()) == 4
    for bad in ("", ".", "..", "a/b", "a:b", "a b", "x" * 16):
        assert _code(_headers(command="ADD", **{**ok, "ifname": bad}), _conf()) == 4
    assert _code(_headers(command="ADD", containerid="abc", ifname="eth0"), _conf()) == 4
    # every verb but VERSION needs CNI_PATH (the reference plugins' skel)
    for verb in ("ADD", "DEL", "CHECK", "GC", "STATUS"):
        assert _code(_headers(command=verb, **{**ok, "path": ""}), _conf()) == 4
    # DEL needs no netns
    del_ok = _headers(command="DEL", containerid="abc", ifname="eth0", path="/x")
    assert parse(del_ok, _conf()).netns is None


def test_decode_and_version_errors() -> None:
    h = _headers(command="ADD", containerid="abc", netns="/n", ifname="eth0")
    assert _code(h, b"{not json") == 6
    assert _code(h, b"[1]") == 6
    assert _code(h, _conf("0.2.0")) == 1
    assert _code(h, _conf("9.9.9")) == 1
    for verb, old in (("CHECK", "0.3.1"), ("STATUS", "1.0.0"), ("GC", "1.0.0")):
        headers = {**h, "x-cni-command": verb}
        assert _code(headers, _conf(old)) == 1


def test_cni_versions_list_is_honoured_when_cni_version_is_not_ours() -> None:
    assert versions.choose({"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0"]}) == "1.0.0"
    assert versions.choose({"cniVersions": ["0.4.0", "1.0.0", "2.0.0"]}) == "1.0.0"
    assert versions.choose({"cniVersion": "2.0.0", "cniVersions": ["1.1.0", "2.0.0"]}) == "1.1.0"


def test_cni_args() -> None:
    assert parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=x;IP=198.18.0.9") == {
        "IgnoreUnknown": "1",
        "K8S_POD_NAME": "x",
        "IP": "198.18.0.9",
    }
    with pytest.raises(CniError) as info:
        parse_cni_args("FOO=1")
    assert info.value.code == 4 and "FOO" in info.value.msg
    with pytest.raises(CniError):
        parse_cni_args("novalue")


def _result() -> AttachedInterface:
    v4 = Subnet(
        id="s4",
        project_id="p",
        network_id="n",
        ip_version=4,
        cidr="198.18.5.0/24",
        gateway_ip="198.18.5.1",
        dns_nameservers=["198.18.5.53"],
    )
    v6 = Subnet(
        id="s6",
        project_id="p",
        network_id="n",
        ip_version=6,
        cidr="2001:db8:5::/64",
        gateway_ip="2001:db8:5::1",
    )
    port = Port(
        id="p1",
        project_id="p",
        network_id="n",
        mac_address="0a:70:77:00:00:01",
        fixed_ips=[
            FixedIp(subnet_id="s4", ip_address="198.18.5.10"),
            FixedIp(subnet_id="s6", ip_address="2001:db8:5::10"),
        ],
    )
    vif = VethBridge(
        port_id="p1",
        network_id="n",
        mac=port.mac_address,
        addresses=("198.18.5.10/24", "2001:db8:5::10/64"),
        routes=(
            Route(destination="0.0.0.0/0", gateway="198.18.5.1"),
            Route(destination="::/0", gateway="2001:db8:5::1"),
        ),
        mtu=1450,
        dns_nameservers=("198.18.5.53",),
        bridge="pwbrx",
        host_ifname="pwvx",
    )
    att = Attachment(
        id="a",
        container_id="c",
        netns="/var/run/netns/x",
        ifname="eth0",
        network_id="n",
        port_id="p1",
        vif=vif,
        state="ready",
        created_at=NOW,
        updated_at=NOW,
    )
    iface = PluggedInterface(
        ifname="eth0",
        mac=port.mac_address,
        sandbox="/var/run/netns/x",
        mtu=1450,
        addresses=list(vif.addresses),
        host_ifname="pwvx",
    )
    return AttachedInterface(attachment=att, interface=iface, port=port, subnets=[v4, v6])


def test_result_shapes_per_version() -> None:
    r11 = render([_result()], "1.1.0", None)
    assert r11["cniVersion"] == "1.1.0"
    assert r11["interfaces"] == [
        {"name": "pwvx"},
        {"name": "eth0", "mac": "0a:70:77:00:00:01", "sandbox": "/var/run/netns/x", "mtu": 1450},
    ]
    assert r11["ips"] == [
        {"address": "198.18.5.10/24", "gateway": "198.18.5.1", "interface": 1},
        {"address": "2001:db8:5::10/64", "gateway": "2001:db8:5::1", "interface": 1},
    ]
    assert r11["routes"] == [
        {"dst": "0.0.0.0/0", "gw": "198.18.5.1"},
        {"dst": "::/0", "gw": "2001:db8:5::1"},
    ]
    assert r11["dns"] == {"nameservers": ["198.18.5.53"]}

    r10 = render([_result()], "1.0.0", None)
    assert "mtu" not in r10["interfaces"][1]
    assert all("version" not in ip for ip in r10["ips"])

    r04 = render([_result()], "0.4.0", None)
    assert [ip["version"] for ip in r04["ips"]] == ["4", "6"]
    assert r04["cniVersion"] == "0.4.0"


def test_prev_result_is_passed_through_and_indexes_shift() -> None:
    prev = {
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "lo0"}],
        "ips": [{"version": "4", "address": "198.19.0.2/24", "interface": 0}],
        "dns": {"nameservers": ["198.19.0.53"]},
    }
    out = render([_result()], "1.0.0", prev)
    assert [i["name"] for i in out["interfaces"]] == ["lo0", "pwvx", "eth0"]
    assert out["ips"][0] == {"address": "198.19.0.2/24", "interface": 0}
    assert {ip["interface"] for ip in out["ips"][1:]} == {2}
    assert out["dns"]["nameservers"] == ["198.19.0.53", "198.18.5.53"]


def _second() -> AttachedInterface:
    """An interface on a second network that does not own the default route:
    its on-link routes only, no DNS."""
    one = _result()
    vif = one.attachment.vif
    assert vif is not None
    vif2 = vif.model_copy(
        update={
            "port_id": "p2",
            "mac": "0a:70:77:00:00:02",
            "addresses": ("198.18.6.10/24",),
            "routes": (Route(destination="198.18.60.0/24", gateway="198.18.6.1"),),
            "dns_nameservers": (),
            "host_ifname": "pwvy",
        }
    )
    port = one.port.model_copy(
        update={
            "id": "p2",
            "mac_address": "0a:70:77:00:00:02",
            "fixed_ips": [FixedIp(subnet_id="s7", ip_address="198.18.6.10")],
        }
    )
    subnet = one.subnets[0].model_copy(
        update={"id": "s7", "cidr": "198.18.6.0/24", "gateway_ip": "198.18.6.1"}
    )
    return AttachedInterface(
        attachment=one.attachment.model_copy(update={"ifname": "eth1", "vif": vif2}),
        interface=one.interface.model_copy(
            update={
                "ifname": "eth1",
                "mac": "0a:70:77:00:00:02",
                "addresses": ["198.18.6.10/24"],
                "host_ifname": "pwvy",
            }
        ),
        port=port,
        subnets=[subnet],
    )


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_two_interfaces_in_one_result(version: str) -> None:
    out = render([_result(), _second()], version, None)
    assert [i["name"] for i in out["interfaces"]] == ["pwvx", "eth0", "pwvy", "eth1"]
    assert [(ip["address"], ip["interface"]) for ip in out["ips"]] == [
        ("198.18.5.10/24", 1),
        ("2001:db8:5::10/64", 1),
        ("198.18.6.10/24", 3),
    ]
    assert [r["dst"] for r in out["routes"]] == ["0.0.0.0/0", "::/0", "198.18.60.0/24"]
    assert out["dns"] == {"nameservers": ["198.18.5.53"]}
    assert all(("version" in ip) == (version < "1.0.0") for ip in out["ips"])
    assert all(("mtu" in i) == (version == "1.1.0") for i in out["interfaces"] if "sandbox" in i)


def test_networks_key_parsed_into_selections() -> None:
    config = {
        "name": "multi",
        "networks": [
            {"name": "a", "ips": ["198.18.5.9/24"], "default-route": ["198.18.5.1"]},
            {"network": "b", "interface": "net1", "mac": "0A:70:77:00:00:09", "port": "p-1"},
            {"name": "c", "default-route": False},
        ],
    }
    first, second, third = from_config(config, "eth0")
    assert (first.network, first.ifname, first.ips, first.default_route) == (
        "a",
        "eth0",
        ["198.18.5.9"],
        True,
    )
    assert (second.network, second.ifname, second.mac, second.port_id) == (
        "b",
        "net1",
        "0a:70:77:00:00:09",
        "p-1",
    )
    assert (third.network, third.ifname, third.default_route) == ("c", None, False)
    assert from_config({"name": "x", "network": "y"}, "eth0")[0].network == "y"
    assert from_config({"name": "x"}, "eth0")[0].network == "x"
    # one network per config (podman --network a,b) may decline the default route
    [declined] = from_config({"name": "x", "network": "y", "default-route": False}, "eth1")
    assert (declined.ifname, declined.default_route) == ("eth1", False)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"network": "a", "networks": [{"name": "b"}]}, "networks"),
        ({"networks": []}, "networks"),
        ({"networks": "a"}, "networks"),
        ({"networks": ["a"]}, "networks[0]"),
        ({"networks": [{"name": "a"}, {"interface": "eth1"}]}, "networks[1].network"),
        ({"networks": [{"name": "a", "network": "a"}]}, "networks[0].network"),
        ({"networks": [{"name": "a", "namespace": "k"}]}, "networks[0].namespace"),
        ({"networks": [{"name": "a", "ips": "198.18.0.1"}]}, "networks[0].ips"),
        ({"networks": [{"name": "a", "ips": ["198.18.0.300"]}]}, "networks[0].ips"),
        ({"networks": [{"name": "a", "mac": "0a:70"}]}, "networks[0].mac"),
        ({"networks": [{"name": "a"}, {"name": "b", "interface": "a/b"}]}, "networks[1].interface"),
        (
            {"networks": [{"name": "a"}, {"name": "b", "interface": "eth0"}]},
            "networks[1].interface",
        ),
        ({"networks": [{"name": "a", "interface": "net0"}]}, "networks[0].interface"),
        ({"networks": [{"name": "a", "default-route": "yes"}]}, "networks[0].default-route"),
        ({"networks": [{"name": "a", "default-route": ["gw"]}]}, "networks[0].default-route"),
        (
            {
                "networks": [
                    {"name": "a", "default-route": True},
                    {"name": "b", "default-route": True},
                ]
            },
            "networks[1].default-route",
        ),
        ({"networks": [{"name": "a", "port": ""}]}, "networks[0].port"),
        ({"networks": [{"name": "a"}], "default-route": True}, "default-route"),
        ({"network": "a", "default-route": "no"}, "default-route"),
    ],
)
def test_networks_key_rejected_with_code_7_naming_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(CniError) as info:
        from_config({"name": "multi", **config}, "eth0")
    assert info.value.code == 7
    assert info.value.details == key, info.value.msg
