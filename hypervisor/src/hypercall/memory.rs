//! `memory_op`: a domain's physmap (`xen/include/public/memory.h`) —
//! its memory map, placing shared info and grant frames, foreign mapping,
//! and the reservation family: populating a domain being built (Dom0's
//! toolstack) and ballooning, a guest giving pages back and taking them
//! again within its `max_pages`.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use pv_abi::memory::MemoryReservation;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{Caller, Errno, HcResult};
use crate::domain::registry::{self, Domain};
use crate::mm::frame::FRAME_SIZE;
use pv_abi::DOMID_SELF;

/// The start extent of a continued reservation call rides in the
/// command's upper bits.
const MEMOP_EXTENT_SHIFT: u64 = 6;

pub(super) fn memory_op(c: &Caller, cmd: u64, arg: u64) -> HcResult {
    use pv_abi::memory::{
        AddToPhysmap, AddToPhysmapBatch, XENMAPSPACE_GMFN_FOREIGN, XENMAPSPACE_GRANT_TABLE,
        XENMAPSPACE_SHARED_INFO, XENMEM_ADD_TO_PHYSMAP as ADD_TO_PHYSMAP,
        XENMEM_ADD_TO_PHYSMAP_BATCH as ADD_TO_PHYSMAP_BATCH, XENMEM_CLAIM_PAGES as CLAIM_PAGES,
        XENMEM_CURRENT_RESERVATION as CURRENT_RESERVATION,
        XENMEM_DECREASE_RESERVATION as DECREASE_RESERVATION,
        XENMEM_GET_POD_TARGET as GET_POD_TARGET,
        XENMEM_INCREASE_RESERVATION as INCREASE_RESERVATION,
        XENMEM_MACHINE_MEMORY_MAP as MACHINE_MEMORY_MAP, XENMEM_MAXIMUM_GPFN as MAXIMUM_GPFN,
        XENMEM_MAXIMUM_RAM_PAGE as MAXIMUM_RAM_PAGE,
        XENMEM_MAXIMUM_RESERVATION as MAXIMUM_RESERVATION, XENMEM_MEMORY_MAP as MEMORY_MAP,
        XENMEM_POPULATE_PHYSMAP as POPULATE_PHYSMAP,
        XENMEM_REMOVE_FROM_PHYSMAP as REMOVE_FROM_PHYSMAP, XENMEM_SET_POD_TARGET as SET_POD_TARGET,
    };
    /// Pages one batch may map (Xen preempts longer ones; we refuse).
    const MAX_BATCH: u16 = 256;
    const MEMOP_CMD_MASK: u64 = 0x3f;
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct MemoryMap {
        nr_entries: u32,
        pad: u32,
        buffer: u64,
    }
    /// Xen's `struct e820entry`: packed, 20 bytes (a padded 24-byte
    /// stride put every entry after the first in the wrong place).
    #[derive(IntoBytes, Immutable)]
    #[repr(C, packed)]
    struct E820Entry {
        addr: u64,
        size: u64,
        kind: u32,
    }
    const _: () = assert!(size_of::<E820Entry>() == pv_abi::memory::E820_ENTRY_SIZE);
    let start = cmd >> MEMOP_EXTENT_SHIFT;
    match cmd & MEMOP_CMD_MASK {
        op @ (INCREASE_RESERVATION | DECREASE_RESERVATION | POPULATE_PHYSMAP) => {
            Ok(reservation(c, op, arg, start) as i64)
        }
        MAXIMUM_RAM_PAGE => {
            if start != 0 {
                return Err(Errno::Inval);
            }
            Ok(crate::mm::frames().max_page() as i64)
        }
        op @ (CURRENT_RESERVATION | MAXIMUM_RESERVATION | MAXIMUM_GPFN) => {
            if start != 0 {
                return Err(Errno::Inval);
            }
            let domid: u16 = c.read(arg)?;
            let target = c.target(domid)?;
            Ok(match op {
                CURRENT_RESERVATION => target.total_pages(),
                MAXIMUM_RESERVATION => target.mem_bytes() / FRAME_SIZE,
                _ => target.max_gpfn(),
            } as i64)
        }
        // The host's own memory map and the claim and populate-on-demand
        // controls are the toolstack's (Xen: XSM_PRIV); what a DomU gets
        // is Xen's refusal, after the checks Xen makes first.
        MACHINE_MEMORY_MAP if !c.domain.privileged => Err(Errno::Perm),
        CLAIM_PAGES if !c.domain.privileged => {
            if start != 0 {
                return Err(Errno::Inval);
            }
            let req: MemoryReservation = c.read(arg)?;
            if req.extent_start != 0 || req.extent_order != 0 || req.mem_flags != 0 {
                return Err(Errno::Inval);
            }
            if registry::lookup(req.domid).is_none() {
                return Err(Errno::Inval);
            }
            Err(Errno::Perm)
        }
        SET_POD_TARGET | GET_POD_TARGET if !c.domain.privileged => {
            #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
            #[repr(C)]
            struct PodTarget {
                target_pages: u64,
                tot_pages: u64,
                pod_cache_pages: u64,
                pod_entries: u64,
                domid: u16,
                /// The C struct's tail padding.
                pad: [u16; 3],
            }
            let req: PodTarget = c.read(arg)?;
            if req.domid != DOMID_SELF && registry::lookup(req.domid).is_none() {
                return Err(Errno::Srch);
            }
            Err(Errno::Perm)
        }
        REMOVE_FROM_PHYSMAP => {
            // As Xen: the slot becomes a hole whatever it held. Another
            // domain's page mapped there goes back (Pavise then puts the
            // page it displaced back in the slot); a page of ours stays ours,
            // unmapped; an empty slot or a grant mapping is -ENOENT.
            if start != 0 {
                return Err(Errno::Inval);
            }
            let req: pv_abi::memory::RemoveFromPhysmap = c.read(arg)?;
            let target = c.target(req.domid)?;
            if crate::domain::foreign::unmap(&target, req.gpfn).is_ok() {
                return Ok(0);
            }
            target.unhook_page(req.gpfn).map_err(|_| Errno::NoEnt)?;
            Ok(0)
        }
        ADD_TO_PHYSMAP_BATCH => {
            let req: AddToPhysmapBatch = c.read(arg)?;
            let target = c.target(req.domid)?;
            if !Arc::ptr_eq(&target, c.domain) {
                return Err(Errno::Perm);
            }
            if req.space != XENMAPSPACE_GMFN_FOREIGN {
                return Err(Errno::Inval);
            }
            if !c.domain.privileged {
                return Err(Errno::Perm);
            }
            if req.size > MAX_BATCH {
                return Err(Errno::TooBig);
            }
            for i in 0..req.size as u64 {
                let idx: u64 = c.read(req.idxs.wrapping_add(i * 8))?;
                let gpfn: u64 = c.read(req.gpfns.wrapping_add(i * 8))?;
                let err: i32 =
                    match crate::domain::foreign::map(c.domain, req.foreign_domid, idx, gpfn) {
                        Ok(()) => 0,
                        Err(crate::domain::foreign::MapError::NoSuchDomain) => {
                            -(Errno::Srch as i32)
                        }
                        Err(crate::domain::foreign::MapError::Invalid) => -(Errno::Inval as i32),
                    };
                c.write(req.errs.wrapping_add(i * 4), &err)?;
            }
            Ok(0)
        }
        MEMORY_MAP => {
            // As Xen's: min(nr_entries, the map's) entries, none for 0.
            let mut map: MemoryMap = c.read(arg)?;
            let entries =
                crate::domain::builder::memory_map(c.domain.mem_bytes(), c.domain.privileged);
            let n = entries.len().min(map.nr_entries as usize);
            for (i, &(addr, size, kind)) in entries.iter().take(n).enumerate() {
                let entry = E820Entry { addr, size, kind };
                c.write(
                    map.buffer
                        .wrapping_add((i * pv_abi::memory::E820_ENTRY_SIZE) as u64),
                    &entry,
                )?;
            }
            map.nr_entries = n as u32;
            c.write(arg, &map)?;
            Ok(0)
        }
        ADD_TO_PHYSMAP => {
            let req: AddToPhysmap = c.read(arg)?;
            let target = c.target(req.domid)?;
            let frame = match req.space {
                XENMAPSPACE_SHARED_INFO if req.idx == 0 => target.shared_info,
                XENMAPSPACE_GRANT_TABLE => {
                    let idx = u32::try_from(req.idx).map_err(|_| Errno::Inval)?;
                    crate::domain::grants::table_frame(&target, idx).ok_or(Errno::Inval)?
                }
                _ => return Err(Errno::Inval),
            };
            target
                .place_special(req.gpfn, frame)
                .map_err(|_| Errno::Inval)?;
            Ok(0)
        }
        _ => Err(Errno::NoSys),
    }
}

