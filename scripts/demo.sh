#!/usr/bin/env bash
# podwire demo (`make demo`, as root, after `make deps`):
# a private agent on the embedded backend, a network in 198.18.0.0/15 and
# 2001:db8::/32, two podman containers that ping each other through podwire,
# what podwire recorded, and the ports given back when the containers go.
#
# Everything lives in one temp dir (agent state and socket, podman storage,
# CNI configs and plugin dir): nothing is written to /etc/cni, /usr/lib/cni or
# /run/podwire, and an agent the machine already runs is left alone.
# Everything is removed on exit, also after an error or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PODWIRE=$ROOT/.venv/bin/podwire
PY=$ROOT/.venv/bin/python
NET=demo
SUBNET4=198.18.42.0/24
SUBNET6=2001:db8:42::/64
CNI_NET=podwire-demo
A=podwire-demo-a
B=podwire-demo-b

if [ -t 1 ]; then BOLD=$'\e[1m' DIM=$'\e[2m' OFF=$'\e[0m'; else BOLD='' DIM='' OFF=''; fi
heading() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$OFF"; }
say() { printf '%s\n' "$*"; }
# Show a command (by its short name), then run it.
run() { printf '%s$ %s%s\n' "$DIM" "$(basename "$1") ${*:2}" "$OFF"; "$@"; }

[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (network namespaces, podman)" >&2; exit 1; }
for cmd in podman runc ip; do
    command -v "$cmd" >/dev/null || { echo "demo: $cmd is missing; run 'make deps'" >&2; exit 1; }
done
[ -x "$PODWIRE" ] || { echo "demo: $PODWIRE is missing; run 'make deps'" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "demo: /bin/busybox is missing (busybox-static); run 'make deps'" >&2; exit 1; }

# The compiled shim when there is a compiler, else the Python one (same behaviour).
if [ -x "$ROOT/shim/podwire-cni" ]; then SHIM=$ROOT/shim/podwire-cni; else SHIM=$ROOT/.venv/bin/podwire-cni; fi

WORK=$(mktemp -d /tmp/podwire-demo.XXXXXX)
SOCK=$WORK/agent.sock
AGENT_PID=
NET_ID=

pw() { "$PODWIRE" --agent-socket "$SOCK" "$@"; }
pm() {
    CONTAINERS_CONF=$WORK/containers.conf podman --root "$WORK/storage" --runroot "$WORK/run" \
        --network-config-dir "$WORK/net.d" --storage-driver vfs \
        --network-backend cni --cgroup-manager cgroupfs --runtime runc "$@"
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    heading "Cleaning up"
    pm rm -f -t 0 --ignore "$A" "$B" >/dev/null 2>&1 || true
    pm rm -a -f -t 0 >/dev/null 2>&1 || true
    if [ -n "$AGENT_PID" ] && kill -0 "$AGENT_PID" 2>/dev/null; then
        [ -z "$NET_ID" ] || pw network delete "$NET_ID" >/dev/null 2>&1 || true
        kill "$AGENT_PID" 2>/dev/null || true
        wait "$AGENT_PID" 2>/dev/null || true
        say "agent stopped"
    fi
    # The network's bridge (its name derives from the network id).
    if [ -n "$NET_ID" ]; then
        bridge=$("$PY" -c 'import sys; from podwire.kinds.veth_bridge import bridge_name; print(bridge_name(sys.argv[1]))' "$NET_ID" 2>/dev/null || true)
        if [ -n "$bridge" ] && ip link show "$bridge" >/dev/null 2>&1; then
            ip link delete "$bridge" && say "bridge $bridge removed"
        fi
    fi
    # The agent keeps its nftables table when it stops (its ports stay
    # secured across a restart); the demo's agent made it, so it goes.
    if [ "$TABLE_BEFORE" = no ] && nft list table bridge podwire >/dev/null 2>&1; then
        nft delete table bridge podwire && say "nftables table bridge podwire removed"
    fi
    # Anything podman left mounted under the private dir, deepest first.
    awk -v p="$WORK/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$WORK"
    say "removed $WORK"
    if [ "$status" -eq 130 ]; then
        say "demo interrupted"
    elif [ "$status" -ne 0 ]; then
        say "demo FAILED (exit $status)"
        [ ! -s "$WORK.agent.log" ] || { say "agent log:"; tail -n 30 "$WORK.agent.log"; }
    fi
    rm -f "$WORK.agent.log"
    exit "$status"
}
# A table there already belongs to an agent running on this host: never removed.
TABLE_BEFORE=no
nft list table bridge podwire >/dev/null 2>&1 && TABLE_BEFORE=yes
trap cleanup EXIT
trap 'exit 130' INT TERM

# `make demo-ovn` sets these: the backend's name and the agent's extra flags.
BACKEND=${PODWIRE_DEMO_BACKEND:-embedded}
read -r -a AGENT_ARGS <<<"${PODWIRE_DEMO_AGENT_ARGS:-}"
heading "1. Start the podwire agent ($BACKEND backend, private state dir and socket)"
mkdir -p "$WORK/state"
say "$DIM\$ podwire agent --state-dir $WORK/state --socket $SOCK ${AGENT_ARGS[*]} &$OFF"
"$PODWIRE" agent --state-dir "$WORK/state" --socket "$SOCK" "${AGENT_ARGS[@]}" >"$WORK.agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 1 200); do
    [ -S "$SOCK" ] && pw network list >/dev/null 2>&1 && break
    kill -0 "$AGENT_PID" 2>/dev/null || { echo "demo: the agent exited" >&2; exit 1; }
    sleep 0.1
done
[ -S "$SOCK" ] || { echo "demo: the agent did not start" >&2; exit 1; }
say "agent pid $AGENT_PID is serving $SOCK"

heading "2. Create a network with an IPv4 and an IPv6 subnet"
run "$PODWIRE" --agent-socket "$SOCK" network create "$NET" --subnet "$SUBNET4" --subnet "$SUBNET6"
NET_ID=$(pw --json network show "$NET" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["id"])')

heading "3. Tell podman about it: a CNI network whose plugin is podwire"
mkdir -p "$WORK/net.d" "$WORK/cni-bin" "$WORK/rootfs"
ln -s "$SHIM" "$WORK/cni-bin/podwire"
[ ! -x /usr/lib/cni/loopback ] || ln -s /usr/lib/cni/loopback "$WORK/cni-bin/loopback"
cat >"$WORK/containers.conf" <<EOF
[network]
cni_plugin_dirs = ["$WORK/cni-bin"]
network_config_dir = "$WORK/net.d"
EOF
cat >"$WORK/net.d/$CNI_NET.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET",
  "plugins": [{"type": "podwire", "network": "$NET", "agentSocket": "$SOCK"}]
}
EOF
say "$WORK/net.d/$CNI_NET.conflist:"
sed 's/^/    /' "$WORK/net.d/$CNI_NET.conflist"
say "plugin: $WORK/cni-bin/podwire -> $SHIM"
# A container root filesystem without a registry: one static busybox.
R=$WORK/rootfs
mkdir -p "$R/bin" "$R/proc" "$R/sys" "$R/dev" "$R/etc" "$R/tmp"
cp /bin/busybox "$R/bin/"
for applet in sh ip ping ping6 sleep cat hostname; do ln -s busybox "$R/bin/$applet"; done

