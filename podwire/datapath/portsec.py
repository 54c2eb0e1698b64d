"""Port security (anti-spoofing) on a Linux bridge with nftables.

One table in the ``bridge`` family holds everything podwire adds; its rules
are fixed and every attachment is only a handful of set elements keyed by
the name of its host veth end (unique on the host, so nothing collides
across networks; the table name is configurable so tests run side by side):

    table bridge podwire {
        set secured { type ifname }                               # ports with security on
        set macs    { type ifname . ether_addr }                  # allowed source MACs
        set src4    { type ifname . ether_addr . ipv4_addr }      # allowed (MAC, IPv4)
        set src6    { type ifname . ether_addr . ipv6_addr }      # allowed (MAC, IPv6)
        set net4/net6 { ... ; flags interval }                    # allowed (MAC, CIDR) pairs
        chain prerouting { type filter hook prerouting priority -300; policy accept;
            iifname != @secured accept
            iifname . ether saddr != @macs drop
            ether type arp  iifname . arp saddr ether . arp saddr ip @src4/@net4 accept
            ether type ip   iifname . ether saddr . ip saddr @src4/@net4 accept
            ether type ip6  iifname . ether saddr . ip6 saddr @src6/@net6 accept
            ether type ip6  ip6 saddr :: icmpv6 type { nd-neighbor-solicit,
                                                       mld2-listener-report } accept
            drop
        }
    }

So a secured port may send only ARP, IPv4 and IPv6 from an allowed (MAC,
IP) pair: foreign source MACs, foreign sender/source IPs, 802.1Q-tagged
frames (which would hide an IP header from the IP rules) and other
ethertypes are dropped. IPv6 link-local addresses derived from the allowed
MACs (EUI-64) are allowed, and :: for the kernel's link-local DAD.

Why sets and not a chain per port: libnftables reads the kernel's ruleset
into its cache before each change, so with a chain (or a verdict map) per
port every ADD grew with the number of ports (18 ms at 300 ports). Elements
of plain hash sets need no such read: ~0.3 ms per change, flat to 1,000
ports. CIDR pairs live in interval sets, whose changes do read that set's
elements (they are rare). Each change is one transaction (atomic); removal
is "add, then delete" of the same elements in one batch, so it succeeds
whether or not they were there.

Why libnftables through ctypes: the ``nft`` program costs a fork+exec
(~3-5 ms here) per change; libnftables is the library ``nft`` is built on
(same parser, same kernel batches), called in-process. ``nft -f -`` stays
as a fallback when libnftables.so.1 is missing.
"""

from __future__ import annotations

import ctypes
import ipaddress
import re
import shutil
import subprocess
import threading

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


def port_elements(host_ifname: str, security: PortSecurity) -> dict[str, list[str]]:
    """The set elements that let ``host_ifname`` send what ``security`` allows."""
    key = f'"{check_ifname(host_ifname, "host_ifname")}"'
    macs: set[str] = set()
    out: dict[str, set[str]] = {"src4": set(), "src6": set(), "net4": set(), "net6": set()}
    for pair in security.allowed:
        mac = check_mac(pair.mac)
        macs.add(mac)
        try:
            net = ipaddress.ip_network(pair.ip, strict=False)
        except ValueError as exc:
            raise InvalidInput(
                f"allowed address {pair.ip!r} is malformed", field="allowed"
            ) from exc
        if net.prefixlen == net.max_prefixlen:
            out[f"src{net.version}"].add(f"{key} . {mac} . {net.network_address}")
        else:
            out[f"net{net.version}"].add(f"{key} . {mac} . {net}")
    for mac in macs:
        out["src6"].add(f"{key} . {mac} . {eui64_link_local(mac)}")
        if out["src4"] or out["net4"]:
            # ARP probes (RFC 5227) and DHCP carry sender IP 0.0.0.0.
            out["src4"].add(f"{key} . {mac} . 0.0.0.0")
    elements = {name: sorted(items) for name, items in out.items() if items}
    if macs:
        elements["macs"] = sorted(f"{key} . {mac}" for mac in macs)
    elements["secured"] = [key]
    return elements


