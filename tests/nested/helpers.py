"""What the in-VM tests share: containers in the guest, the VM port's pairs,
the clean state after DEL."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from tests.fixtures.uml import PW9_NET, Guest, NestedWorld


def ping(guest: Guest, netns: str, address: str) -> None:
    # One echo a second for up to 20 s: on OVN the VM port's new pairs reach
    # the chassis' flows a moment after the API answered.
    answer = guest.run(
        f"for i in $(seq 20); do ip netns exec {netns} busybox ping -c1 -W1 {address}"
        " && exit 0; done; exit 1",
        timeout=60,
    )
    assert answer.rc == 0, f"{netns} cannot reach {address}: {answer.stdout} {answer.stderr}"


def pairs(world: NestedWorld) -> set[tuple[str, str | None]]:
    with world.backend() as alice:
        vm = alice.get_port(world.ctx(), world.vm_port_id)
    # A pair without a MAC is the port's own MAC (Neutron's meaning).
    return {(p.ip_address, p.mac_address or vm.mac_address) for p in vm.allowed_address_pairs}


@contextlib.contextmanager
def containers(
    world: NestedWorld, count: int, network: str = PW9_NET
) -> Iterator[list[dict[str, Any]]]:
    """``count`` containers (netns in the guest) ADDed on ``network``; DEL
    and netns removal at the end, whatever happened."""
    guest = world.guest
    made: list[dict[str, Any]] = []
    try:
        for _ in range(count):
            name = "pw9c" + uuid.uuid4().hex[:6]
            guest.run(f"ip netns add {name}").check()
            item: dict[str, Any] = {"netns": name, "id": name, "path": f"/run/netns/{name}"}
            made.append(item)
            answer = guest.cni("ADD", network, container_id=name, netns=item["path"])
            assert answer.code == 0, (answer.stdout, answer.stderr, guest.agent_log())
            item["result"] = answer.json
            item["ips"] = [ip["address"].split("/")[0] for ip in answer.json["ips"]]
            item["mac"] = answer.json["interfaces"][0]["mac"]
        yield made
    finally:
        for item in made:
            guest.cni("DEL", network, container_id=item["id"], netns=item["path"])
            guest.run(f"ip netns del {item['netns']}")


def assert_clean(world: NestedWorld) -> None:
    """Nothing of the nested containers left: no pair, no sub-port, no record."""
    assert pairs(world) == set()
    with world.backend() as alice:
        trunks = alice.list_trunks(world.ctx(), {"port_id": [world.vm_port_id]})
        assert all(t.sub_ports == [] for t in trunks), trunks
        owned = [
            p
            for p in alice.list_ports(world.ctx())
            if any(t.startswith("podwire:host=pw9-vm") for t in p.tags)
        ]
        assert owned == []
    records = world.guest.run(
        "ls /run/netns; ip -o link show | grep -c '@eth0' || true"
    ).stdout.split()
    assert records[-1] == "0", records
