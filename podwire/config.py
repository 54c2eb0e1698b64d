"""Typed configuration, loaded once at start and passed into constructors.

Sources, later wins: built-in defaults, a TOML file (``--config``), then the
command-line flags the CLI maps onto these fields. Nothing reads the
environment or a global after start-up.
"""

from __future__ import annotations

import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from podwire import model
from podwire.errors import InvalidInput
from podwire.model import validation_error

DEFAULT_STATE_DIR = Path("/var/lib/podwire")
DEFAULT_AGENT_SOCKET = Path("/run/podwire/agent.sock")
DEFAULT_DOCKER_PLUGIN_SOCKET = Path("/run/docker/plugins/podwire.sock")
_SRIOV_SELECTOR = re.compile(r"^[A-Za-z0-9_.:-]{1,32}(#\d+(-\d+)?(,\d+(-\d+)?)*)?$")
DEFAULT_DEVICE_INFO_DIR = Path("/run/k8s.cni.cncf.io/devinfo/cni")
# Locally administered (bit 1 set), unicast (bit 0 clear): never a vendor's.
DEFAULT_MAC_PREFIX = "0a:70:77"
# The shims' and the agent socket's own cap on a CNI request's stdin.
CNI_STDIN_CEILING = 1 << 20


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbeddedConfig(_Section):
    # SQLAlchemy URL; None means sqlite:///<state_dir>/podwire.db
    db_url: str | None = None
    mac_prefix: str = DEFAULT_MAC_PREFIX

    @field_validator("mac_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        parts = value.lower().split(":")
        if not 1 <= len(parts) <= 5 or any(len(p) != 2 for p in parts):
            raise ValueError(f"mac_prefix {value!r} must be 1-5 hex octets like 0a:70:77")
        try:
            first = int(parts[0], 16)
            for p in parts:
                int(p, 16)
        except ValueError:
            raise ValueError(f"mac_prefix {value!r} is not hexadecimal") from None
        if first & 1:
            raise ValueError(f"mac_prefix {value!r} is multicast")
        return value.lower()


class OvnConfig(_Section):
    # One remote, or several for a clustered northbound database.
    nb_remotes: list[str] = Field(default_factory=list)
    timeout: float = 10.0
    integration_bridge: str = "br-int"
    # How long ADD waits for ovn-controller to bind a port.
    bind_timeout: float = 15.0
    # The local Open_vSwitch database the veth_ovs data path writes to.
    ovs_db: str = "unix:/var/run/openvswitch/db.sock"
    # For ssl: northbound remotes (PEM files; python-ovs holds them per process).
    ssl_private_key: Path | None = None
    ssl_certificate: Path | None = None
    ssl_ca_cert: Path | None = None


class RemoteConfig(_Section):
    """A podwire server (or anything speaking the Neutron v2.0 subset)."""

    url: str | None = None
    token: str | None = None


class NeutronConfig(_Section):
    """An OpenStack Neutron, reached through openstacksdk (docs/neutron.md).

    One of: ``cloud`` (a clouds.yaml entry), ``auth_url`` with Keystone
    credentials, or ``endpoint`` with ``token`` (no token: Neutron's noauth).
    """

    cloud: str | None = None
    region_name: str | None = None
    # Keystone credentials (password or application credential).
    auth_url: str | None = None
    username: str | None = None
    password: str | None = None
    project_name: str | None = None
    project_id: str | None = None
    user_domain_name: str | None = None
    project_domain_name: str | None = None
    application_credential_id: str | None = None
    application_credential_secret: str | None = None
    # A fixed endpoint: http(s)://HOST:PORT (or unix:///PATH, a podwire agent).
    endpoint: str | None = None
    token: str | None = None
    # TLS: True, False, or a CA bundle path.
    verify: bool | str = True
    timeout: float = Field(default=30.0, gt=0)


class AgentConfig(_Section):
    socket: Path = DEFAULT_AGENT_SOCKET
    docker_plugin_socket: Path = DEFAULT_DOCKER_PLUGIN_SOCKET
    serve_docker: bool = False
    # The largest network config a CNI request may carry on stdin (code 7
    # above it). At most 1 MiB: the shims and the agent's socket refuse more
    # before reading it whole, whatever this says; lower it to refuse sooner.
    cni_max_stdin_bytes: int = Field(default=CNI_STDIN_CEILING, ge=256, le=CNI_STDIN_CEILING)
    # How deeply that config's JSON may nest (code 6 deeper). The shim checks
    # 512 levels itself; a usable config needs a few.
    cni_max_depth: int = Field(default=64, ge=8, le=512)
    # Requests doing work at once (the others admitted wait for a slot).
    # Every one of them competes for the interpreter: with 32 the "try
    # again" answers of a burst waited behind them (bench/cni_refusal.py,
    # 200 at once, quiet machine: refusal p99 up to 73 ms; 43 ms with 16,
    # 27 ms with 8). 16 keeps requests that mostly wait (OVN's binding, a
    # VM's host) from queueing behind each other.
    max_in_flight: int = Field(default=16, ge=1)
    # Requests allowed to wait for a slot; past max_in_flight + max_queued
    # (96 admitted by default) the agent answers "try again later".
    max_queued: int = Field(default=80, ge=0)
    # The project the agent creates networks in when a frontend asks it to.
    project_id: str = "default"
    # A network's Linux bridge is removed once no attachment on this host has
    # used it for this long (0: at its last DEL); not at once, so that a
    # container restart does not delete and recreate the bridge.
    bridge_idle_seconds: float = Field(default=30.0, ge=0)
    # Where this agent runs: "host" (containers on this machine's own
    # networks) or "nested" (containers inside a VM, on its port). One input
    # of the VIF kind decision (podwire.kinds.registry.decide).
    node_mode: Literal["host", "nested"] = "host"
    # The kind this node gives networks without a datapath hint; None: the
    # kind serving node_mode by default (veth_bridge on a host, ipvlan_nested
    # inside a VM). E.g. "macvlan_nested" for a VM whose containers get
    # macvlans on the VM's own network.
    default_kind: str | None = None
    # Where the device-info files of the Network Plumbing WG's spec go, one
    # per attachment of a kind that has device info (SR-IOV, vhost-user).
    device_info_dir: Path = DEFAULT_DEVICE_INFO_DIR
    # A compute host's VM ports (bound here, device_owner compute:*, with a
    # tap): how often the agent reads them and follows their pairs and trunk
    # sub-ports on the host (docs/nested.md); 0: off.
    vm_watch_seconds: float = Field(default=0.0, ge=0)


class ApiConfig(_Section):
    """Size limits of the Neutron API (``podwire server``, docs/api.md,
    Limits). Defaults: Neutron's own where it has one (max_request_body_size,
    max_dns_nameservers, max_subnet_host_routes, MAX_TAGS), else podwire's
    bound on a list Neutron leaves unbounded. The upper bounds are sanity
    bounds: the model refuses longer lists whatever the configuration."""

    # Request body (413 above it, never read whole).
    max_body_bytes: int = Field(default=114688, ge=1024, le=16 << 20)
    # Items in a request's lists (400 above them).
    max_dns_nameservers: int = Field(default=model.MAX_DNS_NAMESERVERS, ge=1, le=model.DNS_CEILING)
    max_host_routes: int = Field(default=model.MAX_HOST_ROUTES, ge=1, le=model.LIST_CEILING)
    max_allocation_pools: int = Field(
        default=model.MAX_ALLOCATION_POOLS, ge=1, le=model.LIST_CEILING
    )
    max_fixed_ips: int = Field(default=model.MAX_FIXED_IPS, ge=1, le=model.LIST_CEILING)
    max_security_groups: int = Field(default=model.MAX_SECURITY_GROUPS, ge=1, le=model.LIST_CEILING)
    # (The agent's nested kinds still check the default, 1000, before they
    # add a container's pairs to its VM's port: docs/api.md, Limits.)
    max_allowed_address_pairs: int = Field(
        default=model.MAX_ALLOWED_ADDRESS_PAIRS, ge=1, le=model.PAIRS_CEILING
    )
    max_tags: int = Field(default=model.MAX_TAGS, ge=1, le=model.LIST_CEILING)
    # Sub-ports in one trunk create or add_subports (VLAN ids: 4094 at most).
    max_sub_ports: int = Field(default=model.MAX_SUB_PORTS, ge=1, le=model.MAX_SUB_PORTS)
    # The longest value of a list filter (?name=...): 400 above it. At least
    # 64: ids (36 characters) must stay filterable.
    max_filter_value: int = Field(default=255, ge=64, le=4096)

    def list_limit(self, field: str) -> int | None:
        """The configured bound of a request list field, None if unbounded here."""
        value = getattr(self, f"max_{field}", None)
        return value if field in LIST_FIELDS and isinstance(value, int) else None


# The request list fields ApiConfig bounds (ApiConfig.max_<field>).
LIST_FIELDS = (
    "dns_nameservers",
    "host_routes",
    "allocation_pools",
    "fixed_ips",
    "security_groups",
    "allowed_address_pairs",
    "tags",
    "sub_ports",
)


class NestedConfig(_Section):
    """``agent.node_mode = "nested"``: the agent runs inside a VM and puts
    containers on the VM's own NIC (macvlan, ipvlan, VLAN sub-interfaces)."""

    # The VM's NIC; None: the interface of the default route.
    nic: str | None = None
    # The VM's port in the backend; None: the port whose MAC is the NIC's.
    port_id: str | None = None
    # ipvlan's mode: l2 (default; ARP/ND inside the container) or l3.
    ipvlan_mode: Literal["l2", "l3"] = "l2"
    # Allowed-address-pair updates race with other containers of the VM:
    # read, change, write with the revision read (If-Match); on a 412 read
    # again, this many times at most.
    pair_update_tries: int = Field(default=40, ge=1)
    # How long an ADD waits for the host under the VM to apply its pairs or
    # sub-port (when that host says it follows the VM port: docs/nested.md);
    # past it the ADD fails and is undone. 0: do not wait.
    host_wait_seconds: float = Field(default=10.0, ge=0)


class VhostUserConfig(_Section):
    """The vhostuser kind (docs/vhostuser.md). Modes are named from the
    application's side: "server" = the application in the container creates
    and listens on the socket, OVS connects (OVS interface type
    dpdkvhostuserclient); "client" = OVS creates and listens on the socket
    (dpdkvhostuser) and the application connects to it."""

    # The per-node mount point: one subdirectory per container
    # (<socket_root>/<container id>), which the container mounts.
    socket_root: Path = Path("/var/run/podwire/vhostuser")
    # The application's role when the port's binding does not say
    # (vif_details vhostuser_mode).
    default_mode: Literal["server", "client"] = "server"
    # The OVS-DPDK bridge (datapath_type netdev); None: the OVN integration
    # bridge (ovn.integration_bridge) on backend "ovn", else "br-dpdk".
    bridge: str | None = None
    # The Open_vSwitch database of that bridge; None: ovn.ovs_db.
    ovs_db: str | None = None
    # Where ovs-vswitchd creates dpdkvhostuser (client-mode) sockets: its
    # other_config:vhost-sock-dir, by default its run directory. Must be on
    # the same filesystem as socket_root (the socket is moved, not copied).
    ovs_socket_dir: Path = Path("/var/run/openvswitch")
    # Hugepage memory (MiB) one application needs per interface: an ADD is
    # refused when less is free on the node (0: no check).
    hugepages_mb: int = Field(default=0, ge=0)
    # How long ADD waits for OVS to create a client-mode socket.
    socket_timeout: float = Field(default=5.0, gt=0)


class MetricsConfig(_Section):
    """Prometheus metrics. Always served at /metrics on the agent's unix
    socket; also over TCP when ``address`` is set ("HOST:PORT", e.g.
    "127.0.0.1:9464"; off by default: the metrics name containers' kinds
    and load, keep them on a trusted address)."""

    address: str | None = None

    @field_validator("address")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not HOST:PORT")
        return value

    def host_port(self) -> tuple[str, int] | None:
        if self.address is None:
            return None
        host, _, port = self.address.rpartition(":")
        return host.strip("[]"), int(port)


class SriovConfig(_Section):
    """SR-IOV VF pools (docs/sriov.md)."""

    # Physical network -> the PFs serving it: a PF's netdev name ("eth1"), PCI
    # address ("0000:21:00.0") or vendor:device id ("8086:10c9"), each with an
    # optional VF range ("eth1#2-7", "0000:21:00.0#0,3-4").
    physical_networks: dict[str, list[str]] = Field(default_factory=dict)
    # The physical network of a network that names none (a local network
    # whose ports are direct).
    default_physical_network: str | None = None
    # VF trust for every VF handed out, unless the port's binding profile
    # says otherwise (None: leave the VF's baseline).
    trust: bool | None = None
    # Where sysfs is (a synthetic tree in unit tests).
    sysfs_root: Path = Path("/sys")

    @field_validator("physical_networks")
    @classmethod
    def _selectors(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        # The shape only; podwire.datapath.sriov.inventory reads the meaning.
        for physnet, selectors in value.items():
            for text in selectors:
                if not _SRIOV_SELECTOR.match(text):
                    raise ValueError(
                        f"SR-IOV selector {text!r} of {physnet} is not NAME, PCI address "
                        "or vendor:device, with an optional #N-M VF range"
                    )
        return value


class PoolSizes(_Section):
    """How many pre-created ports one pool keeps (docs/pools.md)."""

    # Refill when fewer than this many are ready.
    min: int = Field(default=2, ge=0)
    # Never more than this many ready and being created in one pool.
    max: int = Field(default=8, ge=1)
    # Ports created per refill round of one pool.
    batch: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> PoolSizes:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class PoolsConfig(PoolSizes):
    """Pools of pre-created ports (docs/pools.md). Off by default."""

    enabled: bool = False
    # Networks (names or ids) whose pools are filled from the start; any
    # other network gets a pool at its first ADD.
    networks: list[str] = Field(default_factory=list)
    # Per-network sizes (by the name or id used above, or the network's id).
    overrides: dict[str, PoolSizes] = Field(default_factory=dict)
    # Creates in flight at once, over all pools.
    max_creating: int = Field(default=4, ge=1)
    # Seconds between refill rounds (a take that empties a pool starts one at once).
    refill_interval: float = Field(default=2.0, gt=0)
    # Seconds between sweeps of this host's pool-marked ports (and at start).
    sweep_interval: float = Field(default=300.0, gt=0)
    # Bump after changing what pooled ports look like: entries of another
    # generation are drained (ready ones deleted, taken ones deleted at DEL).
    generation: int = Field(default=1, ge=1)


class Config(_Section):
    state_dir: Path = DEFAULT_STATE_DIR
    host_id: str = Field(default_factory=socket.gethostname)
    # "remote" is the neutron backend pointed at a podwire server ([remote]).
    backend: Literal["embedded", "ovn", "neutron", "remote"] = "embedded"
    embedded: EmbeddedConfig = Field(default_factory=EmbeddedConfig)
    ovn: OvnConfig = Field(default_factory=OvnConfig)
    remote: RemoteConfig = Field(default_factory=RemoteConfig)
    neutron: NeutronConfig = Field(default_factory=NeutronConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    vhostuser: VhostUserConfig = Field(default_factory=VhostUserConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    nested: NestedConfig = Field(default_factory=NestedConfig)
    sriov: SriovConfig = Field(default_factory=SriovConfig)
    pools: PoolsConfig = Field(default_factory=PoolsConfig)

    def embedded_db_url(self) -> str:
        return self.embedded.db_url or f"sqlite:///{self.state_dir / 'podwire.db'}"


def load_config(path: Path | None = None, **overrides: Any) -> Config:
    """Defaults, then the TOML file, then ``overrides`` (dotted keys allowed:
    ``{"ovn.nb_remotes": [...]}``). Raises InvalidInput naming the field."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise InvalidInput(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"config file {path} is not valid TOML: {exc}") from None
    for key, value in overrides.items():
        if value is None:
            continue
        target = data
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, kind="config") from None
