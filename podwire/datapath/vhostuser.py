"""Driver ``vhostuser``: an OVS-DPDK vhost-user port whose socket lives in
the container's own directory, plus the config file its application reads.
No netdev appears in the container.

Modes are the application's role (docs/vhostuser.md):
- ``server``: the application creates and listens on
  ``<socket_dir>/<socket_name>``; OVS connects to it (interface type
  ``dpdkvhostuserclient``, ``options:vhost-server-path``) and reconnects by
  itself after either side restarts.
- ``client``: OVS creates and listens on the socket (``dpdkvhostuser``) in
  its own directory (``ovs_socket_dir/<ovs_ifname>``); the agent moves it
  into the container's directory (a rename: same filesystem, else a clear
  error) and removes it at DEL, which OVS cannot do once it moved. After an
  OVS restart, OVS makes a new socket in its own directory and the moved one
  is dead: CHECK reports the attachment broken (field ``socket``); the
  container is re-created (DEL + ADD). Server mode has no such gap.

ADD, in order, each undone if a later one fails: the directory; the OVS
port (iface-id = the logical port, attached-mac); in client mode the
socket moved; the config file ``<container id>-<ifname>`` written (JSON:
vhostname, vhostmac, mode, addresses ...); on OVN the wait until
ovn-controller has bound the interface. Fault points (podwire.faults):
``kind.vhostuser.ovs_port``, ``kind.vhostuser.socket_moved``,
``kind.vhostuser.config_written``, each after that step acted.
DEL removes the OVS port, the socket, the config file and the directory
once empty; each may already be gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from podwire import faults
from podwire.datapath import hugepages
from podwire.datapath.base import DriverDescription, PluggedInterface
from podwire.datapath.ovs import DEFAULT_OVS_DB, OvsDb
from podwire.datapath.veth import check_ifname, check_mac
from podwire.datapath.vif import VhostUser, Vif
from podwire.errors import (
    DatapathError,
    Drift,
    InvalidInput,
    NotFound,
    PodwireError,
)

# sun_path holds 108 bytes with the terminating NUL.
MAX_SOCKET_PATH = 107
OVS_TYPE = {"server": "dpdkvhostuserclient", "client": "dpdkvhostuser"}


def socket_path(vif: VhostUser) -> Path:
    return Path(vif.socket_dir) / vif.socket_name


def ovs_socket_path(vif: VhostUser) -> Path:
    """Where OVS creates a client-mode socket (named after the interface)."""
    return Path(vif.ovs_socket_dir) / vif.ovs_ifname


def config_path(vif: VhostUser) -> Path:
    return Path(vif.socket_dir) / vif.config_name


def check_socket_path(path: Path, what: str) -> None:
    size = len(os.fsencode(str(path)))
    if size > MAX_SOCKET_PATH:
        raise InvalidInput(
            f"{what} {path} is {size} bytes; a unix socket path holds at most "
            f"{MAX_SOCKET_PATH}: choose a shorter vhostuser.socket_root (or "
            "ovs_socket_dir) in the agent's configuration",
            kind="vif",
            field="socket_path",
        )


def _plain_name(name: str, field: str) -> None:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise InvalidInput(f"{field} {name!r} must be a plain file name", field=field)


def app_config(vif: VhostUser, ifname: str) -> dict[str, Any]:
    """What the application reads from ``<container id>-<ifname>``: Kuryr's
    fields (vhostname, vhostmac, mode: the application's role) plus the
    interface's addresses, routes, MTU and DNS."""
    return {
        "vhostname": vif.socket_name,
        "vhostmac": vif.mac,
        "mode": vif.mode,
        "ifname": ifname,
        "mtu": vif.mtu,
        "addresses": list(vif.addresses),
        "routes": [r.model_dump(exclude_none=True) for r in vif.routes],
        "dns_nameservers": list(vif.dns_nameservers),
    }


def _tmp_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = _tmp_of(path)
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.rename(tmp, path)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _remove_dir_if_empty(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, OSError):
        path.rmdir()  # ENOTEMPTY: another interface of the container lives there


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.lstat().st_mode)
    except OSError:
        return False


