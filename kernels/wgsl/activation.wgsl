// SwiGLU on a contiguous f32 tensor x (rows, 2w) holding the gate and up projections side by
// side in each row (one fused product [gate | up]); out (rows, w). One invocation per output
// element, 256 per workgroup over a 2-D grid (linear workgroup index wid.y * nwg.x + wid.x).
//
//   swiglu      out[r, i] = silu(a) * b, a = x[r, i], b = x[r, w + i],        bindings: 1 x, 2 out
//               silu(a) = a * s(a), s = sigmoid
//   swiglu_f16  the same, written as f16 (IEEE round to nearest even, as the f32 -> f16 cast):
//               word k = f16(out[2k]) | f16(out[2k + 1]) << 16, one invocation per word
//                                                                            bindings: 1 x, 6 out (u32 words)
//   swiglu_bwd  dx[r, i]     = g * b * s * (1 + a * (1 - s))                  bindings: 3 x, 4 g, 5 dx
//               dx[r, w + i] = g * silu(a)
//
// f16_word: f16_bits.wgsl (appended).

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
@group(0) @binding(6) var<storage, read_write> a_out16: array<u32>;

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// Index of the gate value of output element i in x; the up value sits `width` after it.
fn gate_index(i: u32) -> u32 {
    return i + (i / p.width) * p.width;
}

// Output element i of the forward.
fn swiglu_at(i: u32) -> f32 {
    let j = gate_index(i);
    let a = a_x[j];
    return a * sigmoid(a) * a_x[j + p.width];
}

@compute @workgroup_size(256)
fn swiglu(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (i >= p.n) { return; }
    a_out[i] = swiglu_at(i);
}

@compute @workgroup_size(256)
fn swiglu_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let k = (wid.y * nwg.x + wid.x) * 256u + lid;
    let i = 2u * k;
    if (i >= p.n) { return; }
    var hi = 0.0; // the padding half of an odd count's last word
    if (i + 1u < p.n) {
        hi = swiglu_at(i + 1u);
    }
    a_out16[k] = f16_word(swiglu_at(i), hi);
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
