//! The hypercall page and typed wrappers around Xen's hypercalls.
//!
//! At start-up, `init` finds the hypervisor ([`crate::discovery`]) and
//! installs the hypercall page: a page-aligned static whose guest-physical
//! address (identity-mapped, so its address) is written to the MSR CPUID
//! names; the hypervisor fills it with 32-byte stubs
//! `mov eax, N; vmmcall; ret`.
//! Hypercall N is `call page + N * 32` with arguments in rdi, rsi, rdx,
//! r10, r8 and the result in rax, a negative Xen errno on failure.
//!
//! Wrappers return `Result<_, Errno>`; [`raw`] makes any call with any
//! arguments (for the hostile tests). Without a hypervisor every call
//! fails with `ENOSYS`. Event-channel and grant-table operations live in
//! [`crate::events`] and [`crate::grants`].

use core::sync::atomic::{AtomicBool, Ordering};

use pv_abi::hypercall::{
    ConsoleIoCmd, FeatureInfo, HvmEvtchnUpcallVector, HvmOp, HvmParam, Hypercall, SchedOp,
    SchedPoll, SchedShutdown, ShutdownReason, VcpuHvmContext, VcpuOp, VcpuRegisterVcpuInfo,
    VcpuSetSingleshotTimer, XEN_EXTRAVERSION_LEN, XenVer,
};
use pv_abi::memory::{
    AddToPhysmap, AddToPhysmapBatch, E820_ENTRY_SIZE, MemoryMap, XENMAPSPACE_GMFN_FOREIGN,
    XENMAPSPACE_SHARED_INFO, XENMEM_ADD_TO_PHYSMAP, XENMEM_ADD_TO_PHYSMAP_BATCH, XENMEM_MEMORY_MAP,
};
use spin::Once;

use crate::discovery::{self, Hypervisor};

pub use pv_abi::DOMID_SELF;
pub use pv_abi::errno::Errno;

pub type Result<T> = core::result::Result<T, Errno>;

#[repr(C, align(4096))]
struct Page([u8; pv_abi::PAGE_SIZE]);

/// Written by the hypervisor only (when we write its address to the MSR).
static mut HYPERCALL_PAGE: Page = Page([0; pv_abi::PAGE_SIZE]);
static HYPERVISOR: Once<Option<Hypervisor>> = Once::new();
static AVAILABLE: AtomicBool = AtomicBool::new(false);

/// Finds the hypervisor and installs the hypercall page (boot vCPU, at
/// start-up). Without one, hypercalls stay unavailable.
pub(crate) fn init() {
    let hv = HYPERVISOR.call_once(|| Hypervisor::find(discovery::cpuid));
    let Some(hv) = hv else { return };
    if hv.hypercall_pages == 0 {
        return;
    }
    let page = &raw mut HYPERCALL_PAGE as u64;
    // SAFETY: the MSR CPUID names installs the hypercall page at the
    // guest-physical address written (page index 0 in bits 11:0); the page
    // is ours, page-aligned and identity-mapped, and only the hypervisor
    // writes it.
    unsafe {
        core::arch::asm!(
            "wrmsr",
            in("ecx") hv.hypercall_msr,
            in("eax") page as u32,
            in("edx") (page >> 32) as u32,
            options(nostack),
        )
    };
    AVAILABLE.store(true, Ordering::SeqCst);
}

/// The hypervisor found at start-up (`None` when running bare).
pub fn hypervisor() -> Option<&'static Hypervisor> {
    HYPERVISOR.get().and_then(Option::as_ref)
}

/// Whether hypercalls can be made (the hypercall page is installed).
pub fn available() -> bool {
    AVAILABLE.load(Ordering::SeqCst)
}

/// Hypercall `nr` with five arguments: rax as the hypervisor left it
/// (`-ENOSYS` without a hypervisor or for `nr` beyond the page).
///
/// # Safety
/// Pointer arguments must be what the hypercall expects: the hypervisor
/// may write wherever they point. (Hostile tests pass deliberately bad
/// ones, which the hypervisor must refuse.)
pub unsafe fn raw(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    let stubs = pv_abi::cpuid::HYPERCALL_STUBS as u64;
    if !available() || nr >= stubs {
        return Errno::ENOSYS.as_ret();
    }
    let stub = &raw const HYPERCALL_PAGE as u64 + nr * pv_abi::cpuid::HYPERCALL_STUB_SIZE as u64;
    let ret: i64;
    // SAFETY: the stub is `mov eax, nr; vmmcall; ret`, written by the
    // hypervisor; arguments follow Xen's 64-bit convention, and Xen may
    // clobber every argument register. Memory the arguments point at may
    // be read or written (the asm is not `nomem`).
    unsafe {
        core::arch::asm!(
            "call {stub}",
            stub = in(reg) stub,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("rax") ret,
        )
    };
    ret
}

