//! The toolstack part of `cargo xtask bench`: Dom0's `bench-create`
//! (`dom0/src/create_bench.rs`) times, in system time, `xl create` of a
//! config for the `ringlog` test kernel until the new domain is built and
//! until the first line it writes to its PV console ring reaches Dom0, then 1, 10 and 100 create→destroy cycles one after
//! another, and checks that free memory comes back after each batch.
//! Plain TCG and `-icount shift=0` (where the figures count
//! instructions: the guest TSC is the instruction counter).

use std::path::PathBuf;
use std::time::Duration;

use crate::bench::{boot_logged, figure, icount_args};
use crate::domains::{self, DomU};
use crate::error::{Error, Result};
use crate::machine::{Machine, TypeWhen};
use crate::{bare_metal, workspace};

const RUN: &str = "Dom0 creating and destroying ringlog DomUs";
/// The config Dom0 is handed (its name in Dom0).
const CONFIG: &str = "bench-count.cfg";

/// One mode's toolstack figures, µs of system time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CreateFigures {
    /// `xl create` until the domain is built and unpaused.
    pub build_us: u64,
    /// `xl create` until its first console line reached Dom0.
    pub first_line_us: u64,
    /// Per create→destroy cycle, in batches of 1, 10 and 100.
    pub per_cycle_us: [u64; 3],
    /// Free memory came back after every batch.
    pub memory_back: bool,
}

/// The batches, as Dom0 runs them.
pub const BATCHES: [u32; 3] = [1, 10, 100];

fn config_path() -> Result<PathBuf> {
    let dir = workspace::pavise_dir();
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let path = dir.join(CONFIG);
    let text = format!(
        "name = \"ringlog\"\ntype = \"pvh\"\nkernel = \"{}\"\nmemory = 4\nvcpus = 1\n",
        bare_metal::artifact("ringlog").display()
    );
    std::fs::write(&path, text).map_err(Error::io(format!("writing {}", path.display())))?;
    Ok(path)
}

/// The machine: Dom0, a counting boot-time DomU (destroying it ends the
/// run), the config and the ringlog kernel held by Dom0; the bench is
/// typed on Dom0's console once it is up.
pub fn machine(icount: bool) -> Result<Machine> {
    let anchor = DomU {
        name: Some("anchor".to_owned()),
        ..domains::test_kernel("counter")
    };
    let mut machine = Machine {
        smp: 2,
        cmdline: "exit_when_done".to_owned(),
        modules: domains::modules(&[anchor])?,
        extra_qemu_args: icount_args(icount),
        timeout: Some(Duration::from_secs(if icount { 600 } else { 300 })),
        ..Machine::default()
    };
    machine.hold_file(config_path()?)?;
    machine.hold_file(bare_metal::artifact("ringlog"))?;
    // One DomU console at boot: the input starts there; Ctrl-A three
    // times brings it to Dom0.
    machine.console_input = vec![
        (
            TypeWhen::Seen("dom0: serving".to_owned()),
            format!("\x01\x01\x01bench-create {CONFIG}\r").into_bytes(),
        ),
        (
            TypeWhen::Seen("create_destroy_100_us=".to_owned()),
            b"destroy anchor\r".to_vec(),
        ),
    ];
    Ok(machine)
}

/// Reads the figures from the run's console.
pub fn read(console: &str) -> Option<CreateFigures> {
    let mut per_cycle_us = [0; 3];
    for (slot, n) in per_cycle_us.iter_mut().zip(BATCHES) {
        let line = console
            .lines()
            .find(|l| l.contains(&format!("create_destroy_{n}_us=")))?;
        *slot = figure(line, "per_cycle_us")?;
    }
    let memory_back = BATCHES.iter().all(|n| {
        console.lines().any(|l| {
            l.contains(&format!("create_destroy_{n}_us=")) && l.contains("free_memory_back=yes")
        })
    });
    Some(CreateFigures {
        build_us: figure(console, "create_build_us")?,
        first_line_us: figure(console, "create_first_line_us")?,
        per_cycle_us,
        memory_back,
    })
}

/// Boots the machine of a mode and reads its figures.
pub fn measure(icount: bool) -> Result<CreateFigures> {
    let file = format!("bench-create-{}.log", if icount { "icount" } else { "tcg" });
    let (console, log) = boot_logged(&machine(icount)?, RUN, &file)?;
    let figures = read(&console).ok_or_else(|| Error::BenchOutput {
        run: RUN,
        key: "create_first_line_us",
        log: log.clone(),
    })?;
    if !figures.memory_back {
        return Err(Error::BenchCheck {
            run: RUN,
            reason: "free memory did not come back after destroying the domains".to_owned(),
            log,
        });
    }
    Ok(figures)
}

/// A bar of `value` against `max`, 30 columns wide.
fn bar(value: u64, max: u64) -> String {
    let n = (value as f64 / max.max(1) as f64 * 30.0).round() as usize;
    "#".repeat(n.max(usize::from(value > 0)))
}

/// The table, with the per-cycle times drawn.
pub fn table(tcg: &CreateFigures, icount: &CreateFigures) -> String {
    let mut t = String::from(
        "toolstack (µs of system time)                    TCG   TCG -icount shift=0\n",
    );
    let mut row = |name: &str, a: u64, b: u64| {
        t.push_str(&format!("{name:<44} {a:>8} {b:>12}\n"));
    };
    row("xl create until built", tcg.build_us, icount.build_us);
    row(
        "xl create until the first console line",
        tcg.first_line_us,
        icount.first_line_us,
    );
    for (i, n) in BATCHES.iter().enumerate() {
        row(
            &format!("create→destroy, per cycle, {n} in a row"),
            tcg.per_cycle_us[i],
            icount.per_cycle_us[i],
        );
    }
    let max = tcg.per_cycle_us.iter().copied().max().unwrap_or(1);
    for (i, n) in BATCHES.iter().enumerate() {
        t.push_str(&format!(
            "  TCG per cycle, {n:>3} in a row  {}\n",
            bar(tcg.per_cycle_us[i], max)
        ));
    }
    t
}

/// The JSON object.
pub fn json(tcg: &CreateFigures, icount: &CreateFigures) -> String {
    let one = |f: &CreateFigures| {
        format!(
            "{{\"build_us\": {}, \"first_line_us\": {}, \"per_cycle_us_1\": {}, \"per_cycle_us_10\": {}, \"per_cycle_us_100\": {}}}",
            f.build_us, f.first_line_us, f.per_cycle_us[0], f.per_cycle_us[1], f.per_cycle_us[2]
        )
    };
    format!(
        "{{\"tcg\": {}, \"tcg_icount_shift0\": {}}}",
        one(tcg),
        one(icount)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_read_from_dom0s_bench_lines() {
        let console = "\
bench: create_build_us=1500 create_first_line_us=4200
bench: create_destroy_1_us=2000 per_cycle_us=2000 free_memory_back=yes
bench: create_destroy_10_us=19000 per_cycle_us=1900 free_memory_back=yes
bench: create_destroy_100_us=200000 per_cycle_us=2000 free_memory_back=no
";
        let f = read(console).unwrap();
        assert_eq!(f.build_us, 1500);
        assert_eq!(f.first_line_us, 4200);
        assert_eq!(f.per_cycle_us, [2000, 1900, 2000]);
        assert!(!f.memory_back);
        assert!(read("bench: create_build_us=1").is_none());
        assert!(table(&f, &f).contains("create→destroy, per cycle, 100 in a row"));
        assert_eq!(bar(15, 30), "#".repeat(15));
        assert_eq!(bar(1, 1000), "#");
    }
}
