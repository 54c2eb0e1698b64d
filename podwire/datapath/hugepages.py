"""Hugepages on this node, from sysfs: what a DPDK application can still get.

A vhost-user application shares its packet memory with OVS-DPDK, and that
memory must be hugepages; when none are free its EAL fails at start, long
after ADD said yes. The agent reports what is free (describe) and refuses
an ADD that asks for more than that (podwire.datapath.vhostuser).
"""

from __future__ import annotations

from pathlib import Path

from podwire.errors import Exhausted

SYSFS_HUGEPAGES = Path("/sys/kernel/mm/hugepages")


def free_mb(root: Path = SYSFS_HUGEPAGES) -> int:
    """Free hugepage memory in MiB, over every page size."""
    total_kb = 0
    try:
        sizes = list(root.iterdir())
    except OSError:
        return 0
    for size_dir in sizes:
        # hugepages-2048kB, hugepages-1048576kB
        name = size_dir.name
        if not (name.startswith("hugepages-") and name.endswith("kB")):
            continue
        try:
            page_kb = int(name[len("hugepages-") : -len("kB")])
            free = int((size_dir / "free_hugepages").read_text())
        except (OSError, ValueError):
            continue
        total_kb += page_kb * free
    return total_kb // 1024


def require_free(needed_mb: int, what: str, object_id: str | None = None) -> None:
    """Exhausted, naming both numbers, when less than ``needed_mb`` is free."""
    if not needed_mb:
        return
    free = free_mb()
    if free < needed_mb:
        raise Exhausted(
            f"{what} needs {needed_mb} MiB of hugepages and this node has {free} MiB free "
            "(/proc/sys/vm/nr_hugepages; vhostuser.hugepages_mb)",
            kind="vif",
            object_id=object_id,
            field="hugepages",
        )
