"""The ADD result, in the format of the version the config asked for.

0.3.x and 0.4.0 carry ``"version": "4"|"6"`` in each ip entry; 1.0.0 dropped
it; 1.1.0 adds ``mtu`` to interfaces. With a ``prevResult`` (podwire chained
after another plugin) our interfaces, ips and routes are appended to it and
the ips' interface indexes shifted accordingly, as the spec asks of a plugin
that adds interfaces in a chain. A config naming several networks gets all
of its interfaces in one result.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from podwire.agent.types import AttachedInterface
from podwire.frontends.cni.errors import CniError, Code
from podwire.frontends.cni.versions import at_least


def _ip_version(address: str) -> int:
    return ipaddress.ip_interface(address).version


#: PluggedInterface.extra keys that CNI 1.1 results carry on the container's
#: interface as they are (older versions drop them, see ``convert``).
CNI_1_1_INTERFACE_FIELDS = ("socketPath", "pciID")


def convert(result: dict[str, Any], version: str) -> dict[str, Any]:
    """A result (ours or a prevResult) in ``version``'s shape."""
    out = dict(result)
    out["cniVersion"] = version
    ips = []
    for ip in result.get("ips") or []:
        entry = dict(ip)
        if at_least(version, "1.0.0"):
            entry.pop("version", None)
        elif "address" in entry:
            entry["version"] = str(_ip_version(entry["address"]))
        ips.append(entry)
    if "ips" in result:
        out["ips"] = ips
    if not at_least(version, "1.1.0"):
        out["interfaces"] = [
            {k: v for k, v in i.items() if k not in ("mtu", "socketPath", "pciID")}
            for i in result.get("interfaces") or []
        ]
    return out


def render(
    attached: list[AttachedInterface], version: str, prev: dict[str, Any] | None
) -> dict[str, Any]:
    """Every interface of the ADD, in order: each one's host side (when it
    has one) then its container side; each ip names its container
    interface's index; routes and DNS of all of them (only the default
    route's owner has default routes and DNS)."""
    base: dict[str, Any] = {"interfaces": [], "ips": [], "routes": [], "dns": {}}
    if prev is not None:
        base = _prev(prev)
    interfaces = list(base["interfaces"])
    ips = list(base["ips"])
    routes = list(base["routes"])
    dns = base["dns"]
    for one in attached:
        ours, our_ips, our_routes, our_dns = _one(one)
        interfaces += ours
        container_index = len(interfaces) - 1
        ips += [{**entry, "interface": container_index} for entry in our_ips]
        routes += our_routes
        dns = _merge_dns(dns, our_dns)
    merged = {
        "cniVersion": version,
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": dns,
    }
    return convert(merged, version)


def _one(
    result: AttachedInterface,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """One interface's entries: (interfaces, ips, routes, dns)."""
    iface = result.interface
    vif = result.attachment.vif
    interfaces: list[dict[str, Any]] = []
    if iface.host_ifname:
        host = {"name": iface.host_ifname, "mac": _host_mac(result)}
        interfaces.append({k: v for k, v in host.items() if v})
    container: dict[str, Any] = {"name": iface.ifname, "mac": iface.mac, "sandbox": iface.sandbox}
    if iface.mtu is not None:
        container["mtu"] = iface.mtu
    # CNI 1.1's interface fields for kinds with no netdev in the container:
    # the vhost-user socket, the PCI address of a VF (kinds put them in extra).
    for key in CNI_1_1_INTERFACE_FIELDS:
        if iface.extra.get(key):
            container[key] = iface.extra[key]
    interfaces.append({k: v for k, v in container.items() if v is not None})
    if not interfaces[-1].get("mac"):
        interfaces[-1].pop("mac", None)

    subnets = {s.id: s for s in result.subnets}
    ips: list[dict[str, Any]] = []
    addresses = list(iface.addresses) or (list(vif.addresses) if vif else [])
    by_ip = {a.split("/")[0]: a for a in addresses}
    for fip in result.port.fixed_ips:
        address = by_ip.get(fip.ip_address)
        if address is None:
            continue
        entry: dict[str, Any] = {"address": address}
        subnet = subnets.get(fip.subnet_id)
        if subnet is not None and subnet.gateway_ip:
            entry["gateway"] = subnet.gateway_ip
        ips.append(entry)

    routes = []
    for route in vif.routes if vif else ():
        r = {"dst": route.destination}
        if route.gateway:
            r["gw"] = route.gateway
        routes.append(r)

    dns: dict[str, Any] = {}
    if vif and vif.dns_nameservers:
        dns["nameservers"] = list(vif.dns_nameservers)
    return interfaces, ips, routes, dns


def _host_mac(result: AttachedInterface) -> str | None:
    return result.interface.extra.get("host_mac")


def _prev(prev: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(prev, dict):
        raise CniError(Code.DECODE, "prevResult must be an object", f"got {type(prev).__name__}")
    out: dict[str, Any] = {}
    defaults: tuple[tuple[str, Any], ...] = (
        ("interfaces", []),
        ("ips", []),
        ("routes", []),
        ("dns", {}),
    )
    for key, default in defaults:
        value: Any = prev.get(key) or default
        if not isinstance(value, type(default)):
            raise CniError(Code.DECODE, f"prevResult.{key} has the wrong type", repr(value)[:200])
        out[key] = value
    return out


def _merge_dns(prev: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    if not prev:
        return ours
    merged = dict(prev)
    names = list(prev.get("nameservers") or [])
    for ns in ours.get("nameservers", []):
        if ns not in names:
            names.append(ns)
    if names:
        merged["nameservers"] = names
    return merged
