//! The `xtask` binary's answer to bad input: one `xtask: error: ` sentence
//! (or clap's usage error) and a non-zero exit status, never a panic — and
//! before anything is built or booted, so these run in a moment.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `xtask ARGS` and returns its exit code and stderr.
fn xtask(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run xtask: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.stdout.is_empty(),
        "xtask {args:?} wrote to stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "xtask {args:?} panicked: {stderr}"
    );
    (output.status.code(), stderr)
}

/// Asserts that `xtask ARGS` failed with status 1 and exactly `sentence`.
fn refused(args: &[&str], sentence: &str) {
    let (code, stderr) = xtask(args);
    assert_eq!(code, Some(1), "xtask {args:?}: {stderr}");
    assert_eq!(
        stderr,
        format!("xtask: error: {sentence}\n"),
        "xtask {args:?}"
    );
}

/// Asserts that clap refused `xtask ARGS` (status 2) naming `reason`.
fn usage_error(args: &[&str], reason: &str) {
    let (code, stderr) = xtask(args);
    assert_eq!(code, Some(2), "xtask {args:?}: {stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(reason),
        "xtask {args:?}: {stderr}"
    );
}

/// A directory of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("xtask-cli-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Self(dir)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", path.display()))
}

#[test]
fn a_missing_kernel_is_refused() {
    refused(
        &["run", "--domu", "/nonexistent/kernel,mem=8"],
        "kernel /nonexistent/kernel does not exist or is not a file",
    );
}

#[test]
fn a_kernel_that_is_not_elf_is_refused() {
    let scratch = Scratch::new("not-elf");
    let notes = scratch.file("notes.txt", b"not a kernel\n");
    refused(
        &["run", "--domu", text(&notes)],
        &format!(
            "{} is not an ELF file; --domu takes a Xen PVH kernel (an ELF with the \
             XEN_ELFNOTE_PHYS32_ENTRY note)",
            notes.display()
        ),
    );
}

#[test]
fn a_command_line_grub_would_change_is_refused_before_building() {
    let scratch = Scratch::new("quotes");
    let kernel = scratch.file("kernel", b"\x7fELF\x02\x01\x01\0");
    let arg = format!("{},cmdline=say \"hi\"", kernel.display());
    refused(
        &["run", "--domu", &arg],
        "cannot pass \"name=kernel cmdline=say \\\"hi\\\"\" through GRUB: GRUB would put \
         a backslash before its quotes and backslashes",
    );
}

#[test]
fn malformed_domu_options_are_usage_errors() {
    usage_error(
        &["run", "--domu", "k,mem=0"],
        "bad --domu 'k,mem=0': mem must be MiB from 2 to 3072",
    );
    usage_error(
        &["run", "--domu", "k,vcpus=9"],
        "vcpus must be a count from 1 to 8",
    );
    usage_error(&["run", "--domu", "k,name=a.b"], "name must be 1 to 32");
    usage_error(
        &["run", "--domu", "k,colour=red"],
        "unknown option 'colour'",
    );
    usage_error(&["run", "--domu", ""], "no kernel path");
}

#[test]
fn direct_boot_takes_no_domus() {
    refused(
        &["run", "--direct", "--domu", "/nonexistent/kernel"],
        "direct boot can pass only one module (through -initrd) but 2 were given; boot \
         through GRUB instead",
    );
}

#[test]
fn bench_needs_a_json_path() {
    usage_error(
        &["bench", "--json"],
        "a value is required for '--json <PATH>'",
    );
}

#[test]
fn bad_macs_and_forwards_are_usage_errors() {
    usage_error(
        &["run", "--domu", "k,vif=00:16:3e:00:01"],
        "bad --domu 'k,vif=00:16:3e:00:01': '00:16:3e:00:01' is not a MAC address; write six \
         two-digit hex numbers separated by ':', e.g. 00:16:3e:00:01:00 (or write vif alone for \
         a default MAC)",
    );
    usage_error(
        &["run", "--domu", "k,vif=01:00:5e:00:00:01"],
        "01:00:5e:00:00:01 is a multicast address",
    );
    usage_error(
        &["run", "--domu", "k,vif=00:00:00:00:00:00"],
        "00:00:00:00:00:00 is not an interface's address",
    );
    usage_error(
        &["run", "--net", "--hostfwd", "8080:10.0.9.1:80"],
        "bad --hostfwd '8080:10.0.9.1:80': 10.0.9.1 is not on the uplink network 10.0.2.0/24; \
         write HOSTPORT:GUESTIP:GUESTPORT with a DomU's address on 10.0.2.0/24, e.g. \
         8080:10.0.2.15:80",
    );
    usage_error(&["run", "--hostfwd", "8080:10.0.2.15:80"], "--net");
}

#[test]
fn one_mac_on_two_interfaces_is_refused_before_building() {
    let scratch = Scratch::new("macs");
    let kernel = scratch.file("kernel", b"\x7fELF\x02\x01\x01\0");
    let first = format!("{},vif=00:16:3e:aa:bb:cc", kernel.display());
    let second = format!("{},vif,vif=00:16:3E:AA:BB:CC", kernel.display());
    refused(
        &["run", "--domu", &first, "--domu", &second],
        "two interfaces have the MAC 00:16:3e:aa:bb:cc: vif1.0 (d1's interface 0) and vif2.1 \
         (d2's interface 1); give each interface a MAC of its own with vif=MAC (or write vif \
         alone for the default, 00:16:3e:00:DOMID:HANDLE)",
    );
    refused(
        &[
            "run",
            "--net",
            "--hostfwd",
            "8080:10.0.2.15:80",
            "--hostfwd",
            "8080:10.0.2.16:8080",
        ],
        "host port 8080 is forwarded twice (8080:10.0.2.15:80 and 8080:10.0.2.16:8080); give \
         each --hostfwd a host port of its own",
    );
}
