"""One CNI invocation, as the shim forwards it: the runtime's CNI_* variables
(as X-CNI-* headers; absent header = unset variable) and its stdin bytes.
Returns the exit code and the stdout bytes the shim writes back unchanged.

This module only translates: parse and validate per the spec, build the
agent's request, render the agent's answer or error.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from podwire import nsfs
from podwire.agent.core import Agent
from podwire.agent.types import (
    Attachment,
    AttachRequest,
    AttachResult,
    CheckRequest,
    DetachRequest,
    GcRequest,
    NetworkSelection,
)
from podwire.config import AgentConfig
from podwire.errors import PodwireError
from podwire.frontends.cni import result as results
from podwire.frontends.cni import selection, validate, versions
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
LABEL_IFNAME = "cni.ifname"  # the CNI_IFNAME of the ADD that made the record

log = logging.getLogger(__name__)


@dataclass
class Invocation:
    command: str
    env: dict[str, str]
    config: dict[str, Any]
    version: str
    cni_args: dict[str, str] = field(default_factory=dict)

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
    def selections(self) -> list[NetworkSelection]:
        """The networks the config names ("network" or "networks"), the
        first one plugged as CNI_IFNAME."""
        return selection.from_config(self.config, self.ifname)

    @property
    def many(self) -> bool:
        """Whether the config names its networks with "networks"."""
        return "networks" in self.config

    @property
    def network(self) -> str:
        """The first (or only) podwire network the config names."""
        return self.selections[0].network

    @property
    def cni_name(self) -> str:
        name = self.config.get("name")
        return name if isinstance(name, str) else ""


def verb_label(headers: Mapping[str, str]) -> str:
    """The request's CNI_COMMAND for metrics labels: one of VERBS, else
    "invalid" (a label value never comes from the caller unchecked, so a
    hostile caller cannot grow the metrics without bound)."""
    try:
        command = validate.decode_env(headers, {"CNI_COMMAND": HEADERS["CNI_COMMAND"]})
    except CniError:
        return "invalid"
    verb = command.get("CNI_COMMAND", "")
    return verb if verb in VERBS else "invalid"


def handle(agent: Agent, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
    version = versions.LATEST
    command = headers.get(HEADERS["CNI_COMMAND"], "")
    try:
        inv = parse(headers, body, agent.config.agent)
        command = inv.command
        version = inv.version
        output = dispatch(agent, inv)
        return (0, b"") if output is None else (0, _dump(output))
    except Exception as exc:
        if not isinstance(exc, (CniError, PodwireError)):
            # A bug, not the caller's fault: the traceback goes to the log,
            # the caller gets a code and a pointer there, not Python's text.
            incident = uuid.uuid4().hex[:12]
            log.exception("CNI %s failed unexpectedly (incident %s)", command, incident)
            exc = CniError(
                Code.OTHER,
                f"{command or 'CNI'} failed: unexpected error in the podwire agent",
                f"incident {incident} in the agent's log",
            )
        error = from_podwire(exc, command or "CNI")
        if isinstance(exc, CniError):
            version = _error_version(body, version)
        return 1, _dump(error.to_json(version))


def cni_code(exit_code: int, out: bytes) -> int:
    """0 for success, else the CNI error code of the answer (999 if none):
    the metrics' ``code`` label."""
    if exit_code == 0:
        return 0
    try:
        code = json.loads(out).get("code")
    except (ValueError, AttributeError):
        return 999
    return code if isinstance(code, int) else 999


def oversized(headers: Mapping[str, str], size: int) -> tuple[int, bytes] | None:
    """The answer to a request whose stdin is (or grows) past the limit, or
    None while it is within it: the daemon asks before and while reading."""
    if size <= validate.MAX_CONFIG_BYTES:
        return None
    error = CniError(
        Code.INVALID_CONFIG,
        f"the network config on stdin is over {validate.MAX_CONFIG_BYTES} bytes",
        "see docs/cni.md, Limits",
    )
    return 1, _dump(error.to_json(versions.LATEST))


def busy_answer(body: bytes, admitted: int, limit: int) -> bytes:
    """Code 11 for a request refused before it is parsed (the agent is at
    its admission limit), in the config's version when stdin names one."""
    error = CniError(
        Code.TRY_AGAIN_LATER,
        f"agent busy: {admitted} requests in flight or queued (limit {limit}); try again later",
    )
    return _dump(error.to_json(_error_version(body, versions.LATEST)))


