// SwiGLU on a contiguous f32 tensor x (rows, 2w) holding the gate and up projections side by
// side in each row (one fused product [gate | up]); out (rows, w). One invocation per output
// element, 256 per workgroup over a 2-D grid (linear workgroup index wid.y * nwg.x + wid.x).
//
//   swiglu      out[r, i] = silu(a) * b, a = x[r, i], b = x[r, w + i],        bindings: 1 x, 2 out
//               silu(a) = a * s(a), s = sigmoid
//   swiglu_f16  the same, written as f16 (IEEE round to nearest even, as the f32 -> f16 cast):
//               word k = f16(out[2k]) | f16(out[2k + 1]) << 16, one invocation per word
//                                                                            bindings: 1 x, 6 out (u32 words)
//   swiglu_f16_keep  swiglu_f16, and x itself as f16 words for the backward (word m =
//               f16(x[2m]) | f16(x[2m + 1]) << 16; two words per invocation)
//                                                                            bindings: 1 x, 6 out, 7 x16
//   swiglu_bwd  dx[r, i]     = g * b * s * (1 + a * (1 - s))                  bindings: 3 x, 4 g, 5 dx
//               dx[r, w + i] = g * silu(a)
//   swiglu_bwd_h  the same from the f16 copy of x                            bindings: 8 x16, 4 g, 5 dx
//
// f16_word, f32_bits: f16_bits.wgsl (appended).

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
@group(0) @binding(7) var<storage, read_write> a_x16: array<u32>;
@group(0) @binding(8) var<storage, read> ab_x16: array<u32>;

// Linear index of an invocation over the 2-D grid of 256-wide workgroups.
fn invocation(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

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
    let i = invocation(wid, nwg, lid);
    if (i >= p.n) { return; }
    a_out[i] = swiglu_at(i);
}

// Output word k (outputs 2k and 2k + 1) as f16.
fn swiglu_word(k: u32) -> u32 {
    let i = 2u * k;
    var hi = 0.0; // the padding half of an odd count's last word
    if (i + 1u < p.n) {
        hi = swiglu_at(i + 1u);
    }
    return f16_word(swiglu_at(i), hi);
}

@compute @workgroup_size(256)
fn swiglu_f16(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let k = invocation(wid, nwg, lid);
    if (2u * k >= p.n) { return; }
    a_out16[k] = swiglu_word(k);
}

@compute @workgroup_size(256)
fn swiglu_f16_keep(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let k = invocation(wid, nwg, lid);
    if (2u * k >= p.n) { return; }
    a_out16[k] = swiglu_word(k);
    // x has 2n values, n words: this invocation's are 2k and 2k + 1 (the second past the
    // end when n is odd).
    for (var m = 2u * k; m < min(2u * k + 2u, p.n); m++) {
        a_x16[m] = f16_word(a_x[2u * m], a_x[2u * m + 1u]);
    }
}

// The backward of one output element from its gate a and up b values.
fn swiglu_grad(i: u32, j: u32, a: f32, b: f32) {
    let g = ab_g[i];
    let s = sigmoid(a);
    ab_dx[j] = g * b * s * (1.0 + a * (1.0 - s));
    ab_dx[j + p.width] = g * a * s;
}

@compute @workgroup_size(256)
fn swiglu_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, nwg, lid);
    if (i >= p.n) { return; }
    let j = gate_index(i);
    swiglu_grad(i, j, ab_x[j], ab_x[j + p.width]);
}

// Value e of the f16 copy of x, exactly (integer conversion, subnormals kept).
fn x16_at(e: u32) -> f32 {
    return bitcast<f32>(f32_bits(ab_x16[e / 2u] >> (16u * (e % 2u))));
}

@compute @workgroup_size(256)
fn swiglu_bwd_h(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = invocation(wid, nwg, lid);
    if (i >= p.n) { return; }
    let j = gate_index(i);
    swiglu_grad(i, j, x16_at(j), x16_at(j + p.width));
}
