//! xstest: XenStore as a DomU sees it — its domain path, read/write/
//! directory/rm, a value larger than the ring, permissions (another domain's home is closed), watches
//! (immediate event, event on change below the watch), and transactions
//! (a conflicting commit gets EAGAIN; the retry commits).
//! Command line: `peer=<domid>` of another DomU whose home must stay closed.
//! Two peers each write `xstest-done` (readable by all) in their home when
//! their checks are over and stay up until the other's is there (or the
//! other has ended), so neither looks at a home that went with its domain.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use alloc::format;
    use alloc::string::String;

    use guest_shim::xenstore::{XenStore, XsError};
    use guest_shim::{ShutdownReason, StartInfo, println, shutdown};

    fn check(failures: &mut u32, what: &str, ok: bool) {
        if !ok {
            println!("xstest: {what}: wrong");
            *failures += 1;
        }
    }

    fn main(info: &StartInfo) -> ! {
        let peer: u16 = info
            .cmdline()
            .split_whitespace()
            .find_map(|w| w.strip_prefix("peer="))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let mut xs = match XenStore::connect() {
            Ok(x) => x,
            Err(e) => {
                println!("xstest: FAIL no store: {e:?}");
                shutdown(ShutdownReason::Poweroff)
            }
        };
        let me = guest_shim::domid().unwrap_or(0);
        let mut f = 0;
        let denied =
            |r: &Result<String, XsError>| matches!(r, Err(XsError::Server(s)) if s == "EACCES");

        let home = xs.get_domain_path(me);
        check(
            &mut f,
            "get_domain_path",
            home.as_deref() == Ok(format!("/local/domain/{me}").as_str()),
        );
        check(
            &mut f,
            "write",
            xs.write("xstest/a", "1").is_ok() && xs.write("xstest/b", "2").is_ok(),
        );
        check(&mut f, "read", xs.read("xstest/a").as_deref() == Ok("1"));
        // A value three times the 1 KiB ring, both ways: each side must
        // hear of the room the other makes (the word of room goes only to
        // a side that found the ring full).
        let long: String = (0..3000u32)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        check(
            &mut f,
            "a value larger than the ring",
            xs.write("xstest/long", &long).is_ok()
                && xs.read("xstest/long").as_deref() == Ok(long.as_str())
                && xs.rm("xstest/long").is_ok(),
        );
        let dir = xs.directory("xstest").unwrap_or_default();
        check(
            &mut f,
            "directory",
            dir.len() == 2 && dir.iter().any(|d| d == "a") && dir.iter().any(|d| d == "b"),
        );
        check(
            &mut f,
            "rm",
            xs.rm("xstest/b").is_ok()
                && matches!(xs.read("xstest/b"), Err(XsError::Server(s)) if s == "ENOENT"),
        );
        check(
            &mut f,
            "dom0's home is closed",
            denied(&xs.read("/local/domain/0/name"))
                || matches!(xs.read("/local/domain/0"), Err(XsError::Server(ref s)) if s == "EACCES"),
        );
        if peer != 0 {
            check(
                &mut f,
                "peer's home is closed",
                denied(&xs.read(&format!("/local/domain/{peer}"))),
            );
            check(
                &mut f,
                "peer's home is not writable",
                xs.write(&format!("/local/domain/{peer}/evil"), "x")
                    .is_err(),
            );
        }

        // Watches: an immediate event, then one for a change below.
        check(&mut f, "watch", xs.watch("xstest/w", "tok").is_ok());
        check(
            &mut f,
            "immediate watch event",
            xs.next_event() == Ok((String::from("xstest/w"), String::from("tok"))),
        );
        let _ = xs.write("xstest/w/x", "y");
        let mut seen = false;
        for _ in 0..4 {
            match xs.next_event() {
                Ok((path, token)) if token == "tok" && path == "xstest/w/x" => {
                    seen = true;
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        check(&mut f, "watch fires on a change below", seen);
        check(&mut f, "unwatch", xs.unwatch("xstest/w", "tok").is_ok());

        // Transactions: a conflict is EAGAIN, the retry commits.
        let _ = xs.write("xstest/t", "0");
        let tx = xs.transaction_start().unwrap_or(0);
        check(&mut f, "transaction start", tx != 0);
        let _ = xs.read_tx(tx, "xstest/t");
        let _ = xs.write("xstest/t", "changed outside");
        let _ = xs.write_tx(tx, "xstest/t", "from tx");
        check(
            &mut f,
            "conflict gives EAGAIN",
            matches!(xs.transaction_end(tx, true), Err(XsError::Server(s)) if s == "EAGAIN"),
        );
        let tx = xs.transaction_start().unwrap_or(0);
        let _ = xs.read_tx(tx, "xstest/t");
        let _ = xs.write_tx(tx, "xstest/t", "from tx");
        check(
            &mut f,
            "retry commits",
            xs.transaction_end(tx, true).is_ok(),
        );
        check(
            &mut f,
            "committed value",
            xs.read("xstest/t").as_deref() == Ok("from tx"),
        );

        if peer != 0 {
            let me = guest_shim::domid().unwrap_or(0);
            let done = format!("/local/domain/{me}/xstest-done");
            check(&mut f, "saying we are done", xs.publish(&done, "1").is_ok());
            // Done, or gone: its home (EACCES to us while it lives) is
            // ENOENT once it has ended — after its own checks.
            let theirs = format!("/local/domain/{peer}/xstest-done");
            let home = format!("/local/domain/{peer}");
            let gone = |xs: &mut XenStore| matches!(xs.read(&home), Err(XsError::Server(ref e)) if e == "ENOENT");
            let mut tries = 0u32;
            while xs.read(&theirs).is_err() && !gone(&mut xs) && tries < 1_000_000 {
                tries += 1;
                let _ = guest_shim::hypercall::sched_yield();
            }
            check(&mut f, "the peer saying it is done", tries < 1_000_000);
        }
        if f == 0 {
            println!("xstest: PASS");
        } else {
            println!("xstest: FAIL {f} checks");
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
