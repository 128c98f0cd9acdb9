//! Toolstack scenarios that build domains at run time: Dom0 makes each
//! with createdomain, max_mem, populate_physmap, foreign mappings and
//! setvcpucontext from a kernel it holds and an xl.cfg config.
//!
//! - twenty DomUs created and destroyed one after another over the
//!   control channel: each runs, `list` shows it while it lives and not
//!   after, and free memory is back at its starting value every time;
//! - `on_crash = "restart"` restarts a crasher a bounded number of times,
//!   `"destroy"` does not restart, `"preserve"` keeps it shut down until
//!   `destroy`;
//! - bad configs (unknown key, bad value, missing kernel, more memory
//!   than is free) are refused with one sentence and leave nothing built;
//! - `cargo xtask xl create PATH` sends Dom0 the config and kernel it
//!   lacks (once: a second create sends nothing), and a damaged, too big
//!   or badly named upload is refused with one sentence;
//! - run-time domains get the disks and network interfaces their configs
//!   name: a disk serves one domain at a time and goes to the next once
//!   the first is destroyed (what it wrote is there), interfaces get
//!   Xen-OUI MACs and two created domains ping each other.
//!
//! Each machine also boots a counting DomU (`anchor`) at boot time:
//! destroying it last ends the run (runs stop once the boot-time DomUs
//! have ended).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pavise_tests::{Exit, HvStatus, boot, console_lines, domu, expect_exit, fail, with_domains};
use xtask::TypeWhen;

/// A config file for this test, written under target/.
fn config(name: &str, text: &str) -> PathBuf {
    let dir = xtask::artifact("counter")
        .parent()
        .expect("the kernels' directory")
        .join("test-configs");
    std::fs::create_dir_all(&dir).expect("the configs' directory");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing a config");
    path
}

fn kernel(name: &str) -> String {
    xtask::artifact(name).display().to_string()
}

