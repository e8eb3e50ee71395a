//! Softmax and log-softmax over the last axis.
