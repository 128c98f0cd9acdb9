//! `grant_table_op`: setup_table, query_size, set_version (v1 only),
//! map_grant_ref, unmap_grant_ref and copy, batched as Xen batches them.
//! Per-operation failures are `GNTST_*` codes in each element's status;
//! the hypercall itself fails only for a bad pointer or command.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{Caller, Errno, HcResult};
use crate::domain::grants;
use crate::grant::{CopyOp, CopySide, GrantStatus, MAX_FRAMES};

const MAP_GRANT_REF: u64 = 0;
const UNMAP_GRANT_REF: u64 = 1;
const SETUP_TABLE: u64 = 2;
const COPY: u64 = 5;
const QUERY_SIZE: u64 = 6;
const SET_VERSION: u64 = 8;
/// Elements one call may carry (Xen would continue; we refuse more).
const MAX_BATCH: u64 = 512;

const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
const GNTMAP_HOST_MAP: u32 = 1 << 1;
const GNTMAP_READONLY: u32 = 1 << 2;
const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
const GNTCOPY_DEST_GREF: u16 = 1 << 1;
const DOMID_SELF: u16 = 0x7ff0;

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct MapGrantRef {
    host_addr: u64,
    flags: u32,
    gref: u32,
    dom: u16,
    status: i16,
    handle: u32,
    dev_bus_addr: u64,
}

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct UnmapGrantRef {
    host_addr: u64,
    dev_bus_addr: u64,
    handle: u32,
    status: i16,
    pad: u16,
}

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

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Clone, Copy)]
#[repr(C)]
struct CopyPtr {
    /// A grant ref (u32) or a gfn (u64), by the element's flags.
    u: u64,
    domid: u16,
    offset: u16,
    pad: u32,
}

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Copy {
    source: CopyPtr,
    dest: CopyPtr,
    len: u16,
    flags: u16,
    status: i16,
    pad: u16,
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
            for i in 0..count {
                let at = uop.wrapping_add(i * 40);
                let mut op: Copy = c.read(at)?;
                op.status = match copy_sides(c, &op) {
                    Ok(copy) => grants::copy(c.domain, &copy) as i16,
                    Err(status) => status as i16,
                };
                c.write(at, &op)?;
            }
            Ok(0)
        }
        _ => Err(Errno::NoSys),
    }
}

fn copy_side(c: &Caller, ptr: &CopyPtr, is_gref: bool) -> Result<CopySide, GrantStatus> {
    let domid = if ptr.domid == DOMID_SELF {
        c.domain.id
    } else {
        ptr.domid
    };
    if is_gref {
        let gref = u32::try_from(ptr.u).map_err(|_| GrantStatus::BadGntref)?;
        Ok(CopySide::Gref {
            domain: domid,
            gref,
        })
    } else if domid == c.domain.id {
        Ok(CopySide::Own { gfn: ptr.u })
    } else {
        // Only a grant reaches another domain's memory.
        Err(GrantStatus::PermissionDenied)
    }
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
