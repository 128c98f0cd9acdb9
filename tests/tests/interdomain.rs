//! Inter-domain scenarios: two DomUs rendezvous through XenStore (served by
//! Dom0), ping-pong over an interdomain event channel and share a page with
//! grants (map, read, write, unmap, copy); XenStore semantics seen from a
//! DomU (permissions, watches, transactions); and an intruder that attacks
//! both while they work, getting Xen's errors.

use std::time::Duration;

use pavise_tests::{
    Exit, HvStatus, boot, console_lines, domu, expect_exit, expect_lines, fail, with_domains,
};
use xtask::Machine;
use xtask::machine::TypeWhen;

/// Dom0 and DomUs given as (test kernel, command line), on two CPUs.
fn machine(domus: &[(&str, &str)]) -> Machine {
    let domus: Vec<_> = domus
        .iter()
        .map(|(kernel, cmdline)| domu(kernel, &format!("cmdline={cmdline}")))
        .collect();
    with_domains(2, &domus)
}

#[test]
fn rendezvous_ping_pong_and_grants() {
    let outcome = boot(&machine(&[
        ("pingpong", "pong peer=2"),
        ("pingpong", "ping peer=1"),
    ]));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "dom0: XenStore serving 2 domains",
            "(d2) ping: evtchn_roundtrip_cycles=",
            "(d2) ping: PASS",
            "(d1) pong: PASS",
        ],
    );
}

#[test]
fn xenstore_permissions_watches_transactions() {
    let outcome = boot(&machine(&[("xstest", "peer=2"), ("xstest", "peer=1")]));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(&outcome, &["(d1) xstest: PASS", "(d2) xstest: PASS"]);
}

#[test]
fn intruder_gets_xen_errors_and_the_others_carry_on() {
    let outcome = boot(&machine(&[
        ("pingpong", "pong peer=2 ro=3 linger=3"),
        ("pingpong", "ping peer=1 linger=3"),
        ("intruder", "pong=1 ping=2"),
    ]));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &["(d3) intruder: PASS", "(d2) ping: PASS", "(d1) pong: PASS"],
    );
}

#[test]
fn pv_console_ring_is_drained_by_dom0() {
    // ringlog writes twice what the ring holds and waits for each drain;
    // its lines reach the console only through Dom0.
    let outcome = boot(&machine(&[("ringlog", "")]));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "dom0: serving 1 console",
            "(d1) ringlog 63....",
            "(d1) ringlog: PASS",
        ],
    );
    // A line written with CONSOLEIO_write and to the ring is shown once;
    // one written to the ring twice, twice.
    let shown = |line: &str| {
        console_lines(&outcome.console)
            .filter(|l| *l == line)
            .count()
    };
    for (line, times) in [
        ("(d1) ringlog both ways 1", 1),
        ("(d1) ringlog both ways 2", 1),
        ("(d1) ringlog ring only", 2),
    ] {
        if shown(line) != times {
            fail(
                &outcome,
                &format!("{line:?} shown {} times, not {times}", shown(line)),
            );
        }
    }
}

#[test]
fn console_input_reaches_dom0_through_virq_console() {
    // Dom0 alone, booted directly (GRUB would take the typed bytes); Dom0
    // idles for ever, so the run is stopped once Dom0 has echoed the line
    // (or fails at the time-out).
    let mut m = pavise_tests::direct(1, 128);
    m.modules = vec![(xtask::artifact("dom0"), String::new())];
    m.console_input = vec![(
        TypeWhen::After(Duration::from_secs(2)),
        b"hello pavise\r".to_vec(),
    )];
    m.stop_at = Some("dom0: console input: hello pavise".to_owned());
    m.timeout = Some(Duration::from_secs(30));
    let outcome = boot(&m);
    expect_exit(&outcome, Exit::Seen);
    expect_lines(&outcome, &["dom0: console input: hello pavise"]);
}

#[test]
fn fuzzers_get_errors_and_a_healthy_pair_carries_on() {
    // Two DomUs throw 5 000 seeded random hypercalls and MSR accesses each
    // while a pair runs its event-channel ping-pong with grants: every
    // call gets an answer (no domain ends but by its own power-off, the
    // hypervisor never faults), the pair completes, and free memory after
    // the DomUs is what the same machine leaves with fuzzers that make no
    // calls (`cargo xtask fuzz` at 10^4 calls).
    let fuzz = xtask::fuzz::GuestFuzz {
        calls: 10_000,
        seed: 7,
        fuzzers: 2,
        qemu_args: Vec::new(),
    };
    let frames = |calls_each: u64| {
        let machine = xtask::fuzz::machine(&fuzz, calls_each).expect("the fuzz machine");
        let outcome = boot(&machine);
        expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
        expect_lines(
            &outcome,
            &[
                "(d1) pong: PASS",
                "(d2) ping: PASS",
                &format!("(d3) fuzzer: PASS {calls_each} calls"),
                &format!("(d4) fuzzer: PASS {calls_each} calls"),
                "pavise: all watched domains ended",
                "pavise: free memory: ",
            ],
        );
        let (after, before) = xtask::fuzz::free_frames(&outcome.console)
            .unwrap_or_else(|| fail(&outcome, "no free-memory figures"));
        after - before
    };
    let baseline = frames(0);
    let fuzzed = frames(5000);
    assert_eq!(
        fuzzed, baseline,
        "5000 calls each changed free memory by {fuzzed:+} frames, no calls by {baseline:+}: a leak"
    );
}

#[test]
fn a_short_soak_loses_nothing_and_leaks_nothing() {
    // `cargo xtask soak` for 8 s with two pairs: every round's event comes
    // back, every grant copy arrives whole, every XenStore read gives what
    // was written, and the free frames and Dom0's XenStore (nodes,
    // watches, transactions) after the DomUs are what the same machine
    // without load leaves.
    let soak = xtask::soak::Soak {
        seconds: 8,
        pairs: 2,
        qemu_args: Vec::new(),
    };
    let run = |seconds: u64| {
        let outcome = boot(&xtask::soak::machine(&soak, seconds).expect("the soak machine"));
        expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
        xtask::soak::verdict(&outcome.console, &soak, std::path::Path::new("console"))
            .unwrap_or_else(|e| fail(&outcome, &e.to_string()))
    };
    let baseline = run(0);
    let loaded = run(soak.seconds);
    assert!(
        loaded.rounds.iter().all(|&r| r > 100),
        "too few rounds for a soak: {:?}",
        loaded.rounds
    );
    if let Some(leak) = xtask::soak::leaks(&loaded, &baseline) {
        panic!("{leak}");
    }
}
