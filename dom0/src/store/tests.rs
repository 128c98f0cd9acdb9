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
