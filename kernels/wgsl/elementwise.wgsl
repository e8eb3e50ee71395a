// Elementwise kernels on f32, 256 invocations per workgroup, one element each, over a 2-D grid
// (linear workgroup index = wid.y * nwg.x + wid.x).
//
//   binary  out[i] = a[ia(i)] OP b[ib(i)]             bindings: 1 a, 2 b, 3 out
//   unary   out[i] = F(a[i]; alpha, beta)             bindings: 4 a, 5 out
//   fill    out[i] = alpha                            bindings: 6 out
//   sum_to  out[o] = sum of a over the broadcast dims bindings: 7 a, 8 out
//   accumulate  acc[i] += a[i], in place             bindings: 9 acc, 10 a
//
// Shapes arrive collapsed (at most 8 dims, innermost last); strides are in elements and 0
// along a broadcast dimension. For sum_to, `dims` is the input shape, `sa` the input strides,
// `sb[d]` is 1 where dimension d is kept and 0 where it is summed over.

struct Params {
    n: u32,
    rank: u32,
    alpha: f32,
    beta: f32,
    dims: array<vec4<u32>, 2>,
    sa: array<vec4<u32>, 2>,
    sb: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> bin_a: array<f32>;
@group(0) @binding(2) var<storage, read> bin_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> bin_out: array<f32>;
@group(0) @binding(4) var<storage, read> un_a: array<f32>;
@group(0) @binding(5) var<storage, read_write> un_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> fill_out: array<f32>;
@group(0) @binding(7) var<storage, read> red_a: array<f32>;
@group(0) @binding(8) var<storage, read_write> red_out: array<f32>;
@group(0) @binding(9) var<storage, read_write> acc_out: array<f32>;
@group(0) @binding(10) var<storage, read> acc_a: array<f32>;

// Binary op: 0 add, 1 sub, 2 mul, 3 div, 4 max, 5 min.
override BINARY_OP: u32 = 0u;
// Unary op: see `unary_f`.
override UNARY_OP: u32 = 0u;

fn at(v: array<vec4<u32>, 2>, i: u32) -> u32 {
    return v[i / 4u][i % 4u];
}

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn binary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    var rem = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let dim = at(p.dims, u32(d));
        let c = rem % dim;
        rem = rem / dim;
        ia += c * at(p.sa, u32(d));
        ib += c * at(p.sb, u32(d));
    }
    let x = bin_a[ia];
    let y = bin_b[ib];
    var r: f32;
    switch BINARY_OP {
        case 0u: { r = x + y; }
        case 1u: { r = x - y; }
        case 2u: { r = x * y; }
        case 3u: { r = x / y; }
        case 4u: { r = max(x, y); }
        default: { r = min(x, y); }
    }
    bin_out[i] = r;
}

// 0 alpha*x+beta, 1 exp, 2 log, 3 sqrt, 4 1/sqrt, 5 x^2, 6 1/x, 7 silu, 8 sigmoid,
// 9 relu, 10 tanh, 11 |x|^alpha*sign-free power (x^alpha for x >= 0), 12 step (x > 0).
fn unary_f(x: f32) -> f32 {
    switch UNARY_OP {
        case 0u: { return p.alpha * x + p.beta; }
        case 1u: { return exp(x); }
        case 2u: { return log(x); }
        case 3u: { return sqrt(x); }
        case 4u: { return inverseSqrt(x); }
        case 5u: { return x * x; }
        case 6u: { return 1.0 / x; }
        case 7u: { return x / (1.0 + exp(-x)); }
        case 8u: { return 1.0 / (1.0 + exp(-x)); }
        case 9u: { return max(x, 0.0); }
        case 10u: { return tanh(x); }
        case 11u: { return pow(x, p.alpha); }
        default: { return select(0.0, 1.0, x > 0.0); }
    }
}

@compute @workgroup_size(256)
fn unary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    un_out[i] = unary_f(un_a[i]);
}

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    fill_out[i] = p.alpha;
}

@compute @workgroup_size(256)
fn accumulate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = linear_id(wid, nwg, lid);
    if (i >= p.n) { return; }
    acc_out[i] = acc_out[i] + acc_a[i];
}

// One invocation per output element; it walks the summed-over dims of the input.
@compute @workgroup_size(256)
fn sum_to(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let o = linear_id(wid, nwg, lid);
    if (o >= p.n) { return; }
    // Offset of this output's first input element, and the count of summed elements.
    var rem = o;
    var base = 0u;
    var count = 1u;
    for (var d = i32(p.rank) - 1; d >= 0; d--) {
        let dim = at(p.dims, u32(d));
        if (at(p.sb, u32(d)) == 1u) {
            base += (rem % dim) * at(p.sa, u32(d));
            rem = rem / dim;
        } else {
            count *= dim;
        }
    }
    var acc = 0.0;
    for (var r = 0u; r < count; r++) {
        var rr = r;
        var off = base;
        for (var d = i32(p.rank) - 1; d >= 0; d--) {
            if (at(p.sb, u32(d)) == 0u) {
                let dim = at(p.dims, u32(d));
                off += (rr % dim) * at(p.sa, u32(d));
                rr = rr / dim;
            }
        }
        acc += red_a[off];
    }
    red_out[o] = acc;
}
