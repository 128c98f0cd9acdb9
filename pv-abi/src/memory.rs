//! memory_op (memory.h): sub-op numbers (`XENMEM_*`), map spaces
//! (`XENMAPSPACE_*`) and the argument structs a PVH guest and Dom0 use.
//! memory_op(cmd, arg); only the low [`MEMOP_CMD_MASK`] bits of `cmd` name
//! the sub-op, the rest carry a continuation's start extent.
//!
//! Every guest-handle field is a 64-bit guest virtual address. Sub-op
//! numbers are `u64` because they travel in a register.

use crate::hypercall::DomId;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Bits of memory_op's `cmd` that name the sub-op (`MEMOP_CMD_MASK`,
/// from Xen's internal xen/hypercall.h: Xen ignores the bits above).
pub const MEMOP_CMD_MASK: u64 = 0x3f;
/// Shift of the continuation's start extent within `cmd`
/// (`MEMOP_EXTENT_SHIFT`, same source).
pub const MEMOP_EXTENT_SHIFT: u32 = 6;

pub const XENMEM_INCREASE_RESERVATION: u64 = 0;
pub const XENMEM_DECREASE_RESERVATION: u64 = 1;
pub const XENMEM_MAXIMUM_RAM_PAGE: u64 = 2;
pub const XENMEM_CURRENT_RESERVATION: u64 = 3;
pub const XENMEM_MAXIMUM_RESERVATION: u64 = 4;
pub const XENMEM_MACHPHYS_MFN_LIST: u64 = 5;
pub const XENMEM_POPULATE_PHYSMAP: u64 = 6;
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
pub const XENMEM_MEMORY_MAP: u64 = 9;
pub const XENMEM_MACHINE_MEMORY_MAP: u64 = 10;
pub const XENMEM_EXCHANGE: u64 = 11;
pub const XENMEM_MACHPHYS_MAPPING: u64 = 12;
pub const XENMEM_SET_MEMORY_MAP: u64 = 13;
pub const XENMEM_MAXIMUM_GPFN: u64 = 14;
pub const XENMEM_REMOVE_FROM_PHYSMAP: u64 = 15;
pub const XENMEM_SET_POD_TARGET: u64 = 16;
pub const XENMEM_GET_POD_TARGET: u64 = 17;
pub const XENMEM_GET_SHARING_FREED_PAGES: u64 = 18;
pub const XENMEM_GET_SHARING_SHARED_PAGES: u64 = 19;
pub const XENMEM_PAGING_OP: u64 = 20;
pub const XENMEM_ACCESS_OP: u64 = 21;
pub const XENMEM_SHARING_OP: u64 = 22;
pub const XENMEM_ADD_TO_PHYSMAP_BATCH: u64 = 23;
pub const XENMEM_CLAIM_PAGES: u64 = 24;
pub const XENMEM_MACHPHYS_COMPAT_MFN_LIST: u64 = 25;
pub const XENMEM_GET_VNUMAINFO: u64 = 26;
pub const XENMEM_RESERVED_DEVICE_MEMORY_MAP: u64 = 27;
pub const XENMEM_ACQUIRE_RESOURCE: u64 = 28;

/// `XENMEMF_populate_on_demand` (in [`MemoryReservation::mem_flags`]).
pub const XENMEMF_POPULATE_ON_DEMAND: u32 = 1 << 16;
/// `XENMEMF_exact_node_request`.
pub const XENMEMF_EXACT_NODE_REQUEST: u32 = 1 << 17;
/// `XENMEMF_vnode`.
pub const XENMEMF_VNODE: u32 = 1 << 18;

/// `XENMEMF_get_address_bits`: the address-width limit in `mem_flags`
/// (0 = none).
pub const fn xenmemf_address_bits(mem_flags: u32) -> u32 {
    mem_flags & 0xff
}

/// The shared_info page (idx unused).
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// A grant table frame: idx = frame number, OR'd with
/// [`XENMAPIDX_GRANT_TABLE_STATUS`] for a v2 status frame.
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// One of the caller's own GFNs (moved to `gpfn`).
pub const XENMAPSPACE_GMFN: u32 = 2;
/// A range of `size` GFNs (add_to_physmap only).
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// A GFN of another domain (add_to_physmap_batch only, whose `space`
/// field is 16 bits: hence the type).
pub const XENMAPSPACE_GMFN_FOREIGN: u16 = 4;
/// Device MMIO (Arm only).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;

/// Set in `idx` of XENMAPSPACE_grant_table to ask for a status frame.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// `struct xen_memory_reservation` (increase/decrease_reservation,
/// populate_physmap).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MemoryReservation {
    /// Guest handle: array of `xen_pfn_t` (in and/or out).
    pub extent_start: u64,
    pub nr_extents: u64,
    /// Each extent is `2^extent_order` pages.
    pub extent_order: u32,
    /// `XENMEMF_*`.
    pub mem_flags: u32,
    pub domid: DomId,
    pub pad: [u16; 3],
}

