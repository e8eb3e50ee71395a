// RMSNorm over the last axis of a contiguous f32 (rows, len) tensor with a weight (len), as
// HF's LlamaRMSNorm in f32: y = w * (x * rsqrt(mean(x^2) + eps)); and its backward. 256
// invocations per workgroup, over a 2-D grid (linear workgroup index = wid.y * nwg.x + wid.x).
//
//   rms_norm      y = w * x * rstd, rstd[r] = 1 / sqrt(mean_j x[r, j]^2 + eps)
//                 one workgroup per row                 bindings: 1 x, 2 w, 3 y, 4 rstd (rows)
//   rms_norm_f16  the same with y written as f16 words, y16[k] = f16(y[2k]) | f16(y[2k+1]) << 16
//                 (IEEE round to nearest even, as the cast), for an even len
//                                                       bindings: 1 x, 2 w, 14 y16 (u32), 4 rstd
//   rms_norm_bwd  dx = rstd * (g * w - x_hat * mean_j(g * w * x_hat)), x_hat = x * rstd
//                 one workgroup per row                 bindings: 5 x, 6 w, 7 rstd, 8 g, 9 dx
//   rms_norm_dw   partial[c, j] = sum over rows r of chunk c of g[r, j] * x[r, j] * rstd[r]
//                 bindings: 10 x, 11 rstd, 12 g, 13 partial (chunks, len)
//
// rms_norm_dw: a workgroup owns `cols` neighbouring columns (a power of two <= 64) of one
// chunk of rows; its 256 / cols lanes stride over the rows (loads contiguous along j), and
// the lanes meet in a workgroup-memory tree. No atomics: with chunks > 1 the engine sums the
// partials over the chunks in a second launch. f16_word: f16_bits.wgsl (appended).

struct Params {
    rows: u32,
    len: u32,
    eps: f32,
    cols: u32,
    col_blocks: u32,
    chunks: u32,
    chunk_rows: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> n_x: array<f32>;
@group(0) @binding(2) var<storage, read> n_w: array<f32>;
@group(0) @binding(3) var<storage, read_write> n_y: array<f32>;
@group(0) @binding(4) var<storage, read_write> n_rstd: array<f32>;
@group(0) @binding(5) var<storage, read> nb_x: array<f32>;
@group(0) @binding(6) var<storage, read> nb_w: array<f32>;
@group(0) @binding(7) var<storage, read> nb_rstd: array<f32>;
@group(0) @binding(8) var<storage, read> nb_g: array<f32>;
@group(0) @binding(9) var<storage, read_write> nb_dx: array<f32>;
@group(0) @binding(10) var<storage, read> nw_x: array<f32>;
@group(0) @binding(11) var<storage, read> nw_rstd: array<f32>;
@group(0) @binding(12) var<storage, read> nw_g: array<f32>;
@group(0) @binding(13) var<storage, read_write> nw_partial: array<f32>;
@group(0) @binding(14) var<storage, read_write> n_y16: array<u32>;

const WG: u32 = 256u;

var<workgroup> part: array<f32, WG>;

// Sum of `part` over the workgroup; every invocation gets it. Call in uniform control flow.
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    part[lid] = v;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k >>= 1u) {
        if (lid < k) {
            part[lid] += part[lid + k];
        }
        workgroupBarrier();
    }
    let total = part[0];
    workgroupBarrier(); // part may be reused after this
    return total;
}

// 1 / sqrt(mean(x^2) + eps) of the row at `base`, for every invocation of the workgroup.
fn row_rstd(base: u32, lid: u32) -> f32 {
    var ss = 0.0;
    for (var j = lid; j < p.len; j += WG) {
        let v = n_x[base + j];
        ss += v * v;
    }
    let total = workgroup_sum(lid, ss);
    return inverseSqrt(total / f32(p.len) + p.eps);
}

@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.len;
    let r = row_rstd(base, lid);
    for (var j = lid; j < p.len; j += WG) {
        n_y[base + j] = n_w[j] * (n_x[base + j] * r);
    }
    if (lid == 0u) {
        n_rstd[row] = r;
    }
}

@compute @workgroup_size(256)
fn rms_norm_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.len;
    let r = row_rstd(base, lid);
    for (var k = lid; k < p.len / 2u; k += WG) {
        let j = 2u * k;
        let lo = n_w[j] * (n_x[base + j] * r);
        let hi = n_w[j + 1u] * (n_x[base + j + 1u] * r);
        n_y16[base / 2u + k] = f16_word(lo, hi);
    }
    if (lid == 0u) {
        n_rstd[row] = r;
    }
}

@compute @workgroup_size(256)
fn rms_norm_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.len;
    var d = 0.0;
    for (var j = lid; j < p.len; j += WG) {
        d += nb_g[base + j] * nb_w[j] * nb_x[base + j];
    }
    let r = nb_rstd[row];
    // mean_j(g w x_hat) * rstd = r^2 / n * sum_j g w x
    let c = workgroup_sum(lid, d) * r * r / f32(p.len);
    for (var j = lid; j < p.len; j += WG) {
        nb_dx[base + j] = r * (nb_g[base + j] * nb_w[j] - nb_x[base + j] * c);
    }
}

@compute @workgroup_size(256)
fn rms_norm_dw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= p.chunks * p.col_blocks) { return; }
    let chunk = g / p.col_blocks;
    let lanes = WG / p.cols;
    let lane = lid / p.cols;
    let j = (g % p.col_blocks) * p.cols + lid % p.cols;
    let r0 = chunk * p.chunk_rows;
    let r1 = min(p.rows, r0 + p.chunk_rows);
    var acc = 0.0;
    if (j < p.len) {
        for (var r = r0 + lane; r < r1; r += lanes) {
            let e = r * p.len + j;
            acc += nw_g[e] * nw_x[e] * nw_rstd[r];
        }
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var s = lanes / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            part[lid] += part[lid + s * p.cols];
        }
        workgroupBarrier();
    }
    if (lane == 0u && j < p.len) {
        nw_partial[chunk * p.len + j] = part[lid];
    }
}
