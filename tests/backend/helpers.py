"""Helpers for the backend contract suite: contexts, small builders, snapshots."""

from __future__ import annotations

from typing import Any

from podwire.backends.base import Backend
from podwire.model import (
    Context,
    Network,
    NetworkCreate,
    Port,
    PortCreate,
    Subnet,
    SubnetCreate,
)
from tests.fixtures.common import unique

ADMIN = Context.admin()


def project() -> Context:
    return Context(project_id=unique("proj"))


def network(
    backend: Backend, ctx: Context, *cidrs: str, **fields: Any
) -> tuple[Network, list[Subnet]]:
    net = backend.create_network(ctx, NetworkCreate(name=unique("net"), **fields))
    subnets = [
        backend.create_subnet(ctx, SubnetCreate(network_id=net.id, cidr=cidr)) for cidr in cidrs
    ]
    return net, subnets


def port(backend: Backend, ctx: Context, network_id: str, **fields: Any) -> Port:
    return backend.create_port(ctx, PortCreate(network_id=network_id, **fields))


def snapshot(backend: Backend) -> dict[str, list[dict[str, Any]]]:
    """Everything an admin can list: equal before and after a refused request."""
    return {
        "networks": [n.model_dump() for n in backend.list_networks(ADMIN)],
        "subnets": [s.model_dump() for s in backend.list_subnets(ADMIN)],
        "ports": [p.model_dump() for p in backend.list_ports(ADMIN)],
        "trunks": [t.model_dump() for t in backend.list_trunks(ADMIN)],
    }


def addresses(p: Port) -> list[str]:
    return [ip.ip_address for ip in p.fixed_ips]
