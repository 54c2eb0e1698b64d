"""The agent's core: attach, detach, check, gc, status, reconcile.

Frontends call these with the request types of podwire.agent.types and get
podwire errors back; they never see backends or drivers.

Every ADD is a sequence of undoable steps on an ExitStack: the intent record,
the port, the plug. If any step fails, the stack unwinds in reverse and the
original error reaches the caller. Records are written at each step (intent,
then port and VIF before plugging, then "ready"), so that after a crash the
start-up reconcile knows exactly what to roll back.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from typing import Any, TypeVar

from podwire.agent.gate import Gate, Ticket
from podwire.agent.store import AttachmentStore
from podwire.agent.types import (
    AgentStatus,
    AttachedInterface,
    Attachment,
    AttachRequest,
    AttachResult,
    CheckRequest,
    DetachRequest,
    GcRequest,
    NetworkSelection,
)
from podwire.agent.vifs import HOST_VETH_PREFIX, PortContext, build_vif, choose_vif_kind
from podwire.backends.base import Backend
from podwire.config import Config
from podwire.datapath.base import Driver
from podwire.datapath.vif import Vif
from podwire.errors import (
    Conflict,
    Drift,
    InvalidInput,
    NotFound,
    PodwireError,
    Unavailable,
)
from podwire.model import (
    Context,
    Network,
    Port,
    PortBinding,
    PortCreate,
    PortUpdate,
    Subnet,
    parse,
)

log = logging.getLogger(__name__)
#: per-stage timings of ADD and DEL, at debug level (``extra={"stages": ...}``)
stage_log = logging.getLogger("podwire.agent.stages")

T = TypeVar("T")
DriverLookup = Callable[[str], Driver]

DEVICE_OWNER_PREFIX = "podwire:"


def device_owner(frontend: str) -> str:
    return f"{DEVICE_OWNER_PREFIX}{frontend}"


def port_name(container_id: str, ifname: str) -> str:
    """Names the port after what it is plugged as, so a DEL that lost its
    record can still tell which of a container's ports is this interface."""
    return f"pw-{container_id[:12]}-{ifname}"


