//! Trap scenarios: a fault inside the hypervisor (forced with `selftest=`)
//! prints the exception, vector and a register dump, and stops the machine
//! with exit E = 2 — never a triple-fault reboot loop. The stack overflow
//! case proves the guard page below the stack and the double-fault IST.

use pavise_tests::{Exit, HvStatus, boot, direct, expect_exit, fail};

fn selftest(name: &str, needles: &[&str]) {
    let mut machine = direct(2, 128);
    machine.cmdline = format!("selftest={name}");
    let outcome = boot(&machine);
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Panic));
    for needle in needles {
        if !outcome.console.contains(needle) {
            fail(&outcome, &format!("console lacks '{needle}'"));
        }
    }
}

#[test]
fn page_fault_dumps_registers_and_cr2() {
    selftest(
        "page-fault",
        &[
            "pavise: exception #PF page fault (vector 14",
            "cr2 0x0000000000000008",
            "rip ",
            "backtrace:",
        ],
    );
}

#[test]
fn invalid_opcode_is_reported() {
    selftest(
        "invalid-opcode",
        &["pavise: exception #UD invalid opcode (vector 6"],
    );
}

#[test]
fn stack_overflow_hits_the_guard_page_and_double_faults_on_its_own_stack() {
    selftest(
        "stack-overflow",
        &["pavise: exception #DF double fault (vector 8"],
    );
}

#[test]
fn panic_prints_location_and_backtrace() {
    selftest(
        "panic",
        &[
            "pavise: panic on cpu0 at hypervisor/src/boot.rs",
            "selftest: panicking on purpose",
            "backtrace: 0x",
        ],
    );
}
