"""The Backend protocol over the Neutron v2.0 API: a podwire server (TCP) or
an agent's unix socket.

Who the caller is comes from the token (or, on an agent socket, from the
socket's permissions), not from the ``Context`` each call takes: the server
scopes every call by the token. A request's explicit ``project_id`` is sent
as is (the server refuses it unless the token is admin).

NeutronError bodies come back as the same podwire.errors classes the server
raised, so the CLI and the agent see typed errors; a server that cannot be
reached is Unavailable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from podwire import errors
from podwire.backends.base import Filters
from podwire.config import Config
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
from podwire.neutron import wire
from podwire.neutron.filters import FILTERABLE

_M = TypeVar("_M", bound=BaseModel)

# Attributes of the answers that the model does not keep.
_DROP = frozenset(
    {
        "tenant_id",
        "router:external",
        "availability_zone_hints",
        "availability_zones",
        "ipv4_address_scope",
        "ipv6_address_scope",
        "l2_adjacency",
        "qos_policy_id",
        "tags",
        "revision_number",
        "ipv6_ra_mode",
        "ipv6_address_mode",
        "subnetpool_id",
        "segment_id",
        "service_types",
        "extra_dhcp_opts",
        "trunk_details",
    }
)
_PORT_EXTRA = {
    "podwire:parent_port_id": "parent_port_id",
    "podwire:segmentation_id": "segmentation_id",
}

_BY_STATUS: dict[int, type[errors.PodwireError]] = {
    400: errors.InvalidInput,
    401: errors.NotAuthenticated,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    412: errors.PreconditionFailed,
    429: errors.Busy,
    503: errors.Unavailable,
}
# Subclasses that share a status with their parent, told apart by type.
_BY_TYPE: dict[str, type[errors.PodwireError]] = {
    errors.Exhausted.neutron_type: errors.Exhausted,
    errors.Drift.neutron_type: errors.Drift,
    errors.DatapathError.neutron_type: errors.DatapathError,
}


def error_from_response(response: httpx.Response) -> errors.PodwireError:
    """A NeutronError body -> the podwire error class it came from."""
    message = f"HTTP {response.status_code} from {response.request.url}"
    err_type = ""
    try:
        body = response.json()
        neutron = body.get("NeutronError") if isinstance(body, dict) else None
        if isinstance(neutron, dict):
            message = str(neutron.get("message") or message)
            err_type = str(neutron.get("type") or "")
    except ValueError:
        if response.text:
            message = f"{message}: {response.text[:200]}"
    cls = _BY_TYPE.get(err_type) or _BY_STATUS.get(response.status_code, errors.PodwireError)
    kind = None
    if cls is errors.NotFound and err_type.endswith("NotFound") and err_type != "NotFound":
        kind = err_type[: -len("NotFound")].lower() or None
    field = None
    if cls is errors.InvalidInput and ": " in message:
        head = message.split(": ", 1)[0]
        if " " not in head:
            field = head
    return cls(message, kind=kind, field=field)


def _from_wire(model: type[_M], data: Any, renames: Mapping[str, str]) -> _M:
    if not isinstance(data, dict):
        raise errors.Unavailable(f"the server answered a {model.__name__} that is not an object")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in _DROP and key not in model.model_fields:  # ports keep their tags
            continue
        target = renames.get(key, key)
        if "." in target:
            outer, inner = target.split(".", 1)
            out.setdefault(outer, {})[inner] = value
        else:
            out[target] = value
    try:
        return model.model_validate(out)
    except ValidationError as exc:
        raise errors.Unavailable(
            f"the server answered a {model.__name__} podwire cannot read: {exc.errors()[0]}"
        ) from None


def _to_wire(req: BaseModel, renames: Mapping[str, str]) -> dict[str, Any]:
    """A request model -> Neutron attributes; only what the caller set."""
    reverse = {m: w for w, m in renames.items() if w != "tenant_id" and "." not in m}
    body: dict[str, Any] = {}
    for name, value in req.model_dump(mode="json", exclude_unset=True).items():
        if name == "binding":
            # The whole binding, defaults included: the model replaces it whole.
            binding = getattr(req, "binding", None)
            if binding is not None:
                for sub, sub_value in binding.model_dump(mode="json").items():
                    body[f"binding:{sub}"] = sub_value
            continue
        body[reverse.get(name, name)] = value
    return body


def _if_match(if_revision: int | None) -> dict[str, str]:
    """Neutron's conditional update: applied only at that revision (else 412)."""
    return {} if if_revision is None else {"If-Match": f"revision_number={if_revision}"}


