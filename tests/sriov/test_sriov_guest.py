"""SR-IOV on real drivers: the igb PF and igbvf VF drivers of a Linux guest
on QEMU 10's emulated Intel 82576 (tests/fixtures/qemu.py), two PFs on two
NUMA nodes, the agent and the CNI shim running inside the guest.

One guest and one agent for the whole module (Python over 9p under TCG is
slow: importing the agent costs 30-60 s); every case is driven through them;
the crash walk's agents are forked from a process that imported the agent's
modules once (tests/sriov/zygote.py), each a fresh agent process. Every case
leaves every VF at its baseline (``snapshot()`` equal to the one
taken before the first ADD), which is itself asserted.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import missing
from tests.fixtures.qemu import Guest

pytestmark = [pytest.mark.vm, pytest.mark.root]

# This checkout, seen at the same path in the guest (the host's root over 9p).
PROJECT = str(Path(__file__).resolve().parents[2])
RUN = "/run/pw10"
SOCK = f"{RUN}/run/agent.sock"
STATE = f"{RUN}/state"
DEVINFO = f"{RUN}/devinfo"
PF0 = "0000:21:00.0"  # NUMA node 0 (behind pxb0)
PF1 = "0000:41:00.0"  # NUMA node 1 (behind pxb1)
NUMVFS = 4

# Docker's remote-driver discovery dir, on the guest's own /run (a tmpfs):
# the driver name is the socket's name.
DOCKER_PLUGIN = "pws"
DOCKERD = f"{RUN}/dockerd"
DOCKER_IMAGE = "pws-busybox:local"

AGENT_TOML = f"""
[agent]
device_info_dir = "{DEVINFO}"
serve_docker = true
docker_plugin_socket = "/run/docker/plugins/{DOCKER_PLUGIN}.sock"
[sriov]
# physnet0: every VF of PF0 and VFs 0-2 of PF1; tiny: VF 3 of PF1 alone.
physical_networks = {{ physnet0 = ["{PF0}", "{PF1}#0-2"], tiny = ["{PF1}#3"] }}
"""

# Every exec costs ~0.1 s in the guest (TCG, binaries over 9p): a handful.
SNAPSHOT = """
echo "== links"
ip -j link show {pf0}; echo; ip -j link show {pf1}; echo
echo "== virtfn"
ls -l /sys/bus/pci/devices/{PF0}/ /sys/bus/pci/devices/{PF1}/
echo "== drivers"
ls /sys/bus/pci/drivers/igbvf /sys/bus/pci/drivers/vfio-pci 2>/dev/null
echo "== nets"
ls -d /sys/bus/pci/devices/*/net/* 2>/dev/null
"""


@dataclass(repr=False)
class Lab:
    guest: Guest
    project: str = PROJECT
    agent_starts: int = 0
    # Every VF as it was before the first ADD (snapshot()).
    baseline: dict[str, Any] = field(default_factory=dict)
    _pf_names: dict[str, str] = field(default_factory=dict)
    made_netns: set[str] = field(default_factory=set)

    # --- the agent in the guest --------------------------------------------------

    def start_zygote(self) -> None:
        """The process that forks agents (tests/sriov/zygote.py): imports
        once, so the crash walk's many agent starts cost no import each."""
        self.guest.sh(
            f"""
            mkfifo {RUN}/zygote.fifo
            cd {self.project}
            setsid .venv/bin/python tests/sriov/zygote.py {RUN}/zygote.fifo \
              > {RUN}/zygote.log 2>&1 < /dev/null &
            echo $! > {RUN}/zygote.pid
            """
        )

    def start_agent(self, plan: list[dict[str, Any]] | None = None) -> None:
        """Start an agent (with a fault plan, if given) and wait until it
        serves (its start-up reconcile has run by then)."""
        request = {
            "argv": ["--config", f"{RUN}/agent.toml", "--state-dir", STATE, "--socket", SOCK],
            "env": {"PODWIRE_FAULTS": json.dumps(plan)} if plan else {},
            "log": f"{RUN}/agent.log",
            "pidfile": f"{RUN}/agent.pid",
        }
        self.guest.sh(
            f"""
            rm -f {RUN}/agent.pid
            echo '{json.dumps(request)}' > {RUN}/zygote.fifo
            i=0
            while [ ! -f {RUN}/agent.pid ]; do
                kill -0 $(cat {RUN}/zygote.pid) || {{ cat {RUN}/zygote.log; exit 1; }}
                sleep 0.2
            done
            i=0
            while ! curl -sf --unix-socket {SOCK} http://x/v1/attachments > /dev/null; do
                kill -0 $(cat {RUN}/agent.pid) || {{ tail -30 {RUN}/agent.log; exit 1; }}
                sleep 0.5; i=$((i+1)); [ $i -lt 600 ] || exit 1
            done
            """,
            timeout=400,
        )
        self.agent_starts += 1

    def start_dockerd(self) -> None:
        """A private dockerd in the guest (RECIPES "dockerd": no iptables, no
        bridge, vfs storage; data and exec roots on the guest's tmpfs; it
        starts its own containerd), cgroup2 mounted for runc, and a busybox
        image imported from a root filesystem made of the host's busybox (no
        registry: the guest has no route out). In the background: its start
        (~40 s under TCG) overlaps the agent's; ``docker_ready`` waits."""
        applets = " ".join(("sh", "ip", "ping", "sleep", "cat"))
        self.guest.sh(
            f"""
            set -e
            mountpoint -q /sys/fs/cgroup || mount -t cgroup2 none /sys/fs/cgroup
            mkdir -p {DOCKERD}/data {DOCKERD}/exec {DOCKERD}/client
            R={DOCKERD}/rootfs
            mkdir -p $R/bin $R/proc $R/sys $R/dev $R/etc $R/tmp
            cp /bin/busybox $R/bin/
            for a in {applets}; do ln -sf busybox $R/bin/$a; done
            setsid dockerd --iptables=false --ip6tables=false --bridge=none \
              --storage-driver=vfs --data-root {DOCKERD}/data --exec-root {DOCKERD}/exec \
              -H unix://{DOCKERD}/docker.sock --pidfile {DOCKERD}/docker.pid \
              > {DOCKERD}/dockerd.log 2>&1 < /dev/null &
            setsid sh -c '
                i=0
                until {self.docker_cmd} version > /dev/null 2>&1; do
                    sleep 0.5; i=$((i+1)); [ $i -lt 600 ] || exit 1
                done
                tar -C {DOCKERD}/rootfs -c . | {self.docker_cmd} import - {DOCKER_IMAGE} \
                  && touch {DOCKERD}/ready
            ' > {DOCKERD}/import.log 2>&1 < /dev/null &
            """
        )

    def docker_ready(self) -> None:
        self.guest.sh(
            f"""
            i=0
            until [ -f {DOCKERD}/ready ]; do
                sleep 0.5; i=$((i+1))
                [ $i -lt 360 ] || {{ tail -20 {DOCKERD}/dockerd.log {DOCKERD}/import.log; exit 1; }}
            done
            """,
            timeout=200,
        )

    @property
    def docker_cmd(self) -> str:
        return (
            f"env DOCKER_HOST=unix://{DOCKERD}/docker.sock DOCKER_CONFIG={DOCKERD}/client "
            "/usr/bin/docker"
        )

    def docker(self, args: str, check: bool = True) -> str:
        return self.guest.sh(f"{self.docker_cmd} {args}", timeout=180, check=check).strip()

    def stop_dockerd(self) -> None:
        self.guest.run(
            f"""
            {self.docker_cmd} rm -f $({self.docker_cmd} ps -aq) > /dev/null 2>&1
            pid=$(cat {DOCKERD}/docker.pid 2>/dev/null) && kill $pid
            i=0; while [ -n "$pid" ] && kill -0 $pid 2>/dev/null && [ $i -lt 60 ]; do
                sleep 0.5; i=$((i+1)); done
            [ -n "$pid" ] && kill -9 $pid 2>/dev/null
            grep -o " {DOCKERD}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l
            rm -rf {DOCKERD}
            """,
            timeout=120,
        )

    def agent_alive(self) -> bool:
        rc, _ = self.guest.run(f"kill -0 $(cat {RUN}/agent.pid)")
        return rc == 0

    def kill_agent(self) -> None:
        self.guest.sh(f"kill -9 $(cat {RUN}/agent.pid) 2>/dev/null; sleep 0.2; true")

    def log(self) -> str:
        return self.guest.sh(f"tail -40 {RUN}/agent.log", check=False)

    # --- the API, CNI, netns ---------------------------------------------------------

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = f"-d '{json.dumps(body)}'" if body is not None else ""
        out = self.guest.sh(
            f"curl -s --unix-socket {SOCK} -X {method} -H 'Content-Type: application/json' "
            f"{data} http://x{path}"
        )
        return json.loads(out) if out.strip() else None

    def network(self, name: str, **fields: Any) -> str:
        found = self.api("GET", f"/v2.0/networks?name={name}")["networks"]
        if found:
            return str(found[0]["id"])
        net = self.api("POST", "/v2.0/networks", {"network": {"name": name, **fields}})
        return str(net["network"]["id"])

    def subnet(self, network_id: str, cidr: str) -> None:
        self.api(
            "POST",
            "/v2.0/subnets",
            {"subnet": {"network_id": network_id, "cidr": cidr, "ip_version": 4}},
        )

    def netns(self, name: str) -> str:
        self.guest.sh(f"ip netns add {name}")
        self.made_netns.add(name)
        return f"/run/netns/{name}"

    def del_netns(self, name: str) -> None:
        self.guest.sh(f"ip netns del {name} 2>/dev/null; true")
        self.made_netns.discard(name)

    def cni(
        self,
        command: str,
        container: str,
        config: dict[str, Any],
        *,
        netns: str | None = None,
        ifname: str = "net1",
        args: str | None = None,
    ) -> tuple[int, Any]:
        conf = {"cniVersion": "1.1.0", "type": "podwire", **config}
        env = {
            "PODWIRE_AGENT_SOCKET": SOCK,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container,
            "CNI_NETNS": netns or f"/run/netns/{container}",
            "CNI_IFNAME": ifname,
            "CNI_PATH": "/opt/cni/bin",
        }
        if args:
            env["CNI_ARGS"] = args
        env_text = " ".join(f"{k}='{v}'" for k, v in env.items())
        rc, out = self.guest.run(
            f"cd {self.project}; echo '{json.dumps(conf)}' | env {env_text} shim/podwire-cni",
            timeout=180,
        )
        try:
            body = json.loads(out) if out.strip() else None
        except json.JSONDecodeError:
            body = out
        return rc, body

    # --- what the VFs look like --------------------------------------------------------

    def pf_names(self) -> dict[str, str]:
        """PF PCI address -> its netdev name (stable for the guest's life)."""
        if not self._pf_names:
            out = self.guest.sh(f"ls /sys/bus/pci/devices/{PF0}/net /sys/bus/pci/devices/{PF1}/net")
            current = None
            for line in out.splitlines():
                if line.endswith("/net:"):
                    current = line.split("/")[-2]
                elif line.strip() and current:
                    self._pf_names[current] = line.strip()
        return self._pf_names

    def snapshot(self) -> dict[str, Any]:
        """Per VF: its PF's view (MAC, VLAN, spoofchk, trust, rates) and its
        driver and netdev name in the host namespace."""
        names = self.pf_names()
        out = self.guest.sh(SNAPSHOT.format(pf0=names[PF0], pf1=names[PF1], PF0=PF0, PF1=PF1))
        sections: dict[str, list[str]] = {}
        part = ""
        for line in out.splitlines():
            if line.startswith("== "):
                part = line[3:]
            elif line.strip():
                sections.setdefault(part, []).append(line)
        by_name = {name: pci for pci, name in names.items()}
        pf_view: dict[str, dict[int, Any]] = {}
        for line in sections.get("links", []):
            link = json.loads(line)[0]
            pf_view[by_name[link["ifname"]]] = {
                vf["vf"]: {
                    "mac": vf.get("address"),
                    "vlan": ((vf.get("vlan_list") or [{}])[0] or {}).get("vlan", 0),
                    "spoofchk": vf.get("spoofchk"),
                    "trust": vf.get("trust"),
                    "max_tx_rate": (vf.get("rate") or {}).get("max_tx", 0),
                    "min_tx_rate": (vf.get("rate") or {}).get("min_tx", 0),
                }
                for vf in link.get("vfinfo_list", [])
            }
        vf_of: dict[str, tuple[str, int]] = {}
        pf = ""
        for line in sections.get("virtfn", []):
            if line.endswith(":"):
                pf = line.rstrip(":").rstrip("/").split("/")[-1]
            elif " virtfn" in line and " -> " in line:
                name, target = line.split(" -> ")
                vf_of[target.split("/")[-1]] = (pf, int(name.split("virtfn")[-1]))
        driver_of: dict[str, str] = {}
        driver = ""
        for line in sections.get("drivers", []):
            if line.endswith(":"):
                driver = line.rstrip(":").split("/")[-1]
            else:
                for word in line.split():
                    driver_of[word] = driver
        netdev_of = {}
        for line in sections.get("nets", []):
            parts = line.split("/")
            netdev_of[parts[-3]] = parts[-1]
        return {
            pci: {
                **pf_view[pf][index],
                "driver": driver_of.get(pci),
                "netdev": netdev_of.get(pci),
            }
            for pci, (pf, index) in vf_of.items()
        }


def _wait(predicate: Any, timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def lab(igb_guest: Guest) -> Iterator[Lab]:
    if not (Path(PROJECT) / "shim" / "podwire-cni").exists():
        missing("the compiled CNI shim (make shim)")
    guest = igb_guest
    guest.sh(
        f"""
        set -e
        for pf in {PF0} {PF1}; do
            echo {NUMVFS} > /sys/bus/pci/devices/$pf/sriov_numvfs
            # VFs of one PF reach each other through its switch only with its link up.
            ip link set $(ls /sys/bus/pci/devices/$pf/net) up
        done
        mkdir -p {RUN}/state {RUN}/run {DEVINFO}
        cat > {RUN}/agent.toml <<'EOF'
{AGENT_TOML}
EOF
        """
    )
    lab = Lab(guest)
    lab.baseline = lab.snapshot()
    lab.start_zygote()
    lab.start_dockerd()  # in the background, for the Docker case
    lab.start_agent()
    try:
        yield lab
    finally:
        lab.stop_dockerd()
        guest.run(f"kill -9 $(cat {RUN}/agent.pid) $(cat {RUN}/zygote.pid)", timeout=30)
        for name in list(lab.made_netns):
            guest.run(f"ip netns del {name}", timeout=30)


def baseline(lab: Lab) -> dict[str, Any]:
    return lab.baseline


def assert_all_at_baseline(lab: Lab) -> None:
    now = lab.snapshot()
    assert now == baseline(lab), {
        pci: (baseline(lab).get(pci), state)
        for pci, state in now.items()
        if baseline(lab).get(pci) != state
    }


def _vlan_net(lab: Lab) -> str:
    net = lab.network(
        "pw10-vlan",
        datapath="sriov",
        network_type="vlan",
        segmentation_id=100,
        physical_network="physnet0",
    )
    if not lab.api("GET", f"/v2.0/subnets?network_id={net}")["subnets"]:
        lab.subnet(net, "198.18.10.0/24")
    return net


def _flat_net(lab: Lab, name: str = "pw10-flat", physnet: str = "physnet0", cidr: str = "") -> str:
    net = lab.network(name, datapath="sriov", network_type="flat", physical_network=physnet)
    if not lab.api("GET", f"/v2.0/subnets?network_id={net}")["subnets"]:
        lab.subnet(net, cidr or "198.18.11.0/24")
    return net


# --- the cases ------------------------------------------------------------------------------


def test_kernel_mode_add_check_del(lab: Lab) -> None:
    _vlan_net(lab)
    ns = lab.netns("pw10-k1")
    conf = {"name": "pw10-vlan", "network": "pw10-vlan", "runtimeConfig": {"numaNode": 1}}
    rc, res = lab.cni("ADD", "pw10-k1", conf, netns=ns)
    assert rc == 0, res
    (iface,) = res["interfaces"]
    pci, mac = iface["pciID"], iface["mac"]
    assert iface["name"] == "net1" and iface["sandbox"] == ns
    # NUMA node 1 asked for: a VF of the PF on node 1.
    assert pci.startswith("0000:41:"), pci
    assert res["ips"][0]["address"].startswith("198.18.10.")

    # The VF's settings, as `ip link show PF` shows them while attached.
    vf = lab.snapshot()[pci]
    assert vf["mac"] == mac
    assert vf["vlan"] == 100
    assert vf["spoofchk"] is True
    assert vf["netdev"] is None  # gone from the host: it is the container's net1
    inner = lab.guest.sh("ip netns exec pw10-k1 ip -j addr show net1")
    link = json.loads(inner)[0]
    assert link["address"] == mac
    assert any(a["local"] == res["ips"][0]["address"].split("/")[0] for a in link["addr_info"])

    # The device-info file and the network-status document carry the VF.
    info = json.loads(lab.guest.sh(f"cat {DEVINFO}/pw10-vlan-pw10-k1-net1-device-info.json"))
    assert info["type"] == "pci" and info["pci"]["pci-address"] == pci
    assert info["pci"]["pf-pci-address"] == PF1
    assert info["numa-node"] == 1
    status = _wait(
        lambda: lab.api("GET", "/v1/containers/pw10-k1/network-status"), what="network-status"
    )
    elements = status if isinstance(status, list) else status.get("network-status", status)
    assert any(e.get("device-info", {}).get("pci", {}).get("pci-address") == pci for e in elements)

    # The port's binding profile says which VF it got.
    ports = lab.api("GET", "/v2.0/ports?device_id=pw10-k1")["ports"] or [
        p for p in lab.api("GET", "/v2.0/ports")["ports"] if p["mac_address"] == mac
    ]
    profile = ports[0]["binding:profile"]
    assert profile["pci_slot"] == pci and profile["physical_network"] == "physnet0"

    # `podwire vf list`'s source: the agent's inventory shows the lease.
    vfs = {v["pci_address"]: v for v in lab.api("GET", "/v1/inventory")["sriov"]}
    assert len(vfs) == 2 * NUMVFS
    assert vfs[pci]["container_id"] == "pw10-k1" and vfs[pci]["physical_network"] == "physnet0"
    assert vfs["0000:41:10.6"]["physical_network"] == "tiny"
    assert sum(1 for v in vfs.values() if v["attachment_id"]) == 1

    rc, res = lab.cni("CHECK", "pw10-k1", conf, netns=ns)
    assert rc == 0, res
    # A drift of the VF's MAC through the PF is what CHECK reports.
    lab.guest.sh(
        f"ip link set $(ls /sys/bus/pci/devices/{PF1}/net) vf "
        f"{_vf_index(lab, pci)} mac 02:00:00:00:00:77"
    )
    rc, res = lab.cni("CHECK", "pw10-k1", conf, netns=ns)
    assert rc != 0 and "MAC" in res["msg"], res

    rc, res = lab.cni("DEL", "pw10-k1", conf, netns=ns)
    assert rc == 0, res
    assert_all_at_baseline(lab)
    assert "pw10-k1" not in lab.guest.sh(f"ls {DEVINFO}")
    # DEL again is idempotent.
    rc, res = lab.cni("DEL", "pw10-k1", conf, netns=ns)
    assert rc == 0, res
    lab.del_netns("pw10-k1")


def _vf_index(lab: Lab, pci: str) -> int:
    out = lab.guest.sh(f"ls -l /sys/bus/pci/devices/{pci}/physfn/ | grep 'virtfn.*{pci}'")
    return int(out.split("virtfn")[1].split()[0])


def test_numa_preference_honoured_and_reported(lab: Lab) -> None:
    _flat_net(lab)
    conf = {"name": "pw10-flat", "network": "pw10-flat"}
    got = {}
    for node, container, how in ((0, "pw10-n0", "args"), (1, "pw10-n1", "cni_args")):
        ns = lab.netns(container)
        if how == "args":
            rc, res = lab.cni(
                "ADD", container, {**conf, "args": {"cni": {"numa_node": node}}}, netns=ns
            )
        else:
            rc, res = lab.cni("ADD", container, conf, netns=ns, args=f"NUMA_NODE={node}")
        assert rc == 0, res
        info = json.loads(
            lab.guest.sh(f"cat {DEVINFO}/pw10-flat-{container}-net1-device-info.json")
        )
        got[node] = (res["interfaces"][0]["pciID"], info["numa-node"])
    assert got[0][0].startswith("0000:21:") and got[0][1] == 0
    assert got[1][0].startswith("0000:41:") and got[1][1] == 1
    for container in ("pw10-n0", "pw10-n1"):
        rc, res = lab.cni("DEL", container, conf)
        assert rc == 0, res
        lab.del_netns(container)
    assert_all_at_baseline(lab)


def test_two_containers_on_one_pf_exchange_packets(lab: Lab) -> None:
    _flat_net(lab)
    conf = {"name": "pw10-flat", "network": "pw10-flat", "runtimeConfig": {"numaNode": 0}}
    addrs = {}
    for container in ("pw10-p1", "pw10-p2"):
        rc, res = lab.cni("ADD", container, conf, netns=lab.netns(container))
        assert rc == 0, res
        assert res["interfaces"][0]["pciID"].startswith("0000:21:")  # both on PF0
        addrs[container] = res["ips"][0]["address"].split("/")[0]
    # The VF link comes up a moment after the ADD (igbvf's reset under TCG).
    ok = _wait(
        lambda: (
            lab.guest.run(
                f"ip netns exec pw10-p1 busybox ping -c1 -W2 {addrs['pw10-p2']}", timeout=30
            )[0]
            == 0
        ),
        timeout=30,
        what="a ping between the two VFs",
    )
    assert ok
    out = lab.guest.sh(f"ip netns exec pw10-p2 busybox ping -c3 -W2 {addrs['pw10-p1']}")
    assert "3 packets received" in out
    for container in ("pw10-p1", "pw10-p2"):
        rc, res = lab.cni("DEL", container, conf)
        assert rc == 0, res
        lab.del_netns(container)
    assert_all_at_baseline(lab)


def test_exhausted_pool_names_the_physical_network(lab: Lab) -> None:
    _flat_net(lab, "pw10-tiny", "tiny", "198.18.12.0/24")
    conf = {"name": "pw10-tiny", "network": "pw10-tiny"}
    rc, res = lab.cni("ADD", "pw10-x1", conf, netns=lab.netns("pw10-x1"))
    assert rc == 0, res
    assert res["interfaces"][0]["pciID"] == "0000:41:10.6"  # VF 3 of PF1
    rc, res = lab.cni("ADD", "pw10-x2", conf, netns=lab.netns("pw10-x2"))
    assert rc != 0
    assert "no free VF on physical network tiny" in res["msg"], res
    # Nothing half-made: the failed ADD left no record and no lease.
    assert [a["container_id"] for a in lab.api("GET", "/v1/attachments")["attachments"]] == [
        "pw10-x1"
    ]
    for container in ("pw10-x1", "pw10-x2"):
        rc, res = lab.cni("DEL", container, conf)
        assert rc == 0, res
        lab.del_netns(container)
    assert_all_at_baseline(lab)


def _direct_port(lab: Lab, net: str, **profile: Any) -> dict[str, Any]:
    body = {"network_id": net, "binding:vnic_type": "direct", "binding:profile": profile}
    return dict(lab.api("POST", "/v2.0/ports", {"port": body})["port"])


def test_max_tx_rate_through_the_pf_restored_by_del_and_gc(lab: Lab) -> None:
    """igb's rate limit (igb_ndo_set_vf_bw: the 82576, PF link up at 100 or
    1000 Mb/s; the fixture's PFs are up at 1000): a port's binding profile
    max_tx_rate is what `ip link show PF` shows for its VF while attached;
    DEL and CNI GC put it back (the start-up reconcile after kill -9 with
    the rate applied: the crash walk below)."""
    net = _flat_net(lab)
    port = _direct_port(lab, net, max_tx_rate=100)
    conf = {"name": "pw10-flat", "networks": [{"name": "pw10-flat", "port": port["id"]}]}
    ns = lab.netns("pws-r1")

    def add_with_rate() -> str:
        rc, res = lab.cni("ADD", "pws-r1", conf, netns=ns, args="NUMA_NODE=0")
        assert rc == 0, res
        pci = str(res["interfaces"][0]["pciID"])
        vf = lab.snapshot()[pci]
        assert (vf["max_tx_rate"], vf["min_tx_rate"], vf["mac"]) == (100, 0, port["mac_address"])
        return pci

    add_with_rate()
    rc, res = lab.cni("DEL", "pws-r1", conf, netns=ns)
    assert rc == 0, res
    assert_all_at_baseline(lab)

    # GC: the runtime keeps no attachment of this config.
    add_with_rate()
    gc = {**conf, "cni.dev/valid-attachments": []}
    rc, res = lab.cni("GC", "", gc, netns="", ifname="")
    assert rc == 0, res
    assert_all_at_baseline(lab)
    assert not lab.api("GET", "/v1/attachments")["attachments"]
    lab.del_netns("pws-r1")
    lab.api("DELETE", f"/v2.0/ports/{port['id']}")


@pytest.mark.parametrize(
    ("profile", "setting", "limit"),
    [
        ({"min_tx_rate": 10, "max_tx_rate": 100}, "min/max_tx_rate", "igb has no min_tx_rate"),
        ({"link_state": "enable"}, "link_state", "igb has no VF link-state control"),
    ],
)
def test_what_igb_cannot_do_is_refused_naming_the_driver(
    lab: Lab, profile: dict[str, Any], setting: str, limit: str
) -> None:
    net = _flat_net(lab)
    port = _direct_port(lab, net, **profile)
    conf = {"name": "pw10-flat", "networks": [{"name": "pw10-flat", "port": port["id"]}]}
    rc, res = lab.cni("ADD", "pws-x", conf, netns=lab.netns("pws-x"))
    assert rc != 0, res
    msg = res["msg"] + " " + str(res.get("details", ""))
    assert "the igb driver of PF" in msg and f"refused {setting}" in msg and limit in msg, res
    # Nothing half-made: no record, every VF at its baseline, the port as it came.
    assert not lab.api("GET", "/v1/attachments")["attachments"]
    assert_all_at_baseline(lab)
    assert lab.api("GET", f"/v2.0/ports/{port['id']}")["port"]["binding:profile"] == profile
    lab.api("DELETE", f"/v2.0/ports/{port['id']}")
    lab.del_netns("pws-x")


def test_dpdk_mode_binds_vfio_pci_and_gives_the_vf_back(lab: Lab) -> None:
    net = _flat_net(lab)
    port = lab.api(
        "POST",
        "/v2.0/ports",
        {"port": {"network_id": net, "binding:vnic_type": "direct-physical"}},
    )["port"]
    conf = {"name": "pw10-flat", "networks": [{"name": "pw10-flat", "port": port["id"]}]}
    ns = lab.netns("pw10-d1")
    rc, res = lab.cni("ADD", "pw10-d1", conf, netns=ns, args="NUMA_NODE=0")
    assert rc == 0, res
    (iface,) = res["interfaces"]
    pci = iface["pciID"]
    dpdk_ip, dpdk_mac = res["ips"][0]["address"].split("/")[0], port["mac_address"]
    assert "name" not in iface  # no netdev in the container
    assert lab.snapshot()[pci]["driver"] == "vfio-pci"
    info = json.loads(lab.guest.sh(f"cat {DEVINFO}/pw10-flat-pw10-d1-net1-device-info.json"))
    group = info["pci"]["vfio-group"]
    assert lab.guest.run(f"test -c {group}")[0] == 0, group
    assert lab.guest.sh("ip netns exec pw10-d1 ip -o link").count("\n") == 1  # lo only
    rc, res = lab.cni("CHECK", "pw10-d1", conf, netns=ns)
    assert rc == 0, res
    _testpmd_answers_pings(lab, pci, dpdk_ip, dpdk_mac)
    rc, res = lab.cni("DEL", "pw10-d1", conf, netns=ns)
    assert rc == 0, res
    assert_all_at_baseline(lab)
    # The caller's port is given back with its binding profile as it came.
    assert lab.api("GET", f"/v2.0/ports/{port['id']}")["port"]["binding:profile"] == {}
    lab.api("DELETE", f"/v2.0/ports/{port['id']}")
    lab.del_netns("pw10-d1")


def _testpmd_answers_pings(lab: Lab, pci: str, dpdk_ip: str, dpdk_mac: str) -> None:
    """A DPDK application on the VF: dpdk-testpmd (the e1000 igbvf PMD over
    vfio-pci and the virtual IOMMU) in icmpecho mode answers the pings of a
    kernel-mode container on a VF of the same PF. The container knows the
    DPDK VF's MAC statically: broadcasts (ARP) do not reach a DPDK VF in this
    emulation."""
    flat = {"name": "pw10-flat", "network": "pw10-flat"}
    rc, res = lab.cni("ADD", "pw10-d2", flat, netns=lab.netns("pw10-d2"), args="NUMA_NODE=0")
    assert rc == 0, res
    assert res["interfaces"][0]["pciID"][:7] == pci[:7]  # the same PF
    log = f"{RUN}/testpmd.log"
    try:
        lab.guest.sh(
            f"""
            echo 64 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
            mkdir -p /dev/hugepages
            mountpoint -q /dev/hugepages || mount -t hugetlbfs none /dev/hugepages
            ip netns exec pw10-d2 ip neigh replace {dpdk_ip} lladdr {dpdk_mac} dev net1
            setsid timeout 120 stdbuf -oL dpdk-testpmd -l 0-1 -n 1 -a {pci} --file-prefix pw10 \
              -- --forward-mode=icmpecho --auto-start --stats-period 2 --total-num-mbufs=4096 \
              > {log} 2>&1 < /dev/null &
            echo $! > {RUN}/testpmd.pid
            i=0
            until grep -q "Port statistics" {log}; do
                sleep 0.5; i=$((i+1)); [ $i -lt 120 ] || {{ cat {log}; exit 1; }}
            done
            """
        )
        answered = _wait(
            lambda: (
                lab.guest.run(f"ip netns exec pw10-d2 busybox ping -c3 -W2 {dpdk_ip}", timeout=60)[
                    1
                ].count("bytes from")
                >= 2
            ),
            timeout=40,
            what="testpmd's echo replies",
        )
        assert answered
    finally:
        # testpmd must let go of the VF before vfio-pci can give it back.
        lab.guest.run(
            f"""
            kill $(cat {RUN}/testpmd.pid) 2>/dev/null
            i=0; while kill -0 $(cat {RUN}/testpmd.pid) 2>/dev/null && [ $i -lt 60 ]; do
                sleep 0.5; i=$((i+1)); done
            kill -9 $(cat {RUN}/testpmd.pid) 2>/dev/null
            umount /dev/hugepages; echo 0 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
            """,
            timeout=60,
        )
        rc, res = lab.cni("DEL", "pw10-d2", flat)
        assert rc == 0, res
        lab.del_netns("pw10-d2")


def test_docker_container_gets_a_vf_through_libnetwork(lab: Lab) -> None:
    """The Docker door, with a real dockerd in the guest and the agent's
    libnetwork remote driver: Zun's flow (`docker network connect
    --driver-opt podwire.port=<uuid>`) with a pre-created port of vnic_type
    direct. The container's eth0 is the VF's netdev (Docker moved and named
    it), with the port's MAC and its binding profile's max_tx_rate through
    the PF; it pings a CNI container on a VF of the same PF through the
    emulated switch; disconnect gives the VF back at its baseline and the
    port back unbound with its own profile."""
    for command in ("dockerd", "/usr/bin/docker", "nsenter"):
        if shutil.which(command) is None:
            missing(f"{command} (docker.io, util-linux): the guest runs the host's")
    net = _flat_net(lab)
    port = _direct_port(lab, net, max_tx_rate=200)
    ip = port["fixed_ips"][0]["ip_address"]
    peer_conf = {"name": "pw10-flat", "network": "pw10-flat", "runtimeConfig": {"numaNode": 0}}
    rc, res = lab.cni("ADD", "pws-dpeer", peer_conf, netns=lab.netns("pws-dpeer"))
    assert rc == 0, res
    peer_ip = res["ips"][0]["address"].split("/")[0]
    lab.docker_ready()
    try:
        lab.docker(
            f"network create -d {DOCKER_PLUGIN} --ipam-driver {DOCKER_PLUGIN} "
            "--subnet 198.18.11.0/24 -o podwire.network=pw10-flat pwsdnet"
        )
        lab.docker(f"create --name pws-b --network none {DOCKER_IMAGE} sleep 3600")
        lab.docker("network disconnect none pws-b")
        lab.docker(
            f"network connect --ip {ip} --driver-opt podwire.port={port['id']} "
            "--driver-opt podwire.numa_node=0 pwsdnet pws-b"
        )
        lab.docker("start pws-b")

        # eth0 in the container is the VF's own netdev (its PCI parent).
        pid = lab.docker("inspect -f '{{.State.Pid}}' pws-b")
        (eth0,) = json.loads(lab.guest.sh(f"nsenter -t {pid} -n ip -d -j link show eth0"))
        pci = eth0["parentdev"]
        assert eth0["address"] == port["mac_address"]
        vf = lab.snapshot()[pci]
        assert (vf["mac"], vf["max_tx_rate"], vf["netdev"]) == (port["mac_address"], 200, None)
        assert pci[:7] == "0000:21"  # NUMA node 0 asked for, through --driver-opt
        bound = lab.api("GET", f"/v2.0/ports/{port['id']}")["port"]
        assert bound["binding:profile"]["pci_slot"] == pci
        ok = _wait(
            lambda: (
                lab.guest.run(f"{lab.docker_cmd} exec pws-b ping -c1 -W2 {peer_ip}", 60)[0] == 0
            ),
            timeout=40,
            what="a ping from the Docker container's VF to the CNI container's",
        )
        assert ok

        lab.docker("network disconnect pwsdnet pws-b")
        assert lab.snapshot()[pci] == baseline(lab)[pci]
        # The user's port: given back unbound, never deleted, its profile as it came.
        left = lab.api("GET", f"/v2.0/ports/{port['id']}")["port"]
        assert left["device_id"] == "" and left["fixed_ips"][0]["ip_address"] == ip
        assert left["binding:profile"] == {"max_tx_rate": 200}
    finally:
        lab.docker("rm -f pws-b", check=False)
        lab.docker("network rm pwsdnet", check=False)
    rc, res = lab.cni("DEL", "pws-dpeer", peer_conf)
    assert rc == 0, res
    lab.del_netns("pws-dpeer")
    assert_all_at_baseline(lab)
    assert not lab.api("GET", "/v1/attachments")["attachments"]
    lab.api("DELETE", f"/v2.0/ports/{port['id']}")


# Where the agent is killed (-9) during an ADD: after the lease, with the VF's
# settings applied in the host, with the VF moved into the container, after
# the binding profile was written, once the plug finished.
CRASH_POINTS = [
    "step.kind.allocate:after",
    "kind.sriov.vf_settings_applied",
    "kind.sriov.vf_moved",
    "step.kind.backend:after",
    "step.plug:after",
]


def test_kill9_at_each_step_restores_every_vf(lab: Lab) -> None:
    """A chain of agents: each one's start-up reconcile must undo what the
    last one left when it was killed at a step of an ADD; then it is killed
    at the next point. Also an attachment that was complete when the agent
    was killed, whose netns is deleted while no agent runs: DEL after the
    restart restores its VF from the record alone."""
    net = _vlan_net(lab)
    conf = {"name": "pw10-vlan", "network": "pw10-vlan"}
    # At the point where the VF's settings are applied in the host, the port
    # also asks for a max_tx_rate: the reconcile must take that back too.
    rate_port = _direct_port(lab, net, max_tx_rate=100)
    rate_conf = {"name": "pw10-vlan", "networks": [{"name": "pw10-vlan", "port": rate_port["id"]}]}
    rc, res = lab.cni("ADD", "pw10-kept", conf, netns=lab.netns("pw10-kept"))
    assert rc == 0, res
    kept_pci = res["interfaces"][0]["pciID"]
    lab.kill_agent()
    lab.del_netns("pw10-kept")  # the VF netdev goes back to the host by itself

    for point in CRASH_POINTS:
        lab.start_agent([{"point": point, "action": "crash"}])
        # The reconcile of this start undid the previous crash.
        now = lab.snapshot()
        for pci, state in now.items():
            if pci != kept_pci:
                assert state == baseline(lab)[pci], (point, pci, state)
        container = "pw10-c" + str(CRASH_POINTS.index(point))
        with_rate = point == "kind.sriov.vf_settings_applied"
        rc, res = lab.cni(
            "ADD", container, rate_conf if with_rate else conf, netns=lab.netns(container)
        )
        assert rc != 0, (point, res)
        _wait(lambda: not lab.agent_alive(), what=f"the agent to die at {point}")
        if with_rate:  # killed with the rate applied through the PF
            assert any(v["max_tx_rate"] == 100 for v in lab.snapshot().values())
        lab.del_netns(container) if point == "step.plug:after" else None

    lab.start_agent()  # clean
    now = lab.snapshot()
    for pci, state in now.items():
        if pci != kept_pci:
            assert state == baseline(lab)[pci], (pci, state)
    assert not [
        a
        for a in lab.api("GET", "/v1/attachments")["attachments"]
        if a["container_id"] != "pw10-kept"
    ]
    rc, res = lab.cni("DEL", "pw10-kept", conf)
    assert rc == 0, res
    assert_all_at_baseline(lab)
    for name in list(lab.made_netns):
        lab.del_netns(name)
    assert lab.agent_starts >= len(CRASH_POINTS) + 2
    # The rate port, given back by that reconcile with its own profile.
    left = lab.api("GET", f"/v2.0/ports/{rate_port['id']}")["port"]
    assert left["device_id"] == "" and left["binding:profile"] == {"max_tx_rate": 100}
    lab.api("DELETE", f"/v2.0/ports/{rate_port['id']}")
