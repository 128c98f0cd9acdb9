//! A QEMU machine to boot Pavise on (or, for reference figures, a guest
//! kernel alone): its settings, the QEMU command line, and running it either
//! with the serial console captured (tests) or on the terminal (`cargo xtask
//! run`), always under a time-out when one is given, and for captured runs
//! optionally until the console shows a given text.

use std::ffi::OsString;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bare_metal::{self, HYPERVISOR};
use crate::bochs;
use crate::configs;
use crate::disk::{self, Disk};
use crate::error::{Error, Result};
use crate::exit::Exit;
use crate::grub;
use crate::net::Uplink;
use crate::prereqs::{self, Need};
use crate::workspace;

/// The option xtask always puts first on the hypervisor command line: it
/// makes the hypervisor power QEMU off through `isa-debug-exit` when it has
/// nothing left to run or hits a fatal error. First, so that the hypervisor
/// has seen it even when a later option is bad.
pub const QEMU_EXIT_OPTION: &str = "qemu_exit";

/// Memory GRUB itself needs beside what it loads (its menu, heap and
/// the image's own copy); at 16 MiB with a 5.7 MB image it may run out.
const GRUB_OVERHEAD_MIB: u64 = 16;

/// The time-out [`Machine::default`] gives a captured run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// How long QEMU gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// How often a running QEMU is checked for having exited.
const POLL: Duration = Duration::from_millis(10);

/// Only one QEMU runs at a time in this process (the machines this runs on
/// have two cores, and TCG is CPU-bound).
static QEMU_LOCK: Mutex<()> = Mutex::new(());

/// How QEMU gets the hypervisor into memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot {
    /// BIOS → GRUB (from an ISO) → multiboot2: what users boot.
    Grub,
    /// QEMU `-kernel` through the ELF's Xen PVH note: faster, at most one
    /// module (through `-initrd`, without a module string).
    Direct,
    /// QEMU `-kernel` of a PVH guest kernel with no hypervisor under it
    /// (see [`Machine::bare`]): the kernel gets [`Machine::cmdline`]
    /// without [`QEMU_EXIT_OPTION`] in front; at most one module, as for
    /// [`Boot::Direct`].
    Bare,
}

/// The environment variable whose words are added to every QEMU command
/// line.
pub const QEMU_EXTRA_ENV: &str = "PAVISE_QEMU_EXTRA";

/// The environment variable that puts every QEMU machine on KVM with the
/// CPU model it names (`cargo xtask test --accel kvm` sets it once the
/// probe in [`crate::kvm`] found nested virtualization).
pub const KVM_CPU_ENV: &str = "PAVISE_KVM_CPU";

/// The environment variable that keeps QEMU's multi-threaded TCG (one
/// host thread per vCPU) on machines with several CPUs, to hunt races
/// with true parallelism at the price of QEMU's own world-switch fault
/// ([`SINGLE_THREAD_TCG`]).
pub const MTTCG_ENV: &str = "PAVISE_MTTCG";

/// The environment variable choosing every machine's default backend
/// (`svm` or `vmx`; `cargo xtask test --backend vmx` sets it).
pub const BACKEND_ENV: &str = "PAVISE_BACKEND";

/// The hardware extension the hypervisor runs guests on, and so the
/// emulator: QEMU (TCG) emulates AMD-V, Bochs emulates Intel VT-x.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// AMD-V with nested paging, under QEMU.
    #[default]
    Svm,
    /// Intel VT-x with EPT, under Bochs (`corei7_skylake_x`).
    Vmx,
}

impl Backend {
    /// The backend [`BACKEND_ENV`] names (SVM when unset or unknown).
    pub fn from_env() -> Self {
        match std::env::var(BACKEND_ENV).as_deref() {
            Ok("vmx") => Self::Vmx,
            _ => Self::Svm,
        }
    }

    /// The value [`BACKEND_ENV`] takes for it.
    pub fn env_value(self) -> &'static str {
        match self {
            Self::Svm => "svm",
            Self::Vmx => "vmx",
        }
    }

    /// The emulator's name, for messages.
    pub fn emulator(self) -> &'static str {
        match self {
            Self::Svm => "QEMU",
            Self::Vmx => "Bochs",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "svm" => Ok(Self::Svm),
            "vmx" => Ok(Self::Vmx),
            other => Err(format!(
                "unknown backend '{other}': svm (AMD-V, under QEMU) or vmx (Intel VT-x, under Bochs)"
            )),
        }
    }
}

/// When a captured run types its console input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeWhen {
    /// This long after QEMU started.
    After(Duration),
    /// As soon as the console shows this text (then after a short pause,
    /// so the guest that printed it is reading).
    Seen(String),
}

/// A machine to boot: its settings and what to boot on it.
#[derive(Clone, Debug)]
pub struct Machine {
    /// Number of CPUs (`-smp`).
    pub smp: u32,
    /// Memory in MiB (`-m`).
    pub mem_mib: u32,
    pub boot: Boot,
    /// Hypervisor options; xtask adds [`QEMU_EXIT_OPTION`] in front.
    pub cmdline: String,
    /// Modules to load: a host file and the module string GRUB passes with
    /// it. The first is Dom0's; [`Machine::boot_modules`] adds
    /// [`Machine::dom0_files`] and [`Machine::create_at_boot`].
    pub modules: Vec<(PathBuf, String)>,
    /// Files handed to Dom0 (its name for each, and the host file): GRUB
    /// modules `file NAME` after all of [`Machine::modules`] (see
    /// [`crate::configs`]; GRUB boot only). Added with
    /// [`Machine::hold_file`] and [`Machine::create_config`].
    pub dom0_files: Vec<(String, PathBuf)>,
    /// Configs among [`Machine::dom0_files`] that Dom0 creates a domain
    /// from once it is up, in this order: a word `pavise.create=NAME` each
    /// on Dom0's command line.
    pub create_at_boot: Vec<String>,
    /// Disk images held for Dom0's toolstack, by file name (see
    /// [`crate::configs`]): attached after [`Machine::disks`], each named
    /// to Dom0 with a `pavise.disk=NAME:SLOT` word. Added with
    /// [`Machine::hold_disk`] and by the configs Dom0 holds.
    pub dom0_disks: Vec<(String, Disk)>,
    /// Disk images attached as virtio-blk PCI devices, the k-th in slot
    /// [`disk::pci_slot`]`(k)` of bus 0, for Dom0 to serve to the DomUs
    /// (see [`crate::domains::disks`], whose order Dom0's `pavise.vbd=`
    /// words assume).
    pub disks: Vec<Disk>,
    /// Give the machine QEMU's Intel IOMMU (`-device intel-iommu`), with
    /// which the hypervisor confines Dom0's devices to Dom0's memory. Off
    /// by default: with it, about 2% of boots here end in an undiagnosed
    /// host triple fault (README, "DMA").
    pub iommu: bool,
    /// The uplink: a QEMU user-mode network (10.0.2.0/24) on a virtio-net
    /// NIC in PCI slot [`crate::net::UPLINK_SLOT`] for Dom0 to drive, with
    /// its port forwards from the host (see [`crate::net`];
    /// [`crate::domains::dom0_module_with`] tells Dom0 where it is). Off
    /// (`None`) by default.
    pub net: Option<Uplink>,
    /// QEMU's gdbstub on the host's loopback (`-gdb tcp:127.0.0.1:PORT`,
    /// with [`Gdb::wait`] also `-S`). Off (`None`) by default.
    pub gdb: Option<Gdb>,
    /// The control channel's Unix socket (`cargo xtask xl` connects to
    /// it): a virtio console in PCI slot [`crate::xl::CONTROL_SLOT`].
    pub control: Option<PathBuf>,
    /// Extra QEMU arguments, appended last.
    pub extra_qemu_args: Vec<String>,
    /// When to stop QEMU; `None` lets it run (not allowed for captured runs).
    pub timeout: Option<Duration>,
    /// The ELF QEMU boots: the hypervisor, or with [`Boot::Bare`] the guest
    /// kernel itself.
    pub hypervisor: PathBuf,
    /// Bytes typed on the serial console, step by step: each once the
    /// machine has run a while or once the console shows a text, after the
    /// step before it (captured runs only; stdin is closed otherwise).
    pub console_input: Vec<(TypeWhen, Vec<u8>)>,
    /// Stop QEMU as soon as the console shows this text (captured runs
    /// only): for machines that never end by themselves, such as one
    /// running a guest that spins for ever. The run then ends with
    /// [`Exit::Seen`].
    pub stop_at: Option<String>,
    /// Texts whose first appearance on the console is timed (captured runs
    /// only): `RunOutcome::marks` says when, from QEMU's start.
    pub marks: Vec<String>,
    /// SVM under QEMU, or VMX under Bochs (GRUB boot; no disks, uplink,
    /// control channel, gdbstub, IOMMU, console input or QEMU arguments
    /// there). Default: [`Backend::from_env`].
    pub backend: Backend,
    /// Run QEMU under KVM with this CPU model instead of TCG with `max`
    /// (not with `-icount`, which needs TCG). Default: [`KVM_CPU_ENV`].
    pub kvm_cpu: Option<String>,
}

