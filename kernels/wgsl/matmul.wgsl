// Tiled SIMT matmul with f32 accumulation: C[z] = op(A[z]) @ op(B[z]) (f32 out), where op is an
// optional transpose chosen by the override constants TRANS_A / TRANS_B, so a backward pass
// needs no transpose copies.
//
// This file is a template: kernels/src/matmul.rs prepends `alias AT = ..; alias BT = ..;` (the
// element types of A and B, f32 or f16, with `enable f16;` when needed), giving the f32 kernel
// and its f16-input variants from one body. Values are widened to f32 when staged.
//
//   matmul  bindings: 1 a: array<AT>, 2 b: array<BT>, 3 c: array<f32>
//
// Shapes (row-major, elements): op(A) is (M, K), op(B) is (K, N), C is (M, N).
//   A is stored (M, K), or (K, M) when TRANS_A;  B is stored (K, N), or (N, K) when TRANS_B.
// Batches: workgroup z + z_base = outer * batch_inner + inner, and each operand starts at
//   base + outer * s_outer + inner * s_inner (stride 0 broadcasts, e.g. weights shared by all).
// Grid: (ceil(N / 64), ceil(M / 64), batches). Each workgroup of 128 invocations computes a
// 64 x 64 tile of C, each invocation an 8 x 4 block held in registers; K advances 16 at a time
// through workgroup memory, the next slab's global loads in flight during the current one's
// arithmetic. Edge tiles: loads past M, N or K read zero, stores past M or N are skipped.

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
@group(0) @binding(1) var<storage, read> a: array<AT>;
@group(0) @binding(2) var<storage, read> b: array<BT>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

override TRANS_A: bool = false;
override TRANS_B: bool = false;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
const WG: u32 = 128u;
// Elements of each operand's slab one invocation loads: BM * BK / WG.
const PER_THREAD: u32 = 8u;
// vec4s per k-row of a staged slab: BM / 4 plus one of padding, so that transposing stores
// (consecutive k from consecutive invocations) spread over the banks.
const LDS: u32 = 17u;

// Staged slabs, k-major: sa[k * LDS + m / 4][m % 4] = op(A)[m0 + m, k0 + k], likewise sb with n.
var<workgroup> sa: array<vec4<f32>, BK * LDS>;
var<workgroup> sb: array<vec4<f32>, BK * LDS>;

fn load_a(a_off: u32, m0: u32, k0: u32, e: u32) -> f32 {
    var m: u32;
    var k: u32;
    if (TRANS_A) { m = m0 + e % BM; k = k0 + e / BM; } else { m = m0 + e / BK; k = k0 + e % BK; }
    var v = 0.0;
    if (m < p.m && k < p.k) {
        if (TRANS_A) { v = f32(a[a_off + k * p.m + m]); } else { v = f32(a[a_off + m * p.k + k]); }
    }
    return v;
}

fn load_b(b_off: u32, n0: u32, k0: u32, e: u32) -> f32 {
    var n: u32;
    var k: u32;
    if (TRANS_B) { n = n0 + e / BK; k = k0 + e % BK; } else { n = n0 + e % BN; k = k0 + e / BN; }
    var v = 0.0;
    if (n < p.n && k < p.k) {
        if (TRANS_B) { v = f32(b[b_off + n * p.k + k]); } else { v = f32(b[b_off + k * p.n + n]); }
    }
    return v;
}

// Where element e of a slab load goes in workgroup memory: (vec4 index, lane).
fn slot_a(e: u32) -> vec2<u32> {
    var m: u32;
    var k: u32;
    if (TRANS_A) { m = e % BM; k = e / BM; } else { m = e / BK; k = e % BK; }
    return vec2<u32>(k * LDS + m / 4u, m % 4u);
}

fn slot_b(e: u32) -> vec2<u32> {
    var n: u32;
    var k: u32;
    if (TRANS_B) { n = e / BK; k = e % BK; } else { n = e % BN; k = e / BN; }
    return vec2<u32>(k * LDS + n / 4u, n % 4u);
}

@compute @workgroup_size(128)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let z = wid.z + p.z_base;
    let outer = z / p.batch_inner;
    let inner = z % p.batch_inner;
    let a_off = p.a_base + outer * p.a_outer + inner * p.a_inner;
    let b_off = p.b_base + outer * p.b_outer + inner * p.b_inner;
    let c_off = p.c_base + outer * p.c_outer + inner * p.c_inner;
    let m0 = wid.y * BM;
    let n0 = wid.x * BN;
    // This invocation's block: rows ty*8 .. ty*8+7, columns tx*4 .. tx*4+3 of the tile.
    let tx = lid % 16u;
    let ty = lid / 16u;

    var acc: array<vec4<f32>, 8>;
    for (var i = 0u; i < 8u; i++) { acc[i] = vec4<f32>(0.0); }

    // Register prefetch of the first slab.
    var ra: array<f32, PER_THREAD>;
    var rb: array<f32, PER_THREAD>;
    for (var i = 0u; i < PER_THREAD; i++) {
        ra[i] = load_a(a_off, m0, 0u, lid + i * WG);
        rb[i] = load_b(b_off, n0, 0u, lid + i * WG);
    }

    let slabs = (p.k + BK - 1u) / BK;
    for (var s = 0u; s < slabs; s++) {
        workgroupBarrier(); // everyone is done reading the previous slab
        for (var i = 0u; i < PER_THREAD; i++) {
            let ia = slot_a(lid + i * WG);
            sa[ia.x][ia.y] = ra[i];
            let ib = slot_b(lid + i * WG);
            sb[ib.x][ib.y] = rb[i];
        }
        workgroupBarrier();
        if (s + 1u < slabs) {
            let k0 = (s + 1u) * BK;
            for (var i = 0u; i < PER_THREAD; i++) {
                ra[i] = load_a(a_off, m0, k0, lid + i * WG);
                rb[i] = load_b(b_off, n0, k0, lid + i * WG);
            }
        }
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = sa[kk * LDS + ty * 2u];
            let a1 = sa[kk * LDS + ty * 2u + 1u];
            let bv = sb[kk * LDS + tx];
            acc[0] = fma(vec4<f32>(a0.x), bv, acc[0]);
            acc[1] = fma(vec4<f32>(a0.y), bv, acc[1]);
            acc[2] = fma(vec4<f32>(a0.z), bv, acc[2]);
            acc[3] = fma(vec4<f32>(a0.w), bv, acc[3]);
            acc[4] = fma(vec4<f32>(a1.x), bv, acc[4]);
            acc[5] = fma(vec4<f32>(a1.y), bv, acc[5]);
            acc[6] = fma(vec4<f32>(a1.z), bv, acc[6]);
            acc[7] = fma(vec4<f32>(a1.w), bv, acc[7]);
        }
    }

    let col = n0 + tx * 4u;
    for (var i = 0u; i < 8u; i++) {
        let row = m0 + ty * 8u + i;
        if (row < p.m) {
            let o = c_off + row * p.n + col;
            let v = acc[i];
            if (col < p.n) { c[o] = v.x; }
            if (col + 1u < p.n) { c[o + 1u] = v.y; }
            if (col + 2u < p.n) { c[o + 2u] = v.z; }
            if (col + 3u < p.n) { c[o + 3u] = v.w; }
        }
    }
}
