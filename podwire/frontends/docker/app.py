"""The libnetwork remote driver protocol: one ASGI app answering dockerd's
plugin calls (POST /Plugin.Activate, /NetworkDriver.*, /IpamDriver.*).

This module only translates: JSON in, a call on the DockerService (the
door's meaning, door.DockerDoor), JSON out. Errors are translated in one place
(``_err``): a body that does not decode or validate is 400 with
``{"Err": ...}``; a podwire error is ``{"Err": ...}`` with 200, as libnetwork
expects from a driver that understood the request but could not do it; an
unknown method is 404, which libnetwork reads as "not implemented".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from podwire.errors import PodwireError
from podwire.frontends.docker import messages as m
from podwire.frontends.docker.terms import (
    GLOBAL_ADDRESS_SPACE,
    LOCAL_ADDRESS_SPACE,
    EndpointInterface,
    JoinInfo,
    PoolData,
)
from podwire.model import validation_error

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
DST_PREFIX = "eth"

_M = TypeVar("_M", bound=BaseModel)


class DockerService(Protocol):
    """What the protocol needs; podwire.frontends.docker.door.DockerDoor."""

    def request_pool(
        self, address_space: str, pool: str, sub_pool: str, v6: bool
    ) -> tuple[str, str]: ...
    def release_pool(self, pool_id: str) -> None: ...
    def request_address(self, pool_id: str, address: str, is_gateway: bool) -> str: ...
    def release_address(self, pool_id: str, address: str) -> None: ...
    def create_network(
        self,
        docker_network_id: str,
        ipv4: list[PoolData],
        ipv6: list[PoolData],
        options: Mapping[str, str],
    ) -> None: ...
    def delete_network(self, docker_network_id: str) -> None: ...
    def create_endpoint(
        self,
        docker_network_id: str,
        endpoint_id: str,
        interface: EndpointInterface,
        options: Mapping[str, Any],
    ) -> EndpointInterface: ...
    def endpoint_info(self, docker_network_id: str, endpoint_id: str) -> dict[str, str]: ...
    def delete_endpoint(self, docker_network_id: str, endpoint_id: str) -> None: ...
    def join(self, docker_network_id: str, endpoint_id: str) -> JoinInfo: ...
    def leave(self, docker_network_id: str, endpoint_id: str) -> None: ...


class _BadRequest(Exception):
    pass


def _parse(model: type[_M], body: bytes) -> _M:
    """Decode and validate a request body; an empty body or ``null`` is an
    empty object (Docker sends null for calls without arguments)."""
    try:
        data = json.loads(body) if body.strip() else None
    except ValueError as exc:
        raise _BadRequest(f"request body is not JSON: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _BadRequest(validation_error(exc).message) from None


def _pool_data(entries: list[m.IpamData] | None) -> list[PoolData]:
    return [
        PoolData(
            address_space=e.AddressSpace,
            pool=e.Pool,
            gateway=e.Gateway or None,
            aux_addresses=dict(e.AuxAddresses or {}),
        )
        for e in entries or []
    ]


def _string_options(options: Mapping[str, Any] | None) -> dict[str, str]:
    """Driver options: -o values arrive nested under com.docker.network.generic,
    endpoint --driver-opt values at the top level; both are strings."""
    out: dict[str, str] = {}
    for key, value in (options or {}).items():
        if key == m.GENERIC_OPTIONS and isinstance(value, dict):
            out.update({str(k): str(v) for k, v in value.items()})
        elif isinstance(value, str):
            out[key] = value
    return out


# --- handlers: body -> service call -> response dict ----------------------------------------

Handler = Callable[[DockerService, bytes], dict[str, Any]]


def _activate(svc: DockerService, body: bytes) -> dict[str, Any]:
    return {"Implements": ["NetworkDriver", "IpamDriver"]}


def _net_capabilities(svc: DockerService, body: bytes) -> dict[str, Any]:
    return {"Scope": "local", "ConnectivityScope": "local"}


def _create_network(svc: DockerService, body: bytes) -> dict[str, Any]:
    req = _parse(m.CreateNetworkRequest, body)
    svc.create_network(
        req.NetworkID,
        _pool_data(req.IPv4Data),
        _pool_data(req.IPv6Data),
        _string_options(req.Options),
    )
    return {}


def _delete_network(svc: DockerService, body: bytes) -> dict[str, Any]:
    req = _parse(m.DeleteNetworkRequest, body)
    svc.delete_network(req.NetworkID)
    return {}


def _create_endpoint(svc: DockerService, body: bytes) -> dict[str, Any]:
    req = _parse(m.CreateEndpointRequest, body)
    given = req.Interface or m.InterfaceData()
    got = svc.create_endpoint(
        req.NetworkID,
        req.EndpointID,
        EndpointInterface(given.Address, given.AddressIPv6, given.MacAddress),
        _string_options(req.Options),
    )
    # Only what Docker did not supply: libnetwork refuses a driver that
    # "modifies" an address or MAC it already set.
    iface = {
        key: value
        for key, value in (
            ("Address", got.address),
            ("AddressIPv6", got.address_v6),
            ("MacAddress", got.mac),
        )
        if value
    }
    return {"Interface": iface}


def _endpoint_info(svc: DockerService, body: bytes) -> dict[str, Any]:
    req = _parse(m.EndpointRequest, body)
    return {"Value": svc.endpoint_info(req.NetworkID, req.EndpointID)}


def _delete_endpoint(svc: DockerService, body: bytes) -> dict[str, Any]:
    req = _parse(m.EndpointRequest, body)
    svc.delete_endpoint(req.NetworkID, req.EndpointID)
    return {}


def _join(svc: DockerService, body: bytes) -> dict[str, Any]:
    req = _parse(m.JoinRequest, body)
    info = svc.join(req.NetworkID, req.EndpointID)
    out: dict[str, Any] = {
        "InterfaceName": {"SrcName": info.src_name, "DstPrefix": DST_PREFIX},
        "StaticRoutes": [
            {"Destination": r.destination, "RouteType": 0, "NextHop": r.next_hop}
            if r.next_hop
            else {"Destination": r.destination, "RouteType": 1}
            for r in info.static_routes
        ],
        # Never let libnetwork add docker_gwbridge (a NATing bridge) for
        # podwire's containers: their gateway is the backend subnet's.
        "DisableGatewayService": True,
    }
    if info.gateway:
        out["Gateway"] = info.gateway
    if info.gateway_v6:
        out["GatewayIPv6"] = info.gateway_v6
    return out


def _leave(svc: DockerService, body: bytes) -> dict[str, Any]:
    req = _parse(m.EndpointRequest, body)
    svc.leave(req.NetworkID, req.EndpointID)
    return {}


def _program_external(svc: DockerService, body: bytes) -> dict[str, Any]:
    # podwire never publishes ports or NATs (-p has no effect on its networks).
    _parse(m.ProgramExternalConnectivityRequest, body)
    return {}


def _revoke_external(svc: DockerService, body: bytes) -> dict[str, Any]:
    _parse(m.EndpointRequest, body)
    return {}


def _discover(svc: DockerService, body: bytes) -> dict[str, Any]:
    _parse(m.DiscoveryRequest, body)
    return {}


def _ipam_capabilities(svc: DockerService, body: bytes) -> dict[str, Any]:
    # No MAC needed: the endpoint's MAC is the backend port's, returned by
    # CreateEndpoint.
    return {"RequiresMACAddress": False, "RequiresRequestReplay": False}


def _address_spaces(svc: DockerService, body: bytes) -> dict[str, Any]:
    return {
        "LocalDefaultAddressSpace": LOCAL_ADDRESS_SPACE,
        "GlobalDefaultAddressSpace": GLOBAL_ADDRESS_SPACE,
    }


def _request_pool(svc: DockerService, body: bytes) -> dict[str, Any]:
    req = _parse(m.RequestPoolRequest, body)
    pool_id, cidr = svc.request_pool(req.AddressSpace, req.Pool, req.SubPool, req.V6)
    return {"PoolID": pool_id, "Pool": cidr, "Data": {}}


def _release_pool(svc: DockerService, body: bytes) -> dict[str, Any]:
    req = _parse(m.ReleasePoolRequest, body)
    svc.release_pool(req.PoolID)
    return {}


def _request_address(svc: DockerService, body: bytes) -> dict[str, Any]:
    req = _parse(m.RequestAddressRequest, body)
    is_gateway = (req.Options or {}).get(m.REQUEST_ADDRESS_TYPE) == m.GATEWAY_ADDRESS_TYPE
    address = svc.request_address(req.PoolID, req.Address, is_gateway)
    return {"Address": address, "Data": {}}


def _release_address(svc: DockerService, body: bytes) -> dict[str, Any]:
    req = _parse(m.ReleaseAddressRequest, body)
    svc.release_address(req.PoolID, req.Address)
    return {}


HANDLERS: dict[str, Handler] = {
    "Plugin.Activate": _activate,
    "NetworkDriver.GetCapabilities": _net_capabilities,
    "NetworkDriver.CreateNetwork": _create_network,
    "NetworkDriver.DeleteNetwork": _delete_network,
    "NetworkDriver.CreateEndpoint": _create_endpoint,
    "NetworkDriver.EndpointOperInfo": _endpoint_info,
    "NetworkDriver.DeleteEndpoint": _delete_endpoint,
    "NetworkDriver.Join": _join,
    "NetworkDriver.Leave": _leave,
    "NetworkDriver.DiscoverNew": _discover,
    "NetworkDriver.DiscoverDelete": _discover,
    "NetworkDriver.ProgramExternalConnectivity": _program_external,
    "NetworkDriver.RevokeExternalConnectivity": _revoke_external,
    "IpamDriver.GetCapabilities": _ipam_capabilities,
    "IpamDriver.GetDefaultAddressSpaces": _address_spaces,
    "IpamDriver.RequestPool": _request_pool,
    "IpamDriver.ReleasePool": _release_pool,
    "IpamDriver.RequestAddress": _request_address,
    "IpamDriver.ReleaseAddress": _release_address,
}


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status_code=status, media_type=CONTENT_TYPE)


def _err(method: str, exc: BaseException) -> Response:
    """The one place where errors become libnetwork's {"Err": ...}.

    libnetwork's IPAM client reads the key "Error" from a 200 answer (its
    network driver client reads "Err", and any non-200 answer is read as
    "Err"), so IpamDriver failures carry both."""
    if isinstance(exc, _BadRequest):
        status, text = 400, f"{method}: {exc}"
    elif isinstance(exc, PodwireError):
        log.info("%s failed: %s", method, exc.message)
        status, text = 200, f"{method}: {exc.message}"
    else:
        log.exception("%s failed unexpectedly", method)
        status, text = 500, f"{method}: internal error in podwire: {type(exc).__name__}: {exc}"
    body = {"Err": text}
    if method.startswith("IpamDriver."):
        body["Error"] = text
    return _json(status, body)


def create_app(service: DockerService) -> Starlette:
    """The plugin's ASGI app over one DockerService."""

    async def dispatch(request: Request) -> Response:
        method = request.path_params["method"]
        handler = HANDLERS.get(method)
        if handler is None:
            return _json(404, {"Err": f"{method} is not implemented by podwire"})
        body = await request.body()
        try:
            result = await run_in_threadpool(handler, service, body)
        except Exception as exc:
            return _err(method, exc)
        return _json(200, result)

    return Starlette(routes=[Route("/{method:path}", dispatch, methods=["POST"])])
