//! The disk part of `cargo xtask bench`: in one boot, Dom0 measures a
//! virtio disk directly (`pavise.diskbench=`, before it serves anything),
//! then the `disk` test kernel measures its own xvda (another image of the
//! same size) through blkfront → blkback → virtio. Sequential write and
//! read in 1 MiB requests (MiB/s) and 4 KiB random-read IOPS; the ratios
//! DomU / Dom0 are the figures that matter. Plain TCG and `-icount
//! shift=0`.

use std::path::PathBuf;
use std::time::Duration;

use crate::disk::Disk;
use crate::domains::{self, DomU};
use crate::error::{Error, Result};
use crate::machine::Machine;
use crate::workspace;

const IMAGE_BYTES: u64 = 32 << 20;

/// One mode's disk figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DiskFigures {
    pub dom0: Throughput,
    pub domu: Throughput,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Throughput {
    pub seq_write_mib_s: f64,
    pub seq_read_mib_s: f64,
    pub rand_read_iops: f64,
}

impl DiskFigures {
    fn ratio(a: f64, b: f64) -> f64 {
        if b > 0.0 { a / b } else { 0.0 }
    }
    pub fn write_ratio(&self) -> f64 {
        Self::ratio(self.domu.seq_write_mib_s, self.dom0.seq_write_mib_s)
    }
    pub fn read_ratio(&self) -> f64 {
        Self::ratio(self.domu.seq_read_mib_s, self.dom0.seq_read_mib_s)
    }
    pub fn iops_ratio(&self) -> f64 {
        Self::ratio(self.domu.rand_read_iops, self.dom0.rand_read_iops)
    }
}

/// The value after `key=` on the first line containing `marker`.
fn float_after(console: &str, marker: &str, key: &str) -> Option<f64> {
    let line = console.lines().find(|l| l.contains(marker))?;
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    let text: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    text.parse().ok()
}

fn throughput(console: &str, marker: &str) -> Option<Throughput> {
    Some(Throughput {
        seq_write_mib_s: float_after(console, marker, "seq_write_mib_s")?,
        seq_read_mib_s: float_after(console, marker, "seq_read_mib_s")?,
        rand_read_iops: float_after(console, marker, "rand_read_iops")?,
    })
}

/// Reads both lines of a run's console.
pub fn read(console: &str) -> Option<DiskFigures> {
    Some(DiskFigures {
        dom0: throughput(console, "dom0: bench: disk ")?,
        domu: throughput(console, "(d1) bench: disk ")?,
    })
}

fn fresh_image(name: &str) -> Result<PathBuf> {
    let dir = workspace::pavise_dir();
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let path = dir.join(name);
    let file =
        std::fs::File::create(&path).map_err(Error::io(format!("creating {}", path.display())))?;
    file.set_len(IMAGE_BYTES)
        .map_err(Error::io(format!("sizing {}", path.display())))?;
    Ok(path)
}

/// The machine: xvda (slot 0x10) is the DomU's, xvdb (slot 0x11) is the
/// one Dom0 measures before serving it (the DomU's bench uses only its
/// first writable disk).
pub fn machine(icount: bool) -> Result<Machine> {
    let domu = DomU {
        cmdline: Some("mode=bench".to_owned()),
        disks: vec![
            Disk::new(fresh_image("bench-disk-domu.img")?),
            Disk::new(fresh_image("bench-disk-dom0.img")?),
        ],
        ..domains::test_kernel("disk")
    };
    let domus = [domu];
    let mut modules = domains::modules(&domus)?;
    if let Some((_, dom0)) = modules.first_mut() {
        if dom0.contains("cmdline=") {
            dom0.push_str(" pavise.diskbench=11");
        } else {
            dom0.push_str(" cmdline=pavise.diskbench=11");
        }
    }
    Ok(Machine {
        // PAVISE_DISK_BENCH_SMP=1 puts Dom0 and the DomU on one CPU (to
        // see the path without cross-CPU wake-ups).
        smp: std::env::var("PAVISE_DISK_BENCH_SMP")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2),
        cmdline: "exit_when_done".to_owned(),
        modules,
        disks: domains::disks(&domus),
        extra_qemu_args: if icount {
            vec!["-icount".to_owned(), "shift=0".to_owned()]
        } else {
            Vec::new()
        },
        timeout: Some(Duration::from_secs(if icount { 600 } else { 240 })),
        ..Machine::default()
    })
}

