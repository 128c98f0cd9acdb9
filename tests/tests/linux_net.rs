//! Linux on the network: Debian's stock kernel with its own xen-netfront
//! (loaded from the kernel package by a busybox initramfs) talks through
//! Dom0's netback and switch. Two Linux DomUs configure addresses, ping
//! each other and move 4 MiB over TCP with busybox `nc`; one Linux DomU
//! fetches a file from an HTTP server this test runs on the host's
//! 127.0.0.1 (through the uplink, QEMU's user network, its NIC behind
//! QEMU's IOMMU), and the host reaches a server in the DomU through
//! `hostfwd`. The guests' /init is
//! `xtask::linux_net::NET_INIT`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pavise_tests::{
    DomU, Exit, HvStatus, boot, expect_exit, expect_lines, fail, line_starting, with_network,
};
use xtask::{HostFwd, Uplink, linux, linux_net};

const LINUX_TIMEOUT: Duration = Duration::from_secs(240);
/// Two Linux DomUs of 256 MiB beside Dom0 and the hypervisor.
const MACHINE_MIB: u32 = 768;
const ALL_ENDED: &str = "pavise: all watched domains ended";

fn kit() -> &'static linux::LinuxKit {
    static KIT: OnceLock<linux::LinuxKit> = OnceLock::new();
    KIT.get_or_init(|| {
        linux::prepare(&linux::cache_dir()).unwrap_or_else(|e| {
            panic!("cannot get Debian's Linux kernel for the Linux scenarios: {e}")
        })
    })
}

/// The network initramfs, made once per run.
fn net_initramfs() -> &'static Path {
    static INITRAMFS: OnceLock<PathBuf> = OnceLock::new();
    INITRAMFS.get_or_init(|| {
        let out = linux_net::initramfs_path();
        linux_net::initramfs(kit(), &out)
            .unwrap_or_else(|e| panic!("cannot build the network initramfs: {e}"));
        out
    })
}

/// A Linux DomU with one vif, 256 MiB, 1 vCPU and `net.*` words.
fn linux_net_domu(name: &str, words: &str) -> DomU {
    let spec = format!(
        "{},name={name},mem=256,vcpus=1,vif,ramdisk={},cmdline=console=hvc0 {words}",
        kit().vmlinux.display(),
        net_initramfs().display()
    );
    xtask::domains::parse_domu(&spec).unwrap_or_else(|e| panic!("bad Linux DomU: {e}"))
}

fn machine(domus: &[DomU], uplink: Option<Uplink>) -> xtask::Machine {
    let mut machine = with_network(2, domus, uplink);
    machine.mem_mib = MACHINE_MIB;
    machine.timeout = Some(LINUX_TIMEOUT);
    machine
}

/// The value after `key` in the line starting with `prefix`.
fn word_after<'a>(console: &'a str, prefix: &str, key: &str) -> Option<&'a str> {
    let line = line_starting(console, prefix)?;
    let rest = &line[line.find(key)? + key.len()..];
    rest.split_whitespace().next()
}

#[test]
fn two_linux_domus_ping_and_move_4_mib_over_tcp() {
    let machine = machine(
        &[
            linux_net_domu("recv", "net.role=recv net.ip=10.0.2.31/24"),
            linux_net_domu(
                "send",
                "net.role=send net.ip=10.0.2.32/24 net.peer=10.0.2.31 net.bytes=4194304",
            ),
        ],
        None,
    );
    // A Linux that stopped dead in its early boot here was the lost
    // wake-up of `singleshot_timers_fire_on_time` (Linux idles with
    // `sti; hlt` too).
    let outcome = boot(&machine);
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "(d1) linux-net: loaded xen-netfront",
            "(d1) linux-net: eth0 00:16:3e:00:01:00 10.0.2.31/24 up",
            "(d2) linux-net: eth0 00:16:3e:00:02:00 10.0.2.32/24 up",
            "(d2) linux-net: 3 packets transmitted, 3 packets received",
            "(d2) linux-net: sending 4194304 bytes md5 ",
            "(d1) linux-net: received 4194304 bytes md5 ",
            "(d1) linux-net: done",
            "(d2) linux-net: done",
            ALL_ENDED,
        ],
    );
    let sent = word_after(&outcome.console, "(d2) linux-net: sending", "md5 ");
    let got = word_after(&outcome.console, "(d1) linux-net: received", "md5 ");
    if sent.is_none() || sent != got {
        fail(
            &outcome,
            &format!("the receiver's md5 {got:?} is not the sender's {sent:?}"),
        );
    }
    for key in [
        "(d2) linux-net: round-trip",
        "(d2) linux-net: sent in",
        "dom0: d1 vif0 disconnected",
        "dom0: d2 vif0 disconnected",
    ] {
        if let Some(line) = line_starting(&outcome.console, key) {
            eprintln!("  {line}");
        }
    }
}

