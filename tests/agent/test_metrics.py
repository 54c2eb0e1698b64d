"""Prometheus metrics of a real agent process: scraped on its unix socket
and on its TCP address while real CNI ADDs (the shim, real netns) run, then
checked against what was done."""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from podwire.agent.metrics import Metrics
from tests.fixtures.agent import AgentProcess, netconf, netns_path
from tests.fixtures.common import unique

pytestmark = pytest.mark.root

PREFIX = "pw13"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _scrape_unix(agent: AgentProcess) -> str:
    transport = httpx.HTTPTransport(uds=str(agent.socket))
    with httpx.Client(transport=transport, base_url="http://podwire", timeout=30) as client:
        resp = client.get("/metrics")
        resp.raise_for_status()
        assert resp.headers["content-type"].startswith("text/plain")
        return resp.text


def _scrape_tcp(port: int) -> str:
    resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
    resp.raise_for_status()
    return resp.text


def test_metrics_count_a_run_of_adds(start_agent: Any, make_netns: Any) -> None:
    port = _free_port()
    agent: AgentProcess = start_agent("--metrics-address", f"127.0.0.1:{port}")
    name = unique(PREFIX)
    third = int(name[-4:], 16) % 250
    net = agent.create_network(name, f"198.19.{third}.0/24")
    n = 6
    namespaces = [make_netns(PREFIX) for _ in range(n)]
    cids = [unique(PREFIX, 12) for _ in range(n)]

    # Scrape both endpoints over and over while the ADDs run.
    stop = threading.Event()
    scrapes: list[str] = []

    failures: list[BaseException] = []

    def scrape() -> None:
        try:
            while True:  # at least once, however quick the ADDs
                scrapes.append(_scrape_unix(agent))
                scrapes.append(_scrape_tcp(port))
                if stop.is_set():
                    return
        except BaseException as exc:
            failures.append(exc)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        with ThreadPoolExecutor(3) as pool:
            answers = list(
                pool.map(
                    lambda i: agent.cni(
                        "ADD",
                        netconf(net.name),
                        container_id=cids[i],
                        netns=netns_path(namespaces[i]),
                    ),
                    range(n),
                )
            )
    finally:
        stop.set()
        scraper.join()
    assert [a.code for a in answers] == [0] * n, [a.stdout for a in answers]
    assert not failures, failures
    assert scrapes, "no scrape finished during the ADDs"
    for text in scrapes:
        _samples(text)  # every mid-run scrape parses

    # A CNI error: ADD without CNI_NETNS is code 4 (invalid environment).
    bad = agent.cni("ADD", netconf(net.name), container_id=unique(PREFIX, 12), netns=None)
    assert bad.error_code == 4

    after_add = _samples(_scrape_tcp(port))
    labels = {"verb": "ADD", "kind": "veth_bridge", "backend": "embedded"}
    assert _value(after_add, "podwire_request_seconds_count", **labels) == n
    assert _value(after_add, "podwire_request_seconds_bucket", le="+Inf", **labels) == n
    assert _value(after_add, "podwire_request_seconds_sum", **labels) > 0
    assert _value(after_add, "podwire_results_total", door="cni", verb="ADD", code="0") == n
    assert _value(after_add, "podwire_results_total", door="cni", verb="ADD", code="4") == 1
    assert _value(after_add, "podwire_attachments", kind="veth_bridge", state="ready") == n
    assert _value(after_add, "podwire_gate_refusals_total") == 0
    assert ("podwire_gate_queued", ()) in after_add
    assert ("podwire_background_pending", (("kind", "veth_bridge"),)) in after_add

    for cid, ns in zip(cids, namespaces, strict=True):
        answer = agent.cni("DEL", netconf(net.name), container_id=cid, netns=netns_path(ns))
        assert answer.code == 0, answer.stdout
    after_del = _samples(_scrape_unix(agent))
    assert _value(after_del, "podwire_request_seconds_count", **{**labels, "verb": "DEL"}) == n
    assert _value(after_del, "podwire_results_total", door="cni", verb="DEL", code="0") == n
    assert _value(after_del, "podwire_attachments", kind="veth_bridge", state="ready") == 0
    # The ADD counts are unchanged by the DELs.
    assert _value(after_del, "podwire_request_seconds_count", **labels) == n


def test_registered_levels_are_exported() -> None:
    """The registration point for other parts' levels (port pools, VF leases):
    unit test of the exposition, no agent."""
    metrics = Metrics("embedded")
    levels = {("net-a",): 3.0, ("net-b",): 0.0}
    metrics.register_levels("podwire_pool_ports", "Free ports", ("network",), lambda: levels)

    def broken() -> dict[tuple[str, ...], float]:
        raise RuntimeError("reader down")

    metrics.register_levels("podwire_vf_leases", "VFs leased", ("physnet",), broken)
    metrics.observe("ADD", ["veth_bridge", "macvlan_nested", "veth_bridge"], 0.004)
    metrics.observe("DEL", [], 0.002)
    samples = _samples(metrics.exposition().decode())
    assert _value(samples, "podwire_pool_ports", network="net-a") == 3
    assert _value(samples, "podwire_pool_ports", network="net-b") == 0
    assert not any(name == "podwire_vf_leases" for name, _ in samples)
    add = {"verb": "ADD", "kind": "macvlan_nested+veth_bridge", "backend": "embedded"}
    assert _value(samples, "podwire_request_seconds_count", **add) == 1
    none = {"verb": "DEL", "kind": "none", "backend": "embedded"}
    assert _value(samples, "podwire_request_seconds_count", **none) == 1
