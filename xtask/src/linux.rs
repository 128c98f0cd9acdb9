//! Debian's Linux kernel as a DomU: fetching the kernel and a static busybox
//! from Debian's packages (with apt, into [`cache_dir`]), taking the ELF
//! vmlinux out of the bzImage, and making a busybox initramfs for it.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use cpio::newc::{Builder, ModeFileType};

use crate::error::{Error, Result};
use crate::prereqs::find_program;
use crate::progress::{Steps, say};
use crate::workspace;

/// The Debian meta-package whose dependency names the current kernel
/// package (`linux-image-6.1.0-NN-amd64` on bookworm).
pub const KERNEL_META_PACKAGE: &str = "linux-image-amd64";

/// The Debian package with a statically linked busybox (`/bin/busybox`).
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

/// The xz stream magic, where the compressed ELF starts inside a bzImage.
pub const XZ_MAGIC: [u8; 6] = [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00];

const ELF_MAGIC: &[u8] = b"\x7fELF";

/// Where the packages, what is unpacked from them, the vmlinux and the
/// initramfs images are kept: `target/linux/`.
pub fn cache_dir() -> PathBuf {
    workspace::target_dir().join("linux")
}

/// What booting Linux takes: the ELF kernel and a static busybox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxKit {
    pub vmlinux: PathBuf,
    pub busybox: PathBuf,
    /// The kernel's release, as `uname -r` prints it (e.g. `6.1.0-57-amd64`).
    pub version: String,
}

/// Which parts [`fetch`] gets from Debian (the others the user named).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    Both,
    Kernel,
    Busybox,
}

impl Wanted {
    /// What to fetch when the user gave `kernel` and `busybox` themselves;
    /// `None` when nothing is left to fetch.
    pub fn besides(kernel_given: bool, busybox_given: bool) -> Option<Self> {
        match (kernel_given, busybox_given) {
            (false, false) => Some(Self::Both),
            (false, true) => Some(Self::Kernel),
            (true, false) => Some(Self::Busybox),
            (true, true) => None,
        }
    }

    /// How many progress steps [`fetch`] prints: finding the kernel
    /// package, downloading, unpacking, taking the vmlinux out (the first
    /// and last only for the kernel).
    pub fn steps(self) -> usize {
        match self {
            Self::Both | Self::Kernel => 4,
            Self::Busybox => 2,
        }
    }

    fn kernel(self) -> bool {
        self != Self::Busybox
    }

    fn busybox(self) -> bool {
        self != Self::Kernel
    }
}

/// What [`fetch`] got: the parts it was asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    pub vmlinux: Option<PathBuf>,
    pub busybox: Option<PathBuf>,
    pub version: Option<String>,
}

/// Gets Debian's current kernel and busybox-static into `cache`, takes the
/// ELF vmlinux out of the kernel's bzImage and returns both; what is
/// already there and up to date is not fetched again. Each step is printed
/// with how long it took.
pub fn prepare(cache: &Path) -> Result<LinuxKit> {
    let mut steps = Steps::new(Wanted::Both.steps());
    let fetched = fetch(cache, Wanted::Both, &mut steps)?;
    match fetched {
        Fetched {
            vmlinux: Some(vmlinux),
            busybox: Some(busybox),
            version: Some(version),
        } => Ok(LinuxKit {
            vmlinux,
            busybox,
            version,
        }),
        _ => unreachable!("fetch(Wanted::Both) returns both parts"),
    }
}

