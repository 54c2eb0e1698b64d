"""What the agent keeps in memory between requests: the kind plugins it
loaded, networks looked up for ADD, the port-status marker, per-step
timings. Nothing here is durable; the attachment store is."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from podwire.agent.gate import QUIET_WAIT_SECONDS
from podwire.kinds import registry
from podwire.kinds.base import KindEnv, KindPlugin
from podwire.model import Network, Port, Subnet

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)
#: per-stage timings of ADD and DEL, at debug level (``extra={"stages": ...}``)
stage_log = logging.getLogger("podwire.agent.stages")


class KindSet:
    """The agent's kind plugins, one instance per kind, made on first use
    (a kind whose module cannot load costs nothing until it is needed)."""

    def __init__(self, env: KindEnv) -> None:
        self._env = env
        self._lock = threading.Lock()
        self._plugins: dict[str, KindPlugin] = {}

    def get(self, kind: str) -> KindPlugin:
        with self._lock:
            plugin = self._plugins.get(kind)
        if plugin is not None:
            return plugin
        cls = registry.plugin_class(kind)
        with self._lock:
            plugin = self._plugins.get(kind)
            if plugin is None:
                plugin = self._plugins[kind] = cls(self._env)
        return plugin

    def loaded(self) -> list[KindPlugin]:
        with self._lock:
            return list(self._plugins.values())

    def all(self) -> list[KindPlugin]:
        """Every registered kind this host can load."""
        out = []
        for name in registry.names():
            try:
                out.append(self.get(name))
            except Exception as exc:
                log.debug("kind %s cannot load: %s", name, exc)
        return out

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name in registry.names():
            try:
                out.append(self.get(name).describe().model_dump())
            except Exception as exc:
                out.append({"name": name, "kinds": [name], "available": False, "reason": str(exc)})
        return out


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


class Activator:
    """Marks plugged ports ACTIVE (Neutron's flow: DOWN when created, ACTIVE
    once its host plugged it), off the ADD's path: the backend write costs
    ~0.5 ms and the container does not need it. One worker; the marks queued
    while it writes go together in the next backend call (one transaction
    on the embedded backend however many ADDs finished meanwhile), written
    once the calls running have answered (``Gate.wait_quiet``). A DEL
    (or undo) of the port first settles its pending mark (``settle``): a
    mark not started yet is dropped (the port is going, a mark would be
    wasted work), one being written is waited for; so a mark never lands
    after the port was deleted or given back. OVN derives the status from
    ovn-controller's binding itself (``derives_port_status``): nothing to
    do there."""

    # Marks written in one backend call at most (bounds the statement).
    BATCH = 64

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._lock = threading.Lock()
        self._pending: dict[str, threading.Event] = {}
        self._writing: set[str] = set()  # the ports whose marks are being written
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    def submit(self, port: Port) -> None:
        if port.status == "ACTIVE" or self._agent.backend.derives_port_status:
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

    def settle(self, port_id: str, timeout: float = 30.0) -> None:
        """Before the port is deleted or given back: drop its mark if not
        started, else wait for it."""
        with self._lock:
            if port_id not in self._writing:
                done = self._pending.pop(port_id, None)
                if done is not None:
                    done.set()
                return
            done = self._pending.get(port_id)
        if done is not None:
            done.wait(timeout)

    def _next_batch(self) -> list[str] | None:
        """The queued marks still pending (blocks for the first); None: closing."""
        first = self._queue.get()
        if first is None:
            return None
        # After the answers of the calls running now (Gate.wait_quiet): the
        # write would take the interpreter from them; what queues meanwhile
        # goes in this batch, and a DEL meanwhile drops its port's mark.
        self._agent.gate.wait_quiet(QUIET_WAIT_SECONDS)
        ids = [first]
        closing = False
        while len(ids) < self.BATCH:
            try:
                port_id = self._queue.get_nowait()
            except queue.Empty:
                break
            if port_id is None:
                closing = True
                break
            ids.append(port_id)
        if closing:
            self._queue.put(None)  # after this batch
        with self._lock:
            batch = list(dict.fromkeys(p for p in ids if p in self._pending))
            self._writing.update(batch)
        return batch

    def _run(self) -> None:
        agent = self._agent
        while (batch := self._next_batch()) is not None:
            if not batch:
                continue  # every one settled (dropped) before its turn
            try:
                agent.backend.set_ports_status(agent.ctx, batch, "ACTIVE")
            except Exception as exc:  # the interfaces work either way
                log.warning("ports %s plugged but not marked ACTIVE: %s", batch, exc)
            finally:
                with self._lock:
                    self._writing.difference_update(batch)
                    done = [self._pending.pop(p, None) for p in batch]
                for event in done:
                    if event is not None:
                        event.set()

    def close(self) -> None:
        """Finish the pending marks (the backend closes next)."""
        with self._lock:
            worker = self._worker
        if worker is not None:
            self._queue.put(None)
            worker.join(30)


class NetworkCache:
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
        subnets = self._agent.subnets(network)
        self._put(ref, now, network, subnets)
        return network, subnets

    def refresh_subnets(self, ref: str, network: Network) -> list[Subnet]:
        subnets = self._agent.subnets(network)
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


class Descriptions:
    """Kind descriptions, refreshed in the background: describing a kind
    may probe slow things (an absent OVS database takes seconds to give up),
    and a status call must not wait for that."""

    TTL = 60.0

    def __init__(self, describe: Callable[[], list[dict[str, Any]]]) -> None:
        self._describe = describe
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
            value = self._describe()
        except Exception as exc:
            value = [{"name": "?", "available": False, "reason": str(exc)}]
        with self._lock:
            self._value, self._stamp, self._refreshing = value, time.monotonic(), False