fn control_socket(machine: &mut xtask::Machine, tag: &str) -> PathBuf {
    let dir = xtask::xl::socket_dir();
    std::fs::create_dir_all(&dir).expect("the socket directory");
    let socket = dir.join(format!("{tag}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    machine.control = Some(socket.clone());
    socket
}

/// Sends `command` over the control channel once Dom0 answers there.
fn ask(socket: &Path, command: &str) -> xtask::xl::Answer {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        match xtask::xl::request(socket, command) {
            Ok(answer) => return answer,
            Err(e) if Instant::now() > give_up => {
                panic!("no answer to {command:?} over the control channel: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The value of `"key":N` in a JSON text (enough for xl's flat objects).
fn number(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Polls until `done` holds for an answer to `command` (10 s at most).
fn until(socket: &Path, command: &str, done: impl Fn(&str) -> bool) -> Result<String, String> {
    let give_up = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = ask(socket, command);
        if answer.ok && done(&answer.text) {
            return Ok(answer.text);
        }
        if Instant::now() > give_up {
            return Err(answer.text);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

const CYCLES: usize = 20;

#[test]
fn twenty_domains_created_and_destroyed_one_after_another() {
    let mut machine = with_domains(2, &[domu("counter", "name=anchor")]);
    let cfg = config(
        "count.cfg",
        &format!(
            "name = \"count\"\ntype = \"pvh\"\nkernel = \"{}\"\nmemory = 8\nvcpus = 1\n",
            kernel("counter")
        ),
    );
    machine.hold_file(&cfg).expect("holding count.cfg");
    machine
        .hold_file(xtask::artifact("counter"))
        .expect("holding the counter kernel");
    let socket = control_socket(&mut machine, "create");
    machine.timeout = Some(Duration::from_secs(240));
    let client = std::thread::spawn(move || -> Result<Vec<u16>, String> {
        until(&socket, "list --json", |t| {
            t.contains("\"name\":\"anchor\"")
        })?;
        let free = |text: &str| number(text, "free_memory");
        let start = free(&until(&socket, "info --json", |t| free(t).is_some())?);
        let mut ids = Vec::new();
        for round in 0..CYCLES {
            let created = ask(&socket, "create count.cfg");
            if !created.ok {
                return Err(format!("create {round} refused: {}", created.text));
            }
            let id: u16 = created
                .text
                .split_whitespace()
                .find_map(|w| w.strip_prefix('d').and_then(|n| n.parse().ok()))
                .ok_or_else(|| format!("no domain id in {:?}", created.text))?;
            ids.push(id);
            // It shows in the list and gets CPU time.
            let row = format!("\"domid\":{id},\"name\":\"count\"");
            until(&socket, "list --json", |t| {
                t.split("},{")
                    .any(|r| r.contains(&row) && number(r, "cpu_time").is_some())
            })
            .map_err(|t| format!("round {round}: d{id} not listed: {t}"))?;
            // Time for its first lines.
            std::thread::sleep(Duration::from_millis(300));
            let destroyed = ask(&socket, "destroy count");
            if !destroyed.ok {
                return Err(format!("destroy {round} refused: {}", destroyed.text));
            }
            until(&socket, "list --json", |t| {
                !t.contains("\"name\":\"count\"")
            })
            .map_err(|t| format!("round {round}: d{id} still listed: {t}"))?;
            until(&socket, "info --json", |t| free(t) == start).map_err(|t| {
                format!(
                    "round {round}: free memory {:?} MiB did not come back to {start:?}",
                    free(&t)
                )
            })?;
        }
        // The run ends with it: the answer may not make it back.
        let _ = xtask::xl::request(&socket, "destroy anchor");
        Ok(ids)
    });
    let outcome = boot(&machine);
    let ids = match client.join().expect("the client thread") {
        Ok(ids) => ids,
        Err(e) => fail(&outcome, &e),
    };
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    let lines: Vec<&str> = console_lines(&outcome.console).collect();
    let mut seen_ids = ids.clone();
    seen_ids.dedup();
    if seen_ids.len() != CYCLES {
        fail(&outcome, &format!("ids were reused at once: {ids:?}"));
    }
    for id in ids {
        let counted = format!("(d{id}) counter: counting");
        if !lines.iter().any(|l| l.starts_with(&counted)) {
            fail(&outcome, &format!("d{id} never ran: no {counted:?}"));
        }
    }
}

fn seen(text: &str, typed: &str) -> (TypeWhen, Vec<u8>) {
    (
        TypeWhen::Seen(text.to_owned()),
        format!("{typed}\r").into_bytes(),
    )
}

#[test]
fn on_crash_restarts_destroys_or_preserves() {
    let mut machine = with_domains(2, &[domu("counter", "name=anchor")]);
    let crasher = |name: &str, action: &str| {
        config(
            &format!("{name}.cfg"),
            &format!(
                "name = \"{name}\"\nkernel = \"{}\"\nmemory = 4\ncmdline = \"ud\"\non_crash = \"{action}\"\n",
                kernel("crasher")
            ),
        )
    };
    for (name, action) in [
        ("again", "restart"),
        ("once", "destroy"),
        ("kept", "preserve"),
    ] {
        machine
            .create_config(crasher(name, action))
            .unwrap_or_else(|e| panic!("config {name}: {e}"));
    }
    machine.console_input = vec![
        seen("restarted 3 times already, so destroyed", "list"),
        seen("dom0: console input: list", "destroy kept"),
        seen("dom0: destroyed d", "destroy anchor"),
    ];
    machine.timeout = Some(Duration::from_secs(120));
    let outcome = boot(&machine);
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    let lines: Vec<&str> = console_lines(&outcome.console).collect();
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    // `again`: the first run and three restarts crash, then it is given up.
    if count("(again) crashed; restarted as d") != 3 {
        fail(&outcome, "again was not restarted exactly three times");
    }
    if count("(again) crashed again; restarted 3 times already, so destroyed") != 1 {
        fail(&outcome, "again was not given up after three restarts");
    }
    if count("(once) crashed; destroyed") != 1 || count("(once) crashed; restarted") != 0 {
        fail(&outcome, "once was not simply destroyed");
    }
    if count("(kept) crashed; preserved") != 1 {
        fail(&outcome, "kept was not preserved");
    }
    // The preserved one is listed shut down (crashed) until destroyed.
    let row = lines
        .iter()
        .find(|l| l.starts_with("kept "))
        .unwrap_or_else(|| fail(&outcome, "list shows no row for kept"));
    let state = row.split_whitespace().nth(4).unwrap_or("");
    if !state.contains('s') || !state.contains('c') {
        fail(&outcome, &format!("kept is not shown crashed: {row:?}"));
    }
}

#[test]
fn bad_configs_are_refused_and_leave_nothing_built() {
    let mut machine = with_domains(2, &[domu("counter", "name=anchor")]);
    let counter = kernel("counter");
    let bad = [
        (
            "unknown.cfg",
            format!("name = \"u\"\nkernel = \"{counter}\"\ncolour = \"blue\"\n"),
            "unknown",
        ),
        (
            "value.cfg",
            format!("name = \"v\"\nkernel = \"{counter}\"\nmemory = \"lots\"\n"),
            "memory",
        ),
        (
            "nokernel.cfg",
            "name = \"n\"\nkernel = \"/nowhere/vmlinuz\"\n".to_owned(),
            "vmlinuz is not among Dom0's files",
        ),
        (
            "huge.cfg",
            format!("name = \"h\"\nkernel = \"{counter}\"\nmemory = 2048\n"),
            "MiB are free",
        ),
    ];
    for (name, text, _) in &bad {
        machine
            .hold_file(config(name, text))
            .expect("holding a bad config");
    }
    machine
        .hold_file(xtask::artifact("counter"))
        .expect("holding the counter kernel");
    let socket = control_socket(&mut machine, "badcfg");
    machine.timeout = Some(Duration::from_secs(120));
    let expected: Vec<(String, String)> = bad
        .iter()
        .map(|(n, _, why)| (n.to_string(), why.to_string()))
        .collect();
    let client = std::thread::spawn(move || -> Result<(), String> {
        until(&socket, "list --json", |t| {
            t.contains("\"name\":\"anchor\"")
        })?;
        let free = |text: &str| number(text, "free_memory");
        let start = free(&until(&socket, "info --json", |t| free(t).is_some())?);
        for (name, why) in &expected {
            let answer = ask(&socket, &format!("create {name}"));
            if answer.ok || !answer.text.contains(why.as_str()) {
                return Err(format!(
                    "create {name}: wanted a refusal saying {why:?}, got {:?}",
                    answer.text
                ));
            }
            if answer.text.trim().lines().count() != 1 {
                return Err(format!(
                    "create {name}: not one sentence: {:?}",
                    answer.text
                ));
            }
            let list = ask(&socket, "list --json");
            if list.text.matches("\"domid\"").count() != 2 {
                return Err(format!("create {name} left a domain: {}", list.text));
            }
            until(&socket, "info --json", |t| free(t) == start)
                .map_err(|t| format!("create {name} kept memory: {t}"))?;
        }
        // The run ends with it: the answer may not make it back.
        let _ = xtask::xl::request(&socket, "destroy anchor");
        Ok(())
    });
    let outcome = boot(&machine);
    if let Err(e) = client.join().expect("the client thread") {
        fail(&outcome, &e);
    }
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
}

/// `cargo xtask bench`'s toolstack run (Dom0's `bench-create`): a
/// hundred and more create→destroy cycles in a row, free memory back
/// after each batch, and figures that make sense.
#[test]
fn bench_create_cycles_and_memory_comes_back() {
    pavise_tests::ensure_built().unwrap_or_else(|e| panic!("cannot build: {e}"));
    let figures = xtask::create_bench::measure(false)
        .unwrap_or_else(|e| panic!("the toolstack bench failed: {e}"));
    eprintln!("{}", xtask::create_bench::table(&figures, &figures));
    assert!(figures.memory_back);
    assert!(figures.build_us > 0 && figures.first_line_us >= figures.build_us);
    assert!(figures.per_cycle_us.iter().all(|&us| us > 0));
}

/// Disks and vifs in configs created at run time: the writer's disk is
/// refused to a second domain while the writer lives and given to it once
/// the writer is gone (it reads what the writer wrote); a config naming a
/// disk the machine does not hold, or a MAC another interface has, is
/// refused and leaves nothing built; two created domains ping each other
/// over their vifs, one with a MAC its config gives, one with a default.
#[test]
fn run_time_domains_get_their_disks_and_interfaces() {
    let image = pavise_tests::fresh_image("toolstack-shared");
    let disk_cfg = |name: &str, cmdline: &str| {
        config(
            &format!("{name}.cfg"),
            &format!(
                "name = \"{name}\"\nkernel = \"{}\"\nmemory = 8\n\
                 disk = [ \"{},raw,xvda,rw\" ]\ncmdline = \"{cmdline}\"\n",
                kernel("disk"),
                image.display()
            ),
        )
    };
    let net_cfg = |name: &str, vif: &str, cmdline: &str| {
        config(
            &format!("{name}.cfg"),
            &format!(
                "name = \"{name}\"\nkernel = \"{}\"\nmemory = 16\n\
                 vif = [ \"{vif}\" ]\ncmdline = \"{cmdline}\"\n",
                kernel("net")
            ),
        )
    };
    let mut machine = with_domains(2, &[domu("counter", "name=anchor")]);
    for cfg in [
        disk_cfg("writer", "mode=write seed=11"),
        disk_cfg("reader", "mode=check seed=11"),
        net_cfg("server", "", "ip=10.0.2.21/24 mode=serve secs=60"),
        net_cfg(
            "pinger",
            "mac=00:16:3e:12:34:56",
            "ip=10.0.2.22/24 mode=ping peer=10.0.2.21 count=5 done=7",
        ),
    ] {
        machine
            .hold_config(&cfg)
            .unwrap_or_else(|e| panic!("{}: {e}", cfg.display()));
    }
    // Held as plain files: the machine has neither its disk nor a free MAC.
    let lost = config(
        "lost.cfg",
        &format!(
            "name = \"lost\"\nkernel = \"{}\"\nmemory = 8\ndisk = [ \"/nowhere/gone.img,raw,xvda,rw\" ]\n",
            kernel("disk")
        ),
    );
    let twin = net_cfg(
        "twin",
        "mac=00:16:3e:12:34:56",
        "ip=10.0.2.23/24 mode=serve",
    );
    machine.hold_file(&lost).expect("holding lost.cfg");
    machine.hold_file(&twin).expect("holding twin.cfg");
    let socket = control_socket(&mut machine, "devices");
    machine.timeout = Some(Duration::from_secs(180));
    let client = std::thread::spawn(move || -> Result<[u16; 4], String> {
        until(&socket, "list --json", |t| {
            t.contains("\"name\":\"anchor\"")
        })?;
        let id_of = |answer: &xtask::xl::Answer| -> Result<u16, String> {
            answer
                .text
                .split_whitespace()
                .find_map(|w| w.strip_prefix('d').and_then(|n| n.parse().ok()))
                .ok_or_else(|| format!("no domain id in {:?}", answer.text))
        };
        let create = |name: &str| -> Result<u16, String> {
            let answer = ask(&socket, &format!("create {name}.cfg"));
            if !answer.ok {
                return Err(format!("create {name} refused: {}", answer.text));
            }
            id_of(&answer)
        };
        let refused = |name: &str, because: &str| -> Result<(), String> {
            let answer = ask(&socket, &format!("create {name}.cfg"));
            if answer.ok || !answer.text.contains(because) {
                return Err(format!(
                    "create {name}: wanted a refusal saying {because:?}, got {:?}",
                    answer.text
                ));
            }
            let list = ask(&socket, "list --json").text;
            if list.contains(&format!("\"name\":\"{name}\"")) {
                return Err(format!("the refused {name} is listed: {list}"));
            }
            Ok(())
        };
        let gone = |name: &str| {
            let row = format!("\"name\":\"{name}\"");
            let give_up = Instant::now() + Duration::from_secs(60);
            while ask(&socket, "list --json").text.contains(&row) {
                if Instant::now() > give_up {
                    return Err(format!("{name} did not end within 60 s"));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(())
        };
        let writer = create("writer")?;
        refused("reader", &format!("in use as d{writer}'s xvda"))?;
        gone("writer")?;
        let reader = create("reader")?;
        gone("reader")?;
        refused("lost", "its disk gone.img is not attached")?;
        let server = create("server")?;
        let pinger = create("pinger")?;
        refused("twin", "the mac 00:16:3e:12:34:56 is another interface's")?;
        gone("pinger")?;
        gone("server")?;
        let _ = xtask::xl::request(&socket, "destroy anchor");
        Ok([writer, reader, server, pinger])
    });
    let outcome = boot(&machine);
    let [writer, reader, server, pinger] = match client.join().expect("the client thread") {
        Ok(ids) => ids,
        Err(e) => fail(&outcome, &e),
    };
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    pavise_tests::expect_lines(
        &outcome,
        &[
            "dom0: holding disks toolstack-shared.img",
            &format!("dom0: d{writer} xvda (51712) served from the disk at slot 0x10"),
            &format!("(d{writer}) disk: xvda wrote seed=11"),
            &format!("dom0: d{writer} xvda removed"),
            &format!("dom0: d{reader} xvda (51712) served from the disk at slot 0x10"),
            &format!("(d{reader}) disk: xvda persisted ok"),
            &format!("(d{reader}) disk: PASS"),
            &format!("dom0: d{server} vif0 mac 00:16:3e:80:{server:02x}:00 on the switch"),
            &format!("dom0: d{pinger} vif0 mac 00:16:3e:12:34:56 on the switch"),
            &format!("(d{pinger}) net: ping 5/5 replies"),
            &format!("(d{pinger}) net: PASS"),
            &format!("(d{server}) net: PASS"),
            &format!("dom0: d{server} vif0 removed"),
        ],
    );
}

/// Files sent from the host: `create PATH` uploads the config and kernel
/// Dom0 does not hold, creates the domain, and sends nothing the second
/// time; an upload whose bytes do not match its CRC, one bigger than the
/// room, and a bad name are refused and leave nothing held.
#[test]
fn configs_and_kernels_sent_from_the_host() {
    let cfg = config(
        "sent.cfg",
        &format!(
            "name = \"sent\"\nkernel = \"{}\"\nmemory = 8\n",
            kernel("counter")
        ),
    );
    let mut machine = with_domains(2, &[domu("counter", "name=anchor")]);
    let socket = control_socket(&mut machine, "upload");
    machine.timeout = Some(Duration::from_secs(120));
    let client = std::thread::spawn(move || -> Result<(), String> {
        until(&socket, "list --json", |t| {
            t.contains("\"name\":\"anchor\"")
        })?;
        for round in 0..2 {
            let created = xtask::xl::create_from_host(&socket, &cfg, &[])
                .map_err(|e| format!("create {round}: {e}"))?;
            if !created.ok || !created.text.contains("created d") {
                return Err(format!("create {round} refused: {}", created.text));
            }
            until(&socket, "list --json", |t| t.contains("\"name\":\"sent\""))
                .map_err(|t| format!("round {round}: sent not listed: {t}"))?;
            let destroyed = ask(&socket, "destroy sent");
            if !destroyed.ok {
                return Err(format!("destroy {round}: {}", destroyed.text));
            }
        }
        let files = ask(&socket, "files").text;
        let counter_len = std::fs::metadata(xtask::artifact("counter")).map_or(0, |m| m.len());
        if !files.contains("sent.cfg ") || !files.contains(&format!("counter {counter_len}\n")) {
            return Err(format!("files does not list what was sent: {files}"));
        }
        // The raw protocol: an announcement, then the bytes.
        let raw = |request: &[u8], answers: usize| -> Result<String, String> {
            use std::io::{BufRead, Write};
            let stream =
                std::os::unix::net::UnixStream::connect(&socket).map_err(|e| e.to_string())?;
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|e| e.to_string())?;
            (&stream).write_all(request).map_err(|e| e.to_string())?;
            let mut text = String::new();
            let mut ends = 0;
            for line in std::io::BufReader::new(&stream).lines() {
                let line = line.map_err(|e| e.to_string())?;
                text.push_str(&line);
                text.push('\n');
                if line.starts_with(".end ") {
                    ends += 1;
                    if ends == answers {
                        return Ok(text);
                    }
                }
            }
            Err(format!("the channel closed after {text:?}"))
        };
        let damaged = raw(b"upload bad.cfg 5 00000000\nhello", 2)?;
        if !damaged.contains("send 5 bytes of bad.cfg\n.end 0")
            || !damaged.contains("bad.cfg arrived damaged (CRC-32 3610a686, the host said 00000000); send it again\n.end 1")
        {
            return Err(format!("a damaged upload got {damaged:?}"));
        }
        let huge = raw(b"upload huge 1000000000 0\n", 1)?;
        if !huge.contains("there is no room for huge (976563 KiB)") || !huge.contains(".end 1") {
            return Err(format!("a huge upload got {huge:?}"));
        }
        let named = raw(b"have ../x 1 0\n", 1)?;
        if !named.contains("\"../x\" cannot be one of Dom0's files") || !named.contains(".end 1") {
            return Err(format!("a bad name got {named:?}"));
        }
        let files = ask(&socket, "files").text;
        if files.contains("bad.cfg") || files.contains("huge") {
            return Err(format!("a refused upload is held: {files}"));
        }
        let _ = xtask::xl::request(&socket, "destroy anchor");
        Ok(())
    });
    let outcome = boot(&machine);
    if let Err(e) = client.join().expect("the client thread") {
        fail(&outcome, &e);
    }
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    let sent = console_lines(&outcome.console)
        .filter(|l| l.starts_with("dom0: holding counter ("))
        .count();
    if sent != 1 {
        fail(
            &outcome,
            &format!("the kernel was sent {sent} times, not once"),
        );
    }
    pavise_tests::expect_lines(
        &outcome,
        &[
            "dom0: holding sent.cfg (",
            "dom0: holding counter (",
            "pavise: d2 destroyed",
            "pavise: d3 destroyed",
        ],
    );
}
