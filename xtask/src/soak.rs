//! `cargo xtask soak`: Dom0 and several pairs of `soak` DomUs keep event
//! channels, grant copies and XenStore busy for minutes. Each pair's
//! drive side grant-copies a fresh 4 KiB pattern into its peer's page,
//! sends an event and waits for the answer; the serve side checks the
//! page and answers; both write, read back and remove XenStore nodes of
//! their own. The run passes when every side passes (no event lost — an
//! answer 10 s late fails it —, no copy torn or stale, every read what
//! was written), and when what the machine holds after the DomUs end —
//! the hypervisor's free frames (`memcheck`) and Dom0's XenStore nodes,
//! watches and transactions — is what a run of the same machine without
//! load leaves.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::bare_metal;
use crate::bench::{boot_logged, figure};
use crate::domains::{self, DomU};
use crate::error::{Error, Result};
use crate::fuzz::{Ticker, free_frames};
use crate::machine::Machine;
use crate::progress::{Steps, say, seconds};

const RUN: &str = "soak";

/// What one soak is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Soak {
    /// How long the load lasts.
    pub seconds: u64,
    /// Pairs of DomUs (2 DomUs each).
    pub pairs: u32,
    /// Extra QEMU arguments.
    pub qemu_args: Vec<String>,
}

/// The machine: Dom0 and `pairs` pairs, d(2k+1) serving d(2k+2), which
/// drives for `seconds`; the hypervisor waits for the DomUs' memory
/// before it stops and reports its free frames.
pub fn machine(soak: &Soak, seconds: u64) -> Result<Machine> {
    let with = |cmdline: String| DomU {
        cmdline: Some(cmdline),
        ..domains::test_kernel("soak")
    };
    let mut domus = Vec::new();
    for k in 0..soak.pairs {
        let (serve, drive) = (2 * k + 1, 2 * k + 2);
        domus.push(with(format!("serve peer={drive}")));
        domus.push(with(format!("drive peer={serve} seconds={seconds}")));
    }
    Ok(Machine {
        smp: 2,
        mem_mib: 512,
        cmdline: "exit_when_done memcheck".to_owned(),
        modules: domains::modules(&domus)?,
        timeout: Some(Duration::from_secs(seconds + 180)),
        extra_qemu_args: soak.qemu_args.clone(),
        ..Machine::default()
    })
}

/// What one run did and left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Round trips of every drive side (each one event each way, one 4 KiB
    /// grant copy checked on arrival).
    pub rounds: Vec<u64>,
    /// XenStore requests of all sides together.
    pub store_ops: u64,
    /// The drive sides' mean round trip (µs), averaged over the pairs.
    pub mean_round_trip_us: u64,
    /// Free frames after the DomUs minus before them.
    pub frames_delta: i64,
    /// Dom0's XenStore after the last DomU left (its `XenStore after dN
    /// left:` line).
    pub store_after: String,
}

/// Checks one run's console: every side passed; returns what it did.
pub fn verdict(console: &str, soak: &Soak, log: &Path) -> Result<Verdict> {
    let check = crate::bench::check_of(RUN, log);
    let failed: Vec<&str> = console
        .lines()
        .filter(|l| l.contains(": FAIL ") || l.contains(" crash: "))
        .collect();
    check(failed.is_empty(), failed.join("; "))?;
    let mut rounds = Vec::new();
    let (mut store_ops, mut mean_sum) = (0, 0);
    for k in 0..soak.pairs {
        let (serve, drive) = (2 * k + 1, 2 * k + 2);
        let pass = |d: u32, role: &str| {
            console
                .lines()
                .find(|l| l.starts_with(&format!("(d{d}) soak {role}: PASS ")))
        };
        let (Some(s), Some(d)) = (pass(serve, "serve"), pass(drive, "drive")) else {
            return Err(Error::BenchCheck {
                run: RUN,
                reason: format!("pair d{serve}/d{drive} did not finish (no PASS from both)"),
                log: log.to_path_buf(),
            });
        };
        let n = |line: &str, key: &str| figure(line, key).unwrap_or(0);
        check(
            n(s, "rounds") == n(d, "rounds"),
            format!(
                "pair d{serve}/d{drive}: {} rounds driven but {} served",
                n(d, "rounds"),
                n(s, "rounds")
            ),
        )?;
        rounds.push(n(d, "rounds"));
        store_ops += n(s, "store_ops") + n(d, "store_ops");
        mean_sum += n(d, "mean_round_trip_us");
    }
    let (after, before) = free_frames(console).ok_or_else(|| Error::BenchOutput {
        run: RUN,
        key: "pavise: free memory",
        log: log.to_path_buf(),
    })?;
    let store_after = console
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix("dom0: XenStore after d"))
        .filter_map(|l| {
            l.split_once(" left: ")
                .map(|(_, counts)| counts.trim().to_owned())
        })
        .next()
        .ok_or_else(|| Error::BenchOutput {
            run: RUN,
            key: "dom0: XenStore after dN left",
            log: log.to_path_buf(),
        })?;
    Ok(Verdict {
        rounds,
        store_ops,
        mean_round_trip_us: mean_sum / u64::from(soak.pairs.max(1)),
        frames_delta: after - before,
        store_after,
    })
}

