//! Network scenarios: Dom0's netback joins every DomU's vif and the
//! uplink NIC on one learning switch (Xen's network protocol, guest-shim's
//! netfront in the `net` test kernel, Linux's own xen-netfront); a hostile
//! front end (`nethostile`) gets netback's answers and harms no one.

use pavise_tests::{
    Exit, HvStatus, boot, console_lines, domu, expect_exit, expect_lines, expect_no_line, fail,
    line_starting, with_network,
};

const ALL_ENDED: &str = "pavise: all watched domains ended";

#[test]
fn two_test_kernels_ping_each_other() {
    let outcome = boot(&with_network(
        2,
        &[
            domu("net", "vif,cmdline=ip=10.0.2.21/24 mode=serve secs=60"),
            domu(
                "net",
                "vif,cmdline=ip=10.0.2.22/24 mode=ping peer=10.0.2.21 count=20 done=7",
            ),
        ],
        None,
    ));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "dom0: d1 vif0 mac 00:16:3e:00:01:00 on the switch",
            "dom0: d2 vif0 mac 00:16:3e:00:02:00 on the switch",
            "dom0: d1 vif0 connected",
            "(d2) net: ping 20/20 replies",
            "(d2) net: PASS",
            "(d1) net: serve ended: peer said done",
            "(d1) net: PASS",
            ALL_ENDED,
        ],
    );
    for l in outcome.console.lines().filter(|l| l.contains("DEBUG")) {
        eprintln!("{l}");
    }
    for key in [
        "(d2) net: ping",
        "(d1) net: counters",
        "(d2) net: counters",
        "dom0: d1 vif0 disconnected",
        "dom0: d2 vif0 disconnected",
    ] {
        if let Some(line) = line_starting(&outcome.console, key) {
            eprintln!("  {line}");
        }
    }
}

