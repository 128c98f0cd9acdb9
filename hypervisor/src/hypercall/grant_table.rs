//! `grant_table_op`: setup_table, query_size, set_version (v1 only),
//! map_grant_ref, unmap_grant_ref and copy, batched as Xen batches them.
//! Per-operation failures are `GNTST_*` codes in each element's status;
//! the hypercall itself fails only for a bad pointer or command.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{Caller, Errno, HcResult};
use crate::domain::grants;
use crate::grant::{CopyOp, CopySide, GrantStatus, MAX_FRAMES};

use pv_abi::DOMID_SELF;
use pv_abi::grant_table::{
    Copy, CopyPtr, GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTMAP_APPLICATION_MAP,
    GNTMAP_CONTAINS_PTE, GNTMAP_DEVICE_MAP, GNTMAP_HOST_MAP, GNTMAP_READONLY,
    GNTTABOP_COPY as COPY, GNTTABOP_MAP_GRANT_REF as MAP_GRANT_REF,
    GNTTABOP_QUERY_SIZE as QUERY_SIZE, GNTTABOP_SET_VERSION as SET_VERSION,
    GNTTABOP_SETUP_TABLE as SETUP_TABLE, GNTTABOP_UNMAP_GRANT_REF as UNMAP_GRANT_REF, MapGrantRef,
    UnmapGrantRef,
};

/// Elements one call may carry (Xen would continue; we refuse more).
const MAX_BATCH: u64 = 512;

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct SetupTable {
    dom: u16,
    pad: u16,
    nr_frames: u32,
    status: i16,
    pad2: [u16; 3],
    frame_list: u64,
}

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct QuerySize {
    dom: u16,
    pad: u16,
    nr_frames: u32,
    max_nr_frames: u32,
    status: i16,
    pad2: u16,
}

pub(super) fn grant_table_op(c: &Caller, cmd: u64, uop: u64, count: u64) -> HcResult {
    if matches!(cmd, MAP_GRANT_REF | UNMAP_GRANT_REF | COPY) && count > MAX_BATCH {
        return Err(Errno::Inval);
    }
    match cmd {
        SETUP_TABLE => {
            let mut op: SetupTable = c.read(uop)?;
            op.status = match c.target(op.dom) {
                Ok(d) => grants::setup_table(&d, op.nr_frames) as i16,
                Err(_) => GrantStatus::BadDomain as i16,
            };
            c.write(uop, &op)?;
            Ok(0)
        }
        QUERY_SIZE => {
            let mut op: QuerySize = c.read(uop)?;
            match c.target(op.dom).ok().and_then(|d| grants::query_size(d.id)) {
                Some(frames) => {
                    (op.nr_frames, op.max_nr_frames, op.status) = (frames, MAX_FRAMES, 0);
                }
                None => op.status = GrantStatus::BadDomain as i16,
            }
            c.write(uop, &op)?;
            Ok(0)
        }
        SET_VERSION => {
            let mut version: u32 = c.read(uop)?;
            match version {
                0 => {
                    version = 1;
                    c.write(uop, &version)?;
                    Ok(0)
                }
                1 => Ok(0),
                // Version 2 is not implemented: answer as a Xen that predates
                // it, so guests (e.g. Xen's test framework) stay on v1.
                2 => Err(Errno::NoSys),
                _ => Err(Errno::Inval),
            }
        }
        MAP_GRANT_REF => {
            for i in 0..count {
                let at = uop.wrapping_add(i * 32);
                let mut op: MapGrantRef = c.read(at)?;
                let readonly = op.flags & GNTMAP_READONLY != 0;
                let unsupported = GNTMAP_DEVICE_MAP | GNTMAP_APPLICATION_MAP | GNTMAP_CONTAINS_PTE;
                let result = if op.flags & GNTMAP_HOST_MAP == 0 || op.flags & unsupported != 0 {
                    Err(GrantStatus::GeneralError)
                } else {
                    grants::map(c.domain, op.dom, op.gref, op.host_addr >> 12, readonly)
                };
                match result {
                    Ok(handle) => (op.status, op.handle, op.dev_bus_addr) = (0, handle, 0),
                    Err(status) => op.status = status as i16,
                }
                c.write(at, &op)?;
            }
            Ok(0)
        }
        UNMAP_GRANT_REF => {
            for i in 0..count {
                let at = uop.wrapping_add(i * 24);
                let mut op: UnmapGrantRef = c.read(at)?;
                let gfn = (op.host_addr != 0).then_some(op.host_addr >> 12);
                op.status = match grants::unmap(c.domain, op.handle, gfn) {
                    Ok(_) => 0,
                    Err(status) => status as i16,
                };
                c.write(at, &op)?;
            }
            Ok(0)
        }
        COPY => {
            // The whole batch is read once and its statuses written back
            // once: two guest-memory accesses instead of two per element.
            const SIZE: usize = core::mem::size_of::<Copy>();
            let mut raw = alloc::vec![0u8; count as usize * SIZE];
            c.read_bytes(uop, &mut raw)?;
            let peers = grants::CopyPeers::default();
            for chunk in raw.chunks_exact_mut(SIZE) {
                let Ok(mut op) = Copy::read_from_bytes(chunk) else {
                    return Err(Errno::Fault);
                };
                // As Xen 4.17: an empty copy is checked as any other (its
                // domains, grants and bounds), then copies nothing.
                op.status = match copy_sides(c, &op) {
                    Ok(copy) => grants::copy(c.domain, &copy, &peers) as i16,
                    Err(status) => status as i16,
                };
                chunk.copy_from_slice(op.as_bytes());
            }
            c.write(uop, raw.as_slice())?;
            Ok(0)
        }
        _ => Err(Errno::NoSys),
    }
}

/// One side of a copy as Xen's `gnttab_copy_lock_domain` takes it: a
/// frame only as DOMID_SELF (even the caller's own id is refused), a
/// grant of any domain, DOMID_SELF included.
fn copy_side(c: &Caller, ptr: &CopyPtr, is_gref: bool) -> Result<CopySide, GrantStatus> {
    if !is_gref {
        return if ptr.domid == DOMID_SELF {
            Ok(CopySide::Own { gfn: ptr.u })
        } else {
            Err(GrantStatus::PermissionDenied)
        };
    }
    let domain = if ptr.domid == DOMID_SELF {
        c.domain.id
    } else {
        ptr.domid
    };
    let gref = u32::try_from(ptr.u).map_err(|_| GrantStatus::BadGntref)?;
    Ok(CopySide::Gref { domain, gref })
}

fn copy_sides(c: &Caller, op: &Copy) -> Result<CopyOp, GrantStatus> {
    Ok(CopyOp {
        source: copy_side(c, &op.source, op.flags & GNTCOPY_SOURCE_GREF != 0)?,
        source_offset: op.source.offset,
        dest: copy_side(c, &op.dest, op.flags & GNTCOPY_DEST_GREF != 0)?,
        dest_offset: op.dest.offset,
        len: op.len,
    })
}
