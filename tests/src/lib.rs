//! Shared helpers for the QEMU scenario tests (see tests/*.rs): booting a
//! machine through the xtask library (Pavise alone, or Dom0 and DomUs named
//! as `--domu` names them), parsing what Pavise prints on its serial
//! console, and assertions that show the whole console on failure.

use std::sync::OnceLock;
use std::time::Duration;

use regex::Regex;
pub use xtask::domains::DomU;
pub use xtask::{Boot, Exit, HvStatus, Machine, RunOutcome};

/// The time-out of each scenario: QEMU runs under TCG (no KVM), on two
/// cores, possibly beside a build.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(90);

/// A machine booted through GRUB with `smp` CPUs and `mem_mib` MiB.
pub fn grub(smp: u32, mem_mib: u32) -> Machine {
    Machine {
        smp,
        mem_mib,
        boot: Boot::Grub,
        timeout: Some(SCENARIO_TIMEOUT),
        ..Machine::default()
    }
}

/// A machine booted directly (QEMU `-kernel`, Xen PVH entry).
pub fn direct(smp: u32, mem_mib: u32) -> Machine {
    Machine {
        boot: Boot::Direct,
        ..grub(smp, mem_mib)
    }
}

/// The memory of the machines the domain scenarios boot.
pub const DOMAINS_MEM_MIB: u32 = 256;

/// A test kernel of this project (a binary of `tests/kernels`) as a DomU,
/// with options as `--domu` takes them after the path, e.g.
/// `"name=a,mem=8,cmdline=x y"` (or `""`).
pub fn domu(kernel: &str, options: &str) -> DomU {
    let path = xtask::artifact(kernel).display().to_string();
    let spec = if options.is_empty() {
        path
    } else {
        format!("{path},{options}")
    };
    xtask::domains::parse_domu(&spec).unwrap_or_else(|e| panic!("bad test DomU: {e}"))
}

/// Bytes of a test disk image ([`fresh_image`]).
pub const DISK_BYTES: u64 = 8 << 20;

/// A fresh zeroed image of [`DISK_BYTES`] under target/test-disks.
pub fn fresh_image(name: &str) -> std::path::PathBuf {
    let dir = xtask::workspace::target_dir().join("test-disks");
    std::fs::create_dir_all(&dir).expect("cannot create target/test-disks");
    let path = dir.join(format!("{name}.img"));
    let _ = std::fs::remove_file(&path);
    let file = std::fs::File::create(&path).expect("cannot create a test disk image");
    file.set_len(DISK_BYTES)
        .expect("cannot size a test disk image");
    path
}

/// A GRUB machine with `smp` CPUs and [`DOMAINS_MEM_MIB`] booting Dom0 and
/// then `domus` (d1, d2, … in this order) with `exit_when_done`, so that
/// it powers off once every DomU has ended.
pub fn with_domains(smp: u32, domus: &[DomU]) -> Machine {
    let mut machine = grub(smp, DOMAINS_MEM_MIB);
    machine.cmdline = "exit_when_done".to_owned();
    // The kernels are built by `boot` (or by `cargo xtask test`) before
    // QEMU starts; the modules only name the files.
    machine.disks = xtask::domains::disks(domus);
    machine.modules = std::iter::once(xtask::domains::dom0_module_for(domus))
        .chain(
            domus
                .iter()
                .enumerate()
                .flat_map(|(i, d)| xtask::domains::domain_modules(d, i + 1)),
        )
        .collect();
    machine
}

/// [`with_domains`] with the uplink NIC (`--net`) when `uplink` is given:
/// Dom0 is told its slot and joins it to the switch.
pub fn with_network(smp: u32, domus: &[DomU], uplink: Option<xtask::Uplink>) -> Machine {
    let mut machine = with_domains(smp, domus);
    machine.modules[0] = xtask::domains::dom0_module_with(domus, uplink.as_ref());
    machine.net = uplink;
    machine
}

