"""The Backend protocol over Neutron's v2.0 API, through openstacksdk.

One client for a real Neutron and for ``podwire server`` (which speaks the
same API): openstacksdk builds the session (clouds.yaml, Keystone, a token,
noauth) and finds the endpoint; requests go through the SDK's network proxy
as Neutron JSON rather than through its resource classes, because those keep
only the attributes the SDK knows and would drop the extension attributes
podwire server answers (``podwire:datapath``, the trunk sub-port view).

Who the caller is belongs to the session, never to the ``Context`` each call
takes (Neutron scopes every call by the token). A request's explicit
``project_id`` is sent as is: Neutron refuses it unless the session is admin.
The client never writes what Neutron owns: a port's status (the mechanism
driver's), the binding's vif_type and vif_details (ML2's answer, from which
the agent decides the kind).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import keystoneauth1.exceptions as ks_exc
import openstack.connection
import openstack.exceptions

from podwire import errors
from podwire.backends.base import Filters, set_status_one_by_one
from podwire.backends.neutron import codec
from podwire.backends.neutron.errors import error_from_answer
from podwire.backends.neutron.session import connect
from podwire.config import Config, NeutronConfig
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


def _if_match(if_revision: int | None) -> dict[str, str]:
    """Neutron's compare-and-swap: the update applies only at that revision."""
    return {} if if_revision is None else {"If-Match": f"revision_number={if_revision}"}


