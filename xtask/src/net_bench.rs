//! The network part of `cargo xtask bench`, with plain TCG and with
//! `-icount shift=0`. Three boots of Dom0 and `net` test kernels (smoltcp
//! over guest-shim's netfront, one vif each, joined by Dom0's netback
//! switch):
//!
//! - [`NetRun::Tcp`]: d1 `tcp-recv`, d2 `tcp-send` of [`DOMU_BYTES`] to
//!   it: DomU↔DomU TCP throughput, against the grant-copy throughput the
//!   `bench` kernel measured in the same `cargo xtask bench` (and mode),
//!   4 KiB pages one per hypercall (`grant_copy_mibps`): netback moves
//!   every byte between two DomUs with grant copies (the sender's pages
//!   into Dom0, Dom0 into the receiver's buffers, batched), so
//!   `throughput / grant copy` says what the whole path costs beside the
//!   copy (the target: at least [`TARGET_OVER_GRANT_COPY`]);
//! - [`NetRun::Ping`]: d1 `serve`, d2 `ping` of [`PING_COUNT`] echo
//!   requests (56 data bytes: 64-byte ICMP messages, 98-byte frames), one
//!   after another: the round trip's minimum, median and maximum;
//! - [`NetRun::Uplink`]: d1 `tcp-send` of [`UPLINK_BYTES`] to the host
//!   through the uplink NIC (QEMU user networking: 10.0.2.2 is the host's
//!   127.0.0.1), where xtask listens on a free port, counts the bytes and
//!   checks the pattern (byte i is `i % 251`).
//!
//! The figures are the kernels' own (guest system time), and land in the
//! "tcg" and "tcg_icount_shift0" objects of `bench.json` beside the grant
//! copy they are measured against ([`fields`]). Linux's network figures
//! (to come) belong beside them, under the same names with `net_linux_`
//! for `net_`, their ratio from [`over_grant_copy`] and the same mode's
//! `grant_copy_mibps`.

use std::io::{self, Read};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::bench::icount_args;
use crate::domains::{self, DomU};
use crate::error::{Error, Result};
use crate::exit::{Exit, HvStatus};
use crate::machine::Machine;
use crate::net::{UPLINK_DHCP_START, UPLINK_HOST, UPLINK_PREFIX, Uplink, Vif};
use crate::workspace;

/// Bytes d2 sends d1.
pub const DOMU_BYTES: u64 = 16 << 20;
/// Bytes d1 sends the host.
pub const UPLINK_BYTES: u64 = 16 << 20;
/// Echo requests of the ping run.
pub const PING_COUNT: u32 = 200;
/// How long the `net` kernel waits for each echo reply (its default),
/// in ms: a longer round trip is not a measurement but a clock that
/// stepped back.
pub const PING_TIMEOUT_MS: u64 = 2000;
/// The target for DomU↔DomU TCP throughput over grant copy.
pub const TARGET_OVER_GRANT_COPY: f64 = 0.7;

const TCP_PORT: u16 = 5001;
/// Where `serve` listens for `done` (its default).
const SERVE_PORT: u16 = 7;
const D1_IP: &str = "10.0.2.21/24";
const D2_IP: &str = "10.0.2.22/24";
const D1_ADDR: &str = "10.0.2.21";

/// Ping round trips, µs of guest system time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ping {
    pub replies: u32,
    pub count: u32,
    pub min_us: u64,
    pub median_us: u64,
    pub max_us: u64,
}

impl Ping {
    /// Whether a round trip was longer than the kernel waits for one:
    /// the guest's clock went backwards between a request and its reply
    /// (the kernel's unsigned difference wrapped), so the maximum is no
    /// measurement.
    pub fn clock_stepped_back(&self) -> bool {
        self.max_us > PING_TIMEOUT_MS * 1000
    }

    /// The maximum, unless [`Ping::clock_stepped_back`].
    pub fn max(&self) -> Option<u64> {
        (!self.clock_stepped_back()).then_some(self.max_us)
    }
}

