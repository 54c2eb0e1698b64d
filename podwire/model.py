"""The shared vocabulary: networks, subnets, ports and trunks, Neutron's words.

Two families of classes live here:

* the stored objects (``Network``, ``Subnet``, ``Port``, ``Trunk``) as every
  backend returns them, always complete;
* the requests (``NetworkCreate``, ``PortUpdate``, ...) as callers send them;
  unset fields are left for the backend to choose, and unknown fields are
  refused (``extra="forbid"``) so a typo never passes silently.

Field names follow Neutron's JSON where Python allows it; the REST API maps
the few that differ (``provider:network_type`` -> ``network_type``,
``binding:host_id`` -> ``binding.host_id``, ...).

Validation raises pydantic's ``ValidationError``; ``validation_error`` turns
it into ``podwire.errors.InvalidInput`` naming the field, for the edges.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from podwire.errors import InvalidInput

# --- scalar types -----------------------------------------------------------

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _mac(value: str) -> str:
    # No stripping: "aa:bb:cc:dd:ee:ff " is not a MAC (Neutron refuses it too).
    normalized = value.lower().replace("-", ":")
    if not _MAC_RE.match(normalized):
        raise ValueError(f"invalid MAC address {value!r}")
    if int(normalized[:2], 16) & 1:
        raise ValueError(f"MAC address {value!r} is multicast; a port needs a unicast MAC")
    if normalized == "00:00:00:00:00:00":
        raise ValueError(f"MAC address {value!r} is all zeros; a port needs a real MAC")
    return normalized


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"invalid IP address {value!r}") from None


def _cidr(value: str) -> str:
    try:
        if "/" not in value:
            # Neutron refuses a bare address: "198.18.53.0" is no /32 by default.
            raise ValueError("the prefix length is missing")
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"invalid CIDR {value!r}: {exc}") from None


def _ip_or_cidr(value: str) -> str:
    """An address or a network, as allowed_address_pairs accept both."""
    if "/" in value:
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"invalid IP address or CIDR {value!r}") from None
    return _ip(value)


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"invalid UUID {value!r}") from None


def _neutron_bool(value: Any) -> Any:
    """Neutron's convert_to_boolean: true/false (any case), "1"/"0", 1/0 and
    booleans; "yes", "on" and anything else are refused, not guessed."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{value!r} is not a boolean (true or false)")


def _json_size(limit: int) -> Any:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, default=str)) > limit:
            raise ValueError(f"is over {limit} bytes as JSON")
        return value

    return AfterValidator(check)


MacAddress = Annotated[str, AfterValidator(_mac)]
IpAddress = Annotated[str, AfterValidator(_ip)]
Cidr = Annotated[str, AfterValidator(_cidr)]
IpOrCidr = Annotated[str, AfterValidator(_ip_or_cidr)]
Uuid = Annotated[str, AfterValidator(_uuid)]
VlanId = Annotated[int, Field(ge=1, le=4094)]
Name = Annotated[str, Field(max_length=255)]
# Neutron's field limits (neutron-lib db constants): descriptions, device ids
# and owners, host ids 255; physical network names 64; a binding profile
# is stored in 4095 bytes.
Description = Annotated[str, Field(max_length=255)]
DeviceField = Annotated[str, Field(max_length=255)]
PhysicalNetwork = Annotated[str, Field(min_length=1, max_length=64)]
HostId = Annotated[str, Field(max_length=255)]
NeutronBool = Annotated[bool, BeforeValidator(_neutron_bool)]
BindingDict = Annotated[dict[str, Any], _json_size(4095)]
# Neutron's configurable limits, at its defaults: max_dns_nameservers,
# max_subnet_host_routes, MAX_TAGS; and bounds of podwire's own on lists
# Neutron leaves unbounded. These are the defaults of podwire.config.ApiConfig,
# which the API enforces (podwire.api.limits); the models themselves only
# refuse lists past the configuration's sanity bounds below.
MAX_DNS_NAMESERVERS = 5
MAX_HOST_ROUTES = 20
# Not Neutron's default of 10 (max_allowed_address_pair): a VM hosting
# containers in ipvlan/macvlan mode carries every container's addresses on its
# own port (docs/nested.md), and operators of that design raise Neutron's
# limit the same way. 2 addresses per container, 500 containers per VM.
MAX_ALLOWED_ADDRESS_PAIRS = 1000
MAX_TAGS = 50
MAX_FIXED_IPS = 32
MAX_ALLOCATION_POOLS = 64
MAX_SECURITY_GROUPS = 64
MAX_SUB_PORTS = 4094
DNS_CEILING = 100
LIST_CEILING = 1000
PAIRS_CEILING = 100_000
ProjectId = Annotated[str, Field(min_length=1, max_length=255)]
# A comma would split it in a ``tags=a,b`` query.
Tag = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^,]+$")]

