"""The Driver contract (podwire/datapath/base.py), the same cases for every
data-path driver, in real network namespaces.

Each kind is one entry of tests/datapath/harnesses.py's ``HARNESSES``: the
harness builds its driver and a valid VIF with its host-side prerequisites,
and knows what the VIF may leave on the host; everything else is written
here once, against the Driver protocol only. What the
container sees is read with ``ip -j`` inside the namespace, not through
podwire's own netlink code.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from podwire.datapath.base import DriverDescription, PluggedInterface
from podwire.datapath.vif import Route
from podwire.errors import Conflict, Drift, PodwireError
from tests.datapath.harnesses import HARNESSES, Harness, host_link_exists
from tests.fixtures.common import unique
from tests.fixtures.netns import ns_run

pytestmark = pytest.mark.root

MakeNetns = Callable[[], tuple[str, str]]

# Changes made by hand inside the container, each with the field check names.
CONTAINER_DRIFTS: dict[str, tuple[str, Callable[[str, Any], list[str]]]] = {
    "address-removed": (
        "addresses",
        lambda ifname, vif: ["addr", "del", vif.addresses[0], "dev", ifname],
    ),
    "mtu-changed": ("mtu", lambda ifname, vif: ["link", "set", ifname, "mtu", str(vif.mtu - 100)]),
    "interface-down": ("up", lambda ifname, vif: ["link", "set", ifname, "down"]),
    "mac-changed": (
        "mac",
        lambda ifname, vif: ["link", "set", ifname, "address", "02:00:00:c0:ff:ee"],
    ),
    "route-removed": (
        "routes",
        lambda ifname, vif: ["route", "del", vif.routes[-1].destination, "dev", ifname],
    ),
}


# --- parametrization: every kind, and per kind its drifts ------------------------


def _needs(attribute: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run a test only for harnesses whose ``attribute`` is true (e.g. kinds
    that give the container a netdev)."""

    def mark(test: Callable[..., Any]) -> Callable[..., Any]:
        test._harness_needs = attribute  # type: ignore[attr-defined]
        return test

    return mark


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kind" not in metafunc.fixturenames:
        return
    needs = getattr(metafunc.function, "_harness_needs", None)
    entries = {
        kind: entry
        for kind, entry in HARNESSES.items()
        if needs is None or getattr(entry.cls, needs)
    }
    if "host_drift" in metafunc.fixturenames:
        params = [
            pytest.param(kind, drift, id=f"{kind}-{drift}", marks=entry.marks)
            for kind, entry in entries.items()
            for drift in entry.cls.host_drifts
        ]
        metafunc.parametrize(("kind", "host_drift"), params)
    elif "container_drift" in metafunc.fixturenames:
        params = [
            pytest.param(kind, drift, id=f"{kind}-{drift}", marks=entry.marks)
            for kind, entry in entries.items()
            for drift in CONTAINER_DRIFTS
        ]
        metafunc.parametrize(("kind", "container_drift"), params)
    else:
        params = [pytest.param(kind, id=kind, marks=entry.marks) for kind, entry in entries.items()]
        metafunc.parametrize("kind", params)


@pytest.fixture
def harness(request: pytest.FixtureRequest, kind: str) -> Iterator[Harness]:
    with HARNESSES[kind].open(request) as opened:
        yield opened


# --- what the container sees, read with iproute2 ----------------------------------


def _ip_json(netns: str, *argv: str) -> Any:
    return json.loads(ns_run(netns, "ip", "-j", *argv, check=True).stdout or "[]")


def _link(netns: str, ifname: str) -> dict[str, Any] | None:
    links = {link["ifname"]: link for link in _ip_json(netns, "link", "show")}
    return links.get(ifname)


def _global_addresses(
    netns: str, ifname: str
) -> set[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    (link,) = _ip_json(netns, "addr", "show", "dev", ifname)
    return {
        ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}")
        for a in link["addr_info"]
        if a.get("scope") == "global"
    }


