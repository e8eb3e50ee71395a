//! What a person watching a run sees: on a terminal, a progress bar (position, a message such
//! as loss and mean p, rate, ETA); elsewhere (a log file, CI), one plain line per update.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: usize,
    started: Instant,
}

impl Progress {
    /// Progress over `total` units named `what` ("step", "example").
    pub fn new(total: usize, what: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
            )
            .expect("a valid template")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(what);
            bar
        });
        Progress {
            bar,
            what,
            total,
            started: Instant::now(),
        }
    }

    /// Mark `done` units finished, with `msg` describing the latest one.
    pub fn update(&self, done: usize, msg: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done as u64);
                bar.set_message(msg.to_string());
            }
            None => {
                let elapsed = self.started.elapsed().as_secs_f64();
                let eta = elapsed / done.max(1) as f64 * self.total.saturating_sub(done) as f64;
                eprintln!("{} {done}/{}  {msg}  ETA {eta:.0}s", self.what, self.total);
            }
        }
    }

    /// A line printed above the bar (or plainly, without one).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
