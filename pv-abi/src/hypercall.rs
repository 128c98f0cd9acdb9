//! Hypercall numbers (xen.h `__HYPERVISOR_*`), special domain ids, and the
//! sub-operations and argument structs of the smaller hypercall families:
//! console_io, sched_op (sched.h), vcpu_op (vcpu.h, hvm/hvm_vcpu.h),
//! xen_version (version.h, features.h), hvm_op (hvm/hvm_op.h,
//! hvm/params.h), vm_assist and multicall. memory_op lives in
//! [`crate::memory`], event_channel_op in [`crate::event_channel`] and
//! grant_table_op in [`crate::grant_table`].
//!
//! x86_64 calling convention: number in `rax`; arguments in `rdi`, `rsi`,
//! `rdx`, `r10`, `r8`; result in `rax`, a negative [`crate::errno::Errno`]
//! on failure. Pointer arguments and pointer fields ("guest handles") are
//! guest virtual addresses, 64 bits wide.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The x86_64 registers carrying hypercall arguments 1 to 5, in order.
pub const ARG_REGISTERS: [&str; 5] = ["rdi", "rsi", "rdx", "r10", "r8"];

abi_enum! {
    /// Hypercall numbers (`__HYPERVISOR_*`), the value in `rax`.
    pub enum Hypercall: u32 {
        SetTrapTable = 0,
        MmuUpdate = 1,
        SetGdt = 2,
        StackSwitch = 3,
        SetCallbacks = 4,
        FpuTaskswitch = 5,
        /// Obsolete form of sched_op (compat since 0x00030101).
        SchedOpCompat = 6,
        /// Formerly dom0_op.
        PlatformOp = 7,
        SetDebugreg = 8,
        GetDebugreg = 9,
        UpdateDescriptor = 10,
        MemoryOp = 12,
        Multicall = 13,
        UpdateVaMapping = 14,
        /// Arm the one-shot timer: argument = absolute system time in ns.
        SetTimerOp = 15,
        /// Obsolete form of event_channel_op (compat since 0x00030202).
        EventChannelOpCompat = 16,
        XenVersion = 17,
        ConsoleIo = 18,
        /// Obsolete form of physdev_op (compat since 0x00030202).
        PhysdevOpCompat = 19,
        GrantTableOp = 20,
        VmAssist = 21,
        UpdateVaMappingOtherdomain = 22,
        /// x86 PV only; its hypercall-page slot holds `ud2` for HVM/PVH.
        Iret = 23,
        VcpuOp = 24,
        SetSegmentBase = 25,
        MmuextOp = 26,
        XsmOp = 27,
        NmiOp = 28,
        SchedOp = 29,
        CallbackOp = 30,
        XenoprofOp = 31,
        EventChannelOp = 32,
        PhysdevOp = 33,
        HvmOp = 34,
        Sysctl = 35,
        Domctl = 36,
        KexecOp = 37,
        TmemOp = 38,
        ArgoOp = 39,
        XenpmuOp = 40,
        DmOp = 41,
        HypfsOp = 42,
        Arch0 = 48,
        Arch1 = 49,
        Arch2 = 50,
        Arch3 = 51,
        Arch4 = 52,
        Arch5 = 53,
        Arch6 = 54,
        Arch7 = 55,
    }
}

impl TryFrom<u64> for Hypercall {
    type Error = u64;

    /// The hypercall `rax` names; the error is the unknown number.
    fn try_from(rax: u64) -> Result<Self, u64> {
        Hypercall::from_reg(rax).ok_or(rax)
    }
}

// ---------------------------------------------------------------------------
// Domain ids (xen.h)
// ---------------------------------------------------------------------------

/// `domid_t`.
pub type DomId = u16;

/// Ids at or above this are special, never an ordinary domain.
pub const DOMID_FIRST_RESERVED: DomId = 0x7ff0;
/// The calling domain itself.
pub const DOMID_SELF: DomId = 0x7ff0;
/// I/O memory pseudo-domain.
pub const DOMID_IO: DomId = 0x7ff1;
/// Xen's own pages.
pub const DOMID_XEN: DomId = 0x7ff2;
/// Owner of shared (copy-on-write) pages.
pub const DOMID_COW: DomId = 0x7ff3;
/// Unknown owner.
pub const DOMID_INVALID: DomId = 0x7ff4;
/// No specific domain requested.
pub const DOMID_ANY: DomId = 0x7ff5;
/// The idle domain.
pub const DOMID_IDLE: DomId = 0x7fff;
/// Mask of valid domain id bits.
pub const DOMID_MASK: DomId = 0x7fff;

/// Whether `domid` can name an ordinary domain (below
/// [`DOMID_FIRST_RESERVED`]).
pub const fn is_ordinary_domid(domid: DomId) -> bool {
    domid < DOMID_FIRST_RESERVED
}

// ---------------------------------------------------------------------------
// console_io (xen.h)
// ---------------------------------------------------------------------------

abi_enum! {
    /// `CONSOLEIO_*`: console_io(cmd, count, buffer).
    pub enum ConsoleIoCmd: u32 {
        /// Write `count` bytes from `buffer` to the hypervisor console.
        Write = 0,
        /// Read up to `count` bytes of console input (privileged).
        Read = 1,
    }
}

// ---------------------------------------------------------------------------
// sched_op (sched.h)
// ---------------------------------------------------------------------------

