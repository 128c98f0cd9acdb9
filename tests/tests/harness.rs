//! The harness's own guarantees, checked against a real QEMU: a machine that
//! never exits is stopped at its time-out, and QEMU's own failures are told
//! apart from the hypervisor's exit statuses.

use std::time::Duration;

use pavise_tests::{Exit, boot, direct, expect_exit, fail};

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
