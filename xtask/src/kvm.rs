//! `--accel kvm`: whether this host's KVM can run Pavise's guests. A
//! /dev/kvm is not enough: Pavise needs the guest CPU to offer AMD-V with
//! nested paging or VT-x (nested virtualization), so the answer comes from
//! booting a probe kernel under KVM and reading what its CPUID says.

use std::path::Path;
use std::time::Duration;

use crate::machine::{Boot, Machine};

/// The probe kernel (a test kernel booted bare).
pub const PROBE: &str = "cpuprobe";

/// The CPU models tried, best first: the host's own (what nested
/// virtualization passes through), KVM's maximum, and the plain model
/// that starts on any KVM (a paravirtual one refuses the other two).
pub const CPU_MODELS: [&str; 3] = ["host", "max", "qemu64"];

/// What the probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offered {
    pub svm: bool,
    pub npt: bool,
    pub vmx: bool,
}

/// Reads the probe's line `cpuprobe: svm=S npt=N vmx=V`.
pub fn parse_probe(console: &str) -> Option<Offered> {
    let line = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("cpuprobe: "))?;
    let mut fields = line.split_whitespace();
    let mut flag = |name: &str| {
        fields
            .next()?
            .strip_prefix(name)?
            .strip_prefix('=')
            .map(|v| v == "1")
    };
    Some(Offered {
        svm: flag("svm")?,
        npt: flag("npt")?,
        vmx: flag("vmx")?,
    })
}

/// Why KVM cannot run Pavise's guests here (one sentence), given what the
/// probe saw, or None when it can.
pub fn verdict(offered: Offered) -> Option<String> {
    if (offered.svm && offered.npt) || offered.vmx {
        None
    } else if offered.svm {
        Some("KVM's guest CPU offers AMD-V without nested paging, which Pavise needs".to_owned())
    } else {
        Some(
            "KVM's guest CPU offers neither AMD-V nor VT-x (this KVM has no nested virtualization, or is a paravirtual one)".to_owned(),
        )
    }
}

/// Checks this host's KVM by booting [`PROBE`] under it with each of
/// [`CPU_MODELS`] until one starts: Ok(the model) when Pavise's guests can
/// run there, else the sentence saying why not.
pub fn check(probe_kernel: &Path) -> Result<&'static str, String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("this host has no /dev/kvm".to_owned());
    }
    let mut refusals = Vec::new();
    for cpu in CPU_MODELS {
        let mut machine = Machine::bare(probe_kernel);
        machine.boot = Boot::Bare;
        machine.timeout = Some(Duration::from_secs(30));
        machine.kvm_cpu = Some(cpu.to_owned());
        let outcome = machine
            .run_captured()
            .map_err(|e| format!("QEMU could not start the KVM probe: {e}"))?;
        if let Some(offered) = parse_probe(&outcome.console) {
            return verdict(offered).map_or(Ok(cpu), Err);
        }
        let why = outcome
            .qemu_stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output")
            .trim()
            .to_owned();
        refusals.push(format!("-cpu {cpu}: {why}"));
    }
    Err(format!(
        "QEMU could start no KVM guest ({})",
        refusals.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_line_parses() {
        let console = "noise\ncpuprobe: svm=1 npt=0 vmx=0\n";
        assert_eq!(
            parse_probe(console),
            Some(Offered {
                svm: true,
                npt: false,
                vmx: false
            })
        );
        assert_eq!(parse_probe("cpuprobe: svm=1\n"), None);
        assert_eq!(parse_probe("nothing\n"), None);
    }

    #[test]
    fn only_nested_paging_svm_or_vmx_will_do() {
        let o = |svm, npt, vmx| Offered { svm, npt, vmx };
        assert_eq!(verdict(o(true, true, false)), None);
        assert_eq!(verdict(o(false, false, true)), None);
        assert!(
            verdict(o(true, false, false))
                .unwrap()
                .contains("nested paging")
        );
        let none = verdict(o(false, false, false)).unwrap();
        assert!(none.contains("neither") && !none.contains('\n'));
    }
}