class Agent:
    """One per host. Thread-safe: every public method may be called from any
    thread; ``submit`` runs one on the agent's bounded pool for asyncio."""

    def __init__(
        self,
        config: Config,
        backend: Backend,
        drivers: DriverLookup,
        store: AttachmentStore,
    ) -> None:
        self.config = config
        self.backend = backend
        self.drivers = drivers
        self.store = store
        self.ctx = Context.admin(config.agent.project_id)
        self.gate = Gate(config.agent.max_in_flight, config.agent.max_queued)
        # Threads block on container locks and slots, so the pool is as large
        # as the number of requests the gate admits: nothing waits unbounded.
        self._pool = ThreadPoolExecutor(
            max_workers=self.gate.max_admitted, thread_name_prefix="podwire-agent"
        )
        self._closed = threading.Event()
        # Marks pool threads running a request ``submit`` already admitted.
        self._local = threading.local()
        self._networks = _NetworkCache(self)
        self._bridges = _Bridges(self, config.agent.bridge_idle_seconds)
        self._activator = _Activator(self)
        self._drivers = _DriverDescriptions()
        self._drivers.get()  # start describing now, in the background

    @classmethod
    def from_config(cls, config: Config) -> Agent:
        from podwire.backends.registry import open_backend

        store = AttachmentStore(config.state_dir / "agent.db")
        try:
            backend = open_backend(config)
        except BaseException:
            store.close()
            raise
        return cls(config, backend, agent_driver, store)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._activator.close()
        self._bridges.close()
        self._flush_drivers()
        try:
            self.backend.close()
        finally:
            self.store.close()

    # --- entry points: admission, per-container order, bounded work ----------------

    def attach(self, req: AttachRequest) -> AttachResult:
        return self._guarded(req.container_id, self._attach, req)

    def detach(self, req: DetachRequest) -> None:
        self._guarded(req.container_id, self._detach, req)

    def check(self, req: CheckRequest) -> Attachment:
        """Raises Drift naming what differs; returns the record checked."""
        return self._guarded(req.container_id, self._check, req)

    def gc(self, req: GcRequest) -> list[Attachment]:
        # No container lock or slot here: _gc takes them per attachment.
        ticket = self._ticket("gc")
        try:
            return self._gc(req)
        finally:
            if ticket is not None:
                ticket.release()

    def status(self) -> AgentStatus:
        return self._status()

    def list_attachments(
        self, container_id: str | None = None, frontend: str | None = None
    ) -> list[Attachment]:
        return self.store.list(container_id=container_id, frontend=frontend)

    def network_status(self, container_id: str) -> list[dict[str, Any]]:
        """The container's interfaces as Multus's ``network-status`` elements,
        from the records alone (no backend call), in attach order."""
        return [
            network_status_element(record)
            for record in self.store.list(container_id=container_id, states=("ready",))
        ]

    def remove_network_bridge(self, network: Network) -> bool:
        """A deleted network's host bridge (veth_bridge data path) goes: it
        holds the gateway addresses. Refused, and logged, while attachments
        of this host use it. The one place bridges are removed (CNI DEL via
        the idle timer, /v2.0 network delete, Docker's network delete)."""
        from podwire.agent.vifs import bridge_name

        if choose_vif_kind(self.backend.name, network) != "veth_bridge":
            return False
        return self._bridges.remove(bridge_name(network.id), network.id)

    def _flush_drivers(self) -> None:
        """Let background deletions (veth_bridge's async delete) finish, so a
        stopped agent leaves no pair half-deleted."""
        for kind in ("veth_bridge",):
            try:
                flush = getattr(self.drivers(kind), "flush", None)
                if flush is not None:
                    flush()
            except Exception:
                log.exception("flushing the %s driver failed", kind)

    async def submit(self, fn: Callable[[Any], T], req: Any) -> T:
        """Run ``fn(req)`` (one of the public methods) on the pool. Admission
        happens here, on the event loop, so a refused request never queues."""
        import asyncio

        ticket = self.gate.admit(type(req).__name__)
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, self._admitted_call, fn, req)
        finally:
            ticket.release()

    def _admitted_call(self, fn: Callable[[Any], T], req: Any) -> T:
        self._local.admitted = True
        try:
            return fn(req)
        finally:
            self._local.admitted = False

    def _ticket(self, what: str) -> Ticket | None:
        """Admission, unless ``submit`` already admitted this request."""
        if getattr(self._local, "admitted", False):
            return None
        return self.gate.admit(what)

    def _guarded(self, container_id: str, fn: Callable[[Any], T], req: Any) -> T:
        ticket = self._ticket(container_id)
        try:
            with self.gate.container(container_id), self.gate.slot():
                return fn(req)
        finally:
            if ticket is not None:
                ticket.release()

    # --- ADD --------------------------------------------------------------------------

    def _attach(self, req: AttachRequest) -> AttachResult:
        stages = Stages("ADD")
        # Under the container's lock: nothing else of this container runs,
        # so what these read holds until the records are written.
        existing = self.store.list(container_id=req.container_id)
        ifnames = _choose_ifnames(req, existing)
        owner = _default_owner(req, existing)
        stages.mark("record_find")
        # One undo stack for every interface: a later one failing undoes the
        # earlier ones. ``held`` outlives ``undo``: a failed ADD is undone
        # before the networks' bridges are released to a removal.
        attached: list[AttachedInterface] = []
        with ExitStack() as held, ExitStack() as undo:
            for index, (selection, ifname) in enumerate(zip(req.networks, ifnames, strict=True)):
                attached.append(
                    self._attach_one(req, selection, ifname, index == owner, held, undo, stages)
                )
            undo.pop_all()
        for one in attached:
            self._activator.submit(one.port)
        stages.done()
        return AttachResult(interfaces=attached)

    def _attach_one(
        self,
        req: AttachRequest,
        selection: NetworkSelection,
        ifname: str,
        owns_default: bool,
        held: ExitStack,
        undo: ExitStack,
        stages: Stages,
    ) -> AttachedInterface:
        network, subnets = self._networks.get(selection.network)
        stages.mark("network_lookup")
        # A crash from here until the record is written leaves a port
        # that names this container and host and no record: the start-up
        # reconcile (orphan sweep) and a DEL without record both delete it.
        try:
            port, owns_port = self._take_port(req, selection, ifname, network, undo)
        except NotFound as exc:
            if exc.kind != "network":
                raise
            # The cached network is gone (deleted, or its name now names
            # another one): never use it; look it up afresh.
            self._networks.forget(selection.network)
            network, subnets = self._networks.get(selection.network)
            port, owns_port = self._take_port(req, selection, ifname, network, undo)
        if not {f.subnet_id for f in port.fixed_ips} <= {s.id for s in subnets}:
            # A subnet newer than the cache: the port is on it.
            subnets = self._networks.refresh_subnets(selection.network, network)
        stages.mark("port_create")

        vif = build_vif(PortContext(self.backend.name, network, port, subnets, self.config))
        if not owns_default:
            vif = _without_default_routes(vif)
        driver = self.drivers(vif.kind)
        stages.mark("vif_build")
        # The network's bridge is not removed while this ADD plugs into it.
        held.enter_context(self._bridges.using(vif))
        # One write before plugging, with everything a rollback needs: a
        # crash mid-plug is undone from it.
        record = self.store.create(
            container_id=req.container_id,
            ifname=ifname,
            netns=req.netns,
            network=network.id,
            frontend=req.frontend,
            labels={**req.labels, "podwire.network": selection.network},
            port_id=port.id,
            owns_port=owns_port,
            vif=vif,
            default_route=owns_default,
            frontend_state=req.frontend_state,
        )
        undo.callback(_quietly, "delete record", self.store.delete, record.id)
        stages.mark("record_pending")
        undo.callback(_quietly, "unplug", driver.unplug, vif, req.netns, ifname)
        interface = driver.plug(vif, req.netns, ifname)
        stages.mark("plug")

        self.store.update(record.id, state="ready")
        stages.mark("record_ready")
        return AttachedInterface(
            attachment=record.model_copy(update={"state": "ready"}),
            interface=interface,
            port=port,
            subnets=[s for s in subnets if s.id in {f.subnet_id for f in port.fixed_ips}],
        )

    def _take_port(
        self,
        req: AttachRequest,
        selection: NetworkSelection,
        ifname: str,
        network: Network,
        undo: ExitStack,
    ) -> tuple[Port, bool]:
        """The port for this interface (created, or the caller's adopted)
        with its undo step; and whether the agent owns it."""
        if selection.port_id:
            port = self._adopt_port(req, selection.port_id, network)
            undo.callback(_quietly, "release port", self._release_port, port.id)
            return port, False
        port = self._create_port(req, selection, ifname, network)
        undo.callback(_quietly, "delete port", self._delete_port, port.id)
        return port, True

    def resolve_network(self, ref: str) -> Network:
        """A network by id, else by name; a name shared by several is an error."""
        if _looks_like_id(ref):
            try:
                return self.backend.get_network(self.ctx, ref)
            except NotFound:
                pass
        found = self.backend.list_networks(self.ctx, {"name": [ref]})
        if not found:
            raise NotFound(f"network {ref!r} not found", kind="network", object_id=ref)
        if len(found) > 1:
            ids = ", ".join(n.id for n in found)
            raise InvalidInput(
                f"network name {ref!r} is ambiguous ({len(found)} networks: {ids}); use its id",
                kind="network",
                object_id=ref,
            )
        return found[0]

    def _subnets(self, network: Network) -> list[Subnet]:
        return self.backend.list_subnets(self.ctx, {"network_id": [network.id]})

    def _binding(self, network: Network, vnic_type: str) -> PortBinding:
        kind = choose_vif_kind(self.backend.name, network, vnic_type)
        return PortBinding(host_id=self.config.host_id, vif_type=kind)

    def _create_port(
        self, req: AttachRequest, selection: NetworkSelection, ifname: str, network: Network
    ) -> Port:
        fixed_ips = [{"ip_address": ip} for ip in selection.ips] if selection.ips else None
        request = parse(
            PortCreate,
            {
                "network_id": network.id,
                "project_id": network.project_id,
                "name": port_name(req.container_id, ifname),
                "mac_address": selection.mac,
                "fixed_ips": fixed_ips,
                "device_id": req.container_id,
                "device_owner": device_owner(req.frontend),
                "binding": self._binding(network, "normal"),
            },
            kind="port",
        )
        return self.backend.create_port(self.ctx, request)

    def _adopt_port(self, req: AttachRequest, port_id: str, network: Network) -> Port:
        port = self.backend.get_port(self.ctx, port_id)
        if port.network_id != network.id:
            raise InvalidInput(
                f"port {port.id} is on network {port.network_id}, not {network.id}",
                kind="port",
                object_id=port.id,
                field="port_id",
            )
        if port.device_id and port.device_id != req.container_id:
            raise Conflict(
                f"port {port.id} is in use by device {port.device_id}",
                kind="port",
                object_id=port.id,
            )
        return self.backend.update_port(
            self.ctx,
            port.id,
            PortUpdate(
                device_id=req.container_id,
                device_owner=device_owner(req.frontend),
                binding=self._binding(network, port.vnic_type),
            ),
        )

    def _delete_port(self, port_id: str) -> None:
        with suppress(NotFound):
            self.backend.delete_port(self.ctx, port_id)

    def _release_port(self, port_id: str) -> None:
        """Give a caller's port back as it came: unbound, no device."""
        with suppress(NotFound):
            self.backend.update_port(
                self.ctx,
                port_id,
                PortUpdate(device_id="", device_owner="", binding=PortBinding(), status="DOWN"),
            )

    # --- DEL --------------------------------------------------------------------------

    def _detach(self, req: DetachRequest) -> None:
        stages = Stages("DEL")
        record = self.store.find(req.container_id, req.ifname)
        stages.mark("record_find")
        if record is not None and req.network and not self._same_network(record, req.network):
            # Same container and interface name, another network: not ours to
            # delete (CNI keys attachments by network too).
            record = None
        if record is not None:
            self._teardown(record, req.netns, stages)
        else:
            self._teardown_unrecorded(req)
            stages.mark("unrecorded")
        stages.done()

    def _same_network(self, record: Attachment, ref: str) -> bool:
        if ref in (record.network_id, record.labels.get("podwire.network")):
            return True
        try:
            return self.resolve_network(ref).id == record.network_id
        except NotFound:
            return False

    def _teardown(
        self, record: Attachment, netns: str | None = None, stages: Stages | None = None
    ) -> None:
        """Undo one attachment from its record; every step tolerates "already
        gone". The record is deleted last, so a failed teardown is retried by
        the next DEL (or the start-up reconcile)."""
        stages = stages or Stages("teardown")
        if record.state != "detaching":
            self.store.update(record.id, state="detaching")
        stages.mark("record_detaching")
        netns = netns or record.netns
        if record.port_id is not None:
            self._activator.wait(record.port_id)  # its ACTIVE lands before the delete
        if record.vif is not None:
            self.drivers(record.vif.kind).unplug(record.vif, netns, record.ifname)
        stages.mark("unplug")
        if record.port_id is not None:
            if record.owns_port:
                self._delete_port(record.port_id)
            else:
                self._release_port(record.port_id)
        else:
            # Crashed between creating the port and recording it.
            for port in self._ports_of(record.container_id, record.ifname, record.frontend):
                self._delete_port(port.id)
        stages.mark("port_delete")
        self.store.delete(record.id)
        stages.mark("record_delete")
        if record.vif is not None:
            self._bridges.maybe_idle(record.vif, record.network_id)

    def _teardown_unrecorded(self, req: DetachRequest) -> None:
        """DEL with no record: release whatever port this host made for that
        container and interface (a lost record must not leak an address)."""
        frontend = req.frontend
        network_id: str | None = None
        if req.network:
            try:
                network_id = self.resolve_network(req.network).id
            except NotFound:
                return  # no such network: nothing of it can be ours
        for port in self._ports_of(req.container_id, req.ifname, frontend, network_id):
            # Rebuilt from the port: names (bridge, host end) derive from ids,
            # so unplug finds what a lost record would have named.
            network = self.backend.get_network(self.ctx, port.network_id)
            vif = build_vif(
                PortContext(self.backend.name, network, port, self._subnets(network), self.config)
            )
            self.drivers(vif.kind).unplug(vif, req.netns, req.ifname)
            self._delete_port(port.id)

    def _ports_of(
        self,
        container_id: str,
        ifname: str,
        frontend: str,
        network_id: str | None = None,
    ) -> list[Port]:
        filters: dict[str, list[str]] = {
            "device_id": [container_id],
            "device_owner": [device_owner(frontend)],
            "name": [port_name(container_id, ifname)],
        }
        if network_id is not None:
            filters["network_id"] = [network_id]
        return [
            p
            for p in self.backend.list_ports(self.ctx, filters)
            if p.binding.host_id == self.config.host_id
        ]

    # --- CHECK ------------------------------------------------------------------------

    def _check(self, req: CheckRequest) -> Attachment:
        record = self.store.find(req.container_id, req.ifname)
        if record is not None and req.network and not self._same_network(record, req.network):
            record = None
        if record is None or record.state != "ready" or record.vif is None:
            raise NotFound(
                f"no attachment of container {req.container_id} interface {req.ifname}"
                + (f" on network {req.network}" if req.network else ""),
                kind="attachment",
                object_id=req.container_id,
            )
        self.drivers(record.vif.kind).check(record.vif, req.netns or record.netns, record.ifname)
        if record.port_id is not None:
            try:
                port = self.backend.get_port(self.ctx, record.port_id)
            except NotFound:
                raise Drift(
                    f"port {record.port_id} of {req.container_id}/{req.ifname} "
                    "no longer exists in the backend",
                    kind="port",
                    object_id=record.port_id,
                    field="port",
                ) from None
            except Unavailable:
                return record  # the data path is fine; the backend's health is STATUS's business
            _check_port_matches(record.vif, port)
        return record

    # --- GC ---------------------------------------------------------------------------

    def _gc(self, req: GcRequest) -> list[Attachment]:
        """Tear down every attachment of the frontend (and labels) not kept;
        then delete this host's ports of the network that no record knows.
        Continues past failures and raises the first at the end."""
        keep = {(cid, ifname) for cid, ifname in req.keep}
        removed: list[Attachment] = []
        errors: list[PodwireError] = []
        for record in self.store.list(frontend=req.frontend):
            if any(record.labels.get(k) != v for k, v in req.labels.items()):
                continue
            if (record.container_id, record.ifname) in keep:
                continue
            with self.gate.container(record.container_id), self.gate.slot():
                current = self.store.find(record.container_id, record.ifname)
                if current is None or current.id != record.id:
                    continue
                try:
                    self._teardown(current)
                    removed.append(current)
                except PodwireError as exc:
                    errors.append(exc)
        if req.network:
            try:
                self._delete_orphan_ports(req.frontend, req.network, keep)
            except PodwireError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return removed

    def _delete_orphan_ports(
        self, frontend: str, network_ref: str | None, keep: set[tuple[str, str]] | None = None
    ) -> list[str]:
        """Ports this host made (device_owner podwire:*, binding host = this
        host) that no record knows: leaked by a crash or a lost record."""
        filters: dict[str, list[str]] = {"device_owner": [device_owner(frontend)]}
        if network_ref is not None:
            try:
                filters["network_id"] = [self.resolve_network(network_ref).id]
            except NotFound:
                return []
        known = {r.container_id for r in self.store.list()}
        kept_names = {port_name(cid, ifname) for cid, ifname in keep or set()}
        deleted = []
        for port in self.backend.list_ports(self.ctx, filters):
            if port.binding.host_id != self.config.host_id:
                continue
            if port.device_id in known or port.name in kept_names:
                continue
            with self.gate.container(port.device_id or port.id):
                # Re-read under the container's lock: an ADD may have just
                # recorded it.
                if port.device_id and self.store.list(container_id=port.device_id):
                    continue
                self._delete_port(port.id)
            deleted.append(port.id)
        return deleted

    # --- start-up ---------------------------------------------------------------------

    def reconcile(self) -> dict[str, list[str]]:
        """After a crash: roll back every ADD or DEL that did not finish, and
        delete this host's podwire ports that no record knows. Run before
        serving requests."""
        rolled_back: list[str] = []
        failed: list[str] = []
        for record in self.store.list(states=("pending", "detaching")):
            try:
                self._teardown(record)
                rolled_back.append(record.id)
            except PodwireError as exc:
                log.warning("reconcile: cannot roll back attachment %s: %s", record.id, exc)
                failed.append(record.id)
        # Rolled back means gone: wait for background veth deletions.
        self._flush_drivers()
        retired = self._sweep_retired_pairs()
        orphans: list[str] = []
        for frontend in ("cni", "docker", "cli"):
            try:
                orphans += self._delete_orphan_ports(frontend, None)
            except PodwireError as exc:
                log.warning("reconcile: cannot list %s ports: %s", frontend, exc)
        if rolled_back or orphans or retired:
            log.info(
                "reconcile: rolled back %s, deleted orphan ports %s, retired pairs %s",
                rolled_back,
                orphans,
                retired,
            )
        return {
            "rolled_back": rolled_back,
            "failed": failed,
            "orphan_ports": orphans,
            "retired_pairs": retired,
        }

    def _sweep_retired_pairs(self) -> list[str]:
        """veth pairs a DEL had taken down for background deletion when the
        agent died: no record keeps them, so nothing else would delete them."""
        keep = {
            host_ifname
            for record in self.store.list()
            if record.vif is not None
            and (host_ifname := getattr(record.vif, "host_ifname", None)) is not None
        }
        sweep = getattr(self.drivers("veth_bridge"), "sweep_retired", None)
        if sweep is None:
            return []
        try:
            return list(sweep(HOST_VETH_PREFIX, keep))
        except PodwireError as exc:
            log.warning("reconcile: cannot sweep retired veth pairs: %s", exc)
            return []

    # --- STATUS -----------------------------------------------------------------------

    def backend_health(self) -> tuple[bool, str]:
        """(ok, why not): one cheap backend call."""
        try:
            self.backend.list_networks(self.ctx, {"id": ["00000000-0000-0000-0000-000000000000"]})
        except PodwireError as exc:
            return False, f"backend {self.backend.name}: {exc.message}"
        except Exception as exc:  # a backend failing in an unplanned way is not ok either
            return False, f"backend {self.backend.name}: {exc}"
        return True, ""

    def can_attach(self, network_ref: str) -> tuple[bool, str]:
        """Could an ADD on this network succeed now? (ok, why not). Backend
        reachable, network exists and unambiguous, and its data path's driver
        not known to be unavailable on this host (from the cached
        descriptions: never waits for a slow probe)."""
        ok, reason = self.backend_health()
        if not ok:
            return False, reason
        try:
            network = self.resolve_network(network_ref)
        except PodwireError as exc:
            return False, exc.message
        kind = choose_vif_kind(self.backend.name, network)
        for described in self._drivers.get():
            if kind in described.get("kinds", ()) and not described.get("available", True):
                return False, f"data path {kind} unavailable here: {described.get('reason', '')}"
        return True, ""

    def _status(self) -> AgentStatus:
        backend_ok, reason = self.backend_health()
        return AgentStatus(
            ready=backend_ok,
            backend=self.backend.name,
            backend_ok=backend_ok,
            reason=reason,
            attachments=self.store.count(),
            in_flight=self.gate.admitted,
            drivers=self._drivers.get(),
        )


