#!/usr/bin/env bash
# Prepare the continuum experiment's GPU run through the device tool (examples/continuum/
# README.md, "On a GPU machine"). The model cannot be fetched there and one call carries at
# most 64 MiB, so the model folder travels as parts, one per call, into the same warm machine.
#   bash examples/continuum/gpu/stage.sh MODEL_DIR [PART_MIB]
# On this machine: builds trainer and continuum (release), then writes, under .stage/ (ignored):
#   bin/trainer, bin/continuum    the binaries (about 22 MB: carried with the first call)
#   manifest                      the model's folder name, the number of parts, their sha256
#   parts/part-NN                 the model folder as a gzip'd tar (bf16 weights shrink ~20%)
#                                 cut into PART_MIB pieces (default 56, which leaves room for
#                                 the ~5 MB working tree in 64 MiB)
# and prints the calls to make.
set -euo pipefail
MODEL_DIR=${1:?usage: stage.sh MODEL_DIR [PART_MIB]}
PART_MIB=${2:-56}
[ -f "$MODEL_DIR/config.json" ] || { echo "stage.sh: $MODEL_DIR has no config.json" >&2; exit 2; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --release -p trainer -p continuum
rm -rf .stage
mkdir -p .stage/bin .stage/parts
cp "$CARGO_TARGET_DIR"/release/{trainer,continuum} .stage/bin/
name=$(basename "$(cd "$MODEL_DIR" && pwd)")
tar -C "$(dirname "$(cd "$MODEL_DIR" && pwd)")" -cf - "$name" | gzip -1 >.stage/model.tar.gz
sum=$(sha256sum .stage/model.tar.gz | cut -d' ' -f1)
split -b "${PART_MIB}M" -d -a 2 .stage/model.tar.gz .stage/parts/part-
rm .stage/model.tar.gz
n=$(ls .stage/parts | wc -l)
printf 'name=%s\nparts=%s\nsha256=%s\n' "$name" "$n" "$sum" >.stage/manifest
grep -qx '/.stage/' .gitignore || echo "stage.sh: add /.stage/ to .gitignore" >&2
echo "staged $name: $n parts of ${PART_MIB} MiB in .stage/parts"
echo "calls (device tool run, one machine kept warm: each within 30 s of the last):"
echo "  1: carry [\".gl\", \".stage/bin\", \".stage/manifest\"], command: bash examples/continuum/gpu/run.sh"
for ((i = 0; i < n; i++)); do
    printf '  %d: carry [".stage/parts/part-%02d"], command: bash examples/continuum/gpu/run.sh\n' \
        $((i + 2)) "$i"
done
echo "the last part's call runs the experiment (timeout_s 540); then give_back."
