"""Both CNI shims (Python podwire-cni and the compiled shim/podwire-cni.c) under
the same cases: they must be interchangeable transports (the wire contract in
docs/cni.md, "The shim and the agent").

Transport cases run the shims against a small recording HTTP peer on a unix
socket (what each shim sends, byte for byte, and how it treats broken answers);
the CNI cases run them against a real podwire agent in real namespaces.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.agent import AgentProcess, netconf, netns_path
from tests.fixtures.common import unique

SUPPORTED = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
CNI_VARS = {
    "CNI_COMMAND": "x-cni-command",
    "CNI_CONTAINERID": "x-cni-containerid",
    "CNI_NETNS": "x-cni-netns",
    "CNI_IFNAME": "x-cni-ifname",
    "CNI_ARGS": "x-cni-args",
    "CNI_PATH": "x-cni-path",
}


def run_shim(
    shim: Path,
    stdin: bytes,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    """Runs a shim as a runtime does: a clean environment, config on stdin."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    # Point the default away from a real agent on this machine.
    base["PODWIRE_AGENT_SOCKET"] = "/nonexistent/podwire-test.sock"
    base.update(env or {})
    return subprocess.run([str(shim)], input=stdin, env=base, capture_output=True, timeout=timeout)


def cni_error(proc: subprocess.CompletedProcess[bytes]) -> dict[str, object]:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    answer = json.loads(proc.stdout)
    assert set(answer) >= {"cniVersion", "code", "msg"}, answer
    assert isinstance(answer["msg"], str) and answer["msg"], answer
    return answer  # type: ignore[no-any-return]


# ---------------------------------------------------------------- a recording peer


@dataclass
class Exchange:
    request_line: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    header_names: list[str] = field(default_factory=list)
    body: bytes = b""