NetworkType = Literal["local", "flat", "vlan", "vxlan", "geneve"]
VnicType = Literal[
    "normal", "direct", "direct-physical", "macvtap", "baremetal", "virtio-forwarder", "vdpa"
]
PortStatus = Literal["DOWN", "ACTIVE", "BUILD", "ERROR"]
# Which data path a network prefers; None lets the agent decide from the
# backend and the node (bridge on embedded, ovs on OVN).
DatapathHint = Literal["bridge", "ovs", "macvlan", "ipvlan", "vlan", "sriov", "vhostuser"]


_M = TypeVar("_M", bound=BaseModel)


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- nested values ------------------------------------------------------------


class FixedIp(_Strict):
    """One address of a port on one subnet."""

    subnet_id: str
    ip_address: IpAddress


class FixedIpRequest(_Strict):
    """What a caller may ask for: a subnet (any free address on it), an address
    (the backend finds its subnet), or both."""

    subnet_id: str | None = None
    ip_address: IpAddress | None = None

    @model_validator(mode="after")
    def _one_of(self) -> FixedIpRequest:
        if self.subnet_id is None and self.ip_address is None:
            raise ValueError("a fixed_ips entry needs subnet_id, ip_address or both")
        return self


class AllowedAddressPair(_Strict):
    """An extra source the port may send from: an address or CIDR, optionally
    with its own MAC (None means the port's MAC)."""

    ip_address: IpOrCidr
    mac_address: MacAddress | None = None


class AllocationPool(_Strict):
    start: IpAddress
    end: IpAddress


class HostRoute(_Strict):
    destination: Cidr
    nexthop: IpAddress


class PortBinding(_Strict):
    """Where and how a port is plugged (Neutron's binding:* attributes)."""

    host_id: HostId = ""
    profile: BindingDict = Field(default_factory=dict)
    vif_type: Annotated[str, Field(max_length=255)] = "unbound"
    vif_details: BindingDict = Field(default_factory=dict)


class SubPort(_Strict):
    port_id: str
    segmentation_type: Literal["vlan"] = "vlan"
    segmentation_id: VlanId


# --- stored objects -------------------------------------------------------------


class Network(_Strict):
    id: str
    name: Name = ""
    project_id: ProjectId
    description: str = ""
    mtu: int = 1500
    network_type: NetworkType = "local"
    segmentation_id: int | None = None
    physical_network: str | None = None
    port_security_enabled: bool = True
    shared: bool = False
    admin_state_up: bool = True
    status: str = "ACTIVE"
    datapath: DatapathHint | None = None
    subnets: list[str] = Field(default_factory=list)
    # Neutron's revision_number: bumped by every change of the object; a
    # PUT with If-Match: revision_number=N applies only while it is still N.
    revision_number: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Subnet(_Strict):
    id: str
    name: Name = ""
    project_id: ProjectId
    network_id: str
    description: str = ""
    ip_version: Literal[4, 6]
    cidr: Cidr
    gateway_ip: IpAddress | None = None
    allocation_pools: list[AllocationPool] = Field(default_factory=list)
    dns_nameservers: list[IpAddress] = Field(default_factory=list)
    host_routes: list[HostRoute] = Field(default_factory=list)
    enable_dhcp: bool = False
    revision_number: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Port(_Strict):
    id: str
    name: Name = ""
    project_id: ProjectId
    network_id: str
    description: str = ""
    mac_address: MacAddress
    fixed_ips: list[FixedIp] = Field(default_factory=list)
    device_id: str = ""
    device_owner: str = ""
    status: PortStatus = "DOWN"
    admin_state_up: bool = True
    port_security_enabled: bool = True
    security_groups: list[str] = Field(default_factory=list)
    allowed_address_pairs: list[AllowedAddressPair] = Field(default_factory=list)
    vnic_type: VnicType = "normal"
    binding: PortBinding = Field(default_factory=PortBinding)
    # Neutron's tags. podwire marks the ports it creates with
    # "podwire:host=<host>" and "podwire:purpose=<...>" (agent/ownership.py).
    tags: list[Tag] = Field(default_factory=list)
    # Set when the port is a trunk's sub-port: (parent port id, VLAN id).
    # OVN stores exactly this as parent_name and tag.
    parent_port_id: str | None = None
    segmentation_id: int | None = None
    revision_number: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Trunk(_Strict):
    id: str
    name: Name = ""
    project_id: ProjectId
    description: str = ""
    port_id: str
    status: str = "ACTIVE"
    admin_state_up: bool = True
    sub_ports: list[SubPort] = Field(default_factory=list)
    revision_number: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None


