//! RMSNorm over the last axis.
