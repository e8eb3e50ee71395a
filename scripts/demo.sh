#!/usr/bin/env bash
# The main job on a small default: set up (lavapipe where there is no GPU, the test models),
# then with SmolLM2-135M-Instruct: place a small SFT file on the capability continuum, fine-tune
# it with the objective the diagnostic picks (--alpha auto), and evaluate the result.
# Output goes to runs/demo/. About ten minutes on a 2-core CPU through lavapipe, seconds on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 scripts/fetch_models.py >/dev/null
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
cargo build --release -q -p trainer
t=target/release/trainer
mkdir -p runs
data=tests/fixtures/data/tiny_sft.jsonl
$t devices
$t diagnose --model smollm2-135m-instruct --data "$data" --plot runs/demo-probs.svg
$t --model smollm2-135m-instruct --data "$data" --alpha auto --steps 4 --batch-size 4 --lr 1e-5 --output runs/demo
$t eval --model runs/demo/final --data tests/fixtures/data/tiny_eval.jsonl --max-new-tokens 24 --report runs/demo/eval.json
