"""The one small ovsdbapp wrapper for the local Open_vSwitch database.

``OvsDb.for_remote(remote)`` gives one shared connection per remote (the
IDL keeps a replica of the tables below, so reads such as "is the port
bound yet?" cost no round trip). Writes wait, as ovs-vsctl does, until
ovs-vswitchd has applied them. Errors become podwire's: an unreachable
database is Unavailable, a refused change is a DatapathError.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ovsdbapp import exceptions as ovsdbapp_exc
from ovsdbapp.backend.ovs_idl import idlutils
from ovsdbapp.schema.open_vswitch import impl_idl

from podwire.errors import DatapathError, Unavailable
from podwire.ovsdb import open_api

DEFAULT_OVS_DB = "unix:/var/run/openvswitch/db.sock"
_TABLES = ("Open_vSwitch", "Bridge", "Port", "Interface")

_shared: dict[str, OvsDb] = {}
_shared_lock = threading.Lock()


class OvsDb:
    def __init__(self, remote: str, timeout: float = 10.0) -> None:
        self.remote = remote
        self.timeout = timeout
        self._api: Any = None
        self._lock = threading.Lock()

    @classmethod
    def for_remote(cls, remote: str, timeout: float = 10.0) -> OvsDb:
        with _shared_lock:
            db = _shared.get(remote)
            if db is None:
                db = _shared[remote] = cls(remote, timeout)
            return db

    def _connect(self) -> Any:
        return open_api(
            self.remote,
            "Open_vSwitch",
            _TABLES,
            api_base=impl_idl.OvsdbIdl,
            timeout=self.timeout,
            what="the Open vSwitch database",
        )

    def api(self) -> Any:
        with self._lock:
            if self._api is None:
                self._api = self._connect()
            return self._api

    def _commit(self, what: str, *commands: Any) -> None:
        api = self.api()
        try:
            with api.transaction(check_error=True, log_errors=False) as txn:
                for command in commands:
                    txn.add(command)
        except ovsdbapp_exc.TimeoutException as exc:
            raise Unavailable(
                f"{what}: the Open vSwitch database at {self.remote} did not answer within "
                f"{self.timeout:g} s"
            ) from exc
        except (RuntimeError, idlutils.RowNotFound) as exc:
            raise DatapathError(f"{what}: {exc}") from exc

    def replace_port(self, bridge: str, name: str, external_ids: dict[str, str]) -> None:
        """Put interface ``name`` on ``bridge`` with ``external_ids``; a stale
        port of that name (from a crash) is replaced in the same transaction."""
        api = self.api()
        if not self._read(lambda: self._row("Bridge", name=bridge)):
            raise DatapathError(f"OVS bridge {bridge} does not exist (at {self.remote})")
        self._commit(
            f"adding {name} to OVS bridge {bridge}",
            api.del_port(name, if_exists=True),
            api.add_port(bridge, name, may_exist=False, external_ids=external_ids),
        )

    def replace_typed_port(
        self,
        bridge: str,
        name: str,
        *,
        type_: str,
        options: dict[str, str],
        external_ids: dict[str, str],
    ) -> None:
        """As ``replace_port``, for an interface of a given OVS type with its
        options (a vhost-user port), in one transaction."""
        api = self.api()
        if not self._read(lambda: self._row("Bridge", name=bridge)):
            raise DatapathError(f"OVS bridge {bridge} does not exist (at {self.remote})")
        self._commit(
            f"adding {type_} interface {name} to OVS bridge {bridge}",
            api.del_port(name, if_exists=True),
            api.add_port(bridge, name, may_exist=False, external_ids=external_ids),
            api.db_set("Interface", name, ("type", type_), ("options", options)),
        )

    def open_vswitch(self) -> dict[str, Any]:
        """The Open_vSwitch row's facts a driver's describe() looks at."""

        def read() -> dict[str, Any]:
            rows = list(self.api().tables["Open_vSwitch"].rows.values())
            if not rows:
                return {}
            row = rows[0]
            return {
                "dpdk_initialized": bool(getattr(row, "dpdk_initialized", False)),
                "datapath_types": list(getattr(row, "datapath_types", [])),
                "iface_types": list(getattr(row, "iface_types", [])),
            }

        result: dict[str, Any] = self._read(read)
        return result

    def delete_port(self, name: str) -> None:
        """Remove port ``name`` from whichever bridge has it; absent is success."""
        self._commit(f"removing OVS port {name}", self.api().del_port(name, if_exists=True))

    def _read(self, fn: Any) -> Any:
        api = self.api()
        with api.ovsdb_connection.lock:
            return fn()

    def _row(self, table: str, **match: Any) -> Any:
        for row in self.api().tables[table].rows.values():
            if all(getattr(row, k) == v for k, v in match.items()):
                return row
        return None

    def interface(self, name: str) -> dict[str, Any] | None:
        """The interface's external_ids, ofport and bridge, or None."""

        def read() -> dict[str, Any] | None:
            iface = self._row("Interface", name=name)
            if iface is None:
                return None
            port = self._row("Port", name=name)
            bridge = None
            if port is not None:
                for br in self.api().tables["Bridge"].rows.values():
                    if port in br.ports:
                        bridge = br.name
            ofport = iface.ofport[0] if iface.ofport else None
            return {
                "external_ids": dict(iface.external_ids),
                "ofport": ofport,
                "bridge": bridge,
                "type": iface.type,
                "options": dict(iface.options),
            }

        result: dict[str, Any] | None = self._read(read)
        return result

    def wait_installed(self, name: str, timeout: float) -> bool:
        """Wait until ovn-controller marks the interface ``ovn-installed``
        (its flows are in place); False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.interface(name)
            if info is not None and info["external_ids"].get("ovn-installed") == "true":
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._api.ovsdb_connection.stop(timeout=self.timeout)
                self._api = None