def parse(headers: Mapping[str, str], body: bytes, limits: AgentConfig | None = None) -> Invocation:
    """The whole request, checked before anything is done with it: the
    environment (exact bytes, see validate.decode_env), stdin as strict JSON,
    every config key podwire reads by type, CNI_ARGS, and CNI_NETNS proven a
    network namespace without opening it for I/O."""
    env = validate.decode_env(headers, HEADERS)
    command = env.get("CNI_COMMAND")
    if not command:
        raise CniError(Code.INVALID_ENV, "CNI_COMMAND is not set")
    if command not in VERBS:
        raise CniError(
            Code.INVALID_ENV,
            f"unknown CNI_COMMAND {validate.printable(command)}",
            f"expected one of {', '.join(VERBS)}",
        )
    if command == "VERSION":
        return Invocation(command, env, {}, versions.LATEST)

    limits = limits or AgentConfig()  # the door's limits (agent.cni_max_*)
    config = validate.load_config(
        body, max_bytes=limits.cni_max_stdin_bytes, max_depth=limits.cni_max_depth
    )
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
    # Required for every verb but VERSION, as the reference plugins' skel has it.
    if not env.get("CNI_PATH"):
        raise CniError(Code.INVALID_ENV, f"CNI_PATH is required for {command}")
    if command in ("ADD", "CHECK") and not env.get("CNI_NETNS"):
        raise CniError(Code.INVALID_ENV, f"CNI_NETNS is required for {command}")
    validate.config_keys(config, command)
    inv = Invocation(command, env, config, version)
    # Read here so that their errors come before any work.
    inv.selections  # noqa: B018 - validates "network"/"networks"
    inv.cni_args = parse_cni_args(env.get("CNI_ARGS", ""))
    if command == "ADD":
        runtime_hints(inv)
    if inv.netns is not None and command in ("ADD", "CHECK", "DEL"):
        _prove_netns(inv.netns, missing_ok=command == "DEL")
    return inv


def _prove_netns(path: str, *, missing_ok: bool) -> None:
    """CNI_NETNS must be a network namespace (nsfs), proven without opening
    it for I/O: a FIFO there once blocked a worker forever. DEL may name a
    namespace that is already gone (the spec's rule), never a file that is
    something else."""
    shown = validate.printable(path, 200)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        # Carried exactly, and judged: a path that is not UTF-8 cannot be
        # named in a JSON result ("sandbox") nor kept in the record.
        raise CniError(
            Code.INVALID_ENV, f"CNI_NETNS {shown} is not UTF-8", "a CNI result could not name it"
        ) from None
    if not os.path.isabs(path):
        raise CniError(Code.INVALID_ENV, f"CNI_NETNS {shown} is not an absolute path")
    try:
        nsfs.prove(path)
    except (FileNotFoundError, NotADirectoryError):
        if missing_ok:
            return
        raise CniError(
            Code.INVALID_ENV, f"CNI_NETNS: network namespace {shown} does not exist"
        ) from None
    except nsfs.NotNetns:
        raise CniError(Code.INVALID_ENV, f"CNI_NETNS {shown} is not a network namespace") from None
    except OSError as exc:
        raise CniError(Code.INVALID_ENV, f"CNI_NETNS {shown}: {exc.strerror}") from None


def _require_container_id(env: dict[str, str]) -> None:
    cid = env.get("CNI_CONTAINERID")
    if not cid:
        raise CniError(Code.INVALID_ENV, "CNI_CONTAINERID is required")
    if len(cid) > 255 or not _CONTAINER_ID_RE.fullmatch(cid):
        raise CniError(
            Code.INVALID_ENV,
            f"invalid CNI_CONTAINERID {validate.printable(cid)}",
            "must start with a letter or digit, then letters, digits, '_', '.' or '-'",
        )


def _require_ifname(env: dict[str, str]) -> None:
    name = env.get("CNI_IFNAME")
    if not name:
        raise CniError(Code.INVALID_ENV, "CNI_IFNAME is required")
    if not selection.valid_ifname(name):
        raise CniError(
            Code.INVALID_ENV,
            f"invalid CNI_IFNAME {validate.printable(name, 40)}",
            "an interface name is 1-15 bytes, not . or .., without '/', ':' or spaces",
        )


def dispatch(agent: Agent, inv: Invocation) -> dict[str, Any] | None:
    if inv.command == "VERSION":
        return versions.version_result()
    if inv.command == "ADD":
        return _add(agent, inv)
    if inv.command == "DEL":
        _del(agent, inv)
        return None
    if inv.command == "CHECK":
        _check(agent, inv)
        return None
    if inv.command == "GC":
        _gc(agent, inv)
        return None
    if inv.command == "STATUS":
        for network in dict.fromkeys(s.network for s in inv.selections):
            agent.call(_status_for(agent), network)
        return None
    raise CniError(Code.INVALID_ENV, f"unknown CNI_COMMAND {inv.command!r}")