class RecordingPeer:
    """An HTTP/1.1 peer on a unix socket: records each request and answers
    with ``self.answer`` (raw bytes), so each shim's wire behaviour is visible."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.answer: bytes | None = (
            b"HTTP/1.1 200 OK\r\nX-CNI-Exit: 0\r\nContent-Length: 2\r\n\r\n{}"
        )
        self.exchanges: list[Exchange] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, body = data.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            ex = Exchange(request_line=lines[0])
            for line in lines[1:]:
                name, _, value = line.partition(":")
                ex.headers[name.strip().lower()] = value.strip()
                ex.header_names.append(name.strip())
            length = int(ex.headers.get("content-length", "0"))
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            ex.body = body
            self.exchanges.append(ex)
            if self.answer is None:  # a hung agent: hold the line until the shim gives up
                while conn.recv(65536):
                    pass
                return
            conn.sendall(self.answer)
        except OSError:
            return

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[RecordingPeer]:
    server = RecordingPeer(tmp_path / "peer.sock")
    try:
        yield server
    finally:
        server.close()


# ---------------------------------------------------------------- answered by the shim


def test_version_is_answered_without_an_agent(shim: Path) -> None:
    proc = run_shim(shim, b'{"cniVersion": "1.1.0"}', {"CNI_COMMAND": "VERSION"})
    assert proc.returncode == 0, proc
    answer = json.loads(proc.stdout)
    assert answer == {"cniVersion": "1.1.0", "supportedVersions": SUPPORTED}


def test_version_ignores_an_undecodable_config(shim: Path) -> None:
    proc = run_shim(shim, b"not json", {"CNI_COMMAND": "VERSION"})
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["supportedVersions"] == SUPPORTED


@pytest.mark.parametrize(
    ("stdin", "version"),
    [
        (b'{"cniVersion": "0.4.0", "name": "n", "type": "podwire"}', "0.4.0"),
        (b'{"cniVersion": "1.0.0", "name": "n", "type": "podwire"}', "1.0.0"),
        (b'{"name": "n", "type": "podwire"}', "1.1.0"),
        (b'\xef\xbb\xbf{"cniVersion": "1.0.0"}', "1.0.0"),  # a BOM is allowed
    ],
)
def test_agent_down_is_error_11(shim: Path, tmp_path: Path, stdin: bytes, version: str) -> None:
    proc = run_shim(
        shim,
        stdin,
        {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": "c1",
            "CNI_NETNS": "/var/run/netns/none",
            "CNI_IFNAME": "eth0",
            "PODWIRE_AGENT_SOCKET": str(tmp_path / "nobody-listens.sock"),
        },
    )
    answer = cni_error(proc)
    assert answer["code"] == 11
    assert answer["cniVersion"] == version


UNDECODABLE = {
    "not-json": b"{ not json",
    "empty": b"",
    "trailing-comma": b'{"cniVersion": "1.0.0", }',
    "array": b'["cniVersion", "1.0.0"]',
    "string": b'"cniVersion"',
    "extra-data": b'{"cniVersion": "1.0.0"} {}',
    "not-utf8": b'{"cniVersion": "1.0.0", "name": "\xff"}',
    "overlong-utf8": b'{"cniVersion": "1.0.0", "name": "\xc0\xaf"}',
    "control-char": b'{"cniVersion": "1.0.0", "name": "a\tb"}',
}


@pytest.mark.parametrize("name", sorted(UNDECODABLE))
@pytest.mark.parametrize("where", ["default-socket", "env-socket"])
def test_undecodable_config_is_error_6_when_no_agent_answers(
    shim: Path, tmp_path: Path, name: str, where: str
) -> None:
    """Nothing to retry: the answer is the agent's own for such stdin (6), not
    "try again later" (11), and it says why the agent did not answer."""
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0"}
    if where == "env-socket":
        env["PODWIRE_AGENT_SOCKET"] = str(tmp_path / "nobody-listens.sock")
    else:  # the default, /run/podwire/agent.sock, with no agent there
        env["PODWIRE_AGENT_SOCKET"] = ""
        if Path("/run/podwire/agent.sock").exists():
            pytest.fail("an agent serves /run/podwire/agent.sock on this machine; stop it")
    proc = run_shim(shim, UNDECODABLE[name], env)
    answer = cni_error(proc)
    assert answer["code"] == 6, answer
    assert answer["cniVersion"] == "1.1.0"
    assert answer["msg"] == "cannot decode the network config on stdin"
    socket_path = "/run/podwire/agent.sock" if where == "default-socket" else str(tmp_path)
    assert f"podwire agent unreachable at {socket_path}" in str(answer["details"])


@pytest.mark.parametrize("name", sorted(UNDECODABLE))
def test_undecodable_config_is_error_6_when_the_agent_answers_garbage(
    shim: Path, peer: RecordingPeer, name: str
) -> None:
    peer.answer = b"hello\r\n\r\n"
    env = {"CNI_COMMAND": "DEL", "PODWIRE_AGENT_SOCKET": str(peer.path)}
    answer = cni_error(run_shim(shim, UNDECODABLE[name], env))
    assert answer["code"] == 6, answer
    assert "answered garbage" in str(answer["details"])
    # The agent got it to judge first: the shim decides only without an answer.
    (ex,) = peer.exchanges
    assert ex.body == UNDECODABLE[name]


def test_agent_socket_path_that_is_not_a_socket_is_error_11(shim: Path, tmp_path: Path) -> None:
    not_a_socket = tmp_path / "plain-file"
    not_a_socket.write_text("")
    config = {"cniVersion": "1.0.0", "agentSocket": str(not_a_socket)}
    proc = run_shim(shim, json.dumps(config).encode(), {"CNI_COMMAND": "DEL"})
    assert cni_error(proc)["code"] == 11


def _decoded(ex: Exchange, header: str) -> bytes:
    """A variable as the agent reads it: the header is base64 of its bytes."""
    assert ex.headers["x-cni-encoding"] == "base64"
    return base64.b64decode(ex.headers[header], validate=True)


@pytest.mark.parametrize("variable", sorted(CNI_VARS))
@pytest.mark.parametrize("bad", ["eth0\nX-Injected: 1", "eth0\r", "\n", " ADD ", "x\xe9\t"])
def test_line_breaks_and_spaces_are_carried_exactly_never_split_a_header(
    shim: Path, peer: RecordingPeer, variable: str, bad: str
) -> None:
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/var/run/netns/x",
        "CNI_IFNAME": "eth0",
        "PODWIRE_AGENT_SOCKET": str(peer.path),
    }
    env[variable] = bad
    proc = run_shim(shim, b'{"cniVersion": "1.0.0"}', env)
    assert proc.returncode == 0, proc
    (ex,) = peer.exchanges
    assert "x-injected" not in ex.headers
    assert _decoded(ex, CNI_VARS[variable]) == bad.encode()


def test_non_utf8_bytes_are_carried_exactly(shim: Path, peer: RecordingPeer) -> None:
    raw = b"/var/run/netns/caf\xe9 \xff  "
    env = {"CNI_COMMAND": "ADD", "PODWIRE_AGENT_SOCKET": str(peer.path)}
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    benv = {k.encode(): v.encode() for k, v in base.items()} | {b"CNI_NETNS": raw}
    proc = subprocess.run(
        [str(shim)], input=b'{"cniVersion": "1.0.0"}', env=benv, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc
    (ex,) = peer.exchanges
    assert _decoded(ex, "x-cni-netns") == raw


# ---------------------------------------------------------------- the transport


def test_request_carries_set_variables_and_stdin_unchanged(shim: Path, peer: RecordingPeer) -> None:
    stdin = (
        b'{"cniVersion": "1.0.0", "name": "n\\u00e9", "type": "podwire",\n'
        b' "network": "blue", "pad": "' + b"x" * 200_000 + b'"}'
    )
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "0123abcd",
        "CNI_NETNS": "/var/run/netns/pw test",
        "CNI_IFNAME": "eth1",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=p",
        "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
        "PODWIRE_AGENT_SOCKET": str(peer.path),
    }
    proc = run_shim(shim, stdin, env)
    assert proc.returncode == 0, proc
    assert proc.stdout == b"{}"
    (ex,) = peer.exchanges
    assert ex.request_line == "POST /v1/cni HTTP/1.1"
    assert ex.headers["host"] == "podwire"
    assert int(ex.headers["content-length"]) == len(stdin)
    assert ex.body == stdin
    for variable, header in CNI_VARS.items():
        assert _decoded(ex, header) == env[variable].encode()


def test_unset_variables_send_no_header_and_empty_ones_do(shim: Path, peer: RecordingPeer) -> None:
    env = {"CNI_COMMAND": "DEL", "CNI_ARGS": "", "PODWIRE_AGENT_SOCKET": str(peer.path)}
    proc = run_shim(shim, b'{"cniVersion": "1.1.0"}', env)
    assert proc.returncode == 0, proc
    (ex,) = peer.exchanges
    sent = {h for h in ex.headers if h.startswith("x-cni-")}
    assert sent == {"x-cni-encoding", "x-cni-command", "x-cni-args"}
    assert _decoded(ex, "x-cni-args") == b""


def test_answer_body_and_exit_code_pass_through(shim: Path, peer: RecordingPeer) -> None:
    body = b'{"cniVersion": "1.0.0", "code": 7, "msg": "network \\"x\\" not found"}\n'
    peer.answer = (
        b"HTTP/1.1 200 OK\r\nx-cni-exit: 1\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(body) + body
    )
    proc = run_shim(shim, b"{}", {"CNI_COMMAND": "ADD", "PODWIRE_AGENT_SOCKET": str(peer.path)})
    assert proc.returncode == 1
    assert proc.stdout == body


def test_exit_code_other_than_zero_and_one(shim: Path, peer: RecordingPeer) -> None:
    peer.answer = b"HTTP/1.1 200 OK\r\nX-CNI-Exit: 3\r\nContent-Length: 0\r\n\r\n"
    proc = run_shim(shim, b"{}", {"CNI_COMMAND": "CHECK", "PODWIRE_AGENT_SOCKET": str(peer.path)})
    assert proc.returncode == 3
    assert proc.stdout == b""


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"hello\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",  # no X-CNI-Exit
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!",
        b"HTTP/1.1 200 OK\r\nX-CNI-Exit: banana\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nX-CNI-Exit: 0\r\nContent-Length: 100\r\n\r\n{}",  # cut short
    ],
    ids=["closed", "not-http", "no-exit", "status-500", "exit-nan", "short-body"],
)
def test_garbage_answer_is_error_11(shim: Path, peer: RecordingPeer, garbage: bytes) -> None:
    peer.answer = garbage
    stdin = b'{"cniVersion": "0.4.0", "name": "n", "type": "podwire"}'
    proc = run_shim(shim, stdin, {"CNI_COMMAND": "ADD", "PODWIRE_AGENT_SOCKET": str(peer.path)})
    answer = cni_error(proc)
    assert answer["code"] == 11
    assert answer["cniVersion"] == "0.4.0"


# ---------------------------------------------------------------- socket discovery


def _config_with_socket(raw_value: str, version: str = "1.0.0") -> bytes:
    head = '{\n  "cniVersion" : "' + version + '",\t"name":"n", "plugins": [{"agentSocket": "/b"}],'
    tail = ' , "x": {"agentSocket": "/bogus2"} }\n'
    return (head + ' "agentSocket" :  ' + raw_value + tail).encode()


def _escaped(path: str) -> str:
    """The path as JSON with every escape a writer may use."""
    out = []
    for i, ch in enumerate(path):
        if ch == "/":
            out.append("\\/")
        elif i % 3 == 0:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def test_config_socket_wins_over_environment(shim: Path, peer: RecordingPeer) -> None:
    stdin = _config_with_socket(json.dumps(str(peer.path)))
    proc = run_shim(shim, stdin, {"CNI_COMMAND": "ADD", "PODWIRE_AGENT_SOCKET": "/bogus3"})
    assert proc.returncode == 0, proc
    assert len(peer.exchanges) == 1


def test_config_socket_with_escapes(shim: Path, peer: RecordingPeer) -> None:
    stdin = _config_with_socket(_escaped(str(peer.path)))
    assert json.loads(stdin)["agentSocket"] == str(peer.path)
    proc = run_shim(shim, stdin, {"CNI_COMMAND": "ADD"})
    assert proc.returncode == 0, proc
    assert len(peer.exchanges) == 1


def test_socket_from_environment_when_config_has_none(shim: Path, peer: RecordingPeer) -> None:
    # "agentSocket" appears only nested: that is not the shim's key.
    stdin = b'{"cniVersion": "1.0.0", "plugins": [{"agentSocket": "/bogus"}], "n": {"a": [1]}}'
    proc = run_shim(shim, stdin, {"CNI_COMMAND": "ADD", "PODWIRE_AGENT_SOCKET": str(peer.path)})
    assert proc.returncode == 0, proc
    assert len(peer.exchanges) == 1


@pytest.mark.parametrize("value", ["42", "[]", "{}", "false", '""', '["/x"]'])
def test_agent_socket_of_a_wrong_type_is_error_7_and_goes_nowhere(
    shim: Path, peer: RecordingPeer, value: str
) -> None:
    # Ignoring it once sent the call to another agent (the default socket).
    stdin = b'{"cniVersion": "1.0.0", "agentSocket": ' + value.encode() + b"}"
    proc = run_shim(shim, stdin, {"CNI_COMMAND": "DEL", "PODWIRE_AGENT_SOCKET": str(peer.path)})
    answer = cni_error(proc)
    assert answer["code"] == 7 and answer["details"] == "agentSocket", answer
    assert peer.exchanges == []


def test_null_agent_socket_is_absent(shim: Path, peer: RecordingPeer) -> None:
    stdin = b'{"cniVersion": "1.0.0", "agentSocket": null}'
    proc = run_shim(shim, stdin, {"CNI_COMMAND": "ADD", "PODWIRE_AGENT_SOCKET": str(peer.path)})
    assert proc.returncode == 0, proc
    assert len(peer.exchanges) == 1


def test_invalid_json_falls_back_to_environment(shim: Path, peer: RecordingPeer) -> None:
    # Invalid config: the agent judges it (error 6); the shim only carries it.
    stdin = b'{"cniVersion": "1.0.0", "agentSocket": "/bogus", }'
    proc = run_shim(shim, stdin, {"CNI_COMMAND": "ADD", "PODWIRE_AGENT_SOCKET": str(peer.path)})
    assert proc.returncode == 0, proc
    (ex,) = peer.exchanges
    assert ex.body == stdin


def test_socket_in_a_unique_dir_with_spaces(shim: Path, tmp_path: Path) -> None:
    path = tmp_path / unique("dir with spaces ") / "a.sock"
    path.parent.mkdir()
    server = RecordingPeer(path)
    try:
        stdin = json.dumps({"cniVersion": "1.0.0", "agentSocket": str(path)}).encode()
        proc = run_shim(shim, stdin, {"CNI_COMMAND": "ADD"})
        assert proc.returncode == 0, proc
        assert len(server.exchanges) == 1
    finally:
        server.close()


# ---------------------------------------------------------------- the two shims alike

ALIKE_ANSWERS = {
    "ok": b"HTTP/1.1 200 OK\r\nX-CNI-Exit: 0\r\nContent-Length: 3\r\n\r\n{}\n",
    "exit-300": b"HTTP/1.1 200 OK\r\nX-CNI-Exit: 300\r\nContent-Length: 0\r\n\r\n",
    "exit-negative": b"HTTP/1.1 200 OK\r\nX-CNI-Exit: -1\r\nContent-Length: 0\r\n\r\n",
    "exit-spaces": b"HTTP/1.1 200 OK\r\nx-cni-exit:   2  \r\ncontent-length: 1\r\n\r\nx",
    "no-length": b"HTTP/1.1 200 OK\r\nX-CNI-Exit: 0\r\n\r\nuntil close",
    "chunked": (
        b"HTTP/1.1 200 OK\r\nX-CNI-Exit: 0\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"
    ),
    "longer-than-length": b"HTTP/1.1 200 OK\r\nX-CNI-Exit: 0\r\nContent-Length: 1\r\n\r\nxyz",
    "closed": b"",
    "not-http": b"hello world\r\n\r\n",
    "no-exit": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    "status-404": b"HTTP/1.0 404 Not Found\r\nX-CNI-Exit: 0\r\nContent-Length: 0\r\n\r\n",
    "short-body": b"HTTP/1.1 200 OK\r\nX-CNI-Exit: 0\r\nContent-Length: 9\r\n\r\nab",
    "no-blank-line": b"HTTP/1.1 200 OK\r\nX-CNI-Exit: 0\r\n",
}


@pytest.mark.parametrize("name", sorted(ALIKE_ANSWERS))
def test_both_shims_treat_an_answer_alike(
    py_shim: Path, c_shim: Path, peer: RecordingPeer, name: str
) -> None:
    peer.answer = ALIKE_ANSWERS[name]
    stdin = b'{"cniVersion": "0.4.0", "name": "n", "type": "podwire"}'
    env = {"CNI_COMMAND": "ADD", "PODWIRE_AGENT_SOCKET": str(peer.path)}
    py = run_shim(py_shim, stdin, env)
    c = run_shim(c_shim, stdin, env)
    assert (c.returncode, c.stdout) == (py.returncode, py.stdout)
    if py.returncode == 1 and py.stdout.startswith(b'{"cniVersion"'):
        assert json.loads(py.stdout)["code"] == 11


def test_a_hung_agent_times_out_as_error_11_alike(
    py_shim: Path, c_shim: Path, peer: RecordingPeer
) -> None:
    peer.answer = None
    env = {
        "CNI_COMMAND": "ADD",
        "PODWIRE_AGENT_SOCKET": str(peer.path),
        "PODWIRE_CNI_TIMEOUT": "0.5",
    }
    stdin = b'{"cniVersion": "1.0.0"}'
    py = run_shim(py_shim, stdin, env)
    c = run_shim(c_shim, stdin, env)
    assert (c.returncode, c.stdout) == (py.returncode, py.stdout)
    assert cni_error(c)["code"] == 11


@pytest.mark.parametrize(
    ("stdin", "env"),
    [
        (b'{"cniVersion": "1.0.0"}', {"CNI_COMMAND": "VERSION"}),
        (b"", {"CNI_COMMAND": "VERSION"}),
        (b'{"cniVersion": "0.4.0"}', {"CNI_COMMAND": "ADD", "CNI_IFNAME": "a\nb"}),
        (b'{"cniVersion": ""}', {"CNI_COMMAND": "ADD", "CNI_ARGS": "\r"}),
        (b'["cniVersion", "1.0.0"]', {"CNI_COMMAND": "DEL", "CNI_NETNS": "x\n"}),
        (b'{"cniVersion": 1}', {"CNI_COMMAND": "ADD"}),
        (b'{"cniVersion": "0.3.1", "agentSocket": "/nonexistent/a.sock"}', {"CNI_COMMAND": "ADD"}),
        (b'{"cniVersion": "1.0.0", "agentSocket": "/dev/null"}', {"CNI_COMMAND": "DEL"}),
        (b'{"agentSocket": "/nonexistent/\\u00e9\\"q"}', {"CNI_COMMAND": "CHECK"}),
        (b'{"agentSocket": "/' + b"x" * 200 + b'"}', {"CNI_COMMAND": "ADD"}),
        (b'{"agentSocket": ""}', {"CNI_COMMAND": "ADD"}),
        (b"\xff\xfe not utf-8", {"CNI_COMMAND": "ADD"}),
        (b"{ not json", {"CNI_COMMAND": "ADD"}),
        (b'{"cniVersion": "0.4.0", "n": "\xed\xa0\x80"}', {"CNI_COMMAND": "ADD"}),
        (b'\xef\xbb\xbf{"agentSocket": "/nonexistent/bom.sock"}', {"CNI_COMMAND": "ADD"}),
        (b'{"agentSocket": "/nonexistent/\xff.sock"}', {"CNI_COMMAND": "ADD"}),
    ],
    ids=[
        "version",
        "version-no-stdin",
        "lf-ifname",
        "cr-args-empty-version",
        "lf-netns-array-config",
        "version-not-a-string",
        "no-agent",
        "not-a-socket",
        "escaped-path",
        "path-too-long",
        "empty-socket",
        "not-utf8",
        "not-json",
        "encoded-surrogate",
        "bom-socket",
        "not-utf8-socket",
    ],
)
def test_both_shims_answer_alike_by_themselves(
    py_shim: Path, c_shim: Path, stdin: bytes, env: dict[str, str]
) -> None:
    py = run_shim(py_shim, stdin, env)
    c = run_shim(c_shim, stdin, env)
    assert (c.returncode, c.stdout) == (py.returncode, py.stdout)


# ---------------------------------------------------------------- against a real agent


def _shim_env(
    agent: AgentProcess, command: str, container_id: str | None, netns: str | None
) -> dict[str, str]:
    env = {
        "CNI_COMMAND": command,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
        "PODWIRE_AGENT_SOCKET": str(agent.socket),
    }
    if container_id is not None:
        env["CNI_CONTAINERID"] = container_id
    if netns is not None:
        env["CNI_NETNS"] = netns_path(netns)
    return env


def _normalized(result: dict[str, Any]) -> dict[str, Any]:
    """An ADD result with what differs per container (MACs, addresses, names,
    sandbox) replaced by its shape, so two shims' answers can be compared."""
    text = json.dumps(result, sort_keys=True)
    for interface in result.get("interfaces", []):
        for key in ("name", "mac", "sandbox"):
            value = interface.get(key)
            if value and value != "eth0":  # the host-side name differs, eth0 does not
                text = text.replace(json.dumps(value), json.dumps(f"<{key}>"))
    for ip in result.get("ips", []):
        text = text.replace(json.dumps(ip["address"]), '"<address>"')
    return json.loads(text)  # type: ignore[no-any-return]


