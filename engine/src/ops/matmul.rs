//! Matrix multiply: f32 tiled SIMT, f16 inputs with f32 accumulation, cooperative matrices.
