# Sourced by the scripts a GPU machine runs (benches/gpu/run.sh, examples/continuum/gpu/run.sh):
# unpack the carried Vulkan loader (.gl/*.deb, see benches/gpu/README.md), point Vulkan at the
# NVIDIA driver's ICD when none is registered, and pick the Vulkan backend.
if ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
    echo "vulkan_env.sh: no Vulkan loader (libvulkan.so.1): carry .gl (see benches/gpu/README.md)" >&2
fi
# An NVIDIA ICD registered in the usual places? Else use the driver's own file.
NV_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$NV_ICD" ] &&
    ! grep -qsil nvidia /etc/vulkan/icd.d/*.json /usr/share/vulkan/icd.d/*.json \
        /usr/local/share/vulkan/icd.d/*.json; then
    export VK_DRIVER_FILES=$NV_ICD
fi
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan} XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
