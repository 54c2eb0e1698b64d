"""Which podwire networks a CNI network config names, as the agent's
NetworkSelection list.

A config names one network (``"network"``, default the config's ``name``) or
several (``"networks"``: Multus's network selection elements). Each element
is validated strictly: an unknown key, a wrong type or a bad value is code 7
naming the key (``networks[1].interface``), before anything is made.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from typing import Any

from podwire.agent.types import NetworkSelection
from podwire.frontends.cni.errors import CniError, Code

# The keys of one element. Multus's others (namespace, portMappings,
# bandwidth, cni-args, infiniband-guid, ipam-claim-reference) are refused,
# not ignored: a silently dropped request is a surprise later.
ELEMENT_KEYS = ("name", "network", "interface", "ips", "mac", "default-route", "port")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def _invalid(msg: str, key: str) -> CniError:
    return CniError(Code.INVALID_CONFIG, msg, key)


def valid_ifname(name: str) -> bool:
    """Linux's rule: 1-15 bytes, not . or .., no '/', ':' or whitespace."""
    return (
        0 < len(os.fsencode(name)) <= 15
        and name not in (".", "..")
        and not any(c in name for c in "/:")
        and not any(c.isspace() for c in name)
    )


def from_config(config: dict[str, Any], ifname: str) -> list[NetworkSelection]:
    """The selections of a config; the first one is plugged as ``ifname``
    (CNI_IFNAME; empty for STATUS and GC). Hints (mac, ips) of the runtime
    apply to the first one only, and only where its element gives none: see
    ``with_hints``."""
    has_one, has_many = "network" in config, "networks" in config
    if has_one and has_many:
        raise _invalid(
            'network config has both "network" and "networks"; use one of them', "networks"
        )
    if not has_many:
        ref = config.get("network") or config.get("name")
        if not isinstance(ref, str) or not ref:
            raise _invalid(
                'network config names no podwire network ("network" or "name")', "network"
            )
        # One network per config (podman's --network a,b): "default-route"
        # says whether this one may own the container's default route.
        default_route = _optional(config, "default-route", "", _default_route)
        return [NetworkSelection(network=ref, ifname=ifname or None, default_route=default_route)]
    if "default-route" in config:
        raise _invalid(
            'with "networks", "default-route" goes on the element that owns it',
            "default-route",
        )

    elements = config["networks"]
    if not isinstance(elements, list) or not elements:
        raise _invalid('"networks" must be a non-empty list of objects', "networks")
    selections = [_element(e, f"networks[{i}]") for i, e in enumerate(elements)]
    first = selections[0]
    if ifname:  # (STATUS and GC have none: nothing is plugged)
        if first.ifname is not None and first.ifname != ifname:
            raise _invalid(
                f"networks[0].interface is {first.ifname!r} but CNI_IFNAME is {ifname!r}: "
                "the first network is plugged as CNI_IFNAME",
                "networks[0].interface",
            )
        selections[0] = first.model_copy(update={"ifname": ifname})
    seen: set[str] = set()
    for i, chosen in enumerate(selections):
        if chosen.ifname and chosen.ifname in seen:
            raise _invalid(
                f"interface {chosen.ifname!r} is named twice (CNI_IFNAME is the first network's)",
                f"networks[{i}].interface",
            )
        if chosen.ifname:
            seen.add(chosen.ifname)
    owners = [i for i, s in enumerate(selections) if s.default_route]
    if len(owners) > 1:
        raise _invalid(
            f"networks {owners} all ask for the default route; at most one may",
            f"networks[{owners[1]}].default-route",
        )
    return selections


def requested_gateways(config: dict[str, Any]) -> dict[int, list[str]]:
    """Multus's ``default-route`` gateways per element index (a config
    ``from_config`` accepted): the ADD checks them against the subnets'."""
    elements = config.get("networks")
    if not isinstance(elements, list):
        single = config.get("default-route")
        return {0: [str(g) for g in single]} if isinstance(single, list) and single else {}
    return {
        i: [str(g) for g in e["default-route"]]
        for i, e in enumerate(elements)
        if isinstance(e, dict) and isinstance(e.get("default-route"), list) and e["default-route"]
    }


def with_hints(
    selections: list[NetworkSelection],
    mac: str | None,
    ips: list[str],
    numa_node: int | None = None,
) -> list[NetworkSelection]:
    """The runtime's mac/ips capabilities (and args, CNI_ARGS) are for the
    interface it asked for, CNI_IFNAME: the first selection."""
    first = selections[0]
    update: dict[str, Any] = {}
    if mac and first.mac is None:
        update["mac"] = mac
    if ips and not first.ips:
        update["ips"] = ips
    if numa_node is not None and first.numa_node is None:
        update["numa_node"] = numa_node
    return [first.model_copy(update=update), *selections[1:]] if update else selections


def _element(element: Any, where: str) -> NetworkSelection:
    if not isinstance(element, dict):
        raise _invalid(f"{where} must be an object, got {type(element).__name__}", where)
    unknown = sorted(set(element) - set(ELEMENT_KEYS))
    if unknown:
        raise _invalid(
            f"{where} has unsupported key {unknown[0]!r}; "
            f"an element takes {', '.join(ELEMENT_KEYS)}",
            f"{where}.{unknown[0]}",
        )
    if "name" in element and "network" in element:
        raise _invalid(f'{where} has both "name" and "network"; use one', f"{where}.network")
    key = "name" if "name" in element else "network"
    ref = element.get(key)
    if not isinstance(ref, str) or not ref:
        raise _invalid(
            f'{where} needs "name" (or "network"): a network name or id', f"{where}.{key}"
        )
    return NetworkSelection(
        network=ref,
        ifname=_optional(element, "interface", where, _ifname),
        ips=_optional(element, "ips", where, _ips) or [],
        mac=_optional(element, "mac", where, _mac),
        port_id=_optional(element, "port", where, _port),
        default_route=_optional(element, "default-route", where, _default_route),
    )


def _optional(
    element: dict[str, Any], key: str, where: str, check: Callable[[Any, str], Any]
) -> Any:
    if key not in element or element[key] is None:
        return None
    return check(element[key], f"{where}.{key}" if where else key)


def _ifname(value: Any, where: str) -> str:
    if not isinstance(value, str) or not valid_ifname(value):
        raise _invalid(
            f"{where} {value!r} is not an interface name "
            "(1-15 bytes, not . or .., without '/', ':' or spaces)",
            where,
        )
    return value


def _ips(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise _invalid(f"{where} must be a list of addresses", where)
    out = []
    for item in value:
        try:
            if not isinstance(item, str):
                raise ValueError
            out.append(str(ipaddress.ip_interface(item).ip))
        except ValueError:
            raise _invalid(f"{where} has an invalid IP address {item!r}", where) from None
    return out


def _mac(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _MAC_RE.match(value):
        raise _invalid(f"{where} {value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)", where)
    return value.lower()


def _port(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(f"{where} must be a port id", where)
    return value


def _default_route(value: Any, where: str) -> bool | None:
    """Multus's form is a list of gateways: this network holds the default
    route (via those gateways: the ADD checks they are its subnets'); a
    boolean says yes or no outright; an empty list says nothing."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, list):
        raise _invalid(f"{where} must be a list of gateway addresses or a boolean", where)
    for item in value:
        try:
            if not isinstance(item, str):
                raise ValueError
            ipaddress.ip_address(item)
        except ValueError:
            raise _invalid(f"{where} has an invalid gateway address {item!r}", where) from None
    return True if value else None
