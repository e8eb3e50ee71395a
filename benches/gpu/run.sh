#!/usr/bin/env bash
# The one command a GPU session runs through the device tool, from the repository root:
#   bash benches/gpu/run.sh [GPUBENCH_BINARY [TRAINBENCH_BINARY]]
#   (defaults .gpubench/gpubench and .gpubench/trainbench)
# Unpacks the carried Vulkan loader (.gl/*.deb), points Vulkan at the NVIDIA ICD if none is
# registered, then runs, most important first, each section under its own time limit and all
# of them under one deadline (DEADLINE_S, default 450 s; a section that would start with less
# than 20 s left is skipped):
#   1. trainbench, Qwen2.5-1.5B: train f16, diagnose f16 and f32, train f16 with flash
#      attention, train f16 recomputed, train f32, the fused objective in f32 and f16
#                                                                            (limit 200 s)
#   2. torch_train_ref.py, Qwen2.5-1.5B: train bf16, diagnose bf16, train f32, diagnose f32,
#      cross-entropy on materialised logits in f32 and bf16                  (limit 100 s)
#   3. gpubench: checked kernel figures                                       (limit 150 s)
#   4. torch_ref.py: cuBLAS, SDPA, softmax, fused AdamW, launch overhead       (limit 90 s)
#   5. trainbench, Qwen2.5-0.5B (train f16, diagnose f16, train f16 recomputed, train f32,
#      diagnose f32, then train f16 recomputed with the moments offloaded)    (limit 120 s)
#   6. torch_train_ref.py, Qwen2.5-0.5B                                       (limit 60 s)
#   7. compare.py: both tables, ours vs PyTorch, targets marked
# Environment: GPUBENCH_ARGS adds arguments to gpubench ("--quick" on a CPU machine;
# "--only attention" reruns a group); TRAINBENCH_ARGS to each trainbench run ("--smoke");
# TORCH_TRAIN_ARGS to each torch_train_ref.py run ("--smoke --device cpu"); TRAIN_MODELS
# the models of sections 1/2 and 5/6 (default "qwen2.5-1.5b qwen2.5-0.5b"; "tiny" on a CPU
# machine); SECTIONS a subset to run (e.g. "train torch_train": the training sections only;
# names: train, torch_train, gpubench, torch_ref); PYTHON the interpreter (default python3);
# SKIP_TORCH=1 leaves PyTorch out (only for a rerun of ours: ratios need both from one run).
# Writes under $OUT (or /tmp/gpubench-out) seven files (the device tool returns at most 8):
# env.txt, gpubench.jsonl, torch_ref.jsonl, trainbench.jsonl, torch_train.jsonl, log.txt (every
# program's stderr, by section) and compare.md.
set -uo pipefail

BIN=${1:-.gpubench/gpubench}
TBIN=${2:-.gpubench/trainbench}
OUT=${OUT:-/tmp/gpubench-out}
PY=${PYTHON:-python3}
DEADLINE_S=${DEADLINE_S:-450}
SECTIONS=${SECTIONS:-train torch_train gpubench torch_ref}
read -r -a MODELS <<<"${TRAIN_MODELS:-qwen2.5-1.5b qwen2.5-0.5b}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
START=$SECONDS
: >"$OUT/log.txt"
for f in gpubench torch_ref trainbench torch_train; do : >"$OUT/$f.jsonl"; done

# shellcheck source=benches/gpu/vulkan_env.sh
. benches/gpu/vulkan_env.sh

{
    date -u +"date: %Y-%m-%dT%H:%M:%SZ"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
        --format=csv
} 2>&1 | tee "$OUT/env.txt"

wanted() { [[ " $SECTIONS " == *" $1 "* ]]; }

# section KIND TITLE LIMIT JSONL COMMAND..: run COMMAND under min(LIMIT, time left - 10 s),
# its stdout appended to JSONL (and shown), its stderr to log.txt (and shown).
section() {
    local kind=$1 title=$2 limit=$3 jsonl=$4
    shift 4
    wanted "$kind" || return 0
    local left=$((DEADLINE_S - (SECONDS - START) - 10))
    if [ "$left" -lt 20 ]; then
        echo "== $title: skipped, $((left + 10)) s left of DEADLINE_S=$DEADLINE_S" |
            tee -a "$OUT/log.txt"
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $title (limit ${limit} s, at $((SECONDS - START)) s)" | tee -a "$OUT/log.txt"
    timeout "$limit" "$@" 2> >(tee -a "$OUT/log.txt" >&2) | tee -a "$OUT/$jsonl"
    local rc=${PIPESTATUS[0]}
    sleep 1 # let the log tee finish
    echo "$title: exit status $rc$([ "$rc" = 124 ] && echo " (killed at ${limit} s)")" |
        tee -a "$OUT/log.txt"
}

trainbench() {
    local model=$1 plan=$2 limit=$3
    if [ ! -x "$TBIN" ]; then
        echo "run.sh: no executable at $TBIN (build it and carry it, see benches/gpu/README.md)" >&2
        return 0
    fi
    # shellcheck disable=SC2086
    section train "trainbench $model" "$limit" trainbench.jsonl \
        "$TBIN" --model "$model" --plan "$plan" --warmup 3 --steps 5 --budget-s 30 \
        ${TRAINBENCH_ARGS:-}
}

torch_train() {
    local model=$1 limit=$2
    [ -n "${SKIP_TORCH:-}" ] && return 0
    # shellcheck disable=SC2086
    section torch_train "torch_train_ref.py $model" "$limit" torch_train.jsonl \
        "$PY" benches/gpu/torch_train_ref.py --model "$model" --warmup 3 --steps 5 \
        --budget-s 20 ${TORCH_TRAIN_ARGS:-}
}

# 1-2: the figures issue 6 is judged on.
BIG=${MODELS[0]:-}
if [ -n "$BIG" ]; then
    trainbench "$BIG" train-f16,diagnose-f16,diagnose-f32,train-f16-flash,train-f16-recompute,train-f32,objective,objective-f16,train-f16-packed 200
    torch_train "$BIG" 100
fi

# 3-4: the kernels.
if [ -x "$BIN" ]; then
    # shellcheck disable=SC2086
    section gpubench "gpubench ($BIN)" 150 gpubench.jsonl "$BIN" ${GPUBENCH_ARGS:-}
elif wanted gpubench; then
    echo "run.sh: no executable at $BIN (build it and carry it, see benches/gpu/README.md)" >&2
fi
[ -z "${SKIP_TORCH:-}" ] && section torch_ref torch_ref.py 90 torch_ref.jsonl \
    "$PY" benches/gpu/torch_ref.py

# 5-6: the smaller model.
SMALL=${MODELS[1]:-}
if [ -n "$SMALL" ]; then
    trainbench "$SMALL" train-f16,diagnose-f16,train-f16-recompute,train-f32,diagnose-f32,train-f16-recompute-offload 120
    torch_train "$SMALL" 60
fi

echo "== ours vs PyTorch (same card, same run; $((SECONDS - START)) s so far)"
"$PY" benches/gpu/compare.py "$OUT/gpubench.jsonl" "$OUT/torch_ref.jsonl" \
    "$OUT/trainbench.jsonl" "$OUT/torch_train.jsonl" | tee "$OUT/compare.md"
echo "run.sh: $((SECONDS - START)) s in all"
