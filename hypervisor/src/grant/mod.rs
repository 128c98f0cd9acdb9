//! Grant tables, version 1: the bookkeeping behind `map_grant_ref`,
//! `unmap_grant_ref`, `copy`, `setup_table` and `query_size`.
//!
//! Pure logic, host-tested. Grant entries live in the granter's own memory
//! (it writes them, the hypervisor reads them), so they are reached through
//! [`GrantMemory`], and `GTF_reading`/`GTF_writing` are set with a
//! compare-and-swap that re-checks the entry, as Xen does: a granter that
//! changes an entry under our feet gets a failed map, never a wrong one.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

pub type DomId = u16;
pub type GrantRef = u32;
pub type Handle = u32;

pub use pv_abi::grant_table::ENTRIES_PER_FRAME;
/// Frames a domain's table may grow to (Xen's default max_grant_frames).
pub const MAX_FRAMES: u32 = 32;
/// Mappings one domain may hold at once.
pub const MAX_MAPTRACK: usize = 1024;

/// `GTF_*` entry flags.
pub mod gtf {
    pub use pv_abi::grant_table::{
        GTF_PERMIT_ACCESS as PERMIT_ACCESS, GTF_READING as READING, GTF_READONLY as READONLY,
        GTF_TYPE_MASK as TYPE_MASK, GTF_WRITING as WRITING,
    };
}

/// `GNTST_*` status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i16)]
pub enum GrantStatus {
    Okay = 0,
    GeneralError = -1,
    BadDomain = -2,
    BadGntref = -3,
    BadHandle = -4,
    BadVirtAddr = -5,
    NoDeviceSpace = -7,
    PermissionDenied = -8,
    BadPage = -9,
    BadCopyArg = -10,
}

/// One v1 entry as the granter wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantEntry {
    pub flags: u16,
    pub domid: u16,
    pub frame: u32,
}

/// Access to the granters' tables in guest memory.
pub trait GrantMemory {
    fn entry(&self, granter: DomId, gref: GrantRef) -> Option<GrantEntry>;
    /// Sets the flags of the entry to `new_flags` only if it still equals
    /// `expected` (a compare-and-swap on the flags+domid word).
    fn swap_flags(
        &self,
        granter: DomId,
        gref: GrantRef,
        expected: GrantEntry,
        new_flags: u16,
    ) -> bool;
}

/// A grant mapped into the mapper's guest-physical space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub granter: DomId,
    pub gref: GrantRef,
    /// The granter's frame (its gfn) being mapped.
    pub frame: u64,
    /// Where in the mapper it is mapped (gfn).
    pub at: u64,
    pub writable: bool,
}

#[derive(Default, Clone, Copy, Debug)]
struct Pins {
    readers: u32,
    writers: u32,
}

#[derive(Default)]
struct DomainGrants {
    frames: u32,
    maptrack: Vec<Option<Mapping>>,
}

#[derive(Default)]
pub struct Grants {
    domains: BTreeMap<DomId, DomainGrants>,
    /// Active mappings per granted entry.
    pins: BTreeMap<(DomId, GrantRef), Pins>,
}

/// A side of a grant copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopySide {
    /// A grant reference of `domain`'s table.
    Gref { domain: DomId, gref: GrantRef },
    /// A frame of the caller itself.
    Own { gfn: u64 },
}

/// One element of a `GNTTABOP_copy` batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyOp {
    pub source: CopySide,
    pub source_offset: u16,
    pub dest: CopySide,
    pub dest_offset: u16,
    pub len: u16,
}

/// A checked copy: both frames resolved (`F`: what the caller's `frame`
/// lookup gives), ready for the glue to move bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedCopy<F> {
    pub source: F,
    pub dest: F,
}

impl Grants {
    /// No domains yet (usable in a `static`).
    pub const EMPTY: Self = Self {
        domains: BTreeMap::new(),
        pins: BTreeMap::new(),
    };

    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_domain(&mut self, dom: DomId) {
        self.domains.insert(
            dom,
            DomainGrants {
                frames: 1,
                maptrack: Vec::new(),
            },
        );
    }

