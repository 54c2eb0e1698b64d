"""podwire-cni: the CNI plugin binary, a pure transport to the agent.

Installed into the CNI bin directory as ``podwire``. It forwards the CNI_*
environment (one X-CNI-* header per variable that is set) and stdin to
``POST /v1/cni`` on the agent's unix socket (each value base64 of its
bytes, with ``X-CNI-Encoding: base64``), writes the answer's body to
stdout unchanged and exits with its X-CNI-Exit code. It answers by itself
only VERSION, error 7 for an ``agentSocket`` that is not a non-empty string
or a stdin over the agent's size limit (1 MiB), and,
when the agent cannot be reached or answers garbage, error 11 (try again
later) or, if stdin cannot be a network config at all, error 6 (decode
failure: no retry can succeed, and it is what the agent would have said).

Start-up time is the whole cost of a CNI call here, so: stdlib only, nothing
imported at module level beyond os/sys, json only on the paths that need it
(run it as ``python3 -S -I``; the C shim in shim/ behaves identically).
"""

import os
import sys

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
DEFAULT_SOCKET = "/run/podwire/agent.sock"
CNI_VARS = (
    ("CNI_COMMAND", "X-CNI-Command"),
    ("CNI_CONTAINERID", "X-CNI-ContainerID"),
    ("CNI_NETNS", "X-CNI-Netns"),
    ("CNI_IFNAME", "X-CNI-Ifname"),
    ("CNI_ARGS", "X-CNI-Args"),
    ("CNI_PATH", "X-CNI-Path"),
)
# The agent's limit on stdin (podwire/frontends/cni/validate.MAX_CONFIG_BYTES).
MAX_STDIN = 1 << 20
# ADD may wait for a data path (OVN binding) for a while; never hang forever.
TIMEOUT = float(os.environ.get("PODWIRE_CNI_TIMEOUT", "300"))


def _config(stdin: bytes) -> dict[str, object] | None:
    """The network config on stdin, or None when stdin cannot be one: a JSON
    object in UTF-8 (RFC 8259), a leading BOM allowed. The C shim's scanner
    accepts exactly this, so both shims judge stdin alike."""
    import json

    if stdin.startswith(b"\xef\xbb\xbf"):
        stdin = stdin[3:]
    try:
        # surrogatepass: what json.loads(bytes) does with encoded surrogates.
        config = json.loads(stdin.decode("utf-8", "surrogatepass"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError both
        return None
    return config if isinstance(config, dict) else None


def _config_version(stdin: bytes) -> str:
    version = (_config(stdin) or {}).get("cniVersion")
    return version if isinstance(version, str) and version else LATEST


def _error(stdin: bytes, code: int, msg: str, details: str = "") -> bytes:
    import json

    body = {"cniVersion": _config_version(stdin), "code": code, "msg": msg, "details": details}
    return json.dumps(body).encode() + b"\n"


def _socket_path(stdin: bytes) -> str | None:
    """The agent's socket; None when the config's agentSocket is there but
    not a non-empty string (answered as error 7: another agent must not get
    the call)."""
    # Parse only when the key can be there: most configs never set it.
    if b"agentSocket" in stdin:
        config = _config(stdin) or {}
        path = config.get("agentSocket")
        if isinstance(path, str) and path:
            return path
        if "agentSocket" in config and path is not None:
            return None
    return os.environ.get("PODWIRE_AGENT_SOCKET") or DEFAULT_SOCKET


def _request(stdin: bytes) -> bytes:
    """Each variable that is set, as base64 of its bytes (nothing stripped,
    nothing re-encoded: a header value would lose surrounding spaces and
    could not carry every byte of a path)."""
    import base64

    lines = ["POST /v1/cni HTTP/1.1", "Host: podwire", f"Content-Length: {len(stdin)}"]
    lines.append("X-CNI-Encoding: base64")
    for var, header in CNI_VARS:
        value = os.environb.get(var.encode())
        if value is None:
            continue
        lines.append(f"{header}: {base64.b64encode(value).decode()}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + stdin


def _exchange(path: str, request: bytes) -> tuple[int, bytes]:
    """Send the request, return (exit code, body). Raises OSError when the
    agent cannot be reached and ValueError when its answer is not one."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(TIMEOUT)
        sock.connect(path)
        try:  # noqa: SIM105 - contextlib is one import more at start-up
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            # The agent may answer before reading all of stdin (one over
            # its size limit) and close: its answer is still there to read.
            pass
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("truncated HTTP answer")
    status_line, *header_lines = head.split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP answer: {status_line[:60]!r}")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if parts[1] != b"200" or b"x-cni-exit" not in headers:
        raise ValueError(f"agent answered HTTP {parts[1].decode(errors='replace')}")
    length = headers.get(b"content-length")
    if length is not None:
        if len(body) < int(length):
            raise ValueError("truncated HTTP body")
        body = body[: int(length)]
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    return int(headers[b"x-cni-exit"]), body


def _dechunk(data: bytes) -> bytes:
    out: list[bytes] = []
    while True:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(rest[:size])
        data = rest[size + 2 :]


def run(stdin: bytes) -> tuple[int, bytes]:
    if os.environ.get("CNI_COMMAND") == "VERSION":
        versions = ", ".join(f'"{v}"' for v in SUPPORTED_VERSIONS)
        return 0, f'{{"cniVersion": "{LATEST}", "supportedVersions": [{versions}]}}\n'.encode()
    if len(stdin) > MAX_STDIN:
        # The agent would refuse it too, but only after the runtime's bytes
        # crossed the socket: no point sending what cannot be read.
        msg = f"the network config on stdin is over {MAX_STDIN} bytes"
        return 1, _error(stdin, 7, msg, "see docs/cni.md, Limits")
    path = _socket_path(stdin)
    if path is None:
        return 1, _error(stdin, 7, "agentSocket must be a non-empty string", "agentSocket")
    request = _request(stdin)
    try:
        return _exchange(path, request)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return _unanswered(stdin, f"podwire agent unreachable at {path}: {reason}", str(exc))
    except ValueError as exc:
        return _unanswered(stdin, f"podwire agent at {path} answered garbage", str(exc))


def _unanswered(stdin: bytes, msg: str, details: str) -> tuple[int, bytes]:
    """No answer from the agent: try again later (11), unless stdin is no
    network config at all; then no retry can succeed, and the answer is the
    agent's own for it, a decode failure (6), with why the agent said nothing."""
    if _config(stdin) is None:
        return 1, _error(stdin, 6, "cannot decode the network config on stdin", msg)
    return 1, _error(stdin, 11, msg, details)


def main() -> None:
    code, out = run(sys.stdin.buffer.read())
    sys.stdout.buffer.write(out)
    sys.stdout.buffer.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
