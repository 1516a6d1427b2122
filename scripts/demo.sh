#!/usr/bin/env bash
# The demo (assumes scripts/setup.sh ran): zoo -> merge.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled
EVO=.venv/bin/evomerge
$EVO zoo build
$EVO merge experiments/recipes/demo_ties.yaml --out out/demo-merge --force
echo "demo finished: merged checkpoint in out/demo-merge"
