#!/usr/bin/env bash
# The demo (assumes scripts/setup.sh ran): build the zoo -> search merge recipes of its experts
# (experiments/demo.yaml, a few minutes) -> export the winner as a checkpoint (scored on the
# held-out test split) under out/demo-winner.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=disabled
EVO=.venv/bin/evomerge
$EVO zoo build
if [ -d runs/demo ]; then
  $EVO run --resume runs/demo      # a second demo continues (or just reports) the first run
else
  $EVO run experiments/demo.yaml
fi
$EVO export runs/demo --trial best --out out/demo-winner --force
echo "demo finished: winning checkpoint in out/demo-winner (inspect the run: $EVO status runs/demo)"
