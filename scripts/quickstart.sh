#!/usr/bin/env bash
# Set everything up, then run the demo: build the tiny zoo, search merge recipes of its
# experts, and export the winner as a checkpoint under out/demo-winner.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/demo.sh
