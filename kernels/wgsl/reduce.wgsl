// Reductions over one axis of a contiguous f32 tensor seen as (outer, len, inner): sum (times a
// scale, for mean), and max with the index of its first occurrence. 256 invocations per
// workgroup, over a 2-D grid (linear workgroup index = wid.y * nwg.x + wid.x).
//
//   reduce  out[o, c, i] = scale * sum_{j in chunk c} x[o, j, i]     bindings: 1 x, 2 out
//   argmax  out[o, i] = max_j x[o, j, i], idx[o, i] = first such j  bindings: 3 x, 4 out, 5 idx
//   argmax_bwd  dx[o, j, i] = g[o, i] if j == idx[o, i] else 0     bindings: 6 idx, 7 g, 8 dx
//
// Shapes: x (outer, len, inner); `reduce` out (outer, chunks, inner) with chunk c covering
// j in [c * chunk_len, min(len, (c + 1) * chunk_len)) (chunks = 1 for a plain reduction; the
// engine sums the chunks in a second launch); `argmax` out and idx (outer, inner), chunks = 1;
// `argmax_bwd` runs one invocation per element of dx (grid of ceil(n / 256) workgroups).
//
// A workgroup owns `cols` neighbouring positions i (a power of two, 1 when inner = 1) of one
// (o, chunk); its 256 / cols lanes stride over j, so every load of a warp is contiguous: along
// j when inner = 1, along i otherwise. Partials meet in a workgroup-memory tree.

struct Params {
    outer: u32,
    len: u32,
    inner: u32,
    cols: u32,
    col_blocks: u32,
    chunks: u32,
    chunk_len: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> red_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> red_out: array<f32>;
@group(0) @binding(3) var<storage, read> am_x: array<f32>;
@group(0) @binding(4) var<storage, read_write> am_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> am_idx: array<u32>;
@group(0) @binding(6) var<storage, read> amb_idx: array<u32>;
@group(0) @binding(7) var<storage, read> amb_g: array<f32>;
@group(0) @binding(8) var<storage, read_write> amb_dx: array<f32>;

const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;

var<workgroup> part: array<f32, WG>;
var<workgroup> part_idx: array<u32, WG>;

// Where one workgroup works: outer index, chunk, and its first column.
struct Place {
    o: u32,
    chunk: u32,
    i0: u32,
}

fn place(g: u32) -> Place {
    let rest = g / p.col_blocks;
    return Place(rest / p.chunks, rest % p.chunks, (g % p.col_blocks) * p.cols);
}

@compute @workgroup_size(256)
fn reduce(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= p.outer * p.chunks * p.col_blocks) { return; }
    let at = place(g);
    let lanes = WG / p.cols;
    let lane = lid / p.cols;
    let i = at.i0 + lid % p.cols;
    let j0 = at.chunk * p.chunk_len;
    let j1 = min(p.len, j0 + p.chunk_len);
    var acc = 0.0;
    if (i < p.inner) {
        let base = at.o * p.len * p.inner + i;
        for (var j = j0 + lane; j < j1; j += lanes) {
            acc += red_x[base + j * p.inner];
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
    if (lane == 0u && i < p.inner) {
        red_out[(at.o * p.chunks + at.chunk) * p.inner + i] = part[lid] * p.scale;
    }
}

@compute @workgroup_size(256)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let g = wid.y * nwg.x + wid.x;
    if (g >= p.outer * p.col_blocks) { return; }
    let at = place(g);
    let lanes = WG / p.cols;
    let lane = lid / p.cols;
    let i = at.i0 + lid % p.cols;
    var best = 0.0;
    var best_j = NONE;
    if (i < p.inner) {
        let base = at.o * p.len * p.inner + i;
        for (var j = lane; j < p.len; j += lanes) {
            let v = am_x[base + j * p.inner];
            // j grows, so a strict comparison keeps the first maximum.
            if (best_j == NONE || v > best) {
                best = v;
                best_j = j;
            }
        }
    }
    part[lid] = best;
    part_idx[lid] = best_j;
    workgroupBarrier();
    for (var s = lanes / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            let ov = part[lid + s * p.cols];
            let oj = part_idx[lid + s * p.cols];
            let mj = part_idx[lid];
            // NONE (no element seen) loses to any index; ties go to the smaller index.
            let take = oj != NONE && (mj == NONE || ov > part[lid] || (ov == part[lid] && oj < mj));
            if (take) {
                part[lid] = ov;
                part_idx[lid] = oj;
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && i < p.inner) {
        let o = at.o * p.inner + i;
        am_out[o] = part[lid];
        am_idx[o] = part_idx[lid];
    }
}

@compute @workgroup_size(256)
fn argmax_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * nwg.x + wid.x) * WG + lid;
    if (e >= p.outer * p.len * p.inner) { return; }
    let i = e % p.inner;
    let rest = e / p.inner;
    let j = rest % p.len;
    let oi = (rest / p.len) * p.inner + i;
    amb_dx[e] = select(0.0, amb_g[oi], amb_idx[oi] == j);
}
