"""How podwire's objects are written into OVN northbound rows and read back.

The northbound database holds the whole truth; nothing is kept on the side:

* Network -> Logical_Switch named ``podwire-<id>``; every Network field lives in
  ``external_ids`` under ``podwire:<field>`` (the list of subnets is derived).
* Subnet -> DHCP_Options (what Neutron's OVN driver does): ``cidr`` is the
  native column, the other Subnet fields are ``podwire:<field>`` external_ids.
* Port -> Logical_Switch_Port named by the port id (so ``iface-id`` = port id).
  The MAC and addresses live only in the native ``addresses`` column
  ("MAC IP IP ..."); fixed_ips are derived from it and the subnets' CIDRs.
  ``port_security``, ``enabled``, ``parent_name``/``tag`` are native too; the
  remaining Port fields are external_ids.
* Trunk -> ``podwire:trunk`` (JSON) in the external_ids of its parent port; its
  sub-ports are the ports whose ``parent_name`` is the parent port.

Plain string fields are stored as they are, so ``ovn-nbctl list`` stays
readable; every other field is JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel

from podwire.model import AllowedAddressPair

PREFIX = "podwire:"
SWITCH_PREFIX = "podwire-"
# Bumped by every transaction that allocates or frees addresses on a network;
# each such transaction first verifies the switch's external_ids, so two
# allocations that read the same state cannot both commit (OVSDB answers
# "try again" to the second, which re-reads and picks another address).
IPAM_GENERATION = "podwire:ipam_generation"
TRUNK_KEY = "podwire:trunk"
TRUNK_ID_KEY = "podwire:trunk_id"
# A virtual port's own addresses entries (JSON list), kept here while its
# addresses column is empty (podwire/backends/ovn/virtual.py).
PARKED_KEY = "podwire:parked_addresses"

_M = TypeVar("_M", bound=BaseModel)


def switch_name(network_id: str) -> str:
    return SWITCH_PREFIX + network_id


def _is_plain_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    # Literal["DOWN", "ACTIVE", ...]: a string too.
    args = get_args(annotation)
    return get_origin(annotation) is Literal and all(isinstance(a, str) for a in args)


def _plain_str_fields(model: type[BaseModel]) -> set[str]:
    return {name for name, f in model.model_fields.items() if _is_plain_str(f.annotation)}


def encode(obj: BaseModel, *, exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, str]:
    """The object's fields as ``podwire:<field>`` external_ids."""
    plain = _plain_str_fields(type(obj))
    out: dict[str, str] = {}
    for name, value in obj.model_dump(mode="json").items():
        if name in exclude:
            continue
        out[PREFIX + name] = value if name in plain else json.dumps(value, sort_keys=True)
    return out


def decode_fields(model: type[BaseModel], external_ids: dict[str, str]) -> dict[str, Any]:
    """The ``podwire:<field>`` entries of ``external_ids`` that are fields of ``model``."""
    plain = _plain_str_fields(model)
    out: dict[str, Any] = {}
    for name in model.model_fields:
        raw = external_ids.get(PREFIX + name)
        if raw is None:
            continue
        out[name] = raw if name in plain else json.loads(raw)
    return out


# --- Logical_Switch_Port addresses and port_security --------------------------

# Entries of the addresses column that are keywords, not "MAC IP..." lists.
_ADDRESS_KEYWORDS = {"unknown", "dynamic", "router"}


def lsp_addresses(
    mac: str, ips: list[str], *, port_security: bool, extra_macs: Sequence[str] = ()
) -> list[str]:
    """The addresses column: "MAC IP IP"; then, with port security, each
    other MAC the port's pairs admit as a bare entry (so L2 lookup delivers
    frames for it here, as ML2/OVN does); without port security "unknown",
    so that traffic to addresses the port did not declare still reaches it."""
    entries = [" ".join([mac, *ips])]
    if port_security:
        entries.extend(extra_macs)
    else:
        entries.append("unknown")
    return entries


def parse_lsp_addresses(
    addresses: list[str], pair_macs: frozenset[str] = frozenset()
) -> tuple[str | None, list[str]]:
    """(MAC, IPs) of the port from its addresses column. OVSDB keeps the
    column as an unordered set: the port's own entry is the one with IPs;
    without IPs, the bare MAC that is not one of its pairs' MACs."""
    bare: list[str] = []
    for entry in addresses:
        words = entry.split()
        if not words or words[0] in _ADDRESS_KEYWORDS:
            continue
        if len(words) > 1:
            return words[0], words[1:]
        bare.append(words[0])
    own = [mac for mac in bare if mac.lower() not in pair_macs] or bare
    return (sorted(own)[0] if own else None), []


def lsp_port_security(
    mac: str, ips: list[str], pairs: list[AllowedAddressPair], *, enabled: bool
) -> list[str]:
    """The port_security column: the port's MAC with its IPs and the allowed
    pairs that use that MAC, then one entry per other MAC. Empty when port
    security is off (OVN then lets anything through)."""
    if not enabled:
        return []
    by_mac: dict[str, list[str]] = {mac: list(ips)}
    for pair in pairs:
        by_mac.setdefault(pair.mac_address or mac, []).append(pair.ip_address)
    return [" ".join([m, *addrs]) for m, addrs in by_mac.items()]


def decode(model: type[_M], external_ids: dict[str, str], **native: Any) -> _M:
    """Build ``model`` from its external_ids plus fields read from native columns."""
    return model.model_validate({**decode_fields(model, external_ids), **native})


REVISION_KEY = PREFIX + "revision_number"


def revision_of(external_ids: dict[str, str]) -> int:
    return int(external_ids.get(REVISION_KEY, "0"))


def bump_revision(row: Any) -> None:
    """One more change of the object kept in ``row``'s external_ids (a
    sub-port's parent_name/tag change is a change of that port)."""
    row.setkey("external_ids", REVISION_KEY, str(revision_of(dict(row.external_ids)) + 1))