heading "4. Start two containers on it"
say "(podman runs with private storage and: --network-backend cni --cgroup-manager cgroupfs --runtime runc)"
declare -A CID
for c in "$A" "$B"; do
    say "$DIM\$ podman run -d --name $c --network $CNI_NET --rootfs $R /bin/sleep 3600$OFF"
    start=$(date +%s%N)
    CID[$c]=$(pm run -d --name "$c" --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
        --network "$CNI_NET" --rootfs "$R" /bin/sleep 3600)
    say "started ${CID[$c]:0:12} in $(( ($(date +%s%N) - start) / 1000000 )) ms"
done

heading "5. Their addresses (inside each container)"
for c in "$A" "$B"; do
    say "$c:"
    pm exec "$c" ip addr show eth0 | sed 's/^/    /'
done

# The addresses podwire gave each container, from the backend's port list.
addr_of() { # container-id 4|6
    pw --json port list --device-id "$1" | "$PY" -c '
import ipaddress, json, sys
for port in json.load(sys.stdin):
    for ip in port["fixed_ips"]:
        if ipaddress.ip_address(ip["ip_address"]).version == int(sys.argv[1]):
            print(ip["ip_address"])' "$2"
}
B4=$(addr_of "${CID[$B]}" 4)
B6=$(addr_of "${CID[$B]}" 6)
A4=$(addr_of "${CID[$A]}" 4)

heading "6. They ping each other (IPv4 and IPv6)"
say "$DIM\$ podman exec $A ping -c 3 $B4$OFF"
pm exec "$A" ping -c 3 -W 2 "$B4" | sed 's/^/    /'
say "$DIM\$ podman exec $A ping6 -c 3 $B6$OFF"
pm exec "$A" ping6 -c 3 -W 2 "$B6" | sed 's/^/    /'
say "$DIM\$ podman exec $B ping -c 3 $A4$OFF"
pm exec "$B" ping -c 3 -W 2 "$A4" | sed 's/^/    /'

heading "7. What podwire recorded"
run "$PODWIRE" --agent-socket "$SOCK" port list --network "$NET"
say ""
run "$PODWIRE" --agent-socket "$SOCK" attachment list
say ""
say "$A's network-status document (Multus's shape, also in the agent's state dir):"
run "$PODWIRE" --agent-socket "$SOCK" attachment show "$(pm inspect -f '{{.Id}}' "$A")" --json

heading "8. Remove the containers: their ports are given back"
say "$DIM\$ podman rm -f -t 0 $A $B$OFF"
pm rm -f -t 0 "$A" "$B" >/dev/null
run "$PODWIRE" --agent-socket "$SOCK" port list --network "$NET"
left=$(pw --json port list --network "$NET" | "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)))')
if [ "$left" != 0 ]; then
    echo "demo: $left port(s) still allocated after the containers went" >&2
    exit 1
fi
say "no ports left on $NET"

heading "Done: podwire wired two podman containers and released everything"
