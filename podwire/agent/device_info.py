"""Device-info files of the Network Plumbing Working Group's device-info
spec: one JSON file per attachment whose kind has device info (an SR-IOV
VF's PCI address, a vhost-user socket), for the application in the
container (or its device plugin) to find its device.

The content is the kind's ``device_info()`` hook (the same object the
network-status document carries as ``device-info``); the file is
``<agent.device_info_dir>/<network>-<container id>-<ifname>-device-info.json``
(the spec's CNI path, /run/k8s.cni.cncf.io/devinfo/cni by default). Written
after the ADD, removed at DEL. An index in the state dir
(``device-info/<record id>`` holding the file's path) lets the start-up
reconcile remove the files of attachments that are gone, without touching
other plugins' files in the shared directory.

Kinds without the hook cost nothing here (``has_hook``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from podwire.agent.types import Attachment
from podwire.datapath.base import PluggedInterface
from podwire.errors import PodwireError

if TYPE_CHECKING:
    from podwire.agent.core import Agent

log = logging.getLogger(__name__)

INDEX_DIR = "device-info"


def _safe(part: str) -> str:
    return part.replace("/", "-")


def file_path(agent: Agent, record: Attachment) -> Path:
    name = f"{_safe(record.network_ref)}-{_safe(record.container_id)}-{record.ifname}"
    return agent.config.agent.device_info_dir / f"{name}-device-info.json"


def _index(agent: Agent, record_id: str) -> Path:
    return agent.config.state_dir / INDEX_DIR / record_id


def write(agent: Agent, record: Attachment, interface: PluggedInterface | None) -> Path | None:
    """The file of one ready attachment; None when its kind has no device info."""
    if record.vif is None:
        return None
    try:
        plugin = agent.kinds.get(record.vif.kind)
        if not plugin.has_hook("device_info"):
            return None
        info = plugin.device_info(record.vif, interface)
    except PodwireError as exc:
        log.warning("device-info of %s: %s", record.id, exc.message)
        return None
    if not info:
        return None
    path = file_path(agent, record)
    try:
        index = _index(agent, record.id)
        index.parent.mkdir(parents=True, exist_ok=True)
        index.write_text(str(path))  # first: a crash after this leaves no stray file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info, indent=1))
        tmp.replace(path)
    except OSError as exc:  # the interface works either way
        log.warning("device-info file %s not written: %s", path, exc)
        return None
    return path


def ensure(agent: Agent, record: Attachment) -> None:
    """Written if its index is missing (the start-up reconcile)."""
    if not _index(agent, record.id).exists():
        write(agent, record, None)


def remove(agent: Agent, record_id: str) -> None:
    index = _index(agent, record_id)
    try:
        target = Path(index.read_text().strip())
    except OSError:
        return
    target.unlink(missing_ok=True)
    index.unlink(missing_ok=True)


def sweep(agent: Agent, keep: set[str]) -> list[str]:
    """Remove the files of attachments (record ids) not in ``keep``."""
    folder = agent.config.state_dir / INDEX_DIR
    removed = []
    for entry in folder.iterdir() if folder.is_dir() else ():
        if entry.name not in keep:
            remove(agent, entry.name)
            removed.append(entry.name)
    return removed
