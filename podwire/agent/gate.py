"""Admission and ordering of agent work.

Three rules, in this order:
1. bounded: at most ``max_in_flight + max_queued`` requests are admitted at
   once; the next one is refused at once with Busy ("try again later") rather
   than queued without end;
2. one container at a time: requests for the same container id run one after
   the other (CNI forbids parallel calls for one container; Docker may still
   send them);
3. at most ``max_in_flight`` requests do work at once; the other admitted
   ones wait for a slot.

And one signal for the agent's background writers (the ACTIVE marks, the
network-status files): ``activity`` spans a call from its admission to its
answer, and ``wait_quiet`` lets a writer wait until none is running. A
writer started while a request runs takes Python's interpreter lock from it
(measured: ~0.5 ms of a sequential ADD went to the ACTIVE mark written
beside its answer); waiting for a quiet moment moves that work between
requests, and under load (never quiet) it runs anyway after a bounded wait,
with more queued work in one batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from podwire.errors import Busy

#: How long a background writer waits for a quiet moment before it writes
#: anyway (``Gate.wait_quiet``): what an ACTIVE mark or a network-status
#: file may lag under continuous load.
QUIET_WAIT_SECONDS = 0.05


class Ticket:
    """One admitted request; ``release`` exactly once (idempotent)."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._gate._leave()


@dataclass
class _ContainerLock:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class Gate:
    def __init__(self, max_in_flight: int, max_queued: int) -> None:
        self.max_in_flight = max_in_flight
        self.max_admitted = max_in_flight + max_queued
        self._lock = threading.Lock()
        self._quiet = threading.Condition(self._lock)
        self._active = 0  # calls between admission and answer (``activity``)
        self._admitted = 0
        self._running = 0
        self._refused = 0
        self._slots = threading.BoundedSemaphore(max_in_flight)
        # container id -> [lock, users]; entries go away with their last user
        # so the map does not grow with every container ever seen.
        self._containers: dict[str, _ContainerLock] = {}

    @property
    def admitted(self) -> int:
        return self._admitted

    @property
    def running(self) -> int:
        return self._running

    @property
    def refused(self) -> int:
        """Requests refused since start (for metrics)."""
        return self._refused

    def admit(self, what: str = "request") -> Ticket:
        with self._lock:
            if self._admitted >= self.max_admitted:
                self._refused += 1
                raise Busy(
                    f"agent busy: {self._admitted} requests in flight or queued "
                    f"(limit {self.max_admitted}); try again later",
                    kind="agent",
                    object_id=what,
                )
            self._admitted += 1
        return Ticket(self)

    def _leave(self) -> None:
        with self._lock:
            self._admitted -= 1

    @contextmanager
    def activity(self) -> Iterator[None]:
        """A call from its admission to its answer (nested calls count once
        each); see ``wait_quiet``."""
        with self._lock:
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._quiet.notify_all()

    def wait_quiet(self, timeout: float) -> bool:
        """Block until no call is active, or ``timeout`` seconds passed;
        True when it was quiet."""
        with self._lock:
            return self._quiet.wait_for(lambda: self._active == 0, timeout)

    @contextmanager
    def container(self, container_id: str) -> Iterator[None]:
        with self._lock:
            entry = self._containers.setdefault(container_id, _ContainerLock())
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._lock:
                entry.users -= 1
                if entry.users == 0:
                    del self._containers[container_id]

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._slots:
            with self._lock:
                self._running += 1
            try:
                yield
            finally:
                with self._lock:
                    self._running -= 1
