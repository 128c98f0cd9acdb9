//! The VT-d unit's registers and the set-up sequence (invalidate, set
//! the root table, enable translation).

use alloc::vec::Vec;
use core::fmt;

use crate::acpi::Drhd;
use crate::mm::frame::Frame;
use crate::mm::guest::HostMemory;

use super::tables::{ContextEntry, Levels, MapError, RootEntry, SecondLevel};

/// Register offsets (VT-d spec, chapter 11).
mod reg {
    pub const CAP: u64 = 0x08;
    pub const ECAP: u64 = 0x10;
    pub const GCMD: u64 = 0x18;
    pub const GSTS: u64 = 0x1c;
    pub const RTADDR: u64 = 0x20;
    pub const CCMD: u64 = 0x28;
    pub const FSTS: u64 = 0x34;
}

/// Global command / status bits.
const GCMD_TE: u32 = 1 << 31;
const GCMD_SRTP: u32 = 1 << 30;
/// Context-command: invalidate, global granularity.
const CCMD_ICC: u64 = 1 << 63;
const CCMD_GLOBAL: u64 = 1 << 61;
/// IOTLB invalidate: invalidate, global granularity, drain reads/writes.
const IOTLB_IVT: u64 = 1 << 63;
const IOTLB_GLOBAL: u64 = 1 << 60;
const IOTLB_DR: u64 = 1 << 49;
const IOTLB_DW: u64 = 1 << 48;
/// Fault status: primary pending fault, primary fault overflow.
const FSTS_PPF: u32 = 1 << 1;
const FSTS_PFO: u32 = 1 << 0;
/// Fault recording register, high half: fault, type (1 = read).
const FRCD_F: u64 = 1 << 63;
const FRCD_T: u64 = 1 << 62;
/// Remapping domain id of Dom0's devices.
const DOM0_DID: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IommuError {
    NoUsableLevels,
    AddressTooHigh,
    RegistersAbove4G,
    OutOfMemory,
    Timeout(&'static str),
}

impl fmt::Display for IommuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoUsableLevels => write!(f, "it supports neither 3- nor 4-level tables"),
            Self::AddressTooHigh => write!(f, "Dom0 has memory beyond what its tables translate"),
            Self::RegistersAbove4G => write!(f, "its registers are above 4 GiB"),
            Self::OutOfMemory => write!(f, "no memory for its tables"),
            Self::Timeout(what) => write!(f, "it did not complete {what}"),
        }
    }
}

/// One remapping unit's registers (below 4 GiB: identity-mapped uncached).
struct Unit {
    base: u64,
}

