//! Grant tables on the guest side: our own v1 table (grant and revoke
//! access to our pages) and the operations on other domains' grants
//! (map, unmap, copy).
//!
//! Our table is one frame (refs [`FIRST_FREE_REF`]..512), mapped over a
//! page of the image with XENMAPSPACE_grant_table; its entries are shared
//! with the hypervisor, which sets GTF_reading/GTF_writing while a grantee
//! uses them, so they are accessed atomically.

use core::sync::atomic::{AtomicU32, Ordering, fence};

use pv_abi::grant_table::{
    self as gt, ENTRIES_PER_FRAME, GNTTAB_NR_RESERVED_ENTRIES, GnttabCopy, GnttabCopyPtr,
    GnttabMapGrantRef, GnttabUnmapGrantRef, GrantHandle, GrantRef,
};
use pv_abi::hypercall::Hypercall;
use pv_abi::memory::XENMAPSPACE_GRANT_TABLE;

use crate::hypercall::{self, DOMID_SELF, Errno, Result};

pub use pv_abi::grant_table::{GTF_READING, GTF_WRITING, GrantStatus};

/// Refs below this are reserved (console, XenStore, toolstack).
pub const FIRST_FREE_REF: GrantRef = GNTTAB_NR_RESERVED_ENTRIES;

#[repr(C, align(4096))]
struct Page([u8; pv_abi::PAGE_SIZE]);

/// Replaced by our grant table frame once mapped; accessed only through
/// `entry_word`.
static mut TABLE: Page = Page([0; pv_abi::PAGE_SIZE]);

/// Word `half` of entry `gref`: 0 = flags | domid << 16, 1 = frame.
fn entry_word(gref: GrantRef, half: usize) -> &'static AtomicU32 {
    assert!(gref < ENTRIES_PER_FRAME && half < 2);
    // SAFETY: an aligned u32 inside our table frame (gref < 512), shared
    // with the hypervisor, which accesses it atomically.
    unsafe {
        AtomicU32::from_ptr(
            (&raw mut TABLE)
                .cast::<u8>()
                .add(gref as usize * 8 + half * 4)
                .cast(),
        )
    }
}

/// Maps our grant table frame 0 (XENMAPSPACE_grant_table).
pub fn init() -> Result<()> {
    let gpfn = (&raw mut TABLE) as u64 >> pv_abi::PAGE_SHIFT;
    hypercall::add_to_physmap(XENMAPSPACE_GRANT_TABLE, 0, gpfn).map(|_| ())
}

/// Lets `domid` access our frame `gfn`; returns the grant reference
/// (`None` when the table is full).
pub fn grant_access(domid: u16, gfn: u64, readonly: bool) -> Option<GrantRef> {
    let frame = u32::try_from(gfn).ok()?;
    let gref = (FIRST_FREE_REF..ENTRIES_PER_FRAME)
        .find(|&r| entry_word(r, 0).load(Ordering::SeqCst) == 0)?;
    entry_word(gref, 1).store(frame, Ordering::SeqCst);
    // The frame must be visible before the entry becomes valid.
    fence(Ordering::Release);
    let flags = gt::GTF_PERMIT_ACCESS | if readonly { gt::GTF_READONLY } else { 0 };
    entry_word(gref, 0).store(flags as u32 | (domid as u32) << 16, Ordering::SeqCst);
    Some(gref)
}

/// The flags of our entry `gref` (GTF_reading/GTF_writing show use).
pub fn flags(gref: GrantRef) -> u16 {
    entry_word(gref, 0).load(Ordering::SeqCst) as u16
}

/// Revokes a grant; false while the grantee still uses it.
pub fn end_access(gref: GrantRef) -> bool {
    let word = entry_word(gref, 0).load(Ordering::SeqCst);
    if word as u16 & (GTF_READING | GTF_WRITING) != 0 {
        return false;
    }
    entry_word(gref, 0)
        .compare_exchange(word, 0, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}

/// Revokes a grant, giving a grantee that answered just before it let
/// go a moment to finish (a few yields); false if it still uses it, in
/// which case the page must never be reused.
pub fn revoke(gref: GrantRef) -> bool {
    for _ in 0..8 {
        if end_access(gref) {
            return true;
        }
        let _ = hypercall::sched_yield();
    }
    false
}

/// Why a grant operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantError {
    /// The hypercall itself failed (bad command or argument pointer).
    Hypercall(Errno),
    /// The operation's GNTST_* status.
    Status(GrantStatus),
    /// A status value grant_table.h does not define.
    UnknownStatus(i16),
}

/// Runs one grant-table operation on `op` and reads its status.
fn one<T>(cmd: u64, op: &mut T, status: fn(&T) -> i16) -> core::result::Result<(), GrantError> {
    let nr = Hypercall::GrantTableOp.raw() as u64;
    // SAFETY: GNTTABOP_* with one live element of the sub-op's layout,
    // which the hypervisor may write.
    let ret = unsafe { hypercall::raw(nr, cmd, core::ptr::from_mut(op) as u64, 1, 0, 0) };
    Errno::check_ret(ret).map_err(GrantError::Hypercall)?;
    match status(op) {
        gt::status::OKAY => Ok(()),
        s => Err(GrantStatus::try_from(s).map_or(GrantError::UnknownStatus(s), GrantError::Status)),
    }
}

