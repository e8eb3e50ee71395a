//! Reductions: sum, mean and max over the last axis and over everything.
