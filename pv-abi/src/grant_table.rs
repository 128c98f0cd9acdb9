//! Grant tables v1 (grant_table.h): the shared entry format a granting
//! domain writes, its `GTF_*` flags, grant_table_op(cmd, arg, count)
//! sub-ops with their per-element argument structs, `GNTMAP_*` and
//! `GNTCOPY_*` flags, and the `GNTST_*` per-element status codes.
//!
//! Per-element failures are reported in each element's `status`; the
//! hypercall itself fails only for a bad command or pointer.

use crate::hypercall::DomId;
use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `grant_ref_t`.
pub type GrantRef = u32;
/// `grant_handle_t`: names one mapping, returned by map_grant_ref.
pub type GrantHandle = u32;

/// Sub-op numbers (`GNTTABOP_*`), `u64` because they travel in a register.
pub const GNTTABOP_MAP_GRANT_REF: u64 = 0;
pub const GNTTABOP_UNMAP_GRANT_REF: u64 = 1;
pub const GNTTABOP_SETUP_TABLE: u64 = 2;
pub const GNTTABOP_DUMP_TABLE: u64 = 3;
pub const GNTTABOP_TRANSFER: u64 = 4;
pub const GNTTABOP_COPY: u64 = 5;
pub const GNTTABOP_QUERY_SIZE: u64 = 6;
pub const GNTTABOP_UNMAP_AND_REPLACE: u64 = 7;
pub const GNTTABOP_SET_VERSION: u64 = 8;
pub const GNTTABOP_GET_STATUS_FRAMES: u64 = 9;
pub const GNTTABOP_GET_VERSION: u64 = 10;
pub const GNTTABOP_SWAP_GRANT_REF: u64 = 11;
pub const GNTTABOP_CACHE_FLUSH: u64 = 12;

/// `struct grant_entry_v1`: one entry of the shared table, written by
/// the granting domain.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `GTF_*`: type in bits 1:0, flags above.
    pub flags: u16,
    /// The domain being granted access.
    pub domid: DomId,
    /// The granted frame (a GFN for auto-translated guests).
    pub frame: u32,
}

/// Entries per 4 KiB frame of a v1 table (8-byte entries).
pub const ENTRIES_PER_FRAME: u32 = (crate::PAGE_SIZE / core::mem::size_of::<GrantEntryV1>()) as u32;
/// `GNTTAB_NR_RESERVED_ENTRIES`: refs below this are kept for the
/// toolstack across table resets.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// `GNTTAB_RESERVED_CONSOLE`: the console ring's grant.
pub const GNTTAB_RESERVED_CONSOLE: GrantRef = 0;
/// `GNTTAB_RESERVED_XENSTORE`: the XenStore ring's grant.
pub const GNTTAB_RESERVED_XENSTORE: GrantRef = 1;

/// Entry type: not granted.
pub const GTF_INVALID: u16 = 0;
/// Entry type: `domid` may map or copy `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// Entry type: `domid` may transfer a frame into `frame`.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// Entry type: transitive grant (v2 only).
pub const GTF_TRANSITIVE: u16 = 3;
/// Bits of `flags` holding the entry type.
pub const GTF_TYPE_MASK: u16 = 3;
/// Access is read-only.
pub const GTF_READONLY: u16 = 1 << 2;
/// Set by the hypervisor while `domid` may read the frame.
pub const GTF_READING: u16 = 1 << 3;
/// Set by the hypervisor while `domid` may write the frame.
pub const GTF_WRITING: u16 = 1 << 4;
/// Cache attribute bits for the mapping.
pub const GTF_PWT: u16 = 1 << 5;
pub const GTF_PCD: u16 = 1 << 6;
pub const GTF_PAT: u16 = 1 << 7;
/// Sub-page grant (v2 only).
pub const GTF_SUB_PAGE: u16 = 1 << 8;
/// Accept-transfer entries: the transfer is committed (same bit as
/// [`GTF_READONLY`]).
pub const GTF_TRANSFER_COMMITTED: u16 = 1 << 2;
/// Accept-transfer entries: the transfer completed (same bit as
/// [`GTF_READING`]).
pub const GTF_TRANSFER_COMPLETED: u16 = 1 << 3;

