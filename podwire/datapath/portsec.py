"""Port security (anti-spoofing) on a Linux bridge with nftables.

One table in the ``bridge`` family holds everything podwire adds:

    table bridge podwire {
        map ports { type ifname : verdict }           # host veth -> its chain
        chain prerouting { type filter hook prerouting priority -200; policy accept;
                           iifname vmap @ports }
        chain port-<host veth> { ... }                 # one per attachment
    }

Frames entering the bridge from a port with security on are dispatched by
the name of that port (the host end of the veth) to its own chain, which
lets pass only ARP, IPv4 and IPv6 sent from an allowed (MAC, IP) pair and
drops everything else (foreign source MACs, foreign sender/source IPs,
802.1Q-tagged frames that would hide an IP header, other ethertypes).
Host veth names are unique on the host, so chains never collide across
networks; the table name is configurable so tests run side by side.

Each change is one nftables transaction (atomic), written so that it is
idempotent without reading the ruleset first: ``add`` of an existing table,
map, chain or identical element is a no-op, and removal is "add, then
flush, then delete" in the same batch, so it succeeds whether or not the
objects were there.

Why libnftables through ctypes: the ``nft`` program costs a fork+exec
(~3-5 ms here) per change, libnftables in-process about a millisecond, and
it is the library the ``nft`` program itself is built on (same parser, same
kernel batches). ``nft -f -`` stays as a fallback when libnftables.so.1 is
missing.
"""

from __future__ import annotations

import ctypes
import ipaddress
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable

from podwire.datapath.veth import check_ifname, check_mac
from podwire.datapath.vif import PortSecurity
from podwire.errors import DatapathError, InvalidInput, Unavailable

DEFAULT_TABLE = "podwire"
# Before the bridge's own filter hooks (-200 is NF_BR_PRI_FILTER_BRIDGED).
_PRIORITY = -300

_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


class NftError(DatapathError):
    """nftables refused a batch."""


# --------------------------------------------------------------------------
# Running nftables commands


class _LibNftables:
    """libnftables.so.1 through ctypes: one context, used under a lock
    (a context is not thread-safe, and the kernel serializes nftables
    transactions anyway)."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libnftables.so.1", use_errno=True)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        if not self.ctx:
            raise OSError("nft_ctx_new failed")
        lib.nft_ctx_buffer_output(self.ctx)
        lib.nft_ctx_buffer_error(self.ctx)
        self.lock = threading.Lock()

    def run(self, commands: str) -> str:
        with self.lock:
            rc = self.lib.nft_run_cmd_from_buffer(self.ctx, commands.encode())
            output = (self.lib.nft_ctx_get_output_buffer(self.ctx) or b"").decode()
            error = (self.lib.nft_ctx_get_error_buffer(self.ctx) or b"").decode()
        if rc != 0:
            raise NftError(f"nftables refused the change: {error.strip() or 'error ' + str(rc)}")
        return output


class _NftProgram:
    """Fallback: the nft program, one process per change."""

    def __init__(self, path: str) -> None:
        self.path = path

    def run(self, commands: str) -> str:
        proc = subprocess.run(
            [self.path, "-f", "-"], input=commands, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise NftError(f"nftables refused the change: {proc.stderr.strip()}")
        return proc.stdout


_runner: _LibNftables | _NftProgram | None = None
_runner_lock = threading.Lock()


def nft(commands: str) -> str:
    """Run an nftables script (one atomic transaction); return its output."""
    global _runner
    if _runner is None:
        with _runner_lock:
            if _runner is None:
                _runner = _make_runner()
    return _runner.run(commands)


def _make_runner() -> _LibNftables | _NftProgram:
    try:
        return _LibNftables()
    except OSError:
        path = shutil.which("nft")
        if path is None:
            raise Unavailable(
                "nftables is not available (neither libnftables.so.1 nor nft found)",
                kind="datapath",
            ) from None
        return _NftProgram(path)


def nftables_available() -> tuple[bool, str]:
    try:
        nft("list tables bridge")
    except (DatapathError, Unavailable) as exc:
        return False, exc.message
    return True, ""


# --------------------------------------------------------------------------
# Rules


def eui64_link_local(mac: str) -> str:
    """The IPv6 link-local address the kernel derives from ``mac`` (EUI-64)."""
    octets = [int(x, 16) for x in check_mac(mac).split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    suffix = int.from_bytes(bytes(eui), "big")
    return str(ipaddress.IPv6Address((0xFE80 << 112) | suffix))


def _set(items: Iterable[str]) -> str:
    return "{ " + ", ".join(sorted(set(items))) + " }"


def port_rules(security: PortSecurity) -> list[str]:
    """The rules of one port's chain, first match wins, default drop."""
    macs: set[str] = set()
    v4: set[str] = set()
    v6: set[str] = set()
    for pair in security.allowed:
        mac = check_mac(pair.mac)
        macs.add(mac)
        try:
            net = ipaddress.ip_network(pair.ip, strict=False)
        except ValueError as exc:
            raise InvalidInput(
                f"allowed address {pair.ip!r} is malformed", field="allowed"
            ) from exc
        text = str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
        (v4 if net.version == 4 else v6).add(f"{mac} . {text}")
    if not macs:
        return ["drop"]
    rules = [f"ether saddr != {_set(macs)} drop"]
    if v4:
        # ARP probes (RFC 5227) carry sender IP 0.0.0.0.
        arp = v4 | {f"{m} . 0.0.0.0" for m in macs}
        rules.append(f"ether type arp arp saddr ether . arp saddr ip {_set(arp)} accept")
        rules.append(f"ether type ip ether saddr . ip saddr {_set(v4)} accept")
    # Every allowed MAC may use its EUI-64 link-local address (the kernel
    # keeps DAD for link-local, so also :: for DAD's NS and MLD reports).
    v6 |= {f"{m} . {eui64_link_local(m)}" for m in macs}
    rules.append(f"ether type ip6 ether saddr . ip6 saddr {_set(v6)} accept")
    rules.append(
        "ether type ip6 ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report }"
        " accept"
    )
    rules.append("drop")
    return rules


