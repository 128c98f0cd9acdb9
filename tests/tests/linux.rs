//! Linux as a DomU: Debian's stock kernel (fetched once with `apt-get
//! download` and cached under target/linux/, see `xtask::linux`) boots
//! unchanged in PVH mode beside Dom0, with a busybox initramfs whose /init
//! checks the platform and powers off. On one and on four vCPUs; beside a
//! hostile guest, a crasher and a fuzzer; panicking on purpose (only its domain
//! ends); and asked by Dom0 through XenStore to power off. Then with its root
//! file system on its own disk (`xvda`, served by Dom0's blkback): the
//! kernel's own xen-blkfront and ext4 modules, loaded by a small initramfs
//! that mounts the disk and switches to it; and what one boot writes there
//! is on the image and read back by the next.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use pavise_tests::{
    DomU, Exit, HvStatus, RunOutcome, boot, console_lines, domu, expect_exit, expect_lines, fail,
    line_starting, with_domains,
};
use xtask::TypeWhen;
use xtask::{linux, linux_root};

/// Linux boots in a few seconds of guest time, but TCG runs its
/// initialisation slowly; the whole run stays well under this.
const LINUX_TIMEOUT: Duration = Duration::from_secs(240);

/// The machine's memory: Linux's 256 MiB beside Dom0's and the hypervisor's.
const MACHINE_MIB: u32 = 512;

/// A machine booting Dom0 and `domus`, sized and timed for Linux.
fn linux_machine(smp: u32, domus: &[DomU]) -> xtask::Machine {
    let mut machine = with_domains(smp, domus);
    machine.mem_mib = MACHINE_MIB;
    machine.timeout = Some(LINUX_TIMEOUT);
    machine
}

/// The kernel and busybox, fetched (or found in the cache) once per run.
fn kit() -> &'static linux::LinuxKit {
    static KIT: OnceLock<linux::LinuxKit> = OnceLock::new();
    KIT.get_or_init(|| {
        linux::prepare(&linux::cache_dir()).unwrap_or_else(|e| {
            panic!("cannot get Debian's Linux kernel for the Linux scenarios: {e}")
        })
    })
}

/// An initramfs whose /init is `script`, built once per name.
fn initramfs(name: &str, script: &str) -> PathBuf {
    let out = linux::cache_dir().join(format!("initramfs-test-{name}.cpio.gz"));
    linux::initramfs(&kit().busybox, script, &out)
        .unwrap_or_else(|e| panic!("cannot build the {name} initramfs: {e}"));
    out
}

/// Linux as a DomU named `linux` with `vcpus`, 256 MiB and `ramdisk`.
fn linux_domu(vcpus: u32, ramdisk: &Path, extra: &str) -> DomU {
    let spec = format!(
        "{},name=linux,mem=256,vcpus={vcpus},ramdisk={},cmdline=console=hvc0 {extra}",
        kit().vmlinux.display(),
        ramdisk.display()
    );
    xtask::domains::parse_domu(&spec).unwrap_or_else(|e| panic!("bad Linux DomU: {e}"))
}

fn value<'a>(console: &'a str, key: &str) -> Option<&'a str> {
    line_starting(console, &format!("(d1) linux-check: {key}="))
        .map(|l| l.split_once('=').map_or("", |(_, v)| v).trim())
}

