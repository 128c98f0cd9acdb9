//! Grant tables in live domains: each domain's v1 table frames, the
//! hypervisor side of map/unmap/copy built on the pure core in
//! `crate::grant`, and the lifetime rules — mappings are undone when the
//! mapper dies, and a granter's page stays allocated while another domain
//! still maps it (it is freed, after quarantine, at the last unmap).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use spin::Mutex;

use super::registry::{self, DomId, Domain};
use crate::grant::{self, GrantEntry, GrantMemory, GrantRef, GrantStatus, Grants, Handle, Mapping};
use crate::mm::frame::{FRAME_SIZE, Frame};
use crate::mm::guest::Gfn;
use crate::mm::{self, shared};

pub static GRANTS: Mutex<Grants> = Mutex::new(Grants::EMPTY);

/// Host frames of mapped grants, with how many mappings use each.
static PINNED: Mutex<BTreeMap<Frame, u32>> = Mutex::new(BTreeMap::new());
/// Frames whose owner died while they were mapped: freed at last unmap.
static ORPHANS: Mutex<BTreeSet<Frame>> = Mutex::new(BTreeSet::new());

/// A grant mapped into a domain: where, which host frame, and the
/// domain's own page it displaced.
#[derive(Clone, Copy, Debug)]
pub struct HeldGrant {
    pub gfn: u64,
    pub frame: Frame,
    pub displaced: Frame,
}

/// Grant table frames of one domain, allocated on demand.
#[derive(Default)]
pub struct TableFrames {
    pub frames: Vec<Frame>,
}

/// Reads entries from the live grant table frames.
struct LiveTables;

impl LiveTables {
    fn locate(granter: DomId, gref: GrantRef) -> Option<(Frame, usize)> {
        let domain = registry::lookup(granter)?;
        let table = domain.grant_table.lock();
        let frame = *table
            .frames
            .get((gref / grant::ENTRIES_PER_FRAME) as usize)?;
        Some((frame, (gref % grant::ENTRIES_PER_FRAME) as usize * 8))
    }
}

impl GrantMemory for LiveTables {
    fn entry(&self, granter: DomId, gref: GrantRef) -> Option<GrantEntry> {
        let (frame, offset) = Self::locate(granter, gref)?;
        let word = shared::load_u32(frame, offset);
        Some(GrantEntry {
            flags: word as u16,
            domid: (word >> 16) as u16,
            frame: shared::load_u32(frame, offset + 4),
        })
    }

    fn swap_flags(
        &self,
        granter: DomId,
        gref: GrantRef,
        expected: GrantEntry,
        new_flags: u16,
    ) -> bool {
        let Some((frame, offset)) = Self::locate(granter, gref) else {
            return false;
        };
        let old = expected.flags as u32 | (expected.domid as u32) << 16;
        let new = new_flags as u32 | (expected.domid as u32) << 16;
        shared::compare_exchange_u32(frame, offset, old, new)
    }
}

pub fn add_domain(id: DomId) {
    GRANTS.lock().add_domain(id);
}

/// The mapper died: undo its mappings (its p2m gets its pages back).
pub fn remove_domain(domain: &Domain) {
    let _ = GRANTS.lock().remove_domain(domain.id, &LiveTables);
    let held: Vec<HeldGrant> = core::mem::take(&mut *domain.held_grants.lock())
        .into_values()
        .collect();
    for h in held {
        restore(domain, h);
    }
}

/// Makes sure table frame `idx` exists; returns it.
pub fn table_frame(domain: &Domain, idx: u32) -> Option<Frame> {
    if !GRANTS.lock().grow_for_frame(domain.id, idx) {
        return None;
    }
    let mut table = domain.grant_table.lock();
    while table.frames.len() <= idx as usize {
        let frame = mm::frames().alloc()?;
        for offset in (0..FRAME_SIZE as usize).step_by(8) {
            shared::store_u64(frame, offset, 0);
        }
        table.frames.push(frame);
    }
    Some(table.frames[idx as usize])
}

