#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks to build and run the project:
# a Vulkan driver (Mesa's lavapipe runs our WGSL kernels on the CPU where there is no GPU).
set -euo pipefail
need=()
ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || need+=(mesa-vulkan-drivers)
ldconfig -p | grep -q libvulkan.so.1 || need+=(libvulkan1)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  echo "setup: installed ${need[*]}"
fi
# The real test models are converted from GGUF with numpy and gguf (scripts/fetch_models.py).
python3 -c "import numpy, gguf" 2>/dev/null || python3 -m pip install -q --root-user-action=ignore numpy gguf
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust from rustup.rs" >&2; exit 1; }