/// A hypercall whose pointer arguments point at live values of the types
/// the sub-op expects (every wrapper below).
fn call(nr: Hypercall, a1: u64, a2: u64, a3: u64) -> Result<u64> {
    // SAFETY: the wrappers pass pointers to live, correctly laid out
    // values that the hypercall may read or write.
    Errno::check_ret(unsafe { raw(nr.raw() as u64, a1, a2, a3, 0, 0) })
}

/// A pointer argument the hypervisor only reads.
fn arg<T>(value: &T) -> u64 {
    core::ptr::from_ref(value) as u64
}

/// A pointer argument the hypervisor may write.
fn arg_mut<T>(value: &mut T) -> u64 {
    core::ptr::from_mut(value) as u64
}

// ---------------------------------------------------------------------------
// xen_version
// ---------------------------------------------------------------------------

/// XENVER_version: (major, minor).
pub fn xen_version() -> Result<(u16, u16)> {
    let v = call(Hypercall::XenVersion, XenVer::Version.raw().into(), 0, 0)?;
    Ok(((v >> 16) as u16, v as u16))
}

/// XENVER_extraversion: the version suffix, e.g. "-pavise" or ".0".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extraversion([u8; XEN_EXTRAVERSION_LEN]);

impl Extraversion {
    /// The text up to its NUL (the valid UTF-8 prefix).
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        let bytes = &self.0[..len];
        core::str::from_utf8(bytes)
            .or_else(|e| core::str::from_utf8(&bytes[..e.valid_up_to()]))
            .unwrap_or("")
    }
}

pub fn xen_extraversion() -> Result<Extraversion> {
    let mut buf = [0u8; XEN_EXTRAVERSION_LEN];
    call(
        Hypercall::XenVersion,
        XenVer::Extraversion.raw().into(),
        arg_mut(&mut buf),
        0,
    )?;
    Ok(Extraversion(buf))
}

/// XENVER_get_features: the bits of feature submap `submap`
/// (`1 << XENFEAT_x`).
pub fn xen_features(submap: u32) -> Result<u32> {
    let mut info = FeatureInfo {
        submap_idx: submap,
        submap: 0,
    };
    call(
        Hypercall::XenVersion,
        XenVer::GetFeatures.raw().into(),
        arg_mut(&mut info),
        0,
    )?;
    Ok(info.submap)
}

// ---------------------------------------------------------------------------
// console_io
// ---------------------------------------------------------------------------

/// CONSOLEIO_write to the hypervisor console.
pub fn console_write(bytes: &[u8]) -> Result<u64> {
    call(
        Hypercall::ConsoleIo,
        ConsoleIoCmd::Write.raw().into(),
        bytes.len() as u64,
        bytes.as_ptr() as u64,
    )
}

/// CONSOLEIO_read (privileged domains): how many bytes of console input
/// were copied into `buf`.
pub fn console_read(buf: &mut [u8]) -> Result<usize> {
    call(
        Hypercall::ConsoleIo,
        ConsoleIoCmd::Read.raw().into(),
        buf.len() as u64,
        buf.as_mut_ptr() as u64,
    )
    .map(|n| n as usize)
}

// ---------------------------------------------------------------------------
// sched_op
// ---------------------------------------------------------------------------

/// SCHEDOP_yield: let other vCPUs run.
pub fn sched_yield() -> Result<u64> {
    call(Hypercall::SchedOp, SchedOp::Yield.raw().into(), 0, 0)
}

/// SCHEDOP_block: sleep until an event is pending (returns at once if
/// one already is).
pub fn sched_block() -> Result<u64> {
    call(Hypercall::SchedOp, SchedOp::Block.raw().into(), 0, 0)
}

