#!/usr/bin/env bash
# Mesa's newest lavapipe (Debian unstable's mesa-vulkan-drivers, with its own libc and LLVM),
# unpacked under ~/.cache without touching the system. Its software Vulkan offers
# VK_KHR_cooperative_matrix (8x8x8 f16 -> f32), so the cooperative-matrix kernels run, and are
# tested, on a CPU. Prints the folder: its lvp_icd.json is the driver (VK_DRIVER_FILES), and
# test binaries run through its loader, root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
# --library-path root/usr/lib/x86_64-linux-gnu (scripts/test.sh does both).
set -euo pipefail
dir="${TRAINER_LAVAPIPE_COOP:-$HOME/.cache/trainer/lavapipe-coop}"
lib="$dir/root/usr/lib/x86_64-linux-gnu"
if [ ! -s "$dir/lvp_icd.json" ]; then
  rm -rf "$dir"
  mkdir -p "$dir"/{lists/partial,archives/partial,cache}
  echo "deb http://deb.debian.org/debian sid main" >"$dir/sources.list"
  : >"$dir/status"
  # A private apt state: an empty status makes apt fetch the whole dependency closure.
  apt=(apt-get -q -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::State::Lists="$dir/lists" -o Dir::State::Status="$dir/status"
    -o Dir::Cache="$dir/cache" -o Dir::Cache::Archives="$dir/archives"
    -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)" -o APT::Install-Recommends=false)
  "${apt[@]}" update >/dev/null
  "${apt[@]}" -y --download-only install mesa-vulkan-drivers libvulkan1 >/dev/null
  for deb in "$dir"/archives/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
  rm -rf "$dir"/archives "$dir"/lists "$dir"/cache
  sed "s#\"library_path\": \"[^\"]*\"#\"library_path\": \"$lib/libvulkan_lvp.so\"#" \
    "$dir/root/usr/share/vulkan/icd.d/lvp_icd.json" >"$dir/lvp_icd.json"
fi
echo "$dir"