    /// Mappings `dom` still holds (to undo when it dies) and forgets it.
    pub fn remove_domain(&mut self, dom: DomId, mem: &impl GrantMemory) -> Vec<Mapping> {
        let held: Vec<(Handle, Mapping)> = self
            .domains
            .get(&dom)
            .map(|d| {
                d.maptrack
                    .iter()
                    .enumerate()
                    .filter_map(|(h, m)| m.map(|m| (h as Handle, m)))
                    .collect()
            })
            .unwrap_or_default();
        for &(handle, _) in &held {
            let _ = self.unmap(dom, handle, None, mem);
        }
        self.domains.remove(&dom);
        held.into_iter().map(|(_, m)| m).collect()
    }

    /// Mappings other domains hold of `granter`'s pages (its frames must
    /// outlive it until they are unmapped).
    pub fn mapped_by_others(&self, granter: DomId) -> Vec<(DomId, Mapping)> {
        let mut out = Vec::new();
        for (&dom, d) in &self.domains {
            for m in d.maptrack.iter().flatten() {
                if m.granter == granter && dom != granter {
                    out.push((dom, *m));
                }
            }
        }
        out
    }

    pub fn frames(&self, dom: DomId) -> Option<u32> {
        self.domains.get(&dom).map(|d| d.frames)
    }

    /// `GNTTABOP_setup_table`: grows the table to `frames` (never shrinks).
    pub fn setup_table(&mut self, dom: DomId, frames: u32) -> GrantStatus {
        let Some(d) = self.domains.get_mut(&dom) else {
            return GrantStatus::BadDomain;
        };
        if frames > MAX_FRAMES {
            return GrantStatus::GeneralError;
        }
        d.frames = d.frames.max(frames);
        GrantStatus::Okay
    }

    /// `XENMAPSPACE_grant_table` index `idx`: allowed if below the maximum;
    /// the table grows to cover it.
    pub fn grow_for_frame(&mut self, dom: DomId, idx: u32) -> bool {
        match self.domains.get_mut(&dom) {
            Some(d) if idx < MAX_FRAMES => {
                d.frames = d.frames.max(idx + 1);
                true
            }
            _ => false,
        }
    }

    /// `GNTTABOP_map_grant_ref` with `GNTMAP_host_map`: `mapper` maps
    /// `granter`'s entry `gref` at its gfn `at`.
    pub fn map(
        &mut self,
        mapper: DomId,
        granter: DomId,
        gref: GrantRef,
        at: u64,
        readonly: bool,
        mem: &impl GrantMemory,
    ) -> Result<(Handle, Mapping), GrantStatus> {
        let table_frames = self
            .domains
            .get(&granter)
            .ok_or(GrantStatus::BadDomain)?
            .frames;
        if !self.domains.contains_key(&mapper) {
            return Err(GrantStatus::BadDomain);
        }
        if gref >= table_frames * ENTRIES_PER_FRAME {
            return Err(GrantStatus::BadGntref);
        }
        let slot = {
            let d = &self.domains[&mapper];
            match d.maptrack.iter().position(Option::is_none) {
                Some(i) => i,
                None if d.maptrack.len() < MAX_MAPTRACK => d.maptrack.len(),
                None => return Err(GrantStatus::NoDeviceSpace),
            }
        };
        // Check and pin the entry; retry if the granter races us.
        let entry = loop {
            let e = mem.entry(granter, gref).ok_or(GrantStatus::BadGntref)?;
            if e.flags & gtf::TYPE_MASK != gtf::PERMIT_ACCESS || e.domid != mapper {
                return Err(GrantStatus::PermissionDenied);
            }
            if !readonly && e.flags & gtf::READONLY != 0 {
                return Err(GrantStatus::PermissionDenied);
            }
            let new = e.flags | gtf::READING | if readonly { 0 } else { gtf::WRITING };
            if mem.swap_flags(granter, gref, e, new) {
                break e;
            }
        };
        let pins = self.pins.entry((granter, gref)).or_default();
        pins.readers += 1;
        if !readonly {
            pins.writers += 1;
        }
        let mapping = Mapping {
            granter,
            gref,
            frame: entry.frame as u64,
            at,
            writable: !readonly,
        };
        let d = self
            .domains
            .get_mut(&mapper)
            .ok_or(GrantStatus::BadDomain)?;
        if slot == d.maptrack.len() {
            d.maptrack.push(Some(mapping));
        } else {
            d.maptrack[slot] = Some(mapping);
        }
        Ok((slot as Handle, mapping))
    }

