"""The VF inventory: which PFs serve which physical network, and their VFs,
read from sysfs.

A physical network is served by PFs chosen by selectors (config section
``sriov``): a PF's netdev name (``eth1``), its PCI address
(``0000:21:00.0``) or its vendor:device id (``8086:10c9``), each optionally
limited to a VF range (``eth1#2-7``, ``0000:21:00.0#0,3-4``).

Everything here is pure reading of a sysfs tree whose root is configurable,
so the selection, ranges and NUMA choice are tested on a synthetic tree; the
emulated igb guest proves it on the real one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from podwire.errors import InvalidInput

_PCI = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_ID = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


@dataclass(frozen=True)
class Selector:
    """One PF selector: ``what`` is "pci", "id" or "name"; ``vfs`` the VF
    indexes it allows (None: all)."""

    what: str
    value: str
    vfs: frozenset[int] | None = None

    @classmethod
    def parse(cls, text: str) -> Selector:
        spec, _, ranges = text.strip().partition("#")
        spec = spec.strip()
        vfs = parse_ranges(ranges, text) if ranges else None
        low = spec.lower()
        if _PCI.match(low):
            return cls("pci", low, vfs)
        if _ID.match(low):
            return cls("id", low, vfs)
        if _NAME.match(spec):
            return cls("name", spec, vfs)
        raise InvalidInput(
            f"SR-IOV selector {text!r} is neither a PCI address (0000:21:00.0), "
            "a vendor:device id (8086:10c9) nor an interface name",
            kind="config",
            field="sriov.physical_networks",
        )

    def matches(self, pf: Pf) -> bool:
        if self.what == "pci":
            return pf.pci == self.value
        if self.what == "id":
            return f"{pf.vendor}:{pf.device}" == self.value
        return pf.ifname == self.value


def parse_ranges(text: str, whole: str = "") -> frozenset[int]:
    """``2-7``, ``0,3-4`` -> the VF indexes."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None:
            raise InvalidInput(
                f"VF range {part!r} in {whole or text!r} is not N or N-M",
                kind="config",
                field="sriov.physical_networks",
            )
        low, high = int(m.group(1)), int(m.group(2) or m.group(1))
        if high < low:
            raise InvalidInput(
                f"VF range {part!r} in {whole or text!r} runs backwards",
                kind="config",
                field="sriov.physical_networks",
            )
        out.update(range(low, high + 1))
    return frozenset(out)


@dataclass(frozen=True)
class Vf:
    pci: str
    index: int  # the VF number on its PF (virtfnN)
    pf_pci: str
    pf_ifname: str | None
    numa_node: int | None
    driver: str | None  # igbvf, vfio-pci, None (unbound)
    netdev: str | None  # its netdev in this namespace, if any
    iommu_group: str | None


@dataclass(frozen=True)
class Pf:
    pci: str
    ifname: str | None
    vendor: str
    device: str
    driver: str | None
    numa_node: int | None
    totalvfs: int
    numvfs: int
    vfs: tuple[Vf, ...] = ()


@dataclass(frozen=True)
class PoolVf:
    """A VF of a physical network's pool."""

    physical_network: str
    vf: Vf


