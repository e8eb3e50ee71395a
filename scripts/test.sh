#!/usr/bin/env bash
# The project's test command: every test of the workspace, kernels compiled with wgpu's
# runtime bounds checks on (the tests' device forces them too).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/fetch_models.py >/dev/null   # the two real test models, cached after the first run
export TRAINER_HF_PYTHON="${TRAINER_HF_PYTHON:-$(bash scripts/setup_hf.sh)}"   # transformers, for checkpoint tests
export TRAINER_SHADER_CHECKS=1
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
cargo test --workspace --all-targets "$@"