/// [`prepare`] for the parts in `wanted`, numbering its steps in `steps`
/// (it takes [`Wanted::steps`] of them).
pub fn fetch(cache: &Path, wanted: Wanted, steps: &mut Steps) -> Result<Fetched> {
    fs::create_dir_all(cache).map_err(Error::io(format!("creating {}", cache.display())))?;
    let mut apt = Apt::default();

    // (a) The kernel package the meta-package names.
    let kernel_package = if wanted.kernel() {
        let step = steps.start(&format!(
            "finding the kernel package (apt-cache depends {KERNEL_META_PACKAGE})"
        ));
        let package = apt.kernel_package()?;
        step.done_with(|took| format!("{package}, found in {took}"));
        Some(package)
    } else {
        None
    };
    let mut packages: Vec<&str> = Vec::new();
    packages.extend(kernel_package.as_deref());
    if wanted.busybox() {
        packages.push(BUSYBOX_PACKAGE);
    }

    // (b) The .deb files, unless they are already there.
    let step = steps.start(&format!(
        "downloading {} into {}",
        packages.join(", "),
        cache.display()
    ));
    let mut debs = Vec::new();
    let mut downloaded = Vec::new();
    for package in &packages {
        let deb = match find_deb(cache, package)? {
            Some(deb) => deb,
            None => {
                apt.download(cache, package)?;
                downloaded.push(*package);
                find_deb(cache, package)?.ok_or_else(|| Error::LinuxDownload {
                    what: format!("`apt-get download {package}` left no {package}_*.deb"),
                    detail: cache.display().to_string(),
                })?
            }
        };
        debs.push(deb);
    }
    step.done_with(|took| {
        if downloaded.is_empty() {
            format!("already downloaded ({took})")
        } else {
            format!("downloaded {} in {took}", downloaded.join(", "))
        }
    });

    // (c) Unpack what is needed from them, unless it is up to date.
    // A stamp beside each product names the .deb it came from.
    let vmlinux = cache.join("vmlinux");
    let vmlinux_stamp = cache.join("vmlinux.from");
    let step = steps.start("unpacking the packages (dpkg-deb -x)");
    let mut unpacked = Vec::new();
    let mut vmlinuz = None;
    let mut kernel_deb = None;
    let mut busybox = None;
    for (package, deb) in packages.iter().zip(&debs) {
        let dir = cache.join(package);
        let is_kernel = Some(*package) == kernel_package.as_deref();
        let fresh = if is_kernel {
            kernel_deb = Some(deb);
            up_to_date(&vmlinux, &vmlinux_stamp, deb)
        } else {
            // dpkg-deb keeps the package's file times: the stamp's counts.
            up_to_date(&dir.join(STAMP), &dir.join(STAMP), deb) && dir.join("bin/busybox").is_file()
        };
        if !fresh {
            unpack(deb, &dir)?;
            if !is_kernel {
                stamp(&dir.join(STAMP), deb)?;
            }
            unpacked.push(*package);
        }
        if is_kernel {
            if !fresh {
                vmlinuz = Some(find_vmlinuz(&dir)?);
            }
        } else {
            let path = dir.join("bin/busybox");
            if !path.is_file() {
                return Err(Error::LinuxPackage {
                    path: deb.clone(),
                    reason: "it has no bin/busybox".to_owned(),
                });
            }
            busybox = Some(path);
        }
    }
    step.done_with(|took| {
        if unpacked.is_empty() {
            format!("already unpacked ({took})")
        } else {
            format!("unpacked {} in {took}", unpacked.join(", "))
        }
    });

    // (d) The ELF vmlinux out of the bzImage's xz payload.
    if wanted.kernel() {
        let step = steps.start(&format!("extracting {}", vmlinux.display()));
        match vmlinuz {
            None => {
                step.done_with(|took| format!("up to date ({took})"));
            }
            Some(vmlinuz) => {
                let image = fs::read(&vmlinuz)
                    .map_err(Error::io(format!("reading {}", vmlinuz.display())))?;
                let elf = extract_vmlinux(&image).map_err(|reason| Error::LinuxPackage {
                    path: vmlinuz.clone(),
                    reason: reason.to_owned(),
                })?;
                write_atomically(&vmlinux, &elf)?;
                if let Some(deb) = kernel_deb {
                    stamp(&vmlinux_stamp, deb)?;
                }
                // The rest of the package (its modules, 400 MB) is not
                // needed: the stamp says the vmlinux is up to date.
                // (`linux_root::modules` unpacks it again for the few
                // modules a root on xvda needs, and keeps only those.)
                if let Some(dir) = vmlinuz.parent().and_then(Path::parent) {
                    fs::remove_dir_all(dir)
                        .map_err(Error::io(format!("removing {}", dir.display())))?;
                }
                let mib = elf.len() as f64 / (1024.0 * 1024.0);
                step.done_with(|took| format!("extracted {mib:.1} MiB in {took}"));
            }
        }
    }

    Ok(Fetched {
        vmlinux: wanted.kernel().then_some(vmlinux),
        busybox,
        version: kernel_package
            .as_deref()
            .map(|p| p.strip_prefix("linux-image-").unwrap_or(p).to_owned()),
    })
}

