//! `memory_op`: a domain's physmap (`xen/include/public/memory.h`) —
//! its memory map, placing shared info and grant frames, foreign mapping
//! and populating a domain being built (Dom0's toolstack).

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use pv_abi::memory::MemoryReservation;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{Caller, Errno, HcResult};
use crate::domain::registry::Domain;
use crate::mm::frame::FRAME_SIZE;

pub(super) fn memory_op(c: &Caller, cmd: u64, arg: u64) -> HcResult {
    use pv_abi::memory::{
        AddToPhysmap, AddToPhysmapBatch, XENMAPSPACE_GMFN_FOREIGN, XENMAPSPACE_GRANT_TABLE,
        XENMAPSPACE_SHARED_INFO, XENMEM_ADD_TO_PHYSMAP as ADD_TO_PHYSMAP,
        XENMEM_ADD_TO_PHYSMAP_BATCH as ADD_TO_PHYSMAP_BATCH, XENMEM_MEMORY_MAP as MEMORY_MAP,
        XENMEM_POPULATE_PHYSMAP as POPULATE_PHYSMAP,
        XENMEM_REMOVE_FROM_PHYSMAP as REMOVE_FROM_PHYSMAP,
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
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct E820Entry {
        addr: u64,
        size: u64,
        kind: u32,
        pad: u32,
    }
    const MEMOP_EXTENT_SHIFT: u64 = 6;
    match cmd & MEMOP_CMD_MASK {
        POPULATE_PHYSMAP => {
            let req: pv_abi::memory::MemoryReservation = c.read(arg)?;
            let target = c.target(req.domid)?;
            let start = cmd >> MEMOP_EXTENT_SHIFT;
            populate(c, &target, &req, start)
        }
        REMOVE_FROM_PHYSMAP => {
            let req: pv_abi::memory::RemoveFromPhysmap = c.read(arg)?;
            let target = c.target(req.domid)?;
            if !Arc::ptr_eq(&target, c.domain) {
                return Err(Errno::Perm);
            }
            crate::domain::foreign::unmap(c.domain, req.gpfn).map_err(|_| Errno::Inval)?;
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
            let mut map: MemoryMap = c.read(arg)?;
            if map.nr_entries < 1 {
                return Err(Errno::Inval);
            }
            let entries =
                crate::domain::builder::memory_map(c.domain.mem_bytes(), c.domain.privileged);
            let n = entries.len().min(map.nr_entries as usize);
            for (i, &(addr, size, kind)) in entries.iter().take(n).enumerate() {
                let entry = E820Entry {
                    addr,
                    size,
                    kind,
                    pad: 0,
                };
                c.write(map.buffer.wrapping_add(i as u64 * 24), &entry)?;
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

/// Largest extent populate_physmap takes: 2 MiB (Xen allows up to 1 GiB
/// for a privileged caller; the toolstack uses 4 KiB and 2 MiB).
const MAX_EXTENT_ORDER: u32 = 9;

/// `XENMEM_populate_physmap`: backs each listed extent of `target`'s RAM
/// with zeroed frames (read once from the list; the domain must not yet
/// run, as Pavise gives running domains fixed memory). As Xen, the
/// answer is how many extents were done: it stops at the first that
/// cannot be (outside RAM, already backed, or no free memory).
fn populate(c: &Caller, target: &Arc<Domain>, req: &MemoryReservation, start: u64) -> HcResult {
    if req.extent_order > MAX_EXTENT_ORDER || req.mem_flags != 0 {
        return Err(Errno::Inval);
    }
    // A domain that runs has all the memory it will have.
    if target.started.load(Ordering::SeqCst) || target.is_dead() {
        return Err(Errno::Inval);
    }
    let pages_per_extent = 1u64 << req.extent_order;
    let mut done = start;
    while done < req.nr_extents {
        let first: u64 = c.read(req.extent_start.wrapping_add(done * 8))?;
        let Some(end) = first.checked_add(pages_per_extent) else {
            break;
        };
        if !first.is_multiple_of(pages_per_extent)
            || crate::mm::frames().free_bytes()
                < pages_per_extent * FRAME_SIZE + crate::mm::HYPERVISOR_RESERVE_BYTES
            || !target.memory.lock().back(first, end)
        {
            break;
        }
        done += 1;
    }
    target.npt_generation.fetch_add(1, Ordering::SeqCst);
    Ok(done as i64)
}
