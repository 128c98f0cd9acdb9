//! `cargo xtask bench`: figures measured inside guests, as ratios within
//! one run — a null hypercall against the bare VMMCALL exit round trip, a
//! DomU's CPU-bound loop against the same loop run bare on QEMU, an
//! interdomain event-channel round trip, grant-copy throughput against an
//! in-guest memcpy, and the XenStore read round trip — with plain TCG and
//! with `-icount shift=0` (the guest TSC then counts instructions).

use std::path::PathBuf;
use std::time::Duration;

use crate::domains::{self, DomU};
use crate::error::{Error, Result};
use crate::exit::{Exit, HvStatus};
use crate::machine::Machine;
use crate::{bare_metal, workspace};

/// One mode's figures (TSC cycles unless named otherwise).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    pub bare_vmexit: u64,
    pub hypercall: u64,
    pub domu_loop: u64,
    pub bare_loop: u64,
    /// Interdomain event-channel round trip between two DomUs.
    pub evtchn_roundtrip: u64,
    pub xenstore_read: u64,
    /// 4 KiB grant copies and in-guest memcpy, MiB/s of system time.
    pub grant_copy_mibps: u64,
    pub memcpy_mibps: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b.max(1) as f64
}

impl Figures {
    pub fn hypercall_ratio(&self) -> f64 {
        ratio(self.hypercall, self.bare_vmexit)
    }
    pub fn loop_ratio(&self) -> f64 {
        ratio(self.domu_loop, self.bare_loop)
    }
    pub fn evtchn_ratio(&self) -> f64 {
        ratio(self.evtchn_roundtrip, self.bare_vmexit)
    }
    pub fn grant_copy_ratio(&self) -> f64 {
        ratio(self.grant_copy_mibps, self.memcpy_mibps)
    }
}

/// Boots `machine` (the benchmark `run`), saves its console as
/// `target/pavise/<file>` and returns it with that path; a run that does
/// not end with exit status 0 is an error naming the log.
pub fn boot_logged(machine: &Machine, run: &'static str, file: &str) -> Result<(String, PathBuf)> {
    let outcome = machine.run_captured()?;
    let dir = workspace::pavise_dir();
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let log = dir.join(file);
    std::fs::write(&log, &outcome.console)
        .map_err(Error::io(format!("writing {}", log.display())))?;
    if outcome.exit != Exit::Hypervisor(HvStatus::Success) {
        return Err(Error::BenchRun {
            run,
            exit: outcome.exit.to_string(),
            log,
        });
    }
    Ok((outcome.console, log))
}

/// Finds `key=<number>` in the console.
pub fn figure(console: &str, key: &str) -> Option<u64> {
    console.lines().find_map(|line| {
        let at = line.find(&format!("{key}="))?;
        let rest = &line[at + key.len() + 1..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().ok()
    })
}

fn need(console: &RunConsole, key: &'static str) -> Result<u64> {
    figure(&console.text, key).ok_or_else(|| Error::BenchOutput {
        run: console.run.describe(),
        key,
        log: console.log.clone(),
    })
}

/// QEMU's arguments for a mode: none for plain TCG, `-icount shift=0`.
pub fn icount_args(icount: bool) -> Vec<String> {
    if icount {
        vec!["-icount".to_owned(), "shift=0".to_owned()]
    } else {
        Vec::new()
    }
}

/// The name of a mode in progress lines and file names.
pub fn mode_name(icount: bool) -> &'static str {
    if icount { "TCG -icount shift=0" } else { "TCG" }
}

/// One QEMU run of a mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Pavise with `bench exit_when_done`, Dom0 and the `bench` kernel as a
    /// DomU: the bare exit round trip, the null hypercall, the DomU loop,
    /// grant copy against memcpy, the XenStore read.
    Pavise,
    /// Pavise with two `pingpong` DomUs: the event-channel round trip.
    PingPong,
    /// The `bench` kernel alone on QEMU (`-kernel`, no hypervisor): the
    /// bare loop.
    Bare,
}

/// A mode's runs, in the order they are made.
pub const RUNS: [Run; 3] = [Run::Pavise, Run::PingPong, Run::Bare];

