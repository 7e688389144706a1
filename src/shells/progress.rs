//! Progress of a long build: numbered steps with the elapsed time, as an `indicatif` bar on
//! a terminal or as plain lines on stderr otherwise (logs, CI).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// Where progress goes.
pub struct Progress {
    started: Instant,
    step: u64,
    total: u64,
    bar: Option<ProgressBar>,
    tty: bool,
    prefix: &'static str,
}

impl Progress {
    /// A bar when stderr is a terminal (from the first [`Progress::set_total`], so work
    /// that turns out to be done shows nothing), lines prefixed with `prefix` otherwise.
    pub fn new(prefix: &'static str) -> Self {
        Self {
            started: Instant::now(),
            step: 0,
            total: 0,
            bar: None,
            tty: std::io::stderr().is_terminal(),
            prefix,
        }
    }

    /// The number of steps to come.
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
        if self.tty && self.bar.is_none() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{prefix} [{pos}/{len}] {wide_msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(self.prefix);
            bar.enable_steady_tick(std::time::Duration::from_millis(500));
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    /// Starts the next step.
    pub fn step(&mut self, what: &str) {
        self.step += 1;
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.step - 1);
                bar.set_message(what.to_string());
            }
            None => eprintln!(
                "{}: [{}/{}] {what} ({} s)",
                self.prefix,
                self.step,
                self.total,
                self.started.elapsed().as_secs()
            ),
        }
    }

    /// A line that is not a step (printed above the bar).
    pub fn note(&self, what: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("{}: {what}", self.prefix)),
            None => eprintln!("{}: {what}", self.prefix),
        }
    }

    /// A finished piece of work, with the elapsed time.
    pub fn done(&self, what: &str) {
        self.note(&format!("{what} ({} s)", self.started.elapsed().as_secs()));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
