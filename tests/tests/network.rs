//! Network scenarios: Dom0's netback joins every DomU's vif and the
//! uplink NIC on one learning switch (Xen's network protocol, guest-shim's
//! netfront in the `net` test kernel, Linux's own xen-netfront).

use pavise_tests::{
    Exit, HvStatus, boot, domu, expect_exit, expect_lines, line_starting, with_network,
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
