//! `pavise.diskbench=SLOT`: before serving, Dom0 measures the virtio disk
//! at PCI slot SLOT directly — what the block backend's figures in a DomU
//! are compared with (`cargo xtask bench`). The same work as the `disk`
//! test kernel's bench: 16 MiB written then read in 1 MiB requests, then
//! 4 KiB reads at pseudo-random pages for 2 s, up to 16 in flight (the
//! virtio queue's depth; the DomU keeps a ring-full in flight).

use alloc::boxed::Box;
use alloc::vec::Vec;

use guest_shim::{println, time};
use virtio_drivers::device::blk::{BlkReq, BlkResp};

use crate::disks::Disk;
use crate::virtio;

const MIB: usize = 1 << 20;
const TOTAL: usize = 16 * MIB;
const PAGE: usize = 4096;
const DEPTH: usize = 16;

/// The slot named by `pavise.diskbench=`, if any.
pub fn requested(cmdline: &str) -> Option<u8> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pavise.diskbench="))
        .and_then(|s| u8::from_str_radix(s, 16).ok())
}

fn secs_since(t0: u64) -> f64 {
    (time::system_time_ns() - t0) as f64 / 1e9
}

/// Runs the measurement and prints one `dom0: bench: disk ...` line.
pub fn run(disk: &mut Disk) {
    let span = (disk.sectors as usize * 512).min(TOTAL) / MIB * MIB;
    if disk.readonly || span == 0 {
        println!(
            "dom0: bench: disk at slot {:#x} is read-only or under 1 MiB",
            disk.slot
        );
        return;
    }
    let Some((buf, _)) = virtio::alloc(MIB / PAGE) else {
        println!("dom0: bench: no DMA memory");
        return;
    };
    // SAFETY: 1 MiB of our DMA pool, ours until freed below.
    let data = unsafe { core::slice::from_raw_parts_mut(buf as *mut u8, MIB) };
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    let sector_of = |i: usize| (i * MIB) % span / 512;

    let t0 = time::system_time_ns();
    for i in 0..TOTAL / MIB {
        if disk.blk.write_blocks(sector_of(i), data).is_err() {
            println!("dom0: bench: write failed");
        }
    }
    let _ = disk.blk.flush();
    let write = (TOTAL / MIB) as f64 / secs_since(t0);

    let t0 = time::system_time_ns();
    for i in 0..TOTAL / MIB {
        if disk.blk.read_blocks(sector_of(i), data).is_err() {
            println!("dom0: bench: read failed");
        }
    }
    let read = (TOTAL / MIB) as f64 / secs_since(t0);

    let iops = random_reads(disk, buf);
    virtio::free(buf, MIB / PAGE);
    println!(
        "dom0: bench: disk seq_write_mib_s={write:.1} seq_read_mib_s={read:.1} rand_read_iops={iops:.1} qd={DEPTH}"
    );
}

/// 4 KiB reads into the pages of `buf`, [`DEPTH`] in flight, for 2 s.
fn random_reads(disk: &mut Disk, buf: u64) -> f64 {
    let pages = (disk.sectors / 8).max(1);
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % pages) as usize * 8
    };
    struct Slot {
        token: Option<u16>,
        req: Box<BlkReq>,
        resp: Box<BlkResp>,
    }
    let mut slots: Vec<Slot> = (0..DEPTH)
        .map(|_| Slot {
            token: None,
            req: Box::default(),
            resp: Box::default(),
        })
        .collect();
    let page = |k: usize| {
        // SAFETY: page `k` of the 1 MiB pool buffer; each slot has its own.
        unsafe { core::slice::from_raw_parts_mut((buf as usize + k * PAGE) as *mut u8, PAGE) }
    };
    let mut done = 0u64;
    let t0 = time::system_time_ns();
    let end = t0 + 2_000_000_000;
    loop {
        let now = time::system_time_ns();
        for (k, s) in slots.iter_mut().enumerate() {
            if s.token.is_none() && now < end {
                // SAFETY: the slot's page, request and response stay
                // untouched until its token is completed below.
                s.token = unsafe {
                    disk.blk
                        .read_blocks_nb(next(), &mut s.req, page(k), &mut s.resp)
                }
                .ok();
            }
        }
        if slots.iter().all(|s| s.token.is_none()) {
            break;
        }
        while let Some(token) = disk.blk.peek_used() {
            let Some(k) = slots.iter().position(|s| s.token == Some(token)) else {
                break;
            };
            let s = &mut slots[k];
            // SAFETY: the buffers this token was queued with.
            let _ = unsafe {
                disk.blk
                    .complete_read_blocks(token, &s.req, page(k), &mut s.resp)
            };
            s.token = None;
            done += 1;
        }
    }
    done as f64 / secs_since(t0)
}

/// `pavise.dmatest`: aims one disk read at a guest-physical address Dom0
/// does not have. With the IOMMU confining Dom0's devices the write into
/// memory is blocked (the hypervisor reports the fault); without one the
/// device writes wherever that address is on the host (here: past the
/// end of the test machine's RAM, so nothing).
pub const DMA_TEST_WORD: &str = "pavise.dmatest";
const OUTSIDE_DOM0: u64 = 0x3f00_0000;

pub fn dma_test(disk: &mut Disk) {
    let mut buf = alloc::vec![0u8; 4096];
    // The request header and status (16 bytes and 1 byte) are shared
    // normally; the 4 KiB data buffer gets the aimed address.
    virtio::aim_next_share(OUTSIDE_DOM0);
    let result = disk.blk.read_blocks(0, &mut buf);
    virtio::aim_next_share(0);
    // The device reports no error either way (QEMU completes the request
    // whatever its DMA did); the hypervisor reports what the IOMMU blocked.
    println!(
        "dom0: dma test: a disk read aimed at {OUTSIDE_DOM0:#x}, outside Dom0, completed ({})",
        if result.is_ok() { "ok" } else { "error" }
    );
}
