"""CNI spec logic that needs no agent: parsing, versions, result shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from podwire.agent.types import AttachedInterface, Attachment
from podwire.datapath.base import PluggedInterface
from podwire.datapath.vif import Route, VethBridge
from podwire.frontends.cni import versions
from podwire.frontends.cni.errors import CniError
from podwire.frontends.cni.handler import parse, parse_cni_args
from podwire.frontends.cni.result import render
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
    ok = {"containerid": "abc", "netns": "/var/run/netns/x", "ifname": "eth0"}
    assert _code(_headers(**ok), _conf()) == 4  # no command
    assert _code(_headers(command="FROB", **ok), _conf()) == 4
    assert _code(_headers(command="ADD", netns="/x", ifname="eth0"), _conf()) == 4
    assert _code(_headers(command="ADD", **{**ok, "containerid": "-bad"}), _conf()) == 4
    for bad in ("", ".", "..", "a/b", "a:b", "a b", "x" * 16):
        assert _code(_headers(command="ADD", **{**ok, "ifname": bad}), _conf()) == 4
    assert _code(_headers(command="ADD", containerid="abc", ifname="eth0"), _conf()) == 4
    # DEL needs no netns
    assert parse(_headers(command="DEL", containerid="abc", ifname="eth0"), _conf()).netns is None


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
    r11 = render(_result(), "1.1.0", None)
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

    r10 = render(_result(), "1.0.0", None)
    assert "mtu" not in r10["interfaces"][1]
    assert all("version" not in ip for ip in r10["ips"])

    r04 = render(_result(), "0.4.0", None)
    assert [ip["version"] for ip in r04["ips"]] == ["4", "6"]
    assert r04["cniVersion"] == "0.4.0"


def test_prev_result_is_passed_through_and_indexes_shift() -> None:
    prev = {
        "cniVersion": "0.4.0",
        "interfaces": [{"name": "lo0"}],
        "ips": [{"version": "4", "address": "198.19.0.2/24", "interface": 0}],
        "dns": {"nameservers": ["198.19.0.53"]},
    }
    out = render(_result(), "1.0.0", prev)
    assert [i["name"] for i in out["interfaces"]] == ["lo0", "pwvx", "eth0"]
    assert out["ips"][0] == {"address": "198.19.0.2/24", "interface": 0}
    assert {ip["interface"] for ip in out["ips"][1:]} == {2}
    assert out["dns"]["nameservers"] == ["198.19.0.53", "198.18.5.53"]
