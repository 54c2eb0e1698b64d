"""The network-status documents on disk: ``<state_dir>/network-status/<container
id>.json``, Multus's ``network-status`` list of the container's interfaces,
removed with its last interface.

Kept off the request path: the agent holds every container's document in
memory (an element per ready record, loaded from the store at start), ADD and
DEL change it in place under the container's lock (no query: they have the
record in hand), and one writer thread puts the latest content on disk (a
create and a rename, ~0.3 ms; a burst of changes to one container is written
once), after the answers of the calls running (``Gate.wait_quiet``). The
file lags an ADD or DEL by milliseconds (at most ~50 under continuous load);
``Agent.network_status`` (the API, the CLI) answers from the records at
once. After a crash the start-up reconcile rebuilds the documents from the
records, rewrites every file and removes those of containers with no record.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podwire.agent.gate import QUIET_WAIT_SECONDS
from podwire.agent.status import network_status
from podwire.agent.types import Attachment

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)

NETWORK_STATUS_DIR = "network-status"

Element = dict[str, Any]


def status_path(state_dir: Path, container_id: str) -> Path:
    safe = container_id.replace("/", "_")
    return state_dir / NETWORK_STATUS_DIR / f"{safe}.json"


class StatusFiles:
    """The documents in memory and their writer thread. ``put`` a ready
    record, ``drop`` a deleted one; ``flush`` waits until the files are as
    the documents are."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._folder = agent.config.state_dir / NETWORK_STATUS_DIR
        self._cond = threading.Condition()
        # container id -> ifname -> element, in the order attached
        self._docs: dict[str, dict[str, Element]] = {}
        self._dirty: dict[str, None] = {}  # an insertion-ordered set
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.load(agent.store.list(states=("ready",)))

    # --- the documents ------------------------------------------------------------

    def load(self, records: list[Attachment]) -> None:
        """The documents as ``records`` (all ready records) say."""
        docs: dict[str, dict[str, Element]] = {}
        for record, element in zip(records, self._elements(records), strict=True):
            if element is not None:
                docs.setdefault(record.container_id, {})[record.ifname] = element
        with self._cond:
            self._docs = docs

    def put(self, record: Attachment) -> None:
        (element,) = self._elements([record])
        if element is None:
            return
        with self._cond:
            self._docs.setdefault(record.container_id, {})[record.ifname] = element
            self._mark(record.container_id)

    def drop(self, container_id: str, ifname: str) -> None:
        with self._cond:
            doc = self._docs.get(container_id)
            if doc is None or doc.pop(ifname, None) is None:
                return
            if not doc:
                del self._docs[container_id]
            self._mark(container_id)

    def containers(self) -> set[str]:
        with self._cond:
            return set(self._docs)

    def _elements(self, records: list[Attachment]) -> list[Element | None]:
        """Each record's element (None for one not plugged)."""
        out: list[Element | None] = []
        for record in records:
            built = network_status(self._agent, [record])
            out.append(built[0] if built else None)
        return out

    # --- the files ------------------------------------------------------------------

    def write_all(self) -> list[str]:
        """Mark every container's file and remove the files (and the
        temporary files of earlier processes) of containers with none."""
        with self._cond:
            for container_id in self._docs:
                self._mark(container_id)
            keep = {status_path(self._agent.config.state_dir, c).name for c in self._docs}
        mine = f".{os.getpid()}.tmp"  # the writer's, maybe in flight
        removed = []
        for path in self._folder.glob("*") if self._folder.is_dir() else ():
            stale_doc = path.suffix == ".json" and path.name not in keep
            stale_tmp = path.suffix == ".tmp" and not path.name.endswith(mine)
            if stale_doc or stale_tmp:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def flush(self, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._dirty and not self._busy, timeout)

    def close(self) -> None:
        """Write what is marked, then stop (the store closes next)."""
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(30)

    def _mark(self, container_id: str) -> None:
        """Under ``_cond``."""
        self._dirty[container_id] = None
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._run, name="podwire-network-status", daemon=True
            )
            self._thread.start()
        self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._dirty or self._closed)
                if not self._dirty:
                    return
                closing = self._closed
            if not closing:
                # After the answers of the calls running now: see
                # Gate.wait_quiet (a burst's changes then go out together).
                self._agent.gate.wait_quiet(QUIET_WAIT_SECONDS)
            with self._cond:
                if not self._dirty:
                    continue
                container_id = next(iter(self._dirty))
                del self._dirty[container_id]
                elements = list(self._docs.get(container_id, {}).values())
                self._busy = True
            try:
                self._write(container_id, elements)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, container_id: str, elements: list[Element]) -> None:
        """Atomically (a rename), or the file removed when there is none."""
        path = status_path(self._agent.config.state_dir, container_id)
        try:
            if not elements:
                path.unlink(missing_ok=True)
                return
            self._folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(elements, indent=1))
            tmp.replace(path)
        except OSError as exc:  # the interfaces work either way
            log.warning("network-status of %s not written: %s", container_id, exc)