fn check_linux(vcpus: u32, smp: u32) {
    let ramdisk = initramfs("check", linux::CHECK_INIT);
    let machine = linux_machine(smp, &[linux_domu(vcpus, &ramdisk, "")]);
    let outcome = boot(&machine);
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            &format!("pavise: d1 (linux) built: 256 MiB, {vcpus} vCPU"),
            "(d1) linux-check: uptime_at_init=",
            &format!("(d1) linux-check: nproc={vcpus}"),
            &format!("(d1) linux-check: cpus_ran={vcpus}/{vcpus}"),
            "(d1) linux-check: sleep1_ms=",
            "(d1) linux-check: done",
            "pavise: d1 (linux) poweroff",
        ],
    );
    let sleep: u64 = value(&outcome.console, "sleep1_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| fail(&outcome, "no sleep1_ms figure"));
    if !(900..=1100).contains(&sleep) {
        fail(
            &outcome,
            &format!("`sleep 1` took {sleep} ms, not 1000 ± 10 %"),
        );
    }
    // The console is hvc0, the PV console ring Dom0 relays (no device of
    // its own on the bus): the bus exists and xenbus came up on it.
    let devices = value(&outcome.console, "xen-devices").unwrap_or("absent");
    if devices == "absent" {
        fail(
            &outcome,
            "Linux has no /sys/bus/xen/devices: xenbus did not start",
        );
    }
    for bad in [
        "xen:cpu_hotplug: Unable to read cpu state",
        "unchecked MSR access",
        "BUG:",
        "WARNING:",
    ] {
        if outcome.console.contains(bad) {
            fail(&outcome, &format!("Linux logged '{bad}'"));
        }
    }
    if let Some(line) = console_lines(&outcome.console).find(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("(d1) ") && l.contains("blkfront") && l.contains("fail")
    }) {
        fail(&outcome, &format!("blkfront failed: {line:?}"));
    }
    eprintln!(
        "  Linux on {vcpus} vCPU(s): uptime at /init {} s, sleep 1 took {sleep} ms",
        value(&outcome.console, "uptime_at_init").unwrap_or("?")
    );
}

#[test]
fn linux_boots_to_init_on_one_vcpu() {
    check_linux(1, 1);
}

/// What the README promises a new user: with Pavise running, `cargo
/// xtask xl create PATH` sends Dom0 a Linux config, kernel and initramfs
/// from the host and starts Linux; `console N` on the serial console
/// attaches to its shell (input and output), Ctrl-] comes back to Dom0,
/// and `destroy N` ends it.
#[test]
fn linux_sent_from_the_host_attached_to_and_destroyed() {
    let ramdisk = initramfs("interactive", linux::INTERACTIVE_INIT);
    let dir = linux::cache_dir().join("test-configs");
    std::fs::create_dir_all(&dir).expect("the configs' directory");
    let cfg = dir.join("shell.cfg");
    std::fs::write(
        &cfg,
        format!(
            "name = \"shell\"\ntype = \"pvh\"\nkernel = \"{}\"\nramdisk = \"{}\"\n\
             extra = \"console=hvc0\"\nmemory = 256\nvcpus = 1\n",
            kit().vmlinux.display(),
            ramdisk.display()
        ),
    )
    .expect("writing shell.cfg");
    let mut machine = linux_machine(1, &[domu("counter", "name=anchor")]);
    // As `cargo xtask run` gives it: room for the kernel sent.
    let (_, dom0) = &mut machine.modules[0];
    *dom0 = xtask::domains::with_dom0_mem(dom0, 160);
    let socket = xtask::xl::socket_dir().join(format!("linux-sent-{}.sock", std::process::id()));
    std::fs::create_dir_all(xtask::xl::socket_dir()).expect("the socket directory");
    let _ = std::fs::remove_file(&socket);
    machine.control = Some(socket.clone());
    let ctrl_a3 = "\x01\x01\x01".to_owned();
    machine.console_input = [
        // Serial input starts at the anchor's console: on to d2, then Dom0.
        (
            "Pavise: exit the shell to power the domain off",
            format!("{ctrl_a3}{ctrl_a3}"),
        ),
        ("serial input -> dom0", "console 2\r".to_owned()),
        (
            "attaching the serial console to d2",
            "echo attached-$((6*7))\r".to_owned(),
        ),
        ("attached-42", "\x1d".to_owned()),
        ("serial input -> dom0", "destroy 2\r".to_owned()),
        ("pavise: d2 destroyed", "destroy anchor\r".to_owned()),
    ]
    .into_iter()
    .map(|(seen, typed)| (TypeWhen::Seen(seen.to_owned()), typed.into_bytes()))
    .collect();
    let client = std::thread::spawn(move || -> Result<String, String> {
        let give_up = std::time::Instant::now() + Duration::from_secs(60);
        while !xtask::xl::request(&socket, "list").is_ok_and(|a| a.text.contains("anchor")) {
            if std::time::Instant::now() > give_up {
                return Err("Dom0 never answered on the control channel".to_owned());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let start = std::time::Instant::now();
        let created = xtask::xl::create_from_host(&socket, &cfg, &[])
            .map_err(|e| format!("create from the host: {e}"))?;
        if !created.ok {
            return Err(format!("create refused: {}", created.text));
        }
        Ok(format!(
            "{} ({:.1} s with the upload)",
            created.text.trim(),
            start.elapsed().as_secs_f64()
        ))
    });
    let outcome = boot(&machine);
    match client.join().expect("the client thread") {
        Ok(said) => eprintln!("  {said}"),
        Err(e) => fail(&outcome, &e),
    }
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "dom0: holding vmlinux (",
            "(d2) Pavise: exit the shell to power the domain off",
            "dom0: attaching the serial console to d2",
            "(d2) attached-42",
            "pavise: d2 destroyed",
            "pavise: d1 (anchor) destroyed",
        ],
    );
}

