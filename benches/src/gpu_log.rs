//! The `log` sink of the GPU benchmark binaries: prints wgpu's warnings and errors and counts
//! the errors (uncaptured validation errors, device loss), so that a figure during which one
//! happened is marked failed.

use std::sync::atomic::{AtomicUsize, Ordering};

struct Logger;
static GPU_ERRORS: AtomicUsize = AtomicUsize::new(0);

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if r.level() == log::Level::Error {
            GPU_ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        if self.enabled(r.metadata()) {
            eprintln!("[{} {}] {}", r.level(), r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

/// Route `log` here (warnings and errors); a second call is a no-op.
pub fn install() {
    let _ = log::set_logger(&Logger).map(|()| log::set_max_level(log::LevelFilter::Warn));
}

/// Errors logged so far.
pub fn errors() -> usize {
    GPU_ERRORS.load(Ordering::Relaxed)
}