/// The number after `key` in `line` (`key` ends where the number starts).
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A hostile front end (d3, `nethostile`, two vifs) floods, stalls its
/// receive side and breaks every transmit rule it can, beside two healthy
/// DomUs (d1, d2) that ping and move TCP data through the same switch
/// meanwhile: it gets netback's answers (ERROR, OKAY, or its vif disabled
/// for the fatal ones, after each of which it reconnects), its forged
/// frames reach no one, its stalled vif's queue fills and drops, and d1
/// and d2 complete all their traffic, never disturbed.
#[test]
fn a_hostile_frontend_harms_no_one() {
    const BYTES: u32 = 384 << 10;
    let outcome = boot(&with_network(
        2,
        &[
            domu(
                "net",
                &format!(
                    "vif,cmdline=ip=10.0.2.21/24 mode=tcp-recv port=5001 bytes={BYTES} secs=40"
                ),
            ),
            // The ping starts about when d3's flood does and spans 2 s of
            // its 3; the transfer follows, inside the flood's tail.
            domu(
                "net",
                &format!(
                    "vif,cmdline=ip=10.0.2.22/24 mode=ping,tcp-send peer=10.0.2.21 \
                     count=20 interval=100 port=5001 bytes={BYTES} secs=40"
                ),
            ),
            domu("nethostile", "vif,vif,cmdline=flood_ms=3000"),
        ],
        None,
    ));
    let c = &outcome.console;
    let show = |key: &str| {
        for line in console_lines(c).filter(|l| l.starts_with(key)) {
            eprintln!("  {line}");
        }
    };
    for key in [
        "(d3) nethostile: tx flood",
        "(d3) nethostile: rx stall",
        "(d2) net: ping",
        "(d2) net: tcp-send",
        "(d1) net: tcp-recv",
        "(d3) nethostile: witness",
        "dom0: d1 vif0 disconnected",
        "dom0: d2 vif0 disconnected",
        "dom0: d3 vif1 disconnected",
    ] {
        show(key);
    }
    // The healthy ones first: their failure is the one that matters.
    for d in ["(d1) net: FAIL", "(d2) net: FAIL"] {
        expect_no_line(&outcome, d);
    }
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    let h = |case: &str, result: &str| format!("(d3) nethostile: {case} -> {result}");
    let fatal = |why: &str| format!("dom0: d3 vif0: fatal error ({why}");
    expect_lines(
        &outcome,
        &[
            "dom0: d3 vif0 mac 00:16:3e:00:03:00 on the switch",
            "dom0: d3 vif1 mac 00:16:3e:00:03:01 on the switch",
            "(d3) nethostile: tx flood: ",
            "(d3) nethostile: rx stall: vif1 posted 16 buffers",
            &h("good frame", "status 0"),
            &h("grant ref never granted", "status -1"),
            &h("grant for another domain", "status -1"),
            &h("frame of 0 bytes", "status -1"),
            &h("frame of 13 bytes", "status -1"),
            &h(
                "continuation larger than the frame's total",
                "2 responses, status -1",
            ),
            &h("frame of 65535 bytes in 16 slots", "16 responses, status 0"),
            &h("frame of 20 slots", "20 responses, status -1"),
            &h(
                "forged source MACs (a DomU's, a foreign one, a group one; 4 each)",
                "12 responses, status 0",
            ),
            &fatal("Malicious frontend using 20 slots, threshold 20); disabling the interface"),
            &h("frame of 22 slots", "disconnected"),
            &fatal("txreq.offset: 4000, size: 200, end: 4200); disabling the interface"),
            &h("first slot crossing its page", "disconnected"),
            &fatal("Cross page boundary, txp->offset: 4090, size: 100); disabling"),
            &h("continuation slot crossing its page", "disconnected"),
            &fatal("Impossible number of requests. req_prod 1000, req_cons 0"),
            &h("req_prod 1000 ahead", "disconnected"),
            &h("good frame again", "status 0"),
            "(d3) nethostile: witness vif1 saw 2 good frames, 0 forged",
            "(d3) nethostile: PASS",
            "pavise: d3 (nethostile) poweroff",
            "(d2) net: ping 20/20 replies",
            "(d2) net: tcp-send 393216 bytes",
            "(d2) net: 0x88b5 frames seen=",
            "(d2) net: PASS",
            "pavise: d2 (net) poweroff",
            "(d1) net: tcp-recv 393216 bytes",
            "(d1) net: 0x88b5 frames seen=",
            "(d1) net: PASS",
            "pavise: d1 (net) poweroff",
            ALL_ENDED,
        ],
    );
    let lines: Vec<&str> = console_lines(c).collect();
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    // Four fatal errors, four reconnections, and nothing else disabled.
    if count("dom0: d3 vif0: fatal error") != 4 || count("(d3) nethostile: reconnected") != 4 {
        fail(
            &outcome,
            "expected exactly four fatal errors and reconnections of d3 vif0",
        );
    }
    for d in [
        "dom0: d1 vif0: fatal",
        "dom0: d2 vif0: fatal",
        "dom0: d3 vif1: fatal",
    ] {
        expect_no_line(&outcome, d);
    }
    // The healthy ones stayed connected the whole time, saw no forged
    // frame and did see the flood.
    for d in [1, 2] {
        if count(&format!("dom0: d{d} vif0 connected")) != 1
            || count(&format!("dom0: d{d} vif0 disconnected")) != 1
        {
            fail(&outcome, &format!("d{d}'s vif did not stay connected"));
        }
        let seen =
            line_starting(c, &format!("(d{d}) net: 0x88b5 frames seen=")).unwrap_or_default();
        if number_after(seen, "spoofed=") != Some(0)
            || number_after(seen, "seen=").unwrap_or(0) == 0
        {
            fail(
                &outcome,
                &format!("d{d} saw forged frames, or none of the flood: {seen}"),
            );
        }
    }
    // Dom0 counted what it refused: d3 vif0's forged frames, d3 vif1's
    // full queue.
    let last = |prefix: &str| lines.iter().rev().find(|l| l.starts_with(prefix)).copied();
    let vif0 = last("dom0: d3 vif0 disconnected").unwrap_or_default();
    if number_after(vif0, "spoofed ") != Some(8) || number_after(vif0, "group source ") != Some(4) {
        fail(
            &outcome,
            &format!("Dom0 did not count d3's 8 forged and 4 group sources: {vif0}"),
        );
    }
    let vif1 = last("dom0: d3 vif1 disconnected").unwrap_or_default();
    if number_after(vif1, "queue full ").unwrap_or(0) == 0 {
        fail(
            &outcome,
            &format!("Dom0 counted no queue-full drops for d3 vif1: {vif1}"),
        );
    }
    // Fairness, reported only: how much of the ping ran inside the flood.
    let window = |line: Option<&str>| {
        let line = line?;
        let from = number_after(line, "from ")?;
        Some((from, number_after(line, &format!("from {from} to "))?))
    };
    if let (Some((p0, p1)), Some((f0, f1))) = (
        window(line_starting(c, "(d2) net: ping")),
        window(line_starting(c, "(d3) nethostile: tx flood")),
    ) {
        let overlap = p1.min(f1).saturating_sub(p0.max(f0));
        eprintln!(
            "  the ping ran {p0}..{p1} ms, the flood {f0}..{f1} ms: {}% of the ping inside it",
            overlap * 100 / (p1 - p0).max(1)
        );
    }
}
