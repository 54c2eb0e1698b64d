"""Restarts: dockerd (live-restore) and the agent come back to the same
state; traffic keeps flowing and DEL still cleans the backend."""

from __future__ import annotations

import pytest

from tests.fixtures.common import unique
from tests.fixtures.docker import DockerEnv, random_subnets

pytestmark = [pytest.mark.docker, pytest.mark.root, pytest.mark.slow]


def _ping(env: DockerEnv, container: str, address: str) -> None:
    done = env.exec(container, "ping", "-c", "2", "-W", "3", address, check=False)
    assert done.returncode == 0, f"{container} cannot ping {address}:\n{done.stdout}{done.stderr}"


def test_dockerd_and_agent_restarts_keep_everything_working(docker_env: DockerEnv) -> None:
    v4, v6 = random_subnets()
    net = unique("pwn")
    docker_env.create_network(net, v4, v6)
    backend_net = docker_env.backend_network(net)
    c1, c2, c3 = (unique("c") for _ in range(3))
    for c in (c1, c2, c3):
        docker_env.run(c, net)
    before = {c: docker_env.endpoint(c, net) for c in (c1, c2, c3)}
    _ping(docker_env, c1, before[c2]["IPAddress"])

    # dockerd restart: containers live on (live-restore), nothing re-plugged.
    docker_env.dockerd.restart()
    for c in (c1, c2, c3):
        ep = docker_env.endpoint(c, net)
        assert (ep["IPAddress"], ep["MacAddress"]) == (
            before[c]["IPAddress"],
            before[c]["MacAddress"],
        )
    _ping(docker_env, c1, before[c2]["IPAddress"])
    _ping(docker_env, c2, before[c1]["GlobalIPv6Address"])
    docker_env.docker("rm", "-f", c3)
    assert len(docker_env.agent.ports(backend_net.id)) == 2

    # Agent restart: the records and pools are on disk.
    docker_env.agent.restart()
    _ping(docker_env, c1, before[c2]["IPAddress"])
    assert len(docker_env.agent.attachments()) == 2
    c4 = unique("c")
    docker_env.run(c4, net)
    _ping(docker_env, c4, before[c1]["IPAddress"])
    docker_env.docker("network", "disconnect", net, c2)
    docker_env.docker("rm", "-f", c1, c2, c4)
    assert docker_env.agent.ports(backend_net.id) == []
    assert docker_env.agent.attachments() == []
    docker_env.docker("network", "rm", net)


def test_agent_killed_mid_life_then_del_still_cleans(docker_env: DockerEnv) -> None:
    v4, _ = random_subnets()
    net = unique("pwn")
    docker_env.create_network(net, v4)
    backend_net = docker_env.backend_network(net)
    c1 = unique("c")
    docker_env.run(c1, net)
    docker_env.agent.kill()
    docker_env.agent.start()
    docker_env.docker("rm", "-f", c1)
    assert docker_env.agent.ports(backend_net.id) == []
    assert docker_env.agent.attachments() == []
