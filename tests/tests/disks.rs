//! Disk scenarios: Dom0 drives virtio disks and serves them to DomUs over
//! Xen's block protocol (blkback in Dom0, guest-shim's blkfront in the
//! `disk` and `blkhostile` test kernels). A DomU writes, flushes and reads
//! back patterns with direct, indirect and multi-page-ring requests; a
//! read-only disk refuses writes; what a DomU wrote is in the image and
//! is read back by the next boot; a hostile frontend gets Xen's errors,
//! is halted when it breaks the ring, vanishes mid-request — and the
//! healthy DomU beside it completes all its I/O.

use std::path::PathBuf;

use pavise_tests::{
    Exit, HvStatus, boot, domu, expect_exit, expect_lines, expect_no_line, fail, with_domains,
};

const ALL_ENDED: &str = "pavise: all watched domains ended";

fn fresh_image(name: &str) -> PathBuf {
    pavise_tests::fresh_image(name)
}

#[test]
fn domus_read_and_write_their_disks() {
    let rw = fresh_image("rw");
    let ro = fresh_image("ro");
    let outcome = boot(&with_domains(
        2,
        &[
            domu(
                "disk",
                &format!("disk={},cmdline=ring_order=2 seed=3", rw.display()),
            ),
            domu("disk", &format!("disk={}:ro", ro.display())),
        ],
    ));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "dom0: disk at slot 0x10: 8 MiB",
            "dom0: disk at slot 0x11: 8 MiB read-only",
            "dom0: d1 xvda (51712) served from the disk at slot 0x10",
            "dom0: d2 xvda (51712) served from the disk at slot 0x11, read-only",
            "dom0: d1 xvda connected: ring of 4 pages",
            "(d1) disk: xvda 51712 sectors=16384 ro=0 flush=1 discard=1 indirect=256 ring=4 pages",
            "(d1) disk: xvda verify ok",
            "(d1) disk: PASS",
            "dom0: d2 xvda connected: ring of 1 page",
            "(d2) disk: xvda 51712 sectors=16384 ro=1",
            "(d2) disk: xvda verify ok",
            "(d2) disk: PASS",
            "dom0: d1 xvda disconnected",
            ALL_ENDED,
        ],
    );
    let written = std::fs::read(&rw).expect("cannot read the rw image back");
    if written.iter().all(|&b| b == 0) {
        fail(
            &outcome,
            "d1 verified its writes but the image is still all zeros",
        );
    }
    let untouched = std::fs::read(&ro).expect("cannot read the ro image back");
    if untouched.iter().any(|&b| b != 0) {
        fail(&outcome, "the read-only image was written");
    }
}

#[test]
fn what_a_domu_wrote_is_there_next_boot() {
    let image = fresh_image("persist");
    let first = boot(&with_domains(
        1,
        &[domu(
            "disk",
            &format!("disk={},cmdline=mode=write seed=7", image.display()),
        )],
    ));
    expect_exit(&first, Exit::Hypervisor(HvStatus::Success));
    expect_lines(&first, &["(d1) disk: xvda wrote seed=7", "(d1) disk: PASS"]);
    let bytes = std::fs::read(&image).expect("cannot read the image back");
    if bytes[..1 << 20].iter().all(|&b| b == 0) {
        fail(
            &first,
            "the first MiB of the image is still zeros after the write",
        );
    }
    // Two readers of the same image: the right seed matches, the wrong
    // one must not (so the check can fail).
    let second = boot(&with_domains(
        1,
        &[
            domu(
                "disk",
                &format!("disk={}:ro,cmdline=mode=check seed=7", image.display()),
            ),
            domu(
                "disk",
                &format!("disk={}:ro,cmdline=mode=check seed=8", image.display()),
            ),
        ],
    ));
    expect_lines(
        &second,
        &[
            "(d1) disk: xvda persisted ok",
            "(d1) disk: PASS",
            "(d2) disk: xvda persisted MISMATCH",
            ALL_ENDED,
        ],
    );
}

