#!/usr/bin/env bash
# The whole test suite, as CI runs it. Lint first: a style error fails fast.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
ruff check podwire tests bench
mypy
# What only a long run needs is marked "long" and left out unless asked for.
long="not long and "
if [ "${PODWIRE_LONG:-0}" = 1 ]; then
    long=""
fi
# Two pytest sessions. Tests marked "own_session" need the host's one
# userspace-datapath ovs-vswitchd slot (its "ovs-netdev" device) for a chassis
# of their own (the real Neutron's OVN), which the session-wide OVN fixture
# holds from its first use to the end of its session: they run first, in a
# session of their own, and the whole suite after them (so its summary is the
# last line). Both always run; either failing fails the suite.
rc=0
python -m pytest -v -p no:cacheprovider -m "${long}own_session" "$@" tests || rc=$?
python -m pytest -v -p no:cacheprovider --durations=25 -m "${long}not own_session" "$@" tests || rc=$((rc ? rc : $?))
exit "$rc"