abi_enum! {
    /// `SCHEDOP_*`: sched_op(cmd, arg).
    pub enum SchedOp: u32 {
        /// Give up the CPU voluntarily; arg unused.
        Yield = 0,
        /// Block until an event is pending; arg unused.
        Block = 1,
        /// Shut down the caller; arg = [`SchedShutdown`].
        Shutdown = 2,
        /// Block until one of some ports is pending or a timeout; arg =
        /// [`SchedPoll`].
        Poll = 3,
        /// Shut down another domain (privileged); arg =
        /// [`SchedRemoteShutdown`].
        RemoteShutdown = 4,
        /// Record the shutdown reason without shutting down; arg =
        /// [`SchedShutdown`].
        ShutdownCode = 5,
        /// Set up, poke or destroy a domain watchdog; arg =
        /// [`SchedWatchdog`].
        Watchdog = 6,
        /// Override the vCPU's pinning (hardware domain); arg = `int32_t`.
        PinOverride = 7,
    }
}

abi_enum! {
    /// `SHUTDOWN_*`: `enum sched_shutdown_reason`.
    pub enum ShutdownReason: u32 {
        /// Exited normally: clean up and kill.
        Poweroff = 0,
        /// Clean up, kill, and restart.
        Reboot = 1,
        /// Clean up, save suspend info, kill.
        Suspend = 2,
        /// The domain crashed.
        Crash = 3,
        /// Restart because the watchdog expired.
        Watchdog = 4,
        /// Soft reset: keep the domain, rebuild it.
        SoftReset = 5,
    }
}

/// Highest valid shutdown reason (`SHUTDOWN_MAX`).
pub const SHUTDOWN_MAX: u32 = 5;

/// `struct sched_shutdown`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SchedShutdown {
    /// A [`ShutdownReason`].
    pub reason: u32,
}

/// `struct sched_poll`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SchedPoll {
    /// Guest handle: array of `evtchn_port_t`.
    pub ports: u64,
    pub nr_ports: u32,
    pub pad: u32,
    /// Absolute system time in ns; 0 means no timeout.
    pub timeout: u64,
}

/// `struct sched_remote_shutdown`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SchedRemoteShutdown {
    pub domain_id: DomId,
    pub pad: u16,
    /// A [`ShutdownReason`].
    pub reason: u32,
}

/// `struct sched_watchdog`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SchedWatchdog {
    /// 0 to create a new watchdog, else the id to poke or destroy.
    pub id: u32,
    /// Seconds; 0 destroys the watchdog.
    pub timeout: u32,
}

// ---------------------------------------------------------------------------
// vcpu_op (vcpu.h): vcpu_op(cmd, vcpuid, arg)
// ---------------------------------------------------------------------------

abi_enum! {
    /// `VCPUOP_*`.
    pub enum VcpuOp: u32 {
        /// Set the initial state of a down vCPU; for HVM/PVH guests arg =
        /// [`VcpuHvmContext`].
        Initialise = 0,
        /// Start an initialised vCPU.
        Up = 1,
        /// Stop a vCPU.
        Down = 2,
        /// Returns 1 if the vCPU is up, else 0.
        IsUp = 3,
        /// arg = [`VcpuRunstateInfo`] (out).
        GetRunstateInfo = 4,
        /// arg = [`VcpuRegisterRunstateMemoryArea`].
        RegisterRunstateMemoryArea = 5,
        /// arg = [`VcpuSetPeriodicTimer`].
        SetPeriodicTimer = 6,
        /// arg = NULL.
        StopPeriodicTimer = 7,
        /// arg = [`VcpuSetSingleshotTimer`].
        SetSingleshotTimer = 8,
        /// arg = NULL.
        StopSingleshotTimer = 9,
        /// Move the vCPU's `vcpu_info` into guest memory; arg =
        /// [`VcpuRegisterVcpuInfo`].
        RegisterVcpuInfo = 10,
        /// Send an NMI to the vCPU; arg = NULL.
        SendNmi = 11,
        /// arg = [`VcpuGetPhysid`] (out).
        GetPhysid = 12,
        /// arg = [`VcpuRegisterTimeMemoryArea`].
        RegisterVcpuTimeMemoryArea = 13,
        /// Like 5 but by guest-physical address.
        RegisterRunstatePhysArea = 14,
        /// Like 13 but by guest-physical address.
        RegisterVcpuTimePhysArea = 15,
    }
}

/// `VCPU_SSHOTTMR_future`: fail with `ETIME` if the timeout has passed.
pub const VCPU_SSHOTTMR_FUTURE: u32 = 1 << 0;

/// `RUNSTATE_running`.
pub const RUNSTATE_RUNNING: i32 = 0;
/// `RUNSTATE_runnable`.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// `RUNSTATE_blocked`.
pub const RUNSTATE_BLOCKED: i32 = 2;
/// `RUNSTATE_offline`.
pub const RUNSTATE_OFFLINE: i32 = 3;
/// `XEN_RUNSTATE_UPDATE`: set in `state_entry_time` while updating.
pub const XEN_RUNSTATE_UPDATE: u64 = 1 << 63;

/// `struct vcpu_register_vcpu_info`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuRegisterVcpuInfo {
    /// Frame (GFN for PVH) of the page to hold the `vcpu_info`.
    pub mfn: u64,
    /// Offset of the `vcpu_info` within that page.
    pub offset: u32,
    pub rsvd: u32,
}

/// `struct vcpu_set_singleshot_timer`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuSetSingleshotTimer {
    /// Absolute system time in ns.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*`.
    pub flags: u32,
    pub pad: u32,
}

/// `struct vcpu_set_periodic_timer`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuSetPeriodicTimer {
    pub period_ns: u64,
}

