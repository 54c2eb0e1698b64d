"""A Backend that passes every call to another one, with fault points around it.

``open_backend`` wraps the opened backend in this only when a fault plan is in
force (podwire.faults), so normal runs pay nothing. Every method of the
Backend protocol hits ``backend.<method>`` before the call and
``backend.<method>:after`` once the wrapped backend has answered: a fault at
the first means the backend never saw the call, at the second that it did the
work but the caller never heard (the case undo must handle).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from podwire import faults
from podwire.backends.base import Backend, Filters
from podwire.model import (
    Context,
    Network,
    NetworkCreate,
    NetworkUpdate,
    Port,
    PortCreate,
    PortUpdate,
    Subnet,
    SubnetCreate,
    SubnetUpdate,
    SubPort,
    Trunk,
    TrunkCreate,
    TrunkUpdate,
)

T = TypeVar("T")


def protocol_methods() -> frozenset[str]:
    """The names of the Backend protocol's methods (what this wrapper covers)."""
    return frozenset(
        name
        for name, value in vars(Backend).items()
        if callable(value) and not name.startswith("_")
    )


def fault_points() -> frozenset[str]:
    """Every point this wrapper hits."""
    methods = protocol_methods()
    return frozenset({f"backend.{m}" for m in methods} | {f"backend.{m}:after" for m in methods})


class FaultyBackend:
    def __init__(self, inner: Backend) -> None:
        unknown = {p for p in faults.planned_points() if p.startswith("backend.")} - fault_points()
        if unknown:
            # A typo in a plan would otherwise never fire and a test would pass.
            raise faults.FaultPlanError(
                f"no Backend method for point(s) {', '.join(sorted(unknown))}"
            )
        self.inner = inner
        self.name = inner.name

    def __getattr__(self, attr: str) -> Any:
        # Anything beyond the protocol's methods (its data attributes, a
        # backend's own extras) passes through unwrapped; the methods are all
        # defined below.
        if attr == "inner":  # not set yet (a failed __init__): no recursion
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def _through(self, method: str, call: Callable[[], T]) -> T:
        faults.hit(f"backend.{method}")
        result = call()
        faults.hit(f"backend.{method}:after")
        return result

    # networks
    def create_network(self, ctx: Context, req: NetworkCreate) -> Network:
        return self._through("create_network", lambda: self.inner.create_network(ctx, req))

    def get_network(self, ctx: Context, network_id: str) -> Network:
        return self._through("get_network", lambda: self.inner.get_network(ctx, network_id))

    def list_networks(self, ctx: Context, filters: Filters | None = None) -> list[Network]:
        return self._through("list_networks", lambda: self.inner.list_networks(ctx, filters))

    def update_network(
        self, ctx: Context, network_id: str, req: NetworkUpdate, *, if_revision: int | None = None
    ) -> Network:
        return self._through(
            "update_network",
            lambda: self.inner.update_network(ctx, network_id, req, if_revision=if_revision),
        )

    def delete_network(self, ctx: Context, network_id: str) -> None:
        self._through("delete_network", lambda: self.inner.delete_network(ctx, network_id))

    # subnets
    def create_subnet(self, ctx: Context, req: SubnetCreate) -> Subnet:
        return self._through("create_subnet", lambda: self.inner.create_subnet(ctx, req))

    def get_subnet(self, ctx: Context, subnet_id: str) -> Subnet:
        return self._through("get_subnet", lambda: self.inner.get_subnet(ctx, subnet_id))

    def list_subnets(self, ctx: Context, filters: Filters | None = None) -> list[Subnet]:
        return self._through("list_subnets", lambda: self.inner.list_subnets(ctx, filters))

    def update_subnet(
        self, ctx: Context, subnet_id: str, req: SubnetUpdate, *, if_revision: int | None = None
    ) -> Subnet:
        return self._through(
            "update_subnet",
            lambda: self.inner.update_subnet(ctx, subnet_id, req, if_revision=if_revision),
        )

    def delete_subnet(self, ctx: Context, subnet_id: str) -> None:
        self._through("delete_subnet", lambda: self.inner.delete_subnet(ctx, subnet_id))

    # ports
    def create_port(self, ctx: Context, req: PortCreate) -> Port:
        return self._through("create_port", lambda: self.inner.create_port(ctx, req))

    def get_port(self, ctx: Context, port_id: str) -> Port:
        return self._through("get_port", lambda: self.inner.get_port(ctx, port_id))

    def list_ports(self, ctx: Context, filters: Filters | None = None) -> list[Port]:
        return self._through("list_ports", lambda: self.inner.list_ports(ctx, filters))

    def update_port(
        self, ctx: Context, port_id: str, req: PortUpdate, *, if_revision: int | None = None
    ) -> Port:
        return self._through(
            "update_port",
            lambda: self.inner.update_port(ctx, port_id, req, if_revision=if_revision),
        )

    def delete_port(self, ctx: Context, port_id: str) -> None:
        self._through("delete_port", lambda: self.inner.delete_port(ctx, port_id))

    def set_ports_status(self, ctx: Context, port_ids: Sequence[str], status: str) -> None:
        self._through(
            "set_ports_status", lambda: self.inner.set_ports_status(ctx, port_ids, status)
        )

    # trunks
    def create_trunk(self, ctx: Context, req: TrunkCreate) -> Trunk:
        return self._through("create_trunk", lambda: self.inner.create_trunk(ctx, req))

    def get_trunk(self, ctx: Context, trunk_id: str) -> Trunk:
        return self._through("get_trunk", lambda: self.inner.get_trunk(ctx, trunk_id))

    def list_trunks(self, ctx: Context, filters: Filters | None = None) -> list[Trunk]:
        return self._through("list_trunks", lambda: self.inner.list_trunks(ctx, filters))

    def update_trunk(
        self, ctx: Context, trunk_id: str, req: TrunkUpdate, *, if_revision: int | None = None
    ) -> Trunk:
        return self._through(
            "update_trunk",
            lambda: self.inner.update_trunk(ctx, trunk_id, req, if_revision=if_revision),
        )

    def delete_trunk(self, ctx: Context, trunk_id: str) -> None:
        self._through("delete_trunk", lambda: self.inner.delete_trunk(ctx, trunk_id))

    def add_subports(self, ctx: Context, trunk_id: str, sub_ports: list[SubPort]) -> Trunk:
        return self._through(
            "add_subports", lambda: self.inner.add_subports(ctx, trunk_id, sub_ports)
        )

    def remove_subports(self, ctx: Context, trunk_id: str, port_ids: list[str]) -> Trunk:
        return self._through(
            "remove_subports", lambda: self.inner.remove_subports(ctx, trunk_id, port_ids)
        )

    def close(self) -> None:
        self._through("close", self.inner.close)
