//! f32 <-> f16 casts.