/// `struct vcpu_runstate_info`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuRunstateInfo {
    /// `RUNSTATE_*`.
    pub state: i32,
    pub pad: u32,
    /// System time (ns) at which `state` was entered.
    pub state_entry_time: u64,
    /// Time (ns) spent in each `RUNSTATE_*`.
    pub time: [u64; 4],
}

/// `struct vcpu_register_runstate_memory_area` (the address union is a
/// guest virtual address).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuRegisterRunstateMemoryArea {
    pub addr: u64,
}

/// `struct vcpu_register_time_memory_area` (the address union is a guest
/// virtual address).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuRegisterTimeMemoryArea {
    pub addr: u64,
}

/// `struct vcpu_get_physid`: APIC id in bits 31:0, ACPI id in 63:32.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuGetPhysid {
    pub phys_id: u64,
}

/// `VCPU_HVM_MODE_32B`: [`VcpuHvmContext::cpu_regs`] holds [`VcpuHvmX86_32`].
pub const VCPU_HVM_MODE_32B: u32 = 0;
/// `VCPU_HVM_MODE_64B`: [`VcpuHvmContext::cpu_regs`] holds [`VcpuHvmX86_64`].
pub const VCPU_HVM_MODE_64B: u32 = 1;

/// `struct vcpu_hvm_x86_32` (hvm/hvm_vcpu.h): 32-bit start state.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuHvmX86_32 {
    pub eax: u32,
    pub ecx: u32,
    pub edx: u32,
    pub ebx: u32,
    pub esp: u32,
    pub ebp: u32,
    pub esi: u32,
    pub edi: u32,
    pub eip: u32,
    pub eflags: u32,
    pub cr0: u32,
    pub cr3: u32,
    pub cr4: u32,
    pub pad1: u32,
    pub efer: u64,
    pub cs_base: u32,
    pub ds_base: u32,
    pub ss_base: u32,
    pub es_base: u32,
    pub tr_base: u32,
    pub cs_limit: u32,
    pub ds_limit: u32,
    pub ss_limit: u32,
    pub es_limit: u32,
    pub tr_limit: u32,
    pub cs_ar: u16,
    pub ds_ar: u16,
    pub ss_ar: u16,
    pub es_ar: u16,
    pub tr_ar: u16,
    pub pad2: [u16; 3],
}

/// `struct vcpu_hvm_x86_64` (hvm/hvm_vcpu.h): 64-bit start state (flat
/// segments implied).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuHvmX86_64 {
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbx: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// `struct vcpu_hvm_context` (hvm/hvm_vcpu.h), the VCPUOP_initialise
/// argument of HVM/PVH guests. The C union `cpu_regs` is kept as raw
/// words; read it with [`VcpuHvmContext::regs_32`] or
/// [`VcpuHvmContext::regs_64`] according to `mode`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuHvmContext {
    /// `VCPU_HVM_MODE_*`.
    pub mode: u32,
    pub pad: u32,
    /// `union { vcpu_hvm_x86_32 x86_32; vcpu_hvm_x86_64 x86_64; }`.
    pub cpu_regs: [u64; 15],
}

impl VcpuHvmContext {
    /// The union read as 32-bit state.
    pub fn regs_32(&self) -> VcpuHvmX86_32 {
        read_prefix(self.cpu_regs.as_bytes())
    }

    /// The union read as 64-bit state.
    pub fn regs_64(&self) -> VcpuHvmX86_64 {
        read_prefix(self.cpu_regs.as_bytes())
    }

    /// A 64-bit start context.
    pub fn new_64(regs: &VcpuHvmX86_64) -> Self {
        let mut ctx = VcpuHvmContext {
            mode: VCPU_HVM_MODE_64B,
            ..Default::default()
        };
        write_prefix(ctx.cpu_regs.as_mut_bytes(), regs.as_bytes());
        ctx
    }

    /// A 32-bit start context.
    pub fn new_32(regs: &VcpuHvmX86_32) -> Self {
        let mut ctx = VcpuHvmContext {
            mode: VCPU_HVM_MODE_32B,
            ..Default::default()
        };
        write_prefix(ctx.cpu_regs.as_mut_bytes(), regs.as_bytes());
        ctx
    }
}

/// Reads a `T` from the start of `bytes`, which the callers guarantee is
/// long enough (zeroes otherwise).
fn read_prefix<T: FromBytes>(bytes: &[u8]) -> T {
    match T::read_from_prefix(bytes) {
        Ok((value, _)) => value,
        Err(_) => T::new_zeroed(),
    }
}

/// Copies `src` to the start of `dst` (as much as fits).
fn write_prefix(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    dst[..n].copy_from_slice(&src[..n]);
}

// ---------------------------------------------------------------------------
// xen_version (version.h, features.h): xen_version(cmd, arg)
// ---------------------------------------------------------------------------

abi_enum! {
    /// `XENVER_*`.
    pub enum XenVer: u32 {
        /// arg = NULL; returns `major << 16 | minor`.
        Version = 0,
        /// arg = `char[XEN_EXTRAVERSION_LEN]`.
        Extraversion = 1,
        /// arg = [`CompileInfo`].
        CompileInfo = 2,
        /// arg = `char[XEN_CAPABILITIES_INFO_LEN]`.
        Capabilities = 3,
        /// arg = `char[XEN_CHANGESET_INFO_LEN]`.
        Changeset = 4,
        /// arg = [`PlatformParameters`].
        PlatformParameters = 5,
        /// arg = [`FeatureInfo`].
        GetFeatures = 6,
        /// arg = NULL; returns the page size.
        Pagesize = 7,
        /// arg = `xen_domain_handle_t` (16 bytes).
        GuestHandle = 8,
        /// arg = `char[XEN_COMMANDLINE_LEN]`.
        Commandline = 9,
        /// arg = `xen_build_id`.
        BuildId = 10,
        /// arg = `xen_varbuf`.
        Extraversion2 = 11,
        /// arg = `xen_varbuf`.
        Capabilities2 = 12,
        /// arg = `xen_varbuf`.
        Changeset2 = 13,
        /// arg = `xen_varbuf`.
        Commandline2 = 14,
    }
}

