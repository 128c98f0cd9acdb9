//! `cargo xtask bench`'s VT-x part: the `bench` kernel as a DomU of Pavise
//! on the VMX backend under Bochs, as ratios within that run — the null
//! hypercall against the bare VMCALL round trip — and the DomU's CPU loop
//! against the same loop bare. Bochs's TSC counts emulated instructions,
//! so its figures are instruction counts, comparable with QEMU's
//! `-icount shift=0` ones: the bare loop is the icount bare run's (Bochs
//! cannot boot a PVH kernel without a hypervisor).

use std::time::Duration;

use crate::bench::{Run, figure};
use crate::error::{Error, Result};
use crate::exit::{Exit, HvStatus};
use crate::machine::{Backend, Machine};
use crate::workspace;

/// What the run measured (Bochs TSC cycles: emulated instructions).
#[derive(Clone, Debug, PartialEq)]
pub struct VmxFigures {
    pub bare_vmexit: u64,
    pub hypercall: u64,
    pub cpuid_exit: u64,
    pub evtchn_send: u64,
    pub domu_loop: u64,
    /// Wall time of the whole Bochs run (BIOS, GRUB, Dom0, the DomU).
    pub wall: Duration,
}

/// The machine: the bench run's, on VT-x under Bochs.
pub fn machine() -> Result<Machine> {
    Ok(on_bochs(Run::Pavise.machine(false)?))
}

/// A QEMU run's machine moved to VT-x under Bochs: no QEMU arguments, and
/// the longer timeout an emulator without a JIT needs.
fn on_bochs(mut machine: Machine) -> Machine {
    machine.backend = Backend::Vmx;
    machine.extra_qemu_args.clear();
    machine.timeout = Some(Duration::from_secs(300));
    machine
}

/// Boots it; its console is saved as `target/pavise/bench-vmx-bochs.log`.
pub fn measure() -> Result<VmxFigures> {
    let run = machine()?.run_captured()?;
    let dir = workspace::pavise_dir();
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let log = dir.join("bench-vmx-bochs.log");
    std::fs::write(&log, &run.console).map_err(Error::io(format!("writing {}", log.display())))?;
    if run.exit != Exit::Hypervisor(HvStatus::Success) {
        return Err(Error::BenchRun {
            run: DESCRIPTION,
            exit: run.exit.to_string(),
            log,
        });
    }
    read(&run.console, run.wall).map_err(|key| Error::BenchOutput {
        run: DESCRIPTION,
        key,
        log,
    })
}

/// What the step says it measures.
pub const DESCRIPTION: &str = "VT-x under Bochs: Pavise, Dom0 and the bench kernel";

/// The figures from the run's console; Err names a missing one.
pub fn read(console: &str, wall: Duration) -> std::result::Result<VmxFigures, &'static str> {
    let need = |key: &'static str| figure(console, key).ok_or(key);
    Ok(VmxFigures {
        bare_vmexit: need("bare_vmexit_cycles")?,
        hypercall: need("hypercall_cycles")?,
        cpuid_exit: need("cpuid_cycles")?,
        evtchn_send: need("evtchn_send_cycles")?,
        domu_loop: need("loop_cycles")?,
        wall,
    })
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b.max(1) as f64
}

impl VmxFigures {
    pub fn hypercall_ratio(&self) -> f64 {
        ratio(self.hypercall, self.bare_vmexit)
    }
}

/// The table's rows, given the bare loop's instructions (icount run).
pub fn table(v: &VmxFigures, bare_loop_instructions: u64) -> String {
    let mut t = String::from("VT-x under Bochs (instructions)                 value\n");
    let rows: [(&str, String); 8] = [
        ("bare VMCALL exit round trip", v.bare_vmexit.to_string()),
        ("null hypercall (xen_version)", v.hypercall.to_string()),
        (
            "null hypercall / bare exit",
            format!("{:.2}", v.hypercall_ratio()),
        ),
        ("CPUID exit", v.cpuid_exit.to_string()),
        ("loopback EVTCHNOP_send", v.evtchn_send.to_string()),
        ("DomU loop", v.domu_loop.to_string()),
        (
            "DomU loop / bare loop (icount)",
            format!("{:.3}", ratio(v.domu_loop, bare_loop_instructions)),
        ),
        ("Bochs run, wall s", format!("{:.1}", v.wall.as_secs_f64())),
    ];
    for (name, value) in rows {
        t.push_str(&format!("{name:<42}{value:>12}\n"));
    }
    t
}

/// The JSON object (the value of the top-level `vmx_bochs`).
pub fn json(v: &VmxFigures, bare_loop_instructions: u64) -> String {
    format!(
        "{{\"bare_vmexit_cycles\": {}, \"hypercall_cycles\": {}, \"hypercall_over_bare_exit\": {:.4}, \"cpuid_cycles\": {}, \"evtchn_send_cycles\": {}, \"loop_cycles\": {}, \"domu_loop_over_bare\": {:.4}, \"wall_s\": {:.2}}}",
        v.bare_vmexit,
        v.hypercall,
        v.hypercall_ratio(),
        v.cpuid_exit,
        v.evtchn_send,
        v.domu_loop,
        ratio(v.domu_loop, bare_loop_instructions),
        v.wall.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "pavise: bench: bare_vmexit_cycles=180 (10000 round trips)\n\
        (d1) bench: cpuid_cycles=400\n(d1) bench: evtchn_send_cycles=900\n\
        (d1) bench: hypercall_cycles=450 loop_cycles=1000\n";

    #[test]
    fn figures_ratios_table_and_json() {
        let v = read(CONSOLE, Duration::from_millis(8500)).unwrap();
        assert_eq!((v.bare_vmexit, v.hypercall, v.domu_loop), (180, 450, 1000));
        assert!((v.hypercall_ratio() - 2.5).abs() < 1e-9);
        let t = table(&v, 990);
        assert!(t.contains("null hypercall / bare exit") && t.contains("2.50"));
        assert!(t.contains("1.010"));
        let value: serde_json::Value = serde_json::from_str(&json(&v, 1000)).unwrap();
        assert_eq!(value["hypercall_cycles"], 450);
        assert_eq!(value["domu_loop_over_bare"], 1.0);
    }

    #[test]
    fn a_missing_figure_is_named() {
        assert_eq!(read("nothing", Duration::ZERO), Err("bare_vmexit_cycles"));
    }

    #[test]
    fn the_machine_is_the_bench_run_on_bochs() {
        let qemu = Machine {
            extra_qemu_args: vec!["-icount".into(), "shift=0".into()],
            ..Machine::default()
        };
        let m = on_bochs(qemu);
        assert_eq!(m.backend, Backend::Vmx);
        assert!(m.extra_qemu_args.is_empty());
    }
}