def _query(kind: str, filters: Filters | None) -> list[tuple[str, str]]:
    if not filters:
        return []
    reverse = {m: w for w, m in FILTERABLE[kind].items() if w != "tenant_id"}
    params: list[tuple[str, str]] = []
    for field, values in filters.items():
        if isinstance(values, str):
            values = [values]
        if field.startswith("fixed_ips."):
            sub = field.split(".", 1)[1]
            params.extend(("fixed_ips", f"{sub}={v}") for v in values)
            continue
        params.extend((reverse.get(field, field), str(v)) for v in values)
    return params


class RemoteBackend:
    name = "remote"
    derives_port_status: bool = False
    bound_vif_type: str | None = None

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        uds: str | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        if url is None and uds is None:
            raise errors.InvalidInput("a remote backend needs a server URL or a unix socket")
        base = (url or "http://podwire").rstrip("/")
        if base.endswith("/v2.0"):
            base = base[: -len("/v2.0")]
        self._where = uds or base
        headers = {"Accept": "application/json"}
        if token:
            headers["X-Auth-Token"] = token
        transport = httpx.HTTPTransport(uds=uds) if uds else None
        try:
            self._http = httpx.Client(
                base_url=base + "/v2.0", headers=headers, timeout=timeout, transport=transport
            )
        except httpx.InvalidURL as exc:
            raise errors.InvalidInput(f"invalid server URL {url!r}: {exc}", field="url") from None

    @classmethod
    def from_config(cls, config: Config) -> RemoteBackend:
        """``remote.url`` is ``http(s)://HOST:PORT`` or ``unix:///PATH/TO.sock``."""
        url = config.remote.url
        if not url:
            raise errors.InvalidInput(
                "backend 'remote' needs remote.url (--server-url)",
                kind="config",
                field="remote.url",
            )
        if url.startswith("unix://"):
            return cls(uds=url[len("unix://") :], token=config.remote.token)
        return cls(url, token=config.remote.token)

    # --- plumbing -----------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise errors.Unavailable(
                f"cannot reach the podwire API at {self._where}: {exc}"
            ) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise errors.Unavailable(
                f"the podwire API at {self._where} answered {method} {path} with non-JSON"
            ) from None

    def _member(self, answer: Any, key: str) -> Any:
        if not isinstance(answer, dict) or key not in answer:
            raise errors.Unavailable(f"the podwire API answered without {key!r}")
        return answer[key]

    # --- networks -------------------------------------------------------------------

    def create_network(self, ctx: Context, req: NetworkCreate) -> Network:
        body = {"network": _to_wire(req, wire.NETWORK_RENAMES)}
        answer = self._call("POST", "/networks", json=body)
        return _from_wire(Network, self._member(answer, "network"), wire.NETWORK_RENAMES)

    def get_network(self, ctx: Context, network_id: str) -> Network:
        answer = self._call("GET", f"/networks/{network_id}")
        return _from_wire(Network, self._member(answer, "network"), wire.NETWORK_RENAMES)

    def list_networks(self, ctx: Context, filters: Filters | None = None) -> list[Network]:
        answer = self._call("GET", "/networks", params=_query("network", filters))
        return [
            _from_wire(Network, n, wire.NETWORK_RENAMES) for n in self._member(answer, "networks")
        ]

    def update_network(
        self, ctx: Context, network_id: str, req: NetworkUpdate, *, if_revision: int | None = None
    ) -> Network:
        body = {"network": _to_wire(req, wire.NETWORK_RENAMES)}
        answer = self._call(
            "PUT", f"/networks/{network_id}", json=body, headers=_if_match(if_revision)
        )
        return _from_wire(Network, self._member(answer, "network"), wire.NETWORK_RENAMES)

    def delete_network(self, ctx: Context, network_id: str) -> None:
        self._call("DELETE", f"/networks/{network_id}")

    # --- subnets ---------------------------------------------------------------------

    def create_subnet(self, ctx: Context, req: SubnetCreate) -> Subnet:
        body = {"subnet": _to_wire(req, wire.SUBNET_RENAMES)}
        answer = self._call("POST", "/subnets", json=body)
        return _from_wire(Subnet, self._member(answer, "subnet"), wire.SUBNET_RENAMES)

    def get_subnet(self, ctx: Context, subnet_id: str) -> Subnet:
        answer = self._call("GET", f"/subnets/{subnet_id}")
        return _from_wire(Subnet, self._member(answer, "subnet"), wire.SUBNET_RENAMES)

    def list_subnets(self, ctx: Context, filters: Filters | None = None) -> list[Subnet]:
        answer = self._call("GET", "/subnets", params=_query("subnet", filters))
        return [_from_wire(Subnet, s, wire.SUBNET_RENAMES) for s in self._member(answer, "subnets")]

    def update_subnet(
        self, ctx: Context, subnet_id: str, req: SubnetUpdate, *, if_revision: int | None = None
    ) -> Subnet:
        body = {"subnet": _to_wire(req, wire.SUBNET_RENAMES)}
        answer = self._call(
            "PUT", f"/subnets/{subnet_id}", json=body, headers=_if_match(if_revision)
        )
        return _from_wire(Subnet, self._member(answer, "subnet"), wire.SUBNET_RENAMES)

    def delete_subnet(self, ctx: Context, subnet_id: str) -> None:
        self._call("DELETE", f"/subnets/{subnet_id}")

    # --- ports -------------------------------------------------------------------------

    _PORT_IN = {**wire.PORT_RENAMES, **_PORT_EXTRA}

    def _port(self, data: Any) -> Port:
        port = _from_wire(Port, data, self._PORT_IN)
        # The API fills a pair's missing MAC with the port's; the model keeps
        # None for "the port's MAC", so an unchanged port round-trips equal.
        for pair in port.allowed_address_pairs:
            if pair.mac_address == port.mac_address:
                pair.mac_address = None
        return port

    def create_port(self, ctx: Context, req: PortCreate) -> Port:
        body = {"port": _to_wire(req, wire.PORT_RENAMES)}
        return self._port(self._member(self._call("POST", "/ports", json=body), "port"))

    def get_port(self, ctx: Context, port_id: str) -> Port:
        return self._port(self._member(self._call("GET", f"/ports/{port_id}"), "port"))

    def list_ports(self, ctx: Context, filters: Filters | None = None) -> list[Port]:
        answer = self._call("GET", "/ports", params=_query("port", filters))
        return [self._port(p) for p in self._member(answer, "ports")]

    def update_port(
        self, ctx: Context, port_id: str, req: PortUpdate, *, if_revision: int | None = None
    ) -> Port:
        body = {"port": _to_wire(req, wire.PORT_RENAMES)}
        return self._port(
            self._member(
                self._call("PUT", f"/ports/{port_id}", json=body, headers=_if_match(if_revision)),
                "port",
            )
        )

    def delete_port(self, ctx: Context, port_id: str) -> None:
        self._call("DELETE", f"/ports/{port_id}")

    # --- trunks --------------------------------------------------------------------------

    def create_trunk(self, ctx: Context, req: TrunkCreate) -> Trunk:
        body = {"trunk": _to_wire(req, wire.TRUNK_RENAMES)}
        answer = self._call("POST", "/trunks", json=body)
        return _from_wire(Trunk, self._member(answer, "trunk"), wire.TRUNK_RENAMES)

    def get_trunk(self, ctx: Context, trunk_id: str) -> Trunk:
        answer = self._call("GET", f"/trunks/{trunk_id}")
        return _from_wire(Trunk, self._member(answer, "trunk"), wire.TRUNK_RENAMES)

    def list_trunks(self, ctx: Context, filters: Filters | None = None) -> list[Trunk]:
        answer = self._call("GET", "/trunks", params=_query("trunk", filters))
        return [_from_wire(Trunk, t, wire.TRUNK_RENAMES) for t in self._member(answer, "trunks")]

    def update_trunk(
        self, ctx: Context, trunk_id: str, req: TrunkUpdate, *, if_revision: int | None = None
    ) -> Trunk:
        body = {"trunk": _to_wire(req, wire.TRUNK_RENAMES)}
        answer = self._call("PUT", f"/trunks/{trunk_id}", json=body, headers=_if_match(if_revision))
        return _from_wire(Trunk, self._member(answer, "trunk"), wire.TRUNK_RENAMES)

    def delete_trunk(self, ctx: Context, trunk_id: str) -> None:
        self._call("DELETE", f"/trunks/{trunk_id}")

    def add_subports(self, ctx: Context, trunk_id: str, sub_ports: list[SubPort]) -> Trunk:
        body = {"sub_ports": [sp.model_dump(mode="json") for sp in sub_ports]}
        answer = self._call("PUT", f"/trunks/{trunk_id}/add_subports", json=body)
        return _from_wire(Trunk, answer, wire.TRUNK_RENAMES)

    def remove_subports(self, ctx: Context, trunk_id: str, port_ids: list[str]) -> Trunk:
        body = {"sub_ports": [{"port_id": p} for p in port_ids]}
        answer = self._call("PUT", f"/trunks/{trunk_id}/remove_subports", json=body)
        return _from_wire(Trunk, answer, wire.TRUNK_RENAMES)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
