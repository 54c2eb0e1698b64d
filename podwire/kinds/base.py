"""The kind plugin contract: everything one data path needs, in one class.

A kind is registered once (podwire.kinds.registry) and provides:

* ``name`` and ``vif_class``: its VIF, plain data kept in the attachment
  record (``vif_class.kind`` is ``name``);
* what it matches, for the one decision of the kind (``KindChoice``):
  ``datapath_hints`` (a network's ``datapath``), ``vif_types`` (the
  backend's binding answer), ``vnic_types`` (the port's), ``default_for``
  (node modes it serves by default), and ``matches()`` for finer checks;
* ``build(ctx)``: its VIF from the backend's port and binding, the network,
  subnets, the request's selection, the host allocation and node config;
* ``make_driver()``: its datapath driver (``driver()`` caches it);
* ``describe()``: whether this host can do it (the driver's describe);
* optional hooks, no-ops here; the agent records a step only for the hooks a
  plugin overrides (``has_hook``):
  - ``allocate`` / ``release``: something on the host (a VF, a VLAN id, a
    socket directory); step ``kind.allocate``;
  - ``apply_backend`` / ``undo_backend``: changes elsewhere in the backend
    (the VM port's allowed-address-pairs, a trunk sub-port); step
    ``kind.backend``;
  - ``hold``: keeps a shared host object (a network's bridge) while an ADD
    plugs into it;
  - ``detached``: after a DEL (idle timers);
  - ``reconcile``: after a crash, with the VIFs the records still hold;
  - ``flush``: at stop, background work finishes;
  - ``network_deleted``: the network is gone; drop what the host kept for it;
  - ``device_info``: Multus device-info for the network-status document
    and the device-info file (podwire.agent.device_info);
  - ``inventory``: the host resources it hands out and their holders.

Every undo hook gets only what the record holds (the step's data, the VIF):
never the netns, never names rebuilt from ids. Undo hooks are idempotent and
must accept a step that was only intended (the process died before it
finished): the intent's data names what to look for.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from podwire.backends.base import Backend
from podwire.config import Config
from podwire.datapath.base import Driver, DriverDescription, PluggedInterface
from podwire.datapath.vif import VifBase
from podwire.model import Context, Network, Port, Subnet

# binding.vif_type values that say "the backend has not decided".
UNDECIDED_VIF_TYPES = ("", "unbound", "binding_failed")


@dataclass(frozen=True)
class KindChoice:
    """What the one decision of the VIF kind looks at, after the backend
    answered: its binding (vif_type, vif_details), the port's vnic_type, the
    network's datapath hint, and the node's mode ("host" or "nested")."""

    vif_type: str = "unbound"
    vif_details: Mapping[str, Any] = field(default_factory=dict)
    vnic_type: str = "normal"
    datapath_hint: str | None = None
    node_mode: str = "host"
    network: str = ""  # for error messages only
    # The node's own choice for networks without a hint (agent.default_kind).
    default_kind: str | None = None

    @classmethod
    def of(
        cls, port: Port, network: Network, node_mode: str, default_kind: str | None = None
    ) -> KindChoice:
        return cls(
            vif_type=port.binding.vif_type,
            vif_details=port.binding.vif_details,
            vnic_type=port.vnic_type,
            datapath_hint=network.datapath,
            node_mode=node_mode,
            network=network.name or network.id,
            default_kind=default_kind,
        )


class Selection(Protocol):
    """The part of the request's network selection a builder may read
    (podwire.agent.types.NetworkSelection; kinds sit below the agent)."""

    network: str
    ifname: str | None
    ips: list[str]
    mac: str | None
    port_id: str | None


@dataclass(frozen=True)
class BuildContext:
    """Everything a builder may look at."""

    network: Network
    port: Port
    subnets: Sequence[Subnet]
    config: Config
    ifname: str
    # Only the container's default-route owner gets default routes and DNS.
    default_route: bool = True
    selection: Selection | None = None
    # The kind's host allocation (``allocate``'s result), if it has one.
    allocation: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KindEnv:
    """What a plugin instance may use besides its arguments: the node's
    configuration, the backend (for side effects), the agent's project
    context, and a question about the agent's records."""

    config: Config
    backend: Backend
    ctx: Context
    # Whether any attachment record of this host is on that network.
    uses_network: Callable[[str], bool]


@dataclass(frozen=True)
class AttachmentRef:
    """Which attachment a hook works for (ids only; hooks get no record)."""

    attachment_id: str
    container_id: str
    ifname: str
    network_id: str
    port_id: str
    # The request's NUMA preference (NetworkSelection.numa_node).
    numa_node: int | None = None


