// Causal (or full) attention with grouped-query heads, flash-style on f32: forward with online
// softmax, a split-key decode path for a few queries against a long (cached) key sequence, the
// FlashAttention-2 backward (no Tq x Tk matrix in memory, no atomics), and the KV-cache append.
//
// Shapes (contiguous, row-major): q, out, d_out, dq: (B, Hq, Tq, D); k, v: (B, Hkv, S, D) of
// which rows 0..Tk of each (b, kv head) are read, S = kv_stride >= Tk (S = Tk for plain tensors,
// a cache's capacity otherwise); dk, dv: (B, Hkv, Tk, D); lse, delta: (B, Hq, Tq). Query head h
// reads kv head h / (Hq / Hkv). D = HEAD_DIM <= 128. Scores are s = scale * q.k; when CAUSAL,
// the mask is aligned bottom-right (as HF transformers does with a cache): query i sits at
// position Tk - Tq + i and sees keys 0..=Tk-Tq+i (Tq <= Tk); otherwise it sees every key.
// lse is the natural log-sum-exp of a query row's scores, saved for the backward.
// Key starts (attn_fwd and attn_decode, inference only: the backward kernels know nothing of
// them): when `masked` is 1, keys j < key_start[b] (u32, one per batch row) are hidden from
// every query of batch row b, on top of the causal mask (left-padded batches). Those keys and
// values are never loaded (staged as zeros), so garbage there cannot leak; a query that sees no
// key at all gets out = 0 and lse about -1e30 (finite). Unmasked launches bind any buffer
// there (it is not read).
// Sequence starts (attn_fwd, attn_bwd_dq, attn_bwd_dkv: packed rows, several sequences one after
// another in a batch row, for training): when `masked` is 2, query i of batch row b sees only
// keys j >= seq_start[b * Tq + i] (u32, (B, Tq), the first token of its sequence), on top of the
// causal mask, in the forward and in both backward kernels. Starts must not decrease along a row
// (packing makes them so: start i - position): the forward and dq then begin at the key block of
// their query block's first start, and dk/dv stop at the first query block that starts after its
// keys, so a row of many short sequences costs little more than its sequences alone. Keys of
// other sequences inside a visited block are read (they are real data) and weighted 0.
//
//   attn_fwd       grid (ceil(Tq/64), Hq, B)  out = softmax(s) v, lse     bindings: 1 q, 2 k, 3 v, 4 out, 5 lse,
//                                                                            37 key_start (B) or seq_start
//   attn_bwd_delta grid over B*Hq*Tq rows     delta = rowsum(d_out * out)  bindings: 6 d_out, 7 out, 8 delta
//   attn_bwd_dq    grid (ceil(Tq/64), Hq, B)  dq = scale dS k             bindings: 9 q, 10 k, 11 v, 12 d_out,
//                                                                            13 lse, 14 delta, 15 dq,
//                                                                            39 seq_start
//   attn_bwd_dkv   grid (ceil(Tk/64), Hkv, B * S')  dv = sum over the group's heads of P^T d_out,
//                                             dk = scale * the same sum of dS^T q
//                                                                   bindings: 16 q, 17 k, 18 v, 19 d_out,
//                                                                            20 lse, 21 delta, 22 dk, 23 dv,
//                                                                            40 seq_start
//   attn_decode    grid (splits, ceil(G*Tq/8) * Hkv, B)  per key split: o_part, lse_part
//                                                                   bindings: 24 q, 25 k, 26 v, 27 o_part,
//                                                                            28 lse_part, 38 key_start (B)
//   attn_decode_combine  grid over B*Hq*Tq*D  out, lse from the splits' partial results
//                                                                   bindings: 29 o_part, 30 lse_part,
//                                                                            31 out, 32 lse
//   attn_kv_append grid over B*Hkv*Tn*D       k_cache[.., offset + t, :] = k_new[.., t, :], same for v
//                                                                   bindings: 33 k_new, 34 v_new,
//                                                                            35 k_cache, 36 v_cache
// with P = exp(s - lse) and dS = P * (d_out v^T - delta) (the gradient of the scores).
// attn_bwd_dkv may split each group of Hq / Hkv query heads into S' = `splits` equal parts (more
// workgroups when B * Hkv * Tk / 64 is small); dk and dv are then (S', B, Hkv, Tk, D), partial
// sums that the caller adds up. With S' = 1 they are (B, Hkv, Tk, D) and the kernel sums the group.
//
// Tiling of attn_fwd and the backward: 256 invocations as a 16 x 16 grid (ty, tx). A workgroup
// owns 64 rows (queries; keys in attn_bwd_dkv); invocation (ty, tx) holds rows 4ty..4ty+3, score
// columns tx + 16c (c < 4) of the 64 x 64 score tile, and head-dim columns tx + 16j
// (j < ceil(D/16)) of its accumulators, so a row's statistics live in the 16 invocations that
// share ty. Dot-product tiles stage 16-wide head-dim chunks of both operands in workgroup memory;
// accumulations read the score tile from `xs` and 16-row chunks of the other operand. Softmax
// runs in base 2 (scale folded with log2 e).
//
// Decode (flash-decoding): with few queries (Tq <= 16, e.g. one token against a cache of
// thousands) a 64-query block would leave most of attn_fwd's workgroup idle and give only
// B * Hq workgroups. attn_decode instead gives a workgroup the G * Tq rows of one kv head's
// group of G = Hq / Hkv query heads (8 at a time: rows of heads hk*G.. are contiguous in q), so
// each k, v row is read once for the whole group, and cuts the keys into `splits` chunks of
// `chunk` keys (a multiple of 32), one workgroup each, so that a single (b, kv head) still fills
// the GPU. Invocation (r, lane) = (tid / 32, tid % 32) computes the score of row r with key lane
// of a 32-key tile, then accumulates head-dim columns 4 lane..4 lane+3 of row r. Each split
// writes its normalised output and natural log-sum-exp, (splits, B*Hq*Tq, D) and
// (splits, B*Hq*Tq); attn_decode_combine weighs them by exp(lse_s - max lse). With one split,
// attn_decode writes out and lse directly.
// Workgroup memory: 26,128 bytes (stage + xs + first_block, shared by every entry point that uses
// any), over
// WebGPU's default 16 KiB: the launchers' WORKGROUP_BYTES, which the engine checks against the
// adapter's limit.