/// `GNTTABOP_setup_table` for `domain`: grows the table (frames are then
/// mapped by the guest with XENMAPSPACE_grant_table).
pub fn setup_table(domain: &Domain, frames: u32) -> GrantStatus {
    if frames == 0 {
        return GrantStatus::Okay;
    }
    let status = GRANTS.lock().setup_table(domain.id, frames);
    if status == GrantStatus::Okay && table_frame(domain, frames - 1).is_none() {
        return GrantStatus::GeneralError;
    }
    status
}

pub fn query_size(id: DomId) -> Option<u32> {
    GRANTS.lock().frames(id)
}

/// `GNTTABOP_map_grant_ref` with GNTMAP_host_map: maps `granter`'s grant
/// `gref` at `mapper`'s gfn.
pub fn map(
    mapper: &Domain,
    granter: DomId,
    gref: GrantRef,
    gfn: u64,
    readonly: bool,
) -> Result<Handle, GrantStatus> {
    // The granter's frame must not be given back between the look and
    // the pin.
    let _ownership = registry::FRAME_OWNERSHIP.lock();
    // Only over the mapper's own page: a second mapping over a grant or
    // a foreign page would put that page, not the mapper's, back when it
    // goes (and the first mapping's unmap would then restore the wrong
    // frame), leaving another domain's frame in the mapper's physmap.
    let occupied = mapper.held_grants.lock().values().any(|h| h.gfn == gfn)
        || mapper.foreign_maps.lock().contains_key(&gfn);
    if occupied {
        log::warn!(
            "d{}: grant map over gfn {gfn:#x}, which already maps another page",
            mapper.id
        );
        return Err(GrantStatus::BadVirtAddr);
    }
    if mapper.memory.lock().p2m.get(Gfn(gfn)).is_none() || mapper.is_special_gfn(gfn) {
        return Err(GrantStatus::BadVirtAddr);
    }
    let granter_domain = registry::lookup(granter).ok_or(GrantStatus::BadDomain)?;
    let (handle, mapping) =
        GRANTS
            .lock()
            .map(mapper.id, granter, gref, gfn, readonly, &LiveTables)?;
    let Some(frame) = granter_domain.memory.lock().p2m.get(Gfn(mapping.frame)) else {
        let _ = GRANTS.lock().unmap(mapper.id, handle, None, &LiveTables);
        return Err(GrantStatus::BadPage);
    };
    let mut memory = mapper.memory.lock();
    // Only over a backed RAM page of the mapper's (a hole would leave the
    // granter's frame in the mapper's p2m with nothing to put back).
    let backed = memory.p2m.get(Gfn(gfn)).is_some() && memory.p2m.is_ram(Gfn(gfn));
    let displaced = match backed.then(|| memory.p2m.set(Gfn(gfn), Some(frame))) {
        Some(Ok(Some(d))) => d,
        _ => {
            drop(memory);
            let _ = GRANTS.lock().unmap(mapper.id, handle, None, &LiveTables);
            return Err(GrantStatus::BadVirtAddr);
        }
    };
    if readonly {
        memory.second_level.remap_readonly(gfn * FRAME_SIZE, frame);
    } else {
        memory.second_level.remap(gfn * FRAME_SIZE, frame);
    }
    drop(memory);
    *PINNED.lock().entry(frame).or_insert(0) += 1;
    mapper.held_grants.lock().insert(
        handle,
        HeldGrant {
            gfn,
            frame,
            displaced,
        },
    );
    mapper.mapping_generation.fetch_add(1, Ordering::SeqCst);
    Ok(handle)
}

/// `GNTTABOP_unmap_grant_ref`.
pub fn unmap(mapper: &Domain, handle: Handle, gfn: Option<u64>) -> Result<Mapping, GrantStatus> {
    // The slot holds the granter's frame until it is restored.
    let _ownership = registry::FRAME_OWNERSHIP.lock();
    let mapping = GRANTS.lock().unmap(mapper.id, handle, gfn, &LiveTables)?;
    if let Some(h) = mapper.held_grants.lock().remove(&handle) {
        restore(mapper, h);
    }
    Ok(mapping)
}

