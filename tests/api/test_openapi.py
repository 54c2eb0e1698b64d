"""/openapi.json describes the API, including the request bodies."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fixtures.server import ServerInfo


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_openapi_document_loads_and_describes_bodies(podwire_server: ServerInfo) -> None:
    response = httpx.get(podwire_server.url + "/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path in (
        "/v2.0/networks",
        "/v2.0/networks/{id}",
        "/v2.0/subnets",
        "/v2.0/subnets/{id}",
        "/v2.0/ports",
        "/v2.0/ports/{id}",
        "/v2.0/trunks",
        "/v2.0/trunks/{id}",
        "/v2.0/trunks/{id}/add_subports",
        "/v2.0/trunks/{id}/remove_subports",
        "/v2.0/trunks/{id}/get_subports",
    ):
        assert path in paths, path
    assert set(paths["/v2.0/ports/{id}"]) == {"get", "put", "delete"}

    port_body = paths["/v2.0/ports"]["post"]["requestBody"]["content"]["application/json"]
    port = port_body["schema"]["properties"]["port"]
    assert port["required"] == ["network_id"]
    for attr in (
        "binding:host_id",
        "binding:profile",
        "binding:vnic_type",
        "fixed_ips",
        "allowed_address_pairs",
        "mac_address",
        "tenant_id",
    ):
        assert attr in port["properties"], attr
    assert "binding" not in port["properties"]
    net_props = paths["/v2.0/networks"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["properties"]["network"]["properties"]
    assert "provider:segmentation_id" in net_props
    assert "network_type" not in net_props

    # Every $ref resolves, and the token scheme is declared.
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref
    assert doc["components"]["securitySchemes"]["token"]["name"] == "X-Auth-Token"
