//! Grant tables on the guest side: our own v1 table (grant and revoke
//! access to our pages) and the operations on other domains' grants
//! (map, unmap, copy).

use core::sync::atomic::{AtomicU32, Ordering, fence};

use pv_abi::grant_table::{self as gt, ENTRIES_PER_FRAME, MapGrantRef, UnmapGrantRef};
pub use pv_abi::grant_table::{GTF_READING, GTF_WRITING};
use pv_abi::memory::{AddToPhysmap, XENMAPSPACE_GRANT_TABLE, XENMEM_ADD_TO_PHYSMAP};

use crate::hypercall::{self, Errno, Result, nr};

/// Refs below this are reserved (console, xenstore, ...).
const FIRST_FREE_REF: u32 = 8;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

static mut TABLE: Page = Page([0; 4096]);

fn entry_u32(gref: u32, half: usize) -> &'static AtomicU32 {
    // SAFETY: our grant table frame is mapped at TABLE; an entry is two
    // aligned u32s (flags | domid << 16, then the frame); gref < 512.
    unsafe {
        AtomicU32::from_ptr(
            ((&raw mut TABLE) as *mut u8).add(gref as usize * 8 + half * 4) as *mut u32,
        )
    }
}

/// Maps our grant table frame 0 (XENMAPSPACE_grant_table).
pub fn init() -> Result<()> {
    let req = AddToPhysmap {
        domid: pv_abi::DOMID_SELF,
        space: XENMAPSPACE_GRANT_TABLE,
        gpfn: (&raw mut TABLE) as u64 >> 12,
        ..Default::default()
    };
    // SAFETY: XENMEM_add_to_physmap with a live struct.
    let ret = unsafe {
        hypercall::raw(
            nr::MEMORY_OP,
            XENMEM_ADD_TO_PHYSMAP,
            &req as *const _ as u64,
            0,
            0,
            0,
        )
    };
    if ret < 0 { Err(Errno(-ret)) } else { Ok(()) }
}

/// Lets `domid` access our page `gfn`; returns the grant reference.
pub fn grant_access(domid: u16, gfn: u64, readonly: bool) -> Option<u32> {
    let gref = (FIRST_FREE_REF..ENTRIES_PER_FRAME)
        .find(|&r| entry_u32(r, 0).load(Ordering::SeqCst) == 0)?;
    entry_u32(gref, 1).store(gfn as u32, Ordering::SeqCst);
    fence(Ordering::Release);
    let flags = gt::GTF_PERMIT_ACCESS | if readonly { gt::GTF_READONLY } else { 0 };
    entry_u32(gref, 0).store(flags as u32 | (domid as u32) << 16, Ordering::SeqCst);
    Some(gref)
}

/// Flags of our entry `gref` (to see GTF_reading/GTF_writing).
pub fn flags(gref: u32) -> u16 {
    entry_u32(gref, 0).load(Ordering::SeqCst) as u16
}

/// Revokes a grant; fails while the grantee still has it mapped.
pub fn end_access(gref: u32) -> bool {
    let word = entry_u32(gref, 0).load(Ordering::SeqCst);
    if word as u16 & (GTF_READING | GTF_WRITING) != 0 {
        return false;
    }
    entry_u32(gref, 0)
        .compare_exchange(word, 0, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}

/// The GNTST_* status of a failed grant operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantStatus(pub i16);

/// Runs one grant-table operation on `op` and returns its status.
fn one<T>(
    cmd: u64,
    op: &mut T,
    status: impl Fn(&T) -> i16,
) -> core::result::Result<(), GrantStatus> {
    // SAFETY: GNTTABOP_* with one live, correctly laid out element.
    let ret = unsafe { hypercall::raw(nr::GRANT_TABLE_OP, cmd, op as *mut T as u64, 1, 0, 0) };
    fence(Ordering::Acquire);
    let status = status(op);
    if ret < 0 {
        Err(GrantStatus(ret as i16))
    } else if status != gt::status::OKAY {
        Err(GrantStatus(status))
    } else {
        Ok(())
    }
}

/// Maps `domid`'s grant `gref` at our address `at` (page-aligned, in our
/// RAM); returns the handle.
pub fn map(
    domid: u16,
    gref: u32,
    at: u64,
    readonly: bool,
) -> core::result::Result<u32, GrantStatus> {
    let flags = gt::GNTMAP_HOST_MAP | if readonly { gt::GNTMAP_READONLY } else { 0 };
    let mut op = MapGrantRef {
        host_addr: at,
        flags,
        gref,
        dom: domid,
        ..Default::default()
    };
    // SAFETY (reads below): the hypervisor wrote the fields through the pointer.
    one(gt::GNTTABOP_MAP_GRANT_REF, &mut op, |o| unsafe {
        core::ptr::read_volatile(&o.status)
    })?;
    Ok(op.handle)
}

pub fn unmap(handle: u32, at: u64) -> core::result::Result<(), GrantStatus> {
    let mut op = UnmapGrantRef {
        host_addr: at,
        handle,
        ..Default::default()
    };
    // SAFETY: as in `map`.
    one(gt::GNTTABOP_UNMAP_GRANT_REF, &mut op, |o| unsafe {
        core::ptr::read_volatile(&o.status)
    })
}

/// One side of a grant copy: a grant of another domain, or our own page.
#[derive(Clone, Copy)]
pub enum CopyPtr {
    Gref { domid: u16, gref: u32, offset: u16 },
    Own { gfn: u64, offset: u16 },
}

fn raw_ptr(p: CopyPtr) -> (gt::CopyPtr, bool) {
    match p {
        CopyPtr::Gref {
            domid,
            gref,
            offset,
        } => (
            gt::CopyPtr {
                u: gref as u64,
                domid,
                offset,
                pad: 0,
            },
            true,
        ),
        CopyPtr::Own { gfn, offset } => (
            gt::CopyPtr {
                u: gfn,
                domid: pv_abi::DOMID_SELF,
                offset,
                pad: 0,
            },
            false,
        ),
    }
}

/// GNTTABOP_copy of `len` bytes.
pub fn copy(source: CopyPtr, dest: CopyPtr, len: u16) -> core::result::Result<(), GrantStatus> {
    let (source, source_gref) = raw_ptr(source);
    let (dest, dest_gref) = raw_ptr(dest);
    let flags = if source_gref {
        gt::GNTCOPY_SOURCE_GREF
    } else {
        0
    } | if dest_gref { gt::GNTCOPY_DEST_GREF } else { 0 };
    let mut op = gt::Copy {
        source,
        dest,
        len,
        flags,
        ..Default::default()
    };
    // SAFETY: as in `map`.
    one(gt::GNTTABOP_COPY, &mut op, |o| unsafe {
        core::ptr::read_volatile(&o.status)
    })
}
