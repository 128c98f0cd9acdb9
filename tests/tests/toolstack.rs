//! Toolstack scenarios: xl-like commands typed on Dom0's serial console,
//! served through Xen's privileged interface (domctl, sysctl): `list`
//! and `info` show the domains and the host; `pause` stops a counting
//! DomU and `unpause` lets it go on; `destroy` ends a paused and a
//! running domain; bad commands get one sentence.

use std::time::Duration;

use pavise_tests::{
    Exit, HvStatus, boot, console_lines, domu, expect_exit, expect_lines, fail, with_domains,
};
use xtask::TypeWhen;

const ALL_ENDED: &str = "pavise: all watched domains ended";

fn seen(text: &str, typed: &str) -> (TypeWhen, Vec<u8>) {
    (
        TypeWhen::Seen(text.to_owned()),
        format!("{typed}\r").into_bytes(),
    )
}

#[test]
fn pause_unpause_and_destroy_from_dom0s_console() {
    let mut machine = with_domains(
        2,
        &[domu("counter", "name=count"), domu("counter", "name=other")],
    );
    // Two DomU consoles: the serial input starts with Dom0.
    machine.console_input = vec![
        seen("(d1) counter: 3", "info"),
        seen("dom0: console input: info", "pause 1"),
        seen("dom0: paused d1", "list"),
        seen("dom0: console input: list", "unpause 2"),
        seen("dom0: console input: unpause 2", "pause 2"),
        seen("dom0: paused d2", "destroy 2"),
        seen("pavise: d2 (other) destroyed", "pause 9"),
        seen("dom0: console input: pause 9", "unpause 1"),
        seen("dom0: unpaused d1", "list --json"),
        seen("dom0: console input: list --json", "frob"),
        seen("dom0: console input: frob", "destroy 1"),
    ];
    machine.timeout = Some(Duration::from_secs(90));
    let outcome = boot(&machine);
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "(d1) counter: 3",
            "dom0: console input: info",
            "dom0: paused d1",
            "dom0: console input: list",
            "Name                                        ID   Mem VCPUs",
            "dom0: cannot unpause d2: ",
            "dom0: paused d2",
            "pavise: d2 (other) destroyed",
            "dom0: cannot pause d9: ",
            "dom0: unpaused d1",
            "[{\"domid\":0,\"name\":\"Domain-0\"",
            "dom0: unknown command 'frob'",
            "pavise: d1 (count) destroyed",
            ALL_ENDED,
        ],
    );
    let lines: Vec<&str> = console_lines(&outcome.console).collect();
    let at = |text: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(text))
            .unwrap_or_else(|| fail(&outcome, &format!("no line {text:?}")))
    };
    // The list while d1 is paused shows it with state 'p'.
    let listed = at("dom0: paused d1");
    let row = lines[listed..]
        .iter()
        .find(|l| l.starts_with("count "))
        .unwrap_or_else(|| fail(&outcome, "the second list has no row for d1"));
    if !row.contains("--p---") && !row.contains("-bp---") && !row.contains("r-p---") {
        fail(&outcome, &format!("d1 is not shown paused: {row:?}"));
    }
    for name in ["Domain-0 ", "count ", "other "] {
        if !lines.iter().any(|l| l.starts_with(name)) {
            fail(&outcome, &format!("list shows no {name:?}"));
        }
    }
    for key in ["nr_cpus                : 2", "xen_major              : 4"] {
        if !lines.iter().any(|l| l.starts_with(key)) {
            fail(&outcome, &format!("info shows no {key:?}"));
        }
    }
    // d1 counts before the pause, not while paused, and again after.
    let (paused, unpaused) = (at("dom0: paused d1"), at("dom0: unpaused d1"));
    let counting = |range: &[&str]| {
        range
            .iter()
            .filter(|l| l.starts_with("(d1) counter: "))
            .count()
    };
    // One line may have been on its way when the pause landed.
    if counting(&lines[paused + 1..unpaused]) > 1 {
        fail(&outcome, "d1 went on counting while paused");
    }
    let destroyed = at("pavise: d1 (count) destroyed");
    if counting(&lines[unpaused..destroyed]) == 0 {
        fail(&outcome, "d1 did not count again after unpause");
    }
}

