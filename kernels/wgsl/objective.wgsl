// The fused LM head + probability-based objective (arXiv 2510.00526): per token i, logits
// z_i = W x_i over a vocabulary split into row chunks, log p_i = z_i[t_i] - logsumexp(z_i), a
// per-token loss l(log p_i) and the token mean over the loss mask, and the backward, without
// ever holding the N x V logits in memory.
//
//   obj_fwd      grid (splits of this chunk, ceil(N / 64))   bindings: 1 x, 2 w, 3 targets, 4 part
//   obj_finish   one workgroup                               bindings: 5 part, 6 targets, 7 mask,
//                                        8 thr, 9 log_p, 10 token_loss, 11 saved, 12 loss
//   obj_logp     grid over N / 256                            bindings: 13 part, 14 targets, 15 log_p
//   obj_dlogits  grid (ceil(vb / 64), ceil(N / 64))           bindings: 16 x, 17 w, 18 targets,
//                                        19 saved, 20 grad, 21 dz
//   obj_mm       grid (ceil(mm_n / 64), ceil(mm_m / 64))      bindings: 22 a, 23 b, 24 c
//
// Shapes (row-major f32 unless said): x (N, d); w one chunk (rows, d) whose row r is vocabulary
// id v_off + r; targets (N) u32; mask, thr, log_p, token_loss (N); part (3, s_total, N): per
// (split, token) the max m, the rest r = sum of exp(z - m) less the max's own 1, and the target
// logit (LOWEST where the target is not in the split); saved (3N + 1): the gradient weight of
// each token, its log-sum-exp, its log p, and the denominator sum of kept mask weights; loss
// and grad (1); dz (N, vb): the logit gradient of a block of vb chunk rows starting at blk0.
// Keeping r rather than 1 + r gives log p = (t - m) - log1p(r) to f32 accuracy also when p is
// within 1e-7 of 1 (where 1 + r rounds to 1).
//
// obj_fwd: each workgroup owns 64 tokens and `split_tiles` 64-row vocabulary tiles of one chunk.
// Each logit tile is a register-tiled product (as matmul.wgsl: 128 invocations, 8 x 4 logits
// each, d advancing 16 at a time through workgroup memory, the next slab prefetched into
// registers); the invocation folds its logits into a running (max, rest) per row, and
// the 16 invocations sharing rows merge their states at the end through workgroup memory.
// obj_finish merges the splits of every token, evaluates the objective (`kind`, see
// `objective`), writes the per-token outputs and the token-mean loss (0 when nothing is kept).
// obj_dlogits recomputes a block of logits and writes dz = c_i (softmax - onehot) with
// c_i = grad * saved[i] / denominator. obj_mm is C (+)= op(A) B with B (K, N) row-major at
// b_off and C (M, N) at c_off: dW rows = dz^T x (TRANS_A) and dx += dz W_block.
// Why blocks of dz: with no float atomics, a kernel that recomputed logit tiles and added into
// dx and dW would need each output tile to own the full hidden size (too many registers at
// d = 1536) or to recompute the logits d / 64 times; one (N, vb) block of dz (vb <= 4096,
// N * vb <= 2^24, chosen by the launcher) lets dW (each workgroup owning W rows, looping over
// tokens) and dx (each owning tokens, looping over the block's vocabulary) be plain
// register-tiled products, with the logits computed once in the forward and once here.
// Edge tiles: loads past the sizes read zero, stores past them are skipped.
// LOWEST, online, merge and expm1 are in objective_math.wgsl, appended to this file.

