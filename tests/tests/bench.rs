//! The benchmark's runs, as `cargo xtask bench` makes them, with
//! `-icount shift=0` (the guest TSC then counts instructions, so the
//! figures do not depend on the host's load): Pavise with the `bench`
//! kernel as a DomU, and the same kernel bare on QEMU. Each prints every
//! figure the table needs, and the figures hold together: a null hypercall
//! costs at least the bare exit round trip, and a CPU-bound loop runs in a
//! DomU as fast as bare (nested paging, no exits).

use std::time::Duration;

use pavise_tests::{Exit, Machine, RunOutcome, expect_exit, expect_lines, fail};
use xtask::bench::{Run, figure};

/// Boots one of the benchmark's runs through the harness.
fn boot(run: Run) -> RunOutcome {
    let mut machine: Machine = run
        .machine(true)
        .unwrap_or_else(|e| panic!("cannot set up {}: {e}", run.describe()));
    // Seconds under -icount; xtask bench allows more for slower machines.
    machine.timeout = Some(Duration::from_secs(120));
    pavise_tests::boot(&machine)
}

fn need(outcome: &RunOutcome, key: &str) -> u64 {
    figure(&outcome.console, key)
        .unwrap_or_else(|| fail(outcome, &format!("no {key}= figure on the console")))
}

#[test]
fn hypercall_costs_an_exit_and_a_domu_loop_runs_at_bare_speed() {
    let pavise = boot(Run::Pavise);
    expect_exit(&pavise, Exit::Hypervisor(xtask::HvStatus::Success));
    // The figures, for `--nocapture` readers.
    for line in pavise.console.lines().filter(|l| l.contains("bench: ")) {
        println!("{}", line.trim_end());
    }
    expect_lines(
        &pavise,
        &[
            "pavise: bench: bare_vmexit_cycles=",
            "(d1) bench: hypercall_cycles=",
            "pavise: d1 (bench) poweroff",
        ],
    );
    let bare_exit = need(&pavise, "bare_vmexit_cycles");
    let hypercall = need(&pavise, "hypercall_cycles");
    let domu_loop = need(&pavise, "loop_cycles");
    for key in ["xenstore_read_cycles", "grant_copy_mibps", "memcpy_mibps"] {
        need(&pavise, key);
    }

    let bare = boot(Run::Bare);
    expect_exit(&bare, Exit::Hypervisor(xtask::HvStatus::Success));
    expect_lines(&bare, &["bench: hypercall_cycles=none loop_cycles="]);
    let bare_loop = need(&bare, "loop_cycles");

    if bare_exit == 0 || hypercall < bare_exit {
        fail(
            &pavise,
            &format!("a null hypercall ({hypercall}) is cheaper than a bare exit ({bare_exit})"),
        );
    }
    let ratio = domu_loop as f64 / bare_loop.max(1) as f64;
    if !(0.99..=1.05).contains(&ratio) {
        fail(
            &pavise,
            &format!("DomU loop / bare loop is {ratio:.4} ({domu_loop} / {bare_loop})"),
        );
    }
}
