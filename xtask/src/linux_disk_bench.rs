//! Linux's `dd` on its Xen disks, part of `cargo xtask bench`: in one
//! boot, Dom0 measures a virtio disk directly (`pavise.diskbench=12`,
//! before it serves anything, as in [`crate::disk_bench`]), then Debian's
//! Linux, its root on xvda, runs `pavise.check=dd`
//! ([`crate::linux_root::CHECK_DD`]): busybox `dd` with O_DIRECT on the
//! scratch disk xvdb (written, then read) and on the root disk (read),
//! and 4 KiB reads at random blocks of xvdb, each through xen-blkfront →
//! Dom0's blkback → virtio. The ratios Linux / Dom0 are the figures that
//! matter. Plain TCG only: Linux under `-icount` is too slow to boot in a
//! bench.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::disk::Disk;
use crate::domains::{self, DomU};
use crate::error::{Error, Result};
use crate::exit::{Exit, HvStatus};
use crate::linux::{self, LinuxKit};
use crate::linux_root;
use crate::machine::Machine;
use crate::workspace;

/// The size of the scratch disk (xvdb) and of the one Dom0 measures (xvdc).
const IMAGE_BYTES: u64 = 64 << 20;

/// Dom0's word: the disk in PCI slot 0x12, the third disk (xvdc).
const DOM0_WORD: &str = "pavise.diskbench=12";

/// The DomU's kernel command line.
pub const CMDLINE: &str = "console=hvc0 root=/dev/xvda rw pavise.check=dd";

const DOM0_LINE: &str = "dom0: bench: disk seq_";
const LINUX_LINE: &str = "linux-dd: write_mib_s=";
const RUN: &str = "Dom0 on its virtio disk, then Linux's dd through blkback";
const TIMEOUT: Duration = Duration::from_secs(300);

/// What Dom0 measured on its disk directly.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Dom0Figures {
    pub seq_write_mib_s: f64,
    pub seq_read_mib_s: f64,
    pub rand_read_iops: f64,
}

/// What Linux's dd measured through blkfront and blkback.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinuxDdFigures {
    /// xvdb, written then read back; xvda (the root disk) read.
    pub write_mib_s: f64,
    pub read_mib_s: f64,
    pub root_read_mib_s: f64,
    /// 4 KiB random reads of xvdb, one `dd` process each, when printed.
    pub rand_read_iops: Option<f64>,
}

/// The run's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LinuxDiskFigures {
    pub dom0: Dom0Figures,
    pub linux: LinuxDdFigures,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

impl LinuxDiskFigures {
    pub fn write_ratio(&self) -> f64 {
        ratio(self.linux.write_mib_s, self.dom0.seq_write_mib_s)
    }
    pub fn read_ratio(&self) -> f64 {
        ratio(self.linux.read_mib_s, self.dom0.seq_read_mib_s)
    }
    /// The root disk's read against Dom0's sequential read.
    pub fn root_read_ratio(&self) -> f64 {
        ratio(self.linux.root_read_mib_s, self.dom0.seq_read_mib_s)
    }
    pub fn iops_ratio(&self) -> Option<f64> {
        self.linux
            .rand_read_iops
            .map(|iops| ratio(iops, self.dom0.rand_read_iops))
    }
}

/// The number after `key=` on `line`.
fn value(line: &str, key: &str) -> Option<f64> {
    let at = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?;
    let text: String = at
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    text.parse().ok()
}

/// The first console line holding `marker`, from the marker on.
fn line<'a>(console: &'a str, marker: &str) -> Option<&'a str> {
    console
        .lines()
        .find_map(|l| l.find(marker).map(|at| &l[at..]))
}

/// Reads Dom0's bench line and Linux's `linux-dd:` line.
pub fn read(console: &str) -> Option<LinuxDiskFigures> {
    let dom0 = line(console, DOM0_LINE)?;
    let linux = line(console, LINUX_LINE)?;
    Some(LinuxDiskFigures {
        dom0: Dom0Figures {
            seq_write_mib_s: value(dom0, "seq_write_mib_s")?,
            seq_read_mib_s: value(dom0, "seq_read_mib_s")?,
            rand_read_iops: value(dom0, "rand_read_iops")?,
        },
        linux: LinuxDdFigures {
            write_mib_s: value(linux, "write_mib_s")?,
            read_mib_s: value(linux, "read_mib_s")?,
            root_read_mib_s: value(linux, "root_read_mib_s")?,
            rand_read_iops: value(linux, "rand_read_iops"),
        },
    })
}

/// A fresh (zero, sparse) image of [`IMAGE_BYTES`] in target/pavise/.
fn fresh_image(name: &str) -> Result<PathBuf> {
    let dir = workspace::pavise_dir();
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    let file =
        std::fs::File::create(&path).map_err(Error::io(format!("creating {}", path.display())))?;
    file.set_len(IMAGE_BYTES)
        .map_err(Error::io(format!("sizing {}", path.display())))?;
    Ok(path)
}

/// What the boot needs besides the kit: the root initramfs (with the root
/// modules out of the kernel package) and the root image, both kept in
/// Linux's cache.
pub struct Prepared {
    pub initramfs: PathBuf,
    pub root_image: PathBuf,
}

