"""Reading the northbound rows podwire owns: the Logical_Switch of a network,
the DHCP_Options of a subnet, the Logical_Switch_Port of a port (and a trunk's
parent), and the generation counter every address change verifies."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from typing import Any

from ovsdbapp.backend.ovs_idl import idlutils

from podwire.backends.ovn import codec, rows

Row = Any  # an ovs.db.idl.Row
Tables = Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

LS = "Logical_Switch"
LSP = "Logical_Switch_Port"
DHCP = "DHCP_Options"


def ids_copy(row: Row) -> dict[str, str]:
    """A private copy of the row's external_ids, to modify and write back."""
    return dict(rows.col(row, "external_ids"))


def xids(row: Row) -> dict[str, str]:
    """The row's external_ids, read-only (shared, memoized)."""
    ids: dict[str, str] = rows.col(row, "external_ids")
    return ids


def pid(row: Row) -> str:
    return str(xids(row).get(codec.PREFIX + "id", ""))


def name_of(row: Row) -> str:
    return str(rows.col(row, "name"))


def optional(value: list[Any]) -> Any:
    return value[0] if value else None


# --- reading rows ----------------------------------------------------------------


def switches(t: Tables) -> list[Row]:
    return [r for r in t[LS].rows.values() if codec.PREFIX + "id" in xids(r)]


def find_switch(t: Tables, network_id: str) -> Row | None:
    for row in idlutils.index_lookup_all(t[LS], name=codec.switch_name(network_id)):
        if pid(row) == network_id:
            return row
    return None


def subnet_rows(t: Tables, network_id: str | None = None) -> list[Row]:
    found = [r for r in t[DHCP].rows.values() if codec.PREFIX + "id" in xids(r)]
    if network_id is not None:
        found = [r for r in found if xids(r).get(codec.PREFIX + "network_id") == network_id]
    return sorted(found, key=row_created)


def row_created(row: Row) -> tuple[datetime, str]:
    """Creation order (microseconds, like the embedded backend), then id."""
    raw = xids(row).get(codec.PREFIX + "created_at")
    when = datetime.fromisoformat(json.loads(raw)) if raw else _EPOCH
    return (when, pid(row))


def find_subnet(t: Tables, subnet_id: str) -> Row | None:
    for row in t[DHCP].rows.values():
        if pid(row) == subnet_id:
            return row
    return None


def port_rows(t: Tables) -> list[Row]:
    return [r for r in t[LSP].rows.values() if codec.PREFIX + "id" in xids(r)]


def find_port(t: Tables, port_id: str) -> Row | None:
    for row in idlutils.index_lookup_all(t[LSP], name=port_id):
        if pid(row) == port_id:
            return row
    return None


def created_order(obj: Any) -> tuple[datetime, str]:
    return (obj.created_at or _EPOCH, obj.id)


def utc_now() -> datetime:
    # Microseconds kept: list order is creation order, as in the embedded backend.
    return datetime.now(UTC)


def addresses_of(lsp: Row) -> tuple[str | None, tuple[str, ...]]:
    """(MAC, canonical IPs) from the addresses column, or, for a virtual
    port whose column is empty, from the entries parked in external_ids."""

    def parse(addresses: list[str]) -> tuple[str | None, tuple[str, ...]]:
        # The pairs' MACs matter only for a port without IPs (rare): read
        # external_ids only then.
        entries = list(addresses)
        bare = [e for e in entries if len(e.split()) == 1 and e != "unknown"]
        pair_macs = _pair_macs(lsp) if len(bare) > 1 else frozenset()
        mac, ips = codec.parse_lsp_addresses(entries, pair_macs)
        return mac, tuple(str(ipaddress.ip_address(ip)) for ip in ips)

    parsed: tuple[str | None, tuple[str, ...]] = rows.derived(lsp, "addresses", "parsed", parse)
    if parsed[0] is None and codec.PARKED_KEY in xids(lsp):
        parked: tuple[str | None, tuple[str, ...]] = rows.derived(
            lsp, "external_ids", "parked", lambda ids: parse(json.loads(ids[codec.PARKED_KEY]))
        )
        return parked
    return parsed


def _pair_macs(lsp: Row) -> frozenset[str]:
    raw = xids(lsp).get(codec.PREFIX + "allowed_address_pairs")
    pairs = json.loads(raw) if raw else []
    return frozenset(p["mac_address"].lower() for p in pairs if p.get("mac_address"))


def find_trunk_parent(t: Tables, trunk_id: str) -> Row | None:
    for row in port_rows(t):
        raw = xids(row).get(codec.TRUNK_KEY)
        if raw is not None and json.loads(raw)["id"] == trunk_id:
            return row
    return None


def trunk_id_of_parent(row: Row) -> str | None:
    raw = xids(row).get(codec.TRUNK_KEY)
    return json.loads(raw)["id"] if raw is not None else None


def bump_generation(ls: Row) -> None:
    """Verify-then-bump: the conflict detector for every address change."""
    ls.verify("external_ids")
    ids = ids_copy(ls)
    ids[codec.IPAM_GENERATION] = str(int(ids.get(codec.IPAM_GENERATION, "0")) + 1)
    ls.external_ids = ids


def usage(ls: Row, exclude_port: str | None = None) -> tuple[set[str], set[str]]:
    """The IPs and MACs the network's ports hold (one pass over its ports)."""
    ips: set[str] = set()
    macs: set[str] = set()
    for lsp in ls.ports:
        if name_of(lsp) == exclude_port:
            continue
        mac, addresses = addresses_of(lsp)
        ips.update(addresses)
        if mac is not None:
            macs.add(mac.lower())
    return ips, macs


def used_addresses(ls: Row, exclude_port: str | None = None) -> set[str]:
    return usage(ls, exclude_port)[0]


def used_macs(ls: Row, exclude_port: str | None = None) -> set[str]:
    return usage(ls, exclude_port)[1]


def ls_id(ls: Row) -> str:
    return pid(ls)
