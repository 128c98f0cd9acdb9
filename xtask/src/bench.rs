//! `cargo xtask bench`: figures measured inside guests, as ratios within
//! one run — a null hypercall against the bare VMMCALL exit round trip, a
//! DomU's CPU-bound loop against the same loop run bare on QEMU, an
//! interdomain event-channel round trip, grant-copy throughput against an
//! in-guest memcpy, and the XenStore read round trip — with plain TCG and
//! with `-icount shift=0` (the guest TSC then counts instructions).

use std::time::Duration;

use crate::domains::{self, DomU};
use crate::error::{Error, Result};
use crate::exit::{Exit, HvStatus};
use crate::machine::{Boot, Machine};
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

/// Finds `key=<number>` in the console.
pub fn figure(console: &str, key: &str) -> Option<u64> {
    console.lines().find_map(|line| {
        let at = line.find(&format!("{key}="))?;
        let rest = &line[at + key.len() + 1..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().ok()
    })
}

fn need(console: &str, key: &'static str) -> Result<u64> {
    figure(console, key).ok_or_else(|| Error::BenchOutput {
        what: key,
        console: console.to_owned(),
    })
}

fn icount_args(icount: bool) -> Vec<String> {
    if icount {
        vec!["-icount".to_owned(), "shift=0".to_owned()]
    } else {
        Vec::new()
    }
}

fn kernel(name: &str, cmdline: Option<&str>) -> DomU {
    DomU {
        kernel: bare_metal::artifact(name),
        mem_mib: None,
        vcpus: None,
        cmdline: cmdline.map(str::to_owned),
    }
}

/// Boots Pavise with `domus`; the run must end cleanly.
fn under_pavise(
    cmdline: &str,
    domus: &[DomU],
    icount: bool,
    timeout: Option<Duration>,
) -> Result<String> {
    let machine = Machine {
        smp: 2,
        cmdline: cmdline.to_owned(),
        modules: domains::modules(domus)?,
        extra_qemu_args: icount_args(icount),
        timeout,
        ..Machine::default()
    };
    let run = machine.run_captured()?;
    if run.exit != Exit::Hypervisor(HvStatus::Success) {
        return Err(Error::BenchOutput {
            what: "clean end of the benchmark domains",
            console: run.console,
        });
    }
    Ok(run.console)
}

/// Runs the machines of one mode.
pub fn measure(icount: bool) -> Result<Figures> {
    let timeout = Some(Duration::from_secs(if icount { 300 } else { 120 }));
    let bench = under_pavise(
        "bench exit_when_done",
        &[kernel("bench", None)],
        icount,
        timeout,
    )?;
    let pingpong = under_pavise(
        "exit_when_done",
        &[
            kernel("pingpong", Some("pong peer=2")),
            kernel("pingpong", Some("ping peer=1")),
        ],
        icount,
        timeout,
    )?;
    let bare = Machine {
        boot: Boot::Direct,
        hypervisor: bare_metal::artifact("bench"),
        extra_qemu_args: icount_args(icount),
        timeout,
        ..Machine::default()
    }
    .run_captured()?;
    Ok(Figures {
        bare_vmexit: need(&bench, "bare_vmexit_cycles")?,
        hypercall: need(&bench, "hypercall_cycles")?,
        domu_loop: need(&bench, "loop_cycles")?,
        bare_loop: need(&bare.console, "loop_cycles")?,
        evtchn_roundtrip: need(&pingpong, "evtchn_roundtrip_cycles")?,
        xenstore_read: need(&bench, "xenstore_read_cycles")?,
        grant_copy_mibps: need(&bench, "grant_copy_mibps")?,
        memcpy_mibps: need(&bench, "memcpy_mibps")?,
    })
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

pub fn json(tcg: &Figures, icount: &Figures) -> String {
    let one = |f: &Figures| {
        format!(
            concat!(
                "{{\"bare_vmexit_cycles\": {}, \"hypercall_cycles\": {}, \"domu_loop_cycles\": {}, ",
                "\"bare_loop_cycles\": {}, \"evtchn_roundtrip_cycles\": {}, \"xenstore_read_cycles\": {}, ",
                "\"grant_copy_mibps\": {}, \"memcpy_mibps\": {}, \"hypercall_over_bare_exit\": {:.3}, ",
                "\"domu_loop_over_bare_loop\": {:.4}, \"evtchn_over_bare_exit\": {:.3}, \"grant_copy_over_memcpy\": {:.4}}}"
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
            f.grant_copy_ratio()
        )
    };
    format!(
        "{{\"tcg\": {}, \"tcg_icount_shift0\": {}}}\n",
        one(tcg),
        one(icount)
    )
}

/// Where the JSON goes by default.
pub fn default_json_path() -> std::path::PathBuf {
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
        assert!(json(&f, &f).contains("\"evtchn_roundtrip_cycles\": 600"));
    }
}
