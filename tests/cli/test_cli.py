"""The real `podwire` console script, against a server URL and a --state-dir."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import unique
from tests.fixtures.server import ServerInfo, podwire_command

Run = Callable[..., subprocess.CompletedProcess[str]]


def _runner(global_args: list[str]) -> Run:
    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*podwire_command(), *global_args, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if ok:
            assert proc.returncode == 0, f"{args}: rc={proc.returncode}\n{proc.stderr}"
        return proc

    return run


@pytest.fixture(params=["server", "state-dir"])
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Run:
    if request.param == "server":
        server: ServerInfo = request.getfixturevalue("podwire_server")
        return _runner(["--url", server.url, "--token", server.tokens["alice"]])
    return _runner(["--state-dir", str(tmp_path / "state")])


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def test_network_lifecycle_with_tables_and_json(run: Run) -> None:
    name = unique("cli-")
    created = as_json(
        run(
            "--json",
            "network",
            "create",
            name,
            "--subnet",
            "198.18.40.0/24",
            "--subnet",
            "2001:db8:40::/64",
            "--mtu",
            "1450",
            "--datapath",
            "bridge",
        )
    )
    assert created["name"] == name
    assert created["mtu"] == 1450
    assert created["datapath"] == "bridge"
    assert len(created["subnets"]) == 2

    table = run("network", "list").stdout
    header, *rows = table.splitlines()
    assert header.split()[:3] == ["ID", "NAME", "SUBNETS"]
    assert any(created["id"] in row and name in row for row in rows)
    # Both CIDRs appear (one line per subnet in the SUBNETS cell).
    assert "198.18.40.0/24" in table
    assert "2001:db8:40::/64" in table

    shown = run("network", "show", name).stdout
    assert "id" in shown and created["id"] in shown and "1450" in shown

    subnets = as_json(run("--json", "subnet", "list", "--network", name))
    assert sorted(s["cidr"] for s in subnets) == ["198.18.40.0/24", "2001:db8:40::/64"]
    assert {s["name"] for s in subnets} == {f"{name}-v4", f"{name}-v6"}

    run("network", "delete", name)
    assert all(n["id"] != created["id"] for n in as_json(run("--json", "network", "list")))
    gone = run("network", "show", name, ok=False)
    assert gone.returncode == 1
    assert gone.stdout == ""
    assert gone.stderr.startswith("podwire: error: ")
    assert gone.stderr.count("\n") == 1
    assert name in gone.stderr


def test_network_create_with_a_bad_subnet_leaves_nothing(run: Run) -> None:
    name = unique("bad-")
    before = as_json(run("--json", "network", "list"))
    proc = run(
        "network",
        "create",
        name,
        "--subnet",
        "198.18.41.0/24",
        "--subnet",
        "198.18.41.0/25",
        ok=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("podwire: error: ")
    assert "overlap" in proc.stderr.lower()
    assert as_json(run("--json", "network", "list")) == before

    proc = run("network", "create", name, "--subnet", "198.18.41.0/33", ok=False)
    assert proc.returncode == 1
    assert "cidr" in proc.stderr.lower()
    assert as_json(run("--json", "network", "list")) == before


def test_subnet_commands(run: Run) -> None:
    name = unique("sn-")
    run("network", "create", name)
    sub = as_json(
        run(
            "--json",
            "subnet",
            "create",
            "198.18.42.0/24",
            "--network",
            name,
            "--name",
            "s",
            "--gateway",
            "198.18.42.254",
            "--allocation-pool",
            "start=198.18.42.10,end=198.18.42.20",
            "--dns-nameserver",
            "198.18.42.53",
        )
    )
    assert sub["gateway_ip"] == "198.18.42.254"
    assert sub["allocation_pools"] == [{"start": "198.18.42.10", "end": "198.18.42.20"}]
    assert "198.18.42.10-198.18.42.20" in run("subnet", "show", sub["id"]).stdout
    assert sub["id"] in run("subnet", "list").stdout
    run("subnet", "delete", sub["id"])
    assert sub["id"] not in run("subnet", "list").stdout
    run("network", "delete", name)


def test_port_commands(run: Run, request: pytest.FixtureRequest) -> None:
    name = unique("pt-")
    run("network", "create", name, "--subnet", "198.18.43.0/24", "--subnet", "2001:db8:43::/64")
    # --host sets binding:host_id: Neutron's policy keeps it for admins and
    # the service role (a host's agent). On the server, alice (a member) is
    # refused and her agent's token does it; the local state dir is admin.
    agent = run
    if request.node.callspec.params["run"] == "server":
        server: ServerInfo = request.getfixturevalue("podwire_server")
        agent = _runner(["--url", server.url, "--token", server.tokens["alice_service"]])
        refused = run("port", "create", "--network", name, "--host", "node-1", ok=False)
        assert refused.returncode == 1 and "binding:host_id" in refused.stderr
        assert as_json(run("--json", "port", "list", "--network", name)) == []
    port = as_json(
        agent(
            "--json",
            "port",
            "create",
            "--network",
            name,
            "--name",
            "p1",
            "--fixed-ip",
            "198.18.43.7",
            "--mac",
            "0a:70:77:00:43:07",
            "--allowed-address-pair",
            "198.19.43.0/24",
            "--allowed-address-pair",
            "ip-address=198.19.44.1,mac-address=0a:70:77:00:44:01",
            "--device-id",
            "ctr-1",
            "--host",
            "node-1",
        )
    )
    assert [f["ip_address"] for f in port["fixed_ips"]] == ["198.18.43.7"]
    assert port["mac_address"] == "0a:70:77:00:43:07"
    assert port["allowed_address_pairs"] == [
        {"ip_address": "198.19.43.0/24", "mac_address": None},
        {"ip_address": "198.19.44.1", "mac_address": "0a:70:77:00:44:01"},
    ]
    assert port["binding"]["host_id"] == "node-1"

    dual = as_json(run("--json", "port", "create", "--network", name, "--name", "p2"))
    assert len(dual["fixed_ips"]) == 2

    table = run("port", "list", "--network", name).stdout
    assert table.splitlines()[0].split()[:3] == ["ID", "NAME", "MAC_ADDRESS"]
    assert "198.18.43.7" in table and port["id"] in table and dual["id"] in table
    by_device = as_json(run("--json", "port", "list", "--device-id", "ctr-1"))
    assert [p["id"] for p in by_device] == [port["id"]]
    by_ip = as_json(run("--json", "port", "list", "--ip-address", "198.18.43.7"))
    assert [p["id"] for p in by_ip] == [port["id"]]
    assert "198.19.43.0/24" in run("port", "show", "p1").stdout

    taken = run("port", "create", "--network", name, "--fixed-ip", "198.18.43.7", ok=False)
    assert taken.returncode == 1 and "198.18.43.7" in taken.stderr
    bad_mac = run("port", "create", "--network", name, "--mac", "nope", ok=False)
    assert bad_mac.returncode == 1 and "mac_address" in bad_mac.stderr

    in_use = run("network", "delete", name, ok=False)
    assert in_use.returncode == 1 and in_use.stderr.startswith("podwire: error: ")
    run("port", "delete", "p1", dual["id"])
    assert as_json(run("--json", "port", "list", "--network", name)) == []
    run("network", "delete", name)


def test_trunk_commands(run: Run) -> None:
    name = unique("tk-")
    run("network", "create", name, "--subnet", "198.18.44.0/24")
    for p in ("parent", "c1", "c2", "c3"):
        run("port", "create", "--network", name, "--name", f"{name}-{p}")
    trunk = as_json(
        run(
            "--json",
            "trunk",
            "create",
            f"{name}-t",
            "--parent-port",
            f"{name}-parent",
            "--subport",
            f"port={name}-c1,segmentation-id=100",
        )
    )
    assert [s["segmentation_id"] for s in trunk["sub_ports"]] == [100]
    added = as_json(
        run(
            "--json",
            "trunk",
            "add-subport",
            trunk["id"],
            "--port",
            f"{name}-c2",
            "--segmentation-id",
            "200",
        )
    )
    assert sorted(s["segmentation_id"] for s in added["sub_ports"]) == [100, 200]
    reused = run(
        "trunk",
        "add-subport",
        trunk["id"],
        "--port",
        f"{name}-c3",
        "--segmentation-id",
        "200",
        ok=False,
    )
    assert reused.returncode == 1 and "200" in reused.stderr
    out_of_range = run(
        "trunk",
        "add-subport",
        trunk["id"],
        "--port",
        f"{name}-c3",
        "--segmentation-id",
        "5000",
        ok=False,
    )
    assert out_of_range.returncode == 1 and "segmentation_id" in out_of_range.stderr

    table = run("trunk", "list").stdout
    assert f"{name}-t" in table and "200:" in table
    removed = as_json(run("--json", "trunk", "remove-subport", f"{name}-t", "--port", f"{name}-c1"))
    assert [s["segmentation_id"] for s in removed["sub_ports"]] == [200]
    assert "vlan 200" in run("trunk", "show", f"{name}-t").stdout
    run("trunk", "delete", f"{name}-t")
    assert as_json(run("--json", "trunk", "list")) == []
    for p in ("parent", "c1", "c2", "c3"):
        run("port", "delete", f"{name}-{p}")
    run("network", "delete", name)


def test_cli_errors_are_one_line(podwire_server: ServerInfo, tmp_path: Path) -> None:
    bad_token = _runner(["--url", podwire_server.url, "--token", "nope"])
    proc = bad_token("network", "list", ok=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("podwire: error: ") and proc.stderr.count("\n") == 1
    assert "X-Auth-Token" in proc.stderr

    nowhere = _runner(["--agent-socket", str(tmp_path / "missing.sock")])
    proc = nowhere("port", "list", ok=False)
    assert proc.returncode == 1
    assert "cannot reach" in proc.stderr and proc.stderr.count("\n") == 1

    both = _runner(["--url", podwire_server.url, "--state-dir", str(tmp_path)])
    proc = both("network", "list", ok=False)
    assert proc.returncode == 1 and "--url" in proc.stderr


def test_admin_sees_other_projects_and_filters_by_project(podwire_server: ServerInfo) -> None:
    url = podwire_server.url
    alice = _runner(["--url", url, "--token", podwire_server.tokens["alice"]])
    bob = _runner(["--url", url, "--token", podwire_server.tokens["bob"]])
    admin = _runner(["--url", url, "--token", podwire_server.tokens["admin"]])
    name = unique("iso-")
    net = as_json(alice("--json", "network", "create", name))
    try:
        assert net["id"] not in bob("network", "list").stdout
        assert bob("network", "show", net["id"], ok=False).returncode == 1
        alice_project = podwire_server.projects["alice"]
        listed = as_json(admin("--json", "--project", alice_project, "network", "list"))
        assert net["id"] in {n["id"] for n in listed}
        assert {n["project_id"] for n in listed} == {alice_project}
    finally:
        alice("network", "delete", net["id"])


def test_server_refuses_bad_settings_in_one_line(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    cases = [
        ("{not json", ["--listen", "127.0.0.1:0"], "not valid JSON"),
        ('{"t": {"roles": ["member"]}}', ["--listen", "127.0.0.1:0"], "project_id"),
        ('{"t": {"project_id": "p", "roles": ["root"]}}', ["--listen", "127.0.0.1:0"], "roles"),
        ('{"t": {"project_id": "p"}}', ["--listen", "nowhere"], "--listen"),
    ]
    for text, extra, expected in cases:
        tokens.write_text(text)
        proc = subprocess.run(
            [
                *podwire_command(),
                "server",
                "--state-dir",
                str(tmp_path / "s"),
                "--tokens",
                str(tokens),
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1, (text, proc.stderr)
        assert proc.stderr.startswith("podwire: error: "), proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert expected in proc.stderr, proc.stderr
        # The token itself is never echoed.
        assert '"t"' not in proc.stderr