bitflags! {
    /// [`GrantEntryV1::flags`] (permit-access entries). The two low bits
    /// are the entry type ([`GtfType`]), not independent flags.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct GtfFlags: u16 {
        const PERMIT_ACCESS = GTF_PERMIT_ACCESS;
        const ACCEPT_TRANSFER = GTF_ACCEPT_TRANSFER;
        const READONLY = GTF_READONLY;
        const READING = GTF_READING;
        const WRITING = GTF_WRITING;
        const PWT = GTF_PWT;
        const PCD = GTF_PCD;
        const PAT = GTF_PAT;
        const SUB_PAGE = GTF_SUB_PAGE;
    }
}

abi_enum! {
    /// The entry type in bits 1:0 of [`GrantEntryV1::flags`].
    pub enum GtfType: u16 {
        Invalid = 0,
        PermitAccess = 1,
        AcceptTransfer = 2,
        Transitive = 3,
    }
}

impl GtfType {
    /// The type of an entry's flags (total: two bits).
    pub const fn of(flags: u16) -> GtfType {
        match flags & GTF_TYPE_MASK {
            GTF_INVALID => GtfType::Invalid,
            GTF_PERMIT_ACCESS => GtfType::PermitAccess,
            GTF_ACCEPT_TRANSFER => GtfType::AcceptTransfer,
            _ => GtfType::Transitive,
        }
    }
}

/// Map for device (I/O MMU) access.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
/// Map for CPU access at `host_addr` (a GPA for auto-translated guests).
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// Map read-only.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// Host mapping usable by the current application too (PV).
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
/// `host_addr` is the machine address of a PTE to update (PV).
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;
/// Bits left for the guest's own use.
pub const GNTMAP_GUEST_AVAIL_MASK: u32 = !0 << 16;

bitflags! {
    /// [`GnttabMapGrantRef::flags`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct GntmapFlags: u32 {
        const DEVICE_MAP = GNTMAP_DEVICE_MAP;
        const HOST_MAP = GNTMAP_HOST_MAP;
        const READONLY = GNTMAP_READONLY;
        const APPLICATION_MAP = GNTMAP_APPLICATION_MAP;
        const CONTAINS_PTE = GNTMAP_CONTAINS_PTE;
    }
}

/// The copy source is a grant ref (else a GFN of the caller).
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// The copy destination is a grant ref (else a GFN of the caller).
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

bitflags! {
    /// [`GnttabCopy::flags`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct GntcopyFlags: u16 {
        const SOURCE_GREF = GNTCOPY_SOURCE_GREF;
        const DEST_GREF = GNTCOPY_DEST_GREF;
    }
}

/// `GNTST_*` status codes as `i16` constants (the `status` fields' type).
pub mod status {
    pub const OKAY: i16 = 0;
    pub const GENERAL_ERROR: i16 = -1;
    pub const BAD_DOMAIN: i16 = -2;
    pub const BAD_GNTREF: i16 = -3;
    pub const BAD_HANDLE: i16 = -4;
    pub const BAD_VIRT_ADDR: i16 = -5;
    pub const BAD_DEV_ADDR: i16 = -6;
    pub const NO_DEVICE_SPACE: i16 = -7;
    pub const PERMISSION_DENIED: i16 = -8;
    pub const BAD_PAGE: i16 = -9;
    pub const BAD_COPY_ARG: i16 = -10;
    pub const ADDRESS_TOO_BIG: i16 = -11;
    pub const EAGAIN: i16 = -12;
    pub const NO_SPACE: i16 = -13;
}

abi_enum! {
    /// `enum grant_status` (`GNTST_*`).
    pub enum GrantStatus: i16 {
        Okay = 0,
        GeneralError = -1,
        BadDomain = -2,
        BadGntref = -3,
        BadHandle = -4,
        BadVirtAddr = -5,
        BadDevAddr = -6,
        NoDeviceSpace = -7,
        PermissionDenied = -8,
        BadPage = -9,
        BadCopyArg = -10,
        AddressTooBig = -11,
        Eagain = -12,
        NoSpace = -13,
    }
}

