//! `cargo xtask test`: host unit tests, one build of the bare-metal crates,
//! then the QEMU scenario tests against that build, each phase timed.

use std::time::{Duration, Instant};

use crate::bare_metal;
use crate::error::{Error, Result};
use crate::prereqs::{self, Need};
use crate::progress::{Step, say, seconds};
use crate::workspace;

/// The package holding the QEMU scenario tests.
pub const SCENARIO_PACKAGE: &str = "pavise-tests";

/// The environment variable telling the scenario tests that the bare-metal
/// crates are already built, so they must not run cargo themselves.
pub const PREBUILT_ENV: &str = "PAVISE_PREBUILT";

const PHASES: usize = 3;

/// Runs the whole test suite; fails if any phase fails. Stops at the first
/// failing phase (later phases depend on the earlier ones or would only
/// repeat their failure).
pub fn run() -> Result<()> {
    let start = Instant::now();
    let mut timings: Vec<(&'static str, Duration)> = Vec::new();
    let outcome = phases(&mut timings);
    let summary: Vec<String> = timings
        .iter()
        .map(|(name, took)| format!("{name} {}", seconds(*took)))
        .collect();
    say(&format!(
        "{}; total {}",
        summary.join(", "),
        seconds(start.elapsed())
    ));
    match outcome {
        Ok(()) => {
            say("all tests passed");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn phases(timings: &mut Vec<(&'static str, Duration)>) -> Result<()> {
    // Missing QEMU or GRUB tools would fail phase 3: say so before phase 1.
    prereqs::ensure(&[Need::Qemu, Need::GrubImage])?;

    // 1. Host unit tests of every crate except the QEMU scenarios (and the
    // guest kernels, which are bare-metal binaries only).
    let mut unit = workspace::cargo();
    unit.args(["test", "--workspace", "--exclude", SCENARIO_PACKAGE]);
    for kernel in bare_metal::kernel_packages()? {
        unit.args(["--exclude", &kernel]);
    }
    let step = Step::start(
        1,
        PHASES,
        &format!("host unit tests ({})", workspace::describe(&unit)),
    );
    let result = bare_metal::run_inheriting(unit);
    let verdict = if result.is_ok() { "passed" } else { "FAILED" };
    timings.push(("host unit tests", step.done(verdict)));
    result.map_err(failed("host unit tests"))?;

    // 2. The bare-metal crates, once, for every scenario.
    let packages = bare_metal::packages()?.join(", ");
    let step = Step::start(
        2,
        PHASES,
        &format!("building {packages} (release, {})", bare_metal::TARGET),
    );
    let result = bare_metal::build_all();
    timings.push((
        "build",
        step.done(if result.is_ok() { "built" } else { "FAILED" }),
    ));
    result?;

    // 3. The QEMU scenarios, one QEMU at a time, against that build.
    let mut scenarios = workspace::cargo();
    scenarios
        .args([
            "test",
            "--package",
            SCENARIO_PACKAGE,
            "--",
            "--test-threads=1",
        ])
        .env(PREBUILT_ENV, "1");
    let step = Step::start(3, PHASES, "QEMU scenario tests (one QEMU at a time)");
    let result = bare_metal::run_inheriting(scenarios);
    let verdict = if result.is_ok() { "passed" } else { "FAILED" };
    timings.push(("QEMU scenarios", step.done(verdict)));
    result.map_err(failed("QEMU scenario tests"))
}

/// Turns "cargo test ran and failed" into a failed phase; other errors
/// (cargo could not start, …) stay what they are.
fn failed(phase: &'static str) -> impl FnOnce(Error) -> Error {
    move |e| match e {
        Error::CommandFailed { .. } => Error::TestsFailed {
            phases: vec![phase],
        },
        other => other,
    }
}
