"""THE list of VIF kinds: one "module:attr" entry per kind plugin.

Entries are imported on first use, so a kind whose module needs something
missing on this host (ovsdbapp, DPDK, sysfs) costs nothing until a VIF of
its kind shows up, and one broken kind does not break the others.

Everything else that needs the kinds derives from here: the decision of an
attachment's kind (``decide``), the VIF class of a stored record
(``parse_vif``), the descriptions in STATUS. Adding a data path is one line
here plus its plugin module (docs/kinds.md).

Test-only kinds (``TEST_KINDS``) are registered only when the fault
injection of podwire.faults is on (``PODWIRE_FAULTS`` set), and then come
first (so the test kind ``faulty_bridge`` serves what veth_bridge would): a
production agent never lists or builds them.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Mapping
from typing import Any

from podwire.datapath.vif import VifBase
from podwire.errors import InvalidInput, Unavailable
from podwire.kinds.base import UNDECIDED_VIF_TYPES, KindChoice, KindPlugin

KINDS: dict[str, str] = {
    "veth_bridge": "podwire.kinds.veth_bridge:VethBridgeKind",
    "veth_ovs": "podwire.kinds.veth_ovs:VethOvsKind",
    "vhostuser": "podwire.kinds.vhostuser:VhostUserKind",
    "ipvlan_nested": "podwire.kinds.nested:IpvlanNestedKind",
    "macvlan_nested": "podwire.kinds.nested:MacvlanNestedKind",
    "vlan_nested": "podwire.kinds.nested:VlanNestedKind",
    "sriov": "podwire.kinds.sriov:SriovKind",
}

TEST_KINDS: dict[str, str] = {
    "faulty_bridge": "podwire.kinds.faulty:FaultyBridgeKind",
}

_classes: dict[str, type[KindPlugin]] = {}
_lock = threading.Lock()


def entries() -> dict[str, str]:
    """The registered kinds of this process (test kinds only under faults)."""
    if os.environ.get("PODWIRE_FAULTS"):
        return {**TEST_KINDS, **KINDS}
    return dict(KINDS)


def names() -> list[str]:
    return list(entries())


def plugin_class(name: str) -> type[KindPlugin]:
    """The plugin class of kind ``name``: InvalidInput when no such kind is
    registered, Unavailable when its module cannot load on this host."""
    with _lock:
        cls = _classes.get(name)
    if cls is not None:
        return cls
    target = entries().get(name)
    if target is None:
        known = ", ".join(names()) or "none"
        raise InvalidInput(
            f"no VIF kind {name!r} in this build (kinds: {known})",
            kind="vif_kind",
            object_id=name,
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise Unavailable(
            f"VIF kind {name!r} cannot load: {exc}", kind="vif_kind", object_id=name
        ) from exc
    cls = getattr(module, attr)
    with _lock:
        _classes[name] = cls
    return cls


def _loadable() -> list[type[KindPlugin]]:
    out = []
    for name in names():
        try:
            out.append(plugin_class(name))
        except Unavailable:
            continue
    return out


def unseen_is_forbidden(node_mode: str) -> bool:
    """True when the kinds of ``node_mode`` serve one project only (nested:
    the VM owner's): what the agent's token cannot see is then refused as
    Forbidden, not NotFound."""
    return any(cls.one_project and node_mode in cls.node_modes for cls in _loadable())


def decide(choice: KindChoice) -> str:
    """The one decision of an attachment's kind, in this order: the
    network's datapath hint (the operator's explicit choice), the backend's
    binding vif_type (when it decided one), the port's vnic_type, then the
    kind serving the node's mode by default."""

    def pick(what: str, value: str, attr: str) -> str:
        for cls in _loadable():
            if cls.node_modes and choice.node_mode not in cls.node_modes:
                continue
            if value in getattr(cls, attr) and cls.matches(choice):
                return cls.name
        raise InvalidInput(
            f"network {choice.network or '?'} needs {what} {value!r}, "
            f"which no VIF kind of this agent handles (kinds: {', '.join(names())})",
            kind="network",
            field=what,
        )

    if choice.datapath_hint is not None:
        hinted = [c for c in _loadable() if choice.datapath_hint in c.datapath_hints]
        if not hinted or any(not c.node_modes or choice.node_mode in c.node_modes for c in hinted):
            return pick("datapath", choice.datapath_hint, "datapath_hints")
        # Only kinds of other node modes serve the hint: not this node's.
    if choice.vif_type not in UNDECIDED_VIF_TYPES:
        return pick("binding vif_type", choice.vif_type, "vif_types")
    if choice.vnic_type != "normal":
        return pick("vnic_type", choice.vnic_type, "vnic_types")
    if choice.default_kind is not None:
        cls = plugin_class(choice.default_kind)
        if cls.node_modes and choice.node_mode not in cls.node_modes:
            raise InvalidInput(
                f"agent.default_kind {choice.default_kind!r} does not run in node mode"
                f" {choice.node_mode!r}",
                kind="config",
                field="agent.default_kind",
            )
        return cls.name
    return pick("node mode", choice.node_mode, "default_for")


def vif_class(kind: str) -> type[VifBase]:
    return plugin_class(kind).vif_class


def parse_vif(data: Mapping[str, Any] | VifBase) -> VifBase:
    """A stored VIF (its JSON as a dict) as its kind's class."""
    if isinstance(data, VifBase):
        return data
    kind = data.get("kind") if isinstance(data, Mapping) else None
    if not isinstance(kind, str):
        raise InvalidInput("a VIF needs a 'kind'", kind="vif", field="kind")
    return vif_class(kind).model_validate(data)
