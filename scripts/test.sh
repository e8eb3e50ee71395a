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
# The engine's, models' and benchmarks' tests, and the trainer's f16 runs and diagnosis,
# again on Mesa's newest lavapipe, whose software Vulkan has cooperative matrices (8x8x8): the
# f16 products, attention blocks and LM head objective then run on the cooperative-matrix
# kernels, the paths a GPU with tensor cores takes (on 16x16x16 fragments).
if [ "$(uname -m)" = x86_64 ] && command -v apt-get >/dev/null && [ -z "${TRAINER_SKIP_COOP:-}" ]; then
  coop="$(bash scripts/lavapipe_coop.sh)"
  lib="$coop/root/usr/lib/x86_64-linux-gnu"
  export VK_DRIVER_FILES="$coop/lvp_icd.json" TRAINER_REQUIRE_COOP=1
  # The test binaries built above (another package selection would resolve the dependencies'
  # features anew and build them again), run through that Mesa's own loader and libc, as are
  # the binaries they start (through cargo's runner variable, which the tests read).
  runner="$lib/ld-linux-x86-64.so.2 --library-path $lib"
  bins="$(cargo test --workspace --all-targets --no-run --message-format=json "$@" 2>/dev/null |
    python3 scripts/test_binaries.py engine models benches trainer:train/f16 trainer:diagnose/f16)"
  [ -n "$bins" ] || { echo "test.sh: found no test binaries for the cooperative-matrix run" >&2; exit 1; }
  export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$runner"
  while IFS=$'\t' read -r dir exe filter; do
    echo "cooperative matrices: $(basename "$exe") $filter"
    # shellcheck disable=SC2086 # the runner is a command and its arguments
    (cd "$dir" && $runner "$exe" $filter) || exit 1
  done <<<"$bins"
else
  echo "test.sh: skipped the cooperative-matrix run (it needs apt-get on x86-64; TRAINER_SKIP_COOP skips it)"
fi
