"""Hostile and malformed CNI requests, at the door's parser (pure logic, no
agent): every part of a request is checked by type before anything is done,
and a wrong value is the right CNI code naming the key, never read as
"absent" (issue 14, classes 2-6). The same requests against a real agent,
with the state checked after each, are in test_hostile_agent.py.
"""

from __future__ import annotations

import base64
import json
import os
import random
from typing import Any

import pytest

from podwire.config import Config
from podwire.datapath.netlink.netns import Netns, NetnsError
from podwire.frontends.cni import validate
from podwire.frontends.cni.errors import CniError
from podwire.frontends.cni.handler import handle, oversized, parse

WRONG_TYPES: list[Any] = [[], {}, 0, 1, False, True, "", 1.5, [""], {"a": 1}]


def _headers(encoded: bool = True, **env: str | bytes) -> dict[str, str]:
    out = {"x-cni-encoding": "base64"} if encoded else {}
    for key, value in env.items():
        raw = value if isinstance(value, bytes) else value.encode()
        out["x-cni-" + key.lower()] = base64.b64encode(raw).decode() if encoded else str(value)
    return out


def _env(command: str = "ADD", **over: str | bytes) -> dict[str, str]:
    env: dict[str, str | bytes] = {
        "command": command,
        "containerid": "c1",
        "netns": "/proc/self/ns/net",
        "ifname": "eth0",
        "path": "/opt/cni/bin",
    }
    env.update(over)
    return _headers(**env)


def _conf(**extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "n", "type": "podwire", **extra}