# --- requests -------------------------------------------------------------------
# Create requests: None means "backend decides". project_id None means "the
# caller's project"; only an admin may name another.


class NetworkCreate(_Strict):
    name: Name = ""
    project_id: ProjectId | None = None
    description: Description = ""
    mtu: Annotated[int, Field(ge=68, le=65535)] | None = None
    network_type: NetworkType | None = None
    segmentation_id: int | None = None
    physical_network: PhysicalNetwork | None = None
    port_security_enabled: NeutronBool = True
    shared: NeutronBool = False
    admin_state_up: NeutronBool = True
    datapath: DatapathHint | None = None

    @model_validator(mode="after")
    def _segmentation(self) -> NetworkCreate:
        if self.segmentation_id is not None:
            if self.network_type == "vlan" and not 1 <= self.segmentation_id <= 4094:
                raise ValueError("segmentation_id of a vlan network must be 1-4094")
            if self.network_type in ("vxlan", "geneve") and not (
                1 <= self.segmentation_id <= 16777215
            ):
                raise ValueError("segmentation_id of a vxlan/geneve network must be 1-16777215")
            if self.network_type in (None, "local", "flat"):
                raise ValueError(
                    f"segmentation_id is meaningless for network_type {self.network_type!r}"
                )
        return self


class NetworkUpdate(_Strict):
    name: Name | None = None
    description: Description | None = None
    mtu: Annotated[int, Field(ge=68, le=65535)] | None = None
    port_security_enabled: NeutronBool | None = None
    shared: NeutronBool | None = None
    admin_state_up: NeutronBool | None = None


class SubnetCreate(_Strict):
    network_id: Annotated[str, Field(max_length=255)]
    cidr: Cidr
    ip_version: Literal[4, 6] | None = None
    name: Name = ""
    project_id: ProjectId | None = None
    description: Description = ""
    # Unset: the first usable address. Explicit None: no gateway.
    gateway_ip: IpAddress | Literal["auto"] | None = "auto"
    allocation_pools: Annotated[list[AllocationPool], Field(max_length=LIST_CEILING)] | None = None
    dns_nameservers: Annotated[list[IpAddress], Field(max_length=DNS_CEILING)] = Field(
        default_factory=list
    )
    host_routes: Annotated[list[HostRoute], Field(max_length=LIST_CEILING)] = Field(
        default_factory=list
    )
    enable_dhcp: NeutronBool = False

    @model_validator(mode="after")
    def _coherent(self) -> SubnetCreate:
        net = ipaddress.ip_network(self.cidr)
        if self.ip_version is not None and self.ip_version != net.version:
            raise ValueError(f"ip_version {self.ip_version} does not match cidr {self.cidr}")
        self.ip_version = 4 if net.version == 4 else 6
        gateway = self.gateway_ip
        if gateway not in (None, "auto") and ipaddress.ip_address(gateway) not in net:
            raise ValueError(f"gateway_ip {gateway} is outside cidr {self.cidr}")
        for pool in self.allocation_pools or []:
            start, end = ipaddress.ip_address(pool.start), ipaddress.ip_address(pool.end)
            if start not in net or end not in net:
                raise ValueError(f"allocation pool {pool.start}-{pool.end} is outside {self.cidr}")
            if int(start) > int(end):
                raise ValueError(f"allocation pool {pool.start}-{pool.end} ends before it starts")
        for dns in self.dns_nameservers:
            if ipaddress.ip_address(dns).version != net.version:
                raise ValueError(f"dns_nameservers entry {dns} is not IPv{net.version}")
        return self