/// Boots `machine` with its console captured and returns how it ended.
/// Builds the bare-metal crates first (once per test process) unless
/// `PAVISE_PREBUILT=1` says `cargo xtask test` already did. With
/// `PAVISE_CONSOLE=1` the whole console is printed (to read a passing run).
pub fn boot(machine: &Machine) -> RunOutcome {
    if let Err(e) = ensure_built() {
        panic!("cannot boot {}: {e}", machine.describe());
    }
    let cmdline = machine.kernel_cmdline();
    if cmdline.is_empty() {
        eprintln!("booting {} without a command line", machine.describe());
    } else {
        eprintln!("booting {} with `{cmdline}`", machine.describe());
    }
    match machine.run_captured() {
        Ok(outcome) => {
            eprintln!(
                "  → {} after {:.1} s",
                outcome.exit,
                outcome.wall.as_secs_f64()
            );
            if std::env::var_os("PAVISE_CONSOLE").is_some_and(|v| v == "1") {
                eprintln!("{}", outcome.console);
            }
            outcome
        }
        Err(e) => panic!("could not boot {}: {e}", machine.describe()),
    }
}

/// Builds the bare-metal crates once per test process (see [`boot`]).
pub fn ensure_built() -> Result<(), &'static str> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let prebuilt = std::env::var(xtask::suite::PREBUILT_ENV).is_ok_and(|v| v == "1");
        let result = if prebuilt {
            xtask::check_built()
        } else {
            xtask::build_all()
        };
        result.map_err(|e| e.to_string())
    });
    result.as_ref().map_err(String::as_str).copied()
}

/// What Pavise's ready line says:
/// `pavise: ready in <ms> ms: <n> CPUs, <m> MiB free`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    pub ms: u64,
    pub cpus: u32,
    pub mib_free: u64,
}

/// The console's lines without carriage returns at either end (GRUB ends
/// its lines with `\n\r`, so a `\r` can start the next line).
pub fn console_lines(console: &str) -> impl Iterator<Item = &str> {
    console.lines().map(|line| line.trim_matches('\r'))
}

/// The first ready line on the console, if any.
pub fn ready_line(console: &str) -> Option<Ready> {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    let pattern = PATTERN.get_or_init(|| {
        Regex::new(r"^pavise: ready in ([0-9]+) ms: ([0-9]+) CPUs?, ([0-9]+) MiB free$")
            .unwrap_or_else(|e| panic!("ready-line pattern: {e}"))
    });
    console_lines(console).find_map(|line| {
        let captures = pattern.captures(line)?;
        Some(Ready {
            ms: captures[1].parse().ok()?,
            cpus: captures[2].parse().ok()?,
            mib_free: captures[3].parse().ok()?,
        })
    })
}

/// The sentence of the first `pavise: fatal: ` line, if any.
pub fn fatal_line(console: &str) -> Option<&str> {
    console_lines(console).find_map(|line| line.strip_prefix("pavise: fatal: ").map(str::trim))
}

/// The first console line that starts with `prefix`.
pub fn line_starting<'a>(console: &'a str, prefix: &str) -> Option<&'a str> {
    console_lines(console).find(|line| line.starts_with(prefix))
}

/// Panics with `message` and everything the run printed.
pub fn fail(outcome: &RunOutcome, message: &str) -> ! {
    panic!(
        "{message}\nthe run ended: {} after {:.1} s\n\
         ----- serial console ({} bytes) -----\n{}\n\
         ----- QEMU stderr -----\n{}\n-----",
        outcome.exit,
        outcome.wall.as_secs_f64(),
        outcome.console.len(),
        outcome.console.trim_end(),
        outcome.qemu_stderr.trim_end()
    );
}

/// Asserts that the run ended exactly with `expected`.
pub fn expect_exit(outcome: &RunOutcome, expected: Exit) {
    if outcome.exit != expected {
        fail(outcome, &format!("expected the run to end with {expected}"));
    }
}

/// Asserts that for each of `prefixes` a console line starts with it.
pub fn expect_lines(outcome: &RunOutcome, prefixes: &[&str]) {
    for prefix in prefixes {
        if line_starting(&outcome.console, prefix).is_none() {
            fail(outcome, &format!("no console line starts with {prefix:?}"));
        }
    }
}

/// Asserts that no console line starts with `prefix`.
pub fn expect_no_line(outcome: &RunOutcome, prefix: &str) {
    if let Some(line) = line_starting(&outcome.console, prefix) {
        fail(outcome, &format!("unexpected console line {line:?}"));
    }
}

/// Asserts the run reached the ready line and returns what it says.
pub fn expect_ready(outcome: &RunOutcome) -> Ready {
    ready_line(&outcome.console)
        .unwrap_or_else(|| fail(outcome, "no `pavise: ready in …` line on the console"))
}

