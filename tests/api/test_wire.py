"""Pure mapping logic: Neutron names <-> model, query strings -> filters."""

from __future__ import annotations

import pytest

from podwire.errors import InvalidInput
from podwire.neutron import wire
from podwire.neutron.filters import NothingMatches, filters_from_query


def test_query_maps_neutron_names_and_ors_repeated_values() -> None:
    filters = filters_from_query(
        "port",
        [
            ("name", "a"),
            ("name", "b"),
            ("tenant_id", "p1"),
            ("binding:host_id", "node-1"),
            ("fixed_ips", "ip_address=198.18.0.5"),
            ("fixed_ips", "subnet_id=S"),
            ("admin_state_up", "true"),
            ("fields", "id"),
            ("limit", "5"),
        ],
    )
    assert filters == {
        "name": ["a", "b"],
        "project_id": ["p1"],
        "binding.host_id": ["node-1"],
        "fixed_ips.ip_address": ["198.18.0.5"],
        "fixed_ips.subnet_id": ["S"],
        "admin_state_up": ["True"],
    }


def test_query_refuses_unknown_filters_and_bad_values() -> None:
    with pytest.raises(InvalidInput, match="colour"):
        filters_from_query("network", [("colour", "red")])
    with pytest.raises(InvalidInput, match="fixed_ips"):
        filters_from_query("port", [("fixed_ips", "198.18.0.5")])
    with pytest.raises(InvalidInput, match="shared"):
        filters_from_query("network", [("shared", "maybe")])


def test_query_that_nothing_can_match() -> None:
    with pytest.raises(NothingMatches):
        filters_from_query("network", [("router:external", "True")])
    with pytest.raises(NothingMatches):
        filters_from_query("network", [("tags", "x")])
    # Ports carry tags (podwire's ownership mark): those filters pass through.
    assert filters_from_query("port", [("tags", "a,b"), ("tags-any", "c")]) == {
        "tags": ["a,b"],
        "tags-any": ["c"],
    }
    assert filters_from_query("network", [("router:external", "false")]) == {}


def test_port_body_maps_binding_attributes() -> None:
    req = wire.port_create(
        {
            "network_id": "N",
            "tenant_id": "p1",
            "binding:host_id": "h",
            "binding:profile": {"pci_slot": "0000:01:00.1"},
            "binding:vnic_type": "direct",
        }
    )
    assert req.project_id == "p1"
    assert req.vnic_type == "direct"
    assert req.binding is not None
    assert req.binding.host_id == "h"
    assert req.binding.profile == {"pci_slot": "0000:01:00.1"}


def test_errors_name_the_field_as_the_caller_spelled_it() -> None:
    with pytest.raises(InvalidInput) as info:
        wire.port_create({"network_id": "N", "binding:host_id": 5})
    assert info.value.field == "binding:host_id"
    assert info.value.message.startswith("binding:host_id")
    with pytest.raises(InvalidInput) as info:
        wire.network_create({"provider:network_type": "vlan", "provider:segmentation_id": 9999})
    assert info.value.field == "provider:segmentation_id"
    assert "provider:segmentation_id" in info.value.message
    with pytest.raises(InvalidInput) as info:
        wire.network_create({"tenant_id": "a", "project_id": "b"})
    assert info.value.field == "project_id" or info.value.field == "tenant_id"


def test_member_body_shape() -> None:
    assert wire.member_body({"network": {"name": "x"}}, "network") == {"name": "x"}
    for bad in ({"networks": {}}, {"network": []}, [], {"network": {}, "extra": 1}):
        with pytest.raises(InvalidInput):
            wire.member_body(bad, "network")


def test_subport_errors_name_their_position() -> None:
    with pytest.raises(InvalidInput) as info:
        wire.subports_to_add({"sub_ports": [{"port_id": "a", "segmentation_id": 5000}]})
    assert info.value.field == "sub_ports.0.segmentation_id"
    assert info.value.message.startswith("sub_ports.0.segmentation_id")
    with pytest.raises(InvalidInput) as info:
        wire.subports_to_add({"sub_ports": ["a"]})
    assert info.value.field == "sub_ports.0"
    with pytest.raises(InvalidInput, match="twice"):
        wire.subports_to_add(
            {
                "sub_ports": [
                    {"port_id": "a", "segmentation_id": 5},
                    {"port_id": "b", "segmentation_id": 5},
                ]
            }
        )
    assert wire.subports_to_remove({"sub_ports": [{"port_id": "a"}]}) == ["a"]
    with pytest.raises(InvalidInput, match="colour"):
        wire.subports_to_remove({"sub_ports": [{"port_id": "a", "colour": 1}]})
