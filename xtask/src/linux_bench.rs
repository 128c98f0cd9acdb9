//! The Linux part of `cargo xtask bench`: Debian's kernel as a DomU, how
//! long it takes from the domain being built to its first /init line and to
//! its power-off (by the guest's own uptime and by the host clock), and a
//! CPU-bound loop in Linux user space (busybox's shell, a static binary)
//! against the same loop in the same kernel and initramfs booted bare on
//! QEMU — on one vCPU and on four. Plain TCG: ratios within one run.

use std::path::Path;
use std::time::Duration;

use crate::domains::{self, DomU};
use crate::error::{Error, Result};
use crate::linux::{self, LinuxKit};
use crate::machine::{Machine, RunOutcome};
use crate::workspace;

/// /init: its uptime first, then a timed loop, then its uptime again.
pub const BENCH_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
read up rest < /proc/uptime
echo "linux-bench: init uptime_ms=$(/bin/busybox awk -v u=$up 'BEGIN { printf "%d", u * 1000 }')"
/bin/busybox --install -s
read t0 rest < /proc/uptime
i=0
while [ $i -lt 200000 ]; do i=$((i + 1)); done
read t1 rest < /proc/uptime
echo "linux-bench: loop_ms=$(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%d", (b - a) * 1000 }')"
read up rest < /proc/uptime
echo "linux-bench: poweroff uptime_ms=$(awk -v u=$up 'BEGIN { printf "%d", u * 1000 }')"
poweroff -f
"#;

const BUILT: &str = "(linux) built:";
const INIT: &str = "linux-bench: init";
const POWEROFF: &str = "linux-bench: poweroff";
const TIMEOUT: Duration = Duration::from_secs(300);

/// What one vCPU count measured (milliseconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinuxFigures {
    pub vcpus: u32,
    /// The DomU's uptime at its first /init line and at power-off.
    pub uptime_at_init_ms: u64,
    pub uptime_at_poweroff_ms: u64,
    /// Host clock: the hypervisor's "built" line → the first /init line,
    /// and → the power-off line.
    pub host_built_to_init_ms: u64,
    pub host_built_to_poweroff_ms: u64,
    /// The user-space loop in the DomU and bare on QEMU.
    pub domu_loop_ms: u64,
    pub bare_loop_ms: u64,
}

impl LinuxFigures {
    pub fn loop_ratio(&self) -> f64 {
        self.domu_loop_ms as f64 / self.bare_loop_ms.max(1) as f64
    }
}

fn figure(outcome: &RunOutcome, key: &'static str, log: &Path) -> Result<u64> {
    crate::bench::figure(&outcome.console, key).ok_or_else(|| Error::BenchOutput {
        run: "Linux",
        key,
        log: log.to_path_buf(),
    })
}

fn mark(outcome: &RunOutcome, text: &str, log: &Path) -> Result<Duration> {
    outcome
        .mark(text)
        .and_then(|m| m.at)
        .ok_or_else(|| Error::BenchRun {
            run: "Linux",
            exit: format!("{} without '{text}' on its console", outcome.exit),
            log: log.to_path_buf(),
        })
}

fn keep_log(outcome: &RunOutcome, name: &str) -> Result<std::path::PathBuf> {
    let dir = workspace::pavise_dir();
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let log = dir.join(format!("bench-linux-{name}.log"));
    std::fs::write(&log, &outcome.console)
        .map_err(Error::io(format!("writing {}", log.display())))?;
    Ok(log)
}

/// The bench initramfs, built in Linux's cache.
pub fn initramfs(kit: &LinuxKit) -> Result<std::path::PathBuf> {
    let out = linux::cache_dir().join("initramfs-bench.cpio.gz");
    linux::initramfs(&kit.busybox, BENCH_INIT, &out)?;
    Ok(out)
}