struct Params {
    n: u32,
    d: u32,
    // Rows of the chunk and the vocabulary id of its first row.
    rows: u32,
    v_off: u32,
    // obj_fwd: vocabulary tiles per split, this chunk's first split, splits over all chunks.
    split_tiles: u32,
    s_base: u32,
    s_total: u32,
    // Vocabulary size over all chunks (targets at or past it are never kept).
    v_total: u32,
    // obj_dlogits: the block's first chunk row and its number of rows (dz's row stride).
    blk0: u32,
    vb: u32,
    // obj_finish: objective kind, flags (1 keep_above, 2 threshold loss is -log p, 4 thr given),
    // alpha (f_alpha) or q (-p^q/q), and the threshold q.
    kind: u32,
    flags: u32,
    alpha: f32,
    thr_q: f32,
    // obj_mm: C (M, N) (+)= op(A) (M, K) @ B (K, N).
    mm_m: u32,
    mm_n: u32,
    mm_k: u32,
    b_off: u32,
    c_off: u32,
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> f_x: array<f32>;
@group(0) @binding(2) var<storage, read> f_w: array<f32>;
@group(0) @binding(3) var<storage, read> f_tgt: array<u32>;
@group(0) @binding(4) var<storage, read_write> f_part: array<f32>;

@group(0) @binding(5) var<storage, read> s_part: array<f32>;
@group(0) @binding(6) var<storage, read> s_tgt: array<u32>;
@group(0) @binding(7) var<storage, read> s_mask: array<f32>;
@group(0) @binding(8) var<storage, read> s_thr: array<f32>;
@group(0) @binding(9) var<storage, read_write> s_logp: array<f32>;
@group(0) @binding(10) var<storage, read_write> s_tok: array<f32>;
@group(0) @binding(11) var<storage, read_write> s_saved: array<f32>;
@group(0) @binding(12) var<storage, read_write> s_loss: array<f32>;

@group(0) @binding(13) var<storage, read> l_part: array<f32>;
@group(0) @binding(14) var<storage, read> l_tgt: array<u32>;
@group(0) @binding(15) var<storage, read_write> l_logp: array<f32>;

@group(0) @binding(16) var<storage, read> g_x: array<f32>;
@group(0) @binding(17) var<storage, read> g_w: array<f32>;
@group(0) @binding(18) var<storage, read> g_tgt: array<u32>;
@group(0) @binding(19) var<storage, read> g_saved: array<f32>;
@group(0) @binding(20) var<storage, read> g_grad: array<f32>;
@group(0) @binding(21) var<storage, read_write> g_dz: array<f32>;

@group(0) @binding(22) var<storage, read> m_a: array<f32>;
@group(0) @binding(23) var<storage, read> m_b: array<f32>;
@group(0) @binding(24) var<storage, read_write> m_c: array<f32>;

// obj_mm: A stored (K, M) instead of (M, K).
override TRANS_A: bool = false;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const WG: u32 = 128u;
// Elements of each operand's slab one invocation loads: BM * BK / WG.
const PER_THREAD: u32 = 8u;
// vec4s per k-row of a staged slab (BM / 4 plus one of padding against bank conflicts).
const LDS: u32 = 17u;
const NONE: u32 = 0xffffffffu;
const FIN_WG: u32 = 256u;

// Staged slabs, k-major: sa[k * LDS + m / 4][m % 4] = op(A)[m0 + m, k0 + k], likewise sb.
var<workgroup> sa: array<vec4<f32>, BK * LDS>;
var<workgroup> sb: array<vec4<f32>, BK * LDS>;
var<workgroup> red_num: array<f32, FIN_WG>;
var<workgroup> red_den: array<f32, FIN_WG>;

// Where element e of a (64 rows x 16 k) slab, loaded k-fastest, goes in workgroup memory.
fn slot_rows(e: u32) -> vec2<u32> {
    let r = e / BK;
    return vec2<u32>((e % BK) * LDS + r / 4u, r % 4u);
}

// Where element e of a (16 k x 64 columns) slab, loaded column-fastest, goes.
fn slot_cols(e: u32) -> vec2<u32> {
    let c = e % BN;
    return vec2<u32>((e / BN) * LDS + c / 4u, c % 4u);
}

// acc (8 rows x 4 columns of this invocation) += the staged slabs' product.
fn mma(acc: ptr<function, array<vec4<f32>, 8>>, tx: u32, ty: u32) {
    for (var kk = 0u; kk < BK; kk++) {
        let a0 = sa[kk * LDS + ty * 2u];
        let a1 = sa[kk * LDS + ty * 2u + 1u];
        let bv = sb[kk * LDS + tx];
        (*acc)[0] = fma(vec4<f32>(a0.x), bv, (*acc)[0]);
        (*acc)[1] = fma(vec4<f32>(a0.y), bv, (*acc)[1]);
        (*acc)[2] = fma(vec4<f32>(a0.z), bv, (*acc)[2]);
        (*acc)[3] = fma(vec4<f32>(a0.w), bv, (*acc)[3]);
        (*acc)[4] = fma(vec4<f32>(a1.x), bv, (*acc)[4]);
        (*acc)[5] = fma(vec4<f32>(a1.y), bv, (*acc)[5]);
        (*acc)[6] = fma(vec4<f32>(a1.z), bv, (*acc)[6]);
        (*acc)[7] = fma(vec4<f32>(a1.w), bv, (*acc)[7]);
    }
}

// ---- forward ----

fn f_load_x(m0: u32, k0: u32, e: u32) -> f32 {
    let r = m0 + e / BK;
    let k = k0 + e % BK;
    var v = 0.0;
    if (r < p.n && k < p.d) { v = f_x[r * p.d + k]; }
    return v;
}

fn f_load_w(n0: u32, k0: u32, e: u32) -> f32 {
    let r = n0 + e / BK;
    let k = k0 + e % BK;
    var v = 0.0;
    if (r < p.rows && k < p.d) { v = f_w[r * p.d + k]; }
    return v;
}

// Logits of tokens m0..m0+63 and chunk rows n0..n0+63: this invocation's 8 x 4 of them.
fn f_tile(m0: u32, n0: u32, lid: u32) -> array<vec4<f32>, 8> {
    let tx = lid % 16u;
    let ty = lid / 16u;
    var acc: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) { acc[i] = vec4<f32>(0.0); }
    var ra: array<f32, PER_THREAD>;
    var rb: array<f32, PER_THREAD>;
    for (var i = 0u; i < PER_THREAD; i++) {
        ra[i] = f_load_x(m0, 0u, lid + i * WG);
        rb[i] = f_load_w(n0, 0u, lid + i * WG);
    }
    let slabs = (p.d + BK - 1u) / BK;
    for (var s = 0u; s < slabs; s++) {
        workgroupBarrier();
        for (var i = 0u; i < PER_THREAD; i++) {
            let at = slot_rows(lid + i * WG);
            sa[at.x][at.y] = ra[i];
            sb[at.x][at.y] = rb[i];
        }
        workgroupBarrier();
        if (s + 1u < slabs) {
            let k0 = (s + 1u) * BK;
            for (var i = 0u; i < PER_THREAD; i++) {
                ra[i] = f_load_x(m0, k0, lid + i * WG);
                rb[i] = f_load_w(n0, k0, lid + i * WG);
            }
        }
        mma(&acc, tx, ty);
    }
    return acc;
}

