//! Host tests of the XenStore core, with property tests over random
//! requests from three domains.

use super::*;
use proptest::prelude::*;

fn store() -> Store {
    let mut s = Store::new();
    s.introduce(1);
    s.introduce(2);
    s.events.clear();
    s
}

fn req(
    s: &mut Store,
    conn: DomId,
    kind: u32,
    tx: u32,
    payload: &[u8],
) -> core::result::Result<Vec<u8>, String> {
    let r = s.handle(conn, kind, 7, tx, payload);
    assert_eq!(r.req_id, 7);
    if r.kind == msg::ERROR {
        Err(String::from_utf8(r.payload)
            .unwrap()
            .trim_end_matches('\0')
            .to_string())
    } else {
        assert_eq!(r.kind, kind);
        Ok(r.payload)
    }
}

fn write(s: &mut Store, conn: DomId, path: &str, value: &str) -> core::result::Result<(), String> {
    let mut p = format!("{path}\0").into_bytes();
    p.extend_from_slice(value.as_bytes());
    req(s, conn, msg::WRITE, 0, &p).map(|_| ())
}

fn read(s: &mut Store, conn: DomId, path: &str) -> core::result::Result<String, String> {
    req(s, conn, msg::READ, 0, format!("{path}\0").as_bytes())
        .map(|v| String::from_utf8(v).unwrap())
}

#[test]
fn read_write_relative_and_absolute() {
    let mut s = store();
    write(&mut s, 1, "name", "one").unwrap();
    assert_eq!(read(&mut s, 1, "/local/domain/1/name").unwrap(), "one");
    assert_eq!(read(&mut s, 1, "name").unwrap(), "one");
    assert_eq!(read(&mut s, 0, "/local/domain/1/name").unwrap(), "one");
    assert_eq!(read(&mut s, 1, "missing").unwrap_err(), "ENOENT");
    write(&mut s, 1, "a/b/c", "deep").unwrap();
    let dir = req(&mut s, 1, msg::DIRECTORY, 0, b"a\0").unwrap();
    assert_eq!(dir, b"b\0");
}

#[test]
fn introduced_domains_find_their_id() {
    let mut s = store();
    assert_eq!(read(&mut s, 1, "domid").unwrap(), "1");
    assert_eq!(write(&mut s, 1, "domid", "0").unwrap_err(), "EACCES");
    assert_eq!(
        read(&mut s, 2, "/local/domain/1/domid").unwrap_err(),
        "EACCES"
    );
}

#[test]
fn domus_cannot_touch_each_other() {
    let mut s = store();
    write(&mut s, 1, "secret", "x").unwrap();
    assert_eq!(
        read(&mut s, 2, "/local/domain/1/secret").unwrap_err(),
        "EACCES"
    );
    assert_eq!(
        write(&mut s, 2, "/local/domain/1/secret", "y").unwrap_err(),
        "EACCES"
    );
    assert_eq!(
        write(&mut s, 2, "/local/domain/1/new", "y").unwrap_err(),
        "EACCES"
    );
    assert_eq!(
        req(&mut s, 2, msg::RM, 0, b"/local/domain/1/secret\0").unwrap_err(),
        "EACCES"
    );
    assert_eq!(write(&mut s, 2, "/tool/x", "y").unwrap_err(), "EACCES");
    // Sharing on purpose: owner lets everyone read.
    req(
        &mut s,
        1,
        msg::SET_PERMS,
        0,
        b"/local/domain/1/secret\0r1\0",
    )
    .unwrap();
    assert_eq!(read(&mut s, 2, "/local/domain/1/secret").unwrap(), "x");
    assert_eq!(
        write(&mut s, 2, "/local/domain/1/secret", "y").unwrap_err(),
        "EACCES"
    );
    // Only the owner sets permissions, and cannot give the node away.
    assert_eq!(
        req(
            &mut s,
            2,
            msg::SET_PERMS,
            0,
            b"/local/domain/1/secret\0b2\0"
        )
        .unwrap_err(),
        "EACCES"
    );
    assert_eq!(
        req(
            &mut s,
            1,
            msg::SET_PERMS,
            0,
            b"/local/domain/1/secret\0b2\0"
        )
        .unwrap_err(),
        "EACCES"
    );
    let perms = req(&mut s, 1, msg::GET_PERMS, 0, b"/local/domain/1/secret\0").unwrap();
    assert_eq!(perms, b"r1\0");
}

