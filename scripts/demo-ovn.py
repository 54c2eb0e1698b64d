#!/usr/bin/env python3
"""`make demo-ovn`: the demo of `make demo`, with the agent on the OVN backend.

It starts a private OVS + OVN (own run directory and sockets, userspace
datapath, the same set-up the tests use: tests/fixtures/ovn.py), points the
agent at its northbound database and integration bridge, runs
scripts/demo.sh, and stops and removes OVS + OVN afterwards. Nothing
system-wide (/var/run/openvswitch, /var/run/ovn) is used.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.ovn import private_ovn  # noqa: E402


def main() -> int:
    print("== 0. Start a private OVS + OVN (northbound, southbound, northd, controller)")
    with private_ovn() as ovn, tempfile.TemporaryDirectory(prefix="podwire-demo-ovn.") as tmp:
        config = Path(tmp) / "agent.toml"
        config.write_text(
            "[ovn]\n"
            f'nb_remotes = ["{ovn.nb_remote}"]\n'
            f'ovs_db = "{ovn.ovs_remote}"\n'
            f'integration_bridge = "{ovn.bridge}"\n'
        )
        print(f"northbound {ovn.nb_remote}, integration bridge {ovn.bridge}")
        env = {
            **os.environ,
            "PODWIRE_DEMO_BACKEND": "ovn",
            "PODWIRE_DEMO_AGENT_ARGS": f"--backend ovn --config {config}",
        }
        code = subprocess.call([str(ROOT / "scripts" / "demo.sh")], env=env)
        print("== Stopping the private OVS + OVN")
    return code


if __name__ == "__main__":
    sys.exit(main())
