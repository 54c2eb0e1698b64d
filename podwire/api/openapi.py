"""The OpenAPI document: request bodies described from podwire.model, under
Neutron's attribute names, and the X-Auth-Token security scheme."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from podwire.model import PortBinding, SubPort

_REF = "#/components/schemas/{model}"
# Sub-schemas ($defs) the request bodies refer to, gathered as they are built.
_DEFS: dict[str, Any] = {}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=_REF)
    _DEFS.update(schema.pop("$defs", {}))
    return schema


def wire_schema(model: type[BaseModel], renames: dict[str, str]) -> dict[str, Any]:
    """``model``'s JSON schema with its properties under Neutron's names;
    ``binding`` is spread into the four ``binding:*`` attributes."""
    schema = _schema(model)
    reverse: dict[str, str] = {}
    for wire_name, model_name in renames.items():
        if wire_name != "tenant_id" and "." not in model_name:
            reverse[model_name] = wire_name
    props: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if name == "binding":
            binding_props = PortBinding.model_json_schema(ref_template=_REF)["properties"]
            for sub, sub_prop in binding_props.items():
                props[f"binding:{sub}"] = sub_prop
            continue
        props[reverse.get(name, name)] = prop
    if "project_id" in props:
        props["tenant_id"] = {**props["project_id"], "description": "alias of project_id"}
    out: dict[str, Any] = {
        "type": "object",
        "title": schema.get("title", model.__name__),
        "additionalProperties": False,
        "properties": props,
    }
    required = [reverse.get(r, r) for r in schema.get("required", [])]
    if required:
        out["required"] = required
    return out


def request_body(key: str, model: type[BaseModel], renames: dict[str, str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": [key],
                    "additionalProperties": False,
                    "properties": {key: wire_schema(model, renames)},
                }
            }
        },
    }


def install_openapi(app: FastAPI) -> None:
    _schema(SubPort)
    _DEFS.setdefault("SubPort", SubPort.model_json_schema(ref_template=_REF))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description="A subset of the OpenStack Networking (Neutron) v2.0 API.",
                routes=app.routes,
            )
            components = doc.setdefault("components", {})
            components.setdefault("schemas", {}).update(_DEFS)
            components["securitySchemes"] = {
                "token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}
            }
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