/// XENVER_version's result for `major.minor`.
pub const fn xen_version_value(major: u16, minor: u16) -> u32 {
    (major as u32) << 16 | minor as u32
}

/// `sizeof(xen_extraversion_t)`.
pub const XEN_EXTRAVERSION_LEN: usize = 16;
/// `sizeof(xen_capabilities_info_t)`.
pub const XEN_CAPABILITIES_INFO_LEN: usize = 1024;
/// `sizeof(xen_changeset_info_t)`.
pub const XEN_CHANGESET_INFO_LEN: usize = 64;
/// `sizeof(xen_commandline_t)`.
pub const XEN_COMMANDLINE_LEN: usize = 1024;
/// `sizeof(xen_domain_handle_t)`.
pub const XEN_DOMAIN_HANDLE_LEN: usize = 16;

/// `struct xen_feature_info` (XENVER_get_features).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct FeatureInfo {
    /// In: which 32-bit submap.
    pub submap_idx: u32,
    /// Out: the submap's bits (`1 << XENFEAT_x` for x in this submap).
    pub submap: u32,
}

/// `struct xen_compile_info` (XENVER_compile_info).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CompileInfo {
    pub compiler: [u8; 64],
    pub compile_by: [u8; 16],
    pub compile_domain: [u8; 32],
    pub compile_date: [u8; 32],
}

zeroed_default!(CompileInfo);

/// `struct xen_platform_parameters` (XENVER_platform_parameters).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PlatformParameters {
    pub virt_start: u64,
}

/// `XENFEAT_writable_page_tables`.
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
/// `XENFEAT_writable_descriptor_tables`.
pub const XENFEAT_WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// `XENFEAT_auto_translated_physmap`: the guest sees guest-physical frames
/// (always set for PVH).
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// `XENFEAT_supervisor_mode_kernel`.
pub const XENFEAT_SUPERVISOR_MODE_KERNEL: u32 = 3;
/// `XENFEAT_pae_pgdir_above_4gb`.
pub const XENFEAT_PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `XENFEAT_mmu_pt_update_preserve_ad`.
pub const XENFEAT_MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// `XENFEAT_highmem_assist`.
pub const XENFEAT_HIGHMEM_ASSIST: u32 = 6;
/// `XENFEAT_gnttab_map_avail_bits`.
pub const XENFEAT_GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// `XENFEAT_hvm_callback_vector`: HVM_PARAM_CALLBACK_IRQ accepts the
/// vector type.
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
/// `XENFEAT_hvm_safe_pvclock`: pvclock is safe to use.
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// `XENFEAT_hvm_pirqs`.
pub const XENFEAT_HVM_PIRQS: u32 = 10;
/// `XENFEAT_dom0`: operation as Dom0 is supported.
pub const XENFEAT_DOM0: u32 = 11;
/// `XENFEAT_grant_map_identity`.
pub const XENFEAT_GRANT_MAP_IDENTITY: u32 = 12;
/// `XENFEAT_memory_op_vnode_supported`.
pub const XENFEAT_MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// `XENFEAT_ARM_SMCCC_supported`.
pub const XENFEAT_ARM_SMCCC_SUPPORTED: u32 = 14;
/// `XENFEAT_linux_rsdp_unrestricted`.
pub const XENFEAT_LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// `XENFEAT_not_direct_mapped`.
pub const XENFEAT_NOT_DIRECT_MAPPED: u32 = 16;
/// `XENFEAT_direct_mapped`.
pub const XENFEAT_DIRECT_MAPPED: u32 = 17;
/// `XENFEAT_runstate_phys_area`.
pub const XENFEAT_RUNSTATE_PHYS_AREA: u32 = 18;
/// `XENFEAT_vcpu_time_phys_area`.
pub const XENFEAT_VCPU_TIME_PHYS_AREA: u32 = 19;
/// `XENFEAT_dm_msix_all_writes`.
pub const XENFEAT_DM_MSIX_ALL_WRITES: u32 = 20;
/// `XENFEAT_NR_SUBMAPS`: number of 32-bit feature submaps.
pub const XENFEAT_NR_SUBMAPS: u32 = 1;

/// The submap index and bit mask of feature `feat` (`XENFEAT_*`).
pub const fn feature_position(feat: u32) -> (u32, u32) {
    (feat / 32, 1 << (feat % 32))
}

// ---------------------------------------------------------------------------
// hvm_op (hvm/hvm_op.h, hvm/params.h): hvm_op(cmd, arg)
// ---------------------------------------------------------------------------

abi_enum! {
    /// `HVMOP_*`.
    pub enum HvmOp: u32 {
        /// arg = [`HvmParam`].
        SetParam = 0,
        /// arg = [`HvmParam`].
        GetParam = 1,
        SetPciIntxLevel = 2,
        SetIsaIrqLevel = 3,
        SetPciLinkRoute = 4,
        /// Flush all vCPU TLBs; arg = NULL.
        FlushTlbs = 5,
        PagetableDying = 9,
        /// arg = [`HvmGetTime`].
        GetTime = 10,
        Xentrace = 11,
        SetMemAccess = 12,
        GetMemAccess = 13,
        GetMemType = 15,
        /// Per-vCPU upcall vector; arg = [`HvmEvtchnUpcallVector`].
        SetEvtchnUpcallVector = 23,
        GuestRequestVmEvent = 24,
        Altp2m = 25,
    }
}

