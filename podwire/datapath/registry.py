"""Data-path drivers by VIF kind.

``DRIVERS`` maps a VIF kind to "module:factory"; the module is imported on
first use, so a driver whose module needs something missing on this host
(ovsdbapp, DPDK, sysfs) costs nothing until a VIF of its kind shows up,
and one broken driver does not break the others. A factory takes no
arguments, or keyword arguments the agent passes through ``get_driver``.

Adding a driver is one line here, e.g. for the OVS driver:

    "veth_ovs": "podwire.datapath.veth_ovs:VethOvsDriver",

Kinds without a driver yet (see podwire.datapath.vif.VIF_KINDS) are listed
by ``describe_all`` as unavailable, so an operator sees what this build
lacks instead of a KeyError.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from podwire.datapath.base import Driver, DriverDescription
from podwire.datapath.vif import VIF_KINDS
from podwire.errors import InvalidInput, Unavailable

DRIVERS: dict[str, str] = {
    "veth_bridge": "podwire.datapath.veth_bridge:VethBridgeDriver",
    "veth_ovs": "podwire.datapath.veth_ovs:VethOvsDriver",
}

_instances: dict[tuple[str, tuple[tuple[str, Any], ...]], Driver] = {}
_lock = threading.Lock()


def _factory(kind: str) -> Any:
    try:
        target = DRIVERS[kind]
    except KeyError:
        known = ", ".join(sorted(DRIVERS)) or "none"
        raise InvalidInput(
            f"no data-path driver for VIF kind {kind!r} (available: {known})",
            kind="vif_kind",
            object_id=kind,
        ) from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise Unavailable(
            f"data-path driver for {kind!r} cannot load: {exc}", kind="vif_kind", object_id=kind
        ) from exc
    return getattr(module, attr)


def get_driver(kind: str, **options: Any) -> Driver:
    """The driver for ``kind``; one instance per (kind, options), shared by
    all threads (drivers are thread-safe)."""
    key = (kind, tuple(sorted(options.items())))
    with _lock:
        driver = _instances.get(key)
        if driver is None:
            driver = _factory(kind)(**options)
            _instances[key] = driver
    return driver


def describe_all() -> list[DriverDescription]:
    """One description per VIF kind, available or not (and why)."""
    out: list[DriverDescription] = []
    for kind in VIF_KINDS:
        if kind not in DRIVERS:
            out.append(
                DriverDescription(
                    name=kind, kinds=[kind], available=False, reason="no driver in this build"
                )
            )
            continue
        try:
            out.append(get_driver(kind).describe())
        except Exception as exc:
            out.append(DriverDescription(name=kind, kinds=[kind], available=False, reason=str(exc)))
    return out
