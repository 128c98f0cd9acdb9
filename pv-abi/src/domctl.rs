//! domctl (hypercall 36, domctl.h): the privileged interface for managing
//! one domain. Xen 4.19's layout — the version Pavise reports — with
//! `XEN_DOMCTL_INTERFACE_VERSION` 0x17 (4.17 had 0x15 and no
//! `altp2m_opts` in createdomain; everything else here is the same).
//!
//! A [`Domctl`] is the head plus a 128-byte union `u`; each command's
//! member ([`CreateDomain`], [`GetDomainInfo`], ...) is copied into and out
//! of the start of `u`. Also here: the x86_64 `vcpu_guest_context` of
//! set/getvcpucontext (arch-x86/xen.h, arch-x86/xen-x86_64.h). Guest
//! handles are 64-bit guest virtual addresses.

use crate::hypercall::DomId;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_DOMCTL_INTERFACE_VERSION` (Xen 4.19; 4.17 and 4.18: 0x15, 0x16).
pub const INTERFACE_VERSION: u32 = 0x17;

/// The `XEN_DOMCTL_INTERFACE_VERSION` of Xen `major.minor` (4.17 to
/// 4.19), for a guest that runs on either: a domctl of another version
/// is -EACCES before anything else is looked at.
pub const fn interface_version_of(major: u16, minor: u16) -> Option<u32> {
    match (major, minor) {
        (4, 17) => Some(0x15),
        (4, 18) => Some(0x16),
        (4, 19) => Some(0x17),
        _ => None,
    }
}

/// `XEN_DOMCTL_createdomain`: build an empty domain ([`CreateDomain`]).
pub const CREATEDOMAIN: u32 = 1;
/// `XEN_DOMCTL_destroydomain` (no member).
pub const DESTROYDOMAIN: u32 = 2;
/// `XEN_DOMCTL_pausedomain` (no member).
pub const PAUSEDOMAIN: u32 = 3;
/// `XEN_DOMCTL_unpausedomain` (no member).
pub const UNPAUSEDOMAIN: u32 = 4;
/// `XEN_DOMCTL_getdomaininfo` ([`GetDomainInfo`], out).
pub const GETDOMAININFO: u32 = 5;
/// `XEN_DOMCTL_max_mem` ([`MaxMem`]).
pub const MAX_MEM: u32 = 11;
/// `XEN_DOMCTL_setvcpucontext` ([`VcpuContext`] → [`VcpuGuestContext`]).
pub const SETVCPUCONTEXT: u32 = 12;
/// `XEN_DOMCTL_getvcpucontext` ([`VcpuContext`] → [`VcpuGuestContext`]).
pub const GETVCPUCONTEXT: u32 = 13;
/// `XEN_DOMCTL_getvcpuinfo` ([`GetVcpuInfo`]).
pub const GETVCPUINFO: u32 = 14;
/// `XEN_DOMCTL_max_vcpus` ([`MaxVcpus`]): still in 4.17 and 4.19, and
/// must repeat createdomain's `max_vcpus`.
pub const MAX_VCPUS: u32 = 15;
/// `XEN_DOMCTL_settimeoffset` ([`SetTimeOffset`]).
pub const SETTIMEOFFSET: u32 = 24;
/// `XEN_DOMCTL_gethvmcontext` ([`HvmContext`]).
pub const GETHVMCONTEXT: u32 = 33;
/// `XEN_DOMCTL_sethvmcontext` ([`HvmContext`]).
pub const SETHVMCONTEXT: u32 = 34;

/// Size of the union `u` of [`Domctl`] (its `uint8_t pad[128]` member).
pub const UNION_SIZE: usize = 128;

/// `struct xen_domctl`: the head, then the command's member in `u`.
///
/// C aligns the struct (and `u`, at offset 16) to 8 because of its
/// `uint64_aligned_t` members; this type has alignment 4, which only
/// matters when it is embedded, and it never is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Domctl {
    /// `XEN_DOMCTL_*`.
    pub cmd: u32,
    /// Must be [`INTERFACE_VERSION`] (else -EACCES).
    pub interface_version: u32,
    /// The target domain (createdomain: in/out, 0 or invalid = allocate).
    pub domain: DomId,
    pub pad: [u16; 3],
    /// The command's member, zero-padded.
    pub u: [u8; UNION_SIZE],
}

zeroed_default!(Domctl);

/// A command's member read from the bytes of a domctl's or sysctl's
/// union `u` (zero where `u` is shorter than `T`, which no member is).
pub fn member<T: FromBytes>(u: &[u8]) -> T {
    T::read_from_prefix(u).map_or_else(|_| T::new_zeroed(), |(v, _)| v)
}

/// Writes a command's member into the bytes of a union `u`.
pub fn set_member<T: IntoBytes + Immutable>(u: &mut [u8], value: &T) {
    let bytes = value.as_bytes();
    let n = bytes.len().min(u.len());
    u[..n].copy_from_slice(&bytes[..n]);
}

/// `struct xen_arch_domainconfig` (x86).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ArchDomainConfig {
    /// `XEN_X86_EMU_*`.
    pub emulation_flags: u32,
    /// `XEN_X86_MSR_RELAXED`.
    pub misc_flags: u32,
}

/// `XEN_X86_EMU_LAPIC`: the emulated local APIC (a PVH domain has only
/// this one).
pub const XEN_X86_EMU_LAPIC: u32 = 1 << 0;
/// `XEN_X86_EMU_HPET`.
pub const XEN_X86_EMU_HPET: u32 = 1 << 1;
/// `XEN_X86_EMU_PM`: ACPI PM timer and PM1 registers.
pub const XEN_X86_EMU_PM: u32 = 1 << 2;
/// `XEN_X86_EMU_RTC`.
pub const XEN_X86_EMU_RTC: u32 = 1 << 3;
/// `XEN_X86_EMU_IOAPIC`.
pub const XEN_X86_EMU_IOAPIC: u32 = 1 << 4;
/// `XEN_X86_EMU_PIC`: the 8259s.
pub const XEN_X86_EMU_PIC: u32 = 1 << 5;
/// `XEN_X86_EMU_VGA`: standard VGA.
pub const XEN_X86_EMU_VGA: u32 = 1 << 6;
/// `XEN_X86_EMU_IOMMU`.
pub const XEN_X86_EMU_IOMMU: u32 = 1 << 7;
/// `XEN_X86_EMU_PIT`: the 8254.
pub const XEN_X86_EMU_PIT: u32 = 1 << 8;
/// `XEN_X86_EMU_USE_PIRQ`: route interrupts as PIRQ event channels.
pub const XEN_X86_EMU_USE_PIRQ: u32 = 1 << 9;
/// `XEN_X86_EMU_VPCI`.
pub const XEN_X86_EMU_VPCI: u32 = 1 << 10;
/// `XEN_X86_EMU_ALL`.
pub const XEN_X86_EMU_ALL: u32 = (1 << 11) - 1;
/// `XEN_X86_MSR_RELAXED` (in [`ArchDomainConfig::misc_flags`]).
pub const XEN_X86_MSR_RELAXED: u32 = 1 << 0;

/// `struct xen_domctl_createdomain` (Xen 4.19).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CreateDomain {
    pub ssidref: u32,
    /// `xen_domain_handle_t`: the toolstack's UUID.
    pub handle: [u8; 16],
    /// `XEN_DOMCTL_CDF_*`.
    pub flags: u32,
    /// `XEN_DOMCTL_IOMMU_*`.
    pub iommu_opts: u32,
    pub max_vcpus: u32,
    pub max_evtchn_port: u32,
    /// < 0: the hypervisor's default.
    pub max_grant_frames: i32,
    /// < 0: the hypervisor's default.
    pub max_maptrack_frames: i32,
    /// Grant table version in the low 4 bits (`XEN_DOMCTL_GRANT_*`).
    pub grant_opts: u32,
    /// `XEN_DOMCTL_ALTP2M_*` (new in 4.19; not in 4.17).
    pub altp2m_opts: u32,
    /// Per-vCPU trace buffer bytes, 0 = off.
    pub vmtrace_size: u32,
    /// 0 or an existing CPU pool.
    pub cpupool_id: u32,
    pub arch: ArchDomainConfig,
}

/// `XEN_DOMCTL_CDF_hvm`: an HVM (or PVH) guest, not PV.
pub const XEN_DOMCTL_CDF_HVM: u32 = 1 << 0;
/// `XEN_DOMCTL_CDF_hap`: use hardware-assisted paging.
pub const XEN_DOMCTL_CDF_HAP: u32 = 1 << 1;
/// `XEN_DOMCTL_CDF_s3_integrity`: tboot checks memory across S3.
pub const XEN_DOMCTL_CDF_S3_INTEGRITY: u32 = 1 << 2;
/// `XEN_DOMCTL_CDF_oos_off`: no out-of-sync shadow page tables.
pub const XEN_DOMCTL_CDF_OOS_OFF: u32 = 1 << 3;
/// `XEN_DOMCTL_CDF_xs_domain`: a XenStore domain.
pub const XEN_DOMCTL_CDF_XS_DOMAIN: u32 = 1 << 4;
/// `XEN_DOMCTL_CDF_iommu`: may use the IOMMU.
pub const XEN_DOMCTL_CDF_IOMMU: u32 = 1 << 5;
/// `XEN_DOMCTL_CDF_nested_virt`.
pub const XEN_DOMCTL_CDF_NESTED_VIRT: u32 = 1 << 6;
/// `XEN_DOMCTL_CDF_vpmu`: expose the vPMU (`XEN_DOMCTL_CDF_MAX`).
pub const XEN_DOMCTL_CDF_VPMU: u32 = 1 << 7;

/// `XEN_DOMCTL_IOMMU_no_sharept` (in [`CreateDomain::iommu_opts`]).
pub const XEN_DOMCTL_IOMMU_NO_SHAREPT: u32 = 1 << 0;
/// `XEN_DOMCTL_GRANT_version_mask` (in [`CreateDomain::grant_opts`]).
pub const XEN_DOMCTL_GRANT_VERSION_MASK: u32 = 0xf;
/// `XEN_DOMCTL_ALTP2M_mixed` (4.19).
pub const XEN_DOMCTL_ALTP2M_MIXED: u32 = 1;
/// `XEN_DOMCTL_ALTP2M_external` (4.19).
pub const XEN_DOMCTL_ALTP2M_EXTERNAL: u32 = 2;
/// `XEN_DOMCTL_ALTP2M_limited` (4.19).
pub const XEN_DOMCTL_ALTP2M_LIMITED: u32 = 3;
/// `XEN_DOMCTL_ALTP2M_mode_mask` (4.19).
pub const XEN_DOMCTL_ALTP2M_MODE_MASK: u32 = 0x3;

/// `struct xen_domctl_getdomaininfo` (out; also the entries of sysctl
/// getdomaininfolist's buffer).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GetDomainInfo {
    /// Also echoed in [`Domctl::domain`].
    pub domain: DomId,
    pub pad1: u16,
    /// `XEN_DOMINF_*`, with the shutdown reason in bits 16..24.
    pub flags: u32,
    pub tot_pages: u64,
    pub max_pages: u64,
    pub outstanding_pages: u64,
    pub shr_pages: u64,
    pub paged_pages: u64,
    /// GMFN of the domain's shared_info page.
    pub shared_info_frame: u64,
    /// Nanoseconds of CPU time consumed.
    pub cpu_time: u64,
    pub nr_online_vcpus: u32,
    /// Largest vCPU id, or [`XEN_INVALID_MAX_VCPU_ID`].
    pub max_vcpu_id: u32,
    pub ssidref: u32,
    /// `xen_domain_handle_t`.
    pub handle: [u8; 16],
    pub cpupool: u32,
    /// Guest physical address width (present since 4.17).
    pub gpaddr_bits: u8,
    pub pad2: [u8; 7],
    pub arch_config: ArchDomainConfig,
}

/// `XEN_DOMINF_dying`: scheduled to die.
pub const XEN_DOMINF_DYING: u32 = 1 << 0;
/// `XEN_DOMINF_hvm_guest`: HVM (or PVH), not PV.
pub const XEN_DOMINF_HVM_GUEST: u32 = 1 << 1;
/// `XEN_DOMINF_shutdown`: the guest has shut down (reason in the
/// shutdown field).
pub const XEN_DOMINF_SHUTDOWN: u32 = 1 << 2;
/// `XEN_DOMINF_paused`: paused by the toolstack.
pub const XEN_DOMINF_PAUSED: u32 = 1 << 3;
/// `XEN_DOMINF_blocked`: blocked waiting for an event.
pub const XEN_DOMINF_BLOCKED: u32 = 1 << 4;
/// `XEN_DOMINF_running`: currently running.
pub const XEN_DOMINF_RUNNING: u32 = 1 << 5;
/// `XEN_DOMINF_debugged`: being debugged.
pub const XEN_DOMINF_DEBUGGED: u32 = 1 << 6;
/// `XEN_DOMINF_xs_domain`: a XenStore domain.
pub const XEN_DOMINF_XS_DOMAIN: u32 = 1 << 7;
/// `XEN_DOMINF_hap`: uses hardware-assisted paging.
pub const XEN_DOMINF_HAP: u32 = 1 << 8;
/// `XEN_DOMINF_shutdownmask`: the guest's `SHUTDOWN_*` code, after the
/// shift.
pub const XEN_DOMINF_SHUTDOWNMASK: u32 = 255;
/// `XEN_DOMINF_shutdownshift`.
pub const XEN_DOMINF_SHUTDOWNSHIFT: u32 = 16;
/// `XEN_INVALID_MAX_VCPU_ID`: the domain has no vCPUs.
pub const XEN_INVALID_MAX_VCPU_ID: u32 = !0;

/// The `SHUTDOWN_*` code in getdomaininfo's flags.
pub const fn dominf_shutdown_reason(flags: u32) -> u32 {
    (flags >> XEN_DOMINF_SHUTDOWNSHIFT) & XEN_DOMINF_SHUTDOWNMASK
}

/// `struct xen_domctl_max_mem`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MaxMem {
    /// The new limit in KiB.
    pub max_memkb: u64,
}

/// `struct xen_domctl_vcpucontext` (set/getvcpucontext).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuContext {
    pub vcpu: u32,
    pub pad: u32,
    /// Guest handle: a [`VcpuGuestContext`] (in or out).
    pub ctxt: u64,
}

/// `struct xen_domctl_getvcpuinfo`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct GetVcpuInfo {
    /// In.
    pub vcpu: u32,
    /// Out: online (not hot-unplugged).
    pub online: u8,
    /// Out: blocked waiting for an event.
    pub blocked: u8,
    /// Out: currently scheduled.
    pub running: u8,
    pub pad0: u8,
    /// Out: nanoseconds of CPU time consumed.
    pub cpu_time: u64,
    /// Out: the physical CPU it runs on.
    pub cpu: u32,
    pub pad1: u32,
}

/// `struct xen_domctl_max_vcpus`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MaxVcpus {
    /// Must equal createdomain's `max_vcpus`.
    pub max: u32,
}

/// `struct xen_domctl_settimeoffset`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SetTimeOffset {
    /// Added to the domain's wallclock time.
    pub time_offset_seconds: i64,
}

/// `struct xen_domctl_hvmcontext` (get/sethvmcontext).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvmContext {
    /// In: buffer size; out: bytes filled.
    pub size: u32,
    pub pad: u32,
    /// Guest handle: bytes of HVM save records (gethvmcontext with 0 asks
    /// for the size needed).
    pub buffer: u64,
}

/// `struct trap_info` (x86_64): one virtual IDT entry.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct TrapInfo {
    pub vector: u8,
    /// Bits 0-1: DPL; bit 2: clear event delivery on entry.
    pub flags: u8,
    pub cs: u16,
    pub pad: u32,
    pub address: u64,
}

/// `struct cpu_user_regs` (arch-x86/xen-x86_64.h). The C unions of
/// sub-register names are the 64-bit registers here.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct CpuUserRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// Private to Xen.
    pub error_code: u32,
    /// Private to Xen.
    pub entry_vector: u32,
    pub rip: u64,
    pub cs: u16,
    pub pad0: u16,
    pub saved_upcall_mask: u8,
    pub pad1: [u8; 3],
    /// `rflags.IF == !saved_upcall_mask`.
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u16,
    pub pad2: [u16; 3],
    pub es: u16,
    pub pad3: [u16; 3],
    pub ds: u16,
    pub pad4: [u16; 3],
    pub fs: u16,
    pub pad5: [u16; 3],
    pub gs: u16,
    pub pad6: [u16; 3],
}

/// `struct vcpu_guest_context` (x86_64, as the toolstack sees it: all
/// `unsigned long` fields are 64 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VcpuGuestContext {
    /// FXSAVE image (valid if [`VGCF_I387_VALID`]).
    pub fpu_ctxt: [u8; 512],
    /// `VGCF_*`.
    pub flags: u64,
    pub user_regs: CpuUserRegs,
    /// Virtual IDT (PV).
    pub trap_ctxt: [TrapInfo; 256],
    /// LDT linear address.
    pub ldt_base: u64,
    /// LDT entries.
    pub ldt_ents: u64,
    /// GDT machine frames.
    pub gdt_frames: [u64; 16],
    /// GDT entries.
    pub gdt_ents: u64,
    /// Virtual TSS SS1.
    pub kernel_ss: u64,
    /// Virtual TSS SP1.
    pub kernel_sp: u64,
    /// CR0-CR7 (ctrlreg[1]: the PV user page table).
    pub ctrlreg: [u64; 8],
    /// DR0-DR7.
    pub debugreg: [u64; 8],
    pub event_callback_eip: u64,
    pub failsafe_callback_eip: u64,
    pub syscall_callback_eip: u64,
    /// `VMASST_TYPE_*` bitmap.
    pub vm_assist: u64,
    pub fs_base: u64,
    pub gs_base_kernel: u64,
    pub gs_base_user: u64,
}

zeroed_default!(VcpuGuestContext);

/// `VGCF_i387_valid`: `fpu_ctxt` holds state.
pub const VGCF_I387_VALID: u64 = 1 << 0;
/// `VGCF_in_kernel` (PV).
pub const VGCF_IN_KERNEL: u64 = 1 << 2;
/// `VGCF_failsafe_disables_events` (PV).
pub const VGCF_FAILSAFE_DISABLES_EVENTS: u64 = 1 << 3;
/// `VGCF_syscall_disables_events` (PV).
pub const VGCF_SYSCALL_DISABLES_EVENTS: u64 = 1 << 4;
/// `VGCF_online`: the vCPU is brought up.
pub const VGCF_ONLINE: u64 = 1 << 5;
/// `VGCF_in_syscall` (arch-x86/xen-x86_64.h): return to the guest with
/// SYSRET.
pub const VGCF_IN_SYSCALL: u64 = 1 << 8;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn numbers() {
        assert_eq!(INTERFACE_VERSION, 0x17);
        assert_eq!(interface_version_of(4, 19), Some(INTERFACE_VERSION));
        assert_eq!(interface_version_of(4, 17), Some(0x15));
        assert_eq!(interface_version_of(4, 20), None);
        assert_eq!(CREATEDOMAIN, 1);
        assert_eq!(DESTROYDOMAIN, 2);
        assert_eq!(PAUSEDOMAIN, 3);
        assert_eq!(UNPAUSEDOMAIN, 4);
        assert_eq!(GETDOMAININFO, 5);
        assert_eq!(MAX_MEM, 11);
        assert_eq!(SETVCPUCONTEXT, 12);
        assert_eq!(GETVCPUCONTEXT, 13);
        assert_eq!(GETVCPUINFO, 14);
        assert_eq!(MAX_VCPUS, 15);
        assert_eq!(SETTIMEOFFSET, 24);
        assert_eq!(GETHVMCONTEXT, 33);
        assert_eq!(SETHVMCONTEXT, 34);
        assert_eq!(XEN_DOMCTL_CDF_VPMU, 0x80);
        assert_eq!(XEN_X86_EMU_USE_PIRQ, 0x200);
        assert_eq!(XEN_X86_EMU_ALL, 0x7ff);
        assert_eq!(XEN_DOMINF_HAP, 0x100);
        assert_eq!(dominf_shutdown_reason(3 << 16 | XEN_DOMINF_SHUTDOWN), 3);
        assert_eq!(VGCF_ONLINE, 0x20);
        assert_eq!(VGCF_IN_SYSCALL, 0x100);
    }

    #[test]
    fn head_layout() {
        assert_eq!(size_of::<Domctl>(), 144);
        assert_eq!(offset_of!(Domctl, cmd), 0);
        assert_eq!(offset_of!(Domctl, interface_version), 4);
        assert_eq!(offset_of!(Domctl, domain), 8);
        assert_eq!(offset_of!(Domctl, pad), 10);
        assert_eq!(offset_of!(Domctl, u), 16);
    }

    #[test]
    fn members_fit_the_union() {
        for size in [
            size_of::<CreateDomain>(),
            size_of::<GetDomainInfo>(),
            size_of::<MaxMem>(),
            size_of::<VcpuContext>(),
            size_of::<GetVcpuInfo>(),
            size_of::<MaxVcpus>(),
            size_of::<SetTimeOffset>(),
            size_of::<HvmContext>(),
        ] {
            assert!(size <= UNION_SIZE);
        }
    }

    #[test]
    fn createdomain_layout() {
        assert_eq!(size_of::<ArchDomainConfig>(), 8);
        assert_eq!(offset_of!(ArchDomainConfig, misc_flags), 4);
        assert_eq!(size_of::<CreateDomain>(), 68);
        assert_eq!(offset_of!(CreateDomain, ssidref), 0);
        assert_eq!(offset_of!(CreateDomain, handle), 4);
        assert_eq!(offset_of!(CreateDomain, flags), 20);
        assert_eq!(offset_of!(CreateDomain, iommu_opts), 24);
        assert_eq!(offset_of!(CreateDomain, max_vcpus), 28);
        assert_eq!(offset_of!(CreateDomain, max_evtchn_port), 32);
        assert_eq!(offset_of!(CreateDomain, max_grant_frames), 36);
        assert_eq!(offset_of!(CreateDomain, max_maptrack_frames), 40);
        assert_eq!(offset_of!(CreateDomain, grant_opts), 44);
        assert_eq!(offset_of!(CreateDomain, altp2m_opts), 48);
        assert_eq!(offset_of!(CreateDomain, vmtrace_size), 52);
        assert_eq!(offset_of!(CreateDomain, cpupool_id), 56);
        assert_eq!(offset_of!(CreateDomain, arch), 60);
    }

    #[test]
    fn getdomaininfo_layout() {
        assert_eq!(size_of::<GetDomainInfo>(), 112);
        assert_eq!(offset_of!(GetDomainInfo, domain), 0);
        assert_eq!(offset_of!(GetDomainInfo, pad1), 2);
        assert_eq!(offset_of!(GetDomainInfo, flags), 4);
        assert_eq!(offset_of!(GetDomainInfo, tot_pages), 8);
        assert_eq!(offset_of!(GetDomainInfo, max_pages), 16);
        assert_eq!(offset_of!(GetDomainInfo, outstanding_pages), 24);
        assert_eq!(offset_of!(GetDomainInfo, shr_pages), 32);
        assert_eq!(offset_of!(GetDomainInfo, paged_pages), 40);
        assert_eq!(offset_of!(GetDomainInfo, shared_info_frame), 48);
        assert_eq!(offset_of!(GetDomainInfo, cpu_time), 56);
        assert_eq!(offset_of!(GetDomainInfo, nr_online_vcpus), 64);
        assert_eq!(offset_of!(GetDomainInfo, max_vcpu_id), 68);
        assert_eq!(offset_of!(GetDomainInfo, ssidref), 72);
        assert_eq!(offset_of!(GetDomainInfo, handle), 76);
        assert_eq!(offset_of!(GetDomainInfo, cpupool), 92);
        assert_eq!(offset_of!(GetDomainInfo, gpaddr_bits), 96);
        assert_eq!(offset_of!(GetDomainInfo, pad2), 97);
        assert_eq!(offset_of!(GetDomainInfo, arch_config), 104);
    }

    #[test]
    fn small_members_layout() {
        assert_eq!(size_of::<MaxMem>(), 8);
        assert_eq!(size_of::<VcpuContext>(), 16);
        assert_eq!(offset_of!(VcpuContext, ctxt), 8);
        assert_eq!(size_of::<GetVcpuInfo>(), 24);
        assert_eq!(offset_of!(GetVcpuInfo, online), 4);
        assert_eq!(offset_of!(GetVcpuInfo, blocked), 5);
        assert_eq!(offset_of!(GetVcpuInfo, running), 6);
        assert_eq!(offset_of!(GetVcpuInfo, cpu_time), 8);
        assert_eq!(offset_of!(GetVcpuInfo, cpu), 16);
        assert_eq!(size_of::<MaxVcpus>(), 4);
        assert_eq!(size_of::<SetTimeOffset>(), 8);
        assert_eq!(size_of::<HvmContext>(), 16);
        assert_eq!(offset_of!(HvmContext, buffer), 8);
    }

    #[test]
    fn cpu_user_regs_layout() {
        assert_eq!(size_of::<CpuUserRegs>(), 200);
        assert_eq!(offset_of!(CpuUserRegs, r15), 0);
        assert_eq!(offset_of!(CpuUserRegs, r14), 8);
        assert_eq!(offset_of!(CpuUserRegs, r13), 16);
        assert_eq!(offset_of!(CpuUserRegs, r12), 24);
        assert_eq!(offset_of!(CpuUserRegs, rbp), 32);
        assert_eq!(offset_of!(CpuUserRegs, rbx), 40);
        assert_eq!(offset_of!(CpuUserRegs, r11), 48);
        assert_eq!(offset_of!(CpuUserRegs, r10), 56);
        assert_eq!(offset_of!(CpuUserRegs, r9), 64);
        assert_eq!(offset_of!(CpuUserRegs, r8), 72);
        assert_eq!(offset_of!(CpuUserRegs, rax), 80);
        assert_eq!(offset_of!(CpuUserRegs, rcx), 88);
        assert_eq!(offset_of!(CpuUserRegs, rdx), 96);
        assert_eq!(offset_of!(CpuUserRegs, rsi), 104);
        assert_eq!(offset_of!(CpuUserRegs, rdi), 112);
        assert_eq!(offset_of!(CpuUserRegs, error_code), 120);
        assert_eq!(offset_of!(CpuUserRegs, entry_vector), 124);
        assert_eq!(offset_of!(CpuUserRegs, rip), 128);
        assert_eq!(offset_of!(CpuUserRegs, cs), 136);
        assert_eq!(offset_of!(CpuUserRegs, saved_upcall_mask), 140);
        assert_eq!(offset_of!(CpuUserRegs, rflags), 144);
        assert_eq!(offset_of!(CpuUserRegs, rsp), 152);
        assert_eq!(offset_of!(CpuUserRegs, ss), 160);
        assert_eq!(offset_of!(CpuUserRegs, es), 168);
        assert_eq!(offset_of!(CpuUserRegs, ds), 176);
        assert_eq!(offset_of!(CpuUserRegs, fs), 184);
        assert_eq!(offset_of!(CpuUserRegs, gs), 192);
    }

    #[test]
    fn vcpu_guest_context_layout() {
        assert_eq!(size_of::<TrapInfo>(), 16);
        assert_eq!(offset_of!(TrapInfo, cs), 2);
        assert_eq!(offset_of!(TrapInfo, address), 8);
        assert_eq!(size_of::<VcpuGuestContext>(), 5168);
        assert_eq!(offset_of!(VcpuGuestContext, flags), 512);
        assert_eq!(offset_of!(VcpuGuestContext, user_regs), 520);
        assert_eq!(offset_of!(VcpuGuestContext, trap_ctxt), 720);
        assert_eq!(offset_of!(VcpuGuestContext, ldt_base), 4816);
        assert_eq!(offset_of!(VcpuGuestContext, ldt_ents), 4824);
        assert_eq!(offset_of!(VcpuGuestContext, gdt_frames), 4832);
        assert_eq!(offset_of!(VcpuGuestContext, gdt_ents), 4960);
        assert_eq!(offset_of!(VcpuGuestContext, kernel_ss), 4968);
        assert_eq!(offset_of!(VcpuGuestContext, kernel_sp), 4976);
        assert_eq!(offset_of!(VcpuGuestContext, ctrlreg), 4984);
        assert_eq!(offset_of!(VcpuGuestContext, debugreg), 5048);
        assert_eq!(offset_of!(VcpuGuestContext, event_callback_eip), 5112);
        assert_eq!(offset_of!(VcpuGuestContext, failsafe_callback_eip), 5120);
        assert_eq!(offset_of!(VcpuGuestContext, syscall_callback_eip), 5128);
        assert_eq!(offset_of!(VcpuGuestContext, vm_assist), 5136);
        assert_eq!(offset_of!(VcpuGuestContext, fs_base), 5144);
        assert_eq!(offset_of!(VcpuGuestContext, gs_base_kernel), 5152);
        assert_eq!(offset_of!(VcpuGuestContext, gs_base_user), 5160);
        let ctx = VcpuGuestContext::default();
        assert!(ctx.fpu_ctxt.iter().all(|&b| b == 0) && ctx.gs_base_user == 0);
    }
}