class PortSecurityTable:
    """The nftables table of one agent (name configurable for tests)."""

    def __init__(self, table: str = DEFAULT_TABLE) -> None:
        if not _TABLE.match(table):
            raise InvalidInput(f"nftables table name {table!r} is not valid", field="table")
        self.table = table
        self._ready = False
        self._lock = threading.Lock()

    def _setup_script(self) -> str:
        t = self.table
        pre = f"add rule bridge {t} prerouting"
        return (
            "\n".join(
                [
                    f"add table bridge {t}",
                    f"add set bridge {t} secured {{ type ifname; }}",
                    f"add set bridge {t} macs {{ type ifname . ether_addr; }}",
                    f"add set bridge {t} src4 {{ type ifname . ether_addr . ipv4_addr; }}",
                    f"add set bridge {t} src6 {{ type ifname . ether_addr . ipv6_addr; }}",
                    f"add set bridge {t} net4"
                    " { type ifname . ether_addr . ipv4_addr; flags interval; }",
                    f"add set bridge {t} net6"
                    " { type ifname . ether_addr . ipv6_addr; flags interval; }",
                    f"add chain bridge {t} prerouting"
                    f" {{ type filter hook prerouting priority {_PRIORITY}; policy accept; }}",
                    # Flush and re-add in the same transaction: the rules end up
                    # exactly these, whatever state the table was in.
                    f"flush chain bridge {t} prerouting",
                    f"{pre} iifname != @secured accept",
                    f"{pre} iifname . ether saddr != @macs drop",
                    f"{pre} ether type arp iifname . arp saddr ether . arp saddr ip @src4 accept",
                    f"{pre} ether type arp iifname . arp saddr ether . arp saddr ip @net4 accept",
                    f"{pre} ether type ip iifname . ether saddr . ip saddr @src4 accept",
                    f"{pre} ether type ip iifname . ether saddr . ip saddr @net4 accept",
                    f"{pre} ether type ip6 iifname . ether saddr . ip6 saddr @src6 accept",
                    f"{pre} ether type ip6 iifname . ether saddr . ip6 saddr @net6 accept",
                    f"{pre} ether type ip6 ip6 saddr :: icmpv6 type"
                    " { nd-neighbor-solicit, mld2-listener-report } accept",
                    f"{pre} drop",
                ]
            )
            + "\n"
        )

    def ensure(self) -> None:
        """Create the table and its fixed rules (once per process)."""
        with self._lock:
            if not self._ready:
                nft(self._setup_script())
                self._ready = True

    def _run(self, script: str) -> None:
        self.ensure()
        try:
            nft(script)
        except NftError:
            # The table may have been removed under us (nft flush ruleset,
            # a test): rebuild it once and retry.
            with self._lock:
                self._ready = False
            self.ensure()
            nft(script)

    def _script(self, verb: str, elements: dict[str, list[str]]) -> list[str]:
        t = self.table
        return [
            f"{verb} element bridge {t} {name} {{ {', '.join(items)} }}"
            for name, items in elements.items()
        ]

    def add_port(self, host_ifname: str, security: PortSecurity) -> None:
        """Let ``host_ifname`` send only what ``security`` allows."""
        elements = port_elements(host_ifname, security)
        self._run("\n".join(self._script("add", elements)) + "\n")

    def change_port(
        self, host_ifname: str, old: PortSecurity | None, new: PortSecurity | None
    ) -> None:
        """Move a port from ``old`` to ``new`` (None: not secured) in one
        transaction: new elements in, elements only ``old`` had out, so a
        source allowed by both never stops passing (a VM port's pairs
        following the containers inside it)."""
        before = port_elements(host_ifname, old) if old is not None and old.enabled else {}
        after = port_elements(host_ifname, new) if new is not None and new.enabled else {}
        stale = {
            name: sorted(set(items) - set(after.get(name, ()))) for name, items in before.items()
        }
        stale = {name: items for name, items in stale.items() if items}
        lines = self._script("add", after) + self._script("add", stale)
        lines += self._script("delete", stale)
        if lines:
            self._run("\n".join(lines) + "\n")

    def remove_port(self, host_ifname: str, security: PortSecurity) -> None:
        """Remove a port's elements; nothing there is success."""
        elements = port_elements(host_ifname, security)
        lines = self._script("add", elements) + self._script("delete", elements)
        self._run("\n".join(lines) + "\n")

    def has_port(self, host_ifname: str, security: PortSecurity | None = None) -> bool:
        """Whether the port is secured (and, given ``security``, whether all
        its elements are present)."""
        check_ifname(host_ifname, "host_ifname")
        if security is None:
            wanted = {"secured": [f'"{host_ifname}"']}
        else:
            wanted = port_elements(host_ifname, security)
        try:
            nft("\n".join(self._script("get", wanted)) + "\n")
        except NftError:
            return False
        return True

    def remove_table(self) -> None:
        """Drop the whole table (tests, uninstall); absent is success."""
        with self._lock:
            nft(f"add table bridge {self.table}\ndelete table bridge {self.table}\n")
            self._ready = False