def test_add_del_round_trip_through_each_shim(
    py_shim: Path, c_shim: Path, agent_proc: AgentProcess, make_netns: Any
) -> None:
    name = unique("pwconf")
    network = agent_proc.create_network(name, "198.19.77.0/24", "2001:db8:77::/64")
    config = json.dumps(netconf(name, "1.0.0")).encode()
    results = {}
    for label, shim in (("python", py_shim), ("c", c_shim)):
        netns = make_netns("pwcf")
        container_id = unique("ctr", 16)
        add = run_shim(shim, config, _shim_env(agent_proc, "ADD", container_id, netns))
        assert add.returncode == 0, (label, add.stdout, add.stderr)
        result = json.loads(add.stdout)
        (port,) = [p for p in agent_proc.ports(network.id) if p.device_id == container_id]
        inside = subprocess.run(
            ["ip", "-n", netns, "-o", "addr", "show", "dev", "eth0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for fixed in port.fixed_ips:
            assert f" {fixed.ip_address}/" in inside, (label, inside)
            assert any(ip["address"].startswith(f"{fixed.ip_address}/") for ip in result["ips"])
        (eth0,) = [i for i in result["interfaces"] if i["name"] == "eth0"]
        assert eth0["mac"] == port.mac_address
        assert eth0["sandbox"] == netns_path(netns)
        results[label] = result

        check = run_shim(shim, config, _shim_env(agent_proc, "CHECK", container_id, netns))
        assert (check.returncode, check.stdout) == (0, b""), check

        for _ in range(2):  # DEL is idempotent
            delete = run_shim(shim, config, _shim_env(agent_proc, "DEL", container_id, netns))
            assert (delete.returncode, delete.stdout) == (0, b""), delete
        assert [p for p in agent_proc.ports(network.id) if p.device_id == container_id] == []

    assert _normalized(results["python"]) == _normalized(results["c"])


@pytest.mark.parametrize(
    "case",
    ["unknown-network", "del-without-add", "status", "gc", "bad-version", "not-json", "no-command"],
)
def test_agent_answers_reach_the_runtime_byte_for_byte(
    py_shim: Path, c_shim: Path, agent_proc: AgentProcess, make_netns: Any, case: str
) -> None:
    name = unique("pwconf")
    agent_proc.create_network(name, "198.19.78.0/24")
    netns = make_netns("pwcf")
    conf: dict[str, Any] = netconf(name, "1.1.0")
    command = "ADD"
    if case == "unknown-network":
        conf["network"] = "no-such-" + name
    elif case == "del-without-add":
        command = "DEL"
    elif case == "status":
        command = "STATUS"
    elif case == "gc":
        command = "GC"
        conf["cni.dev/valid-attachments"] = []
    elif case == "bad-version":
        conf["cniVersion"] = "0.2.0"
    stdin = b"{not json" if case == "not-json" else json.dumps(conf).encode()
    env = _shim_env(agent_proc, command, unique("ctr", 16), netns)
    if case == "no-command":
        del env["CNI_COMMAND"]
    py = run_shim(py_shim, stdin, env)
    c = run_shim(c_shim, stdin, env)
    assert (c.returncode, c.stdout) == (py.returncode, py.stdout)
    if case in ("del-without-add", "status", "gc"):
        assert py.returncode == 0, py
    else:
        assert py.returncode == 1 and json.loads(py.stdout)["code"] in (1, 4, 6, 7), py
    assert agent_proc.ports() == [] or case == "status"