/// Makes (or finds up to date) the root initramfs and the bench's root
/// image `bench-root.img` (made again when [`linux_root::ROOT_FILES`]
/// change, so that it has `check-dd`).
pub fn prepare(kit: &LinuxKit) -> Result<Prepared> {
    let cache = linux::cache_dir();
    let (modules, _) = linux_root::modules(&cache, &kit.version)?;
    let initramfs = cache.join("initramfs-bench-root.cpio.gz");
    linux_root::initramfs(&kit.busybox, &modules, &initramfs)?;
    let root_image = cache.join("bench-root.img");
    linux_root::ensure_root_image(&kit.busybox, &root_image)?;
    Ok(Prepared {
        initramfs,
        root_image,
    })
}

/// The machine: Linux (1 vCPU, 256 MiB) with xvda the root image (slot
/// 0x10), xvdb a fresh scratch image (0x11) and xvdc a fresh image (0x12)
/// that Dom0 measures before serving it (Linux does not touch it).
pub fn machine(kit: &LinuxKit, prepared: &Prepared) -> Result<Machine> {
    let domu = DomU {
        name: Some("linux".to_owned()),
        mem_mib: Some(256),
        vcpus: Some(1),
        ramdisk: Some(prepared.initramfs.clone()),
        cmdline: Some(CMDLINE.to_owned()),
        disks: vec![
            Disk::new(&prepared.root_image),
            Disk::new(fresh_image("bench-linux-dd-scratch.img")?),
            Disk::new(fresh_image("bench-linux-dd-dom0.img")?),
        ],
        ..DomU::new(&kit.vmlinux)
    };
    let domus = [domu];
    let mut modules = domains::modules(&domus)?;
    if let Some((_, dom0)) = modules.first_mut() {
        if dom0.contains("cmdline=") {
            dom0.push(' ');
            dom0.push_str(DOM0_WORD);
        } else {
            dom0.push_str(" cmdline=");
            dom0.push_str(DOM0_WORD);
        }
    }
    Ok(Machine {
        // As the disk bench: Dom0 (blkback) and the DomU on CPUs of their own.
        smp: std::env::var("PAVISE_DISK_BENCH_SMP")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2),
        mem_mib: 512,
        cmdline: "exit_when_done".to_owned(),
        modules,
        disks: domains::disks(&domus),
        timeout: Some(TIMEOUT),
        ..Machine::default()
    })
}

/// Where [`measure`] keeps the run's console.
pub fn log_path() -> PathBuf {
    workspace::pavise_dir().join("bench-linux-dd-tcg.log")
}

fn keep_log(console: &str, log: &Path) -> Result<()> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    std::fs::write(log, console).map_err(Error::io(format!("writing {}", log.display())))
}

/// Prepares and boots the run and reads its figures; the console is saved
/// as `target/pavise/bench-linux-dd-tcg.log`.
pub fn measure(kit: &LinuxKit) -> Result<LinuxDiskFigures> {
    let prepared = prepare(kit)?;
    let run = machine(kit, &prepared)?.run_captured()?;
    let log = log_path();
    keep_log(&run.console, &log)?;
    if run.exit != Exit::Hypervisor(HvStatus::Success) {
        return Err(Error::BenchRun {
            run: RUN,
            exit: run.exit.to_string(),
            log,
        });
    }
    let key = if line(&run.console, DOM0_LINE).is_none() {
        "seq_write_mib_s"
    } else {
        "write_mib_s"
    };
    read(&run.console).ok_or(Error::BenchOutput { run: RUN, key, log })
}

/// The table (TCG).
pub fn table(f: &LinuxDiskFigures) -> String {
    let mut t = String::from("Linux dd on xvd* (busybox, O_DIRECT, 1 MiB blocks)            TCG\n");
    let mut rows: Vec<(&str, f64)> = vec![
        (
            "Dom0 direct: sequential write (MiB/s)",
            f.dom0.seq_write_mib_s,
        ),
        ("Linux dd: sequential write (MiB/s)", f.linux.write_mib_s),
        (
            "Dom0 direct: sequential read (MiB/s)",
            f.dom0.seq_read_mib_s,
        ),
        ("Linux dd: sequential read (MiB/s)", f.linux.read_mib_s),
        ("Linux dd: root read (MiB/s)", f.linux.root_read_mib_s),
        (
            "Dom0 direct: random 4 KiB reads, qd 16 (IOPS)",
            f.dom0.rand_read_iops,
        ),
    ];
    if let Some(iops) = f.linux.rand_read_iops {
        rows.push(("Linux dd: random 4 KiB reads, a dd each (IOPS)", iops));
    }
    rows.extend([
        ("ratio: Linux / Dom0, sequential write", f.write_ratio()),
        ("ratio: Linux / Dom0, sequential read", f.read_ratio()),
        ("ratio: Linux / Dom0, root read", f.root_read_ratio()),
    ]);
    if let Some(r) = f.iops_ratio() {
        rows.push(("ratio: Linux / Dom0, random reads", r));
    }
    for (name, value) in rows {
        t.push_str(&format!("{name:<52}{value:>14.2}\n"));
    }
    t
}