#[test]
fn bad_requests() {
    let mut s = store();
    assert_eq!(read(&mut s, 1, "bad path!").unwrap_err(), "EINVAL");
    assert_eq!(read(&mut s, 1, "a//b").unwrap_err(), "EINVAL");
    assert_eq!(req(&mut s, 1, msg::RM, 0, b"/\0").unwrap_err(), "EINVAL");
    assert_eq!(req(&mut s, 1, 99, 0, b"").unwrap_err(), "ENOSYS");
    assert_eq!(
        req(&mut s, 1, msg::INTRODUCE, 0, b"5\0").unwrap_err(),
        "EACCES"
    );
    assert_eq!(
        req(&mut s, 1, msg::SET_PERMS, 0, b"name\0x1\0").unwrap_err(),
        "EINVAL"
    );
    let huge = alloc::vec![b'a'; PAYLOAD_MAX + 1];
    assert_eq!(req(&mut s, 1, msg::WRITE, 0, &huge).unwrap_err(), "E2BIG");
    assert_eq!(
        req(&mut s, 1, msg::GET_DOMAIN_PATH, 0, b"3\0").unwrap(),
        b"/local/domain/3\0"
    );
    assert_eq!(
        req(&mut s, 1, msg::READ, 42, b"name\0").unwrap_err(),
        "ENOENT"
    ); // no such transaction
}

#[test]
fn quota() {
    let mut s = store();
    for i in 0..NODE_QUOTA - 1 {
        write(&mut s, 1, &format!("n{i}"), "v").unwrap();
    }
    assert_eq!(write(&mut s, 1, "one-too-many", "v").unwrap_err(), "EQUOTA");
}

#[test]
fn watches_fire_for_the_path_and_below() {
    let mut s = store();
    req(&mut s, 1, msg::WATCH, 0, b"dev\0tok\0").unwrap();
    // The new watch fires once at once.
    assert_eq!(s.events.pop_front().unwrap().1.payload, b"dev\0tok\0");
    write(&mut s, 1, "dev/vif/0", "x").unwrap();
    let paths: Vec<Vec<u8>> = s
        .events
        .drain(..)
        .map(|(c, r)| {
            assert_eq!(c, 1);
            r.payload
        })
        .collect();
    assert!(paths.contains(&b"dev/vif/0\0tok\0".to_vec()));
    write(&mut s, 1, "other", "x").unwrap();
    assert!(s.events.is_empty());
    // Another domain watching here sees nothing it may not read.
    req(&mut s, 2, msg::WATCH, 0, b"/local/domain/1\0spy\0").unwrap();
    s.events.clear();
    write(&mut s, 1, "dev/x", "y").unwrap();
    assert!(s.events.iter().all(|(c, _)| *c == 1));
    req(&mut s, 1, msg::UNWATCH, 0, b"dev\0tok\0").unwrap();
    s.events.clear();
    write(&mut s, 1, "dev/z", "y").unwrap();
    assert!(s.events.is_empty());
    assert_eq!(
        req(&mut s, 1, msg::UNWATCH, 0, b"dev\0tok\0").unwrap_err(),
        "ENOENT"
    );
}

#[test]
fn special_watches() {
    let mut s = store();
    req(&mut s, 0, msg::WATCH, 0, b"@introduceDomain\0i\0").unwrap();
    s.events.clear();
    req(&mut s, 0, msg::INTRODUCE, 0, b"3\0").unwrap();
    assert_eq!(
        s.events.pop_front().unwrap().1.payload,
        b"@introduceDomain\0i\0"
    );
}