/// Linux built at run time by Dom0's toolstack (`xl create` from an
/// xl.cfg config, through createdomain, populate_physmap, foreign
/// mappings and setvcpucontext) boots as the boot-time builder's does,
/// and `on_poweroff = "destroy"` removes it once it powers off.
#[test]
fn linux_created_at_run_time_from_a_config() {
    let ramdisk = initramfs("check", linux::CHECK_INIT);
    let dir = linux::cache_dir().join("test-configs");
    std::fs::create_dir_all(&dir).expect("the configs' directory");
    let cfg = dir.join("linux.cfg");
    std::fs::write(
        &cfg,
        format!(
            "name = \"linux\"\ntype = \"pvh\"\nkernel = \"{}\"\nramdisk = \"{}\"\n\
             extra = \"console=hvc0\"\nmemory = 256\nvcpus = 2\non_poweroff = \"destroy\"\n",
            kit().vmlinux.display(),
            ramdisk.display()
        ),
    )
    .expect("writing linux.cfg");
    // A counting boot-time DomU: destroying it ends the run.
    let mut machine = linux_machine(2, &[domu("counter", "name=anchor")]);
    machine
        .create_config(&cfg)
        .unwrap_or_else(|e| panic!("linux.cfg: {e}"));
    machine.console_input = vec![(
        TypeWhen::Seen("(linux) powered off; destroyed".to_owned()),
        b"destroy anchor\r".to_vec(),
    )];
    let outcome = boot(&machine);
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "dom0: created d2 from linux.cfg",
            "(d2) linux-check: uptime_at_init=",
            "(d2) linux-check: nproc=2",
            "(d2) linux-check: cpus_ran=2/2",
            "(d2) linux-check: done",
            "pavise: d2 poweroff",
            "dom0: d2 (linux) powered off; destroyed",
            "pavise: d1 (anchor) destroyed",
        ],
    );
    for bad in ["unchecked MSR access", "BUG:", "WARNING:"] {
        if outcome.console.contains(bad) {
            fail(&outcome, &format!("Linux logged '{bad}'"));
        }
    }
}

#[test]
fn linux_boots_to_init_on_four_vcpus() {
    check_linux(4, 2);
}

#[test]
fn linux_finishes_beside_a_hostile_guest_a_crasher_and_a_fuzzer() {
    let ramdisk = initramfs("check", linux::CHECK_INIT);
    let machine = linux_machine(
        2,
        &[
            linux_domu(1, &ramdisk, ""),
            domu("hostile", ""),
            domu("crasher", "cmdline=wild-write"),
            domu("fuzzer", "cmdline=seed=42 calls=20000"),
        ],
    );
    let outcome = boot(&machine);
    // The crasher's end is a failure of a watched domain: status 3.
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::GuestFailed));
    expect_lines(
        &outcome,
        &[
            "(d2) hostile: PASS",
            "pavise: d3 (crasher) crash:",
            "(d4) fuzzer: PASS 20000 calls",
            "(d1) linux-check: done",
            "pavise: d1 (linux) poweroff",
        ],
    );
}

