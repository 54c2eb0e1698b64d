"""Time the veth_bridge driver's plug and unplug in fresh namespaces.

Prints JSON: p50/p99/mean in ms for plug and unplug, first with an empty
bridge, then with ``--live`` ports already plugged (nftables and the
bridge grow with the ports). Namespaces are made before timing starts.
Run as root: ``.venv/bin/python bench/datapath_plug.py [-n 200] [--live 500]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
import uuid

from podwire.datapath.netlink import rtnl
from podwire.datapath.portsec import PortSecurityTable
from podwire.datapath.veth_bridge import VethBridgeDriver
from podwire.datapath.vif import AddressPair, PortSecurity, Route, VethBridge


def vif(bridge: str, i: int) -> VethBridge:
    mac = f"02:00:00:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}"
    v4 = f"198.18.{64 + (i >> 8)}.{i & 0xFF}"
    v6 = f"2001:db8:b::1:{i:x}"
    return VethBridge(
        port_id=f"p{i}",
        network_id="bench",
        mac=mac,
        addresses=(f"{v4}/18", f"{v6}/64"),
        routes=(
            Route(destination="0.0.0.0/0", gateway="198.18.64.1"),
            Route(destination="::/0", gateway="2001:db8:b::1"),
        ),
        mtu=1500,
        port_security=PortSecurity(
            allowed=(AddressPair(ip=v4, mac=mac), AddressPair(ip=v6, mac=mac))
        ),
        bridge=bridge,
        host_ifname=f"pwdbh{uuid.uuid4().hex[:9]}",
        bridge_addresses=("198.18.64.1/18", "2001:db8:b::1/64"),
    )


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1e3, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1e3, 3),
    }


def run(driver: VethBridgeDriver, bridge: str, n: int, first: int) -> dict[str, object]:
    names = [f"pwdbn{uuid.uuid4().hex[:8]}" for _ in range(n)]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    plugs: list[float] = []
    unplugs: list[float] = []
    try:
        vifs = [vif(bridge, first + i) for i in range(n)]
        for v, name in zip(vifs, names, strict=True):
            t = time.perf_counter()
            driver.plug(v, f"/var/run/netns/{name}", "eth0")
            plugs.append(time.perf_counter() - t)
        for v, name in zip(vifs, names, strict=True):
            t = time.perf_counter()
            driver.unplug(v, f"/var/run/netns/{name}", "eth0")
            unplugs.append(time.perf_counter() - t)
        driver.flush()
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False)
    return {"plug": stats(plugs), "unplug": stats(unplugs)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument(
        "--live", type=int, default=500, help="ports kept plugged for the second run"
    )
    parser.add_argument(
        "--async-delete", action="store_true", help="driver option: delete pairs in the background"
    )
    args = parser.parse_args()
    table = f"pwdbench{uuid.uuid4().hex[:6]}"
    bridge = f"pwdbbr{uuid.uuid4().hex[:6]}"
    driver = VethBridgeDriver(nft_table=table, async_delete=args.async_delete)
    live: list[VethBridge] = []
    result: dict[str, object] = {"driver": "veth_bridge", "async_delete": args.async_delete}
    try:
        warm = vif(bridge, 0)
        live.append(warm)
        driver.plug(warm, None, f"pwdbw{uuid.uuid4().hex[:8]}")  # bridge, nft context
        result["empty_bridge"] = run(driver, bridge, args.n, 1)
        # Docker-mode ports are cheap to keep around: they stand for live
        # containers on the bridge and in the nftables map.
        for i in range(args.live):
            v = vif(bridge, 5_000 + i)
            driver.plug(v, None, f"pwdbl{uuid.uuid4().hex[:8]}")
            live.append(v)
        result[f"with_{args.live}_live_ports"] = run(driver, bridge, args.n, 3_000)
    finally:
        for v in live:
            driver.unplug(v, None, "x")
        driver.flush()
        with rtnl() as host:
            host.delete_link(bridge)
        result["load_average"] = list(os.getloadavg())
        PortSecurityTable(table).remove_table()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
