//! Embedding gather and its scatter-free backward.
