//! Rotary position embedding (HF rotate-half convention).
