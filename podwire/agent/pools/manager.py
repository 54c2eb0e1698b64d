"""Pools of pre-created ports: the agent's ``PortPool`` (docs/pools.md).

A pool is keyed by (network, project, security groups, host, binding): its
ports are made as an ADD would make them, bound to this host, so a pool hit
hands out a port without a create. ``take`` runs on the ADD path; on a
backend that derives port status from the data plane it asks the backend
nothing (the store keeps each port as the backend last answered it), on
others it reads the port once (still there, still free); everything else
runs on
the pools' own threads: the refill round (every ``refill_interval`` seconds,
or at once when a take leaves a pool short) and the periodic sweep. Creates
go to a small executor, at most ``max_creating`` at once over all pools,
and never past a pool's ``max`` (ready + being created).

Every state change is written to the pools' store (store.py) before the
backend call it guards; ``sweep`` finishes or undoes each entry from it and
deletes any port marked as this host's pool (marks.py) that the store does
not hold: found by the mark, never guessed from status.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from podwire import faults
from podwire.agent import ports as agent_ports
from podwire.agent import steps
from podwire.agent.ownership import tag_value
from podwire.agent.pools import marks
from podwire.agent.pools.store import Entry, PoolSpec, PoolStore
from podwire.agent.types import NetworkSelection
from podwire.config import PoolSizes
from podwire.errors import NotFound, PodwireError, PreconditionFailed
from podwire.model import Network, Port, PortBinding, PortCreate, PortUpdate, new_id

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)

NO_BINDING = "-"  # the pool's ports bind to no host (a kind inside a VM)
# A periodic sweep settles a ``creating`` or ``taken`` entry only after this
# long: a create answers within the backend's timeout, and an ADD records
# the port it took within its own run.
GRACE_SECONDS = 120.0


class PortPools:
    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.config = agent.config.pools
        self.host = agent.config.host_id
        self.store = PoolStore(agent.config.state_dir / "pools.db")
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._in_flight: dict[str, str] = {}  # entry id -> pool id, creates running
        self._creates = ThreadPoolExecutor(
            max_workers=self.config.max_creating, thread_name_prefix="podwire-pool-create"
        )
        self._thread: threading.Thread | None = None
        self._overrides: dict[str, PoolSizes] = {}  # network id -> sizes
        self._unresolved: set[str] = set()  # configured networks not found yet

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """After the start-up sweep: register the configured networks' pools
        and refill in the background."""
        if self._thread is not None:
            return
        self._resolve_config()
        self._thread = threading.Thread(target=self._run, name="podwire-pools", daemon=True)
        self._thread.start()
        self._wake.set()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._creates.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    # --- the PortPool hook (ADD and DEL) ---------------------------------------------

    def take(
        self, network: Network, selection: NetworkSelection, device_id: str = ""
    ) -> Port | None:
        """A ready port of this network's pool, now taken; None on a miss (the
        pool is registered and refilled; the ADD creates its own port).
        ``device_id`` (the container) is written on backends that are asked
        anyway (below): a pooled port without one goes with its network when
        the network is deleted (backends/rules.is_pooled_port), a taken one
        must hold the network."""
        if not self.config.enabled:
            return None  # opened only to empty what pools left (Agent.reconcile)
        spec = self._register(network)
        while True:
            entry = self.store.take_ready(spec.id, self.config.generation)
            if entry is None:
                self._wake.set()
                return None
            faults.hit("step.pool.take:after")
            assert entry.port_id is not None
            if entry.port_json is not None and self.agent.backend.derives_port_status:
                # The port as the backend answered its create or its reset:
                # a hit asks the backend nothing. Such a backend brings a
                # port up only from the data plane, so one deleted behind
                # the pool's back fails the ADD (its binding never comes),
                # whose undo drops the entry. Elsewhere (no such check; a
                # local database, a cheap call) the port is claimed in it.
                port: Port | None = Port.model_validate_json(entry.port_json)
            else:
                try:
                    port = self._claim(entry, network, device_id)
                except NotFound:
                    self.store.remove(entry.id)  # gone behind our back: nothing to undo
                    continue
            if port is None or port.network_id != network.id:
                log.warning("pool %s: port %s is no longer free; dropped", spec.id, entry.port_id)
                self.store.remove(entry.id)
                continue
            if self._count(spec.id, "ready") < self._sizes(spec).min:
                self._wake.set()
            return port

    def _claim(self, entry: Entry, network: Network, device_id: str) -> Port | None:
        """Write ``device_id`` on the entry's port, only if it is still as the
        pool left it (its revision; else read and checked again): one call,
        atomic against a network delete (which takes the port with the
        network if it comes first, NotFound here). None: no longer free."""
        assert entry.port_id is not None
        backend, ctx = self.agent.backend, self.agent.ctx
        revision = None
        if entry.port_json is not None:
            revision = Port.model_validate_json(entry.port_json).revision_number
        for _ in range(2):
            if revision is None:
                port = backend.get_port(ctx, entry.port_id)
                if port.network_id != network.id or port.device_id:
                    return None
                revision = port.revision_number
            if not device_id:
                return backend.get_port(ctx, entry.port_id)
            try:
                return backend.update_port(
                    ctx, entry.port_id, PortUpdate(device_id=device_id), if_revision=revision
                )
            except PreconditionFailed:
                revision = None  # changed since the pool last saw it: read it again
        return None

    def give_back(self, port_id: str) -> None:
        """DEL (or an ADD's undo): reset the port and make it ready again;
        delete it instead when the reset fails, the pool is full, drained or
        of an older generation. Idempotent."""
        entry = self.store.by_port(port_id)
        if entry is None:
            # Not (or no longer) pooled: the attachment's port, deleted as a created one.
            steps.delete_port(self.agent, port_id)
            return
        if entry.state == "ready":
            return
        spec = self._spec(entry.pool_id)
        keep = (
            entry.state == "taken"
            and spec is not None
            and entry.generation == self.config.generation
            and self._count(entry.pool_id, "ready") < self._sizes(spec).max
        )
        if not keep:
            self._delete(entry)
            return
        assert spec is not None
        try:
            reset = self._reset(spec, entry, port_id)
        except NotFound:
            self.store.remove(entry.id)
            return
        except PodwireError as exc:
            log.warning("pool %s: reset of port %s failed (%s); deleting it", spec.id, port_id, exc)
            self._delete(entry)
            return
        if not self.store.move(
            entry.id, "ready", only_from=("taken",), port_json=reset.model_dump_json()
        ):
            current = self.store.get(entry.id)
            if current is not None:  # drained while it was reset
                self._delete(current)

    # --- what operators call -----------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        specs = {s.id: s for s in self.store.pools()}
        by_pool: dict[str, list[Entry]] = {}
        for entry in self.store.entries():
            by_pool.setdefault(entry.pool_id, []).append(entry)
        out = []
        for pool_id in sorted(set(specs) | set(by_pool)):
            spec = specs.get(pool_id)
            entries = by_pool.get(pool_id, [])
            sizes = self._sizes(spec) if spec else None
            out.append(
                {
                    "pool": pool_id,
                    "active": spec is not None,
                    "network_id": spec.network_id if spec else None,
                    "project_id": spec.project_id if spec else None,
                    "security_groups": list(spec.security_groups) if spec else [],
                    "vif_type": spec.vif_type if spec else None,
                    "min": sizes.min if sizes else 0,
                    "max": sizes.max if sizes else 0,
                    "batch": sizes.batch if sizes else 0,
                    "generation": self.config.generation,
                    "levels": {
                        state: sum(1 for e in entries if e.state == state)
                        for state in ("creating", "ready", "taken", "draining", "deleting")
                    },
                    "ports": [
                        {"port_id": e.port_id, "state": e.state, "generation": e.generation}
                        for e in entries
                    ],
                }
            )
        return out

    def drain(self, network_id: str | None = None) -> list[str]:
        """Empty the pools (of one network): no more refills; ready ports are
        deleted now, taken ones when given back. A drained pool comes back
        at the next ADD on its network that misses. The ports deleted."""
        specs = [s for s in self.store.pools() if network_id in (None, s.network_id)]
        for spec in specs:
            self.store.drop_pool(spec.id)
        filters: dict[str, list[str]] = {"tags": marks.host_pool_tags(self.host)}
        if network_id is not None:
            filters["network_id"] = [network_id]
        marked = self.agent.backend.list_ports(self.agent.ctx, filters)
        # Also the pools dropped before (their entries wait for their DEL).
        pool_ids = {s.id for s in specs} | {tag_value(p.tags, "pool") or "" for p in marked}
        if network_id is None:
            pool_ids |= {e.pool_id for e in self.store.entries()}
        self._wait_creates(pool_ids)
        deleted = []
        for entry in self.store.entries():
            if entry.pool_id not in pool_ids:
                continue
            if entry.state in ("ready", "deleting", "creating"):
                if self._delete(entry):
                    deleted.append(entry.port_id)
            elif entry.state == "taken":
                self.store.move(entry.id, "draining", only_from=("taken",))
        held = {e.port_id for e in self.store.entries(states=("taken", "draining"))}
        for port in marked:  # made, never recorded (a refill that died)
            if port.id not in held and port.id not in deleted:
                steps.delete_port(self.agent, port.id)
                deleted.append(port.id)
        return [d for d in deleted if d]

    def network_deleted(self, network_id: str) -> None:
        """The network is gone (or going): its pools with it."""
        self.drain(network_id)

    def levels(self) -> dict[tuple[str, ...], float]:
        specs = {s.id: s.network_id for s in self.store.pools()}
        return {
            (pool_id, specs.get(pool_id, ""), state): float(n)
            for (pool_id, state), n in self.store.counts().items()
        }

    # --- the sweep ---------------------------------------------------------------------

    def sweep(self, startup: bool = False) -> dict[str, list[str]]:
        """Finish or undo every entry from its record, then delete this host's
        pool-marked ports the store does not hold. At start-up (before
        serving) nothing is in flight; later, creates running and takes not
        yet recorded by their ADD are left alone."""
        backend, ctx = self.agent.backend, self.agent.ctx
        marked = backend.list_ports(ctx, {"tags": marks.host_pool_tags(self.host)})
        by_id = {p.id: p for p in marked}
        by_entry = {tag_value(p.tags, "entry"): p for p in marked}
        specs = {s.id for s in self.store.pools()}
        holders = self._attachment_ports()
        kinds = ("finished", "dropped", "deleted", "returned")
        report: dict[str, list[str]] = {k: [] for k in kinds}
        now = time.time()
        with self._lock:
            in_flight = set(self._in_flight)
        for entry in self.store.entries():
            settled = startup or now - entry.changed_at > GRACE_SECONDS
            young = entry.state in ("creating", "taken", "draining") and not settled
            if entry.id in in_flight or young:
                continue
            if entry.state == "creating":
                port = by_entry.get(entry.id)
                if port is None:  # never made: nothing to undo
                    self.store.remove(entry.id)
                    report["dropped"].append(entry.id)
                elif entry.pool_id in specs and entry.generation == self.config.generation:
                    self.store.move(
                        entry.id,
                        "ready",
                        port_id=port.id,
                        groups=port.security_groups,
                        port_json=port.model_dump_json(),
                    )
                    report["finished"].append(port.id)
                else:
                    self.store.move(entry.id, "deleting", port_id=port.id)
                    self._delete(self.store.get(entry.id))
                    report["deleted"].append(port.id)
            elif entry.state == "deleting":
                self._delete(entry)
                report["deleted"].append(entry.port_id or entry.id)
            elif entry.state == "ready":
                if entry.port_id not in by_id:
                    self.store.remove(entry.id)  # deleted behind our back
                    report["dropped"].append(entry.id)
                elif entry.generation != self.config.generation or entry.pool_id not in specs:
                    self._delete(entry)
                    report["deleted"].append(entry.port_id or entry.id)
            elif entry.port_id not in holders:
                # Taken (or draining) and no attachment names it: an ADD died
                # between the take and recording it.
                assert entry.port_id is not None
                self.give_back(entry.port_id)
                report["returned"].append(entry.port_id)
        held = {
            e.port_id
            for e in self.store.entries(states=("ready", "taken", "draining"))
            if e.port_id is not None
        }
        for port in marked:
            if port.id in held or tag_value(port.tags, "entry") in in_flight:
                continue
            creating = self.store.get(tag_value(port.tags, "entry") or "")
            if creating is not None and creating.state == "creating":
                continue  # its create is still answering
            if port.device_id:
                # Attached: by someone else, or by a take (embedded, remote)
                # whose record went with a lost state directory; in use
                # either way, so left.
                log.warning("pools: port %s has device %s; left", port.id, port.device_id)
                continue
            steps.delete_port(self.agent, port.id)
            report["deleted"].append(port.id)
        report["deleted"] += self._sweep_untagged(startup)
        if any(report.values()):
            log.info("pools: sweep %s", report)
        return report

    def _sweep_untagged(self, startup: bool) -> list[str]:
        """A Neutron without tags on create takes them in a second call: a
        refill killed between the two leaves a port with the pool's
        device_owner, bound to this host, and no tags. Deleted by that mark
        (later than GRACE_SECONDS after its create, outside the start-up
        sweep: a refill may be between its two calls)."""
        deleted = []
        filters = {"device_owner": [marks.DEVICE_OWNER]}
        now = time.time()
        for port in self.agent.backend.list_ports(self.agent.ctx, filters):
            if port.tags or port.binding.host_id != self.host:
                continue
            created = port.created_at.timestamp() if port.created_at else 0.0
            if not startup and now - created <= GRACE_SECONDS:
                continue
            steps.delete_port(self.agent, port.id)
            deleted.append(port.id)
        return deleted

    # --- background ------------------------------------------------------------------

    def _run(self) -> None:
        next_sweep = time.monotonic() + self.config.sweep_interval
        while not self._closed.is_set():
            self._wake.wait(self.config.refill_interval)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                if self._unresolved:
                    self._resolve_networks()
                self._refill()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.config.sweep_interval
                    self._resolve_config()
                    self._check_networks()
                    self.sweep()
            except Exception:
                log.exception("pools: background round failed")

    def _refill(self) -> None:
        for spec in self.store.pools():
            sizes = self._sizes(spec)
            with self._lock:
                running = sum(1 for p in self._in_flight.values() if p == spec.id)
                have = self._count(spec.id, "ready") + running
                if have >= sizes.min:
                    continue
                want = min(sizes.batch, sizes.max - have)
                for _ in range(want):
                    if len(self._in_flight) >= self.config.max_creating:
                        return  # the global cap: the next round goes on
                    entry_id = new_id()
                    # Written before the create: a port made and not recorded is found by it.
                    self.store.add(entry_id, spec.id, self.config.generation)
                    self._in_flight[entry_id] = spec.id
                    self._creates.submit(self._create, spec, entry_id)

    def _create(self, spec: PoolSpec, entry_id: str) -> None:
        try:
            faults.hit("step.pool.create:before")
            request = self._port_request(spec, entry_id)
            port = self.agent.backend.create_port(self.agent.ctx, request)
            faults.hit("step.pool.create:after")
        except NotFound as exc:
            self._done(entry_id)
            self.store.remove(entry_id)  # nothing made: no such network (any more)
            if exc.kind == "network":
                log.info("pools: network %s is gone; draining its pool", spec.network_id)
                self.drain(spec.network_id)
            return
        except Exception as exc:
            # It may exist all the same (a timeout): the next sweep decides by its mark.
            log.warning("pool %s: create failed: %s", spec.id, exc)
            self._done(entry_id)
            return
        moved = self.store.move(
            entry_id,
            "ready",
            only_from=("creating",),
            port_id=port.id,
            groups=port.security_groups,
            port_json=port.model_dump_json(),
        )
        self._done(entry_id)
        if not moved or self._spec(spec.id) is None:  # drained meanwhile
            self.store.move(entry_id, "deleting", port_id=port.id)
            entry = self.store.get(entry_id)
            if entry is not None:
                self._delete(entry)

    def _done(self, entry_id: str) -> None:
        with self._lock:
            self._in_flight.pop(entry_id, None)

    def _wait_creates(self, pool_ids: set[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not any(p in pool_ids for p in self._in_flight.values()):
                    return
            time.sleep(0.02)

    def _check_networks(self) -> None:
        """A pool whose network is gone is drained (its ports went with it,
        or are deleted now)."""
        for spec in self.store.pools():
            try:
                self.agent.backend.get_network(self.agent.ctx, spec.network_id)
            except NotFound:
                log.info("pools: network %s is gone; draining its pool", spec.network_id)
                self.drain(spec.network_id)

    # --- helpers ---------------------------------------------------------------------

    def _register(self, network: Network) -> PoolSpec:
        bind = agent_ports.binding(self.agent, network, "normal")
        if not bind.host_id:
            vif_type = NO_BINDING
        elif self.agent.backend.bound_vif_type is not None:
            vif_type = ""
        else:
            vif_type = bind.vif_type
        key = "|".join((self.host, network.id, network.project_id, "", vif_type))
        spec = PoolSpec(
            id=hashlib.sha256(key.encode()).hexdigest()[:12],
            network_id=network.id,
            project_id=network.project_id,
            security_groups=(),
            vif_type=vif_type,
        )
        if self._spec(spec.id) is None:
            self.store.put_pool(spec)
            self._wake.set()
        return spec

    def _spec(self, pool_id: str) -> PoolSpec | None:
        return next((s for s in self.store.pools() if s.id == pool_id), None)

    def _sizes(self, spec: PoolSpec) -> PoolSizes:
        return self._overrides.get(spec.network_id, self.config)

    def _count(self, pool_id: str, state: str) -> int:
        return self.store.counts().get((pool_id, state), 0)

    def _resolve_config(self) -> None:
        """The configured networks' pools and overrides, by network id. A
        network not there yet is looked up again at every refill round."""
        for ref, sizes in self.config.overrides.items():
            try:
                self._overrides[self.agent.resolve_network(ref).id] = sizes
            except PodwireError as exc:
                log.warning("pools: override for network %s: %s", ref, exc.message)
        self._unresolved = set(self.config.networks)
        self._resolve_networks()

    def _resolve_networks(self) -> None:
        for ref in sorted(self._unresolved):
            try:
                network = self.agent.resolve_network(ref)
            except NotFound:
                continue
            except PodwireError as exc:
                log.warning("pools: network %s: %s", ref, exc.message)
                continue
            self._unresolved.discard(ref)
            if ref in self.config.overrides:
                self._overrides[network.id] = self.config.overrides[ref]
            self._register(network)

    def _port_request(self, spec: PoolSpec, entry_id: str) -> PortCreate:
        if spec.vif_type == NO_BINDING:
            binding = PortBinding()
        elif spec.vif_type:
            binding = PortBinding(host_id=self.host, vif_type=spec.vif_type)
        else:
            binding = PortBinding(host_id=self.host)
        return PortCreate(
            network_id=spec.network_id,
            project_id=spec.project_id,
            name=marks.port_name(spec.id),
            device_owner=marks.DEVICE_OWNER,
            security_groups=list(spec.security_groups) or None,
            binding=binding,
            tags=marks.port_tags(self.host, spec.id, self.config.generation, entry_id),
        )

    def _reset(self, spec: PoolSpec, entry: Entry, port_id: str) -> Port:
        """Back to what the pool made: name, device, no extra address pairs,
        the pool's security groups; not ACTIVE (nothing plugs it)."""
        self.agent.activator.settle(port_id)
        faults.hit("step.pool.reset:before")
        port = self.agent.backend.get_port(self.agent.ctx, port_id)
        groups = list(spec.security_groups) or list(entry.groups or port.security_groups)
        update: dict[str, Any] = {}
        if port.name != marks.port_name(spec.id):
            update["name"] = marks.port_name(spec.id)
        if port.device_id:
            update["device_id"] = ""
        if port.device_owner != marks.DEVICE_OWNER:
            update["device_owner"] = marks.DEVICE_OWNER
        if port.allowed_address_pairs:
            update["allowed_address_pairs"] = []
        if sorted(port.security_groups) != sorted(groups):
            update["security_groups"] = groups
        if not self.agent.backend.derives_port_status and port.status != "DOWN":
            update["status"] = "DOWN"
        if update:
            port = self.agent.backend.update_port(self.agent.ctx, port_id, PortUpdate(**update))
        return port

    def _delete(self, entry: Entry | None) -> bool:
        """``deleting`` written, then the delete; the entry goes once the port
        is gone. A ``creating`` entry with no port is dropped (its port, if
        the backend made one, is found by its mark by the next sweep)."""
        if entry is None:
            return False
        if entry.port_id is None:
            self.store.remove(entry.id)
            return False
        # Only from the state it was read in: a take (or a give-back) may
        # have moved it since, and a port in use is never deleted here.
        if entry.state != "deleting" and not self.store.move(
            entry.id, "deleting", only_from=(entry.state,)
        ):
            return False
        faults.hit("step.pool.delete:before")
        steps.delete_port(self.agent, entry.port_id)
        self.store.remove(entry.id)
        return True

    def _attachment_ports(self) -> set[str]:
        """Port ids the attachment records hold (their ``port.pool`` steps)."""
        held = set()
        for record in self.agent.store.list():
            if record.port_id:
                held.add(record.port_id)
            for step in record.steps:
                port_id = step.data.get("port_id")
                if port_id:
                    held.add(str(port_id))
        return held