impl GrantStatus {
    /// The header's message for this status (`GNTTABOP_error_msgs`).
    pub const fn message(self) -> &'static str {
        match self {
            GrantStatus::Okay => "okay",
            GrantStatus::GeneralError => "undefined error",
            GrantStatus::BadDomain => "unrecognised domain id",
            GrantStatus::BadGntref => "invalid grant reference",
            GrantStatus::BadHandle => "invalid mapping handle",
            GrantStatus::BadVirtAddr => "invalid virtual address",
            GrantStatus::BadDevAddr => "invalid device address",
            GrantStatus::NoDeviceSpace => "no spare translation slot in the I/O MMU",
            GrantStatus::PermissionDenied => "permission denied",
            GrantStatus::BadPage => "bad page",
            GrantStatus::BadCopyArg => "copy arguments cross page boundary",
            GrantStatus::AddressTooBig => "page address size too large",
            GrantStatus::Eagain => "operation not done; try again",
            GrantStatus::NoSpace => "out of space",
        }
    }
}

/// `struct gnttab_map_grant_ref`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabMapGrantRef {
    /// Where to map (a GPA for auto-translated guests).
    pub host_addr: u64,
    /// `GNTMAP_*`.
    pub flags: u32,
    /// The grant ref (C field `ref`, a Rust keyword).
    pub gref: GrantRef,
    /// The granting domain.
    pub dom: DomId,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Out.
    pub handle: GrantHandle,
    /// Out (with GNTMAP_device_map).
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabUnmapGrantRef {
    pub host_addr: u64,
    pub dev_bus_addr: u64,
    pub handle: GrantHandle,
    /// Out: `GNTST_*`.
    pub status: i16,
    pub pad: u16,
}

/// `struct gnttab_setup_table`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabSetupTable {
    pub dom: DomId,
    pub pad: u16,
    pub nr_frames: u32,
    /// Out: `GNTST_*`.
    pub status: i16,
    pub pad2: [u16; 3],
    /// Guest handle: `xen_pfn_t[nr_frames]` (out).
    pub frame_list: u64,
}

/// `struct gnttab_dump_table`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabDumpTable {
    pub dom: DomId,
    /// Out: `GNTST_*`.
    pub status: i16,
}

/// `struct gnttab_transfer`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabTransfer {
    pub mfn: u64,
    pub domid: DomId,
    pub pad: u16,
    /// The grant ref (C field `ref`).
    pub gref: GrantRef,
    /// Out: `GNTST_*`.
    pub status: i16,
    pub pad2: [u16; 3],
}

/// `struct gnttab_copy_ptr`: one side of a copy. The C union `u` is
/// `ref` (a [`GrantRef`], in the low 32 bits) with GNTCOPY_*_gref, else
/// `gmfn` (a frame of the caller); use the accessors.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabCopyPtr {
    /// `union { grant_ref_t ref; xen_pfn_t gmfn; } u`.
    pub u: u64,
    pub domid: DomId,
    /// Byte offset within the page.
    pub offset: u16,
    pub pad: u32,
}

impl GnttabCopyPtr {
    /// A side named by grant ref.
    pub const fn from_gref(gref: GrantRef, domid: DomId, offset: u16) -> Self {
        GnttabCopyPtr {
            u: gref as u64,
            domid,
            offset,
            pad: 0,
        }
    }

    /// A side named by frame number.
    pub const fn from_gmfn(gmfn: u64, domid: DomId, offset: u16) -> Self {
        GnttabCopyPtr {
            u: gmfn,
            domid,
            offset,
            pad: 0,
        }
    }

    /// `u.ref`: the union's low 32 bits (little-endian).
    pub const fn gref(&self) -> GrantRef {
        self.u as u32
    }

    /// `u.gmfn`.
    pub const fn gmfn(&self) -> u64 {
        self.u
    }
}

