"""veth pairs: what the Linux bridge and the OVS drivers share.

A plug creates the pair in ONE rtnetlink request: the host end named
``host_ifname`` (up, already enslaved when a master is given), and its peer
created directly inside the container's namespace under its final name
``ifname``, with the port's MAC and the network's MTU, still down. The
usual "create under a temporary name in the host, move, rename" dance
exists to keep the container end from ever colliding with a host
interface; creating the peer in the target namespace gives that by
construction, checks the name where it matters (the container), costs one
round trip instead of four, and leaves nothing to undo when it fails (the
kernel creates both ends or neither).

Then, inside the namespace: every address (IPv6 with IFA_F_NODAD, see
below), the interface and ``lo`` up, then the routes (a gateway must be
on-link, so routes come after the addresses and the link are up).

IPv6 duplicate address detection is off for the addresses podwire assigns:
the backend's IPAM guarantees they are unique on the network, and DAD would
leave each one "tentative" (unusable) for 1-2 s. The kernel's own
link-local address keeps its DAD.

Undo: deleting the host end deletes the pair, wherever the peer is; so
every failure after creation is undone by one delete, and unplug never
needs the container's namespace (gone or not).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import queue
import re
import threading
from collections.abc import Callable
from contextlib import ExitStack

from podwire.datapath.netlink import NetlinkError, Netns, NetnsError, Rtnl, rtnl
from podwire.datapath.netlink.rtnl import RtnlOpening
from podwire.datapath.vif import Route
from podwire.errors import Conflict, DatapathError, Drift, Exhausted, InvalidInput, NotFound

log = logging.getLogger(__name__)
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


# --------------------------------------------------------------------------
# Input checks: names and addresses go to the kernel and into nft scripts.


def check_ifname(name: str, field: str) -> str:
    if not _IFNAME.match(name or "") or name in (".", ".."):
        raise InvalidInput(
            f"{field} {name!r} is not a valid interface name (1-15 of A-Z a-z 0-9 _ . -)",
            field=field,
        )
    return name


def check_mac(mac: str) -> str:
    mac = (mac or "").lower()
    if not _MAC.match(mac) or int(mac[:2], 16) & 1:
        raise InvalidInput(f"MAC address {mac!r} is not a unicast MAC", field="mac")
    return mac


def check_addresses(addresses: tuple[str, ...]) -> list[str]:
    out = []
    for cidr in addresses:
        try:
            iface = ipaddress.ip_interface(cidr)
        except ValueError as exc:
            raise InvalidInput(f"address {cidr!r} is malformed", field="addresses") from exc
        if "/" not in cidr:
            raise InvalidInput(f"address {cidr!r} has no prefix length", field="addresses")
        out.append(str(iface))
    return out


def check_routes(routes: tuple[Route, ...]) -> None:
    for route in routes:
        try:
            net = ipaddress.ip_network(route.destination, strict=False)
            if route.gateway is not None:
                gw = ipaddress.ip_address(route.gateway)
                if gw.version != net.version:
                    raise ValueError("gateway family differs from destination's")
        except ValueError as exc:
            raise InvalidInput(
                f"route {route.destination} via {route.gateway}: {exc}", field="routes"
            ) from exc


def check_mtu(mtu: int) -> int:
    if not 68 <= mtu <= 65535:
        raise InvalidInput(f"MTU {mtu} is out of range 68-65535", field="mtu")
    return mtu


def open_netns(path: str) -> Netns:
    """Open a namespace path, translating failures to podwire errors."""
    try:
        return Netns(path)
    except NetnsError as exc:
        if exc.errno == errno.ENOENT:
            raise NotFound(
                f"network namespace {path} does not exist", kind="netns", object_id=path
            ) from exc
        raise InvalidInput(
            f"network namespace {path}: {exc.strerror}", kind="netns", object_id=path
        ) from exc


def datapath_error(exc: OSError, what: str) -> DatapathError:
    return DatapathError(f"{what}: {exc.strerror or exc}", detail=str(exc))


# --------------------------------------------------------------------------
# Plug steps


def create_pair(
    host: Rtnl,
    netns: Netns | None,
    *,
    host_ifname: str,
    ifname: str,
    mac: str,
    mtu: int,
    master: int | None = None,
) -> None:
    """Create host_ifname (up, on ``master``) <-> ifname (in ``netns``, or in
    the host when None, with ``mac``, down). Conflict names the taken name."""
    try:
        host.add_veth(
            host_ifname, ifname, mtu=mtu, up=True, master=master, peer_mac=mac, peer_netns=netns
        )
    except NetlinkError as exc:
        if exc.errno == errno.EEXIST:
            if host.link(host_ifname) is not None:
                raise Conflict(
                    f"host interface {host_ifname} already exists",
                    kind="interface",
                    object_id=host_ifname,
                ) from exc
            where = netns.path if netns is not None else "the host namespace"
            raise Conflict(
                f"interface {ifname} already exists in {where}", kind="interface", object_id=ifname
            ) from exc
        if exc.errno == errno.EXFULL and master is not None:
            raise Exhausted(
                f"cannot add {host_ifname} to its bridge: the bridge has the kernel's"
                " maximum of 1024 ports",
                kind="bridge",
            ) from exc
        if exc.errno == errno.EINVAL and netns is not None:
            raise InvalidInput(
                f"cannot create {ifname} in {netns.path}: {exc.strerror}"
                " (not a network namespace?)",
                kind="netns",
                object_id=netns.path,
            ) from exc
        raise datapath_error(exc, f"creating veth {host_ifname} <-> {ifname}") from exc


def announce_sysctls(ifname: str, addresses: list[str]) -> dict[str, str]:
    """The sysctls that have the kernel announce the interface's IPv6
    addresses when it comes up (unsolicited neighbour advertisements); IPv4's
    counterpart (arp_notify, gratuitous ARP) is set through netlink as the
    link comes up (``bring_up``), since only IPv6's has no netlink setter.
    Empty for a link without IPv6 addresses: a sysctl's path lookup in a
    fresh namespace costs ~0.2 ms per family, growing with the namespaces on
    the host.

    Addresses are reused: a peer may still map one to the MAC of the
    container that had it before, and it would not ask again for seconds
    (or, on OVN, whose ARP responder answers for the switch, at all)."""
    if not any(_is_ipv6(cidr) for cidr in addresses):
        return {}
    return {f"net/ipv6/conf/{ifname}/ndisc_notify": "1"}


def _is_ipv6(cidr: str) -> bool:
    return ":" in cidr


def announce_again(netns: Netns, ifname: str, mac: str) -> None:
    """Repeat the announcements of ``announce_sysctls`` now: setting the same MAC
    again makes the kernel send them (NETDEV_CHANGEADDR). For data paths that
    forward nothing until a controller installs flows, so the ones sent when
    the link came up were lost (veth + OVS under ovn-controller)."""
    try:
        with rtnl(netns) as inner:
            link = inner.link(ifname)
            if link is not None:
                inner.set_link(link.index, mac=mac)
    except NetlinkError as exc:
        raise datapath_error(exc, f"announcing {ifname} in {netns.path}") from exc


def configure_container_end(
    netns: Netns,
    ifname: str,
    *,
    addresses: list[str],
    routes: tuple[Route, ...],
    before_up: Callable[[], object] | None = None,
    opening: RtnlOpening | None = None,
) -> int:
    """Addresses, up (with lo), routes on ``ifname`` inside ``netns``;
    ``before_up`` runs (and may raise) just before the link comes up.
    ``opening``: the connection started beside the device's creation
    (plug_pair); else one is opened here. Returns its ifindex there."""
    try:
        if opening is None:
            opening = RtnlOpening(netns, sysctls=announce_sysctls(ifname, addresses))
        with opening.ready() as inner:
            link = inner.link(ifname)
            if link is None:
                raise DatapathError(f"{ifname} vanished from {netns.path} while plugging")
            if before_up is not None:
                before_up()
            # Addresses, then the link and lo up: one send (bring_up).
            arp_notify = any(not _is_ipv6(cidr) for cidr in addresses)
            inner.bring_up(link.index, addresses, nodad=True, arp_notify=arp_notify)
            inner.sync_carrier(ifname)
            if routes:
                inner.add_routes(link.index, [(r.destination, r.gateway) for r in routes])
            inner.wait_ipv6_ready(link.index, addresses)
            return link.index
    except NetlinkError as exc:
        raise datapath_error(exc, f"configuring {ifname} in {netns.path}") from exc
    except NetnsError as exc:
        raise InvalidInput(f"{exc.strerror}", kind="netns", object_id=netns.path) from exc


def plug_pair(
    undo: ExitStack,
    host: Rtnl,
    netns: Netns | None,
    *,
    host_ifname: str,
    ifname: str,
    mac: str,
    mtu: int,
    addresses: list[str],
    routes: tuple[Route, ...],
    master: int | None = None,
    before_up: Callable[[], object] | None = None,
) -> None:
    """Create the pair and configure the container end; on failure the
    ``undo`` stack (which the caller unwinds) deletes the pair.
    ``before_up``: see configure_container_end.

    The container's connection is opened beside the pair's creation (the
    namespace worker's hop and the socket, ~0.3 ms, overlap the ~0.85 ms
    RTM_NEWLINK); its sysctls wait for the container end to exist."""
    opening = None
    if netns is not None:
        opening = RtnlOpening(netns, sysctls=announce_sysctls(ifname, addresses))
    try:
        create_pair(
            host, netns, host_ifname=host_ifname, ifname=ifname, mac=mac, mtu=mtu, master=master
        )
    except BaseException:
        if opening is not None:
            opening.abandon()
        raise
    undo.callback(_delete_quietly, host_ifname)
    if netns is not None:
        configure_container_end(
            netns,
            ifname,
            addresses=addresses,
            routes=routes,
            before_up=before_up,
            opening=opening,
        )
        # The host end got carrier when the container end came up: settle it
        # so a bridge port is forwarding when plug returns.
        host.sync_carrier(host_ifname)


def delete_host_end(host_ifname: str) -> bool:
    """Delete the pair by its host end; False when it was already gone."""
    try:
        with rtnl() as host:
            return host.delete_link(host_ifname)
    except NetlinkError as exc:
        raise datapath_error(exc, f"deleting {host_ifname}") from exc


def _delete_quietly(host_ifname: str) -> None:
    # Undo of a failed plug: log a failure here so that the caller sees the
    # error that made plug fail, not this one.
    try:
        delete_host_end(host_ifname)
    except Exception:
        log.exception("undoing a failed plug: deleting %s failed", host_ifname)


class PairReaper:
    """Deletes veth pairs off the caller's path (opt-in "async delete").

    Deleting a veth costs 15-25 ms of kernel time here (netdev unregistration
    waits for RCU grace periods and for references to drain); nothing of it
    needs the caller. ``retire`` takes the host end down at once (no frame
    passes any more, the container end loses carrier) and queues the delete
    and an ``after`` step (e.g. removing its rules) for the workers.
    A plug that needs a name being retired waits for it (``wait``).

    Up to ``workers`` threads (started as the queue grows): deletions
    running at once wait out their grace periods together (the kernel
    batches them: one deleter sustains ~47 deletes/s here, eight ~190/s), so
    a burst of DELs no longer queues behind one thread.
    """

    WORKERS = 8

    def __init__(self, workers: int = WORKERS) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, threading.Event] = {}
        self._queue: queue.SimpleQueue[tuple[str, Callable[[], None], threading.Event]] = (
            queue.SimpleQueue()
        )
        self._max_workers = max(1, workers)
        self._workers: list[threading.Thread] = []
        self._idle = 0  # workers waiting on the queue

    def retire(self, host_ifname: str, after: Callable[[], None]) -> None:
        try:
            with rtnl() as host:
                link = host.link(host_ifname)
                if link is not None:
                    host.set_link(link.index, up=False)
        except NetlinkError as exc:
            if exc.errno not in (errno.ENODEV, errno.ENOENT):
                raise datapath_error(exc, f"taking {host_ifname} down") from exc
        done = threading.Event()
        with self._lock:
            self._pending[host_ifname] = done
            self._workers = [t for t in self._workers if t.is_alive()]
            if self._idle == 0 and len(self._workers) < self._max_workers:
                worker = threading.Thread(target=self._run, name="podwire-veth-reaper", daemon=True)
                self._workers.append(worker)
                self._idle += 1  # counted idle until it takes its first job
                worker.start()
        self._queue.put((host_ifname, after, done))

    def _run(self) -> None:
        while True:
            host_ifname, after, done = self._queue.get()
            with self._lock:
                self._idle -= 1
            try:
                delete_host_end(host_ifname)
                after()
            except Exception:
                log.exception("deleting %s in the background failed", host_ifname)
            finally:
                with self._lock:
                    if self._pending.get(host_ifname) is done:
                        del self._pending[host_ifname]
                    self._idle += 1
                done.set()

    def wait(self, host_ifname: str, timeout: float = 10.0) -> None:
        with self._lock:
            done = self._pending.get(host_ifname)
        if done is not None:
            done.wait(timeout)

    def pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def count(self) -> int:
        with self._lock:
            return len(self._pending)

    def wait_all(self, timeout: float = 30.0) -> None:
        with self._lock:
            events = list(self._pending.values())
        for done in events:
            done.wait(timeout)


# --------------------------------------------------------------------------
# Check


def check_container_end(
    netns_path: str,
    ifname: str,
    *,
    mac: str,
    mtu: int,
    addresses: list[str],
    routes: tuple[Route, ...],
) -> None:
    """Raise Drift naming the first field whose live value differs."""
    try:
        netns = Netns(netns_path)
    except NetnsError as exc:
        raise Drift(
            f"network namespace {netns_path} is gone", field="netns", object_id=netns_path
        ) from exc
    with netns, rtnl(netns) as inner:
        link = inner.link(ifname)
        if link is None:
            raise Drift(
                f"interface {ifname} is missing from {netns_path}", field="ifname", object_id=ifname
            )
        if (link.mac or "").lower() != mac.lower():
            raise Drift(
                f"{ifname} has MAC {link.mac}, expected {mac}", field="mac", object_id=ifname
            )
        if link.mtu != mtu:
            raise Drift(
                f"{ifname} has MTU {link.mtu}, expected {mtu}", field="mtu", object_id=ifname
            )
        if not link.up:
            raise Drift(f"{ifname} is down", field="up", object_id=ifname)
        live = {ipaddress.ip_interface(a.cidr) for a in inner.addresses(link.index)}
        for cidr in addresses:
            if ipaddress.ip_interface(cidr) not in live:
                raise Drift(f"{ifname} lacks address {cidr}", field="addresses", object_id=ifname)
        live_routes = {
            (ipaddress.ip_network(r.destination), r.gateway and ipaddress.ip_address(r.gateway))
            for r in inner.routes(link.index)
        }
        for route in routes:
            key = (
                ipaddress.ip_network(route.destination, strict=False),
                route.gateway and ipaddress.ip_address(route.gateway),
            )
            if key not in live_routes:
                raise Drift(
                    f"{ifname} lacks route {route.destination} via {route.gateway or 'link'}",
                    field="routes",
                    object_id=ifname,
                )