/// `struct xen_hvm_param`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvmParam {
    /// In: the domain (usually [`DOMID_SELF`]).
    pub domid: DomId,
    pub pad: u16,
    /// In: `HVM_PARAM_*`.
    pub index: u32,
    /// In (set) or out (get).
    pub value: u64,
}

/// `struct xen_hvm_evtchn_upcall_vector`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvmEvtchnUpcallVector {
    pub vcpu: u32,
    pub vector: u8,
    pub pad: [u8; 3],
}

/// `struct xen_hvm_get_time`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvmGetTime {
    /// Out: system time in ns.
    pub now: u64,
}

/// How vCPU 0's event-channel upcall is delivered (0 = not delivered).
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
/// XenStore ring page (a GFN).
pub const HVM_PARAM_STORE_PFN: u32 = 1;
/// XenStore event channel port.
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
pub const HVM_PARAM_IOREQ_PFN: u32 = 5;
pub const HVM_PARAM_BUFIOREQ_PFN: u32 = 6;
pub const HVM_PARAM_VIRIDIAN: u32 = 9;
pub const HVM_PARAM_TIMER_MODE: u32 = 10;
pub const HVM_PARAM_HPET_ENABLED: u32 = 11;
pub const HVM_PARAM_IDENT_PT: u32 = 12;
pub const HVM_PARAM_ACPI_S_STATE: u32 = 14;
pub const HVM_PARAM_VM86_TSS: u32 = 15;
pub const HVM_PARAM_VPT_ALIGN: u32 = 16;
/// PV console ring page (a GFN).
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
/// PV console event channel port.
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
pub const HVM_PARAM_ACPI_IOPORTS_LOCATION: u32 = 19;
pub const HVM_PARAM_PAGING_RING_PFN: u32 = 27;
pub const HVM_PARAM_MONITOR_RING_PFN: u32 = 28;
pub const HVM_PARAM_SHARING_RING_PFN: u32 = 29;
/// `SHUTDOWN_*` action on a triple fault.
pub const HVM_PARAM_TRIPLE_FAULT_REASON: u32 = 31;
pub const HVM_PARAM_IOREQ_SERVER_PFN: u32 = 32;
pub const HVM_PARAM_NR_IOREQ_SERVER_PAGES: u32 = 33;
pub const HVM_PARAM_VM_GENERATION_ID_ADDR: u32 = 34;
pub const HVM_PARAM_ALTP2M: u32 = 35;
pub const HVM_PARAM_X87_FIP_WIDTH: u32 = 36;
pub const HVM_PARAM_VM86_TSS_SIZED: u32 = 37;
pub const HVM_PARAM_MCA_CAP: u32 = 38;
/// Number of HVM parameters (`HVM_NR_PARAMS`): valid indices are below.
pub const HVM_NR_PARAMS: u32 = 39;

/// Bits 63:56 of an HVM_PARAM_CALLBACK_IRQ value: the delivery type.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_MASK: u64 = 0xff00_0000_0000_0000;
/// Shift of the delivery type within HVM_PARAM_CALLBACK_IRQ.
pub const HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT: u32 = 56;
/// Type 0: `value[55:0]` is a GSI (GSI 0 is impossible: value 0 disables).
pub const HVM_PARAM_CALLBACK_TYPE_GSI: u8 = 0;
/// Type 1: a PCI INTx line: domain `value[47:32]`, bus `[31:16]`, devfn
/// `[15:8]`, INTx `[1:0]`.
pub const HVM_PARAM_CALLBACK_TYPE_PCI_INTX: u8 = 1;
/// Type 2 (x86): `value[7:0]` is an IDT vector, injected directly.
pub const HVM_PARAM_CALLBACK_TYPE_VECTOR: u8 = 2;

/// A decoded HVM_PARAM_CALLBACK_IRQ value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackVia {
    /// Value 0: notifications are not delivered.
    None,
    /// Through a GSI (nonzero, 56 bits).
    Gsi(u64),
    /// Through a PCI INTx line.
    PciIntx {
        domain: u16,
        bus: u16,
        devfn: u8,
        intx: u8,
    },
    /// Straight to an IDT vector (requires XENFEAT_hvm_callback_vector).
    Vector(u8),
}

impl CallbackVia {
    /// Decodes a guest-written value; `None` for an unknown type or bits
    /// set where the type defines none.
    pub const fn decode(value: u64) -> Option<CallbackVia> {
        if value == 0 {
            return Some(CallbackVia::None);
        }
        let ty = (value >> HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT) as u8;
        let rest = value & !HVM_PARAM_CALLBACK_IRQ_TYPE_MASK;
        match ty {
            HVM_PARAM_CALLBACK_TYPE_GSI => Some(CallbackVia::Gsi(rest)),
            HVM_PARAM_CALLBACK_TYPE_PCI_INTX => {
                if rest & 0x00ff_0000_0000_00fc != 0 {
                    return None;
                }
                Some(CallbackVia::PciIntx {
                    domain: (rest >> 32) as u16,
                    bus: (rest >> 16) as u16,
                    devfn: (rest >> 8) as u8,
                    intx: (rest & 3) as u8,
                })
            }
            HVM_PARAM_CALLBACK_TYPE_VECTOR => {
                if rest > 0xff {
                    return None;
                }
                Some(CallbackVia::Vector(rest as u8))
            }
            _ => None,
        }
    }

