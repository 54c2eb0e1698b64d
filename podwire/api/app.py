"""The Neutron v2.0 subset over HTTP: ``create_app(backend, auth)``.

Handlers are thin: authenticate, read the JSON body, map Neutron's names to
the model (podwire.neutron.wire), call the backend in the threadpool (backends
are synchronous), map back and answer with orjson. Every PodwireError
becomes a Neutron error body in one handler; FastAPI's own request
validation is not used for bodies (it would answer 422 with its own shape),
bodies are validated by podwire.model so the 400 names the field.
"""

from __future__ import annotations

import gc
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from podwire.api import limits as api_limits
from podwire.api import policy
from podwire.api.auth import Auth
from podwire.api.openapi import install_openapi, request_body
from podwire.backends.base import Backend
from podwire.config import ApiConfig
from podwire.errors import InvalidInput, NotFound, PodwireError
from podwire.model import (
    Context,
    NetworkCreate,
    NetworkUpdate,
    Port,
    PortCreate,
    PortUpdate,
    SubnetCreate,
    SubnetUpdate,
    TrunkCreate,
    TrunkUpdate,
)
from podwire.neutron import wire
from podwire.neutron.filters import NothingMatches, filters_from_query

log = logging.getLogger(__name__)

JSON = "application/json"


class _GcPause:
    """Pause the cyclic garbage collector while a list is built.

    Building tens of thousands of objects at once (rows, models, dicts)
    triggers many collections, each walking the whole heap: listing 10,000
    ports spent a third of its time there. Nothing here makes reference
    cycles, so collection can wait until the answer is built. Nested and
    concurrent lists share one pause; the last one out resumes collection.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._paused = False

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0 and gc.isenabled():
                gc.disable()
                self._paused = True
            self._depth += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._paused:
                self._paused = False
                gc.enable()


_gc_paused = _GcPause()


# The parts of a PodwireError that Neutron's error body cannot carry.
ERROR_HEADERS = {
    "kind": "X-Podwire-Error-Kind",
    "object_id": "X-Podwire-Error-Object-Id",
    "field": "X-Podwire-Error-Field",
}


def json_response(data: Any, status: int = 200) -> Response:
    return Response(content=wire.dumps(data), status_code=status, media_type=JSON)


def error_response(exc: PodwireError) -> Response:
    err_type = exc.neutron_type
    if isinstance(exc, NotFound) and exc.kind:
        err_type = exc.kind.capitalize() + "NotFound"
    body = {"NeutronError": {"type": err_type, "message": exc.message, "detail": ""}}
    response = json_response(body, exc.http_status)
    # What Neutron's body has no place for, in headers: the body keeps
    # Neutron's exact shape, and podwire's own client reads them back.
    for key in ("kind", "object_id", "field"):
        value = getattr(exc, key)
        # Only what a header can carry as is (an id from a request path may be anything).
        if value is not None and value.isascii() and value.isprintable():
            response.headers[ERROR_HEADERS[key]] = value
    return response


@dataclass(frozen=True)
class _Resource:
    kind: str
    collection: str
    to_wire: Callable[[Any], dict[str, Any]]
    parse_create: Callable[[dict[str, Any]], Any]
    create_model: type
    update_model: type
    renames: dict[str, str]


_RESOURCES = [
    _Resource(
        "network",
        "networks",
        wire.network_to_wire,
        wire.network_create,
        NetworkCreate,
        NetworkUpdate,
        wire.NETWORK_RENAMES,
    ),
    _Resource(
        "subnet",
        "subnets",
        wire.subnet_to_wire,
        wire.subnet_create,
        SubnetCreate,
        SubnetUpdate,
        wire.SUBNET_RENAMES,
    ),
    _Resource(
        "port",
        "ports",
        wire.port_to_wire,
        wire.port_create,
        PortCreate,
        PortUpdate,
        wire.PORT_RENAMES,
    ),
    _Resource(
        "trunk",
        "trunks",
        wire.trunk_to_wire,
        wire.trunk_create,
        TrunkCreate,
        TrunkUpdate,
        wire.TRUNK_RENAMES,
    ),
]

_EXTENSIONS = [
    ("provider", "Provider Network", "provider:* attributes of networks"),
    ("binding", "Port Binding", "binding:* attributes of ports"),
    ("allowed-address-pairs", "Allowed Address Pairs", "extra sources a port may send from"),
    ("port-security", "Port Security", "port_security_enabled on networks and ports"),
    ("trunk", "Trunk Extension", "trunk ports with VLAN sub-ports"),
    ("trunk-details", "Trunk port details", "sub-ports of a trunk"),
    ("project-id", "project_id field enabled", "project_id beside tenant_id"),
    ("net-mtu", "Network MTU", "mtu attribute of networks"),
]


#: The default of the largest request body the API reads (Neutron's
#: max_request_body_size default, 114688 bytes; api.max_body_bytes sets it); a
#: longer one is refused with 413 from its Content-Length, or as soon as it
#: grows past it, never read whole.
MAX_BODY_BYTES = ApiConfig().max_body_bytes


class RequestTooLarge(InvalidInput):
    http_status = 413
    neutron_type = "HTTPRequestEntityTooLarge"


def _too_large(limit: int) -> RequestTooLarge:
    return RequestTooLarge(f"the request body is over {limit} bytes (api.max_body_bytes)")


async def _json_body(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise InvalidInput("the request body is empty; a JSON object is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON in request body: {exc}") from None


def _parse_update(kind: str, body: dict[str, Any], limits: ApiConfig) -> None:
    """Validate an update body alone (a port's binding is merged with the
    stored one later, in ``_update``), with the configured list limits."""
    parse = {
        "network": wire.network_update,
        "subnet": wire.subnet_update,
        "trunk": wire.trunk_update,
    }.get(kind)
    parsed = parse(body) if parse is not None else wire.port_update(body, None)
    api_limits.check_lists(kind, parsed, limits)


def if_match_revision(header: str | None) -> int | None:
    """Neutron's ``If-Match: revision_number=N`` (the update applies only at
    revision N, else 412); None without the header."""
    if header is None or not header.strip():
        return None
    key, sep, value = header.strip().partition("=")
    if sep and key.strip() == "revision_number" and value.strip().isdigit():
        return int(value.strip())
    raise InvalidInput(
        f"If-Match: expected 'revision_number=N' with a whole number N, got {header!r}",
        field="If-Match",
    )


def _update(
    backend: Backend,
    kind: str,
    ctx: Context,
    obj_id: str,
    body: dict[str, Any],
    if_revision: int | None,
) -> Any:
    if kind == "network":
        return backend.update_network(
            ctx, obj_id, wire.network_update(body), if_revision=if_revision
        )
    if kind == "subnet":
        return backend.update_subnet(ctx, obj_id, wire.subnet_update(body), if_revision=if_revision)
    if kind == "port":
        current = None
        if wire.port_update_touches_binding(body):
            current = backend.get_port(ctx, obj_id)
        return backend.update_port(
            ctx, obj_id, wire.port_update(body, current), if_revision=if_revision
        )
    return backend.update_trunk(ctx, obj_id, wire.trunk_update(body), if_revision=if_revision)


def _add_trunk_details(
    backend: Backend, ctx: Context, ports: list[Port], wired: list[dict[str, Any]]
) -> None:
    """Neutron's trunk-details: a trunk's parent port carries ``trunk_details``
    (its trunk id and sub-ports with their MACs), which nested-VLAN clients
    (Kuryr) read to find the trunk of a VM's port. A new port is never a
    parent, so creates skip this."""
    ids = [p.id for p in ports]
    # A long list of ids makes a long IN clause; a project has few trunks.
    trunk_filter = {"port_id": ids} if len(ids) <= 100 else None
    trunks = {t.port_id: t for t in backend.list_trunks(ctx, trunk_filter)}
    if not trunks:
        return
    macs = {p.id: p.mac_address for p in ports}
    missing = [
        sp.port_id
        for t in trunks.values()
        if t.port_id in macs
        for sp in t.sub_ports
        if sp.port_id not in macs
    ]
    if missing:
        macs.update((p.id, p.mac_address) for p in backend.list_ports(ctx, {"id": missing}))
    for item in wired:
        trunk = trunks.get(item["id"])
        if trunk is not None:
            item["trunk_details"] = wire.trunk_details(trunk, macs)


def _add_resource_routes(
    app: FastAPI, backend: Backend, auth: Auth, res: _Resource, limits: ApiConfig
) -> None:
    kind, coll = res.kind, res.collection
    create_fn = getattr(backend, f"create_{kind}")
    get_fn = getattr(backend, f"get_{kind}")
    list_fn = getattr(backend, f"list_{kind}s")
    delete_fn = getattr(backend, f"delete_{kind}")
    to_wire = res.to_wire
    security: list[dict[str, list[str]]] = [{"token": []}]

    async def list_objects(request: Request) -> Response:
        ctx = auth.authenticate(request.headers.get("x-auth-token"))
        try:
            filters = filters_from_query(
                kind, request.query_params.multi_items(), max_value=limits.max_filter_value
            )
        except NothingMatches:
            return json_response({coll: []})

        def work() -> bytes:
            with _gc_paused:
                objs = list_fn(ctx, filters)
                wired = [to_wire(o) for o in objs]
                if kind == "port" and wired:
                    _add_trunk_details(backend, ctx, objs, wired)
                return wire.dumps({coll: wired})

        return Response(content=await run_in_threadpool(work), media_type=JSON)

    async def create_object(request: Request) -> Response:
        ctx = auth.authenticate(request.headers.get("x-auth-token"))
        body = wire.member_body(await _json_body(request, limits.max_body_bytes), kind)
        # Neutron's order: a malformed body is 400 before policy's 403.
        req = res.parse_create(body)
        api_limits.check_lists(kind, req, limits)
        policy.enforce(ctx, kind, "create", body)

        def work() -> bytes:
            return wire.dumps({kind: to_wire(create_fn(ctx, req))})

        return Response(content=await run_in_threadpool(work), status_code=201, media_type=JSON)

    async def show_object(request: Request, id: str) -> Response:
        ctx = auth.authenticate(request.headers.get("x-auth-token"))

        def work() -> bytes:
            obj = get_fn(ctx, id)
            wired = to_wire(obj)
            if kind == "port":
                _add_trunk_details(backend, ctx, [obj], [wired])
            return wire.dumps({kind: wired})

        return Response(content=await run_in_threadpool(work), media_type=JSON)

    async def update_object(request: Request, id: str) -> Response:
        ctx = auth.authenticate(request.headers.get("x-auth-token"))
        body = wire.member_body(await _json_body(request, limits.max_body_bytes), kind)
        _parse_update(kind, body, limits)  # 400 before policy's 403, as Neutron answers
        policy.enforce(ctx, kind, "update", body)
        if_revision = if_match_revision(request.headers.get("if-match"))

        def work() -> bytes:
            obj = _update(backend, kind, ctx, id, body, if_revision)
            wired = to_wire(obj)
            if kind == "port":
                _add_trunk_details(backend, ctx, [obj], [wired])
            return wire.dumps({kind: wired})

        return Response(content=await run_in_threadpool(work), media_type=JSON)

    async def delete_object(request: Request, id: str) -> Response:
        ctx = auth.authenticate(request.headers.get("x-auth-token"))
        await run_in_threadpool(delete_fn, ctx, id)
        return Response(status_code=204)

    tags: list[str | Enum] = [coll]
    base = f"/v2.0/{coll}"
    member = base + "/{id}"
    app.add_api_route(
        base,
        list_objects,
        methods=["GET"],
        tags=tags,
        summary=f"List {coll}",
        openapi_extra={"security": security},
    )
    app.add_api_route(
        base,
        create_object,
        methods=["POST"],
        status_code=201,
        tags=tags,
        summary=f"Create a {kind}",
        openapi_extra={
            "security": security,
            "requestBody": request_body(kind, res.create_model, res.renames),
        },
    )
    app.add_api_route(
        member,
        show_object,
        methods=["GET"],
        tags=tags,
        summary=f"Show a {kind}",
        openapi_extra={"security": security},
    )
    app.add_api_route(
        member,
        update_object,
        methods=["PUT"],
        tags=tags,
        summary=f"Update a {kind}",
        openapi_extra={
            "security": security,
            "requestBody": request_body(kind, res.update_model, res.renames),
        },
    )
    app.add_api_route(
        member,
        delete_object,
        methods=["DELETE"],
        status_code=204,
        tags=tags,
        summary=f"Delete a {kind}",
        openapi_extra={"security": security},
    )


def _add_subport_routes(app: FastAPI, backend: Backend, auth: Auth, limits: ApiConfig) -> None:
    security: list[dict[str, list[str]]] = [{"token": []}]

    async def add_subports(request: Request, id: str) -> Response:
        ctx = auth.authenticate(request.headers.get("x-auth-token"))
        sub_ports = wire.subports_to_add(await _json_body(request, limits.max_body_bytes))
        api_limits.check_count("trunk", "sub_ports", sub_ports, limits)

        def work() -> bytes:
            # The bound is on the trunk's sub-ports, not only this request's.
            # (Two concurrent adds may pass it together: a soft bound.)
            have = backend.get_trunk(ctx, id).sub_ports
            known = {sp.port_id for sp in have}
            after = [*have, *(sp for sp in sub_ports if sp.port_id not in known)]
            api_limits.check_count("trunk", "sub_ports", after, limits)
            # Neutron answers these two with the bare trunk, no "trunk" key.
            return wire.dumps(wire.trunk_to_wire(backend.add_subports(ctx, id, sub_ports)))

        return Response(content=await run_in_threadpool(work), media_type=JSON)

    async def remove_subports(request: Request, id: str) -> Response:
        ctx = auth.authenticate(request.headers.get("x-auth-token"))
        port_ids = wire.subports_to_remove(await _json_body(request, limits.max_body_bytes))

        def work() -> bytes:
            return wire.dumps(wire.trunk_to_wire(backend.remove_subports(ctx, id, port_ids)))

        return Response(content=await run_in_threadpool(work), media_type=JSON)

    async def get_subports(request: Request, id: str) -> Response:
        ctx = auth.authenticate(request.headers.get("x-auth-token"))

        def work() -> bytes:
            trunk = backend.get_trunk(ctx, id)
            return wire.dumps({"sub_ports": [wire.subport_to_wire(s) for s in trunk.sub_ports]})

        return Response(content=await run_in_threadpool(work), media_type=JSON)

    subports_schema = {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "required": ["sub_ports"],
                    "additionalProperties": False,
                    "properties": {
                        "sub_ports": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/SubPort"},
                        }
                    },
                }
            }
        },
    }
    base = "/v2.0/trunks/{id}"
    app.add_api_route(
        base + "/add_subports",
        add_subports,
        methods=["PUT"],
        tags=["trunks"],
        summary="Add sub-ports to a trunk",
        openapi_extra={"security": security, "requestBody": subports_schema},
    )
    app.add_api_route(
        base + "/remove_subports",
        remove_subports,
        methods=["PUT"],
        tags=["trunks"],
        summary="Remove sub-ports (by port_id) from a trunk",
        openapi_extra={"security": security, "requestBody": subports_schema},
    )
    app.add_api_route(
        base + "/get_subports",
        get_subports,
        methods=["GET"],
        tags=["trunks"],
        summary="List a trunk's sub-ports",
        openapi_extra={"security": security},
    )


def _add_discovery_routes(app: FastAPI, auth: Auth) -> None:
    async def versions(request: Request) -> Response:
        href = str(request.base_url).rstrip("/") + "/v2.0/"
        return json_response(
            {
                "versions": [
                    {"id": "v2.0", "status": "CURRENT", "links": [{"href": href, "rel": "self"}]}
                ]
            }
        )

    async def resources(request: Request) -> Response:
        base = str(request.base_url).rstrip("/") + "/v2.0/"
        # "version" lets keystoneauth discover the API when a client's endpoint
        # already ends in /v2.0; "resources" is what Neutron itself answers.
        return json_response(
            {
                "version": {
                    "id": "v2.0",
                    "status": "CURRENT",
                    "links": [{"href": base, "rel": "self"}],
                },
                "resources": [
                    {
                        "name": r.kind,
                        "collection": r.collection,
                        "links": [{"href": base + r.collection, "rel": "self"}],
                    }
                    for r in _RESOURCES
                ],
            }
        )

    async def extensions(request: Request) -> Response:
        auth.authenticate(request.headers.get("x-auth-token"))
        return json_response(
            {
                "extensions": [
                    {"alias": a, "name": n, "description": d, "updated": "", "links": []}
                    for a, n, d in _EXTENSIONS
                ]
            }
        )

    app.add_api_route("/", versions, methods=["GET"], tags=["discovery"], summary="API versions")
    for path in ("/v2.0", "/v2.0/"):
        app.add_api_route(path, resources, methods=["GET"], tags=["discovery"], summary="Resources")
    app.add_api_route(
        "/v2.0/extensions",
        extensions,
        methods=["GET"],
        tags=["discovery"],
        summary="Extensions",
        openapi_extra={"security": [{"token": []}]},
    )


def install_error_handlers(app: FastAPI) -> None:
    """PodwireError -> its status with a Neutron body; Starlette's 404/405 and
    FastAPI's validation errors in the same shape."""

    async def on_podwire_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PodwireError)
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        err_type = {404: "HTTPNotFound", 405: "HTTPMethodNotAllowed"}.get(
            exc.status_code, "HTTPError"
        )
        message = (
            f"the resource {request.url.path} could not be found"
            if exc.status_code == 404
            else f"{request.method} {request.url.path}: {exc.detail}"
        )
        body = {"NeutronError": {"type": err_type, "message": message, "detail": ""}}
        return json_response(body, exc.status_code)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        message = f"{field}: {first.get('msg', 'invalid')}" if field else "invalid request"
        return error_response(InvalidInput(message, field=field))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        incident = uuid.uuid4().hex[:12]
        log.exception(
            "unexpected error on %s %s (incident %s)", request.method, request.url.path, incident
        )
        # Python's text stays in the log: it is no answer for a caller.
        body = {
            "NeutronError": {
                "type": "HTTPInternalServerError",
                "message": f"internal error (incident {incident} in the server's log)",
                "detail": "",
            }
        }
        return json_response(body, 500)

    app.add_exception_handler(PodwireError, on_podwire_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)


def create_app(
    backend: Backend, auth: Auth, *, title: str = "podwire", limits: ApiConfig | None = None
) -> FastAPI:
    """The Neutron v2.0 subset on ``backend``; who the caller is comes from
    ``auth``; ``limits``: the configured size limits (None: the defaults).
    The app does not close the backend: its owner does."""
    limits = limits or ApiConfig()
    app = FastAPI(title=f"{title} Neutron v2.0 subset", version="2.0", redoc_url=None)
    _add_discovery_routes(app, auth)
    for res in _RESOURCES:
        _add_resource_routes(app, backend, auth, res, limits)
    _add_subport_routes(app, backend, auth, limits)
    install_error_handlers(app)
    install_openapi(app)
    return app