/// The port QEMU's gdbstub listens on unless told otherwise (gdb's usual).
pub const DEFAULT_GDB_PORT: u16 = 1234;

/// QEMU's gdbstub: gdb attaches to it over TCP on the host's loopback and
/// debugs the machine's CPUs (under TCG, whatever each is running: the
/// hypervisor, or a guest while the CPU is in guest mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gdb {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// Start with the CPUs stopped (`-S`) until gdb continues them.
    pub wait: bool,
}

impl Gdb {
    /// The address gdb's `target remote` takes, e.g. `127.0.0.1:1234`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// QEMU's arguments: `-gdb tcp:127.0.0.1:PORT`, then `-S` to wait.
    pub fn qemu_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["-gdb".into(), format!("tcp:{}", self.address()).into()];
        if self.wait {
            args.push("-S".into());
        }
        args
    }

    /// Checks that the port is free by binding it (and letting it go), so
    /// that a port in use is one sentence here instead of QEMU's failure.
    pub fn check_port(&self) -> Result<()> {
        TcpListener::bind((Ipv4Addr::LOCALHOST, self.port))
            .map(drop)
            .map_err(Error::io(format!(
                "reserving {} for QEMU's gdbstub (pick a free port with --gdb-port PORT)",
                self.address()
            )))
    }
}

/// QEMU's TCG with one thread for all vCPUs instead of one each (MTTCG),
/// which every TCG machine with more than one CPU gets unless
/// [`MTTCG_ENV`] is set or its own arguments choose TCG's settings.
/// QEMU's multi-threaded TCG with SVM now and then takes a fault at the
/// first instruction after a world switch: the host at the instruction
/// after VMRUN, its fetch faulting through page tables that a QMP dump of
/// the stopped machine shows intact, or a guest at the instruction after
/// a hypercall (its IDT unreadable through tables its crash line shows
/// intact). Seen in QEMU 7.2 and 10.0 (bookworm-backports), after
/// hypercall exits and interrupt exits alike, never with one CPU (0 in 80)
/// or one thread (0 in 64): about 1 run in 15 of the network, disk and
/// intruder scenarios, and a CI failure each time a new test met it.
pub const SINGLE_THREAD_TCG: [&str; 2] = ["-accel", "tcg,thread=single"];

impl Default for Machine {
    /// 1 CPU, 512 MiB, GRUB, no options, modules, files for Dom0, disks or
    /// uplink,
    /// [`DEFAULT_TIMEOUT`], the release hypervisor build.
    fn default() -> Self {
        Self {
            smp: 1,
            mem_mib: 512,
            boot: Boot::Grub,
            cmdline: String::new(),
            modules: Vec::new(),
            dom0_files: Vec::new(),
            create_at_boot: Vec::new(),
            dom0_disks: Vec::new(),
            disks: Vec::new(),
            iommu: false,
            net: None,
            gdb: None,
            control: None,
            extra_qemu_args: Vec::new(),
            timeout: Some(DEFAULT_TIMEOUT),
            hypervisor: bare_metal::artifact(HYPERVISOR),
            console_input: Vec::new(),
            stop_at: None,
            marks: Vec::new(),
            backend: Backend::from_env(),
            kvm_cpu: std::env::var(KVM_CPU_ENV)
                .ok()
                .filter(|cpu| !cpu.is_empty()),
        }
    }
}

/// The end of a captured run.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    pub exit: Exit,
    /// Everything the machine wrote to its serial console.
    pub console: String,
    /// QEMU's own messages (warnings, errors).
    pub qemu_stderr: String,
    /// Wall time from starting QEMU to its end.
    pub wall: Duration,
    /// For each of `Machine::marks`: when it first appeared, if it did.
    pub marks: Vec<Mark>,
}

/// One of `Machine::marks` in a captured run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub text: String,
    /// When the text first appeared, from QEMU's start (`None`: never).
    pub at: Option<Duration>,
    /// QEMU's CPU time (user and system, all its threads) by then.
    pub qemu_cpu: Option<Duration>,
}

impl RunOutcome {
    /// The mark for `text`, if it appeared.
    pub fn mark(&self, text: &str) -> Option<&Mark> {
        self.marks.iter().find(|m| m.text == text && m.at.is_some())
    }
}

/// The CPU time process `pid` has used so far, all threads, from
/// `/proc/<pid>/stat` (utime and stime, fields 14 and 15).
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// The end of an interactive run (the console went to the terminal).
#[derive(Clone, Copy, Debug)]
pub struct Ended {
    pub exit: Exit,
    pub wall: Duration,
}

impl Machine {
    /// A machine that boots the PVH guest kernel `kernel` alone with QEMU
    /// `-kernel` (no hypervisor): the same loop measured bare, or a kernel
    /// checked on its own. Otherwise [`Machine::default`].
    pub fn bare(kernel: impl Into<PathBuf>) -> Self {
        Self {
            boot: Boot::Bare,
            hypervisor: kernel.into(),
            ..Self::default()
        }
    }

