"""Neutron's revision_number and If-Match over the API of a real server:
the number the API reports moves with each change; a PUT with a stale
``If-Match: revision_number=N`` is 412 with Neutron's body and changes
nothing; the remote backend sends the header and gets PreconditionFailed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from podwire.backends.neutron import NeutronBackend
from podwire.errors import PreconditionFailed
from podwire.model import AllowedAddressPair, Context, PortUpdate
from tests.fixtures.common import unique
from tests.fixtures.server import ServerInfo


@pytest.fixture
def port(alice: httpx.Client) -> dict[str, Any]:
    net = alice.post("/networks", json={"network": {"name": unique("rev-")}}).json()["network"]
    made = alice.post(
        "/subnets", json={"subnet": {"network_id": net["id"], "cidr": "198.18.44.0/24"}}
    )
    assert made.status_code == 201, made.text
    answer = alice.post("/ports", json={"port": {"network_id": net["id"]}})
    assert answer.status_code == 201, answer.text
    return dict(answer.json()["port"])


def test_put_with_if_match(alice: httpx.Client, port: dict[str, Any]) -> None:
    rev = port["revision_number"]
    url = f"/ports/{port['id']}"
    ok = alice.put(
        url, json={"port": {"name": "a"}}, headers={"If-Match": f"revision_number={rev}"}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["port"]["revision_number"] == rev + 1
    assert alice.get(url).json()["port"]["revision_number"] == rev + 1

    stale = alice.put(
        url, json={"port": {"name": "b"}}, headers={"If-Match": f"revision_number={rev}"}
    )
    assert stale.status_code == 412, stale.text
    error = stale.json()["NeutronError"]
    assert error["type"] == "RevisionNumberConstraintFailed"
    assert str(rev + 1) in error["message"]
    after = alice.get(url).json()["port"]
    assert (after["name"], after["revision_number"]) == ("a", rev + 1)

    # Without the header a PUT applies whatever the revision.
    plain = alice.put(url, json={"port": {"name": "c"}})
    assert plain.status_code == 200 and plain.json()["port"]["revision_number"] == rev + 2


def test_malformed_if_match_is_400(alice: httpx.Client, port: dict[str, Any]) -> None:
    url = f"/ports/{port['id']}"
    for header in ("revision_number=x", "etag=5", "revision_number=-1"):
        answer = alice.put(url, json={"port": {"name": "z"}}, headers={"If-Match": header})
        assert answer.status_code == 400, (header, answer.text)
    assert alice.get(url).json()["port"]["name"] == ""


def test_networks_subnets_and_trunks_report_revisions(
    alice: httpx.Client, port: dict[str, Any]
) -> None:
    net = alice.get(f"/networks/{port['network_id']}").json()["network"]
    changed = alice.put(
        f"/networks/{net['id']}",
        json={"network": {"name": "renamed"}},
        headers={"If-Match": f"revision_number={net['revision_number']}"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["network"]["revision_number"] == net["revision_number"] + 1
    trunk = alice.post("/trunks", json={"trunk": {"port_id": port["id"]}}).json()["trunk"]
    stale = alice.put(
        f"/trunks/{trunk['id']}",
        json={"trunk": {"name": "t"}},
        headers={"If-Match": f"revision_number={trunk['revision_number'] + 1}"},
    )
    assert stale.status_code == 412, stale.text


def test_remote_backend_sends_if_match(podwire_server: ServerInfo, port: dict[str, Any]) -> None:
    ctx = Context(project_id=podwire_server.projects["alice"])
    with NeutronBackend.at(podwire_server.url, token=podwire_server.tokens["alice"]) as backend:
        current = backend.get_port(ctx, port["id"])
        assert current.revision_number == port["revision_number"]
        pair = [AllowedAddressPair(ip_address="198.18.44.250")]
        updated = backend.update_port(
            ctx,
            port["id"],
            PortUpdate(allowed_address_pairs=pair),
            if_revision=current.revision_number,
        )
        assert updated.revision_number == current.revision_number + 1
        with pytest.raises(PreconditionFailed):
            backend.update_port(
                ctx,
                port["id"],
                PortUpdate(allowed_address_pairs=[]),
                if_revision=current.revision_number,
            )
        assert [p.ip_address for p in backend.get_port(ctx, port["id"]).allowed_address_pairs] == [
            "198.18.44.250"
        ]
