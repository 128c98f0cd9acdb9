//! `memory_op` (memory.h): sub-ops and the add_to_physmap arguments.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
pub const XENMEM_MEMORY_MAP: u64 = 9;
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u64 = 23;

pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
pub const XENMAPSPACE_GMFN_FOREIGN: u16 = 4;

/// `struct xen_add_to_physmap` (64-bit layout).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct AddToPhysmap {
    pub domid: u16,
    pub size: u16,
    pub space: u32,
    pub idx: u64,
    pub gpfn: u64,
}

/// `struct xen_add_to_physmap_batch` (64-bit layout).
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct AddToPhysmapBatch {
    pub domid: u16,
    pub space: u16,
    pub size: u16,
    pub foreign_domid: u16,
    pub idxs: u64,
    pub gpfns: u64,
    pub errs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts() {
        assert_eq!(size_of::<AddToPhysmap>(), 24);
        assert_eq!(offset_of!(AddToPhysmap, space), 4);
        assert_eq!(offset_of!(AddToPhysmap, idx), 8);
        assert_eq!(offset_of!(AddToPhysmap, gpfn), 16);
        assert_eq!(size_of::<AddToPhysmapBatch>(), 32);
        assert_eq!(offset_of!(AddToPhysmapBatch, foreign_domid), 6);
        assert_eq!(offset_of!(AddToPhysmapBatch, idxs), 8);
        assert_eq!(offset_of!(AddToPhysmapBatch, errs), 24);
    }
}
