#!/usr/bin/env bash
# Run the whole test suite (builds the tiny zoo once and caches it).
set -uo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled
.venv/bin/python -m pytest -q tests "$@"
rc=$?
if [ "$rc" = "5" ]; then echo "no tests were collected" >&2; exit 1; fi
exit "$rc"
