// The fused q/k/v projection split into attention heads, with rotary embedding on the way, and
// the way back for the gradient: one pass over the data instead of a permute, three slices and
// two rope passes.
//
// The fused product x (B, T, total, D) holds each token's heads side by side ([q | k | v]). One
// dispatch moves the `heads` heads from head `head0` on, in layout (B, heads, T, D), rotating
// each pair (i, i + h), h = D / 2, by the angle a = f32(pos) * inv_freq[i] (HF's rotate-half
// convention, f32 product as HF) when `rotate` is 1, copying when it is 0:
//
//   heads       out[b, n, t, i]     = x[b, t, head0 + n, i] cos(a) - x[.., i + h] sin(a)
//               out[b, n, t, i + h] = x[.., i + h] cos(a) + x[.., i] sin(a)
//   heads_f16   heads written as f16 words (IEEE round to nearest even, as the f32 -> f16 cast),
//               one invocation per two neighbouring pairs (i, i + 1 even-aligned), for an even h
//   heads_back  the transpose for the gradient: g (B, heads, T, D) rotated by -a into those
//               heads of dx (B, T, total, D); the calls for all groups together cover dx.
//
// pos is (T) shared by every batch row (pos_batch = 0) or (B, T) (pos_batch = T). One
// invocation per pair, 256 per workgroup over a 2-D grid (wid.y * nwg.x + wid.x).
// Bindings: 1 src, 2 pos (u32), 3 inv_freq (h), 4 dst (5 for heads_f16: u32 words).
// sin_cos: rotary_math.wgsl, f16_word: f16_bits.wgsl (both appended).

struct Params {
    pairs: u32,
    seq_len: u32,
    half: u32,
    heads: u32,
    total: u32,
    head0: u32,
    pos_batch: u32,
    rotate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> h_src: array<f32>;
@group(0) @binding(2) var<storage, read> h_pos: array<u32>;
@group(0) @binding(3) var<storage, read> h_inv_freq: array<f32>;
@group(0) @binding(4) var<storage, read_write> h_dst: array<f32>;
@group(0) @binding(5) var<storage, read_write> h_dst16: array<u32>;

// Pair e: (index in the heads layout, index in the fused layout, (sin, cos) of its angle).
struct Pair {
    heads: u32,
    fused: u32,
    sc: vec2<f32>,
}

fn pair(e: u32) -> Pair {
    let i = e % p.half;
    let r = e / p.half; // (b, n, t) row of the heads layout
    let t = r % p.seq_len;
    let bn = r / p.seq_len;
    let n = bn % p.heads;
    let b = bn / p.heads;
    var out: Pair;
    out.heads = r * 2u * p.half + i;
    out.fused = ((b * p.seq_len + t) * p.total + p.head0 + n) * 2u * p.half + i;
    out.sc = vec2<f32>(0.0, 1.0);
    if (p.rotate != 0u) {
        out.sc = sin_cos(f32(h_pos[b * p.pos_batch + t]) * h_inv_freq[i]);
    }
    return out;
}

// The pair (x1, x2) at q rotated by its angle (or kept, when not rotating).
fn turn(q: Pair, x1: f32, x2: f32) -> vec2<f32> {
    if (p.rotate == 0u) {
        return vec2<f32>(x1, x2);
    }
    return vec2<f32>(x1 * q.sc.y - x2 * q.sc.x, x2 * q.sc.y + x1 * q.sc.x);
}

@compute @workgroup_size(256)
fn heads(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (e >= p.pairs) { return; }
    let q = pair(e);
    let y = turn(q, h_src[q.fused], h_src[q.fused + p.half]);
    h_dst[q.heads] = y.x;
    h_dst[q.heads + p.half] = y.y;
}

@compute @workgroup_size(256)
fn heads_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = 2u * ((wid.y * nwg.x + wid.x) * 256u + lid);
    if (e >= p.pairs) { return; }
    // Pairs i and i + 1 (i even) of one row: their first elements share a word, as do their
    // second ones (h is even).
    let qa = pair(e);
    let qb = pair(e + 1u);
    let a = turn(qa, h_src[qa.fused], h_src[qa.fused + p.half]);
    let b = turn(qb, h_src[qb.fused], h_src[qb.fused + p.half]);
    let w = qa.heads / 2u;
    h_dst16[w] = f16_word(a.x, b.x);
    h_dst16[w + p.half / 2u] = f16_word(a.y, b.y);
}

@compute @workgroup_size(256)
fn heads_back(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (e >= p.pairs) { return; }
    let q = pair(e);
    // R(-a) g: the pair turned by the negated angle.
    let back = Pair(q.heads, q.fused, vec2<f32>(-q.sc.x, q.sc.y));
    let dx = turn(back, h_src[q.heads], h_src[q.heads + p.half]);
    h_dst[q.fused] = dx.x;
    h_dst[q.fused + p.half] = dx.y;
}
