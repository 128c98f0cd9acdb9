//! `cargo xtask test`: host unit tests, one build of the bare-metal crates,
//! then the QEMU scenario tests (SVM) and the VT-x subset under Bochs
//! against that build, each phase timed. With `--backend vmx`: every
//! scenario Bochs can run, on VT-x, instead of the last two.

use std::time::{Duration, Instant};

use crate::bare_metal;
use crate::error::{Error, Result};
use crate::machine::{BACKEND_ENV, Backend, KVM_CPU_ENV};
use crate::prereqs::{self, Need};
use crate::progress::{Step, say, seconds};
use crate::workspace;

/// The package holding the QEMU scenario tests.
pub const SCENARIO_PACKAGE: &str = "pavise-tests";

/// The environment variable telling the scenario tests that the bare-metal
/// crates are already built, so they must not run cargo themselves.
pub const PREBUILT_ENV: &str = "PAVISE_PREBUILT";

/// The scenarios the usual suite runs again on VT-x under Bochs (file,
/// test): boot, domains, a hostile guest, crash isolation, event-channel
/// ping-pong with grants, XenStore.
pub const VTX_SUBSET: &[(&str, &str)] = &[
    ("domains", "dom0_and_two_domus_all_print"),
    ("domains", "second_vcpu_comes_up"),
    ("domains", "hostile_guest_gets_xen_errors_and_harms_nobody"),
    ("domains", "triple_fault_ends_only_its_domain"),
    ("domains", "wild_write_ends_only_its_domain"),
    ("interdomain", "rendezvous_ping_pong_and_grants"),
    ("interdomain", "xenstore_permissions_watches_transactions"),
];

/// The scenario files `--backend vmx` runs under Bochs: those whose
/// machines need nothing Bochs lacks (disks, the uplink, the control
/// channel, console input, QEMU's -icount: see `Machine::check_backend`).
pub const BOCHS_SCENARIO_FILES: &[&str] = &["boot", "domains", "interdomain", "traps"];

/// Scenarios of those files that need what Bochs lacks.
const NOT_ON_BOCHS: &[&str] = &[
    // 33 CPUs: Bochs aborts at start-up (signal 6) instead of booting.
    "too_many_cpus_is_a_fatal_boot_error",
    // Types on the serial console: Bochs's serial port here only writes.
    "console_input_reaches_dom0_through_virq_console",
];

/// Runs the whole test suite; fails if any phase fails. Stops at the first
/// failing phase (later phases depend on the earlier ones or would only
/// repeat their failure).
pub fn run(backend: Backend, kvm: bool) -> Result<()> {
    let start = Instant::now();
    let mut timings: Vec<(&'static str, Duration)> = Vec::new();
    let outcome = phases(backend, kvm, &mut timings);
    let summary: Vec<String> = timings
        .iter()
        .map(|(name, took)| format!("{name} {}", seconds(*took)))
        .collect();
    say(&format!(
        "{}; total {}",
        summary.join(", "),
        seconds(start.elapsed())
    ));
    match outcome {
        Ok(()) => {
            say("all tests passed");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn phases(backend: Backend, kvm: bool, timings: &mut Vec<(&'static str, Duration)>) -> Result<()> {
    // Missing QEMU, Bochs or GRUB tools would fail a scenario phase: say so
    // before phase 1.
    prereqs::ensure(&[Need::Qemu, Need::Bochs, Need::GrubImage])?;
    let phases = match backend {
        Backend::Svm => 4,
        Backend::Vmx => 3,
    };

    // 1. Host unit tests of every crate except the QEMU scenarios (and the
    // guest kernels, which are bare-metal binaries only).
    let mut unit = workspace::cargo();
    unit.args(["test", "--workspace", "--exclude", SCENARIO_PACKAGE]);
    for kernel in bare_metal::kernel_packages()? {
        unit.args(["--exclude", &kernel]);
    }
    let step = Step::start(
        1,
        phases,
        &format!("host unit tests ({})", workspace::describe(&unit)),
    );
    let result = bare_metal::run_inheriting(unit);
    let verdict = if result.is_ok() { "passed" } else { "FAILED" };
    timings.push(("host unit tests", step.done(verdict)));
    result.map_err(failed("host unit tests"))?;

    // 2. The bare-metal crates, once, for every scenario.
    let packages = bare_metal::packages()?.join(", ");
    let step = Step::start(
        2,
        phases,
        &format!("building {packages} (release, {})", bare_metal::TARGET),
    );
    let result = bare_metal::build_all();
    timings.push((
        "build",
        step.done(if result.is_ok() { "built" } else { "FAILED" }),
    ));
    result?;

    if backend == Backend::Vmx {
        // 3. Every scenario Bochs can run, on the VT-x backend.
        let mut scenarios = scenario_tests(BOCHS_SCENARIO_FILES);
        scenarios.args(NOT_ON_BOCHS.iter().flat_map(|name| ["--skip", name]));
        scenarios.env(BACKEND_ENV, Backend::Vmx.env_value());
        return scenario_phase(3, phases, "VT-x scenarios under Bochs", scenarios, timings);
    }

    // 3. The QEMU scenarios, one QEMU at a time, against that build (under
    // KVM if asked and it can run Pavise's guests).
    let mut scenarios = scenario_tests(&[]);
    if kvm {
        match crate::kvm::check(&bare_metal::artifact(crate::kvm::PROBE)) {
            Ok(cpu) => {
                say(&format!(
                    "KVM offers guests nested virtualization: the QEMU scenarios run with -accel kvm -cpu {cpu}"
                ));
                scenarios.env(KVM_CPU_ENV, cpu);
            }
            Err(why) => say(&format!(
                "KVM cannot run Pavise's guests: {why}; the QEMU scenarios run under TCG"
            )),
        }
    }
    scenario_phase(3, phases, "QEMU scenarios (SVM)", scenarios, timings)?;

    // 4. The VT-x subset under Bochs.
    let mut files: Vec<&str> = VTX_SUBSET.iter().map(|(file, _)| *file).collect();
    files.dedup();
    let mut vtx = scenario_tests(&files);
    vtx.arg("--exact")
        .args(VTX_SUBSET.iter().map(|(_, test)| *test))
        .env(BACKEND_ENV, Backend::Vmx.env_value());
    scenario_phase(4, phases, "VT-x subset under Bochs", vtx, timings)
}

/// `cargo test` of the scenario package (only the named test files, if
/// any), one emulator at a time, against the build of phase 2; test
/// arguments follow.
fn scenario_tests(files: &[&str]) -> std::process::Command {
    let mut command = workspace::cargo();
    command.args(["test", "--package", SCENARIO_PACKAGE]);
    for file in files {
        command.args(["--test", file]);
    }
    command
        .args(["--", "--test-threads=1"])
        .env(PREBUILT_ENV, "1");
    command
}

fn scenario_phase(
    number: usize,
    phases: usize,
    name: &'static str,
    command: std::process::Command,
    timings: &mut Vec<(&'static str, Duration)>,
) -> Result<()> {
    let step = Step::start(number, phases, &format!("{name} (one at a time)"));
    let result = bare_metal::run_inheriting(command);
    let verdict = if result.is_ok() { "passed" } else { "FAILED" };
    timings.push((name, step.done(verdict)));
    result.map_err(failed(name))
}

/// Turns "cargo test ran and failed" into a failed phase; other errors
/// (cargo could not start, …) stay what they are.
fn failed(phase: &'static str) -> impl FnOnce(Error) -> Error {
    move |e| match e {
        Error::CommandFailed { .. } => Error::TestsFailed {
            phases: vec![phase],
        },
        other => other,
    }
}