def _routes(netns: str, ifname: str) -> set[tuple[Any, Any]]:
    out = set()
    for family, default in (("-4", "0.0.0.0/0"), ("-6", "::/0")):
        for r in _ip_json(netns, family, "route", "show", "dev", ifname):
            dst = default if r["dst"] == "default" else r["dst"]
            gateway = r.get("gateway")
            out.add((ipaddress.ip_network(dst), gateway and ipaddress.ip_address(gateway)))
    return out


def _route_key(route: Route) -> tuple[Any, Any]:
    gateway = route.gateway and ipaddress.ip_address(route.gateway)
    return (ipaddress.ip_network(route.destination, strict=False), gateway)


def _container_links(netns: str) -> list[str]:
    return sorted(link["ifname"] for link in _ip_json(netns, "link", "show"))


def _assert_container_sees_the_vif(netns: str, ifname: str, vif: Any) -> None:
    link = _link(netns, ifname)
    assert link is not None, f"{ifname} missing from {netns}"
    assert link["address"] == vif.mac.lower()
    assert link["mtu"] == vif.mtu
    assert "UP" in link["flags"]
    assert _global_addresses(netns, ifname) == {ipaddress.ip_interface(a) for a in vif.addresses}
    missing = {_route_key(r) for r in vif.routes} - _routes(netns, ifname)
    assert not missing, f"routes missing in {netns}: {missing}"


# --- the cases ---------------------------------------------------------------------


def test_plug_gives_the_container_what_the_vif_says(
    harness: Harness, make_netns_pair: MakeNetns
) -> None:
    driver = harness.driver()
    ns, path = make_netns_pair()
    vif = harness.vif()

    plugged = driver.plug(vif, path, "eth0")

    assert isinstance(plugged, PluggedInterface)
    assert plugged.sandbox == path
    if harness.container_netdev:
        assert plugged.ifname == "eth0"
        assert plugged.mac == vif.mac.lower()
        assert plugged.mtu == vif.mtu
        assert {ipaddress.ip_interface(a) for a in plugged.addresses} == {
            ipaddress.ip_interface(a) for a in vif.addresses
        }
        _assert_container_sees_the_vif(ns, "eth0", vif)
    driver.check(vif, path, "eth0")

    driver.unplug(vif, path, "eth0")
    assert harness.leftovers(vif) == []
    assert _container_links(ns) == ["lo"]


def test_unplug_twice_from_the_record_alone(harness: Harness, make_netns_pair: MakeNetns) -> None:
    driver = harness.driver()
    ns, path = make_netns_pair()
    vif = harness.vif()
    driver.plug(vif, path, "eth1")
    # DEL works from the stored record: the VIF as JSON, read back.
    stored = type(vif).model_validate(json.loads(vif.model_dump_json()))
    assert stored == vif and stored is not vif

    driver.unplug(stored, path, "eth1")
    driver.unplug(stored, path, "eth1")

    assert harness.leftovers(vif) == []
    assert _container_links(ns) == ["lo"]


def test_unplug_of_what_was_never_plugged_is_success(
    harness: Harness, make_netns_pair: MakeNetns
) -> None:
    _, path = make_netns_pair()
    vif = harness.vif()
    harness.driver().unplug(vif, path, "eth0")
    assert harness.leftovers(vif) == []


def test_unplug_with_the_netns_gone(harness: Harness, make_netns_pair: MakeNetns) -> None:
    driver = harness.driver()
    ns, path = make_netns_pair()
    vif = harness.vif()
    driver.plug(vif, path, "eth0")
    subprocess.run(["ip", "netns", "del", ns], check=True, capture_output=True)

    driver.unplug(vif, path, "eth0")
    driver.unplug(vif, path, "eth0")

    assert harness.leftovers(vif) == []


