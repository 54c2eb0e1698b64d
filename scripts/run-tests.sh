#!/usr/bin/env bash
# The whole test suite, as CI runs it. Lint first: a style error fails fast.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
ruff check podwire tests bench
mypy
exec python -m pytest -v -p no:cacheprovider "$@" tests
