// Rotary position embedding, HF's rotate-half convention, on a contiguous f32 tensor seen as
// (outer, seq_len, head_dim) (outer = batch * heads), one invocation per rotated pair (i, i + h),
// h = head_dim / 2, 256 per workgroup over a 2-D grid (wid.y * nwg.x + wid.x).
//
//   rope  out[.., i]     = x[.., i] cos(a) - x[.., i + h] sin(a) * sign
//         out[.., i + h] = x[.., i + h] cos(a) + x[.., i] sin(a) * sign
//         a = f32(pos[(o / group) * seq_len + t]) * inv_freq[i]   (f32 product, as HF)
//         bindings: 1 x (outer, seq_len, head_dim), 2 pos (u32), 3 inv_freq (h), 4 out
//
// sign = -1 rotates by -a: the backward. `group` is how many consecutive outer rows share one
// row of positions (heads, for positions (batch, seq_len); outer, for positions (seq_len)).
//
// sin_cos comes from rotary_math.wgsl (appended).

struct Params {
    pairs: u32,
    seq_len: u32,
    half: u32,
    group: u32,
    sign: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> r_x: array<f32>;
@group(0) @binding(2) var<storage, read> r_pos: array<u32>;
@group(0) @binding(3) var<storage, read> r_inv_freq: array<f32>;
@group(0) @binding(4) var<storage, read_write> r_out: array<f32>;

@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (e >= p.pairs) { return; }
    let i = e % p.half;
    let row = e / p.half;
    let t = row % p.seq_len;
    let o = row / p.seq_len;
    let pos = r_pos[(o / p.group) * p.seq_len + t];
    let sc = sin_cos(f32(pos) * r_inv_freq[i]);
    let sn = sc.x * p.sign;
    let base = row * 2u * p.half + i;
    let x1 = r_x[base];
    let x2 = r_x[base + p.half];
    r_out[base] = x1 * sc.y - x2 * sn;
    r_out[base + p.half] = x2 * sc.y + x1 * sn;
}