class Sysfs:
    """Reads PFs and VFs under a sysfs root (``/sys`` on a real host)."""

    def __init__(self, root: Path | str = "/sys") -> None:
        self.root = Path(root)

    @property
    def pci_devices(self) -> Path:
        return self.root / "bus" / "pci" / "devices"

    def _read(self, path: Path) -> str | None:
        try:
            return path.read_text().strip()
        except OSError:
            return None

    def _link_name(self, path: Path) -> str | None:
        try:
            return os.path.basename(os.readlink(path))
        except OSError:
            return None

    def _numa(self, dev: Path) -> int | None:
        value = self._read(dev / "numa_node")
        if value is None or not value.lstrip("-").isdigit() or int(value) < 0:
            return None
        return int(value)

    def _netdev(self, dev: Path) -> str | None:
        try:
            names = sorted(os.listdir(dev / "net"))
        except OSError:
            return None
        return names[0] if names else None

    def pf_addresses(self) -> list[str]:
        """Every PCI device with SR-IOV capability (sriov_totalvfs > 0)."""
        out = []
        try:
            entries = sorted(os.listdir(self.pci_devices))
        except OSError:
            return []
        for name in entries:
            total = self._read(self.pci_devices / name / "sriov_totalvfs")
            if total and total.isdigit() and int(total) > 0:
                out.append(name)
        return out

    def numvfs(self, pf_pci: str) -> int:
        value = self._read(self.pci_devices / pf_pci / "sriov_numvfs")
        return int(value) if value and value.isdigit() else 0

    def pf(self, pci: str) -> Pf:
        dev = self.pci_devices / pci
        ifname = self._netdev(dev)
        numa = self._numa(dev)
        vfs = []
        try:
            links = [n for n in os.listdir(dev) if n.startswith("virtfn")]
        except OSError:
            links = []
        for link in sorted(links, key=lambda n: int(n[len("virtfn") :])):
            vf_pci = self._link_name(dev / link)
            if vf_pci is None:
                continue
            vdev = self.pci_devices / vf_pci
            vfs.append(
                Vf(
                    pci=vf_pci,
                    index=int(link[len("virtfn") :]),
                    pf_pci=pci,
                    pf_ifname=ifname,
                    numa_node=self._numa(vdev) if self._numa(vdev) is not None else numa,
                    driver=self._link_name(vdev / "driver"),
                    netdev=self._netdev(vdev),
                    iommu_group=self._link_name(vdev / "iommu_group"),
                )
            )
        return Pf(
            pci=pci,
            ifname=ifname,
            vendor=(self._read(dev / "vendor") or "").removeprefix("0x"),
            device=(self._read(dev / "device") or "").removeprefix("0x"),
            driver=self._link_name(dev / "driver"),
            numa_node=numa,
            totalvfs=int(self._read(dev / "sriov_totalvfs") or 0),
            numvfs=int(self._read(dev / "sriov_numvfs") or 0),
            vfs=tuple(vfs),
        )

    def vf(self, pci: str) -> Vf | None:
        """One VF, read afresh (its driver and netdev change as it is used)."""
        dev = self.pci_devices / pci
        pf_pci = self._link_name(dev / "physfn")
        if pf_pci is None:
            return None
        for vf in self.pf(pf_pci).vfs:
            if vf.pci == pci:
                return vf
        return None


def pools(
    sysfs: Sysfs, physical_networks: Mapping[str, Sequence[str]]
) -> dict[str, list[tuple[Pf, frozenset[int] | None]]]:
    """Each physical network's PFs with the VF indexes it may use. A PF is
    in at most one physical network per VF: the first selector wins."""
    pfs = [sysfs.pf(pci) for pci in sysfs.pf_addresses()]
    out: dict[str, list[tuple[Pf, frozenset[int] | None]]] = {}
    for physnet, texts in physical_networks.items():
        chosen = out.setdefault(physnet, [])
        for text in texts:
            sel = Selector.parse(text)
            for pf in pfs:
                if sel.matches(pf):
                    chosen.append((pf, sel.vfs))
    return out


def pool_vfs(sysfs: Sysfs, physical_networks: Mapping[str, Sequence[str]]) -> list[PoolVf]:
    """Every VF of every configured physical network (each VF once)."""
    seen: set[str] = set()
    out = []
    for physnet, pfs in pools(sysfs, physical_networks).items():
        for pf, allowed in pfs:
            for vf in pf.vfs:
                if vf.pci in seen or (allowed is not None and vf.index not in allowed):
                    continue
                seen.add(vf.pci)
                out.append(PoolVf(physnet, vf))
    return out


def choose(candidates: Iterable[PoolVf], numa_node: int | None) -> PoolVf | None:
    """The VF to lease: on the NUMA node asked for when one is free there,
    else any; lowest PF address and VF index first (stable, predictable)."""
    ordered = sorted(candidates, key=lambda c: (c.vf.pf_pci, c.vf.index))
    if numa_node is not None:
        for cand in ordered:
            if cand.vf.numa_node == numa_node:
                return cand
    return ordered[0] if ordered else None
