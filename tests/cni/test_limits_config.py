"""The CNI door's size limits are configuration (issue 14): a real agent
started with agent.cni_max_stdin_bytes / agent.cni_max_depth refuses,
through the real shim, a config over them (code 7 / code 6) that the
defaults accept; a bad value stops the agent at start, naming the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from podwire.config import load_config
from podwire.frontends.cni import validate
from tests.fixtures.agent import AgentProcess, netconf
from tests.fixtures.common import unique

pytestmark = pytest.mark.root


def _padded(size: int) -> dict[str, Any]:
    """A config of exactly ``size`` bytes as the shim sends it (json.dumps)."""
    conf = netconf(unique("pwl-"), pad="")
    conf["pad"] = "x" * (size - len(json.dumps(conf)))
    return conf


def _nested(depth: int) -> dict[str, Any]:
    """A config whose JSON nests ``depth`` levels (the config itself is 1)."""
    conf = netconf(unique("pwl-"))
    inner: dict[str, Any] = {}
    conf["deep"] = inner
    for _ in range(depth - 2):
        inner["d"] = {}
        inner = inner["d"]
    return conf


def test_the_defaults_are_todays_constants() -> None:
    agent = load_config(None).agent
    assert agent.cni_max_stdin_bytes == validate.MAX_CONFIG_BYTES == 1 << 20
    assert agent.cni_max_depth == validate.MAX_DEPTH == 64


def test_configured_stdin_and_depth_limits_through_the_shim(
    start_agent: Any, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("[agent]\ncni_max_stdin_bytes = 2048\ncni_max_depth = 8\n")
    agent: AgentProcess = start_agent("--config", str(config))

    def delete(conf: dict[str, Any]) -> Any:
        # DEL of a container that has nothing: succeeds once the config is read.
        return agent.cni("DEL", conf, container_id=unique("pwl", 12))

    ok = delete(_padded(2048))
    assert ok.code == 0, ok.stdout
    over = delete(_padded(2049))
    assert over.error_code == 7, over.stdout
    assert "over 2048 bytes" in over.json["msg"]
    assert "agent.cni_max_stdin_bytes" in over.json["details"]

    assert delete(_nested(8)).code == 0
    deep = delete(_nested(9))
    assert deep.error_code == 6, deep.stdout
    assert "deeper than 8 levels" in deep.json["msg"]
    assert agent.attachments() == []


@pytest.mark.parametrize(
    "line,message",
    [
        ("cni_max_stdin_bytes = 2000000", "less than or equal to 1048576"),
        ("cni_max_stdin_bytes = 0", "greater than or equal to 256"),
        ("cni_max_depth = -3", "greater than or equal to 8"),
    ],
)
def test_a_bad_limit_stops_the_agent_at_start(tmp_path: Path, line: str, message: str) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f"[agent]\n{line}\n")
    key = "agent." + line.split()[0]
    with pytest.raises(Exception) as refused:
        load_config(config)
    assert key in str(refused.value) and message in str(refused.value)
    if "2000000" not in line:
        return  # one real start is enough
    state = tmp_path / "state"
    cmd = [sys.executable, "-m", "podwire.daemon", "--state-dir", str(state)]
    cmd += ["--socket", str(tmp_path / "s.sock"), "--config", str(config)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert key in run.stderr and message in run.stderr, run.stderr
    assert not (tmp_path / "s.sock").exists()