/// Boots Linux as a DomU with `vcpus` and then bare on QEMU, and reads
/// the figures.
pub fn measure(kit: &LinuxKit, ramdisk: &Path, vcpus: u32) -> Result<LinuxFigures> {
    let smp = vcpus.min(2);
    let domu = DomU {
        name: Some("linux".to_owned()),
        mem_mib: Some(256),
        vcpus: Some(vcpus),
        ramdisk: Some(ramdisk.to_path_buf()),
        cmdline: Some("console=hvc0".to_owned()),
        ..DomU::new(&kit.vmlinux)
    };
    let under_pavise = Machine {
        smp,
        mem_mib: 512,
        cmdline: "exit_when_done".to_owned(),
        modules: domains::modules(&[domu])?,
        timeout: Some(TIMEOUT),
        marks: vec![BUILT.to_owned(), INIT.to_owned(), POWEROFF.to_owned()],
        ..Machine::default()
    };
    let run = under_pavise.run_captured()?;
    let log = keep_log(&run, &format!("domu-{vcpus}vcpu"))?;
    let built = mark(&run, BUILT, &log)?;
    let init = mark(&run, INIT, &log)?;
    let poweroff = mark(&run, POWEROFF, &log)?;
    let ms = |d: Duration| d.as_millis() as u64;
    let mut figures = LinuxFigures {
        vcpus,
        uptime_at_init_ms: figure(&run, "init uptime_ms", &log)?,
        uptime_at_poweroff_ms: figure(&run, "poweroff uptime_ms", &log)?,
        host_built_to_init_ms: ms(init.saturating_sub(built)),
        host_built_to_poweroff_ms: ms(poweroff.saturating_sub(built)),
        domu_loop_ms: figure(&run, "loop_ms", &log)?,
        bare_loop_ms: 0,
    };
    // The same kernel, initramfs and loop with no hypervisor: QEMU boots
    // the vmlinux through its PVH note, with its own ACPI and serial port.
    let bare = Machine {
        smp,
        mem_mib: 512,
        cmdline: format!("console=ttyS0 nr_cpus={vcpus} mitigations=off"),
        modules: vec![(ramdisk.to_path_buf(), String::new())],
        timeout: Some(TIMEOUT),
        marks: vec![POWEROFF.to_owned()],
        ..Machine::bare(&kit.vmlinux)
    };
    let run = bare.run_captured()?;
    let log = keep_log(&run, &format!("bare-{vcpus}vcpu"))?;
    mark(&run, POWEROFF, &log)?;
    figures.bare_loop_ms = figure(&run, "loop_ms", &log)?;
    Ok(figures)
}

/// The table rows for these figures.
pub fn table(all: &[LinuxFigures]) -> String {
    let mut t = String::from("Linux DomU (Debian 6.1, busybox /init)        ms\n");
    for f in all {
        let v = f.vcpus;
        for (name, value) in [
            ("uptime at first /init line", f.uptime_at_init_ms),
            ("uptime at poweroff", f.uptime_at_poweroff_ms),
            ("host: built -> first /init line", f.host_built_to_init_ms),
            ("host: built -> poweroff", f.host_built_to_poweroff_ms),
            ("user-space loop in the DomU", f.domu_loop_ms),
            ("same loop, Linux bare on QEMU", f.bare_loop_ms),
        ] {
            t.push_str(&format!("{:<42}{value:>8}\n", format!("{v} vCPU: {name}")));
        }
        t.push_str(&format!(
            "{:<42}{:>8.3}\n",
            format!("{v} vCPU: ratio: DomU loop / bare loop"),
            f.loop_ratio()
        ));
    }
    t
}

/// The figures as a JSON object keyed `linux_<n>vcpu`.
pub fn json(all: &[LinuxFigures]) -> String {
    let items: Vec<String> = all
        .iter()
        .map(|f| {
            format!(
                concat!(
                    "\"linux_{}vcpu\": {{\"uptime_at_init_ms\": {}, \"uptime_at_poweroff_ms\": {}, ",
                    "\"host_built_to_init_ms\": {}, \"host_built_to_poweroff_ms\": {}, ",
                    "\"domu_loop_ms\": {}, \"bare_loop_ms\": {}, \"domu_loop_over_bare_loop\": {:.3}}}"
                ),
                f.vcpus,
                f.uptime_at_init_ms,
                f.uptime_at_poweroff_ms,
                f.host_built_to_init_ms,
                f.host_built_to_poweroff_ms,
                f.domu_loop_ms,
                f.bare_loop_ms,
                f.loop_ratio()
            )
        })
        .collect();
    format!("{{{}}}", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_init_prints_what_is_read() {
        for key in ["init uptime_ms=", "loop_ms=", "poweroff uptime_ms="] {
            assert!(BENCH_INIT.contains(key), "{key}");
        }
        let console = "(d1) linux-bench: init uptime_ms=3760\r\n(d1) linux-bench: loop_ms=1234\r\n";
        assert_eq!(crate::bench::figure(console, "init uptime_ms"), Some(3760));
        assert_eq!(crate::bench::figure(console, "loop_ms"), Some(1234));
    }

    #[test]
    fn figures_make_a_table_and_json() {
        let f = LinuxFigures {
            vcpus: 4,
            uptime_at_init_ms: 3000,
            uptime_at_poweroff_ms: 5000,
            host_built_to_init_ms: 7000,
            host_built_to_poweroff_ms: 9000,
            domu_loop_ms: 1100,
            bare_loop_ms: 1000,
        };
        assert!(table(&[f]).contains("4 vCPU: ratio: DomU loop / bare loop"));
        assert!(json(&[f]).contains("\"linux_4vcpu\": {\"uptime_at_init_ms\": 3000"));
        assert!(json(&[f]).contains("\"domu_loop_over_bare_loop\": 1.100"));
    }
}
