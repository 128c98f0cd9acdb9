//! Foreign mappings: the privileged domain maps pages of other domains
//! into its own physmap (`XENMEM_add_to_physmap_batch` with
//! `XENMAPSPACE_gmfn_foreign`), as Xen's toolstack does to reach a DomU's
//! console ring.
//!
//! When the owner dies its pages are taken back from the mapper first
//! (the mapper's page that was there returns), and the owner's frames wait
//! in quarantine for two timer ticks — by then every CPU has left its
//! guest at least once and flushed stale translations — before they are
//! scrubbed and reused, so no domain can see another's recycled memory.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use spin::Mutex;

use super::registry::{self, DomId, Domain};
use crate::arch::time;
use crate::mm::frame::{FRAME_SIZE, Frame};
use crate::mm::guest::Gfn;
use crate::mm::scrub_and_free;

#[derive(Clone, Copy, Debug)]
pub struct ForeignMap {
    pub owner: DomId,
    pub owner_gfn: u64,
    /// The mapper's own frame that the foreign page replaced.
    pub displaced: Frame,
    /// The owner went away: the slot holds `displaced` again, and the
    /// mapper's XENMEM_remove_from_physmap of it succeeds (as on Xen, where
    /// the mapping outlives the owner until the mapper removes it).
    pub revoked: bool,
}

/// Frames waiting to be freed, with the TSC after which they may be.
static QUARANTINE: Mutex<Vec<(Frame, u64)>> = Mutex::new(Vec::new());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// -ESRCH
    NoSuchDomain,
    /// -EINVAL
    Invalid,
}

/// Maps `owner`'s page `owner_gfn` at `mapper`'s `gfn`.
pub fn map(mapper: &Domain, owner: DomId, owner_gfn: u64, gfn: u64) -> Result<(), MapError> {
    if owner == mapper.id {
        return Err(MapError::Invalid);
    }
    // The owner's frame must not be given back between the look and the
    // mapping.
    let _ownership = registry::FRAME_OWNERSHIP.lock();
    let owner = registry::lookup(owner).ok_or(MapError::NoSuchDomain)?;
    let frame = owner
        .memory
        .lock()
        .p2m
        .get(Gfn(owner_gfn))
        .ok_or(MapError::Invalid)?;
    let mut maps = mapper.foreign_maps.lock();
    let mut memory = mapper.memory.lock();
    let current = memory.p2m.get(Gfn(gfn)).ok_or(MapError::Invalid)?;
    let displaced = match maps.get(&gfn) {
        // Re-mapping a slot: keep the original page aside, not the foreign one.
        Some(previous) => previous.displaced,
        None => current,
    };
    if memory.special.contains_key(&gfn) || mapper.held_grants.lock().values().any(|h| h.gfn == gfn)
    {
        return Err(MapError::Invalid);
    }
    memory
        .p2m
        .set(Gfn(gfn), Some(frame))
        .map_err(|_| MapError::Invalid)?;
    memory.second_level.remap(gfn * FRAME_SIZE, frame);
    maps.insert(
        gfn,
        ForeignMap {
            owner: owner.id,
            owner_gfn,
            displaced,
            revoked: false,
        },
    );
    owner.lent.lock().insert(owner_gfn);
    drop(memory);
    mapper.mapping_generation.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Undoes the foreign mapping at `mapper`'s `gfn` (XENMEM_remove_from_physmap):
/// the mapper's own page returns there. Not a foreign slot: -EINVAL.
pub fn unmap(mapper: &Domain, gfn: u64) -> Result<(), MapError> {
    let mut maps = mapper.foreign_maps.lock();
    let map = maps.remove(&gfn).ok_or(MapError::Invalid)?;
    let mut memory = mapper.memory.lock();
    let _ = memory.p2m.set(Gfn(gfn), Some(map.displaced));
    memory.second_level.remap(gfn * FRAME_SIZE, map.displaced);
    drop(memory);
    drop(maps);
    mapper.mapping_generation.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Whether another domain maps `owner`'s page `owner_gfn` now.
pub fn is_mapped_elsewhere(owner: DomId, owner_gfn: u64) -> bool {
    registry::all().iter().any(|mapper| {
        mapper.id != owner
            && mapper
                .foreign_maps
                .lock()
                .values()
                .any(|m| m.owner == owner && m.owner_gfn == owner_gfn && !m.revoked)
    })
}

/// Takes `owner`'s pages back from every domain that maps them.
pub fn revoke_all_of(owner: DomId) {
    for mapper in registry::all() {
        let mut maps = mapper.foreign_maps.lock();
        let gone: Vec<(u64, ForeignMap)> = maps
            .iter()
            .filter(|(_, m)| m.owner == owner && !m.revoked)
            .map(|(g, m)| (*g, *m))
            .collect();
        if gone.is_empty() {
            continue;
        }
        let mut memory = mapper.memory.lock();
        for (gfn, map) in gone {
            if let Some(m) = maps.get_mut(&gfn) {
                m.revoked = true;
            }
            let _ = memory.p2m.set(Gfn(gfn), Some(map.displaced));
            memory.second_level.remap(gfn * FRAME_SIZE, map.displaced);
        }
        drop(memory);
        mapper.mapping_generation.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn quarantine(frame: Frame) {
    let release = time::rdtsc() + 2 * time::TICK_MS as u64 * time::tsc_per_ms();
    QUARANTINE.lock().push((frame, release));
}

/// Frames in quarantine now.
pub fn quarantined() -> usize {
    QUARANTINE.lock().len()
}

/// Frees quarantined frames whose wait is over (scheduler loop).
pub fn release_quarantine() {
    let now = time::rdtsc();
    let mut q = QUARANTINE.lock();
    if q.is_empty() {
        return;
    }
    let mut i = 0;
    while i < q.len() {
        if q[i].1 <= now {
            let (frame, _) = q.swap_remove(i);
            scrub_and_free(frame);
        } else {
            i += 1;
        }
    }
}