def _add(agent: Agent, inv: Invocation) -> dict[str, Any]:
    mac, ips = runtime_hints(inv)
    networks = selection.with_hints(inv.selections, mac, ips, numa_hint(inv))
    req = AttachRequest(
        container_id=inv.container_id,
        netns=inv.netns,
        networks=networks,
        frontend="cni",
        # On every record of this ADD: DEL, CHECK and GC of this config (CNI
        # network name, CNI_IFNAME) find all its interfaces by them.
        labels={LABEL_NETWORK: inv.cni_name, LABEL_IFNAME: inv.ifname},
    )
    attached = agent.call(agent.attach, req)
    try:
        _check_gateways(inv, attached)
        return results.render(attached.interfaces, inv.version, inv.config.get("prevResult"))
    except Exception:
        # A gateway that is not the network's, anything else after the
        # attachment was made: the whole ADD goes, nothing half-made stays
        # behind the error.
        _del(agent, inv)
        raise


def _check_gateways(inv: Invocation, attached: AttachResult) -> None:
    """Multus's default-route lists gateways: they must be the ones podwire
    routes via (the gateways of the interface's subnets)."""
    for index, gateways in selection.requested_gateways(inv.config).items():
        one = attached.interfaces[index]
        ours = {s.gateway_ip for s in one.subnets if s.gateway_ip}
        foreign = [g for g in gateways if g not in ours]
        if foreign:
            key = f"networks[{index}].default-route" if inv.many else "default-route"
            raise CniError(
                Code.INVALID_CONFIG,
                f"{key} names {', '.join(foreign)}, not a gateway of network "
                f"{one.attachment.network_ref!r} "
                f"(its gateways: {', '.join(sorted(ours)) or 'none'})",
                key,
            )


def _del(agent: Agent, inv: Invocation) -> None:
    """Every interface of this config: the one named CNI_IFNAME, each
    element's own interface, and whatever the records of this ADD hold
    (the names the agent chose). Scoped to the networks the config names;
    idempotent like each single DEL."""
    targets: dict[str, str] = {}  # ifname -> the network it was named for
    if inv.many:
        for record in _records_of(agent, inv):
            targets[record.ifname] = record.network_ref
    for chosen in inv.selections:
        if chosen.ifname is not None:
            targets.setdefault(chosen.ifname, chosen.network)
    for ifname, network in targets.items():
        agent.call(
            agent.detach,
            DetachRequest(
                container_id=inv.container_id,
                ifname=ifname,
                network=network,
                netns=inv.netns,
                frontend="cni",
            ),
        )


def _check(agent: Agent, inv: Invocation) -> None:
    """Every interface the config names must be there and as recorded."""
    records = _records_of(agent, inv) if inv.many else []
    unclaimed = [r for r in records if r.ifname != inv.ifname]
    for index, chosen in enumerate(inv.selections):
        ifname = chosen.ifname
        if ifname is None:
            # The agent chose the name: the record on that network, in order.
            found = next((r for r in unclaimed if _names(r, chosen.network)), None)
            if found is None:
                raise CniError(
                    Code.UNKNOWN_CONTAINER,
                    f"no attachment of container {inv.container_id} for networks[{index}] "
                    f"({chosen.network})",
                )
            unclaimed.remove(found)
            ifname = found.ifname
        else:
            unclaimed = [r for r in unclaimed if r.ifname != ifname]
        record = agent.call(
            agent.check,
            CheckRequest(
                container_id=inv.container_id,
                ifname=ifname,
                network=chosen.network,
                netns=inv.netns,
            ),
        )
        check_prev_result(inv, record)


def _records_of(agent: Agent, inv: Invocation) -> list[Attachment]:
    """The records one ADD of this config made for this container (CNI
    network name and CNI_IFNAME), on the networks it names."""
    names = {s.network for s in inv.selections}
    records = agent.call(agent.list_attachments, inv.container_id)
    return [
        r
        for r in records
        if r.frontend == "cni"
        and r.labels.get(LABEL_NETWORK) == inv.cni_name
        and r.labels.get(LABEL_IFNAME, r.ifname) == inv.ifname
        and r.network_ref in names
    ]


def _names(record: Attachment, network: str) -> bool:
    return network in (record.network_ref, record.network_id)


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
            if isinstance(iface, dict)
            and iface.get("name") == record.ifname
            and iface.get("sandbox")
        ),
        None,
    )
    if index is None:
        return  # prevResult does not describe our interface: nothing to compare
    mac = interfaces[index].get("mac")
    if mac and mac.lower() != record.vif.mac:
        raise CniError(
            Code.OTHER,
            f"prevResult says {record.ifname} has MAC {mac}, podwire plugged {record.vif.mac}",
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
            f"prevResult lists {', '.join(missing)} on {record.ifname}, not an address of its port",
            "addresses",
        )