def agent_driver(kind: str) -> Driver:
    """The agent's data-path drivers. veth_bridge runs with ``async_delete``:
    DEL releases the port, its addresses and the record before returning, and
    takes the host end down at once (no frame passes); only the kernel's slow
    veth delete (15-25 ms) and the removal of the pair's rules finish on the
    driver's worker. A plug needing the same names waits for them; a network's
    bridge is removed only after them. See docs/perf.md."""
    driver = _agent_drivers.get(kind)
    if driver is None:
        from podwire.datapath.registry import get_driver

        # Kept here after the first lookup: the registry builds drivers under
        # one lock, and the status refresh building veth_ovs at start
        # (importing ovsdbapp, ~0.25 s) held the first ADDs behind it.
        driver = get_driver(kind, async_delete=True) if kind == "veth_bridge" else get_driver(kind)
        _agent_drivers[kind] = driver
    return driver


_agent_drivers: dict[str, Driver] = {}


class Stages:
    """Wall time per step of one request, logged at debug level on
    ``podwire.agent.stages`` (cheap when that level is off: one
    perf_counter_ns per mark)."""

    __slots__ = ("_last", "marks", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self._last = time.perf_counter_ns()
        self.marks: list[tuple[str, int]] = []

    def mark(self, stage: str) -> None:
        now = time.perf_counter_ns()
        self.marks.append((stage, now - self._last))
        self._last = now

    def done(self) -> None:
        if stage_log.isEnabledFor(logging.DEBUG):
            stages = {name: ns / 1e6 for name, ns in self.marks}
            stage_log.debug(
                "%s %s total %.2f ms",
                self.what,
                " ".join(f"{k}={v:.2f}" for k, v in stages.items()),
                sum(stages.values()),
                extra={"stages": (self.what, stages)},
            )


class _Activator:
    """Marks plugged ports ACTIVE (Neutron's flow: DOWN when created, ACTIVE
    once its host plugged it), off the ADD's path: the backend write costs
    ~2 ms and the container does not need it. One worker, in ADD order; a
    DEL (or undo) of the port first waits for its pending mark, so a mark
    never lands after the port was deleted or given back. OVN derives the
    status from ovn-controller's binding itself: nothing to do there."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._lock = threading.Lock()
        self._pending: dict[str, threading.Event] = {}
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    def submit(self, port: Port) -> None:
        if port.status == "ACTIVE" or self._agent.backend.name == "ovn":
            return
        with self._lock:
            self._pending[port.id] = threading.Event()
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._run, name="podwire-port-active", daemon=True
                )
                self._worker.start()
        self._queue.put(port.id)

    def wait(self, port_id: str, timeout: float = 30.0) -> None:
        with self._lock:
            done = self._pending.get(port_id)
        if done is not None:
            done.wait(timeout)

    def _run(self) -> None:
        agent = self._agent
        while (port_id := self._queue.get()) is not None:
            try:
                agent.backend.update_port(agent.ctx, port_id, PortUpdate(status="ACTIVE"))
            except NotFound:
                pass
            except Exception as exc:  # the interface works either way
                log.warning("port %s plugged but not marked ACTIVE: %s", port_id, exc)
            finally:
                with self._lock:
                    done = self._pending.pop(port_id, None)
                if done is not None:
                    done.set()

    def close(self) -> None:
        """Finish the pending marks (the backend closes next)."""
        with self._lock:
            worker = self._worker
        if worker is not None:
            self._queue.put(None)
            worker.join(30)


class _Bridges:
    """Removes a network's Linux bridge (veth_bridge) when this host no longer
    uses it: ``idle_seconds`` after the DEL of its last attachment, or at
    once when the network is deleted.

    Race-safe against ADD without serializing ADDs: an ADD holds the bridge
    (``using``) from before its record is written until it has plugged or
    undone everything; a removal waits until nobody holds it, keeps new ADDs
    out meanwhile, and removes only if no record of this host is on the
    network and the kernel bridge has no port (the driver refuses otherwise).
    """

    def __init__(self, agent: Agent, idle_seconds: float) -> None:
        self._agent = agent
        self._idle_seconds = idle_seconds
        self._cond = threading.Condition()
        self._users: dict[str, int] = {}
        self._removing: set[str] = set()
        # bridge -> (idle since, network id), for the timer thread
        self._idle: dict[str, tuple[float, str]] = {}
        self._timer: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def using(self, vif: Vif) -> Iterator[None]:
        bridge = getattr(vif, "bridge", None) if vif.kind == "veth_bridge" else None
        if bridge is None:
            yield
            return
        with self._cond:
            while bridge in self._removing:
                self._cond.wait()
            self._users[bridge] = self._users.get(bridge, 0) + 1
            self._idle.pop(bridge, None)
        try:
            yield
        finally:
            with self._cond:
                left = self._users[bridge] - 1
                if left:
                    self._users[bridge] = left
                else:
                    del self._users[bridge]
                self._cond.notify_all()

    def maybe_idle(self, vif: Vif, network_id: str | None) -> None:
        """After a DEL: if nothing of this host is on the network any more,
        remove its bridge once it stayed idle long enough."""
        bridge = getattr(vif, "bridge", None) if vif.kind == "veth_bridge" else None
        if bridge is None or not network_id or self._agent.store.uses_network(network_id):
            return
        if self._idle_seconds <= 0:
            self.remove(bridge, network_id)
            return
        with self._cond:
            self._idle[bridge] = (time.monotonic(), network_id)
            if self._timer is None and not self._closed:
                self._timer = threading.Thread(
                    target=self._run, name="podwire-bridge-idle", daemon=True
                )
                self._timer.start()
            self._cond.notify_all()

    def remove(self, bridge: str, network_id: str) -> bool:
        with self._cond:
            while self._users.get(bridge) or bridge in self._removing:
                self._cond.wait()
            self._removing.add(bridge)
            self._idle.pop(bridge, None)
        try:
            if self._agent.store.uses_network(network_id):
                return False
            driver = self._agent.drivers("veth_bridge")
            remove_bridge = getattr(driver, "remove_bridge", None)
            if remove_bridge is None:
                return False
            return bool(remove_bridge(bridge, force=False))
        except PodwireError as exc:
            log.warning("bridge %s of network %s stays: %s", bridge, network_id, exc.message)
            return False
        finally:
            with self._cond:
                self._removing.discard(bridge)
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                due = [
                    (bridge, network_id)
                    for bridge, (since, network_id) in self._idle.items()
                    if now - since >= self._idle_seconds
                ]
                if not due:
                    waits = [since + self._idle_seconds - now for since, _ in self._idle.values()]
                    self._cond.wait(timeout=min(waits) if waits else None)
                    continue
            for bridge, network_id in due:
                with self._cond:
                    entry = self._idle.get(bridge)
                if entry is not None and entry[1] == network_id:
                    self.remove(bridge, network_id)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class _NetworkCache:
    """Network and subnets per network reference (name or id), for ADD only.

    Safe by construction rather than by TTL alone: a new network is a miss
    (looked up at once); a cached network that was deleted makes the port
    create fail with NotFound, and the ADD then forgets it and looks again;
    a port with an address on a subnet the cache lacks refreshes the
    subnets. The TTL bounds what none of these notice: a changed subnet
    (gateway, host routes, DNS) or a second network taking a cached name
    (ambiguous) is seen within TTL seconds. Everything else (DEL, CHECK, GC,
    STATUS) looks up afresh."""

    TTL = 5.0

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Network, list[Subnet]]] = {}

    def get(self, ref: str) -> tuple[Network, list[Subnet]]:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(ref)
        if entry is not None and now - entry[0] < self.TTL:
            return entry[1], entry[2]
        network = self._agent.resolve_network(ref)
        subnets = self._agent._subnets(network)
        self._put(ref, now, network, subnets)
        return network, subnets

    def refresh_subnets(self, ref: str, network: Network) -> list[Subnet]:
        subnets = self._agent._subnets(network)
        self._put(ref, time.monotonic(), network, subnets)
        return subnets

    def forget(self, ref: str) -> None:
        with self._lock:
            self._entries.pop(ref, None)

    def _put(self, ref: str, stamp: float, network: Network, subnets: list[Subnet]) -> None:
        with self._lock:
            if len(self._entries) > 1024:  # many networks: keep it bounded
                self._entries.clear()
            self._entries[ref] = (stamp, network, subnets)


class _DriverDescriptions:
    """Driver descriptions, refreshed in the background: describing a driver
    may probe slow things (an absent OVS database takes seconds to give up),
    and a status call must not wait for that."""

    TTL = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: list[dict[str, Any]] = []
        self._stamp = float("-inf")
        self._refreshing = False

    def get(self) -> list[dict[str, Any]]:
        with self._lock:
            stale = time.monotonic() - self._stamp > self.TTL
            if stale and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, daemon=True).start()
            return list(self._value)

    def _refresh(self) -> None:
        try:
            value = _driver_descriptions()
        except Exception as exc:
            value = [{"name": "?", "available": False, "reason": str(exc)}]
        with self._lock:
            self._value, self._stamp, self._refreshing = value, time.monotonic(), False


def _driver_descriptions() -> list[dict[str, Any]]:
    try:
        from podwire.datapath import registry
    except ImportError:
        return []
    describe_all = getattr(registry, "describe_all", None)
    if describe_all is None:
        return []
    return [d.model_dump() for d in describe_all()]


def _check_port_matches(vif: Vif, port: Port) -> None:
    """The record's VIF against the backend's port: someone may have changed
    the port's MAC or addresses behind the agent's back."""
    if port.mac_address != vif.mac:
        raise Drift(
            f"port {port.id} MAC is {port.mac_address} in the backend, {vif.mac} on the interface",
            kind="port",
            object_id=port.id,
            field="mac",
        )
    recorded = {a.split("/")[0] for a in vif.addresses}
    backend = {f.ip_address for f in port.fixed_ips}
    if recorded != backend:
        raise Drift(
            f"port {port.id} addresses are {sorted(backend)} in the backend, "
            f"{sorted(recorded)} on the interface",
            kind="port",
            object_id=port.id,
            field="addresses",
        )


def _looks_like_id(ref: str) -> bool:
    """Ids are UUIDs in every backend; anything else can only be a name, and
    is looked up by name only (one query instead of two)."""
    try:
        uuid.UUID(ref)
    except ValueError:
        return False
    return True


def _quietly(what: str, fn: Callable[..., Any], *args: Any) -> None:
    """Run one undo step; a failing step is logged and the rest still run,
    and the error that caused the undo is the one the caller sees."""
    try:
        fn(*args)
    except Exception:
        log.exception("undo step %r failed", what)


# --- several networks per container -------------------------------------------------

_DEFAULT_DESTINATIONS = ("0.0.0.0/0", "::/0")


def _choose_ifnames(req: AttachRequest, existing: list[Attachment]) -> list[str]:
    """Each selection's interface name: its own, else the first ethN free
    in the container (counting the ones this request names)."""
    taken = {r.ifname: r for r in existing}
    named = [s.ifname for s in req.networks if s.ifname]
    for name in named:
        if named.count(name) > 1:
            raise InvalidInput(
                f"interface {name} is named twice in one request",
                kind="attachment",
                object_id=req.container_id,
                field="ifname",
            )
        if name in taken:
            record = taken[name]
            raise Conflict(
                f"container {req.container_id} already has an interface {name} "
                f"(attachment {record.id}, state {record.state}); DEL it first",
                kind="attachment",
                object_id=req.container_id,
                field="ifname",
            )
    used = set(taken) | set(named)
    out: list[str] = []
    for selection in req.networks:
        if selection.ifname is not None:
            out.append(selection.ifname)
            continue
        free = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
        used.add(free)
        out.append(free)
    return out


def _default_owner(req: AttachRequest, existing: list[Attachment]) -> int | None:
    """Which selection (index) owns the default routes and DNS: the one
    saying so; else, if no interface of the container owns them yet, the
    first (that does not say False). At most one interface of a container
    owns them."""
    saying = [i for i, s in enumerate(req.networks) if s.default_route]
    if len(saying) > 1:
        raise InvalidInput(
            f"{len(saying)} networks ask for the default route; at most one may",
            kind="attachment",
            object_id=req.container_id,
            field="default_route",
        )
    owner = next((r for r in existing if r.default_route), None)
    if owner is not None:
        if saying:
            raise Conflict(
                f"container {req.container_id} already has its default route on "
                f"{owner.ifname} (attachment {owner.id}); DEL it first",
                kind="attachment",
                object_id=req.container_id,
                field="default_route",
            )
        return None
    if saying:
        return saying[0]
    # Else the first that does not decline it (False: "never this one").
    return next((i for i, s in enumerate(req.networks) if s.default_route is None), None)


def _without_default_routes(vif: Vif) -> Vif:
    """A non-owner's VIF: its on-link and host routes only, no DNS."""
    routes = tuple(r for r in vif.routes if r.destination not in _DEFAULT_DESTINATIONS)
    return vif.model_copy(update={"routes": routes, "dns_nameservers": ()})


def network_status_element(record: Attachment) -> dict[str, Any]:
    """One element of Multus's ``network-status`` annotation."""
    vif = record.vif
    element: dict[str, Any] = {
        "name": record.labels.get("podwire.network", record.network_id),
        "interface": record.ifname,
        "ips": [a.split("/")[0] for a in vif.addresses] if vif else [],
        "mac": vif.mac if vif else "",
        "default": record.default_route,
        "dns": {"nameservers": list(vif.dns_nameservers)} if vif and vif.dns_nameservers else {},
    }
    device_info = _device_info(vif)
    if device_info:
        element["device-info"] = device_info
    return element


def _device_info(vif: Vif | None) -> dict[str, Any] | None:
    """The device-info spec's element, for VIFs that are a device or a socket
    (by their fields: the kinds with a PCI address or a vhost-user socket)."""
    pci_address = getattr(vif, "pci_address", None)
    if pci_address:
        return {"type": "pci", "version": "1.1.0", "pci": {"pci-address": pci_address}}
    socket_dir = getattr(vif, "socket_dir", None)
    if socket_dir:
        mode = getattr(vif, "mode", "server")
        path = f"{socket_dir.rstrip('/')}/{getattr(vif, 'socket_name', '')}"
        return {
            "type": "vhost-user",
            "version": "1.1.0",
            "vhost-user": {"mode": mode, "path": path},
        }
    return None
