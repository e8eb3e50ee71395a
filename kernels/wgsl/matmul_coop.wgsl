// Cooperative-matrix matmul: C[z] = op(A[z]) @ op(B[z]) with f16 inputs, f32 accumulation and
// f32 output, on the tensor cores through F x F x F cooperative matrices. The launcher's prefix
// sets F (16, or 8 where the adapter offers only 8x8x8, as lavapipe and Apple GPUs do) and the
// fragment types FragA / FragB / FragC, after the `enable` and `diagnostic` directives: cooperative
// ops need subgroup-uniform control flow, and naga's analysis only knows workgroup uniformity, so
// branching on the subgroup id is allowed here on purpose.
//
//   matmul_coop         A/B slabs staged through workgroup memory (with PREFETCH, the next
//                       slab fetched into registers during the current one's products)
//                       bindings: 1 a: array<vec4<f16>>, 2 b: array<vec4<f16>>, 3 c: array<f32>
//   matmul_coop_direct  fragments loaded straight from global memory (the design measured
//                       in GPU-NOTES); bindings: 4 a: array<f16>, 5 b: array<f16>, 6 c: array<f32>
//
// Shapes, transposes (TRANS_A / TRANS_B) and batches as in matmul.wgsl (same Params). Needs M,
// N and K multiples of 16 (the launcher checks), so every 8-half chunk of a row is wholly in or
// out of range and every F x F tile of C is.
// Grid: (ceil(N / BN), ceil(M / BM), batches). A workgroup of 128 invocations computes a
// BM x BN tile of C (8F x 8F); each subgroup a 4F x 4F block of it, as 4 x 4 f32 accumulator
// fragments. Subgroups are found with subgroup_id, so any subgroup size works: with fewer than
// four subgroups (64-wide ones) the blocks are done in several passes, with more the extra ones
// only help to stage.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch_inner: u32,
    a_outer: u32,
    a_inner: u32,
    b_outer: u32,
    b_inner: u32,
    c_outer: u32,
    c_inner: u32,
    a_base: u32,
    b_base: u32,
    c_base: u32,
    z_base: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a4: array<vec4<f16>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f16>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> ah: array<f16>;
@group(0) @binding(5) var<storage, read> bh: array<f16>;
@group(0) @binding(6) var<storage, read_write> cd: array<f32>;

override TRANS_A: bool = false;
override TRANS_B: bool = false;
// matmul_coop: load the next slab into registers while the current one is multiplied (its
// global loads overlap the tensor-core work), instead of loading it after.
override PREFETCH: bool = false;

const WG: u32 = 128u;
const BM: u32 = 8u * F;
const BN: u32 = 8u * F;
const BK: u32 = 2u * F;
// A subgroup's block of C: 4 x 4 fragments of F x F.
const SB: u32 = 4u * F;
// Staged slabs hold halves in the operand's stored layout, rows padded by 8 halves (16 bytes,
// which keeps every fragment 16-byte aligned): rows along M or N are BK + 8 long, rows along K
// are BM + 8 (= BN + 8) long. BM * (BK + 8) is the larger slab for any F.
const LD_SHORT: u32 = BK + 8u;
const LD_LONG: u32 = BM + 8u;
const SLAB: u32 = BM * LD_SHORT;
// Each operand's slab is BM * BK / 8 chunks of 8 halves: CHUNKS per invocation (4 at F = 16,
// 1 at F = 8).
const CHUNKS: u32 = BM * BK / 8u / WG;

var<workgroup> ta: array<f16, SLAB>;
var<workgroup> tb: array<f16, SLAB>;
var<workgroup> passes_wg: u32;

struct Offsets {
    a: u32,
    b: u32,
    c: u32,
}

fn offsets(wz: u32) -> Offsets {
    let z = wz + p.z_base;
    let outer = z / p.batch_inner;
    let inner = z % p.batch_inner;
    return Offsets(
        p.a_base + outer * p.a_outer + inner * p.a_inner,
        p.b_base + outer * p.b_outer + inner * p.b_inner,
        p.c_base + outer * p.c_outer + inner * p.c_inner,
    );
}