class PortSecurityTable:
    """The nftables table of one agent (name configurable for tests)."""

    def __init__(self, table: str = DEFAULT_TABLE) -> None:
        if not _TABLE.match(table):
            raise InvalidInput(f"nftables table name {table!r} is not valid", field="table")
        self.table = table

    def _header(self) -> list[str]:
        t = self.table
        return [
            f"add table bridge {t}",
            f"add map bridge {t} ports {{ type ifname : verdict; }}",
            f"add chain bridge {t} prerouting"
            f" {{ type filter hook prerouting priority {_PRIORITY}; policy accept; }}",
            # Re-adding the one dispatch rule after a flush keeps it single
            # whatever state the table was in, within the same transaction.
            f"flush chain bridge {t} prerouting",
            f"add rule bridge {t} prerouting iifname vmap @ports",
        ]

    def chain_name(self, host_ifname: str) -> str:
        return "port-" + check_ifname(host_ifname, "host_ifname")

    def add_port(self, host_ifname: str, security: PortSecurity) -> None:
        """Install (or replace) the rules for frames from ``host_ifname``."""
        t = self.table
        chain = self.chain_name(host_ifname)
        lines = self._header()
        lines += [
            f"add chain bridge {t} {chain}",
            f"flush chain bridge {t} {chain}",
        ]
        lines += [f"add rule bridge {t} {chain} {rule}" for rule in port_rules(security)]
        lines.append(f'add element bridge {t} ports {{ "{host_ifname}" : goto {chain} }}')
        nft("\n".join(lines) + "\n")

    def remove_port(self, host_ifname: str) -> None:
        """Remove a port's rules; nothing there is success."""
        t = self.table
        chain = self.chain_name(host_ifname)
        lines = self._header()
        lines += [
            f"add chain bridge {t} {chain}",
            f'add element bridge {t} ports {{ "{host_ifname}" : goto {chain} }}',
            f'delete element bridge {t} ports {{ "{host_ifname}" }}',
            f"flush chain bridge {t} {chain}",
            f"delete chain bridge {t} {chain}",
        ]
        nft("\n".join(lines) + "\n")

    def has_port(self, host_ifname: str) -> bool:
        chain = self.chain_name(host_ifname)
        try:
            out = nft(f"list map bridge {self.table} ports\n")
        except NftError:
            return False
        return f"goto {chain}" in out

    def remove_table(self) -> None:
        """Drop the whole table (tests, uninstall); absent is success."""
        nft(f"add table bridge {self.table}\ndelete table bridge {self.table}\n")
