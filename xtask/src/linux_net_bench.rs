//! Linux's network figures for `cargo xtask bench` (TCG): two Debian
//! Linux DomUs with their own xen-netfront on Dom0's switch
//! (`linux_net::NET_INIT`); one pings the other 3 times, then sends it
//! [`BYTES`] random bytes over TCP with busybox `nc`, timed in the
//! sender's guest time (`/proc/uptime`, 10 ms steps; the transfer takes
//! seconds). The receiver checks the byte count and md5. The throughput
//! is set against the same run's grant copy, as the test kernels' is.

use std::path::PathBuf;
use std::time::Duration;

use crate::domains::{self, DomU};
use crate::linux::LinuxKit;
use crate::net_bench::{TARGET_OVER_GRANT_COPY, over_grant_copy};
use crate::{Error, Exit, HvStatus, Machine, Result, linux_net, workspace};

/// Bytes the sender moves.
pub const BYTES: u64 = 16 << 20;
const RUN: &str = "Linux → Linux TCP through netback";
const MACHINE_MIB: u32 = 768;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinuxNetFigures {
    pub tcp_mib_s: f64,
    /// busybox ping's min/avg/max round trip (ms) over 3 echoes.
    pub ping_ms: (f64, f64, f64),
}

fn linux_domu(kit: &LinuxKit, ramdisk: &std::path::Path, name: &str, words: &str) -> Result<DomU> {
    domains::parse_domu(&format!(
        "{},name={name},mem=256,vcpus=1,vif,ramdisk={},cmdline=console=hvc0 {words}",
        kit.vmlinux.display(),
        ramdisk.display()
    ))
}

fn log_path() -> PathBuf {
    workspace::pavise_dir().join("bench-linux-net.log")
}

/// The value after `key` on the line that starts with `prefix`.
fn after<'a>(console: &'a str, prefix: &str, key: &str) -> Option<&'a str> {
    let line = console.lines().find(|l| l.starts_with(prefix))?;
    let rest = &line[line.find(key)? + key.len()..];
    rest.split_whitespace().next()
}

/// Reads the figures from the run's console; `None` unless the receiver
/// got all the bytes with the sender's md5.
pub fn read(console: &str) -> Option<LinuxNetFigures> {
    let sent = after(console, "(d2) linux-net: sending", "md5 ")?;
    let got = after(console, "(d1) linux-net: received", "md5 ")?;
    let count: u64 = after(console, "(d1) linux-net: received", "received ")?
        .parse()
        .ok()?;
    if sent != got || count != BYTES {
        return None;
    }
    let secs: f64 = after(console, "(d2) linux-net: sent in", "sent in ")?
        .parse()
        .ok()?;
    let rtt = after(console, "(d2) linux-net: round-trip", "= ")?;
    let mut parts = rtt.split('/').map(|p| p.parse::<f64>().ok());
    let (Some(Some(min)), Some(Some(avg)), Some(Some(max))) =
        (parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    // /proc/uptime's 10 ms steps: a transfer shorter than a step reads 0.
    let secs = secs.max(0.01);
    Some(LinuxNetFigures {
        tcp_mib_s: BYTES as f64 / (1 << 20) as f64 / secs,
        ping_ms: (min, avg, max),
    })
}

/// Boots the pair (TCG) with the network initramfs `ramdisk` and reads
/// the figures; the console is kept in `target/pavise/bench-linux-net.log`.
pub fn measure(kit: &LinuxKit, ramdisk: &std::path::Path) -> Result<LinuxNetFigures> {
    let domus = [
        linux_domu(kit, ramdisk, "recv", "net.role=recv net.ip=10.0.2.31/24")?,
        linux_domu(
            kit,
            ramdisk,
            "send",
            &format!("net.role=send net.ip=10.0.2.32/24 net.peer=10.0.2.31 net.bytes={BYTES}"),
        )?,
    ];
    let machine = Machine {
        smp: 2,
        mem_mib: MACHINE_MIB,
        cmdline: "exit_when_done".to_owned(),
        modules: domains::modules_with(&domus, None)?,
        timeout: Some(Duration::from_secs(120)),
        ..Machine::default()
    };
    let run = machine.run_captured()?;
    let log = log_path();
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    }
    std::fs::write(&log, &run.console).map_err(Error::io(format!("writing {}", log.display())))?;
    if run.exit != Exit::Hypervisor(HvStatus::Success) {
        return Err(Error::BenchRun {
            run: RUN,
            exit: run.exit.to_string(),
            log,
        });
    }
    read(&run.console).ok_or(Error::BenchCheck {
        run: RUN,
        reason: "the receiver did not get every byte with the sender's md5, or a figure is missing"
            .to_owned(),
        log,
    })
}

