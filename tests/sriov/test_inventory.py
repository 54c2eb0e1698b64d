"""Pure logic of the VF inventory and the lease authority on a synthetic
sysfs tree: selectors, VF ranges, pools per physical network, the NUMA
choice, rescans when numvfs changes, leases never given twice. The real
drivers are proven in the igb guest (test_sriov_guest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from podwire.config import load_config
from podwire.datapath.sriov.inventory import (
    PoolVf,
    Selector,
    Sysfs,
    Vf,
    choose,
    parse_ranges,
    pool_vfs,
)
from podwire.datapath.sriov.leases import LeaseStore, lease_levels
from podwire.errors import InvalidInput


def make_pf(root: Path, pci: str, ifname: str, numa: int, numvfs: int, bus: str) -> None:
    devices = root / "bus/pci/devices"
    pf = devices / pci
    (pf / "net" / ifname).mkdir(parents=True)
    (pf / "sriov_totalvfs").write_text("7\n")
    (pf / "sriov_numvfs").write_text(f"{numvfs}\n")
    (pf / "vendor").write_text("0x8086\n")
    (pf / "device").write_text("0x10c9\n")
    (pf / "numa_node").write_text(f"{numa}\n")
    os.symlink("../../../bus/pci/drivers/igb", pf / "driver")
    for i in range(numvfs):
        vf_pci = f"0000:{bus}:10.{i}"
        vf = devices / vf_pci
        (vf / "net" / f"{ifname}v{i}").mkdir(parents=True)
        (vf / "numa_node").write_text(f"{numa}\n")
        os.symlink(f"../{pci}", vf / "physfn")
        os.symlink("../../../bus/pci/drivers/igbvf", vf / "driver")
        os.symlink(f"../../../kernel/iommu_groups/{int(bus, 16) + i}", vf / "iommu_group")
        os.symlink(f"../{vf_pci}", pf / f"virtfn{i}")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    make_pf(tmp_path, "0000:21:00.0", "pf0", 0, 4, "21")
    make_pf(tmp_path, "0000:41:00.0", "pf1", 1, 4, "41")
    # A device without SR-IOV is never a PF.
    (tmp_path / "bus/pci/devices/0000:00:1f.0").mkdir(parents=True)
    return tmp_path


def test_selectors_and_ranges() -> None:
    assert Selector.parse("0000:21:00.0") == Selector("pci", "0000:21:00.0")
    assert Selector.parse("8086:10C9#1,3-4") == Selector("id", "8086:10c9", frozenset({1, 3, 4}))
    assert Selector.parse("eth1#2-7").vfs == frozenset(range(2, 8))
    assert parse_ranges("0") == frozenset({0})
    for bad in ("eth1#7-2", "eth1#x", "eth1#1,,2", "a b"):
        with pytest.raises(InvalidInput):
            Selector.parse(bad)
    with pytest.raises(InvalidInput, match=r"sriov\.physical_networks"):
        load_config(None, **{"sriov.physical_networks": {"p": ["eth1#x"]}})


def test_scan_reads_pfs_and_vfs(tree: Path) -> None:
    sysfs = Sysfs(tree)
    assert sysfs.pf_addresses() == ["0000:21:00.0", "0000:41:00.0"]
    pf = sysfs.pf("0000:41:00.0")
    assert (pf.ifname, pf.vendor, pf.device, pf.driver, pf.numa_node) == (
        "pf1",
        "8086",
        "10c9",
        "igb",
        1,
    )
    assert (pf.totalvfs, pf.numvfs) == (7, 4)
    vf = pf.vfs[2]
    assert vf == Vf(
        pci="0000:41:10.2",
        index=2,
        pf_pci="0000:41:00.0",
        pf_ifname="pf1",
        numa_node=1,
        driver="igbvf",
        netdev="pf1v2",
        iommu_group="67",
    )
    assert sysfs.vf("0000:41:10.2") == vf
    assert sysfs.vf("0000:00:1f.0") is None


def test_pools_by_name_address_id_and_range(tree: Path) -> None:
    sysfs = Sysfs(tree)
    pools = pool_vfs(sysfs, {"a": ["pf0#1-2"], "b": ["0000:41:00.0#3"], "c": ["8086:10c9"]})
    by_net: dict[str, list[str]] = {}
    for cand in pools:
        by_net.setdefault(cand.physical_network, []).append(cand.vf.pci)
    assert by_net["a"] == ["0000:21:10.1", "0000:21:10.2"]
    assert by_net["b"] == ["0000:41:10.3"]
    # The id selects both PFs, but a VF is in one pool only (first wins).
    assert len(by_net["c"]) == 8 - 3
    assert not set(by_net["c"]) & set(by_net["a"] + by_net["b"])


def test_numa_choice() -> None:
    def cand(pf: str, index: int, numa: int | None) -> PoolVf:
        vf = Vf(f"{pf}-{index}", index, pf, None, numa, "igbvf", None, None)
        return PoolVf("p", vf)

    pool = [cand("0000:41:00.0", 0, 1), cand("0000:21:00.0", 1, 0), cand("0000:21:00.0", 0, 0)]
    assert choose(pool, None).vf.pci == "0000:21:00.0-0"  # type: ignore[union-attr]
    assert choose(pool, 1).vf.pci == "0000:41:00.0-0"  # type: ignore[union-attr]
    # Nothing free on the node asked for: any free VF, still reported honestly.
    assert choose(pool[1:], 1).vf.numa_node == 0  # type: ignore[union-attr]
    assert choose([], 0) is None


def test_leases_one_holder_and_rescan(tree: Path, tmp_path: Path) -> None:
    from podwire.datapath.sriov.authority import VfAuthority

    store = LeaseStore(tmp_path / "state" / "sriov.db")
    auth = VfAuthority(tree, {"p": ["pf1#0-1"]}, store)
    first, vf = auth.lease(
        attachment_id="a1", container_id="c1", ifname="net1", physical_network="p", numa_node=1
    )
    assert vf.numa_node == 1 and first.attachment_id == "a1"
    # The same attachment again gets the same VF (a retried step).
    assert (
        auth.lease(
            attachment_id="a1", container_id="c1", ifname="net1", physical_network="p", numa_node=1
        )[0].pci
        == first.pci
    )
    second, _ = auth.lease(
        attachment_id="a2", container_id="c2", ifname="net1", physical_network="p", numa_node=None
    )
    assert second.pci != first.pci
    # What metrics export (podwire_kind_resources): the pool's use.
    assert lease_levels(store.leases()) == {("p", "leased"): 2}
    from podwire.errors import Exhausted

    with pytest.raises(Exhausted, match="physical network p"):
        auth.lease(
            attachment_id="a3",
            container_id="c3",
            ifname="net1",
            physical_network="p",
            numa_node=None,
        )
    with pytest.raises(InvalidInput, match="'nope'"):
        auth.lease(
            attachment_id="a4",
            container_id="c4",
            ifname="net1",
            physical_network="nope",
            numa_node=None,
        )
    # The baseline is recorded once, at discovery: later scans keep it.
    baseline = store.get(first.pci).baseline  # type: ignore[union-attr]
    assert (baseline["driver"], baseline["netdev"]) == ("igbvf", "pf1v0")
    assert auth.release("a2") == second.pci
    assert store.get(second.pci).attachment_id is None  # type: ignore[union-attr]
    assert auth.release("a2") is None  # idempotent
    assert lease_levels(store.leases()) == {("p", "leased"): 1, ("p", "free"): 1}
    # numvfs lowered: the rescan drops the free VF that is gone; a leased
    # VF's row stays until its attachment is undone.
    devices = tree / "bus/pci/devices"
    (devices / "0000:41:00.0/sriov_numvfs").write_text("0\n")
    (devices / "0000:41:00.0/virtfn0").unlink()
    (devices / "0000:41:00.0/virtfn1").unlink()
    assert auth.scan() == []
    assert [lease.pci for lease in store.leases()] == ["0000:41:10.0"]
    store.close()


def test_docker_numa_option() -> None:
    from podwire.frontends.docker.endpoints import numa_option

    assert numa_option(None) is None and numa_option("") is None
    assert numa_option("1") == 1
    for bad in ("-1", "x", "1024"):
        with pytest.raises(InvalidInput, match=r"podwire\.numa_node"):
            numa_option(bad)


def test_known_limits_name_what_igb_cannot_do() -> None:
    from podwire.datapath.sriov.vfnl import known_limit

    rates = {"min_tx_rate": 10, "max_tx_rate": 100}
    assert "no min_tx_rate" in (known_limit("igb", "min/max_tx_rate", rates) or "")
    only_max = {"min_tx_rate": 0, "max_tx_rate": 100}
    assert "PF link is up" in (known_limit("igb", "min/max_tx_rate", only_max) or "")
    assert "no VF link-state control" in (known_limit("igb", "link_state", {}) or "")
    assert known_limit("mlx5_core", "link_state", {}) is None
