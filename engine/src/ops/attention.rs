//! Causal attention with grouped-query heads, flash-style (no T x T matrix in memory).
