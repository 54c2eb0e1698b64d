"""What frontends send to the agent and get back. Frontends know these types,
not drivers or backends."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny

from podwire.datapath.base import PluggedInterface
from podwire.datapath.vif import VifBase
from podwire.kinds.registry import parse_vif
from podwire.model import Port, Subnet

Frontend = Literal["cni", "docker", "cli"]
AttachmentState = Literal["pending", "ready", "detaching"]
StepState = Literal["intent", "done"]

# A record's VIF: read back as its kind's class, found through the kinds
# registry; written with all of that class's fields.
RecordedVif = Annotated[SerializeAsAny[VifBase], BeforeValidator(parse_vif)]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworkSelection(_Msg):
    """One network of an attach request: one element of Multus's network
    selection."""

    network: str = Field(min_length=1)  # a network's name or id
    # None: the agent picks the container's first free ethN.
    ifname: str | None = Field(default=None, min_length=1, max_length=15)
    # Runtime hints, all optional: fixed addresses and MAC (CNI args "ips",
    # "mac"; docker --ip), an existing backend port to adopt (Zun's port=).
    ips: list[str] = Field(default_factory=list)
    mac: str | None = None
    port_id: str | None = None
    # True: ``port_id`` is a reservation a door made for this attachment
    # (Docker's IPAM): the attachment owns it from now on and DEL deletes it.
    # False: the caller's port, given back unbound at DEL.
    port_reserved: bool = False
    # True: this one owns the default routes and DNS (see agent/attach.py
    # for the rule); False: never this one; None: the agent decides.
    default_route: bool | None = None
    # The NUMA node the workload runs on (CNI runtimeConfig "numaNode", args
    # "numa_node", CNI_ARGS NUMA_NODE; a Docker option): kinds with a host
    # device (SR-IOV VFs) prefer one there and report the node they chose.
    numa_node: int | None = Field(default=None, ge=0, le=1023)


class AttachRequest(_Msg):
    """Interfaces for one container, one per selected network: attached in
    order under the container's one lock; a failure undoes them all."""

    container_id: str = Field(min_length=1, max_length=255)
    # A path (/var/run/netns/NAME, /proc/PID/ns/net); None when the runtime
    # moves the interface itself (Docker): see datapath.base.
    netns: str | None
    frontend: Frontend = "cni"
    networks: list[NetworkSelection] = Field(min_length=1)
    # Frontend-specific keys copied onto every record (CNI's network name,
    # docker's endpoint id): GC and the frontends find their attachments by them.
    labels: dict[str, str] = Field(default_factory=dict)
    # A door's own state, kept on the record (Docker's endpoint).
    frontend_state: dict[str, Any] = Field(default_factory=dict)


class Step(_Msg):
    """One recorded step of an ADD: written with ``state="intent"`` and
    everything its undo needs before it acts, marked ``done`` (with what it
    learned, such as the port id) after. DEL, GC and the start-up reconcile
    undo the steps in reverse from these alone (podwire.agent.steps)."""

    name: str
    state: StepState = "intent"
    data: dict[str, Any] = Field(default_factory=dict)


# The record's label holding the network as the request named it (name or id).
LABEL_NETWORK = "podwire.network"


class Attachment(_Msg):
    """The agent's durable record: the source of truth for DEL, CHECK and GC."""

    id: str
    container_id: str
    netns: str | None
    ifname: str
    network_id: str
    port_id: str | None
    # True when the agent created the port (DEL deletes it); False when the
    # caller brought an existing port (DEL only unbinds it).
    owns_port: bool = True
    vif: RecordedVif | None = None
    state: AttachmentState = "pending"
    frontend: Frontend = "cni"
    labels: dict[str, str] = Field(default_factory=dict)
    # Whether this attachment owns the container's default routes and DNS.
    default_route: bool = True
    frontend_state: dict[str, Any] = Field(default_factory=dict)
    steps: list[Step] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime

    @property
    def network_ref(self) -> str:
        """The network as the request named it (name or id), else its id."""
        return self.labels.get(LABEL_NETWORK) or self.network_id


class AttachedInterface(_Msg):
    attachment: Attachment
    interface: PluggedInterface
    port: Port
    subnets: list[Subnet]


class AttachResult(_Msg):
    # In the order of the request's networks.
    interfaces: list[AttachedInterface]


class DetachRequest(_Msg):
    container_id: str
    ifname: str = "eth0"
    # When given, DEL is scoped to this network (CNI's config names one).
    network: str | None = None
    netns: str | None = None
    # Whose ports a DEL without a record may release (device_owner podwire:<frontend>).
    frontend: Frontend = "cni"


class CheckRequest(_Msg):
    container_id: str
    ifname: str = "eth0"
    network: str | None = None
    netns: str | None = None


class GcRequest(_Msg):
    """Remove every attachment of ``frontend`` (and matching ``labels``) whose
    (container_id, ifname) is not in ``keep``."""

    frontend: Frontend = "cni"
    labels: dict[str, str] = Field(default_factory=dict)
    keep: list[tuple[str, str]] = Field(default_factory=list)
    # When given (a network name or id), also delete this host's ports of the
    # frontend on that network that no record knows (leaked by a crash).
    network: str | None = None


class AgentStatus(_Msg):
    ready: bool
    backend: str
    backend_ok: bool
    reason: str = ""
    attachments: int = 0
    in_flight: int = 0
    drivers: list[dict[str, Any]] = Field(default_factory=list)
    # Pooled ports by state (creating, ready, taken, ...), over all pools;
    # empty when pools are off (docs/pools.md).
    pools: dict[str, int] = Field(default_factory=dict)