def test_plug_into_a_missing_netns_fails_and_leaves_nothing(harness: Harness) -> None:
    vif = harness.vif()
    path = f"/var/run/netns/{unique('pwcgone', 8)}"
    with pytest.raises(PodwireError) as err:
        harness.driver().plug(vif, path, "eth0")
    assert path in err.value.message
    assert harness.leftovers(vif) == []


@_needs("container_netdev")
def test_plug_onto_a_taken_ifname_is_a_conflict_and_leaves_nothing(
    harness: Harness, make_netns_pair: MakeNetns
) -> None:
    ns, path = make_netns_pair()
    # (a bridge: this kernel has no dummy module)
    ns_run(ns, "ip", "link", "add", "eth0", "type", "bridge", check=True)
    vif = harness.vif()
    with pytest.raises(Conflict, match="eth0"):
        harness.driver().plug(vif, path, "eth0")
    assert harness.leftovers(vif) == []
    # Theirs is untouched.
    assert _container_links(ns) == ["eth0", "lo"]
    assert (_link(ns, "eth0") or {}).get("address") != vif.mac.lower()


@_needs("container_netdev")
def test_check_names_the_field_drifted_in_the_container(
    harness: Harness, make_netns_pair: MakeNetns, container_drift: str
) -> None:
    driver = harness.driver()
    ns, path = make_netns_pair()
    vif = harness.vif()
    driver.plug(vif, path, "eth0")
    driver.check(vif, path, "eth0")

    field, command = CONTAINER_DRIFTS[container_drift]
    ns_run(ns, "ip", *command("eth0", vif), check=True)
    with pytest.raises(Drift) as drift:
        driver.check(vif, path, "eth0")
    assert drift.value.field == field, drift.value.message

    driver.unplug(vif, path, "eth0")
    assert harness.leftovers(vif) == []


def test_check_names_the_field_drifted_on_the_host(
    harness: Harness, make_netns_pair: MakeNetns, host_drift: str
) -> None:
    driver = harness.driver()
    _, path = make_netns_pair()
    vif = harness.vif()
    driver.plug(vif, path, "eth0")
    driver.check(vif, path, "eth0")

    harness.break_host_side(host_drift, vif)
    with pytest.raises(Drift) as drift:
        driver.check(vif, path, "eth0")
    assert drift.value.field == harness.host_drifts[host_drift], drift.value.message

    # Whatever is left after the drift, unplug still removes all of it.
    driver.unplug(vif, path, "eth0")
    assert harness.leftovers(vif) == []


@_needs("runtime_moves_interface")
def test_plug_without_netns_leaves_the_container_end_in_the_host(harness: Harness) -> None:
    """Docker's libnetwork moves the interface itself: the container end
    stays in the host under ``ifname`` with its MAC and MTU."""
    driver = harness.driver()
    vif = harness.vif()
    ifname = unique("pwcc", 8)
    try:
        plugged = driver.plug(vif, None, ifname)
        assert plugged.sandbox is None and plugged.ifname == ifname
        shown = json.loads(
            subprocess.run(
                ["ip", "-j", "link", "show", ifname], capture_output=True, text=True, check=True
            ).stdout
        )
        assert (shown[0]["address"], shown[0]["mtu"]) == (vif.mac.lower(), vif.mtu)
        driver.check(vif, None, ifname)
    finally:
        driver.unplug(vif, None, ifname)
    assert not host_link_exists(ifname)
    assert harness.leftovers(vif) == []


def test_describe(harness: Harness) -> None:
    driver = harness.driver()
    description = driver.describe()
    assert isinstance(description, DriverDescription)
    assert description.name == driver.name
    assert harness.kind in description.kinds
    assert description.kinds == list(driver.kinds)
    # The harness made this host able to run the kind: available, no excuse.
    assert (description.available, description.reason) == (True, "")
    assert DriverDescription.model_validate(description.model_dump()) == description
