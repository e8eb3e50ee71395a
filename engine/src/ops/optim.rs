//! Fused AdamW step, global L2 norm and clipping by it.
