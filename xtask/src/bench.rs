//! `cargo xtask bench`: figures measured inside guests, as ratios within
//! one run — a null hypercall against the bare VMMCALL exit round trip, a
//! DomU's CPU-bound loop against the same loop run bare on QEMU, an
//! interdomain event-channel round trip, grant-copy throughput against an
//! in-guest memcpy, and the XenStore read round trip — with plain TCG and
//! with `-icount shift=0` (the guest TSC then counts instructions).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domains::{self, DomU};
use crate::error::{Error, Result};
use crate::exit::{Exit, HvStatus};
use crate::machine::{Machine, Mark};
use crate::{bare_metal, workspace};

/// One mode's figures (TSC cycles unless named otherwise; under
/// `-icount shift=0` a cycle is one instruction).
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    pub bare_vmexit: u64,
    pub hypercall: u64,
    /// A CPUID the hypervisor answers, from a DomU.
    pub cpuid_exit: u64,
    /// EVTCHNOP_send on a loopback channel (our port bound to our own).
    pub evtchn_send: u64,
    pub domu_loop: u64,
    pub bare_loop: u64,
    /// Interdomain event-channel round trip between two DomUs, on two
    /// CPUs and on one.
    pub evtchn_roundtrip: u64,
    pub evtchn_roundtrip_one_cpu: u64,
    pub xenstore_read: u64,
    /// One GNTTABOP_copy of a 4 KiB page, and a 4 KiB memcpy in the DomU.
    pub grant_copy_cycles: u64,
    pub memcpy_cycles: u64,
    /// 4 KiB grant copies (one per call, 32 per call) and in-guest
    /// memcpy, MiB/s of system time.
    pub grant_copy_mibps: u64,
    pub grant_copy_batch32_mibps: u64,
    pub memcpy_mibps: u64,
    /// Singleshot timers' lateness over the timer kernel's 5000.
    pub timer_error_median_us: u64,
    pub timer_error_max_us: u64,
    /// QEMU's CPU use (percent of one host CPU) while Dom0 and a DomU
    /// sleep, with the control channel attached as `cargo xtask run` has it.
    pub idle_qemu_cpu_percent: f64,
    /// The boot's moments (µs of machine time since power-on), in order.
    pub timeline: Vec<(String, u64)>,
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b.max(1) as f64
}

/// The timeline moment at which every DomU of the boot run has ended.
pub const BOOT_DONE: &str = "all_ended";

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
    pub fn batch32_ratio(&self) -> f64 {
        ratio(self.grant_copy_batch32_mibps, self.memcpy_mibps)
    }
    /// QEMU start to the boot run's DomUs all done (µs of machine time).
    pub fn boot_done_us(&self) -> u64 {
        self.timeline
            .iter()
            .find(|(moment, _)| moment == BOOT_DONE)
            .map_or(0, |&(_, us)| us)
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

/// A check of run `run` (console in `log`): `Ok` if `ok`, else the
/// run's failure with `reason`.
pub fn check_of<'a>(run: &'static str, log: &'a Path) -> impl Fn(bool, String) -> Result<()> + 'a {
    move |ok, reason| {
        if ok {
            Ok(())
        } else {
            Err(Error::BenchCheck {
                run,
                reason,
                log: log.to_path_buf(),
            })
        }
    }
}

/// Finds `key=<number>` in the console.
pub fn figure(console: &str, key: &str) -> Option<u64> {
    console.lines().find_map(|line| {
        let at = line.find(&format!("{key}="))?;
        leading_number(&line[at + key.len() + 1..])
    })
}

/// The decimal number `text` starts with.
fn leading_number(text: &str) -> Option<u64> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text[..end].parse().ok()
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
    /// DomU: the bare exit round trip, the null hypercall, the CPUID exit,
    /// the loopback send, the DomU loop, grant copy against memcpy, the
    /// XenStore read.
    Pavise,
    /// Pavise with two `pingpong` DomUs on two CPUs: the event-channel
    /// round trip.
    PingPong,
    /// The same on one CPU (every round trip a switch between domains).
    PingPongOneCpu,
    /// The `bench` kernel alone on QEMU (`-kernel`, no hypervisor): the
    /// bare loop.
    Bare,
    /// Pavise with the `timer` kernel: singleshot timers' lateness.
    Timer,
    /// Pavise with `bench` (its timeline), Dom0 and two `hello` DomUs:
    /// the boot from QEMU's start to the DomUs done.
    Boot,
    /// Pavise with Dom0, a `sleeper` DomU and the control channel: what
    /// QEMU costs its host while nothing runs.
    Idle,
}

