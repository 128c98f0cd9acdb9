//! The block device protocol of io/blkif.h: request and response layouts
//! on the shared ring, operation numbers, status codes, `info` flags.
//!
//! Every entry of a blkif ring is the union of a request (112 bytes on
//! x86_64) and a response (16 bytes), so a ring of `2^order` pages holds
//! [`ring_entries`] slots. Linux's headers pack these structs with
//! explicit pads that give the same offsets as Xen's natural layout; the
//! Rust types name those pads.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::grant_table::GrantRef;

/// Sector size every blkif sector number and count is in, whatever the
/// backing device's `sector-size`.
pub const SECTOR_SIZE: u64 = 512;
/// Sectors in one granted page (a segment covers `first_sect..=last_sect`).
pub const SECTORS_PER_PAGE: u8 = (crate::PAGE_SIZE as u64 / SECTOR_SIZE) as u8;

pub const BLKIF_OP_READ: u8 = 0;
pub const BLKIF_OP_WRITE: u8 = 1;
pub const BLKIF_OP_WRITE_BARRIER: u8 = 2;
pub const BLKIF_OP_FLUSH_DISKCACHE: u8 = 3;
pub const BLKIF_OP_RESERVED_1: u8 = 4;
pub const BLKIF_OP_DISCARD: u8 = 5;
pub const BLKIF_OP_INDIRECT: u8 = 6;

/// Segments a direct read/write request carries.
pub const BLKIF_MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// Indirect pages an indirect request names.
pub const BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST: usize = 8;
/// Segment descriptors in one indirect page.
pub const SEGS_PER_INDIRECT_FRAME: usize = crate::PAGE_SIZE / size_of::<RequestSegment>();

pub const BLKIF_RSP_EOPNOTSUPP: i16 = -2;
pub const BLKIF_RSP_ERROR: i16 = -1;
pub const BLKIF_RSP_OKAY: i16 = 0;

/// `blkif_request_discard.flag`: the discarded data must be erased.
pub const BLKIF_DISCARD_SECURE: u8 = 1;

/// Backend `info` bits.
pub const VDISK_CDROM: u32 = 1;
pub const VDISK_REMOVABLE: u32 = 2;
pub const VDISK_READONLY: u32 = 4;

/// `blkif_vdev_t`.
pub type BlkifVdev = u16;

/// `struct blkif_request_segment`: sectors `first_sect..=last_sect` of the
/// page granted as `gref`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RequestSegment {
    pub gref: GrantRef,
    pub first_sect: u8,
    pub last_sect: u8,
    pub pad: [u8; 2],
}

/// `struct blkif_request` (read, write, barrier, flush).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Request {
    pub operation: u8,
    pub nr_segments: u8,
    pub handle: BlkifVdev,
    pub pad: u32,
    pub id: u64,
    pub sector_number: u64,
    pub seg: [RequestSegment; BLKIF_MAX_SEGMENTS_PER_REQUEST],
}

/// `struct blkif_request_discard`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RequestDiscard {
    pub operation: u8,
    pub flag: u8,
    pub handle: BlkifVdev,
    pub pad: u32,
    pub id: u64,
    pub sector_number: u64,
    pub nr_sectors: u64,
}

/// `struct blkif_request_indirect`: the segments are in the pages granted
/// as `indirect_grefs`, [`SEGS_PER_INDIRECT_FRAME`] per page.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RequestIndirect {
    pub operation: u8,
    pub indirect_op: u8,
    pub nr_segments: u16,
    pub pad1: u32,
    pub id: u64,
    pub sector_number: u64,
    pub handle: BlkifVdev,
    pub pad2: u16,
    pub indirect_grefs: [GrantRef; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST],
    pub pad3: u32,
}

/// `struct blkif_response`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Response {
    pub id: u64,
    pub operation: u8,
    pub pad1: u8,
    pub status: i16,
    pub pad2: u32,
}

/// Bytes of one ring slot: `union blkif_sring_entry`.
pub const ENTRY_SIZE: usize = size_of::<Request>();

/// The largest `ring-page-order` the protocol allows
/// (`XENBUS_MAX_RING_GRANT_ORDER` in Linux).
pub const MAX_RING_PAGE_ORDER: u32 = 4;

/// Slots of a blkif ring of `2^order` pages (32 for one page).
pub const fn ring_entries(order: u32) -> u32 {
    crate::ring::ring_size(crate::PAGE_SIZE << order, ENTRY_SIZE)
}

/// `protocol` node value of the x86_64 ABI (the only one Pavise serves).
pub const PROTOCOL_X86_64: &str = "x86_64-abi";

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_blkif_h() {
        assert_eq!(size_of::<RequestSegment>(), 8);
        assert_eq!(offset_of!(RequestSegment, first_sect), 4);
        assert_eq!(offset_of!(RequestSegment, last_sect), 5);

        assert_eq!(size_of::<Request>(), 112);
        assert_eq!(offset_of!(Request, nr_segments), 1);
        assert_eq!(offset_of!(Request, handle), 2);
        assert_eq!(offset_of!(Request, id), 8);
        assert_eq!(offset_of!(Request, sector_number), 16);
        assert_eq!(offset_of!(Request, seg), 24);

        assert_eq!(size_of::<RequestDiscard>(), 32);
        assert_eq!(offset_of!(RequestDiscard, flag), 1);
        assert_eq!(offset_of!(RequestDiscard, id), 8);
        assert_eq!(offset_of!(RequestDiscard, sector_number), 16);
        assert_eq!(offset_of!(RequestDiscard, nr_sectors), 24);

        assert_eq!(size_of::<RequestIndirect>(), 64);
        assert_eq!(offset_of!(RequestIndirect, indirect_op), 1);
        assert_eq!(offset_of!(RequestIndirect, nr_segments), 2);
        assert_eq!(offset_of!(RequestIndirect, id), 8);
        assert_eq!(offset_of!(RequestIndirect, sector_number), 16);
        assert_eq!(offset_of!(RequestIndirect, handle), 24);
        assert_eq!(offset_of!(RequestIndirect, indirect_grefs), 28);

        assert_eq!(size_of::<Response>(), 16);
        assert_eq!(offset_of!(Response, operation), 8);
        assert_eq!(offset_of!(Response, status), 10);
    }

    #[test]
    fn ring_sizes_match_linux() {
        // Linux: BLK_RING_SIZE(info) = __CONST_RING_SIZE(blkif, PAGE_SIZE * nr_pages).
        assert_eq!(ring_entries(0), 32);
        assert_eq!(ring_entries(1), 64);
        assert_eq!(ring_entries(4), 512);
        assert_eq!(SEGS_PER_INDIRECT_FRAME, 512);
        assert_eq!(SECTORS_PER_PAGE, 8);
    }
}
