//! `cargo xtask bench`: figures measured inside guests, as ratios within
//! one run — a null hypercall against the bare VMMCALL exit round trip,
//! and a DomU's CPU-bound loop against the same loop run bare on QEMU —
//! with plain TCG and with `-icount shift=0` (TSC counts instructions).

use std::time::Duration;

use crate::domains::{self, DomU};
use crate::error::{Error, Result};
use crate::exit::{Exit, HvStatus};
use crate::machine::{Boot, Machine};
use crate::{bare_metal, workspace};

/// One mode's figures (TSC cycles).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    pub bare_vmexit: u64,
    pub hypercall: u64,
    pub domu_loop: u64,
    pub bare_loop: u64,
}

impl Figures {
    pub fn hypercall_ratio(&self) -> f64 {
        self.hypercall as f64 / self.bare_vmexit.max(1) as f64
    }
    pub fn loop_ratio(&self) -> f64 {
        self.domu_loop as f64 / self.bare_loop.max(1) as f64
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

/// Runs both machines of one mode.
pub fn measure(icount: bool) -> Result<Figures> {
    let timeout = Some(Duration::from_secs(if icount { 300 } else { 120 }));
    let bench = DomU {
        kernel: bare_metal::artifact("bench"),
        mem_mib: None,
        vcpus: None,
        cmdline: None,
    };
    let under_pavise = Machine {
        smp: 2,
        cmdline: "bench exit_when_done".to_owned(),
        modules: domains::modules(&[bench])?,
        extra_qemu_args: icount_args(icount),
        timeout,
        ..Machine::default()
    };
    let run = under_pavise.run_captured()?;
    if run.exit != Exit::Hypervisor(HvStatus::Success) {
        return Err(Error::BenchOutput {
            what: "clean end of the benchmark domain",
            console: run.console,
        });
    }
    let bare = Machine {
        boot: Boot::Direct,
        hypervisor: bare_metal::artifact("bench"),
        extra_qemu_args: icount_args(icount),
        timeout,
        ..Machine::default()
    };
    let bare_run = bare.run_captured()?;
    Ok(Figures {
        bare_vmexit: need(&run.console, "bare_vmexit_cycles")?,
        hypercall: need(&run.console, "hypercall_cycles")?,
        domu_loop: need(&run.console, "loop_cycles")?,
        bare_loop: need(&bare_run.console, "loop_cycles")?,
    })
}

/// The table people read.
pub fn table(tcg: &Figures, icount: &Figures) -> String {
    let mut t = String::new();
    t.push_str("figure (TSC cycles)                     TCG            TCG -icount shift=0\n");
    let rows: [(&str, u64, u64); 4] = [
        (
            "bare VMMCALL exit + VMRUN",
            tcg.bare_vmexit,
            icount.bare_vmexit,
        ),
        (
            "null hypercall (xen_version) from DomU",
            tcg.hypercall,
            icount.hypercall,
        ),
        ("CPU-bound loop in a DomU", tcg.domu_loop, icount.domu_loop),
        ("same loop bare on QEMU", tcg.bare_loop, icount.bare_loop),
    ];
    for (name, a, b) in rows {
        t.push_str(&format!("{name:<40}{a:>14} {b:>20}\n"));
    }
    t.push_str(&format!(
        "{:<40}{:>14.2} {:>20.2}\n",
        "ratio: hypercall / bare exit",
        tcg.hypercall_ratio(),
        icount.hypercall_ratio()
    ));
    t.push_str(&format!(
        "{:<40}{:>14.3} {:>20.3}\n",
        "ratio: DomU loop / bare loop",
        tcg.loop_ratio(),
        icount.loop_ratio()
    ));
    t
}

pub fn json(tcg: &Figures, icount: &Figures) -> String {
    let one = |f: &Figures| {
        format!(
            "{{\"bare_vmexit_cycles\": {}, \"hypercall_cycles\": {}, \"domu_loop_cycles\": {}, \"bare_loop_cycles\": {}, \"hypercall_over_bare_exit\": {:.3}, \"domu_loop_over_bare_loop\": {:.4}}}",
            f.bare_vmexit,
            f.hypercall,
            f.domu_loop,
            f.bare_loop,
            f.hypercall_ratio(),
            f.loop_ratio()
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
    fn ratios() {
        let f = Figures {
            bare_vmexit: 100,
            hypercall: 150,
            domu_loop: 1010,
            bare_loop: 1000,
        };
        assert!((f.hypercall_ratio() - 1.5).abs() < 1e-9);
        assert!((f.loop_ratio() - 1.01).abs() < 1e-9);
        assert!(table(&f, &f).contains("1.50"));
        assert!(json(&f, &f).contains("\"hypercall_cycles\": 150"));
    }
}