def _object_of(path: str) -> tuple[str | None, str | None]:
    """``/networks/ID[/...]`` -> ("network", ID); ``/ports`` -> ("port", None)."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None, None
    kind = parts[0][:-1] if parts[0].endswith("s") else parts[0]
    return kind, parts[1] if len(parts) > 1 else None


class NeutronBackend:
    name = "neutron"
    # ML2 sets a port's status from the data plane (ovn-controller's binding
    # through the OVN driver; an L2 agent elsewhere): the agent never does.
    derives_port_status: bool = True
    # ML2 answers the binding (ML2/OVN and ML2/OVS: "ovs" for a normal port);
    # the agent writes only binding:host_id and decides from the answer.
    bound_vif_type: str | None = "ovs"

    def __init__(
        self, connection: openstack.connection.Connection, *, status_from_agent: bool = False
    ) -> None:
        self._conn = connection
        self._proxy: Any = None
        self._drop = codec.NEUTRON_OWNS
        # Neutron changes tags through /ports/ID/tags only, never in a port PUT.
        self._tags_apart: frozenset[str] = frozenset({"tags"})
        if status_from_agent:
            # podwire server's embedded store has no data plane to set status
            # and no binding of its own: the agent writes both, as before.
            self.derives_port_status = False
            self.bound_vif_type = None
            self._drop = frozenset()
            self._tags_apart = frozenset()

    @classmethod
    def from_config(cls, config: Config) -> NeutronBackend:
        return cls(connect(config.neutron))

    @classmethod
    def for_remote(cls, config: Config) -> NeutronBackend:
        """``backend = "remote"``: this backend pointed at a podwire server."""
        url = config.remote.url
        if not url:
            raise errors.InvalidInput(
                "backend 'remote' needs remote.url (--server-url)",
                kind="config",
                field="remote.url",
            )
        return cls.at(url, config.remote.token)

    @classmethod
    def at(cls, url: str, token: str | None = None, *, timeout: float = 30.0) -> NeutronBackend:
        """A podwire server (http(s)://HOST:PORT) or agent (unix:///PATH)."""
        cfg = NeutronConfig(endpoint=url, token=token, timeout=timeout)
        return cls(connect(cfg), status_from_agent=True)

    # --- plumbing -----------------------------------------------------------------

    @property
    def connection(self) -> openstack.connection.Connection:
        return self._conn

    def _network_proxy(self) -> Any:
        if self._proxy is None:
            try:
                self._proxy = self._conn.network
            except (openstack.exceptions.SDKException, ks_exc.ClientException) as exc:
                raise errors.Unavailable(f"cannot reach Neutron: {exc}") from None
        return self._proxy

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        proxy = self._network_proxy()
        try:
            response = proxy.request(
                path,
                method,
                json=body,
                params=params or None,
                headers={"Accept": "application/json", **(headers or {})},
                raise_exc=False,
            )
        except (ks_exc.ConnectionError, ks_exc.ClientException) as exc:
            raise errors.Unavailable(f"cannot reach Neutron at {path}: {exc}") from None
        except openstack.exceptions.SDKException as exc:
            raise errors.Unavailable(f"cannot reach Neutron: {exc}") from None
        if response.status_code >= 400:
            kind, object_id = _object_of(path)
            raise error_from_answer(
                response.status_code,
                response.text,
                f"{method} {path}",
                kind=kind,
                object_id=object_id,
                headers=response.headers,
            )
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise errors.Unavailable(f"Neutron answered {method} {path} with non-JSON") from None

    @staticmethod
    def _member(answer: Any, key: str) -> Any:
        if not isinstance(answer, dict) or key not in answer:
            raise errors.Unavailable(f"Neutron answered without {key!r}")
        return answer[key]

    def _list(self, collection: str, kind: str, filters: Filters | None) -> Iterator[Any]:
        answer = self._call("GET", f"/{collection}", params=codec.query(kind, filters))
        yield from self._member(answer, collection)

    # --- networks -------------------------------------------------------------------

    def _network(self, data: Any) -> Network:
        return codec.from_wire(Network, data, codec.NETWORK_IN)

    def create_network(self, ctx: Context, req: NetworkCreate) -> Network:
        body = {"network": codec.to_wire(req, codec.NETWORK_IN)}
        return self._network(self._member(self._call("POST", "/networks", body=body), "network"))

    def get_network(self, ctx: Context, network_id: str) -> Network:
        return self._network(self._member(self._call("GET", f"/networks/{network_id}"), "network"))

    def list_networks(self, ctx: Context, filters: Filters | None = None) -> list[Network]:
        return [self._network(n) for n in self._list("networks", "network", filters)]

    def update_network(
        self, ctx: Context, network_id: str, req: NetworkUpdate, *, if_revision: int | None = None
    ) -> Network:
        body = {"network": codec.to_wire(req, codec.NETWORK_IN)}
        answer = self._call(
            "PUT", f"/networks/{network_id}", body=body, headers=_if_match(if_revision)
        )
        return self._network(self._member(answer, "network"))

    def delete_network(self, ctx: Context, network_id: str) -> None:
        self._call("DELETE", f"/networks/{network_id}")

    # --- subnets --------------------------------------------------------------------

    def _subnet(self, data: Any) -> Subnet:
        return codec.from_wire(Subnet, data, codec.SUBNET_IN)

    def create_subnet(self, ctx: Context, req: SubnetCreate) -> Subnet:
        body = {"subnet": codec.to_wire(req, codec.SUBNET_IN)}
        return self._subnet(self._member(self._call("POST", "/subnets", body=body), "subnet"))

    def get_subnet(self, ctx: Context, subnet_id: str) -> Subnet:
        return self._subnet(self._member(self._call("GET", f"/subnets/{subnet_id}"), "subnet"))

    def list_subnets(self, ctx: Context, filters: Filters | None = None) -> list[Subnet]:
        return [self._subnet(s) for s in self._list("subnets", "subnet", filters)]

    def update_subnet(
        self, ctx: Context, subnet_id: str, req: SubnetUpdate, *, if_revision: int | None = None
    ) -> Subnet:
        body = {"subnet": codec.to_wire(req, codec.SUBNET_IN)}
        answer = self._call(
            "PUT", f"/subnets/{subnet_id}", body=body, headers=_if_match(if_revision)
        )
        return self._subnet(self._member(answer, "subnet"))

    def delete_subnet(self, ctx: Context, subnet_id: str) -> None:
        self._call("DELETE", f"/subnets/{subnet_id}")

    # --- ports ----------------------------------------------------------------------

    def _port(self, data: Any) -> Port:
        port = codec.from_wire(Port, data, codec.PORT_IN)
        # Neutron fills a pair's missing MAC with the port's; the model keeps
        # None for "the port's MAC", so an unchanged port round-trips equal.
        for pair in port.allowed_address_pairs:
            if pair.mac_address == port.mac_address:
                pair.mac_address = None
        return port

    def create_port(self, ctx: Context, req: PortCreate) -> Port:
        body = {"port": codec.to_wire(req, codec.PORT_IN, self._drop)}
        port = self._port(self._member(self._call("POST", "/ports", body=body), "port"))
        if req.tags and sorted(port.tags) != sorted(req.tags):
            # A Neutron without tags-on-create (extension "tag-creation")
            # ignores them in the POST: set them through the tag API.
            port = self._set_tags(port.id, req.tags)
        return port

    def _set_tags(self, port_id: str, tags: list[str]) -> Port:
        self._call("PUT", f"/ports/{port_id}/tags", body={"tags": tags})
        return self.get_port(Context(project_id="-"), port_id)

    def get_port(self, ctx: Context, port_id: str) -> Port:
        return self._port(self._member(self._call("GET", f"/ports/{port_id}"), "port"))

    def list_ports(self, ctx: Context, filters: Filters | None = None) -> list[Port]:
        return [self._port(p) for p in self._list("ports", "port", filters)]

    def update_port(
        self, ctx: Context, port_id: str, req: PortUpdate, *, if_revision: int | None = None
    ) -> Port:
        attrs = codec.to_wire(req, codec.PORT_IN, self._drop | self._tags_apart)
        port: Port | None = None
        if attrs or req.tags is None:
            answer = self._call(
                "PUT", f"/ports/{port_id}", body={"port": attrs}, headers=_if_match(if_revision)
            )
            port = self._port(self._member(answer, "port"))
        if req.tags is not None and self._tags_apart:
            port = self._set_tags(port_id, req.tags)
        assert port is not None
        return port

    def delete_port(self, ctx: Context, port_id: str) -> None:
        self._call("DELETE", f"/ports/{port_id}")

    def set_ports_status(self, ctx: Context, port_ids: Sequence[str], status: str) -> None:
        set_status_one_by_one(self, ctx, port_ids, status)

    # --- trunks -----------------------------------------------------------------------

    def _trunk(self, data: Any) -> Trunk:
        return codec.from_wire(Trunk, data, codec.TRUNK_IN)

    def create_trunk(self, ctx: Context, req: TrunkCreate) -> Trunk:
        body = {"trunk": codec.to_wire(req, codec.TRUNK_IN)}
        return self._trunk(self._member(self._call("POST", "/trunks", body=body), "trunk"))

    def get_trunk(self, ctx: Context, trunk_id: str) -> Trunk:
        return self._trunk(self._member(self._call("GET", f"/trunks/{trunk_id}"), "trunk"))

    def list_trunks(self, ctx: Context, filters: Filters | None = None) -> list[Trunk]:
        return [self._trunk(t) for t in self._list("trunks", "trunk", filters)]

    def update_trunk(
        self, ctx: Context, trunk_id: str, req: TrunkUpdate, *, if_revision: int | None = None
    ) -> Trunk:
        body = {"trunk": codec.to_wire(req, codec.TRUNK_IN)}
        answer = self._call("PUT", f"/trunks/{trunk_id}", body=body, headers=_if_match(if_revision))
        return self._trunk(self._member(answer, "trunk"))

    def delete_trunk(self, ctx: Context, trunk_id: str) -> None:
        self._call("DELETE", f"/trunks/{trunk_id}")

    def add_subports(self, ctx: Context, trunk_id: str, sub_ports: list[SubPort]) -> Trunk:
        body = {"sub_ports": [sp.model_dump(mode="json") for sp in sub_ports]}
        return self._trunk(self._call("PUT", f"/trunks/{trunk_id}/add_subports", body=body))

    def remove_subports(self, ctx: Context, trunk_id: str, port_ids: list[str]) -> Trunk:
        body = {"sub_ports": [{"port_id": p} for p in port_ids]}
        return self._trunk(self._call("PUT", f"/trunks/{trunk_id}/remove_subports", body=body))

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> NeutronBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
