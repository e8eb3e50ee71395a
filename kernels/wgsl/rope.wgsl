// Rotary position embedding, HF's rotate-half convention, on a contiguous f32 tensor seen as
// (outer, seq_len, head_dim) (outer = batch * heads), one invocation per rotated pair (i, i + h),
// h = head_dim / 2, 256 per workgroup over a 2-D grid (wid.y * nwg.x + wid.x).
//
//   rope  out[.., i]     = x[.., i] cos(a) - x[.., i + h] sin(a) * sign
//         out[.., i + h] = x[.., i + h] cos(a) + x[.., i] sin(a) * sign
//         a = f32(pos[(o / group) * seq_len + t]) * inv_freq[i]   (f32 product, as HF)
//         bindings: 1 x (outer, seq_len, head_dim), 2 pos (u32), 3 inv_freq (h), 4 out
//
// sign = -1 rotates by -a: the backward. `group` is how many consecutive outer rows share one
// row of positions (heads, for positions (batch, seq_len); outer, for positions (seq_len)).
//
// cos and sin are our own: the angle is reduced modulo pi/2 exactly with integer arithmetic
// (2/pi to 64 bits) and a minimax polynomial finishes, so results match accurate libm values
// for any angle below 2^24 on every driver (native sin/cos are only specified on [-pi, pi]).

struct Params {
    pairs: u32,
    seq_len: u32,
    half: u32,
    group: u32,
    sign: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

@group(0) @binding(1) var<storage, read> r_x: array<f32>;
@group(0) @binding(2) var<storage, read> r_pos: array<u32>;
@group(0) @binding(3) var<storage, read> r_inv_freq: array<f32>;
@group(0) @binding(4) var<storage, read_write> r_out: array<f32>;

const PI_4: f32 = 0.7853981633974483;
// pi/2 per unit of a 32-bit fixed-point fraction of a quadrant.
const QUADRANT_ULP: f32 = 1.5707963267948966 * 2.3283064365386963e-10;
// 2/pi = 0.A2F9836E_4E441529... (hex fraction)
const TWO_OVER_PI_HI: u32 = 0xa2f9836eu;
const TWO_OVER_PI_LO: u32 = 0x4e441529u;

// Full 64-bit product of two u32: (low word, high word).
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let lo = (p00 & 0xffffu) | (mid << 16u);
    let hi = a1 * b1 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(lo, hi);
}

// (sin a, cos a) for finite |a| < 2^24.
fn sin_cos(a: f32) -> vec2<f32> {
    let x = abs(a);
    var r = x;
    var q = 0u;
    if (x > PI_4) {
        // x = m * 2^e exactly, m a 24-bit integer, e <= 0; x * 2/pi = m * F * 2^(e - 64) with
        // F = 2/pi * 2^64. u = floor(m * F / 2^32) holds the quadrant count above bit 32 - e
        // and 32 bits of fraction below it; the 2/pi bits dropped cost < 2^-40 of a quadrant.
        let bits = bitcast<u32>(x);
        let m = (bits & 0x7fffffu) | 0x800000u;
        let t = u32(clamp(150 - i32(bits >> 23u), 0, 31));
        let plo = mul_wide(m, TWO_OVER_PI_LO);
        let phi = mul_wide(m, TWO_OVER_PI_HI);
        let ul = phi.x + plo.y;
        let uh = phi.y + select(0u, 1u, ul < phi.x);
        let frac = select((ul >> t) | (uh << (32u - t)), ul, t == 0u);
        // Round to the nearest quadrant: a fraction >= 1/2 reads as negative when signed.
        q = ((uh >> t) + (frac >> 31u)) & 3u;
        r = f32(bitcast<i32>(frac)) * QUADRANT_ULP;
    }
    // Minimax polynomials on [-pi/4, pi/4] (Cephes sinf / cosf).
    let z = r * r;
    let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
    let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
    var sc: vec2<f32>;
    switch q {
        case 0u: { sc = vec2<f32>(s, c); }
        case 1u: { sc = vec2<f32>(c, -s); }
        case 2u: { sc = vec2<f32>(-s, -c); }
        default: { sc = vec2<f32>(-c, s); }
    }
    return vec2<f32>(select(sc.x, -sc.x, a < 0.0), sc.y);
}

@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * nwg.x + wid.x) * 256u + lid;
    if (e >= p.pairs) { return; }
    let i = e % p.half;
    let row = e / p.half;
    let t = row % p.seq_len;
    let o = row / p.seq_len;
    let pos = r_pos[(o / p.group) * p.seq_len + t];
    let sc = sin_cos(f32(pos) * r_inv_freq[i]);
    let sn = sc.x * p.sign;
    let base = row * 2u * p.half + i;
    let x1 = r_x[base];
    let x2 = r_x[base + p.half];
    r_out[base] = x1 * sc.y - x2 * sn;
    r_out[base + p.half] = x2 * sc.y + x1 * sn;
}
