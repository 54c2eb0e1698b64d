"""The agent: one per host. Its public methods are what doors call.

Frontends call these with the request types of podwire.agent.types and get
podwire errors back; they never see backends, kinds or drivers. Every
method may be called from any thread; ``submit`` runs one on the agent's
bounded pool for asyncio. One request per container at a time (the gate's
container lock); different containers run concurrently.

Where the work is:
- attach.py: ADD (several networks, one lock, one undo stack);
- steps.py and ports.py: the recorded steps and their undo;
- teardown.py: DEL; reconcile.py: GC and the start-up reconcile;
- status.py: STATUS and the network-status documents; status_files.py:
  those documents on disk, written off the request path;
- caches.py: what is kept in memory between requests (kind plugins,
  networks, the port-status marker).
The core names no kind and no backend: the kind plugins
(podwire.kinds) and the backend's capabilities answer for them.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from podwire.agent import attach as attach_flow
from podwire.agent import reconcile as reconcile_flow
from podwire.agent import status as status_flow
from podwire.agent import teardown
from podwire.agent.caches import Activator, Descriptions, KindSet, NetworkCache
from podwire.agent.gate import Gate, Ticket
from podwire.agent.metrics import Metrics
from podwire.agent.ports import PortPool
from podwire.agent.status_files import StatusFiles
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
)
from podwire.backends.base import Backend
from podwire.config import Config
from podwire.datapath.base import Driver
from podwire.datapath.vif import VifBase
from podwire.errors import Conflict, Drift, InvalidInput, NotFound, PodwireError, Unavailable
from podwire.kinds.base import KindEnv
from podwire.model import Context, Network, Port, Subnet

log = logging.getLogger(__name__)

T = TypeVar("T")


class Agent:
    def __init__(
        self,
        config: Config,
        backend: Backend,
        store: AttachmentStore,
        port_pool: PortPool | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.store = store
        self.port_pool = port_pool
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
        self.kinds = KindSet(KindEnv(config, backend, self.ctx, store.uses_network))
        self.networks = NetworkCache(self)
        self.activator = Activator(self)
        self.status_files = StatusFiles(self)
        self.descriptions = Descriptions(self.kinds.describe)
        self.descriptions.get()  # start describing now, in the background
        # Pools turned off with ports still pooled: opened for the start-up
        # reconcile only, which empties them (no pooled port is left behind).
        self._pools_leftover = False
        if self.port_pool is None and config.pools.enabled:
            from podwire.agent.pools import PortPools

            self.port_pool = PortPools(self)
        elif self.port_pool is None and (config.state_dir / "pools.db").exists():
            from podwire.agent.pools import PortPools

            self.port_pool = PortPools(self)
            self._pools_leftover = True
        self.metrics = Metrics(backend.name)
        self._register_metrics()

    @classmethod
    def from_config(cls, config: Config) -> Agent:
        from podwire.backends.registry import open_backend

        store = AttachmentStore(config.state_dir / "agent.db")
        try:
            backend = open_backend(config)
        except BaseException:
            store.close()
            raise
        return cls(config, backend, store)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.port_pool is not None:
            try:
                self.port_pool.close()
            except Exception:
                log.exception("closing the port pools failed")
        self.activator.close()
        self.status_files.close()
        self.flush_kinds()
        for plugin in self.kinds.loaded():
            try:
                plugin.close()
            except Exception:
                log.exception("closing kind %s failed", plugin.name)
        try:
            self.backend.close()
        finally:
            self.store.close()

    # --- what doors call ------------------------------------------------------------

    def attach(self, req: AttachRequest) -> AttachResult:
        started = time.perf_counter()
        kinds: list[str] = []
        try:
            result = self._guarded(req.container_id, self._attach, req)
            kinds = [i.attachment.vif.kind for i in result.interfaces if i.attachment.vif]
            return result
        finally:
            self.metrics.observe("ADD", kinds, time.perf_counter() - started)

    def detach(self, req: DetachRequest) -> None:
        started = time.perf_counter()
        kinds: list[str] = []
        try:
            kinds = self._guarded(req.container_id, self._detach, req)
        finally:
            self.metrics.observe("DEL", kinds, time.perf_counter() - started)

    def check(self, req: CheckRequest) -> Attachment:
        """Raises Drift naming what differs; returns the record checked."""
        started = time.perf_counter()
        kinds: list[str] = []
        try:
            record = self._guarded(req.container_id, self._check, req)
            kinds = [record.vif.kind] if record.vif else []
            return record
        finally:
            self.metrics.observe("CHECK", kinds, time.perf_counter() - started)

    def gc(self, req: GcRequest) -> list[Attachment]:
        # No container lock or slot here: gc takes them per attachment.
        ticket = self._ticket("gc")
        try:
            return reconcile_flow.gc(self, req)
        finally:
            if ticket is not None:
                ticket.release()

    def status(self) -> AgentStatus:
        return status_flow.status(self)

    def list_attachments(
        self, container_id: str | None = None, frontend: str | None = None
    ) -> list[Attachment]:
        return self.store.list(container_id=container_id, frontend=frontend)

    def inventory(self) -> dict[str, list[dict[str, Any]]]:
        """Each kind's host resources and their holders (kinds with the hook)."""
        out = {}
        for plugin in self.kinds.all():
            if plugin.has_hook("inventory"):
                out[plugin.name] = plugin.inventory()
        return out

    def network_status(self, container_id: str) -> list[dict[str, Any]]:
        """Multus ``network-status`` elements of the container's interfaces."""
        return status_flow.network_status(self, self.store.list(container_id=container_id))

    def suspend(self, container_id: str, ifname: str) -> None:
        """Unplug the data path, keep the port and the record (Docker's
        Leave). Idempotent."""
        self._guarded(container_id, self._suspend, (container_id, ifname))

    def resume(self, container_id: str, ifname: str, netns: str | None = None) -> AttachedInterface:
        """Plug again from the record (Docker's Join after Leave)."""
        return self._guarded(container_id, self._resume, (container_id, ifname, netns))

    def set_frontend_state(
        self, container_id: str, ifname: str, state: dict[str, Any]
    ) -> Attachment:
        return self._guarded(container_id, self._set_frontend_state, (container_id, ifname, state))

    def reconcile(self) -> dict[str, list[str]]:
        """After a crash, before serving: see reconcile.py. Then the port
        pools' sweep (after the attachments' roll-back, which gives their
        pooled ports back) and their refills start."""
        report = reconcile_flow.reconcile(self)
        if self.port_pool is not None:
            try:
                swept = self.port_pool.sweep(startup=True)
                report["pool_ports"] = swept["deleted"] + swept["returned"]
                if self._pools_leftover:
                    # Ports in use are deleted at their DEL (no pool: deleted).
                    report["pool_ports"] += self.port_pool.drain()
            except PodwireError as exc:
                log.warning("reconcile: port pools: %s", exc.message)
            if self._pools_leftover:
                self.port_pool.close()
                self.port_pool = None
            else:
                self.port_pool.start()
        return report

    def network_deleted(self, network: Network) -> bool:
        """A deleted network: each kind drops what this host kept for it (a
        network's bridge holds the gateway addresses). True if anything went."""
        removed = False
        if self.port_pool is not None:
            try:
                self.port_pool.network_deleted(network.id)
            except Exception:
                log.exception("port pools: network %s deleted: drain failed", network.id)
        for plugin in self.kinds.all():
            try:
                removed = plugin.network_deleted(network) or removed
            except Exception:
                log.exception("kind %s: network %s deleted hook failed", plugin.name, network.id)
        return removed

    def network_deleting(self, network: Network) -> None:
        """Before the network is deleted through the agent's API: its port
        pools are drained first, so their ports do not hold it (NetworkInUse)."""
        if self.port_pool is not None:
            self.port_pool.drain(network.id)

    def pools(self) -> list[dict[str, Any]]:
        return self.port_pool.describe() if self.port_pool is not None else []

    def drain_pools(self, network_ref: str | None = None) -> list[str]:
        """Delete the pooled ports (of one network); the ports deleted."""
        if self.port_pool is None:
            return []
        network_id = self.resolve_network(network_ref).id if network_ref else None
        return self.port_pool.drain(network_id)

    def can_attach(self, network_ref: str) -> tuple[bool, str]:
        return status_flow.can_attach(self, network_ref)

    def drivers(self, kind: str) -> Driver:
        """The data-path driver of ``kind`` (its plugin's)."""
        return self.kinds.get(kind).driver()

    def _register_metrics(self) -> None:
        self.metrics.watch_gate(self.gate)
        pool = self.port_pool
        if pool is not None and not self._pools_leftover:
            self.metrics.register_levels(
                "podwire_port_pool_ports",
                "Pre-created ports, by pool, network and state (creating, ready, taken, ...)",
                ("pool", "network", "state"),
                pool.levels,
            )
        self.metrics.register_levels(
            "podwire_attachments",
            "Attachment records, by VIF kind and state",
            ("kind", "state"),
            self.store.count_by_kind,
        )
        self.metrics.register_levels(
            "podwire_background_pending",
            "Work queued off the request path (veth pairs being deleted), by kind",
            ("kind",),
            lambda: {(p.name,): p.background_pending() for p in self.kinds.loaded()},
        )
        self.metrics.register_levels(
            "podwire_kind_resources",
            "Host resources a kind hands out (e.g. VFs), by pool and state (leased, free)",
            ("kind", "pool", "state"),
            lambda: {
                (p.name, pool, state): count
                for p in self.kinds.loaded()
                for (pool, state), count in p.levels().items()
            },
        )

    # --- shared by the flows ----------------------------------------------------------

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

    def subnets(self, network: Network) -> list[Subnet]:
        return self.backend.list_subnets(self.ctx, {"network_id": [network.id]})

    def flush_kinds(self) -> None:
        """Let the kinds' background work finish (a stopped agent leaves no
        pair half-deleted)."""
        for plugin in self.kinds.loaded():
            try:
                plugin.flush()
            except Exception:
                log.exception("flushing kind %s failed", plugin.name)

    def flush_network_status(self, timeout: float = 30.0) -> bool:
        """Wait until every network-status file is as the records are."""
        return self.status_files.flush(timeout)

    # --- admission, per-container order, bounded work -----------------------------------

    def prestart_workers(self) -> None:
        """Start every pool thread now (issue 14, class 7). The pool starts a
        thread on demand, and Thread.start() waits on the event loop for the
        new thread to run: with a burst of requests and busy workers holding
        the GIL, starting 96 of them delayed every answer, "try again later"
        included, by a second."""
        started = threading.Barrier(self.gate.max_admitted + 1)
        for _ in range(self.gate.max_admitted):
            self._pool.submit(started.wait, 30)
        started.wait(30)

    def call(self, fn: Callable[[Any], T], req: Any) -> T:
        """Run ``fn(req)`` (one of the public methods) on the calling thread,
        admitted first: the agent socket's door (podwire/daemon/door.py)
        handles a CNI call on the thread that accepted it."""
        ticket = self.gate.admit(type(req).__name__)
        try:
            return self._admitted_call(fn, req)
        finally:
            ticket.release()

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
            with self.gate.activity():
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

    # --- the flows, under the container's lock ------------------------------------------

    def _attach(self, req: AttachRequest) -> AttachResult:
        return attach_flow.attach(self, req)

    def _detach(self, req: DetachRequest) -> list[str]:
        return teardown.detach(self, req)

    def _check(self, req: CheckRequest) -> Attachment:
        record = self.store.find(req.container_id, req.ifname)
        if (
            record is not None
            and req.network
            and not teardown.same_network(self, record, req.network)
        ):
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

    def _record(self, container_id: str, ifname: str) -> Attachment:
        record = self.store.find(container_id, ifname)
        if record is None:
            raise NotFound(
                f"no attachment of container {container_id} interface {ifname}",
                kind="attachment",
                object_id=container_id,
            )
        return record

    def _suspend(self, args: tuple[str, str]) -> None:
        """The record stays "ready": the door keeps whether it suspended an
        interface in its own state (frontend_state), and a resume re-plugs
        whatever is left. An interface already gone is success."""
        record = self._record(*args)
        if record.vif is None or record.state != "ready":
            raise Conflict(
                f"attachment {record.id} is {record.state}, not ready",
                kind="attachment",
                object_id=record.id,
            )
        self.drivers(record.vif.kind).unplug(record.vif, record.netns, record.ifname)

    def _resume(self, args: tuple[str, str, str | None]) -> AttachedInterface:
        container_id, ifname, netns = args
        record = self._record(container_id, ifname)
        if record.vif is None or record.state != "ready":
            raise Conflict(
                f"attachment {record.id} is {record.state}, not ready",
                kind="attachment",
                object_id=record.id,
            )
        plugin = self.kinds.get(record.vif.kind)
        target = netns if netns is not None else record.netns
        with plugin.hold(record.vif):
            # What is left of the old interface goes first (unplug is idempotent).
            plugin.driver().unplug(record.vif, target, record.ifname)
            interface = plugin.driver().plug(record.vif, target, record.ifname)
        if netns is not None:
            self.store.update(record.id, netns=netns)
        port = self.backend.get_port(self.ctx, record.vif.port_id)
        used = {f.subnet_id for f in port.fixed_ips}
        network = self.backend.get_network(self.ctx, port.network_id)
        return AttachedInterface(
            attachment=record.model_copy(update={"netns": target}),
            interface=interface,
            port=port,
            subnets=[s for s in self.subnets(network) if s.id in used],
        )

    def _set_frontend_state(self, args: tuple[str, str, dict[str, Any]]) -> Attachment:
        container_id, ifname, state = args
        record = self._record(container_id, ifname)
        self.store.update(record.id, frontend_state=state)
        return record.model_copy(update={"frontend_state": dict(state)})


def _check_port_matches(vif: VifBase, port: Port) -> None:
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
