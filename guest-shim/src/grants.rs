//! Grant tables on the guest side: our own v1 table (grant and revoke
//! access to our pages) and the operations on other domains' grants
//! (map, unmap, copy).

use core::sync::atomic::{AtomicU32, Ordering, fence};

use crate::hypercall::{self, Errno, Result, nr};

pub const GTF_PERMIT_ACCESS: u16 = 1;
pub const GTF_READONLY: u16 = 1 << 2;
pub const GTF_READING: u16 = 1 << 3;
pub const GTF_WRITING: u16 = 1 << 4;
/// Refs below this are reserved (console, xenstore, ...).
const FIRST_FREE_REF: u32 = 8;
const ENTRIES: u32 = 512;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

static mut TABLE: Page = Page([0; 4096]);

fn entry_word(gref: u32) -> &'static AtomicU32 {
    // SAFETY: our grant table frame is mapped at TABLE; entries are 8
    // bytes, the first u32 being flags | domid << 16, aligned.
    unsafe { AtomicU32::from_ptr(((&raw mut TABLE) as *mut u8).add(gref as usize * 8) as *mut u32) }
}

fn entry_frame(gref: u32) -> &'static AtomicU32 {
    // SAFETY: as in `entry_word`: the second u32 of the entry.
    unsafe {
        AtomicU32::from_ptr(((&raw mut TABLE) as *mut u8).add(gref as usize * 8 + 4) as *mut u32)
    }
}

/// Maps our grant table frame 0 (XENMAPSPACE_grant_table).
pub fn init() -> Result<()> {
    #[repr(C)]
    struct AddToPhysmap {
        domid: u16,
        size: u16,
        space: u32,
        idx: u64,
        gpfn: u64,
    }
    let req = AddToPhysmap {
        domid: hypercall::DOMID_SELF,
        size: 0,
        space: 1,
        idx: 0,
        gpfn: (&raw mut TABLE) as u64 >> 12,
    };
    // SAFETY: XENMEM_add_to_physmap with a live struct.
    let ret = unsafe { hypercall::raw(nr::MEMORY_OP, 7, &req as *const _ as u64, 0, 0, 0) };
    if ret < 0 { Err(Errno(-ret)) } else { Ok(()) }
}

/// Lets `domid` access our page `gfn`; returns the grant reference.
pub fn grant_access(domid: u16, gfn: u64, readonly: bool) -> Option<u32> {
    for gref in FIRST_FREE_REF..ENTRIES {
        if entry_word(gref).load(Ordering::SeqCst) == 0 {
            entry_frame(gref).store(gfn as u32, Ordering::SeqCst);
            fence(Ordering::Release);
            let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
            entry_word(gref).store(flags as u32 | (domid as u32) << 16, Ordering::SeqCst);
            return Some(gref);
        }
    }
    None
}

/// Flags of our entry `gref` (to see GTF_reading/GTF_writing).
pub fn flags(gref: u32) -> u16 {
    entry_word(gref).load(Ordering::SeqCst) as u16
}

