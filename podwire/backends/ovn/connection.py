"""The one place the OVN backend talks to ovsdbapp.

``NbConnection`` opens an ovsdbapp northbound API on one remote or a comma
list of remotes (a clustered database: the IDL follows the leader), with a
bounded connect, and runs podwire's operations as OVSDB transactions:

* ``write(fn)`` runs ``fn(txn)`` in ovsdbapp's connection thread inside one
  OVSDB transaction. ``fn`` reads the IDL replica, calls ``row.verify`` on what
  it decided from, and writes. When another client changed a verified column
  first, OVSDB answers "try again" and ovsdbapp runs ``fn`` again on the fresh
  replica, so a decision is never committed on stale data.
* ``read(fn)`` runs ``fn`` on the replica under the connection's lock.

ovsdbapp errors become podwire's: a timeout or a lost server is Unavailable;
the PodwireError raised by ``fn`` itself passes through unchanged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ovs import stream
from ovsdbapp import exceptions as ovsdbapp_exc
from ovsdbapp.backend.ovs_idl import command
from ovsdbapp.schema.ovn_northbound import impl_idl

from podwire.backends.ovn.rows import TrackingIdl
from podwire.errors import PodwireError, Unavailable
from podwire.ovsdb import open_api

T = TypeVar("T")

# The tables the backend reads; monitoring only these keeps the replica small.
TABLES = ("Logical_Switch", "Logical_Switch_Port", "DHCP_Options", "NB_Global")


class _Call(command.BaseCommand):
    def __init__(self, api: Any, fn: Callable[[Any, Any], Any], read_only: bool) -> None:
        super().__init__(api)
        self.fn = fn
        self.READ_ONLY = read_only

    def run_idl(self, txn: Any) -> None:
        self.result = self.fn(txn, self.api.tables)


@dataclass(frozen=True)
class SslFiles:
    private_key: str
    certificate: str
    ca_cert: str


class NbConnection:
    def __init__(self, remotes: list[str], timeout: float, ssl: SslFiles | None = None) -> None:
        if not remotes:
            raise Unavailable("no OVN northbound remote configured (ovn.nb_remotes)", kind="ovn")
        self.remote = ",".join(r.strip() for r in remotes)
        self.timeout = timeout
        self._ssl = ssl
        self._api: Any = None
        self._lock = threading.Lock()

    def _configure_ssl(self) -> None:
        if not any(r.startswith("ssl:") for r in self.remote.split(",")):
            return
        if self._ssl is None:
            raise Unavailable(
                f"OVN northbound remote {self.remote} is ssl: but ovn.ssl_private_key, "
                "ovn.ssl_certificate and ovn.ssl_ca_cert are not all set",
                kind="ovn",
            )
        # python-ovs keeps these per process (class attributes of Stream).
        stream.Stream.ssl_set_private_key_file(self._ssl.private_key)
        stream.Stream.ssl_set_certificate_file(self._ssl.certificate)
        stream.Stream.ssl_set_ca_cert_file(self._ssl.ca_cert)

    def _connect(self) -> Any:
        """Open the API, bounded by ``timeout`` even when the remote black-holes
        packets (schema fetch and connect have no timeout of their own)."""
        self._configure_ssl()
        return open_api(
            self.remote,
            "OVN_Northbound",
            TABLES,
            api_base=impl_idl.OvnNbApiIdlImpl,
            idl_class=TrackingIdl,
            timeout=self.timeout,
            what="the OVN northbound database",
        )

    def api(self) -> Any:
        with self._lock:
            if self._api is None:
                self._api = self._connect()
            return self._api

    def _execute(self, fn: Callable[[Any, Any], T], read_only: bool) -> T:
        api = self.api()
        if read_only and not _connected(api):
            # A replica that lost its server may be stale; reads wait like writes.
            _wait_connected(api, self.timeout, self.remote)
        try:
            result: T = _Call(api, fn, read_only).execute(
                check_error=True, log_errors=False, timeout=self.timeout
            )
            return result
        except PodwireError:
            raise
        except ovsdbapp_exc.TimeoutException as exc:
            raise Unavailable(
                f"the OVN northbound database at {self.remote} did not answer within "
                f"{self.timeout:g} s"
            ) from exc
        except RuntimeError as exc:
            # ovsdbapp's "OVSDB Error: ..." and "OVS transaction timed out".
            raise Unavailable(f"OVN northbound transaction failed: {exc}") from exc

    def write(self, fn: Callable[[Any, Any], T]) -> T:
        """``fn(txn, tables)`` inside one OVSDB transaction (re-run on "try again")."""
        return self._execute(fn, read_only=False)

    def read(self, fn: Callable[[Any, Any], T]) -> T:
        """``fn(None, tables)`` on the replica."""
        return self._execute(fn, read_only=True)

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._api.ovsdb_connection.stop(timeout=self.timeout)
                self._api = None


def _connected(api: Any) -> bool:
    # python-ovs exposes the session's state only through its private member.
    return bool(api.ovsdb_connection.idl._session.is_connected())


def _wait_connected(api: Any, timeout: float, remote: str) -> None:
    deadline = time.monotonic() + timeout
    while not _connected(api):
        if time.monotonic() > deadline:
            raise Unavailable(f"lost the OVN northbound database at {remote}")
        time.sleep(0.05)