#[test]
fn transactions_commit_abort_and_conflict() {
    let mut s = store();
    write(&mut s, 1, "x", "0").unwrap();
    let tx: u32 = String::from_utf8(req(&mut s, 1, msg::TRANSACTION_START, 0, b"\0").unwrap())
        .unwrap()
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    req(&mut s, 1, msg::WRITE, tx, b"x\0in-tx").unwrap();
    assert_eq!(read(&mut s, 1, "x").unwrap(), "0"); // not visible outside yet
    req(&mut s, 1, msg::TRANSACTION_END, tx, b"T\0").unwrap();
    assert_eq!(read(&mut s, 1, "x").unwrap(), "in-tx");

    // Abort leaves no trace.
    let tx = 2;
    assert_eq!(
        req(&mut s, 1, msg::TRANSACTION_START, 0, b"\0").unwrap(),
        b"2\0"
    );
    req(&mut s, 1, msg::WRITE, tx, b"y\0ghost").unwrap();
    req(&mut s, 1, msg::TRANSACTION_END, tx, b"F\0").unwrap();
    assert_eq!(read(&mut s, 1, "y").unwrap_err(), "ENOENT");

    // Conflict: the node read in the transaction changed outside it.
    assert_eq!(
        req(&mut s, 1, msg::TRANSACTION_START, 0, b"\0").unwrap(),
        b"3\0"
    );
    req(&mut s, 1, msg::READ, 3, b"x\0").unwrap();
    write(&mut s, 1, "x", "outside").unwrap();
    req(&mut s, 1, msg::WRITE, 3, b"z\0\x31").unwrap();
    assert_eq!(
        req(&mut s, 1, msg::TRANSACTION_END, 3, b"T\0").unwrap_err(),
        "EAGAIN"
    );
    assert_eq!(read(&mut s, 1, "z").unwrap_err(), "ENOENT");
    // Another domain cannot end it.
    assert_eq!(
        req(&mut s, 1, msg::TRANSACTION_START, 0, b"\0").unwrap(),
        b"4\0"
    );
    assert_eq!(
        req(&mut s, 2, msg::TRANSACTION_END, 4, b"T\0").unwrap_err(),
        "ENOENT"
    );
}

#[test]
fn frames_across_chunks() {
    let reply = Reply {
        kind: msg::READ,
        req_id: 9,
        tx_id: 0,
        payload: b"name\0".to_vec(),
    };
    let bytes = encode(&reply);
    let mut r = FrameReader::default();
    for b in &bytes {
        assert_eq!(r.next_frame().unwrap(), None);
        r.push(core::slice::from_ref(b));
    }
    assert_eq!(
        r.next_frame().unwrap(),
        Some((msg::READ, 9, 0, b"name\0".to_vec()))
    );
    let mut bad = encode(&reply);
    bad[12..16].copy_from_slice(&(PAYLOAD_MAX as u32 + 1).to_le_bytes());
    let mut r = FrameReader::default();
    r.push(&bad);
    assert_eq!(r.next_frame(), Err(XsError::TooBig));
}

