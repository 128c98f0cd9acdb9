//! net: the network front end (`guest_shim::netfront`) with smoltcp on
//! top, against Dom0's netback. Connects to `device/vif/<vif>`, prints
//! what the backend offers, then, by `mode=`:
//!
//! - `serve`: answers ARP and ICMP echo (smoltcp's interface does) and
//!   listens on TCP `port=` (default 7) for `secs=` seconds (default
//!   60), or until a peer sends a message containing `done`;
//! - `ping peer=IP count=N`: N ICMP echo requests of 56 data bytes, one
//!   after another (each waits up to `timeout=` ms, default 2000, for
//!   its reply; with `interval=` ms the next goes that long after the
//!   last was sent, not at once), then the reply count and round-trip
//!   times;
//! - `tcp-send peer=IP port=P bytes=N`: connects and sends N bytes of
//!   the pattern (byte i is `i % 251`), closes, and reports the
//!   throughput from the connection's establishment to the last byte
//!   acknowledged;
//! - `tcp-recv port=P [bytes=N]`: accepts one connection, checks every
//!   byte against the pattern until the peer closes (and the count if
//!   `bytes=` is given), and reports the throughput from establishment
//!   to the peer's FIN.
//!
//! `mode=` may name several, comma-separated, run in order (as
//! `mode=ping,tcp-send`); the first that fails ends the run. Then
//! `ping` and `tcp-send` with `done=P` tell a `serve` peer on port P
//! that they are done. Times are guest system time.
//!
//! Frames of EtherType 0x88b5 (IEEE local experimental, which
//! `nethostile` sends) are counted as they arrive, and those whose
//! payload starts with `pavise-hostile:spoof` (frames with a forged
//! source, which the switch must never deliver) apart.
//!
//! Command line: `ip=A.B.C.D/N [gw=A.B.C.D] mode=serve|ping|tcp-send|tcp-recv
//! peer=A.B.C.D port=P count=N bytes=N secs=S timeout=MS interval=MS done=P vif=H
//! split=0|1 sg=0|1 rxbufs=N wait=S` (`split`: split event channels if
//! offered, default 1; `sg`: our feature-sg, default 0; `rxbufs`: receive
//! buffers posted, default 256; `wait`: seconds to wait for
//! `device/vif` to appear, default 30; `secs`: the time limit of the
//! test itself, default 60 for serve and 120 otherwise). Lines:
//!
//! - `net: vif H mac M backend PATH dom D split=0|1 sg=0|1 rx-buffers=N`
//! - `net: ping R/N replies, rtt min/median/max X/Y/Z us from A to B ms`
//!   (`-/-/-` without replies; A and B: system time of the first
//!   request and of the end)
//! - `net: tcp-send N bytes in T ms, X.XX MiB/s`
//! - `net: tcp-recv N bytes in T ms, X.XX MiB/s, pattern ok`
//! - `net: serve ended: peer said done after S s` or
//!   `net: serve ended: S s elapsed`
//! - `net: counters tx=.. rx=.. tx_errors=.. tx_dropped=.. rx_errors=..
//!   protocol_errors=..`
//! - `net: 0x88b5 frames seen=N spoofed=M`
//!
//! and ends with `net: PASS` or `net: FAIL ...`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use alloc::format;
    use alloc::string::String;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::net::Ipv4Addr;

    use guest_shim::netfront::{self, Netfront, Options};
    use guest_shim::xenstore::XenStore;
    use guest_shim::{ShutdownReason, StartInfo, events, grants, println, rdtsc, shutdown, time};
    use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
    use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
    use smoltcp::socket::{icmp, tcp};
    use smoltcp::time::Instant;
    use smoltcp::wire::{
        EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr,
    };

    const SEC: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;
    const MIB: f64 = (1u64 << 20) as f64;
    /// Data bytes of an echo request (ping's default).
    const PING_DATA: usize = 56;
    const PING_IDENT: u16 = 0x5056;
    /// Receive buffer: a full frame with room to spare (a larger one is
    /// dropped and counted by netfront).
    const RX_BUF: usize = 2048;
    /// TCP buffers of the bulk modes (window scaling above 64 KiB).
    const TCP_BULK_BUF: usize = 256 * 1024;
    const TCP_SMALL_BUF: usize = 4096;
    /// Frames taken per poll of the interface (two rings' worth).
    const POLL_BUDGET: u32 = 512;
    /// The EtherType of nethostile's frames (IEEE 802 local experimental 1).
    const PROBE_ETHERTYPE: [u8; 2] = [0x88, 0xb5];
    /// What starts the payload of a nethostile frame with a forged source.
    const SPOOF_MARK: &[u8] = b"pavise-hostile:spoof";

    fn fail(why: &str) -> ! {
        println!("net: FAIL {why}");
        shutdown(ShutdownReason::Poweroff)
    }

    fn arg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
        cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    fn num<T: core::str::FromStr>(cmdline: &str, key: &str) -> Option<T> {
        arg(cmdline, key).map(|s| {
            s.parse()
                .unwrap_or_else(|_| fail(&format!("{key}={s} is not a number")))
        })
    }

    fn addr(cmdline: &str, key: &str) -> Option<Ipv4Addr> {
        arg(cmdline, key).map(|s| {
            s.parse()
                .unwrap_or_else(|_| fail(&format!("{key}={s} is not an IPv4 address")))
        })
    }

    fn now_ns() -> u64 {
        time::system_time_ns()
    }

    fn instant() -> Instant {
        Instant::from_micros((now_ns() / 1000) as i64)
    }

    /// Byte `i` of the TCP data pattern (period 251, a prime, so a
    /// shifted or repeated block shows).
    fn pattern(i: u64) -> u8 {
        (i % 251) as u8
    }

    fn mac_text(mac: [u8; 6]) -> String {
        let m = mac;
        format!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }

    // -----------------------------------------------------------------------
    // smoltcp's device over netfront
    // -----------------------------------------------------------------------

    struct NetDev {
        nf: Netfront,
        rx: [u8; RX_BUF],
        /// Frames `receive` still hands out in this poll: smoltcp's poll
        /// takes frames while there are any, which a backend that keeps
        /// the ring full would make endless.
        budget: u32,
        /// Frames of [`PROBE_ETHERTYPE`] received, and those marked
        /// [`SPOOF_MARK`].
        probes: u64,
        spoofed: u64,
    }

    struct Rx<'a>(&'a [u8]);
    struct Tx<'a>(&'a mut Netfront);

    impl phy::RxToken for Rx<'_> {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(self.0)
        }
    }

    impl phy::TxToken for Tx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut frame = [0u8; netfront::MAX_FRAME];
            let len = len.min(frame.len());
            let r = f(&mut frame[..len]);
            // A refused frame is counted (tx_dropped); TCP resends.
            let _ = self.0.send(&frame[..len]);
            r
        }
    }

    impl Device for NetDev {
        type RxToken<'a> = Rx<'a>;
        type TxToken<'a> = Tx<'a>;

        fn receive(&mut self, _: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
            self.budget = self.budget.checked_sub(1)?;
            let n = self.nf.recv(&mut self.rx)?;
            let frame = &self.rx[..n];
            if frame.get(12..14) == Some(&PROBE_ETHERTYPE[..]) {
                self.probes += 1;
                if frame[netfront::ETH_HLEN..].starts_with(SPOOF_MARK) {
                    self.spoofed += 1;
                }
            }
            Some((Rx(&self.rx[..n]), Tx(&mut self.nf)))
        }

        fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
            if self.nf.tx_room() == 0 {
                return None;
            }
            Some(Tx(&mut self.nf))
        }

        fn capabilities(&self) -> DeviceCapabilities {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ethernet;
            caps.max_transmission_unit = netfront::MAX_FRAME;
            caps
        }
    }

    /// The interface, its device and sockets.
    struct Net {
        dev: NetDev,
        iface: Interface,
        sockets: SocketSet<'static>,
    }

    impl Net {
        fn poll(&mut self) {
            self.dev.budget = POLL_BUDGET;
            self.iface.poll(instant(), &mut self.dev, &mut self.sockets);
        }

        /// Sleeps until the device has something, smoltcp has a timer
        /// due, or `deadline` (system time) passes, whichever is first
        /// (at most 100 ms at a time; 1 ms when smoltcp is waiting for
        /// room on a full tx ring).
        fn sleep(&mut self, deadline: u64) {
            let now = now_ns();
            let smol = self
                .iface
                .poll_delay(instant(), &self.sockets)
                .map_or(u64::MAX, |d| d.total_micros().saturating_mul(1000));
            let mut ns = smol.min(deadline.saturating_sub(now)).min(100 * MS);
            // Due now but the tx ring is full: wait for the backend to
            // answer rather than spin.
            if ns == 0 && self.dev.nf.tx_room() == 0 {
                ns = MS.min(deadline.saturating_sub(now));
            }
            if ns > 0 {
                self.dev.nf.wait(ns);
            }
        }

        /// Polls and sleeps until `done` holds (true) or `deadline`
        /// passes (false).
        fn run_until(&mut self, deadline: u64, mut done: impl FnMut(&mut Net) -> bool) -> bool {
            loop {
                self.poll();
                if done(self) {
                    return true;
                }
                if now_ns() >= deadline {
                    return false;
                }
                self.sleep(deadline);
            }
        }

        fn tcp(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
            self.sockets.get_mut::<tcp::Socket>(h)
        }

        fn add_tcp(&mut self, rx: usize, tx: usize) -> SocketHandle {
            let s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0u8; rx]),
                tcp::SocketBuffer::new(vec![0u8; tx]),
            );
            self.sockets.add(s)
        }

        /// An ephemeral local port.
        fn local_port() -> u16 {
            49152 + (rdtsc() % 16384) as u16
        }

        /// Connects `h` to `peer:port`, waiting until established.
        fn connect(&mut self, h: SocketHandle, peer: Ipv4Addr, port: u16, deadline: u64) -> bool {
            let cx = self.iface.context();
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            if let Err(e) = s.connect(cx, (IpAddress::Ipv4(peer), port), Self::local_port()) {
                println!("net: connect to {peer}:{port}: {e:?}");
                return false;
            }
            self.run_until(deadline, |n| {
                let s = n.tcp(h);
                s.state() == tcp::State::Established || !s.is_open()
            }) && self.tcp(h).state() == tcp::State::Established
        }

        fn counters_line(&self) {
            let c = self.dev.nf.counters();
            println!(
                "net: counters tx={} rx={} tx_errors={} tx_dropped={} rx_errors={} protocol_errors={}",
                c.tx_frames, c.rx_frames, c.tx_errors, c.tx_dropped, c.rx_errors, c.protocol_errors
            );
            if let Some(why) = self.dev.nf.last_rx_drop() {
                println!("net: last rx drop: {why:?}");
            }
            println!(
                "net: 0x88b5 frames seen={} spoofed={}",
                self.dev.probes, self.dev.spoofed
            );
        }
    }

    // -----------------------------------------------------------------------
    // Modes
    // -----------------------------------------------------------------------

    /// Answers ARP and echo, and ends on a TCP "done" or the time limit.
    fn serve(net: &mut Net, port: u16, secs: u64) -> Result<(), String> {
        let t0 = now_ns();
        let deadline = t0.saturating_add(secs.saturating_mul(SEC));
        let h = net.add_tcp(TCP_SMALL_BUF, TCP_SMALL_BUF);
        let mut said = Vec::new();
        let done = net.run_until(deadline, |n| {
            let s = n.tcp(h);
            if !s.is_open() {
                said.clear();
                if let Err(e) = s.listen(port) {
                    println!("net: listen on {port}: {e:?}");
                }
            }
            let mut chunk = [0u8; 256];
            while let Ok(k) = s.recv_slice(&mut chunk) {
                if k == 0 {
                    break;
                }
                said.extend_from_slice(&chunk[..k]);
                if said.len() > 1024 {
                    said.drain(..said.len() - 16);
                }
            }
            if said.windows(4).any(|w| w == b"done") {
                return true;
            }
            // The peer closed without saying done: listen again.
            if s.state() == tcp::State::CloseWait {
                s.close();
            }
            false
        });
        if done {
            // Let the FIN go out.
            net.tcp(h).close();
            let until = now_ns() + SEC;
            net.run_until(until, |n| !n.tcp(h).is_open());
            println!(
                "net: serve ended: peer said done after {} s",
                (now_ns() - t0) / SEC
            );
        } else {
            println!("net: serve ended: {secs} s elapsed");
        }
        Ok(())
    }

    fn ping(
        net: &mut Net,
        peer: Ipv4Addr,
        count: u32,
        timeout_ms: u64,
        interval_ms: u64,
    ) -> Result<(), String> {
        let rx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]);
        let tx = icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 1024]);
        let h = net.sockets.add(icmp::Socket::new(rx, tx));
        net.sockets
            .get_mut::<icmp::Socket>(h)
            .bind(icmp::Endpoint::Ident(PING_IDENT))
            .map_err(|e| format!("icmp bind: {e:?}"))?;
        let caps = ChecksumCapabilities::default();
        let mut rtts: Vec<u64> = Vec::new();
        let mut bad = 0u32;
        let start = now_ns();
        let mut last_sent: Option<u64> = None;
        for seq in 0..count {
            if let Some(at) = last_sent {
                let next = at.saturating_add(interval_ms.saturating_mul(MS));
                net.run_until(next, |_| false);
            }
            let seq_no = seq as u16;
            let mut data = [0u8; PING_DATA];
            for (i, b) in data.iter_mut().enumerate() {
                *b = (i as u8).wrapping_add(seq as u8);
            }
            let repr = Icmpv4Repr::EchoRequest {
                ident: PING_IDENT,
                seq_no,
                data: &data,
            };
            let s = net.sockets.get_mut::<icmp::Socket>(h);
            match s.send(repr.buffer_len(), IpAddress::Ipv4(peer)) {
                Ok(buf) => repr.emit(&mut Icmpv4Packet::new_unchecked(buf), &caps),
                Err(e) => return Err(format!("icmp send: {e:?}")),
            }
            let sent = now_ns();
            last_sent = Some(sent);
            let deadline = sent.saturating_add(timeout_ms.saturating_mul(MS));
            let mut got: Option<u64> = None;
            net.run_until(deadline, |n| {
                let s = n.sockets.get_mut::<icmp::Socket>(h);
                while let Ok((payload, from)) = s.recv() {
                    let at = now_ns();
                    let Ok(packet) = Icmpv4Packet::new_checked(payload) else {
                        bad += 1;
                        continue;
                    };
                    match Icmpv4Repr::parse(&packet, &caps) {
                        Ok(Icmpv4Repr::EchoReply {
                            ident,
                            seq_no: s_no,
                            data: d,
                        }) if ident == PING_IDENT
                            && s_no == seq_no
                            && from == IpAddress::Ipv4(peer) =>
                        {
                            if d == data {
                                got = Some(at - sent);
                            } else {
                                bad += 1;
                            }
                        }
                        // An older reply that came late, or not ours.
                        _ => {}
                    }
                }
                got.is_some()
            });
            if let Some(ns) = got {
                rtts.push(ns / 1000);
            }
        }
        rtts.sort_unstable();
        let stats = match rtts.len() {
            0 => String::from("-/-/-"),
            n => {
                let median = if n % 2 == 1 {
                    rtts[n / 2]
                } else {
                    (rtts[n / 2 - 1] + rtts[n / 2]) / 2
                };
                format!("{}/{}/{}", rtts[0], median, rtts[n - 1])
            }
        };
        println!(
            "net: ping {}/{count} replies, rtt min/median/max {stats} us from {} to {} ms",
            rtts.len(),
            start / MS,
            now_ns() / MS
        );
        if bad > 0 {
            return Err(format!("{bad} malformed or mismatched echo replies"));
        }
        if rtts.len() as u32 != count {
            return Err(format!(
                "{} of {count} echo requests unanswered",
                count - rtts.len() as u32
            ));
        }
        Ok(())
    }

    fn mib_s(bytes: u64, ns: u64) -> f64 {
        bytes as f64 / MIB / (ns.max(1) as f64 / 1e9)
    }

    fn tcp_send(
        net: &mut Net,
        peer: Ipv4Addr,
        port: u16,
        bytes: u64,
        secs: u64,
    ) -> Result<(), String> {
        let deadline = now_ns().saturating_add(secs.saturating_mul(SEC));
        let h = net.add_tcp(TCP_SMALL_BUF, TCP_BULK_BUF);
        if !net.connect(h, peer, port, deadline) {
            return Err(format!("no connection to {peer}:{port}"));
        }
        let t0 = now_ns();
        let mut queued = 0u64;
        let mut lost = false;
        let acked = net.run_until(deadline, |n| {
            let s = n.tcp(h);
            if !s.may_send() {
                lost = true;
                return true;
            }
            while queued < bytes && s.can_send() {
                let r = s.send(|buf| {
                    let k = buf.len().min((bytes - queued) as usize);
                    for (i, b) in buf[..k].iter_mut().enumerate() {
                        *b = pattern(queued + i as u64);
                    }
                    (k, k)
                });
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(k) => queued += k as u64,
                }
            }
            queued == bytes && s.send_queue() == 0
        });
        let t1 = now_ns();
        if lost {
            return Err(format!(
                "connection lost after {queued} of {bytes} bytes queued (state {})",
                net.tcp(h).state()
            ));
        }
        if !acked {
            return Err(format!(
                "time limit: {queued} of {bytes} bytes queued, {} unacknowledged",
                net.tcp(h).send_queue()
            ));
        }
        // Close and let the FIN exchange finish (bounded).
        net.tcp(h).close();
        let until = now_ns()
            .saturating_add(5 * SEC)
            .min(deadline.max(now_ns() + SEC));
        net.run_until(until, |n| {
            matches!(
                n.tcp(h).state(),
                tcp::State::Closed | tcp::State::TimeWait | tcp::State::FinWait2
            )
        });
        println!(
            "net: tcp-send {bytes} bytes in {} ms, {:.2} MiB/s",
            (t1 - t0) / MS,
            mib_s(bytes, t1 - t0)
        );
        Ok(())
    }

    fn tcp_recv(net: &mut Net, port: u16, bytes: Option<u64>, secs: u64) -> Result<(), String> {
        let deadline = now_ns().saturating_add(secs.saturating_mul(SEC));
        let h = net.add_tcp(TCP_BULK_BUF, TCP_SMALL_BUF);
        net.tcp(h)
            .listen(port)
            .map_err(|e| format!("listen on {port}: {e:?}"))?;
        let established = net.run_until(deadline, |n| {
            !matches!(
                n.tcp(h).state(),
                tcp::State::Listen | tcp::State::SynReceived
            )
        });
        // A quick peer may have sent everything and closed already.
        let state = net.tcp(h).state();
        if !established || !matches!(state, tcp::State::Established | tcp::State::CloseWait) {
            return Err(format!("no connection on port {port} (state {state})"));
        }
        let t0 = now_ns();
        let mut total = 0u64;
        let mut mismatch: Option<(u64, u8, u8)> = None;
        let finished = net.run_until(deadline, |n| {
            let s = n.tcp(h);
            while s.can_recv() {
                let r = s.recv(|data| {
                    for (i, &b) in data.iter().enumerate() {
                        let at = total + i as u64;
                        if b != pattern(at) && mismatch.is_none() {
                            mismatch = Some((at, b, pattern(at)));
                        }
                    }
                    (data.len(), data.len())
                });
                match r {
                    Ok(0) | Err(_) => break,
                    Ok(k) => total += k as u64,
                }
            }
            // The peer's FIN (or a reset) and everything before it read.
            !s.may_recv() && !s.can_recv()
        });
        let t1 = now_ns();
        let state = net.tcp(h).state();
        net.tcp(h).close();
        let until = now_ns() + SEC;
        net.run_until(until, |n| !n.tcp(h).is_open());
        if !finished {
            return Err(format!(
                "time limit: {total} bytes received, the peer did not close"
            ));
        }
        if let Some((at, got, want)) = mismatch {
            return Err(format!(
                "pattern mismatch at byte {at}: got {got:#04x} want {want:#04x}"
            ));
        }
        if state == tcp::State::Closed {
            return Err(format!("connection reset after {total} bytes"));
        }
        if let Some(want) = bytes
            && total != want
        {
            return Err(format!("received {total} bytes, expected {want}"));
        }
        println!(
            "net: tcp-recv {total} bytes in {} ms, {:.2} MiB/s, pattern ok",
            (t1 - t0) / MS,
            mib_s(total, t1 - t0)
        );
        Ok(())
    }

    /// Tells a serve peer on `port` that we are done (best effort).
    fn tell_done(net: &mut Net, peer: Ipv4Addr, port: u16) {
        let deadline = now_ns() + 10 * SEC;
        let h = net.add_tcp(TCP_SMALL_BUF, TCP_SMALL_BUF);
        if !net.connect(h, peer, port, deadline) {
            println!("net: could not tell {peer}:{port} done: no connection");
            return;
        }
        let _ = net.tcp(h).send_slice(b"done\n");
        net.tcp(h).close();
        let closed = net.run_until(deadline, |n| {
            matches!(
                n.tcp(h).state(),
                tcp::State::Closed | tcp::State::TimeWait | tcp::State::FinWait2
            )
        });
        if closed {
            println!("net: told {peer}:{port} done");
        } else {
            println!("net: could not tell {peer}:{port} done: no answer");
        }
    }

    // -----------------------------------------------------------------------
    // Start-up
    // -----------------------------------------------------------------------

    fn main(info: &StartInfo) -> ! {
        let cmdline = info.cmdline();
        let modes = arg(cmdline, "mode").unwrap_or("serve");
        for mode in modes.split(',') {
            if !matches!(mode, "serve" | "ping" | "tcp-send" | "tcp-recv") {
                fail(&format!(
                    "unknown mode '{mode}' (serve, ping, tcp-send, tcp-recv)"
                ));
            }
        }
        // The time limit's default: that of the last mode.
        let mode = modes.rsplit(',').next().unwrap_or(modes);
        let Some(ip_arg) = arg(cmdline, "ip") else {
            fail("needs ip=A.B.C.D/N");
        };
        let (ip, prefix) = ip_arg
            .split_once('/')
            .and_then(|(a, p)| Some((a.parse::<Ipv4Addr>().ok()?, p.parse::<u8>().ok()?)))
            .filter(|&(_, p)| p <= 32)
            .unwrap_or_else(|| fail(&format!("ip={ip_arg} is not A.B.C.D/N")));
        let gw = addr(cmdline, "gw");
        let peer = addr(cmdline, "peer");
        let port: Option<u16> = num(cmdline, "port");
        let secs: u64 = num(cmdline, "secs").unwrap_or(if mode == "serve" { 60 } else { 120 });
        let vif: u32 = num(cmdline, "vif").unwrap_or(0);
        let wait_s: u64 = num(cmdline, "wait").unwrap_or(30);
        let opts = Options {
            split_event_channels: num::<u8>(cmdline, "split").unwrap_or(1) != 0,
            sg: num::<u8>(cmdline, "sg").unwrap_or(0) != 0,
            rx_buffers: num(cmdline, "rxbufs").unwrap_or(0),
            ..Options::default()
        };
        let need_peer = || peer.unwrap_or_else(|| fail(&format!("mode={mode} needs peer=IP")));
        let need_port = || port.unwrap_or_else(|| fail(&format!("mode={mode} needs port=P")));

        if let Err(e) = events::init() {
            fail(&format!("events init {e:?}"));
        }
        if let Err(e) = grants::init() {
            fail(&format!("grant table {e:?}"));
        }
        let mut xs = XenStore::connect().unwrap_or_else(|e| fail(&format!("xenstore {e:?}")));

        // The toolstack may still be writing our devices.
        let node = format!("device/vif/{vif}/backend");
        let deadline = now_ns() + wait_s * SEC;
        while xs.read(&node).is_err() {
            if now_ns() >= deadline {
                fail(&format!("no device/vif/{vif} after {wait_s} s"));
            }
            time::sleep_ns(100 * MS);
        }
        let nf = Netfront::connect(&mut xs, vif, opts)
            .unwrap_or_else(|e| fail(&format!("vif {vif} connect {e:?}")));
        let mac = nf.mac();
        println!(
            "net: vif {vif} mac {} backend {} dom {} split={} sg={} rx-buffers={}",
            mac_text(mac),
            nf.backend_path(),
            nf.backend_id(),
            nf.split_event_channels() as u8,
            opts.sg as u8,
            nf.rx_posted()
        );
        if mac[0] & 1 != 0 {
            fail(&format!("mac {} is not unicast", mac_text(mac)));
        }

        let mut dev = NetDev {
            nf,
            rx: [0; RX_BUF],
            budget: POLL_BUDGET,
            probes: 0,
            spoofed: 0,
        };
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = rdtsc();
        let mut iface = Interface::new(config, &mut dev, instant());
        iface.update_ip_addrs(|addrs| {
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(ip), prefix));
        });
        if let Some(gw) = gw
            && iface.routes_mut().add_default_ipv4_route(gw).is_err()
        {
            fail(&format!("gw={gw}: no room for the route"));
        }
        let mut net = Net {
            dev,
            iface,
            sockets: SocketSet::new(Vec::new()),
        };

        let run = |net: &mut Net, mode: &str| match mode {
            "ping" => {
                let count: u32 = num(cmdline, "count").unwrap_or(4);
                let timeout: u64 = num(cmdline, "timeout").unwrap_or(2000);
                let interval: u64 = num(cmdline, "interval").unwrap_or(0);
                ping(net, need_peer(), count, timeout, interval)
            }
            "tcp-send" => {
                let bytes: u64 = num(cmdline, "bytes").unwrap_or(1 << 20);
                tcp_send(net, need_peer(), need_port(), bytes, secs)
            }
            "tcp-recv" => tcp_recv(net, need_port(), num(cmdline, "bytes"), secs),
            _ => serve(net, port.unwrap_or(7), secs),
        };
        let result = modes.split(',').try_for_each(|m| run(&mut net, m));
        if let (Some(p), Some(peer)) = (num::<u16>(cmdline, "done"), peer)
            && modes.split(',').any(|m| m != "serve")
        {
            tell_done(&mut net, peer, p);
        }
        net.counters_line();
        let Net { dev, .. } = net;
        if let Err(e) = dev.nf.disconnect(&mut xs) {
            println!("net: disconnect: {e:?}");
        }
        match result {
            Ok(()) => println!("net: PASS"),
            Err(why) => println!("net: FAIL {why}"),
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
