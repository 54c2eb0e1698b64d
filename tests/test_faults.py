"""podwire.faults: the plan's grammar, hit counting, and what fail and crash do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from podwire import faults
from podwire.errors import InvalidInput, PodwireError
from podwire.faults import Fault, FaultPlanError, InjectedFault, parse_plan


@pytest.fixture(autouse=True)
def _no_plan_left_behind() -> Iterator[None]:
    faults.reset()
    yield
    faults.reset()


def test_plan_parses_with_nth_defaulting_to_one() -> None:
    plan = parse_plan(
        json.dumps(
            [
                {"point": "backend.create_port", "action": "fail"},
                {"point": "backend.delete_port:after", "action": "crash", "nth": 3},
                {"point": "step.plug:before", "action": "fail", "nth": 2},
                {"point": "step.port.create:after", "action": "fail"},
                {"point": "kind.faulty.allocate", "action": "crash"},
            ]
        )
    )
    assert plan.faults == (
        Fault("backend.create_port", "fail", 1),
        Fault("backend.delete_port:after", "crash", 3),
        Fault("step.plug:before", "fail", 2),
        Fault("step.port.create:after", "fail", 1),
        Fault("kind.faulty.allocate", "crash", 1),
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not JSON"),
        ('{"point": "backend.create_port", "action": "fail"}', "expected a JSON list"),
        ('["backend.create_port"]', "fault 0: expected an object"),
        ('[{"point": "backend.get_port", "action": "fail", "when": 1}]', "unknown field(s) when"),
        ('[{"action": "fail"}]', "point None"),
        ('[{"point": "bakend.create_port", "action": "fail"}]', "point 'bakend.create_port'"),
        ('[{"point": "step.plug", "action": "fail"}]', "point 'step.plug'"),
        ('[{"point": "backend.create_port:before", "action": "fail"}]', "point"),
        ('[{"point": "backend.create_port", "action": "explode"}]', "action 'explode'"),
        ('[{"point": "backend.create_port"}]', "action None"),
        ('[{"point": "backend.create_port", "action": "fail", "nth": 0}]', "nth 0"),
        ('[{"point": "backend.create_port", "action": "fail", "nth": true}]', "nth True"),
        ('[{"point": "backend.create_port", "action": "fail", "nth": "2"}]', "nth '2'"),
        (
            '[{"point": "backend.get_port", "action": "fail"},'
            ' {"point": "backend.get_port", "action": "crash", "nth": 1}]',
            "two faults for hit 1 of backend.get_port",
        ),
    ],
)
def test_malformed_plan_is_a_clear_error(text: str, says: str) -> None:
    with pytest.raises(FaultPlanError) as err:
        parse_plan(text)
    assert says in str(err.value)
    assert str(err.value).startswith("PODWIRE_FAULTS: ")
    # A configuration error in podwire's own terms.
    assert isinstance(err.value, InvalidInput) and err.value.field == "PODWIRE_FAULTS"


def test_malformed_plan_in_the_environment_fails_at_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PODWIRE_FAULTS", '[{"point": "backend.create_port", "action": "fial"}]')
    with pytest.raises(FaultPlanError, match="action 'fial'"):
        faults.active()
    with pytest.raises(FaultPlanError):
        faults.hit("backend.create_port")


@pytest.mark.parametrize("value", [None, "", "  ", "[]"])
def test_no_plan_means_off(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("PODWIRE_FAULTS", raising=False)
    else:
        monkeypatch.setenv("PODWIRE_FAULTS", value)
    assert faults.active() is False
    for _ in range(3):
        faults.hit("backend.create_port")  # nothing happens


def test_fault_fires_on_its_nth_hit_only_and_points_count_apart() -> None:
    plan = parse_plan('[{"point": "step.plug:after", "action": "fail", "nth": 3}]')
    faults.install(plan)
    assert faults.active()
    faults.hit("step.plug:after")
    faults.hit("step.plug:after")
    faults.hit("step.plug:before")  # another point: its own count
    with pytest.raises(InjectedFault) as err:
        faults.hit("step.plug:after")
    assert isinstance(err.value, PodwireError)
    assert err.value.point == "step.plug:after" and err.value.object_id == "step.plug:after"
    assert "injected fault at step.plug:after (hit 3" in str(err.value)
    faults.hit("step.plug:after")  # fourth: passes again
    assert plan.hits("step.plug:after") == 4
    assert plan.hits("step.plug:before") == 1
    assert plan.hits("backend.get_port") == 0


def test_several_faults_on_one_point() -> None:
    faults.install(
        parse_plan(
            '[{"point": "backend.get_port", "action": "fail", "nth": 1},'
            ' {"point": "backend.get_port", "action": "fail", "nth": 3}]'
        )
    )
    outcomes = []
    for _ in range(4):
        try:
            faults.hit("backend.get_port")
            outcomes.append("pass")
        except InjectedFault:
            outcomes.append("fail")
    assert outcomes == ["fail", "pass", "fail", "pass"]


def test_hit_counts_are_exact_under_threads() -> None:
    threads, per_thread = 8, 2000
    nth = threads * per_thread // 2
    plan = parse_plan(json.dumps([{"point": "backend.list_ports", "action": "fail", "nth": nth}]))
    faults.install(plan)
    fired: list[InjectedFault] = []
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            try:
                faults.hit("backend.list_ports")
            except InjectedFault as exc:
                fired.append(exc)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert plan.hits("backend.list_ports") == threads * per_thread
    assert len(fired) == 1


def _run_with_plan(plan: str, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PODWIRE_FAULTS": plan}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


def test_crash_kills_the_process_with_sigkill_on_the_nth_hit() -> None:
    proc = _run_with_plan(
        '[{"point": "step.plug:before", "action": "crash", "nth": 2}]',
        "from podwire import faults\n"
        "faults.hit('step.plug:before')\n"
        "print('first hit passed', flush=True)\n"
        "faults.hit('step.plug:before')\n"
        "print('not reached', flush=True)\n",
    )
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout == "first hit passed\n"
    assert "injected crash at step.plug:before (hit 2)" in proc.stderr


def test_fail_from_the_environment_raises_in_a_fresh_process() -> None:
    proc = _run_with_plan(
        '[{"point": "kind.faulty.allocate", "action": "fail"}]',
        "from podwire import faults\n"
        "try:\n"
        "    faults.hit('kind.faulty.allocate')\n"
        "except faults.InjectedFault as exc:\n"
        "    print(exc)\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("injected fault at kind.faulty.allocate (hit 1")
