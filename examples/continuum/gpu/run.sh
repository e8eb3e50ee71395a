#!/usr/bin/env bash
# The command of every device call of the continuum GPU run (see stage.sh): while parts of the
# model are missing it says how many it has and exits 0; once all are there it checks and
# unpacks the model, then runs the experiment with the README's GPU settings and leaves
# results.json, results.md, results.svg and run.log in $OUT.
#   bash examples/continuum/gpu/run.sh
# CONTINUUM_ARGS replaces the run's sizes (default: the README's GPU settings).
set -uo pipefail
OUT=${OUT:-/tmp/continuum-out}
mkdir -p "$OUT"
[ -f .stage/manifest ] || { echo "run.sh: no .stage/manifest: carry it with the first call" >&2; exit 2; }
# shellcheck disable=SC1091
. .stage/manifest
have=$(ls .stage/parts 2>/dev/null | wc -l)
if [ "$have" -lt "$parts" ]; then
    echo "run.sh: $have of $parts model parts here; waiting for the rest"
    exit 0
fi
model=/tmp/continuum-model/$name
if [ ! -f "$model/config.json" ]; then
    got=$(cat .stage/parts/part-* | sha256sum | cut -d' ' -f1)
    if [ "$got" != "$sha256" ]; then
        echo "run.sh: the parts' sha256 is $got, the manifest's $sha256" >&2
        exit 1
    fi
    mkdir -p /tmp/continuum-model
    cat .stage/parts/part-* | gunzip | tar -x -C /tmp/continuum-model
fi
# shellcheck source=benches/gpu/vulkan_env.sh
. benches/gpu/vulkan_env.sh
nvidia-smi -L 2>&1 | tee "$OUT/run.log"
set -x
# shellcheck disable=SC2086
.stage/bin/continuum run --trainer .stage/bin/trainer --model "$model" --out /tmp/continuum \
    ${CONTINUUM_ARGS:---train 512 --test 64 --steps 32 --batch-size 16 --lr 5e-5 \
    --max-new-tokens 48 --label-noise 0.2} 2>&1 | tee -a "$OUT/run.log"
rc=${PIPESTATUS[0]}
set +x
cp /tmp/continuum/results.{json,md,svg} "$OUT"/ 2>/dev/null
echo "run.sh: continuum exited $rc"
exit "$rc"
