//! `cargo xtask`: build Pavise, boot it in QEMU, run the test suite.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use xtask::disk::Disk;
use xtask::domains::{self, DomU};
use xtask::machine::{DEFAULT_GDB_PORT, Gdb};
use xtask::net::{HostFwd, Uplink};
use xtask::progress::{Step, Steps, say};
use xtask::{
    Backend, Boot, Error, Exit, Machine, bare_metal, bench, configs, grub, linux, linux_root,
    prereqs, suite, workspace,
};

/// Where Linux's console is: the Xen console.
const CONSOLE_CMDLINE: &str = "console=hvc0";

/// Pavise's host tool.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build every bare-metal crate (release, x86_64-unknown-none).
    Build,
    /// Build, make the GRUB image and boot Pavise in QEMU with the serial
    /// console on this terminal.
    Run(RunArgs),
    /// Run the whole test suite: host unit tests, the QEMU scenarios (SVM),
    /// then the VT-x scenarios under Bochs.
    Test {
        /// vmx: every scenario Bochs can run, on the VT-x backend, instead
        /// of the usual suite.
        #[arg(long, value_name = "svm|vmx", default_value = "svm")]
        backend: Backend,
        /// kvm: the QEMU scenarios under KVM where it offers guests nested
        /// AMD-V or VT-x (checked first; otherwise it says why and uses TCG).
        #[arg(long, value_name = "tcg|kvm", default_value = "tcg")]
        accel: Accel,
    },
    /// Measure the hypervisor's paths inside guests (hypercalls, events,
    /// grant copy, XenStore, timers, idle cost, the boot timeline), then
    /// disks, network, toolstack and Linux, as ratios within one run (plain
    /// TCG and with -icount shift=0); prints them against the fast-path
    /// targets and draws bench.svg beside the JSON.
    Bench {
        /// Where to write the figures as JSON.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
        /// Only the hypervisor's own figures (no disk, network, toolstack
        /// or Linux runs): about half the time of the whole bench.
        #[arg(long)]
        quick: bool,
        /// An earlier run's JSON: print and draw the change against it.
        #[arg(long, value_name = "OLD.json")]
        compare: Option<PathBuf>,
    },
    /// Boot Debian's Linux kernel as a DomU with a busybox initramfs and a
    /// shell on its console (downloads the kernel and busybox-static with
    /// apt into target/linux/ unless --kernel and --busybox are given);
    /// with --disk, its root file system is on its own disk, xvda.
    Linux(LinuxArgs),
    /// Fuzz: several DomUs throw seeded random hypercalls beside a
    /// healthy ping-pong pair (no fault, the pair passes, no frame
    /// leaked); with --host, the pure cores' property tests with raised
    /// case counts instead.
    Fuzz(FuzzArgs),
    /// Soak: Dom0 and pairs of DomUs under event-channel, grant-copy and
    /// XenStore load for minutes; no event lost, no copy wrong, and the
    /// free frames and XenStore nodes return as after a run without load.
    Soak(SoakArgs),
    /// Run the single-DomU test kernels on Pavise and on real Xen 4.17
    /// (the reference set-up in ../shared/xen-reference, which downloads
    /// Debian's Xen packages) and say kernel by kernel whether the
    /// verdicts agree; non-zero if one does not.
    XenCheck {
        /// The reference set-up's directory.
        #[arg(long, value_name = "DIR")]
        reference: Option<std::path::PathBuf>,
        /// Only these kernels (default: all).
        kernels: Vec<String>,
    },
    /// Run the Xen Test Framework's hvm64 tests from an XTF tree built by
    /// hand (`make` in a clone of xen-project/xtf; CI cannot fetch it), each
    /// as a DomU with XTF's 128 MiB and one vCPU, and print their verdicts.
    Xtf {
        /// The top of the built XTF tree.
        dir: PathBuf,
    },
    /// Manage the running Pavise over its control channel: any command
    /// Dom0's console takes (list [--json], info [--json], create CFG
    /// [KEY=VALUE…], files, pause ID, unpause ID, destroy ID, shutdown ID,
    /// reboot ID, help). `create PATH` with a config on the host first
    /// sends Dom0 the config, kernel and ramdisk it does not hold.
    Xl {
        /// The control socket (default: the one running Pavise's, under
        /// target/pavise-control/).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

#[derive(Args)]
struct FuzzArgs {
    /// Hypercalls in total, shared among the fuzzers.
    #[arg(long, default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    calls: u64,
    /// The first fuzzer's seed (the k-th gets SEED + k): a run is
    /// reproducible from it.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many fuzzer DomUs.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=8))]
    fuzzers: u32,
    /// Fuzz the host-side pure cores with their property tests instead.
    #[arg(long, conflicts_with_all = ["calls", "seed", "fuzzers"])]
    host: bool,
    /// With --host: cases per property test.
    #[arg(long, default_value_t = 1_000_000, requires = "host",
          value_parser = clap::value_parser!(u64).range(1..))]
    cases: u64,
    /// Extra QEMU arguments, e.g. `-- -d cpu_reset -D qemu.log`.
    #[arg(last = true, value_name = "QEMU ARGS")]
    qemu_args: Vec<String>,
}

#[derive(Args)]
struct SoakArgs {
    /// How long the load lasts, in minutes.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=24 * 60))]
    minutes: u64,
    /// Or in seconds (a short soak).
    #[arg(long, conflicts_with = "minutes", value_parser = clap::value_parser!(u64).range(1..))]
    seconds: Option<u64>,
    /// Pairs of DomUs (two DomUs each).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=8))]
    pairs: u32,
    /// Extra QEMU arguments, e.g. `-- -d cpu_reset -D qemu.log`.
    #[arg(last = true, value_name = "QEMU ARGS")]
    qemu_args: Vec<String>,
}