def runtime_hints(inv: Invocation) -> tuple[str | None, list[str]]:
    """A fixed MAC and addresses, from (first found wins) runtimeConfig's
    "mac"/"ips" capabilities, the config's args.cni, then CNI_ARGS MAC/IP.
    Their types were checked by validate.config_keys; CNI_ARGS by parse."""
    runtime = inv.config.get("runtimeConfig") or {}
    args = (inv.config.get("args") or {}).get("cni") or {}
    cni_args = inv.cni_args

    mac = runtime.get("mac") or args.get("mac") or cni_args.get("MAC")
    raw_ips: Any = runtime.get("ips") or args.get("ips")
    if raw_ips is None and "IP" in cni_args:
        raw_ips = cni_args["IP"].split(",")
    ips = [validate.cidr_or_ip(v, "ips") for v in raw_ips or []]
    return (mac.lower() if mac else None), ips


def numa_hint(inv: Invocation) -> int | None:
    """The NUMA node the workload runs on, for kinds with a host device:
    runtimeConfig "numaNode", args.cni "numa_node", then CNI_ARGS NUMA_NODE."""
    runtime = inv.config.get("runtimeConfig") or {}
    args = (inv.config.get("args") or {}).get("cni") or {}
    value: Any = None
    if isinstance(runtime, dict):
        value = runtime.get("numaNode")
    if value is None and isinstance(args, dict):
        value = args.get("numa_node")
    if value is None:
        value = parse_cni_args(inv.env.get("CNI_ARGS", "")).get("NUMA_NODE")
    if value is None:
        return None
    try:
        node = int(value)
    except (TypeError, ValueError):
        node = -1
    if isinstance(value, bool) or not 0 <= node <= 1023:
        raise CniError(Code.INVALID_CONFIG, f"NUMA node {value!r} is not a number 0-1023")
    return node


KNOWN_CNI_ARGS = {"IgnoreUnknown", "MAC", "IP", "NUMA_NODE"}


def parse_cni_args(raw: str) -> dict[str, str]:
    """CNI_ARGS "K=V;K2=V2". Unknown keys are an error unless IgnoreUnknown
    is true (the reference plugins' rule); the keys podwire reads are
    checked here (an empty IP= is an error, not "no address")."""
    out: dict[str, str] = {}
    if not raw:
        return out
    for pair in raw.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(
                Code.INVALID_ENV,
                f"invalid CNI_ARGS pair {validate.printable(pair)}",
                "expected K=V",
            )
        if key in out:
            raise CniError(Code.INVALID_ENV, f"CNI_ARGS names {validate.printable(key)} twice")
        out[key] = value
    unknown = sorted(set(out) - KNOWN_CNI_ARGS)
    ignore = out.get("IgnoreUnknown", "").lower() in ("1", "true")
    if "IgnoreUnknown" in out and out["IgnoreUnknown"].lower() not in ("0", "1", "true", "false"):
        raise CniError(Code.INVALID_ENV, "CNI_ARGS IgnoreUnknown must be 1, 0, true or false")
    if unknown and not ignore:
        raise CniError(
            Code.INVALID_ENV,
            f"unknown CNI_ARGS {', '.join(validate.printable(k) for k in unknown)}",
            "set IgnoreUnknown=1 to ignore them",
        )
    try:
        if "MAC" in out:
            validate.mac(out["MAC"], "CNI_ARGS MAC")
        if "IP" in out:
            for value in out["IP"].split(","):
                validate.cidr_or_ip(value, "CNI_ARGS IP")
    except CniError as exc:
        raise CniError(Code.INVALID_ENV, exc.msg, exc.details) from None
    return out


def _gc(agent: Agent, inv: Invocation) -> None:
    """Keep what cni.dev/valid-attachments names: an entry (container,
    CNI_IFNAME) keeps every interface that ADD made (the extra networks of
    a "networks" config too). Orphan ports are swept on each network named."""
    valid = _valid_attachments(inv)
    keep = set(valid)
    records = agent.call(agent.list_attachments, None)
    for record in records:
        if record.frontend != "cni" or record.labels.get(LABEL_NETWORK) != inv.cni_name:
            continue
        if (record.container_id, record.labels.get(LABEL_IFNAME, record.ifname)) in valid:
            keep.add((record.container_id, record.ifname))
    for network in dict.fromkeys(s.network for s in inv.selections):
        agent.call(
            agent.gc,
            GcRequest(
                frontend="cni",
                labels={LABEL_NETWORK: inv.cni_name},
                keep=sorted(keep),
                network=network,
            ),
        )


def _valid_attachments(inv: Invocation) -> set[tuple[str, str]]:
    """GC's keep list (parse checked its type: a list, never "keep nothing"
    read from a wrong-typed value)."""
    key = "cni.dev/valid-attachments"
    if inv.config.get(key) is None:
        key = "cni.dev/attachments"  # the legacy key
    return validate.valid_attachments(inv.config.get(key) or [], key)


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
    # allow_nan=False: an answer is strict JSON or an error, never NaN.
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"
