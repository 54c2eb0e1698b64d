"""Opening an ovsdbapp API on an OVSDB remote, bounded in time.

Shared by the OVN backend (the northbound database) and the OVS data path
(the local Open_vSwitch database): each keeps its own tables, IDL class and
transactions; only the connect lives here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from ovsdbapp.backend.ovs_idl import connection, idlutils

from podwire.errors import Unavailable


def open_api(
    remote: str,
    schema: str,
    tables: Iterable[str],
    *,
    api_base: type,
    idl_class: type = connection.OvsdbIdl,
    timeout: float,
    what: str,
) -> Any:
    """An API object of a private subclass of ``api_base`` connected to
    ``remote``, monitoring only ``tables``.

    Bounded by ``timeout`` even when the remote black-holes packets: the
    schema fetch and the connect have no timeout of their own, so they run on
    a worker thread that is abandoned when late. The private subclass matters
    because ovsdbapp keeps the connection on the API *class*: one per caller
    lets several databases live in one process. ``what`` names the database
    in the error ("the OVN northbound database").
    """
    box: dict[str, Any] = {}

    def attempt() -> None:
        try:
            helper = idlutils.get_schema_helper(remote, schema)
            for table in tables:
                helper.register_table(table)
            conn = connection.Connection(idl_class(remote, helper), timeout=timeout)
            api_class = type(
                f"Podwire{api_base.__name__}", (api_base,), {"_ovsdb_connection": None}
            )
            box["api"] = api_class(conn)
        except Exception as exc:
            box["error"] = exc

    worker = threading.Thread(target=attempt, name="podwire-ovsdb-connect", daemon=True)
    worker.start()
    worker.join(timeout)
    if "api" in box:
        return box["api"]
    why = f": {box['error']}" if "error" in box else f" within {timeout:g} s"
    raise Unavailable(f"cannot reach {what} at {remote}{why}")