/// Puts the mapper's own page back and drops the pin on the granted one.
fn restore(mapper: &Domain, held: HeldGrant) {
    let mut memory = mapper.memory.lock();
    let _ = memory.p2m.set(Gfn(held.gfn), Some(held.displaced));
    memory
        .second_level
        .remap(held.gfn * FRAME_SIZE, held.displaced);
    drop(memory);
    mapper.mapping_generation.fetch_add(1, Ordering::SeqCst);
    let mut pinned = PINNED.lock();
    let last = match pinned.get_mut(&held.frame) {
        Some(n) if *n > 1 => {
            *n -= 1;
            false
        }
        _ => {
            pinned.remove(&held.frame);
            true
        }
    };
    drop(pinned);
    if last && ORPHANS.lock().remove(&held.frame) {
        super::foreign::quarantine(held.frame);
    }
}

/// Frames pinned by grant mappings now, and orphans among them (for
/// memcheck's report).
pub fn pinned_and_orphaned() -> (usize, usize) {
    (PINNED.lock().len(), ORPHANS.lock().len())
}

/// Called by a dying granter for each of its frames: true if another
/// domain still maps it (the frame then outlives its owner as an orphan).
pub fn keep_if_mapped(frame: Frame) -> bool {
    if PINNED.lock().contains_key(&frame) {
        ORPHANS.lock().insert(frame);
        true
    } else {
        false
    }
}

/// The domains one `GNTTABOP_copy` batch names, looked up once each (a
/// batch of 64 page copies between two domains would otherwise look the
/// peer up four times per element).
#[derive(Default)]
pub struct CopyPeers {
    seen: core::cell::RefCell<Vec<Arc<Domain>>>,
}

impl CopyPeers {
    fn get(&self, id: DomId) -> Option<Arc<Domain>> {
        if let Some(d) = self.seen.borrow().iter().find(|d| d.id == id) {
            return Some(d.clone());
        }
        let d = registry::lookup(id)?;
        self.seen.borrow_mut().push(d.clone());
        Some(d)
    }

    fn locate(&self, granter: DomId, gref: GrantRef) -> Option<(Frame, usize)> {
        let domain = self.get(granter)?;
        let table = domain.grant_table.lock();
        let frame = *table
            .frames
            .get((gref / grant::ENTRIES_PER_FRAME) as usize)?;
        Some((frame, (gref % grant::ENTRIES_PER_FRAME) as usize * 8))
    }
}

impl GrantMemory for CopyPeers {
    fn entry(&self, granter: DomId, gref: GrantRef) -> Option<GrantEntry> {
        let (frame, offset) = self.locate(granter, gref)?;
        let word = shared::load_u32(frame, offset);
        Some(GrantEntry {
            flags: word as u16,
            domid: (word >> 16) as u16,
            frame: shared::load_u32(frame, offset + 4),
        })
    }

    fn swap_flags(&self, granter: DomId, gref: GrantRef, expected: GrantEntry, new: u16) -> bool {
        LiveTables.swap_flags(granter, gref, expected, new)
    }
}

/// One checked `GNTTABOP_copy` element, performed; `peers` is shared by
/// the elements of one batch.
pub fn copy(caller: &Domain, op: &grant::CopyOp, peers: &CopyPeers) -> GrantStatus {
    let frame_of = |dom: DomId, gfn: u64| -> Option<Frame> {
        if dom == caller.id {
            caller.memory.lock().p2m.get(Gfn(gfn))
        } else {
            peers.get(dom)?.memory.lock().p2m.get(Gfn(gfn))
        }
    };
    let resolved = match GRANTS.lock().copy(caller.id, op, peers, frame_of) {
        Ok(r) => r,
        Err(status) => return status,
    };
    mm::copy_between(
        resolved.source,
        op.source_offset as usize,
        resolved.dest,
        op.dest_offset as usize,
        op.len as usize,
    );
    GrantStatus::Okay
}
