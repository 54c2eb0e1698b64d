"""The Driver contract: how one kind of VIF reaches a container.

Drivers are the only code that touches netlink, OVS or sysfs. They are
idempotent where the kernel allows: ``unplug`` of something already gone is
success (a missing netns or interface is not an error), so every DEL can be
repeated. ``plug`` either completes or undoes what it made before raising.

``netns`` is a path (/var/run/netns/NAME, /proc/PID/ns/net). For runtimes
that move the interface themselves (Docker's libnetwork), ``plug`` gets
``netns=None``: the container end then stays in the host namespace under
``ifname`` with its MAC and MTU set, and the runtime moves it and sets the
addresses; ``unplug(vif, None, ifname)`` removes whatever is left of it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from podwire.datapath.vif import Vif


class PluggedInterface(BaseModel):
    """What the container got, as the frontends report it."""

    model_config = ConfigDict(extra="forbid")

    # The name inside the container; None for kinds with no netdev there
    # (vhost-user, SR-IOV bound to vfio-pci).
    ifname: str | None
    mac: str | None
    sandbox: str | None  # the netns path
    mtu: int | None = None
    addresses: list[str] = []
    # The host-side device (veth peer, VF netdev), for CNI's host interface.
    host_ifname: str | None = None
    # Kind-specific facts the container's application needs (vhost-user socket
    # path, PCI address of a vfio VF, ...).
    extra: dict[str, str] = {}


class DriverDescription(BaseModel):
    """os-vif's describe(): which kinds, and whether this host can do them."""

    name: str
    kinds: list[str]
    available: bool
    reason: str = ""  # why not, when unavailable
    # What the host has left for this kind (e.g. "hugepages_free_mb").
    resources: dict[str, int] = {}


@runtime_checkable
class Driver(Protocol):
    name: str
    kinds: tuple[str, ...]

    def describe(self) -> DriverDescription: ...

    def plug(self, vif: Vif, netns: str | None, ifname: str) -> PluggedInterface: ...

    def unplug(self, vif: Vif, netns: str | None, ifname: str) -> None: ...

    # Raises podwire.errors.Drift naming the field that differs.
    def check(self, vif: Vif, netns: str | None, ifname: str) -> None: ...