/// `struct xen_add_to_physmap`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct AddToPhysmap {
    pub domid: DomId,
    /// Pages to go through for XENMAPSPACE_gmfn_range.
    pub size: u16,
    /// `XENMAPSPACE_*`.
    pub space: u32,
    /// Index into the space.
    pub idx: u64,
    /// Where the page should appear in `domid`'s physmap.
    pub gpfn: u64,
}

/// `struct xen_add_to_physmap_batch`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct AddToPhysmapBatch {
    pub domid: DomId,
    /// `XENMAPSPACE_*`.
    pub space: u16,
    pub size: u16,
    /// `u.foreign_domid` for XENMAPSPACE_gmfn_foreign, else 0 (`u.res0`).
    pub foreign_domid: DomId,
    /// Guest handle: `xen_ulong_t[size]`.
    pub idxs: u64,
    /// Guest handle: `xen_pfn_t[size]`.
    pub gpfns: u64,
    /// Guest handle: `int[size]`, per-page errors (out).
    pub errs: u64,
}

/// `struct xen_remove_from_physmap`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RemoveFromPhysmap {
    pub domid: DomId,
    pub pad: [u16; 3],
    pub gpfn: u64,
}

/// `struct xen_memory_map` (XENMEM_memory_map, machine_memory_map).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MemoryMap {
    /// In: capacity of `buffer` in entries; out: entries written.
    pub nr_entries: u32,
    pub pad: u32,
    /// Guest handle: E820-format entries (20 bytes each: addr u64,
    /// size u64, type u32).
    pub buffer: u64,
}

/// Size of one E820 entry in a [`MemoryMap`] buffer (packed, unlike
/// [`crate::start_info::MemmapTableEntry`]).
pub const E820_ENTRY_SIZE: usize = 20;

/// `struct xen_foreign_memory_map` (XENMEM_set_memory_map).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ForeignMemoryMap {
    pub domid: DomId,
    pub pad: [u16; 3],
    pub map: MemoryMap,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn numbers() {
        assert_eq!(XENMEM_INCREASE_RESERVATION, 0);
        assert_eq!(XENMEM_DECREASE_RESERVATION, 1);
        assert_eq!(XENMEM_POPULATE_PHYSMAP, 6);
        assert_eq!(XENMEM_ADD_TO_PHYSMAP, 7);
        assert_eq!(XENMEM_MEMORY_MAP, 9);
        assert_eq!(XENMEM_REMOVE_FROM_PHYSMAP, 15);
        assert_eq!(XENMEM_ADD_TO_PHYSMAP_BATCH, 23);
        assert_eq!(XENMEM_ACQUIRE_RESOURCE, 28);
        assert_eq!(XENMAPSPACE_SHARED_INFO, 0);
        assert_eq!(XENMAPSPACE_GRANT_TABLE, 1);
        assert_eq!(XENMAPSPACE_GMFN_FOREIGN, 4);
        assert_eq!(
            XENMEM_ACQUIRE_RESOURCE & MEMOP_CMD_MASK,
            XENMEM_ACQUIRE_RESOURCE
        );
        assert_eq!(
            (5 << MEMOP_EXTENT_SHIFT | XENMEM_POPULATE_PHYSMAP) & MEMOP_CMD_MASK,
            6
        );
        assert_eq!(xenmemf_address_bits(XENMEMF_POPULATE_ON_DEMAND | 32), 32);
    }

    #[test]
    fn layouts() {
        assert_eq!(size_of::<MemoryReservation>(), 32);
        assert_eq!(offset_of!(MemoryReservation, nr_extents), 8);
        assert_eq!(offset_of!(MemoryReservation, extent_order), 16);
        assert_eq!(offset_of!(MemoryReservation, mem_flags), 20);
        assert_eq!(offset_of!(MemoryReservation, domid), 24);
        assert_eq!(size_of::<AddToPhysmap>(), 24);
        assert_eq!(offset_of!(AddToPhysmap, size), 2);
        assert_eq!(offset_of!(AddToPhysmap, space), 4);
        assert_eq!(offset_of!(AddToPhysmap, idx), 8);
        assert_eq!(offset_of!(AddToPhysmap, gpfn), 16);
        assert_eq!(size_of::<AddToPhysmapBatch>(), 32);
        assert_eq!(offset_of!(AddToPhysmapBatch, space), 2);
        assert_eq!(offset_of!(AddToPhysmapBatch, size), 4);
        assert_eq!(offset_of!(AddToPhysmapBatch, foreign_domid), 6);
        assert_eq!(offset_of!(AddToPhysmapBatch, idxs), 8);
        assert_eq!(offset_of!(AddToPhysmapBatch, gpfns), 16);
        assert_eq!(offset_of!(AddToPhysmapBatch, errs), 24);
        assert_eq!(size_of::<RemoveFromPhysmap>(), 16);
        assert_eq!(offset_of!(RemoveFromPhysmap, gpfn), 8);
        assert_eq!(size_of::<MemoryMap>(), 16);
        assert_eq!(offset_of!(MemoryMap, buffer), 8);
        assert_eq!(size_of::<ForeignMemoryMap>(), 24);
        assert_eq!(offset_of!(ForeignMemoryMap, map), 8);
    }
}