/// One mode's network figures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetFigures {
    /// d2's `tcp-send`: connection established to the last byte
    /// acknowledged.
    pub domu_tcp_mib_s: f64,
    /// d1's `tcp-recv`: established to the sender's FIN.
    pub domu_tcp_recv_mib_s: f64,
    pub ping: Ping,
    /// d1's `tcp-send` to the host.
    pub uplink_tcp_mib_s: f64,
    /// The host's view of it: bytes over host time from accept to EOF.
    pub uplink_host_mib_s: f64,
    /// The reference: `grant_copy_mibps` of the same mode's bench run.
    pub grant_copy_mib_s: f64,
}

/// `mib_s / grant_copy_mib_s`, 0 without a reference.
pub fn over_grant_copy(mib_s: f64, grant_copy_mib_s: f64) -> f64 {
    if grant_copy_mib_s > 0.0 {
        mib_s / grant_copy_mib_s
    } else {
        0.0
    }
}

impl NetFigures {
    pub fn domu_tcp_over_grant_copy(&self) -> f64 {
        over_grant_copy(self.domu_tcp_mib_s, self.grant_copy_mib_s)
    }
}

// ---------------------------------------------------------------------------
// The kernels' lines
// ---------------------------------------------------------------------------

/// The rest of the first console line holding `marker`, after it.
fn after<'a>(console: &'a str, marker: &str) -> Option<&'a str> {
    console.lines().find_map(|l| {
        let at = l.find(marker)?;
        Some(l[at + marker.len()..].trim_end())
    })
}

fn leading_number<T: std::str::FromStr>(text: &str) -> Option<T> {
    let digits: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().ok()
}

/// `(dD) net: tcp-send N bytes in T ms, X.XX MiB/s` (or `tcp-recv`, which
/// ends `, pattern ok`): the byte count and the MiB/s.
pub fn tcp_line(console: &str, domid: u32, mode: &str) -> Option<(u64, f64)> {
    let rest = after(console, &format!("(d{domid}) net: {mode} "))?;
    let bytes = leading_number(rest)?;
    let (_, rate) = rest.split_once(" ms, ")?;
    let mib_s = leading_number(rate)?;
    if !rate[rate.find(' ')?..].starts_with(" MiB/s") {
        return None;
    }
    if mode == "tcp-recv" && !rest.ends_with(", pattern ok") {
        return None;
    }
    Some((bytes, mib_s))
}

/// `(dD) net: ping R/N replies, rtt min/median/max X/Y/Z us[ from A to B
/// ms]`.
pub fn ping_line(console: &str, domid: u32) -> Option<Ping> {
    let rest = after(console, &format!("(d{domid}) net: ping "))?;
    let (replies, rest) = rest.split_once('/')?;
    let (count, rest) = rest.split_once(" replies, rtt min/median/max ")?;
    // Newer kernels go on: ` us from A to B ms`.
    let (stats, _) = rest.split_once(" us")?;
    let mut it = stats.split('/').map(|s| s.parse::<u64>().ok());
    let (min_us, median_us, max_us) = (it.next()??, it.next()??, it.next()??);
    Some(Ping {
        replies: replies.parse().ok()?,
        count: count.parse().ok()?,
        min_us,
        median_us,
        max_us,
    })
}

fn passed(console: &str, domid: u32) -> bool {
    console
        .lines()
        .any(|l| l.trim_end().ends_with(&format!("(d{domid}) net: PASS")))
}

/// The first `net: FAIL` line of the console, for the error.
fn failure(console: &str) -> Option<String> {
    console
        .lines()
        .find(|l| l.contains(" net: FAIL"))
        .map(|l| l.trim_end().to_owned())
}

// ---------------------------------------------------------------------------
// The runs
// ---------------------------------------------------------------------------

/// One boot of the network bench.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetRun {
    Tcp,
    Ping,
    Uplink,
}

/// A mode's runs, in the order they are made.
pub const NET_RUNS: [NetRun; 3] = [NetRun::Tcp, NetRun::Ping, NetRun::Uplink];

fn net_kernel(cmdline: String) -> DomU {
    DomU {
        cmdline: Some(cmdline),
        vifs: vec![Vif::new()],
        ..domains::test_kernel("net")
    }
}

