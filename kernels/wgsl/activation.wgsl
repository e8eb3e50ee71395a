// SwiGLU on a contiguous f32 tensor x (rows, 2w) holding the gate and up projections side by
// side in each row (one fused product [gate | up]); out (rows, w). One invocation per output
// element, 256 per workgroup over a 2-D grid (linear workgroup index wid.y * nwg.x + wid.x).
//
//   swiglu      out[r, i] = silu(a) * b, a = x[r, i], b = x[r, w + i],        bindings: 1 x, 2 out
//               silu(a) = a * s(a), s = sigmoid
//   swiglu_bwd  dx[r, i]     = g * b * s * (1 + a * (1 - s))                  bindings: 3 x, 4 g, 5 dx
//               dx[r, w + i] = g * silu(a)

struct Params {
    n: u32,
    width: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> a_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> a_out: array<f32>;
@group(0) @binding(3) var<storage, read> ab_x: array<f32>;
@group(0) @binding(4) var<storage, read> ab_g: array<f32>;
@group(0) @binding(5) var<storage, read_write> ab_dx: array<f32>;

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// Index of the gate value of output element i in x; the up value sits `width` after it.
fn gate_index(i: u32) -> u32 {
    return i + (i / p.width) * p.width;
}

@compute @workgroup_size(256)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.n) { return; }
    let j = gate_index(i);
    let a = a_x[j];
    a_out[i] = a * sigmoid(a) * a_x[j + p.width];
}

@compute @workgroup_size(256)
fn swiglu_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.n) { return; }
    let j = gate_index(i);
    let a = ab_x[j];
    let b = ab_x[j + p.width];
    let g = ab_g[i];
    let s = sigmoid(a);
    ab_dx[j] = g * b * s * (1.0 + a * (1.0 - s));
    ab_dx[j + p.width] = g * a * s;
}
