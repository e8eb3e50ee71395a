#!/usr/bin/env bash
# A Python environment with HF transformers and torch (CPU use), for the tests that check a
# checkpoint we save loads in transformers, and for the scripts that record HF references.
# Made once at ~/.cache/trainer/venv-hf (TRAINER_HF_VENV overrides); prints its python.
set -euo pipefail
venv="${TRAINER_HF_VENV:-$HOME/.cache/trainer/venv-hf}"
if ! "$venv/bin/python" -c "import torch, transformers, safetensors" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q torch transformers safetensors gguf numpy >/dev/null
fi
echo "$venv/bin/python"
