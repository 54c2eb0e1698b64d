"""Code that runs in child processes of the concurrency tests (importable
by multiprocessing's spawn start method)."""

from __future__ import annotations

import random
import time
from typing import Any

from podwire.backends.embedded import EmbeddedBackend
from podwire.errors import Conflict, Exhausted
from podwire.model import Context, FixedIpRequest, PortCreate


def create_until_exhausted(
    db_url: str, network_id: str, project_id: str, start: Any, results: Any
) -> None:
    """Create ports until the backend says Exhausted; report the addresses."""
    backend = EmbeddedBackend(db_url)
    got: list[str] = []
    outcome = "exhausted"
    try:
        backend.get_network(Context(project_id=project_id), network_id)  # connect now
        start.wait(60)
        while True:
            try:
                port = backend.create_port(
                    Context(project_id=project_id), PortCreate(network_id=network_id)
                )
            except Exhausted:
                break
            got.extend(ip.ip_address for ip in port.fixed_ips)
            # A short pause lets the other processes in between (SQLite's
            # busy handler sleeps while a tight loop would keep the lock).
            time.sleep(random.uniform(0, 0.003))
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    finally:
        backend.close()
        results.put((got, outcome))


def request_one_address(
    db_url: str, network_id: str, project_id: str, address: str, start: Any, results: Any
) -> None:
    """Ask for one named address; report "won", "conflict" or the error."""
    backend = EmbeddedBackend(db_url)
    try:
        backend.get_network(Context(project_id=project_id), network_id)  # connect now
        start.wait(60)
        backend.create_port(
            Context(project_id=project_id),
            PortCreate(network_id=network_id, fixed_ips=[FixedIpRequest(ip_address=address)]),
        )
        results.put("won")
    except Conflict:
        results.put("conflict")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        backend.close()


def create_macs(
    db_url: str, network_id: str, project_id: str, count: int, start: Any, results: Any
) -> None:
    """Create ``count`` address-less ports with a 5-octet MAC prefix (256
    MACs in all), so that random draws collide often."""
    backend = EmbeddedBackend(db_url, mac_prefix="0a:70:77:00:01")
    macs: list[str] = []
    outcome = "done"
    try:
        backend.get_network(Context(project_id=project_id), network_id)  # connect now
        start.wait(60)
        for _ in range(count):
            try:
                port = backend.create_port(
                    Context(project_id=project_id),
                    PortCreate(network_id=network_id, fixed_ips=[]),
                )
            except Exhausted:
                outcome = "exhausted"
                break
            macs.append(port.mac_address)
    except Exception as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    finally:
        backend.close()
        results.put((macs, outcome))


def create_subnet(
    db_url: str, network_id: str, project_id: str, cidr: str, start: Any, results: Any
) -> None:
    """Add a subnet; report "won", "conflict" or the error."""
    from podwire.model import SubnetCreate

    backend = EmbeddedBackend(db_url)
    try:
        backend.get_network(Context(project_id=project_id), network_id)  # connect now
        start.wait(60)
        backend.create_subnet(
            Context(project_id=project_id), SubnetCreate(network_id=network_id, cidr=cidr)
        )
        results.put("won")
    except Conflict:
        results.put("conflict")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        backend.close()


def add_subport(
    db_url: str, trunk_id: str, project_id: str, port_ids: list[str], start: Any, results: Any
) -> None:
    """Add one of ``port_ids`` (picked by process order) on VLAN 100."""
    import os

    from podwire.model import SubPort

    backend = EmbeddedBackend(db_url)
    ctx = Context(project_id=project_id)
    try:
        backend.get_trunk(ctx, trunk_id)  # connect now
        port_id = port_ids[os.getpid() % len(port_ids)]
        start.wait(60)
        backend.add_subports(ctx, trunk_id, [SubPort(port_id=port_id, segmentation_id=100)])
        results.put("won")
    except Conflict:
        results.put("conflict")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        backend.close()