    /// The parameter value for this delivery method (GSI truncated to 56
    /// bits).
    pub const fn encode(self) -> u64 {
        match self {
            CallbackVia::None => 0,
            CallbackVia::Gsi(gsi) => gsi & !HVM_PARAM_CALLBACK_IRQ_TYPE_MASK,
            CallbackVia::PciIntx {
                domain,
                bus,
                devfn,
                intx,
            } => {
                (HVM_PARAM_CALLBACK_TYPE_PCI_INTX as u64) << HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT
                    | (domain as u64) << 32
                    | (bus as u64) << 16
                    | (devfn as u64) << 8
                    | (intx & 3) as u64
            }
            CallbackVia::Vector(v) => callback_vector(v),
        }
    }
}

/// The HVM_PARAM_CALLBACK_IRQ value for delivery by `vector`
/// (`2 << 56 | vector`).
pub const fn callback_vector(vector: u8) -> u64 {
    (HVM_PARAM_CALLBACK_TYPE_VECTOR as u64) << HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT | vector as u64
}

// ---------------------------------------------------------------------------
// vm_assist (xen.h): vm_assist(cmd, type)
// ---------------------------------------------------------------------------

/// `VMASST_CMD_enable`.
pub const VMASST_CMD_ENABLE: u32 = 0;
/// `VMASST_CMD_disable`.
pub const VMASST_CMD_DISABLE: u32 = 1;
/// `VMASST_TYPE_4gb_segments`.
pub const VMASST_TYPE_4GB_SEGMENTS: u32 = 0;
/// `VMASST_TYPE_4gb_segments_notify`.
pub const VMASST_TYPE_4GB_SEGMENTS_NOTIFY: u32 = 1;
/// `VMASST_TYPE_writable_pagetables`.
pub const VMASST_TYPE_WRITABLE_PAGETABLES: u32 = 2;
/// `VMASST_TYPE_pae_extended_cr3`.
pub const VMASST_TYPE_PAE_EXTENDED_CR3: u32 = 3;
/// `VMASST_TYPE_architectural_iopl`.
pub const VMASST_TYPE_ARCHITECTURAL_IOPL: u32 = 4;
/// `VMASST_TYPE_runstate_update_flag`.
pub const VMASST_TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;
/// `VMASST_TYPE_m2p_strict`.
pub const VMASST_TYPE_M2P_STRICT: u32 = 32;

// ---------------------------------------------------------------------------
// multicall (xen.h): multicall(call_list, nr_calls)
// ---------------------------------------------------------------------------