/// Revokes a grant; fails while the grantee still has it mapped.
pub fn end_access(gref: u32) -> bool {
    let word = entry_word(gref).load(Ordering::SeqCst);
    if word as u16 & (GTF_READING | GTF_WRITING) != 0 {
        return false;
    }
    entry_word(gref)
        .compare_exchange(word, 0, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}

/// The GNTST_* status of a failed grant operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantStatus(pub i16);

#[repr(C)]
struct MapOp {
    host_addr: u64,
    flags: u32,
    gref: u32,
    dom: u16,
    status: i16,
    handle: u32,
    dev_bus_addr: u64,
}

/// Maps `domid`'s grant `gref` at our address `at` (page-aligned, in our
/// RAM); returns the handle.
pub fn map(
    domid: u16,
    gref: u32,
    at: u64,
    readonly: bool,
) -> core::result::Result<u32, GrantStatus> {
    const HOST_MAP: u32 = 1 << 1;
    const READONLY: u32 = 1 << 2;
    let mut op = MapOp {
        host_addr: at,
        flags: HOST_MAP | if readonly { READONLY } else { 0 },
        gref,
        dom: domid,
        status: 0,
        handle: 0,
        dev_bus_addr: 0,
    };
    // SAFETY: GNTTABOP_map_grant_ref with one live element.
    let ret = unsafe { hypercall::raw(nr::GRANT_TABLE_OP, 0, &mut op as *mut _ as u64, 1, 0, 0) };
    // SAFETY: the hypervisor wrote the status through the pointer.
    let status = unsafe { core::ptr::read_volatile(&op.status) };
    if ret < 0 || status != 0 {
        Err(GrantStatus(if ret < 0 { ret as i16 } else { status }))
    } else {
        Ok(op.handle)
    }
}

pub fn unmap(handle: u32, at: u64) -> core::result::Result<(), GrantStatus> {
    #[repr(C)]
    struct UnmapOp {
        host_addr: u64,
        dev_bus_addr: u64,
        handle: u32,
        status: i16,
        pad: u16,
    }
    let mut op = UnmapOp {
        host_addr: at,
        dev_bus_addr: 0,
        handle,
        status: 0,
        pad: 0,
    };
    // SAFETY: GNTTABOP_unmap_grant_ref with one live element.
    let ret = unsafe { hypercall::raw(nr::GRANT_TABLE_OP, 1, &mut op as *mut _ as u64, 1, 0, 0) };
    // SAFETY: written by the hypervisor.
    let status = unsafe { core::ptr::read_volatile(&op.status) };
    if ret < 0 || status != 0 {
        Err(GrantStatus(if ret < 0 { ret as i16 } else { status }))
    } else {
        Ok(())
    }
}

/// One side of a grant copy: a grant of another domain, or our own page.
#[derive(Clone, Copy)]
pub enum CopyPtr {
    Gref { domid: u16, gref: u32, offset: u16 },
    Own { gfn: u64, offset: u16 },
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RawPtr {
    u: u64,
    domid: u16,
    offset: u16,
    pad: u32,
}

#[repr(C)]
struct CopyOp {
    source: RawPtr,
    dest: RawPtr,
    len: u16,
    flags: u16,
    status: i16,
    pad: u16,
}

fn raw_ptr(p: CopyPtr) -> (RawPtr, bool) {
    match p {
        CopyPtr::Gref {
            domid,
            gref,
            offset,
        } => (
            RawPtr {
                u: gref as u64,
                domid,
                offset,
                pad: 0,
            },
            true,
        ),
        CopyPtr::Own { gfn, offset } => (
            RawPtr {
                u: gfn,
                domid: hypercall::DOMID_SELF,
                offset,
                pad: 0,
            },
            false,
        ),
    }
}

/// GNTTABOP_copy of `len` bytes.
pub fn copy(source: CopyPtr, dest: CopyPtr, len: u16) -> core::result::Result<(), GrantStatus> {
    let (s, sg) = raw_ptr(source);
    let (d, dg) = raw_ptr(dest);
    let flags = if sg { 1 } else { 0 } | if dg { 2 } else { 0 };
    let mut op = CopyOp {
        source: s,
        dest: d,
        len,
        flags,
        status: 0,
        pad: 0,
    };
    // SAFETY: GNTTABOP_copy with one live element.
    let ret = unsafe { hypercall::raw(nr::GRANT_TABLE_OP, 5, &mut op as *mut _ as u64, 1, 0, 0) };
    // SAFETY: written by the hypervisor.
    let status = unsafe { core::ptr::read_volatile(&op.status) };
    if ret < 0 || status != 0 {
        Err(GrantStatus(if ret < 0 { ret as i16 } else { status }))
    } else {
        Ok(())
    }
}
