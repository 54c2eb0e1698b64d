"""OVN ``virtual`` ports for addresses that live on another port's pairs.

A nested ipvlan or macvlan container has a port of its own (IPAM, an
ownership mark) that no host binds: its traffic leaves through the VM's port,
whose allowed_address_pairs carry the container's addresses. Left as a plain
Logical_Switch_Port, that unbound port would still hold "MAC IP" in its
addresses, so OVN's ARP/ND responder would answer for the container with
that port's MAC and L2 lookup would send the container's frames to a port
nobody plugs.

Neutron's ML2/OVN driver solves the same case (an unbound port whose fixed
IP is another port's allowed-address-pair, e.g. a keepalived VIP) by making
the unbound port ``type=virtual`` with ``options:virtual-ip`` (the first of
its IPs that is a pair) and ``options:virtual-parents`` (the ports whose
pairs hold it), and by adding every pair MAC that is not the parent's own as
a bare MAC to the parent's ``addresses`` (so L2 lookup sends frames for a
macvlan container's MAC to the VM's port). podwire does the same:

* ovn-northd installs no ARP/ND responder flows for virtual ports, so the
  container answers for itself (ipvlan with the VM's MAC, macvlan with its
  own), and the VM port's port_security admits those answers;
* when a parent sends an ARP/ND for the virtual IP, ovn-controller claims
  the virtual port on the parent's chassis (``bind_vport``).

One step further than ML2/OVN: a virtual port's addresses column is emptied
while it is virtual (its entries kept in external_ids, ``podwire:parked_
addresses``, where IPAM and the API still read them). With the macvlan
container's MAC both on the virtual port and (as a pair MAC) on the VM's
port, L2 lookup had two ports for one MAC, and frames that went to the
virtual port never reached the VM (OVN 23.03, measured in the VM test); an
ipvlan container's port MAC is never used at all. With the column empty,
L2 lookup and ARP/ND for the container go only to and through the VM's port.

Which ports are virtual is derived, never stored: after any write that
changes a port's pairs, addresses or binding, the ports of that switch whose
IPs the change touches are recomputed (``refresh``).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from typing import Any

from podwire.backends.ovn import codec, rows
from podwire.backends.ovn.tables import Row, addresses_of, name_of, optional, xids

VIRTUAL = "virtual"
VIRTUAL_IP = "virtual-ip"
VIRTUAL_PARENTS = "virtual-parents"
_PAIRS_KEY = codec.PREFIX + "allowed_address_pairs"
_BINDING_KEY = codec.PREFIX + "binding"


def _column(lsp: Row, column: str, default: Any) -> Any:
    """A column's value; ``default`` for a row inserted by this transaction
    that has not written it (python-ovs raises AttributeError then)."""
    try:
        return rows.col(lsp, column)
    except AttributeError:
        return default


def _single_address(raw: str) -> str | None:
    """The address of a pair that names one host (a CIDR pair names none)."""
    try:
        net = ipaddress.ip_network(raw, strict=False)
    except ValueError:
        return None
    if net.num_addresses != 1:
        return None
    return str(net.network_address)


def pair_ips(lsp: Row) -> frozenset[str]:
    """The single addresses on the port's allowed_address_pairs."""

    def parse(ids: dict[str, str]) -> frozenset[str]:
        raw = ids.get(_PAIRS_KEY)
        if not raw:
            return frozenset()
        found = (_single_address(p.get("ip_address", "")) for p in json.loads(raw))
        return frozenset(ip for ip in found if ip is not None)

    ips: frozenset[str] = rows.derived(lsp, "external_ids", "pair_ips", parse)
    return ips


def unbound(lsp: Row) -> bool:
    """No host binds the port (Neutron: vif_type unbound), and it is not a
    trunk sub-port (those are bound through their parent's VIF)."""
    if optional(_column(lsp, "parent_name", [])) is not None:
        return False
    raw = xids(lsp).get(_BINDING_KEY)
    return not (raw and json.loads(raw).get("host_id"))


def is_virtual(lsp: Row) -> bool:
    return bool(_column(lsp, "type", "") == VIRTUAL)


def parents_by_ip(ls: Row, exclude: Iterable[str] = ()) -> dict[str, list[str]]:
    """Each address on some port's pairs, and the ports (by name) holding it."""
    skip = set(exclude)
    out: dict[str, list[str]] = {}
    for lsp in ls.ports:
        name = name_of(lsp)
        if name in skip:
            continue
        for ip in pair_ips(lsp):
            out.setdefault(ip, []).append(name)
    return out


def apply(lsp: Row, parents: dict[str, list[str]]) -> None:
    """Make ``lsp`` virtual (or plain again) from the pairs of the switch."""
    _, ips = addresses_of(lsp)
    name = name_of(lsp)
    chosen: tuple[str, list[str]] | None = None
    if unbound(lsp):
        for ip in ips:
            holders = sorted(p for p in parents.get(ip, []) if p != name)
            if holders:
                chosen = (ip, holders)
                break
    options = dict(_column(lsp, "options", {}))
    parked = xids(lsp).get(codec.PARKED_KEY)
    if chosen is None:
        if is_virtual(lsp):
            lsp.type = ""
            options.pop(VIRTUAL_IP, None)
            options.pop(VIRTUAL_PARENTS, None)
            lsp.options = options
        if parked is not None:
            lsp.addresses = json.loads(parked)
            ids = dict(xids(lsp))
            ids.pop(codec.PARKED_KEY)
            lsp.external_ids = ids
        return
    ip, holders = chosen
    wanted = {**options, VIRTUAL_IP: ip, VIRTUAL_PARENTS: ",".join(holders)}
    if not is_virtual(lsp):
        lsp.type = VIRTUAL
    if wanted != options:
        lsp.options = wanted
    entries = list(_column(lsp, "addresses", []))
    if entries:
        # The VM's port answers for these addresses (its pairs; a pair's own
        # MAC is an entry of its addresses): the same MAC here too would give
        # L2 lookup two ports for it, and frames sent to the virtual port
        # were not delivered (tests/nested/test_in_vm_ovn.py, macvlan).
        lsp.external_ids = {**xids(lsp), codec.PARKED_KEY: json.dumps(sorted(entries))}
        lsp.addresses = []


def refresh(ls: Row, ips: Iterable[str], *, deleted: str | None = None) -> None:
    """Recompute the ports of ``ls`` holding any of ``ips`` (after the pairs
    naming them changed); ``deleted`` is a port being removed in this
    transaction, neither a parent nor a candidate any more."""
    touched = set(ips)
    if not touched:
        return
    exclude = [deleted] if deleted else []
    parents = parents_by_ip(ls, exclude)
    for lsp in ls.ports:
        if name_of(lsp) == deleted:
            continue
        _, addresses = addresses_of(lsp)
        orphaned = is_virtual(lsp) and deleted in _parent_names(lsp)
        if orphaned or touched.intersection(addresses):
            apply(lsp, parents)


def _parent_names(lsp: Row) -> list[str]:
    options: dict[str, str] = _column(lsp, "options", {})
    return [p for p in options.get(VIRTUAL_PARENTS, "").split(",") if p]


def extra_macs(mac: str, pairs: Iterable[Any]) -> list[str]:
    """The pair MACs that are not the port's own, each once (ML2/OVN's
    "new_macs"): bare MAC entries of the port's addresses column."""
    out: list[str] = []
    for pair in pairs:
        other = (pair.mac_address or "").lower()
        if other and other != mac.lower() and other not in out:
            out.append(other)
    return out