    /// `GNTTABOP_unmap_grant_ref`: `at`, when given, must be where the
    /// handle was mapped.
    pub fn unmap(
        &mut self,
        mapper: DomId,
        handle: Handle,
        at: Option<u64>,
        mem: &impl GrantMemory,
    ) -> Result<Mapping, GrantStatus> {
        let d = self
            .domains
            .get_mut(&mapper)
            .ok_or(GrantStatus::BadDomain)?;
        let slot = d
            .maptrack
            .get_mut(handle as usize)
            .ok_or(GrantStatus::BadHandle)?;
        let mapping = slot.ok_or(GrantStatus::BadHandle)?;
        if at.is_some_and(|a| a != mapping.at) {
            return Err(GrantStatus::BadVirtAddr);
        }
        *slot = None;
        let key = (mapping.granter, mapping.gref);
        let pins = self.pins.entry(key).or_default();
        pins.readers = pins.readers.saturating_sub(1);
        if mapping.writable {
            pins.writers = pins.writers.saturating_sub(1);
        }
        let (readers, writers) = (pins.readers, pins.writers);
        if readers == 0 {
            self.pins.remove(&key);
        }
        let mut clear = 0;
        if writers == 0 {
            clear |= gtf::WRITING;
        }
        if readers == 0 {
            clear |= gtf::READING;
        }
        // The granter may have rewritten its entry meanwhile; keep trying
        // on what is there (the bits are ours to clear).
        for _ in 0..64 {
            match mem.entry(mapping.granter, mapping.gref) {
                Some(e) if mem.swap_flags(mapping.granter, mapping.gref, e, e.flags & !clear) => {
                    break;
                }
                Some(_) => continue,
                None => break,
            }
        }
        Ok(mapping)
    }

    fn resolve_side(
        &self,
        caller: DomId,
        side: CopySide,
        write: bool,
        mem: &impl GrantMemory,
    ) -> Result<(DomId, u64), GrantStatus> {
        match side {
            CopySide::Own { gfn } => Ok((caller, gfn)),
            CopySide::Gref { domain, gref } => {
                // A domain may copy through a grant it made to itself.
                let frames = self
                    .domains
                    .get(&domain)
                    .ok_or(GrantStatus::BadDomain)?
                    .frames;
                if gref >= frames * ENTRIES_PER_FRAME {
                    return Err(GrantStatus::BadGntref);
                }
                let e = mem.entry(domain, gref).ok_or(GrantStatus::BadGntref)?;
                if e.flags & gtf::TYPE_MASK != gtf::PERMIT_ACCESS || e.domid != caller {
                    return Err(GrantStatus::PermissionDenied);
                }
                if write && e.flags & gtf::READONLY != 0 {
                    return Err(GrantStatus::PermissionDenied);
                }
                Ok((domain, e.frame as u64))
            }
        }
    }

    /// One `GNTTABOP_copy` element of nonzero length, checked in Xen's
    /// order (`gnttab_copy_one`): the source side (its grant, then its
    /// frame: `frame(domain, gfn)`, `None` for an unbacked one is
    /// GNTST_bad_page), then the destination likewise, then the byte
    /// range (GNTST_bad_copy_arg past a page).
    pub fn copy<F>(
        &self,
        caller: DomId,
        op: &CopyOp,
        mem: &impl GrantMemory,
        frame: impl Fn(DomId, u64) -> Option<F>,
    ) -> Result<ResolvedCopy<F>, GrantStatus> {
        const PAGE: u32 = 4096;
        let side = |s: CopySide, write: bool| {
            let (dom, gfn) = self.resolve_side(caller, s, write, mem)?;
            frame(dom, gfn).ok_or(GrantStatus::BadPage)
        };
        let source = side(op.source, false)?;
        let dest = side(op.dest, true)?;
        let len = op.len as u32;
        if op.source_offset as u32 + len > PAGE || op.dest_offset as u32 + len > PAGE {
            return Err(GrantStatus::BadCopyArg);
        }
        Ok(ResolvedCopy { source, dest })
    }

    /// Active mappings of one entry (readers, writers), for tests and status.
    pub fn pins(&self, granter: DomId, gref: GrantRef) -> (u32, u32) {
        self.pins
            .get(&(granter, gref))
            .map_or((0, 0), |p| (p.readers, p.writers))
    }
}

#[cfg(test)]
mod tests;