proptest! {
    #[test]
    fn a_domu_never_reaches_another_domus_home(
        ops in proptest::collection::vec((1u16..3, 0u8..4, 0u8..6, any::<bool>()), 1..80)
    ) {
        let mut s = store();
        let names = ["a", "b", "a/b", "c/d/e", "x", "y"];
        for (conn, kind, name, foreign) in ops {
            let other = if conn == 1 { 2 } else { 1 };
            let path = if foreign { format!("/local/domain/{other}/{}", names[name as usize]) } else { names[name as usize].to_string() };
            let result = match kind {
                0 => write(&mut s, conn, &path, "v").map(|_| ()),
                1 => read(&mut s, conn, &path).map(|_| ()),
                2 => req(&mut s, conn, msg::RM, 0, format!("{path}\0").as_bytes()).map(|_| ()),
                _ => req(&mut s, conn, msg::DIRECTORY, 0, format!("{path}\0").as_bytes()).map(|_| ()),
            };
            if foreign {
                // Nothing here ever opened the other home: every access fails.
                prop_assert!(result.is_err(), "d{} reached {}", conn, path);
            }
        }
        // Every node under a home still belongs to its domain (or to Dom0,
        // the toolstack) — never to the other DomU.
        for (path, node) in &s.tree {
            for d in [1u16, 2] {
                if is_below(path, &home(d)) {
                    prop_assert!(node.perms.owner == d || node.perms.owner == 0, "{} owned by d{}", path, node.perms.owner);
                }
            }
        }
    }

    /// Whatever bytes a DomU puts on its ring: framed, handled, answered
    /// (an error at worst), never a panic, and never a node outside its
    /// home written by it.
    #[test]
    fn any_bytes_on_the_wire_get_answers_and_stay_home(
        chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 1..12),
        words in proptest::collection::vec((0u32..24, 0u32..3, "[a-z/@.]{0,12}", "[ -~]{0,8}"), 0..12),
    ) {
        let mut s = store();
        let before_other = s.local_read("/local/domain/2/name");
        let mut r = FrameReader::default();
        // Random bytes, then well-formed frames of random types and paths.
        for c in &chunks {
            r.push(c);
        }
        for (kind, tx, path, value) in &words {
            let mut payload = path.clone().into_bytes();
            payload.push(0);
            payload.extend_from_slice(value.as_bytes());
            r.push(&encode(&Reply { kind: *kind, req_id: 1, tx_id: *tx, payload }));
        }
        while let Ok(Some((kind, req_id, tx, payload))) = r.next_frame() {
            let reply = s.handle(1, kind, req_id, tx, &payload);
            prop_assert_eq!(reply.req_id, req_id);
        }
        prop_assert_eq!(s.local_read("/local/domain/2/name"), before_other);
    }

    #[test]
    fn framing_does_not_depend_on_chunking(cuts in proptest::collection::vec(1usize..40, 1..20)) {
        let msgs: Vec<Reply> = (0..5u32).map(|i| Reply { kind: msg::WRITE, req_id: i, tx_id: 0, payload: format!("p{i}\0value-{i}").into_bytes() }).collect();
        let stream: Vec<u8> = msgs.iter().flat_map(encode).collect();
        let mut r = FrameReader::default();
        let mut got = Vec::new();
        let mut at = 0;
        for c in cuts.iter().cycle() {
            if at >= stream.len() { break; }
            let end = (at + c).min(stream.len());
            r.push(&stream[at..end]);
            at = end;
            while let Some(f) = r.next_frame().unwrap() { got.push(f); }
        }
        let want: Vec<Frame> = msgs.iter().map(|m| (m.kind, m.req_id, m.tx_id, m.payload.clone())).collect();
        prop_assert_eq!(got, want);
    }
}

fn linux() -> DomainInfo {
    DomainInfo {
        domid: 1,
        name: "linux".into(),
        vcpus: 2,
        mem_kib: Some(256 * 1024),
        store: RingInfo {
            port: 1,
            gfn: 0xfeffc,
        },
        console: Some(RingInfo {
            port: 2,
            gfn: 0xfefff,
        }),
    }
}

fn perms(s: &mut Store, path: &str) -> String {
    let p = req(s, 0, msg::GET_PERMS, 0, format!("{path}\0").as_bytes()).unwrap();
    String::from_utf8(p)
        .unwrap()
        .trim_end_matches('\0')
        .replace('\0', ",")
}

