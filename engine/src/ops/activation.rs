//! SwiGLU: silu(gate) * up, fused.