class KindPlugin:
    name: ClassVar[str]
    vif_class: ClassVar[type[VifBase]]
    datapath_hints: ClassVar[tuple[str, ...]] = ()
    vif_types: ClassVar[tuple[str, ...]] = ()
    vnic_types: ClassVar[tuple[str, ...]] = ()
    default_for: ClassVar[tuple[str, ...]] = ()
    #: whether the agent binds the kind's port to this host; False for kinds
    #: whose port no host plugs (a nested container's port rides on the VM's).
    binds_port: ClassVar[bool] = True
    #: node modes the kind runs on at all (empty: every mode). A network's
    #: datapath hint naming only kinds of other modes does not bind this
    #: node: e.g. "macvlan" says how containers inside VMs join the network,
    #: while the host's own containers join it by the host's default kind.
    node_modes: ClassVar[tuple[str, ...]] = ()
    #: whether an agent of the kind's node modes acts for ONE project (a VM
    #: owner's token): a network or port its token cannot see is then
    #: another project's, refused as Forbidden (registry.unseen_is_forbidden).
    one_project: ClassVar[bool] = False

    def __init__(self, env: KindEnv) -> None:
        self.env = env
        self._driver: Driver | None = None
        self._driver_lock = threading.Lock()

    # --- decision -----------------------------------------------------------------

    @classmethod
    def matches(cls, choice: KindChoice) -> bool:
        """Finer than the tuples above (e.g. vif_details a kind requires).
        Only asked of kinds the tuples already selected."""
        return True

    # --- VIF and driver -----------------------------------------------------------

    def build(self, ctx: BuildContext) -> VifBase:
        raise NotImplementedError

    def make_driver(self) -> Driver:
        raise NotImplementedError

    def driver(self) -> Driver:
        """One driver per plugin instance, built on first use: importing a
        driver's library (ovsdbapp) costs nothing until its kind is used."""
        with self._driver_lock:
            if self._driver is None:
                self._driver = self.make_driver()
            return self._driver

    def describe(self) -> DriverDescription:
        try:
            return self.driver().describe()
        except Exception as exc:  # a driver that cannot even load is unavailable
            return DriverDescription(
                name=self.name, kinds=[self.name], available=False, reason=str(exc)
            )

    # --- optional hooks -------------------------------------------------------------

    def has_hook(self, hook: str) -> bool:
        """Whether this plugin overrides ``hook`` (the agent records a step
        only for hooks that do something)."""
        return getattr(type(self), hook) is not getattr(KindPlugin, hook)

    def allocate(self, ref: AttachmentRef, intent: dict[str, Any]) -> dict[str, Any]:
        """Take something on the host; return what ``release`` needs (kept
        in the step's data). ``intent`` is already recorded."""
        return {}

    def release(self, data: Mapping[str, Any]) -> None:
        """Give back what ``allocate`` took, from the step's data alone."""

    def apply_backend(self, ref: AttachmentRef, vif: VifBase) -> dict[str, Any]:
        """Change the backend where the kind must; return what the undo needs."""
        return {}

    def undo_backend(self, data: Mapping[str, Any]) -> None:
        """Undo ``apply_backend`` from the step's data alone."""

    def hold(self, vif: VifBase) -> contextlib.AbstractContextManager[None]:
        """Held from before the plug until the ADD plugged or undid all."""
        return contextlib.nullcontext()

    def detached(self, vif: VifBase, network_id: str) -> None:
        """After a DEL of an attachment of this kind."""

    def reconcile(self, recorded: Sequence[VifBase]) -> list[str]:
        """After a crash: remove what this kind left on the host that no
        record holds; return what was removed (for the log)."""
        return []

    def flush(self) -> None:
        """At stop (and before reconcile sweeps): finish background work."""

    def network_deleted(self, network: Network) -> bool:
        """The network was deleted: drop what this host kept for it."""
        return False

    def device_info(self, vif: VifBase, interface: PluggedInterface | None) -> dict[str, Any]:
        """Multus network-status device-info, for kinds that have one."""
        return {}

    def background_pending(self) -> int:
        """Work queued off the request path (e.g. veth pairs still being
        deleted), for metrics. Cheap: read at every scrape."""
        return 0

    def levels(self) -> dict[tuple[str, str], int]:
        """How much of what this kind hands out is in use, by (pool, state)
        (SR-IOV: VFs by physical network, leased or free), for metrics.
        Cheap: read at every scrape."""
        return {}

    def inventory(self) -> list[dict[str, Any]]:
        """The host resources this kind hands out, with who holds each (SR-IOV
        VFs and their leases): ``GET /v1/inventory`` and ``podwire vf list``."""
        return []

    def close(self) -> None:
        """The agent stops; ``flush`` ran already."""