/// The kernel package in `apt-cache depends linux-image-amd64`'s output:
/// the first dependency named `linux-image-…` other than the meta-package.
pub fn kernel_package(depends: &str) -> Option<String> {
    depends.lines().find_map(|line| {
        let (_, dependency) = line.split_once("Depends:")?;
        let name = dependency.trim();
        (name.starts_with("linux-image-") && name != KERNEL_META_PACKAGE).then(|| name.to_owned())
    })
}

/// Takes the ELF kernel out of a bzImage: the first xz stream (found by
/// [`XZ_MAGIC`]) that decompresses to an ELF file. The reason is given
/// when there is none.
pub fn extract_vmlinux(image: &[u8]) -> std::result::Result<Vec<u8>, &'static str> {
    let mut streams = 0;
    for start in image
        .windows(XZ_MAGIC.len())
        .enumerate()
        .filter(|(_, window)| *window == XZ_MAGIC)
        .map(|(start, _)| start)
    {
        streams += 1;
        let mut elf = Vec::new();
        let mut reader = lzma_rust2::XzReader::new(&image[start..], false);
        if reader.read_to_end(&mut elf).is_ok() && elf.starts_with(ELF_MAGIC) {
            return Ok(elf);
        }
    }
    Err(if streams == 0 {
        "it holds no xz stream (magic fd 37 7a 58 5a 00)"
    } else {
        "none of its xz streams decompresses to an ELF file"
    })
}

/// Writes a gzip-compressed newc cpio archive to `out` for Linux to unpack
/// as its root file system: `/bin/busybox` (from `busybox`) with `/bin/sh`
/// linking to it, the directories a busybox system mounts and installs its
/// applets into, `/dev/console` (5, 1), which the kernel opens for init
/// before anything is mounted, and `/init` holding `init_script`.
pub fn initramfs(busybox: &Path, init_script: &str, out: &Path) -> Result<()> {
    initramfs_with(busybox, init_script, &[], out)
}

/// [`initramfs`] with `files` besides: each a path inside the archive
/// (relative, e.g. `lib/modules/ext4.ko`) and its contents, written as a
/// regular file of mode 0644 after the directories it needs.
pub fn initramfs_with(
    busybox: &Path,
    init_script: &str,
    files: &[(String, Vec<u8>)],
    out: &Path,
) -> Result<()> {
    let busybox_bytes =
        fs::read(busybox).map_err(Error::io(format!("reading {}", busybox.display())))?;
    let archive = initramfs_bytes(&busybox_bytes, init_script, files)
        .map_err(Error::io("making the initramfs"))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    write_atomically(out, &archive)
}

/// One entry of the initramfs.
enum Entry<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Symlink(&'a str, &'a str),
    CharDevice(&'a str, u32, (u32, u32)),
}

