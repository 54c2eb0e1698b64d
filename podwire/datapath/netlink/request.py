"""The request/response loop: one rtnetlink request, its replies up to the
ACK, and the kernel's refusal as NetlinkError."""

from __future__ import annotations

import itertools
import os
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any, Self

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP

from podwire.datapath.netlink.constants import NLMSG_DONE, NLMSG_ERROR
from podwire.datapath.netlink.replies import ext_ack

_seq = itertools.count(1)
_seq_lock = threading.Lock()
_HEADER = struct.Struct("IHHII")  # struct nlmsghdr


def next_seq() -> int:
    with _seq_lock:
        return next(_seq) & 0x7FFFFFFF or 1


class NetlinkError(OSError):
    """The kernel refused a request: ``errno`` and its extended-ack text."""

    def __init__(self, code: int, request: str, kernel_message: str = "") -> None:
        text = os.strerror(code)
        if kernel_message:
            text = f"{text} ({kernel_message})"
        super().__init__(code, f"{request}: {text}")
        self.request = request
        self.kernel_message = kernel_message


class RtnlSocket:
    """The sockets of one Rtnl and the request/response loop its calls share."""

    def __init__(self, sock: socket.socket, inet: socket.socket, where: str) -> None:
        self.sock = sock
        self.inet = inet
        self.where = where  # for messages: "host" or the netns path

    def close(self) -> None:
        self.sock.close()
        self.inet.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(
        self, msg: Any, msg_type: int, flags: int, what: str
    ) -> list[tuple[bytes, int, int, int]]:
        """Send one request; return its reply messages as (buffer, type,
        payload start, payload end). Raises NetlinkError on a NACK."""
        msg.encode()
        return self._request_body(bytes(msg.data[16:]), msg_type, flags, what)

    def _request_body(
        self, body: bytes, msg_type: int, flags: int, what: str
    ) -> list[tuple[bytes, int, int, int]]:
        """``_request`` of a body packed already (netlink.encode): the
        netlink header is added here."""
        seq = next_seq()
        self.sock.send(_HEADER.pack(16 + len(body), msg_type, flags, seq, 0) + body)
        replies: list[tuple[bytes, int, int, int]] = []
        while True:
            data = self.sock.recv(65536)
            for pos, end, mtype, mflags, mseq in _messages(data):
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("i", data, pos + 16)[0]
                    if code == 0:
                        return replies
                    raise NetlinkError(code, f"{what} in {self.where}", ext_ack(data, pos, mflags))
                if mtype == NLMSG_DONE:
                    return replies
                replies.append((data, mtype, pos + 16, end))
            if not flags & (NLM_F_ACK | NLM_F_DUMP):
                return replies

    def _request_batch(self, requests: list[tuple[bytes, int, int, str]]) -> None:
        """Send several requests (body, type, flags, what; each with
        NLM_F_ACK, none a dump) in one ``send`` and read their ACKs.

        The kernel runs the messages of one send in order, each to its end,
        and acknowledges each, a failed one included, then goes on to the
        next: so a later request sees the earlier ones done (an address
        before the route through it) and every ACK arrives. Raises the
        first refusal in request order, after reading all of them."""
        seqs: dict[int, int] = {}
        out = []
        for i, (body, msg_type, flags, _what) in enumerate(requests):
            seq = next_seq()
            seqs[seq] = i
            out.append(_HEADER.pack(16 + len(body), msg_type, flags | NLM_F_ACK, seq, 0) + body)
        self.sock.send(b"".join(out))
        errors: dict[int, NetlinkError] = {}
        while seqs:
            data = self.sock.recv(65536)
            for pos, _end, mtype, mflags, mseq in _messages(data):
                if mtype == NLMSG_ERROR and mseq in seqs:
                    i = seqs.pop(mseq)
                    code = -struct.unpack_from("i", data, pos + 16)[0]
                    if code != 0:
                        what = f"{requests[i][3]} in {self.where}"
                        errors[i] = NetlinkError(code, what, ext_ack(data, pos, mflags))
        if errors:
            raise errors[min(errors)]


def _messages(data: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """The netlink messages of one datagram: (start, end, type, flags, seq);
    a message's payload is ``data[start + 16:end]``."""
    pos = 0
    while pos + 16 <= len(data):
        length, mtype, mflags, mseq, _pid = struct.unpack_from("IHHII", data, pos)
        if length < 16:
            return
        yield pos, pos + length, mtype, mflags, mseq
        pos += (length + 3) & ~3
