// Layout kernels on 32-bit elements (f32 or u32 bits): a strided gather copy, which
// implements permute, narrow (slice) and concatenation; 256 invocations per workgroup, one
// output element each, over a 2-D grid.
//
//   gather   out[i] = src[offset + sum_d coord_d(i) * stride_d]   bindings: 1 src, 2 out
//   scatter  dst[dst_offset + sum_d coord_d(i) * dst_stride_d] = src[i]
//                                                                 bindings: 3 src, 4 dst
//   gather_f16  gather from f32 `src`, written as f16 words (IEEE round to nearest even, as
//               the f32 -> f16 cast): out word k = f16(2k) | f16(2k + 1) << 16, one invocation
//               per word                                          bindings: 1 src, 5 out
//               (f16_bits: f16_bits.wgsl, appended)
//
// `dims` is the iteration shape (innermost last, at most 8 dims after collapsing), `strides`
// the element strides into the strided side, `offset` its first element. `n` is the number
// of elements of the iteration shape.

struct Params {
    n: u32,
    rank: u32,
    offset: u32,
    _pad: u32,
    dims: array<vec4<u32>, 2>,
    strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g_src: array<u32>;
@group(0) @binding(2) var<storage, read_write> g_out: array<u32>;
@group(0) @binding(3) var<storage, read> s_src: array<u32>;
@group(0) @binding(4) var<storage, read_write> s_dst: array<u32>;
@group(0) @binding(5) var<storage, read_write> g_out16: array<u32>;

fn at(v: array<vec4<u32>, 2>, i: u32) -> u32 {
    return v[i / 4u][i % 4u];
}

fn strided_index(i: u32) -> u32 {
    var rem = i;
    var idx = p.offset;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let dim = at(p.dims, u32(d));
        idx += (rem % dim) * at(p.strides, u32(d));
        rem = rem / dim;
    }
    return idx;
}

@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.n) { return; }
    g_out[i] = g_src[strided_index(i)];
}

@compute @workgroup_size(256)
fn gather_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let k = (wid.y * nwg.x + wid.x) * 256u + lid;
    let i = 2u * k;
    if (i >= p.n) { return; }
    let lo = f16_bits(g_src[strided_index(i)]);
    var hi = 0u;
    if (i + 1u < p.n) {
        hi = f16_bits(g_src[strided_index(i + 1u)]);
    }
    g_out16[k] = lo | (hi << 16u);
}

@compute @workgroup_size(256)
fn scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.n) { return; }
    s_dst[strided_index(i)] = s_src[i];
}