fn flat_get(i: u32) -> vec2<f32> {
    return vec2<f32>(sa[i / 4u][i % 4u], sb[i / 4u][i % 4u]);
}

@compute @workgroup_size(128)
fn obj_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m0 = wid.y * BM;
    let split = wid.x;
    let tx = lid % 16u;
    let ty = lid / 16u;
    let tiles = (p.rows + BN - 1u) / BN;
    let t0 = split * p.split_tiles;
    let t1 = min(t0 + p.split_tiles, tiles);

    var state: array<vec2<f32>, 8>; // (max, rest) per row
    var tl: array<f32, 8>; // target logit per row, LOWEST until seen
    var tgt: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        state[i] = vec2<f32>(LOWEST, 0.0);
        tl[i] = LOWEST;
        tgt[i] = NONE;
        let row = m0 + ty * 8u + i;
        if (row < p.n) { tgt[i] = f_tgt[row]; }
    }

    for (var t = t0; t < t1; t++) {
        let n0 = t * BN;
        let acc = f_tile(m0, n0, lid);
        let c0 = n0 + tx * 4u;
        let valid = vec4<bool>(c0 < p.rows, c0 + 1u < p.rows, c0 + 2u < p.rows, c0 + 3u < p.rows);
        let ids = vec4<u32>(c0, c0 + 1u, c0 + 2u, c0 + 3u) + vec4<u32>(p.v_off);
        for (var i = 0u; i < 8u; i++) {
            let z = acc[i];
            var st = online(state[i], z.x, valid.x);
            st = online(st, z.y, valid.y);
            st = online(st, z.z, valid.z);
            state[i] = online(st, z.w, valid.w);
            let hit = (ids == vec4<u32>(tgt[i])) & valid;
            if (any(hit)) { tl[i] = dot(select(vec4<f32>(0.0), z, hit), vec4<f32>(1.0)); }
        }
    }

    // Merge the 16 invocations that share each row: state of (row r, tx) at r * 16 + tx.
    workgroupBarrier();
    for (var i = 0u; i < 8u; i++) {
        let at = (ty * 8u + i) * 16u + tx;
        sa[at / 4u][at % 4u] = state[i].x;
        sb[at / 4u][at % 4u] = state[i].y;
    }
    workgroupBarrier();
    var row_state = vec2<f32>(LOWEST, 0.0);
    if (lid < BM) {
        for (var j = 0u; j < 16u; j++) {
            row_state = merge(row_state, flat_get(lid * 16u + j));
        }
    }
    workgroupBarrier();
    for (var i = 0u; i < 8u; i++) {
        let at = (ty * 8u + i) * 16u + tx;
        sa[at / 4u][at % 4u] = tl[i];
    }
    workgroupBarrier();
    if (lid < BM) {
        var t_logit = LOWEST;
        for (var j = 0u; j < 16u; j++) {
            t_logit = max(t_logit, flat_get(lid * 16u + j).x);
        }
        let row = m0 + lid;
        if (row < p.n) {
            let s = p.s_base + split;
            f_part[s * p.n + row] = row_state.x;
            f_part[(p.s_total + s) * p.n + row] = row_state.y;
            f_part[(2u * p.s_total + s) * p.n + row] = t_logit;
        }
    }
}