/// Sends `command` over the control channel once Dom0 answers there.
fn ask(socket: &std::path::Path, command: &str) -> xtask::xl::Answer {
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match xtask::xl::request(socket, command) {
            Ok(answer) => return answer,
            Err(e) if std::time::Instant::now() > give_up => {
                panic!("no answer to {command:?} over the control channel: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[test]
fn xl_from_the_host_over_the_control_channel() {
    let mut machine = with_domains(
        2,
        &[domu("counter", "name=count"), domu("counter", "name=other")],
    );
    let dir = xtask::xl::socket_dir();
    std::fs::create_dir_all(&dir).expect("the socket directory");
    let socket = dir.join(format!("test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    machine.control = Some(socket.clone());
    machine.timeout = Some(Duration::from_secs(90));
    let client = std::thread::spawn(move || {
        let mut answers = Vec::new();
        // Dom0 is up once it lists the DomU.
        loop {
            let list = ask(&socket, "list --json");
            if list.ok && list.text.contains("\"name\":\"count\"") {
                answers.push(("list --json", list));
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for command in [
            "info --json",
            "pause count",
            "list --json",
            "pause 0",
            "unpause 1",
            "unpause 1",
            "destroy 1",
            "dmesg",
            "dmesg -c",
            "dmesg",
        ] {
            answers.push((command, ask(&socket, command)));
        }
        // The last DomU's end stops the machine: its answer may not
        // make it back.
        let _ = xtask::xl::request(&socket, "destroy other");
        let _ = std::fs::remove_file(&socket);
        answers
    });
    let outcome = boot(&machine);
    let answers = client.join().expect("the client");
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    let expect = |i: usize, ok: bool, needle: &str| {
        let (command, answer) = &answers[i];
        if answer.ok != ok || !answer.text.contains(needle) {
            fail(
                &outcome,
                &format!("{command:?} answered {answer:?}; expected ok={ok} with {needle:?}"),
            );
        }
    };
    expect(0, true, "{\"domid\":0,\"name\":\"Domain-0\"");
    expect(1, true, "\"nr_cpus\":2,");
    expect(2, true, "dom0: paused d1");
    // 16 MiB less the RAM page its shared info replaced: Xen's
    // add_to_physmap frees that page, so tot_pages is 4095 and xl's
    // KiB / 1024 rounds down to 15.
    expect(
        3,
        true,
        "\"name\":\"count\",\"memory\":15,\"vcpus\":1,\"state\":\"-",
    );
    if !answers[3].1.text.contains("p---\"") {
        fail(
            &outcome,
            &format!("d1 not listed as paused: {:?}", answers[3].1),
        );
    }
    expect(4, false, "Dom0 cannot pause itself");
    expect(5, true, "dom0: unpaused d1");
    expect(
        6,
        false,
        "cannot unpause d1: not in a state that allows it (-EINVAL)",
    );
    expect(7, true, "dom0: destroyed d1");
    // xl dmesg: the hypervisor's console ring, with the DomUs' CONSOLEIO
    // lines and the hypervisor's own, without Dom0's output (Xen's
    // console_to_ring is off); after -c, only what came since.
    expect(8, true, "(d1) counter: ");
    expect(8, true, "pavise: d1 (count) destroyed");
    expect(9, true, "pavise: d1 (count) destroyed");
    for (i, absent) in [
        (8, "dom0: destroyed d1"),
        (10, "pavise: d1 (count) destroyed"),
    ] {
        if answers[i].1.text.contains(absent) {
            fail(
                &outcome,
                &format!(
                    "{:?} answered {:?}: it has {absent:?}",
                    answers[i].0, answers[i].1
                ),
            );
        }
    }
    expect_lines(
        &outcome,
        &[
            "pavise: d1 (count) destroyed",
            "pavise: d2 (other) destroyed",
            ALL_ENDED,
        ],
    );
}