#[test]
fn hostile_frontend_harms_no_other_disk() {
    let hostile = fresh_image("hostile");
    let healthy = fresh_image("healthy");
    let outcome = boot(&with_domains(
        2,
        &[
            domu("blkhostile", &format!("disk={}", hostile.display())),
            domu(
                "disk",
                &format!("disk={},cmdline=seed=5 again_after=25", healthy.display()),
            ),
        ],
    ));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    let h = |case: &str, result: &str| format!("(d1) blkhostile: {case} -> {result}");
    expect_lines(
        &outcome,
        &[
            &h("good read", "status 0"),
            &h("bad grant ref", "status -1"),
            &h("grant for another domain", "status -1"),
            &h("read into a read-only grant", "status -1"),
            &h("sector past the end", "status -1"),
            &h("sectors across the end", "status -1"),
            &h("sector number wraps", "status -1"),
            &h("nr_segments 0", "status -1"),
            &h("nr_segments 12", "status -1"),
            &h("first_sect > last_sect", "status -1"),
            &h("last_sect past the page", "status -1"),
            &h("unknown operation", "status -2"),
            &h("discard past the end", "status -1"),
            &h("indirect beyond max segments", "status -1"),
            &h("good read again", "status 0"),
            "(d1) blkhostile: slot rewritten after notify -> ",
            "dom0: d1 xvda: front end published bogus req_prod",
            &h("req_prod 1000 ahead", "disconnected"),
            "(d1) blkhostile: reconnected",
            "(d1) blkhostile: vanish mid-request on 51712 -> 16 reads queued",
            "pavise: d1 (blkhostile) poweroff",
            "dom0: d1 xvda removed (its domain ended)",
            ALL_ENDED,
        ],
    );
    // The healthy DomU's I/O all completed, whatever d1 did meanwhile,
    // and it reconnects and passes again after d1 is gone.
    let lines: Vec<&str> = outcome.console.lines().collect();
    let first = |p: &str| lines.iter().position(|l| l.starts_with(p));
    let last = |p: &str| lines.iter().rposition(|l| l.starts_with(p));
    let (Some(removed), Some(again), Some(passed)) = (
        first("dom0: d1 xvda removed"),
        first("(d2) disk: again in"),
        last("(d2) disk: xvda verify ok"),
    ) else {
        fail(&outcome, "d2 did not verify its disk twice");
    };
    if removed > passed || again > passed || first("(d2) disk: xvda verify ok") == Some(passed) {
        fail(&outcome, "d2's second pass did not follow d1's end");
    }
    expect_lines(&outcome, &["(d2) disk: PASS"]);
    expect_no_line(&outcome, "(d2) disk: FAIL");
}

/// The disk figures of `cargo xtask bench` on their own (TCG only):
/// `cargo test -p pavise-tests --test disks -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark, not a check: run it by name"]
fn disk_bench_figures() {
    pavise_tests::ensure_built().expect("cannot build the bare-metal crates");
    let f = xtask::disk_bench::measure(false).expect("the disk bench run failed");
    println!("{}", xtask::disk_bench::table(&f, &f));
}

/// With the IOMMU (QEMU's `intel-iommu`, on in every run) a device Dom0
/// drives reaches Dom0's memory only: a disk read Dom0 aims at an address
/// it does not own is blocked and reported, while the same disk serves a
/// DomU normally. Without the IOMMU nothing stops it (the second boot).
#[test]
fn dom0s_devices_reach_only_dom0s_memory() {
    let image = fresh_image("dma");
    let with_dma_test = |iommu: bool| {
        let domus = [domu("disk", &format!("disk={}", image.display()))];
        let mut machine = with_domains(1, &domus);
        if let Some((_, dom0)) = machine.modules.first_mut() {
            dom0.push_str(" pavise.dmatest");
        }
        machine.iommu = iommu;
        machine
    };
    const BLOCKED: &str = "pavise: IOMMU blocked a DMA write by 00:10.0 at 0x3f000000";
    let outcome = boot(&with_dma_test(true));
    expect_exit(&outcome, Exit::Hypervisor(HvStatus::Success));
    expect_lines(
        &outcome,
        &[
            "pavise: IOMMU at 0xfed90000: Dom0's devices reach its",
            "dom0: dma test: a disk read aimed at 0x3f000000, outside Dom0, completed",
            BLOCKED,
            "(d1) disk: xvda verify ok",
            "(d1) disk: PASS",
        ],
    );
    let outcome = boot(&with_dma_test(false));
    expect_lines(
        &outcome,
        &[
            "pavise: no IOMMU: Dom0's devices can reach all memory",
            "dom0: dma test: a disk read aimed at 0x3f000000, outside Dom0, completed",
            "(d1) disk: PASS",
        ],
    );
    expect_no_line(&outcome, "pavise: IOMMU blocked");
}
