"""Every part of a CNI request checked, strictly and by type, before anything
is done with it: the environment as the shim carried it, the JSON on stdin,
the keys podwire reads from it (prevResult, args, runtimeConfig, the GC list).

A wrong-typed value is code 7 naming its key (never read as "absent", which
once turned ``"cni.dev/valid-attachments": {}`` into "keep nothing"); a bad
environment value is code 4; stdin that is not strict JSON is code 6.
Keys podwire does not read are left alone (a config may carry other
plugins' settings), except that they too must be strict JSON.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from podwire.frontends.cni.errors import CniError, Code

#: The largest stdin the agent reads (docs/cni.md "Limits"); the daemon
#: refuses a longer body before reading it. The default of (and the ceiling
#: on) agent.cni_max_stdin_bytes, which may lower it.
MAX_CONFIG_BYTES = 1 << 20
#: How deeply stdin's JSON may nest (a real config nests 5-6 levels): the
#: default of agent.cni_max_depth.
MAX_DEPTH = 64
#: Header that says the X-CNI-* values are base64 of the variables' bytes.
ENCODING_HEADER = "x-cni-encoding"

_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


# --- the environment -------------------------------------------------------------------


def decode_env(headers: Mapping[str, str], names: Mapping[str, str]) -> dict[str, str]:
    """The CNI variables, exactly as the runtime set them. With
    ``X-CNI-Encoding: base64`` (what both shims send) each header is base64
    of the variable's bytes, decoded as the OS decodes a path (UTF-8, other
    bytes kept as surrogates): nothing stripped, nothing re-encoded. Without
    it (a hand-made request) the header values are taken as they are."""
    encoded = headers.get(ENCODING_HEADER)
    if encoded is not None and encoded != "base64":
        raise CniError(Code.INVALID_ENV, f"unknown X-CNI-Encoding {encoded[:40]!r}")
    env: dict[str, str] = {}
    for var, header in names.items():
        value = headers.get(header)
        if value is None:
            continue
        if encoded:
            try:
                raw = base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                raise CniError(Code.INVALID_ENV, f"{var} is not valid base64 on the wire") from None
            value = os.fsdecode(raw)
        if "\0" in value:
            raise CniError(Code.INVALID_ENV, f"{var} contains a NUL byte")
        env[var] = value
    return env


def printable(value: str, limit: int = 80) -> str:
    """A value for a message: surrogates (non-UTF-8 bytes) shown escaped."""
    return repr(value[:limit].encode("utf-8", "backslashreplace").decode("ascii", "replace"))


# --- stdin -------------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_config(
    body: bytes, *, max_bytes: int = MAX_CONFIG_BYTES, max_depth: int = MAX_DEPTH
) -> dict[str, Any]:
    """Stdin as strict JSON (RFC 8259: no NaN or Infinity), an object, at most
    ``max_depth`` deep (code 6 otherwise), of at most ``max_bytes`` (code 7)."""
    if len(body) > max_bytes:
        raise CniError(
            Code.INVALID_CONFIG,
            f"the network config on stdin is over {max_bytes} bytes",
            "see docs/cni.md, Limits (agent.cni_max_stdin_bytes)",
        )
    try:
        config = json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise CniError(Code.DECODE, "the network config on stdin nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CniError(Code.DECODE, "cannot decode the network config on stdin", str(exc)) from None
    if not isinstance(config, dict):
        raise CniError(Code.DECODE, "the network config on stdin is not a JSON object")
    if _depth(config, max_depth) > max_depth:
        raise CniError(
            Code.DECODE,
            f"the network config on stdin nests deeper than {max_depth} levels"
            " (agent.cni_max_depth)",
        )
    return config


def _depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply ``value`` nests (stopping past ``limit``); raises code 6
    for a string that is not Unicode text (a lone surrogate escape, valid
    JSON syntax but no text anything downstream can hold)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _text(item)
            continue
        if isinstance(item, dict):
            for key in item:
                _text(key)
            items: Any = item.values()
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in items)
    return deepest


def _text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CniError(
            Code.DECODE, "the network config on stdin holds a string that is not Unicode text"
        ) from None


# --- typed checks ------------------------------------------------------------------------


def _bad(key: str, want: str, value: Any) -> CniError:
    shown = json.dumps(value)[:80] if _jsonable(value) else type(value).__name__
    return CniError(Code.INVALID_CONFIG, f"{key} must be {want}, got {shown}", key)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def string(value: Any, key: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty):
        raise _bad(key, "a string" if empty else "a non-empty string", value)
    return value


def obj(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(key, "an object", value)
    return value


def array(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(key, "a list", value)
    return value


def integer(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(key, f"an integer from {low} to {high}", value)
    return value


def ip(value: Any, key: str) -> str:
    try:
        return str(ipaddress.ip_address(string(value, key)))
    except ValueError:
        raise _bad(key, "an IP address", value) from None


def cidr(value: Any, key: str) -> str:
    text = string(value, key)
    try:
        if "/" not in text:
            raise ValueError
        ipaddress.ip_interface(text)
    except ValueError:
        raise _bad(key, "an address with a prefix length", value) from None
    return text


def mac(value: Any, key: str) -> str:
    if not isinstance(value, str) or not _MAC_RE.match(value):
        raise _bad(key, "a MAC address (aa:bb:cc:dd:ee:ff)", value)
    return value.lower()


def optional(config: Mapping[str, Any], key: str) -> bool:
    """Whether ``key`` is given: present and not null (null is "absent", as
    Go's decoder reads it)."""
    return config.get(key) is not None


# --- the config keys podwire reads -------------------------------------------------------

# Top-level keys and their type; a required one is checked by the verb.
_TOP_STRINGS = ("name", "type", "agentSocket")


def config_keys(config: dict[str, Any], command: str) -> None:
    """The keys of the config itself; ``networks``, ``default-route`` and
    their elements are selection.py's."""
    for key in _TOP_STRINGS:
        if key in config and not (key == "agentSocket" and config[key] is None):
            string(config[key], key)
    if command != "VERSION":
        string(config.get("name"), "name")
    if "network" in config:
        string(config["network"], "network")
    if optional(config, "runtimeConfig"):
        runtime = obj(config["runtimeConfig"], "runtimeConfig")
        if optional(runtime, "mac"):
            mac(runtime["mac"], "runtimeConfig.mac")
        if optional(runtime, "ips"):
            for i, item in enumerate(array(runtime["ips"], "runtimeConfig.ips")):
                cidr_or_ip(item, f"runtimeConfig.ips[{i}]")
    if optional(config, "args"):
        args = obj(config["args"], "args")
        if optional(args, "cni"):
            cni = obj(args["cni"], "args.cni")
            if optional(cni, "mac"):
                mac(cni["mac"], "args.cni.mac")
            if optional(cni, "ips"):
                for i, item in enumerate(array(cni["ips"], "args.cni.ips")):
                    cidr_or_ip(item, f"args.cni.ips[{i}]")
    if optional(config, "prevResult"):
        try:
            prev_result(config["prevResult"])
        except CniError as exc:
            # A result that cannot be read as one: a decode failure (6), as
            # podwire has always answered a malformed prevResult.
            raise CniError(Code.DECODE, exc.msg, exc.details) from None
    for key in ("cni.dev/valid-attachments", "cni.dev/attachments"):
        if key in config:
            valid_attachments(config[key], key)


def cidr_or_ip(value: Any, key: str) -> str:
    text = string(value, key)
    try:
        return str(ipaddress.ip_interface(text).ip)
    except ValueError:
        raise _bad(key, "an IP address", value) from None


def valid_attachments(value: Any, key: str) -> set[tuple[str, str]]:
    """GC's list of what to keep: a list of {containerID, ifname} objects.
    Anything else is refused, never read as an empty list."""
    keep: set[tuple[str, str]] = set()
    for i, entry in enumerate(array(value, key)):
        where = f"{key}[{i}]"
        entry = obj(entry, where)
        cid = string(entry.get("containerID"), f"{where}.containerID")
        ifname = string(entry.get("ifname"), f"{where}.ifname")
        keep.add((cid, ifname))
    return keep


def prev_result(value: Any) -> dict[str, Any]:
    """A previous plugin's result (the spec's Success result): every field
    podwire reads or echoes, by type. Nothing of it reaches the answer
    unchecked (a string where a list belongs once came back split into
    characters)."""
    key = "prevResult"
    prev = obj(value, key)
    if "cniVersion" in prev:
        string(prev["cniVersion"], f"{key}.cniVersion")
    interfaces = array(prev.get("interfaces", []), f"{key}.interfaces")
    for i, iface in enumerate(interfaces):
        where = f"{key}.interfaces[{i}]"
        iface = obj(iface, where)
        string(iface.get("name"), f"{where}.name")
        if "mac" in iface:
            string(iface["mac"], f"{where}.mac", empty=True)
        for field in ("sandbox", "socketPath", "pciID"):
            if field in iface:
                string(iface[field], f"{where}.{field}", empty=True)
        if "mtu" in iface:
            integer(iface["mtu"], f"{where}.mtu", 0, 65535)
    for i, entry in enumerate(array(prev.get("ips", []), f"{key}.ips")):
        where = f"{key}.ips[{i}]"
        entry = obj(entry, where)
        cidr(entry.get("address"), f"{where}.address")
        if "gateway" in entry:
            ip(entry["gateway"], f"{where}.gateway")
        if "interface" in entry:
            integer(entry["interface"], f"{where}.interface", 0, max(len(interfaces) - 1, 0))
            if not interfaces:
                raise _bad(f"{where}.interface", "the index of a listed interface", entry)
        if "version" in entry and entry["version"] not in ("4", "6"):
            raise _bad(f"{where}.version", '"4" or "6"', entry["version"])
    for i, route in enumerate(array(prev.get("routes", []), f"{key}.routes")):
        where = f"{key}.routes[{i}]"
        route = obj(route, where)
        text = string(route.get("dst"), f"{where}.dst")
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise _bad(f"{where}.dst", "a destination prefix", text) from None
        if "gw" in route:
            ip(route["gw"], f"{where}.gw")
        for field in ("mtu", "advmss", "priority", "table", "scope"):
            if field in route:
                integer(route[field], f"{where}.{field}", 0, 2**32 - 1)
    dns = obj(prev.get("dns", {}), f"{key}.dns")
    for i, ns in enumerate(array(dns.get("nameservers", []), f"{key}.dns.nameservers")):
        ip(ns, f"{key}.dns.nameservers[{i}]")
    if "domain" in dns:
        string(dns["domain"], f"{key}.dns.domain", empty=True)
    for field in ("search", "options"):
        for i, item in enumerate(array(dns.get(field, []), f"{key}.dns.{field}")):
            string(item, f"{key}.dns.{field}[{i}]")
    return prev
