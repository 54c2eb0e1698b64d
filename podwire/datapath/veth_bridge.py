"""Driver ``veth_bridge``: a veth pair whose host end is a port of a Linux
bridge, one bridge per network, with port security in nftables.

Bridges: created on first plug (network MTU, up, no STP, a fixed MAC
derived from the name so the gateway's MAC never changes when ports come
and go), holding the subnets' gateway addresses so the host answers there.
Nothing is forwarded, routed or NATed beyond the bridge. A bridge stays
when its last port leaves: removing it then would race a concurrent plug
on the same network and make the gateway address flap; the agent removes a
network's bridge with ``remove_bridge`` when the network is deleted.

Thread safety: every call uses its own netlink sockets; bridge creation is
serialized per bridge name; nftables changes go through one lock.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack

from podwire import faults
from podwire.datapath import probes, veth
from podwire.datapath.base import DriverDescription, PluggedInterface
from podwire.datapath.netlink import NetlinkError, Rtnl, rtnl
from podwire.datapath.portsec import DEFAULT_TABLE, PortSecurityTable, nftables_available
from podwire.datapath.vif import AddressPair, PortSecurity, VethBridge, Vif
from podwire.errors import Conflict, DatapathError, Drift, InvalidInput

log = logging.getLogger(__name__)


def bridge_mac(bridge: str) -> str:
    """A stable locally administered unicast MAC for a bridge name."""
    digest = bytearray(hashlib.sha256(bridge.encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in digest)


def _undo_quietly(step: Callable[..., object], *args: object) -> None:
    """Run one undo step of a failed plug; a failure here is logged so the
    error that made plug fail is the one the caller sees."""
    try:
        step(*args)
    except Exception:
        log.exception("undoing a failed plug: %s%r failed", getattr(step, "__name__", step), args)


# Port security rules added beside the pair's creation (plug): a few
# long-lived threads; nftables' own commit lock orders the changes anyway.
_RULES = ThreadPoolExecutor(max_workers=4, thread_name_prefix="podwire-nft")


def _undo_rules(
    rules: Future[None], portsec: PortSecurityTable, host_ifname: str, security: PortSecurity
) -> None:
    """Undo of a failed plug: the rules out once their add has finished
    (nothing to remove when it failed)."""
    try:
        rules.result()
    except Exception:
        return
    _undo_quietly(portsec.remove_port, host_ifname, security)


def effective_security(vif: VethBridge) -> PortSecurity:
    """What the port may send from: the agent's ``allowed`` plus, always, the
    VIF's own MAC with each of its addresses (so a VIF built without them
    still works, and unplug removes exactly what plug added)."""
    own = tuple(
        AddressPair(ip=str(ipaddress.ip_interface(cidr).ip), mac=vif.mac.lower())
        for cidr in vif.addresses
    )
    allowed = tuple(dict.fromkeys((*vif.port_security.allowed, *own)))
    return PortSecurity(enabled=vif.port_security.enabled, allowed=allowed)


class VethBridgeDriver:
    name = "veth_bridge"
    kinds: tuple[str, ...] = ("veth_bridge",)

    def __init__(self, nft_table: str = DEFAULT_TABLE, async_delete: bool = False) -> None:
        self.portsec = PortSecurityTable(nft_table)
        # Opt-in: unplug takes the pair down and returns; the kernel's slow
        # delete runs on a worker (see veth.PairReaper). Off by default so a
        # returned unplug means "gone".
        self._reaper = veth.PairReaper() if async_delete else None
        self._locks_guard = threading.Lock()
        self._bridge_locks: dict[str, threading.Lock] = {}
        # bridge name -> (ifindex, addresses ensured): skip re-adding the
        # gateway addresses on every plug while the bridge is the same one.
        self._ready: dict[str, tuple[int, tuple[str, ...]]] = {}
        self._description: DriverDescription | None = None

    # -- describe -------------------------------------------------------------

    def describe(self) -> DriverDescription:
        if self._description is None or not self._description.available:
            self._description = self._probe()
        return self._description

    def _probe(self) -> DriverDescription:
        def unavailable(reason: str) -> DriverDescription:
            return DriverDescription(
                name=self.name, kinds=list(self.kinds), available=False, reason=reason
            )

        if os.geteuid() != 0:
            return unavailable("needs root (CAP_NET_ADMIN) to create bridges and veth pairs")
        # Built-in bridge/veth leave no trace in /sys/module: ask the kernel.
        # Named after this process: a kill -9 mid-probe leaves it to the
        # agent's start-up sweep (podwire.datapath.probes).
        probe = probes.probe_name("pwp")
        try:
            with rtnl() as host:
                try:
                    host.add_bridge(probe, mtu=1500)
                    faults.hit("kind.veth_bridge.probe")
                finally:
                    host.delete_link(probe)
                try:
                    host.add_veth(probe, probe + "p", mtu=1500)
                finally:
                    host.delete_link(probe)
        except NetlinkError as exc:
            return unavailable(f"kernel lacks bridge or veth support: {exc.strerror}")
        ok, reason = nftables_available()
        if not ok:
            return unavailable(f"port security needs nftables: {reason}")
        return DriverDescription(name=self.name, kinds=list(self.kinds), available=True)

    # -- plug -----------------------------------------------------------------

    def plug(self, vif: Vif, netns: str | None, ifname: str) -> PluggedInterface:
        vif = self._expect(vif)
        veth.check_ifname(ifname, "ifname")
        veth.check_ifname(vif.host_ifname, "host_ifname")
        veth.check_ifname(vif.bridge, "bridge")
        mac = veth.check_mac(vif.mac)
        mtu = veth.check_mtu(vif.mtu)
        addresses = veth.check_addresses(vif.addresses)
        gateways = veth.check_addresses(vif.bridge_addresses)
        veth.check_routes(vif.routes)

        with ExitStack() as scope:
            ns = scope.enter_context(veth.open_netns(netns)) if netns is not None else None
            with ExitStack() as undo:
                try:
                    host = scope.enter_context(rtnl())
                    if self._reaper is not None:
                        self._reaper.wait(vif.host_ifname)
                    # Rules are keyed by the host end's name: never touch
                    # those of a live port that already holds it.
                    if host.link(vif.host_ifname) is not None:
                        raise Conflict(
                            f"host interface {vif.host_ifname} already exists",
                            kind="interface",
                            object_id=vif.host_ifname,
                        )
                    master = self._ensure_bridge(host, vif.bridge, mtu, tuple(gateways))
                    # Rules match the host end by name, so they are in place
                    # before the first frame can leave the container: added
                    # on a worker while the pair is made (nftables' ~0.4 ms
                    # runs beside the veth's), waited for before the
                    # container end comes up (``before_up``).
                    security = effective_security(vif)
                    rules: Future[None] | None = None
                    if security.enabled:
                        rules = _RULES.submit(self.portsec.add_port, vif.host_ifname, security)
                        undo.callback(_undo_rules, rules, self.portsec, vif.host_ifname, security)

                    def make_pair() -> None:
                        veth.plug_pair(
                            undo,
                            host,
                            ns,
                            host_ifname=vif.host_ifname,
                            ifname=ifname,
                            mac=mac,
                            mtu=mtu,
                            addresses=addresses,
                            routes=vif.routes,
                            master=master,
                            before_up=rules.result if rules is not None else None,
                        )

                    try:
                        make_pair()
                    except Conflict:
                        # The name may belong to a pair still being deleted
                        # in the background (DEL then ADD in one netns).
                        if self._reaper is None or not self._reaper.pending():
                            raise
                        self._reaper.wait_all()
                        make_pair()
                    if rules is not None:
                        rules.result()  # in place (no container end: never waited)
                except OSError as exc:
                    raise veth.datapath_error(exc, f"plugging port {vif.port_id}") from exc
                undo.pop_all()
        return PluggedInterface(
            ifname=ifname,
            mac=mac,
            sandbox=netns,
            mtu=mtu,
            addresses=addresses,
            host_ifname=vif.host_ifname,
        )

    def _expect(self, vif: Vif) -> VethBridge:
        if not isinstance(vif, VethBridge):
            raise InvalidInput(
                f"driver {self.name} cannot plug a {vif.kind} VIF",
                kind="vif",
                object_id=vif.port_id,
            )
        return vif

    def _bridge_lock(self, bridge: str) -> threading.Lock:
        with self._locks_guard:
            return self._bridge_locks.setdefault(bridge, threading.Lock())

    def ensure_bridge(self, bridge: str, mtu: int, gateways: tuple[str, ...]) -> int:
        """A network's bridge (made if missing, with its gateway addresses):
        for what joins it besides a container (a VM's tap, an access veth)."""
        veth.check_ifname(bridge, "bridge")
        try:
            with rtnl() as host:
                return self._ensure_bridge(host, bridge, mtu, tuple(veth.check_addresses(gateways)))
        except NetlinkError as exc:
            raise veth.datapath_error(exc, f"making bridge {bridge}") from exc

    def _ensure_bridge(self, host: Rtnl, bridge: str, mtu: int, gateways: tuple[str, ...]) -> int:
        """The bridge's ifindex, creating and addressing it if needed."""
        with self._bridge_lock(bridge):
            link = host.link(bridge)
            if link is None:
                try:
                    host.add_bridge(bridge, mtu=mtu, mac=bridge_mac(bridge))
                except NetlinkError as exc:
                    # Another process made it meanwhile: use it.
                    if exc.errno != errno.EEXIST:
                        raise veth.datapath_error(exc, f"creating bridge {bridge}") from exc
                link = host.link(bridge)
                if link is None:
                    raise DatapathError(f"bridge {bridge} vanished right after creation")
            if link.kind != "bridge":
                raise Conflict(
                    f"{bridge} exists and is a {link.kind or 'plain'} interface, not a bridge",
                    kind="bridge",
                    object_id=bridge,
                )
            if self._ready.get(bridge) == (link.index, gateways) and link.up:
                return link.index
            if not link.up:
                host.set_link(link.index, up=True)
            for cidr in gateways:
                host.add_address(link.index, cidr, nodad=True, exist_ok=True)
            self._ready[bridge] = (link.index, gateways)
            return link.index

    # -- unplug ---------------------------------------------------------------

    def unplug(self, vif: Vif, netns: str | None, ifname: str) -> None:
        vif = self._expect(vif)
        veth.check_ifname(vif.host_ifname, "host_ifname")
        security = effective_security(vif)
        # Docker mode (netns None): the container end is a host interface
        # whose name Docker reuses at the next Join, so it goes at once.
        if self._reaper is not None and netns is not None:
            # The pair is down (it can send nothing) before its rules go, and
            # the rules go before unplug returns: a crash can then leave only
            # a down pair, which sweep_retired() finds, never orphan rules.
            self._reaper.retire(vif.host_ifname, lambda: None)
            self.portsec.remove_port(vif.host_ifname, security)
            return
        # The host end takes its peer with it wherever it is (container
        # netns, host in Docker mode, or already gone with its netns).
        veth.delete_host_end(vif.host_ifname)
        self.portsec.remove_port(vif.host_ifname, security)

    def sweep_retired(self, prefix: str, keep: set[str]) -> list[str]:
        """Delete host ends named ``prefix``* that are down and not in
        ``keep``: pairs a background deletion had taken down when the process
        died. A pair being plugged is up (its host end is created up), so
        another agent's work in progress is never touched."""
        gone: list[str] = []
        with rtnl() as host:
            for link in host.links():
                retired = link.name.startswith(prefix) and not link.up
                if retired and link.name not in keep and veth.delete_host_end(link.name):
                    gone.append(link.name)
        return gone

    def pending_deletes(self) -> int:
        """Pairs retired and not yet deleted (async_delete)."""
        return self._reaper.count() if self._reaper is not None else 0

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for background deletions (async_delete) to finish."""
        if self._reaper is not None:
            self._reaper.wait_all(timeout)

    # -- check ----------------------------------------------------------------

    def check(self, vif: Vif, netns: str | None, ifname: str) -> None:
        vif = self._expect(vif)
        with rtnl() as host:
            end = host.link(vif.host_ifname)
            if end is None:
                raise Drift(
                    f"host end {vif.host_ifname} is missing",
                    field="host_ifname",
                    object_id=vif.host_ifname,
                )
            bridge = host.link(vif.bridge)
            if bridge is None or end.master != bridge.index:
                raise Drift(
                    f"{vif.host_ifname} is not a port of bridge {vif.bridge}",
                    field="bridge",
                    object_id=vif.host_ifname,
                )
        security = effective_security(vif)
        if security.enabled and not self.portsec.has_port(vif.host_ifname, security):
            raise Drift(
                f"port security rules for {vif.host_ifname} are missing",
                field="port_security",
                object_id=vif.host_ifname,
            )
        if netns is None:
            # Docker moved and renamed the container end: only the host side is ours.
            return
        veth.check_container_end(
            netns,
            ifname,
            mac=vif.mac,
            mtu=vif.mtu,
            addresses=veth.check_addresses(vif.addresses),
            routes=vif.routes,
        )

    # -- network lifecycle ------------------------------------------------------

    def remove_bridge(self, bridge: str, *, force: bool = False) -> bool:
        """Delete a network's bridge (when the network is deleted). Refuses
        while ports remain unless ``force``; absent is success (False)."""
        veth.check_ifname(bridge, "bridge")
        # Pairs still being deleted in the background are ports of it for
        # a few more ms: wait for them rather than refuse.
        self.flush()
        with self._bridge_lock(bridge), rtnl() as host:
            link = host.link(bridge)
            if link is None:
                self._ready.pop(bridge, None)
                return False
            if link.kind != "bridge":
                raise Conflict(f"{bridge} is not a bridge", kind="bridge", object_id=bridge)
            if not force:
                ports = [x.name for x in host.links() if x.master == link.index]
                if ports:
                    raise Conflict(
                        f"bridge {bridge} still has ports: {', '.join(sorted(ports))}",
                        kind="bridge",
                        object_id=bridge,
                    )
            self._ready.pop(bridge, None)
            return host.delete_link(bridge)
