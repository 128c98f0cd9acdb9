//! `cargo xtask fuzz`: hostile guests at scale. Several `fuzzer` DomUs
//! throw seeded random hypercalls (every family and sub-op, boundary and
//! random arguments, pointers into unmapped, read-only, foreign and
//! hypervisor ranges, other domains' ports and grant refs) while a healthy
//! `pingpong` pair runs its event-channel ping-pong with grants. The run
//! passes when no hypervisor fault or stray domain end happens, every
//! fuzzer and the pair pass, and the hypervisor's free frames after the
//! DomUs end (its `memcheck` line) are what a run of the same machine
//! whose fuzzers make no calls leaves: a frame a hypercall leaked shows.
//!
//! `--host` instead runs the property tests of the pure cores (ELF loader,
//! command lines, module strings, XenStore, event channels, grants, the
//! blkif/netif validators, …) with raised case counts.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::bench::boot_logged;
use crate::domains::{self, DomU};
use crate::error::{Error, Result};
use crate::machine::Machine;
use crate::progress::{Steps, say, seconds};
use crate::{bare_metal, suite, workspace};

const RUN: &str = "fuzzers beside a ping-pong pair";

/// What one guest fuzz run is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestFuzz {
    /// Hypercalls in total, shared among the fuzzers.
    pub calls: u64,
    /// The first fuzzer's seed; the k-th gets `seed + k`.
    pub seed: u64,
    /// How many fuzzer DomUs.
    pub fuzzers: u32,
    /// Extra QEMU arguments (`-- -d cpu_reset` to see a reset's cause).
    pub qemu_args: Vec<String>,
}

impl GuestFuzz {
    fn calls_each(&self) -> u64 {
        self.calls.div_ceil(u64::from(self.fuzzers.max(1)))
    }
}

/// The machine: Dom0, the pair (d1 pong, d2 ping), then the fuzzers, each
/// making `calls_each` calls; the hypervisor waits for the DomUs' memory
/// before it stops and reports its free frames.
pub fn machine(fuzz: &GuestFuzz, calls_each: u64) -> Result<Machine> {
    let with = |kernel: &str, cmdline: String| DomU {
        cmdline: Some(cmdline),
        ..domains::test_kernel(kernel)
    };
    let mut domus = vec![
        with("pingpong", "pong peer=2".to_owned()),
        with("pingpong", "ping peer=1".to_owned()),
    ];
    for k in 0..fuzz.fuzzers {
        let seed = fuzz.seed.wrapping_add(u64::from(k));
        domus.push(with("fuzzer", format!("seed={seed} calls={calls_each}")));
    }
    // About 10 000 calls a second per CPU under TCG here; ample room.
    let timeout = 120 + calls_each * u64::from(fuzz.fuzzers) / 2_000;
    Ok(Machine {
        smp: 2,
        cmdline: "exit_when_done memcheck".to_owned(),
        modules: domains::modules(&domus)?,
        timeout: Some(Duration::from_secs(timeout)),
        extra_qemu_args: fuzz.qemu_args.clone(),
        ..Machine::default()
    })
}

/// The free frames after the DomUs, against before them (the `memcheck`
/// line): `(after, before)`.
pub fn free_frames(console: &str) -> Option<(i64, i64)> {
    let line = console
        .lines()
        .find(|l| l.starts_with("pavise: free memory: "))?;
    let after: i64 = line
        .trim_start_matches("pavise: free memory: ")
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let before = match line.split(", ").nth(1) {
        Some(rest) if rest.starts_with("as before") => after,
        Some(rest) => rest.split_whitespace().next()?.parse().ok()?,
        None => return None,
    };
    Some((after, before))
}

/// Checks one run's console: every DomU passed; returns the change of
/// free frames across the DomUs.
fn verdict(console: &str, fuzz: &GuestFuzz, calls_each: u64, log: &Path) -> Result<i64> {
    let check = crate::bench::check_of(RUN, log);
    for line in ["(d1) pong: PASS", "(d2) ping: PASS"] {
        check(
            console.contains(line),
            format!("the healthy pair did not finish (no `{line}`)"),
        )?;
    }
    for k in 0..fuzz.fuzzers {
        let line = format!("(d{}) fuzzer: PASS {calls_each} calls", k + 3);
        check(
            console.contains(&line),
            format!("fuzzer d{} did not finish its calls (no `{line}`)", k + 3),
        )?;
    }
    let (after, before) = free_frames(console).ok_or_else(|| Error::BenchOutput {
        run: RUN,
        key: "pavise: free memory",
        log: log.to_path_buf(),
    })?;
    Ok(after - before)
}

