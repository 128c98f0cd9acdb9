//! Grant tables v1 (grant_table.h): operations, flags, status codes and
//! the per-operation argument layouts.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const GNTTABOP_MAP_GRANT_REF: u64 = 0;
pub const GNTTABOP_UNMAP_GRANT_REF: u64 = 1;
pub const GNTTABOP_SETUP_TABLE: u64 = 2;
pub const GNTTABOP_COPY: u64 = 5;
pub const GNTTABOP_QUERY_SIZE: u64 = 6;
pub const GNTTABOP_SET_VERSION: u64 = 8;

pub const GTF_PERMIT_ACCESS: u16 = 1;
pub const GTF_TYPE_MASK: u16 = 3;
pub const GTF_READONLY: u16 = 1 << 2;
pub const GTF_READING: u16 = 1 << 3;
pub const GTF_WRITING: u16 = 1 << 4;

pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
pub const GNTMAP_READONLY: u32 = 1 << 2;
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;

pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// Entries per 4 KiB frame of a v1 table (8-byte entries).
pub const ENTRIES_PER_FRAME: u32 = 512;

/// `GNTST_*` status codes.
pub mod status {
    pub const OKAY: i16 = 0;
    pub const GENERAL_ERROR: i16 = -1;
    pub const BAD_DOMAIN: i16 = -2;
    pub const BAD_GNTREF: i16 = -3;
    pub const BAD_HANDLE: i16 = -4;
    pub const BAD_VIRT_ADDR: i16 = -5;
    pub const NO_DEVICE_SPACE: i16 = -7;
    pub const PERMISSION_DENIED: i16 = -8;
    pub const BAD_PAGE: i16 = -9;
    pub const BAD_COPY_ARG: i16 = -10;
}

/// `struct gnttab_map_grant_ref`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct MapGrantRef {
    pub host_addr: u64,
    pub flags: u32,
    pub gref: u32,
    pub dom: u16,
    pub status: i16,
    pub handle: u32,
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct UnmapGrantRef {
    pub host_addr: u64,
    pub dev_bus_addr: u64,
    pub handle: u32,
    pub status: i16,
    pub pad: u16,
}

/// One side of `struct gnttab_copy`: a grant ref or a gfn (`u`), by the
/// element's GNTCOPY flags.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CopyPtr {
    pub u: u64,
    pub domid: u16,
    pub offset: u16,
    pub pad: u32,
}

/// `struct gnttab_copy`.
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Copy {
    pub source: CopyPtr,
    pub dest: CopyPtr,
    pub len: u16,
    pub flags: u16,
    pub status: i16,
    pub pad: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts() {
        assert_eq!(size_of::<MapGrantRef>(), 32);
        assert_eq!(offset_of!(MapGrantRef, flags), 8);
        assert_eq!(offset_of!(MapGrantRef, gref), 12);
        assert_eq!(offset_of!(MapGrantRef, dom), 16);
        assert_eq!(offset_of!(MapGrantRef, status), 18);
        assert_eq!(offset_of!(MapGrantRef, handle), 20);
        assert_eq!(offset_of!(MapGrantRef, dev_bus_addr), 24);
        assert_eq!(size_of::<UnmapGrantRef>(), 24);
        assert_eq!(offset_of!(UnmapGrantRef, handle), 16);
        assert_eq!(offset_of!(UnmapGrantRef, status), 20);
        assert_eq!(size_of::<CopyPtr>(), 16);
        assert_eq!(offset_of!(CopyPtr, domid), 8);
        assert_eq!(offset_of!(CopyPtr, offset), 10);
        assert_eq!(size_of::<Copy>(), 40);
        assert_eq!(offset_of!(Copy, dest), 16);
        assert_eq!(offset_of!(Copy, len), 32);
        assert_eq!(offset_of!(Copy, flags), 34);
        assert_eq!(offset_of!(Copy, status), 36);
    }
}