/// Largest extent order a domain may ask for (Xen's `max_order`: 2 MiB
/// for a DomU, `PAGEALLOC_MAX_ORDER` (1 GiB) for the control domain).
fn max_order(domain: &Domain) -> u32 {
    const DOMU_MAX_ORDER: u32 = 9;
    const CTLDOM_MAX_ORDER: u32 = 18;
    if domain.privileged {
        CTLDOM_MAX_ORDER
    } else {
        DOMU_MAX_ORDER
    }
}

/// Xen's `MAX_NUMNODES` on x86: node numbers in `mem_flags` above it are refused.
const MAX_NUMNODES: u32 = 64;

/// The highest address allowed by `mem_flags`' address bits (`None`: no
/// limit), or `Err` when the flags are ones Xen refuses
/// (`construct_memop_from_reservation`, `propagate_node`).
fn frame_limit(caller: &Domain, mem_flags: u32) -> Result<Option<u64>, ()> {
    use pv_abi::memory::{XENMEMF_EXACT_NODE_REQUEST, XENMEMF_VNODE};
    const PAGE_SHIFT: u32 = 12;
    let address_bits = mem_flags & 0xff;
    let host_bits = 64
        - crate::mm::frames()
            .max_page()
            .saturating_sub(1)
            .leading_zeros()
        + PAGE_SHIFT;
    let limit = if address_bits != 0 && address_bits < host_bits {
        if address_bits <= PAGE_SHIFT {
            return Err(());
        }
        Some(1u64 << address_bits)
    } else {
        None
    };
    // One node, no virtual NUMA: a node asks nothing more, except an
    // exact request from a DomU or a node that cannot exist.
    let node = ((mem_flags >> 8).wrapping_sub(1)) & 0xff;
    const NUMA_NO_NODE: u32 = 0xff;
    if mem_flags & XENMEMF_VNODE == 0 && node != NUMA_NO_NODE {
        if caller.privileged {
            if node >= MAX_NUMNODES {
                return Err(());
            }
        } else if mem_flags & XENMEMF_EXACT_NODE_REQUEST != 0 {
            return Err(());
        }
    }
    Ok(limit)
}