/// `cargo xtask fuzz --calls N --seed S --fuzzers K`.
pub fn guest(fuzz: &GuestFuzz) -> Result<()> {
    let calls_each = fuzz.calls_each();
    let mut steps = Steps::new(3);
    let step = steps.start("building the bare-metal crates");
    bare_metal::build_all()?;
    step.done("built");

    let step = steps.start(&format!(
        "baseline: the same machine, {} fuzzers making no calls",
        fuzz.fuzzers
    ));
    let (console, log) = boot_logged(&machine(fuzz, 0)?, RUN, "fuzz-baseline.log")?;
    let baseline = verdict(&console, fuzz, 0, &log)?;
    step.done("passed");

    let step = steps.start(&format!(
        "{} fuzzers × {calls_each} calls (seeds {}..{}) beside a ping-pong pair",
        fuzz.fuzzers,
        fuzz.seed,
        fuzz.seed + u64::from(fuzz.fuzzers)
    ));
    let started = Instant::now();
    let ticker = Ticker::start("fuzzing");
    let result = boot_logged(&machine(fuzz, calls_each)?, RUN, "fuzz.log");
    drop(ticker);
    let (console, log) = result?;
    let delta = verdict(&console, fuzz, calls_each, &log)?;
    let wall = started.elapsed();
    step.done("passed");
    if delta != baseline {
        return Err(Error::BenchCheck {
            run: RUN,
            reason: format!(
                "free memory after the DomUs changed by {delta:+} frames where the run without calls changed by {baseline:+}: a leak"
            ),
            log,
        });
    }
    let total = calls_each * u64::from(fuzz.fuzzers);
    say(&format!(
        "fuzz: {total} calls in {} ({:.0} calls/s of QEMU wall time), no hypervisor fault, the pair passed, free memory {delta:+} frames as without calls; console in {}",
        seconds(wall),
        total as f64 / wall.as_secs_f64(),
        log.display()
    ));
    Ok(())
}

/// Says every 15 s that a long run is still going, until dropped.
pub struct Ticker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Ticker {
    pub fn start(what: &'static str) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::clone(&stop);
        let start = Instant::now();
        std::thread::spawn(move || {
            let mut next = Duration::from_secs(15);
            while !seen.load(Ordering::SeqCst) {
                if start.elapsed() >= next {
                    say(&format!("  {what}: {} so far", seconds(start.elapsed())));
                    next += Duration::from_secs(15);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Self { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `cargo xtask fuzz --host --cases N`: the host crates' tests in release
/// mode with every property test drawing `cases` cases.
pub fn host(cases: u64) -> Result<()> {
    let mut command = workspace::cargo();
    command
        .args([
            "test",
            "--release",
            "--workspace",
            "--exclude",
            suite::SCENARIO_PACKAGE,
            "--exclude",
            "xtask",
        ])
        .env("PROPTEST_CASES", cases.to_string());
    let mut steps = Steps::new(1);
    let step = steps.start(&format!(
        "property tests of the pure cores, {cases} cases each (release)"
    ));
    let result = bare_metal::run_inheriting(command);
    step.done(if result.is_ok() { "passed" } else { "FAILED" });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_memcheck_line_either_way() {
        assert_eq!(
            free_frames("x\npavise: free memory: 47212 frames, as before the DomUs\n"),
            Some((47212, 47212))
        );
        assert_eq!(
            free_frames("pavise: free memory: 47212 frames, 47213 before the DomUs (-1)"),
            Some((47212, 47213))
        );
        assert_eq!(free_frames("pavise: all watched domains ended"), None);
    }

    #[test]
    fn calls_are_shared_among_the_fuzzers() {
        let fuzz = GuestFuzz {
            calls: 10_001,
            seed: 1,
            fuzzers: 4,
            qemu_args: Vec::new(),
        };
        assert_eq!(fuzz.calls_each(), 2501);
    }
}