def validate(vif: VhostUser) -> None:
    """Everything that can be refused before anything is made: names, the
    107-byte socket paths, free hugepages."""
    check_mac(vif.mac)
    check_ifname(vif.ovs_ifname, "ovs_ifname")
    _plain_name(vif.socket_name, "socket_name")
    _plain_name(vif.config_name, "config_name")
    check_socket_path(socket_path(vif), "vhost-user socket path")
    if vif.mode == "client":
        check_socket_path(ovs_socket_path(vif), "OVS's vhost-user socket path")
    hugepages.require_free(
        vif.hugepages_mb, f"the DPDK application of port {vif.port_id}", vif.port_id
    )


class VhostUserDriver:
    name = "vhostuser"
    kinds: tuple[str, ...] = ("vhostuser",)

    def __init__(self, ovs_db: str = DEFAULT_OVS_DB, timeout: float = 10.0) -> None:
        # Only describe() uses this remote; plug/unplug/check use the VIF's.
        self._default_db = ovs_db
        self._timeout = timeout

    def _db(self, vif: VhostUser) -> OvsDb:
        return OvsDb.for_remote(vif.ovs_db, self._timeout)

    # -- describe -------------------------------------------------------------

    def describe(self) -> DriverDescription:
        free = hugepages.free_mb()
        resources = {"hugepages_free_mb": free}

        def unavailable(reason: str) -> DriverDescription:
            return DriverDescription(
                name=self.name,
                kinds=list(self.kinds),
                available=False,
                reason=reason,
                resources=resources,
            )

        try:
            facts = OvsDb.for_remote(self._default_db, self._timeout).open_vswitch()
        except PodwireError as exc:
            return unavailable(exc.message)
        if not facts.get("dpdk_initialized"):
            return unavailable(
                f"the Open vSwitch at {self._default_db} has not initialized DPDK "
                "(other_config:dpdk-init=true, ovs-vswitchd built with DPDK)"
            )
        missing = {"dpdkvhostuser", "dpdkvhostuserclient"} - set(facts.get("iface_types", ()))
        if missing:
            return unavailable(f"OVS offers no interface types {sorted(missing)}")
        if free == 0:
            return unavailable("no free hugepages (/proc/sys/vm/nr_hugepages)")
        return DriverDescription(
            name=self.name, kinds=list(self.kinds), available=True, resources=resources
        )

    # -- plug -----------------------------------------------------------------

    def _expect(self, vif: Vif) -> VhostUser:
        if not isinstance(vif, VhostUser):
            raise InvalidInput(
                f"driver {self.name} cannot plug a {vif.kind} VIF",
                kind="vif",
                object_id=vif.port_id,
            )
        return vif

    def validate(self, vif: VhostUser) -> None:
        validate(vif)

    def plug(self, vif: Vif, netns: str | None, ifname: str) -> PluggedInterface:
        vif = self._expect(vif)
        self.validate(vif)
        if netns is not None and not os.path.exists(netns):
            # No netdev goes there, but a missing namespace means the
            # container is gone: nothing is made for it.
            raise NotFound(
                f"network namespace {netns} does not exist (is the container gone?)",
                kind="netns",
                object_id=netns,
            )
        db = self._db(vif)
        db.api()  # Unavailable before anything is made, when OVS is down
        sock, conf, sock_dir = socket_path(vif), config_path(vif), Path(vif.socket_dir)

        with ExitStack() as undo:
            try:
                sock_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatapathError(
                    f"cannot make the socket directory {sock_dir}: {exc.strerror}"
                ) from exc
            undo.callback(_remove_dir_if_empty, sock_dir)
            if vif.mode == "client":
                # A socket a crashed ADD moved here would shadow the new one.
                _remove(sock)
            db.replace_typed_port(
                vif.bridge,
                vif.ovs_ifname,
                type_=OVS_TYPE[vif.mode],
                options={"vhost-server-path": str(sock)} if vif.mode == "server" else {},
                external_ids={
                    "iface-id": vif.iface_id or vif.port_id,
                    "attached-mac": vif.mac,
                    "iface-status": "active",
                    "podwire-port-id": vif.port_id,
                },
            )
            undo.callback(db.delete_port, vif.ovs_ifname)
            faults.hit("kind.vhostuser.ovs_port")
            if vif.mode == "client":
                undo.callback(_remove, sock)
                self._move_socket(vif, sock)
                faults.hit("kind.vhostuser.socket_moved")
            undo.callback(_remove, conf)
            undo.callback(_remove, _tmp_of(conf))
            try:
                _write_atomically(conf, app_config(vif, ifname))
            except OSError as exc:
                raise DatapathError(f"cannot write {conf}: {exc.strerror}") from exc
            faults.hit("kind.vhostuser.config_written")
            if vif.wait_bound and not db.wait_installed(vif.ovs_ifname, vif.bind_timeout):
                raise DatapathError(
                    f"ovn-controller did not bind logical port {vif.iface_id} "
                    f"(interface {vif.ovs_ifname} on bridge {vif.bridge}) within "
                    f"{vif.bind_timeout:g} s; is ovn-controller running on this OVS-DPDK, "
                    "and does the logical port exist?",
                    kind="port",
                    object_id=vif.port_id,
                )
            undo.pop_all()
        return PluggedInterface(
            ifname=ifname,
            mac=vif.mac,
            sandbox=netns,
            mtu=vif.mtu,
            addresses=list(vif.addresses),
            extra={"socketPath": str(sock)},
        )

    def _move_socket(self, vif: VhostUser, sock: Path) -> None:
        """Client mode: OVS made its socket in its own directory; it becomes
        the container's by a rename (the listening socket keeps working)."""
        made = ovs_socket_path(vif)
        deadline = time.monotonic() + vif.socket_timeout
        while not _is_socket(made):
            if time.monotonic() > deadline:
                raise DatapathError(
                    f"OVS did not create the vhost-user socket {made} for interface "
                    f"{vif.ovs_ifname} within {vif.socket_timeout:g} s; is "
                    f"vhostuser.ovs_socket_dir its vhost-sock-dir?",
                    kind="port",
                    object_id=vif.port_id,
                )
            time.sleep(0.01)
        try:
            os.rename(made, sock)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                raise DatapathError(
                    f"cannot move the vhost-user socket {made} to {sock}: they are on different "
                    "filesystems; put vhostuser.socket_root on the filesystem of OVS's "
                    "vhost-sock-dir (vhostuser.ovs_socket_dir), or use server mode",
                    kind="port",
                    object_id=vif.port_id,
                ) from exc
            raise DatapathError(f"moving {made} to {sock}: {exc.strerror}") from exc

    # -- unplug ---------------------------------------------------------------

    def unplug(self, vif: Vif, netns: str | None, ifname: str) -> None:
        vif = self._expect(vif)
        check_ifname(vif.ovs_ifname, "ovs_ifname")
        self._db(vif).delete_port(vif.ovs_ifname)
        _remove(socket_path(vif))
        if vif.mode == "client":
            # Left when the agent died between OVS making it and the move.
            _remove(ovs_socket_path(vif))
        if vif.config_name:
            _remove(config_path(vif))
            _remove(_tmp_of(config_path(vif)))  # a write cut short
        _remove_dir_if_empty(Path(vif.socket_dir))

    # -- check ----------------------------------------------------------------

    def check(self, vif: Vif, netns: str | None, ifname: str) -> None:
        vif = self._expect(vif)
        info = self._db(vif).interface(vif.ovs_ifname)
        if info is None or info["bridge"] != vif.bridge:
            raise Drift(
                f"{vif.ovs_ifname} is not a port of OVS bridge {vif.bridge}",
                field="bridge",
                object_id=vif.ovs_ifname,
            )
        if info["type"] != OVS_TYPE[vif.mode]:
            raise Drift(
                f"{vif.ovs_ifname} has OVS type {info['type']!r}, expected "
                f"{OVS_TYPE[vif.mode]} ({vif.mode} mode)",
                field="mode",
                object_id=vif.ovs_ifname,
            )
        sock = socket_path(vif)
        if vif.mode == "server":
            if info["options"].get("vhost-server-path") != str(sock):
                raise Drift(
                    f"{vif.ovs_ifname} connects to {info['options'].get('vhost-server-path')!r}, "
                    f"expected {sock}",
                    field="socket",
                    object_id=vif.ovs_ifname,
                )
            # The application creates the socket when it starts: its absence
            # is not the attachment's fault.
        else:
            if not _is_socket(sock):
                raise Drift(
                    f"the vhost-user socket {sock} is missing", field="socket", object_id=str(sock)
                )
            if _is_socket(ovs_socket_path(vif)):
                raise Drift(
                    f"OVS re-created its socket {ovs_socket_path(vif)} (restarted?): {sock} "
                    "is dead; re-create the container (DEL + ADD), or use server mode",
                    field="socket",
                    object_id=str(sock),
                )
        if vif.config_name and not config_path(vif).is_file():
            raise Drift(
                f"the config file {config_path(vif)} is missing",
                field="config",
                object_id=str(config_path(vif)),
            )
