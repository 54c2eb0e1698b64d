"""make demo-nested: containers inside a VM on ipvlan.

Starts a podwire server (embedded backend), a network with the VM's port, a
container on the host, and a user-mode Linux VM whose NIC is a tap on that
network's bridge; inside the VM, the podwire agent (node mode nested, backend
remote with the project's token) and two containers on ipvlan. Shows the VM
port's allowed_address_pairs before, during and after, and the containers
pinging each other and the host's container. Everything is removed at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures.uml import PW9_NET, build_world  # noqa: E402
from tests.nested.helpers import containers, pairs  # noqa: E402


def show_pairs(world, when: str) -> None:  # type: ignore[no-untyped-def]
    found = sorted(pairs(world))
    print(f"\n== the VM port's allowed_address_pairs {when}: {len(found)}")
    for ip, mac in found:
        print(f"   {ip:<40} {mac}")


def main() -> int:
    print("== booting the VM (user-mode Linux) and its agent ...")
    with build_world([], "embedded") as world:
        guest = world.guest
        print(f"   VM NIC on host tap {guest.tap} (bridge {world.bridge}), MAC {guest.mac}")
        print(f"   API for the VM: {world.guest_url}; host container {world.host_addresses}")
        show_pairs(world, "before")
        with containers(world, 2, PW9_NET) as (c1, c2):
            for c in (c1, c2):
                print(f"\n== container {c['netns']} (ipvlan): {', '.join(c['ips'])}")
                print(guest.run(f"ip netns exec {c['netns']} ip -br addr show eth0").stdout)
            show_pairs(world, "with two containers")
            for target in [c2["ips"][0], *world.host_addresses]:
                answer = guest.run(
                    f"ip netns exec {c1['netns']} busybox ping -c2 -W3 {target}", timeout=30
                )
                print(f"== {c1['netns']} -> {target}: {'ok' if answer.rc == 0 else 'FAILED'}")
                print(answer.stdout.strip().splitlines()[-1])
        show_pairs(world, "after DEL")
    print("\n== done; VM, taps, netns and servers removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
