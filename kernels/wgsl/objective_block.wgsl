// The f16 path of the fused LM head + objective (see objective.wgsl for the math and the
// layouts of `part` and `saved`): the logits of a block of vocabulary rows,
// z = x W[block]^T (n, len) f32, come from the matmul kernels (cooperative matrices where the
// adapter has them, f16 inputs, f32 accumulation), and these kernels do the rest.
//
//   blk_stats  one workgroup per token (grid over n): the block's running (max, rest) and the
//              target logit (LOWEST when the target is not in the block) into the partials at
//              split `split` (written when `fresh`, else merged into what an earlier block
//              left there: the blocks share s_total splits, and dispatches run in order)
//              bindings: 1 z (n, len) f32, 2 targets (n) u32, 3 part (3, s_total, n) f32
//   blk_scale  one workgroup: with c_i = grad w_i / den the logit-gradient weight of token i
//              (w_i = saved_i, den the denominator) and W = max |w_i|, the power of two
//              S = 2^e that brings C = W |grad| / den into [2^13, 2^14) (e within +-126):
//              scale = (K, 1 / S, W) with K = sign(grad) C S, so that S c_i = (w_i / W) K
//              is formed without overflow or underflow; (0, 1, 1) when nothing is kept
//              bindings: 9 saved, 10 grad, 11 scale (3) f32
//   blk_dz     dz = S c_i (softmax - onehot) of the block in f16, the input of the dW and dx
//              products (at the target, p - 1 = expm1(log p), accurate also when p is near 1);
//              |dz| <= S max |c_i| < 2^14 never overflows f16, and the scale keeps the small
//              gradients of improbable tokens out of f16's subnormals
//              bindings: 4 z, 5 targets, 6 saved (3n + 1) f32, 7 scale (3) f32,
//              8 dz (n, len) f16
//   blk_unscale  t *= 1 / S over `n` elements, in place (dx and dW after the products)
//              bindings: 12 t f32, 13 scale
//
// `v_start` is the vocabulary id of the block's first row. LOWEST, online, merge and expm1 are
// in objective_math.wgsl, appended to this file.

enable f16;

struct Params {
    n: u32,
    len: u32,
    v_start: u32,
    split: u32,
    s_total: u32,
    fresh: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> s_z: array<f32>;
@group(0) @binding(2) var<storage, read> s_tgt: array<u32>;
@group(0) @binding(3) var<storage, read_write> s_part: array<f32>;

@group(0) @binding(4) var<storage, read> d_z: array<f32>;
@group(0) @binding(5) var<storage, read> d_tgt: array<u32>;
@group(0) @binding(6) var<storage, read> d_saved: array<f32>;
@group(0) @binding(7) var<storage, read> d_scale: array<f32>;
@group(0) @binding(8) var<storage, read_write> d_dz: array<f16>;

@group(0) @binding(9) var<storage, read> c_saved: array<f32>;
@group(0) @binding(10) var<storage, read> c_grad: array<f32>;
@group(0) @binding(11) var<storage, read_write> c_scale: array<f32>;

@group(0) @binding(12) var<storage, read_write> u_t: array<f32>;
@group(0) @binding(13) var<storage, read> u_scale: array<f32>;

const WG: u32 = 256u;

var<workgroup> red_m: array<f32, WG>;
var<workgroup> red_r: array<f32, WG>;
var<workgroup> red_t: array<f32, WG>;

@compute @workgroup_size(256)
fn blk_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.n) { return; }
    // The target's column in this block, or past it.
    let tgt = s_tgt[row];
    var col_t = p.len;
    if (tgt >= p.v_start && tgt - p.v_start < p.len) { col_t = tgt - p.v_start; }
    let base = row * p.len;
    var st = vec2<f32>(LOWEST, 0.0);
    var tl = LOWEST;
    for (var j = lid; j < p.len; j += WG) {
        let z = s_z[base + j];
        st = online(st, z, true);
        if (j == col_t) { tl = z; }
    }
    red_m[lid] = st.x;
    red_r[lid] = st.y;
    red_t[lid] = tl;
    for (var span = WG / 2u; span > 0u; span >>= 1u) {
        workgroupBarrier();
        if (lid < span) {
            let m = merge(vec2<f32>(red_m[lid], red_r[lid]),
                          vec2<f32>(red_m[lid + span], red_r[lid + span]));
            red_m[lid] = m.x;
            red_r[lid] = m.y;
            red_t[lid] = max(red_t[lid], red_t[lid + span]);
        }
    }
    if (lid == 0u) {
        let at = vec3<u32>(p.split, p.s_total + p.split, 2u * p.s_total + p.split) * p.n + row;
        var st = vec2<f32>(red_m[0], red_r[0]);
        var t = red_t[0];
        if (p.fresh == 0u) {
            st = merge(vec2<f32>(s_part[at.x], s_part[at.y]), st);
            t = max(t, s_part[at.z]);
        }
        s_part[at.x] = st.x;
        s_part[at.y] = st.y;
        s_part[at.z] = t;
    }
}

@compute @workgroup_size(256)
fn blk_dz(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * nwg.x + wid.x) * WG + lid;
    if (e >= p.n * p.len) { return; }
    let row = e / p.len;
    let col = e % p.len;
    let c = d_saved[row] / d_scale[2] * d_scale[0];
    var v: f32;
    if (p.v_start + col == d_tgt[row]) {
        v = c * expm1(d_saved[2u * p.n + row]);
    } else {
        v = c * exp(d_z[e] - d_saved[p.n + row]);
    }
    d_dz[e] = f16(v);
}

@compute @workgroup_size(256)
fn blk_scale(@builtin(local_invocation_index) lid: u32) {
    let den = c_saved[3u * p.n];
    var big = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        big = max(big, abs(c_saved[i]));
    }
    red_m[lid] = big;
    for (var span = WG / 2u; span > 0u; span >>= 1u) {
        workgroupBarrier();
        if (lid < span) {
            red_m[lid] = max(red_m[lid], red_m[lid + span]);
        }
    }
    if (lid == 0u) {
        let g = c_grad[0];
        let w = red_m[0];
        var k = 0.0;
        var inv = 1.0;
        var wmax = 1.0;
        if (den != 0.0 && w != 0.0) {
            wmax = w;
            let mc = w * abs(g) / den;
            if (mc > 0.0 && mc <= 3.4e38) {
                // mc = f 2^x with f in [0.5, 1): S = 2^(14 - x) puts mc S in [2^13, 2^14).
                let e = clamp(14 - frexp(mc).exp, -126, 126);
                k = sign(g) * ldexp(mc, e);
                inv = ldexp(1.0, -e);
            } else {
                // Infinite or NaN (an overflowed gradient): passed on, so the step is skipped.
                k = sign(g) * mc;
            }
        }
        c_scale[0] = k;
        c_scale[1] = inv;
        c_scale[2] = wmax;
    }
}

@compute @workgroup_size(256)
fn blk_unscale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.n) { return; }
    u_t[i] = u_t[i] * u_scale[1];
}