def _code(headers: dict[str, str], body: bytes | dict[str, Any]) -> tuple[int, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(CniError) as info:
        parse(headers, raw)
    return info.value.code, info.value.details


# --- class 3: wrong types are 7 naming the key ---------------------------------------


@pytest.mark.parametrize("value", WRONG_TYPES[:6])
def test_gc_keep_list_of_a_wrong_type_is_7_not_keep_nothing(value: Any) -> None:
    headers = _env("GC")
    for key in ("cni.dev/valid-attachments", "cni.dev/attachments"):
        if isinstance(value, list):
            continue  # [] is a valid (empty) list; its entries are checked below
        assert _code(headers, _conf(**{key: value})) == (7, key)
    for entry in ({}, {"containerID": "c"}, {"ifname": "eth0"}, {"containerID": 1, "ifname": "e"}):
        code, details = _code(headers, _conf(**{"cni.dev/valid-attachments": [entry]}))
        assert code == 7 and details.startswith("cni.dev/valid-attachments[0]"), details


@pytest.mark.parametrize("value", [[], {}, 0, False, "", 1.5])
@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_network_name_type_and_socket_of_a_wrong_type_are_7(command: str, value: Any) -> None:
    headers = _env(command)
    for key in ("network", "name", "type", "agentSocket"):
        assert _code(headers, _conf(**{key: value})) == (7, key)


@pytest.mark.parametrize("key", ["runtimeConfig", "args"])
@pytest.mark.parametrize("value", ["x", 1, [], True])
def test_runtime_config_and_args_must_be_objects(key: str, value: Any) -> None:
    assert _code(_env(), _conf(**{key: value})) == (7, key)


def test_nested_hints_are_checked_by_type() -> None:
    cases = {
        "runtimeConfig.mac": {"runtimeConfig": {"mac": 5}},
        "runtimeConfig.ips": {"runtimeConfig": {"ips": "198.18.0.5"}},
        "runtimeConfig.ips[0]": {"runtimeConfig": {"ips": ["nope"]}},
        "args.cni": {"args": {"cni": []}},
        "args.cni.mac": {"args": {"cni": {"mac": "aa:bb"}}},
        "args.cni.ips[1]": {"args": {"cni": {"ips": ["198.18.0.5", 7]}}},
    }
    for key, extra in cases.items():
        assert _code(_env(), _conf(**extra)) == (7, key)


def test_cni_args_and_path_are_checked() -> None:
    for args in ("IP=", "IP=nope", "MAC=", "MAC=zz:zz:zz:zz:zz:zz", "IP=198.18.0.1;IP=198.18.0.2"):
        assert _code(_env(args=args), _conf())[0] == 4, args
    assert _code(_env(args="IgnoreUnknown=maybe;X=1"), _conf())[0] == 4
    for command in ("ADD", "DEL", "CHECK", "GC", "STATUS"):
        assert _code(_env(command, path=""), _conf())[0] == 4
        headers = {k: v for k, v in _env(command).items() if k != "x-cni-path"}
        assert _code(headers, _conf())[0] == 4


# --- class 4: the transport carries bytes exactly -------------------------------------


@pytest.mark.parametrize(
    "var,value",
    [
        ("command", "ADD "),
        ("command", " ADD"),
        ("command", "ADD\n"),
        ("containerid", "c1 "),
        ("ifname", "eth0 "),
        ("netns", "/proc/self/ns/net   "),
        ("netns", b"/proc/self/ns/n\xe9t"),
    ],
)
def test_spaces_and_bytes_are_not_stripped_or_re_decoded(var: str, value: str | bytes) -> None:
    assert _code(_env(**{var: value}), _conf())[0] == 4


def test_netns_bytes_arrive_as_the_os_path() -> None:
    raw = b"/var/run/netns/pw14-caf\xe9"
    env = validate.decode_env(_headers(netns=raw), {"CNI_NETNS": "x-cni-netns"})
    assert os.fsencode(env["CNI_NETNS"]) == raw
    with pytest.raises(CniError) as info:
        validate.decode_env(
            {"x-cni-encoding": "base64", "x-cni-netns": "%%%"}, {"N": "x-cni-netns"}
        )
    assert info.value.code == 4
    with pytest.raises(CniError):
        validate.decode_env(_headers(netns=b"/a\0b"), {"CNI_NETNS": "x-cni-netns"})


# --- classes 1 and 5: netns proven, answers ------------------------------------------


def test_a_fifo_or_other_file_is_never_a_netns(tmp_path: Any) -> None:
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    for path in (str(fifo), "/proc/self/ns/mnt", "/dev/null", str(tmp_path), "relative/x"):
        for command in ("ADD", "CHECK", "DEL"):
            assert _code(_env(command, netns=path), _conf())[0] == 4, (command, path)
    # Nor does the data path's namespace opener block on one (a race after
    # the door's check): it refuses it at once.
    with pytest.raises(NetnsError):
        Netns(str(fifo))
    # DEL of a namespace already gone is fine (the spec's rule).
    assert parse(_env("DEL", netns=str(tmp_path / "gone")), json.dumps(_conf()).encode())


def test_decode_errors_are_6() -> None:
    deep = b'{"cniVersion": "1.1.0", "name": "n", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert _code(_env(), deep)[0] == 6
    just_over = {"x": json.loads("[" * validate.MAX_DEPTH + "]" * validate.MAX_DEPTH)}
    assert _code(_env(), _conf(**just_over))[0] == 6
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        body = b'{"cniVersion": "1.1.0", "name": "n", "mtu": ' + constant + b"}"
        assert _code(_env(), body)[0] == 6


@pytest.mark.parametrize(
    "prev",
    [
        "x",
        {"dns": {"nameservers": "abc"}},
        {"dns": {"nameservers": ["abc"]}},
        {"dns": []},
        {"ips": [{"address": "198.18.0.1"}]},
        {"ips": [{"address": "198.18.0.1/24", "interface": 3}]},
        {"interfaces": [{"name": 1}]},
        {"interfaces": [{"name": "eth0", "mtu": -1}]},
        {"routes": [{"dst": "nope"}]},
        {"routes": "0.0.0.0/0"},
    ],
)
@pytest.mark.parametrize("command", ["ADD", "CHECK"])
def test_garbage_prev_result_is_6_on_add_and_check(command: str, prev: Any) -> None:
    assert _code(_env(command), _conf(prevResult=prev))[0] == 6


def test_oversized_stdin_is_refused_by_size_alone() -> None:
    assert oversized({}, validate.MAX_CONFIG_BYTES) is None
    answer = oversized({}, validate.MAX_CONFIG_BYTES + 1)
    assert answer is not None and json.loads(answer[1])["code"] == 7


class _BrokenAgent:
    """An agent whose every call fails with a bug (not a podwire error)."""

    config = Config()  # the limits the door reads before any call

    def call(self, fn: Any, req: Any) -> Any:
        raise ZeroDivisionError("secret internals")

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


def test_an_unexpected_error_is_999_without_python_text() -> None:
    body = json.dumps(_conf()).encode()
    code, out = handle(_BrokenAgent(), _env("ADD"), body)  # type: ignore[arg-type]
    answer = json.loads(out)
    assert code == 1 and answer["code"] == 999
    assert "ZeroDivision" not in out.decode() and "secret" not in out.decode()
    assert "incident" in answer["details"]


# --- fuzz: whatever the request, a CNI error and never an exception ------------------

_KEYS = [
    "name",
    "type",
    "network",
    "networks",
    "agentSocket",
    "runtimeConfig",
    "args",
    "prevResult",
    "cni.dev/valid-attachments",
    "default-route",
    "cniVersion",
]


def _garbage(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 3 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice([0, -1, 2**70, 1.5])
    if pick == 3:
        return rng.choice(["", " ", "eth0", "198.18.0.1/24", "aa:bb:cc:dd:ee:ff", "\udcff"])
    if pick == 4:
        return "x" * rng.randrange(300)
    if pick == 5:
        return rng.choice(["ADD", "1.1.0", "0.4.0", "a/b"])
    if pick in (6, 7):
        return [_garbage(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice([*_KEYS, "mac", "ips", "cni"]): _garbage(rng, depth + 1) for _ in range(3)}


def test_fuzzed_configs_get_a_cni_code_never_an_exception() -> None:
    rng = random.Random(1414)
    for _ in range(3000):
        config: dict[str, Any] = {"cniVersion": "1.1.0", "name": "n"}
        for key in rng.sample(_KEYS, rng.randrange(1, 4)):
            config[key] = _garbage(rng)
        command = rng.choice(["ADD", "DEL", "CHECK", "GC", "STATUS"])
        body = json.dumps(config, ensure_ascii=False).encode("utf-8", "surrogatepass")
        try:
            parse(_env(command), body)
        except CniError as exc:
            assert exc.code in (1, 4, 6, 7), (config, exc.code, exc.msg)
