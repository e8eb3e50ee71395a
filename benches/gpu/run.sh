#!/usr/bin/env bash
# The one command a GPU session runs through the device tool, from the repository root:
#   bash benches/gpu/run.sh [GPUBENCH_BINARY]     (default .gpubench/gpubench)
# Environment: GPUBENCH_ARGS adds arguments to gpubench ("--quick" runs the tiny sizes, to try
# the script on a CPU machine; "--only attention,softmax" reruns some groups); SKIP_TORCH=1
# leaves PyTorch out (only for a rerun of ours: ratios need both from one run).
# Unpacks the carried Vulkan loader (.gl/*.deb), points Vulkan at the NVIDIA ICD if none is
# registered, runs the prebuilt gpubench (checks + timings of our kernels), then PyTorch's
# reference figures on the same card, then prints both side by side (compare.py).
# Writes under $OUT (or /tmp/gpubench-out): env.txt, gpubench.jsonl, gpubench.log,
# torch_ref.jsonl, torch_ref.log, compare.md. Expected to take 2-4 minutes; the two programs
# are killed at 300 s and 180 s so that the whole script ends within 8 minutes.
set -uo pipefail

BIN=${1:-.gpubench/gpubench}
OUT=${OUT:-/tmp/gpubench-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

if ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
    echo "run.sh: no Vulkan loader (libvulkan.so.1): carry .gl (see benches/gpu/README.md)" >&2
fi
# An NVIDIA ICD registered in the usual places? Else use the driver's own file.
NV_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$NV_ICD" ] &&
    ! grep -qsil nvidia /etc/vulkan/icd.d/*.json /usr/share/vulkan/icd.d/*.json \
        /usr/local/share/vulkan/icd.d/*.json; then
    export VK_DRIVER_FILES=$NV_ICD
fi
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}

{
    date -u +"date: %Y-%m-%dT%H:%M:%SZ"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
        --format=csv
} 2>&1 | tee "$OUT/env.txt"

echo "== gpubench ($BIN)"
if [ -x "$BIN" ]; then
    # GPUBENCH_ARGS: extra arguments (e.g. --quick, or --only attention to rerun one group).
    # shellcheck disable=SC2086
    timeout 300 "$BIN" ${GPUBENCH_ARGS:-} 2> >(tee "$OUT/gpubench.log" >&2) | tee "$OUT/gpubench.jsonl"
    echo "gpubench exit status: ${PIPESTATUS[0]}"
else
    echo "run.sh: no executable at $BIN (build it and carry it, see benches/gpu/README.md)" >&2
    : >"$OUT/gpubench.jsonl"
fi
sleep 1 # let the log tee finish

if [ -n "${SKIP_TORCH:-}" ]; then
    echo "== torch_ref.py skipped (SKIP_TORCH)"
    : >"$OUT/torch_ref.jsonl"
else
    echo "== torch_ref.py"
    timeout 180 python3 benches/gpu/torch_ref.py 2> >(tee "$OUT/torch_ref.log" >&2) |
        tee "$OUT/torch_ref.jsonl"
    echo "torch_ref exit status: ${PIPESTATUS[0]}"
    sleep 1
fi

echo "== ours vs PyTorch (same card, same run)"
python3 benches/gpu/compare.py "$OUT/gpubench.jsonl" "$OUT/torch_ref.jsonl" | tee "$OUT/compare.md"
