"""SR-IOV ADD/DEL next to veth_bridge, in one run, inside the igb guest.

Boots the QEMU 10 guest of the tests (tests/fixtures/qemu.py: two emulated
82576 PFs, real igb/igbvf drivers, TCG), starts one agent in it with an
SR-IOV pool, and times N ADD-then-DEL pairs through the compiled CNI shim
for each kind, from a loop running inside the guest (so the host-guest
channel is not measured). Prints JSON: p50 and p90 per verb and kind.

The numbers are those of an emulated machine under TCG (every instruction
translated, every exec over 9p): compare the kinds with each other, never
with the host's numbers in docs/perf.md.

Run as root: ``.venv/bin/python bench/sriov_guest.py [--n 10]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RUN = "/run/pw10b"
SOCK = f"{RUN}/agent.sock"

# Runs in the guest: N pairs per network, timed around the shim.
LOOP = r"""
import json, os, statistics, subprocess, sys, time
n = int(sys.argv[1])
out = {}
for kind, net in (("veth_bridge", "pw10-bench-br"), ("sriov", "pw10-bench-vf")):
    conf = json.dumps({"cniVersion": "1.1.0", "name": net, "type": "podwire", "network": net})
    times = {"ADD": [], "DEL": []}
    for i in range(n):
        ns = f"pw10-b{i}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        for verb in ("ADD", "DEL"):
            env = {"PODWIRE_AGENT_SOCKET": "%(sock)s", "CNI_COMMAND": verb,
                   "CNI_CONTAINERID": f"pw10-bench-{i}", "CNI_NETNS": f"/run/netns/{ns}",
                   "CNI_IFNAME": "net1", "CNI_PATH": "/opt/cni/bin", "PATH": "/usr/bin:/bin"}
            t0 = time.perf_counter()
            p = subprocess.run(["shim/podwire-cni"], input=conf.encode(), env=env,
                               capture_output=True)
            times[verb].append((time.perf_counter() - t0) * 1000)
            if p.returncode:
                sys.exit(f"{kind} {verb}: {p.stdout.decode()} {p.stderr.decode()}")
        subprocess.run(["ip", "netns", "del", ns], check=True)
    out[kind] = {
        verb: {"p50_ms": round(statistics.median(v), 1),
               "p90_ms": round(sorted(v)[int(0.9 * (len(v) - 1))], 1)}
        for verb, v in times.items()
    }
print(json.dumps(out))
"""


def api(guest: Any, path: str, body: dict[str, Any]) -> Any:
    out = guest.sh(
        f"curl -sf --unix-socket {SOCK} -H 'Content-Type: application/json' "
        f"-X POST -d '{json.dumps(body)}' http://x{path}"
    )
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10)
    args = parser.parse_args()

    from tests.fixtures.qemu import boot_guest

    workdir = Path(tempfile.mkdtemp(prefix="pw10-bench-"))
    guest = boot_guest(workdir)
    try:
        guest.sh(
            f"""
            set -e
            for pf in 0000:21:00.0 0000:41:00.0; do
                echo 4 > /sys/bus/pci/devices/$pf/sriov_numvfs
                ip link set $(ls /sys/bus/pci/devices/$pf/net) up
            done
            mkdir -p {RUN}/state
            cat > {RUN}/agent.toml <<'EOF'
[agent]
device_info_dir = "{RUN}/devinfo"
[sriov]
physical_networks = {{ physnet0 = ["0000:21:00.0", "0000:41:00.0"] }}
EOF
            cat > {RUN}/loop.py <<'EOF'
{LOOP % {"sock": SOCK}}
EOF
            cd {REPO}
            setsid .venv/bin/python -m podwire.daemon --config {RUN}/agent.toml \
              --state-dir {RUN}/state --socket {SOCK} > {RUN}/agent.log 2>&1 < /dev/null &
            i=0
            while ! curl -sf --unix-socket {SOCK} http://x/v1/attachments > /dev/null; do
                sleep 0.5; i=$((i+1)); [ $i -lt 600 ] || exit 1
            done
            """,
            timeout=600,
        )
        for name, cidr, fields in (
            ("pw10-bench-br", "198.18.20.0/24", {"datapath": "bridge"}),
            (
                "pw10-bench-vf",
                "198.18.21.0/24",
                {"datapath": "sriov", "network_type": "flat", "physical_network": "physnet0"},
            ),
        ):
            net = api(guest, "/v2.0/networks", {"network": {"name": name, **fields}})["network"]
            subnet = {"network_id": net["id"], "cidr": cidr, "ip_version": 4}
            api(guest, "/v2.0/subnets", {"subnet": subnet})
        out = guest.sh(f"cd {REPO} && python3 {RUN}/loop.py {args.n}", timeout=1800)
        result = json.loads(out.strip().splitlines()[-1])
        print(
            json.dumps(
                {
                    "n": args.n,
                    "where": "QEMU 10 TCG guest, emulated 82576 (igb/igbvf), CNI shim to agent",
                    **result,
                },
                indent=2,
            )
        )
    finally:
        guest.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
