// f32 <-> f16 conversions on bit patterns with integer arithmetic only (IEEE round to
// nearest even, +-inf on overflow, subnormals kept, NaN quieted), shared by the kernels that
// write or read f16 words (appended to cast.wgsl and activation.wgsl). cast.wgsl says why.

// Round-to-nearest-even increment: 1 when the dropped bits `rest` exceed `tie` (half their unit),
// or equal it and the kept value `q` is odd.
fn round_up(q: u32, rest: u32, tie: u32) -> u32 {
    return select(0u, 1u, rest > tie || (rest == tie && (q & 1u) == 1u));
}

// IEEE binary32 bits -> binary16 bits (in the low 16 bits).
fn f16_bits(b: u32) -> u32 {
    let sign = (b >> 16u) & 0x8000u;
    let e = (b >> 23u) & 0xffu;
    let man = b & 0x7fffffu;
    if (e == 0xffu) {
        // inf stays inf; NaN keeps its top payload bits and is made quiet
        return sign | 0x7c00u | select(0x200u | (man >> 13u), 0u, man == 0u);
    }
    if (e >= 143u) {
        return sign | 0x7c00u; // |x| >= 2^16: beyond f16's range even before rounding
    }
    if (e >= 113u) {
        // normal f16, biased exponent e - 112 in [1, 30]; a carry out of the mantissa
        // moves to the next binade, and from 65504 + half an ulp up to inf, as IEEE says
        let q = ((e - 112u) << 10u) | (man >> 13u);
        return sign | (q + round_up(q, man & 0x1fffu, 0x1000u));
    }
    if (e < 102u) {
        return sign; // |x| < 2^-25, half of the smallest subnormal: rounds to zero
    }
    // subnormal f16: |x| = m * 2^(e - 150) with the implicit bit in m, in units of 2^-24
    // that is m >> (126 - e); a carry may produce the smallest normal, which is right
    let m = man | 0x800000u;
    let shift = 126u - e; // 14 ..= 24
    let q = m >> shift;
    let rest = m & ((1u << shift) - 1u);
    return sign | (q + round_up(q, rest, 1u << (shift - 1u)));
}

// IEEE binary16 bits (low 16 bits of h) -> binary32 bits; exact (NaNs come out quiet).
fn f32_bits(h: u32) -> u32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let man = h & 0x3ffu;
    if (e == 0x1fu) {
        // inf stays inf; NaN keeps its payload and is made quiet
        return sign | 0x7f800000u | select(0x400000u | (man << 13u), 0u, man == 0u);
    }
    if (e != 0u) {
        return sign | ((e + 112u) << 23u) | (man << 13u);
    }
    if (man == 0u) {
        return sign;
    }
    // subnormal: man * 2^-24 = 2^(top - 24) * 1.f where top is man's leading bit
    let top = firstLeadingBit(man);
    return sign | ((top + 103u) << 23u) | ((man << (23u - top)) & 0x7fffffu);
}

// The f16 word holding `lo` in its low half and `hi` in its high half, each rounded from f32.
fn f16_word(lo: f32, hi: f32) -> u32 {
    return f16_bits(bitcast<u32>(lo)) | (f16_bits(bitcast<u32>(hi)) << 16u);
}
