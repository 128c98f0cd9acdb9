//! The harness's own guarantees, checked against a real QEMU: a machine that
//! never exits is stopped at its time-out, or as soon as the console shows
//! the text a run waits for; QEMU's own failures are told apart from the
//! hypervisor's exit statuses; a guest kernel boots bare (no hypervisor)
//! with its command line as given.

use std::time::Duration;

use pavise_tests::{
    Exit, HvStatus, Machine, boot, direct, expect_exit, expect_lines, expect_no_line, fail,
};

#[test]
fn a_machine_that_never_runs_is_stopped_at_its_time_out() {
    let mut machine = direct(1, 128);
    // -S: QEMU starts with its CPUs stopped, so it never exits by itself.
    machine.extra_qemu_args = vec!["-S".into()];
    machine.timeout = Some(Duration::from_secs(3));
    let outcome = boot(&machine);
    expect_exit(&outcome, Exit::TimedOut);
    // SIGTERM ends QEMU at once; the kill after the grace period is the
    // bound.
    let wall = outcome.wall.as_secs_f64();
    if !(3.0..8.0).contains(&wall) {
        fail(
            &outcome,
            &format!("stopped after {wall:.1} s, expected 3 to 8 s"),
        );
    }
}

#[test]
fn a_qemu_error_is_qemus_own_status() {
    let mut machine = direct(1, 128);
    machine.extra_qemu_args = vec!["-no-such-option".into()];
    let outcome = boot(&machine);
    expect_exit(&outcome, Exit::Qemu(1));
    if !outcome.qemu_stderr.contains("no-such-option") {
        fail(&outcome, "QEMU's stderr does not name the bad option");
    }
}

#[test]
fn a_guest_kernel_boots_bare_with_its_command_line() {
    let mut machine = Machine::bare(xtask::artifact("hello"));
    machine.cmdline = "alone  here".into();
    let outcome = boot(&machine);
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "hello from bare metal (no hypervisor)",
            "hello: command line 'alone here'",
            "hello: PASS (bare metal)",
        ],
    );
    expect_no_line(&outcome, "pavise:");
}

#[test]
fn a_run_is_stopped_once_the_awaited_text_comes() {
    // The spinner spins for ever after its first line.
    let mut machine = Machine::bare(xtask::artifact("spinner"));
    machine.stop_at = Some("spinner: spinning".into());
    machine.timeout = Some(Duration::from_secs(30));
    let outcome = boot(&machine);
    expect_exit(&outcome, Exit::Seen);
    expect_lines(&outcome, &["spinner: spinning"]);
    if outcome.wall > Duration::from_secs(10) {
        fail(&outcome, "the run went on long after the awaited text");
    }
}