#[derive(Args)]
struct LinuxArgs {
    /// The guest's vCPUs.
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(i64::from(*domains::VCPUS.start())..=i64::from(*domains::VCPUS.end())))]
    vcpus: u32,
    /// The guest's memory in MiB (QEMU gets 256 MiB more, for the
    /// hypervisor and Dom0).
    #[arg(long, value_name = "MiB", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(i64::from(*domains::MEM_MIB.start())..=i64::from(*domains::MEM_MIB.end())))]
    mem: u32,
    /// Extra kernel command-line options, after console=hvc0.
    #[arg(long, value_name = "ARGS", default_value = "")]
    append: String,
    /// A PVH-capable vmlinux (ELF) to boot instead of Debian's.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// A static busybox for the initramfs instead of Debian's.
    #[arg(long, value_name = "PATH")]
    busybox: Option<PathBuf>,
    /// Stop QEMU after this many seconds (exit status 124).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// Host CPUs (QEMU -smp); default: the vCPUs, at most 2.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    smp: Option<u32>,
    /// Mount the root file system from the DomU's own disk, xvda: an ext4
    /// image (target/linux/root.img, made once and kept, with what the
    /// guest writes) holding busybox; the initramfs loads xen-blkfront and
    /// ext4 (taken out of Debian's kernel package) and switches to it.
    #[arg(long)]
    disk: bool,
    /// Give Linux a network interface (eth0: its xen-netfront on Dom0's
    /// switch) and the machine the uplink (QEMU user networking); the
    /// initramfs loads xen-netfront out of Debian's kernel package and
    /// takes an address from QEMU's DHCP server (10.0.2.15; the host is
    /// 10.0.2.2).
    #[arg(long, conflicts_with = "disk")]
    net: bool,
    /// Forward TCP port HOSTPORT on the host's loopback to GUESTIP:GUESTPORT
    /// (e.g. 8080:10.0.2.15:80). Repeatable; needs --net.
    #[arg(long = "hostfwd", value_name = "HOSTPORT:GUESTIP:GUESTPORT",
          value_parser = parse_hostfwd, requires = "net")]
    hostfwd: Vec<HostFwd>,
    /// Get the kernel and busybox and make the initramfs, then stop
    /// without booting.
    #[arg(long, hide = true)]
    prepare_only: bool,
}

impl LinuxArgs {
    /// QEMU's CPUs: `--smp`, or the vCPUs up to 2 (TCG is CPU-bound).
    fn host_cpus(&self) -> u32 {
        self.smp.unwrap_or(self.vcpus.min(2))
    }

    /// QEMU's memory: the guest's and 256 MiB for the hypervisor and Dom0.
    fn host_mem(&self) -> u32 {
        self.mem + 256
    }

    /// The guest's kernel command line: the console, with --disk the
    /// root on xvda, then --append's words.
    fn kernel_cmdline(&self) -> String {
        let root = if self.disk {
            linux_root::ROOT_CMDLINE
        } else {
            ""
        };
        [CONSOLE_CMDLINE, root, self.append.trim()]
            .iter()
            .filter(|w| !w.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// What `cargo xtask run` is given to boot `vmlinux` with `initramfs`
    /// (and, with --disk, `root_image` as its xvda).
    fn run_args(&self, vmlinux: &Path, initramfs: &Path, root_image: Option<&Path>) -> RunArgs {
        let mut domu = DomU::new(vmlinux);
        domu.name = Some("linux".to_owned());
        domu.mem_mib = Some(self.mem);
        domu.vcpus = Some(self.vcpus);
        domu.ramdisk = Some(initramfs.to_owned());
        domu.disks = root_image.map(Disk::new).into_iter().collect();
        if self.net {
            domu.vifs = vec![xtask::net::Vif::new()];
        }
        domu.cmdline = Some(self.kernel_cmdline());
        RunArgs {
            smp: self.host_cpus(),
            mem: self.host_mem(),
            timeout: self.timeout,
            direct: false,
            cmdline: String::new(),
            modules: Vec::new(),
            domus: vec![domu],
            configs: Vec::new(),
            files: Vec::new(),
            dom0_mem: None,
            disks: Vec::new(),
            // The session ends with Linux (its shell's exit powers it off).
            exit_when_done: true,
            iommu: false,
            net: self.net,
            hostfwd: self.hostfwd.clone(),
            gdb: false,
            gdb_port: DEFAULT_GDB_PORT,
            gdb_wait: false,
            backend: Backend::Svm,
            accel: Accel::Tcg,
            qemu_args: Vec::new(),
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// Number of CPUs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    smp: u32,
    /// Memory in MiB.
    #[arg(long, value_name = "MiB", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    mem: u32,
    /// Stop QEMU after this many seconds (exit status 124).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// Boot the hypervisor ELF directly (QEMU -kernel, Xen PVH entry)
    /// instead of through GRUB.
    #[arg(long)]
    direct: bool,
    /// Extra hypervisor command-line options, e.g. "loglvl=debug maxcpus=2"
    /// (xtask always adds qemu_exit).
    #[arg(long, value_name = "OPTIONS", default_value = "")]
    cmdline: String,
    /// A module to load: a file, optionally followed by a space and the
    /// module string ("FILE STRING…"). Repeatable; direct boot takes one,
    /// without a string.
    #[arg(long = "module", value_name = "FILE [STRING]", value_parser = parse_module)]
    modules: Vec<(PathBuf, String)>,
    /// Boot a Xen PVH ELF kernel (any, not only this project's) as a DomU
    /// beside Dom0:
    /// PATH[,name=NAME,mem=MiB,vcpus=N,ramdisk=PATH,disk=IMG[:ro],vif[=MAC],cmdline=...]
    /// (cmdline takes the rest, commas included; ramdisk= loads a file
    /// beside the kernel, e.g. an initramfs; disk= and vif are repeatable:
    /// a virtual disk, a network interface with the MAC given or
    /// 00:16:3e:00:DOMID:HANDLE). Repeatable. Without --domu, --module,
    /// --config or --file, Dom0 and a demo DomU boot.
    #[arg(long = "domu", value_name = "PATH[,OPTIONS]", value_parser = parse_domu)]
    domus: Vec<DomU>,
    /// An xl.cfg domain config (checked here as Dom0 reads it): Dom0 is
    /// handed it with the kernel and ramdisk it names, the machine
    /// attaches the disks it names, and Dom0 runs `xl create NAME` once it
    /// is up, NAME the config's file name. Repeatable, created in the
    /// order given; GRUB boot only.
    #[arg(long = "config", value_name = "PATH")]
    configs: Vec<PathBuf>,
    /// A file handed to Dom0 under its file name, e.g. a config and kernel
    /// for an `xl create NAME` typed later. Repeatable; GRUB boot only.
    #[arg(long = "file", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// Dom0's memory in MiB (Xen's dom0_mem): what it does not use holds
    /// the files `cargo xtask xl create PATH` sends (a Linux vmlinux is
    /// some 66 MiB). Default: 160 on a machine of 512 MiB or more, else 32.
    #[arg(long = "dom0-mem", value_name = "MiB", value_parser = clap::value_parser!(u32).range(16..=3072))]
    dom0_mem: Option<u32>,
    /// A disk image attached for Dom0's toolstack and named by its file
    /// name, for a config created later (`xl create`) whose `disk` names
    /// it; `:ro` opens it read-only. Repeatable; GRUB boot only.
    #[arg(long = "disk", value_name = "IMG[:ro]")]
    disks: Vec<String>,
    /// Power QEMU off as soon as every DomU has ended; the exit status is 0
    /// only if all of them powered off cleanly.
    #[arg(long)]
    exit_when_done: bool,
    /// Give the machine QEMU's Intel IOMMU, with which the hypervisor
    /// confines Dom0's devices to Dom0's memory (off by default: see the
    /// README's "DMA").
    #[arg(long)]
    iommu: bool,
    /// Give the machine an uplink: a QEMU user-mode network (10.0.2.0/24;
    /// the host is 10.0.2.2, DNS 10.0.2.3) on a virtio-net NIC that Dom0
    /// drives.
    #[arg(long)]
    net: bool,
    /// Forward TCP port HOSTPORT on the host's loopback (127.0.0.1) to
    /// GUESTIP:GUESTPORT on the uplink network, e.g. 8080:10.0.2.15:80.
    /// Repeatable; needs --net.
    #[arg(long = "hostfwd", value_name = "HOSTPORT:GUESTIP:GUESTPORT",
          value_parser = parse_hostfwd, requires = "net")]
    hostfwd: Vec<HostFwd>,
    /// Start QEMU's gdbstub on 127.0.0.1 (port: --gdb-port) and print the
    /// gdb command that attaches with the hypervisor's symbols (README,
    /// "Debugging with gdb").
    #[arg(long)]
    gdb: bool,
    /// The gdbstub's TCP port on 127.0.0.1; needs --gdb.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_GDB_PORT,
          value_parser = clap::value_parser!(u16).range(1..), requires = "gdb")]
    gdb_port: u16,
    /// Hold the CPUs at their first instruction (QEMU -S) until gdb
    /// continues them; needs --gdb.
    #[arg(long, requires = "gdb")]
    gdb_wait: bool,
    /// The virtualization backend: svm (AMD-V, under QEMU's TCG) or vmx
    /// (Intel VT-x, under Bochs; GRUB boot, no disks, uplink, control
    /// channel or QEMU arguments there).
    #[arg(long, value_name = "svm|vmx", default_value = "svm")]
    backend: Backend,
    /// tcg, or kvm: QEMU with KVM and the host's CPU model, when KVM
    /// offers guests nested AMD-V or VT-x (checked by booting a probe
    /// kernel; otherwise it says why and runs under TCG).
    #[arg(long, value_name = "tcg|kvm", default_value = "tcg")]
    accel: Accel,
    /// Extra QEMU arguments.
    #[arg(last = true, value_name = "QEMU ARGS")]
    qemu_args: Vec<String>,
}

