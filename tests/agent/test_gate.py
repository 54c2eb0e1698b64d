"""The gate's rules, with real threads: bounded admission, one request per
container at a time, at most max_in_flight doing work."""

from __future__ import annotations

import threading
import time

import pytest

from podwire.agent.gate import Gate
from podwire.errors import Busy


def test_admission_is_bounded_and_refuses_at_once() -> None:
    gate = Gate(max_in_flight=1, max_queued=1)
    first, second = gate.admit(), gate.admit()
    started = time.monotonic()
    with pytest.raises(Busy, match="try again later"):
        gate.admit()
    assert time.monotonic() - started < 0.5  # refused, not queued
    first.release()
    first.release()  # idempotent
    third = gate.admit()
    second.release()
    third.release()
    assert gate.admitted == 0


def test_same_container_serialized_different_containers_concurrent() -> None:
    gate = Gate(max_in_flight=4, max_queued=4)
    active: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}
    overlap = threading.Event()
    lock = threading.Lock()

    def work(cid: str) -> None:
        with gate.container(cid), gate.slot():
            with lock:
                active[cid] += 1
                peak[cid] = max(peak[cid], active[cid])
                if active["a"] and active["b"]:
                    overlap.set()
            time.sleep(0.05)
            with lock:
                active[cid] -= 1

    threads = [threading.Thread(target=work, args=(c,)) for c in "abab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == {"a": 1, "b": 1}
    assert overlap.is_set()


def test_slots_bound_running_work() -> None:
    gate = Gate(max_in_flight=2, max_queued=10)
    peak = 0
    lock = threading.Lock()

    def work(i: int) -> None:
        nonlocal peak
        with gate.container(f"c{i}"), gate.slot():
            with lock:
                peak = max(peak, gate.running)
            time.sleep(0.02)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2


def test_wait_quiet_returns_when_the_last_activity_ends() -> None:
    gate = Gate(max_in_flight=2, max_queued=2)
    assert gate.wait_quiet(0.0)  # nothing active: quiet at once
    outer_done, inner_done = threading.Event(), threading.Event()

    def call(done: threading.Event) -> None:
        with gate.activity():
            done.wait(5)

    threads = [threading.Thread(target=call, args=(e,)) for e in (outer_done, inner_done)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while gate._active < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not gate.wait_quiet(0.05)  # two active: the bound passes
    woke = threading.Event()

    def waiter() -> None:
        if gate.wait_quiet(5):
            woke.set()

    w = threading.Thread(target=waiter)
    w.start()
    outer_done.set()
    assert not woke.wait(0.1)  # one call still active
    inner_done.set()
    assert woke.wait(5)  # the last one ended: the waiter wakes at once
    for t in [*threads, w]:
        t.join(5)
    assert gate.wait_quiet(0.0)


def test_activity_ends_on_an_error() -> None:
    gate = Gate(max_in_flight=1, max_queued=1)
    with pytest.raises(RuntimeError), gate.activity():
        raise RuntimeError("the call failed")
    assert gate.wait_quiet(0.0)
