"""One CNI invocation, as the shim forwards it: the runtime's CNI_* variables
(as X-CNI-* headers; absent header = unset variable) and its stdin bytes.
Returns the exit code and the stdout bytes the shim writes back unchanged.

This module only translates: parse and validate per the spec, build the
agent's request, render the agent's answer or error.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from podwire.agent.core import Agent
from podwire.agent.types import (
    Attachment,
    AttachRequest,
    CheckRequest,
    DetachRequest,
    GcRequest,
    NetworkSelection,
)
from podwire.frontends.cni import result as results
from podwire.frontends.cni import versions
from podwire.frontends.cni.errors import CniError, Code, from_podwire

VERBS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
HEADERS = {
    "CNI_COMMAND": "x-cni-command",
    "CNI_CONTAINERID": "x-cni-containerid",
    "CNI_NETNS": "x-cni-netns",
    "CNI_IFNAME": "x-cni-ifname",
    "CNI_ARGS": "x-cni-args",
    "CNI_PATH": "x-cni-path",
}
# The spec's rule for container ids: alphanumeric first, then [A-Za-z0-9_.-].
_CONTAINER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# Labels on the attachment record.
LABEL_NETWORK = "cni.network"  # the CNI network config's "name"


@dataclass
class Invocation:
    command: str
    env: dict[str, str]
    config: dict[str, Any]
    version: str

    @property
    def container_id(self) -> str:
        return self.env.get("CNI_CONTAINERID", "")

    @property
    def ifname(self) -> str:
        return self.env.get("CNI_IFNAME", "")

    @property
    def netns(self) -> str | None:
        return self.env.get("CNI_NETNS") or None

    @property
    def network(self) -> str:
        """The podwire network: "network" in the config, else the CNI name."""
        ref = self.config.get("network") or self.config.get("name")
        if not isinstance(ref, str) or not ref:
            raise CniError(
                Code.INVALID_CONFIG,
                'network config names no podwire network ("network" or "name")',
            )
        return ref

    @property
    def cni_name(self) -> str:
        name = self.config.get("name")
        return name if isinstance(name, str) else ""


async def handle(agent: Agent, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
    version = versions.LATEST
    command = headers.get(HEADERS["CNI_COMMAND"], "")
    try:
        inv = parse(headers, body)
        version = inv.version
        output = await dispatch(agent, inv)
    except Exception as exc:
        error = from_podwire(exc, command or "CNI")
        if isinstance(exc, CniError):
            version = _error_version(body, version)
        return 1, _dump(error.to_json(version))
    if output is None:
        return 0, b""
    return 0, _dump(output)


def parse(headers: Mapping[str, str], body: bytes) -> Invocation:
    env = {var: headers[h] for var, h in HEADERS.items() if h in headers}
    command = env.get("CNI_COMMAND")
    if not command:
        raise CniError(Code.INVALID_ENV, "CNI_COMMAND is not set")
    if command not in VERBS:
        raise CniError(
            Code.INVALID_ENV,
            f"unknown CNI_COMMAND {command!r}",
            f"expected one of {', '.join(VERBS)}",
        )
    if command == "VERSION":
        return Invocation(command, env, {}, versions.LATEST)

    try:
        config = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(Code.DECODE, "cannot decode the network config on stdin", str(exc)) from None
    if not isinstance(config, dict):
        raise CniError(Code.DECODE, "the network config on stdin is not a JSON object")
    version = versions.choose(config)

    minimum = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}.get(command)
    if minimum and not versions.at_least(version, minimum):
        raise CniError(
            Code.INCOMPATIBLE_VERSION,
            f"config version {version} does not allow {command}",
            f"{command} needs cniVersion {minimum} or later",
        )
    if command in ("ADD", "DEL", "CHECK"):
        _require_container_id(env)
        _require_ifname(env)
    if command in ("ADD", "CHECK") and not env.get("CNI_NETNS"):
        raise CniError(Code.INVALID_ENV, f"CNI_NETNS is required for {command}")
    return Invocation(command, env, config, version)


def _require_container_id(env: dict[str, str]) -> None:
    cid = env.get("CNI_CONTAINERID")
    if not cid:
        raise CniError(Code.INVALID_ENV, "CNI_CONTAINERID is required")
    if len(cid) > 255 or not _CONTAINER_ID_RE.match(cid):
        raise CniError(
            Code.INVALID_ENV,
            f"invalid CNI_CONTAINERID {cid[:80]!r}",
            "must start with a letter or digit, then letters, digits, '_', '.' or '-'",
        )


def _require_ifname(env: dict[str, str]) -> None:
    name = env.get("CNI_IFNAME")
    if not name:
        raise CniError(Code.INVALID_ENV, "CNI_IFNAME is required")
    if (
        len(name.encode()) > 15
        or name in (".", "..")
        or any(c in name for c in "/:")
        or any(c.isspace() for c in name)
    ):
        raise CniError(
            Code.INVALID_ENV,
            f"invalid CNI_IFNAME {name[:40]!r}",
            "an interface name is 1-15 bytes, not . or .., without '/', ':' or spaces",
        )


async def dispatch(agent: Agent, inv: Invocation) -> dict[str, Any] | None:
    if inv.command == "VERSION":
        return versions.version_result()
    if inv.command == "ADD":
        return await _add(agent, inv)
    if inv.command == "DEL":
        await agent.submit(
            agent.detach,
            DetachRequest(
                container_id=inv.container_id,
                ifname=inv.ifname,
                network=inv.network,
                netns=inv.netns,
                frontend="cni",
            ),
        )
        return None
    if inv.command == "CHECK":
        record = await agent.submit(
            agent.check,
            CheckRequest(
                container_id=inv.container_id,
                ifname=inv.ifname,
                network=inv.network,
                netns=inv.netns,
            ),
        )
        check_prev_result(inv, record)
        return None
    if inv.command == "GC":
        await agent.submit(agent.gc, _gc_request(inv))
        return None
    if inv.command == "STATUS":
        await agent.submit(_status_for(agent), inv.network)
        return None
    raise CniError(Code.INVALID_ENV, f"unknown CNI_COMMAND {inv.command!r}")


async def _add(agent: Agent, inv: Invocation) -> dict[str, Any]:
    mac, ips = runtime_hints(inv)
    req = AttachRequest(
        container_id=inv.container_id,
        netns=inv.netns,
        networks=[NetworkSelection(network=inv.network, ifname=inv.ifname, mac=mac, ips=ips)],
        frontend="cni",
        labels={LABEL_NETWORK: inv.cni_name},
    )
    attached = await agent.submit(agent.attach, req)
    prev = inv.config.get("prevResult")
    return results.render(attached.interfaces[0], inv.version, prev)


def check_prev_result(inv: Invocation, record: Attachment) -> None:
    """The spec has CHECK consult prevResult for the expected interface and
    addresses: what it says of our interface must match what we recorded
    (a later plugin in the chain may add things; it may not change ours)."""
    prev = inv.config.get("prevResult")
    if not isinstance(prev, dict) or record.vif is None:
        return
    interfaces = prev.get("interfaces") or []
    index = next(
        (
            i
            for i, iface in enumerate(interfaces)
            if isinstance(iface, dict) and iface.get("name") == inv.ifname and iface.get("sandbox")
        ),
        None,
    )
    if index is None:
        return  # prevResult does not describe our interface: nothing to compare
    mac = interfaces[index].get("mac")
    if mac and mac.lower() != record.vif.mac:
        raise CniError(
            Code.OTHER,
            f"prevResult says {inv.ifname} has MAC {mac}, podwire plugged {record.vif.mac}",
            "mac",
        )
    expected = {a.split("/")[0] for a in record.vif.addresses}
    listed = {
        str(ip.get("address", "")).split("/")[0]
        for ip in prev.get("ips") or []
        if isinstance(ip, dict) and ip.get("interface") == index
    }
    missing = sorted(listed - expected)
    if missing:
        raise CniError(
            Code.OTHER,
            f"prevResult lists {', '.join(missing)} on {inv.ifname}, not an address of its port",
            "addresses",
        )


def runtime_hints(inv: Invocation) -> tuple[str | None, list[str]]:
    """A fixed MAC and addresses, from (first found wins) runtimeConfig's
    "mac"/"ips" capabilities, the config's args.cni, then CNI_ARGS MAC/IP."""
    cni_args = parse_cni_args(inv.env.get("CNI_ARGS", ""))
    runtime = inv.config.get("runtimeConfig") or {}
    args = (inv.config.get("args") or {}).get("cni") or {}
    if not isinstance(runtime, dict) or not isinstance(args, dict):
        raise CniError(Code.INVALID_CONFIG, "runtimeConfig and args.cni must be objects")

    mac = runtime.get("mac") or args.get("mac") or cni_args.get("MAC")
    if mac is not None and not isinstance(mac, str):
        raise CniError(Code.INVALID_CONFIG, f"mac must be a string, got {mac!r}")

    raw_ips: Any = runtime.get("ips") or args.get("ips")
    if raw_ips is None and cni_args.get("IP"):
        raw_ips = cni_args["IP"].split(",")
    ips: list[str] = []
    for value in raw_ips or []:
        if not isinstance(value, str):
            raise CniError(Code.INVALID_CONFIG, f"ips entries must be strings, got {value!r}")
        try:
            ips.append(str(ipaddress.ip_interface(value.strip()).ip))
        except ValueError:
            raise CniError(Code.INVALID_CONFIG, f"invalid IP address {value!r}") from None
    return mac, ips


