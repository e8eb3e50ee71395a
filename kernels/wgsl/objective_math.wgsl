// Shared by objective.wgsl and objective_block.wgsl (appended to each by the launchers): the
// running (max, rest) state of an online log-sum-exp and exp(u) - 1 without cancellation.

// Lowest finite f32: a running max starts here so that exp(LOWEST - max) is 0, not NaN.
const LOWEST: f32 = -3.4028235e38;

// A running (max m, rest r = sum of exp(z - m) over the other elements) with element v folded
// in when `ok`: one exp, no branch. The empty state is (LOWEST, 0).
fn online(s: vec2<f32>, v: f32, ok: bool) -> vec2<f32> {
    let e = exp(-abs(v - s.x));
    let r = select(s.y + e, (s.y + 1.0) * e, v > s.x);
    return select(s, vec2<f32>(max(s.x, v), r), ok);
}

// Two (max, rest) states merged: the smaller max's state, its max included, joins the rest.
fn merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    if (a.x >= b.x) {
        return vec2<f32>(a.x, a.y + (1.0 + b.y) * exp(b.x - a.x));
    }
    return vec2<f32>(b.x, b.y + (1.0 + a.y) * exp(a.x - b.x));
}

// exp(u) - 1 without cancellation for small |u|.
fn expm1(u: f32) -> f32 {
    if (abs(u) < 0.25) {
        // Taylor series to u^8: truncation below 2e-11 relative.
        var t = 1.0 / 40320.0;
        t = fma(t, u, 1.0 / 5040.0);
        t = fma(t, u, 1.0 / 720.0);
        t = fma(t, u, 1.0 / 120.0);
        t = fma(t, u, 1.0 / 24.0);
        t = fma(t, u, 1.0 / 6.0);
        t = fma(t, u, 0.5);
        t = fma(t, u, 1.0);
        return t * u;
    }
    return exp(u) - 1.0;
}
