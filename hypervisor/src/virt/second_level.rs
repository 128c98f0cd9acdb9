//! Second-level paging of one domain (guest-physical → host-physical):
//! AMD's nested page tables or Intel's EPT. Both are four-level radix
//! trees of the same shape; only the meaning of an entry's low bits
//! differs, so one walker (`mm::paging`) builds both with the backend's
//! entry bits.

use x86_64::structures::paging::PageTableFlags as Flags;

use super::{Backend, VirtError};
use crate::mm::frame::{FRAME_SIZE, Frame};
use crate::mm::paging;

/// The entry bits one backend's tables use.
struct Entries {
    /// An intermediate table.
    table: Flags,
    /// Guest RAM, readable and writable.
    ram: Flags,
    /// Guest RAM, read-only (a read-only grant mapping).
    ram_readonly: Flags,
    /// A device page: uncached, whatever the guest's PAT says.
    mmio: Flags,
}

/// AMD nested paging: ordinary page-table entries, with the user bit on
/// every level (nested walks are user accesses); PCD|PWT pick the host
/// PAT's uncacheable entry, which wins over the guest's type.
const NPT: Entries = Entries {
    table: Flags::PRESENT
        .union(Flags::WRITABLE)
        .union(Flags::USER_ACCESSIBLE),
    ram: Flags::PRESENT
        .union(Flags::WRITABLE)
        .union(Flags::USER_ACCESSIBLE),
    ram_readonly: Flags::PRESENT.union(Flags::USER_ACCESSIBLE),
    mmio: Flags::PRESENT
        .union(Flags::WRITABLE)
        .union(Flags::USER_ACCESSIBLE)
        .union(Flags::NO_CACHE)
        .union(Flags::WRITE_THROUGH),
};

/// EPT entry bits (Intel SDM vol. 3, 29.3.2).
mod ept {
    pub const READ: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    pub const EXECUTE: u64 = 1 << 2;
    /// Memory type of a leaf, bits 3-5.
    pub const TYPE_WB: u64 = 6 << 3;
    pub const TYPE_UC: u64 = 0;
    /// The leaf's type replaces the guest's PAT type.
    pub const IGNORE_PAT: u64 = 1 << 6;
}

/// Intel EPT: read/write/execute permissions instead of present/user, and
/// the memory type in the leaf (write-back RAM combined with the guest's
/// PAT, as NPT does; device pages uncached regardless of it).
const EPT: Entries = Entries {
    table: Flags::from_bits_retain(ept::READ | ept::WRITE | ept::EXECUTE),
    ram: Flags::from_bits_retain(ept::READ | ept::WRITE | ept::EXECUTE | ept::TYPE_WB),
    ram_readonly: Flags::from_bits_retain(ept::READ | ept::EXECUTE | ept::TYPE_WB),
    mmio: Flags::from_bits_retain(
        ept::READ | ept::WRITE | ept::EXECUTE | ept::TYPE_UC | ept::IGNORE_PAT,
    ),
};

/// One domain's second-level tables.
pub struct SecondLevelPaging {
    root: u64,
    entries: &'static Entries,
}

impl SecondLevelPaging {
    pub fn new() -> Result<Self, VirtError> {
        let entries = match super::backend()? {
            Backend::Svm => &NPT,
            Backend::Vmx => &EPT,
        };
        Ok(Self {
            root: paging::alloc_table().map_err(|_| VirtError::OutOfMemory)?,
            entries,
        })
    }

    pub fn map(&mut self, gpa: u64, frame: Frame) -> Result<(), VirtError> {
        let e = self.entries;
        paging::map_with(self.root, gpa, frame.start(), FRAME_SIZE, e.ram, e.table)
            .map_err(|_| VirtError::OutOfMemory)
    }

    /// Maps device memory (a BAR page) uncached.
    pub fn map_mmio(&mut self, gpa: u64, hpa: u64) -> Result<(), VirtError> {
        let e = self.entries;
        paging::map_with(self.root, gpa, hpa, FRAME_SIZE, e.mmio, e.table)
            .map_err(|_| VirtError::OutOfMemory)
    }

    /// Re-points an already mapped page (e.g. the shared-info page).
    pub fn remap(&mut self, gpa: u64, frame: Frame) -> bool {
        paging::set_leaf(self.root, gpa, Some(frame.start()), self.entries.ram)
    }

    /// Like [`remap`](Self::remap) but read-only for the guest (a
    /// read-only grant mapping).
    pub fn remap_readonly(&mut self, gpa: u64, frame: Frame) -> bool {
        paging::set_leaf(
            self.root,
            gpa,
            Some(frame.start()),
            self.entries.ram_readonly,
        )
    }

    pub fn unmap(&mut self, gpa: u64) -> bool {
        paging::set_leaf(self.root, gpa, None, Flags::empty())
    }

    pub fn root(&self) -> u64 {
        self.root
    }
}

impl Drop for SecondLevelPaging {
    fn drop(&mut self) {
        paging::free_tables(self.root);
    }
}
