//! Boot scenarios: Pavise comes up through GRUB and through direct boot on
//! one and several CPUs, and refuses bad machines and bad command lines with
//! a fatal boot error (exit E = 1) and the right message.

use pavise_tests::{
    Exit, HvStatus, boot, direct, expect_exit, expect_fatal, expect_in_range, expect_ready, fail,
    grub,
};

#[test]
fn grub_one_cpu_128_mib() {
    let outcome = boot(&grub(1, 128));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    let ready = expect_ready(&outcome);
    if ready.cpus != 1 {
        fail(
            &outcome,
            &format!("ready line says {} CPUs, expected 1", ready.cpus),
        );
    }
    expect_in_range(&outcome, "free memory (MiB)", ready.mib_free, 64..=128);
}

#[test]
fn grub_four_cpus_2048_mib() {
    let outcome = boot(&grub(4, 2048));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    let ready = expect_ready(&outcome);
    if ready.cpus != 4 {
        fail(
            &outcome,
            &format!("ready line says {} CPUs, expected 4", ready.cpus),
        );
    }
    expect_in_range(&outcome, "free memory (MiB)", ready.mib_free, 1800..=2048);
}

#[test]
fn direct_boot_two_cpus_256_mib() {
    let outcome = boot(&direct(2, 256));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    let ready = expect_ready(&outcome);
    if ready.cpus != 2 {
        fail(
            &outcome,
            &format!("ready line says {} CPUs, expected 2", ready.cpus),
        );
    }
    expect_in_range(&outcome, "free memory (MiB)", ready.mib_free, 128..=256);
}

#[test]
fn too_little_memory_is_a_fatal_boot_error() {
    // 24 MiB: below the hypervisor's 32 MiB, above what GRUB needs to
    // load its 5.7 MB image (at 16 MiB GRUB itself may run out).
    let outcome = boot(&grub(1, 24));
    expect_fatal(&outcome, "MiB of usable memory");
}

#[test]
fn unknown_option_is_a_fatal_boot_error() {
    let mut machine = grub(1, 128);
    machine.cmdline = "frobnicate=1".into();
    let outcome = boot(&machine);
    expect_fatal(&outcome, "unknown command-line option 'frobnicate'");
}

#[test]
fn malformed_loglvl_is_a_fatal_boot_error() {
    let mut machine = grub(1, 128);
    machine.cmdline = "loglvl=loud".into();
    let outcome = boot(&machine);
    expect_fatal(&outcome, "bad value 'loud' for loglvl=");
}

#[test]
fn too_many_cpus_is_a_fatal_boot_error() {
    let outcome = boot(&grub(33, 256));
    expect_fatal(&outcome, "supports at most 32");
}
