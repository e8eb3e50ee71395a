// Fused AdamW step (in place) and the global L2 norm of a list of gradients with the clip
// scale derived from it, so that clipping needs no host round trip. 256 invocations per
// workgroup.
//
// The gradients may come multiplied by a loss scale: `unscale` (1 / loss scale) is applied
// to every element before it is squared, so the norm and clipping see the true gradients and
// no separate pass over them is needed.
//
//   sumsq_partial  partials[offset + w] = sum over a grid-stride slice of x of (x unscale)^2,
//                  for each of the dispatch's workgroups w (1-D grid)
//                  bindings: 1 x (n) f32, 2 partials f32
//   norm_finalize  out[0] = norm = sqrt(sum of partials[0..count]);
//                  when bound with 3 floats: out[1] = clip ? min(1, max_norm / (norm + 1e-6))
//                  : 1 (torch.nn.utils.clip_grad_norm_), out[2] = out[1] * unscale (the
//                  factor the raw gradients get); one workgroup
//                  bindings: 3 partials f32, 4 out (1 or 3) f32
//   adamw          torch.optim.AdamW on n elements, g = grad * stats[2]:
//                    p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//                    p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//                  bindings: 5 p, 6 m, 7 v (n) f32 read_write, 8 grad (n) f32, 9 stats (3) f32
//
// Every sum is taken in a fixed order (per-invocation strided loops, then a tree over the
// workgroup), so the norm is the same on every run. The host computes the step's scalars in
// f64 (bias corrections included) and passes them rounded to f32.

struct Params {
    n: u32,
    offset: u32,      // sumsq_partial: first partial slot of this tensor
    count: u32,       // norm_finalize: number of partials
    clip: u32,        // norm_finalize: 1 to clip to max_norm
    max_norm: f32,
    unscale: f32,     // sumsq_partial, norm_finalize: 1 / loss scale
    decay: f32,       // 1 - lr * weight_decay
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    step_size: f32,   // lr / (1 - beta1^t)
    bc2_sqrt: f32,    // sqrt(1 - beta2^t)
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> sq_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> sq_partials: array<f32>;
@group(0) @binding(3) var<storage, read> fin_partials: array<f32>;
@group(0) @binding(4) var<storage, read_write> fin_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> ad_p: array<f32>;
@group(0) @binding(6) var<storage, read_write> ad_m: array<f32>;
@group(0) @binding(7) var<storage, read_write> ad_v: array<f32>;
@group(0) @binding(8) var<storage, read> ad_g: array<f32>;
@group(0) @binding(9) var<storage, read> ad_stats: array<f32>;

const WG: u32 = 256u;

var<workgroup> wg_sum: array<f32, 256>;

// Tree sum of wg_sum over the workgroup; the result is in wg_sum[0].
fn tree_sum(lid: u32) {
    for (var span = WG / 2u; span > 0u; span = span >> 1u) {
        workgroupBarrier();
        if (lid < span) {
            wg_sum[lid] += wg_sum[lid + span];
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(256)
fn sumsq_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let stride = nwg.x * WG;
    var acc = 0.0;
    for (var i = wid.x * WG + lid; i < p.n; i += stride) {
        let x = sq_x[i] * p.unscale;
        acc += x * x;
    }
    wg_sum[lid] = acc;
    tree_sum(lid);
    if (lid == 0u) {
        sq_partials[p.offset + wid.x] = wg_sum[0];
    }
}

@compute @workgroup_size(256)
fn norm_finalize(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.count; i += WG) {
        acc += fin_partials[i];
    }
    wg_sum[lid] = acc;
    tree_sum(lid);
    if (lid == 0u) {
        let norm = sqrt(wg_sum[0]);
        fin_out[0] = norm;
        if (arrayLength(&fin_out) > 2u) {
            var scale = 1.0;
            if (p.clip != 0u) {
                scale = min(1.0, p.max_norm / (norm + 1e-6));
            }
            fin_out[1] = scale;
            fin_out[2] = scale * p.unscale;
        }
    }
}

@compute @workgroup_size(256)
fn adamw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    if (i >= p.n) { return; }
    let g = ad_g[i] * ad_stats[2];
    let m = p.beta1 * ad_m[i] + p.one_minus_beta1 * g;
    let v = p.beta2 * ad_v[i] + p.one_minus_beta2 * g * g;
    ad_m[i] = m;
    ad_v[i] = v;
    let w = ad_p[i] * p.decay;
    ad_p[i] = w - p.step_size * m / (sqrt(v) / p.bc2_sqrt + p.eps);
}