class SubnetUpdate(_Strict):
    name: Name | None = None
    description: Description | None = None
    dns_nameservers: Annotated[list[IpAddress], Field(max_length=DNS_CEILING)] | None = None
    host_routes: Annotated[list[HostRoute], Field(max_length=LIST_CEILING)] | None = None


class PortCreate(_Strict):
    network_id: Annotated[str, Field(max_length=255)]
    name: Name = ""
    project_id: ProjectId | None = None
    description: Description = ""
    mac_address: MacAddress | None = None
    # None: one address on every subnet of the network (one per IP version
    # family is Neutron's rule too: one per subnet). []: no address.
    fixed_ips: Annotated[list[FixedIpRequest], Field(max_length=LIST_CEILING)] | None = None
    device_id: DeviceField = ""
    device_owner: DeviceField = ""
    admin_state_up: NeutronBool = True
    port_security_enabled: NeutronBool | None = None  # None: the network's setting
    security_groups: Annotated[list[Name], Field(max_length=LIST_CEILING)] | None = None
    allowed_address_pairs: Annotated[list[AllowedAddressPair], Field(max_length=PAIRS_CEILING)] = (
        Field(default_factory=list)
    )
    vnic_type: VnicType = "normal"
    binding: PortBinding | None = None
    tags: Annotated[list[Tag], Field(max_length=LIST_CEILING)] = Field(default_factory=list)


class PortUpdate(_Strict):
    name: Name | None = None
    description: Description | None = None
    mac_address: MacAddress | None = None
    fixed_ips: Annotated[list[FixedIpRequest], Field(max_length=LIST_CEILING)] | None = None
    device_id: DeviceField | None = None
    device_owner: DeviceField | None = None
    status: PortStatus | None = None
    admin_state_up: NeutronBool | None = None
    port_security_enabled: NeutronBool | None = None
    security_groups: Annotated[list[Name], Field(max_length=LIST_CEILING)] | None = None
    allowed_address_pairs: (
        Annotated[list[AllowedAddressPair], Field(max_length=PAIRS_CEILING)] | None
    ) = None
    vnic_type: VnicType | None = None
    binding: PortBinding | None = None
    tags: Annotated[list[Tag], Field(max_length=LIST_CEILING)] | None = None


class TrunkCreate(_Strict):
    port_id: Annotated[str, Field(max_length=255)]
    name: Name = ""
    project_id: ProjectId | None = None
    description: Description = ""
    admin_state_up: NeutronBool = True
    sub_ports: Annotated[list[SubPort], Field(max_length=MAX_SUB_PORTS)] = Field(
        default_factory=list
    )

    @field_validator("sub_ports")
    @classmethod
    def _unique_vlans(cls, sub_ports: list[SubPort]) -> list[SubPort]:
        check_unique_subports(sub_ports)
        return sub_ports


class TrunkUpdate(_Strict):
    name: Name | None = None
    description: Description | None = None
    admin_state_up: NeutronBool | None = None


def check_unique_subports(sub_ports: list[SubPort]) -> None:
    """A trunk carries each VLAN id and each port at most once."""
    seen_vlans: set[int] = set()
    seen_ports: set[str] = set()
    for sp in sub_ports:
        if sp.segmentation_id in seen_vlans:
            raise ValueError(f"segmentation_id {sp.segmentation_id} is used twice")
        if sp.port_id in seen_ports:
            raise ValueError(f"port {sp.port_id} is listed twice")
        seen_vlans.add(sp.segmentation_id)
        seen_ports.add(sp.port_id)


# --- caller context --------------------------------------------------------------


class Context(BaseModel):
    """Who is asking. Backends scope every call by it."""

    model_config = ConfigDict(frozen=True)

    project_id: str
    roles: tuple[str, ...] = ("member",)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @classmethod
    def admin(cls, project_id: str = "admin") -> Context:
        return cls(project_id=project_id, roles=("admin",))


# --- helpers for the edges ---------------------------------------------------------


def validation_error(exc: ValidationError, *, kind: str | None = None) -> InvalidInput:
    """Turn pydantic's error into one InvalidInput naming the first bad field."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = f"unknown field {field!r}"
    elif message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    text = f"{field}: {message}" if field else message
    return InvalidInput(text, kind=kind, field=field)


def parse(model: type[_M], data: Any, *, kind: str | None = None) -> _M:
    """Validate ``data`` into ``model`` or raise InvalidInput naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, kind=kind) from None