fn initramfs_bytes(
    busybox: &[u8],
    init_script: &str,
    files: &[(String, Vec<u8>)],
) -> std::io::Result<Vec<u8>> {
    use Entry::*;
    let base = [
        Dir("bin", 0o755),
        Dir("sbin", 0o755),
        Dir("usr", 0o755),
        Dir("usr/bin", 0o755),
        Dir("usr/sbin", 0o755),
        Dir("dev", 0o755),
        Dir("proc", 0o555),
        Dir("sys", 0o555),
        Dir("tmp", 0o1777),
        Dir("etc", 0o755),
        Dir("root", 0o700),
        File("bin/busybox", 0o755, busybox),
        Symlink("bin/sh", "busybox"),
        CharDevice("dev/console", 0o600, (5, 1)),
        File("init", 0o755, init_script.as_bytes()),
    ];
    // The extra files' directories that the base entries do not make, each
    // before what is in it.
    let mut dirs: Vec<String> = Vec::new();
    for (path, _) in files {
        let mut ancestors: Vec<String> = Path::new(path.as_str())
            .ancestors()
            .skip(1)
            .filter(|d| !d.as_os_str().is_empty())
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        ancestors.reverse();
        for dir in ancestors {
            let known = base.iter().any(|e| matches!(e, Dir(d, _) if *d == dir));
            if !known && !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    let entries = base
        .into_iter()
        .chain(dirs.iter().map(|d| Dir(d, 0o755)))
        .chain(files.iter().map(|(p, data)| File(p, 0o644, data)));
    let too_big = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "file over 4 GiB");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for (ino, entry) in (1u32..).zip(entries) {
        let (name, kind, permissions, data, nlink) = match entry {
            Dir(name, mode) => (name, ModeFileType::Directory, mode, &[][..], 2),
            File(name, mode, data) => (name, ModeFileType::Regular, mode, data, 1),
            Symlink(name, target) => (name, ModeFileType::Symlink, 0o777, target.as_bytes(), 1),
            CharDevice(name, mode, _) => (name, ModeFileType::Char, mode, &[][..], 1),
        };
        let mut builder = Builder::new(name)
            .ino(ino)
            .mode(permissions)
            .set_mode_file_type(kind)
            .nlink(nlink);
        if let CharDevice(_, _, (major, minor)) = entry {
            builder = builder.rdev_major(major).rdev_minor(minor);
        }
        let size = u32::try_from(data.len()).map_err(|_| too_big())?;
        let mut writer = builder.write(&mut gz, size);
        writer.write_all(data)?;
        writer.finish()?;
    }
    cpio::newc::trailer(&mut gz)?;
    gz.finish()
}

/// The interactive shell's part of an `/init` (after /proc, /sys and
/// /dev are mounted): devpts, the greeting, the shell on the console, the
/// power-off when it ends. Shared by [`INTERACTIVE_INIT`] and
/// `linux_net`'s.
macro_rules! interactive_shell {
    () => {
        r#"mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
echo "Pavise: Linux $(uname -r) up in $(cut -d' ' -f1 /proc/uptime) s, $(nproc) CPUs"
echo "Pavise: exit the shell to power the domain off"
# cttyhack opens the console the kernel names (hvc0) as the shell's
# controlling terminal, so that job control and Ctrl-C work.
setsid cttyhack sh -l
echo "Pavise: shell ended; powering off"
poweroff -f
"#
    };
}
pub(crate) use interactive_shell;

/// `/init` for `cargo xtask linux`: mounts the kernel's file systems, says
/// how long Linux took to come up, runs an interactive shell on the Xen
/// console (`console=hvc0`) and powers off when it exits.
pub const INTERACTIVE_INIT: &str = concat!(
    r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
"#,
    interactive_shell!()
);

/// `/init` for a non-interactive check of Linux on Pavise. It prints, one
/// `linux-check: key=value` line each: `uptime_at_init` (seconds since boot
/// when init started), `nproc`, `cpu<i>_ticks` (user+nice+system ticks CPU
/// i gained while one busy loop per CPU ran for 2 s, pinned with taskset
/// when busybox has it), `cpus_ran` (how many CPUs gained ticks, `K/N`),
/// `sleep1_ms` (`sleep 1` measured with /proc/uptime), `xen-devices` (the
/// entries of /sys/bus/xen/devices, `none`, or `absent`), then
/// `linux-check: done`, and powers off.
pub const CHECK_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
read up rest < /proc/uptime
echo "linux-check: uptime_at_init=$up"
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
n=$(nproc)
echo "linux-check: nproc=$n"
busy() {
    awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 }' /proc/stat
}
i=0
while [ $i -lt $n ]; do
    eval "before$i=$(busy $i)"
    i=$((i + 1))
done
pin=""
if taskset -p $$ >/dev/null 2>&1; then
    pin=yes
fi
pids=""
i=0
while [ $i -lt $n ]; do
    if [ -n "$pin" ]; then
        taskset -c $i sh -c 'while :; do :; done' &
    else
        sh -c 'while :; do :; done' &
    fi
    pids="$pids $!"
    i=$((i + 1))
done
sleep 2
kill $pids
wait 2>/dev/null
ran=0
i=0
while [ $i -lt $n ]; do
    eval "b=\$before$i"
    d=$(( $(busy $i) - b ))
    echo "linux-check: cpu${i}_ticks=$d"
    if [ $d -gt 0 ]; then
        ran=$((ran + 1))
    fi
    i=$((i + 1))
done
echo "linux-check: cpus_ran=$ran/$n"
read t0 rest < /proc/uptime
sleep 1
read t1 rest < /proc/uptime
echo "linux-check: sleep1_ms=$(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%d", (b - a) * 1000 }')"
if [ -d /sys/bus/xen/devices ]; then
    devices=$(ls /sys/bus/xen/devices)
    echo "linux-check: xen-devices=$(echo ${devices:-none})"
