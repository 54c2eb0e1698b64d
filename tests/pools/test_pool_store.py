"""The pools' store and configuration: pure logic, no backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from podwire.agent.pools.store import PoolSpec, PoolStore
from podwire.config import load_config
from podwire.errors import InvalidInput


def test_transitions_are_conditional_and_durable(tmp_path: Path) -> None:
    store = PoolStore(tmp_path / "pools.db")
    store.put_pool(PoolSpec("p1", "net", "proj", ("sg",), "veth_bridge"))
    store.add("e1", "p1", 1)
    store.add("e2", "p1", 2)
    assert store.take_ready("p1", 1) is None  # creating is not ready
    assert store.move("e1", "ready", only_from=("creating",), port_id="port1", groups=["b", "a"])
    assert not store.move("e1", "ready", only_from=("creating",))  # already moved
    store.move("e2", "ready", port_id="port2")
    taken = store.take_ready("p1", 1)  # only its generation's
    assert taken is not None and (taken.id, taken.state, taken.port_id) == ("e1", "taken", "port1")
    assert store.take_ready("p1", 1) is None
    # A drain's delete of a "ready" entry that was taken meanwhile does not move it.
    assert not store.move("e1", "deleting", only_from=("ready",))
    store.close()

    again = PoolStore(tmp_path / "pools.db")
    assert again.pools() == [PoolSpec("p1", "net", "proj", ("sg",), "veth_bridge")]
    entry = again.by_port("port1")
    assert entry is not None and entry.state == "taken" and entry.groups == ("a", "b")
    assert again.counts() == {("p1", "taken"): 1, ("p1", "ready"): 1}
    again.remove("e1")
    again.drop_pool("p1")
    assert again.pools() == [] and [e.id for e in again.entries()] == ["e2"]
    again.close()


def test_pool_config_defaults_off_and_refuses_min_above_max(tmp_path: Path) -> None:
    config = load_config(None)
    assert config.pools.enabled is False
    path = tmp_path / "agent.toml"
    path.write_text("[pools]\nenabled = true\nmin = 5\nmax = 2\n")
    with pytest.raises(InvalidInput, match="min"):
        load_config(path)
    path.write_text("[pools]\nenabled = true\n[pools.overrides.web]\nmin = 9\nmax = 3\n")
    with pytest.raises(InvalidInput):
        load_config(path)
    path.write_text("[pools]\nenabled = true\n[pools.overrides.web]\nmin = 9\nmax = 12\n")
    assert load_config(path).pools.overrides["web"].max == 12
