//! Shared by the benchmark binaries' tests: run one, insist it succeeded, parse its rows.

use std::process::Command;

use serde_json::Value;

/// The runner cargo runs this target's tests through, from the environment (scripts/test.sh
/// sets one to run them on another Vulkan driver with its own libc), split at whitespace as
/// cargo splits it.
const RUNNER_ENV: &str = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER";

/// Run the benchmark binary `bin` with `args` (through the runner the test itself runs
/// through, if any); it must exit 0. Returns its JSON rows (the stdout lines that are
/// objects) and its stdout for messages.
pub fn run_rows(bin: &str, args: &[&str]) -> (Vec<Value>, String) {
    let runner = std::env::var(RUNNER_ENV).unwrap_or_default();
    let mut argv: Vec<&str> = runner.split_whitespace().collect();
    argv.push(bin);
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .args(args)
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
        )
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{bin} {args:?} failed\n{stdout}\n{stderr}"
    );
    let rows = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (rows, stdout)
}
