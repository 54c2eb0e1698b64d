"""The agent's Prometheus metrics (prometheus_client), one registry per agent.

What is counted where:
- ``podwire_request_seconds{verb, kind, backend}``: ADD, DEL and CHECK as
  the agent ran them (from admission to answer), observed by the agent's
  public methods; ``kind`` is the data path of the attachment(s) concerned
  ("none" when the request failed before a kind was decided, or a DEL found
  no record), ``backend`` the backend's name;
- ``podwire_results_total{door, verb, code}``: what a door answered, by its
  protocol's code (CNI: 0 for success, else the CNI error code), counted by
  the daemon where it serves the door;
- ``podwire_attachments{kind, state}``, ``podwire_gate_*`` (admitted,
  running, queued, limits, refusals) and
  ``podwire_background_pending{kind}``: levels read at scrape time from the
  attachment store, the admission gate and the kinds;
- levels other parts register (``register_levels``): port pools, VF leases.

The core names no kind and no backend: those are label values only.
A scrape runs the level readers on the scraping thread (the daemon scrapes
off its event loop).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# ms-range work (a veth ADD is 2-20 ms) up to a backend's seconds (OVN binds).
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

# Label values -> level; a reader returns the current levels at each scrape.
Levels = Mapping[tuple[str, ...], float]
LevelReader = Callable[[], Levels]


@dataclass(frozen=True)
class _LevelFamily:
    name: str
    documentation: str
    labels: tuple[str, ...]
    read: LevelReader


class Metrics:
    """Everything the agent exports. ``exposition()`` is the text format."""

    NO_KIND = "none"

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "podwire_request_seconds",
            "Agent ADD, DEL and CHECK latency, from admission to answer",
            ["verb", "kind", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.results = Counter(
            "podwire_results",
            "Answers of the doors, by protocol code (CNI: 0 success, else its error code)",
            ["door", "verb", "code"],
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._levels: dict[str, _LevelFamily] = {}
        self.registry.register(_LevelsCollector(self))

    # --- observations ------------------------------------------------------------

    def observe(self, verb: str, kinds: Sequence[str], seconds: float) -> None:
        """One request's latency; a request spanning several kinds (several
        networks) is one observation, labelled with its kinds joined by '+'."""
        kind = "+".join(sorted(set(kinds))) or self.NO_KIND
        self.latency.labels(verb, kind, self.backend).observe(seconds)

    def result(self, door: str, verb: str, code: int) -> None:
        self.results.labels(door, verb, str(code)).inc()

    # --- levels read at scrape time ------------------------------------------------

    def register_levels(
        self, name: str, documentation: str, labels: Sequence[str], read: LevelReader
    ) -> None:
        """Export a gauge family ``name`` whose values ``read()`` returns at
        each scrape, keyed by label values in the order of ``labels`` (e.g.
        port pools: ``("network",)`` -> free ports). Registering a name again
        replaces its reader. A reader that fails is logged and skipped."""
        with self._lock:
            self._levels[name] = _LevelFamily(name, documentation, tuple(labels), read)

    def watch_gate(self, gate: GateLevels) -> None:
        """Export the admission gate: admitted, running, queued, its limits,
        and the requests it refused."""
        self.registry.register(_GateCollector(gate))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class GateLevels(Protocol):
    max_in_flight: int
    max_admitted: int

    @property
    def admitted(self) -> int: ...
    @property
    def running(self) -> int: ...
    @property
    def refused(self) -> int: ...


class _GateCollector(Collector):
    def __init__(self, gate: GateLevels) -> None:
        self._gate = gate

    def collect(self) -> Iterator[Metric]:
        gate = self._gate
        admitted, running = gate.admitted, gate.running
        yield GaugeMetricFamily(
            "podwire_gate_admitted", "Requests admitted (running or queued)", value=admitted
        )
        yield GaugeMetricFamily("podwire_gate_running", "Requests doing work", value=running)
        yield GaugeMetricFamily(
            "podwire_gate_queued",
            "Admitted requests waiting for a slot or their container's lock",
            value=max(admitted - running, 0),
        )
        yield GaugeMetricFamily(
            "podwire_gate_max_in_flight",
            "Requests allowed to work at once",
            value=gate.max_in_flight,
        )
        yield GaugeMetricFamily(
            "podwire_gate_max_admitted", "Requests admitted at most", value=gate.max_admitted
        )
        yield CounterMetricFamily(
            "podwire_gate_refusals",
            "Requests the admission gate refused (busy: try again later)",
            value=gate.refused,
        )


class _LevelsCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        with self._metrics._lock:
            families = list(self._metrics._levels.values())
        for family in families:
            try:
                levels = family.read()
            except Exception:
                log.exception("metrics: reading %s failed", family.name)
                continue
            gauge = GaugeMetricFamily(family.name, family.documentation, labels=family.labels)
            for values, level in sorted(levels.items()):
                gauge.add_metric(list(values), float(level))
            yield gauge