/// `struct gnttab_copy`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabCopy {
    pub source: GnttabCopyPtr,
    pub dest: GnttabCopyPtr,
    /// Bytes; source and dest ranges must each stay within a page.
    pub len: u16,
    /// `GNTCOPY_*`.
    pub flags: u16,
    /// Out: `GNTST_*`.
    pub status: i16,
    pub pad: u16,
}

/// `struct gnttab_query_size`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabQuerySize {
    pub dom: DomId,
    pub pad: u16,
    /// Out.
    pub nr_frames: u32,
    /// Out.
    pub max_nr_frames: u32,
    /// Out: `GNTST_*`.
    pub status: i16,
    pub pad2: u16,
}

/// `struct gnttab_unmap_and_replace`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabUnmapAndReplace {
    pub host_addr: u64,
    pub new_addr: u64,
    pub handle: GrantHandle,
    /// Out: `GNTST_*`.
    pub status: i16,
    pub pad: u16,
}

/// `struct gnttab_set_version`: in the wanted version, out the current.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabSetVersion {
    pub version: u32,
}

/// `struct gnttab_get_status_frames` (v2).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabGetStatusFrames {
    pub nr_frames: u32,
    pub dom: DomId,
    /// Out: `GNTST_*`.
    pub status: i16,
    /// Guest handle: `uint64_t[nr_frames]` (out).
    pub frame_list: u64,
}

/// `struct gnttab_get_version`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabGetVersion {
    pub dom: DomId,
    pub pad: u16,
    /// Out.
    pub version: u32,
}

/// `struct gnttab_swap_grant_ref`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabSwapGrantRef {
    pub ref_a: GrantRef,
    pub ref_b: GrantRef,
    /// Out: `GNTST_*`.
    pub status: i16,
    pub pad: u16,
}

/// `GNTTAB_CACHE_CLEAN`.
pub const GNTTAB_CACHE_CLEAN: u32 = 1 << 0;
/// `GNTTAB_CACHE_INVAL`.
pub const GNTTAB_CACHE_INVAL: u32 = 1 << 1;
/// `GNTTAB_CACHE_SOURCE_GREF`: `a` is a grant ref.
pub const GNTTAB_CACHE_SOURCE_GREF: u32 = 1 << 31;

/// `struct gnttab_cache_flush` (`a` is the union of `dev_bus_addr` and
/// `ref`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GnttabCacheFlush {
    pub a: u64,
    pub offset: u16,
    pub length: u16,
    /// `GNTTAB_CACHE_*`.
    pub op: u32,
}

// Names used by the hypervisor, guest-shim and Dom0 before this module
// was completed; the same types.