// ---- per-token objective ----

// log(1 + u) for u >= 0, accurate also for small u (where WGSL's log is only accurate to
// 2^-21 absolute).
fn log1p(u: f32) -> f32 {
    if (u < 0.0625) {
        // log1p series to u^7: truncation below 1e-9 relative.
        var t = 1.0 / 7.0;
        t = fma(t, -u, 1.0 / 6.0);
        t = fma(t, -u, 1.0 / 5.0);
        t = fma(t, -u, 1.0 / 4.0);
        t = fma(t, -u, 1.0 / 3.0);
        t = fma(t, -u, 0.5);
        t = fma(t, -u, 1.0); // t = 1 - u/2 + u^2/3 - ... + u^6/7
        return u * t;
    }
    return log(1.0 + u);
}

// (loss l, gradient weight w) of a token with log-probability lp <= 0, where the logit
// gradient of l is w * (softmax - onehot), i.e. w = -dl/dlog p (for DFT, p held constant).
fn objective(lp: f32) -> vec2<f32> {
    let pr = exp(lp);
    switch (p.kind) {
        case 0u: { // f_alpha = (1 - p^alpha) / alpha; alpha = 0 is -log p
            if (p.alpha == 0.0) { return vec2<f32>(-lp, 1.0); }
            let u = p.alpha * lp;
            return vec2<f32>(-expm1(u) / p.alpha, exp(u));
        }
        case 1u: { // thresholded: 1 - p or -log p on the kept tokens
            if ((p.flags & 2u) != 0u) { return vec2<f32>(-lp, 1.0); }
            return vec2<f32>(-expm1(lp), pr);
        }
        case 2u: { // -p^q / q
            let pq = exp(p.alpha * lp);
            return vec2<f32>(-pq / p.alpha, pq);
        }
        case 3u: { // unlikelihood: log(1 - p + 1e-3)
            let om = 1e-3 - expm1(lp);
            return vec2<f32>(log(om), pr / om);
        }
        default: { // DFT: -sg(p) log p
            return vec2<f32>(-pr * lp, pr);
        }
    }
}

// (log-sum-exp, log p) of a token from its merged (max, rest) and target logit t; log p is -inf
// when the target is outside the vocabulary (`valid` false).
fn lse_logp(st: vec2<f32>, t: f32, valid: bool) -> vec2<f32> {
    let l = log1p(st.y);
    var lp = bitcast<f32>(0xff800000u);
    if (valid) { lp = min((t - st.x) - l, 0.0); }
    return vec2<f32>(st.x + l, lp);
}

// (log-sum-exp, log p) of token i from the splits' partial results.
fn s_combine(i: u32, valid: bool) -> vec2<f32> {
    var st = vec2<f32>(LOWEST, 0.0);
    var t = LOWEST;
    for (var j = 0u; j < p.s_total; j++) {
        st = merge(st, vec2<f32>(s_part[j * p.n + i], s_part[(p.s_total + j) * p.n + i]));
        t = max(t, s_part[(2u * p.s_total + j) * p.n + i]);
    }
    return lse_logp(st, t, valid);
}

