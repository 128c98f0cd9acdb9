//! nethostile: a network front end that attacks Dom0's netback. It
//! connects two interfaces normally (`guest_shim::netfront`): vif 0, the
//! attacker, and vif 1, a witness that takes what the switch delivers to
//! it. Then, in sequence:
//!
//! 1. a tx flood from vif 0 (broadcast frames, or to `flood_to=`, as
//!    fast as the ring allows, `flood=` frames or `flood_ms=` ms,
//!    whichever ends first; every one must be answered OKAY) while
//!    vif 1 has stopped posting receive buffers (its queue in Dom0
//!    fills and drops; Dom0 and the others carry on); then vif 1 posts
//!    again and counts what it gets (at most what it had posted and what
//!    its queue held);
//! 2. one bad transmit at a time put on vif 0's ring with the raw
//!    interface, each answered as Linux netback's rules say (see
//!    `dom0::netback::decode_tx`): a good frame (OKAY), a grant ref we
//!    never granted and a grant for another domain (ERROR: the copy
//!    fails), frames of 0 and 13 bytes (ERROR), a continuation slot
//!    larger than what is left of the frame's total (ERROR), a frame of
//!    65535 bytes in 16 slots (OKAY: legal, only front ends with
//!    `feature-sg` could take it), a frame of 20 slots (ERROR on all:
//!    more than 18), frames with a forged source (another DomU's MAC, a
//!    foreign unicast, a group address: OKAY, but the switch delivers
//!    none of them);
//! 3. the fatal ones, after each of which Dom0 disables the vif and we
//!    reconnect as a restarted front end (Closing -> Closed ->
//!    Initialising -> Connected): a frame of 22 slots (more than 20), a
//!    first slot crossing its page, a continuation slot crossing its
//!    page, `req_prod` 1000 ahead of the ring;
//! 4. a good frame again (OKAY), and what the witness saw: the good
//!    frames, no forged one.
//!
//! Each attack prints `nethostile: <case> -> <what came back>` (`status
//! S`, `N responses, status S`, `disconnected`, `no response`), with
//! `(expected ...)` appended when that is not what netback's rules say;
//! then `nethostile: PASS` or `nethostile: FAIL <cases>`. Every wait has
//! a time-out: nothing here can hang.
//!
//! Command line: `spoof=MAC` (the MAC to impersonate, default d1's
//! 00:16:3e:00:01:00), `flood=N` (default 1000000), `flood_ms=N` (default
//! 3000), `flood_to=MAC` (the flood's destination, default broadcast;
//! vif 1's MAC keeps it off the other DomUs), `timeout_ms=N` (each
//! case, default 2000), `wait=S` (for `device/vif`, default 30).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    use guest_shim::netfront::{self, NetError, Netfront, Options, TxRequest, to_tx_slot};
    use guest_shim::pages::PageBuf;
    use guest_shim::pv_abi::grant_table::GrantRef;
    use guest_shim::pv_abi::netif::{
        NETTXF_MORE_DATA, TX_ENTRY_SIZE, XEN_NETIF_RSP_ERROR, XEN_NETIF_RSP_OKAY,
    };
    use guest_shim::pv_abi::xenbus::XenbusState;
    use guest_shim::xenstore::XenStore;
    use guest_shim::{ShutdownReason, StartInfo, events, grants, println, shutdown, time};

    const MS: u64 = 1_000_000;
    const PAGE: usize = 4096;
    /// Never granted: beyond our one-frame grant table (512 entries).
    const BAD_GREF: GrantRef = 9999;
    /// A domain that is not the backend.
    const WRONG_DOMID: u16 = 7;
    /// Bytes of our small frames (the Ethernet minimum without FCS).
    const FRAME: usize = 60;
    /// IEEE 802 local experimental EtherType 1 (the `net` kernel counts
    /// frames of it).
    const ETHERTYPE: [u8; 2] = [0x88, 0xb5];
    const MARK_PROBE: &[u8] = b"pavise-hostile:probe";
    const MARK_FLOOD: &[u8] = b"pavise-hostile:flood";
    /// The `net` kernel counts frames with this mark apart.
    const MARK_SPOOF: &[u8] = b"pavise-hostile:spoof";
    const MARK_JUMBO: &[u8] = b"pavise-hostile:jumbo";
    const BROADCAST: [u8; 6] = [0xff; 6];
    const FOREIGN: [u8; 6] = [0x00, 0x16, 0x3e, 0x66, 0x66, 0x66];
    const GROUP: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
    // Where the frames sit in the data page.
    const OFF_PROBE: u16 = 0;
    const OFF_SPOOF_PEER: u16 = 1024;
    const OFF_SPOOF_FOREIGN: u16 = 2048;
    const OFF_SPOOF_GROUP: u16 = 3072;
    /// Transmit ids in flight at most on vif 0 (the ring's 256).
    const TX_SLOTS: u32 = 256;
    /// Receive buffers of vif 0 and of the witness.
    const RX_BUFFERS: u32 = 64;
    const WITNESS_RX_BUFFERS: u32 = 16;

    fn fail_now(why: &str) -> ! {
        println!("nethostile: FAIL {why}");
        shutdown(ShutdownReason::Poweroff)
    }

    fn arg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
        cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    fn num(cmdline: &str, key: &str, default: u64) -> u64 {
        arg(cmdline, key)
            .map(|s| {
                s.parse()
                    .unwrap_or_else(|_| fail_now(&format!("{key}={s} is not a number")))
            })
            .unwrap_or(default)
    }

    fn now() -> u64 {
        time::system_time_ns()
    }

    /// A frame `dst`, `src`, our EtherType, then `mark`, `FRAME` bytes in all.
    fn frame(dst: [u8; 6], src: [u8; 6], mark: &[u8]) -> [u8; FRAME] {
        let mut f = [0u8; FRAME];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&ETHERTYPE);
        f[14..14 + mark.len()].copy_from_slice(mark);
        f
    }

    fn req(gref: GrantRef, offset: u16, flags: u16, id: u16, size: u16) -> [u8; TX_ENTRY_SIZE] {
        to_tx_slot(&TxRequest {
            gref,
            offset,
            flags,
            id,
            size,
        })
    }

    /// What one case got back.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        /// `n` responses, all with this status.
        Status(usize, i16),
        /// Responses of mixed statuses (or ids we did not send).
        Mixed(Vec<(u16, i16)>),
        Disconnected,
        NoResponse,
    }

    impl core::fmt::Display for Outcome {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                Outcome::Status(1, s) => write!(f, "status {s}"),
                Outcome::Status(n, s) => write!(f, "{n} responses, status {s}"),
                Outcome::Mixed(r) => write!(f, "responses (id, status) {r:?}"),
                Outcome::Disconnected => f.write_str("disconnected"),
                Outcome::NoResponse => f.write_str("no response"),
            }
        }
    }

    /// Frames the witness received, by mark.
    #[derive(Default, Clone, Copy)]
    struct Seen {
        probe: u64,
        flood: u64,
        spoof: u64,
        jumbo: u64,
        other: u64,
    }

    struct Ctx {
        xs: XenStore,
        /// vif 0 (None after a failed reconnect).
        nf: Option<Netfront>,
        opts: Options,
        /// Raw slots put on vif 0's ring since it connected (its
        /// private `req_prod`).
        pushed: u32,
        witness: Netfront,
        seen: Seen,
        timeout_ms: u64,
        next_id: u16,
        /// Frames at OFF_*, granted read-only to the backend.
        data: PageBuf,
        data_gref: GrantRef,
        /// A frame of ours at its start, for the 65535-byte frame.
        jumbo: PageBuf,
        jumbo_gref: GrantRef,
        /// Granted to another domain.
        other: PageBuf,
        other_gref: GrantRef,
        rx: Vec<u8>,
        failures: Vec<String>,
    }

    impl Ctx {
        fn id(&mut self) -> u16 {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            id
        }

        /// Takes what both interfaces received: vif 0's is thrown away,
        /// the witness's counted by mark.
        fn drain(&mut self) {
            if let Some(nf) = self.nf.as_mut() {
                while nf.recv(&mut self.rx).is_some() {}
            }
            while let Some(n) = self.witness.recv(&mut self.rx) {
                let f = &self.rx[..n];
                let s = &mut self.seen;
                if f.get(12..14) != Some(&ETHERTYPE[..]) {
                    s.other += 1;
                    continue;
                }
                let body = &f[14..];
                let mark = |m: &[u8]| body.starts_with(m);
                if mark(MARK_PROBE) {
                    s.probe += 1;
                } else if mark(MARK_FLOOD) {
                    s.flood += 1;
                } else if mark(MARK_SPOOF) {
                    s.spoof += 1;
                } else if mark(MARK_JUMBO) {
                    s.jumbo += 1;
                } else {
                    s.other += 1;
                }
            }
        }

        /// Drains for `ms` ms.
        fn drain_for(&mut self, ms: u64) {
            let until = now() + ms * MS;
            while now() < until {
                self.drain();
                time::sleep_ns(MS);
            }
            self.drain();
        }

        fn backend_connected(&mut self) -> bool {
            match self.nf.as_ref() {
                Some(nf) => nf.backend_state(&mut self.xs) == Some(XenbusState::Connected),
                None => false,
            }
        }

        /// Collects vif 0's raw tx responses until `want` came (0: until
        /// the backend leaves Connected), the backend disconnects, or the
        /// case's time-out.
        fn collect(&mut self, want: usize) -> (Vec<(u16, i16)>, bool) {
            let deadline = now() + self.timeout_ms * MS;
            let mut got = Vec::new();
            let mut next_state_check = now() + 2 * MS;
            loop {
                if let Some(nf) = self.nf.as_mut() {
                    while let Some(r) = nf.poll_raw_tx_response() {
                        got.push((r.id, r.status));
                    }
                }
                if want > 0 && got.len() >= want {
                    return (got, false);
                }
                self.drain();
                if now() >= next_state_check {
                    if !self.backend_connected() {
                        return (got, true);
                    }
                    next_state_check = now() + 5 * MS;
                }
                if now() >= deadline {
                    return (got, false);
                }
                time::sleep_ns(MS / 2);
            }
        }

        /// Starts over as a restarted front end would.
        fn reconnect(&mut self) {
            let Some(nf) = self.nf.take() else { return };
            let _ = nf.disconnect(&mut self.xs);
            match Netfront::connect(&mut self.xs, 0, self.opts) {
                Ok(nf) => {
                    println!("nethostile: reconnected");
                    self.nf = Some(nf);
                    self.pushed = 0;
                }
                Err(e) => {
                    println!("nethostile: reconnect failed: {e:?}");
                    self.failures.push(String::from("reconnect"));
                }
            }
        }

        /// Reports a case, checks it against `expect`, and reconnects
        /// if it cost the connection.
        fn judge(&mut self, case: &str, outcome: Outcome, expect: Outcome) {
            if outcome == expect {
                println!("nethostile: {case} -> {outcome}");
            } else {
                println!("nethostile: {case} -> {outcome} (expected {expect})");
                self.failures.push(String::from(case));
            }
            if matches!(outcome, Outcome::Disconnected | Outcome::NoResponse) {
                self.reconnect();
            }
        }

        /// Puts `slots` on vif 0's ring, waits for as many answers as
        /// `expect` has (or for the disconnection it says) and judges
        /// what came.
        fn case(&mut self, case: &str, slots: Vec<[u8; TX_ENTRY_SIZE]>, expect: Outcome) {
            let Some(nf) = self.nf.as_mut() else {
                println!("nethostile: {case} -> skipped (not connected)");
                self.failures.push(String::from(case));
                return;
            };
            let ids: Vec<u16> = slots
                .iter()
                .map(|s| u16::from_le_bytes([s[8], s[9]]))
                .collect();
            let n = nf.push_raw_tx(&slots);
            self.pushed = self.pushed.wrapping_add(n as u32);
            if n != slots.len() {
                println!("nethostile: {case}: only {n} of {} slots fit", slots.len());
            }
            let want = match expect {
                Outcome::Status(k, _) => k,
                _ => 0,
            };
            let (got, disconnected) = self.collect(want);
            let outcome = Self::outcome(&ids, got, disconnected);
            self.judge(case, outcome, expect);
        }

        fn outcome(ids: &[u16], got: Vec<(u16, i16)>, disconnected: bool) -> Outcome {
            if got.is_empty() {
                return if disconnected {
                    Outcome::Disconnected
                } else {
                    Outcome::NoResponse
                };
            }
            let first = got[0].1;
            let ours = got
                .iter()
                .map(|r| r.0)
                .eq(ids.iter().copied().take(got.len()));
            if ours && got.iter().all(|r| r.1 == first) && !disconnected {
                Outcome::Status(got.len(), first)
            } else {
                Outcome::Mixed(got)
            }
        }

        /// A frame in one slot: `len` bytes of the data page at `offset`.
        fn one(&mut self, gref: GrantRef, offset: u16, len: u16) -> Vec<[u8; TX_ENTRY_SIZE]> {
            let id = self.id();
            alloc::vec![req(gref, offset, 0, id, len)]
        }

        /// A chain: the first slot says `total` bytes; then `conts`
        /// continuation slots (gref, offset, size), more_data on all
        /// but the last.
        fn chain(
            &mut self,
            first: (GrantRef, u16),
            total: u16,
            conts: &[(GrantRef, u16, u16)],
        ) -> Vec<[u8; TX_ENTRY_SIZE]> {
            let id = self.id();
            let mut slots = alloc::vec![req(first.0, first.1, NETTXF_MORE_DATA, id, total)];
            for (k, &(g, off, size)) in conts.iter().enumerate() {
                let more = if k + 1 < conts.len() {
                    NETTXF_MORE_DATA
                } else {
                    0
                };
                let id = self.id();
                slots.push(req(g, off, more, id, size));
            }
            slots
        }

        /// A chain of `n` slots: 60 bytes in the first, 10 in each
        /// continuation, all from the data page's probe frame.
        fn many(&mut self, n: usize) -> Vec<[u8; TX_ENTRY_SIZE]> {
            let g = self.data_gref;
            let conts = alloc::vec![(g, OFF_PROBE, 10u16); n - 1];
            self.chain((g, OFF_PROBE), (FRAME + 10 * (n - 1)) as u16, &conts)
        }

        /// `req_prod` 1000 past what is on the ring: the backend must
        /// disable the vif and answer nothing.
        fn req_prod_ahead(&mut self, case: &str) {
            let Some(nf) = self.nf.as_mut() else {
                println!("nethostile: {case} -> skipped (not connected)");
                self.failures.push(String::from(case));
                return;
            };
            nf.set_tx_req_prod(self.pushed.wrapping_add(1000));
            nf.notify();
            let (got, disconnected) = self.collect(0);
            let outcome = Self::outcome(&[], got, disconnected);
            self.judge(case, outcome, Outcome::Disconnected);
        }

        /// The flood from vif 0 while the witness takes nothing.
        fn flood(&mut self, dst: [u8; 6], max_frames: u64, max_ms: u64) {
            let Some(nf) = self.nf.as_mut() else { return };
            self.witness.set_rx_posting(false);
            let posted = self.witness.rx_posted();
            let mut f = frame(dst, nf.mac(), MARK_FLOOD);
            let before = nf.counters();
            let t0 = now();
            let end = t0 + max_ms * MS;
            let (mut sent, mut busy) = (0u64, 0u64);
            let mut broken = None;
            while sent < max_frames && now() < end {
                f[FRAME - 8..].copy_from_slice(&sent.to_le_bytes());
                match nf.send(&f) {
                    Ok(()) => sent += 1,
                    Err(NetError::Busy) => {
                        busy += 1;
                        // What vif 0 receives (others' broadcasts) is
                        // taken, so that only the witness stalls.
                        while nf.recv(&mut self.rx).is_some() {}
                        nf.wait(MS);
                    }
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            let t1 = now();
            // Every frame answered before the raw cases use the ring.
            let settle = now() + 2000 * MS;
            while nf.tx_room() < TX_SLOTS as usize && now() < settle {
                nf.wait(MS);
            }
            let c = nf.counters();
            let errors = c.tx_errors - before.tx_errors;
            let ms = ((t1 - t0) / MS).max(1);
            let unanswered = TX_SLOTS as usize - nf.tx_room();
            println!(
                "nethostile: tx flood: {sent} frames to {} in {ms} ms ({} frames/s) \
                 from {} to {} ms, ring full {busy} times, {errors} answered with errors, \
                 {unanswered} unanswered",
                mac_text(dst),
                sent * 1000 / ms,
                t0 / MS,
                t1 / MS,
            );
            if let Some(e) = broken {
                println!("nethostile: tx flood: send failed: {e:?}");
                self.failures.push(String::from("tx flood"));
            } else if errors != 0 || unanswered != 0 || sent == 0 {
                self.failures.push(String::from("tx flood"));
            }
            // The witness posts again and takes what Dom0 kept for it.
            let flood_before = self.seen.flood;
            self.witness.set_rx_posting(true);
            let mut quiet_since = now();
            let give_up = now() + 3000 * MS;
            while now() < give_up && now() - quiet_since < 200 * MS {
                let had = self.seen.flood;
                self.drain();
                if self.seen.flood != had {
                    quiet_since = now();
                }
                time::sleep_ns(MS);
            }
            let got = self.seen.flood - flood_before;
            let verdict = if got > 0 && got < sent {
                "ok"
            } else {
                self.failures.push(String::from("rx stall"));
                "expected some, not all"
            };
            println!(
                "nethostile: rx stall: vif1 posted {posted} buffers and stopped during the flood \
                 -> {got} of {sent} flood frames delivered after it posted again ({verdict})"
            );
        }
    }

    fn main(info: &StartInfo) -> ! {
        let cmdline = info.cmdline();
        let timeout_ms = num(cmdline, "timeout_ms", 2000);
        let wait_s = num(cmdline, "wait", 30);
        let flood_frames = num(cmdline, "flood", 1_000_000);
        let flood_ms = num(cmdline, "flood_ms", 3000);
        let mac_arg = |key: &str, default: [u8; 6]| {
            arg(cmdline, key).map_or(default, |m| {
                netfront::parse_mac(m).unwrap_or_else(|| fail_now(&format!("{key}={m}: not a MAC")))
            })
        };
        let flood_to = mac_arg("flood_to", BROADCAST);
        let victim = mac_arg("spoof", [0x00, 0x16, 0x3e, 0x00, 0x01, 0x00]);
        if let Err(e) = events::init() {
            fail_now(&format!("events init {e:?}"));
        }
        if let Err(e) = grants::init() {
            fail_now(&format!("grant table {e:?}"));
        }
        let mut xs = XenStore::connect().unwrap_or_else(|e| fail_now(&format!("xenstore {e:?}")));
        let deadline = now() + wait_s * 1_000_000_000;
        while xs.read("device/vif/1/backend").is_err() {
            if now() >= deadline {
                fail_now("needs two interfaces (device/vif/0 and 1)");
            }
            time::sleep_ns(100 * MS);
        }
        let opts = Options {
            rx_buffers: RX_BUFFERS,
            tx_slots: TX_SLOTS,
            timeout_ms: 10_000,
            ..Options::default()
        };
        let nf = Netfront::connect(&mut xs, 0, opts)
            .unwrap_or_else(|e| fail_now(&format!("vif 0 connect {e:?}")));
        let witness_opts = Options {
            rx_buffers: WITNESS_RX_BUFFERS,
            tx_slots: 2,
            ..opts
        };
        let witness = Netfront::connect(&mut xs, 1, witness_opts)
            .unwrap_or_else(|e| fail_now(&format!("vif 1 connect {e:?}")));
        let mac = nf.mac();
        let be = nf.backend_id();
        println!(
            "nethostile: vif0 {} attacks, vif1 {} watches ({} rx buffers); impersonating {}",
            mac_text(mac),
            mac_text(witness.mac()),
            witness.rx_posted(),
            mac_text(victim)
        );

        let page = |what: &str| {
            PageBuf::zeroed(PAGE).unwrap_or_else(|| fail_now(&format!("no memory for {what}")))
        };
        let grant = |p: &PageBuf, domid: u16| {
            grants::grant_access(domid, p.addr() >> 12, true)
                .unwrap_or_else(|| fail_now("no free grant ref"))
        };
        let mut data = page("frames");
        for (at, f) in [
            (OFF_PROBE, frame(BROADCAST, mac, MARK_PROBE)),
            (OFF_SPOOF_PEER, frame(BROADCAST, victim, MARK_SPOOF)),
            (OFF_SPOOF_FOREIGN, frame(victim, FOREIGN, MARK_SPOOF)),
            (OFF_SPOOF_GROUP, frame(BROADCAST, GROUP, MARK_SPOOF)),
        ] {
            data[at as usize..at as usize + FRAME].copy_from_slice(&f);
        }
        let mut jumbo = page("the jumbo frame");
        jumbo[..FRAME].copy_from_slice(&frame(BROADCAST, mac, MARK_JUMBO));
        let other = page("another domain's grant");
        let (data_gref, jumbo_gref, other_gref) = (
            grant(&data, be),
            grant(&jumbo, be),
            grant(&other, WRONG_DOMID),
        );
        let mut ctx = Ctx {
            xs,
            nf: Some(nf),
            opts,
            pushed: 0,
            witness,
            seen: Seen::default(),
            timeout_ms,
            next_id: 1000,
            data,
            data_gref,
            jumbo,
            jumbo_gref,
            other,
            other_gref,
            rx: alloc::vec![0u8; PAGE],
            failures: Vec::new(),
        };

        // 1. Flood, with the witness stalled.
        ctx.flood(flood_to, flood_frames, flood_ms);
        ctx.drain_for(50);
        let seen_before = ctx.seen;

        // 2. Answered, the vif kept.
        let (g, o) = (ctx.data_gref, ctx.other_gref);
        let ok = XEN_NETIF_RSP_OKAY;
        let error = XEN_NETIF_RSP_ERROR;
        let s = ctx.one(g, OFF_PROBE, FRAME as u16);
        ctx.case("good frame", s, Outcome::Status(1, ok));
        let s = ctx.one(BAD_GREF, 0, FRAME as u16);
        ctx.case("grant ref never granted", s, Outcome::Status(1, error));
        let s = ctx.one(o, 0, FRAME as u16);
        ctx.case("grant for another domain", s, Outcome::Status(1, error));
        let s = ctx.one(g, OFF_PROBE, 0);
        ctx.case("frame of 0 bytes", s, Outcome::Status(1, error));
        let s = ctx.one(g, OFF_PROBE, 13);
        ctx.case("frame of 13 bytes", s, Outcome::Status(1, error));
        let s = ctx.chain((g, OFF_PROBE), 100, &[(g, OFF_PROBE, 200)]);
        ctx.case(
            "continuation larger than the frame's total",
            s,
            Outcome::Status(2, error),
        );
        let jg = ctx.jumbo_gref;
        let s = ctx.chain((jg, 0), u16::MAX, &[(jg, 0, PAGE as u16); 15]);
        ctx.case(
            "frame of 65535 bytes in 16 slots",
            s,
            Outcome::Status(16, ok),
        );
        let s = ctx.many(20);
        ctx.case("frame of 20 slots", s, Outcome::Status(20, error));
        let mut spoofs = Vec::new();
        for at in [OFF_SPOOF_PEER, OFF_SPOOF_FOREIGN, OFF_SPOOF_GROUP] {
            for _ in 0..4 {
                spoofs.extend(ctx.one(g, at, FRAME as u16));
            }
        }
        ctx.case(
            "forged source MACs (a DomU's, a foreign one, a group one; 4 each)",
            spoofs,
            Outcome::Status(12, ok),
        );
        ctx.drain_for(50);

        // 3. Fatal: the vif is disabled, we reconnect.
        let s = ctx.many(22);
        ctx.case("frame of 22 slots", s, Outcome::Disconnected);
        let s = ctx.one(g, 4000, 200);
        ctx.case("first slot crossing its page", s, Outcome::Disconnected);
        let s = ctx.chain((g, OFF_PROBE), 160, &[(g, 4090, 100)]);
        ctx.case(
            "continuation slot crossing its page",
            s,
            Outcome::Disconnected,
        );
        ctx.req_prod_ahead("req_prod 1000 ahead");

        // 4. Still served?
        let s = ctx.one(g, OFF_PROBE, FRAME as u16);
        ctx.case("good frame again", s, Outcome::Status(1, ok));
        // Both good frames reach the witness (a second at most), then
        // a moment for anything that should not.
        let until = now() + 1000 * MS;
        while ctx.seen.probe - seen_before.probe < 2 && now() < until {
            ctx.drain();
            time::sleep_ns(MS);
        }
        ctx.drain_for(100);

        let d = |a: u64, b: u64| a - b;
        let (now_seen, was) = (ctx.seen, seen_before);
        let probes = d(now_seen.probe, was.probe);
        let spoofed = d(now_seen.spoof, was.spoof);
        let verdict = if probes == 2 && now_seen.spoof == 0 {
            "ok"
        } else {
            ctx.failures.push(String::from("witness"));
            "expected 2 good frames and no forged one"
        };
        println!(
            "nethostile: witness vif1 saw {probes} good frames, {spoofed} forged, {} of 65535 bytes, \
             {} flood, {} others ({verdict})",
            d(now_seen.jumbo, was.jumbo),
            now_seen.flood,
            now_seen.other
        );

        // Done: close both, give the pages back.
        let Ctx {
            mut xs,
            nf,
            witness,
            data,
            data_gref,
            jumbo,
            jumbo_gref,
            other,
            other_gref,
            failures,
            ..
        } = ctx;
        if let Some(nf) = nf
            && let Err(e) = nf.disconnect(&mut xs)
        {
            println!("nethostile: vif0 disconnect: {e:?}");
        }
        if let Err(e) = witness.disconnect(&mut xs) {
            println!("nethostile: vif1 disconnect: {e:?}");
        }
        for (p, gr) in [(data, data_gref), (jumbo, jumbo_gref), (other, other_gref)] {
            if grants::end_access(gr) {
                drop(p);
            } else {
                p.leak();
            }
        }
        if failures.is_empty() {
            println!("nethostile: PASS");
        } else {
            println!("nethostile: FAIL {}", failures.join(", "));
        }
        shutdown(ShutdownReason::Poweroff)
    }

    fn mac_text(m: [u8; 6]) -> String {
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