/// `XENMEM_increase_reservation`, `_decrease_reservation` and
/// `_populate_physmap`: the number of extents done, counting from
/// `start` (a continuation's). As on Xen, every refusal — an unreadable
/// request, a bad domain or flags, an extent that cannot be done — is
/// only a smaller count, never an errno: the caller compares it with
/// what it asked.
fn reservation(c: &Caller, op: u64, arg: u64, start: u64) -> u64 {
    use pv_abi::memory::{
        XENMEM_DECREASE_RESERVATION as DECREASE, XENMEM_INCREASE_RESERVATION as INCREASE,
        XENMEMF_POPULATE_ON_DEMAND,
    };
    let Ok(req) = c.read::<MemoryReservation>(arg) else {
        return start;
    };
    if req.nr_extents > (u32::MAX as u64 >> MEMOP_EXTENT_SHIFT) || start >= req.nr_extents {
        return start;
    }
    let Ok(target) = c.target(req.domid) else {
        return start;
    };
    let Ok(limit) = frame_limit(c.domain, req.mem_flags) else {
        return start;
    };
    if req.extent_order > max_order(c.domain) || target.is_dead() {
        return start;
    }
    let pages = 1u64 << req.extent_order;
    let mut done = start;
    match op {
        INCREASE => {
            // A translated guest is told no frame numbers (Xen writes
            // them only for PV guests).
            while done < req.nr_extents && limit.is_none() && target.take_loose_frames(pages) {
                done += 1;
            }
        }
        DECREASE => {
            'extents: while done < req.nr_extents {
                let Ok(first) = c.read::<u64>(req.extent_start.wrapping_add(done * 8)) else {
                    break;
                };
                for gfn in first..first.saturating_add(pages) {
                    if target.release_page(gfn).is_err() {
                        break 'extents;
                    }
                }
                done += 1;
            }
        }
        _ if req.mem_flags & XENMEMF_POPULATE_ON_DEMAND != 0 => {
            // Populate-on-demand is not offered (Xen refuses it for the
            // caller itself, and for others Pavise has no PoD pool).
        }
        _ => done = populate(c, &target, &req, start, limit),
    }
    done
}

