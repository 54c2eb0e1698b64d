"""Two tiny tc BPF programs, assembled here and loaded with bpf(2), that
move 802.1Q tags between a VM's tap and the access veths of its trunk's
sub-ports (podwire/datapath/trunk.py).

Why BPF: this host's kernel has neither 802.1Q devices, nor bridge VLAN
filtering, nor tc's vlan action or flower classifier; cls_bpf with the
helpers skb_vlan_pop/skb_vlan_push and redirect is what it has. The
programs are a handful of instructions with the VLAN -> ifindex map as
immediates, rebuilt and swapped atomically when the trunk changes (no BPF
map to keep in sync, nothing pinned: a program lives as long as its filter).
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Mapping

_SYS_BPF = 321  # x86_64
_BPF_PROG_LOAD = 5
_BPF_PROG_TYPE_SCHED_CLS = 3

# __sk_buff offsets (include/uapi/linux/bpf.h)
_VLAN_PRESENT = 20
_VLAN_TCI = 24
_VLAN_PROTO = 28  # the tag's protocol, in network order

# helpers
_SKB_VLAN_PUSH = 18
_SKB_VLAN_POP = 19
_REDIRECT = 23

TC_ACT_OK = 0
TC_ACT_SHOT = 2
_ETH_P_8021Q_BE = 0x0081  # htons(0x8100) as the helper's __be16 argument

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _mov_reg(dst: int, src: int) -> bytes:
    return _insn(0xBF, dst, src)


def _mov_imm(dst: int, imm: int) -> bytes:
    return _insn(0xB7, dst, imm=imm)


def _ldxw(dst: int, src: int, off: int) -> bytes:
    return _insn(0x61, dst, src, off)


def _jeq(dst: int, imm: int, off: int) -> bytes:
    return _insn(0x15, dst, off=off, imm=imm)


def _jne(dst: int, imm: int, off: int) -> bytes:
    return _insn(0x55, dst, off=off, imm=imm)


def _ja(off: int) -> bytes:
    return _insn(0x05, off=off)


def _call(helper: int) -> bytes:
    return _insn(0x85, imm=helper)


_EXIT = _insn(0x95)


def pop_program(vid_to_ifindex: Mapping[int, int]) -> list[bytes]:
    """For a VM's tap: a frame tagged (802.1Q) with a known VLAN loses its
    tag and goes out of that sub-port's access veth; a tagged frame of any
    other VLAN, or with an 802.1ad outer tag, is dropped; an untagged frame
    goes on (to the bridge, where the VM port's own security checks it)."""
    head = [
        _mov_reg(6, 1),
        _ldxw(2, 6, _VLAN_PRESENT),
        None,  # jeq r2, 0, PASS (patched below)
        _ldxw(3, 6, _VLAN_PROTO),
        None,  # jne r3, 802.1Q, DROP: an 802.1ad (QinQ) outer tag (patched below)
        _ldxw(2, 6, _VLAN_TCI),
        _insn(0x57, 2, imm=0xFFF),  # r2 &= 0xfff
    ]
    table: list[bytes | None] = []
    entries = sorted(vid_to_ifindex.items())
    for vid, ifindex in entries:
        # jne r2, vid, +2 ; r7 = ifindex ; ja POP
        table += [_jne(2, vid, 2), _mov_imm(7, ifindex), None]
    drop = [_mov_imm(0, TC_ACT_SHOT), _EXIT]
    pop = [
        _mov_reg(1, 6),
        _call(_SKB_VLAN_POP),
        _mov_reg(1, 7),
        _mov_imm(2, 0),
        _call(_REDIRECT),
        _EXIT,
    ]
    passing = [_mov_imm(0, TC_ACT_OK), _EXIT]
    if not entries:
        pop = []  # the verifier refuses unreachable code
    start_table = len(head)
    start_pop = start_table + len(table) + len(drop)
    start_pass = start_pop + len(pop)
    head[2] = _jeq(2, 0, start_pass - 3)
    head[4] = _jne(3, _ETH_P_8021Q_BE, start_table + len(table) - 5)
    for n in range(len(entries)):
        at = start_table + 3 * n + 2
        table[3 * n + 2] = _ja(start_pop - at - 1)
    return [x for x in head + table if x is not None] + drop + pop + passing


def push_program(vid: int, tap_ifindex: int) -> list[bytes]:
    """For a sub-port's access veth (trunk end): every frame from the
    sub-port's network gets the sub-port's tag and goes out of the VM's tap."""
    return [
        _mov_reg(6, 1),
        _mov_reg(1, 6),
        _mov_imm(2, _ETH_P_8021Q_BE),
        _mov_imm(3, vid),
        _call(_SKB_VLAN_PUSH),
        _mov_imm(1, tap_ifindex),
        _mov_imm(2, 0),
        _call(_REDIRECT),
        _EXIT,
    ]


class BpfError(OSError):
    """The kernel refused a program (with the verifier's log)."""


def load(insns: list[bytes], name: str) -> int:
    """Load a sched_cls program; the caller closes the returned fd."""
    code = b"".join(insns)
    buf = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    attr = bytearray(128)
    struct.pack_into(
        "<IIQQIIQII",
        attr,
        0,
        _BPF_PROG_TYPE_SCHED_CLS,
        len(insns),
        ctypes.addressof(buf),
        ctypes.addressof(license_),
        1,
        len(log),
        ctypes.addressof(log),
        0,
        0,
    )
    attr[48 : 48 + 16] = name.encode()[:15].ljust(16, b"\0")
    raw = (ctypes.c_char * len(attr)).from_buffer(attr)
    fd = _libc.syscall(_SYS_BPF, _BPF_PROG_LOAD, raw, len(attr))
    if fd < 0:
        code_ = ctypes.get_errno()
        raise BpfError(
            code_, f"loading BPF program {name}: {os.strerror(code_)}: {log.value.decode()[-500:]}"
        )
    return int(fd)
