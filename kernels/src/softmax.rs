//! Launchers for `wgsl/softmax.wgsl`: softmax and log-softmax over the last axis, one
//! workgroup per row, and their fused backward.

use crate::{grid_1d, Kernel, Launch, Needs, Params, Source};

pub static SOURCE: Source = Source {
    name: "softmax",
    wgsl: include_str!("../wgsl/softmax.wgsl"),
    needs: Needs {
        f16: false,
        subgroups: false,
        cooperative_matrix: false,
    },
};

const FORWARD: Kernel = Kernel {
    source: &SOURCE,
    entry: "softmax",
    bindings: &[1, 2],
};
const BACKWARD: Kernel = Kernel {
    source: &SOURCE,
    entry: "softmax_bwd",
    bindings: &[3, 4, 5],
};

/// The WGSL sources of this family.
pub fn sources() -> Vec<&'static Source> {
    vec![&SOURCE]
}

fn launch(kernel: Kernel, rows: usize, len: usize, log: bool) -> Launch {
    Launch {
        kernel,
        constants: vec![("LOG", if log { 1.0 } else { 0.0 })],
        workgroups: grid_1d(u32::try_from(rows).unwrap_or(u32::MAX)),
        params: Params::new().size(rows).size(len).build(),
    }
}

/// `y = softmax(x)` (or `log_softmax(x)` when `log`) over rows of `len`: buffers x, y.
pub fn forward(rows: usize, len: usize, log: bool) -> Launch {
    launch(FORWARD, rows, len, log)
}

/// The gradient of the forward's input from its output `y` and the output gradient `g`:
/// buffers y, g, dx.
pub fn backward(rows: usize, len: usize, log: bool) -> Launch {
    launch(BACKWARD, rows, len, log)
}
