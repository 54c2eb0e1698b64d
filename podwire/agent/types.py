"""What frontends send to the agent and get back. Frontends know these types,
not drivers or backends."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from podwire.datapath.base import PluggedInterface
from podwire.datapath.vif import Vif
from podwire.model import Port, Subnet

Frontend = Literal["cni", "docker", "cli"]
AttachmentState = Literal["pending", "ready", "detaching"]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworkSelection(_Msg):
    """One element of Multus's network selection: one interface on one network."""

    network: str  # name or id
    ifname: str | None = None  # None: the agent picks the first free ethN
    ips: list[str] = Field(default_factory=list)
    mac: str | None = None
    port_id: str | None = None  # an existing backend port to adopt
    default_route: bool | None = None  # True: this one owns default routes + DNS


class AttachRequest(_Msg):
    """One container's interfaces on one or more networks.

    ``networks`` is the request's shape (the briefing's contract). The
    single-network fields below are today's shape, kept so that the CNI door
    and the CLI need no change until the core reshape lands: either form
    fills the other (``_one_shape``), and the agent attaches ``networks``.
    """

    container_id: str = Field(min_length=1, max_length=255)
    # A path (/var/run/netns/NAME, /proc/PID/ns/net); None when the runtime
    # moves the interface itself (Docker): see datapath.base.
    netns: str | None
    frontend: Frontend = "cni"
    networks: list[NetworkSelection] = Field(default_factory=list)
    # Frontend-specific keys kept on the record (CNI's network name, docker's
    # endpoint id): GC and the frontends find their attachments by them.
    labels: dict[str, str] = Field(default_factory=dict)
    # A door's own state, kept on the record (Docker's endpoint).
    frontend_state: dict[str, Any] = Field(default_factory=dict)
    # Today's single-network shape (see above).
    ifname: str = Field(default="eth0", min_length=1, max_length=15)
    network: str = ""
    mac: str | None = None
    ips: list[str] = Field(default_factory=list)
    port_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if data.get("networks"):
            first = data["networks"][0]
            first = first if isinstance(first, dict) else first.model_dump()
            data = {**data}
            for key in ("network", "mac", "ips", "port_id"):
                data.setdefault(key, first.get(key))
            if first.get("ifname"):
                data.setdefault("ifname", first["ifname"])
            if data.get("ips") is None:
                data["ips"] = []
        elif data.get("network"):
            data = {
                **data,
                "networks": [
                    {
                        "network": data["network"],
                        "ifname": data.get("ifname") or "eth0",
                        "ips": data.get("ips") or [],
                        "mac": data.get("mac"),
                        "port_id": data.get("port_id"),
                    }
                ],
            }
        return data

    @model_validator(mode="after")
    def _some_network(self) -> AttachRequest:
        if not self.networks:
            raise ValueError("an attach request names at least one network")
        return self


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
    # A door's own state (Docker's endpoint: joined or left), kept here so
    # that a door needs no second store.
    frontend_state: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime


class AttachedInterface(_Msg):
    attachment: Attachment
    interface: PluggedInterface
    port: Port
    subnets: list[Subnet]


class AttachResult(_Msg):
    """Every interface of the request, in the order of request.networks.

    ``attachment``, ``interface``, ``port`` and ``subnets`` are the first
    one's (today's single-network shape, which still constructs it)."""

    interfaces: list[AttachedInterface]

    @model_validator(mode="before")
    @classmethod
    def _one_shape(cls, data: Any) -> Any:
        if isinstance(data, dict) and "interfaces" not in data and "attachment" in data:
            return {"interfaces": [data]}
        return data

    @property
    def attachment(self) -> Attachment:
        return self.interfaces[0].attachment

    @property
    def interface(self) -> PluggedInterface:
        return self.interfaces[0].interface

    @property
    def port(self) -> Port:
        return self.interfaces[0].port

    @property
    def subnets(self) -> list[Subnet]:
        return self.interfaces[0].subnets


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