/// SCHEDOP_shutdown: end the domain (returns only on failure).
pub fn sched_shutdown(reason: ShutdownReason) -> Result<u64> {
    let arg_struct = SchedShutdown {
        reason: reason.raw(),
    };
    call(
        Hypercall::SchedOp,
        SchedOp::Shutdown.raw().into(),
        arg(&arg_struct),
        0,
    )
}

/// SCHEDOP_poll: sleep until one of `ports` is pending or the system time
/// reaches `timeout_ns` (0: no time-out).
pub fn sched_poll(ports: &[u32], timeout_ns: u64) -> Result<u64> {
    let poll = SchedPoll {
        ports: ports.as_ptr() as u64,
        nr_ports: ports.len() as u32,
        pad: 0,
        timeout: timeout_ns,
    };
    call(
        Hypercall::SchedOp,
        SchedOp::Poll.raw().into(),
        arg(&poll),
        0,
    )
}

// ---------------------------------------------------------------------------
// memory_op
// ---------------------------------------------------------------------------

/// One entry of the XENMEM_memory_map buffer: Xen's packed
/// `struct e820entry` (20 bytes).
// TODO(pv-abi): move (pv-abi has only E820_ENTRY_SIZE).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, packed)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    /// E820 type: 1 RAM, 2 reserved, ... (as `MemmapType`).
    pub kind: u32,
}

const _: () = assert!(size_of::<E820Entry>() == E820_ENTRY_SIZE);

/// XENMEM_memory_map: fills `entries` with our memory map; returns how
/// many were written.
pub fn memory_map(entries: &mut [E820Entry]) -> Result<usize> {
    let mut map = MemoryMap {
        nr_entries: u32::try_from(entries.len()).unwrap_or(u32::MAX),
        pad: 0,
        buffer: entries.as_mut_ptr() as u64,
    };
    call(Hypercall::MemoryOp, XENMEM_MEMORY_MAP, arg_mut(&mut map), 0)?;
    Ok((map.nr_entries as usize).min(entries.len()))
}

/// XENMEM_add_to_physmap for ourselves: make page `idx` of map space
/// `space` (`XENMAPSPACE_*`) appear at our frame `gpfn`.
pub fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> Result<u64> {
    let req = AddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space,
        idx,
        gpfn,
    };
    call(Hypercall::MemoryOp, XENMEM_ADD_TO_PHYSMAP, arg(&req), 0)
}

/// Maps our shared_info page at frame `gpfn`.
pub fn map_shared_info(gpfn: u64) -> Result<u64> {
    add_to_physmap(XENMAPSPACE_SHARED_INFO, 0, gpfn)
}