@compute @workgroup_size(256)
fn obj_finish(@builtin(local_invocation_index) lid: u32) {
    var num = 0.0;
    var den = 0.0;
    for (var i = lid; i < p.n; i += FIN_WG) {
        let valid = s_tgt[i] < p.v_total;
        let c = s_combine(i, valid);
        let lp = c.y;
        let mask = s_mask[i];
        var keep = valid && mask != 0.0;
        if (p.kind == 1u) {
            var pt = exp(lp);
            if ((p.flags & 4u) != 0u) { pt = s_thr[i]; }
            if ((p.flags & 1u) != 0u) {
                keep = keep && pt >= p.thr_q;
            } else {
                keep = keep && pt <= p.thr_q;
            }
        }
        var tl = 0.0;
        var w = 0.0;
        if (keep) {
            let o = objective(lp);
            tl = mask * o.x;
            w = mask * o.y;
            num += tl;
            den += mask;
        }
        s_logp[i] = lp;
        s_tok[i] = tl;
        s_saved[i] = w;
        s_saved[p.n + i] = c.x;
        s_saved[2u * p.n + i] = lp;
    }
    red_num[lid] = num;
    red_den[lid] = den;
    workgroupBarrier();
    for (var k = FIN_WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            red_num[lid] += red_num[lid + k];
            red_den[lid] += red_den[lid + k];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let d = red_den[0];
        s_saved[3u * p.n] = d;
        s_loss[0] = select(0.0, red_num[0] / d, d != 0.0);
    }
}

@compute @workgroup_size(256)
fn obj_logp(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.n) { return; }
    var st = vec2<f32>(LOWEST, 0.0);
    var t = LOWEST;
    for (var j = 0u; j < p.s_total; j++) {
        st = merge(st, vec2<f32>(l_part[j * p.n + i], l_part[(p.s_total + j) * p.n + i]));
        t = max(t, l_part[(2u * p.s_total + j) * p.n + i]);
    }
    l_logp[i] = lse_logp(st, t, l_tgt[i] < p.v_total).y;
}

// ---- backward ----

fn g_load_x(m0: u32, k0: u32, e: u32) -> f32 {
    let r = m0 + e / BK;
    let k = k0 + e % BK;
    var v = 0.0;
    if (r < p.n && k < p.d) { v = g_x[r * p.d + k]; }
    return v;
}

// Row n0 + e / BK of the block (chunk row blk0 + that).
fn g_load_w(n0: u32, k0: u32, e: u32) -> f32 {
    let r = n0 + e / BK;
    let k = k0 + e % BK;
    var v = 0.0;
    if (r < p.vb && k < p.d) { v = g_w[(p.blk0 + r) * p.d + k]; }
    return v;
}

@compute @workgroup_size(128)
fn obj_dlogits(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let tx = lid % 16u;
    let ty = lid / 16u;
    var acc: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) { acc[i] = vec4<f32>(0.0); }
    var ra: array<f32, PER_THREAD>;
    var rb: array<f32, PER_THREAD>;
    for (var i = 0u; i < PER_THREAD; i++) {
        ra[i] = g_load_x(m0, 0u, lid + i * WG);
        rb[i] = g_load_w(n0, 0u, lid + i * WG);
    }
    let slabs = (p.d + BK - 1u) / BK;
    for (var s = 0u; s < slabs; s++) {
        workgroupBarrier();
        for (var i = 0u; i < PER_THREAD; i++) {
            let at = slot_rows(lid + i * WG);
            sa[at.x][at.y] = ra[i];
            sb[at.x][at.y] = rb[i];
        }
        workgroupBarrier();
        if (s + 1u < slabs) {
            let k0 = (s + 1u) * BK;
            for (var i = 0u; i < PER_THREAD; i++) {
                ra[i] = g_load_x(m0, k0, lid + i * WG);
                rb[i] = g_load_w(n0, k0, lid + i * WG);
            }
        }
        mma(&acc, tx, ty);
    }

    let den = g_saved[3u * p.n];
    let scale = select(0.0, g_grad[0] / den, den != 0.0);
    let col = n0 + tx * 4u;
    let ids = vec4<u32>(col, col + 1u, col + 2u, col + 3u) + vec4<u32>(p.v_off + p.blk0);
    for (var i = 0u; i < 8u; i++) {
        let row = m0 + ty * 8u + i;
        if (row < p.n) {
            let c = g_saved[row] * scale;
            let lse = g_saved[p.n + row];
            // At the target, p - 1 = expm1(log p), accurate also when p is near 1.
            let at_t = ids == vec4<u32>(g_tgt[row]);
            let pm1 = expm1(g_saved[2u * p.n + row]);
            let v = c * select(exp(acc[i] - vec4<f32>(lse)), vec4<f32>(pm1), at_t);
            let o = row * p.vb + col;
            if (col < p.vb) { g_dz[o] = v.x; }
            if (col + 1u < p.vb) { g_dz[o + 1u] = v.y; }
            if (col + 2u < p.vb) { g_dz[o + 2u] = v.z; }
            if (col + 3u < p.vb) { g_dz[o + 3u] = v.w; }
        }
    }
}

