//! blkhostile: a block front end that attacks Dom0's blkback. It
//! connects normally (`guest_shim::blkfront`), then puts one bad request
//! at a time in the ring with the raw interface: a grant ref never
//! granted, a grant for another domain, a read into a read-only grant,
//! sectors past the end (and wrapping), 0 and 12 segments, first_sect >
//! last_sect, last_sect past the page, an unknown operation, a discard
//! past the end, an indirect request with more segments than advertised;
//! then a request whose slot it rewrites while the backend may be
//! reading it (double fetch), and finally a `req_prod` 1000 ahead of
//! the responses, which the backend must refuse to serve.
//!
//! Each case prints `blkhostile: <case> -> status S`, `-> disconnected`
//! (the backend closed: the front end then reconnects as a restarted one
//! would, Closing -> Closed -> Initialising -> ...) or `-> no response`
//! (nothing within the time-out), then `blkhostile: done`. Every wait has
//! a time-out: nothing here can hang.
//!
//! Command line: `ring_order=N vdev=51712|xvda timeout_ms=N` (each case's
//! time-out, default 3000) `wait=S` (for `device/vbd`, default 30).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use alloc::string::String;
    use alloc::vec::Vec;

    use guest_shim::blkfront::{
        self, Blkfront, Options, PageBuf, Request, RequestDiscard, RequestIndirect, RequestSegment,
        to_slot,
    };
    use guest_shim::pv_abi::blkif::{
        BLKIF_OP_DISCARD, BLKIF_OP_INDIRECT, BLKIF_OP_READ, ENTRY_SIZE, SEGS_PER_INDIRECT_FRAME,
    };
    use guest_shim::pv_abi::grant_table::GrantRef;
    use guest_shim::pv_abi::xenbus::XenbusState;
    use guest_shim::xenstore::XenStore;
    use guest_shim::{ShutdownReason, StartInfo, events, grants, println, shutdown, time};

    const PAGE: usize = 4096;
    /// Never granted: beyond our one-frame grant table (512 entries).
    const BAD_GREF: GrantRef = 9999;
    /// A domain that is not the backend.
    const WRONG_DOMID: u16 = 7;

    fn done() -> ! {
        println!("blkhostile: done");
        shutdown(ShutdownReason::Poweroff)
    }

    fn arg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
        cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    /// What one case's request got.
    enum Outcome {
        Status(i16),
        Disconnected,
        NoResponse,
        /// `rsp_prod` moved by this many, more than the ring holds.
        Answered(u32),
    }

    /// What a case puts in the ring, and what to revoke afterwards.
    struct Attack {
        slot: [u8; ENTRY_SIZE],
        grants: Vec<GrantRef>,
        pages: Vec<PageBuf>,
    }

    struct Ctx {
        xs: XenStore,
        vdev: String,
        blk: Option<Blkfront>,
        reconnect_opts: Options,
        timeout_ms: u64,
        next_id: u64,
        sectors: u64,
        max_indirect: u32,
    }

    fn page() -> PageBuf {
        PageBuf::zeroed(PAGE).unwrap_or_else(|| {
            println!("blkhostile: out of memory");
            done()
        })
    }

    /// A page of ours granted to `domid`.
    fn granted_page(domid: u16, readonly: bool) -> (PageBuf, GrantRef) {
        let p = page();
        let gref = grants::grant_access(domid, p.addr() >> 12, readonly).unwrap_or_else(|| {
            println!("blkhostile: no free grant ref");
            done()
        });
        (p, gref)
    }

    fn seg(gref: GrantRef, first_sect: u8, last_sect: u8) -> RequestSegment {
        RequestSegment {
            gref,
            first_sect,
            last_sect,
            pad: [0; 2],
        }
    }

    fn rw(
        handle: u16,
        id: u64,
        operation: u8,
        sector: u64,
        nr_segments: u8,
        s: RequestSegment,
    ) -> Request {
        Request {
            operation,
            nr_segments,
            handle,
            id,
            sector_number: sector,
            seg: [s; 11],
            ..Default::default()
        }
    }

    impl Ctx {
        /// Whether we have a connection (a failed reconnect leaves none).
        fn ensure(&self) -> bool {
            self.blk.is_some()
        }

        /// Waits for the response to `id` (others are stale: skipped).
        fn await_response(&mut self, id: u64) -> Outcome {
            let deadline = time::system_time_ns() + self.timeout_ms * 1_000_000;
            let Some(blk) = self.blk.as_mut() else {
                return Outcome::Disconnected;
            };
            loop {
                let left = deadline.saturating_sub(time::system_time_ns()) / 1_000_000;
                if left == 0 {
                    break;
                }
                match blk.wait_raw_response(left) {
                    Some(r) if r.id == id => return Outcome::Status(r.status),
                    Some(_) => continue,
                    None => break,
                }
            }
            match blk.backend_state(&mut self.xs) {
                Some(XenbusState::Connected) => Outcome::NoResponse,
                _ => Outcome::Disconnected,
            }
        }

        /// Revokes a case's grants; a page the backend still maps is
        /// leaked, never reused.
        fn revoke(&mut self, case: &str, grants_: Vec<GrantRef>, pages: Vec<PageBuf>) {
            let mut all = true;
            for g in grants_ {
                all &= grants::end_access(g);
            }
            if all {
                drop(pages);
            } else {
                println!("blkhostile: {case}: a grant is still mapped by the backend");
                core::mem::forget(pages);
            }
        }

        /// After a case that lost the connection (or left a request
        /// unanswered), starts over as a restarted front end.
        fn recover(&mut self, outcome: &Outcome) {
            if matches!(outcome, Outcome::Status(_)) {
                return;
            }
            let Some(blk) = self.blk.take() else { return };
            match blk.reconnect(&mut self.xs, self.reconnect_opts) {
                Ok(b) => {
                    println!("blkhostile: reconnected");
                    self.blk = Some(b);
                }
                Err(e) => println!("blkhostile: reconnect failed: {e:?}"),
            }
        }

        fn report(case: &str, outcome: &Outcome) {
            match outcome {
                Outcome::Status(s) => println!("blkhostile: {case} -> status {s}"),
                Outcome::Disconnected => println!("blkhostile: {case} -> disconnected"),
                Outcome::NoResponse => println!("blkhostile: {case} -> no response"),
                Outcome::Answered(n) => println!("blkhostile: {case} -> answered {n} responses"),
            }
        }

        /// One request built by `build` (given the backend's domain, our
        /// handle and the request id), published the normal way.
        fn case(&mut self, case: &str, build: impl FnOnce(u16, u16, u64) -> Attack) {
            if !self.ensure() {
                println!("blkhostile: {case} -> skipped (not connected)");
                return;
            }
            let id = self.next_id;
            self.next_id += 1;
            let attack = {
                let blk = self.blk.as_ref().expect("connected");
                build(blk.backend_id(), blk.handle(), id)
            };
            if let Some(blk) = self.blk.as_mut() {
                blk.push_raw(&attack.slot);
                blk.publish_raw();
            }
            let outcome = self.await_response(id);
            Self::report(case, &outcome);
            self.revoke(case, attack.grants, attack.pages);
            self.recover(&outcome);
        }

        /// A read of 8 sectors from `sector` into a page granted to the
        /// backend, with its segment `s` built from the grant.
        fn read_case(
            &mut self,
            case: &str,
            sector: u64,
            nr_segments: u8,
            s: impl FnOnce(GrantRef) -> RequestSegment,
        ) {
            self.case(case, |be, handle, id| {
                let (p, g) = granted_page(be, false);
                Attack {
                    slot: to_slot(&rw(handle, id, BLKIF_OP_READ, sector, nr_segments, s(g))),
                    grants: alloc::vec![g],
                    pages: alloc::vec![p],
                }
            });
        }

        /// A valid read whose slot is rewritten, back and forth with a
        /// bad one, from the moment it is published until the answer.
        fn rewrite_case(&mut self, case: &str) {
            if !self.ensure() {
                println!("blkhostile: {case} -> skipped (not connected)");
                return;
            }
            let id = self.next_id;
            self.next_id += 1;
            let sectors = self.sectors;
            let blk = self.blk.as_mut().expect("connected");
            let (p, g) = granted_page(blk.backend_id(), false);
            let handle = blk.handle();
            let good = to_slot(&rw(handle, id, BLKIF_OP_READ, 0, 1, seg(g, 0, 7)));
            let evil = to_slot(&rw(
                handle,
                id,
                BLKIF_OP_READ,
                sectors.wrapping_add(100),
                12,
                seg(BAD_GREF, 7, 0),
            ));
            let idx = blk.req_prod_pvt();
            let before = blk.rsp_prod();
            blk.push_raw(&good);
            blk.publish_raw();
            blk.notify();
            // Flip the slot until the backend answers. Request and response
            // share the slot, so a flip racing with the answer may clobber
            // it: that is this front end's own loss, reported as `answered`.
            let deadline = time::system_time_ns() + self.timeout_ms * 1_000_000;
            let mut flips = 0u32;
            while time::system_time_ns() < deadline && blk.rsp_prod() == before && flips < 100_000 {
                blk.write_slot(
                    idx,
                    if flips.is_multiple_of(2) {
                        &evil
                    } else {
                        &good
                    },
                );
                flips += 1;
            }
            if blk.rsp_prod() == before {
                // Leave the good version, then wait the normal way.
                blk.write_slot(idx, &good);
            }
            let outcome = match blk.poll_response() {
                Some(r) if r.id == id => Outcome::Status(r.status),
                Some(_) => Outcome::Answered(1),
                None => self.await_response(id),
            };
            Self::report(case, &outcome);
            self.revoke(case, alloc::vec![g], alloc::vec![p]);
            self.recover(&outcome);
        }

        /// Queues 16 reads and powers off without waiting for them, with
        /// the ring and the data pages still granted: the backend must
        /// finish or drop them and tear the vbd down, not trip over the
        /// dead domain.
        fn vanish(&mut self, case: &str) -> ! {
            if self.ensure() {
                let blk = self.blk.as_mut().expect("connected");
                let handle = blk.handle();
                let mut pages = Vec::new();
                for k in 0..16u64 {
                    let (p, g) = granted_page(blk.backend_id(), false);
                    pages.push(p);
                    let id = self.next_id + k;
                    blk.push_raw(&to_slot(&rw(
                        handle,
                        id,
                        BLKIF_OP_READ,
                        k * 8,
                        1,
                        seg(g, 0, 7),
                    )));
                }
                blk.publish_raw();
                blk.notify();
                println!(
                    "blkhostile: {case} on {} -> 16 reads queued, powering off",
                    self.vdev
                );
                // The pages stay granted: the domain ends with them.
                core::mem::forget(pages);
            } else {
                println!("blkhostile: {case} -> skipped (not connected)");
            }
            done()
        }

        /// `req_prod` 1000 past the responses: the backend must stop
        /// serving (close, or ignore the ring) and answer nothing, both
        /// within the time-out and for a while after.
        fn req_prod_ahead(&mut self, case: &str) {
            if !self.ensure() {
                println!("blkhostile: {case} -> skipped (not connected)");
                return;
            }
            let blk = self.blk.as_mut().expect("connected");
            let before = blk.rsp_prod();
            let ahead = before.wrapping_add(1000);
            blk.set_req_prod(ahead);
            blk.notify();
            let mut got = None;
            // The time-out, then as long again: any answer is wrong.
            for _ in 0..2 {
                if let Some(r) = blk.wait_raw_response(self.timeout_ms) {
                    got = Some(r.status);
                    break;
                }
            }
            let moved = blk.rsp_prod().wrapping_sub(before);
            let outcome = match (got, blk.backend_state(&mut self.xs)) {
                (Some(s), _) => Outcome::Status(s),
                (None, _) if moved != 0 => Outcome::Answered(moved),
                (None, Some(XenbusState::Connected)) => Outcome::NoResponse,
                (None, _) => Outcome::Disconnected,
            };
            Self::report(case, &outcome);
            self.recover(&outcome);
        }
    }

    fn main(info: &StartInfo) -> ! {
        let cmdline = info.cmdline();
        let ring_order: u32 = arg(cmdline, "ring_order")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let timeout_ms: u64 = arg(cmdline, "timeout_ms")
            .and_then(|s| s.parse().ok())
            .unwrap_or(3000);
        let wait_s: u64 = arg(cmdline, "wait")
            .and_then(|s| s.parse().ok())
            .unwrap_or(30);
        if let Err(e) = events::init() {
            println!("blkhostile: FAIL events init {e:?}");
            done();
        }
        if let Err(e) = grants::init() {
            println!("blkhostile: FAIL grant table {e:?}");
            done();
        }
        let mut xs = match XenStore::connect() {
            Ok(x) => x,
            Err(e) => {
                println!("blkhostile: FAIL xenstore {e:?}");
                done()
            }
        };
        let deadline = time::system_time_ns() + wait_s * 1_000_000_000;
        let vdevs = loop {
            match blkfront::devices(&mut xs) {
                Ok(v) if !v.is_empty() => break v,
                Ok(_) if time::system_time_ns() < deadline => blkfront::sleep_ns(100_000_000),
                r => {
                    println!("blkhostile: FAIL no disk under device/vbd ({r:?})");
                    done()
                }
            }
        };
        let vdev = match arg(cmdline, "vdev") {
            Some(only) => vdevs
                .iter()
                .find(|v| *v == only || blkfront::vdev_name(v) == only)
                .cloned(),
            None => vdevs.first().cloned(),
        };
        let Some(vdev) = vdev else {
            println!("blkhostile: FAIL no such disk");
            done()
        };
        let opts = Options {
            ring_order,
            io_timeout_ms: timeout_ms,
            ..Options::default()
        };
        let blk = match Blkfront::connect(&mut xs, &vdev, opts) {
            Ok(b) => b,
            Err(e) => {
                println!("blkhostile: FAIL connect {e:?}");
                done()
            }
        };
        let i = blk.info();
        let name = blkfront::vdev_name(&vdev);
        println!(
            "blkhostile: connected {name} {vdev} sectors={} ro={} indirect={} ring={} pages",
            i.sectors, i.readonly as u8, i.max_indirect, i.ring_pages
        );
        let mut ctx = Ctx {
            xs,
            vdev,
            blk: Some(blk),
            reconnect_opts: Options {
                timeout_ms: 10_000,
                ..opts
            },
            timeout_ms,
            next_id: 1000,
            sectors: i.sectors_512(),
            max_indirect: i.max_indirect,
        };
        let end = ctx.sectors;

        ctx.read_case("good read", 0, 1, |g| seg(g, 0, 7));
        ctx.case("bad grant ref", |_, h, id| Attack {
            slot: to_slot(&rw(h, id, BLKIF_OP_READ, 0, 1, seg(BAD_GREF, 0, 7))),
            grants: Vec::new(),
            pages: Vec::new(),
        });
        ctx.case("grant for another domain", |_, h, id| {
            let (p, g) = granted_page(WRONG_DOMID, false);
            Attack {
                slot: to_slot(&rw(h, id, BLKIF_OP_READ, 0, 1, seg(g, 0, 7))),
                grants: alloc::vec![g],
                pages: alloc::vec![p],
            }
        });
        ctx.case("read into a read-only grant", |be, h, id| {
            let (p, g) = granted_page(be, true);
            Attack {
                slot: to_slot(&rw(h, id, BLKIF_OP_READ, 0, 1, seg(g, 0, 7))),
                grants: alloc::vec![g],
                pages: alloc::vec![p],
            }
        });
        ctx.read_case("sector past the end", end, 1, |g| seg(g, 0, 7));
        ctx.read_case("sectors across the end", end.saturating_sub(4), 1, |g| {
            seg(g, 0, 7)
        });
        ctx.read_case("sector number wraps", u64::MAX - 3, 1, |g| seg(g, 0, 7));
        ctx.read_case("nr_segments 0", 0, 0, |g| seg(g, 0, 7));
        ctx.read_case("nr_segments 12", 0, 12, |g| seg(g, 0, 7));
        ctx.read_case("first_sect > last_sect", 0, 1, |g| seg(g, 5, 2));
        ctx.read_case("last_sect past the page", 0, 1, |g| seg(g, 0, 8));
        ctx.case("unknown operation", |_, h, id| Attack {
            slot: to_slot(&rw(h, id, 42, 0, 0, seg(0, 0, 0))),
            grants: Vec::new(),
            pages: Vec::new(),
        });
        ctx.case("discard past the end", |_, h, id| Attack {
            slot: to_slot(&RequestDiscard {
                operation: BLKIF_OP_DISCARD,
                handle: h,
                id,
                sector_number: end.saturating_sub(1),
                nr_sectors: 1000,
                ..Default::default()
            }),
            grants: Vec::new(),
            pages: Vec::new(),
        });
        let too_many = ctx.max_indirect.saturating_add(1).min(u16::MAX as u32) as u16;
        ctx.case("indirect beyond max segments", |be, h, id| {
            let (data, g) = granted_page(be, false);
            // Indirect pages that really hold `too_many` valid segments
            // (as far as eight pages go).
            let pages = (too_many as usize)
                .div_ceil(SEGS_PER_INDIRECT_FRAME)
                .clamp(1, 8);
            let mut ind = PageBuf::zeroed(pages * PAGE).unwrap_or_else(|| {
                println!("blkhostile: out of memory");
                done()
            });
            let s = seg(g, 0, 7);
            for (i, chunk) in ind.chunks_exact_mut(8).enumerate() {
                if i >= too_many as usize {
                    break;
                }
                chunk[..4].copy_from_slice(&s.gref.to_le_bytes());
                chunk[4] = s.first_sect;
                chunk[5] = s.last_sect;
            }
            let mut grefs = alloc::vec![g];
            let mut indirect_grefs = [0; 8];
            for (k, slot) in indirect_grefs.iter_mut().enumerate().take(pages) {
                let ig = grants::grant_access(be, (ind.addr() >> 12) + k as u64, true)
                    .unwrap_or_else(|| {
                        println!("blkhostile: no free grant ref");
                        done()
                    });
                *slot = ig;
                grefs.push(ig);
            }
            Attack {
                slot: to_slot(&RequestIndirect {
                    operation: BLKIF_OP_INDIRECT,
                    indirect_op: BLKIF_OP_READ,
                    nr_segments: too_many,
                    id,
                    sector_number: 0,
                    handle: h,
                    indirect_grefs,
                    ..Default::default()
                }),
                grants: grefs,
                pages: alloc::vec![data, ind],
            }
        });
        // Still serving after all that?
        ctx.read_case("good read again", 0, 1, |g| seg(g, 0, 7));
        ctx.rewrite_case("slot rewritten after notify");
        ctx.req_prod_ahead("req_prod 1000 ahead");

        ctx.vanish("vanish mid-request")
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
