//! soak: one side of a pair that keeps event channels, grant copies and
//! XenStore busy for a set time, checking that nothing is lost.
//!
//! `serve peer=<domid>` grants a page to its peer and offers a port
//! under its XenStore home; for each event it checks that the page holds
//! the next round's pattern (a copy lost, repeated or torn shows), writes
//! and reads back a node of its own, and answers. `drive peer=<domid>
//! seconds=<s>` binds, then until the time is up grant-copies a fresh
//! 4 KiB pattern into the page, sends, and waits for the answer — one
//! that takes 10 s means a lost event — and does its own XenStore round
//! (write, read back, and every 16th round remove). Both print a progress
//! line every 10 s and their totals; at the end they remove their nodes.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use alloc::format;
    use alloc::string::String;
    use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    use guest_shim::events::{self, Virq};
    use guest_shim::grants::{self, CopyPtr};
    use guest_shim::xenstore::{XenStore, msg};
    use guest_shim::{ShutdownReason, StartInfo, hypercall, println, shutdown, time};

    const PAGE_WORDS: usize = 512;
    /// The round number that says the drive side is done.
    const LAST: u64 = u64::MAX;
    const LOST_AFTER_NS: u64 = 10_000_000_000;
    const PROGRESS_NS: u64 = 10_000_000_000;
    /// XenStore nodes each side cycles through.
    const NODES: u64 = 16;

    #[repr(C, align(4096))]
    struct Page([u64; PAGE_WORDS]);
    static mut SHARED: Page = Page([0; PAGE_WORDS]);
    static mut SOURCE: Page = Page([0; PAGE_WORDS]);

    static EVENTS: AtomicU32 = AtomicU32::new(0);
    static TIMER_TICKS: AtomicU64 = AtomicU64::new(0);

    fn fail(role: &str, why: &str) -> ! {
        println!("soak {role}: FAIL {why}");
        shutdown(ShutdownReason::Poweroff)
    }

    fn on_event(_port: u32) {
        EVENTS.fetch_add(1, Ordering::SeqCst);
    }

    fn on_timer(_port: u32) {
        TIMER_TICKS.fetch_add(1, Ordering::SeqCst);
    }

    /// Word `i` of round `round`'s page: every word differs from the
    /// round before, so a stale or torn copy shows.
    fn pattern(round: u64, i: usize) -> u64 {
        round
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(i as u32 % 64)
            ^ i as u64
    }

    fn page_of(p: *mut Page) -> u64 {
        p as u64 >> 12
    }

    /// One XenStore round on our own node `soak/<round % NODES>`: write,
    /// read back, and every NODES-th round remove the directory.
    fn store_round(role: &str, xs: &mut XenStore, home: &str, round: u64) -> u64 {
        let node = format!("{home}/soak/{}", round % NODES);
        let value = format!("{round}");
        if let Err(e) = xs.write(&node, &value) {
            fail(role, &format!("xenstore write {node}: {e:?}"));
        }
        match xs.read(&node) {
            Ok(v) if v == value => {}
            other => fail(
                role,
                &format!("xenstore read {node}: {other:?}, wrote {value}"),
            ),
        }
        if round % NODES == NODES - 1 {
            if let Err(e) = xs.rm(&format!("{home}/soak")) {
                fail(role, &format!("xenstore rm: {e:?}"));
            }
            return 3;
        }
        2
    }

    /// Waits until `EVENTS` reaches `count`; false after LOST_AFTER_NS
    /// without it (a timer wakes the wait).
    fn wait_events(count: u32) -> bool {
        let give_up = time::system_time_ns() + LOST_AFTER_NS;
        let _ = time::set_timer(give_up);
        events::wait_until(|| {
            EVENTS.load(Ordering::SeqCst) >= count || time::system_time_ns() >= give_up
        });
        EVENTS.load(Ordering::SeqCst) >= count
    }

    fn serve(peer: u16, xs: &mut XenStore) -> ! {
        let role = "serve";
        let me = guest_shim::domid().unwrap_or(0);
        let home = format!("/local/domain/{me}");
        let port = events::alloc_unbound(peer)
            .unwrap_or_else(|e| fail(role, &format!("alloc_unbound {e:?}")));
        events::on(port, on_event);
        let gref = grants::grant_access(peer, page_of(&raw mut SHARED), false)
            .unwrap_or_else(|| fail(role, "no free grant ref"));
        // Readable by everyone; the nodes written below inherit it.
        let offer = format!("{home}/offer");
        if let Err(e) = xs.mkdir(&offer) {
            fail(role, &format!("xenstore mkdir {e:?}"));
        }
        if let Err(e) = xs.request(msg::SET_PERMS, 0, &[format!("{offer}\0r{me}\0").as_bytes()]) {
            fail(role, &format!("set_perms {e:?}"));
        }
        for (key, value) in [("port", port), ("gref", gref)] {
            if let Err(e) = xs.write(&format!("{offer}/{key}"), &format!("{value}")) {
                fail(role, &format!("xenstore write {key}: {e:?}"));
            }
        }
        let (mut round, mut store_ops) = (0u64, 0u64);
        let mut next_progress = time::system_time_ns() + PROGRESS_NS;
        loop {
            if !wait_events(round as u32 + 1) {
                fail(
                    role,
                    &format!("no event for round {} in 10 s: lost", round + 1),
                );
            }
            let shared = &raw const SHARED;
            // SAFETY: the peer copied into our page before its event; we
            // read it before we answer, and it copies again only after.
            let page = unsafe { &(*shared).0 };
            let sent = page[0];
            if sent == LAST {
                break;
            }
            round += 1;
            if sent != round {
                fail(role, &format!("round {round}: the page says round {sent}"));
            }
            if let Some(i) = (1..PAGE_WORDS).find(|&i| page[i] != pattern(round, i)) {
                fail(
                    role,
                    &format!("round {round}: word {i} of the copy is wrong"),
                );
            }
            store_ops += store_round(role, xs, &home, round);
            if let Err(e) = events::send(port) {
                fail(role, &format!("send {e:?}"));
            }
            if time::system_time_ns() >= next_progress {
                println!("soak {role}: {round} rounds");
                next_progress += PROGRESS_NS;
            }
        }
        let _ = xs.rm(&format!("{home}/soak"));
        let _ = xs.rm(&offer);
        if !grants::end_access(gref) {
            fail(role, "could not revoke the grant");
        }
        println!("soak {role}: PASS rounds={round} copies_checked={round} store_ops={store_ops}");
        shutdown(ShutdownReason::Poweroff)
    }

    fn drive(peer: u16, seconds: u64, xs: &mut XenStore) -> ! {
        let role = "drive";
        let me = guest_shim::domid().unwrap_or(0);
        let home = format!("/local/domain/{me}");
        let offer = format!("/local/domain/{peer}/offer");
        let num = |xs: &mut XenStore, key: &str| -> Option<u32> {
            xs.read(&format!("{offer}/{key}")).ok()?.parse().ok()
        };
        let mut tries = 0;
        let (port, gref) = loop {
            if let (Some(p), Some(g)) = (num(xs, "port"), num(xs, "gref")) {
                break (p, g);
            }
            tries += 1;
            if tries > 200_000 {
                fail(role, "the serve side never offered its port");
            }
            let _ = hypercall::sched_yield();
        };
        let local = events::bind_interdomain(peer, port)
            .unwrap_or_else(|e| fail(role, &format!("bind_interdomain {e:?}")));
        events::on(local, on_event);
        let source = &raw mut SOURCE;
        let copy_round = |round: u64| {
            // SAFETY: our own page; nobody else writes it.
            let words = unsafe { &mut (*source).0 };
            words[0] = round;
            for (i, w) in words.iter_mut().enumerate().skip(1) {
                *w = pattern(round, i);
            }
            let from = CopyPtr::Own {
                gfn: page_of(source),
                offset: 0,
            };
            let to = CopyPtr::Gref {
                domid: peer,
                gref,
                offset: 0,
            };
            if let Err(e) = grants::copy(from, to, 4096) {
                fail(role, &format!("round {round}: grant copy {e:?}"));
            }
        };
        let start = time::system_time_ns();
        let end = start + seconds * 1_000_000_000;
        let mut next_progress = start + PROGRESS_NS;
        let (mut round, mut store_ops) = (0u64, 0u64);
        let mut waits_ns = 0u64;
        while time::system_time_ns() < end {
            round += 1;
            copy_round(round);
            let sent_at = time::system_time_ns();
            if let Err(e) = events::send(local) {
                fail(role, &format!("send {e:?}"));
            }
            // The answer is the peer's event number `round`; ours wait on
            // the count of events received.
            if !wait_events(round as u32) {
                fail(role, &format!("no answer to round {round} in 10 s: lost"));
            }
            waits_ns += time::system_time_ns() - sent_at;
            store_ops += store_round(role, xs, &home, round);
            if time::system_time_ns() >= next_progress {
                println!("soak {role}: {round} rounds");
                next_progress += PROGRESS_NS;
            }
        }
        copy_round(LAST);
        let _ = events::send(local);
        let _ = xs.rm(&format!("{home}/soak"));
        let elapsed_ms = (time::system_time_ns() - start) / 1_000_000;
        let mean_us = waits_ns / round.max(1) / 1_000;
        println!(
            "soak {role}: PASS rounds={round} copies={round} store_ops={store_ops} seconds={} mean_round_trip_us={mean_us}",
            elapsed_ms / 1000
        );
        shutdown(ShutdownReason::Poweroff)
    }

    fn main(info: &StartInfo) -> ! {
        let option = |key: &str| -> Option<u64> {
            info.cmdline()
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse().ok())
        };
        let role: String = info
            .cmdline()
            .split_whitespace()
            .next()
            .unwrap_or("")
            .into();
        let Some(peer) = option("peer=").and_then(|p| u16::try_from(p).ok()) else {
            fail(&role, "needs peer=<domid>")
        };
        if let Err(e) = events::init() {
            fail(&role, &format!("events init {e:?}"));
        }
        if let Err(e) = grants::init() {
            fail(&role, &format!("grant table {e:?}"));
        }
        match events::bind_virq(Virq::Timer, 0) {
            Ok(port) => events::on(port, on_timer),
            Err(e) => fail(&role, &format!("bind_virq {e:?}")),
        }
        let mut xs =
            XenStore::connect().unwrap_or_else(|e| fail(&role, &format!("xenstore {e:?}")));
        match role.as_str() {
            "serve" => serve(peer, &mut xs),
            "drive" => drive(peer, option("seconds=").unwrap_or(10), &mut xs),
            other => fail(other, "the role is serve or drive"),
        }
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
