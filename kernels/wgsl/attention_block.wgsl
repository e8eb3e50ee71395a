// The f16 path of self-attention (engine/src/ops/attention_block.rs): for blocks of one batch
// row and one kv head, the scores of its G query heads against its keys, S = Q K^T
// (G T rows x T keys, f32, blocks one after the other), come from the matmul kernels
// (cooperative matrices where the adapter has them), and these kernels turn them into
// probabilities and back. Row r is query position r % T; with `causal` it sees keys
// 0..=r % T.
//
//   ab_softmax  one workgroup per row: lse = log sum exp(scale S) over the keys it sees,
//               P = exp(scale S - lse) as f16 (0 past the mask), lse into lse[lse_base + r]
//               bindings: 1 s (rows, t) f32, 2 p (rows, t) f16, 3 lse f32
//   ab_probs    P again from S and the saved lse (the backward's recomputation)
//               bindings: 4 s, 5 lse, 6 p f16
//   ab_dsoft    dS = scale P (dP - delta_r) as f16, the gradient of the raw scores
//               bindings: 7 s, 8 lse, 9 dp (rows, t) f32, 10 delta f32, 11 ds f16
//   ab_delta    delta_r = sum over d of dO[r, d] O[r, d] for every row of the output, from
//               the f16 dO the products see
//               bindings: 12 do f16, 13 o f32, 14 delta f32

enable f16;

struct Params {
    rows: u32,
    t: u32,
    causal: u32,
    scale: f32,
    lse_base: u32,
    d: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> sm_s: array<f32>;
@group(0) @binding(2) var<storage, read_write> sm_p: array<f16>;
@group(0) @binding(3) var<storage, read_write> sm_lse: array<f32>;

@group(0) @binding(4) var<storage, read> pr_s: array<f32>;
@group(0) @binding(5) var<storage, read> pr_lse: array<f32>;
@group(0) @binding(6) var<storage, read_write> pr_p: array<f16>;

@group(0) @binding(7) var<storage, read> ds_s: array<f32>;
@group(0) @binding(8) var<storage, read> ds_lse: array<f32>;
@group(0) @binding(9) var<storage, read> ds_dp: array<f32>;
@group(0) @binding(10) var<storage, read> ds_delta: array<f32>;
@group(0) @binding(11) var<storage, read_write> ds_out: array<f16>;

@group(0) @binding(12) var<storage, read> dl_do: array<f16>;
@group(0) @binding(13) var<storage, read> dl_o: array<f32>;
@group(0) @binding(14) var<storage, read_write> dl_delta: array<f32>;

const WG: u32 = 256u;
// Lowest finite f32: a running max starts here so that exp(LOWEST - max) is 0, not NaN.
const LOWEST: f32 = -3.4028235e38;

var<workgroup> red: array<f32, WG>;

// Keys row r sees: 0..keys(r).
fn keys(r: u32) -> u32 {
    if (p.causal != 0u) { return r % p.t + 1u; }
    return p.t;
}

// The element index of this invocation in a 1-D grid of 256-wide workgroups.
fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid;
}

// Tree reduction of red over the workgroup by max (is_max) or sum; the result in red[0].
fn reduce(lid: u32, is_max: bool) {
    for (var span = WG / 2u; span > 0u; span >>= 1u) {
        workgroupBarrier();
        if (lid < span) {
            if (is_max) {
                red[lid] = max(red[lid], red[lid + span]);
            } else {
                red[lid] = red[lid] + red[lid + span];
            }
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn ab_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let r = wid.y * nwg.x + wid.x;
    if (r >= p.rows) { return; }
    let n = keys(r);
    let base = r * p.t;
    var m = LOWEST;
    for (var j = lid; j < n; j += WG) {
        m = max(m, p.scale * sm_s[base + j]);
    }
    red[lid] = m;
    reduce(lid, true);
    m = red[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var j = lid; j < n; j += WG) {
        sum += exp(p.scale * sm_s[base + j] - m);
    }
    red[lid] = sum;
    reduce(lid, false);
    let lse = m + log(red[0]);
    for (var j = lid; j < p.t; j += WG) {
        var v = 0.0;
        if (j < n) { v = exp(p.scale * sm_s[base + j] - lse); }
        sm_p[base + j] = f16(v);
    }
    if (lid == 0u) {
        sm_lse[p.lse_base + r] = lse;
    }
}

@compute @workgroup_size(256)
fn ab_probs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let e = flat(wid, nwg, lid);
    if (e >= p.rows * p.t) { return; }
    let r = e / p.t;
    var v = 0.0;
    if (e % p.t < keys(r)) { v = exp(p.scale * pr_s[e] - pr_lse[p.lse_base + r]); }
    pr_p[e] = f16(v);
}

@compute @workgroup_size(256)
fn ab_dsoft(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let e = flat(wid, nwg, lid);
    if (e >= p.rows * p.t) { return; }
    let r = e / p.t;
    var v = 0.0;
    if (e % p.t < keys(r)) {
        let pr = exp(p.scale * ds_s[e] - ds_lse[p.lse_base + r]);
        v = p.scale * pr * (ds_dp[e] - ds_delta[p.lse_base + r]);
    }
    ds_out[e] = f16(v);
}

@compute @workgroup_size(256)
fn ab_delta(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let r = flat(wid, nwg, lid);
    if (r >= p.rows) { return; }
    var acc = 0.0;
    for (var k = 0u; k < p.d; k++) {
        acc += f32(dl_do[r * p.d + k]) * dl_o[r * p.d + k];
    }
    dl_delta[r] = acc;
}
