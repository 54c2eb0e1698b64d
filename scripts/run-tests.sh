#!/usr/bin/env bash
# The whole test suite, as CI runs it. Lint first: a style error fails fast.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
ruff check podwire tests bench
mypy
# What only a long run needs is marked "long" and left out unless asked for.
marks=(-m "not long")
if [ "${PODWIRE_LONG:-0}" = 1 ]; then
    marks=()
fi
exec python -m pytest -v -p no:cacheprovider "${marks[@]}" "$@" tests