#[test]
fn introduce_domain_writes_what_xens_toolstack_writes() {
    let mut s = Store::new();
    s.introduce(0);
    s.introduce_domain(&linux());
    let vm = "/vm/00000000-0000-4000-8000-000000000001";
    let d = "/local/domain/1";
    let b = "/local/domain/0/backend/console/1/0";
    // (path, value, perms) as in LINUX-PVH.md §10's listing.
    let want: &[(&str, &str, &str)] = &[
        ("/vm", "", "n0"),
        (vm, "", "n0,r1"),
        (&format!("{vm}/name"), "linux", "n0,r1"),
        (
            &format!("{vm}/uuid"),
            "00000000-0000-4000-8000-000000000001",
            "n0,r1",
        ),
        (&format!("{d}/vm"), vm, "n0,r1"),
        (&format!("{d}/name"), "linux", "n0,r1"),
        (&format!("{d}/domid"), "1", "n0,r1"),
        (&format!("{d}/cpu"), "", "n0,r1"),
        (&format!("{d}/cpu/0"), "", "n0,r1"),
        (&format!("{d}/cpu/0/availability"), "online", "n0,r1"),
        (&format!("{d}/cpu/1/availability"), "online", "n0,r1"),
        (&format!("{d}/memory"), "", "n0,r1"),
        (&format!("{d}/memory/static-max"), "262144", "n0,r1"),
        (&format!("{d}/memory/target"), "262144", "n0,r1"),
        (&format!("{d}/memory/videoram"), "0", "n0,r1"),
        (&format!("{d}/device"), "", "n0,r1"),
        (&format!("{d}/device/suspend"), "", "n0,r1"),
        (&format!("{d}/device/suspend/event-channel"), "", "n1"),
        (&format!("{d}/control"), "", "n0,r1"),
        (&format!("{d}/control/shutdown"), "", "n1"),
        (&format!("{d}/control/sysrq"), "", "n1"),
        (&format!("{d}/control/feature-poweroff"), "", "n1"),
        (&format!("{d}/control/feature-reboot"), "", "n1"),
        (&format!("{d}/control/feature-suspend"), "", "n1"),
        (
            &format!("{d}/control/platform-feature-multiprocessor-suspend"),
            "1",
            "n0,r1",
        ),
        (
            &format!("{d}/control/platform-feature-xs_reset_watches"),
            "1",
            "n0,r1",
        ),
        (&format!("{d}/data"), "", "n1"),
        (&format!("{d}/drivers"), "", "n1"),
        (&format!("{d}/feature"), "", "n1"),
        (&format!("{d}/attr"), "", "n1"),
        (&format!("{d}/error"), "", "n1"),
        (&format!("{d}/store"), "", "n0,r1"),
        (&format!("{d}/store/port"), "1", "n0,r1"),
        (&format!("{d}/store/ring-ref"), "1044476", "n0,r1"),
        (&format!("{d}/console"), "", "n0,r1"),
        (&format!("{d}/console/backend"), b, "n0,r1"),
        (&format!("{d}/console/backend-id"), "0", "n1,r0"),
        (&format!("{d}/console/limit"), "1048576", "n0,r1"),
        (&format!("{d}/console/type"), "xenconsoled", "n0,r1"),
        (&format!("{d}/console/output"), "pty", "n0,r1"),
        (&format!("{d}/console/port"), "2", "n0,r1"),
        (&format!("{d}/console/ring-ref"), "1044479", "n0,r1"),
        ("/local/domain/0/backend", "", "n0"),
        ("/local/domain/0/backend/console", "", "n0"),
        ("/local/domain/0/backend/console/1", "", "n0"),
        (b, "", "n0,r1"),
        (&format!("{b}/frontend"), "/local/domain/1/console", "n0,r1"),
        (&format!("{b}/frontend-id"), "1", "n0,r1"),
        (&format!("{b}/online"), "1", "n0,r1"),
        (&format!("{b}/state"), "1", "n0,r1"),
        (&format!("{b}/protocol"), "vt100", "n0,r1"),
    ];
    for (path, value, p) in want {
        assert_eq!(read(&mut s, 0, path).unwrap(), *value, "{path}");
        assert_eq!(perms(&mut s, path), *p, "{path}");
    }
    assert_eq!(read(&mut s, 1, "cpu/2/availability").unwrap_err(), "ENOENT");
    let dir = req(&mut s, 1, msg::DIRECTORY, 0, b"cpu\0").unwrap();
    assert_eq!(dir, b"0\x001\0");
    // The DomU reads what it needs, through relative paths too.
    assert_eq!(read(&mut s, 1, "name").unwrap(), "linux");
    assert_eq!(read(&mut s, 1, "memory/target").unwrap(), "262144");
    assert_eq!(read(&mut s, 1, "console/ring-ref").unwrap(), "1044479");
    assert_eq!(read(&mut s, 1, b).unwrap(), "");
    assert_eq!(read(&mut s, 1, &format!("{b}/state")).unwrap(), "1");
    assert_eq!(read(&mut s, 1, &format!("{vm}/name")).unwrap(), "linux");
    // ...writes what Linux writes...
    for leaf in ["feature-poweroff", "feature-reboot", "feature-suspend"] {
        write(&mut s, 1, &format!("control/{leaf}"), "1").unwrap();
        assert_eq!(
            read(&mut s, 0, &format!("{d}/control/{leaf}")).unwrap(),
            "1"
        );
    }
    write(&mut s, 1, "control/shutdown", "").unwrap();
    write(&mut s, 1, "data/updated", "now").unwrap();
    write(&mut s, 1, "device/suspend/event-channel", "5").unwrap();
    // ...but not what the toolstack owns.
    for node in [
        "name",
        "domid",
        "vm",
        "memory/target",
        "control/platform-feature-xs_reset_watches",
        "store/ring-ref",
        "console/port",
        "cpu/0/availability",
    ] {
        assert_eq!(write(&mut s, 1, node, "x").unwrap_err(), "EACCES", "{node}");
    }
    assert_eq!(write(&mut s, 1, "control/new", "x").unwrap_err(), "EACCES");
    assert_eq!(write(&mut s, 1, "device/vbd", "").unwrap_err(), "EACCES");
    assert_eq!(
        write(&mut s, 1, &format!("{b}/state"), "4").unwrap_err(),
        "EACCES"
    );
    assert_eq!(
        write(&mut s, 1, &format!("{vm}/name"), "x").unwrap_err(),
        "EACCES"
    );
    assert_eq!(read(&mut s, 1, "/vm").unwrap_err(), "EACCES");
    assert_eq!(
        read(&mut s, 1, "/local/domain/0/backend").unwrap_err(),
        "EACCES"
    );
    // Another DomU sees none of it.
    s.introduce(2);
    for node in ["/local/domain/1/name", vm, b] {
        assert_eq!(read(&mut s, 2, node).unwrap_err(), "EACCES", "{node}");
    }
}

