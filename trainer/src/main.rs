//! The `trainer` command.
fn main() {}
