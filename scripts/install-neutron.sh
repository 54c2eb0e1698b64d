#!/usr/bin/env bash
# A real OpenStack Neutron API for the Neutron backend's tests, in its own
# virtualenv (never in podwire's): neutron, uwsgi to serve it, pinned by
# constraints-neutron.txt. Idempotent; about 100 s and 380 MB the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${NEUTRON_VENV:-/var/cache/podwire/neutron-venv}
stamp="$venv/.podwire-installed"
# Neutron's database driver in the tests (PostgreSQL; SQLite deadlocks under
# ML2/OVN): the same psycopg podwire pins in constraints.txt.
psycopg_pins=("psycopg[binary]==3.3.9" "psycopg-binary==3.3.9")
if [ -f "$stamp" ] && cmp -s constraints-neutron.txt "$stamp"; then
    if ! "$venv/bin/python" -c "import psycopg" 2>/dev/null; then
        "$venv/bin/pip" install -q "${psycopg_pins[@]}" 2>&1 | grep -v "^WARNING: Location" || true
        "$venv/bin/python" -c "import psycopg"
    fi
    exit 0
fi
echo "podwire: installing Neutron into $venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# pip's warnings about unreachable extra index locations are noise here; a
# failed install is caught by the check below, not by pip's exit code.
"$venv/bin/pip" install -q -c constraints-neutron.txt neutron uwsgi "${psycopg_pins[@]}" 2>&1 | grep -v "^WARNING: Location" || true
"$venv/bin/python" -W ignore -c "import neutron.wsgi, psycopg" && test -x "$venv/bin/uwsgi"
cp constraints-neutron.txt "$stamp"