/// Asserts a fatal boot error: exit E = 1 and a `pavise: fatal: ` line
/// containing `needle`; returns that line's sentence.
pub fn expect_fatal<'a>(outcome: &'a RunOutcome, needle: &str) -> &'a str {
    expect_exit(outcome, Exit::Hypervisor(HvStatus::FatalBoot));
    let Some(sentence) = fatal_line(&outcome.console) else {
        fail(outcome, "no `pavise: fatal: ` line on the console");
    };
    if !sentence.contains(needle) {
        fail(
            outcome,
            &format!("the fatal line does not contain {needle:?}: {sentence:?}"),
        );
    }
    sentence
}

/// Asserts `value` lies in `range`, showing the console if not.
pub fn expect_in_range<T>(
    outcome: &RunOutcome,
    what: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) where
    T: PartialOrd + std::fmt::Debug,
{
    if !range.contains(&value) {
        fail(outcome, &format!("{what} is {value:?}, expected {range:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line endings as seen from GRUB (`\n\r`) and Pavise (`\r\r\n`).
    const CONSOLE: &str = "\x1b[H\x1b[J  Booting `Pavise'\n\r\n\r\
        pavise: Pavise 0.1.0 starting\r\n\
        pavise: ready in 1234 ms: 4 CPUs, 1987 MiB free\r\r\n\
        pavise: nothing to run\r\n";

    #[test]
    fn ready_line_is_parsed() {
        assert_eq!(
            ready_line(CONSOLE),
            Some(Ready {
                ms: 1234,
                cpus: 4,
                mib_free: 1987
            })
        );
        assert_eq!(
            ready_line("pavise: ready in 7 ms: 1 CPU, 100 MiB free\n"),
            Some(Ready {
                ms: 7,
                cpus: 1,
                mib_free: 100
            })
        );
        assert_eq!(
            ready_line("pavise: ready in 7 ms: 1 CPUs, 100 MiB free"),
            Some(Ready {
                ms: 7,
                cpus: 1,
                mib_free: 100
            })
        );
    }

    #[test]
    fn near_misses_are_not_ready_lines() {
        for console in [
            "",
            "pavise: ready in ms: 1 CPUs, 100 MiB free",
            "pavise: ready in 7 ms: 1 CPUs, 100 MiB",
            "xpavise: ready in 7 ms: 1 CPUs, 100 MiB free",
            "pavise: ready in 7 ms: 1 CPUs, 100 MiB free and more",
            "pavise: ready in 99999999999999999999999 ms: 1 CPUs, 100 MiB free",
        ] {
            assert_eq!(ready_line(console), None, "{console:?}");
        }
    }

    #[test]
    fn fatal_line_is_found() {
        let console = "  Booting `Pavise'\n\r\n\r\
            pavise: fatal: unknown command-line option 'frobnicate'\r\r\n";
        assert_eq!(
            fatal_line(console),
            Some("unknown command-line option 'frobnicate'")
        );
        assert_eq!(fatal_line(CONSOLE), None);
    }

    #[test]
    fn lines_are_matched_from_their_start() {
        let console = "pavise: d1 (a) built: 16 MiB, 1 vCPU\r\r\n\
            (d1) hello: PASS\r\n\
            (d11) hello: FAIL late\r\n";
        assert_eq!(
            line_starting(console, "(d1) hello"),
            Some("(d1) hello: PASS")
        );
        assert_eq!(
            line_starting(console, "(d11) hello"),
            Some("(d11) hello: FAIL late")
        );
        assert_eq!(line_starting(console, "hello: PASS"), None);
        assert_eq!(line_starting(console, "(d2) hello"), None);
    }

    #[test]
    fn domain_machines_put_dom0_first() {
        let m = with_domains(
            1,
            &[domu("hello", "name=a"), domu("hello", "mem=8,cmdline=x y")],
        );
        let strings: Vec<&str> = m.modules.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            strings,
            ["name=dom0", "name=a", "name=hello mem=8 cmdline=x y"]
        );
        assert!(m.modules[0].0.ends_with("release/dom0"));
        assert!(m.modules[2].0.ends_with("release/hello"));
        assert_eq!(
            (m.smp, m.boot, m.cmdline.as_str()),
            (1, Boot::Grub, "exit_when_done")
        );
    }

    #[test]
    fn machines_have_time_outs() {
        assert_eq!(grub(2, 256).timeout, Some(SCENARIO_TIMEOUT));
        let d = direct(2, 256);
        assert_eq!((d.boot, d.smp, d.mem_mib), (Boot::Direct, 2, 256));
    }
}