/// How QEMU runs the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Accel {
    Tcg,
    Kvm,
}

fn parse_domu(arg: &str) -> Result<DomU, Error> {
    domains::parse_domu(arg)
}

fn parse_hostfwd(arg: &str) -> Result<HostFwd, Error> {
    HostFwd::parse(arg)
}

impl RunArgs {
    /// The machine's uplink: with --net, one carrying the --hostfwd
    /// forwards.
    fn uplink(&self) -> Option<Uplink> {
        self.net.then(|| Uplink {
            hostfwd: self.hostfwd.clone(),
        })
    }

    /// The machine's gdbstub: with --gdb, on --gdb-port, waiting with
    /// --gdb-wait.
    fn gdb(&self) -> Option<Gdb> {
        self.gdb.then_some(Gdb {
            port: self.gdb_port,
            wait: self.gdb_wait,
        })
    }
}

/// What `cargo xtask run --gdb` prints before QEMU starts: the gdb command
/// that attaches with the symbols of `elf` (the hypervisor, linked and
/// loaded at one address, so they apply as they are), shown relative to the
/// current directory when it is inside it.
fn gdb_hints(gdb: &Gdb, elf: &Path) -> Vec<String> {
    let shown = std::env::current_dir()
        .ok()
        .and_then(|dir| elf.strip_prefix(dir).ok())
        .unwrap_or(elf);
    let wait = if gdb.wait {
        "; the CPUs wait at their first instruction until gdb continues them"
    } else {
        ""
    };
    vec![
        format!("gdbstub on {}{wait}; attach with:", gdb.address()),
        format!(
            "  gdb {} -ex 'target remote {}'",
            shown.display(),
            gdb.address()
        ),
    ]
}