/// /init panics the kernel through sysrq once it is up.
const PANIC_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "linux-panic: crashing on purpose"
echo c > /proc/sysrq-trigger
"#;

#[test]
fn a_linux_panic_ends_only_its_domain() {
    let ramdisk = initramfs("panic", PANIC_INIT);
    let machine = linux_machine(1, &[linux_domu(1, &ramdisk, ""), domu("hello", "")]);
    let outcome = boot(&machine);
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::GuestFailed));
    expect_lines(
        &outcome,
        &[
            "(d2) hello: PASS",
            "pavise: d2 (hello) poweroff",
            "(d1) linux-panic: crashing on purpose",
            "pavise: d1 (linux) crash:",
        ],
    );
    let panic_shown = pavise_tests::console_lines(&outcome.console).any(|l| {
        l.starts_with("(d1) ") && l.contains("Kernel panic - not syncing: sysrq triggered crash")
    });
    if !panic_shown {
        fail(&outcome, "the panic text is not on Linux's console");
    }
}

/// /init waits; busybox's `poweroff`, which Linux runs when XenStore's
/// control/shutdown says "poweroff", signals init with SIGUSR2.
const SHUTDOWN_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
trap 'echo "linux-shutdown: asked to power off"; poweroff -f' USR2
echo "linux-shutdown: waiting"
while :; do sleep 1; done
"#;

#[test]
fn dom0_asks_linux_to_power_off_through_xenstore() {
    let ramdisk = initramfs("shutdown", SHUTDOWN_INIT);
    let mut machine = linux_machine(1, &[linux_domu(1, &ramdisk, "")]);
    // With one DomU the serial input goes to it; Ctrl-A three times gives
    // it to Dom0, which takes the command.
    machine.console_input = vec![(
        TypeWhen::Seen("linux-shutdown: waiting".to_owned()),
        b"\x01\x01\x01shutdown 1\r".to_vec(),
    )];
    let outcome = boot(&machine);
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "dom0: asked d1 to power off",
            "(d1) linux-shutdown: asked to power off",
            "pavise: d1 (linux) poweroff",
        ],
    );
}

/// /init reboots at once.
const REBOOT_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "linux-reboot: rebooting"
/bin/busybox reboot -f
"#;

#[test]
fn linux_reboot_ends_the_domain_with_the_reboot_reason() {
    let ramdisk = initramfs("reboot", REBOOT_INIT);
    let outcome = boot(&linux_machine(1, &[linux_domu(1, &ramdisk, "")]));
    // A reboot is not a clean power-off of a watched domain: status 3.
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::GuestFailed));
    expect_lines(
        &outcome,
        &["(d1) linux-reboot: rebooting", "pavise: d1 (linux) reboot"],
    );
}

/// The root-on-disk initramfs (the root modules taken out of the kernel
/// package, or found in the cache), made once per run.
fn root_initramfs() -> &'static Path {
    static INITRAMFS: OnceLock<PathBuf> = OnceLock::new();
    INITRAMFS.get_or_init(|| {
        let cache = linux::cache_dir();
        let (modules, _) = linux_root::modules(&cache, &kit().version).unwrap_or_else(|e| {
            panic!("cannot get the root modules out of the kernel package: {e}")
        });
        let out = cache.join("initramfs-test-root.cpio.gz");
        linux_root::initramfs(&kit().busybox, &modules, &out)
            .unwrap_or_else(|e| panic!("cannot build the root initramfs: {e}"));
        out
    })
}