fn put8(dst_a: bool, dst: u32, lo: vec4<f16>, hi: vec4<f16>) {
    if (dst_a) {
        ta[dst] = lo.x; ta[dst + 1u] = lo.y; ta[dst + 2u] = lo.z; ta[dst + 3u] = lo.w;
        ta[dst + 4u] = hi.x; ta[dst + 5u] = hi.y; ta[dst + 6u] = hi.z; ta[dst + 7u] = hi.w;
    } else {
        tb[dst] = lo.x; tb[dst + 1u] = lo.y; tb[dst + 2u] = lo.z; tb[dst + 3u] = lo.w;
        tb[dst + 4u] = hi.x; tb[dst + 5u] = hi.y; tb[dst + 6u] = hi.z; tb[dst + 7u] = hi.w;
    }
}

// Where chunk e (of BM * BK / 8 per operand and slab, 8 halves each) of a slab comes from and goes:
// whether it is in range, its first half in global memory, and in the staged slab.
struct Slot {
    ok: bool,
    g: u32,
    dst: u32,
}

fn slot_a(o: Offsets, m0: u32, k0: u32, e: u32) -> Slot {
    if (TRANS_A) { // stored (K, M): slab rows are k
        let r = e / (BM / 8u);
        let q = (e % (BM / 8u)) * 8u;
        return Slot(k0 + r < p.k && m0 + q < p.m, o.a + (k0 + r) * p.m + m0 + q, r * LD_LONG + q);
    }
    // stored (M, K): slab rows are m
    let r = e / (BK / 8u);
    let q = (e % (BK / 8u)) * 8u;
    return Slot(m0 + r < p.m && k0 + q < p.k, o.a + (m0 + r) * p.k + k0 + q, r * LD_SHORT + q);
}

fn slot_b(o: Offsets, n0: u32, k0: u32, e: u32) -> Slot {
    if (TRANS_B) { // stored (N, K): slab rows are n
        let r = e / (BK / 8u);
        let q = (e % (BK / 8u)) * 8u;
        return Slot(n0 + r < p.n && k0 + q < p.k, o.b + (n0 + r) * p.k + k0 + q, r * LD_SHORT + q);
    }
    // stored (K, N): slab rows are k
    let r = e / (BN / 8u);
    let q = (e % (BN / 8u)) * 8u;
    return Slot(k0 + r < p.k && n0 + q < p.n, o.b + (k0 + r) * p.n + n0 + q, r * LD_LONG + q);
}

// One invocation's share of a slab held in registers: chunks lid + i * WG (i < CHUNKS) of each
// operand as (lo, hi) vec4 pairs; chunks out of range are zeros.
struct Fetched {
    a: array<vec4<f16>, 2u * CHUNKS>,
    b: array<vec4<f16>, 2u * CHUNKS>,
}

// Load this invocation's share of op(A)[m0 .. m0+BM, k0 .. k0+BK] and
// op(B)[k0 .. k0+BK, n0 .. n0+BN] from global memory.
fn fetch(o: Offsets, m0: u32, n0: u32, k0: u32, lid: u32) -> Fetched {
    var f: Fetched;
    for (var i = 0u; i < CHUNKS; i++) {
        let e = lid + i * WG;
        let sa = slot_a(o, m0, k0, e);
        if (sa.ok) {
            f.a[2u * i] = a4[sa.g / 4u];
            f.a[2u * i + 1u] = a4[sa.g / 4u + 1u];
        }
        let sb = slot_b(o, n0, k0, e);
        if (sb.ok) {
            f.b[2u * i] = b4[sb.g / 4u];
            f.b[2u * i + 1u] = b4[sb.g / 4u + 1u];
        }
    }
    return f;
}

