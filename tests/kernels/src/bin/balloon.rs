//! balloon: the memory_op reservation family as Xen 4.17 answers it. The
//! kernel gives pages back (XENMEM_decrease_reservation) and takes them
//! again (XENMEM_populate_physmap), one page and a 2 MiB extent, reads its
//! reservation as it goes, and cannot grow past its `max_pages`; its
//! memory map comes in Xen's packed 20-byte entries; bad requests (another
//! domain's pages, orders, flags, pointers) change nothing and get Xen's
//! answer — a count of 0 extents, or the errno Xen returns. It passes on
//! Xen 4.17 as on Pavise (`../shared/xen-reference`).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicBool, Ordering};

    use guest_shim::hypercall::{self, E820Entry, Reservation};
    use guest_shim::pv_abi::DOMID_SELF;
    use guest_shim::pv_abi::errno::Errno;
    use guest_shim::pv_abi::memory::{
        XENMEM_CURRENT_RESERVATION, XENMEM_DECREASE_RESERVATION, XENMEM_MAXIMUM_GPFN,
        XENMEM_MAXIMUM_RAM_PAGE, XENMEM_MAXIMUM_RESERVATION, XENMEM_POPULATE_PHYSMAP,
        XENMEMF_EXACT_NODE_REQUEST,
    };
    use guest_shim::{ShutdownReason, StartInfo, println, shutdown};

    const PAGE: u64 = 4096;
    const MIB2: u64 = 2 << 20;
    const XEN_HVM_MEMMAP_TYPE_RAM: u32 = 1;
    /// `MEMOP_EXTENT_SHIFT`: a continuation's start extent.
    const EXTENT_SHIFT: u64 = 6;

    static FAILED: AtomicBool = AtomicBool::new(false);

    fn check(ok: bool, what: &str) {
        if !ok {
            FAILED.store(true, Ordering::SeqCst);
            println!("balloon: FAIL {what}");
        }
    }

    fn current() -> u64 {
        hypercall::memory_op_on_domain(XENMEM_CURRENT_RESERVATION, DOMID_SELF).unwrap_or(0)
    }

    fn page_bytes(gfn: u64) -> &'static mut [u8] {
        // SAFETY: the kernel is identity-mapped over its RAM and `gfn`
        // is a page of it this test owns (chosen away from the kernel,
        // above everything it loads); callers touch it only while backed.
        unsafe { core::slice::from_raw_parts_mut((gfn * PAGE) as *mut u8, PAGE as usize) }
    }

    /// The end of RAM, from a memory map read in Xen's packed layout:
    /// entries that do not overlap, RAM first from 0 and no larger than
    /// `max_pages` (Xen's map is not sorted and has holes; Pavise's is
    /// sorted and has none).
    fn ram_end(max_pages: u64) -> Option<u64> {
        let mut map = [E820Entry::default(); 8];
        let n = hypercall::memory_map(&mut map).ok()?;
        let entries = &map[..n];
        for (i, a) in entries.iter().enumerate() {
            let (a_start, a_end) = (a.addr, a.addr + a.size);
            check(a.size > 0, "no empty memory map entry");
            for b in &entries[i + 1..] {
                let (b_start, b_end) = (b.addr, b.addr + b.size);
                check(
                    a_end <= b_start || b_end <= a_start,
                    "memory map entries do not overlap",
                );
            }
        }
        let (addr, kind) = (map[0].addr, map[0].kind);
        check(
            addr == 0 && kind == XEN_HVM_MEMMAP_TYPE_RAM,
            "RAM comes first in the map",
        );
        check(n >= 2, "a DomU's map has RAM and reserved pages");
        let first = map[0];
        check(first.size <= max_pages * PAGE, "RAM fits in max_pages");
        Some(first.addr + first.size)
    }

    /// On Pavise (not on Xen, which leaves a ballooned page's old contents
    /// for its guest to scrub) a page that comes back is zeroed.
    fn on_pavise() -> bool {
        hypercall::xen_extraversion().is_ok_and(|e| e.as_str().contains("pavise"))
    }

    fn main(_: &StartInfo) -> ! {
        let cur0 = current();
        let max =
            hypercall::memory_op_on_domain(XENMEM_MAXIMUM_RESERVATION, DOMID_SELF).unwrap_or(0);
        let ram_page = hypercall::maximum_ram_page().unwrap_or(0);
        let max_gpfn = hypercall::memory_op_on_domain(XENMEM_MAXIMUM_GPFN, DOMID_SELF).unwrap_or(0);
        println!(
            "balloon: current_reservation {cur0} maximum_reservation {max} maximum_ram_page {ram_page:#x} maximum_gpfn {max_gpfn:#x}"
        );
        check(
            cur0 > 0 && cur0 <= max,
            "current reservation within the maximum",
        );
        check(ram_page > max, "the host has more RAM than this domain");
        check(
            max_gpfn >= cur0 - 1,
            "maximum_gpfn covers the populated RAM",
        );
        let Some(ram_end) = ram_end(max) else {
            println!("balloon: FAIL XENMEM_memory_map");
            shutdown(ShutdownReason::Poweroff)
        };

        // A 2 MiB extent and a single page just below it, at the top of
        // RAM, far above the kernel.
        let block = (ram_end / MIB2 - 1) * MIB2 / PAGE;
        let single = block - 1;

        // One page out and back: a hole, then a fresh zeroed page.
        page_bytes(single).fill(0xa5);
        check(
            hypercall::decrease_reservation(DOMID_SELF, 0, &[single]) == Ok(1),
            "decrease_reservation of one page",
        );
        check(current() == cur0 - 1, "a page out is one page less");
        check(
            hypercall::decrease_reservation(DOMID_SELF, 0, &[single]) == Ok(0),
            "a hole cannot be given back again",
        );
        check(
            hypercall::populate_physmap(DOMID_SELF, 0, &[single]) == Ok(1),
            "populate_physmap of the hole",
        );
        check(current() == cur0, "the page is back");
        check(
            !on_pavise() || page_bytes(single).iter().all(|&b| b == 0),
            "a page that comes back is zeroed",
        );

        // A 2 MiB extent out and back.
        check(
            hypercall::decrease_reservation(DOMID_SELF, 9, &[block]) == Ok(1),
            "decrease_reservation of a 2 MiB extent",
        );
        check(
            current() == cur0 - 512,
            "a 2 MiB extent out is 512 pages less",
        );
        check(
            hypercall::populate_physmap(DOMID_SELF, 9, &[block]) == Ok(1),
            "populate_physmap of a 2 MiB extent",
        );
        check(current() == cur0, "the 2 MiB extent is back");

        // Bad requests: nothing done, and Xen's answers.
        let beyond = max + 100;
        check(
            hypercall::decrease_reservation(DOMID_SELF, 0, &[beyond]) == Ok(0),
            "decrease beyond RAM does nothing",
        );
        check(
            hypercall::decrease_reservation(DOMID_SELF, 10, &[0]) == Ok(0),
            "an order above a DomU's 9 does nothing",
        );
        check(
            hypercall::decrease_reservation(0, 0, &[0x100]) == Ok(0),
            "Dom0's pages cannot be given back by a DomU",
        );
        check(
            hypercall::populate_physmap(0, 0, &[0x100]) == Ok(0),
            "a DomU cannot populate Dom0",
        );
        let mut req = Reservation {
            extent_start: 0xdead_0000_0000,
            nr_extents: 1,
            extent_order: 0,
            mem_flags: 0,
            domid: DOMID_SELF,
            pad: [0; 3],
        };
        check(
            hypercall::reservation_op(XENMEM_DECREASE_RESERVATION, &req) == Ok(0),
            "an unmapped extent list does nothing",
        );
        let list = [single];
        req.extent_start = list.as_ptr() as u64;
        req.nr_extents = 1 << 60;
        check(
            hypercall::reservation_op(XENMEM_DECREASE_RESERVATION, &req) == Ok(0),
            "nr_extents too large to continue does nothing",
        );
        req.nr_extents = 1;
        check(
            hypercall::reservation_op(XENMEM_DECREASE_RESERVATION | (1 << EXTENT_SHIFT), &req)
                == Ok(1),
            "a start extent at the end answers itself",
        );
        req.mem_flags = 5; // address bits at or below PAGE_SHIFT
        check(
            hypercall::reservation_op(XENMEM_POPULATE_PHYSMAP, &req) == Ok(0),
            "address bits of 5 are refused",
        );
        req.mem_flags = XENMEMF_EXACT_NODE_REQUEST | (4 << 8); // exact node 3
        check(
            hypercall::reservation_op(XENMEM_DECREASE_RESERVATION, &req) == Ok(0),
            "an exact node request from a DomU is refused",
        );
        check(current() == cur0, "no bad request changed the reservation");
        check(
            hypercall::memory_op_on_domain(XENMEM_CURRENT_RESERVATION, 0) == Err(Errno::EPERM),
            "Dom0's reservation is not a DomU's to read (EPERM)",
        );
        check(
            hypercall::memory_op_on_domain(XENMEM_MAXIMUM_RESERVATION, 777) == Err(Errno::ESRCH),
            "no domain 777 (ESRCH)",
        );
        check(
            hypercall::memory_op_on_domain(XENMEM_MAXIMUM_RAM_PAGE | (1 << EXTENT_SHIFT), 0)
                == Err(Errno::EINVAL),
            "maximum_ram_page takes no start extent (EINVAL)",
        );

        // Over a backed page, as Xen's guest_physmap_add_page: a fresh
        // page takes the slot and the old one stays ours, so there must be
        // room for one more (a DomU here has none: give a page back first).
        let spare = single - 1;
        check(
            hypercall::decrease_reservation(DOMID_SELF, 0, &[single]) == Ok(1),
            "a page out to make room",
        );
        page_bytes(spare).fill(0x5a);
        check(
            hypercall::populate_physmap(DOMID_SELF, 0, &[spare]) == Ok(1),
            "populate_physmap over a backed page",
        );
        check(current() == cur0, "the replaced page stays ours");
        check(
            !on_pavise() || page_bytes(spare).iter().all(|&b| b == 0),
            "the fresh page is zeroed",
        );

        // max_pages holds: loose pages from increase_reservation count,
        // and nothing can be populated beyond it.
        let room = max - current();
        check(
            hypercall::increase_reservation(DOMID_SELF, 0, room + 1) == Ok(room as usize),
            "increase_reservation stops at max_pages",
        );
        check(current() == max, "the reservation is at its maximum");
        check(
            hypercall::populate_physmap(DOMID_SELF, 0, &[single]) == Ok(0),
            "populate cannot go past max_pages",
        );
        check(
            hypercall::populate_physmap(DOMID_SELF, 0, &[spare]) == Ok(0),
            "populate over a backed page cannot go past max_pages either",
        );
        check(current() == max, "still at the maximum");

        if !FAILED.load(Ordering::SeqCst) {
            println!("balloon: PASS");
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
