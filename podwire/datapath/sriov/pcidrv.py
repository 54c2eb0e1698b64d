"""A PCI function's kernel driver, through sysfs: driver_override, unbind,
drivers_probe (how vfio-pci takes a VF for DPDK, and how it goes back)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from podwire.errors import DatapathError


def current_driver(sysfs: Path, pci: str) -> str | None:
    try:
        return os.path.basename(os.readlink(sysfs / "bus/pci/devices" / pci / "driver"))
    except OSError:
        return None


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise DatapathError(f"writing {value!r} to {path}: {exc.strerror or exc}") from exc


def bind(sysfs: Path, pci: str, driver: str | None, timeout: float = 10.0) -> None:
    """Put ``pci`` on ``driver`` (None: the kernel's own choice, i.e. the
    driver_override cleared); no-op when it is there already."""
    dev = sysfs / "bus/pci/devices" / pci
    now = current_driver(sysfs, pci)
    if driver is not None and now == driver:
        return
    # The override first: a probe in between must pick the wanted driver
    # (a lone newline clears it).
    _write(dev / "driver_override", driver or "\n")
    if now is not None:
        _write(dev / "driver" / "unbind", pci)
    _write(sysfs / "bus/pci/drivers_probe", pci)
    deadline = time.monotonic() + timeout
    while driver is not None and current_driver(sysfs, pci) != driver:
        if time.monotonic() > deadline:
            raise DatapathError(
                f"PCI function {pci} did not bind to {driver} "
                f"(now {current_driver(sysfs, pci) or 'none'})"
            )
        time.sleep(0.05)


def rebind(sysfs: Path, pci: str, driver: str) -> None:
    """Unbind and probe again on ``driver``: the kernel driver recreates the
    VF's netdev in the host namespace, wherever the old one was."""
    dev = sysfs / "bus/pci/devices" / pci
    _write(dev / "driver_override", driver)
    if current_driver(sysfs, pci) is not None:
        _write(dev / "driver" / "unbind", pci)
    _write(sysfs / "bus/pci/drivers_probe", pci)
    _write(dev / "driver_override", "\n")
    if current_driver(sysfs, pci) != driver:
        raise DatapathError(f"PCI function {pci} did not come back on {driver}")


def vfio_group_path(sysfs: Path, pci: str) -> str | None:
    try:
        group = os.path.basename(os.readlink(sysfs / "bus/pci/devices" / pci / "iommu_group"))
    except OSError:
        return None
    return f"/dev/vfio/{group}"