// Write a fetched share into the staged slabs (where a chunk goes does not depend on the
// slab's position, so any offsets do).
fn put(o: Offsets, f: Fetched, lid: u32) {
    for (var i = 0u; i < CHUNKS; i++) {
        let e = lid + i * WG;
        put8(true, slot_a(o, 0u, 0u, e).dst, f.a[2u * i], f.a[2u * i + 1u]);
        put8(false, slot_b(o, 0u, 0u, e).dst, f.b[2u * i], f.b[2u * i + 1u]);
    }
}

// Stage op(A)[m0 .. m0+BM, k0 .. k0+BK] and op(B)[k0 .. k0+BK, n0 .. n0+BN], CHUNKS chunks
// of 8 halves per invocation and operand; chunks out of range are zeros.
fn stage(o: Offsets, m0: u32, n0: u32, k0: u32, lid: u32) {
    put(o, fetch(o, m0, n0, k0, lid), lid);
}

// Fragment i (rows wr + F i of the tile, columns kk .. kk+F) of the staged A slab.
fn frag_a(wr: u32, i: u32, kk: u32) -> FragA {
    if (TRANS_A) { // element (m, k) at k * LD_LONG + m: column-major
        let o = kk * LD_LONG + wr + i * F;
        let ld = LD_LONG;
        return coopLoad<FragA>(&ta[o], ld);
    }
    let o = (wr + i * F) * LD_SHORT + kk;
    let ld = LD_SHORT;
    return coopLoadT<FragA>(&ta[o], ld);
}

// Fragment j (rows kk .. kk+F, columns wc + F j of the tile) of the staged B slab.
fn frag_b(wc: u32, j: u32, kk: u32) -> FragB {
    if (TRANS_B) { // element (k, n) at n * LD_SHORT + k: column-major
        let o = (wc + j * F) * LD_SHORT + kk;
        let ld = LD_SHORT;
        return coopLoad<FragB>(&tb[o], ld);
    }
    let o = kk * LD_LONG + wc + j * F;
    let ld = LD_LONG;
    return coopLoadT<FragB>(&tb[o], ld);
}

@compute @workgroup_size(128)
fn matmul_coop(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
) {
    let o = offsets(wid.z);
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    if (lid == 0u) {
        passes_wg = (4u + nsg - 1u) / nsg;
    }
    let passes = workgroupUniformLoad(&passes_wg);
    let slabs = (p.k + BK - 1u) / BK;
    var acc: array<FragC, 16>;
    for (var ps = 0u; ps < passes; ps++) {
        let blk = sg + ps * nsg;
        let wr = (blk / 2u) * SB;
        let wc = (blk % 2u) * SB;
        let busy = blk < 4u && m0 + wr < p.m && n0 + wc < p.n;
        acc = array<FragC, 16>();
        var next: Fetched;
        if (PREFETCH) {
            next = fetch(o, m0, n0, 0u, lid);
        }
        for (var s = 0u; s < slabs; s++) {
            workgroupBarrier(); // the previous slab is no longer read
            if (PREFETCH) {
                put(o, next, lid);
            } else {
                stage(o, m0, n0, s * BK, lid);
            }
            workgroupBarrier();
            if (PREFETCH && s + 1u < slabs) {
                // The next slab's loads are in flight during this one's products.
                next = fetch(o, m0, n0, (s + 1u) * BK, lid);
            }
            if (busy) {
                for (var kk = 0u; kk < BK; kk += F) {
                    let a0 = frag_a(wr, 0u, kk);
                    let a1 = frag_a(wr, 1u, kk);
                    let a2 = frag_a(wr, 2u, kk);
                    let a3 = frag_a(wr, 3u, kk);
                    let b0 = frag_b(wc, 0u, kk);
                    let b1 = frag_b(wc, 1u, kk);
                    let b2 = frag_b(wc, 2u, kk);
                    let b3 = frag_b(wc, 3u, kk);
                    acc[0] = coopMultiplyAdd(a0, b0, acc[0]);
                    acc[1] = coopMultiplyAdd(a0, b1, acc[1]);
                    acc[2] = coopMultiplyAdd(a0, b2, acc[2]);
                    acc[3] = coopMultiplyAdd(a0, b3, acc[3]);
                    acc[4] = coopMultiplyAdd(a1, b0, acc[4]);
                    acc[5] = coopMultiplyAdd(a1, b1, acc[5]);
                    acc[6] = coopMultiplyAdd(a1, b2, acc[6]);
                    acc[7] = coopMultiplyAdd(a1, b3, acc[7]);
                    acc[8] = coopMultiplyAdd(a2, b0, acc[8]);
                    acc[9] = coopMultiplyAdd(a2, b1, acc[9]);
                    acc[10] = coopMultiplyAdd(a2, b2, acc[10]);
                    acc[11] = coopMultiplyAdd(a2, b3, acc[11]);
                    acc[12] = coopMultiplyAdd(a3, b0, acc[12]);
                    acc[13] = coopMultiplyAdd(a3, b1, acc[13]);
                    acc[14] = coopMultiplyAdd(a3, b2, acc[14]);
                    acc[15] = coopMultiplyAdd(a3, b3, acc[15]);
                }
            }
        }
        if (busy) {
            for (var t = 0u; t < 16u; t++) {
                let row = m0 + wr + (t / 4u) * F;
                let col = n0 + wc + (t % 4u) * F;
                if (row < p.m && col < p.n) {
                    let co = o.c + row * p.n + col;
                    let ld = p.n;
                    coopStoreT(acc[t], &c[co], ld);
                }
            }
        }
    }
}

