//! `cargo xtask`: build Pavise, boot it in QEMU, run the test suite.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use xtask::domains::{self, DomU};
use xtask::progress::{Step, say};
use xtask::{Boot, Error, Exit, Machine, bare_metal, bench, grub, prereqs, suite};

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
    /// Run the whole test suite: host unit tests, then the QEMU scenarios.
    Test,
    /// Measure hypercall and CPU-loop costs inside guests, as ratios within
    /// one run (plain TCG and with -icount shift=0).
    Bench {
        /// Where to write the figures as JSON.
        #[arg(long, value_name = "PATH")]
        json: Option<PathBuf>,
    },
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
    /// beside Dom0: PATH[,name=NAME,mem=MiB,vcpus=N,cmdline=...] (cmdline
    /// takes the rest, commas included). Repeatable. Without --domu or
    /// --module, Dom0 and a demo DomU boot.
    #[arg(long = "domu", value_name = "PATH[,OPTIONS]", value_parser = parse_domu)]
    domus: Vec<DomU>,
    /// Power QEMU off as soon as every DomU has ended; the exit status is 0
    /// only if all of them powered off cleanly.
    #[arg(long)]
    exit_when_done: bool,
    /// Extra QEMU arguments.
    #[arg(last = true, value_name = "QEMU ARGS")]
    qemu_args: Vec<String>,
}

fn parse_domu(arg: &str) -> Result<DomU, Error> {
    domains::parse_domu(arg)
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
        Command::Build => build(1, 1).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => run(args),
        Command::Test => suite::run().map(|()| ExitCode::SUCCESS),
        Command::Bench { json } => run_bench(json).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|e| {
        say(&format!("error: {e}"));
        ExitCode::FAILURE
    })
}

fn build(n: usize, total: usize) -> xtask::Result<()> {
    let packages = bare_metal::packages()?.join(", ");
    let step = Step::start(
        n,
        total,
        &format!("building {packages} (release, {})", bare_metal::TARGET),
    );
    bare_metal::build_all()?;
    step.done("built");
    Ok(())
}

fn run(args: RunArgs) -> xtask::Result<ExitCode> {
    if args.direct && !args.domus.is_empty() {
        return Err(Error::DirectBootTooManyModules {
            count: args.domus.len() + 1,
        });
    }
    // What the user named is checked before anything is built: the kernels
    // are ELF files and GRUB can carry their module strings unchanged.
    for (i, domu) in args.domus.iter().enumerate() {
        domains::check_kernel(&domu.kernel)?;
        grub::quote(&domains::module_string(domu, i + 1))?;
    }
    let mut cmdline = args.cmdline.clone();
    if args.exit_when_done {
        cmdline = format!("{cmdline} exit_when_done").trim().to_owned();
    }
    let mut machine = Machine {
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
        ..Machine::default()
    };
    prereqs::ensure(machine.needs())?;
    let total = if args.direct { 2 } else { 3 };
    build(1, total)?;
    // Dom0 plus the named DomUs, or plus the demo when nothing was named.
    if !args.direct && (!args.domus.is_empty() || args.modules.is_empty()) {
        let domus = if args.domus.is_empty() {
            vec![domains::test_kernel(domains::DEMO_DOMU)]
        } else {
            args.domus.clone()
        };
        let mut modules = domains::modules(&domus)?;
        modules.extend(args.modules.iter().cloned());
        machine.modules = modules;
    }
    machine.check_inputs()?;
    let prepared = if args.direct {
        machine.prepare()?
    } else {
        let step = Step::start(2, total, "making GRUB image");
        let prepared = machine.prepare()?;
        step.done("made");
        prepared
    };
    let step = Step::start(
        total,
        total,
        &format!("booting QEMU: {}", machine.describe()),
    );
    let ended = prepared.run_interactive()?;
    step.done_with(|took| match (ended.exit, args.timeout) {
        (Exit::TimedOut, Some(seconds)) => format!("timed out after {seconds} s; QEMU stopped"),
        (exit, _) => format!("QEMU ran {took}: {exit}"),
    });
    Ok(ExitCode::from(ended.exit.process_code()))
}

/// `cargo xtask bench`: a build, then each mode's runs (one progress line
/// each), the table on stdout and the JSON file.
fn run_bench(json: Option<PathBuf>) -> xtask::Result<()> {
    prereqs::ensure(Machine::default().needs())?;
    let total = 1 + 2 * bench::RUNS.len();
    build(1, total)?;
    let mut n = 1;
    let mut measure = |icount: bool| -> xtask::Result<bench::Figures> {
        let mut boot = |run: bench::Run| {
            n += 1;
            let step = Step::start(
                n,
                total,
                &format!("{}: {}", bench::mode_name(icount), run.describe()),
            );
            let console = run.boot(icount)?;
            step.done("measured");
            Ok::<_, Error>(console)
        };
        let pavise = boot(bench::Run::Pavise)?;
        let pingpong = boot(bench::Run::PingPong)?;
        let bare = boot(bench::Run::Bare)?;
        bench::Figures::read(&pavise, &pingpong, &bare)
    };
    let tcg = measure(false)?;
    let icount = measure(true)?;
    print!("{}", bench::table(&tcg, &icount));
    let path = json.unwrap_or_else(bench::default_json_path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    std::fs::write(&path, bench::json(&tcg, &icount))
        .map_err(Error::io(format!("writing {}", path.display())))?;
    say(&format!("figures written to {}", path.display()));
    Ok(())
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

    #[test]
    fn bad_run_options_are_refused() {
        for bad in [
            &["xtask", "run", "--smp", "0"][..],
            &["xtask", "run", "--mem", "lots"],
            &["xtask", "run", "--timeout", "0"],
            &["xtask", "run", "--frobnicate"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
