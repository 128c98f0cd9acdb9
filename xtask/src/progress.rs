//! Progress lines on stderr: one line before each long step starts and one
//! saying how long it took.

use std::time::{Duration, Instant};

/// Prints one `xtask: ` line to stderr.
pub fn say(message: &str) {
    eprintln!("xtask: {message}");
}

/// A long step that is under way; [`Step::done`] reports its duration.
#[must_use = "call done() to report how long the step took"]
pub struct Step {
    tag: String,
    start: Instant,
}

impl Step {
    /// Prints `xtask: [n/total] what…` and starts the clock.
    pub fn start(n: usize, total: usize, what: &str) -> Self {
        let tag = format!("[{n}/{total}]");
        say(&format!("{tag} {what}…"));
        Self {
            tag,
            start: Instant::now(),
        }
    }

    /// Prints `xtask: [n/total] <verb> in <time>` and returns the duration.
    pub fn done(self, verb: &str) -> Duration {
        self.done_with(|took| format!("{verb} in {took}"))
    }

    /// Prints `xtask: [n/total] <message>`, the message made from the
    /// formatted duration, and returns the duration.
    pub fn done_with(self, message: impl FnOnce(String) -> String) -> Duration {
        let took = self.start.elapsed();
        say(&format!("{} {}", self.tag, message(seconds(took))));
        took
    }
}

/// Numbered steps of one command: each [`Steps::start`] is the next of
/// `total`, so that steps made by different functions count as one list.
#[derive(Debug)]
pub struct Steps {
    done: usize,
    total: usize,
}

impl Steps {
    /// `total` steps, none started yet.
    pub fn new(total: usize) -> Self {
        Self { done: 0, total }
    }

    /// Starts the next step (see [`Step::start`]).
    pub fn start(&mut self, what: &str) -> Step {
        self.done += 1;
        Step::start(self.done, self.total, what)
    }
}

/// A duration as seconds with one decimal, e.g. `12.3 s`.
pub fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_have_one_decimal() {
        assert_eq!(seconds(Duration::from_millis(12_345)), "12.3 s");
        assert_eq!(seconds(Duration::from_millis(40)), "0.0 s");
        assert_eq!(seconds(Duration::from_secs(90)), "90.0 s");
    }

    #[test]
    fn steps_count_on() {
        let mut steps = Steps::new(2);
        assert_eq!(steps.start("one").tag, "[1/2]");
        assert_eq!(steps.start("two").tag, "[2/2]");
    }
}