/// Makes (or refreshes) the network initramfs for `kit`.
pub fn initramfs(kit: &LinuxKit) -> Result<PathBuf> {
    let out = linux_net::initramfs_path();
    linux_net::initramfs(kit, &out)?;
    Ok(out)
}

/// The table rows (TCG), against the TCG run's grant copy.
pub fn table(f: &LinuxNetFigures, grant_copy_mib_s: f64) -> String {
    let mut t = String::from("network (Linux DomUs, xen-netfront, busybox nc)          TCG\n");
    let (min, avg, max) = f.ping_ms;
    let rows = [
        (
            format!("Linux → Linux TCP, {} MiB (MiB/s)", BYTES >> 20),
            format!("{:.2}", f.tcp_mib_s),
        ),
        (
            format!("ratio: Linux TCP / grant copy (target ≥ {TARGET_OVER_GRANT_COPY})"),
            format!("{:.3}", over_grant_copy(f.tcp_mib_s, grant_copy_mib_s)),
        ),
        (
            "Linux ping RTT, 3 echoes: min/avg/max (µs)".to_owned(),
            format!("{:.0}/{:.0}/{:.0}", min * 1e3, avg * 1e3, max * 1e3),
        ),
    ];
    for (name, value) in rows {
        t.push_str(&format!("{name:<56}{value:>12}\n"));
    }
    t
}

/// JSON fields for the "tcg" object (a leading comma, no braces).
pub fn fields(f: &LinuxNetFigures, grant_copy_mib_s: f64) -> String {
    let (min, avg, max) = f.ping_ms;
    format!(
        ", \"net_linux_tcp_bytes\": {BYTES}, \"net_linux_tcp_mib_s\": {:.2}, \
         \"net_linux_tcp_over_grant_copy\": {:.4}, \"net_linux_ping_rtt_min_us\": {:.0}, \
         \"net_linux_ping_rtt_avg_us\": {:.0}, \"net_linux_ping_rtt_max_us\": {:.0}",
        f.tcp_mib_s,
        over_grant_copy(f.tcp_mib_s, grant_copy_mib_s),
        min * 1e3,
        avg * 1e3,
        max * 1e3
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
(d2) linux-net: round-trip min/avg/max = 6.016/11.096/21.202 ms
(d2) linux-net: sending 16777216 bytes md5 0123abcd
(d1) linux-net: received 16777216 bytes md5 0123abcd
(d2) linux-net: sent in 2.5 s
";

    #[test]
    fn figures_come_from_the_pair_of_lines() {
        let f = read(CONSOLE).unwrap();
        assert!((f.tcp_mib_s - 6.4).abs() < 1e-9);
        assert_eq!(f.ping_ms, (6.016, 11.096, 21.202));
        assert!(fields(&f, 64.0).contains("\"net_linux_tcp_over_grant_copy\": 0.1000"));
    }

    #[test]
    fn a_wrong_md5_or_count_gives_no_figures() {
        assert!(read(&CONSOLE.replace("md5 0123abcd\n(d2)", "md5 ffff\n(d2)")).is_none());
        assert!(read(&CONSOLE.replace("received 16777216", "received 100")).is_none());
        assert!(read("").is_none());
    }
}