/// A root file system image made afresh for this test and this run
/// (nothing a previous run wrote is on it).
fn fresh_root_image(name: &str) -> PathBuf {
    let image = linux::cache_dir().join(format!("root-test-{name}.img"));
    linux_root::build_root_image(&kit().busybox, &image)
        .unwrap_or_else(|e| panic!("cannot build the root image {}: {e}", image.display()));
    image
}

/// Linux with 1 vCPU and 256 MiB, its root on `image` (xvda), running the
/// check `pavise.check=CHECK` there and powering off.
fn linux_root_domu(image: &Path, check: &str) -> DomU {
    let spec = format!(
        "{},name=linux,mem=256,vcpus=1,ramdisk={},disk={},cmdline=console=hvc0 {} pavise.check={check}",
        kit().vmlinux.display(),
        root_initramfs().display(),
        image.display(),
        linux_root::ROOT_CMDLINE,
    );
    xtask::domains::parse_domu(&spec).unwrap_or_else(|e| panic!("bad Linux DomU: {e}"))
}

const BUILT: &str = "pavise: d1 (linux) built:";
const MOUNTED: &str = "(d1) pavise-root: mounted /dev/xvda rw ext4";

/// Boots Linux with its root on `image` running `check`, timing the
/// domain's build and the mount marker; it must mount its root and power
/// off cleanly, with blkfront's probe line and no block or ext4 error.
fn boot_on_root(image: &Path, check: &str) -> RunOutcome {
    let mut machine = linux_machine(1, &[linux_root_domu(image, check)]);
    machine.marks = vec![BUILT.to_owned(), MOUNTED.to_owned()];
    let outcome = boot(&machine);
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "dom0: d1 xvda",
            "(d1) pavise-initramfs: loaded xen-blkfront",
            "(d1) pavise-initramfs: mounted /dev/xvda (ext4, rw) on /",
            MOUNTED,
            "pavise: d1 (linux) poweroff",
        ],
    );
    let linux_says = |text: &str| {
        console_lines(&outcome.console).any(|l| l.starts_with("(d1) ") && l.contains(text))
    };
    if !linux_says("blkfront: xvda:") {
        fail(&outcome, "no `blkfront: xvda:` probe line in Linux's log");
    }
    for bad in [
        "I/O error",
        "EXT4-fs error",
        "EXT4-fs warning",
        "Buffer I/O",
        "blk_update_request",
        "vbd vbd-",
        "pavise-initramfs: optional module",
        "powering off",
        "BUG:",
        "WARNING:",
    ] {
        if linux_says(bad) {
            fail(&outcome, &format!("Linux logged '{bad}'"));
        }
    }
    if let Some(line) = console_lines(&outcome.console).find(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("(d1) ") && l.contains("blkfront") && l.contains("fail")
    }) {
        fail(&outcome, &format!("blkfront failed: {line:?}"));
    }
    let at = |text: &str| outcome.mark(text).and_then(|m| m.at);
    let uptime = line_starting(&outcome.console, MOUNTED)
        .and_then(|l| l.split(" up ").nth(1))
        .unwrap_or("?");
    if let (Some(built), Some(mounted)) = (at(BUILT), at(MOUNTED)) {
        eprintln!(
            "  root on xvda: mounted {:.1} s (host) after d1 was built, Linux up {uptime}; run {:.1} s",
            mounted.saturating_sub(built).as_secs_f64(),
            outcome.wall.as_secs_f64()
        );
    }
    outcome
}

#[test]
fn linux_mounts_its_root_from_xvda() {
    let image = fresh_root_image("mount");
    let outcome = boot_on_root(&image, "info");
    // 64 MiB: 131072 sectors, writable; 1 MiB written, dropped from the
    // page cache and read back from the disk.
    expect_lines(
        &outcome,
        &[
            "(d1) pavise-root: info xvda sectors=131072 ro=0",
            "(d1) pavise-root: info io=ok",
        ],
    );
}

/// A seed no earlier run used.
fn fresh_seed() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("s{}-{nanos:x}", std::process::id())
}

