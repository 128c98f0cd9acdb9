//! pingpong: two DomUs rendezvous through XenStore, ping-pong over an
//! interdomain event channel, and share a page with grants.
//!
//! Command line: `pong peer=<domid>` (offers a port and a granted page,
//! publishing them under its XenStore home) or `ping peer=<domid>` (finds
//! them, binds, maps and writes the page, grant-copies into it, then
//! measures round trips). Each prints one verdict. With `linger=<domid>`
//! it stays up after its verdict until that domain has written
//! `done` in its XenStore home (an attacker of the pair needs them alive
//! until its attacks are over).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use alloc::format;
    use core::sync::atomic::{AtomicU32, Ordering};

    use guest_shim::grants::{self, CopyPtr};
    use guest_shim::xenstore::XenStore;
    use guest_shim::{ShutdownReason, StartInfo, events, hypercall, println, rdtsc, shutdown};

    extern crate alloc;

    const ROUND_TRIPS: u32 = 200;
    const GREETING: &[u8] = b"pong says hello";
    const REPLY: &[u8] = b"ping was here";
    const COPIED: &[u8] = b"copied by grant";

    static RECEIVED: AtomicU32 = AtomicU32::new(0);
    static mut PEER_PORT: u32 = 0;

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    static mut SHARED: Page = Page([0; 4096]);
    static mut MAPPED: Page = Page([0; 4096]);
    static mut SCRATCH: Page = Page([0; 4096]);

    fn fail(who: &str, why: &str) -> ! {
        println!("{who}: FAIL {why}");
        shutdown(ShutdownReason::Poweroff)
    }

    fn on_event(_port: u32) {
        RECEIVED.fetch_add(1, Ordering::SeqCst);
    }

    fn pong_echo(_port: u32) {
        RECEIVED.fetch_add(1, Ordering::SeqCst);
        // SAFETY: set once before events are enabled for it.
        let _ = events::send(unsafe { PEER_PORT });
    }

    fn wait_for(count: u32) {
        events::wait_until(|| RECEIVED.load(Ordering::SeqCst) >= count);
    }

    /// Polls for `/local/domain/<domid>/done`, then powers off.
    fn linger_then_poweroff(role: &str, xs: &mut XenStore, linger: Option<u16>) -> ! {
        if let Some(domid) = linger {
            let done = format!("/local/domain/{domid}/done");
            if xs.await_node(&done, 1_000_000).is_none() {
                fail(role, &format!("d{domid} never wrote {done}"));
            }
        }
        shutdown(ShutdownReason::Poweroff)
    }

    fn page_addr(p: *mut Page) -> u64 {
        p as u64
    }

    fn pong(peer: u16, ro_peer: Option<u16>, linger: Option<u16>, xs: &mut XenStore) -> ! {
        let me = guest_shim::domid().unwrap_or(0);
        let port = events::alloc_unbound(peer)
            .unwrap_or_else(|e| fail("pong", &format!("alloc_unbound {e:?}")));
        // SAFETY: before the port can fire.
        unsafe { PEER_PORT = port };
        events::on(port, pong_echo);
        let shared = &raw mut SHARED;
        // SAFETY: our own page, not yet granted.
        unsafe { (&mut (*shared).0)[..GREETING.len()].copy_from_slice(GREETING) };
        let gref = grants::grant_access(peer, page_addr(shared) >> 12, false)
            .unwrap_or_else(|| fail("pong", "no free grant ref"));
        let home = format!("/local/domain/{me}/pingpong");
        // Readable by everyone (owner = us, default permission r); nodes
        // created below inherit it.
        if let Err(e) = xs.mkdir(&home) {
            fail("pong", &format!("xenstore mkdir {e:?}"));
        }
        if let Err(e) = xs.request(
            guest_shim::xenstore::msg::SET_PERMS,
            0,
            &[format!("{home}\0r{me}\0").as_bytes()],
        ) {
            fail("pong", &format!("set_perms {e:?}"));
        }
        // Optionally a read-only grant for a third domain (`ro=<domid>`).
        let ro_gref = ro_peer.map(|d| {
            let scratch = &raw mut SCRATCH;
            // SAFETY: our own page, granted read-only below.
            unsafe { (&mut (*scratch).0)[..GREETING.len()].copy_from_slice(GREETING) };
            grants::grant_access(d, page_addr(scratch) >> 12, true)
                .unwrap_or_else(|| fail("pong", "no free grant ref"))
        });
        let mut entries = alloc::vec![("port", format!("{port}")), ("gref", format!("{gref}"))];
        if let Some(r) = ro_gref {
            entries.push(("rogref", format!("{r}")));
        }
        entries.push(("ready", "1".into()));
        for (key, value) in entries {
            if let Err(e) = xs.write(&format!("{home}/{key}"), &value) {
                fail("pong", &format!("xenstore write {key}: {e:?}"));
            }
        }
        // The ping side sends ROUND_TRIPS events plus one to say it is done.
        wait_for(ROUND_TRIPS + 1);
        // SAFETY: reading our own page after the peer wrote and copied into it.
        let page = unsafe { &(*shared).0 };
        if &page[..REPLY.len()] != REPLY || &page[2048..2048 + COPIED.len()] != COPIED {
            fail("pong", "the shared page does not hold what ping wrote");
        }
        if grants::flags(gref) & (grants::GTF_READING | grants::GTF_WRITING) != 0 {
            fail("pong", "grant still marked in use after ping unmapped it");
        }
        if !grants::end_access(gref) {
            fail("pong", "could not revoke the grant");
        }
        println!("pong: PASS");
        linger_then_poweroff("pong", xs, linger)
    }

    fn ping(peer: u16, linger: Option<u16>, xs: &mut XenStore) -> ! {
        let home = format!("/local/domain/{peer}/pingpong");
        let mut tries = 0;
        while xs.read(&format!("{home}/ready")).is_err() {
            tries += 1;
            if tries > 100_000 {
                fail("ping", "pong never published its channel");
            }
            let _ = hypercall::sched_yield();
        }
        let read_num = |xs: &mut XenStore, key: &str| -> u32 {
            xs.read(&format!("{home}/{key}"))
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| fail("ping", &format!("bad {key}")))
        };
        let (port, gref) = (read_num(xs, "port"), read_num(xs, "gref"));
        let local = events::bind_interdomain(peer, port)
            .unwrap_or_else(|e| fail("ping", &format!("bind_interdomain {e:?}")));
        events::on(local, on_event);

        // Map, read, write, unmap the granted page.
        let mapped = &raw mut MAPPED;
        let handle = grants::map(peer, gref, page_addr(mapped), false)
            .unwrap_or_else(|s| fail("ping", &format!("map failed: {s:?}")));
        // SAFETY: the granted page is mapped at MAPPED now.
        unsafe {
            if &(&(*mapped).0)[..GREETING.len()] != GREETING {
                fail("ping", "mapped page does not hold pong's greeting");
            }
            (&mut (*mapped).0)[..REPLY.len()].copy_from_slice(REPLY);
        }
        if let Err(s) = grants::unmap(handle, page_addr(mapped)) {
            fail("ping", &format!("unmap failed: {s:?}"));
        }
        // Grant-copy: from our page into pong's granted page.
        let scratch = &raw mut SCRATCH;
        // SAFETY: our own page.
        unsafe { (&mut (*scratch).0)[..COPIED.len()].copy_from_slice(COPIED) };
        let src = CopyPtr::Own {
            gfn: page_addr(scratch) >> 12,
            offset: 0,
        };
        let dst = CopyPtr::Gref {
            domid: peer,
            gref,
            offset: 2048,
        };
        if let Err(s) = grants::copy(src, dst, COPIED.len() as u16) {
            fail("ping", &format!("grant copy failed: {s:?}"));
        }

        // Ping-pong.
        let start = rdtsc();
        for i in 0..ROUND_TRIPS {
            let _ = events::send(local);
            wait_for(i + 1);
        }
        let cycles = (rdtsc() - start) / ROUND_TRIPS as u64;
        let _ = events::send(local);
        println!("ping: evtchn_roundtrip_cycles={cycles}");
        println!("ping: PASS");
        linger_then_poweroff("ping", xs, linger)
    }

    fn main(info: &StartInfo) -> ! {
        let mut words = info.cmdline().split_whitespace();
        let role = words.next().unwrap_or("");
        let peer: u16 = words
            .find_map(|w| w.strip_prefix("peer="))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| fail("pingpong", "needs peer=<domid>"));
        if let Err(e) = events::init() {
            fail(role, &format!("events init {e:?}"));
        }
        if let Err(e) = grants::init() {
            fail(role, &format!("grant table {e:?}"));
        }
        let mut xs = XenStore::connect().unwrap_or_else(|e| fail(role, &format!("xenstore {e:?}")));
        let option = |key: &str| {
            info.cmdline()
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|p| p.parse().ok())
        };
        let linger = option("linger=");
        match role {
            "pong" => pong(peer, option("ro="), linger, &mut xs),
            "ping" => ping(peer, linger, &mut xs),
            other => fail("pingpong", &format!("unknown role '{other}'")),
        }
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