/// A mode's runs, in the order they are made.
pub const RUNS: [Run; 7] = [
    Run::Pavise,
    Run::PingPong,
    Run::PingPongOneCpu,
    Run::Bare,
    Run::Timer,
    Run::Boot,
    Run::Idle,
];

/// What the sleeper says as its idle window opens and closes.
const ASLEEP: &str = "(d1) sleeper: asleep";
const AWAKE: &str = "(d1) sleeper: awake";

impl Run {
    /// What the run measures, for progress lines.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Pavise => "Pavise with the bench kernel as a DomU",
            Self::PingPong => "Pavise with two pingpong DomUs on two CPUs",
            Self::PingPongOneCpu => "Pavise with two pingpong DomUs on one CPU",
            Self::Bare => "the bench kernel bare on QEMU",
            Self::Timer => "Pavise with the timer kernel (5000 singleshot timers)",
            Self::Boot => "Pavise booting Dom0 and two hello DomUs (the timeline)",
            Self::Idle => "Pavise idle: Dom0 and a sleeping DomU for 3 s",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Self::Pavise => "pavise",
            Self::PingPong => "pingpong",
            Self::PingPongOneCpu => "pingpong-1cpu",
            Self::Bare => "bare",
            Self::Timer => "timer",
            Self::Boot => "boot",
            Self::Idle => "idle",
        }
    }

    /// The machine this run boots.
    pub fn machine(self, icount: bool) -> Result<Machine> {
        let timeout = Some(Duration::from_secs(if icount { 300 } else { 120 }));
        let under_pavise = |smp: u32, cmdline: &str, domus: &[DomU]| -> Result<Machine> {
            Ok(Machine {
                smp,
                cmdline: cmdline.to_owned(),
                modules: domains::modules(domus)?,
                extra_qemu_args: icount_args(icount),
                timeout,
                ..Machine::default()
            })
        };
        let pingpong = [
            kernel("pingpong", Some("pong peer=2")),
            kernel("pingpong", Some("ping peer=1")),
        ];
        match self {
            Self::Pavise => under_pavise(2, "bench exit_when_done", &[kernel("bench", None)]),
            Self::PingPong => under_pavise(2, "exit_when_done", &pingpong),
            Self::PingPongOneCpu => under_pavise(1, "exit_when_done", &pingpong),
            Self::Bare => Ok(Machine {
                extra_qemu_args: icount_args(icount),
                timeout,
                ..Machine::bare(bare_metal::artifact("bench"))
            }),
            Self::Timer => under_pavise(2, "exit_when_done", &[kernel("timer", None)]),
            Self::Boot => under_pavise(
                2,
                "bench exit_when_done",
                &[kernel("hello", None), kernel("hello", None)],
            ),
            Self::Idle => Ok(Machine {
                control: Some(crate::xl::new_socket()?),
                marks: vec![ASLEEP.to_owned(), AWAKE.to_owned()],
                ..under_pavise(2, "exit_when_done", &[kernel("sleeper", Some("ms=3000"))])?
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
        let idle_cpu_percent = match (run.mark(ASLEEP), run.mark(AWAKE)) {
            (
                Some(Mark {
                    at: Some(t0),
                    qemu_cpu: Some(c0),
                    ..
                }),
                Some(Mark {
                    at: Some(t1),
                    qemu_cpu: Some(c1),
                    ..
                }),
            ) if t1 > t0 => {
                Some(100.0 * c1.saturating_sub(*c0).as_secs_f64() / (*t1 - *t0).as_secs_f64())
            }
            _ => None,
        };
        Ok(RunConsole {
            run: self,
            text: run.console,
            log,
            idle_cpu_percent,
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
    /// For the idle run: QEMU's CPU use over the sleeper's window
    /// (percent of one host CPU).
    pub idle_cpu_percent: Option<f64>,
}

fn kernel(name: &str, cmdline: Option<&str>) -> DomU {
    DomU {
        cmdline: cmdline.map(str::to_owned),
        ..domains::test_kernel(name)
    }
}

/// The timeline a console shows: every `at_<moment>_us=N` of the
/// hypervisor's `bench` lines, in order.
pub fn timeline(console: &str) -> Vec<(String, u64)> {
    console
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("pavise: bench: at_")? + "pavise: bench: at_".len()..];
            let (moment, value) = rest.split_once("_us=")?;
            Some((moment.to_owned(), leading_number(value)?))
        })
        .collect()
}

impl Figures {
    /// Reads one mode's figures from the consoles of its runs, given in
    /// the order of [`RUNS`].
    pub fn read(runs: &[RunConsole]) -> Result<Self> {
        let of = |run: Run| -> Result<&RunConsole> {
            runs.iter()
                .find(|r| r.run == run)
                .ok_or(Error::BenchMissingRun(run.describe()))
        };
        let (pavise, boot) = (of(Run::Pavise)?, of(Run::Boot)?);
        let timeline = timeline(&boot.text);
        if !timeline.iter().any(|(m, _)| m == BOOT_DONE) {
            return Err(Error::BenchOutput {
                run: boot.run.describe(),
                key: "at_all_ended_us",
                log: boot.log.clone(),
            });
        }
        let idle = of(Run::Idle)?;
        Ok(Self {
            bare_vmexit: need(pavise, "bare_vmexit_cycles")?,
            hypercall: need(pavise, "hypercall_cycles")?,
            cpuid_exit: need(pavise, "cpuid_cycles")?,
            evtchn_send: need(pavise, "evtchn_send_cycles")?,
            domu_loop: need(pavise, "loop_cycles")?,
            bare_loop: need(of(Run::Bare)?, "loop_cycles")?,
            evtchn_roundtrip: need(of(Run::PingPong)?, "evtchn_roundtrip_cycles")?,
            evtchn_roundtrip_one_cpu: need(of(Run::PingPongOneCpu)?, "evtchn_roundtrip_cycles")?,
            xenstore_read: need(pavise, "xenstore_read_cycles")?,
            grant_copy_cycles: need(pavise, "grant_copy_cycles")?,
            memcpy_cycles: need(pavise, "memcpy_cycles")?,
            grant_copy_mibps: need(pavise, "grant_copy_mibps")?,
            grant_copy_batch32_mibps: need(pavise, "grant_copy_batch32_mibps")?,
            memcpy_mibps: need(pavise, "memcpy_mibps")?,
            timer_error_median_us: need(of(Run::Timer)?, "timer_error_median_us")?,
            timer_error_max_us: need(of(Run::Timer)?, "timer_error_max_us")?,
            idle_qemu_cpu_percent: idle.idle_cpu_percent.ok_or_else(|| Error::BenchOutput {
                run: idle.run.describe(),
                key: "sleeper: asleep / awake",
                log: idle.log.clone(),
            })?,
            timeline,
        })
    }
}

/// A row of the table: its name and how to get its figure.
type Row<T> = (&'static str, fn(&Figures) -> T);

/// The table people read.
pub fn table(tcg: &Figures, icount: &Figures) -> String {
    let mut t = String::from(
        "figure                                           TCG   TCG -icount shift=0\n",
    );
    let rows: [Row<u64>; 19] = [
        ("bare VMMCALL exit + VMRUN (cycles)", |f| f.bare_vmexit),
        ("null hypercall from a DomU (cycles)", |f| f.hypercall),
        ("CPUID exit from a DomU (cycles)", |f| f.cpuid_exit),
        ("loopback EVTCHNOP_send (cycles)", |f| f.evtchn_send),
        ("CPU-bound loop in a DomU (cycles)", |f| f.domu_loop),
        ("same loop bare on QEMU (cycles)", |f| f.bare_loop),
        ("evtchn round trip, 2 DomUs, 2 CPUs (cyc.)", |f| {
            f.evtchn_roundtrip
        }),
        ("evtchn round trip, 2 DomUs, 1 CPU (cyc.)", |f| {
            f.evtchn_roundtrip_one_cpu
        }),
        ("XenStore read round trip (cycles)", |f| f.xenstore_read),
        ("grant copy of one 4 KiB page (cycles)", |f| {
            f.grant_copy_cycles
        }),
        ("memcpy of 4 KiB in a DomU (cycles)", |f| f.memcpy_cycles),
        ("grant copy, 4 KiB pages (MiB/s)", |f| f.grant_copy_mibps),
        ("grant copy, 32 per call (MiB/s)", |f| {
            f.grant_copy_batch32_mibps
        }),
        ("memcpy in a DomU, 4 KiB (MiB/s)", |f| f.memcpy_mibps),
        ("singleshot timer error, median (us)", |f| {
            f.timer_error_median_us
        }),
        ("singleshot timer error, max (us)", |f| f.timer_error_max_us),
        ("QEMU CPU while idle (% of a CPU, x100)", |f| {
            (f.idle_qemu_cpu_percent * 100.0).round() as u64
        }),
        ("hypervisor entered (us since power-on)", |f| {
            f.timeline
                .iter()
                .find(|(m, _)| m == "hypervisor_entry")
                .map_or(0, |&(_, us)| us)
        }),
        ("Dom0 + 2 DomUs done (us since power-on)", |f| {
            f.boot_done_us()
        }),
    ];
    for (name, get) in rows {
        t.push_str(&format!("{name:<42}{:>12} {:>21}\n", get(tcg), get(icount)));
    }
    let ratios: [Row<f64>; 5] = [
        ("ratio: hypercall / bare exit", Figures::hypercall_ratio),
        ("ratio: DomU loop / bare loop", Figures::loop_ratio),
        (
            "ratio: evtchn round trip / bare exit",
            Figures::evtchn_ratio,
        ),
        ("ratio: grant copy / memcpy", Figures::grant_copy_ratio),
        ("ratio: grant copy x32 / memcpy", Figures::batch32_ratio),
    ];
    for (name, get) in ratios {
        t.push_str(&format!(
            "{name:<42}{:>12.3} {:>21.3}\n",
            get(tcg),
            get(icount)
        ));
    }
    t
}

/// The figures as one JSON object; `linux` (an object of Linux figures,
/// see `linux_bench::json`) is added under "linux" when given.
pub fn json(tcg: &Figures, icount: &Figures, linux: Option<&str>) -> String {
    json_with(tcg, icount, ["", ""], linux)
}

/// One mode's figures as a JSON object, `extra` (empty or starting with a
/// comma) appended to its fields.
fn mode_json(f: &Figures, extra: &str) -> String {
    let timeline: Vec<String> = f
        .timeline
        .iter()
        .map(|(moment, us)| format!("\"{moment}\": {us}"))
        .collect();
    format!(
        concat!(
            "{{\"bare_vmexit_cycles\": {}, \"hypercall_cycles\": {}, \"cpuid_cycles\": {}, ",
            "\"evtchn_send_cycles\": {}, \"domu_loop_cycles\": {}, \"bare_loop_cycles\": {}, ",
            "\"evtchn_roundtrip_cycles\": {}, \"evtchn_roundtrip_one_cpu_cycles\": {}, ",
            "\"xenstore_read_cycles\": {}, \"grant_copy_cycles\": {}, \"memcpy_cycles\": {}, ",
            "\"grant_copy_mibps\": {}, \"grant_copy_batch32_mibps\": {}, \"memcpy_mibps\": {}, ",
            "\"timer_error_median_us\": {}, \"timer_error_max_us\": {}, ",
            "\"idle_qemu_cpu_percent\": {:.2}, \"boot_done_us\": {}, \"boot_timeline_us\": {{{}}}, ",
            "\"hypercall_over_bare_exit\": {:.3}, \"domu_loop_over_bare_loop\": {:.4}, ",
            "\"evtchn_over_bare_exit\": {:.3}, \"grant_copy_over_memcpy\": {:.4}, ",
            "\"grant_copy_batch32_over_memcpy\": {:.4}{}}}"
        ),
        f.bare_vmexit,
        f.hypercall,
        f.cpuid_exit,
        f.evtchn_send,
        f.domu_loop,
        f.bare_loop,
        f.evtchn_roundtrip,
        f.evtchn_roundtrip_one_cpu,
        f.xenstore_read,
        f.grant_copy_cycles,
        f.memcpy_cycles,
        f.grant_copy_mibps,
        f.grant_copy_batch32_mibps,
        f.memcpy_mibps,
        f.timer_error_median_us,
        f.timer_error_max_us,
        f.idle_qemu_cpu_percent,
        f.boot_done_us(),
        timeline.join(", "),
        f.hypercall_ratio(),
        f.loop_ratio(),
        f.evtchn_ratio(),
        f.grant_copy_ratio(),
        f.batch32_ratio(),
        extra
    )
}

/// [`json`] with more fields in each mode's object: `extra[0]` in
/// "tcg", `extra[1]` in "tcg_icount_shift0", each empty or starting with
/// a comma (the network figures, `net_bench::fields`, beside the grant
/// copy they are measured against). The stripped hypervisor's size is a
/// top-level field, `hypervisor_stripped_bytes`, when `image_bytes` is
/// known.
pub fn json_with(tcg: &Figures, icount: &Figures, extra: [&str; 2], linux: Option<&str>) -> String {
    json_full(tcg, icount, extra, linux, None)
}

/// [`json_with`] and the image size.
pub fn json_full(
    tcg: &Figures,
    icount: &Figures,
    extra: [&str; 2],
    linux: Option<&str>,
    image_bytes: Option<u64>,
) -> String {
    let linux = linux.map_or(String::new(), |l| format!(", \"linux\": {l}"));
    let image = image_bytes.map_or(String::new(), |b| {
        format!(", \"hypervisor_stripped_bytes\": {b}")
    });
    format!(
        "{{\"tcg\": {}, \"tcg_icount_shift0\": {}{image}{linux}}}\n",
        mode_json(tcg, extra[0]),
        mode_json(icount, extra[1])
    )
}

/// `json` (one object) with `"key": value` added at its top level.
pub fn with_top_level(json: &str, key: &str, value: &str) -> String {
    let body = json.trim_end();
    match body.strip_suffix('}') {
        Some(open) => format!("{open}, \"{key}\": {value}}}\n"),
        None => json.to_owned(),
    }
}

/// The size of the hypervisor's image with its symbols and debug
/// information stripped (what a boot loader loads), by `strip`.
pub fn stripped_size(elf: &std::path::Path) -> Result<u64> {
    let out = workspace::pavise_dir().join("hypervisor.stripped");
    let output = std::process::Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(elf)
        .output()
        .map_err(|source| Error::Spawn {
            program: "strip (Debian's binutils)".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::CommandFailed {
            command: format!("strip -o {} {}", out.display(), elf.display()),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let len = std::fs::metadata(&out)
        .map_err(Error::io(format!("reading {}", out.display())))?
        .len();
    let _ = std::fs::remove_file(&out);
    Ok(len)
}

/// Where the JSON goes by default.
pub fn default_json_path() -> PathBuf {
    workspace::target_dir().join("pavise").join("bench.json")
}

#[cfg(test)]
pub(crate) mod tests {
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
            idle_cpu_percent: (run == Run::Idle).then_some(1.5),
        }
    }

    fn consoles() -> Vec<RunConsole> {
        vec![
            console(
                Run::Pavise,
                "pavise: ready in 49 ms: 2 CPUs, 495 MiB free\r\n\
                 pavise: bench: bare_vmexit_cycles=36900 (10000 round trips)\r\n\
                 pavise: d1 (bench) built: 16 MiB, 1 vCPU\r\n\
                 (d1) bench: hypercall_cycles=43547 loop_cycles=42511134\r\n\
                 (d1) bench: cpuid_cycles=40000\r\n\
                 (d1) bench: evtchn_send_cycles=50000\r\n\
                 (d1) bench: grant_copy_mibps=136 grant_copy_batch32_mibps=700 memcpy_mibps=2927\r\n\
                 (d1) bench: grant_copy_cycles=90000 memcpy_cycles=3000\r\n\
                 (d1) bench: xenstore_read_cycles=474673\r\n",
            ),
            console(
                Run::PingPong,
                "(d2) ping: evtchn_roundtrip_cycles=245573 over 100 round trips\r\n",
            ),
            console(
                Run::PingPongOneCpu,
                "(d2) ping: evtchn_roundtrip_cycles=300000 over 100 round trips\r\n",
            ),
            console(
                Run::Bare,
                "bench: hypercall_cycles=none loop_cycles=39816086\r\n",
            ),
            console(
                Run::Timer,
                "(d1) timer: 5000 singleshot timers: error_min_us=0 timer_error_median_us=85 timer_error_max_us=900\r\n",
            ),
            console(
                Run::Boot,
                "pavise: bench: at_hypervisor_entry_us=329182\r\n\
                 pavise: bench: at_domains_built_us=462337\r\n\
                 pavise: bench: at_d1_ended_us=466116\r\n\
                 pavise: bench: at_all_ended_us=468952\r\n",
            ),
            console(Run::Idle, ""),
        ]
    }

    /// Figures as the runs above give them.
    pub fn figures() -> Figures {
        Figures {
            bare_vmexit: 36900,
            hypercall: 43547,
            cpuid_exit: 40000,
            evtchn_send: 50000,
            domu_loop: 42_511_134,
            bare_loop: 39_816_086,
            evtchn_roundtrip: 245_573,
            evtchn_roundtrip_one_cpu: 300_000,
            xenstore_read: 474_673,
            grant_copy_cycles: 90000,
            memcpy_cycles: 3000,
            grant_copy_mibps: 136,
            grant_copy_batch32_mibps: 700,
            memcpy_mibps: 2927,
            timer_error_median_us: 85,
            timer_error_max_us: 900,
            idle_qemu_cpu_percent: 1.5,
            timeline: vec![
                ("hypervisor_entry".to_owned(), 329_182),
                ("domains_built".to_owned(), 462_337),
                ("d1_ended".to_owned(), 466_116),
                ("all_ended".to_owned(), 468_952),
            ],
        }
    }

    #[test]
    fn figures_are_read_from_the_right_runs() {
        let runs = consoles();
        let f = Figures::read(&runs).expect("figures");
        assert_eq!(f, figures());
        assert_eq!(f.boot_done_us(), 468_952);
        // The bare loop comes from the bare run, not from the DomU's line.
        let mut swapped = runs.clone();
        swapped[3].text = runs[0].text.clone();
        assert_eq!(
            Figures::read(&swapped).expect("figures").bare_loop,
            42_511_134
        );
        // A boot run without its end, an idle run without its window.
        let mut no_end = runs.clone();
        no_end[5].text = "pavise: bench: at_hypervisor_entry_us=1\n".to_owned();
        assert!(Figures::read(&no_end).is_err());
        let mut no_window = runs;
        no_window[6].idle_cpu_percent = None;
        assert!(Figures::read(&no_window).is_err());
    }

    #[test]
    fn a_missing_figure_names_its_run_and_log() {
        let mut runs = consoles();
        runs[0].text = "pavise: ready in 49 ms: 2 CPUs, 495 MiB free\n".to_owned();
        let error = Figures::read(&runs).expect_err("no figures");
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
            grant_copy_mibps: 100,
            grant_copy_batch32_mibps: 1500,
            memcpy_mibps: 2000,
            ..figures()
        };
        assert!((f.hypercall_ratio() - 1.5).abs() < 1e-9);
        assert!((f.loop_ratio() - 1.01).abs() < 1e-9);
        assert!((f.evtchn_ratio() - 6.0).abs() < 1e-9);
        assert!((f.grant_copy_ratio() - 0.05).abs() < 1e-9);
        assert!((f.batch32_ratio() - 0.75).abs() < 1e-9);
        assert!(table(&f, &f).contains("1.500"));
        assert!(json(&f, &f, None).contains("\"evtchn_roundtrip_cycles\": 600"));
        assert!(json(&f, &f, Some("{}")).ends_with(", \"linux\": {}}\n"));
        let with = json_with(&f, &f, [", \"a\": 1", ", \"b\": 2"], None);
        assert!(
            with.contains(
                "\"grant_copy_batch32_over_memcpy\": 0.7500, \"a\": 1}, \"tcg_icount_shift0\""
            ),
            "{with}"
        );
        assert!(with.ends_with("\"grant_copy_batch32_over_memcpy\": 0.7500, \"b\": 2}}\n"));
        let full = json_full(&f, &f, ["", ""], Some("{}"), Some(420_000));
        let value: serde_json::Value = serde_json::from_str(&full).expect("valid JSON");
        assert_eq!(value["hypervisor_stripped_bytes"], 420_000);
        assert_eq!(value["tcg"]["boot_timeline_us"]["d1_ended"], 466_116);
        assert_eq!(value["tcg_icount_shift0"]["boot_done_us"], 468_952);
        assert_eq!(value["tcg"]["timer_error_max_us"], 900);
    }

    #[test]
    fn a_top_level_field_is_added() {
        let json = with_top_level("{\"tcg\": {\"a\": 1}}\n", "vmx_bochs", "{\"b\": 2}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["vmx_bochs"]["b"], 2);
        assert_eq!(value["tcg"]["a"], 1);
    }

    #[test]
    fn timelines_are_read_in_order() {
        let t = timeline(
            "(pavise cpu0) x\r\npavise: bench: at_hypervisor_entry_us=5\r\n\
             pavise: bench: bare_vmexit_cycles=3\r\npavise: bench: at_d12_ended_us=70\r\n",
        );
        assert_eq!(
            t,
            [
                ("hypervisor_entry".to_owned(), 5),
                ("d12_ended".to_owned(), 70)
            ]
        );
    }
}