#[test]
fn introduce_domain_without_console_or_memory_size() {
    let mut s = Store::new();
    req(&mut s, 0, msg::WATCH, 0, b"@introduceDomain\0i\0").unwrap();
    s.events.clear();
    let info = DomainInfo {
        domid: 3,
        vcpus: 0,
        mem_kib: None,
        console: None,
        ..linux()
    };
    s.introduce_domain(&info);
    assert!(
        s.events
            .iter()
            .any(|(c, r)| *c == 0 && r.payload == b"@introduceDomain\0i\0")
    );
    assert_eq!(read(&mut s, 3, "cpu/0/availability").unwrap(), "online");
    assert_eq!(read(&mut s, 3, "memory").unwrap_err(), "ENOENT");
    assert_eq!(read(&mut s, 3, "console").unwrap_err(), "ENOENT");
    assert_eq!(
        read(&mut s, 0, "/local/domain/0/backend/console/3").unwrap_err(),
        "ENOENT"
    );
    // The home stays the domain's own, for the nodes it makes itself.
    write(&mut s, 3, "mine/a", "1").unwrap();
}

#[test]
fn directory_of_a_leaf_is_empty() {
    let mut s = Store::new();
    s.introduce_domain(&linux());
    assert_eq!(
        req(&mut s, 1, msg::DIRECTORY, 0, b"control/shutdown\0").unwrap(),
        b""
    );
    assert_eq!(req(&mut s, 1, msg::DIRECTORY, 0, b"name\0").unwrap(), b"");
    assert_eq!(
        req(&mut s, 1, msg::DIRECTORY, 0, b"nothing-here\0").unwrap_err(),
        "ENOENT"
    );
}

