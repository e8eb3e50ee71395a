// sin and cos for the rotary kernels (rope.wgsl, heads.wgsl; appended to each source).
//
// cos and sin are our own: the angle is reduced modulo pi/2 exactly with integer arithmetic
// (2/pi to 64 bits) and a minimax polynomial finishes, so results match accurate libm values
// for any angle below 2^24 on every driver (native sin/cos are only specified on [-pi, pi]).

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