/// Whether the loaded run left what the unloaded one did.
pub fn leaks(loaded: &Verdict, baseline: &Verdict) -> Option<String> {
    if loaded.frames_delta != baseline.frames_delta {
        return Some(format!(
            "free memory after the DomUs changed by {:+} frames where the run without load changed by {:+}: a leak",
            loaded.frames_delta, baseline.frames_delta
        ));
    }
    if loaded.store_after != baseline.store_after {
        return Some(format!(
            "Dom0's XenStore holds {} after the DomUs where the run without load left {}: a leak",
            loaded.store_after, baseline.store_after
        ));
    }
    None
}

/// `cargo xtask soak --minutes M --pairs P`.
pub fn run(soak: &Soak) -> Result<()> {
    let mut steps = Steps::new(3);
    let step = steps.start("building the bare-metal crates");
    bare_metal::build_all()?;
    step.done("built");

    let step = steps.start(&format!("baseline: {} pairs without load", soak.pairs));
    let (console, log) = boot_logged(&machine(soak, 0)?, RUN, "soak-baseline.log")?;
    let baseline = verdict(&console, soak, &log)?;
    step.done("passed");

    let step = steps.start(&format!(
        "{} pairs under event, grant and XenStore load for {}",
        soak.pairs,
        seconds(Duration::from_secs(soak.seconds))
    ));
    let started = Instant::now();
    let ticker = Ticker::start("soaking");
    let result = boot_logged(&machine(soak, soak.seconds)?, RUN, "soak.log");
    drop(ticker);
    let (console, log) = result?;
    let loaded = verdict(&console, soak, &log)?;
    let wall = started.elapsed();
    if let Some(reason) = leaks(&loaded, &baseline) {
        return Err(Error::BenchCheck {
            run: RUN,
            reason,
            log,
        });
    }
    step.done("passed");
    let total: u64 = loaded.rounds.iter().sum();
    say(&format!(
        "soak: {} DomUs for {}: {total} round trips (per pair {:?}; {:.0}/s), {total} grant copies of 4 KiB checked, {} XenStore requests, mean round trip {} µs; no event lost; free memory {:+} frames and XenStore {} after the DomUs, as without load; console in {}",
        2 * soak.pairs,
        seconds(wall),
        loaded.rounds,
        total as f64 / soak.seconds.max(1) as f64,
        loaded.store_ops,
        loaded.mean_round_trip_us,
        loaded.frames_delta,
        loaded.store_after,
        log.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
(d1) soak serve: PASS rounds=40 copies_checked=40 store_ops=85
(d2) soak drive: PASS rounds=40 copies=40 store_ops=85 seconds=2 mean_round_trip_us=900
dom0: XenStore after d1 left: 30 nodes, 0 watches, 0 transactions
dom0: XenStore after d2 left: 27 nodes, 0 watches, 0 transactions
pavise: free memory: 5000 frames, as before the DomUs
";

    fn one_pair() -> Soak {
        Soak {
            seconds: 2,
            pairs: 1,
            qemu_args: Vec::new(),
        }
    }

    #[test]
    fn a_passing_run_gives_its_figures() {
        let v = verdict(CONSOLE, &one_pair(), Path::new("x.log")).unwrap();
        assert_eq!(v.rounds, vec![40]);
        assert_eq!(v.store_ops, 170);
        assert_eq!(v.mean_round_trip_us, 900);
        assert_eq!(v.frames_delta, 0);
        assert_eq!(v.store_after, "27 nodes, 0 watches, 0 transactions");
        assert_eq!(leaks(&v, &v), None);
    }

    #[test]
    fn lost_events_unequal_rounds_and_leaks_fail() {
        let lost = CONSOLE.replace(
            "(d1) soak serve: PASS rounds=40 copies_checked=40 store_ops=85",
            "(d1) soak serve: FAIL no event for round 41 in 10 s: lost",
        );
        assert!(verdict(&lost, &one_pair(), Path::new("x.log")).is_err());
        let unequal = CONSOLE.replace("serve: PASS rounds=40", "serve: PASS rounds=39");
        assert!(verdict(&unequal, &one_pair(), Path::new("x.log")).is_err());
        let v = verdict(CONSOLE, &one_pair(), Path::new("x.log")).unwrap();
        let leaked = verdict(
            &CONSOLE.replace("27 nodes", "29 nodes"),
            &one_pair(),
            Path::new("x.log"),
        )
        .unwrap();
        assert!(
            leaks(&leaked, &v)
                .unwrap()
                .contains("XenStore holds 29 nodes")
        );
    }
}