impl Run {
    /// What the run measures, for progress lines.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Pavise => "Pavise with the bench kernel as a DomU",
            Self::PingPong => "Pavise with two pingpong DomUs",
            Self::Bare => "the bench kernel bare on QEMU",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Self::Pavise => "pavise",
            Self::PingPong => "pingpong",
            Self::Bare => "bare",
        }
    }

    /// The machine this run boots.
    pub fn machine(self, icount: bool) -> Result<Machine> {
        let timeout = Some(Duration::from_secs(if icount { 300 } else { 120 }));
        let under_pavise = |cmdline: &str, domus: &[DomU]| -> Result<Machine> {
            Ok(Machine {
                smp: 2,
                cmdline: cmdline.to_owned(),
                modules: domains::modules(domus)?,
                extra_qemu_args: icount_args(icount),
                timeout,
                ..Machine::default()
            })
        };
        match self {
            Self::Pavise => under_pavise("bench exit_when_done", &[kernel("bench", None)]),
            Self::PingPong => under_pavise(
                "exit_when_done",
                &[
                    kernel("pingpong", Some("pong peer=2")),
                    kernel("pingpong", Some("ping peer=1")),
                ],
            ),
            Self::Bare => Ok(Machine {
                extra_qemu_args: icount_args(icount),
                timeout,
                ..Machine::bare(bare_metal::artifact("bench"))
            }),
        }
    }

    /// Boots the run's machine and returns its console, which is also
    /// saved as `target/pavise/bench-<run>-<mode>.log`. Every run must end
    /// cleanly (exit status E = 0: the kernels powered off).
    pub fn boot(self, icount: bool) -> Result<RunConsole> {
        let run = self.machine(icount)?.run_captured()?;
        let mode = if icount { "icount" } else { "tcg" };
        let dir = workspace::pavise_dir();
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let log = dir.join(format!("bench-{}-{mode}.log", self.file_name()));
        std::fs::write(&log, &run.console)
            .map_err(Error::io(format!("writing {}", log.display())))?;
        if run.exit != Exit::Hypervisor(HvStatus::Success) {
            return Err(Error::BenchRun {
                run: self.describe(),
                exit: run.exit.to_string(),
                log,
            });
        }
        Ok(RunConsole {
            run: self,
            text: run.console,
            log,
        })
    }
}

/// What one run printed.
#[derive(Clone, Debug)]
pub struct RunConsole {
    pub run: Run,
    /// The serial console.
    pub text: String,
    /// Where it was saved.
    pub log: PathBuf,
}

fn kernel(name: &str, cmdline: Option<&str>) -> DomU {
    DomU {
        cmdline: cmdline.map(str::to_owned),
        ..domains::test_kernel(name)
    }
}

impl Figures {
    /// Reads one mode's figures from the consoles of its runs.
    pub fn read(pavise: &RunConsole, pingpong: &RunConsole, bare: &RunConsole) -> Result<Self> {
        Ok(Self {
            bare_vmexit: need(pavise, "bare_vmexit_cycles")?,
            hypercall: need(pavise, "hypercall_cycles")?,
            domu_loop: need(pavise, "loop_cycles")?,
            bare_loop: need(bare, "loop_cycles")?,
            evtchn_roundtrip: need(pingpong, "evtchn_roundtrip_cycles")?,
            xenstore_read: need(pavise, "xenstore_read_cycles")?,
            grant_copy_mibps: need(pavise, "grant_copy_mibps")?,
            memcpy_mibps: need(pavise, "memcpy_mibps")?,
        })
    }
}

