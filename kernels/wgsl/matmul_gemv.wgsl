// Skinny matmul for a few rows (decode steps, M <= 8): out (R, N) = A (R, K) @ B^T with B
// stored (N, K) row-major, as a Linear layer's weight. The tiled kernel would waste 63 of
// every 64 rows of its tile here; this one reads each weight once.
//
// Bindings: 0 params, 1 a (R*K f32), 2 b (N*K f32), 3 out (R*N f32).
// A workgroup of 256 is 8 output columns x 32 lanes; each lane strides over K by 32 (so the
// 32 lanes read a row of B contiguously), keeps one partial sum per row of A, and the lanes'
// partial sums are added in workgroup memory. Grid: ceil(N / 8) workgroups over (x, y).

struct Params {
    rows: u32,   // R <= 8
    n: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const MAX_ROWS: u32 = 8u;
// The rows of A, fixed per pipeline so the loops over rows unroll and the sums stay in
// registers (p.rows holds the same number).
override ROWS: u32 = 8u;
var<workgroup> partial: array<f32, 2048>; // 256 invocations x MAX_ROWS

@compute @workgroup_size(256)
fn gemv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let col = (wid.y * nwg.x + wid.x) * 8u + lid / 32u;
    let lane = lid % 32u;
    var acc: array<f32, 8>;
    for (var r = 0u; r < ROWS; r++) {
        acc[r] = 0.0;
    }
    if (col < p.n) {
        let brow = col * p.k;
        for (var kk = lane; kk < p.k; kk += 32u) {
            let w = b[brow + kk];
            for (var r = 0u; r < ROWS; r++) {
                acc[r] += a[r * p.k + kk] * w;
            }
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        partial[lid * MAX_ROWS + r] = acc[r];
    }
    workgroupBarrier();
    // Tree over the 32 lanes of each column.
    for (var s = 16u; s > 0u; s >>= 1u) {
        if (lane < s) {
            for (var r = 0u; r < ROWS; r++) {
                partial[lid * MAX_ROWS + r] += partial[(lid + s) * MAX_ROWS + r];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && col < p.n) {
        for (var r = 0u; r < ROWS; r++) {
            out[r * p.n + col] = partial[lid * MAX_ROWS + r];
        }
    }
}

// gemv4: the same product when K is a multiple of 4, reading A and B as vec4s. A workgroup
// of 256 is 32 output columns x 8 lanes; each lane strides over K/4 by 8 (the 8 lanes read
// 128 contiguous bytes of a row of B), and the lanes' sums are added in workgroup memory.
// Bindings: 4 a (R*K/4 vec4), 5 b (N*K/4 vec4), 6 out (R*N f32). Grid: ceil(N / 32).
@group(0) @binding(4) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> out4: array<f32>;

@compute @workgroup_size(256)
fn gemv4(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let col = (wid.y * nwg.x + wid.x) * 32u + lid / 8u;
    let lane = lid % 8u;
    let k4 = p.k / 4u;
    var acc: array<f32, 8>;
    for (var r = 0u; r < ROWS; r++) {
        acc[r] = 0.0;
    }
    if (col < p.n) {
        let brow = col * k4;
        for (var kk = lane; kk < k4; kk += 8u) {
            let w = b4[brow + kk];
            for (var r = 0u; r < ROWS; r++) {
                acc[r] += dot(a4[r * k4 + kk], w);
            }
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        partial[lid * MAX_ROWS + r] = acc[r];
    }
    workgroupBarrier();
    for (var s = 4u; s > 0u; s >>= 1u) {
        if (lane < s) {
            for (var r = 0u; r < ROWS; r++) {
                partial[lid * MAX_ROWS + r] += partial[(lid + s) * MAX_ROWS + r];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && col < p.n) {
        for (var r = 0u; r < ROWS; r++) {
            out4[r * p.n + col] = partial[lid * MAX_ROWS + r];
        }
    }
}
