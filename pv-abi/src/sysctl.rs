//! sysctl (hypercall 35, sysctl.h): the privileged interface for the
//! whole host. Xen 4.19's numbers — the version Pavise reports — whose
//! `XEN_SYSCTL_INTERFACE_VERSION` is 0x15 as in 4.17; the commands and
//! layouts here are the same in both.
//!
//! A [`Sysctl`] is the head plus a 128-byte union `u`, whose start holds
//! the command's member. Guest handles are 64-bit guest virtual addresses.

use crate::hypercall::DomId;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_SYSCTL_INTERFACE_VERSION` (Xen 4.17 to 4.19).
pub const INTERFACE_VERSION: u32 = 0x15;

/// `XEN_SYSCTL_readconsole` ([`ReadConsole`]).
pub const READCONSOLE: u32 = 1;
/// `XEN_SYSCTL_tbuf_op`: trace buffers.
pub const TBUF_OP: u32 = 2;
/// `XEN_SYSCTL_physinfo` ([`PhysInfo`]).
pub const PHYSINFO: u32 = 3;
/// `XEN_SYSCTL_sched_id`.
pub const SCHED_ID: u32 = 4;
/// `XEN_SYSCTL_perfc_op`: software performance counters.
pub const PERFC_OP: u32 = 5;
/// `XEN_SYSCTL_getdomaininfolist` ([`GetDomainInfoList`]).
pub const GETDOMAININFOLIST: u32 = 6;
/// `XEN_SYSCTL_debug_keys`.
pub const DEBUG_KEYS: u32 = 7;
/// `XEN_SYSCTL_getcpuinfo`.
pub const GETCPUINFO: u32 = 8;
/// `XEN_SYSCTL_availheap`.
pub const AVAILHEAP: u32 = 9;
/// `XEN_SYSCTL_get_pmstat`.
pub const GET_PMSTAT: u32 = 10;
/// `XEN_SYSCTL_cpu_hotplug`.
pub const CPU_HOTPLUG: u32 = 11;
/// `XEN_SYSCTL_pm_op`.
pub const PM_OP: u32 = 12;
/// `XEN_SYSCTL_page_offline_op` (13 is unused).
pub const PAGE_OFFLINE_OP: u32 = 14;
/// `XEN_SYSCTL_lockprof_op`.
pub const LOCKPROF_OP: u32 = 15;
/// `XEN_SYSCTL_cputopoinfo`.
pub const CPUTOPOINFO: u32 = 16;
/// `XEN_SYSCTL_numainfo`.
pub const NUMAINFO: u32 = 17;
/// `XEN_SYSCTL_cpupool_op`.
pub const CPUPOOL_OP: u32 = 18;
/// `XEN_SYSCTL_scheduler_op`.
pub const SCHEDULER_OP: u32 = 19;
/// `XEN_SYSCTL_coverage_op`.
pub const COVERAGE_OP: u32 = 20;
/// `XEN_SYSCTL_psr_cmt_op`.
pub const PSR_CMT_OP: u32 = 21;
/// `XEN_SYSCTL_pcitopoinfo`.
pub const PCITOPOINFO: u32 = 22;
/// `XEN_SYSCTL_psr_alloc` (24, tmem_op, is gone).
pub const PSR_ALLOC: u32 = 23;
/// `XEN_SYSCTL_get_cpu_levelling_caps`.
pub const GET_CPU_LEVELLING_CAPS: u32 = 25;
/// `XEN_SYSCTL_get_cpu_featureset`.
pub const GET_CPU_FEATURESET: u32 = 26;
/// `XEN_SYSCTL_livepatch_op` (28, set_parameter, is gone).
pub const LIVEPATCH_OP: u32 = 27;
/// `XEN_SYSCTL_get_cpu_policy`.
pub const GET_CPU_POLICY: u32 = 29;
/// `XEN_SYSCTL_dt_overlay` (new in 4.19, Arm only).
pub const DT_OVERLAY: u32 = 30;

/// Size of the union `u` of [`Sysctl`] (its `uint8_t pad[128]` member).
pub const UNION_SIZE: usize = 128;

/// `struct xen_sysctl`: the head, then the command's member in `u`.
///
/// C aligns the struct to 8 (`u`, at offset 8, holds `uint64_aligned_t`
/// members); this type has alignment 4, which only matters when embedded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Sysctl {
    /// `XEN_SYSCTL_*`.
    pub cmd: u32,
    /// Must be [`INTERFACE_VERSION`] (else -EACCES).
    pub interface_version: u32,
    /// The command's member, zero-padded.
    pub u: [u8; UNION_SIZE],
}

zeroed_default!(Sysctl);

/// `struct xen_sysctl_readconsole`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ReadConsole {
    /// In: non-zero to clear the ring after reading.
    pub clear: u8,
    /// In: non-zero to start at `index`.
    pub incremental: u8,
    pub pad0: u8,
    pub pad1: u8,
    /// In: start index (if `incremental`); out: end index.
    pub index: u32,
    /// Guest handle: `char[count]`.
    pub buffer: u64,
    /// In: buffer size; out: bytes written.
    pub count: u32,
    pub pad2: u32,
}

/// `struct xen_sysctl_physinfo`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PhysInfo {
    pub threads_per_core: u32,
    pub cores_per_socket: u32,
    /// CPUs online.
    pub nr_cpus: u32,
    /// Largest possible CPU id.
    pub max_cpu_id: u32,
    /// NUMA nodes online.
    pub nr_nodes: u32,
    /// Largest possible node id.
    pub max_node_id: u32,
    pub cpu_khz: u32,
    /// `XEN_SYSCTL_PHYSCAP_*`.
    pub capabilities: u32,
    /// Architecture-specific capabilities (Arm: SVE vector length).
    pub arch_capabilities: u32,
    pub pad: u32,
    pub total_pages: u64,
    pub free_pages: u64,
    pub scrub_pages: u64,
    pub outstanding_pages: u64,
    /// Largest possible MFN.
    pub max_mfn: u64,
    /// CPU feature words.
    pub hw_cap: [u32; 8],
}

/// `XEN_SYSCTL_PHYSCAP_hvm`: HVM guests supported.
pub const XEN_SYSCTL_PHYSCAP_HVM: u32 = 1 << 0;
/// `XEN_SYSCTL_PHYSCAP_pv`: PV guests supported.
pub const XEN_SYSCTL_PHYSCAP_PV: u32 = 1 << 1;
/// `XEN_SYSCTL_PHYSCAP_directio`: device pass-through with an IOMMU.
pub const XEN_SYSCTL_PHYSCAP_DIRECTIO: u32 = 1 << 2;
/// `XEN_SYSCTL_PHYSCAP_hap`: hardware-assisted paging.
pub const XEN_SYSCTL_PHYSCAP_HAP: u32 = 1 << 3;
/// `XEN_SYSCTL_PHYSCAP_shadow`: shadow paging.
pub const XEN_SYSCTL_PHYSCAP_SHADOW: u32 = 1 << 4;
/// `XEN_SYSCTL_PHYSCAP_iommu_hap_pt_share`: IOMMU shares HAP tables.
pub const XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE: u32 = 1 << 5;
/// `XEN_SYSCTL_PHYSCAP_vmtrace`: processor trace for guests.
pub const XEN_SYSCTL_PHYSCAP_VMTRACE: u32 = 1 << 6;
/// `XEN_SYSCTL_PHYSCAP_vpmu`: virtual PMU.
pub const XEN_SYSCTL_PHYSCAP_VPMU: u32 = 1 << 7;
/// `XEN_SYSCTL_PHYSCAP_gnttab_v1`: grant table v1 ABI.
pub const XEN_SYSCTL_PHYSCAP_GNTTAB_V1: u32 = 1 << 8;
/// `XEN_SYSCTL_PHYSCAP_gnttab_v2` (`XEN_SYSCTL_PHYSCAP_MAX`).
pub const XEN_SYSCTL_PHYSCAP_GNTTAB_V2: u32 = 1 << 9;

/// `struct xen_sysctl_getdomaininfolist`: `buffer` points at
/// `max_domains` [`crate::domctl::GetDomainInfo`] entries.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GetDomainInfoList {
    /// In: the lowest domain id to report.
    pub first_domain: DomId,
    pub pad: u16,
    /// In: capacity of `buffer` in entries.
    pub max_domains: u32,
    /// Guest handle: `xen_domctl_getdomaininfo_t[max_domains]`.
    pub buffer: u64,
    /// Out: entries written.
    pub num_domains: u32,
    pub pad2: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domctl::GetDomainInfo;
    use core::mem::{offset_of, size_of};

    #[test]
    fn numbers() {
        assert_eq!(INTERFACE_VERSION, 0x15);
        assert_eq!(READCONSOLE, 1);
        assert_eq!(TBUF_OP, 2);
        assert_eq!(PHYSINFO, 3);
        assert_eq!(SCHED_ID, 4);
        assert_eq!(PERFC_OP, 5);
        assert_eq!(GETDOMAININFOLIST, 6);
        assert_eq!(PAGE_OFFLINE_OP, 14);
        assert_eq!(GET_CPU_POLICY, 29);
        assert_eq!(XEN_SYSCTL_PHYSCAP_HVM, 1);
        assert_eq!(XEN_SYSCTL_PHYSCAP_PV, 2);
        assert_eq!(XEN_SYSCTL_PHYSCAP_DIRECTIO, 4);
        assert_eq!(XEN_SYSCTL_PHYSCAP_HAP, 8);
        assert_eq!(XEN_SYSCTL_PHYSCAP_SHADOW, 0x10);
        assert_eq!(XEN_SYSCTL_PHYSCAP_IOMMU_HAP_PT_SHARE, 0x20);
        assert_eq!(XEN_SYSCTL_PHYSCAP_VMTRACE, 0x40);
        assert_eq!(XEN_SYSCTL_PHYSCAP_VPMU, 0x80);
        assert_eq!(XEN_SYSCTL_PHYSCAP_GNTTAB_V1, 0x100);
        assert_eq!(XEN_SYSCTL_PHYSCAP_GNTTAB_V2, 0x200);
    }

    #[test]
    fn head_layout() {
        assert_eq!(size_of::<Sysctl>(), 136);
        assert_eq!(offset_of!(Sysctl, interface_version), 4);
        assert_eq!(offset_of!(Sysctl, u), 8);
        for size in [
            size_of::<ReadConsole>(),
            size_of::<PhysInfo>(),
            size_of::<GetDomainInfoList>(),
        ] {
            assert!(size <= UNION_SIZE);
        }
    }

    #[test]
    fn readconsole_layout() {
        assert_eq!(size_of::<ReadConsole>(), 24);
        assert_eq!(offset_of!(ReadConsole, incremental), 1);
        assert_eq!(offset_of!(ReadConsole, index), 4);
        assert_eq!(offset_of!(ReadConsole, buffer), 8);
        assert_eq!(offset_of!(ReadConsole, count), 16);
    }

    #[test]
    fn physinfo_layout() {
        assert_eq!(size_of::<PhysInfo>(), 112);
        assert_eq!(offset_of!(PhysInfo, threads_per_core), 0);
        assert_eq!(offset_of!(PhysInfo, cores_per_socket), 4);
        assert_eq!(offset_of!(PhysInfo, nr_cpus), 8);
        assert_eq!(offset_of!(PhysInfo, max_cpu_id), 12);
        assert_eq!(offset_of!(PhysInfo, nr_nodes), 16);
        assert_eq!(offset_of!(PhysInfo, max_node_id), 20);
        assert_eq!(offset_of!(PhysInfo, cpu_khz), 24);
        assert_eq!(offset_of!(PhysInfo, capabilities), 28);
        assert_eq!(offset_of!(PhysInfo, arch_capabilities), 32);
        assert_eq!(offset_of!(PhysInfo, pad), 36);
        assert_eq!(offset_of!(PhysInfo, total_pages), 40);
        assert_eq!(offset_of!(PhysInfo, free_pages), 48);
        assert_eq!(offset_of!(PhysInfo, scrub_pages), 56);
        assert_eq!(offset_of!(PhysInfo, outstanding_pages), 64);
        assert_eq!(offset_of!(PhysInfo, max_mfn), 72);
        assert_eq!(offset_of!(PhysInfo, hw_cap), 80);
    }

    #[test]
    fn getdomaininfolist_layout() {
        assert_eq!(size_of::<GetDomainInfoList>(), 24);
        assert_eq!(offset_of!(GetDomainInfoList, first_domain), 0);
        assert_eq!(offset_of!(GetDomainInfoList, max_domains), 4);
        assert_eq!(offset_of!(GetDomainInfoList, buffer), 8);
        assert_eq!(offset_of!(GetDomainInfoList, num_domains), 16);
        // The buffer's entries.
        assert_eq!(size_of::<GetDomainInfo>(), 112);
    }
}
