"""Probe links of a killed agent: a real agent is killed (kill -9, from a
fault point) while a driver's describe() holds its throwaway probe link in
the host namespace; the probe is there after the kill, and the restarted
agent's start-up sweep removes it, but never the probe of a live process
(here this test process's own, named as a live agent's would be)."""

from __future__ import annotations

import json
import os
import shutil

import httpx
import pytest

from podwire.datapath import probes
from podwire.datapath.netlink import rtnl
from tests.fixtures.agent import AgentProcess, short_tempdir
from tests.fixtures.common import require_root

pytestmark = pytest.mark.root


def _probe_links(pid: int) -> list[str]:
    with rtnl() as host:
        return sorted(link.name for link in host.links() if probes.owner_pid(link.name) == pid)


def _remove(names: list[str]) -> None:
    with rtnl() as host:
        for name in names:
            host.delete_link(name)


@pytest.mark.parametrize(
    "point,prefix", [("kind.veth_bridge.probe", "pwp"), ("kind.nested.probe", "pwq")]
)
def test_probe_of_an_agent_killed_mid_probe_is_swept_at_restart(point: str, prefix: str) -> None:
    require_root()
    base = short_tempdir("pwl")
    agent = AgentProcess(state_dir=base / "state", socket=base / "run" / "agent.sock")
    agent.state_dir.mkdir(parents=True)
    # A live process's probe in progress, as another agent on this host has
    # while its describe() runs: the sweep must leave it alone.
    live = probes.probe_name(prefix)
    with rtnl() as host:
        host.add_bridge(live, mtu=1500)
    dead_pid = 0
    try:
        # The agent describes its drivers as it starts: the probe's fault
        # point kills it (SIGKILL, nothing cleans up) with the link made.
        agent.env["PODWIRE_FAULTS"] = json.dumps([{"point": point, "action": "crash"}])
        # (During start-up, or in the background describe() that follows.)
        with pytest.raises((RuntimeError, httpx.HTTPError)):
            agent.start()
            agent.get("/v1/status")
            assert agent.proc is not None
            agent.proc.wait(timeout=30)
            agent.get("/v1/status")  # dead by now: this raises
        assert agent.proc is not None
        dead_pid = agent.proc.pid
        assert agent.proc.wait(timeout=30) == -9, agent.log()
        assert f"injected crash at {point}" in agent.log()
        left = _probe_links(dead_pid)
        assert left and all(name.startswith(prefix) for name in left), left

        agent.env.pop("PODWIRE_FAULTS")
        agent.start()  # the start-up reconcile runs before the first answer

        assert _probe_links(dead_pid) == []
        assert _probe_links(os.getpid()) == [live]
    finally:
        agent.stop()
        _remove([live, *_probe_links(dead_pid)] if dead_pid else [live])
        shutil.rmtree(base, ignore_errors=True)


def test_probe_names_carry_their_process() -> None:
    names = {probes.probe_name("pwq") for _ in range(3)}
    assert len(names) == 3
    for name in names:
        assert len(name + "s") <= 15  # IFNAMSIZ, with a sub-link's suffix
        assert probes.owner_pid(name) == probes.owner_pid(name + "p") == os.getpid()
    # Not probes: other podwire links, and names of another shape.
    # A test's name from a prefix and random hex (pwp is also a helper's
    # test prefix) is never a probe.
    for other in ("pwbr1234abcd", "pwv0123456789", "pwp0123abcd", "pwp-0123ab", "pwq00ab12cd"):
        assert probes.owner_pid(other) is None
    with pytest.raises(ValueError):
        probes.probe_name("pwz")
