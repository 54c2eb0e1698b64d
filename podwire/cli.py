"""The ``podwire`` command.

Where the objects live is chosen by one global option: ``--url`` (a podwire
server, with ``--token``), ``--agent-socket`` (the agent's unix socket, which
serves the same API with admin rights) or ``--state-dir`` (the embedded
backend, in this process). Without any, the agent's default socket.

Heavy modules (FastAPI, SQLAlchemy, httpx) are imported inside the commands
that use them so that ``podwire --help`` and the shell completion stay fast.
Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from podwire.errors import Conflict, InvalidInput, NotFound, PodwireError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from podwire.backends.base import Backend
    from podwire.model import Context

DEFAULT_AGENT_SOCKET = "/run/podwire/agent.sock"
DEFAULT_PROJECT = "default"


# --- where the objects live ------------------------------------------------------------


@dataclass
class Target:
    url: str | None
    token: str | None
    agent_socket: str | None
    state_dir: Path | None
    db_url: str | None
    project: str | None
    as_json: bool
    _backend: Backend | None = field(default=None, repr=False)

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self._open()
        return self._backend

    def _open(self) -> Backend:
        chosen = [
            name
            for name, value in (
                ("--url", self.url),
                ("--agent-socket", self.agent_socket),
                ("--state-dir", self.state_dir),
            )
            if value
        ]
        if len(chosen) > 1:
            raise InvalidInput(f"choose one of {', '.join(chosen)}, not several")
        if self.state_dir is not None:
            from podwire.backends.registry import open_backend
            from podwire.config import load_config

            self.state_dir.mkdir(parents=True, exist_ok=True)
            config = load_config(
                None,
                state_dir=str(self.state_dir),
                backend="embedded",
                **{"embedded.db_url": self.db_url},
            )
            return open_backend(config)
        from podwire.backends.remote import RemoteBackend

        if self.url:
            return RemoteBackend(self.url, token=self.token)
        return RemoteBackend(uds=self.agent_socket or DEFAULT_AGENT_SOCKET, token=self.token)

    def context(self) -> Context:
        from podwire.model import Context

        # In-process, the state directory's owner is its admin. Remotely the
        # token (or the agent socket) decides who we are; the context is unused.
        if self.state_dir is not None:
            return Context.admin(self.project or DEFAULT_PROJECT)
        return Context(project_id=self.project or DEFAULT_PROJECT)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


pass_target = click.make_pass_decorator(Target)


def _json_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(Target).as_json = True


# ``--json`` is accepted before or after the command: `podwire --json port
# list` and `podwire port list --json` (the agent's docs use the latter).
json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    expose_value=False,
    callback=_json_flag,
    help="machine-readable JSON output",
)


@contextmanager
def _errors() -> Iterator[None]:
    """One clear line on stderr, exit 1, for every podwire error."""
    try:
        yield
    except PodwireError as exc:
        click.echo(f"podwire: error: {exc.message}", err=True)
        sys.exit(1)


# --- output ---------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
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


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "\n".join(_cell(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) if value else "-"
    return str(value)


def _show(target: Target, obj: BaseModel, fields: dict[str, Callable[[Any], Any]]) -> None:
    if target.as_json:
        click.echo(json.dumps(obj.model_dump(mode="json"), indent=2))
        return
    click.echo(_table(["field", "value"], [(name, get(obj)) for name, get in fields.items()]))


def _list(
    target: Target,
    objs: Sequence[BaseModel],
    columns: dict[str, Callable[[Any], Any]],
) -> None:
    if target.as_json:
        click.echo(json.dumps([o.model_dump(mode="json") for o in objs], indent=2))
        return
    click.echo(_table(list(columns), [[get(o) for get in columns.values()] for o in objs]))


def _attr(name: str) -> Callable[[Any], Any]:
    return lambda obj: getattr(obj, name)


def _fixed_ips(port: Any) -> list[str]:
    return [f.ip_address for f in port.fixed_ips]


def _pairs(port: Any) -> list[str]:
    return [
        p.ip_address + (f" ({p.mac_address})" if p.mac_address else "")
        for p in port.allowed_address_pairs
    ]


NETWORK_FIELDS: dict[str, Callable[[Any], Any]] = {
    "id": _attr("id"),
    "name": _attr("name"),
    "project_id": _attr("project_id"),
    "network_type": _attr("network_type"),
    "segmentation_id": _attr("segmentation_id"),
    "physical_network": _attr("physical_network"),
    "mtu": _attr("mtu"),
    "shared": _attr("shared"),
    "port_security_enabled": _attr("port_security_enabled"),
    "datapath": _attr("datapath"),
    "subnets": _attr("subnets"),
    "status": _attr("status"),
    "created_at": _attr("created_at"),
}
SUBNET_FIELDS: dict[str, Callable[[Any], Any]] = {
    "id": _attr("id"),
    "name": _attr("name"),
    "project_id": _attr("project_id"),
    "network_id": _attr("network_id"),
    "ip_version": _attr("ip_version"),
    "cidr": _attr("cidr"),
    "gateway_ip": _attr("gateway_ip"),
    "allocation_pools": lambda s: [f"{p.start}-{p.end}" for p in s.allocation_pools],
    "dns_nameservers": _attr("dns_nameservers"),
    "host_routes": lambda s: [f"{r.destination} via {r.nexthop}" for r in s.host_routes],
    "created_at": _attr("created_at"),
}
PORT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "id": _attr("id"),
    "name": _attr("name"),
    "project_id": _attr("project_id"),
    "network_id": _attr("network_id"),
    "mac_address": _attr("mac_address"),
    "fixed_ips": lambda p: [f"{f.ip_address} (subnet {f.subnet_id})" for f in p.fixed_ips],
    "allowed_address_pairs": _pairs,
    "device_id": _attr("device_id"),
    "device_owner": _attr("device_owner"),
    "status": _attr("status"),
    "port_security_enabled": _attr("port_security_enabled"),
    "vnic_type": _attr("vnic_type"),
    "binding:host_id": lambda p: p.binding.host_id,
    "binding:vif_type": lambda p: p.binding.vif_type,
    "binding:profile": lambda p: p.binding.profile,
    "binding:vif_details": lambda p: p.binding.vif_details,
    "parent_port_id": _attr("parent_port_id"),
    "segmentation_id": _attr("segmentation_id"),
    "created_at": _attr("created_at"),
}
TRUNK_FIELDS: dict[str, Callable[[Any], Any]] = {
    "id": _attr("id"),
    "name": _attr("name"),
    "project_id": _attr("project_id"),
    "port_id": _attr("port_id"),
    "status": _attr("status"),
    "sub_ports": lambda t: [
        f"{s.port_id} {s.segmentation_type} {s.segmentation_id}" for s in t.sub_ports
    ],
    "created_at": _attr("created_at"),
}


# --- looking objects up by name or id ------------------------------------------------------


def _resolve(target: Target, kind: str, ref: str) -> Any:
    """An object by id, else by its unique name."""
    backend, ctx = target.backend(), target.context()
    getter = getattr(backend, f"get_{kind}")
    lister = getattr(backend, f"list_{kind}s")
    try:
        return getter(ctx, ref)
    except NotFound:
        pass
    matches = lister(ctx, {"name": [ref]})
    if not matches:
        raise NotFound(f"no {kind} with id or name {ref!r}", kind=kind, object_id=ref)
    if len(matches) > 1:
        ids = ", ".join(m.id for m in matches)
        raise Conflict(f"{len(matches)} {kind}s are named {ref!r} ({ids}); use the id", kind=kind)
    return matches[0]


def _project_filter(target: Target, filters: dict[str, list[str]]) -> dict[str, list[str]]:
    if target.project:
        filters["project_id"] = [target.project]
    return filters


def _parse_kv(text: str, option: str, allowed: Sequence[str]) -> dict[str, str]:
    """``key=value,key=value`` as the openstack CLI writes it."""
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().replace("_", "-")
        if not sep or key not in allowed:
            raise InvalidInput(
                f"{option} {text!r}: expected {','.join(k + '=...' for k in allowed)}",
                field=option,
            )
        out[key] = value.strip()
    return out


# --- the command group ------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="PODWIRE_URL", help="podwire server URL, e.g. http://127.0.0.1:9696")
@click.option("--token", envvar="PODWIRE_TOKEN", help="X-Auth-Token for --url")
@click.option(
    "--agent-socket",
    envvar="PODWIRE_AGENT_SOCKET",
    help=f"the agent's unix socket (default {DEFAULT_AGENT_SOCKET})",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="use the embedded backend in this directory, in-process",
)
@click.option("--db-url", help="with --state-dir: a SQLAlchemy URL instead of SQLite")
@click.option("--project", help="project to create in (admin) and to list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable JSON output")
@click.pass_context
def main(
    ctx: click.Context,
    url: str | None,
    token: str | None,
    agent_socket: str | None,
    state_dir: Path | None,
    db_url: str | None,
    project: str | None,
    as_json: bool,
) -> None:
    """podwire: connect containers to SDN networks."""

    # One place at a time. An option on the command line wins over one from
    # the environment (PODWIRE_AGENT_SOCKET may be set for the CNI shim).
    # One place at a time; an option typed on the command line wins over
    # others from the environment (PODWIRE_AGENT_SOCKET may be set for the shim).
    def typed(name: str) -> bool:
        return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE

    if any(typed(n) for n in ("url", "agent_socket", "state_dir")):
        url = url if typed("url") else None
        agent_socket = agent_socket if typed("agent_socket") else None
        state_dir = state_dir if typed("state_dir") else None
    target = Target(url, token, agent_socket, state_dir, db_url, project, as_json)
    ctx.obj = target
    ctx.call_on_close(target.close)


# --- networks ---------------------------------------------------------------------------------


@main.group()
def network() -> None:
    """Networks."""


@network.command("create")
@click.argument("name")
@click.option("--subnet", "subnets", multiple=True, help="CIDR of a subnet (repeatable, v4/v6)")
@click.option("--mtu", type=int)
@click.option("--shared", is_flag=True, help="usable by every project")
@click.option(
    "--datapath",
    type=click.Choice(["bridge", "ovs", "macvlan", "ipvlan", "vlan", "sriov", "vhostuser"]),
)
@click.option("--network-type", type=click.Choice(["local", "flat", "vlan", "vxlan", "geneve"]))
@click.option("--segmentation-id", type=int)
@click.option("--physical-network")
@click.option("--disable-port-security", is_flag=True)
@json_option
@pass_target
def network_create(
    target: Target,
    name: str,
    subnets: tuple[str, ...],
    mtu: int | None,
    shared: bool,
    datapath: str | None,
    network_type: str | None,
    segmentation_id: int | None,
    physical_network: str | None,
    disable_port_security: bool,
) -> None:
    """Create network NAME, with one subnet per --subnet."""
    from podwire.model import NetworkCreate, SubnetCreate, parse

    with _errors():
        req = parse(
            NetworkCreate,
            {
                "name": name,
                "project_id": target.project,
                "mtu": mtu,
                "shared": shared,
                "datapath": datapath,
                "network_type": network_type,
                "segmentation_id": segmentation_id,
                "physical_network": physical_network,
                "port_security_enabled": not disable_port_security,
            },
            kind="network",
        )
        subnet_names = _subnet_names(name, subnets)
        backend, ctx = target.backend(), target.context()
        net = backend.create_network(ctx, req)
        try:
            for cidr, subnet_name in zip(subnets, subnet_names, strict=True):
                sub_req = parse(
                    SubnetCreate,
                    {
                        "network_id": net.id,
                        "cidr": cidr,
                        "name": subnet_name,
                        "project_id": target.project,
                    },
                    kind="subnet",
                )
                backend.create_subnet(ctx, sub_req)
        except BaseException:
            # All or nothing: a network without the subnets asked for is not
            # what the user wanted (deleting it also deletes its subnets).
            try:
                backend.delete_network(ctx, net.id)
            except PodwireError as undo_exc:
                click.echo(
                    f"podwire: warning: could not undo network {net.id}: {undo_exc}", err=True
                )
            raise
        _show(target, backend.get_network(ctx, net.id), NETWORK_FIELDS)


def _subnet_names(network_name: str, cidrs: Sequence[str]) -> list[str]:
    names: list[str] = []
    counts: dict[int, int] = {}
    for cidr in cidrs:
        try:
            version = ipaddress.ip_network(cidr, strict=False).version
        except ValueError:
            raise InvalidInput(f"--subnet {cidr!r} is not a CIDR", field="subnet") from None
        counts[version] = counts.get(version, 0) + 1
        suffix = f"v{version}" + (f"-{counts[version]}" if counts[version] > 1 else "")
        names.append(f"{network_name}-{suffix}" if network_name else "")
    return names


@network.command("list")
@click.option("--name", "names", multiple=True)
@json_option
@pass_target
def network_list(target: Target, names: tuple[str, ...]) -> None:
    """List networks."""
    with _errors():
        filters = _project_filter(target, {"name": list(names)} if names else {})
        backend, ctx = target.backend(), target.context()
        nets = backend.list_networks(ctx, filters)
        cidrs = {s.id: s.cidr for s in backend.list_subnets(ctx)} if not target.as_json else {}
        _list(
            target,
            nets,
            {
                "id": _attr("id"),
                "name": _attr("name"),
                "subnets": lambda n: [cidrs.get(s, s) for s in n.subnets],
                "type": _attr("network_type"),
                "mtu": _attr("mtu"),
                "datapath": _attr("datapath"),
                "project": _attr("project_id"),
            },
        )


@network.command("show")
@click.argument("network")
@json_option
@pass_target
def network_show(target: Target, network: str) -> None:
    """Show a network by id or name."""
    with _errors():
        _show(target, _resolve(target, "network", network), NETWORK_FIELDS)


@network.command("delete")
@click.argument("networks", nargs=-1, required=True)
@json_option
@pass_target
def network_delete(target: Target, networks: tuple[str, ...]) -> None:
    """Delete networks (and their subnets) by id or name."""
    with _errors():
        for ref in networks:
            net = _resolve(target, "network", ref)
            target.backend().delete_network(target.context(), net.id)


# --- subnets -----------------------------------------------------------------------------------


@main.group()
def subnet() -> None:
    """Subnets."""


@subnet.command("create")
@click.argument("cidr")
@click.option("--network", required=True, help="network id or name")
@click.option("--name", default="")
@click.option("--gateway", help="gateway IP, or 'none' (default: the first address)")
@click.option("--allocation-pool", "pools", multiple=True, help="start=IP,end=IP (repeatable)")
@click.option("--dns-nameserver", "dns", multiple=True)
@json_option
@pass_target
def subnet_create(
    target: Target,
    cidr: str,
    network: str,
    name: str,
    gateway: str | None,
    pools: tuple[str, ...],
    dns: tuple[str, ...],
) -> None:
    """Create a subnet CIDR on a network."""
    from podwire.model import SubnetCreate, parse

    with _errors():
        net = _resolve(target, "network", network)
        data: dict[str, Any] = {
            "network_id": net.id,
            "cidr": cidr,
            "name": name,
            "project_id": target.project,
            "dns_nameservers": list(dns),
        }
        if gateway is not None:
            data["gateway_ip"] = None if gateway.lower() == "none" else gateway
        if pools:
            data["allocation_pools"] = [
                _parse_kv(p, "--allocation-pool", ("start", "end")) for p in pools
            ]
        req = parse(SubnetCreate, data, kind="subnet")
        sub = target.backend().create_subnet(target.context(), req)
        _show(target, sub, SUBNET_FIELDS)


@subnet.command("list")
@click.option("--network", help="network id or name")
@json_option
@pass_target
def subnet_list(target: Target, network: str | None) -> None:
    """List subnets."""
    with _errors():
        filters: dict[str, list[str]] = {}
        if network:
            filters["network_id"] = [_resolve(target, "network", network).id]
        subs = target.backend().list_subnets(target.context(), _project_filter(target, filters))
        _list(
            target,
            subs,
            {
                "id": _attr("id"),
                "name": _attr("name"),
                "cidr": _attr("cidr"),
                "gateway": _attr("gateway_ip"),
                "network_id": _attr("network_id"),
            },
        )


@subnet.command("show")
@click.argument("subnet")
@json_option
@pass_target
def subnet_show(target: Target, subnet: str) -> None:
    """Show a subnet by id or name."""
    with _errors():
        _show(target, _resolve(target, "subnet", subnet), SUBNET_FIELDS)


@subnet.command("delete")
@click.argument("subnets", nargs=-1, required=True)
@json_option
@pass_target
def subnet_delete(target: Target, subnets: tuple[str, ...]) -> None:
    """Delete subnets by id or name."""
    with _errors():
        for ref in subnets:
            sub = _resolve(target, "subnet", ref)
            target.backend().delete_subnet(target.context(), sub.id)


# --- ports -------------------------------------------------------------------------------------


@main.group()
def port() -> None:
    """Ports."""


def _fixed_ip_request(target: Target, text: str) -> dict[str, str]:
    """``IP``, or ``subnet=NAME_OR_ID[,ip-address=IP]``."""
    if "=" not in text:
        return {"ip_address": text}
    kv = _parse_kv(text, "--fixed-ip", ("subnet", "ip-address"))
    out: dict[str, str] = {}
    if "subnet" in kv:
        out["subnet_id"] = _resolve(target, "subnet", kv["subnet"]).id
    if "ip-address" in kv:
        out["ip_address"] = kv["ip-address"]
    return out


def _address_pair(text: str) -> dict[str, str]:
    """``IP[/LEN]``, or ``ip-address=IP[/LEN][,mac-address=MAC]``."""
    if "=" not in text:
        return {"ip_address": text}
    kv = _parse_kv(text, "--allowed-address-pair", ("ip-address", "mac-address"))
    if "ip-address" not in kv:
        raise InvalidInput(f"--allowed-address-pair {text!r} needs ip-address=", field="ip_address")
    out = {"ip_address": kv["ip-address"]}
    if "mac-address" in kv:
        out["mac_address"] = kv["mac-address"]
    return out


@port.command("create")
@click.option("--network", required=True, help="network id or name")
@click.option("--name", default="")
@click.option(
    "--fixed-ip",
    "fixed_ips",
    multiple=True,
    help="IP, or subnet=SUBNET[,ip-address=IP] (repeatable)",
)
@click.option("--no-fixed-ip", is_flag=True, help="no address at all")
@click.option("--mac", "mac_address", help="MAC address (default: allocated)")
@click.option(
    "--allowed-address-pair",
    "pairs",
    multiple=True,
    help="IP[/LEN] or ip-address=IP[/LEN],mac-address=MAC (repeatable)",
)
@click.option("--device-id", default="")
@click.option("--device-owner", default="")
@click.option(
    "--vnic-type",
    type=click.Choice(
        ["normal", "direct", "direct-physical", "macvtap", "baremetal", "virtio-forwarder", "vdpa"]
    ),
    default="normal",
)
@click.option("--host", "host_id", help="binding:host_id")
@click.option("--disable-port-security", is_flag=True)
@json_option
@pass_target
def port_create(
    target: Target,
    network: str,
    name: str,
    fixed_ips: tuple[str, ...],
    no_fixed_ip: bool,
    mac_address: str | None,
    pairs: tuple[str, ...],
    device_id: str,
    device_owner: str,
    vnic_type: str,
    host_id: str | None,
    disable_port_security: bool,
) -> None:
    """Create a port on a network."""
    from podwire.model import PortCreate, parse

    with _errors():
        if no_fixed_ip and fixed_ips:
            raise InvalidInput("--no-fixed-ip and --fixed-ip exclude each other", field="fixed_ips")
        net = _resolve(target, "network", network)
        data: dict[str, Any] = {
            "network_id": net.id,
            "name": name,
            "project_id": target.project,
            "mac_address": mac_address,
            "device_id": device_id,
            "device_owner": device_owner,
            "vnic_type": vnic_type,
            "allowed_address_pairs": [_address_pair(p) for p in pairs],
        }
        if fixed_ips or no_fixed_ip:
            data["fixed_ips"] = [_fixed_ip_request(target, f) for f in fixed_ips]
        if disable_port_security:
            data["port_security_enabled"] = False
        if host_id is not None:
            data["binding"] = {"host_id": host_id}
        req = parse(PortCreate, data, kind="port")
        _show(target, target.backend().create_port(target.context(), req), PORT_FIELDS)


@port.command("list")
@click.option("--network", help="network id or name")
@click.option("--device-id", "device_ids", multiple=True)
@click.option("--ip-address", "ips", multiple=True, help="ports holding this fixed IP")
@click.option("--host", "hosts", multiple=True, help="binding:host_id")
@json_option
@pass_target
def port_list(
    target: Target,
    network: str | None,
    device_ids: tuple[str, ...],
    ips: tuple[str, ...],
    hosts: tuple[str, ...],
) -> None:
    """List ports."""
    with _errors():
        filters: dict[str, list[str]] = {}
        if network:
            filters["network_id"] = [_resolve(target, "network", network).id]
        if device_ids:
            filters["device_id"] = list(device_ids)
        if ips:
            filters["fixed_ips.ip_address"] = list(ips)
        if hosts:
            filters["binding.host_id"] = list(hosts)
        found = target.backend().list_ports(target.context(), _project_filter(target, filters))
        _list(
            target,
            found,
            {
                "id": _attr("id"),
                "name": _attr("name"),
                "mac_address": _attr("mac_address"),
                "fixed_ips": _fixed_ips,
                "device_id": _attr("device_id"),
                "status": _attr("status"),
            },
        )


@port.command("show")
@click.argument("port")
@json_option
@pass_target
def port_show(target: Target, port: str) -> None:
    """Show a port by id or name."""
    with _errors():
        _show(target, _resolve(target, "port", port), PORT_FIELDS)


@port.command("delete")
@click.argument("ports", nargs=-1, required=True)
@json_option
@pass_target
def port_delete(target: Target, ports: tuple[str, ...]) -> None:
    """Delete ports by id or name."""
    with _errors():
        for ref in ports:
            found = _resolve(target, "port", ref)
            target.backend().delete_port(target.context(), found.id)


# --- trunks -------------------------------------------------------------------------------------


@main.group()
def trunk() -> None:
    """Trunks: a parent port carrying sub-ports on VLANs."""


def _subport(target: Target, text: str) -> dict[str, Any]:
    kv = _parse_kv(text, "--subport", ("port", "segmentation-id", "segmentation-type"))
    if "port" not in kv or "segmentation-id" not in kv:
        raise InvalidInput(
            f"--subport {text!r} needs port=PORT,segmentation-id=VLAN", field="sub_ports"
        )
    return {
        "port_id": _resolve(target, "port", kv["port"]).id,
        "segmentation_type": kv.get("segmentation-type", "vlan"),
        "segmentation_id": kv["segmentation-id"],
    }


@trunk.command("create")
@click.argument("name")
@click.option("--parent-port", required=True, help="parent port id or name")
@click.option(
    "--subport", "subports", multiple=True, help="port=PORT,segmentation-id=VLAN (repeatable)"
)
@json_option
@pass_target
def trunk_create(target: Target, name: str, parent_port: str, subports: tuple[str, ...]) -> None:
    """Create trunk NAME on a parent port."""
    from podwire.model import TrunkCreate, parse

    with _errors():
        data = {
            "name": name,
            "port_id": _resolve(target, "port", parent_port).id,
            "project_id": target.project,
            "sub_ports": [_subport(target, s) for s in subports],
        }
        req = parse(TrunkCreate, data, kind="trunk")
        _show(target, target.backend().create_trunk(target.context(), req), TRUNK_FIELDS)


@trunk.command("list")
@json_option
@pass_target
def trunk_list(target: Target) -> None:
    """List trunks."""
    with _errors():
        found = target.backend().list_trunks(target.context(), _project_filter(target, {}))
        _list(
            target,
            found,
            {
                "id": _attr("id"),
                "name": _attr("name"),
                "port_id": _attr("port_id"),
                "sub_ports": lambda t: [f"{s.segmentation_id}: {s.port_id}" for s in t.sub_ports],
                "status": _attr("status"),
            },
        )


@trunk.command("show")
@click.argument("trunk")
@json_option
@pass_target
def trunk_show(target: Target, trunk: str) -> None:
    """Show a trunk by id or name."""
    with _errors():
        _show(target, _resolve(target, "trunk", trunk), TRUNK_FIELDS)


@trunk.command("delete")
@click.argument("trunks", nargs=-1, required=True)
@json_option
@pass_target
def trunk_delete(target: Target, trunks: tuple[str, ...]) -> None:
    """Delete trunks by id or name (the ports stay)."""
    with _errors():
        for ref in trunks:
            found = _resolve(target, "trunk", ref)
            target.backend().delete_trunk(target.context(), found.id)


@trunk.command("add-subport")
@click.argument("trunk")
@click.option("--port", "port_ref", help="sub-port id or name")
@click.option("--segmentation-id", type=int, help="VLAN id 1-4094")
@click.option("--subport", "subports", multiple=True, help="port=PORT,segmentation-id=VLAN")
@json_option
@pass_target
def trunk_add_subport(
    target: Target,
    trunk: str,
    port_ref: str | None,
    segmentation_id: int | None,
    subports: tuple[str, ...],
) -> None:
    """Add sub-ports to a trunk."""
    from podwire.model import SubPort, parse

    with _errors():
        items = [_subport(target, s) for s in subports]
        if port_ref is not None or segmentation_id is not None:
            if port_ref is None or segmentation_id is None:
                raise InvalidInput("--port and --segmentation-id go together", field="sub_ports")
            items.append(
                {
                    "port_id": _resolve(target, "port", port_ref).id,
                    "segmentation_id": segmentation_id,
                }
            )
        if not items:
            raise InvalidInput("name a sub-port: --port P --segmentation-id N", field="sub_ports")
        sub_ports = [parse(SubPort, i, kind="trunk") for i in items]
        found = _resolve(target, "trunk", trunk)
        result = target.backend().add_subports(target.context(), found.id, sub_ports)
        _show(target, result, TRUNK_FIELDS)


@trunk.command("remove-subport")
@click.argument("trunk")
@click.option("--port", "ports", multiple=True, required=True, help="sub-port id or name")
@json_option
@pass_target
def trunk_remove_subport(target: Target, trunk: str, ports: tuple[str, ...]) -> None:
    """Remove sub-ports from a trunk (the ports stay)."""
    with _errors():
        found = _resolve(target, "trunk", trunk)
        port_ids = [_resolve(target, "port", p).id for p in ports]
        result = target.backend().remove_subports(target.context(), found.id, port_ids)
        _show(target, result, TRUNK_FIELDS)


# --- services ------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="/var/lib/podwire",
    show_default=True,
)
@click.option("--listen", default="127.0.0.1:9696", show_default=True, help="HOST:PORT")
@click.option(
    "--tokens",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help='JSON {"TOKEN": {"project_id": ..., "roles": [...]}}',
)
@click.option("--db-url", help="SQLAlchemy URL (e.g. PostgreSQL) instead of SQLite in --state-dir")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="server processes on the same database (one core each)",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="warning",
    show_default=True,
)
def server(
    state_dir: Path,
    listen: str,
    tokens: Path,
    db_url: str | None,
    workers: int,
    log_level: str,
) -> None:
    """Serve the embedded backend over the Neutron v2.0 API."""
    from podwire.api.server import run_server
    from podwire.config import load_config

    with _errors():
        config = load_config(
            None, state_dir=str(state_dir), backend="embedded", **{"embedded.db_url": db_url}
        )
        run_server(config, listen, tokens, workers=workers, log_level=log_level)


@main.command()
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--socket", "socket_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--backend", type=click.Choice(["embedded", "ovn", "remote"]))
@click.option("--ovn-nb", "ovn_nb", multiple=True, help="OVN northbound remote (repeatable)")
@click.option("--server-url", help="podwire server URL for --backend remote")
@click.option("--server-token", help="X-Auth-Token for --server-url")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--docker-plugin-socket",
    type=click.Path(dir_okay=False, path_type=Path),
    help="also serve Docker's libnetwork remote driver on this socket",
)
@click.option("--host-id", help="this node's name in port bindings (default: hostname)")
def agent(
    state_dir: Path | None,
    socket_path: Path | None,
    backend: str | None,
    ovn_nb: tuple[str, ...],
    server_url: str | None,
    server_token: str | None,
    config_file: Path | None,
    docker_plugin_socket: Path | None,
    host_id: str | None,
) -> None:
    """Run the node agent (CNI and Docker requests, attachments)."""
    from podwire.config import load_config

    with _errors():
        config = load_config(
            config_file,
            state_dir=str(state_dir) if state_dir else None,
            backend=backend,
            host_id=host_id,
            **{
                "agent.socket": str(socket_path) if socket_path else None,
                "agent.docker_plugin_socket": (
                    str(docker_plugin_socket) if docker_plugin_socket else None
                ),
                "agent.serve_docker": True if docker_plugin_socket else None,
                "ovn.nb_remotes": list(ovn_nb) or None,
                "remote.url": server_url,
                "remote.token": server_token,
            },
        )
        from podwire.daemon import run_agent

        run_agent(config)


if __name__ == "__main__":
    main()