/// What the host's e2fsprogs see in the image: /persist (debugfs) and
/// whether the file system is clean (e2fsck -fn); `None` without them.
fn host_view(image: &Path) -> Option<(String, bool)> {
    let debugfs = xtask::prereqs::find_system_program("debugfs")?;
    let out = std::process::Command::new(debugfs)
        .args(["-R", "cat /persist"])
        .arg(image)
        .output()
        .unwrap_or_else(|e| panic!("cannot run debugfs: {e}"));
    let persist = String::from_utf8_lossy(&out.stdout).into_owned();
    let clean = match xtask::prereqs::find_system_program("e2fsck") {
        Some(e2fsck) => std::process::Command::new(e2fsck)
            .args(["-f", "-n"])
            .arg(image)
            .output()
            .is_ok_and(|o| o.status.success()),
        None => true,
    };
    Some((persist, clean))
}

#[test]
fn what_linux_writes_to_its_root_is_there_at_the_next_boot() {
    let image = fresh_root_image("persist");
    let seed = fresh_seed();
    let first = boot_on_root(&image, &format!("write:{seed}"));
    expect_lines(&first, &[&format!("(d1) pavise-root: wrote {seed} (")]);
    match host_view(&image) {
        Some((persist, clean)) => {
            if persist != linux_root::persist_content(&seed) {
                fail(
                    &first,
                    &format!(
                        "the image's /persist, read on the host with debugfs, is not what Linux wrote \
                         ({} bytes, first line {:?})",
                        persist.len(),
                        persist.lines().next()
                    ),
                );
            }
            if !clean {
                fail(
                    &first,
                    "e2fsck -fn finds the image unclean after the write boot",
                );
            }
            eprintln!("  host: debugfs reads /persist as written; e2fsck -fn: clean");
        }
        None => eprintln!("  note: no debugfs (e2fsprogs): the image is not looked at on the host"),
    }
    let second = boot_on_root(&image, &format!("read:{seed}"));
    expect_lines(&second, &[&format!("(d1) pavise-root: read {seed} ok (")]);
}

#[test]
fn without_its_root_disk_the_initramfs_says_so_and_powers_off() {
    // The root initramfs, but no disk= for it to find.
    let spec = format!(
        "{},name=linux,mem=256,vcpus=1,ramdisk={},cmdline=console=hvc0 {} rootdelay=3",
        kit().vmlinux.display(),
        root_initramfs().display(),
        linux_root::ROOT_CMDLINE,
    );
    let domu = xtask::domains::parse_domu(&spec).unwrap_or_else(|e| panic!("bad Linux DomU: {e}"));
    let outcome = boot(&linux_machine(1, &[domu]));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "(d1) pavise-initramfs: loaded xen-blkfront",
            "(d1) pavise-initramfs: no block device /dev/xvda after 3 s (is xen-blkfront loaded and a disk attached?); powering off",
            "pavise: d1 (linux) poweroff",
        ],
    );
    pavise_tests::expect_no_line(&outcome, "(d1) pavise-root:");
}

/// The Linux dd figures of `cargo xtask bench` on their own (TCG):
/// Dom0 measures xvdc directly, then Linux's busybox dd (O_DIRECT) writes
/// and reads its scratch disk xvdb and reads its root disk xvda through
/// blkback: `cargo test -p pavise-tests --test linux linux_dd -- --ignored
/// --nocapture`.
#[test]
#[ignore = "a benchmark, not a check: run it by name"]
fn linux_dd_bench_figures() {
    pavise_tests::ensure_built().expect("cannot build the bare-metal crates");
    let f = xtask::linux_disk_bench::measure(kit()).expect("the Linux dd bench run failed");
    if let Ok(console) = std::fs::read_to_string(xtask::linux_disk_bench::log_path()) {
        for line in console_lines(&console)
            .filter(|l| l.starts_with("dom0: bench: disk") || l.contains("linux-dd: "))
        {
            println!("{line}");
        }
    }
    print!("{}", xtask::linux_disk_bench::table(&f));
    println!("{}", xtask::linux_disk_bench::json(&f));
}