impl NetRun {
    /// What the run measures, for progress lines and errors.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Tcp => "network: TCP from one net DomU to another through netback",
            Self::Ping => "network: ping between two net DomUs through netback",
            Self::Uplink => "network: TCP from a net DomU to the host through the uplink",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Ping => "ping",
            Self::Uplink => "uplink",
        }
    }

    /// The DomUs; `host_port` is where the host listens (uplink run).
    pub fn domus(self, host_port: u16) -> Vec<DomU> {
        match self {
            Self::Tcp => vec![
                net_kernel(format!(
                    "ip={D1_IP} mode=tcp-recv port={TCP_PORT} bytes={DOMU_BYTES}"
                )),
                net_kernel(format!(
                    "ip={D2_IP} mode=tcp-send peer={D1_ADDR} port={TCP_PORT} bytes={DOMU_BYTES}"
                )),
            ],
            Self::Ping => vec![
                net_kernel(format!("ip={D1_IP} mode=serve port={SERVE_PORT} secs=300")),
                net_kernel(format!(
                    "ip={D2_IP} mode=ping peer={D1_ADDR} count={PING_COUNT} \
                     timeout={PING_TIMEOUT_MS} done={SERVE_PORT}"
                )),
            ],
            Self::Uplink => vec![net_kernel(format!(
                "ip={UPLINK_DHCP_START}/{UPLINK_PREFIX} gw={UPLINK_HOST} mode=tcp-send \
                 peer={UPLINK_HOST} port={host_port} bytes={UPLINK_BYTES}"
            ))],
        }
    }

    /// The machine: 2 CPUs as the other bench runs, the uplink for
    /// [`NetRun::Uplink`].
    pub fn machine(self, icount: bool, host_port: u16) -> Result<Machine> {
        let domus = self.domus(host_port);
        let uplink = (self == Self::Uplink).then(Uplink::default);
        Ok(Machine {
            smp: 2,
            cmdline: "exit_when_done".to_owned(),
            modules: domains::modules_with(&domus, uplink.as_ref())?,
            net: uplink,
            extra_qemu_args: icount_args(icount),
            timeout: Some(Duration::from_secs(if icount { 300 } else { 120 })),
            ..Machine::default()
        })
    }

    /// Boots the run and returns its console, saved as
    /// `target/pavise/bench-net-<run>-<mode>.log`; the run must end
    /// cleanly and every DomU must say `net: PASS`.
    fn boot(self, icount: bool, host_port: u16) -> Result<(String, PathBuf)> {
        let run = self.machine(icount, host_port)?.run_captured()?;
        let dir = workspace::pavise_dir();
        std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let mode = if icount { "icount" } else { "tcg" };
        let log = dir.join(format!("bench-net-{}-{mode}.log", self.file_name()));
        std::fs::write(&log, &run.console)
            .map_err(Error::io(format!("writing {}", log.display())))?;
        if run.exit != Exit::Hypervisor(HvStatus::Success) {
            return Err(Error::BenchRun {
                run: self.describe(),
                exit: run.exit.to_string(),
                log,
            });
        }
        let domus = self.domus(host_port).len() as u32;
        if let Some(domid) = (1..=domus).find(|&d| !passed(&run.console, d)) {
            let why = failure(&run.console).unwrap_or_else(|| "no net: PASS line".to_owned());
            return Err(Error::BenchCheck {
                run: self.describe(),
                reason: format!("d{domid} did not pass ({why})"),
                log,
            });
        }
        Ok((run.console, log))
    }
}

// ---------------------------------------------------------------------------
// The host's end of the uplink run
// ---------------------------------------------------------------------------

/// What the host received on its listener.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Received {
    pub connections: u32,
    pub bytes: u64,
    /// The first byte that broke the pattern: its offset, what came.
    pub mismatch: Option<(u64, u8)>,
    /// The peer closed (EOF), rather than the run ending first.
    pub closed: bool,
    /// Host time from accept to EOF (or the end).
    pub elapsed: Duration,
}

impl Received {
    /// Checks `data`, the bytes after the first `self.bytes`, against the
    /// pattern and counts them.
    fn take(&mut self, data: &[u8]) {
        if self.mismatch.is_none()
            && let Some(i) = data
                .iter()
                .enumerate()
                .position(|(i, &b)| b != ((self.bytes + i as u64) % 251) as u8)
        {
            self.mismatch = Some((self.bytes + i as u64, data[i]));
        }
        self.bytes += data.len() as u64;
    }

