"""The host side of VM ports on a host with Linux bridges (embedded
backend; docs/nested.md "The embedded backend's host side").

A VM port here is a port bound to this host (``binding:host_id``) whose
``device_owner`` is ``compute:*``, plugged by its hypervisor into a tap
named ``binding:profile.tap_name`` (Neutron's ``tap<id[:11]>`` when not
given). For each one whose tap exists, this loop keeps on the host:

* the tap on its network's bridge, with the VM port's port security (its
  fixed IPs and allowed_address_pairs, in nftables, as a container's veth):
  it follows pair changes, i.e. the containers added and removed inside
  the VM by the nested pair kinds;
* when the port is a trunk parent, per sub-port an access veth pair into
  the sub-port's network bridge with the sub-port's own port security, and
  the tap's tag pop/push (podwire/datapath/trunk.py);
* when the port goes (deleted, unbound, tap gone): all of it, and the tap
  leaves the bridge.

One pass reads the backend three times at most (this host's ports, their
trunks, the sub-ports), compares with what it applied, and acts only on
the difference: revision numbers say what changed. Everything it makes is
written to ``<state_dir>/vm_ports.json`` *before* it is made (the union of
what was and what will be), so after a kill -9 the next start's first pass
works from that record and removes what is no longer wanted; links with
the access pair prefixes that no record holds are removed too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podwire import faults
from podwire.datapath.vif import AddressPair, PortSecurity
from podwire.errors import PodwireError
from podwire.kinds.common import short_name
from podwire.model import Port, PortBinding, PortUpdate

if TYPE_CHECKING:
    from podwire.kinds.veth_bridge import VethBridgeKind

log = logging.getLogger(__name__)

TRUNK_END_PREFIX = "pwtx"  # the access pair's end facing the tap
NET_END_PREFIX = "pwty"  # its end on the sub-port network's bridge
TAP_PROFILE_KEY = "tap_name"
STATE_FILE = "vm_ports.json"
# In the VM port's binding:vif_details: the port's and its trunk's revision
# numbers whose content this host has applied. The agent inside the VM waits
# for it before its ADD returns (podwire/kinds/nested.py: wait_for_host).
HOST_ACK_KEY = "podwire_host_applied"

Entry = dict[str, Any]


def tap_name(port: Port) -> str:
    name = port.binding.profile.get(TAP_PROFILE_KEY)
    return str(name) if name else "tap" + port.id[:11]


def security_of(port: Port) -> dict[str, Any]:
    """The port's security as plain data (kept in the record)."""
    allowed = [AddressPair(ip=f.ip_address, mac=port.mac_address) for f in port.fixed_ips]
    allowed += [
        AddressPair(ip=p.ip_address, mac=p.mac_address or port.mac_address)
        for p in port.allowed_address_pairs
    ]
    sec = PortSecurity(enabled=port.port_security_enabled, allowed=tuple(allowed))
    return sec.model_dump(mode="json")


def _sec(data: dict[str, Any] | None) -> PortSecurity | None:
    return PortSecurity.model_validate(data) if data else None


