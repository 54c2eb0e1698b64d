"""The door's own durable records: Docker's IPAM pools and Docker networks.

They hold what only libnetwork means (a pool's address space, its reference
count, which Docker network id stands for which backend network and whether
podwire created it), so they stay with the door rather than in the backend;
docs/docker.md says why. Endpoints are not here: they are the agent's
attachment records (frontend "docker", Docker's state in frontend_state).

Small JSON files under ``state_dir/docker/{pools,networks}``, written
atomically (rename), so a crash leaves either the old or the new record,
never half of one. ``reconcile`` (networks.py) makes them agree with the
backend when the agent starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from podwire.errors import NotFound


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PoolRecord(_Record):
    id: str
    address_space: str
    cidr: str
    sub_pool: str | None = None
    v6: bool = False
    refs: int = 1
    # Set by CreateNetwork, cleared by DeleteNetwork.
    docker_network_id: str | None = None
    network_id: str | None = None
    subnet_id: str | None = None

    def unlink(self) -> None:
        self.docker_network_id = self.network_id = self.subnet_id = None


class NetworkRecord(_Record):
    docker_network_id: str
    # None only while "creating", before the backend has answered.
    network_id: str | None
    # True: podwire created the backend network and deletes it with the
    # Docker network. False: adopted, left as found.
    created: bool
    # "creating": written before the backend network is created, so that a
    # crash inside CreateNetwork is undone at start (networks.reconcile);
    # "ready" once the network, its subnets and the pools' links are there.
    state: Literal["creating", "ready"] = "ready"


class JsonDir:
    """One JSON file per record, written atomically."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path

    def _file(self, key: str) -> Path:
        return self.path / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self._file(key).read_text())
            return data
        except FileNotFoundError:
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        target = self._file(key)
        tmp = target.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        with open(tmp, "w") as fh:
            json.dump(value, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)

    def delete(self, key: str) -> None:
        with suppress(FileNotFoundError):
            self._file(key).unlink()

    def all(self) -> list[dict[str, Any]]:
        out = []
        for f in sorted(self.path.glob("*.json")):
            with suppress(FileNotFoundError, ValueError):
                out.append(json.loads(f.read_text()))
        return out


class DockerRecords:
    """Pools and networks. ``lock`` is held by whoever changes them together
    (link, unlink, reference counts)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._pools = JsonDir(root / "pools")
        self._networks = JsonDir(root / "networks")
        self.lock = threading.RLock()

    # --- pools -------------------------------------------------------------------

    def pool(self, pool_id: str) -> PoolRecord | None:
        data = self._pools.get(pool_id)
        return PoolRecord.model_validate(data) if data else None

    def require_pool(self, pool_id: str) -> PoolRecord:
        pool = self.pool(pool_id)
        if pool is None:
            raise NotFound(
                f"pool {pool_id!r} is not known to podwire IPAM", kind="pool", object_id=pool_id
            )
        return pool

    def put_pool(self, pool: PoolRecord) -> None:
        self._pools.put(pool.id, pool.model_dump())

    def delete_pool(self, pool_id: str) -> None:
        self._pools.delete(pool_id)

    def pools(self) -> list[PoolRecord]:
        return [PoolRecord.model_validate(d) for d in self._pools.all()]

    # --- networks ----------------------------------------------------------------

    def network(self, docker_network_id: str) -> NetworkRecord | None:
        data = self._networks.get(docker_network_id)
        return NetworkRecord.model_validate(data) if data else None

    def backend_network_id(self, docker_network_id: str) -> str:
        """The backend network of a Docker network that CreateNetwork finished."""
        record = self.network(docker_network_id)
        if record is None or record.state != "ready" or record.network_id is None:
            raise NotFound(
                f"docker network {docker_network_id} is not a podwire network (not created "
                "through this agent)",
                kind="network",
                object_id=docker_network_id,
            )
        return record.network_id

    def put_network(self, record: NetworkRecord) -> None:
        self._networks.put(record.docker_network_id, record.model_dump())

    def delete_network(self, docker_network_id: str) -> None:
        self._networks.delete(docker_network_id)

    def networks(self) -> list[NetworkRecord]:
        return [NetworkRecord.model_validate(d) for d in self._networks.all()]