#[test]
fn linux_first_requests() {
    // What Linux's xenbus does first (LINUX-PVH.md §10).
    let mut s = Store::new();
    s.introduce_domain(&linux());
    s.introduce(2);
    assert_eq!(
        read(&mut s, 1, "control/platform-feature-xs_reset_watches").unwrap(),
        "1"
    );
    req(&mut s, 1, msg::WATCH, 0, b"memory/target\0t1\0").unwrap();
    req(&mut s, 1, msg::WATCH, 0, b"control/shutdown\0t2\0").unwrap();
    req(&mut s, 2, msg::WATCH, 0, b"data\0other\0").unwrap();
    let tx = req(&mut s, 1, msg::TRANSACTION_START, 0, b"\0").unwrap();
    let tx: u32 = core::str::from_utf8(&tx)
        .unwrap()
        .trim_end_matches('\0')
        .parse()
        .unwrap();
    assert_eq!(req(&mut s, 1, msg::RESET_WATCHES, 0, b"").unwrap(), b"OK\0");
    // Its watches, pending events and transactions are gone; d2's stay.
    assert!(s.events.iter().all(|(c, _)| *c != 1));
    assert_eq!(
        req(&mut s, 1, msg::UNWATCH, 0, b"memory/target\0t1\0").unwrap_err(),
        "ENOENT"
    );
    assert_eq!(
        req(&mut s, 1, msg::TRANSACTION_END, tx, b"T\0").unwrap_err(),
        "ENOENT"
    );
    s.events.clear();
    s.request_shutdown(1, Shutdown::Poweroff).unwrap();
    assert!(s.events.is_empty());
    // A watch set after the reset works as usual.
    req(&mut s, 1, msg::WATCH, 0, b"control/shutdown\0t3\0").unwrap();
    s.events.clear();
    s.request_shutdown(1, Shutdown::Reboot).unwrap();
    let (to, ev) = s.events.pop_front().unwrap();
    assert_eq!((to, ev.payload), (1, b"control/shutdown\0t3\0".to_vec()));
    req(&mut s, 2, msg::UNWATCH, 0, b"data\0other\0").unwrap();
}

#[test]
fn shutdown_requests_go_to_control_shutdown() {
    let mut s = Store::new();
    s.introduce_domain(&linux());
    s.introduce(2);
    s.request_shutdown(1, Shutdown::Poweroff).unwrap();
    assert_eq!(read(&mut s, 1, "control/shutdown").unwrap(), "poweroff");
    // The node stays the DomU's, which clears it as Linux does.
    write(&mut s, 1, "control/shutdown", "").unwrap();
    s.request_shutdown(1, Shutdown::Reboot).unwrap();
    assert_eq!(read(&mut s, 1, "control/shutdown").unwrap(), "reboot");
    // No control directory (not introduced by the toolstack), no domain.
    assert_eq!(
        s.request_shutdown(2, Shutdown::Poweroff),
        Err(XsError::NoEnt)
    );
    assert_eq!(
        s.request_shutdown(9, Shutdown::Poweroff),
        Err(XsError::NoEnt)
    );
    assert_eq!(read(&mut s, 0, "/local/domain/9").unwrap_err(), "ENOENT");
}

#[test]
fn a_removed_domain_leaves_only_the_parents_xen_keeps() {
    let mut s = Store::new();
    s.introduce(0);
    let cycle = |s: &mut Store| {
        s.introduce_domain(&linux());
        let dom = linux().domid;
        let vm = s.local_read(&format!("{}/vm", home(dom))).unwrap();
        write(s, dom, "data/x", "1").unwrap();
        req(s, dom, msg::WATCH, 0, b"data\0t\0").unwrap();
        req(s, dom, msg::TRANSACTION_START, 0, b"\0").unwrap();
        assert_eq!((s.counts().watches, s.counts().transactions), (1, 1));
        s.remove_domain(dom);
        assert!(s.local_read(&vm).is_none());
        s.counts()
    };
    let empty = s.counts();
    let after_one = cycle(&mut s);
    // `/vm` and Dom0's `backend/console` stay, as libxl leaves them.
    assert_eq!(
        after_one.nodes,
        empty.nodes + 3,
        "{:?}",
        s.tree.keys().collect::<Vec<_>>()
    );
    assert_eq!((after_one.watches, after_one.transactions), (0, 0));
    assert_eq!(
        cycle(&mut s),
        after_one,
        "a second domain's coming and going leaves nothing"
    );
}