else
    echo "linux-check: xen-devices=absent"
fi
echo "linux-check: done"
poweroff -f
"#;

/// Runs apt, once running `apt-get update` (as root) when the package lists
/// let it down.
#[derive(Default)]
struct Apt {
    updated: bool,
}

impl Apt {
    fn kernel_package(&mut self) -> Result<String> {
        loop {
            let depends = apt_command("apt-cache", &["depends", KERNEL_META_PACKAGE], None);
            let failure = match depends {
                Ok(output) => match kernel_package(&output) {
                    Some(package) => return Ok(package),
                    None => Error::LinuxDownload {
                        what: format!(
                            "`apt-cache depends {KERNEL_META_PACKAGE}` names no linux-image package"
                        ),
                        detail: last_line(&output),
                    },
                },
                Err(e) => e,
            };
            if !self.update()? {
                return Err(failure);
            }
        }
    }

    fn download(&mut self, cache: &Path, package: &str) -> Result<()> {
        loop {
            match apt_command("apt-get", &["download", package], Some(cache)) {
                Ok(_) => return Ok(()),
                Err(failure) => {
                    if !self.update()? {
                        return Err(failure);
                    }
                }
            }
        }
    }

    /// Runs `apt-get update` if it has not run yet and xtask runs as root;
    /// whether it ran.
    fn update(&mut self) -> Result<bool> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() == 0 };
        if self.updated || !root || find_program("apt-get").is_none() {
            return Ok(false);
        }
        self.updated = true;
        say("updating apt's package lists (apt-get update)");
        apt_command("apt-get", &["update"], None)?;
        Ok(true)
    }
}

/// Runs an apt program with its output captured; its standard output, or
/// a [`Error::LinuxDownload`] when it is missing or fails.
fn apt_command(program: &str, args: &[&str], cwd: Option<&Path>) -> Result<String> {
    let line = format!("{program} {}", args.join(" "));
    if find_program(program).is_none() {
        return Err(Error::LinuxDownload {
            what: format!("`{program}` is not on PATH"),
            detail: String::new(),
        });
    }
    let mut command = Command::new(program);
    command
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null());
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    let output = command.output().map_err(|e| Error::LinuxDownload {
        what: format!("`{line}` could not start"),
        detail: e.to_string(),
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    // apt-get download as root warns that it cannot drop privileges for
    // the download; that is not why it failed.
    let reason = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.contains("unsandboxed"))
        .map(str::to_owned)
        .unwrap_or_else(|| output.status.to_string());
    Err(Error::LinuxDownload {
        what: format!("`{line}` failed"),
        detail: reason,
    })
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_owned()
}

/// The `PACKAGE_*.deb` apt-get download left in `dir`, if any (the newest
/// when there are several).
pub(crate) fn find_deb(dir: &Path, package: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    let entries = fs::read_dir(dir).map_err(Error::io(format!("listing {}", dir.display())))?;
    let mut best: Option<(SystemTime, PathBuf)> = None;
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("listing {}", dir.display())))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(&prefix) && name.ends_with(".deb")) {
            continue;
        }
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if best.as_ref().is_none_or(|(t, _)| modified > *t) {
            best = Some((modified, entry.path()));
        }
    }
    Ok(best.map(|(_, path)| path))
}

/// Unpacks `deb` into `dir` (emptied first) with `dpkg-deb -x`.
pub(crate) fn unpack(deb: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(Error::io(format!("removing {}", dir.display())))?;
    }
    fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let mut command = Command::new("dpkg-deb");
    command.arg("-x").arg(deb).arg(dir).stdin(Stdio::null());
    workspace::output_checked(&mut command).map(drop)
}

/// The kernel image `boot/vmlinuz-*` in an unpacked kernel package.
fn find_vmlinuz(dir: &Path) -> Result<PathBuf> {
    let boot = dir.join("boot");
    let missing = || Error::LinuxPackage {
        path: dir.to_owned(),
        reason: "it has no boot/vmlinuz-*".to_owned(),
    };
    let entries = fs::read_dir(&boot).map_err(|_| missing())?;
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(missing)
}

/// The stamp in an unpacked package's directory.
const STAMP: &str = ".unpacked-from";