impl Unit {
    fn read32(&self, off: u64) -> u32 {
        // SAFETY: the unit's register page from the DMAR table, identity
        // mapped uncached; offsets are registers of the VT-d layout.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u32) }
    }
    fn write32(&self, off: u64, v: u32) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u32, v) }
    }
    fn read64(&self, off: u64) -> u64 {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u64) }
    }
    fn write64(&self, off: u64, v: u64) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u64, v) }
    }

    fn wait(&self, what: &'static str, done: impl Fn(&Self) -> bool) -> Result<(), IommuError> {
        for _ in 0..10_000_000 {
            if done(self) {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        Err(IommuError::Timeout(what))
    }

    /// Offset of the IOTLB invalidate register (ECAP.IRO * 16 + 8).
    fn iotlb(&self) -> u64 {
        ((self.read64(reg::ECAP) >> 8) & 0x3ff) * 16 + 8
    }
}

/// What `protect` set up.
pub struct Protected {
    pub base: u64,
    pub pages: usize,
    pub levels: u32,
}

fn zeroed_frame() -> Result<Frame, IommuError> {
    let frame = crate::mm::frames().alloc().ok_or(IommuError::OutOfMemory)?;
    crate::mm::IdentityMap.write(frame, 0, &[0u8; 4096]);
    Ok(frame)
}

/// Puts every function on `buses` behind `unit` in one domain mapping
/// `pages` (guest frame → host frame) and turns translation on.
pub fn protect(
    unit: &Drhd,
    buses: &[u8],
    pages: impl Iterator<Item = (u64, Frame)>,
) -> Result<Protected, IommuError> {
    if unit.register_base == 0 || unit.register_base >= 1 << 32 {
        return Err(IommuError::RegistersAbove4G);
    }
    let hw = Unit {
        base: unit.register_base,
    };
    let cap = hw.read64(reg::CAP);
    let levels = Levels::from_sagaw(((cap >> 8) & 0x1f) as u8).ok_or(IommuError::NoUsableLevels)?;

    // Second-level tables: guest-physical → host-physical.
    let mut table = SecondLevel::new(levels, zeroed_frame)?;
    let mut count = 0;
    for (gfn, frame) in pages {
        table
            .map(gfn << 12, frame.start(), zeroed_frame)
            .map_err(|e| match e {
                MapError::Alloc(e) => e,
                MapError::BadAddress => IommuError::AddressTooHigh,
            })?;
        count += 1;
    }
    for (addr, bytes) in table.tables() {
        crate::mm::IdentityMap.write(Frame::containing(addr), 0, &bytes);
    }

    // Root and context tables: each bus's context table points every
    // devfn at the same second-level root.
    let root = zeroed_frame()?;
    let context = ContextEntry::new(table.root().start(), levels, DOM0_DID);
    let mut buses: Vec<u8> = buses.to_vec();
    buses.sort_unstable();
    buses.dedup();
    for &bus in &buses {
        let ctx = zeroed_frame()?;
        let mut page = [0u8; 4096];
        for devfn in 0..256 {
            page[devfn * 16..devfn * 16 + 16].copy_from_slice(&context.bytes());
        }
        crate::mm::IdentityMap.write(ctx, 0, &page);
        let entry = RootEntry::new(ctx.start());
        crate::mm::IdentityMap.write(root, bus as usize * 16, &entry.bytes());
    }

    hw.write64(reg::RTADDR, root.start());
    hw.write32(reg::GCMD, GCMD_SRTP);
    hw.wait("setting the root table", |u| {
        u.read32(reg::GSTS) & GCMD_SRTP != 0
    })?;
    hw.write64(reg::CCMD, CCMD_ICC | CCMD_GLOBAL);
    hw.wait("invalidating its context cache", |u| {
        u.read64(reg::CCMD) & CCMD_ICC == 0
    })?;
    let iotlb = hw.iotlb();
    hw.write64(iotlb, IOTLB_IVT | IOTLB_GLOBAL | IOTLB_DR | IOTLB_DW);
    hw.wait("invalidating its IOTLB", |u| {
        u.read64(iotlb) & IOTLB_IVT == 0
    })?;
    hw.write32(reg::GCMD, GCMD_TE);
    hw.wait("enabling translation", |u| {
        u.read32(reg::GSTS) & GCMD_TE != 0
    })?;
    Ok(Protected {
        base: unit.register_base,
        pages: count,
        levels: levels.count(),
    })
}

/// A DMA the IOMMU blocked: the requester (bus << 8 | devfn) and the
/// page it tried to reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub source: u16,
    pub address: u64,
    pub write: bool,
}

/// Takes the unit's first recorded fault, if any (and clears it, so the
/// next one is recorded).
pub fn take_fault(base: u64) -> Option<Fault> {
    let hw = Unit { base };
    if hw.read32(reg::FSTS) & FSTS_PPF == 0 {
        return None;
    }
    let cap = hw.read64(reg::CAP);
    let records = ((cap >> 40) & 0xff) + 1;
    let first = ((cap >> 24) & 0x3ff) * 16;
    for i in 0..records {
        let at = first + i * 16;
        let hi = hw.read64(at + 8);
        if hi & FRCD_F == 0 {
            continue;
        }
        let lo = hw.read64(at);
        hw.write64(at + 8, FRCD_F);
        hw.write32(reg::FSTS, FSTS_PFO);
        return Some(Fault {
            source: hi as u16,
            address: lo & !0xfff,
            // FRCD.T: 0 = write request.
            write: hi & FRCD_T == 0,
        });
    }
    None
}