/// `struct multicall_entry`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MulticallEntry {
    /// Hypercall number.
    pub op: u64,
    /// Out: its return value.
    pub result: u64,
    /// Arguments (Xen uses the first five).
    pub args: [u64; 6],
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn hypercall_numbers() {
        let expected = [
            (Hypercall::SetTrapTable, 0),
            (Hypercall::PlatformOp, 7),
            (Hypercall::UpdateDescriptor, 10),
            (Hypercall::MemoryOp, 12),
            (Hypercall::Multicall, 13),
            (Hypercall::SetTimerOp, 15),
            (Hypercall::XenVersion, 17),
            (Hypercall::ConsoleIo, 18),
            (Hypercall::GrantTableOp, 20),
            (Hypercall::VmAssist, 21),
            (Hypercall::Iret, 23),
            (Hypercall::VcpuOp, 24),
            (Hypercall::SchedOp, 29),
            (Hypercall::EventChannelOp, 32),
            (Hypercall::PhysdevOp, 33),
            (Hypercall::HvmOp, 34),
            (Hypercall::Sysctl, 35),
            (Hypercall::Domctl, 36),
            (Hypercall::DmOp, 41),
            (Hypercall::HypfsOp, 42),
            (Hypercall::Arch0, 48),
            (Hypercall::Arch7, 55),
        ];
        for (h, n) in expected {
            assert_eq!(h.raw(), n);
            assert_eq!(Hypercall::try_from(u64::from(n)), Ok(h));
        }
        assert_eq!(Hypercall::ALL.len(), 50);
        assert_eq!(Hypercall::try_from(11u64), Err(11));
        assert_eq!(Hypercall::try_from(43u64), Err(43));
        assert_eq!(Hypercall::try_from(56u64), Err(56));
        assert_eq!(Hypercall::try_from(1u64 << 32 | 12), Err(1 << 32 | 12));
        for &h in Hypercall::ALL {
            assert_eq!(Hypercall::try_from(h.raw()), Ok(h));
            assert!(h.raw() < 128, "every hypercall has a hypercall-page slot");
        }
    }

    #[test]
    fn domids() {
        assert_eq!(DOMID_SELF, 0x7ff0);
        assert_eq!(DOMID_IO, 0x7ff1);
        assert_eq!(DOMID_XEN, 0x7ff2);
        assert_eq!(DOMID_COW, 0x7ff3);
        assert_eq!(DOMID_INVALID, 0x7ff4);
        assert_eq!(DOMID_ANY, 0x7ff5);
        assert_eq!(DOMID_IDLE, 0x7fff);
        assert!(is_ordinary_domid(0));
        assert!(is_ordinary_domid(0x7fef));
        assert!(!is_ordinary_domid(DOMID_SELF));
        assert!(!is_ordinary_domid(0xffff));
    }

    #[test]
    fn sub_op_numbers() {
        assert_eq!(ConsoleIoCmd::Write.raw(), 0);
        assert_eq!(ConsoleIoCmd::Read.raw(), 1);
        assert_eq!(SchedOp::Yield.raw(), 0);
        assert_eq!(SchedOp::Block.raw(), 1);
        assert_eq!(SchedOp::Shutdown.raw(), 2);
        assert_eq!(SchedOp::Poll.raw(), 3);
        assert_eq!(SchedOp::PinOverride.raw(), 7);
        assert_eq!(SchedOp::from_reg(3), Some(SchedOp::Poll));
        assert_eq!(SchedOp::from_reg(8), None);
        assert_eq!(ShutdownReason::Poweroff.raw(), 0);
        assert_eq!(ShutdownReason::Reboot.raw(), 1);
        assert_eq!(ShutdownReason::Suspend.raw(), 2);
        assert_eq!(ShutdownReason::Crash.raw(), 3);
        assert_eq!(ShutdownReason::SoftReset.raw(), SHUTDOWN_MAX);
        assert_eq!(ShutdownReason::try_from(6), Err(6));
        assert_eq!(VcpuOp::Initialise.raw(), 0);
        assert_eq!(VcpuOp::Up.raw(), 1);
        assert_eq!(VcpuOp::Down.raw(), 2);
        assert_eq!(VcpuOp::IsUp.raw(), 3);
        assert_eq!(VcpuOp::SetSingleshotTimer.raw(), 8);
        assert_eq!(VcpuOp::StopSingleshotTimer.raw(), 9);
        assert_eq!(VcpuOp::RegisterVcpuInfo.raw(), 10);
        assert_eq!(VcpuOp::RegisterVcpuTimePhysArea.raw(), 15);
        assert_eq!(XenVer::Version.raw(), 0);
        assert_eq!(XenVer::Extraversion.raw(), 1);
        assert_eq!(XenVer::GetFeatures.raw(), 6);
        assert_eq!(XenVer::Pagesize.raw(), 7);
        assert_eq!(XenVer::Commandline2.raw(), 14);
        assert_eq!(HvmOp::SetParam.raw(), 0);
        assert_eq!(HvmOp::GetParam.raw(), 1);
        assert_eq!(HvmOp::GetTime.raw(), 10);
        assert_eq!(HvmOp::SetEvtchnUpcallVector.raw(), 23);
        assert_eq!(HvmOp::try_from(6), Err(6));
    }

    #[test]
    fn features_and_params() {
        assert_eq!(XENFEAT_AUTO_TRANSLATED_PHYSMAP, 2);
        assert_eq!(XENFEAT_SUPERVISOR_MODE_KERNEL, 3);
        assert_eq!(XENFEAT_HVM_CALLBACK_VECTOR, 8);
        assert_eq!(XENFEAT_HVM_SAFE_PVCLOCK, 9);
        assert_eq!(XENFEAT_DOM0, 11);
        assert_eq!(XENFEAT_LINUX_RSDP_UNRESTRICTED, 15);
        assert_eq!(XENFEAT_DM_MSIX_ALL_WRITES, 20);
        assert_eq!(feature_position(XENFEAT_HVM_CALLBACK_VECTOR), (0, 0x100));
        assert_eq!(feature_position(33), (1, 2));
        assert_eq!(xen_version_value(4, 19), 0x0004_0013);
        assert_eq!(HVM_PARAM_CALLBACK_IRQ, 0);
        assert_eq!(HVM_PARAM_STORE_PFN, 1);
        assert_eq!(HVM_PARAM_STORE_EVTCHN, 2);
        assert_eq!(HVM_PARAM_CONSOLE_PFN, 17);
        assert_eq!(HVM_PARAM_CONSOLE_EVTCHN, 18);
        assert_eq!(HVM_PARAM_TRIPLE_FAULT_REASON, 31);
        assert_eq!(HVM_PARAM_MCA_CAP, 38);
        assert_eq!(HVM_NR_PARAMS, 39);
        assert_eq!(VMASST_TYPE_RUNSTATE_UPDATE_FLAG, 5);
    }

    #[test]
    fn callback_irq_encoding() {
        assert_eq!(callback_vector(0xf3), 0x0200_0000_0000_00f3);
        assert_eq!(
            CallbackVia::decode(0x0200_0000_0000_00f3),
            Some(CallbackVia::Vector(0xf3))
        );
        assert_eq!(CallbackVia::decode(0x0200_0000_0000_0100), None);
        assert_eq!(CallbackVia::decode(0), Some(CallbackVia::None));
        assert_eq!(CallbackVia::decode(28), Some(CallbackVia::Gsi(28)));
        assert_eq!(CallbackVia::decode(0x0300_0000_0000_0001), None);
        let intx = CallbackVia::PciIntx {
            domain: 0,
            bus: 0,
            devfn: 3 << 3,
            intx: 1,
        };
        assert_eq!(intx.encode(), 0x0100_0000_0000_1801);
        assert_eq!(CallbackVia::decode(intx.encode()), Some(intx));
        assert_eq!(CallbackVia::decode(0x0100_0000_0000_1805), None);
        for via in [
            CallbackVia::None,
            CallbackVia::Gsi(9),
            CallbackVia::Vector(0x20),
            intx,
        ] {
            assert_eq!(CallbackVia::decode(via.encode()), Some(via));
        }
    }

    #[test]
    fn sched_layouts() {
        assert_eq!(size_of::<SchedShutdown>(), 4);
        assert_eq!(size_of::<SchedPoll>(), 24);
        assert_eq!(offset_of!(SchedPoll, ports), 0);
        assert_eq!(offset_of!(SchedPoll, nr_ports), 8);
        assert_eq!(offset_of!(SchedPoll, timeout), 16);
        assert_eq!(size_of::<SchedRemoteShutdown>(), 8);
        assert_eq!(offset_of!(SchedRemoteShutdown, domain_id), 0);
        assert_eq!(offset_of!(SchedRemoteShutdown, reason), 4);
        assert_eq!(size_of::<SchedWatchdog>(), 8);
        assert_eq!(offset_of!(SchedWatchdog, timeout), 4);
    }

    #[test]
    fn vcpu_layouts() {
        assert_eq!(size_of::<VcpuRegisterVcpuInfo>(), 16);
        assert_eq!(offset_of!(VcpuRegisterVcpuInfo, mfn), 0);
        assert_eq!(offset_of!(VcpuRegisterVcpuInfo, offset), 8);
        assert_eq!(offset_of!(VcpuRegisterVcpuInfo, rsvd), 12);
        assert_eq!(size_of::<VcpuSetSingleshotTimer>(), 16);
        assert_eq!(offset_of!(VcpuSetSingleshotTimer, timeout_abs_ns), 0);
        assert_eq!(offset_of!(VcpuSetSingleshotTimer, flags), 8);
        assert_eq!(size_of::<VcpuSetPeriodicTimer>(), 8);
        assert_eq!(size_of::<VcpuRunstateInfo>(), 48);
        assert_eq!(offset_of!(VcpuRunstateInfo, state_entry_time), 8);
        assert_eq!(offset_of!(VcpuRunstateInfo, time), 16);
        assert_eq!(size_of::<VcpuRegisterRunstateMemoryArea>(), 8);
        assert_eq!(size_of::<VcpuRegisterTimeMemoryArea>(), 8);
        assert_eq!(size_of::<VcpuGetPhysid>(), 8);
    }

    #[test]
    fn vcpu_hvm_context_layouts() {
        assert_eq!(size_of::<VcpuHvmX86_32>(), 120);
        assert_eq!(offset_of!(VcpuHvmX86_32, eip), 32);
        assert_eq!(offset_of!(VcpuHvmX86_32, cr0), 40);
        assert_eq!(offset_of!(VcpuHvmX86_32, cr4), 48);
        assert_eq!(offset_of!(VcpuHvmX86_32, efer), 56);
        assert_eq!(offset_of!(VcpuHvmX86_32, cs_base), 64);
        assert_eq!(offset_of!(VcpuHvmX86_32, tr_base), 80);
        assert_eq!(offset_of!(VcpuHvmX86_32, cs_limit), 84);
        assert_eq!(offset_of!(VcpuHvmX86_32, tr_limit), 100);
        assert_eq!(offset_of!(VcpuHvmX86_32, cs_ar), 104);
        assert_eq!(offset_of!(VcpuHvmX86_32, tr_ar), 112);
        assert_eq!(offset_of!(VcpuHvmX86_32, pad2), 114);
        assert_eq!(size_of::<VcpuHvmX86_64>(), 112);
        assert_eq!(offset_of!(VcpuHvmX86_64, rip), 64);
        assert_eq!(offset_of!(VcpuHvmX86_64, rflags), 72);
        assert_eq!(offset_of!(VcpuHvmX86_64, cr3), 88);
        assert_eq!(offset_of!(VcpuHvmX86_64, efer), 104);
        assert_eq!(size_of::<VcpuHvmContext>(), 128);
        assert_eq!(offset_of!(VcpuHvmContext, mode), 0);
        assert_eq!(offset_of!(VcpuHvmContext, cpu_regs), 8);
    }

    #[test]
    fn vcpu_hvm_context_union() {
        let regs = VcpuHvmX86_64 {
            rip: 0x1000,
            rsp: 0x2000,
            cr3: 0x3000,
            efer: 0x500,
            ..Default::default()
        };
        let ctx = VcpuHvmContext::new_64(&regs);
        assert_eq!(ctx.mode, VCPU_HVM_MODE_64B);
        assert_eq!(ctx.cpu_regs[8], 0x1000);
        assert_eq!(ctx.regs_64(), regs);
        let regs32 = VcpuHvmX86_32 {
            eip: 0x10_0000,
            cs_ar: 0xc9b,
            tr_ar: 0x8b,
            ..Default::default()
        };
        let ctx = VcpuHvmContext::new_32(&regs32);
        assert_eq!(ctx.mode, VCPU_HVM_MODE_32B);
        assert_eq!(ctx.regs_32(), regs32);
        // eip is the ninth u32: the low half of the fifth word.
        assert_eq!(ctx.cpu_regs[4], 0x10_0000);
    }

    #[test]
    fn version_and_hvm_layouts() {
        assert_eq!(size_of::<FeatureInfo>(), 8);
        assert_eq!(offset_of!(FeatureInfo, submap), 4);
        assert_eq!(size_of::<CompileInfo>(), 144);
        assert_eq!(offset_of!(CompileInfo, compile_by), 64);
        assert_eq!(offset_of!(CompileInfo, compile_domain), 80);
        assert_eq!(offset_of!(CompileInfo, compile_date), 112);
        assert_eq!(size_of::<PlatformParameters>(), 8);
        assert_eq!(size_of::<HvmParam>(), 16);
        assert_eq!(offset_of!(HvmParam, domid), 0);
        assert_eq!(offset_of!(HvmParam, index), 4);
        assert_eq!(offset_of!(HvmParam, value), 8);
        assert_eq!(size_of::<HvmEvtchnUpcallVector>(), 8);
        assert_eq!(offset_of!(HvmEvtchnUpcallVector, vector), 4);
        assert_eq!(size_of::<HvmGetTime>(), 8);
        assert_eq!(size_of::<MulticallEntry>(), 64);
        assert_eq!(offset_of!(MulticallEntry, result), 8);
        assert_eq!(offset_of!(MulticallEntry, args), 16);
    }
}