/// Former name of [`GnttabMapGrantRef`].
pub type MapGrantRef = GnttabMapGrantRef;
/// Former name of [`GnttabUnmapGrantRef`].
pub type UnmapGrantRef = GnttabUnmapGrantRef;
/// Former name of [`GnttabCopyPtr`].
pub type CopyPtr = GnttabCopyPtr;
/// Former name of [`GnttabCopy`] (shadows the `Copy` trait if
/// glob-imported: prefer `GnttabCopy`).
pub type Copy = GnttabCopy;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn numbers() {
        assert_eq!(GNTTABOP_MAP_GRANT_REF, 0);
        assert_eq!(GNTTABOP_UNMAP_GRANT_REF, 1);
        assert_eq!(GNTTABOP_SETUP_TABLE, 2);
        assert_eq!(GNTTABOP_COPY, 5);
        assert_eq!(GNTTABOP_QUERY_SIZE, 6);
        assert_eq!(GNTTABOP_SET_VERSION, 8);
        assert_eq!(GNTTABOP_CACHE_FLUSH, 12);
        assert_eq!(ENTRIES_PER_FRAME, 512);
        assert_eq!(GtfFlags::PERMIT_ACCESS.bits(), 1);
        assert_eq!(GtfFlags::READONLY.bits(), 4);
        assert_eq!(GtfFlags::READING.bits(), 8);
        assert_eq!(GtfFlags::WRITING.bits(), 16);
        assert_eq!(GtfFlags::SUB_PAGE.bits(), 0x100);
        assert_eq!(
            GtfType::of(GTF_PERMIT_ACCESS | GTF_READONLY),
            GtfType::PermitAccess
        );
        assert_eq!(GtfType::of(GTF_READING), GtfType::Invalid);
        assert_eq!(GtfType::of(3), GtfType::Transitive);
        assert_eq!(GntmapFlags::HOST_MAP.bits(), 2);
        assert_eq!(GntmapFlags::READONLY.bits(), 4);
        assert_eq!(GntmapFlags::CONTAINS_PTE.bits(), 16);
        assert_eq!(GNTMAP_GUEST_AVAIL_MASK, 0xffff_0000);
        assert_eq!(GntcopyFlags::SOURCE_GREF.bits(), 1);
        assert_eq!(GntcopyFlags::DEST_GREF.bits(), 2);
    }

    #[test]
    fn status_codes() {
        let expected = [
            (GrantStatus::Okay, status::OKAY, 0),
            (GrantStatus::GeneralError, status::GENERAL_ERROR, -1),
            (GrantStatus::BadDomain, status::BAD_DOMAIN, -2),
            (GrantStatus::BadGntref, status::BAD_GNTREF, -3),
            (GrantStatus::BadHandle, status::BAD_HANDLE, -4),
            (GrantStatus::BadVirtAddr, status::BAD_VIRT_ADDR, -5),
            (GrantStatus::BadDevAddr, status::BAD_DEV_ADDR, -6),
            (GrantStatus::NoDeviceSpace, status::NO_DEVICE_SPACE, -7),
            (GrantStatus::PermissionDenied, status::PERMISSION_DENIED, -8),
            (GrantStatus::BadPage, status::BAD_PAGE, -9),
            (GrantStatus::BadCopyArg, status::BAD_COPY_ARG, -10),
            (GrantStatus::AddressTooBig, status::ADDRESS_TOO_BIG, -11),
            (GrantStatus::Eagain, status::EAGAIN, -12),
            (GrantStatus::NoSpace, status::NO_SPACE, -13),
        ];
        for (st, c, v) in expected {
            assert_eq!(st.raw(), v);
            assert_eq!(c, v);
            assert_eq!(GrantStatus::try_from(v), Ok(st));
        }
        assert_eq!(GrantStatus::ALL.len(), 14);
        assert_eq!(GrantStatus::try_from(-14), Err(-14));
        assert_eq!(GrantStatus::try_from(1), Err(1));
        assert_eq!(
            GrantStatus::BadCopyArg.message(),
            "copy arguments cross page boundary"
        );
    }

    #[test]
    fn entry_layout() {
        assert_eq!(size_of::<GrantEntryV1>(), 8);
        assert_eq!(offset_of!(GrantEntryV1, flags), 0);
        assert_eq!(offset_of!(GrantEntryV1, domid), 2);
        assert_eq!(offset_of!(GrantEntryV1, frame), 4);
        let e = GrantEntryV1 {
            flags: GTF_PERMIT_ACCESS | GTF_READONLY,
            domid: 0,
            frame: 0x1234,
        };
        assert_eq!(e.as_bytes(), &[5, 0, 0, 0, 0x34, 0x12, 0, 0]);
    }

    #[test]
    fn map_unmap_layouts() {
        assert_eq!(size_of::<GnttabMapGrantRef>(), 32);
        assert_eq!(offset_of!(GnttabMapGrantRef, host_addr), 0);
        assert_eq!(offset_of!(GnttabMapGrantRef, flags), 8);
        assert_eq!(offset_of!(GnttabMapGrantRef, gref), 12);
        assert_eq!(offset_of!(GnttabMapGrantRef, dom), 16);
        assert_eq!(offset_of!(GnttabMapGrantRef, status), 18);
        assert_eq!(offset_of!(GnttabMapGrantRef, handle), 20);
        assert_eq!(offset_of!(GnttabMapGrantRef, dev_bus_addr), 24);
        assert_eq!(size_of::<GnttabUnmapGrantRef>(), 24);
        assert_eq!(offset_of!(GnttabUnmapGrantRef, dev_bus_addr), 8);
        assert_eq!(offset_of!(GnttabUnmapGrantRef, handle), 16);
        assert_eq!(offset_of!(GnttabUnmapGrantRef, status), 20);
        assert_eq!(size_of::<GnttabUnmapAndReplace>(), 24);
        assert_eq!(offset_of!(GnttabUnmapAndReplace, new_addr), 8);
        assert_eq!(offset_of!(GnttabUnmapAndReplace, handle), 16);
        assert_eq!(offset_of!(GnttabUnmapAndReplace, status), 20);
    }

    #[test]
    fn table_op_layouts() {
        assert_eq!(size_of::<GnttabSetupTable>(), 24);
        assert_eq!(offset_of!(GnttabSetupTable, dom), 0);
        assert_eq!(offset_of!(GnttabSetupTable, nr_frames), 4);
        assert_eq!(offset_of!(GnttabSetupTable, status), 8);
        assert_eq!(offset_of!(GnttabSetupTable, frame_list), 16);
        assert_eq!(size_of::<GnttabDumpTable>(), 4);
        assert_eq!(offset_of!(GnttabDumpTable, status), 2);
        assert_eq!(size_of::<GnttabTransfer>(), 24);
        assert_eq!(offset_of!(GnttabTransfer, domid), 8);
        assert_eq!(offset_of!(GnttabTransfer, gref), 12);
        assert_eq!(offset_of!(GnttabTransfer, status), 16);
        assert_eq!(size_of::<GnttabQuerySize>(), 16);
        assert_eq!(offset_of!(GnttabQuerySize, nr_frames), 4);
        assert_eq!(offset_of!(GnttabQuerySize, max_nr_frames), 8);
        assert_eq!(offset_of!(GnttabQuerySize, status), 12);
        assert_eq!(size_of::<GnttabSetVersion>(), 4);
        assert_eq!(size_of::<GnttabGetStatusFrames>(), 16);
        assert_eq!(offset_of!(GnttabGetStatusFrames, dom), 4);
        assert_eq!(offset_of!(GnttabGetStatusFrames, status), 6);
        assert_eq!(offset_of!(GnttabGetStatusFrames, frame_list), 8);
        assert_eq!(size_of::<GnttabGetVersion>(), 8);
        assert_eq!(offset_of!(GnttabGetVersion, version), 4);
        assert_eq!(size_of::<GnttabSwapGrantRef>(), 12);
        assert_eq!(offset_of!(GnttabSwapGrantRef, status), 8);
        assert_eq!(size_of::<GnttabCacheFlush>(), 16);
        assert_eq!(offset_of!(GnttabCacheFlush, offset), 8);
        assert_eq!(offset_of!(GnttabCacheFlush, length), 10);
        assert_eq!(offset_of!(GnttabCacheFlush, op), 12);
    }

    #[test]
    fn copy_layouts() {
        assert_eq!(size_of::<GnttabCopyPtr>(), 16);
        assert_eq!(offset_of!(GnttabCopyPtr, u), 0);
        assert_eq!(offset_of!(GnttabCopyPtr, domid), 8);
        assert_eq!(offset_of!(GnttabCopyPtr, offset), 10);
        assert_eq!(size_of::<GnttabCopy>(), 40);
        assert_eq!(offset_of!(GnttabCopy, source), 0);
        assert_eq!(offset_of!(GnttabCopy, dest), 16);
        assert_eq!(offset_of!(GnttabCopy, len), 32);
        assert_eq!(offset_of!(GnttabCopy, flags), 34);
        assert_eq!(offset_of!(GnttabCopy, status), 36);
    }

    #[test]
    fn copy_ptr_union() {
        let p = GnttabCopyPtr::from_gref(9, 3, 100);
        assert_eq!(p.gref(), 9);
        assert_eq!(&p.as_bytes()[..4], &9u32.to_le_bytes());
        assert_eq!(&p.as_bytes()[8..12], &[3, 0, 100, 0]);
        let p = GnttabCopyPtr::from_gmfn(0x1_2345_6789, crate::DOMID_SELF, 0);
        assert_eq!(p.gmfn(), 0x1_2345_6789);
        assert_eq!(p.gref(), 0x2345_6789);
    }
}
