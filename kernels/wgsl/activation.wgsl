// SwiGLU on contiguous f32 tensors of n elements, fused forward and backward, one invocation
// per element, 256 per workgroup over a 2-D grid (linear workgroup index wid.y * nwg.x + wid.x).
//
//   swiglu      out = silu(gate) * up, silu(x) = x * s(x), s = sigmoid    bindings: 1 gate, 2 up, 3 out
//   swiglu_bwd  d gate = g * up * s * (1 + gate * (1 - s))                 bindings: 4 gate, 5 up, 6 g,
//               d up   = g * silu(gate)                                              7 d gate, 8 d up

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> a_gate: array<f32>;
@group(0) @binding(2) var<storage, read> a_up: array<f32>;
@group(0) @binding(3) var<storage, read_write> a_out: array<f32>;
@group(0) @binding(4) var<storage, read> ab_gate: array<f32>;
@group(0) @binding(5) var<storage, read> ab_up: array<f32>;
@group(0) @binding(6) var<storage, read> ab_g: array<f32>;
@group(0) @binding(7) var<storage, read_write> ab_dgate: array<f32>;
@group(0) @binding(8) var<storage, read_write> ab_dup: array<f32>;

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

@compute @workgroup_size(256)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.n) { return; }
    let x = a_gate[i];
    a_out[i] = x * sigmoid(x) * a_up[i];
}

@compute @workgroup_size(256)
fn swiglu_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.n) { return; }
    let x = ab_gate[i];
    let g = ab_g[i];
    let s = sigmoid(x);
    ab_dgate[i] = g * ab_up[i] * s * (1.0 + x * (1.0 - s));
    ab_dup[i] = g * x * s;
}
