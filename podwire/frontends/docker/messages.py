"""libnetwork's remote NetworkDriver and IpamDriver payloads, as Docker sends
them (moby/libnetwork docs/remote.md and docs/ipam.md; field names are
Docker's). Unknown fields are ignored: newer dockerd versions add some, and
a plugin must keep working with them. Maps Docker leaves empty arrive as
``null``, so every map and list accepts None."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def _required_id(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    return value


class _NetworkRef(_In):
    NetworkID: str

    _nid = field_validator("NetworkID")(_required_id)


class _EndpointRef(_NetworkRef):
    EndpointID: str

    _eid = field_validator("EndpointID")(_required_id)


class IpamData(_In):
    AddressSpace: str = ""
    Pool: str
    Gateway: str = ""
    AuxAddresses: dict[str, str] | None = None


class CreateNetworkRequest(_NetworkRef):
    Options: dict[str, Any] | None = None
    IPv4Data: list[IpamData] | None = None
    IPv6Data: list[IpamData] | None = None


class DeleteNetworkRequest(_NetworkRef):
    pass


class InterfaceData(_In):
    Address: str = ""
    AddressIPv6: str = ""
    MacAddress: str = ""


class CreateEndpointRequest(_EndpointRef):
    Interface: InterfaceData | None = None
    Options: dict[str, Any] | None = None


class EndpointRequest(_EndpointRef):
    """EndpointOperInfo, DeleteEndpoint, Leave, RevokeExternalConnectivity."""


class JoinRequest(_EndpointRef):
    SandboxKey: str = ""
    Options: dict[str, Any] | None = None


class ProgramExternalConnectivityRequest(_EndpointRef):
    Options: dict[str, Any] | None = None


class DiscoveryRequest(_In):
    DiscoveryType: int = 0
    DiscoveryData: Any = None


class RequestPoolRequest(_In):
    AddressSpace: str = ""
    Pool: str = ""
    SubPool: str = ""
    Options: dict[str, str] | None = None
    V6: bool = False


class ReleasePoolRequest(_In):
    PoolID: str

    _pid = field_validator("PoolID")(_required_id)


class RequestAddressRequest(_In):
    PoolID: str
    Address: str = ""
    Options: dict[str, str] | None = None

    _pid = field_validator("PoolID")(_required_id)


class ReleaseAddressRequest(_In):
    PoolID: str
    Address: str

    _pid = field_validator("PoolID")(_required_id)
    _addr = field_validator("Address")(_required_id)


class Empty(_In):
    """Handshake and capability calls: no payload (Docker sends null)."""

    extra: dict[str, Any] = Field(default_factory=dict)


# Option keys libnetwork puts into the maps above.
GENERIC_OPTIONS = "com.docker.network.generic"  # -o / --driver-opt values
REQUEST_ADDRESS_TYPE = "RequestAddressType"
GATEWAY_ADDRESS_TYPE = "com.docker.network.gateway"
