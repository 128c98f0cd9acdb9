//! The errors xtask reports: each one prints as one sentence a user can act on.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::net::{HostFwd, Mac, MacError};

/// Everything that can go wrong in xtask, as a value (never a panic).
#[derive(Debug)]
pub enum Error {
    /// A file-system operation failed.
    Io {
        /// What xtask was doing, e.g. "creating directory /x".
        doing: String,
        source: io::Error,
    },
    /// A program could not be started at all.
    Spawn { program: String, source: io::Error },
    /// A program ran and failed.
    CommandFailed {
        /// The command line, for the user to rerun.
        command: String,
        /// How it ended, e.g. "exit status: 2".
        status: String,
        /// Its captured error output, empty when it went to the terminal.
        stderr: String,
    },
    /// Host tools are missing and xtask may not install them itself.
    MissingPrerequisites {
        tools: Vec<&'static str>,
        packages: Vec<&'static str>,
    },
    /// Host tools are still missing after installing their packages.
    StillMissing { tools: Vec<&'static str> },
    /// `rustup` is needed to check or install the bare-metal target.
    NoRustup,
    /// A built artifact is not where the build puts it.
    ArtifactMissing { path: PathBuf },
    /// A module file to boot does not exist or is not a file.
    ModuleMissing { path: PathBuf },
    /// A `--module` argument is not `FILE [STRING]`.
    BadModuleArg { arg: String },
    /// Direct boot passes modules through `-initrd`, which takes one file.
    DirectBootTooManyModules { count: usize },
    /// Direct boot's `-initrd` carries no module string.
    DirectBootModuleString { string: String },
    /// A command line or module string GRUB could not carry.
    BadBootString {
        string: String,
        reason: &'static str,
    },
    /// A guest kernel's Cargo.toml has no `[package]` name.
    NoPackageName { manifest: PathBuf },
    /// QEMU arguments for GRUB boot were asked for without an image.
    NoImage,
    /// A captured run was asked for without a time-out.
    NoTimeout,
    /// Some phases of `cargo xtask test` failed.
    TestsFailed { phases: Vec<&'static str> },
    /// A `--domu` argument is malformed.
    BadDomu { arg: String, reason: String },
    /// A `--domu` kernel does not exist or is not a file.
    KernelMissing { path: PathBuf },
    /// A `--domu` kernel is not an ELF file.
    NotElf { path: PathBuf },
    /// A `--domu` ramdisk does not exist or is not a file.
    RamdiskMissing { path: PathBuf },
    /// A `--domu` `vif=` MAC address is malformed or no interface's.
    BadMac { arg: String, reason: MacError },
    /// Two network interfaces (DomUs' or the uplink NIC) have one MAC.
    DuplicateMac {
        mac: Mac,
        /// The interfaces, as [`crate::net::Interface::describe`] names them.
        first: String,
        second: String,
    },
    /// A DomU interface needs a default MAC but its domain id or handle
    /// does not fit in one.
    NoDefaultMac { domid: usize, handle: usize },
    /// A `--hostfwd` argument (or a [`HostFwd`] of a machine) is malformed
    /// or cannot reach a DomU.
    BadHostFwd { arg: String, reason: String },
    /// Two forwards from one host port.
    HostPortTwice {
        port: u16,
        first: HostFwd,
        second: HostFwd,
    },
    /// Direct boot was asked to carry a DomU's ramdisk.
    DirectBootRamdisk,
    /// Debian's packages for the Linux guest could not be had: apt is
    /// missing or failed (no network, no package lists).
    LinuxDownload {
        /// What failed, e.g. "`apt-get download busybox-static` failed".
        what: String,
        /// Its last line of output, or why it could not start.
        detail: String,
    },
    /// `--busybox` names no file.
    BusyboxMissing { path: PathBuf },
    /// A Linux package did not hold what it should.
    LinuxPackage { path: PathBuf, reason: String },
    /// A benchmark run did not end cleanly.
    BenchRun {
        run: &'static str,
        exit: String,
        /// Where its console was saved.
        log: PathBuf,
    },
    /// `--compare` was given a file that is not an earlier run's JSON.
    BenchCompare { path: PathBuf, reason: String },
    /// The benchmark chart could not be drawn.
    Chart(String),
    /// A benchmark's figures were read without one of its runs (a bug).
    BenchMissingRun(&'static str),
    /// A benchmark run did not print a figure it should have.
    BenchOutput {
        run: &'static str,
        key: &'static str,
        log: PathBuf,
    },
    /// A benchmark run ended cleanly but what it did is wrong (a guest
    /// failed, the host received the wrong bytes).
    BenchCheck {
        run: &'static str,
        /// What went wrong, e.g. "d1 did not pass (…)".
        reason: String,
        log: PathBuf,
    },
    /// `cargo xtask xl`: no machine to talk to, or it did not answer.
    Control { reason: String },
    /// A `--config` file (an xl.cfg) is refused: its text, or what it names.
    BadConfig {
        path: PathBuf,
        /// The line the reason is about (from 1), or 0 for the whole file.
        line: usize,
        reason: String,
    },
    /// A file for Dom0 has a name Dom0 cannot be handed (it is named by
    /// its host file name).
    BadFileName { path: PathBuf, reason: String },
    /// Two different host files for Dom0 have one name.
    FileNameClash {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// A file for Dom0 does not exist or is not a file.
    FileMissing { path: PathBuf },
    /// Dom0 is to create a domain from a config it does not hold.
    CreateNotHeld { name: String },
    /// Two configs Dom0 creates at boot name one domain.
    ConfigNameTwice {
        domain: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// Files for Dom0 on a machine with no module (no Dom0) to give them to.
    FilesWithoutDom0,
    /// Direct boot was asked to hand Dom0 files.
    DirectBootFiles,
    /// The machine's memory cannot hold what GRUB loads.
    TooLittleMemoryForGrub {
        mem_mib: u32,
        loaded_mib: u64,
        needed_mib: u64,
    },
    /// `--dom0-mem` with `--module` or `--direct`, where xtask does not
    /// make Dom0's module.
    Dom0MemWithModules,
    /// A machine for the VMX backend asks for what Bochs cannot give.
    NotOnBochs { what: &'static str },
    /// `--accel kvm` where KVM cannot run Pavise's guests.
    KvmUnusable { why: String },
    /// `cargo xtask xtf DIR` where DIR holds no built hvm64 tests.
    XtfTree { dir: PathBuf },
    /// `cargo xtask xen-check` without the reference set-up.
    XenReference { dir: PathBuf },
    /// The reference set-up's `setup.sh` failed.
    XenReferenceSetup { dir: PathBuf },
    /// `cargo xtask xen-check KERNEL` naming no test kernel.
    UnknownKernel { kernel: String },
}

/// xtask's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what xtask was doing when it happened.
    pub fn io(doing: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let doing = doing.into();
        move |source| Self::Io { doing, source }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { doing, source } => write!(f, "failed while {doing}: {source}"),
            Self::Spawn { program, source } => {
                write!(f, "could not start `{program}`: {source}")
            }
            Self::CommandFailed {
                command,
                status,
                stderr,
            } => {
                write!(f, "`{command}` failed ({status})")?;
                if !stderr.trim().is_empty() {
                    write!(f, "; its output:\n{}", stderr.trim_end())?;
                }
                Ok(())
            }
            Self::MissingPrerequisites { tools, packages } => write!(
                f,
                "missing host tools ({}); install them with `sudo apt-get install {}` (xtask does this itself when run as root)",
                tools.join(", "),
                packages.join(" ")
            ),
            Self::StillMissing { tools } => write!(
                f,
                "still missing {} after installing their packages",
                tools.join(", ")
            ),
            Self::NoRustup => write!(
                f,
                "`rustup` is not on PATH, so the x86_64-unknown-none target cannot be checked or installed; install rustup"
            ),
            Self::ArtifactMissing { path } => write!(
                f,
                "{} does not exist; build it with `cargo xtask build`",
                path.display()
            ),
            Self::ModuleMissing { path } => {
                write!(f, "module file {} does not exist", path.display())
            }
            Self::BadModuleArg { arg } => write!(
                f,
                "bad module argument '{arg}': expected a file, optionally followed by a space and the module string"
            ),
            Self::DirectBootTooManyModules { count } => write!(
                f,
                "direct boot can pass only one module (through -initrd) but {count} were given; boot through GRUB instead"
            ),
            Self::DirectBootModuleString { string } => write!(
                f,
                "direct boot passes the module through -initrd, which carries no module string, so '{string}' would be lost; boot through GRUB instead"
            ),
            Self::BadBootString { string, reason } => {
                write!(f, "cannot pass {string:?} through GRUB: {reason}")
            }
            Self::NoPackageName { manifest } => write!(
                f,
                "{} has no `name = \"…\"` in its [package] section",
                manifest.display()
            ),
            Self::NoImage => write!(f, "GRUB boot needs an image; Machine::prepare makes one"),
            Self::NoTimeout => write!(
                f,
                "a captured QEMU run needs a time-out, so that it cannot hang"
            ),
            Self::TestsFailed { phases } => write!(f, "failed: {}", phases.join(", ")),
            Self::BadDomu { arg, reason } => write!(
                f,
                "bad --domu '{arg}': {reason} (expected PATH[,name=NAME,mem=MiB,vcpus=N,ramdisk=PATH,disk=IMG[:ro],vif[=MAC],cmdline=...])"
            ),
            Self::KernelMissing { path } => write!(
                f,
                "kernel {} does not exist or is not a file",
                path.display()
            ),
            Self::NotElf { path } => write!(
                f,
                "{} is not an ELF file; --domu takes a Xen PVH kernel (an ELF with the XEN_ELFNOTE_PHYS32_ENTRY note)",
                path.display()
            ),
            Self::RamdiskMissing { path } => write!(
                f,
                "ramdisk {} does not exist or is not a file",
                path.display()
            ),
            Self::BadMac { arg, reason } => write!(
                f,
                "bad --domu '{arg}': {reason} (or write vif alone for a default MAC)"
            ),
            Self::DuplicateMac { mac, first, second } => write!(
                f,
                "two interfaces have the MAC {mac}: {first} and {second}; give each interface a MAC of its own with vif=MAC (or write vif alone for the default, 00:16:3e:00:DOMID:HANDLE)"
            ),
            Self::NoDefaultMac { domid, handle } => write!(
                f,
                "vif{domid}.{handle} has no default MAC (00:16:3e:00:DOMID:HANDLE fits domain ids and handles up to 255); give it one with vif=MAC"
            ),
            Self::BadHostFwd { arg, reason } => write!(
                f,
                "bad --hostfwd '{arg}': {reason}; write HOSTPORT:GUESTIP:GUESTPORT with a DomU's address on 10.0.2.0/24, e.g. 8080:10.0.2.15:80"
            ),
            Self::HostPortTwice {
                port,
                first,
                second,
            } => write!(
                f,
                "host port {port} is forwarded twice ({first} and {second}); give each --hostfwd a host port of its own"
            ),
            Self::DirectBootRamdisk => write!(
                f,
                "direct boot cannot carry a DomU's ramdisk= (QEMU's -initrd passes one module, without a module string); boot through GRUB instead"
            ),
            Self::LinuxDownload { what, detail } => {
                write!(f, "{what}")?;
                if !detail.is_empty() {
                    write!(f, " ({detail})")?;
                }
                write!(
                    f,
                    ", so Debian's Linux kernel and busybox cannot be downloaded; --kernel PATH (any PVH-capable vmlinux) and --busybox PATH (a static busybox) avoid the download"
                )
            }
            Self::BusyboxMissing { path } => write!(
                f,
                "busybox {} does not exist or is not a file; --busybox takes a statically linked busybox",
                path.display()
            ),
            Self::LinuxPackage { path, reason } => {
                write!(f, "{}: {reason}", path.display())
            }
            Self::BenchRun { run, exit, log } => write!(
                f,
                "the run of {run} ended with {exit} instead of exit status 0; its console is in {}",
                log.display()
            ),
            Self::BenchCompare { path, reason } => write!(
                f,
                "cannot compare against {}: {reason}; give --compare a JSON file an earlier `cargo xtask bench` wrote (target/pavise/bench.json)",
                path.display()
            ),
            Self::Chart(reason) => write!(f, "the benchmark chart could not be drawn: {reason}"),
            Self::BenchMissingRun(run) => write!(
                f,
                "the figures were read without the run of {run} (an xtask bug: please report it)"
            ),
            Self::BenchOutput { run, key, log } => write!(
                f,
                "the run of {run} printed no {key}= figure; its console is in {}",
                log.display()
            ),
            Self::BenchCheck { run, reason, log } => write!(
                f,
                "in the run of {run}, {reason}; its console is in {}",
                log.display()
            ),
            Self::Control { reason } => f.write_str(reason),
            Self::BadConfig { path, line, reason } => {
                write!(f, "bad config {}", path.display())?;
                if *line != 0 {
                    write!(f, ", line {line}")?;
                }
                write!(f, ": {reason}")
            }
            Self::BadFileName { path, reason } => write!(
                f,
                "{} cannot be handed to Dom0, which knows a file by its name: {reason}; rename the file using only letters, digits, '.', '_', '-' and '+'",
                path.display()
            ),
            Self::FileNameClash {
                name,
                first,
                second,
            } => write!(
                f,
                "{} and {} would both be Dom0's file {name} (Dom0 knows a file by its name alone); rename one of them",
                first.display(),
                second.display()
            ),
            Self::FileMissing { path } => write!(
                f,
                "file {} for Dom0 does not exist or is not a file",
                path.display()
            ),
            Self::CreateNotHeld { name } => write!(
                f,
                "Dom0 is to create a domain from {name} at boot but is not given a file of that name; hold the config with Machine::create_config or --config"
            ),
            Self::ConfigNameTwice {
                domain,
                first,
                second,
            } => write!(
                f,
                "configs {} and {} both name the domain {domain:?}; a name is one domain's, so give each config a name = of its own",
                first.display(),
                second.display()
            ),
            Self::FilesWithoutDom0 => write!(
                f,
                "files for Dom0 (--config, --file) need Dom0's module, the first, but the machine has no modules"
            ),
            Self::DirectBootFiles => write!(
                f,
                "direct boot cannot hand files to Dom0 (--config, --file, --disk): QEMU's -initrd passes one module, without a module string; boot through GRUB instead"
            ),
            Self::TooLittleMemoryForGrub {
                mem_mib,
                loaded_mib,
                needed_mib,
            } => write!(
                f,
                "the machine has {mem_mib} MiB, too little for GRUB to load Pavise and its modules ({loaded_mib} MiB) beside itself: give it at least {needed_mib} MiB (--mem {needed_mib})"
            ),
            Self::NotOnBochs { what } => write!(
                f,
                "the VMX backend runs under Bochs, which does not support {what}: leave it out, or use the SVM backend (QEMU)"
            ),
            Self::KvmUnusable { why } => write!(f, "{why}"),
            Self::XenReference { dir } => write!(
                f,
                "{} holds no Xen reference set-up (run-probe.sh, setup.sh): give its directory with --reference",
                dir.display()
            ),
            Self::XenReferenceSetup { dir } => write!(
                f,
                "{}/setup.sh could not fetch or unpack Debian's Xen packages (its lines above say why): check that apt-get reaches Debian's servers",
                dir.display()
            ),
            Self::UnknownKernel { kernel } => write!(
                f,
                "no test kernel is called {kernel:?}: name one under tests/kernels/src/bin"
            ),
            Self::XtfTree { dir } => write!(
                f,
                "{} holds no Xen Test Framework hvm64 tests (tests/*/test-hvm64-*): give the top of an XTF tree built with `make`",
                dir.display()
            ),
            Self::Dom0MemWithModules => write!(
                f,
                "--dom0-mem sizes the Dom0 xtask makes, but with --module or --direct you give Dom0's module yourself: put mem=MiB in its module string instead"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } | Self::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}