@compute @workgroup_size(128)
fn matmul_coop_direct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
) {
    let o = offsets(wid.z);
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    for (var blk = sg; blk < 4u; blk += nsg) {
        let wr = (blk / 2u) * SB;
        let wc = (blk % 2u) * SB;
        if (m0 + wr >= p.m || n0 + wc >= p.n) {
            continue;
        }
        // Tiles past M or N read the last in-range tile instead (and are not stored).
        var rows: array<u32, 4>;
        var cols: array<u32, 4>;
        for (var i = 0u; i < 4u; i++) {
            rows[i] = min(m0 + wr + i * F, p.m - F);
            cols[i] = min(n0 + wc + i * F, p.n - F);
        }
        var acc: array<FragC, 16>;
        for (var k = 0u; k < p.k; k += F) {
            var fa: array<FragA, 4>;
            var fb: array<FragB, 4>;
            for (var i = 0u; i < 4u; i++) {
                if (TRANS_A) { // stored (K, M): column-major op(A)
                    let ao = o.a + k * p.m + rows[i];
                    let lda = p.m;
                    fa[i] = coopLoad<FragA>(&ah[ao], lda);
                } else {
                    let ao = o.a + rows[i] * p.k + k;
                    let lda = p.k;
                    fa[i] = coopLoadT<FragA>(&ah[ao], lda);
                }
                if (TRANS_B) { // stored (N, K): column-major op(B)
                    let bo = o.b + cols[i] * p.k + k;
                    let ldb = p.k;
                    fb[i] = coopLoad<FragB>(&bh[bo], ldb);
                } else {
                    let bo = o.b + k * p.n + cols[i];
                    let ldb = p.n;
                    fb[i] = coopLoadT<FragB>(&bh[bo], ldb);
                }
            }
            for (var t = 0u; t < 16u; t++) {
                acc[t] = coopMultiplyAdd(fa[t / 4u], fb[t % 4u], acc[t]);
            }
        }
        for (var t = 0u; t < 16u; t++) {
            let row = m0 + wr + (t / 4u) * F;
            let col = n0 + wc + (t % 4u) * F;
            if (row < p.m && col < p.n) {
                let co = o.c + row * p.n + col;
                let ld = p.n;
                coopStoreT(acc[t], &cd[co], ld);
            }
        }
    }
}