/// The figures as a JSON object (added under "linux_disk"); an IOPS figure
/// Linux did not print is `null`.
pub fn json(f: &LinuxDiskFigures) -> String {
    let or_null =
        |v: Option<f64>, digits: usize| v.map_or("null".to_owned(), |v| format!("{v:.digits$}"));
    format!(
        concat!(
            "{{\"tcg\": {{\"dom0_seq_write_mib_s\": {:.2}, \"dom0_seq_read_mib_s\": {:.2}, ",
            "\"dom0_rand_read_iops\": {:.1}, \"linux_write_mib_s\": {:.2}, \"linux_read_mib_s\": {:.2}, ",
            "\"linux_root_read_mib_s\": {:.2}, \"linux_rand_read_iops\": {}, \"write_ratio\": {:.3}, ",
            "\"read_ratio\": {:.3}, \"root_read_ratio\": {:.3}, \"iops_ratio\": {}}}}}"
        ),
        f.dom0.seq_write_mib_s,
        f.dom0.seq_read_mib_s,
        f.dom0.rand_read_iops,
        f.linux.write_mib_s,
        f.linux.read_mib_s,
        f.linux.root_read_mib_s,
        or_null(f.linux.rand_read_iops, 1),
        f.write_ratio(),
        f.read_ratio(),
        f.root_read_ratio(),
        or_null(f.iops_ratio(), 4),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "dom0: bench: disk seq_write_mib_s=400.0 seq_read_mib_s=2000.0 rand_read_iops=20000.0 qd=16\r\n\
        dom0: d1 xvda (51712) served from the disk at slot 0x10\r\n\
        (d1) linux-dd: write_mib_s=100.0 read_mib_s=500.0 root_read_mib_s=400.5 rand_read_iops=50.0\r\n";

    #[test]
    fn figures_are_read_from_both_lines() {
        let f = read(CONSOLE).unwrap();
        assert_eq!(f.dom0.seq_read_mib_s, 2000.0);
        assert_eq!(f.linux.write_mib_s, 100.0);
        // `read_mib_s` is not read out of `root_read_mib_s`, nor the other way.
        assert_eq!(f.linux.read_mib_s, 500.0);
        assert_eq!(f.linux.root_read_mib_s, 400.5);
        assert_eq!(f.linux.rand_read_iops, Some(50.0));
        assert!((f.write_ratio() - 0.25).abs() < 1e-9);
        assert!((f.read_ratio() - 0.25).abs() < 1e-9);
        assert!((f.iops_ratio().unwrap() - 0.0025).abs() < 1e-9);
        // Without an IOPS figure, the rest still counts.
        let no_iops = CONSOLE.replace(" rand_read_iops=50.0", "");
        let f = read(&no_iops).unwrap();
        assert_eq!(f.linux.rand_read_iops, None);
        assert!(!table(&f).contains("random reads"));
        assert!(json(&f).contains("\"linux_rand_read_iops\": null"));
        // Either line missing: no figures.
        assert!(
            read("dom0: bench: disk seq_write_mib_s=1 seq_read_mib_s=1 rand_read_iops=1").is_none()
        );
        assert!(read("(d1) linux-dd: no /dev/xvdb after 10 s").is_none());
        assert!(read("dom0: bench: disk at slot 0x12 is read-only or under 1 MiB").is_none());
    }

    #[test]
    fn table_and_json() {
        let f = read(CONSOLE).unwrap();
        let t = table(&f);
        for row in [
            "Linux dd: sequential write (MiB/s)",
            "Linux dd: sequential read (MiB/s)",
            "Linux dd: root read (MiB/s)",
            "ratio: Linux / Dom0, sequential write",
            "ratio: Linux / Dom0, root read",
            "ratio: Linux / Dom0, random reads",
        ] {
            assert!(t.contains(row), "{row}");
        }
        let j = json(&f);
        assert!(j.starts_with("{\"tcg\": {\"dom0_seq_write_mib_s\": 400.00"));
        assert!(j.contains("\"root_read_ratio\": 0.200"));
        assert!(j.contains("\"iops_ratio\": 0.0025"));
        assert_eq!(j.matches('{').count(), j.matches('}').count());
    }

    #[test]
    fn the_check_and_the_machine_agree() {
        assert!(linux_root::CHECK_DD.contains(&format!("mib={}\n", linux_root::DD_MIB)));
        assert!(linux_root::CHECK_DD.contains("echo \"linux-dd: write_mib_s=$write read_mib_s="));
        assert!(
            linux_root::ROOT_FILES
                .iter()
                .any(|(f, _, t)| *f == "etc/pavise/check-dd" && *t == linux_root::CHECK_DD)
        );
        assert!(CMDLINE.contains(linux_root::ROOT_CMDLINE));
        // The third disk overall is in slot 0x12.
        assert_eq!(crate::disk::pci_slot(2), Some(0x12));
        assert!(DOM0_WORD.ends_with("=12"));
    }
}
