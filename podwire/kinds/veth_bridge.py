"""Kind ``veth_bridge``: a veth pair into a Linux bridge per network, with
port security in nftables. The default of a host node (embedded backend).

Besides its VIF and driver, this kind owns the bridges' lifecycle: a
network's bridge is removed once no attachment of this host has used it for
``agent.bridge_idle_seconds`` (at once when the network is deleted), never
while an ADD plugs into it. Its driver deletes pairs in the background
(``async_delete``): DEL returns once the pair is down; ``flush`` waits for
the deletions, and ``reconcile`` deletes pairs a crash left down.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar, Protocol, cast

from podwire.datapath.base import Driver
from podwire.datapath.vif import VethBridge, VifBase
from podwire.errors import PodwireError
from podwire.kinds.base import BuildContext, KindEnv, KindPlugin
from podwire.kinds.common import common_fields, gateway_addresses, short_name
from podwire.model import Network

if TYPE_CHECKING:
    from podwire.datapath.veth_bridge import VethBridgeDriver
    from podwire.kinds.vm_ports import VmPorts

log = logging.getLogger(__name__)

BRIDGE_PREFIX = "pwbr"
HOST_VETH_PREFIX = "pwv"


def bridge_name(network_id: str) -> str:
    return short_name(BRIDGE_PREFIX, network_id)


def host_veth_name(port_id: str) -> str:
    return short_name(HOST_VETH_PREFIX, port_id)


class VethBridgeKind(KindPlugin):
    name = "veth_bridge"
    vif_class = VethBridge
    datapath_hints = ("bridge",)
    vif_types: ClassVar[tuple[str, ...]] = ("veth_bridge", "bridge")
    default_for = ("host",)

    def __init__(self, env: KindEnv) -> None:
        super().__init__(env)
        self.bridges = _Bridges(self, env.config.agent.bridge_idle_seconds)
        self.vm_ports: VmPorts | None = None

    def network_bridge(self, network_id: str) -> str:
        return bridge_name(network_id)

    def build(self, ctx: BuildContext) -> VethBridge:
        return VethBridge(
            **common_fields(ctx),
            bridge=bridge_name(ctx.network.id),
            host_ifname=host_veth_name(ctx.port.id),
            # The bridge answers on the gateway addresses (nothing is routed).
            bridge_addresses=gateway_addresses(ctx),
        )

    def make_driver(self) -> Driver:
        from podwire.datapath.veth_bridge import VethBridgeDriver

        # DEL releases the port, its addresses and the record before the
        # kernel's slow veth delete (15-25 ms) finishes on the driver's
        # worker; a plug needing the same names waits for it (docs/perf.md).
        return VethBridgeDriver(async_delete=True)

    def _bridge_driver(self) -> _BridgeDriver:
        return cast(_BridgeDriver, self.driver())

    def bridge_driver(self) -> VethBridgeDriver:
        from podwire.datapath.veth_bridge import VethBridgeDriver

        return cast(VethBridgeDriver, self.driver())

    # --- hooks ------------------------------------------------------------------

    def hold(self, vif: VifBase) -> contextlib.AbstractContextManager[None]:
        return self.bridges.using(cast(VethBridge, vif).bridge)

    def detached(self, vif: VifBase, network_id: str) -> None:
        self.bridges.maybe_idle(cast(VethBridge, vif).bridge, network_id)

    def network_deleted(self, network: Network) -> bool:
        return self.bridges.remove(bridge_name(network.id), network.id)

    def flush(self) -> None:
        self._bridge_driver().flush()

    def background_pending(self) -> int:
        return self._bridge_driver().pending_deletes()

    def reconcile(self, recorded: Sequence[VifBase]) -> list[str]:
        """veth pairs a DEL had taken down for background deletion when the
        agent died: no record keeps them, so nothing else would delete them."""
        keep = {v.host_ifname for v in recorded if isinstance(v, VethBridge)}
        swept = self._bridge_driver().sweep_retired(HOST_VETH_PREFIX, keep)
        self._start_vm_ports()
        return swept

    def _start_vm_ports(self) -> None:
        """The host side of this host's VM ports (podwire/kinds/vm_ports.py),
        when configured: its first pass runs here, at start-up before the
        agent serves (it is also the crash sweep), then every period."""
        config = self.env.config
        period = config.agent.vm_watch_seconds
        # Only the production kind (not a subclass): one loop per agent.
        if type(self) is not VethBridgeKind or period <= 0 or self.vm_ports is not None:
            return
        if config.agent.node_mode != "host":
            return
        from podwire.kinds.vm_ports import VmPorts

        self.vm_ports = VmPorts(self, period, config.state_dir)
        try:
            self.vm_ports.run_once()
        except PodwireError as exc:
            log.warning("VM ports: first pass: %s", exc.message)
        self.vm_ports.start()

    def close(self) -> None:
        if self.vm_ports is not None:
            self.vm_ports.stop()
        self.bridges.close()


class _BridgeDriver(Driver, Protocol):
    """The extras of VethBridgeDriver this plugin uses."""

    def flush(self, timeout: float = 30.0) -> None: ...
    def pending_deletes(self) -> int: ...
    def sweep_retired(self, prefix: str, keep: set[str]) -> list[str]: ...
    def remove_bridge(self, bridge: str, *, force: bool = False) -> bool: ...


class _Bridges:
    """Removes a network's Linux bridge when this host no longer uses it:
    ``idle_seconds`` after the DEL of its last attachment, or at once when
    the network is deleted.

    Race-safe against ADD without serializing ADDs: an ADD holds the bridge
    (``using``) from before its plug until it has plugged or undone
    everything; a removal waits until nobody holds it, keeps new ADDs out
    meanwhile, and removes only if no record of this host is on the network
    and the kernel bridge has no port (the driver refuses otherwise).
    """

    def __init__(self, kind: VethBridgeKind, idle_seconds: float) -> None:
        self._kind = kind
        self._idle_seconds = idle_seconds
        self._cond = threading.Condition()
        self._users: dict[str, int] = {}
        self._removing: set[str] = set()
        # bridge -> (idle since, network id), for the timer thread
        self._idle: dict[str, tuple[float, str]] = {}
        self._timer: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def using(self, bridge: str) -> Iterator[None]:
        with self._cond:
            while bridge in self._removing:
                self._cond.wait()
            self._users[bridge] = self._users.get(bridge, 0) + 1
            self._idle.pop(bridge, None)
        try:
            yield
        finally:
            with self._cond:
                left = self._users[bridge] - 1
                if left:
                    self._users[bridge] = left
                else:
                    del self._users[bridge]
                self._cond.notify_all()

    def maybe_idle(self, bridge: str, network_id: str) -> None:
        """After a DEL: if nothing of this host is on the network any more,
        remove its bridge once it stayed idle long enough."""
        if not network_id or self._kind.env.uses_network(network_id):
            return
        if self._idle_seconds <= 0:
            self.remove(bridge, network_id)
            return
        with self._cond:
            self._idle[bridge] = (time.monotonic(), network_id)
            if self._timer is None and not self._closed:
                self._timer = threading.Thread(
                    target=self._run, name="podwire-bridge-idle", daemon=True
                )
                self._timer.start()
            self._cond.notify_all()

    def remove(self, bridge: str, network_id: str) -> bool:
        with self._cond:
            while self._users.get(bridge) or bridge in self._removing:
                self._cond.wait()
            self._removing.add(bridge)
            self._idle.pop(bridge, None)
        try:
            if self._kind.env.uses_network(network_id):
                return False
            return bool(self._kind._bridge_driver().remove_bridge(bridge, force=False))
        except PodwireError as exc:
            log.warning("bridge %s of network %s stays: %s", bridge, network_id, exc.message)
            return False
        finally:
            with self._cond:
                self._removing.discard(bridge)
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                due = [
                    (bridge, network_id)
                    for bridge, (since, network_id) in self._idle.items()
                    if now - since >= self._idle_seconds
                ]
                if not due:
                    waits = [since + self._idle_seconds - now for since, _ in self._idle.values()]
                    self._cond.wait(timeout=min(waits) if waits else None)
                    continue
            for bridge, network_id in due:
                with self._cond:
                    entry = self._idle.get(bridge)
                if entry is not None and entry[1] == network_id:
                    self.remove(bridge, network_id)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