/// One extent of `XENMEM_populate_physmap`: holes get zeroed frames; an
/// extent already backed by the domain's own frames gets fresh ones, the
/// old staying the domain's (as on Xen). An extent mixing the two, or
/// holding a hypervisor page or another domain's, is refused.
fn populate_extent(target: &Domain, first: u64, end: u64, limit: Option<u64>) -> bool {
    use crate::mm::guest::Gfn;
    let max_pages = target.mem_bytes() / FRAME_SIZE;
    let backed = {
        let memory = target.memory.lock();
        (first..end)
            .filter(|&g| memory.p2m.get(Gfn(g)).is_some())
            .count() as u64
    };
    if backed == 0 {
        // Holes: no grant or foreign mapping can be in one (both need a
        // backed slot), and `back` refuses a slot backed meanwhile, so the
        // toolstack's build (one call per extent) takes no global lock.
        return target.memory.lock().back(first, end, max_pages, limit);
    }
    // No grant or foreign mapping may arrive in a slot while it is looked
    // at and replaced (`replace` checks again that every slot is backed).
    let _ownership = registry::FRAME_OWNERSHIP.lock();
    if backed != end - first || (first..end).any(|g| target.is_special_gfn(g)) {
        return false;
    }
    target.memory.lock().replace(first, end, max_pages, limit)
}

/// `XENMEM_populate_physmap`: backs each listed extent of `target`'s RAM
/// with zeroed frames (read once from the list). It stops at the first
/// that cannot be: outside RAM (RAM is `max_pages` long), over
/// `max_pages`, or no free memory.
fn populate(
    c: &Caller,
    target: &Arc<Domain>,
    req: &MemoryReservation,
    start: u64,
    limit: Option<u64>,
) -> u64 {
    let pages_per_extent = 1u64 << req.extent_order;
    let mut done = start;
    while done < req.nr_extents {
        let Ok(first) = c.read::<u64>(req.extent_start.wrapping_add(done * 8)) else {
            break;
        };
        let Some(end) = first.checked_add(pages_per_extent) else {
            break;
        };
        if !first.is_multiple_of(pages_per_extent)
            || crate::mm::frames().free_bytes()
                < pages_per_extent * FRAME_SIZE + crate::mm::HYPERVISOR_RESERVE_BYTES
            || !populate_extent(target, first, end, limit)
        {
            break;
        }
        done += 1;
    }
    target.mapping_generation.fetch_add(1, Ordering::SeqCst);
    done
}
