// f32 <-> f16 casts done on the bit patterns with integer arithmetic only, 256 invocations per
// workgroup over a 2-D grid (linear workgroup index = wid.y * nwg.x + wid.x).
//
//   f32_to_f16  dst word w = f16(src[2w]) | f16(src[2w+1]) << 16   bindings: 1 src (n f32 as u32), 2 dst (ceil(n/2) u32)
//   f16_to_f32  dst[i] = f32(half i of src word i/2)                bindings: 3 src (ceil(n/2) u32), 4 dst (n f32 as u32)
//
// Why integers and not `f16(x)`: WGSL leaves the rounding of a runtime f32 -> f16 conversion
// to the implementation, makes overflow an indeterminate value, and Vulkan lets drivers flush
// f16 denormals. Bit arithmetic gives IEEE round-to-nearest-even, +-inf on overflow, kept
// subnormals, signed zeros and NaN payloads (as the `half` crate does) on every adapter, and
// needs no SHADER_F16. An f16 tensor of n elements occupies ceil(n/2) words; for odd n the
// upper half of the last word is padding, written as 0. f16_bits / f32_bits: f16_bits.wgsl
// (appended).

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> narrow_src: array<u32>;
@group(0) @binding(2) var<storage, read_write> narrow_dst: array<u32>;
@group(0) @binding(3) var<storage, read> widen_src: array<u32>;
@group(0) @binding(4) var<storage, read_write> widen_dst: array<u32>;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn f32_to_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let w = linear_id(wid, nwg, lid);
    let i = 2u * w;
    if (i >= p.n) { return; }
    let lo = f16_bits(narrow_src[i]);
    var hi = 0u;
    if (i + 1u < p.n) {
        hi = f16_bits(narrow_src[i + 1u]);
    }
    narrow_dst[w] = lo | (hi << 16u);
}

@compute @workgroup_size(256)
fn f16_to_f32(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    let word = widen_src[i / 2u];
    widen_dst[i] = f32_bits((word >> (16u * (i % 2u))) & 0xffffu);
}
