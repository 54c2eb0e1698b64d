"""The agent's socket: ``POST /v1/cni`` answered on the thread that accepted
it, every other request handed to the ASGI server (uvicorn) on the event loop.

Why (issue 13, issue 14 class 7): through uvicorn a CNI call crossed the
event loop twice and a worker thread once (h11 parsing, Starlette's routing,
``run_in_executor`` and back), and under a burst the event loop, saturated,
delayed the "try again later" answers behind the work they refuse. Here a
fixed set of threads block in ``accept()`` on the one listening socket (the
kernel wakes one per connection). The thread that accepts a connection peeks
at its request line; a CNI call is counted at once and either refused then
(code 11, before its body is parsed) or read, handled and answered on that
same thread. There are more threads than the agent admits requests, so a
burst past the limit always finds a thread free to refuse it.

The wire is the shims' HTTP/1.1 subset (docs/cni.md, "The shim and the
agent"): one request per connection, ``Content-Length`` or chunked body,
answer ``200`` with ``X-CNI-Exit`` and ``Connection: close``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable

from podwire.agent.core import Agent

log = logging.getLogger(__name__)

CNI_REQUEST_LINE = b"POST /v1/cni "
# A request's head (request line and headers) above this is refused (h11's
# default bound on an incomplete event is 16 KiB; the shims send < 1 KiB).
MAX_HEAD = 64 * 1024
# A connection has this long to send its request line, and each later read
# as long: shims write the whole request at once; a silent client must not
# hold a door thread forever.
READ_TIMEOUT = 10.0
# Threads beyond the agent's admission limit: a burst past the limit always
# finds one of them free to refuse at once.
SPARE_THREADS = 64
# Threads blocked in accept() at once. The others are parked, most recently
# used on top, and an accepting thread wakes the top one to take its place:
# the kernel wakes accept() waiters in turn (FIFO), so with every thread in
# accept() each call would land on a thread idle the longest, and every
# thread would keep its own per-thread state (the record store's SQLite
# connection and its page cache: +18 MB at 1,000 live attachments).
ACCEPTING = 16


class BadRequest(Exception):
    """The bytes are not an HTTP/1.1 request the door can read."""


class CniDoor:
    def __init__(
        self,
        agent: Agent,
        sock: socket.socket,
        hand_off: Callable[[socket.socket], None],
    ) -> None:
        self._agent = agent
        self._sock = sock
        self._hand_off = hand_off
        self._lock = threading.Lock()
        self._at_door = 0  # CNI calls between their accept and their answer
        # Admitted calls parse and work at most max_in_flight at a time; the
        # others wait here without the GIL, so that in a burst the refusals
        # share the interpreter with max_in_flight threads, not every
        # admitted one (issue 14, class 7).
        self._working = threading.BoundedSemaphore(agent.gate.max_in_flight)
        self._closing = False
        self._threads: list[threading.Thread] = []
        self._accepting = 0  # threads in accept() or about to be
        self._parked: list[threading.Lock] = []  # idle threads, last used on top

    def start(self) -> None:
        self._agent.metrics.register_levels(
            "podwire_door_calls",
            "CNI calls the door holds: accepted and admitted, not yet answered",
            ("door",),
            self._levels,
        )
        # Blocking accept in every thread; the socket was non-blocking for asyncio.
        self._sock.setblocking(True)
        count = self._agent.gate.max_admitted + SPARE_THREADS
        for index in range(count):
            thread = threading.Thread(
                target=self._serve_forever, name=f"podwire-door-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting; wait (up to ``timeout``) for the CNI calls in hand."""
        with self._lock:
            self._closing = True
            parked, self._parked = self._parked, []
        for wake in parked:
            wake.release()
        # shutdown() wakes every thread blocked in accept() (EINVAL).
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _levels(self) -> dict[tuple[str, ...], float]:
        with self._lock:
            return {("cni",): self._at_door}

    # --- per thread --------------------------------------------------------------------

    def _serve_forever(self) -> None:
        parked = threading.Lock()
        parked.acquire()
        while True:
            with self._lock:
                if self._closing:
                    return
                accept = self._accepting < ACCEPTING
                if accept:
                    self._accepting += 1
                else:
                    self._parked.append(parked)
            if not accept:
                parked.acquire()  # until an accepting thread (or close) wakes us
                continue
            try:
                conn, _ = self._sock.accept()
            except OSError:
                with self._lock:
                    self._accepting -= 1
                if not self._closing:
                    time.sleep(0.01)  # EMFILE and the like: do not spin
                continue
            with self._lock:
                self._accepting -= 1
                wake = self._parked.pop() if self._parked else None
            if wake is not None:
                wake.release()  # it takes this thread's place in accept()
            try:
                self._serve(conn)
            except Exception:
                log.exception("agent socket: a connection failed")
                conn.close()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(READ_TIMEOUT)
        try:
            is_cni = _peek_is_cni(conn)
        except OSError:
            conn.close()
            return
        if not is_cni:
            conn.setblocking(False)  # what asyncio's transports expect
            self._hand_off(conn)  # the event loop owns it now
            return
        with conn:
            self._serve_cni(conn)

    def _serve_cni(self, conn: socket.socket) -> None:
        from podwire.frontends.cni import handler

        agent = self._agent
        limit = agent.gate.max_admitted
        with self._lock:
            refuse = self._at_door >= limit or agent.gate.admitted >= limit
            if not refuse:
                self._at_door += 1
        try:
            reader = _Reader(conn)
            try:
                headers = reader.head()
            except (BadRequest, OSError) as exc:
                _answer_http_error(conn, exc)
                return
            verb = handler.verb_label(headers)
            if refuse:
                # Decided before the body is parsed: drained (so the answer is
                # not lost to a reset), bounded, and answered at once.
                body = reader.body(headers, handler.oversized, drain=True)
                text = body if isinstance(body, bytes) else b""
                out = handler.busy_answer(text, agent.gate.admitted, limit)
                _answer(conn, 1, out)
                agent.metrics.result("cni", verb, 11)
                return
            # Active until answered: the agent's background writers wait
            # for the answer to be out (Gate.wait_quiet).
            with agent.gate.activity():
                with self._working:
                    try:
                        body = reader.body(headers, handler.oversized)
                    except (BadRequest, OSError) as exc:
                        _answer_http_error(conn, exc)
                        return
                    if isinstance(body, bytes):
                        code, out = handler.handle(agent, headers, body)
                    else:  # refused as oversized (never None without drain)
                        assert body is not None
                        code, out = body
                with contextlib.suppress(OSError):  # the caller gave up: the work is done
                    _answer(conn, code, out)
            agent.metrics.result("cni", verb, handler.cni_code(code, out))
        finally:
            if not refuse:
                with self._lock:
                    self._at_door -= 1


