//! physdev_op (physdev.h): the privileged domain's physical devices —
//! mapping a device's interrupt (GSI) to a pirq, which it then binds to
//! an event channel (`EVTCHNOP_bind_pirq`), and acknowledging it.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `__HYPERVISOR_physdev_op`.
pub const HYPERVISOR_PHYSDEV_OP: u64 = 33;

pub const PHYSDEVOP_EOI: u64 = 12;
pub const PHYSDEVOP_IRQ_STATUS_QUERY: u64 = 5;
pub const PHYSDEVOP_MAP_PIRQ: u64 = 13;
pub const PHYSDEVOP_UNMAP_PIRQ: u64 = 14;
pub const PHYSDEVOP_SETUP_GSI: u64 = 21;

pub const MAP_PIRQ_TYPE_MSI: i32 = 0;
pub const MAP_PIRQ_TYPE_GSI: i32 = 1;
pub const MAP_PIRQ_TYPE_UNKNOWN: i32 = 2;
pub const MAP_PIRQ_TYPE_MSI_SEG: i32 = 3;
pub const MAP_PIRQ_TYPE_MULTI_MSI: i32 = 4;

/// `physdev_irq_status_query.flags`: the guest must `PHYSDEVOP_eoi` the
/// pirq after each event (a level-triggered line stays masked until then).
pub const XENIRQSTAT_NEEDS_EOI: u32 = 1;
pub const XENIRQSTAT_SHARED: u32 = 2;

/// `struct physdev_eoi`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PhysdevEoi {
    pub irq: u32,
}

/// `struct physdev_irq_status_query`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PhysdevIrqStatusQuery {
    pub irq: u32,
    pub flags: u32,
}

/// `struct physdev_map_pirq`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PhysdevMapPirq {
    pub domid: u16,
    pub pad: u16,
    pub r#type: i32,
    /// The GSI for `MAP_PIRQ_TYPE_GSI`.
    pub index: i32,
    /// In: the pirq wanted (negative: any); out: the pirq given.
    pub pirq: i32,
    pub bus: i32,
    pub devfn: i32,
    pub entry_nr: i32,
    pub pad2: u32,
    pub table_base: u64,
}

/// `struct physdev_unmap_pirq`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PhysdevUnmapPirq {
    pub domid: u16,
    pub pad: u16,
    pub pirq: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_physdev_h() {
        assert_eq!(size_of::<PhysdevMapPirq>(), 40);
        assert_eq!(offset_of!(PhysdevMapPirq, r#type), 4);
        assert_eq!(offset_of!(PhysdevMapPirq, index), 8);
        assert_eq!(offset_of!(PhysdevMapPirq, pirq), 12);
        assert_eq!(offset_of!(PhysdevMapPirq, bus), 16);
        assert_eq!(offset_of!(PhysdevMapPirq, devfn), 20);
        assert_eq!(offset_of!(PhysdevMapPirq, entry_nr), 24);
        assert_eq!(offset_of!(PhysdevMapPirq, table_base), 32);
        assert_eq!(size_of::<PhysdevUnmapPirq>(), 8);
        assert_eq!(size_of::<PhysdevIrqStatusQuery>(), 8);
    }
}
