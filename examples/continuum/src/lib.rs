//! The continuum experiment (issue 8): where the base model is strong on the data, the paper's
//! -p and -p^10 objectives should beat NLL; where it is weak, NLL should win. [`gen`] makes the
//! data for three domains along that continuum, [`run`] drives `trainer` over alpha on them and
//! [`report`] writes the table and plot.

pub mod gen;
pub mod report;
pub mod rng;
pub mod run;
