//! Domain scenarios: Dom0 and DomUs on SVM under QEMU. Several guests
//! print at once; a crashing guest ends alone; a spinner cannot starve the
//! others; a second vCPU comes up; a hostile guest gets Xen's errors and
//! harms nobody; a bad image is refused; timers, event channels, grants
//! and the PV console work; a kernel written for Xen runs through
//! `--domu`-style modules.

use std::time::Duration;

use pavise_tests::{Exit, HvStatus, boot, expect_exit, fail, grub};
use xtask::domains::{self, DomU};
use xtask::{Machine, RunOutcome};

fn kernel(name: &str, options: &str) -> DomU {
    let spec = if options.is_empty() {
        xtask::artifact(name).display().to_string()
    } else {
        format!("{},{options}", xtask::artifact(name).display())
    };
    domains::parse_domu(&spec).unwrap_or_else(|e| panic!("bad test DomU {spec}: {e}"))
}

fn machine(smp: u32, domus: &[DomU]) -> Machine {
    let mut m = grub(smp, 256);
    m.cmdline = "exit_when_done".to_owned();
    // Kernels are built by `boot` (or by xtask test) before QEMU starts;
    // the modules only name the files.
    m.modules = std::iter::once(domains::dom0_module())
        .chain(
            domus
                .iter()
                .enumerate()
                .map(|(i, d)| (d.kernel.clone(), domains::module_string(d, i + 1))),
        )
        .collect();
    m
}

fn expect_lines(outcome: &RunOutcome, lines: &[&str]) {
    for line in lines {
        if !outcome.console.contains(line) {
            fail(outcome, &format!("console lacks '{line}'"));
        }
    }
}

#[test]
fn dom0_and_two_domus_all_print() {
    let outcome = boot(&machine(
        2,
        &[kernel("hello", ""), kernel("hello", "mem=8")],
    ));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "dom0: up",
            "(d1) hello from domain 1",
            "(d1) hello: PASS",
            "(d2) hello from domain 2",
            "(d2) hello: PASS",
            "pavise: d1 (hello) poweroff",
            "pavise: d2 (hello) poweroff",
            "pavise: d2 (hello) built: 8 MiB, 1 vCPU",
        ],
    );
}

fn crasher_beside_hello(mode: &str, cause: &str) {
    let outcome = boot(&machine(
        2,
        &[
            kernel("crasher", &format!("cmdline={mode}")),
            kernel("hello", ""),
        ],
    ));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::GuestFailed));
    expect_lines(
        &outcome,
        &[
            &format!("(d1) crasher: {mode}"),
            &format!("pavise: d1 (crasher) crash: {cause}"),
            "(d2) hello: PASS",
            "pavise: d2 (hello) poweroff",
        ],
    );
}

#[test]
fn triple_fault_ends_only_its_domain() {
    crasher_beside_hello("triple-fault", "triple fault on vcpu0");
}

#[test]
fn undefined_instruction_ends_only_its_domain() {
    crasher_beside_hello("ud", "the guest reported a crash");
}

#[test]
fn wild_write_ends_only_its_domain() {
    crasher_beside_hello(
        "wild-write",
        "access to guest-physical 0xf0000000 outside its 16 MiB",
    );
}

#[test]
fn spinner_does_not_starve_the_others_on_one_cpu() {
    let mut m = machine(1, &[kernel("spinner", ""), kernel("hello", "")]);
    // The spinner never ends, so the run ends at its time-out.
    m.timeout = Some(Duration::from_secs(10));
    let outcome = boot(&m);
    expect_exit(&outcome, Exit::TimedOut);
    expect_lines(
        &outcome,
        &[
            "(d1) spinner: spinning",
            "(d2) hello: PASS",
            "pavise: d2 (hello) poweroff",
        ],
    );
}

#[test]
fn second_vcpu_comes_up() {
    let outcome = boot(&machine(2, &[kernel("smp", "vcpus=2")]));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "(d1) smp: vcpu 1 up",
            "(d1) smp: PASS",
            "pavise: d1 (smp) built: 16 MiB, 2 vCPUs",
        ],
    );
}

#[test]
fn hostile_guest_gets_xen_errors_and_harms_nobody() {
    let outcome = boot(&machine(2, &[kernel("hostile", ""), kernel("hello", "")]));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "(d1) hostile: PASS",
            "(d2) hello: PASS",
            "pavise: d1 (hostile) poweroff",
        ],
    );
}

#[test]
fn bad_image_is_refused_and_the_rest_runs() {
    let mut m = machine(2, &[kernel("hello", "")]);
    m.modules.push((
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"),
        "name=junk".to_owned(),
    ));
    let outcome = boot(&m);
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "pavise: d2 (junk) not built: bad kernel image: not an ELF file",
            "(d1) hello: PASS",
        ],
    );
}

#[test]
fn virq_timer_ticks_at_the_requested_rate() {
    let outcome = boot(&machine(2, &[kernel("timer", "")]));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(&outcome, &["(d1) timer: PASS"]);
}

#[test]
fn sse_state_stays_with_its_domain_on_a_shared_cpu() {
    let outcome = boot(&machine(1, &[kernel("fpu", ""), kernel("fpu", "")]));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(&outcome, &["(d1) fpu: PASS", "(d2) fpu: PASS"]);
}