/// The table people read.
pub fn table(tcg: &Figures, icount: &Figures) -> String {
    let mut t = String::from(
        "figure                                           TCG   TCG -icount shift=0\n",
    );
    let rows: [(&str, u64, u64); 8] = [
        (
            "bare VMMCALL exit + VMRUN (cycles)",
            tcg.bare_vmexit,
            icount.bare_vmexit,
        ),
        (
            "null hypercall from a DomU (cycles)",
            tcg.hypercall,
            icount.hypercall,
        ),
        (
            "CPU-bound loop in a DomU (cycles)",
            tcg.domu_loop,
            icount.domu_loop,
        ),
        (
            "same loop bare on QEMU (cycles)",
            tcg.bare_loop,
            icount.bare_loop,
        ),
        (
            "evtchn round trip, 2 DomUs (cycles)",
            tcg.evtchn_roundtrip,
            icount.evtchn_roundtrip,
        ),
        (
            "XenStore read round trip (cycles)",
            tcg.xenstore_read,
            icount.xenstore_read,
        ),
        (
            "grant copy, 4 KiB pages (MiB/s)",
            tcg.grant_copy_mibps,
            icount.grant_copy_mibps,
        ),
        (
            "memcpy in a DomU, 4 KiB (MiB/s)",
            tcg.memcpy_mibps,
            icount.memcpy_mibps,
        ),
    ];
    for (name, a, b) in rows {
        t.push_str(&format!("{name:<42}{a:>12} {b:>21}\n"));
    }
    let ratios: [(&str, f64, f64); 4] = [
        (
            "ratio: hypercall / bare exit",
            tcg.hypercall_ratio(),
            icount.hypercall_ratio(),
        ),
        (
            "ratio: DomU loop / bare loop",
            tcg.loop_ratio(),
            icount.loop_ratio(),
        ),
        (
            "ratio: evtchn round trip / bare exit",
            tcg.evtchn_ratio(),
            icount.evtchn_ratio(),
        ),
        (
            "ratio: grant copy / memcpy",
            tcg.grant_copy_ratio(),
            icount.grant_copy_ratio(),
        ),
    ];
    for (name, a, b) in ratios {
        t.push_str(&format!("{name:<42}{a:>12.3} {b:>21.3}\n"));
    }
    t
}

/// The figures as one JSON object; `linux` (an object of Linux figures,
/// see `linux_bench::json`) is added under "linux" when given.
pub fn json(tcg: &Figures, icount: &Figures, linux: Option<&str>) -> String {
    json_with(tcg, icount, ["", ""], linux)
}

/// [`json`] with more fields in each mode's object: `extra[0]` in
/// "tcg", `extra[1]` in "tcg_icount_shift0", each empty or starting with
/// a comma (the network figures, `net_bench::fields`, beside the grant
/// copy they are measured against).
pub fn json_with(tcg: &Figures, icount: &Figures, extra: [&str; 2], linux: Option<&str>) -> String {
    let one = |f: &Figures, extra: &str| {
        format!(
            concat!(
                "{{\"bare_vmexit_cycles\": {}, \"hypercall_cycles\": {}, \"domu_loop_cycles\": {}, ",
                "\"bare_loop_cycles\": {}, \"evtchn_roundtrip_cycles\": {}, \"xenstore_read_cycles\": {}, ",
                "\"grant_copy_mibps\": {}, \"memcpy_mibps\": {}, \"hypercall_over_bare_exit\": {:.3}, ",
                "\"domu_loop_over_bare_loop\": {:.4}, \"evtchn_over_bare_exit\": {:.3}, \"grant_copy_over_memcpy\": {:.4}{}}}"
            ),
            f.bare_vmexit,
            f.hypercall,
            f.domu_loop,
            f.bare_loop,
            f.evtchn_roundtrip,
            f.xenstore_read,
            f.grant_copy_mibps,
            f.memcpy_mibps,
            f.hypercall_ratio(),
            f.loop_ratio(),
            f.evtchn_ratio(),
            f.grant_copy_ratio(),
            extra
        )
    };
    let linux = linux.map_or(String::new(), |l| format!(", \"linux\": {l}"));
    format!(
        "{{\"tcg\": {}, \"tcg_icount_shift0\": {}{linux}}}\n",
        one(tcg, extra[0]),
        one(icount, extra[1])
    )
}

