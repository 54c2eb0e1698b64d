"""Fault injection: make a chosen step fail, or kill the process there.

Shipped code, used only by tests, off unless the environment variable
``PODWIRE_FAULTS`` holds a plan: a JSON list of faults such as

    [{"point": "backend.create_port", "action": "fail", "nth": 1},
     {"point": "step.plug:after", "action": "crash"}]

Code that can fail calls ``hit(point)`` at the places worth breaking. Each
call counts one hit of that point; a fault fires on exactly its ``nth`` hit
(default 1): "fail" raises ``InjectedFault``, "crash" sends SIGKILL to this
process (a kill -9, no clean-up of any kind runs). A test then checks that
the agent's undo (or its start-up reconcile) leaves nothing behind.

Point names (a fault naming anything else is refused, so a typo cannot
make a test pass by never firing):
- ``backend.<method>`` and ``backend.<method>:after``: before and after each
  Backend call (podwire.backends.faulty wraps the opened backend);
- ``step.<step name>:before`` and ``step.<step name>:after``: the agent's
  recorded steps;
- ``kind.<kind>.<hook>``: the test-only kind's hooks.

The plan is read once, at the first ``active()`` or ``hit()``; a malformed
plan raises ``FaultPlanError`` there, never silently injects nothing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from podwire.errors import InvalidInput, PodwireError

ENV_VAR = "PODWIRE_FAULTS"
ACTIONS = ("fail", "crash")
Action = Literal["fail", "crash"]

# backend.<method>[:after] | step.<name>:before|:after | kind.<kind>.<hook>
_POINT = re.compile(
    r"backend\.[a-z_][a-z0-9_]*(:after)?"
    r"|step\.[A-Za-z0-9_.-]+:(before|after)"
    r"|kind\.[a-z0-9_]+\.[a-z0-9_]+"
)
_FIELDS = {"point", "action", "nth"}


class InjectedFault(PodwireError):
    """A fault the plan asked for: nothing is wrong but the test's wish."""

    neutron_type = "InjectedFault"

    def __init__(self, point: str, nth: int) -> None:
        super().__init__(
            f"injected fault at {point} (hit {nth}, from {ENV_VAR})",
            kind="fault",
            object_id=point,
        )
        self.point = point


class FaultPlanError(InvalidInput):
    """``PODWIRE_FAULTS`` is not a valid plan."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{ENV_VAR}: {message}", kind="config", field=ENV_VAR)


@dataclass(frozen=True)
class Fault:
    point: str
    action: Action
    nth: int = 1


class FaultPlan:
    """Faults plus the hit count of every point; safe to hit from any thread."""

    def __init__(self, faults: Iterable[Fault]) -> None:
        self.faults = tuple(faults)
        self._by_point: dict[str, dict[int, Fault]] = {}
        for fault in self.faults:
            same = self._by_point.setdefault(fault.point, {})
            if fault.nth in same:
                raise FaultPlanError(f"two faults for hit {fault.nth} of {fault.point}")
            same[fault.nth] = fault
        self._hits: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def points(self) -> frozenset[str]:
        return frozenset(self._by_point)

    def due(self, point: str) -> Fault | None:
        """Count one hit of ``point``; the fault planned for this hit, if any."""
        with self._lock:
            count = self._hits.get(point, 0) + 1
            self._hits[point] = count
        return self._by_point.get(point, {}).get(count)

    def hits(self, point: str) -> int:
        with self._lock:
            return self._hits.get(point, 0)


def parse_plan(text: str) -> FaultPlan:
    """The plan in ``text`` (the JSON described above); FaultPlanError names
    the element and field at fault."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise FaultPlanError(f"not JSON ({exc})") from None
    if not isinstance(raw, list):
        raise FaultPlanError(f"expected a JSON list of faults, got {type(raw).__name__}")
    return FaultPlan(_parse_fault(i, item) for i, item in enumerate(raw))


def _parse_fault(index: int, item: object) -> Fault:
    where = f"fault {index}"
    if not isinstance(item, dict):
        raise FaultPlanError(f"{where}: expected an object, got {type(item).__name__}")
    unknown = set(item) - _FIELDS
    if unknown:
        raise FaultPlanError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    point = item.get("point")
    if not isinstance(point, str) or not _POINT.fullmatch(point):
        raise FaultPlanError(
            f"{where}: point {point!r} is not backend.<method>[:after], "
            "step.<name>:before|:after or kind.<kind>.<hook>"
        )
    action = item.get("action")
    if action not in ACTIONS:
        raise FaultPlanError(f"{where}: action {action!r} is not one of {', '.join(ACTIONS)}")
    nth = item.get("nth", 1)
    # bool is an int in Python; true is no hit number.
    if not isinstance(nth, int) or isinstance(nth, bool) or nth < 1:
        raise FaultPlanError(f"{where}: nth {nth!r} is not a whole number >= 1")
    return Fault(point=point, action=action, nth=nth)


# --- the process's plan, read from the environment once ------------------------

_plan: FaultPlan | None = None
_loaded = False
_load_lock = threading.Lock()


def _current() -> FaultPlan | None:
    global _plan, _loaded
    if _loaded:
        return _plan
    with _load_lock:
        if not _loaded:
            _plan = load(os.environ.get(ENV_VAR))
            _loaded = True
    return _plan


def load(text: str | None) -> FaultPlan | None:
    """The plan for ``text`` (None or blank: no plan). A plan with no fault
    is no plan: nothing to inject, so nothing gets wrapped."""
    if text is None or not text.strip():
        return None
    plan = parse_plan(text)
    return plan if plan.faults else None


def install(plan: FaultPlan | None) -> None:
    """Replace this process's plan (tests that inject in-process); None turns
    injection off until the next ``reset()``."""
    global _plan, _loaded
    with _load_lock:
        _plan, _loaded = plan, True


def reset() -> None:
    """Forget the plan; the next use reads ``PODWIRE_FAULTS`` again."""
    global _plan, _loaded
    with _load_lock:
        _plan, _loaded = None, False


def active() -> bool:
    """Whether a plan is in force (raises FaultPlanError for a malformed one)."""
    return _current() is not None


def planned_points() -> frozenset[str]:
    plan = _current()
    return plan.points if plan is not None else frozenset()


def hit(point: str) -> None:
    """Count a hit of ``point`` and do what the plan says for it: nothing,
    raise InjectedFault ("fail"), or SIGKILL this process ("crash")."""
    plan = _current()
    if plan is None:
        return
    fault = plan.due(point)
    if fault is None:
        return
    if fault.action == "crash":
        _crash(fault)
    raise InjectedFault(point, fault.nth)


def _crash(fault: Fault) -> None:
    # One line for the log, so a test's failure output says why the process died.
    try:
        sys.stderr.write(f"podwire: injected crash at {fault.point} (hit {fault.nth})\n")
        sys.stderr.flush()
    finally:
        os.kill(os.getpid(), signal.SIGKILL)