def _peek_is_cni(conn: socket.socket) -> bool:
    """Whether the request starts ``POST /v1/cni ``, read without consuming
    anything (a request for uvicorn must reach it whole)."""
    want = len(CNI_REQUEST_LINE)
    deadline = time.monotonic() + READ_TIMEOUT
    while True:
        data = conn.recv(want, socket.MSG_PEEK)
        if not data or not CNI_REQUEST_LINE.startswith(data[:want]):
            return False
        if len(data) >= want:
            return True
        # A request line split across writes: rare, wait for the rest.
        if time.monotonic() > deadline:
            raise TimeoutError("request line incomplete")
        time.sleep(0.001)


class _Reader:
    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._buf = b""

    def _more(self) -> bytes:
        chunk = self._conn.recv(65536)
        if not chunk:
            raise BadRequest("connection closed mid-request")
        return chunk

    def head(self) -> dict[str, str]:
        """The headers, names lower-cased, values latin-1 with surrounding
        whitespace removed (as h11 and Starlette gave them); the first of a
        repeated header wins (Starlette's ``Headers.get``)."""
        while b"\r\n\r\n" not in self._buf:
            if len(self._buf) > MAX_HEAD:
                raise BadRequest("request head too large")
            self._buf += self._more()
        head, _, self._buf = self._buf.partition(b"\r\n\r\n")
        request_line, *lines = head.split(b"\r\n")
        if not request_line.endswith((b" HTTP/1.1", b" HTTP/1.0")):
            raise BadRequest("not an HTTP/1.1 request")
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise BadRequest("malformed header line")
            headers.setdefault(
                name.decode("latin-1").lower(), value.strip(b" \t").decode("latin-1")
            )
        return headers

    def body(
        self,
        headers: dict[str, str],
        oversized: Callable[[dict[str, str], int], tuple[int, bytes] | None],
        *,
        drain: bool = False,
    ) -> bytes | tuple[int, bytes] | None:
        """The body; or, when it is (or grows) past the limit, the refusal
        ``oversized`` gives, without reading it whole. With ``drain`` (a
        request refused anyway) a body past the limit is None."""
        if headers.get("expect", "").lower() == "100-continue":
            self._conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return self._chunked(headers, oversized, drain)
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            raise BadRequest("bad Content-Length") from None
        if length < 0:
            raise BadRequest("bad Content-Length")
        refused = oversized(headers, length)
        if refused is not None:
            return None if drain else refused
        while len(self._buf) < length:
            self._buf += self._more()
        return self._buf[:length]

    def _chunked(
        self,
        headers: dict[str, str],
        oversized: Callable[[dict[str, str], int], tuple[int, bytes] | None],
        drain: bool,
    ) -> bytes | tuple[int, bytes] | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            while b"\r\n" not in self._buf:
                if len(self._buf) > MAX_HEAD:
                    raise BadRequest("chunk size line too long")
                self._buf += self._more()
            size_line, _, self._buf = self._buf.partition(b"\r\n")
            try:
                chunk_size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise BadRequest("bad chunk size") from None
            if chunk_size == 0:
                return b"".join(chunks)
            size += chunk_size
            refused = oversized(headers, size)
            if refused is not None:
                return None if drain else refused
            while len(self._buf) < chunk_size + 2:
                self._buf += self._more()
            chunks.append(self._buf[:chunk_size])
            self._buf = self._buf[chunk_size + 2 :]


def _answer(conn: socket.socket, exit_code: int, out: bytes) -> None:
    head = (
        "HTTP/1.1 200 OK\r\n"
        f"content-length: {len(out)}\r\n"
        "content-type: application/json\r\n"
        f"x-cni-exit: {exit_code}\r\n"
        "connection: close\r\n\r\n"
    )
    conn.sendall(head.encode() + out)


def _answer_http_error(conn: socket.socket, exc: Exception) -> None:
    """Not a request the door can read: HTTP 400 (the shims answer 11 or 6
    for it, as for any answer that is not a CNI one)."""
    text = f"{exc}\n".encode()
    head = f"HTTP/1.1 400 Bad Request\r\ncontent-length: {len(text)}\r\nconnection: close\r\n\r\n"
    with contextlib.suppress(OSError):
        conn.sendall(head.encode() + text)