struct Params {
    // Queries per (batch, head), Tq; attn_kv_append: new rows per (batch, kv head), Tn.
    q_len: u32,
    q_heads: u32,
    kv_heads: u32,
    scale: f32,
    // attn_bwd_delta, attn_decode(_combine): number of query rows B * Hq * Tq;
    // attn_kv_append: number of elements of k_new.
    rows: u32,
    batch: u32,
    // attn_bwd_dkv: parts each group of query heads is split into (divides Hq / Hkv);
    // attn_decode(_combine): key splits.
    splits: u32,
    // Keys per (batch, kv head), Tk.
    kv_len: u32,
    // Rows per (batch, kv head) of the k and v buffers (>= Tk).
    kv_stride: u32,
    // attn_decode: keys per split (a multiple of DT).
    chunk: u32,
    // attn_kv_append: cache row the first new row goes to.
    offset: u32,
    // attn_fwd, attn_decode: 1 when key_start is bound and applies; attn_fwd, attn_bwd_dq,
    // attn_bwd_dkv: 2 when seq_start is; 0 when neither is read.
    masked: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> f_q: array<f32>;
@group(0) @binding(2) var<storage, read> f_k: array<f32>;
@group(0) @binding(3) var<storage, read> f_v: array<f32>;
@group(0) @binding(4) var<storage, read_write> f_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> f_lse: array<f32>;
@group(0) @binding(37) var<storage, read> f_key_start: array<u32>;

@group(0) @binding(6) var<storage, read> d_dout: array<f32>;
@group(0) @binding(7) var<storage, read> d_out: array<f32>;
@group(0) @binding(8) var<storage, read_write> d_delta: array<f32>;

@group(0) @binding(9) var<storage, read> q_q: array<f32>;
@group(0) @binding(10) var<storage, read> q_k: array<f32>;
@group(0) @binding(11) var<storage, read> q_v: array<f32>;
@group(0) @binding(12) var<storage, read> q_dout: array<f32>;
@group(0) @binding(13) var<storage, read> q_lse: array<f32>;
@group(0) @binding(14) var<storage, read> q_delta: array<f32>;
@group(0) @binding(15) var<storage, read_write> q_dq: array<f32>;
@group(0) @binding(39) var<storage, read> q_seq_start: array<u32>;

@group(0) @binding(16) var<storage, read> k_q: array<f32>;
@group(0) @binding(17) var<storage, read> k_k: array<f32>;
@group(0) @binding(18) var<storage, read> k_v: array<f32>;
@group(0) @binding(19) var<storage, read> k_dout: array<f32>;
@group(0) @binding(20) var<storage, read> k_lse: array<f32>;
@group(0) @binding(21) var<storage, read> k_delta: array<f32>;
@group(0) @binding(22) var<storage, read_write> k_dk: array<f32>;
@group(0) @binding(23) var<storage, read_write> k_dv: array<f32>;
@group(0) @binding(40) var<storage, read> k_seq_start: array<u32>;

@group(0) @binding(24) var<storage, read> e_q: array<f32>;
@group(0) @binding(25) var<storage, read> e_k: array<f32>;
@group(0) @binding(26) var<storage, read> e_v: array<f32>;
@group(0) @binding(27) var<storage, read_write> e_o: array<f32>;
@group(0) @binding(28) var<storage, read_write> e_lse: array<f32>;
@group(0) @binding(38) var<storage, read> e_key_start: array<u32>;

@group(0) @binding(29) var<storage, read> c_o: array<f32>;
@group(0) @binding(30) var<storage, read> c_lse: array<f32>;
@group(0) @binding(31) var<storage, read_write> c_out: array<f32>;
@group(0) @binding(32) var<storage, read_write> c_lse_out: array<f32>;

@group(0) @binding(33) var<storage, read> a_k: array<f32>;
@group(0) @binding(34) var<storage, read> a_v: array<f32>;
@group(0) @binding(35) var<storage, read_write> a_kc: array<f32>;
@group(0) @binding(36) var<storage, read_write> a_vc: array<f32>;

// Head dimension (1..=128).
override HEAD_DIM: u32 = 64u;
// 1: query i sees keys 0..=Tk-Tq+i; 0: every key.
override CAUSAL: u32 = 1u;
// Head-dim columns per invocation: tx + 16 j for j < DJ.
override DJ: u32 = (HEAD_DIM + 15u) / 16u;

const WG: u32 = 256u;
// Rows of the workgroup's own block and of the streamed block (equal, so causal blocks align).
const BR: u32 = 64u;
// Head-dim chunk of a dot-product tile, and row chunk of an accumulation.
const DC: u32 = 16u;
const KC: u32 = 16u;
// Padded stride (in vec4) of staged rows, against bank conflicts.
const PAD: u32 = 17u;
const MAX_DJ: u32 = 8u;
const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;
// Masked score; finite so that max/exp never see inf - inf.
const NEG: f32 = -1.0e30;

// Dot tiles: A chunk at [dd * PAD + row / 4][row % 4], B chunk at DC * PAD + [dd * PAD + col % 16]
// [col / 16]. Accumulations: rows kk of a (rows x D) operand at [kk * 32 + (j / 4) * 16 + d % 16]
// [j % 4] with j = d / 16. Also reused for the row reductions ([tx * PAD + ty]).
var<workgroup> stage: array<vec4<f32>, 544>;
// The 64 x 64 tile an accumulation multiplies by: [col * PAD + ty] = rows 4ty..4ty+3 of column col.
var<workgroup> xs: array<vec4<f32>, 1088>;
// Packed rows, made uniform through it by `uniform_from_first` (only .x is used): the first key
// block attn_fwd and attn_bwd_dq visit, and attn_bwd_dkv's flag to stop its query blocks.
var<workgroup> first_block: array<vec4<u32>, 1>;

// `v` as invocation 0 has it, made uniform across the workgroup (for a loop's bounds). Call it
// from uniform control flow; a second call needs a barrier before it (after the first's reads).
fn uniform_from_first(tid: u32, v: u32) -> u32 {
    if (tid == 0u) {
        first_block[0].x = v;
    }
    return workgroupUniformLoad(&first_block)[0].x;
}

// The first 64-key block a query block sees, from the sequence start of its first query: starts
// do not decrease along a row, so no query of the block sees a key before it.
fn first_key_block(starts_at_q0: u32) -> u32 {
    return starts_at_q0 / BR;
}

fn put_a(row: u32, dd: u32, v: f32) {
    stage[dd * PAD + row / 4u][row % 4u] = v;
}

fn put_b(col: u32, dd: u32, v: f32) {
    stage[DC * PAD + dd * PAD + col % 16u][col / 16u] = v;
}

fn put_rows(kk: u32, d: u32, v: f32) {
    let j = d / 16u;
    stage[kk * 32u + (j / 4u) * 16u + d % 16u][j % 4u] = v;
}

// s[c][i] += sum over the staged chunk of A[4ty + i] . B[tx + 16c].
fn dot_chunk(ty: u32, tx: u32, s: ptr<function, array<vec4<f32>, 4>>) {
    for (var dd = 0u; dd < DC; dd++) {
        let a = stage[dd * PAD + ty];
        let b = stage[DC * PAD + dd * PAD + tx];
        (*s)[0] += a * b.x;
        (*s)[1] += a * b.y;
        (*s)[2] += a * b.z;
        (*s)[3] += a * b.w;
    }
}

// acc[j][i] += sum over kk of xs[kc + kk][4ty + i] * rows[kk][tx + 16j].
fn acc_chunk(kc: u32, ty: u32, tx: u32, acc: ptr<function, array<vec4<f32>, 8>>) {
    for (var kk = 0u; kk < KC; kk++) {
        let x = xs[(kc + kk) * PAD + ty];
        let b0 = stage[kk * 32u + tx];
        for (var j = 0u; j < 4u; j++) {
            if (j < DJ) {
                (*acc)[j] += x * b0[j];
            }
        }
        if (DJ > 4u) {
            let b1 = stage[kk * 32u + 16u + tx];
            for (var j = 4u; j < MAX_DJ; j++) {
                if (j < DJ) {
                    (*acc)[j] += x * b1[j - 4u];
                }
            }
        }
    }
}

// Whether key `key` is visible from query `query` (false out of range).
fn visible(query: u32, key: u32) -> bool {
    return query < p.q_len && key < p.kv_len && (CAUSAL == 0u || key <= query + causal_shift());
}

// Position of query 0 among the keys under the causal mask, Tk - Tq (Tq <= Tk when CAUSAL).
fn causal_shift() -> u32 {
    return p.kv_len - p.q_len;
}

// Sum of the four-row vectors the 16 invocations of row group ty wrote at [u * PAD + ty].
// Callers put a barrier before writing and this one after it.
fn row_sum(ty: u32) -> vec4<f32> {
    var r = vec4<f32>(0.0);
    for (var u = 0u; u < 16u; u++) {
        r += stage[u * PAD + ty];
    }
    return r;
}

fn row_max(ty: u32, init: vec4<f32>) -> vec4<f32> {
    var r = init;
    for (var u = 0u; u < 16u; u++) {
        r = max(r, stage[u * PAD + ty]);
    }
    return r;
}

// Number of streamed 64-key blocks a query block starting at q0 attends to.
fn key_blocks(q0: u32) -> u32 {
    if (CAUSAL != 0u) {
        return (min(q0 + BR, p.q_len) - 1u + causal_shift()) / BR + 1u;
    }
    return (p.kv_len + BR - 1u) / BR;
}

// Keys of the streamed block at k0 with a non-zero weight for a query block at q0: the end of
// the keys, and under the causal mask the last key the block's last query sees.
fn live_rows(q0: u32, k0: u32) -> u32 {
    var end = p.kv_len;
    if (CAUSAL != 0u) {
        end = min(end, q0 + BR + causal_shift());
    }
    return min(end - k0, BR);
}

@compute @workgroup_size(256)
fn attn_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) tid: u32) {
    let tx = tid % 16u;
    let ty = tid / 16u;
    let tq = p.q_len;
    let h = wid.y;
    let b = wid.z;
    // Heaviest (last) query blocks first.
    let q0 = (nwg.x - 1u - wid.x) * BR;
    let hk = h / (p.q_heads / p.kv_heads);
    let qbase = (b * p.q_heads + h) * tq * HEAD_DIM;
    let kbase = (b * p.kv_heads + hk) * p.kv_stride * HEAD_DIM;
    let c2 = p.scale * LOG2E;
    // First key of batch row b (only masks and loads depend on it, never a barrier's path),
    // and the first key each of this invocation's four rows sees.
    var ks = 0u;
    var qs = vec4<u32>(0u);
    if (p.masked == 1u) {
        ks = f_key_start[b];
        qs = vec4<u32>(ks);
    }
    if (p.masked == 2u) {
        for (var i = 0u; i < 4u; i++) {
            let row = q0 + 4u * ty + i;
            if (row < tq) {
                qs[i] = f_key_start[b * tq + row];
            }
        }
    }

    var m = vec4<f32>(NEG);
    // This invocation's share (its 4 columns) of each row's sum of exponentials.
    var l = vec4<f32>(0.0);
    var acc: array<vec4<f32>, 8>;
    let nkb = key_blocks(q0);
    var start = 0u;
    if (p.masked == 2u) {
        start = f_key_start[b * tq + q0];
    }
    let kb0 = uniform_from_first(tid, first_key_block(start));
    for (var kb = kb0; kb < nkb; kb++) {
        let k0 = kb * BR;
        var s: array<vec4<f32>, 4>;
        for (var d0 = 0u; d0 < HEAD_DIM; d0 += DC) {
            workgroupBarrier();
            for (var r = 0u; r < 4u; r++) {
                let e = tid + r * WG;
                let row = e / DC;
                let dd = e % DC;
                let d = d0 + dd;
                var qv = 0.0;
                if (q0 + row < tq && d < HEAD_DIM) {
                    qv = f_q[qbase + (q0 + row) * HEAD_DIM + d];
                }
                put_a(row, dd, qv);
                var kv = 0.0;
                if (k0 + row < p.kv_len && k0 + row >= ks && d < HEAD_DIM) {
                    kv = f_k[kbase + (k0 + row) * HEAD_DIM + d];
                }
                put_b(row, dd, kv);
            }
            workgroupBarrier();
            dot_chunk(ty, tx, &s);
        }
        // Mask, scale to base 2, and the block's row maxima.
        var mx = vec4<f32>(NEG);
        for (var c = 0u; c < 4u; c++) {
            for (var i = 0u; i < 4u; i++) {
                let key = k0 + tx + 16u * c;
                let ok = visible(q0 + 4u * ty + i, key) && key >= qs[i];
                s[c][i] = select(NEG, s[c][i] * c2, ok);
            }
            mx = max(mx, s[c]);
        }
        workgroupBarrier();
        stage[tx * PAD + ty] = mx;
        workgroupBarrier();
        let m_new = row_max(ty, m);
        let alpha = exp2(m - m_new);
        m = m_new;
        l *= alpha;
        for (var j = 0u; j < MAX_DJ; j++) {
            if (j < DJ) {
                acc[j] *= alpha;
            }
        }
        for (var c = 0u; c < 4u; c++) {
            let pc = select(vec4<f32>(0.0), exp2(s[c] - m_new), s[c] > vec4<f32>(0.5 * NEG));
            l += pc;
            xs[(tx + 16u * c) * PAD + ty] = pc;
        }
        // out += P v over the live rows of the block, 16 rows of v at a time.
        let live = live_rows(q0, k0);
        for (var kc = 0u; kc < live; kc += KC) {
            workgroupBarrier();
            for (var e = tid; e < KC * HEAD_DIM; e += WG) {
                let kk = e / HEAD_DIM;
                let d = e % HEAD_DIM;
                var vv = 0.0;
                if (kc + kk < live && k0 + kc + kk >= ks) {
                    vv = f_v[kbase + (k0 + kc + kk) * HEAD_DIM + d];
                }
                put_rows(kk, d, vv);
            }
            workgroupBarrier();
            acc_chunk(kc, ty, tx, &acc);
        }
    }
    workgroupBarrier();
    stage[tx * PAD + ty] = l;
    workgroupBarrier();
    let lt = row_sum(ty);
    let inv = select(vec4<f32>(0.0), 1.0 / lt, lt > vec4<f32>(0.0));
    for (var i = 0u; i < 4u; i++) {
        let row = q0 + 4u * ty + i;
        if (row < tq) {
            for (var j = 0u; j < MAX_DJ; j++) {
                let d = tx + 16u * j;
                if (j < DJ && d < HEAD_DIM) {
                    f_out[qbase + row * HEAD_DIM + d] = acc[j][i] * inv[i];
                }
            }
            if (tx == 0u) {
                f_lse[(b * p.q_heads + h) * tq + row] = select(NEG, (m[i] + log2(lt[i])) * LN2,
                                                              lt[i] > 0.0);
            }
        }
    }
}