    pub fn mib_s(&self) -> f64 {
        self.bytes as f64 / (1u64 << 20) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A TCP listener on 127.0.0.1 (a free port) taking one connection, in a
/// thread, until the peer closes or [`HostSink::finish`].
pub struct HostSink {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<io::Result<Received>>,
}

impl HostSink {
    pub fn start() -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || sink(&listener, &flag));
        Ok(Self { port, stop, thread })
    }

    /// Stops listening and returns what came.
    pub fn finish(self) -> io::Result<Received> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the host's listener panicked")))
    }
}

const POLL: Duration = Duration::from_millis(50);

fn sink(listener: &TcpListener, stop: &AtomicBool) -> io::Result<Received> {
    let mut received = Received::default();
    let stream: TcpStream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::SeqCst) {
                    return Ok(received);
                }
                thread::sleep(POLL);
            }
            Err(e) => return Err(e),
        }
    };
    received.connections = 1;
    let start = Instant::now();
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    let mut stream = stream;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                received.closed = true;
                break;
            }
            Ok(n) => received.take(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    received.elapsed = start.elapsed();
    // A second connection would be a retry we do not expect: count it.
    while let Ok((_, _)) = listener.accept() {
        received.connections += 1;
    }
    Ok(received)
}

/// Checks what the host received from the uplink run.
fn check_received(r: &Received) -> std::result::Result<(), String> {
    if r.connections == 0 {
        return Err("the host's listener got no connection".to_owned());
    }
    if let Some((at, got)) = r.mismatch {
        return Err(format!(
            "the host received byte {got:#04x} at offset {at}, not {:#04x}",
            (at % 251) as u8
        ));
    }
    if r.bytes != UPLINK_BYTES || !r.closed {
        return Err(format!(
            "the host received {} of {UPLINK_BYTES} bytes{}",
            r.bytes,
            if r.closed { "" } else { " and no close" }
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------

fn missing(run: NetRun, key: &'static str, log: PathBuf) -> Error {
    Error::BenchOutput {
        run: run.describe(),
        key,
        log,
    }
}

/// The figures of [`NetRun::Tcp`]: the sender's and the receiver's MiB/s.
pub fn read_tcp(console: &str) -> Option<(f64, f64)> {
    let (sent, send) = tcp_line(console, 2, "tcp-send")?;
    let (got, recv) = tcp_line(console, 1, "tcp-recv")?;
    (sent == DOMU_BYTES && got == DOMU_BYTES).then_some((send, recv))
}

/// Boots one run of a mode and reads its figures.
pub fn measure(run: NetRun, icount: bool) -> Result<RunFigures> {
    match run {
        NetRun::Tcp => {
            let (console, log) = run.boot(icount, 0)?;
            let (send, recv) = read_tcp(&console).ok_or_else(|| missing(run, "tcp-send", log))?;
            Ok(RunFigures::Tcp { send, recv })
        }
        NetRun::Ping => {
            let (console, log) = run.boot(icount, 0)?;
            let ping = ping_line(&console, 2)
                .filter(|p| p.replies == PING_COUNT && p.count == PING_COUNT)
                .ok_or_else(|| missing(run, "ping", log))?;
            Ok(RunFigures::Ping(ping))
        }
        NetRun::Uplink => {
            let sink = HostSink::start()
                .map_err(Error::io("listening on 127.0.0.1 for the uplink run"))?;
            let booted = run.boot(icount, sink.port);
            let received = sink
                .finish()
                .map_err(Error::io("receiving the uplink run's bytes"))?;
            let (console, log) = booted?;
            if let Err(reason) = check_received(&received) {
                return Err(Error::BenchCheck {
                    run: run.describe(),
                    reason,
                    log,
                });
            }
            let (_, mib_s) = tcp_line(&console, 1, "tcp-send")
                .filter(|&(sent, _)| sent == UPLINK_BYTES)
                .ok_or_else(|| missing(run, "tcp-send", log))?;
            Ok(RunFigures::Uplink {
                guest: mib_s,
                host: received.mib_s(),
            })
        }
    }
}

/// What one run gave.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RunFigures {
    Tcp { send: f64, recv: f64 },
    Ping(Ping),
    Uplink { guest: f64, host: f64 },
}

impl NetFigures {
    /// No figures yet, against `grant_copy_mibps` (the same mode's bench
    /// run's); [`NetFigures::add`] each run's.
    pub fn new(grant_copy_mibps: u64) -> Self {
        Self {
            domu_tcp_mib_s: 0.0,
            domu_tcp_recv_mib_s: 0.0,
            ping: Ping {
                replies: 0,
                count: 0,
                min_us: 0,
                median_us: 0,
                max_us: 0,
            },
            uplink_tcp_mib_s: 0.0,
            uplink_host_mib_s: 0.0,
            grant_copy_mib_s: grant_copy_mibps as f64,
        }
    }

    pub fn add(&mut self, run: RunFigures) {
        match run {
            RunFigures::Tcp { send, recv } => {
                self.domu_tcp_mib_s = send;
                self.domu_tcp_recv_mib_s = recv;
            }
            RunFigures::Ping(p) => self.ping = p,
            RunFigures::Uplink { guest, host } => {
                self.uplink_tcp_mib_s = guest;
                self.uplink_host_mib_s = host;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------

/// The table.
pub fn table(tcg: &NetFigures, icount: &NetFigures) -> String {
    let mib = DOMU_BYTES >> 20;
    let mut t = String::from(
        "network (net kernels, smoltcp, netback)          TCG   TCG -icount shift=0\n",
    );
    let mut row = |name: &str, a: String, b: String| {
        t.push_str(&format!("{name:<44}{a:>10} {b:>21}\n"));
    };
    let f0 = |x: f64| format!("{x:.0}");
    let f2 = |x: f64| format!("{x:.2}");
    let f3 = |x: f64| format!("{x:.3}");
    let us = |x: Option<u64>| x.map_or_else(|| "n/a (*)".to_owned(), |x| x.to_string());
    row(
        &format!("DomU → DomU TCP, {mib} MiB (MiB/s)"),
        f2(tcg.domu_tcp_mib_s),
        f2(icount.domu_tcp_mib_s),
    );
    row(
        "grant copy, same run, 4 KiB pages (MiB/s)",
        f0(tcg.grant_copy_mib_s),
        f0(icount.grant_copy_mib_s),
    );
    row(
        &format!("ratio: TCP / grant copy (target ≥ {TARGET_OVER_GRANT_COPY})"),
        f3(tcg.domu_tcp_over_grant_copy()),
        f3(icount.domu_tcp_over_grant_copy()),
    );
    row(
        &format!("ping RTT, {PING_COUNT} × 64-byte ICMP: min (µs)"),
        tcg.ping.min_us.to_string(),
        icount.ping.min_us.to_string(),
    );
    row(
        "ping RTT: median (µs)",
        tcg.ping.median_us.to_string(),
        icount.ping.median_us.to_string(),
    );
    row(
        "ping RTT: max (µs)",
        us(tcg.ping.max()),
        us(icount.ping.max()),
    );
    row(
        &format!(
            "DomU → host TCP, uplink, {} MiB (MiB/s)",
            UPLINK_BYTES >> 20
        ),
        f2(tcg.uplink_tcp_mib_s),
        f2(icount.uplink_tcp_mib_s),
    );
    // Linux DomUs' rows (to come) go here.
    if tcg.ping.clock_stepped_back() || icount.ping.clock_stepped_back() {
        t.push_str(
            "(*) a reply came \"before\" its request: the DomU's clock stepped back during a ping\n",
        );
    }
    t
}

/// One mode's figures as JSON fields (no braces, a leading comma), for
/// the mode's object in `bench.json`, beside its `grant_copy_mibps`.
pub fn fields(f: &NetFigures) -> String {
    let max = f.ping.max().map_or("null".to_owned(), |m| m.to_string());
    format!(
        concat!(
            ", \"net_domu_tcp_bytes\": {}, \"net_domu_tcp_mib_s\": {:.2}, \"net_domu_tcp_recv_mib_s\": {:.2}, ",
            "\"net_domu_tcp_over_grant_copy\": {:.4}, ",
            "\"net_ping_count\": {}, \"net_ping_replies\": {}, \"net_ping_rtt_min_us\": {}, ",
            "\"net_ping_rtt_median_us\": {}, \"net_ping_rtt_max_us\": {}, \"net_ping_clock_stepped_back\": {}, ",
            "\"net_uplink_tcp_bytes\": {}, \"net_uplink_tcp_mib_s\": {:.2}, \"net_uplink_host_mib_s\": {:.2}"
        ),
        DOMU_BYTES,
        f.domu_tcp_mib_s,
        f.domu_tcp_recv_mib_s,
        f.domu_tcp_over_grant_copy(),
        f.ping.count,
        f.ping.replies,
        f.ping.min_us,
        f.ping.median_us,
        max,
        f.ping.clock_stepped_back(),
        UPLINK_BYTES,
        f.uplink_tcp_mib_s,
        f.uplink_host_mib_s,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "(d2) net: vif 0 mac 00:16:3e:00:02:00 backend /local/domain/0/backend/vif/2/0 dom 0 split=1 sg=0 rx-buffers=256\r\n\
        (d2) net: tcp-send 16777216 bytes in 1170 ms, 13.66 MiB/s\r\n\
        (d2) net: PASS\r\n\
        (d1) net: tcp-recv 16777216 bytes in 1150 ms, 13.94 MiB/s, pattern ok\r\n\
        (d1) net: PASS\r\n";

    #[test]
    fn tcp_lines_are_read() {
        assert_eq!(tcp_line(TCP, 2, "tcp-send"), Some((16_777_216, 13.66)));
        assert_eq!(tcp_line(TCP, 1, "tcp-recv"), Some((16_777_216, 13.94)));
        assert_eq!(tcp_line(TCP, 1, "tcp-send"), None);
        assert_eq!(read_tcp(TCP), Some((13.66, 13.94)));
        assert!(passed(TCP, 1) && passed(TCP, 2) && !passed(TCP, 3));
        // The receiver must have checked the pattern.
        let unchecked = TCP.replace(", pattern ok", "");
        assert_eq!(read_tcp(&unchecked), None);
        // And both must have moved all the bytes.
        let short = TCP.replace("tcp-send 16777216", "tcp-send 4096");
        assert_eq!(read_tcp(&short), None);
    }

    #[test]
    fn ping_lines_are_read() {
        let p = ping_line(
            "(d1) net: ping 1/1 replies\r\n(d2) net: ping 200/200 replies, rtt min/median/max 46/883/1940 us\r\n",
            2,
        )
        .unwrap();
        assert_eq!(
            p,
            Ping {
                replies: 200,
                count: 200,
                min_us: 46,
                median_us: 883,
                max_us: 1940
            }
        );
        assert!(!p.clock_stepped_back());
        assert_eq!(
            ping_line(
                "(d2) net: ping 200/200 replies, rtt min/median/max 46/883/1940 us from 812 to 990 ms",
                2
            ),
            Some(p)
        );
        assert_eq!(p.max(), Some(1940));
        assert_eq!(
            ping_line(
                "(d2) net: ping 0/200 replies, rtt min/median/max -/-/- us",
                2
            ),
            None
        );
        // A reply "before" its request wraps the kernel's difference.
        let wrapped = ping_line(
            "(d2) net: ping 200/200 replies, rtt min/median/max 46/883/18446744073709422 us",
            2,
        )
        .unwrap();
        assert!(wrapped.clock_stepped_back());
        assert_eq!(wrapped.max(), None);
    }

    #[test]
    fn the_host_checks_the_pattern() {
        let mut r = Received::default();
        let data: Vec<u8> = (0..600u64).map(|i| (i % 251) as u8).collect();
        r.take(&data[..300]);
        r.take(&data[300..]);
        assert_eq!((r.bytes, r.mismatch), (600, None));
        let mut bad = data.clone();
        bad[400] ^= 1;
        let mut r = Received::default();
        r.take(&bad[..100]);
        r.take(&bad[100..]);
        assert_eq!(r.mismatch, Some((400, bad[400])));
        r.connections = 1;
        r.closed = true;
        assert!(check_received(&r).unwrap_err().contains("offset 400"));
        let whole = Received {
            connections: 1,
            bytes: UPLINK_BYTES,
            closed: true,
            ..Received::default()
        };
        assert!(check_received(&whole).is_ok());
        let short = Received { bytes: 10, ..whole };
        assert!(check_received(&short).unwrap_err().contains("10 of"));
        assert!(
            check_received(&Received::default())
                .unwrap_err()
                .contains("no connection")
        );
    }

    #[test]
    fn a_host_sink_receives() {
        use std::io::Write;
        let sink = HostSink::start().unwrap();
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, sink.port)).unwrap();
        let data: Vec<u8> = (0..100_000u64).map(|i| (i % 251) as u8).collect();
        s.write_all(&data).unwrap();
        drop(s);
        // Let the thread see the EOF before it is told to stop.
        thread::sleep(Duration::from_millis(200));
        let r = sink.finish().unwrap();
        assert_eq!(
            (r.connections, r.bytes, r.mismatch, r.closed),
            (1, 100_000, None, true)
        );
        let idle = HostSink::start().unwrap().finish().unwrap();
        assert_eq!(idle.connections, 0);
    }

    #[test]
    fn the_runs_domus() {
        // (Not the machines: they check that the kernels are built.)
        let [d1] = &NetRun::Uplink.domus(40000)[..] else {
            panic!("one DomU")
        };
        assert_eq!(d1.vifs, [Vif::new()]);
        let cmdline = d1.cmdline.as_deref().unwrap();
        assert_eq!(
            cmdline,
            "ip=10.0.2.15/24 gw=10.0.2.2 mode=tcp-send peer=10.0.2.2 port=40000 bytes=16777216"
        );
        let uplink = domains::dom0_module_with(std::slice::from_ref(d1), Some(&Uplink::default()));
        assert!(uplink.1.contains("pavise.uplink=8"), "{}", uplink.1);
        let tcp = NetRun::Tcp.domus(0);
        assert_eq!(tcp.len(), 2);
        assert!(
            tcp[0]
                .cmdline
                .as_deref()
                .unwrap()
                .contains("mode=tcp-recv port=5001")
        );
        assert!(
            tcp[1]
                .cmdline
                .as_deref()
                .unwrap()
                .contains("mode=tcp-send peer=10.0.2.21 port=5001")
        );
        assert!(
            domains::dom0_module_with(&tcp, None)
                .1
                .contains("pavise.vif=2:0:")
        );
        let ping = NetRun::Ping.domus(0);
        assert!(
            ping[1]
                .cmdline
                .as_deref()
                .unwrap()
                .contains("count=200 timeout=2000 done=7")
        );
    }

    #[test]
    fn table_and_fields() {
        let f = NetFigures {
            domu_tcp_mib_s: 14.0,
            domu_tcp_recv_mib_s: 14.5,
            ping: Ping {
                replies: 200,
                count: 200,
                min_us: 46,
                median_us: 883,
                max_us: 18_446_744_073_709_422,
            },
            uplink_tcp_mib_s: 3.5,
            uplink_host_mib_s: 3.4,
            grant_copy_mib_s: 80.0,
        };
        assert!((f.domu_tcp_over_grant_copy() - 0.175).abs() < 1e-9);
        let t = table(&f, &f);
        assert!(t.contains("ratio: TCP / grant copy (target ≥ 0.7)"), "{t}");
        assert!(t.contains("n/a (*)") && t.contains("stepped back"), "{t}");
        let j = fields(&f);
        assert!(j.starts_with(", \"net_domu_tcp_bytes\": 16777216, \"net_domu_tcp_mib_s\": 14.00"));
        assert!(j.contains("\"net_domu_tcp_over_grant_copy\": 0.1750"));
        assert!(j.contains("\"net_ping_rtt_max_us\": null, \"net_ping_clock_stepped_back\": true"));
        assert!(j.ends_with("\"net_uplink_host_mib_s\": 3.40"));
    }
}
