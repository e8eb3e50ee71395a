// Softmax and log-softmax over the last axis of a contiguous f32 (rows, len) tensor, and their
// fused backward. One workgroup of 256 invocations per row, over a 2-D grid (row =
// wid.y * nwg.x + wid.x); partials meet in a workgroup-memory tree.
//
//   softmax      y = softmax(x) or log_softmax(x) (LOG = 1)     bindings: 1 x, 2 y
//   softmax_bwd  softmax:     dx = y * (g - sum(g * y))          bindings: 3 y, 4 g, 5 dx
//                log_softmax: dx = g - exp(y) * sum(g)
//
// The forward reads the row twice: one pass keeps a running (max, sum of exp(x - max)) per
// invocation (online softmax), the second writes. Inputs of -inf give probability 0; a row
// that is all -inf gives NaN, as in PyTorch.

struct Params {
    rows: u32,
    len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> sm_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> sm_y: array<f32>;
@group(0) @binding(3) var<storage, read> smb_y: array<f32>;
@group(0) @binding(4) var<storage, read> smb_g: array<f32>;
@group(0) @binding(5) var<storage, read_write> smb_dx: array<f32>;

// 1: log-softmax, 0: softmax.
override LOG: u32 = 0u;

const WG: u32 = 256u;
// Lowest finite f32: the running max starts here so that exp(-inf - max) is 0, not NaN.
const LOWEST: f32 = -3.4028235e38;

var<workgroup> part_m: array<f32, WG>;
var<workgroup> part_s: array<f32, WG>;

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.len;
    var m = LOWEST;
    var s = 0.0;
    for (var j = lid; j < p.len; j += WG) {
        let v = sm_x[base + j];
        if (v > m) {
            s = s * exp(m - v) + 1.0;
            m = v;
        } else {
            s += exp(v - m);
        }
    }
    part_m[lid] = m;
    part_s[lid] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            let m1 = part_m[lid];
            let m2 = part_m[lid + k];
            let mm = max(m1, m2);
            part_s[lid] = part_s[lid] * exp(m1 - mm) + part_s[lid + k] * exp(m2 - mm);
            part_m[lid] = mm;
        }
        workgroupBarrier();
    }
    let row_max = part_m[0];
    let row_sum = part_s[0];
    if (LOG == 1u) {
        let shift = row_max + log(row_sum);
        for (var j = lid; j < p.len; j += WG) {
            sm_y[base + j] = sm_x[base + j] - shift;
        }
    } else {
        let inv = 1.0 / row_sum;
        for (var j = lid; j < p.len; j += WG) {
            sm_y[base + j] = exp(sm_x[base + j] - row_max) * inv;
        }
    }
}

var<workgroup> part_d: array<f32, WG>;

@compute @workgroup_size(256)
fn softmax_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.len;
    // softmax: sum(g * y); log-softmax: sum(g).
    var d = 0.0;
    for (var j = lid; j < p.len; j += WG) {
        let g = smb_g[base + j];
        if (LOG == 1u) {
            d += g;
        } else {
            d += g * smb_y[base + j];
        }
    }
    part_d[lid] = d;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            part_d[lid] += part_d[lid + k];
        }
        workgroupBarrier();
    }
    let dot = part_d[0];
    for (var j = lid; j < p.len; j += WG) {
        let y = smb_y[base + j];
        let g = smb_g[base + j];
        if (LOG == 1u) {
            smb_dx[base + j] = g - exp(y) * dot;
        } else {
            smb_dx[base + j] = y * (g - dot);
        }
    }
}