/// Serves `body` to every HTTP request on a loopback port until `stop`.
fn http_server(body: Vec<u8>, stop: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("cannot listen on loopback");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let port = listener.local_addr().expect("listener address").port();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut request = [0u8; 2048];
                    let _ = stream.read(&mut request);
                    let head = format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&body);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    port
}

/// Connects to `port` on loopback again and again until a peer answers
/// with something, or `stop`; returns what came.
fn fetch_through_hostfwd(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
                // QEMU's slirp takes the connection at once and opens it
                // to the DomU when it can: one made before Linux's NIC is
                // up is answered seconds later, after SYN retransmits (a
                // 5 s limit dropped such a one that Linux then served
                // into the void). A closed QEMU ends the read anyway.
                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                let mut got = Vec::new();
                let _ = stream.read_to_end(&mut got);
                if !got.is_empty() {
                    return got;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Vec::new()
    })
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn md5_of(bytes: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!("pavise-uplink-{}.bin", std::process::id()));
    std::fs::write(&path, bytes).expect("cannot write the served file");
    let out = Command::new("md5sum")
        .arg(&path)
        .output()
        .expect("md5sum is needed (coreutils)");
    let _ = std::fs::remove_file(&path);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn linux_fetches_from_the_host_and_the_host_reaches_linux() {
    let body: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let expected_md5 = md5_of(&body);
    let stop = Arc::new(AtomicBool::new(false));
    let http_port = http_server(body, stop.clone());
    let forward_port = free_port();
    let ip = Ipv4Addr::new(10, 0, 2, 15);
    let uplink = Uplink {
        hostfwd: vec![HostFwd::new(forward_port, ip, 8080)],
    };
    let reached = fetch_through_hostfwd(forward_port, stop.clone());
    let started = Instant::now();
    let mut machine = machine(
        &[linux_net_domu(
            "linux",
            &format!(
                "net.role=uplink net.ip={ip}/24 net.gw=10.0.2.2 net.url=http://10.0.2.2:{http_port}/file"
            ),
        )],
        Some(uplink),
    );
    // The NIC behind QEMU's IOMMU: its DMA is confined to Dom0's memory,
    // and the traffic still flows (virtio's ACCESS_PLATFORM accepted).
    machine.iommu = true;
    let outcome = boot(&machine);
    stop.store(true, Ordering::SeqCst);
    let page = reached.join().unwrap_or_default();
    eprintln!("  boot took {:.1} s", started.elapsed().as_secs_f64());
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "pavise: IOMMU at 0xfed90000: Dom0's devices reach its",
            "dom0: uplink at slot 0x8",
            "(d1) linux-net: eth0 00:16:3e:00:01:00 10.0.2.15/24 up",
            &format!("(d1) linux-net: fetched 1048576 bytes md5 {expected_md5}"),
            "(d1) linux-net: serving on 8080",
            "(d1) linux-net: served",
            ALL_ENDED,
        ],
    );
    let page = String::from_utf8_lossy(&page);
    if page.trim() != format!("served by linux {ip}/24") {
        fail(
            &outcome,
            &format!("the host got {page:?} through hostfwd, not the DomU's page"),
        );
    }
}
