"""Many API clients at once on a small subnet, on a server with two worker
processes sharing one SQLite file: every address handed out once, the rest
refused with IpAddressGenerationFailure, nothing half-made."""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.fixtures.server import start_podwire_server


def test_concurrent_creates_never_share_an_address() -> None:
    with start_podwire_server(workers=2) as server:
        headers = {"X-Auth-Token": server.tokens["alice"]}
        base = server.url + "/v2.0"
        net = httpx.post(base + "/networks", headers=headers, json={"network": {"name": "c"}})
        net_id = net.json()["network"]["id"]
        sub = httpx.post(
            base + "/subnets",
            headers=headers,
            json={"subnet": {"network_id": net_id, "cidr": "198.18.99.0/27"}},
        )
        assert sub.status_code == 201, sub.text
        pool = sub.json()["subnet"]["allocation_pools"][0]
        capacity = int(ipaddress.ip_address(pool["end"])) - int(ipaddress.ip_address(pool["start"]))
        capacity += 1

        def create(_: int) -> httpx.Response:
            # One connection per call: requests spread over both workers.
            return httpx.post(
                base + "/ports", headers=headers, json={"port": {"network_id": net_id}}
            )

        with ThreadPoolExecutor(max_workers=8) as executor:
            answers = list(executor.map(create, range(capacity + 10)))

        created = [a.json()["port"] for a in answers if a.status_code == 201]
        refused = [a.json()["NeutronError"] for a in answers if a.status_code != 201]
        assert len(created) == capacity
        assert len(refused) == 10
        assert {r["type"] for r in refused} == {"IpAddressGenerationFailure"}
        addresses = [p["fixed_ips"][0]["ip_address"] for p in created]
        assert len(set(addresses)) == capacity
        macs = [p["mac_address"] for p in created]
        assert len(set(macs)) == capacity
        listed = httpx.get(base + "/ports", headers=headers, params={"network_id": net_id})
        assert sorted(p["id"] for p in listed.json()["ports"]) == sorted(p["id"] for p in created)