class VmPorts:
    """The watch loop (a daemon thread of the host agent) and its passes."""

    def __init__(self, kind: VethBridgeKind, period: float, state_dir: Path) -> None:
        self._kind = kind
        self._period = period
        self._state = state_dir / STATE_FILE
        self._applied: dict[str, Entry] = self._read()
        self._networks: dict[str, tuple[int, tuple[str, ...]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._startup = True
        # port id -> (port revision, trunk revision, binding) as last read
        self._read_revs: dict[str, tuple[int, int, PortBinding]] = {}
        # port id -> (port revision, trunk revision) after our own ack write
        self._acked: dict[str, tuple[int, int]] = {}
        # ports whose last pass failed: forced again at the next one
        self._retry: set[str] = set()

    # --- the loop -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="podwire-vm-ports", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except PodwireError as exc:
                log.warning("VM ports: %s", exc.message)
            except Exception:
                log.exception("VM ports: a pass failed")
            self._stop.wait(self._period)

    # --- one pass -------------------------------------------------------------------

    def run_once(self) -> None:
        with self._lock:
            wanted = self._wanted()
            force = self._startup
            if wanted != self._applied or force or self._retry:
                self._apply(wanted, force)
                self._startup = False
            self._ack()

    def _ack(self) -> None:
        """Tell each VM port's agent what this host has applied: one write
        per change of the port or its trunk, conditional on the revision
        read (a 412 means it changed again: the next pass acks that)."""
        env = self._kind.env
        for port_id, (port_rev, trunk_rev, binding) in self._read_revs.items():
            if port_id in self._retry or self._acked.get(port_id) == (port_rev, trunk_rev):
                continue
            details = {**binding.vif_details, HOST_ACK_KEY: {"port": port_rev, "trunk": trunk_rev}}
            update = PortUpdate(binding=binding.model_copy(update={"vif_details": details}))
            try:
                port = env.backend.update_port(env.ctx, port_id, update, if_revision=port_rev)
            except PodwireError as exc:
                log.debug("VM ports: ack of %s at %d: %s", port_id, port_rev, exc.message)
                continue
            self._acked[port_id] = (port.revision_number, trunk_rev)

    def _wanted(self) -> dict[str, Entry]:
        env = self._kind.env
        host = env.config.host_id
        ports = [
            p
            for p in env.backend.list_ports(env.ctx, {"binding:host_id": [host]})
            if p.binding.host_id == host and p.device_owner.startswith("compute:")
        ]
        from podwire.datapath import trunk

        links = set(trunk.links_named(("",))) if ports else set()
        present = {p.id: p for p in ports if tap_name(p) in links}
        trunks = env.backend.list_trunks(env.ctx, {"port_id": list(present)}) if present else []
        sub_ids = [sp.port_id for t in trunks for sp in t.sub_ports]
        subs: dict[str, Port] = {}
        if sub_ids:
            subs = {p.id: p for p in env.backend.list_ports(env.ctx, {"id": sub_ids})}
        wanted: dict[str, Entry] = {}
        trunk_revs = {t.port_id: t.revision_number for t in trunks}
        self._read_revs = {
            p.id: (p.revision_number, trunk_revs.get(p.id, -1), p.binding) for p in present.values()
        }
        for port in present.values():
            entry: Entry = {
                "tap": tap_name(port),
                "network_id": port.network_id,
                "security": security_of(port),
                "subs": {},
            }
            for t in trunks:
                if t.port_id != port.id:
                    continue
                for sp in t.sub_ports:
                    sub = subs.get(sp.port_id)
                    if sub is None:
                        continue
                    entry["subs"][str(sp.segmentation_id)] = {
                        "port_id": sub.id,
                        "network_id": sub.network_id,
                        "trunk_end": short_name(TRUNK_END_PREFIX, sub.id),
                        "net_end": short_name(NET_END_PREFIX, sub.id),
                        "security": security_of(sub),
                    }
            wanted[port.id] = entry
        return wanted

    def _apply(self, wanted: dict[str, Entry], force: bool) -> None:
        """Make the host match ``wanted``. One VM port failing does not stop
        the others: it stays recorded as the union and is retried (forced)
        at the next pass, and is not acknowledged meanwhile."""
        # The record first holds everything that is or will be on the host
        # (a sub-port displaced from its VLAN id stays, under another key).
        union = {**self._applied}
        for port_id, entry in wanted.items():
            subs = dict(entry["subs"])
            for vid, sub in (union.get(port_id) or {}).get("subs", {}).items():
                if subs.get(vid, sub)["port_id"] != sub["port_id"]:
                    vid = f"{vid}/{sub['port_id']}"
                subs.setdefault(vid, sub)
            union[port_id] = {**entry, "subs": subs}
        self._write(union)
        failed: set[str] = set()
        for port_id, old in self._applied.items():
            if port_id not in wanted:
                try:
                    self._remove(old)
                except PodwireError as exc:
                    log.warning("VM ports: removing port %s: %s", port_id, exc.message)
                    failed.add(port_id)
        for port_id, entry in wanted.items():
            try:
                self._update(self._applied.get(port_id), entry, force or port_id in self._retry)
            except PodwireError as exc:
                log.warning("VM ports: port %s: %s", port_id, exc.message)
                failed.add(port_id)
        if force and not failed:
            self._sweep_links(wanted)
        self._applied = {
            port_id: union[port_id] if port_id in failed else entry
            for port_id, entry in {**union, **wanted}.items()
            if port_id in wanted or port_id in failed
        }
        self._retry = failed
        self._write(self._applied)

    def _update(self, old: Entry | None, new: Entry, force: bool) -> None:
        from podwire.datapath import trunk

        tap = new["tap"]
        driver = self._kind.bridge_driver()
        old_subs: dict[str, Entry] = (old or {}).get("subs", {})
        # Sub-ports gone (or a VLAN id now another sub-port's): their pieces
        # go first. A sub-port whose pairs changed keeps its pair (below).
        for vid, sub in old_subs.items():
            if new["subs"].get(vid, {}).get("port_id") != sub["port_id"]:
                self._remove_sub(sub)
        old_sec = _sec((old or {}).get("security"))
        new_sec = _sec(new["security"])
        if force or old_sec != new_sec:
            driver.portsec.change_port(tap, old_sec, new_sec)
        bridge = self._kind.network_bridge(new["network_id"])
        tap_index = trunk.link_index(tap)
        if tap_index is None:
            return
        with self._kind.bridges.using(bridge):
            index = self._ensure_bridge(new["network_id"], bridge)
            if trunk.master_of(tap) != index:
                trunk.attach(tap, index)
        made = False
        for vid, sub in new["subs"].items():
            if not force and old_subs.get(vid) == sub:
                continue
            sub_bridge = self._kind.network_bridge(sub["network_id"])
            before = old_subs.get(vid)
            kept = before is not None and before["port_id"] == sub["port_id"]
            with self._kind.bridges.using(sub_bridge):
                index = self._ensure_bridge(sub["network_id"], sub_bridge)
                mtu = self._networks[sub["network_id"]][0]
                # Security on the network end before it can carry a frame;
                # a kept sub-port moves from its old pairs in one step.
                driver.portsec.change_port(
                    sub["net_end"],
                    _sec(before["security"]) if kept and before else None,
                    _sec(sub["security"]),
                )
                trunk.ensure_access(
                    sub["trunk_end"], sub["net_end"], index, mtu, int(vid), tap_index
                )
            faults.hit("kind.veth_bridge.trunk_access")
            made = True
        if made or force or set(old_subs) != set(new["subs"]):
            trunk.set_tap_vlans(
                tap, {int(vid): sub["trunk_end"] for vid, sub in new["subs"].items()}
            )

    def _remove_sub(self, sub: Entry) -> None:
        """The pair goes first (then nothing passes), then its rules."""
        from podwire.datapath import trunk

        trunk.delete(sub["trunk_end"])
        self._kind.bridge_driver().portsec.change_port(sub["net_end"], _sec(sub["security"]), None)

    def _remove(self, old: Entry) -> None:
        """The VM port is gone from this host: its sub-ports' pieces, the
        tap's program and security; the tap leaves the bridge (a tap of no
        port must not reach a network unchecked)."""
        from podwire.datapath import trunk

        for sub in old.get("subs", {}).values():
            self._remove_sub(sub)
        trunk.set_tap_vlans(old["tap"], {})
        trunk.attach(old["tap"], None)
        self._kind.bridge_driver().portsec.change_port(old["tap"], _sec(old["security"]), None)

    def _sweep_links(self, wanted: dict[str, Entry]) -> None:
        """Access pairs on the host that no wanted entry holds (a crash
        between making one and recording it cannot happen: the record is
        written first; this catches a lost or removed record)."""
        from podwire.datapath import trunk

        keep = {
            sub[key]
            for entry in wanted.values()
            for sub in entry["subs"].values()
            for key in ("trunk_end", "net_end")
        }
        for name in trunk.links_named((TRUNK_END_PREFIX, NET_END_PREFIX)):
            if name not in keep:
                trunk.delete(name)
                log.info("VM ports: removed orphan %s", name)

    def _ensure_bridge(self, network_id: str, bridge: str) -> int:
        env = self._kind.env
        if network_id not in self._networks:
            network = env.backend.get_network(env.ctx, network_id)
            gateways = tuple(
                f"{s.gateway_ip}/{ipaddress.ip_network(s.cidr).prefixlen}"
                for s in env.backend.list_subnets(env.ctx, {"network_id": [network_id]})
                if s.gateway_ip
            )
            self._networks[network_id] = (network.mtu, gateways)
        mtu, gateways = self._networks[network_id]
        return self._kind.bridge_driver().ensure_bridge(bridge, mtu, gateways)

    # --- the record -------------------------------------------------------------------

    def _read(self) -> dict[str, Entry]:
        try:
            data = json.loads(self._state.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            log.warning("VM ports: unreadable record %s, starting from the host", self._state)
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, Entry]) -> None:
        tmp = self._state.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self._state)

    def snapshot(self) -> dict[str, Entry]:
        with contextlib.suppress(Exception), self._lock:
            return json.loads(json.dumps(self._applied))
        return {}