fn m_load_a(m0: u32, k0: u32, e: u32) -> f32 {
    var m: u32;
    var k: u32;
    if (TRANS_A) { m = m0 + e % BM; k = k0 + e / BM; } else { m = m0 + e / BK; k = k0 + e % BK; }
    var v = 0.0;
    if (m < p.mm_m && k < p.mm_k) {
        if (TRANS_A) { v = m_a[k * p.mm_m + m]; } else { v = m_a[m * p.mm_k + k]; }
    }
    return v;
}

fn m_slot_a(e: u32) -> vec2<u32> {
    if (TRANS_A) { return slot_cols(e); }
    return slot_rows(e);
}

fn m_load_b(n0: u32, k0: u32, e: u32) -> f32 {
    let n = n0 + e % BN;
    let k = k0 + e / BN;
    var v = 0.0;
    if (n < p.mm_n && k < p.mm_k) { v = m_b[p.b_off + k * p.mm_n + n]; }
    return v;
}

@compute @workgroup_size(128)
fn obj_mm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    let tx = lid % 16u;
    let ty = lid / 16u;
    var acc: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) { acc[i] = vec4<f32>(0.0); }
    var ra: array<f32, PER_THREAD>;
    var rb: array<f32, PER_THREAD>;
    for (var i = 0u; i < PER_THREAD; i++) {
        ra[i] = m_load_a(m0, 0u, lid + i * WG);
        rb[i] = m_load_b(n0, 0u, lid + i * WG);
    }
    let slabs = (p.mm_k + BK - 1u) / BK;
    for (var s = 0u; s < slabs; s++) {
        workgroupBarrier();
        for (var i = 0u; i < PER_THREAD; i++) {
            let ia = m_slot_a(lid + i * WG);
            sa[ia.x][ia.y] = ra[i];
            let ib = slot_cols(lid + i * WG);
            sb[ib.x][ib.y] = rb[i];
        }
        workgroupBarrier();
        if (s + 1u < slabs) {
            let k0 = (s + 1u) * BK;
            for (var i = 0u; i < PER_THREAD; i++) {
                ra[i] = m_load_a(m0, k0, lid + i * WG);
                rb[i] = m_load_b(n0, k0, lid + i * WG);
            }
        }
        mma(&acc, tx, ty);
    }

    let col = n0 + tx * 4u;
    for (var i = 0u; i < 8u; i++) {
        let row = m0 + ty * 8u + i;
        if (row < p.mm_m) {
            let o = p.c_off + row * p.mm_n + col;
            var v = acc[i];
            if (p.accumulate != 0u) {
                if (col < p.mm_n) { v.x += m_c[o]; }
                if (col + 1u < p.mm_n) { v.y += m_c[o + 1u]; }
                if (col + 2u < p.mm_n) { v.z += m_c[o + 2u]; }
                if (col + 3u < p.mm_n) { v.w += m_c[o + 3u]; }
            }
            if (col < p.mm_n) { m_c[o] = v.x; }
            if (col + 1u < p.mm_n) { m_c[o + 1u] = v.y; }
            if (col + 2u < p.mm_n) { m_c[o + 2u] = v.z; }
            if (col + 3u < p.mm_n) { m_c[o + 3u] = v.w; }
        }
    }
}
