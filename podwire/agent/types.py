"""What frontends send to the agent and get back. Frontends know these types,
not drivers or backends."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from podwire.datapath.base import PluggedInterface
from podwire.datapath.vif import Vif
from podwire.model import Port, Subnet

Frontend = Literal["cni", "docker", "cli"]
AttachmentState = Literal["pending", "ready", "detaching"]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworkSelection(_Msg):
    """One element of Multus's network selection: one network of a container."""

    network: str  # a network's name or id
    # None: the agent picks the first free ethN of the container.
    ifname: str | None = Field(default=None, min_length=1, max_length=15)
    # Runtime hints, all optional: a fixed MAC or addresses (CNI args "mac",
    # "ips"; docker --ip), an existing backend port to adopt (Zun's port=<uuid>).
    ips: list[str] = Field(default_factory=list)
    mac: str | None = None
    port_id: str | None = None
    # True: this one owns the default routes and DNS (see Agent._default_owner).
    default_route: bool | None = None


class AttachRequest(_Msg):
    """One container's interfaces on one or more networks, attached in order
    under one lock and one undo stack: all of them, or none."""

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
    vif: Vif | None = None
    state: AttachmentState = "pending"
    frontend: Frontend = "cni"
    labels: dict[str, str] = Field(default_factory=dict)
    # Whether this interface owns the container's default routes and DNS.
    default_route: bool = False
    frontend_state: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


class AttachedInterface(_Msg):
    attachment: Attachment
    interface: PluggedInterface
    port: Port
    subnets: list[Subnet]


class AttachResult(_Msg):
    interfaces: list[AttachedInterface]  # in the order of request.networks


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