/// Splits `FILE [STRING]` at the first whitespace.
fn parse_module(arg: &str) -> Result<(PathBuf, String), Error> {
    let arg_trimmed = arg.trim();
    let (file, string) = match arg_trimmed.split_once(char::is_whitespace) {
        Some((file, string)) => (file, string.trim_start()),
        None => (arg_trimmed, ""),
    };
    if file.is_empty() {
        return Err(Error::BadModuleArg {
            arg: arg.to_owned(),
        });
    }
    Ok((PathBuf::from(file), string.to_owned()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build => build(&mut Steps::new(1)).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => {
            let mut steps = Steps::new(run_steps(&args));
            run(args, &mut steps)
        }
        Command::Linux(args) => run_linux(args),
        Command::Test { backend, accel } => {
            suite::run(backend, accel == Accel::Kvm).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench {
            json,
            quick,
            compare,
        } => run_bench(json, quick, compare).map(|()| ExitCode::SUCCESS),
        Command::Fuzz(args) => run_fuzz(&args).map(|()| ExitCode::SUCCESS),
        Command::XenCheck { reference, kernels } => {
            xtask::xen_check::run(reference.as_deref(), &kernels).map(|same| {
                if same {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            })
        }
        Command::Soak(args) => xtask::soak::run(&xtask::soak::Soak {
            seconds: args.seconds.unwrap_or(args.minutes * 60),
            pairs: args.pairs,
            qemu_args: args.qemu_args,
        })
        .map(|()| ExitCode::SUCCESS),
        Command::Xl { socket, command } => run_xl(socket, &command),
        Command::Xtf { dir } => xtask::xtf::run(&dir).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        say(&format!("error: {e}"));
        ExitCode::FAILURE
    })
}

/// `cargo xtask fuzz`: the guest fuzz run, or with --host the host one.
fn run_fuzz(args: &FuzzArgs) -> xtask::Result<()> {
    if args.host {
        return xtask::fuzz::host(args.cases);
    }
    prereqs::ensure(Machine::default().needs())?;
    xtask::fuzz::guest(&xtask::fuzz::GuestFuzz {
        calls: args.calls,
        seed: args.seed,
        fuzzers: args.fuzzers,
        qemu_args: args.qemu_args.clone(),
    })
}

/// `cargo xtask xl COMMAND`: prints Dom0's answer; fails if it refused.
fn run_xl(socket: Option<PathBuf>, command: &[String]) -> xtask::Result<ExitCode> {
    let socket = match socket {
        Some(s) => s,
        None => xtask::xl::find_socket()?,
    };
    // `create PATH` naming a config on the host sends what Dom0 lacks.
    let answer = match command {
        [verb, path, overrides @ ..] if verb == "create" && Path::new(path).is_file() => {
            xtask::xl::create_from_host(&socket, Path::new(path), overrides)?
        }
        _ => xtask::xl::request(&socket, &command.join(" "))?,
    };
    print!("{}", answer.text);
    Ok(if answer.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn build(steps: &mut Steps) -> xtask::Result<()> {
    let packages = bare_metal::packages()?.join(", ");
    let step = steps.start(&format!(
        "building {packages} (release, {})",
        bare_metal::TARGET
    ));
    bare_metal::build_all()?;
    step.done("built");
    Ok(())
}

/// Dom0's memory for `cargo xtask run` on a machine of 512 MiB or more,
/// so that it can hold a Linux kernel sent from the host.
const DEFAULT_RUN_DOM0_MIB: u32 = 160;

/// How many progress steps [`run`] prints.
fn run_steps(args: &RunArgs) -> usize {
    if args.direct { 2 } else { 3 }
}

/// `cargo xtask run`: checks, builds, makes the image and boots it, its
/// steps numbered on from `steps` (it takes [`run_steps`] of them).
fn run(args: RunArgs, steps: &mut Steps) -> xtask::Result<ExitCode> {
    if args.direct && args.domus.iter().any(|d| d.ramdisk.is_some()) {
        return Err(Error::DirectBootRamdisk);
    }
    if args.direct && !args.domus.is_empty() {
        return Err(Error::DirectBootTooManyModules {
            count: args.domus.len() + 1,
        });
    }
    if args.direct && !(args.configs.is_empty() && args.files.is_empty() && args.disks.is_empty()) {
        return Err(Error::DirectBootFiles);
    }
    // What the user named is checked before anything is built: the kernels
    // are ELF files, the ramdisks files, and GRUB can carry their module
    // strings unchanged.
    for (i, domu) in args.domus.iter().enumerate() {
        domains::check(domu, i + 1)?;
    }
    let uplink = args.uplink();
    if let Some(uplink) = &uplink {
        uplink.check()?;
    }
    domains::check_vifs(&args.domus, uplink.as_ref())?;
    let gdb = args.gdb();
    if let Some(gdb) = &gdb {
        gdb.check_port()?;
    }
    let mut cmdline = args.cmdline.clone();
    if args.exit_when_done {
        cmdline = format!("{cmdline} exit_when_done").trim().to_owned();
    }
    if args.accel == Accel::Kvm && args.backend == Backend::Vmx {
        return Err(Error::KvmUnusable {
            why: "--accel kvm runs QEMU, not Bochs: leave out --backend vmx (the hypervisor takes VT-x by itself where KVM offers it)".to_owned(),
        });
    }
    let mut machine = Machine {
        backend: args.backend,
        smp: args.smp,
        mem_mib: args.mem,
        boot: if args.direct {
            Boot::Direct
        } else {
            Boot::Grub
        },
        cmdline,
        modules: args.modules.clone(),
        extra_qemu_args: args.qemu_args.clone(),
        timeout: args.timeout.map(Duration::from_secs),
        iommu: args.iommu,
        net: uplink,
        gdb,
        ..Machine::default()
    };
    // The configs are read and held now; their kernels and ramdisks are
    // checked now too, but for those the build has still to make.
    for path in &args.configs {
        machine.create_config(path)?;
    }
    for path in &args.files {
        machine.hold_file(path)?;
    }
    for disk in &args.disks {
        match disk.strip_suffix(":ro") {
            Some(path) => machine.hold_disk(path, true)?,
            None => machine.hold_disk(disk, false)?,
        }
    }
    configs::check_held(
        &machine.dom0_files,
        &machine.create_at_boot,
        Some(&workspace::target_dir()),
    )?;
    prereqs::ensure(machine.needs())?;
    build(steps)?;
    // Dom0 plus the named DomUs, or plus the demo when nothing was named.
    let held = !machine.dom0_files.is_empty();
    if !args.direct && (!args.domus.is_empty() || args.modules.is_empty()) {
        let domus = if args.domus.is_empty() && !held {
            vec![domains::test_kernel(domains::DEMO_DOMU)]
        } else {
            args.domus.clone()
        };
        let mut modules = domains::modules_with(&domus, machine.net.as_ref())?;
        modules.extend(args.modules.iter().cloned());
        machine.modules = modules;
        machine.disks = domains::disks(&domus);
        let dom0_mem = args
            .dom0_mem
            .or((args.mem >= 512).then_some(DEFAULT_RUN_DOM0_MIB));
        if let Some(mib) = dom0_mem {
            let (_, string) = &mut machine.modules[0];
            *string = domains::with_dom0_mem(string, mib);
        }
    } else if args.dom0_mem.is_some() {
        return Err(Error::Dom0MemWithModules);
    }
    if args.accel == Accel::Kvm {
        match xtask::kvm::check(&xtask::artifact(xtask::kvm::PROBE)) {
            Ok(cpu) => {
                say(&format!(
                    "KVM offers guests nested virtualization: running with -accel kvm -cpu {cpu}"
                ));
                machine.kvm_cpu = Some(cpu.to_owned());
            }
            Err(why) => say(&format!(
                "KVM cannot run Pavise's guests: {why}; running under TCG"
            )),
        }
    }
    // The control channel `cargo xtask xl` talks to (QEMU only).
    let socket = match machine.backend {
        Backend::Svm => {
            let socket = xtask::xl::new_socket()?;
            machine.control = Some(socket.clone());
            Some(socket)
        }
        Backend::Vmx => None,
    };
    machine.check_inputs()?;
    let prepared = if args.direct {
        machine.prepare()?
    } else {
        let step = steps.start("making GRUB image");
        let prepared = machine.prepare()?;
        step.done("made");
        prepared
    };
    if let Some(uplink) = &machine.net {
        for line in uplink.reach() {
            say(&line);
        }
    }
    if let Some(gdb) = &machine.gdb {
        // Checked again: the build took a while.
        gdb.check_port()?;
        for line in gdb_hints(gdb, &machine.hypervisor) {
            say(&line);
        }
    }
    if held {
        say(&held_summary(&machine));
    }
    if let Some(socket) = &socket {
        say(&format!(
            "control channel on {}: `cargo xtask xl list` manages this machine",
            socket.display()
        ));
    }
    let emulator = machine.backend.emulator();
    let step = steps.start(&format!("booting {emulator}: {}", machine.describe()));
    let ended = prepared.run_interactive();
    if let Some(socket) = &socket {
        let _ = std::fs::remove_file(socket);
    }
    let ended = ended?;
    step.done_with(|took| match (ended.exit, args.timeout) {
        (Exit::TimedOut, Some(seconds)) => {
            format!("timed out after {seconds} s; {emulator} stopped")
        }
        (exit, _) => format!("{emulator} ran {took}: {exit}"),
    });
    Ok(ExitCode::from(ended.exit.process_code()))
}

/// What `cargo xtask run` says of the files Dom0 is handed, e.g. `Dom0
/// holds count.cfg, counter and notes.txt; it creates count.cfg once it is
/// up`.
fn held_summary(machine: &Machine) -> String {
    let names: Vec<&str> = machine
        .dom0_files
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    let mut s = format!("Dom0 holds {}", list(&names));
    if !machine.create_at_boot.is_empty() {
        let create: Vec<&str> = machine.create_at_boot.iter().map(String::as_str).collect();
        s.push_str(&format!("; it creates {} once it is up", list(&create)));
    }
    s
}

/// `a`, `a and b`, `a, b and c`.
fn list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// `cargo xtask linux`: Debian's kernel and busybox (or the user's), the
/// interactive initramfs, then the boot `cargo xtask run --domu
/// VMLINUX,…,ramdisk=INITRAMFS` makes. With --disk: the root modules, the
/// root initramfs and the root image, then `…,disk=ROOT.img,cmdline=…
/// root=/dev/xvda rw`.
fn run_linux(args: LinuxArgs) -> xtask::Result<ExitCode> {
    // Checked before anything is fetched or built.
    if let Some(kernel) = &args.kernel {
        domains::check_kernel(kernel)?;
    }
    if let Some(busybox) = args.busybox.as_ref().filter(|b| !b.is_file()) {
        return Err(Error::BusyboxMissing {
            path: busybox.clone(),
        });
    }
    let cache = linux::cache_dir();
    let initramfs = cache.join(if args.disk {
        "initramfs-root.cpio.gz"
    } else if args.net {
        "initramfs-interactive-net.cpio.gz"
    } else {
        "initramfs-interactive.cpio.gz"
    });
    let root_image = args.disk.then(|| cache.join("root.img"));
    let placeholder = args.run_args(Path::new("vmlinux"), &initramfs, None);
    grub::quote(&domains::module_string(&placeholder.domus[0], 1))?;

    let wanted = linux::Wanted::besides(args.kernel.is_some(), args.busybox.is_some());
    let fetch_steps = wanted.map_or(0, linux::Wanted::steps);
    let boot_steps = if args.prepare_only {
        0
    } else {
        run_steps(&placeholder)
    };
    // --disk: the modules, the initramfs and the image; --net: the
    // modules and the initramfs; else the initramfs.
    let make_steps = if args.disk {
        3
    } else if args.net {
        2
    } else {
        1
    };
    let mut steps = Steps::new(fetch_steps + make_steps + boot_steps);
    let fetched = match wanted {
        Some(wanted) => linux::fetch(&cache, wanted, &mut steps)?,
        None => linux::Fetched::default(),
    };
    let (Some(vmlinux), Some(busybox)) = (
        args.kernel.clone().or(fetched.vmlinux),
        args.busybox.clone().or(fetched.busybox),
    ) else {
        unreachable!("fetch gets what was not given");
    };
    if let Some(version) = &fetched.version {
        say(&format!("Linux {version}: {}", vmlinux.display()));
    }

    if let Some(image) = &root_image {
        let modules = match &fetched.version {
            Some(version) => {
                let step = steps.start(&format!(
                    "taking {} and what they need out of the kernel package",
                    linux_root::ROOT_MODULES.join(", ")
                ));
                let (modules, taken) = linux_root::modules(&cache, version)?;
                let names = modules.names();
                step.done_with(|took| {
                    if taken {
                        format!("took {names} in {took}")
                    } else {
                        format!("already there: {names} ({took})")
                    }
                });
                modules
            }
            None => {
                let step = steps.start("root modules");
                step.done("none: --kernel must have xen-blkfront and ext4 built in");
                linux_root::RootModules::none()
            }
        };
        let step = steps.start(&format!("making {}", initramfs.display()));
        linux_root::initramfs(&busybox, &modules, &initramfs)?;
        step.done("made");
        let step = steps.start(&format!(
            "making the root file system {} ({} MiB ext4)",
            image.display(),
            linux_root::ROOT_IMAGE_MIB
        ));
        let made = linux_root::ensure_root_image(&busybox, image)?;
        step.done(if made {
            "made"
        } else {
            "up to date, kept with what the guest wrote (delete it for a fresh one)"
        });
    } else if args.net {
        let modules = match &fetched.version {
            Some(version) => {
                let step = steps.start(&format!(
                    "taking {} out of the kernel package",
                    linux_root::NET_MODULES.join(", ")
                ));
                let (modules, _) = linux_root::modules_named(
                    &cache,
                    version,
                    linux_root::NET_MODULES,
                    linux_root::NET_MODULES_DIR,
                )?;
                let names = modules.names();
                step.done_with(|took| format!("{names} ({took})"));
                modules
            }
            None => {
                let step = steps.start("network modules");
                step.done("none: --kernel must have xen-netfront built in");
                linux_root::RootModules::none()
            }
        };
        let step = steps.start(&format!("making {}", initramfs.display()));
        let files = linux_root::module_files(&modules)?;
        linux::initramfs_with(
            &busybox,
            &xtask::linux_net::interactive_init(),
            &files,
            &initramfs,
        )?;
        step.done("made");
    } else {
        let step = steps.start(&format!("making {}", initramfs.display()));
        linux::initramfs(&busybox, linux::INTERACTIVE_INIT, &initramfs)?;
        step.done("made");
    }
    if args.prepare_only {
        let disk = root_image
            .as_ref()
            .map(|image| format!(",disk={}", image.display()))
            .unwrap_or_default()
            + if args.net { ",vif" } else { "" };
        say(&format!(
            "ready: --domu {},ramdisk={}{disk},cmdline={}",
            vmlinux.display(),
            initramfs.display(),
            args.kernel_cmdline()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    run(
        args.run_args(&vmlinux, &initramfs, root_image.as_deref()),
        &mut steps,
    )
}

/// The Linux benchmark's vCPU counts: the kit (fetched or cached), then 1
/// and 4 vCPUs, each as a DomU and bare, then its dd on xvd* against Dom0
/// direct, then two Linux DomUs on the network.
const LINUX_VCPUS: [u32; 2] = [1, 4];

/// `cargo xtask bench`: a build, then each mode's runs (one progress line
/// each), the table on stdout, the JSON file and its chart (with
/// `--compare`, the change against an earlier JSON too).
fn run_bench(json: Option<PathBuf>, quick: bool, compare: Option<PathBuf>) -> xtask::Result<()> {
    // An unreadable earlier run is said before the long measurement.
    let old = compare
        .as_deref()
        .map(xtask::bench_chart::read_json)
        .transpose()?;
    prereqs::ensure(Machine::default().needs())?;
    // The build, each run in both modes, and the VT-x run under Bochs.
    let core_steps = 1 + 2 * bench::RUNS.len() + 1;
    let total = if quick {
        core_steps
    } else {
        core_steps + 2 + 2 + 2 * xtask::net_bench::NET_RUNS.len() + 1 + LINUX_VCPUS.len() + 1 + 1
    };
    build(&mut Steps::new(total))?;
    let mut n = 1;
    let mut measure = |icount: bool| -> xtask::Result<bench::Figures> {
        let mut consoles = Vec::new();
        for run in bench::RUNS {
            n += 1;
            let step = Step::start(
                n,
                total,
                &format!("{}: {}", bench::mode_name(icount), run.describe()),
            );
            consoles.push(run.boot(icount)?);
            step.done("measured");
        }
        bench::Figures::read(&consoles)
    };
    let tcg = measure(false)?;
    let icount = measure(true)?;
    n += 1;
    let step = Step::start(n, total, xtask::vmx_bench::DESCRIPTION);
    let vmx = xtask::vmx_bench::measure()?;
    step.done("measured");
    let image_bytes = bench::stripped_size(&xtask::artifact("hypervisor"))?;
    let json_text = if quick {
        print!("{}", bench::table(&tcg, &icount));
        bench::json_full(&tcg, &icount, ["", ""], None, Some(image_bytes))
    } else {
        bench_the_rest(n, total, &tcg, &icount, image_bytes)?
    };
    print!("{}", xtask::vmx_bench::table(&vmx, icount.bare_loop));
    let json_text = bench::with_top_level(
        &json_text,
        "vmx_bochs",
        &xtask::vmx_bench::json(&vmx, icount.bare_loop),
    );
    say(&format!(
        "the hypervisor's image, stripped: {} bytes ({:.0} KB)",
        image_bytes,
        image_bytes as f64 / 1000.0
    ));
    let path = json.unwrap_or_else(bench::default_json_path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    std::fs::write(&path, &json_text).map_err(Error::io(format!("writing {}", path.display())))?;
    say(&format!("figures written to {}", path.display()));
    let new = xtask::bench_chart::parse_json(&json_text, &path)?;
    print!("{}", xtask::bench_chart::targets_table(&new));
    if let Some((old_path, old)) = compare.as_deref().zip(old.as_ref()) {
        print!("{}", xtask::bench_chart::compare_table(old, &new, old_path));
    }
    let svg = path.with_extension("svg");
    xtask::bench_chart::draw(&new, old.as_ref(), &svg)?;
    say(&format!(
        "chart of the figures against their targets and the boot timeline: {}",
        svg.display()
    ));
    Ok(())
}

/// The disk, toolstack, network and Linux runs of a full `cargo xtask
/// bench` (steps `n + 1` on of `total`); prints their tables after the
/// core one and returns the whole JSON.
fn bench_the_rest(
    mut n: usize,
    total: usize,
    tcg: &bench::Figures,
    icount: &bench::Figures,
    image_bytes: u64,
) -> xtask::Result<String> {
    let mut disk = Vec::new();
    for icount in [false, true] {
        n += 1;
        let step = Step::start(
            n,
            total,
            &format!(
                "{}: disk, Dom0 direct then a DomU through blkback",
                bench::mode_name(icount)
            ),
        );
        disk.push(xtask::disk_bench::measure(icount)?);
        step.done("measured");
    }
    // The toolstack: Dom0 creating and destroying ringlog DomUs.
    let mut create = Vec::new();
    for icount in [false, true] {
        n += 1;
        let step = Step::start(
            n,
            total,
            &format!(
                "{}: Dom0 creating and destroying DomUs (1, 10, 100 in a row)",
                bench::mode_name(icount)
            ),
        );
        create.push(xtask::create_bench::measure(icount)?);
        step.done("measured");
    }
    // The network: net kernels through netback, each mode's TCP against
    // the grant copy its bench run measured.
    let mut net = Vec::new();
    for (icount, figures) in [(false, tcg), (true, icount)] {
        let mut f = xtask::net_bench::NetFigures::new(figures.grant_copy_mibps);
        for run in xtask::net_bench::NET_RUNS {
            n += 1;
            let step = Step::start(
                n,
                total,
                &format!("{}: {}", bench::mode_name(icount), run.describe()),
            );
            f.add(xtask::net_bench::measure(run, icount)?);
            step.done("measured");
        }
        net.push(f);
    }
    n += 1;
    let step = Step::start(
        n,
        total,
        "Linux: Debian's kernel and busybox, the bench initramfs",
    );
    let kit = xtask::linux::prepare(&xtask::linux::cache_dir())?;
    let ramdisk = xtask::linux_bench::initramfs(&kit)?;
    step.done("ready");
    let mut linux = Vec::new();
    for vcpus in LINUX_VCPUS {
        n += 1;
        let step = Step::start(
            n,
            total,
            &format!("TCG: Linux as a DomU with {vcpus} vCPU(s), then bare on QEMU"),
        );
        linux.push(xtask::linux_bench::measure(&kit, &ramdisk, vcpus)?);
        step.done("measured");
    }
    n += 1;
    let step = Step::start(
        n,
        total,
        "TCG: Linux's dd on xvdb and xvda through blkback, Dom0 direct on xvdc first",
    );
    let linux_disk = xtask::linux_disk_bench::measure(&kit)?;
    step.done("measured");
    n += 1;
    let step = Step::start(
        n,
        total,
        "TCG: two Linux DomUs, ping and 16 MiB over TCP through netback",
    );
    let net_ramdisk = xtask::linux_net_bench::initramfs(&kit)?;
    let linux_net = xtask::linux_net_bench::measure(&kit, &net_ramdisk)?;
    step.done("measured");
    print!("{}", bench::table(tcg, icount));
    print!("{}", xtask::disk_bench::table(&disk[0], &disk[1]));
    print!("{}", xtask::create_bench::table(&create[0], &create[1]));
    print!("{}", xtask::net_bench::table(&net[0], &net[1]));
    print!("{}", xtask::linux_bench::table(&linux));
    print!("{}", xtask::linux_disk_bench::table(&linux_disk));
    print!(
        "{}",
        xtask::linux_net_bench::table(&linux_net, tcg.grant_copy_mibps as f64)
    );
    let linux_json = format!(
        "{}, \"disk\": {}, \"toolstack\": {}, \"linux_disk\": {}",
        xtask::linux_bench::json(&linux),
        xtask::disk_bench::json(&disk[0], &disk[1]),
        xtask::create_bench::json(&create[0], &create[1]),
        xtask::linux_disk_bench::json(&linux_disk)
    );
    // Linux's network figures (net_linux_*, TCG only) join the "tcg"
    // object's network fields.
    let net_json = [
        xtask::net_bench::fields(&net[0])
            + &xtask::linux_net_bench::fields(&linux_net, tcg.grant_copy_mibps as f64),
        xtask::net_bench::fields(&net[1]),
    ];
    Ok(bench::json_full(
        tcg,
        icount,
        [&net_json[0], &net_json[1]],
        Some(&linux_json),
        Some(image_bytes),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_arguments() {
        assert_eq!(
            parse_module("target/dom0").ok(),
            Some((PathBuf::from("target/dom0"), String::new()))
        );
        assert_eq!(
            parse_module("k.elf  role=domu name=web ").ok(),
            Some((PathBuf::from("k.elf"), "role=domu name=web".into()))
        );
        assert!(parse_module("   ").is_err());
    }

    #[test]
    fn run_options_parse() {
        let cli = Cli::try_parse_from([
            "xtask",
            "run",
            "--smp",
            "4",
            "--mem",
            "128",
            "--timeout",
            "20",
            "--direct",
            "--cmdline",
            "loglvl=debug",
            "--",
            "-d",
            "int",
        ])
        .expect("valid options");
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!((args.smp, args.mem, args.timeout), (4, 128, Some(20)));
        assert!(args.direct);
        assert_eq!(args.cmdline, "loglvl=debug");
        assert_eq!(args.qemu_args, ["-d", "int"]);
    }

    fn linux_args(args: &[&str]) -> LinuxArgs {
        let cli = Cli::try_parse_from(["xtask", "linux"].iter().chain(args))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Command::Linux(args) = cli.command else {
            panic!("expected linux");
        };
        args
    }

    #[test]
    fn linux_defaults() {
        let args = linux_args(&[]);
        assert_eq!((args.vcpus, args.mem, args.timeout), (1, 256, None));
        assert_eq!((args.host_cpus(), args.host_mem()), (1, 512));
        assert_eq!(args.kernel_cmdline(), "console=hvc0");
        assert!(args.kernel.is_none() && args.busybox.is_none() && !args.prepare_only);
        assert!(!args.disk);
    }

    #[test]
    fn linux_options_become_a_run() {
        let args = linux_args(&[
            "--vcpus",
            "4",
            "--mem",
            "1024",
            "--append",
            "mce=off loglevel=8",
            "--kernel",
            "/k/vmlinux",
            "--busybox",
            "/b/busybox",
            "--timeout",
            "60",
        ]);
        assert_eq!((args.host_cpus(), args.host_mem()), (2, 1280));
        assert_eq!(args.kernel.as_deref(), Some(Path::new("/k/vmlinux")));
        assert_eq!(args.busybox.as_deref(), Some(Path::new("/b/busybox")));
        let run = args.run_args(Path::new("/k/vmlinux"), Path::new("/c/initrd.gz"), None);
        assert_eq!((run.smp, run.mem, run.timeout), (2, 1280, Some(60)));
        assert!(!run.direct && run.modules.is_empty());
        // As `--domu /k/vmlinux,name=linux,mem=1024,vcpus=4,ramdisk=…,cmdline=…`.
        let expected = domains::parse_domu(
            "/k/vmlinux,name=linux,mem=1024,vcpus=4,ramdisk=/c/initrd.gz,\
             cmdline=console=hvc0 mce=off loglevel=8",
        )
        .unwrap();
        assert_eq!(run.domus, [expected]);
        assert_eq!(
            domains::module_string(&run.domus[0], 1),
            "name=linux mem=1024 vcpus=4 cmdline=console=hvc0 mce=off loglevel=8"
        );
        assert_eq!(run_steps(&run), 3);

        assert_eq!(linux_args(&["--vcpus", "3", "--smp", "1"]).host_cpus(), 1);
        assert_eq!(linux_args(&["--vcpus", "2"]).host_cpus(), 2);
        assert!(linux_args(&["--prepare-only"]).prepare_only);
    }

    #[test]
    fn linux_with_root_on_its_disk() {
        let args = linux_args(&["--disk", "--append", "pavise.check=info"]);
        assert!(args.disk);
        assert_eq!(
            args.kernel_cmdline(),
            "console=hvc0 root=/dev/xvda rw pavise.check=info"
        );
        assert_eq!(
            linux_args(&["--disk"]).kernel_cmdline(),
            "console=hvc0 root=/dev/xvda rw"
        );
        let run = args.run_args(
            Path::new("/k/vmlinux"),
            Path::new("/c/root.cpio.gz"),
            Some(Path::new("/c/root.img")),
        );
        // As `--domu /k/vmlinux,…,ramdisk=…,disk=/c/root.img,cmdline=…`.
        let expected = domains::parse_domu(
            "/k/vmlinux,name=linux,mem=256,vcpus=1,ramdisk=/c/root.cpio.gz,disk=/c/root.img,\
             cmdline=console=hvc0 root=/dev/xvda rw pavise.check=info",
        )
        .unwrap();
        assert_eq!(run.domus, [expected]);
        assert_eq!(domains::disks(&run.domus), [Disk::new("/c/root.img")]);
        assert!(run.exit_when_done);
    }

    #[test]
    fn bad_linux_options_are_refused() {
        for bad in [
            &["xtask", "linux", "--vcpus", "0"][..],
            &["xtask", "linux", "--vcpus", "9"],
            &["xtask", "linux", "--mem", "1"],
            &["xtask", "linux", "--mem", "3073"],
            &["xtask", "linux", "--smp", "0"],
            &["xtask", "linux", "--timeout", "0"],
            &["xtask", "linux", "--kernel"],
            &["xtask", "linux", "--frobnicate"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn direct_boot_refuses_a_ramdisk() {
        let cli = Cli::try_parse_from([
            "xtask",
            "run",
            "--direct",
            "--domu",
            "/k/vmlinux,ramdisk=/r/initrd",
        ])
        .expect("valid options");
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert_eq!(run_steps(&args), 2);
        let e = run(args, &mut Steps::new(2)).unwrap_err();
        assert!(matches!(e, Error::DirectBootRamdisk), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    fn run_args(args: &[&str]) -> RunArgs {
        let cli = Cli::try_parse_from(["xtask", "run"].iter().chain(args))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        args
    }

    #[test]
    fn network_options_parse() {
        let args = run_args(&[
            "--domu",
            "/t/hello,vif",
            "--domu",
            "/t/hello,vif=00:16:3e:aa:bb:cc",
            "--net",
            "--hostfwd",
            "8080:10.0.2.16:80",
            "--hostfwd",
            "2222:10.0.2.15:22",
        ]);
        assert!(args.net);
        let uplink = args.uplink().expect("an uplink");
        assert_eq!(
            uplink.hostfwd,
            [
                HostFwd::new(8080, [10, 0, 2, 16].into(), 80),
                HostFwd::new(2222, [10, 0, 2, 15].into(), 22)
            ]
        );
        assert_eq!(args.domus.len(), 2);
        assert!(domains::check_vifs(&args.domus, Some(&uplink)).is_ok());
        assert_eq!(
            domains::dom0_cmdline_for(&args.domus, Some(&uplink)),
            "pavise.vif=1:0:00-16-3e-00-01-00 pavise.vif=2:0:00-16-3e-aa-bb-cc pavise.uplink=8"
        );
        // Off by default.
        let plain = run_args(&[]);
        assert!(!plain.net && plain.hostfwd.is_empty() && plain.uplink().is_none());
        assert_eq!(run_args(&["--net"]).uplink(), Some(Uplink::default()));
    }

    #[test]
    fn bad_network_options_are_refused() {
        // --hostfwd needs --net.
        assert!(Cli::try_parse_from(["xtask", "run", "--hostfwd", "8080:10.0.2.15:80"]).is_err());
        let e = Cli::try_parse_from(["xtask", "run", "--net", "--hostfwd", "8080:10.0.2.2:80"])
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("bad --hostfwd '8080:10.0.2.2:80': 10.0.2.2 is the host's own address"),
            "{e}"
        );
        let e = Cli::try_parse_from(["xtask", "run", "--domu", "/t/k,vif=01:00:5e:00:00:01"])
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("is a multicast address"), "{e}");
        // Two forwards from one port, or one MAC twice: refused before
        // anything is built.
        let dir = std::env::temp_dir().join(format!("xtask-main-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kernel = dir.join("k");
        std::fs::write(&kernel, b"\x7fELF\x02\x01").unwrap();
        let one = format!("{},vif", kernel.display());
        let other = format!("{},vif=00:16:3e:00:01:00", kernel.display());
        let ports = [
            "--net",
            "--hostfwd",
            "8080:10.0.2.15:80",
            "--hostfwd",
            "8080:10.0.2.16:80",
        ];
        let e = run(run_args(&ports), &mut Steps::new(3)).unwrap_err();
        assert!(matches!(e, Error::HostPortTwice { port: 8080, .. }), "{e}");
        let e = run(
            run_args(&["--domu", &one, "--domu", &other]),
            &mut Steps::new(3),
        )
        .unwrap_err();
        assert!(matches!(e, Error::DuplicateMac { .. }), "{e}");
        assert!(!e.to_string().contains('\n'));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gdb_options_parse() {
        let plain = run_args(&[]);
        assert_eq!(plain.gdb(), None);
        assert_eq!(
            run_args(&["--gdb"]).gdb(),
            Some(Gdb {
                port: 1234,
                wait: false
            })
        );
        let waiting = run_args(&["--gdb", "--gdb-port", "4321", "--gdb-wait"]);
        let gdb = waiting.gdb().expect("a gdbstub");
        assert_eq!(
            gdb,
            Gdb {
                port: 4321,
                wait: true
            }
        );
        let hints = gdb_hints(
            &gdb,
            Path::new("/w/target/x86_64-unknown-none/release/hypervisor"),
        );
        assert_eq!(
            hints[1],
            "  gdb /w/target/x86_64-unknown-none/release/hypervisor -ex 'target remote 127.0.0.1:4321'"
        );
        assert!(hints[0].contains("wait at their first instruction"));
        let relative = std::env::current_dir().unwrap().join("t/hv");
        assert!(gdb_hints(&gdb, &relative)[1].starts_with("  gdb t/hv -ex"));
    }

    #[test]
    fn configs_and_files_are_checked_before_building() {
        let dir = std::env::temp_dir().join(format!("xtask-main-configs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.cfg");
        std::fs::write(&bad, "name = \"b\"\nkernel = \"/k\"\nmemory = lots\n").unwrap();
        let notes = dir.join("notes.txt");
        std::fs::write(&notes, "x").unwrap();
        let args = run_args(&[
            "--config",
            &bad.display().to_string(),
            "--file",
            &notes.display().to_string(),
            "--config",
            "/c/other.cfg",
        ]);
        assert_eq!(args.configs, [bad.clone(), PathBuf::from("/c/other.cfg")]);
        assert_eq!(args.files, std::slice::from_ref(&notes));
        let e = run(args, &mut Steps::new(3)).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("bad config {}, line 3: ", bad.display())),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        // A kernel that is not an ELF file, outside the build's directory.
        let config = dir.join("text.cfg");
        std::fs::write(
            &config,
            format!("name = \"t\"\nkernel = \"{}\"\n", notes.display()),
        )
        .unwrap();
        let e = run(
            run_args(&["--config", &config.display().to_string()]),
            &mut Steps::new(3),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(&format!(
                "bad config {}: its kernel {} is not an ELF file",
                config.display(),
                notes.display()
            )),
            "{e}"
        );
        // Two files of one name.
        let sub = dir.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("notes.txt"), "y").unwrap();
        let e = run(
            run_args(&[
                "--file",
                &notes.display().to_string(),
                "--file",
                &sub.join("notes.txt").display().to_string(),
            ]),
            &mut Steps::new(3),
        )
        .unwrap_err();
        assert!(matches!(e, Error::FileNameClash { .. }), "{e}");
        // Direct boot cannot carry them.
        let args = run_args(&["--direct", "--file", &notes.display().to_string()]);
        let e = run(args, &mut Steps::new(2)).unwrap_err();
        assert!(matches!(e, Error::DirectBootFiles), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn held_files_are_summed_up() {
        let mut machine = Machine {
            dom0_files: ["count.cfg", "counter", "notes.txt"]
                .iter()
                .map(|n| ((*n).to_owned(), PathBuf::from(n)))
                .collect(),
            ..Machine::default()
        };
        assert_eq!(
            held_summary(&machine),
            "Dom0 holds count.cfg, counter and notes.txt"
        );
        machine.create_at_boot = vec!["count.cfg".to_owned()];
        assert_eq!(
            held_summary(&machine),
            "Dom0 holds count.cfg, counter and notes.txt; it creates count.cfg once it is up"
        );
    }

    #[test]
    fn bad_run_options_are_refused() {
        for bad in [
            &["xtask", "run", "--smp", "0"][..],
            &["xtask", "run", "--mem", "lots"],
            &["xtask", "run", "--timeout", "0"],
            &["xtask", "run", "--frobnicate"],
            // --gdb-port and --gdb-wait need --gdb; port 0 is no port.
            &["xtask", "run", "--gdb-port", "4321"],
            &["xtask", "run", "--gdb-wait"],
            &["xtask", "run", "--gdb", "--gdb-port", "0"],
            &["xtask", "run", "--gdb", "--gdb-port", "65536"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