/// Maps `foreign_domid`'s frame `gfn` at our frame `gpfn` (privileged
/// domains): XENMEM_add_to_physmap_batch with XENMAPSPACE_gmfn_foreign.
pub fn map_foreign_page(foreign_domid: u16, gfn: u64, gpfn: u64) -> Result<()> {
    let (idx, target, mut err) = (gfn, gpfn, 0i32);
    let req = AddToPhysmapBatch {
        domid: DOMID_SELF,
        space: XENMAPSPACE_GMFN_FOREIGN,
        size: 1,
        foreign_domid,
        idxs: arg(&idx),
        gpfns: arg(&target),
        errs: arg_mut(&mut err),
    };
    call(
        Hypercall::MemoryOp,
        XENMEM_ADD_TO_PHYSMAP_BATCH,
        arg(&req),
        0,
    )?;
    // The per-page status the hypervisor wrote through `errs`.
    match Errno::from_ret(err.into()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// XENMEM_remove_from_physmap for ourselves: undoes a foreign mapping at
/// our frame `gpfn` (our own page returns there).
pub fn unmap_foreign_page(gpfn: u64) -> Result<()> {
    let req = pv_abi::memory::RemoveFromPhysmap {
        domid: DOMID_SELF,
        pad: [0; 3],
        gpfn,
    };
    call(
        Hypercall::MemoryOp,
        pv_abi::memory::XENMEM_REMOVE_FROM_PHYSMAP,
        arg(&req),
        0,
    )
    .map(|_| ())
}

/// XENMEM_populate_physmap for `domid` (another domain: privileged only):
/// backs the extents of `2^order` pages starting at each of `gfns`.
/// Returns how many extents were populated (fewer than asked: the next
/// one could not be).
pub fn populate_physmap(domid: u16, order: u32, gfns: &[u64]) -> Result<usize> {
    reservation_op(
        pv_abi::memory::XENMEM_POPULATE_PHYSMAP,
        &reservation(domid, order, gfns),
    )
}

/// XENMEM_decrease_reservation (ballooning out): gives back the extents
/// of `2^order` pages starting at each of `gfns`, which become holes.
/// Returns how many extents went (fewer than asked: the next could not).
pub fn decrease_reservation(domid: u16, order: u32, gfns: &[u64]) -> Result<usize> {
    reservation_op(
        pv_abi::memory::XENMEM_DECREASE_RESERVATION,
        &reservation(domid, order, gfns),
    )
}

/// XENMEM_increase_reservation: `count` extents of `2^order` pages for
/// `domid` that a translated guest owns without a place in its physmap
/// (as Xen, no frame numbers are returned). Returns how many it got.
pub fn increase_reservation(domid: u16, order: u32, count: u64) -> Result<usize> {
    let mut req = reservation(domid, order, &[]);
    req.nr_extents = count;
    reservation_op(pv_abi::memory::XENMEM_INCREASE_RESERVATION, &req)
}

/// `struct xen_memory_reservation`, for the reservation family (fields
/// public so tests can pass bad ones to [`reservation_op`]).
pub type Reservation = pv_abi::memory::MemoryReservation;

/// A request for the extents of `2^order` pages at each of `gfns`.
fn reservation(domid: u16, order: u32, gfns: &[u64]) -> Reservation {
    Reservation {
        extent_start: gfns.as_ptr() as u64,
        nr_extents: gfns.len() as u64,
        extent_order: order,
        mem_flags: 0,
        domid,
        pad: [0; 3],
    }
}

/// A reservation-family memory_op (`cmd`, with any continuation bits)
/// on `req` as given: the count of extents done.
pub fn reservation_op(cmd: u64, req: &Reservation) -> Result<usize> {
    call(Hypercall::MemoryOp, cmd, arg(req), 0).map(|n| n as usize)
}

/// A memory_op whose argument is a `domid_t` (XENMEM_current_reservation,
/// _maximum_reservation, _maximum_gpfn): its answer.
pub fn memory_op_on_domain(cmd: u64, domid: u16) -> Result<u64> {
    call(Hypercall::MemoryOp, cmd, arg(&domid), 0)
}

/// XENMEM_maximum_ram_page: one past the host's highest RAM frame.
pub fn maximum_ram_page() -> Result<u64> {
    call(
        Hypercall::MemoryOp,
        pv_abi::memory::XENMEM_MAXIMUM_RAM_PAGE,
        0,
        0,
    )
}

// ---------------------------------------------------------------------------
// hvm_op
// ---------------------------------------------------------------------------

/// HVMOP_get_param for our own domain (`HVM_PARAM_*`).
pub fn hvm_get_param(index: u32) -> Result<u64> {
    hvm_get_param_of(DOMID_SELF, index)
}

/// HVMOP_get_param for domain `domid` (another domain: privileged only).
pub fn hvm_get_param_of(domid: u16, index: u32) -> Result<u64> {
    let mut p = HvmParam {
        domid,
        pad: 0,
        index,
        value: 0,
    };
    call(
        Hypercall::HvmOp,
        HvmOp::GetParam.raw().into(),
        arg_mut(&mut p),
        0,
    )?;
    Ok(p.value)
}

/// HVMOP_set_param for our own domain.
pub fn hvm_set_param(index: u32, value: u64) -> Result<u64> {
    hvm_set_param_of(DOMID_SELF, index, value)
}

/// HVMOP_set_param for domain `domid` (another domain: privileged only).
pub fn hvm_set_param_of(domid: u16, index: u32, value: u64) -> Result<u64> {
    let p = HvmParam {
        domid,
        pad: 0,
        index,
        value,
    };
    call(Hypercall::HvmOp, HvmOp::SetParam.raw().into(), arg(&p), 0)
}

/// HVMOP_set_evtchn_upcall_vector: deliver `vcpu`'s event upcalls by
/// injecting `vector`.
pub fn set_evtchn_upcall_vector(vcpu: u32, vector: u8) -> Result<u64> {
    let req = HvmEvtchnUpcallVector {
        vcpu,
        vector,
        pad: [0; 3],
    };
    call(
        Hypercall::HvmOp,
        HvmOp::SetEvtchnUpcallVector.raw().into(),
        arg(&req),
        0,
    )
}

// ---------------------------------------------------------------------------
// vcpu_op
// ---------------------------------------------------------------------------

fn vcpu_op(cmd: VcpuOp, vcpu: u32, arg_ptr: u64) -> Result<u64> {
    call(Hypercall::VcpuOp, cmd.raw().into(), vcpu.into(), arg_ptr)
}

/// VCPUOP_initialise: the start state of down vCPU `vcpu`
/// (`vcpu_hvm_context`).
pub fn vcpu_initialise(vcpu: u32, ctx: &VcpuHvmContext) -> Result<u64> {
    vcpu_op(VcpuOp::Initialise, vcpu, arg(ctx))
}

/// VCPUOP_up: start an initialised vCPU.
pub fn vcpu_up(vcpu: u32) -> Result<u64> {
    vcpu_op(VcpuOp::Up, vcpu, 0)
}

/// VCPUOP_is_up.
pub fn vcpu_is_up(vcpu: u32) -> Result<bool> {
    vcpu_op(VcpuOp::IsUp, vcpu, 0).map(|up| up != 0)
}

/// VCPUOP_register_vcpu_info: move `vcpu`'s `vcpu_info` to byte `offset`
/// of our frame `gfn`.
pub fn register_vcpu_info(vcpu: u32, gfn: u64, offset: u32) -> Result<u64> {
    let req = VcpuRegisterVcpuInfo {
        mfn: gfn,
        offset,
        rsvd: 0,
    };
    vcpu_op(VcpuOp::RegisterVcpuInfo, vcpu, arg(&req))
}

/// VCPUOP_set_singleshot_timer: VIRQ_TIMER for `vcpu` at system time
/// `deadline_ns` (`flags`: `VCPU_SSHOTTMR_*`).
pub fn set_singleshot_timer(vcpu: u32, deadline_ns: u64, flags: u32) -> Result<u64> {
    let req = VcpuSetSingleshotTimer {
        timeout_abs_ns: deadline_ns,
        flags,
        pad: 0,
    };
    vcpu_op(VcpuOp::SetSingleshotTimer, vcpu, arg(&req))
}

// ---------------------------------------------------------------------------
// physdev_op (the privileged domain's device interrupts)
// ---------------------------------------------------------------------------

/// PHYSDEVOP_map_pirq of type GSI: the pirq that now stands for `gsi`.
pub fn physdev_map_gsi(gsi: u32) -> Result<u32> {
    use pv_abi::physdev::{MAP_PIRQ_TYPE_GSI, PHYSDEVOP_MAP_PIRQ, PhysdevMapPirq};
    let mut op = PhysdevMapPirq {
        domid: DOMID_SELF,
        r#type: MAP_PIRQ_TYPE_GSI,
        index: gsi as i32,
        pirq: -1,
        ..Default::default()
    };
    call(
        Hypercall::PhysdevOp,
        PHYSDEVOP_MAP_PIRQ,
        arg_mut(&mut op),
        0,
    )?;
    Ok(op.pirq as u32)
}

/// PHYSDEVOP_eoi: the device behind `pirq` has been served.
pub fn physdev_eoi(pirq: u32) -> Result<()> {
    use pv_abi::physdev::{PHYSDEVOP_EOI, PhysdevEoi};
    let op = PhysdevEoi { irq: pirq };
    call(Hypercall::PhysdevOp, PHYSDEVOP_EOI, arg(&op), 0).map(|_| ())
}

// ---------------------------------------------------------------------------
// domctl and sysctl (the privileged interface)
// ---------------------------------------------------------------------------

/// A domctl; the hypervisor writes its answer back into `op`.
pub fn domctl(op: &mut pv_abi::domctl::Domctl) -> Result<u64> {
    call(Hypercall::Domctl, arg_mut(op), 0, 0)
}

/// A sysctl; the hypervisor writes its answer back into `op`.
pub fn sysctl(op: &mut pv_abi::sysctl::Sysctl) -> Result<u64> {
    call(Hypercall::Sysctl, arg_mut(op), 0, 0)
}
