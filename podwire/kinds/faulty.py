"""Kind ``faulty_bridge``: test-only. veth_bridge, plus a host allocation
and a backend side effect, each hook a fault point.

Registered only when fault injection is on (``PODWIRE_FAULTS`` set; see
podwire.kinds.registry.TEST_KINDS): it is then listed first, so it serves
host nodes and networks with datapath "bridge" in place of veth_bridge. It
behaves like veth_bridge (same driver, bridge lifecycle and names) and
adds what the real network-function kinds will have, so a test can break
ADD and DEL at each of them:

- ``allocate``/``release``: a directory ``<state_dir>/faulty/<attachment
  id>`` (as a vhost-user kind makes its socket directory);
- ``apply_backend``/``undo_backend``: a trunk with the attachment's port as
  parent (as a nested kind changes the VM's port); its port cannot be
  deleted while the trunk exists, so a missed undo shows.

Every hook first calls ``faults.hit("kind.faulty_bridge.<hook>")``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, Literal

from podwire import faults
from podwire.datapath.vif import VethBridge, VifBase
from podwire.errors import NotFound
from podwire.kinds.base import AttachmentRef, BuildContext
from podwire.kinds.veth_bridge import VethBridgeKind
from podwire.model import TrunkCreate

NAME = "faulty_bridge"
TRUNK_NAME_PREFIX = "pw-faulty-"


class FaultyBridge(VethBridge):
    kind: Literal["faulty_bridge"] = "faulty_bridge"  # type: ignore[assignment]


class FaultyBridgeKind(VethBridgeKind):
    name = NAME
    vif_class = FaultyBridge
    datapath_hints = ("bridge",)
    vif_types = (NAME, "veth_bridge", "bridge")
    default_for = ("host",)

    def _hit(self, hook: str) -> None:
        faults.hit(f"kind.{NAME}.{hook}")

    def _dir(self, attachment_id: str) -> Path:
        return self.env.config.state_dir / "faulty" / attachment_id

    def build(self, ctx: BuildContext) -> FaultyBridge:
        self._hit("build")
        plain = super().build(ctx)
        return FaultyBridge(**plain.model_dump(exclude={"kind"}))

    def allocate(self, ref: AttachmentRef, intent: dict[str, Any]) -> dict[str, Any]:
        self._hit("allocate")
        path = self._dir(ref.attachment_id)
        path.mkdir(parents=True, exist_ok=True)
        return {"path": str(path)}

    def release(self, data: Mapping[str, Any]) -> None:
        self._hit("release")
        # From the intent alone when the allocation never got recorded.
        shutil.rmtree(data.get("path") or self._dir(data["attachment_id"]), ignore_errors=True)

    def apply_backend(self, ref: AttachmentRef, vif: VifBase) -> dict[str, Any]:
        self._hit("apply_backend")
        trunk = self.env.backend.create_trunk(
            self.env.ctx,
            TrunkCreate(name=TRUNK_NAME_PREFIX + ref.attachment_id, port_id=ref.port_id),
        )
        return {"trunk_id": trunk.id}

    def undo_backend(self, data: Mapping[str, Any]) -> None:
        self._hit("undo_backend")
        backend, ctx = self.env.backend, self.env.ctx
        trunk_ids = [data["trunk_id"]] if data.get("trunk_id") else []
        if not trunk_ids:  # only intended: found by the attachment's name
            name = TRUNK_NAME_PREFIX + data["attachment_id"]
            trunk_ids = [t.id for t in backend.list_trunks(ctx, {"name": [name]})]
        for trunk_id in trunk_ids:
            with suppress(NotFound):
                backend.delete_trunk(ctx, trunk_id)

    def reconcile(self, recorded: Sequence[VifBase]) -> list[str]:
        self._hit("reconcile")
        return super().reconcile(recorded)
