#!/usr/bin/env bash
# Everything a GPU session needs before its one device call, done on the CPU machine (no
# device time): the Vulkan loader the GPU machine lacks into .gl/, gpubench and trainbench
# built into .gpubench/, and (unless PREPARE_NO_TRY is set) a rehearsal of both on Mesa 26's
# lavapipe, whose cooperative matrices put them on the paths a GPU with tensor cores takes.
# Both folders are ignored by git and carried by the call (benches/gpu/README.md).
#   bash benches/gpu/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

# 1. The loader and its GL neighbours as amd64 .debs (apt with a state of its own: no root
#    needed for the download, the system's lists untouched).
debs=(libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
    state=$(mktemp -d)
    mkdir -p .gl "$state/lists/partial" "$state/cache/partial"
    o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$state/lists"
        "-oDir::Cache=$state/cache" -oDebug::NoLocking=1)
    apt-get "${o[@]}" -qq update
    (cd .gl && apt-get "${o[@]}" -qq download "${debs[@]}")
    rm -rf "$state"
fi
echo "prepare.sh: .gl holds $(ls .gl/*.deb | wc -l) packages ($(du -sh .gl | cut -f1))"

# 2. The two programs, x86-64 release builds.
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p benches --bin gpubench --bin trainbench
mkdir -p .gpubench
cp "$target/release/gpubench" "$target/release/trainbench" .gpubench/
echo "prepare.sh: .gpubench holds gpubench and trainbench ($(du -sh .gpubench | cut -f1))"

# 3. The rehearsal: each program's checks at their full check sizes, on cooperative matrices.
if [ -z "${PREPARE_NO_TRY:-}" ]; then
    coop=$(bash scripts/lavapipe_coop.sh)
    lib=$coop/root/usr/lib/x86_64-linux-gnu
    # Each program's JSON lines go to a file, shown when it fails (it exits 1 on a failed
    # check or a figure it could not make).
    try() {
        local out
        out=/tmp/prepare-$(basename "$1").jsonl
        VK_DRIVER_FILES=$coop/lvp_icd.json TRAINER_REQUIRE_COOP=1 \
            "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$@" >"$out" ||
            { cat "$out"; echo "prepare.sh: $1 failed on lavapipe (rows above)" >&2; exit 1; }
    }
    try .gpubench/gpubench --quick --full-checks
    try .gpubench/trainbench --smoke
    echo "prepare.sh: both programs passed their checks on lavapipe's cooperative matrices"
fi
size=$(du -cs .gl .gpubench | tail -1 | cut -f1)
echo "prepare.sh: ready; the call carries .gl and .gpubench (${size} KiB of the 64 MiB):"
echo "  run(command=\"bash benches/gpu/run.sh .gpubench/gpubench .gpubench/trainbench\","
echo "      carry=[\".gl\", \".gpubench\"], timeout_s=540), then give_back"