/// Where the JSON goes by default.
pub fn default_json_path() -> PathBuf {
    workspace::target_dir().join("pavise").join("bench.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_found_in_console_lines() {
        let console = "(d1) bench: hypercall_cycles=41860 loop_cycles=44226648\r\npavise: bench: bare_vmexit_cycles=37782 (10000 round trips)\n";
        assert_eq!(figure(console, "hypercall_cycles"), Some(41860));
        assert_eq!(figure(console, "loop_cycles"), Some(44_226_648));
        assert_eq!(figure(console, "bare_vmexit_cycles"), Some(37782));
        assert_eq!(
            figure(
                "bench: hypercall_cycles=none loop_cycles=5",
                "hypercall_cycles"
            ),
            None
        );
        assert_eq!(figure("", "loop_cycles"), None);
    }

    fn console(run: Run, text: &str) -> RunConsole {
        RunConsole {
            run,
            text: text.to_owned(),
            log: PathBuf::from(format!("/tmp/{}.log", run.file_name())),
        }
    }

    #[test]
    fn figures_are_read_from_the_right_runs() {
        let pavise = console(
            Run::Pavise,
            "pavise: ready in 49 ms: 2 CPUs, 495 MiB free\r\n\
             pavise: bench: bare_vmexit_cycles=36900 (10000 round trips)\r\n\
             pavise: d1 (bench) built: 16 MiB, 1 vCPU\r\n\
             (d1) bench: hypercall_cycles=43547 loop_cycles=42511134\r\n\
             (d1) bench: grant_copy_mibps=136 memcpy_mibps=2927\r\n\
             (d1) bench: xenstore_read_cycles=474673\r\n",
        );
        let pingpong = console(
            Run::PingPong,
            "(d2) ping: evtchn_roundtrip_cycles=245573 over 100 round trips\r\n",
        );
        let bare = console(
            Run::Bare,
            "bench: hypercall_cycles=none loop_cycles=39816086\r\n",
        );
        let f = Figures::read(&pavise, &pingpong, &bare).expect("figures");
        assert_eq!(
            f,
            Figures {
                bare_vmexit: 36900,
                hypercall: 43547,
                domu_loop: 42_511_134,
                bare_loop: 39_816_086,
                evtchn_roundtrip: 245_573,
                xenstore_read: 474_673,
                grant_copy_mibps: 136,
                memcpy_mibps: 2927,
            }
        );
        // The bare loop comes from the bare run, not from the DomU's line.
        let swapped = Figures::read(&pavise, &pingpong, &pavise).expect("figures");
        assert_eq!(swapped.bare_loop, 42_511_134);
    }

    #[test]
    fn a_missing_figure_names_its_run_and_log() {
        let empty = console(
            Run::Pavise,
            "pavise: ready in 49 ms: 2 CPUs, 495 MiB free\n",
        );
        let bare = console(Run::Bare, "bench: hypercall_cycles=none loop_cycles=5\n");
        let error = Figures::read(&empty, &empty, &bare).expect_err("no figures");
        assert_eq!(
            error.to_string(),
            "the run of Pavise with the bench kernel as a DomU printed no \
             bare_vmexit_cycles= figure; its console is in /tmp/pavise.log"
        );
    }

    #[test]
    fn bare_runs_boot_the_kernel_alone() {
        let bare = Run::Bare.machine(true).expect("machine");
        assert_eq!(bare.boot, crate::machine::Boot::Bare);
        assert!(bare.hypervisor.ends_with("release/bench"));
        assert_eq!(bare.extra_qemu_args, ["-icount", "shift=0"]);
        assert!(
            Run::Bare
                .machine(false)
                .expect("machine")
                .extra_qemu_args
                .is_empty()
        );
    }

    #[test]
    fn ratios_table_and_json() {
        let f = Figures {
            bare_vmexit: 100,
            hypercall: 150,
            domu_loop: 1010,
            bare_loop: 1000,
            evtchn_roundtrip: 600,
            xenstore_read: 9000,
            grant_copy_mibps: 100,
            memcpy_mibps: 2000,
        };
        assert!((f.hypercall_ratio() - 1.5).abs() < 1e-9);
        assert!((f.loop_ratio() - 1.01).abs() < 1e-9);
        assert!((f.evtchn_ratio() - 6.0).abs() < 1e-9);
        assert!((f.grant_copy_ratio() - 0.05).abs() < 1e-9);
        assert!(table(&f, &f).contains("1.500"));
        assert!(json(&f, &f, None).contains("\"evtchn_roundtrip_cycles\": 600"));
        assert!(json(&f, &f, Some("{}")).ends_with(", \"linux\": {}}\n"));
        let with = json_with(&f, &f, [", \"a\": 1", ", \"b\": 2"], None);
        assert!(
            with.contains("\"grant_copy_over_memcpy\": 0.0500, \"a\": 1}, \"tcg_icount_shift0\"")
        );
        assert!(with.ends_with("\"grant_copy_over_memcpy\": 0.0500, \"b\": 2}}\n"));
    }
}
