"""The agent socket's door (podwire/daemon/door.py): POST /v1/cni read and
answered by the thread that accepted it, every other request handed to the
ASGI server, and the busy refusal (code 11) decided before a request's body
is read. Real agent processes, raw bytes on their sockets."""

from __future__ import annotations

import base64
import json
import socket
import time
from typing import Any

from tests.fixtures.agent import AgentProcess


def _head(command: str, extra: str = "") -> bytes:
    value = base64.b64encode(command.encode()).decode()
    return (
        "POST /v1/cni HTTP/1.1\r\nHost: podwire\r\nX-CNI-Encoding: base64\r\n"
        f"X-CNI-Command: {value}\r\n{extra}"
    ).encode()


def _connect(agent: AgentProcess) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX)
    conn.settimeout(30)
    conn.connect(str(agent.socket))
    return conn


def _read_all(conn: socket.socket) -> bytes:
    reply = b""
    while chunk := conn.recv(65536):
        reply += chunk
    return reply


def _parse(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status.split()[1]), headers, body


def _exchange(agent: AgentProcess, *pieces: bytes) -> tuple[int, dict[str, str], bytes]:
    with _connect(agent) as conn:
        for piece in pieces:
            conn.sendall(piece)
            time.sleep(0.05)  # each piece its own read on the agent's side
        return _parse(_read_all(conn))


def _metrics(agent: AgentProcess) -> bytes:
    request = b"GET /metrics HTTP/1.1\r\nHost: podwire\r\nConnection: close\r\n\r\n"
    return _exchange(agent, request)[2]


def test_cni_requests_are_read_whole_however_they_arrive(agent_proc: AgentProcess) -> None:
    body = json.dumps({"cniVersion": "0.4.0", "name": "x", "type": "podwire"}).encode()
    head = _head("VERSION")
    cases = {
        "request line split": (
            head[:7],
            head[7:] + b"Content-Length: %d\r\n\r\n" % len(body) + body,
        ),
        "body split": (head + b"Content-Length: %d\r\n\r\n" % len(body) + body[:5], body[5:]),
        "chunked": (
            head + b"Transfer-Encoding: chunked\r\n\r\n",
            b"%x\r\n%s\r\n" % (5, body[:5]),
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - 5, body[5:]),
        ),
    }
    for name, pieces in cases.items():
        status, headers, answer = _exchange(agent_proc, *pieces)
        assert status == 200 and headers["x-cni-exit"] == "0", (name, answer)
        assert "1.1.0" in json.loads(answer)["supportedVersions"], (name, answer)
        assert headers["connection"] == "close"

    # curl's "Expect: 100-continue": the interim answer first, then the real one.
    with _connect(agent_proc) as conn:
        conn.sendall(head + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        interim = conn.recv(25)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        conn.sendall(body)
        status, headers, _ = _parse(_read_all(conn))
        assert status == 200 and headers["x-cni-exit"] == "0"

    # Not HTTP/1.x: a plain HTTP error (the shims turn it into 11 or 6).
    status, _, _ = _exchange(agent_proc, b"POST /v1/cni HTTP/7\r\n\r\n")
    assert status == 400


def test_every_other_request_still_reaches_the_api(agent_proc: AgentProcess) -> None:
    """Handed to uvicorn: its routing (405 for GET /v1/cni), keep-alive with
    two requests on one connection, the Neutron API."""
    status, _, _ = _exchange(agent_proc, b"GET /v1/cni HTTP/1.1\r\nHost: podwire\r\n\r\n")
    assert status == 405
    with _connect(agent_proc) as conn:
        for _ in range(2):
            conn.sendall(b"GET /v1/status HTTP/1.1\r\nHost: podwire\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += conn.recv(65536)
            status, headers, body = _parse(reply)
            while len(body) < int(headers["content-length"]):
                body += conn.recv(65536)
            assert status == 200 and json.loads(body)["ready"] is True
    assert agent_proc.get("/v2.0/networks")["networks"] is not None


def test_busy_is_decided_at_the_door_before_the_body(start_agent: Any) -> None:
    """With one request admitted, a CNI call whose body has not arrived yet
    already holds the door: the next one is refused with 11 (in its config's
    version), and the held one is then answered normally."""
    agent: AgentProcess = start_agent("--max-in-flight", "1", "--max-queued", "0")
    body = json.dumps({"cniVersion": "0.4.0", "name": "x", "type": "podwire"}).encode()
    full = _head("VERSION") + b"Content-Length: %d\r\n\r\n" % len(body) + body
    with _connect(agent) as held:
        held.sendall(full[: -len(body) + 3])  # the head and 3 bytes of the body
        # Until the door holds it (a call sent now could otherwise be counted
        # first and the held one refused).
        held_line = b'podwire_door_calls{door="cni"} 1.0'
        deadline = time.monotonic() + 20
        while held_line not in _metrics(agent) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert held_line in _metrics(agent)
        status, headers, answer = _exchange(agent, full)
        assert status == 200 and headers["x-cni-exit"] == "1", answer
        refused = json.loads(answer)
        assert refused["code"] == 11 and "busy" in refused["msg"], refused
        assert refused["cniVersion"] == "0.4.0"
        held.sendall(body[3:])
        status, headers, answer = _parse(_read_all(held))
        assert headers["x-cni-exit"] == "0", answer
    status, headers, answer = _exchange(agent, full)
    assert headers["x-cni-exit"] == "0", answer
    text = _metrics(agent)
    assert b'podwire_results_total{code="11",door="cni",verb="VERSION"} 1.0' in text, text
    assert b'podwire_door_calls{door="cni"} 0.0' in text, text