@compute @workgroup_size(256)
fn attn_bwd_delta(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let row = (wid.y * nwg.x + wid.x) * WG + lid;
    if (row >= p.rows) {
        return;
    }
    let base = row * HEAD_DIM;
    var acc = 0.0;
    for (var d = 0u; d < HEAD_DIM; d++) {
        acc += d_dout[base + d] * d_out[base + d];
    }
    d_delta[row] = acc;
}

@compute @workgroup_size(256)
fn attn_bwd_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) tid: u32) {
    let tx = tid % 16u;
    let ty = tid / 16u;
    let tq = p.q_len;
    let h = wid.y;
    let b = wid.z;
    let q0 = (nwg.x - 1u - wid.x) * BR;
    let hk = h / (p.q_heads / p.kv_heads);
    let rbase = (b * p.q_heads + h) * tq;
    let qbase = rbase * HEAD_DIM;
    let kbase = (b * p.kv_heads + hk) * p.kv_stride * HEAD_DIM;
    let c2 = p.scale * LOG2E;

    // Row statistics: lse in base 2, delta, and the first key the row sees.
    var lse2 = vec4<f32>(0.0);
    var dl = vec4<f32>(0.0);
    var qs = vec4<u32>(0u);
    for (var i = 0u; i < 4u; i++) {
        let row = q0 + 4u * ty + i;
        if (row < tq) {
            lse2[i] = q_lse[rbase + row] * LOG2E;
            dl[i] = q_delta[rbase + row];
            if (p.masked == 2u) {
                qs[i] = q_seq_start[b * tq + row];
            }
        }
    }
    var acc: array<vec4<f32>, 8>;
    let nkb = key_blocks(q0);
    var start = 0u;
    if (p.masked == 2u) {
        start = q_seq_start[b * tq + q0];
    }
    let kb0 = uniform_from_first(tid, first_key_block(start));
    for (var kb = kb0; kb < nkb; kb++) {
        let k0 = kb * BR;
        // s = q k^T and dp = d_out v^T, each through its own chunked dot tile.
        var s: array<vec4<f32>, 4>;
        for (var d0 = 0u; d0 < HEAD_DIM; d0 += DC) {
            workgroupBarrier();
            for (var r = 0u; r < 4u; r++) {
                let e = tid + r * WG;
                let row = e / DC;
                let dd = e % DC;
                let d = d0 + dd;
                var a = 0.0;
                if (q0 + row < tq && d < HEAD_DIM) {
                    a = q_q[qbase + (q0 + row) * HEAD_DIM + d];
                }
                put_a(row, dd, a);
                var bb = 0.0;
                if (k0 + row < p.kv_len && d < HEAD_DIM) {
                    bb = q_k[kbase + (k0 + row) * HEAD_DIM + d];
                }
                put_b(row, dd, bb);
            }
            workgroupBarrier();
            dot_chunk(ty, tx, &s);
        }
        var dp: array<vec4<f32>, 4>;
        for (var d0 = 0u; d0 < HEAD_DIM; d0 += DC) {
            workgroupBarrier();
            for (var r = 0u; r < 4u; r++) {
                let e = tid + r * WG;
                let row = e / DC;
                let dd = e % DC;
                let d = d0 + dd;
                var a = 0.0;
                if (q0 + row < tq && d < HEAD_DIM) {
                    a = q_dout[qbase + (q0 + row) * HEAD_DIM + d];
                }
                put_a(row, dd, a);
                var bb = 0.0;
                if (k0 + row < p.kv_len && d < HEAD_DIM) {
                    bb = q_v[kbase + (k0 + row) * HEAD_DIM + d];
                }
                put_b(row, dd, bb);
            }
            workgroupBarrier();
            dot_chunk(ty, tx, &dp);
        }
        // dS = P * (dp - delta), into xs (every invocation is past this block's last read of xs).
        for (var c = 0u; c < 4u; c++) {
            var pc = exp2(s[c] * c2 - lse2);
            for (var i = 0u; i < 4u; i++) {
                let key = k0 + tx + 16u * c;
                pc[i] = select(0.0, pc[i], visible(q0 + 4u * ty + i, key) && key >= qs[i]);
            }
            xs[(tx + 16u * c) * PAD + ty] = pc * (dp[c] - dl);
        }
        // dq += dS k over the live rows of the block.
        let live = live_rows(q0, k0);
        for (var kc = 0u; kc < live; kc += KC) {
            workgroupBarrier();
            for (var e = tid; e < KC * HEAD_DIM; e += WG) {
                let kk = e / HEAD_DIM;
                let d = e % HEAD_DIM;
                var kv = 0.0;
                if (kc + kk < live) {
                    kv = q_k[kbase + (k0 + kc + kk) * HEAD_DIM + d];
                }
                put_rows(kk, d, kv);
            }
            workgroupBarrier();
            acc_chunk(kc, ty, tx, &acc);
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let row = q0 + 4u * ty + i;
        if (row < tq) {
            for (var j = 0u; j < MAX_DJ; j++) {
                let d = tx + 16u * j;
                if (j < DJ && d < HEAD_DIM) {
                    q_dq[qbase + row * HEAD_DIM + d] = acc[j][i] * p.scale;
                }
            }
        }
    }
}

// Rows of this workgroup are keys k0 + 4ty + i; score columns are queries q0 + tx + 16c.
@compute @workgroup_size(256)
fn attn_bwd_dkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let tx = tid % 16u;
    let ty = tid / 16u;
    let tq = p.q_len;
    let tk = p.kv_len;
    let hk = wid.y;
    let b = wid.z / p.splits;
    let part = wid.z % p.splits;
    // Lowest key blocks (the most query blocks under the causal mask) first.
    let k0 = wid.x * BR;
    let group = p.q_heads / p.kv_heads;
    let per_part = group / p.splits;
    let kbase = (b * p.kv_heads + hk) * p.kv_stride * HEAD_DIM;
    let obase = ((part * p.batch + b) * p.kv_heads + hk) * tk * HEAD_DIM;
    let c2 = p.scale * LOG2E;
    let nqb = (tq + BR - 1u) / BR;
    // Under the causal mask the first query that sees key k0 is k0 - (Tk - Tq).
    var qb0 = 0u;
    if (CAUSAL != 0u && k0 > causal_shift()) {
        qb0 = (k0 - causal_shift()) / BR;
    }

    var acc_k: array<vec4<f32>, 8>;
    var acc_v: array<vec4<f32>, 8>;
    for (var g = part * per_part; g < (part + 1u) * per_part; g++) {
        let h = hk * group + g;
        let rbase = (b * p.q_heads + h) * tq;
        let qbase = rbase * HEAD_DIM;
        for (var qb = qb0; qb < nqb; qb++) {
            let q0 = qb * BR;
            // Packed rows: once a query block's first query starts after this key block, so
            // do all later queries (starts never decrease): none of them sees these keys.
            workgroupBarrier();
            let after = p.masked == 2u && k_seq_start[b * tq + q0] >= k0 + BR;
            if (uniform_from_first(tid, select(0u, 1u, after)) != 0u) {
                break;
            }
            // s^T = k q^T and dp^T = v d_out^T.
            var s: array<vec4<f32>, 4>;
            for (var d0 = 0u; d0 < HEAD_DIM; d0 += DC) {
                workgroupBarrier();
                for (var r = 0u; r < 4u; r++) {
                    let e = tid + r * WG;
                    let row = e / DC;
                    let dd = e % DC;
                    let d = d0 + dd;
                    var a = 0.0;
                    if (k0 + row < tk && d < HEAD_DIM) {
                        a = k_k[kbase + (k0 + row) * HEAD_DIM + d];
                    }
                    put_a(row, dd, a);
                    var bb = 0.0;
                    if (q0 + row < tq && d < HEAD_DIM) {
                        bb = k_q[qbase + (q0 + row) * HEAD_DIM + d];
                    }
                    put_b(row, dd, bb);
                }
                workgroupBarrier();
                dot_chunk(ty, tx, &s);
            }
            var dp: array<vec4<f32>, 4>;
            for (var d0 = 0u; d0 < HEAD_DIM; d0 += DC) {
                workgroupBarrier();
                for (var r = 0u; r < 4u; r++) {
                    let e = tid + r * WG;
                    let row = e / DC;
                    let dd = e % DC;
                    let d = d0 + dd;
                    var a = 0.0;
                    if (k0 + row < tk && d < HEAD_DIM) {
                        a = k_v[kbase + (k0 + row) * HEAD_DIM + d];
                    }
                    put_a(row, dd, a);
                    var bb = 0.0;
                    if (q0 + row < tq && d < HEAD_DIM) {
                        bb = k_dout[qbase + (q0 + row) * HEAD_DIM + d];
                    }
                    put_b(row, dd, bb);
                }
                workgroupBarrier();
                dot_chunk(ty, tx, &dp);
            }
            // P^T and dS^T; xs takes P^T first (every invocation is past its last read of xs).
            var ds: array<vec4<f32>, 4>;
            for (var c = 0u; c < 4u; c++) {
                let query = q0 + tx + 16u * c;
                var lse2 = 0.0;
                var dl = 0.0;
                var qs = 0u;
                if (query < tq) {
                    lse2 = k_lse[rbase + query] * LOG2E;
                    dl = k_delta[rbase + query];
                    if (p.masked == 2u) {
                        qs = k_seq_start[b * tq + query];
                    }
                }
                var pc = exp2(s[c] * c2 - lse2);
                for (var i = 0u; i < 4u; i++) {
                    let key = k0 + 4u * ty + i;
                    pc[i] = select(0.0, pc[i], visible(query, key) && key >= qs);
                }
                ds[c] = pc * (dp[c] - dl);
                xs[(tx + 16u * c) * PAD + ty] = pc;
            }
            let live = min(tq - q0, BR);
            // dv += P^T d_out.
            for (var qc = 0u; qc < live; qc += KC) {
                workgroupBarrier();
                for (var e = tid; e < KC * HEAD_DIM; e += WG) {
                    let kk = e / HEAD_DIM;
                    let d = e % HEAD_DIM;
                    var x = 0.0;
                    if (qc + kk < live) {
                        x = k_dout[qbase + (q0 + qc + kk) * HEAD_DIM + d];
                    }
                    put_rows(kk, d, x);
                }
                workgroupBarrier();
                acc_chunk(qc, ty, tx, &acc_v);
            }
            workgroupBarrier();
            for (var c = 0u; c < 4u; c++) {
                xs[(tx + 16u * c) * PAD + ty] = ds[c];
            }
            // dk += dS^T q (scaled at the end).
            for (var qc = 0u; qc < live; qc += KC) {
                workgroupBarrier();
                for (var e = tid; e < KC * HEAD_DIM; e += WG) {
                    let kk = e / HEAD_DIM;
                    let d = e % HEAD_DIM;
                    var x = 0.0;
                    if (qc + kk < live) {
                        x = k_q[qbase + (q0 + qc + kk) * HEAD_DIM + d];
                    }
                    put_rows(kk, d, x);
                }
                workgroupBarrier();
                acc_chunk(qc, ty, tx, &acc_k);
            }
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let key = k0 + 4u * ty + i;
        if (key < tk) {
            for (var j = 0u; j < MAX_DJ; j++) {
                let d = tx + 16u * j;
                if (j < DJ && d < HEAD_DIM) {
                    k_dk[obase + key * HEAD_DIM + d] = acc_k[j][i] * p.scale;
                    k_dv[obase + key * HEAD_DIM + d] = acc_v[j][i];
                }
            }
        }
    }
}

// Decode tiling: rows of query per workgroup, keys per tile, padded row stride (in vec4) of the
// staged k / v tile in `xs`, and where the scores and probabilities of a tile sit in `stage`
// (after the block's query rows, [r * 32 + d / 4]).
const DR: u32 = 8u;
const DT: u32 = 32u;
const DPAD: u32 = 33u;
const DS: u32 = 256u;
const DP: u32 = 320u;

// Stage keys (or values) t0..t0+DT of one kv head in xs[j * DPAD + d / 4], zero past `end` and
// past HEAD_DIM (workgroup memory is not zero-initialised).
// Keys before `start` (the row's key start) are zero too, never loaded.
fn stage_kv_tile(tid: u32, from_v: bool, base: u32, t0: u32, start: u32, end: u32) {
    let width = 4u * ((HEAD_DIM + 3u) / 4u);
    for (var e = tid; e < DT * width; e += WG) {
        let j = e / width;
        let d = e % width;
        var x = 0.0;
        if (t0 + j < end && t0 + j >= start && d < HEAD_DIM) {
            let i = base + (t0 + j) * HEAD_DIM + d;
            if (from_v) {
                x = e_v[i];
            } else {
                x = e_k[i];
            }
        }
        xs[j * DPAD + d / 4u][d % 4u] = x;
    }
}

@compute @workgroup_size(256)
fn attn_decode(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) tid: u32) {
    let lane = tid % 32u;
    let r = tid / 32u;
    let group = p.q_heads / p.kv_heads;
    // Rows of the group: G heads of Tq queries each, contiguous in q.
    let grows = group * p.q_len;
    let nrb = (grows + DR - 1u) / DR;
    let split = wid.x;
    let hk = wid.y / nrb;
    let rb = wid.y % nrb;
    let b = wid.z;
    let rr = rb * DR + r;
    let row_ok = rr < grows;
    let grow0 = (b * p.q_heads + hk * group) * p.q_len;
    let kbase = (b * p.kv_heads + hk) * p.kv_stride * HEAD_DIM;
    let key0 = split * p.chunk;
    let key_end = min(key0 + p.chunk, p.kv_len);
    // First key of batch row b (masks and loads only: the tile loop stays uniform).
    var ks = 0u;
    if (p.masked == 1u) {
        ks = e_key_start[b];
    }
    // Exclusive end of the keys row r sees.
    var last = key_end;
    if (CAUSAL != 0u) {
        last = min(last, rr % p.q_len + causal_shift() + 1u);
    }
    let d4n = (HEAD_DIM + 3u) / 4u;

    // The block's query rows, scaled to base 2; zero past HEAD_DIM and past the group's rows.
    let c2 = p.scale * LOG2E;
    for (var e = tid; e < DR * 128u; e += WG) {
        let qr = e / 128u;
        let d = e % 128u;
        var x = 0.0;
        if (rb * DR + qr < grows && d < HEAD_DIM) {
            x = e_q[(grow0 + rb * DR + qr) * HEAD_DIM + d] * c2;
        }
        stage[qr * 32u + d / 4u][d % 4u] = x;
    }

    var m = NEG;
    var l = 0.0;
    var acc = vec4<f32>(0.0);
    for (var t0 = key0; t0 < key_end; t0 += DT) {
        workgroupBarrier();
        stage_kv_tile(tid, false, kbase, t0, ks, key_end);
        workgroupBarrier();
        var s = 0.0;
        for (var d4 = 0u; d4 < d4n; d4++) {
            s += dot(stage[r * 32u + d4], xs[lane * DPAD + d4]);
        }
        s = select(NEG, s, row_ok && t0 + lane < last && t0 + lane >= ks);
        stage[DS + r * 8u + lane / 4u][lane % 4u] = s;
        workgroupBarrier();
        var mt = NEG;
        for (var u = 0u; u < 8u; u++) {
            let x = stage[DS + r * 8u + u];
            mt = max(mt, max(max(x.x, x.y), max(x.z, x.w)));
        }
        let m_new = max(m, mt);
        let alpha = exp2(m - m_new);
        m = m_new;
        stage[DP + r * 8u + lane / 4u][lane % 4u] = select(0.0, exp2(s - m_new), s > 0.5 * NEG);
        // Every invocation is past its last read of the k tile.
        stage_kv_tile(tid, true, kbase, t0, ks, key_end);
        workgroupBarrier();
        l *= alpha;
        acc *= alpha;
        let nj = min(DT, key_end - t0);
        for (var j = 0u; j < nj; j++) {
            let pj = stage[DP + r * 8u + j / 4u][j % 4u];
            l += pj;
            acc += pj * xs[j * DPAD + lane];
        }
    }
    if (!row_ok) {
        return;
    }
    let grow = grow0 + rr;
    let inv = select(0.0, 1.0 / l, l > 0.0);
    if (lane < d4n) {
        let obase = (split * p.rows + grow) * HEAD_DIM;
        for (var c = 0u; c < 4u; c++) {
            let d = 4u * lane + c;
            if (d < HEAD_DIM) {
                e_o[obase + d] = acc[c] * inv;
            }
        }
    }
    if (lane == 0u) {
        e_lse[split * p.rows + grow] = select(NEG, (m + log2(l)) * LN2, l > 0.0);
    }
}

@compute @workgroup_size(256)
fn attn_decode_combine(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * nwg.x + wid.x) * WG + lid;
    if (e >= p.rows * HEAD_DIM) {
        return;
    }
    let row = e / HEAD_DIM;
    let d = e % HEAD_DIM;
    var mx = NEG;
    for (var s = 0u; s < p.splits; s++) {
        mx = max(mx, c_lse[s * p.rows + row]);
    }
    var den = 0.0;
    var num = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        let w = exp(c_lse[s * p.rows + row] - mx);
        den += w;
        num += w * c_o[(s * p.rows + row) * HEAD_DIM + d];
    }
    c_out[e] = num / den;
    if (d == 0u) {
        c_lse_out[row] = mx + log(den);
    }
}

@compute @workgroup_size(256)
fn attn_kv_append(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * nwg.x + wid.x) * WG + lid;
    if (e >= p.rows) {
        return;
    }
    let d = e % HEAD_DIM;
    let t = (e / HEAD_DIM) % p.q_len;
    let bh = e / (HEAD_DIM * p.q_len);
    let dst = (bh * p.kv_stride + p.offset + t) * HEAD_DIM + d;
    a_kc[dst] = a_k[e];
    a_vc[dst] = a_v[e];
}
