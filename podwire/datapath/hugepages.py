"""Hugepages on this node, from sysfs: what a DPDK application can still get.

A vhost-user application shares its packet memory with OVS-DPDK, and that
memory must be hugepages; when none are free its EAL fails at start, long
after ADD said yes. The agent reports what is free (describe) and refuses
an ADD that asks for more than that (podwire.datapath.vhostuser).
"""

from __future__ import annotations

from pathlib import Path

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