/// Whether `product` was made from `deb`: it exists, is no older than
/// `deb`, and `stamp` names `deb`.
pub(crate) fn up_to_date(product: &Path, stamp: &Path, deb: &Path) -> bool {
    let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    let newer = match (modified(product), modified(deb)) {
        (Some(p), Some(d)) => p >= d,
        _ => false,
    };
    newer && fs::read_to_string(stamp).ok().as_deref() == Some(&*deb_name(deb))
}

fn deb_name(deb: &Path) -> String {
    deb.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Records that what is beside `stamp` was made from `deb`.
pub(crate) fn stamp(stamp: &Path, deb: &Path) -> Result<()> {
    fs::write(stamp, deb_name(deb)).map_err(Error::io(format!("writing {}", stamp.display())))
}

/// Writes `bytes` to `path` through a temporary file beside it, so that an
/// interrupted write leaves no half file behind.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes).map_err(Error::io(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(Error::io(format!(
        "renaming {} to {}",
        tmp.display(),
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// One archive entry as read back: mode, rdev and contents.
    type Entries = BTreeMap<String, (u32, (u32, u32), Vec<u8>)>;

    fn read_back(gz: &[u8]) -> Entries {
        let mut input = flate2::read::GzDecoder::new(gz);
        let mut entries = BTreeMap::new();
        loop {
            let mut reader = cpio::NewcReader::new(input).expect("a newc header");
            if reader.entry().is_trailer() {
                break;
            }
            let entry = reader.entry().clone();
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            entries.insert(
                entry.name().to_owned(),
                (entry.mode(), (entry.rdev_major(), entry.rdev_minor()), data),
            );
            input = reader.finish().unwrap();
        }
        entries
    }

    #[test]
    fn initramfs_holds_busybox_init_and_console() {
        let dir = std::env::temp_dir().join(format!("xtask-linux-cpio-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let busybox = dir.join("busybox");
        // An odd length, so that the padding after it is exercised.
        let fake: Vec<u8> = (0..=254u8).cycle().take(70_001).collect();
        fs::write(&busybox, &fake).unwrap();
        let out = dir.join("out/initramfs.cpio.gz");
        initramfs(&busybox, CHECK_INIT, &out).unwrap();

        let archive = fs::read(&out).unwrap();
        assert_eq!(&archive[..2], b"\x1f\x8b", "gzip");
        let entries = read_back(&archive);
        let (mode, _, data) = &entries["init"];
        assert_eq!(*mode, 0o100755);
        assert_eq!(data, CHECK_INIT.as_bytes());
        let (mode, _, data) = &entries["bin/busybox"];
        assert_eq!(*mode, 0o100755);
        assert_eq!(data, &fake);
        let (mode, _, target) = &entries["bin/sh"];
        assert_eq!((*mode, target.as_slice()), (0o120777, &b"busybox"[..]));
        let (mode, rdev, data) = &entries["dev/console"];
        assert_eq!((*mode, *rdev, data.len()), (0o020600, (5, 1), 0));
        for dir in ["dev", "proc", "sys", "tmp", "etc", "bin", "sbin"] {
            let (mode, _, _) = &entries[dir];
            assert_eq!(mode & 0o170000, 0o040000, "{dir} is a directory");
        }
        assert_eq!(entries["tmp"].0, 0o041777);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_busybox_is_one_sentence() {
        let e = initramfs(
            Path::new("/no/such/busybox"),
            INTERACTIVE_INIT,
            Path::new("/tmp/x"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/no/such/busybox"), "{e}");
    }

    #[test]
    fn init_scripts_are_busybox_sh() {
        for script in [INTERACTIVE_INIT, CHECK_INIT] {
            assert!(script.starts_with("#!/bin/busybox sh\n"));
            assert!(script.trim_end().ends_with("poweroff -f"));
        }
        assert!(INTERACTIVE_INIT.contains("cttyhack"));
        for key in [
            "uptime_at_init=",
            "nproc=",
            "cpus_ran=",
            "sleep1_ms=",
            "xen-devices=",
            "linux-check: done",
        ] {
            assert!(CHECK_INIT.contains(key), "{key}");
        }
        // uptime_at_init comes first of all.
        let first = CHECK_INIT.find("linux-check: ").unwrap();
        assert!(CHECK_INIT[first..].starts_with("linux-check: uptime_at_init="));
    }

    /// The init scripts are valid sh (`sh -n` parses them), when there is a
    /// sh to ask.
    #[test]
    fn init_scripts_parse() {
        if find_program("sh").is_none() {
            return;
        }
        for script in [INTERACTIVE_INIT, CHECK_INIT] {
            let status = Command::new("sh")
                .args(["-n", "-c", script])
                .status()
                .unwrap();
            assert!(status.success(), "{script}");
        }
    }

    fn xz(data: &[u8], bcj: bool) -> Vec<u8> {
        let mut options = lzma_rust2::XzOptions::with_preset(1);
        options.set_check_sum_type(lzma_rust2::CheckType::Crc32);
        if bcj {
            // As the kernel's xz_wrap.sh does for x86.
            options.prepend_pre_filter(lzma_rust2::FilterType::BcjX86, 0);
        }
        let mut writer = lzma_rust2::XzWriter::new(Vec::new(), options).unwrap();
        writer.write_all(data).unwrap();
        writer.finish().unwrap()
    }

    #[test]
    fn vmlinux_comes_out_of_a_bzimage() {
        let mut elf = b"\x7fELF\x02\x01\x01\x00".to_vec();
        // Some x86 calls (E8 rel32), which the BCJ filter rewrites.
        for i in 0..2000u32 {
            elf.push(0xe8);
            elf.extend_from_slice(&i.to_le_bytes());
            elf.extend_from_slice(b"kernel text ");
        }
        // Setup code, a decoy stream that is not an ELF, the payload, then
        // the size and more bytes, as in a bzImage.
        let mut image = b"MZ setup code \xfd7zXZ".to_vec();
        image.extend(xz(b"not a kernel", false));
        image.extend_from_slice(&[0x55; 37]);
        image.extend(xz(&elf, true));
        image.extend_from_slice(&(elf.len() as u32).to_le_bytes());
        image.extend_from_slice(&[0xaa; 100]);
        assert_eq!(extract_vmlinux(&image).as_deref(), Ok(elf.as_slice()));

        assert_eq!(
            extract_vmlinux(b"no stream here"),
            Err("it holds no xz stream (magic fd 37 7a 58 5a 00)")
        );
        assert_eq!(
            extract_vmlinux(&xz(b"plain text", true)),
            Err("none of its xz streams decompresses to an ELF file")
        );
    }

    #[test]
    fn the_kernel_package_is_read_from_apt_cache() {
        let output = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(
            kernel_package(output).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(kernel_package("linux-image-amd64\n"), None);
        assert_eq!(
            kernel_package("x\n  Depends: linux-image-amd64\n  Depends: foo\n"),
            None
        );
    }

    #[test]
    fn what_is_fetched_besides_the_given_parts() {
        assert_eq!(Wanted::besides(false, false), Some(Wanted::Both));
        assert_eq!(Wanted::besides(true, false), Some(Wanted::Busybox));
        assert_eq!(Wanted::besides(false, true), Some(Wanted::Kernel));
        assert_eq!(Wanted::besides(true, true), None);
        assert_eq!(Wanted::Busybox.steps(), 2);
    }

    #[test]
    fn download_failures_name_the_way_around() {
        let e = apt_command("no-such-apt-pavise", &["download", "x"], None).unwrap_err();
        let message = e.to_string();
        assert!(
            message.contains("`no-such-apt-pavise` is not on PATH"),
            "{message}"
        );
        assert!(message.contains("--kernel PATH"), "{message}");
        assert!(message.contains("--busybox PATH"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    /// The real thing: downloads Debian's kernel and busybox-static into
    /// target/linux/ (run with `cargo test -p xtask -- --ignored`).
    #[test]
    #[ignore = "downloads Debian packages"]
    fn prepare_gets_debians_kernel() {
        let kit = prepare(&cache_dir()).unwrap();
        let vmlinux = fs::read(&kit.vmlinux).unwrap();
        assert!(vmlinux.starts_with(ELF_MAGIC));
        assert!(vmlinux.len() > 20 << 20, "{} bytes", vmlinux.len());
        assert!(fs::read(&kit.busybox).unwrap().starts_with(ELF_MAGIC));
        assert!(kit.version.ends_with("-amd64"), "{}", kit.version);
    }
}