/// Boots the run and reads its figures; the console is saved as
/// `target/pavise/bench-disk-<mode>.log`.
pub fn measure(icount: bool) -> Result<DiskFigures> {
    const RUN: &str = "Dom0 on its virtio disk, then a DomU through blkback";
    let file = format!("bench-disk-{}.log", if icount { "icount" } else { "tcg" });
    let (console, log) = crate::bench::boot_logged(&machine(icount)?, RUN, &file)?;
    read(&console).ok_or(Error::BenchOutput {
        run: RUN,
        key: "seq_write_mib_s",
        log,
    })
}

/// The table.
pub fn table(tcg: &DiskFigures, icount: &DiskFigures) -> String {
    let mut t = String::from(
        "disk (1 MiB sequential, 4 KiB random)            TCG   TCG -icount shift=0\n",
    );
    let rows: [(&str, f64, f64); 9] = [
        (
            "Dom0 direct: sequential write (MiB/s)",
            tcg.dom0.seq_write_mib_s,
            icount.dom0.seq_write_mib_s,
        ),
        (
            "DomU via blkback: sequential write (MiB/s)",
            tcg.domu.seq_write_mib_s,
            icount.domu.seq_write_mib_s,
        ),
        (
            "Dom0 direct: sequential read (MiB/s)",
            tcg.dom0.seq_read_mib_s,
            icount.dom0.seq_read_mib_s,
        ),
        (
            "DomU via blkback: sequential read (MiB/s)",
            tcg.domu.seq_read_mib_s,
            icount.domu.seq_read_mib_s,
        ),
        (
            "Dom0 direct: random 4 KiB reads (IOPS)",
            tcg.dom0.rand_read_iops,
            icount.dom0.rand_read_iops,
        ),
        (
            "DomU via blkback: random 4 KiB reads (IOPS)",
            tcg.domu.rand_read_iops,
            icount.domu.rand_read_iops,
        ),
        (
            "ratio: DomU / Dom0, sequential write",
            tcg.write_ratio(),
            icount.write_ratio(),
        ),
        (
            "ratio: DomU / Dom0, sequential read",
            tcg.read_ratio(),
            icount.read_ratio(),
        ),
        (
            "ratio: DomU / Dom0, random reads",
            tcg.iops_ratio(),
            icount.iops_ratio(),
        ),
    ];
    for (name, a, b) in rows {
        t.push_str(&format!("{name:<44}{a:>10.2} {b:>21.2}\n"));
    }
    t
}

/// The figures as a JSON object (added under "disk").
pub fn json(tcg: &DiskFigures, icount: &DiskFigures) -> String {
    let one = |f: &DiskFigures| {
        format!(
            concat!(
                "{{\"dom0_seq_write_mib_s\": {:.2}, \"dom0_seq_read_mib_s\": {:.2}, \"dom0_rand_read_iops\": {:.1}, ",
                "\"domu_seq_write_mib_s\": {:.2}, \"domu_seq_read_mib_s\": {:.2}, \"domu_rand_read_iops\": {:.1}, ",
                "\"write_ratio\": {:.3}, \"read_ratio\": {:.3}, \"iops_ratio\": {:.3}}}"
            ),
            f.dom0.seq_write_mib_s,
            f.dom0.seq_read_mib_s,
            f.dom0.rand_read_iops,
            f.domu.seq_write_mib_s,
            f.domu.seq_read_mib_s,
            f.domu.rand_read_iops,
            f.write_ratio(),
            f.read_ratio(),
            f.iops_ratio()
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
    fn figures_are_read_from_both_lines() {
        let console = "dom0: bench: disk seq_write_mib_s=40.5 seq_read_mib_s=80.0 rand_read_iops=1200.0 qd=16\r\n\
                       (d1) disk: xvda bench requests=indirect/64 qd=32\r\n\
                       (d1) bench: disk seq_write_mib_s=30.0 seq_read_mib_s=60.0 rand_read_iops=900.0\r\n";
        let f = read(console).unwrap();
        assert_eq!(f.dom0.seq_write_mib_s, 40.5);
        assert_eq!(f.domu.rand_read_iops, 900.0);
        assert!((f.read_ratio() - 0.75).abs() < 1e-9);
        assert!(read("dom0: bench: disk seq_write_mib_s=1").is_none());
        let t = table(&f, &f);
        assert!(t.contains("ratio: DomU / Dom0, random reads"));
        assert!(json(&f, &f).contains("\"iops_ratio\": 0.750"));
    }
}