/// Maps `domid`'s grant `gref` at our address `at` (page-aligned, in our
/// memory); returns the mapping's handle.
pub fn map(
    domid: u16,
    gref: GrantRef,
    at: u64,
    readonly: bool,
) -> core::result::Result<GrantHandle, GrantError> {
    let flags = gt::GNTMAP_HOST_MAP | if readonly { gt::GNTMAP_READONLY } else { 0 };
    let mut op = GnttabMapGrantRef {
        host_addr: at,
        flags,
        gref,
        dom: domid,
        ..Default::default()
    };
    one(gt::GNTTABOP_MAP_GRANT_REF, &mut op, |o| o.status)?;
    Ok(op.handle)
}

/// Undoes [`map`].
pub fn unmap(handle: GrantHandle, at: u64) -> core::result::Result<(), GrantError> {
    let mut op = GnttabUnmapGrantRef {
        host_addr: at,
        handle,
        ..Default::default()
    };
    one(gt::GNTTABOP_UNMAP_GRANT_REF, &mut op, |o| o.status)
}

/// One side of a grant copy: a grant of another domain, or our own frame.
#[derive(Clone, Copy, Debug)]
pub enum CopyPtr {
    Gref {
        domid: u16,
        gref: GrantRef,
        offset: u16,
    },
    Own {
        gfn: u64,
        offset: u16,
    },
}

impl CopyPtr {
    /// The ABI form, and whether it names a grant.
    fn raw(self) -> (GnttabCopyPtr, bool) {
        match self {
            CopyPtr::Gref {
                domid,
                gref,
                offset,
            } => (GnttabCopyPtr::from_gref(gref, domid, offset), true),
            CopyPtr::Own { gfn, offset } => {
                (GnttabCopyPtr::from_gmfn(gfn, DOMID_SELF, offset), false)
            }
        }
    }
}

/// GNTTABOP_copy of `len` bytes.
pub fn copy(source: CopyPtr, dest: CopyPtr, len: u16) -> core::result::Result<(), GrantError> {
    let (source, source_gref) = source.raw();
    let (dest, dest_gref) = dest.raw();
    let mut flags = 0;
    if source_gref {
        flags |= gt::GNTCOPY_SOURCE_GREF;
    }
    if dest_gref {
        flags |= gt::GNTCOPY_DEST_GREF;
    }
    let mut op = GnttabCopy {
        source,
        dest,
        len,
        flags,
        ..Default::default()
    };
    one(gt::GNTTABOP_COPY, &mut op, |o| o.status)
}

/// One GNTTABOP_copy element of a batch: `len` bytes from `source` to `dest`.
#[derive(Clone, Copy, Debug)]
pub struct CopyOp {
    pub source: CopyPtr,
    pub dest: CopyPtr,
    pub len: u16,
}

/// Most copies [`copy_many`] issues in one hypercall (the hypervisor's
/// limit per call). Every hypercall is a world switch, which under QEMU's
/// TCG costs about as much as copying 40 pages: batches are kept large.
pub const COPY_BATCH: usize = 512;

/// GNTTABOP_copy of every op in `ops`, [`COPY_BATCH`] per hypercall;
/// `results[i]` is op `i`'s outcome. The hypercall failing as a whole
/// (a bad batch pointer, which would be our bug) fails every op in it.
pub fn copy_many(ops: &[CopyOp], results: &mut [core::result::Result<(), GrantError>]) {
    let nr = Hypercall::GrantTableOp.raw() as u64;
    for (chunk, out) in ops.chunks(COPY_BATCH).zip(results.chunks_mut(COPY_BATCH)) {
        let mut batch = alloc::vec![GnttabCopy::default(); chunk.len()];
        for (raw, op) in batch.iter_mut().zip(chunk) {
            let (source, source_gref) = op.source.raw();
            let (dest, dest_gref) = op.dest.raw();
            let mut flags = 0;
            if source_gref {
                flags |= gt::GNTCOPY_SOURCE_GREF;
            }
            if dest_gref {
                flags |= gt::GNTCOPY_DEST_GREF;
            }
            *raw = GnttabCopy {
                source,
                dest,
                len: op.len,
                flags,
                ..Default::default()
            };
        }
        // SAFETY: GNTTABOP_copy with `chunk.len()` live elements, which
        // the hypervisor writes the status of.
        let ret = unsafe {
            hypercall::raw(
                nr,
                gt::GNTTABOP_COPY,
                batch.as_mut_ptr() as u64,
                chunk.len() as u64,
                0,
                0,
            )
        };
        let whole = Errno::check_ret(ret).map_err(GrantError::Hypercall);
        for (i, slot) in out.iter_mut().enumerate().take(chunk.len()) {
            *slot = whole.and_then(|_| match batch[i].status {
                gt::status::OKAY => Ok(()),
                s => Err(GrantStatus::try_from(s)
                    .map_or(GrantError::UnknownStatus(s), GrantError::Status)),
            });
        }
    }
}