KNOWN_CNI_ARGS = {"IgnoreUnknown", "MAC", "IP"}


def parse_cni_args(raw: str) -> dict[str, str]:
    """CNI_ARGS "K=V;K2=V2". Unknown keys are an error unless IgnoreUnknown
    is true (the reference plugins' rule)."""
    out: dict[str, str] = {}
    if not raw:
        return out
    for pair in raw.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(Code.INVALID_ENV, f"invalid CNI_ARGS pair {pair!r}", "expected K=V")
        out[key] = value
    unknown = sorted(set(out) - KNOWN_CNI_ARGS)
    ignore = out.get("IgnoreUnknown", "").lower() in ("1", "true")
    if unknown and not ignore:
        raise CniError(
            Code.INVALID_ENV,
            f"unknown CNI_ARGS {', '.join(unknown)}",
            "set IgnoreUnknown=1 to ignore them",
        )
    return out


def _gc_request(inv: Invocation) -> GcRequest:
    valid = inv.config.get("cni.dev/valid-attachments")
    if valid is None:
        valid = inv.config.get("cni.dev/attachments")  # the legacy key
    keep: list[tuple[str, str]] = []
    for entry in valid or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("containerID"), str):
            raise CniError(
                Code.INVALID_CONFIG,
                "cni.dev/valid-attachments entries need containerID and ifname",
                repr(entry)[:200],
            )
        keep.append((entry["containerID"], str(entry.get("ifname", ""))))
    return GcRequest(
        frontend="cni",
        labels={LABEL_NETWORK: inv.cni_name},
        keep=keep,
        network=inv.network,
    )


def _status_for(agent: Agent) -> Any:
    def status(network: str) -> None:
        ok, reason = agent.can_attach(network)
        if not ok:
            raise CniError(Code.NOT_AVAILABLE, "podwire cannot serve ADD now", reason)

    return status


def _error_version(body: bytes, fallback: str) -> str:
    """The version an error is reported in: the config's, when readable."""
    try:
        config = json.loads(body)
        version = config.get("cniVersion") if isinstance(config, dict) else None
    except (ValueError, UnicodeDecodeError):
        return fallback
    return version if isinstance(version, str) and version else fallback


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"
