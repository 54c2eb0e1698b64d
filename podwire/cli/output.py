"""Output: a plain table for people, JSON with --json."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from podwire.cli.target import Target

if TYPE_CHECKING:
    from pydantic import BaseModel


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], max((len(line) for line in value.split("\n")), default=0))
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        parts = [v.split("\n") for v in row]
        height = max(len(p) for p in parts)
        for n in range(height):
            line = "  ".join(
                (p[n] if n < len(p) else "").ljust(w) for p, w in zip(parts, widths, strict=True)
            )
            lines.append(line.rstrip())
    return "\n".join(lines)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "\n".join(cell(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) if value else "-"
    return str(value)


def show(target: Target, obj: BaseModel, fields: dict[str, Callable[[Any], Any]]) -> None:
    if target.as_json:
        click.echo(json.dumps(obj.model_dump(mode="json"), indent=2))
        return
    click.echo(table(["field", "value"], [(name, get(obj)) for name, get in fields.items()]))


def show_list(
    target: Target,
    objs: Sequence[BaseModel],
    columns: dict[str, Callable[[Any], Any]],
) -> None:
    if target.as_json:
        click.echo(json.dumps([o.model_dump(mode="json") for o in objs], indent=2))
        return
    click.echo(table(list(columns), [[get(o) for get in columns.values()] for o in objs]))


def attr(name: str) -> Callable[[Any], Any]:
    return lambda obj: getattr(obj, name)


def fixed_ips_of(port: Any) -> list[str]:
    return [f.ip_address for f in port.fixed_ips]


def pairs_of(port: Any) -> list[str]:
    return [
        p.ip_address + (f" ({p.mac_address})" if p.mac_address else "")
        for p in port.allowed_address_pairs
    ]
