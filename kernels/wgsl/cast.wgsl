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
// upper half of the last word is padding, written as 0.

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

// Round-to-nearest-even increment: 1 when the dropped bits `rest` exceed `tie` (half their unit),
// or equal it and the kept value `q` is odd.
fn round_up(q: u32, rest: u32, tie: u32) -> u32 {
    return select(0u, 1u, rest > tie || (rest == tie && (q & 1u) == 1u));
}

// IEEE binary32 bits -> binary16 bits (in the low 16 bits).
fn f16_bits(b: u32) -> u32 {
    let sign = (b >> 16u) & 0x8000u;
    let e = (b >> 23u) & 0xffu;
    let man = b & 0x7fffffu;
    if (e == 0xffu) {
        // inf stays inf; NaN keeps its top payload bits and is made quiet
        return sign | 0x7c00u | select(0x200u | (man >> 13u), 0u, man == 0u);
    }
    if (e >= 143u) {
        return sign | 0x7c00u; // |x| >= 2^16: beyond f16's range even before rounding
    }
    if (e >= 113u) {
        // normal f16, biased exponent e - 112 in [1, 30]; a carry out of the mantissa
        // moves to the next binade, and from 65504 + half an ulp up to inf, as IEEE says
        let q = ((e - 112u) << 10u) | (man >> 13u);
        return sign | (q + round_up(q, man & 0x1fffu, 0x1000u));
    }
    if (e < 102u) {
        return sign; // |x| < 2^-25, half of the smallest subnormal: rounds to zero
    }
    // subnormal f16: |x| = m * 2^(e - 150) with the implicit bit in m, in units of 2^-24
    // that is m >> (126 - e); a carry may produce the smallest normal, which is right
    let m = man | 0x800000u;
    let shift = 126u - e; // 14 ..= 24
    let q = m >> shift;
    let rest = m & ((1u << shift) - 1u);
    return sign | (q + round_up(q, rest, 1u << (shift - 1u)));
}

// IEEE binary16 bits (low 16 bits of h) -> binary32 bits; exact (NaNs come out quiet).
fn f32_bits(h: u32) -> u32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let man = h & 0x3ffu;
    if (e == 0x1fu) {
        // inf stays inf; NaN keeps its payload and is made quiet
        return sign | 0x7f800000u | select(0x400000u | (man << 13u), 0u, man == 0u);
    }
    if (e != 0u) {
        return sign | ((e + 112u) << 23u) | (man << 13u);
    }
    if (man == 0u) {
        return sign;
    }
    // subnormal: man * 2^-24 = 2^(top - 24) * 1.f where top is man's leading bit
    let top = firstLeadingBit(man);
    return sign | ((top + 103u) << 23u) | ((man << (23u - top)) & 0x7fffffu);
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