    /// The command line of the kernel QEMU boots: the hypervisor's (see
    /// [`Machine::hypervisor_cmdline`]), or with [`Boot::Bare`] the guest's,
    /// its words joined by single spaces.
    pub fn kernel_cmdline(&self) -> String {
        match self.boot {
            Boot::Grub | Boot::Direct => self.hypervisor_cmdline(),
            Boot::Bare => self
                .cmdline
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// The complete hypervisor command line: [`QEMU_EXIT_OPTION`] then the
    /// user's options (whitespace-separated words, joined by single spaces).
    pub fn hypervisor_cmdline(&self) -> String {
        std::iter::once(QEMU_EXIT_OPTION)
            .chain(self.cmdline.split_whitespace())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Hands the host file `path` to Dom0, named by its file name (for an
    /// `xl create NAME` typed later, or a kernel a config names); the same
    /// file twice is held once, two files of one name are refused. Whether
    /// it exists is checked when the machine is prepared.
    pub fn hold_file(&mut self, path: impl AsRef<Path>) -> Result<()> {
        configs::hold_file(&mut self.dom0_files, path.as_ref())
    }

    /// Reads the xl.cfg `path` as Dom0 will (a bad one is refused now, with
    /// its file and line), holds it and the kernel and ramdisk it names
    /// (by their file names; see [`Machine::hold_file`]) and has Dom0
    /// create the domain once it is up, after those named before. Its
    /// kernel and ramdisk are checked when the machine is prepared, so they
    /// may be built after this. Unchanged on an error.
    pub fn create_config(&mut self, path: impl AsRef<Path>) -> Result<()> {
        configs::create_config(
            &mut self.dom0_files,
            Some(&mut self.create_at_boot),
            &mut self.dom0_disks,
            path.as_ref(),
        )
    }

    /// Holds the xl.cfg `path` as [`Machine::create_config`] does (its
    /// kernel, ramdisk and disks too) without creating it: for an `xl
    /// create` later.
    pub fn hold_config(&mut self, path: impl AsRef<Path>) -> Result<()> {
        configs::create_config(
            &mut self.dom0_files,
            None,
            &mut self.dom0_disks,
            path.as_ref(),
        )
    }

    /// Holds the disk image `path` for Dom0's toolstack, named by its file
    /// name, for configs created later (`disk = ["NAME,…"]` names it);
    /// `readonly` opens it read-only.
    pub fn hold_disk(&mut self, path: impl AsRef<Path>, readonly: bool) -> Result<()> {
        configs::hold_disk(&mut self.dom0_disks, path.as_ref(), readonly)
    }

    /// Every disk the machine attaches, in slot order: the boot-time
    /// DomUs', then those held for Dom0's toolstack.
    pub fn all_disks(&self) -> Vec<Disk> {
        self.disks
            .iter()
            .cloned()
            .chain(self.dom0_disks.iter().map(|(_, d)| d.clone()))
            .collect()
    }

    /// Dom0's `pavise.disk=` words for [`Machine::dom0_disks`].
    fn disk_words(&self) -> Result<Vec<String>> {
        self.dom0_disks
            .iter()
            .enumerate()
            .map(|(j, (name, _))| {
                let count = self.disks.len() + self.dom0_disks.len();
                disk::pci_slot(self.disks.len() + j)
                    .map(|slot| configs::disk_word(name, slot))
                    .ok_or_else(|| disk::DiskError::TooMany { count }.into())
            })
            .collect()
    }

    /// The modules the machine boots: [`Machine::modules`], Dom0's (the
    /// first) with a `pavise.create=NAME` word on its command line for
    /// each of [`Machine::create_at_boot`], then a `file NAME` module for
    /// each of [`Machine::dom0_files`] (see [`configs::boot_modules`]).
    pub fn boot_modules(&self) -> Result<Vec<(PathBuf, String)>> {
        configs::boot_modules(
            &self.modules,
            &self.dom0_files,
            &self.create_at_boot,
            &self.disk_words()?,
        )
    }

    /// Direct boot cannot hand Dom0 files (they are modules of their own,
    /// with strings) or tell it what to create (Dom0's module has no
    /// string there).
    fn check_direct_files(&self) -> Result<()> {
        if self.dom0_files.is_empty()
            && self.create_at_boot.is_empty()
            && self.dom0_disks.is_empty()
        {
            Ok(())
        } else {
            Err(Error::DirectBootFiles)
        }
    }

    /// A short description, e.g. `4 CPUs, 128 MiB, GRUB`, with the
    /// uplink when there is one (`…, GRUB, uplink 10.0.2.0/24, 127.0.0.1:8080
    /// → 10.0.2.16:80`).
    pub fn describe(&self) -> String {
        let cpus = if self.smp == 1 { "CPU" } else { "CPUs" };
        let boot = match self.boot {
            Boot::Grub => "GRUB",
            Boot::Direct => "direct boot",
            Boot::Bare => "bare kernel, no hypervisor",
        };
        let mut s = format!("{} {cpus}, {} MiB, {boot}", self.smp, self.mem_mib);
        if self.backend == Backend::Vmx {
            s.push_str(", VT-x under Bochs");
        }
        if let Some(net) = &self.net {
            s.push_str(", ");
            s.push_str(&net.describe());
        }
        s
    }

    /// Checks the settings, host tools and files, and (for GRUB boot) makes
    /// the image in a staging directory of its own.
    pub fn prepare(&self) -> Result<Prepared> {
        self.check_inputs()?;
        self.check_backend()?;
        if !self.hypervisor.is_file() {
            return Err(Error::ArtifactMissing {
                path: self.hypervisor.clone(),
            });
        }
        prereqs::ensure(self.needs())?;
        let cmdline = self.hypervisor_cmdline();
        // Bochs boots only from a disk image: direct boot goes through GRUB.
        let boot = match (self.backend, self.boot) {
            (Backend::Vmx, Boot::Direct) => Boot::Grub,
            (_, boot) => boot,
        };
        let (staging, iso) = match boot {
            Boot::Grub => {
                let staging = Staging::create()?;
                let iso = staging.path().join("pavise.iso");
                grub::make_image(
                    &staging.path().join("iso"),
                    &iso,
                    &self.hypervisor,
                    &cmdline,
                    &self.boot_modules()?,
                )?;
                (Some(staging), Some(iso))
            }
            Boot::Direct | Boot::Bare => (None, None),
        };
        let (program, args) = match (self.backend, &staging, &iso) {
            (Backend::Vmx, Some(staging), Some(iso)) => {
                let rc = staging.path().join("bochsrc");
                let log = staging.path().join("bochs.log");
                std::fs::write(&rc, bochs::config(self.smp, self.mem_mib, iso, &log))
                    .map_err(Error::io("writing the Bochs configuration"))?;
                (
                    bochs::PROGRAM,
                    vec!["-q".into(), "-f".into(), rc.into_os_string()],
                )
            }
            _ => ("qemu-system-x86_64", self.qemu_args(iso.as_deref())?),
        };
        Ok(Prepared {
            program,
            args,
            timeout: self.timeout,
            console_input: self.console_input.clone(),
            stop_at: self.stop_at.clone(),
            marks: self.marks.clone(),
            _staging: staging,
        })
    }

    /// The host tools booting this machine takes.
    pub fn needs(&self) -> &'static [Need] {
        match (self.backend, self.boot) {
            (Backend::Vmx, _) => &[Need::Bochs, Need::GrubImage],
            (Backend::Svm, Boot::Grub) => &[Need::Qemu, Need::GrubImage],
            (Backend::Svm, Boot::Direct | Boot::Bare) => &[Need::Qemu],
        }
    }

    /// What Bochs cannot give a machine is refused in one sentence.
    fn check_backend(&self) -> Result<()> {
        if self.backend != Backend::Vmx {
            return Ok(());
        }
        let lacking = [
            (
                self.boot == Boot::Bare,
                "booting a bare kernel (only Pavise through GRUB)",
            ),
            (!self.all_disks().is_empty(), "virtio disks"),
            (self.net.is_some(), "the virtio-net uplink"),
            (self.control.is_some(), "the control channel"),
            (self.gdb.is_some(), "QEMU's gdbstub"),
            (self.iommu, "the Intel IOMMU"),
            (!self.console_input.is_empty(), "console input"),
            (!self.extra_qemu_args.is_empty(), "QEMU arguments"),
        ];
        match lacking.iter().find(|(lacks, _)| *lacks) {
            Some((_, what)) => Err(Error::NotOnBochs { what }),
            None => Ok(()),
        }
    }

    /// Checks what the user chose, before anything is built: the modules
    /// exist and the boot path can carry them and the command line, Dom0's
    /// files exist and the configs it creates domains from are sound
    /// ([`configs::check_held`]), the disks are usable images
    /// ([`disk::check_all`]) and the uplink's port forwards can reach DomUs
    /// ([`Uplink::check`]).
    pub fn check_inputs(&self) -> Result<()> {
        match self.boot {
            Boot::Direct | Boot::Bare => {
                self.check_direct_files()?;
                check_direct_modules(&self.modules)?;
            }
            Boot::Grub => {
                grub::quote(&self.hypervisor_cmdline())?;
                for (_, string) in &self.boot_modules()? {
                    grub::quote(string)?;
                }
            }
        }
        for (path, _) in &self.modules {
            if !path.is_file() {
                return Err(Error::ModuleMissing { path: path.clone() });
            }
        }
        if self.boot == Boot::Grub {
            self.check_grub_memory()?;
        }
        configs::check_held(&self.dom0_files, &self.create_at_boot, None)?;
        disk::check_all(&self.all_disks())?;
        if let Some(net) = &self.net {
            net.check()?;
        }
        Ok(())
    }

    /// GRUB loads the hypervisor and every module into the machine's
    /// memory before Pavise runs; with too little it stops at its menu and
    /// QEMU would sit there until the time-out. Refused here instead.
    fn check_grub_memory(&self) -> Result<()> {
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let loaded: u64 = std::iter::once(self.hypervisor.as_path())
            .chain(self.modules.iter().map(|(p, _)| p.as_path()))
            .chain(self.dom0_files.iter().map(|(_, p)| p.as_path()))
            .map(size)
            .sum();
        let needed = loaded.div_ceil(1 << 20) + GRUB_OVERHEAD_MIB;
        if u64::from(self.mem_mib) < needed {
            return Err(Error::TooLittleMemoryForGrub {
                mem_mib: self.mem_mib,
                loaded_mib: loaded.div_ceil(1 << 20),
                needed_mib: needed,
            });
        }
        Ok(())
    }

    /// QEMU's arguments; `iso` is the GRUB image (GRUB boot only).
    pub fn qemu_args(&self, iso: Option<&Path>) -> Result<Vec<OsString>> {
        // KVM where asked, unless the run chose TCG's own settings
        // (-icount, a single TCG thread).
        let tcg_only = self
            .extra_qemu_args
            .iter()
            .any(|a| a == "-icount" || a.starts_with("tcg"));
        let kvm = self.kvm_cpu.as_deref().filter(|_| !tcg_only);
        let mut args: Vec<OsString> = [
            "-machine",
            if kvm.is_some() {
                "q35,accel=kvm"
            } else {
                "q35"
            },
            "-cpu",
            kvm.unwrap_or("max"),
            "-m",
            &format!("{}M", self.mem_mib),
            "-smp",
            &self.smp.to_string(),
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        // The IOMMU the hypervisor confines Dom0's devices with (a bare
        // kernel has no use for one).
        if self.iommu && self.boot != Boot::Bare {
            args.extend(["-device".into(), "intel-iommu".into()]);
        }
        match (self.boot, iso) {
            (Boot::Grub, Some(iso)) => {
                args.extend(["-boot".into(), "d".into(), "-cdrom".into()]);
                args.push(iso.into());
            }
            (Boot::Grub, None) => return Err(Error::NoImage),
            (Boot::Direct | Boot::Bare, _) => {
                self.check_direct_files()?;
                check_direct_modules(&self.modules)?;
                args.push("-kernel".into());
                args.push(self.hypervisor.clone().into());
                let cmdline = self.kernel_cmdline();
                if !cmdline.is_empty() {
                    args.push("-append".into());
                    args.push(cmdline.into());
                }
                if let Some((path, _)) = self.modules.first() {
                    args.push("-initrd".into());
                    args.push(path.clone().into());
                }
            }
        }
        let iommu = self.iommu && self.boot != Boot::Bare;
        args.extend(disk::qemu_args(&self.all_disks(), iommu)?);
        if let Some(net) = &self.net {
            args.extend(net.qemu_args(iommu));
        }
        if let Some(gdb) = &self.gdb {
            args.extend(gdb.qemu_args());
        }
        if let Some(socket) = &self.control {
            args.extend(crate::xl::qemu_args(socket, iommu));
        }
        if kvm.is_none() && !tcg_only && self.smp > 1 && std::env::var_os(MTTCG_ENV).is_none() {
            args.extend(SINGLE_THREAD_TCG.map(OsString::from));
        }
        args.extend(self.extra_qemu_args.iter().map(OsString::from));
        Ok(args)
    }

    /// Prepares and boots the machine, capturing its serial console; QEMU is
    /// stopped when the time-out (required here) runs out.
    pub fn run_captured(&self) -> Result<RunOutcome> {
        if self.timeout.is_none() {
            return Err(Error::NoTimeout);
        }
        self.prepare()?.run_captured()
    }

    /// Prepares and boots the machine with its serial console on the
    /// terminal.
    pub fn run_interactive(&self) -> Result<Ended> {
        self.prepare()?.run_interactive()
    }
}

/// Direct boot can carry one module, through `-initrd`, without a string.
fn check_direct_modules(modules: &[(PathBuf, String)]) -> Result<()> {
    match modules {
        [] => Ok(()),
        [(_, string)] if string.is_empty() => Ok(()),
        [(_, string)] => Err(Error::DirectBootModuleString {
            string: string.clone(),
        }),
        more => Err(Error::DirectBootTooManyModules { count: more.len() }),
    }
}

/// A machine ready to start: QEMU's arguments and the image they name.
#[derive(Debug)]
pub struct Prepared {
    /// QEMU, or Bochs for the VMX backend.
    program: &'static str,
    args: Vec<OsString>,
    timeout: Option<Duration>,
    console_input: Vec<(TypeWhen, Vec<u8>)>,
    stop_at: Option<String>,
    marks: Vec<String>,
    /// Removed (with the image) when the run is over.
    _staging: Option<Staging>,
}

impl Prepared {
    /// QEMU's arguments.
    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// Runs QEMU with the console captured and stdin closed.
    pub fn run_captured(self) -> Result<RunOutcome> {
        let _one_qemu = QEMU_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut command = self.command();
        let bochs = self.program == bochs::PROGRAM;
        let stdin = if self.console_input.is_empty() && !bochs {
            Stdio::null()
        } else {
            Stdio::piped()
        };
        command
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = spawn(&mut command, self.program)?;
        let mut watches = Vec::new();
        if bochs && let Some(mut pipe) = child.stdin.take() {
            use std::io::Write;
            // Its debugger's commands (see `bochs`): read one at a time,
            // at its prompts.
            let _ = pipe.write_all(bochs::DEBUGGER_SCRIPT);
        }
        if let Some(mut pipe) = child.stdin.take() {
            let steps: Vec<(TypeWhen, Vec<u8>, Arc<AtomicBool>)> = self
                .console_input
                .iter()
                .map(|(when, bytes)| {
                    let seen = Arc::new(AtomicBool::new(false));
                    if let TypeWhen::Seen(text) = when {
                        watches.push((text.clone(), Arc::clone(&seen)));
                    }
                    (when.clone(), bytes.clone(), seen)
                })
                .collect();
            // Typed after a while or a prompt (so it reaches the running
            // system, not the firmware); the pipe stays open until QEMU ends.
            std::thread::spawn(move || {
                use std::io::Write;
                for (when, bytes, seen) in steps {
                    match when {
                        TypeWhen::After(delay) => {
                            std::thread::sleep(delay.saturating_sub(start.elapsed()))
                        }
                        TypeWhen::Seen(_) => {
                            while !seen.load(Ordering::Acquire) {
                                std::thread::sleep(POLL);
                            }
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                    let _ = pipe.write_all(&bytes);
                    let _ = pipe.flush();
                }
                std::thread::sleep(Duration::from_secs(3600));
            });
        }
        let seen = Arc::new(AtomicBool::new(false));
        if let Some(text) = self.stop_at.clone() {
            watches.push((text, Arc::clone(&seen)));
        }
        let marks: Vec<(String, Arc<AtomicBool>)> = self
            .marks
            .iter()
            .map(|m| (m.clone(), Arc::new(AtomicBool::new(false))))
            .collect();
        let first_mark = watches.len();
        watches.extend(marks.iter().cloned());
        let pid = child.id();
        let console = child
            .stdout
            .take()
            .map(|pipe| read_watching(pipe, watches, start, Some(pid)));
        let stderr = child
            .stderr
            .take()
            .map(|pipe| read_watching(pipe, Vec::new(), start, None));
        let exit = wait(&mut child, self.timeout, start, Some(&seen));
        let wall = start.elapsed();
        let (console, times) = joined(console);
        let qemu_stderr = joined(stderr).0;
        let exit = match exit {
            Ok(Exit::Qemu(code)) if bochs => {
                Ok(bochs::exit_from(&format!("{console}\n{qemu_stderr}"))
                    .unwrap_or(Exit::Qemu(code)))
            }
            other => other,
        };
        let marks = marks
            .into_iter()
            .enumerate()
            .map(|(i, (text, _))| {
                let (at, qemu_cpu) = times.get(first_mark + i).copied().unwrap_or_default();
                Mark { text, at, qemu_cpu }
            })
            .collect();
        Ok(RunOutcome {
            exit: exit?,
            console,
            qemu_stderr,
            wall,
            marks,
        })
    }

    /// Runs QEMU on the terminal: its console streams to stdout as it comes
    /// and the terminal's input goes to the serial port. Ctrl-C stops QEMU
    /// (which gets the signal) while xtask stays to clean up and report.
    pub fn run_interactive(self) -> Result<Ended> {
        let _one_qemu = QEMU_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut command = self.command();
        let _sigint = SigintDeferred::install();
        let start = Instant::now();
        if self.program == bochs::PROGRAM {
            // Bochs reads its debugger's commands on stdin and tells the
            // status only on its console: the console is read here and
            // passed on to the terminal as it comes.
            command.stdin(Stdio::piped()).stdout(Stdio::piped());
            let mut child = spawn(&mut command, self.program)?;
            if let Some(mut pipe) = child.stdin.take() {
                use std::io::Write;
                let _ = pipe.write_all(bochs::DEBUGGER_SCRIPT);
            }
            let console = child
                .stdout
                .take()
                .map(|pipe| read_watching(Tee(pipe), Vec::new(), start, None));
            let exit = wait(&mut child, self.timeout, start, None)?;
            let (console, _) = joined(console);
            let exit = match exit {
                Exit::Qemu(_) => bochs::exit_from(&console).unwrap_or(exit),
                other => other,
            };
            return Ok(Ended {
                exit,
                wall: start.elapsed(),
            });
        }
        let mut child = spawn(&mut command, self.program)?;
        let exit = wait(&mut child, self.timeout, start, None)?;
        Ok(Ended {
            exit,
            wall: start.elapsed(),
        })
    }

    fn command(&self) -> Command {
        let mut command = Command::new(self.program);
        command.args(&self.args).current_dir(workspace::root());
        // For chasing a rare failure in any run, tests included, e.g.
        // PAVISE_QEMU_EXTRA="-d cpu_reset,guest_errors -D /tmp/q-%d.log".
        if self.program != bochs::PROGRAM
            && let Ok(extra) = std::env::var(QEMU_EXTRA_ENV)
        {
            command.args(extra.split_whitespace());
        }
        command
    }
}

fn spawn(command: &mut Command, program: &str) -> Result<Child> {
    command.spawn().map_err(|source| Error::Spawn {
        program: program.into(),
        source,
    })
}

/// Reads a pipe to its end on a thread of its own; for each watched text,
/// raises its flag as soon as that text has been read, and notes when
/// (from `start`).
/// Reads `pipe` to its end, noting when each watched text first appears
/// (and, given the `pid` of the process writing, its CPU time then).
fn read_watching(
    mut pipe: impl Read + Send + 'static,
    watches: Vec<(String, Arc<AtomicBool>)>,
    start: Instant,
    pid: Option<u32>,
) -> JoinHandle<Captured> {
    std::thread::spawn(move || {
        let mut times = vec![(None, None); watches.len()];
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            // A read error ends the capture; what came before is kept.
            let n = match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let searched = bytes.len();
            bytes.extend_from_slice(&chunk[..n]);
            for ((text, seen), (at, cpu)) in watches.iter().zip(times.iter_mut()) {
                if at.is_none() && ends_text(&bytes, searched, text.as_bytes()) {
                    *at = Some(start.elapsed());
                    *cpu = pid.and_then(process_cpu_time);
                    seen.store(true, Ordering::Release);
                }
            }
        }
        (bytes, times)
    })
}

/// A reader that passes on to this process's stdout what it reads.
struct Tee<R>(R);

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::Write;
        let n = self.0.read(buf)?;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&buf[..n]);
        let _ = out.flush();
        Ok(n)
    }
}

/// Whether `text` occurs in `bytes` somewhere not wholly inside the first
/// `searched` bytes (which were looked at before).
fn ends_text(bytes: &[u8], searched: usize, text: &[u8]) -> bool {
    if text.is_empty() {
        return true;
    }
    let from = searched.saturating_sub(text.len() - 1);
    bytes[from..].windows(text.len()).any(|w| w == text)
}

/// For a watched text: when it first appeared, and the writer's CPU time
/// then.
type Seen = (Option<Duration>, Option<Duration>);

/// What a pipe reader hands back: the bytes, and each watched text's
/// [`Seen`].
type Captured = (Vec<u8>, Vec<Seen>);

fn joined(reader: Option<JoinHandle<Captured>>) -> (String, Vec<Seen>) {
    let (bytes, times) = reader.and_then(|r| r.join().ok()).unwrap_or_default();
    (String::from_utf8_lossy(&bytes).into_owned(), times)
}

/// Waits for QEMU to exit, stopping it when `timeout` (from `start`) runs
/// out or when `seen` is raised (the awaited console text came). QEMU never
/// outlives this call.
fn wait(
    child: &mut Child,
    timeout: Option<Duration>,
    start: Instant,
    seen: Option<&AtomicBool>,
) -> Result<Exit> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Exit::from_status(status)),
            Ok(None) => {}
            Err(e) => {
                stop(child);
                return Err(Error::io("waiting for QEMU")(e));
            }
        }
        if seen.is_some_and(|seen| seen.load(Ordering::Acquire)) {
            stop(child);
            return Ok(Exit::Seen);
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            stop(child);
            return Ok(Exit::TimedOut);
        }
        std::thread::sleep(POLL);
    }
}

