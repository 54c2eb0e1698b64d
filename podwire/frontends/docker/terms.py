"""Docker's terms as the door uses them: the names and options users type,
and what the protocol layer (app.py) passes in and gets back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

FRONTEND = "docker"

LOCAL_ADDRESS_SPACE = "PodwireLocal"
GLOBAL_ADDRESS_SPACE = "PodwireGlobal"

# Driver options (docker network create -o KEY=VALUE).
OPT_NETWORK = "podwire.network"  # adopt this backend network (name or id)
OPT_NAME = "podwire.name"  # name of the backend network podwire creates
# Endpoint option (docker network connect --driver-opt KEY=VALUE).
OPT_PORT = "podwire.port"  # attach this existing backend port
OPT_NUMA_NODE = "podwire.numa_node"  # prefer a host device (SR-IOV VF) on this node

# The container end lives in the host namespace under this prefix until
# dockerd moves it. "-" never occurs in the hex names the agent gives host
# ends, so the two cannot collide.
_IFNAME_PREFIX = "pwd-"
_IFNAMSIZ = 15


def endpoint_ifname(endpoint_id: str) -> str:
    """The host-namespace name of an endpoint's container end: a function of
    the endpoint id alone, so DEL finds it even without a record."""
    return (_IFNAME_PREFIX + endpoint_id)[:_IFNAMSIZ]


@dataclass(frozen=True)
class PoolData:
    """One entry of CreateNetwork's IPv4Data / IPv6Data."""

    address_space: str
    pool: str  # CIDR
    gateway: str | None = None  # "198.18.0.1/24" as Docker sends it, or a bare IP
    aux_addresses: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointInterface:
    """Docker's Interface object: addresses with prefix, MAC; empty = unset."""

    address: str = ""
    address_v6: str = ""
    mac: str = ""


@dataclass(frozen=True)
class StaticRoute:
    destination: str
    next_hop: str | None  # None: a connected route


@dataclass(frozen=True)
class JoinInfo:
    src_name: str
    gateway: str | None
    gateway_v6: str | None
    static_routes: tuple[StaticRoute, ...]