/// Stops QEMU: SIGTERM first (QEMU then restores the terminal), SIGKILL if
/// it has not gone after [`STOP_GRACE`].
fn stop(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our
        // own child, which has not been reaped yet, so it is still ours.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let asked = Instant::now();
        while asked.elapsed() < STOP_GRACE {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// While alive, SIGINT (Ctrl-C) does not end xtask: QEMU, in the same
/// process group, gets it and quits, and xtask cleans up after it. A handler
/// (not SIG_IGN) is used because children reset handlers on exec, so QEMU
/// still gets the default action.
struct SigintDeferred {
    previous: libc::sighandler_t,
}

extern "C" fn ignore_signal(_: libc::c_int) {}

impl SigintDeferred {
    fn install() -> Self {
        let handler = ignore_signal as extern "C" fn(libc::c_int);
        // SAFETY: the handler does nothing, so it is async-signal-safe.
        let previous = unsafe { libc::signal(libc::SIGINT, handler as libc::sighandler_t) };
        Self { previous }
    }
}

impl Drop for SigintDeferred {
    fn drop(&mut self) {
        // SAFETY: restores the disposition that was there before.
        unsafe {
            libc::signal(libc::SIGINT, self.previous);
        }
    }
}

/// A directory of one run's own under `target/pavise/runs/`, removed when
/// dropped, so that two runs never share an image.
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
}

impl Staging {
    /// Creates a fresh directory no other run (in this or another process)
    /// is using.
    pub fn create() -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let runs = workspace::pavise_dir().join("runs");
        std::fs::create_dir_all(&runs)
            .map_err(Error::io(format!("creating {}", runs.display())))?;
        remove_abandoned(&runs);
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = runs.join(format!("{}-{n}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path }),
                // Left over from an earlier process with the same id.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(format!("creating {}", path.display()))(e)),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes staging directories whose process is gone (it was killed before
/// it could clean up). Best effort: what cannot be removed now is tried
/// again next time.
fn remove_abandoned(runs: &Path) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, _)) = name.to_str().and_then(|n| n.split_once('-')) else {
            continue;
        };
        let is_pid = !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit());
        if is_pid && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn qemu_exit_comes_first() {
        let mut machine = Machine::default();
        assert_eq!(machine.hypervisor_cmdline(), "qemu_exit");
        machine.cmdline = "  frobnicate=1 \t loglvl=info ".into();
        assert_eq!(
            machine.hypervisor_cmdline(),
            "qemu_exit frobnicate=1 loglvl=info"
        );
    }

    #[test]
    fn grub_boot_arguments() {
        let machine = Machine {
            smp: 4,
            mem_mib: 128,
            extra_qemu_args: vec!["-d".into(), "int".into()],
            ..Machine::default()
        };
        let args = machine
            .qemu_args(Some(Path::new("/tmp/x.iso")))
            .expect("arguments");
        assert_eq!(
            strings(&args).join(" "),
            "-machine q35 -cpu max -m 128M -smp 4 -display none -serial stdio \
             -monitor none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -boot d -cdrom /tmp/x.iso -accel tcg,thread=single -d int"
        );
        assert_eq!(machine.describe(), "4 CPUs, 128 MiB, GRUB");
    }

    #[test]
    fn several_cpus_share_one_tcg_thread_unless_the_run_chose() {
        let accel = |machine: &Machine| {
            let args = strings(&machine.qemu_args(Some(Path::new("/x.iso"))).unwrap());
            args.windows(2)
                .any(|w| w[0] == "-accel" && w[1] == "tcg,thread=single")
        };
        let smp = |smp| Machine {
            smp,
            ..Machine::default()
        };
        assert!(accel(&smp(2)));
        assert!(!accel(&smp(1)), "one vCPU has one thread anyway");
        let icount = Machine {
            extra_qemu_args: vec!["-icount".into(), "shift=0".into()],
            ..smp(2)
        };
        assert!(!accel(&icount), "-icount is single-threaded by itself");
        let kvm = Machine {
            kvm_cpu: Some("host".into()),
            ..smp(2)
        };
        assert!(!accel(&kvm), "KVM has no TCG threads");
    }
    #[test]
    fn disk_arguments() {
        let machine = Machine {
            disks: vec![Disk::new("/srv/root.img"), Disk::read_only("/srv/data.img")],
            extra_qemu_args: vec!["-d".into(), "int".into()],
            iommu: true,
            ..Machine::default()
        };
        let args = machine
            .qemu_args(Some(Path::new("/tmp/x.iso")))
            .expect("arguments");
        assert_eq!(
            strings(&args).join(" "),
            "-machine q35 -cpu max -m 512M -smp 1 -display none -serial stdio \
             -monitor none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -device intel-iommu -boot d -cdrom /tmp/x.iso \
             -drive file=/srv/root.img,format=raw,if=none,id=vd0,cache=writeback \
             -device virtio-blk-pci,drive=vd0,addr=0x10,disable-legacy=on,iommu_platform=on \
             -drive file=/srv/data.img,format=raw,if=none,id=vd1,readonly=on,cache=writeback \
             -device virtio-blk-pci,drive=vd1,addr=0x11,disable-legacy=on,iommu_platform=on \
             -d int"
        );
        // Direct boot attaches them too, after the kernel.
        let direct = Machine {
            boot: Boot::Direct,
            hypervisor: PathBuf::from("/tmp/hv"),
            disks: vec![Disk::new("/srv/root.img")],
            ..Machine::default()
        };
        let args = strings(&direct.qemu_args(None).expect("arguments"));
        assert_eq!(
            &args[args.len() - 8..],
            [
                "-kernel",
                "/tmp/hv",
                "-append",
                "qemu_exit",
                "-drive",
                "file=/srv/root.img,format=raw,if=none,id=vd0,cache=writeback",
                "-device",
                "virtio-blk-pci,drive=vd0,addr=0x10"
            ]
        );
        // A missing image is refused before anything is built.
        let missing = Machine {
            disks: vec![Disk::new("/nonexistent/disk.img")],
            ..Machine::default()
        };
        let message = missing.check_inputs().unwrap_err().to_string();
        assert!(
            message.contains("disk image /nonexistent/disk.img does not exist"),
            "{message}"
        );
    }

    #[test]
    fn uplink_arguments() {
        use crate::net::HostFwd;
        use std::net::Ipv4Addr;
        let uplink = Uplink {
            hostfwd: vec![HostFwd::new(8080, Ipv4Addr::new(10, 0, 2, 16), 80)],
        };
        let machine = Machine {
            disks: vec![Disk::new("/srv/root.img")],
            net: Some(uplink.clone()),
            extra_qemu_args: vec!["-d".into(), "int".into()],
            ..Machine::default()
        };
        let args = machine
            .qemu_args(Some(Path::new("/tmp/x.iso")))
            .expect("arguments");
        assert_eq!(
            strings(&args).join(" "),
            "-machine q35 -cpu max -m 512M -smp 1 -display none -serial stdio \
             -monitor none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -boot d -cdrom /tmp/x.iso \
             -drive file=/srv/root.img,format=raw,if=none,id=vd0,cache=writeback \
             -device virtio-blk-pci,drive=vd0,addr=0x10 \
             -netdev user,id=uplink,net=10.0.2.0/24,restrict=off,hostfwd=tcp:127.0.0.1:8080-10.0.2.16:80 \
             -device virtio-net-pci,netdev=uplink,addr=0x8,mac=52:54:00:12:34:56,romfile= \
             -d int"
        );
        assert_eq!(
            machine.describe(),
            "1 CPU, 512 MiB, GRUB, uplink 10.0.2.0/24, 127.0.0.1:8080 → 10.0.2.16:80"
        );
        // With the IOMMU, the NIC goes through it as the disks do.
        let iommu = Machine {
            net: Some(Uplink::default()),
            iommu: true,
            ..Machine::default()
        };
        let args = strings(&iommu.qemu_args(Some(Path::new("/tmp/x.iso"))).unwrap());
        assert_eq!(
            &args[args.len() - 4..],
            [
                "-netdev",
                "user,id=uplink,net=10.0.2.0/24,restrict=off",
                "-device",
                "virtio-net-pci,netdev=uplink,addr=0x8,mac=52:54:00:12:34:56,romfile=,\
                 disable-legacy=on,iommu_platform=on"
            ]
        );
        // Off by default.
        let args = strings(
            &Machine::default()
                .qemu_args(Some(Path::new("/x.iso")))
                .unwrap(),
        );
        assert!(!args.iter().any(|a| a.contains("netdev")));
        // A bad forward is refused before anything is built.
        let bad = Machine {
            net: Some(Uplink {
                hostfwd: vec![HostFwd::new(8080, Ipv4Addr::new(10, 0, 3, 16), 80)],
            }),
            ..Machine::default()
        };
        let message = bad.check_inputs().unwrap_err().to_string();
        assert!(
            message.contains("is not on the uplink network"),
            "{message}"
        );
    }

    #[test]
    fn gdb_arguments() {
        let machine = Machine {
            gdb: Some(Gdb {
                port: DEFAULT_GDB_PORT,
                wait: false,
            }),
            extra_qemu_args: vec!["-d".into(), "int".into()],
            ..Machine::default()
        };
        let args = machine
            .qemu_args(Some(Path::new("/tmp/x.iso")))
            .expect("arguments");
        assert_eq!(
            strings(&args).join(" "),
            "-machine q35 -cpu max -m 512M -smp 1 -display none -serial stdio \
             -monitor none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -boot d -cdrom /tmp/x.iso -gdb tcp:127.0.0.1:1234 -d int"
        );
        // Waiting for gdb adds -S; direct boot takes the stub too.
        let waiting = Machine {
            boot: Boot::Direct,
            hypervisor: PathBuf::from("/tmp/hv"),
            gdb: Some(Gdb {
                port: 4321,
                wait: true,
            }),
            ..Machine::default()
        };
        let args = strings(&waiting.qemu_args(None).expect("arguments"));
        assert_eq!(
            &args[args.len() - 3..],
            ["-gdb", "tcp:127.0.0.1:4321", "-S"]
        );
        // Off by default.
        let args = strings(
            &Machine::default()
                .qemu_args(Some(Path::new("/x.iso")))
                .unwrap(),
        );
        assert!(!args.iter().any(|a| a == "-gdb" || a == "-S"));
    }

    #[test]
    fn gdb_port_in_use_is_one_sentence() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free port");
        let port = taken.local_addr().expect("its address").port();
        let gdb = Gdb { port, wait: false };
        let message = gdb.check_port().unwrap_err().to_string();
        assert!(
            message.contains(&format!("reserving 127.0.0.1:{port} for QEMU's gdbstub")),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
        // (That the port is free again once dropped is not checked: tests
        // running beside this one bind ephemeral ports too, and one took
        // it in CI.)
    }

    #[test]
    fn direct_boot_arguments() {
        let machine = Machine {
            boot: Boot::Direct,
            cmdline: "loglvl=debug".into(),
            modules: vec![(PathBuf::from("/tmp/initrd"), String::new())],
            hypervisor: PathBuf::from("/tmp/hv"),
            ..Machine::default()
        };
        let args = strings(&machine.qemu_args(None).expect("arguments"));
        let tail = &args[args.len() - 6..];
        assert_eq!(
            tail,
            [
                "-kernel",
                "/tmp/hv",
                "-append",
                "qemu_exit loglvl=debug",
                "-initrd",
                "/tmp/initrd"
            ]
        );
        assert!(!args.contains(&"-cdrom".to_owned()));
        assert_eq!(machine.describe(), "1 CPU, 512 MiB, direct boot");
    }

    #[test]
    fn direct_boot_refuses_what_initrd_cannot_carry() {
        let two = Machine {
            boot: Boot::Direct,
            modules: vec![
                (PathBuf::from("/a"), String::new()),
                (PathBuf::from("/b"), String::new()),
            ],
            ..Machine::default()
        };
        assert!(matches!(
            two.prepare(),
            Err(Error::DirectBootTooManyModules { count: 2 })
        ));
        let named = Machine {
            boot: Boot::Direct,
            modules: vec![(PathBuf::from("/a"), "role=dom0".into())],
            ..Machine::default()
        };
        assert!(matches!(
            named.prepare(),
            Err(Error::DirectBootModuleString { .. })
        ));
    }

    #[test]
    fn bare_kernel_arguments() {
        let mut machine = Machine::bare("/tmp/bench");
        let args = strings(&machine.qemu_args(None).expect("arguments"));
        assert_eq!(&args[args.len() - 2..], ["-kernel", "/tmp/bench"]);
        assert!(!args.iter().any(|a| a.contains("qemu_exit")));
        machine.cmdline = " fast  quiet ".into();
        machine.modules = vec![(PathBuf::from("/tmp/m"), String::new())];
        let args = strings(&machine.qemu_args(None).expect("arguments"));
        assert_eq!(
            &args[args.len() - 6..],
            [
                "-kernel",
                "/tmp/bench",
                "-append",
                "fast quiet",
                "-initrd",
                "/tmp/m"
            ]
        );
        assert_eq!(machine.needs(), &[Need::Qemu]);
        assert_eq!(
            machine.describe(),
            "1 CPU, 512 MiB, bare kernel, no hypervisor"
        );
        machine
            .modules
            .push((PathBuf::from("/tmp/n"), String::new()));
        assert!(matches!(
            machine.check_inputs(),
            Err(Error::DirectBootTooManyModules { count: 2 })
        ));
    }

    #[test]
    fn awaited_text_is_found_across_reads() {
        let text = b"d2 (b) poweroff";
        let console = b"xx pavise: d2 (b) poweroff\r\n".to_vec();
        assert!(ends_text(&console, 0, text));
        // Split anywhere between two reads, the text is still found once
        // the second part has come.
        for split in 0..console.len() {
            let found_early = ends_text(&console[..split], 0, text);
            let found = found_early || ends_text(&console, split, text);
            assert!(found, "split at {split}");
        }
        assert!(!ends_text(b"pavise: d2 (b) power", 0, text));
        // What was searched before is not searched again.
        assert!(!ends_text(&console, console.len(), text));
    }

    #[test]
    fn captured_runs_need_a_time_out() {
        let machine = Machine {
            timeout: None,
            ..Machine::default()
        };
        assert!(matches!(machine.run_captured(), Err(Error::NoTimeout)));
    }

    #[test]
    fn inputs_are_checked_before_building() {
        let missing_module = Machine {
            modules: vec![(PathBuf::from("/nonexistent/kernel"), String::new())],
            hypervisor: PathBuf::from("/nonexistent/hypervisor"),
            ..Machine::default()
        };
        assert!(matches!(
            missing_module.check_inputs(),
            Err(Error::ModuleMissing { .. })
        ));
        let quoted_string = Machine {
            modules: vec![(PathBuf::from("/a"), "name=\"web\"".into())],
            ..Machine::default()
        };
        assert!(matches!(
            quoted_string.check_inputs(),
            Err(Error::BadBootString { .. })
        ));
    }

    #[test]
    fn too_little_memory_for_grub_is_refused_before_booting() {
        let dir = std::env::temp_dir().join(format!("xtask-machine-mem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kernel = dir.join("big");
        std::fs::File::create(&kernel)
            .unwrap()
            .set_len(5 << 20)
            .unwrap();
        let machine = |mem_mib| Machine {
            mem_mib,
            modules: vec![(kernel.clone(), "name=dom0".into())],
            hypervisor: kernel.clone(),
            ..Machine::default()
        };
        let message = machine(8).check_inputs().unwrap_err().to_string();
        assert_eq!(
            message,
            "the machine has 8 MiB, too little for GRUB to load Pavise and its modules (10 MiB) beside itself: give it at least 26 MiB (--mem 26)"
        );
        machine(26).check_inputs().unwrap();
        // Direct boot has no GRUB to run out.
        let mut direct = Machine {
            boot: Boot::Direct,
            ..machine(8)
        };
        direct.modules[0].1 = String::new();
        direct.check_inputs().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dom0_files_follow_the_domain_modules() {
        let dir = std::env::temp_dir().join(format!("xtask-machine-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kernel = dir.join("counter");
        std::fs::write(&kernel, b"\x7fELF\x02\x01").unwrap();
        let config = dir.join("count.cfg");
        std::fs::write(
            &config,
            format!("name = \"count\"\nkernel = \"{}\"\n", kernel.display()),
        )
        .unwrap();
        let notes = dir.join("notes.txt");
        std::fs::write(&notes, "x").unwrap();
        let mut machine = Machine {
            modules: vec![
                (kernel.clone(), "name=dom0 cmdline=pavise.uplink=8".into()),
                (kernel.clone(), "name=hello".into()),
            ],
            ..Machine::default()
        };
        machine.create_config(&config).unwrap();
        machine.hold_file(&notes).unwrap();
        assert_eq!(
            machine.dom0_files,
            [
                ("count.cfg".to_owned(), config.clone()),
                ("counter".to_owned(), kernel.clone()),
                ("notes.txt".to_owned(), notes.clone()),
            ]
        );
        assert_eq!(machine.create_at_boot, ["count.cfg"]);
        let strings: Vec<String> = machine
            .boot_modules()
            .unwrap()
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        assert_eq!(
            strings,
            [
                "name=dom0 cmdline=pavise.uplink=8 pavise.create=count.cfg",
                "name=hello",
                "file count.cfg",
                "file counter",
                "file notes.txt",
            ]
        );
        machine.check_inputs().unwrap();
        // A bad config leaves the machine as it was.
        let bad = dir.join("bad.cfg");
        std::fs::write(&bad, "kernel = \"/k\"\n").unwrap();
        let before = (machine.dom0_files.clone(), machine.create_at_boot.clone());
        assert!(matches!(
            machine.create_config(&bad),
            Err(Error::BadConfig { .. })
        ));
        assert_eq!(
            (machine.dom0_files.clone(), machine.create_at_boot.clone()),
            before
        );
        // Direct boot cannot carry them.
        let direct = Machine {
            boot: Boot::Direct,
            modules: vec![(kernel.clone(), String::new())],
            ..machine.clone()
        };
        assert!(matches!(direct.check_inputs(), Err(Error::DirectBootFiles)));
        assert!(matches!(
            direct.qemu_args(None),
            Err(Error::DirectBootFiles)
        ));
        // A file gone before the boot is found by the check.
        std::fs::remove_file(&notes).unwrap();
        assert!(matches!(
            machine.check_inputs(),
            Err(Error::FileMissing { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_files_are_reported() {
        let machine = Machine {
            hypervisor: PathBuf::from("/nonexistent/hypervisor"),
            ..Machine::default()
        };
        assert!(matches!(
            machine.prepare(),
            Err(Error::ArtifactMissing { .. })
        ));
    }

    #[test]
    fn staging_directories_are_distinct_and_removed() {
        let a = Staging::create().expect("staging");
        let b = Staging::create().expect("staging");
        assert_ne!(a.path(), b.path());
        let kept = a.path().to_owned();
        assert!(kept.is_dir());
        drop(a);
        assert!(!kept.exists());
    }
}
