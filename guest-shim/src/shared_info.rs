//! Our `shared_info` page: a page of the image, mapped once with
//! XENMEM_add_to_physmap (XENMAPSPACE_shared_info), then read and written
//! field by field with atomics, as the hypervisor updates it concurrently.
//! [`crate::events`] uses its event bitmaps and `vcpu_info` upcall flags,
//! [`crate::time`] its `vcpu_time_info`.

use core::mem::offset_of;
use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use pv_abi::shared_info::{
    SHARED_INFO_EVTCHN_MASK, SHARED_INFO_EVTCHN_PENDING, VcpuInfo, VcpuTimeInfo,
    XEN_LEGACY_MAX_VCPUS,
};
use spin::Once;

use crate::hypercall::{self, Errno, Result};

#[repr(C, align(4096))]
struct Page([u8; pv_abi::PAGE_SIZE]);

/// Replaced by the hypervisor's shared_info frame once mapped; never
/// accessed through Rust references.
static mut PAGE: Page = Page([0; pv_abi::PAGE_SIZE]);
static MAPPED: Once<core::result::Result<(), Errno>> = Once::new();

fn base() -> *mut u8 {
    (&raw mut PAGE).cast()
}

/// Maps the page (the first call does; later calls report its result).
pub fn map() -> Result<()> {
    *MAPPED
        .call_once(|| hypercall::map_shared_info(base() as u64 >> pv_abi::PAGE_SHIFT).map(|_| ()))
}

/// The page's guest-physical frame number.
pub fn gfn() -> u64 {
    base() as u64 >> pv_abi::PAGE_SHIFT
}

fn u8_at(offset: usize) -> &'static AtomicU8 {
    assert!(offset < pv_abi::PAGE_SIZE);
    // SAFETY: inside our static page; the hypervisor accesses the same
    // fields atomically.
    unsafe { AtomicU8::from_ptr(base().add(offset)) }
}

fn u32_at(offset: usize) -> &'static AtomicU32 {
    assert!(offset.is_multiple_of(4) && offset + 4 <= pv_abi::PAGE_SIZE);
    // SAFETY: an aligned u32 inside our static page, shared with the
    // hypervisor, which accesses it atomically.
    unsafe { AtomicU32::from_ptr(base().add(offset).cast()) }
}

fn u64_at(offset: usize) -> &'static AtomicU64 {
    assert!(offset.is_multiple_of(8) && offset + 8 <= pv_abi::PAGE_SIZE);
    // SAFETY: an aligned u64 inside our static page, shared with the
    // hypervisor, which accesses it atomically.
    unsafe { AtomicU64::from_ptr(base().add(offset).cast()) }
}

fn vcpu_info(vcpu: usize) -> usize {
    assert!(vcpu < XEN_LEGACY_MAX_VCPUS);
    vcpu * size_of::<VcpuInfo>()
}

/// `vcpu_info[vcpu].evtchn_upcall_pending`.
pub fn upcall_pending(vcpu: usize) -> &'static AtomicU8 {
    u8_at(vcpu_info(vcpu) + offset_of!(VcpuInfo, evtchn_upcall_pending))
}

/// `vcpu_info[vcpu].evtchn_pending_sel`.
pub fn pending_sel(vcpu: usize) -> &'static AtomicU64 {
    u64_at(vcpu_info(vcpu) + offset_of!(VcpuInfo, evtchn_pending_sel))
}

/// Word `word` of `evtchn_pending` (ports `word * 64 ..`).
pub fn pending(word: usize) -> &'static AtomicU64 {
    u64_at(SHARED_INFO_EVTCHN_PENDING + word * 8)
}

/// Word `word` of `evtchn_mask`.
pub fn mask(word: usize) -> &'static AtomicU64 {
    u64_at(SHARED_INFO_EVTCHN_MASK + word * 8)
}

/// A consistent copy of `vcpu_info[vcpu].time` (retried while the
/// hypervisor is updating it: odd or changed version).
pub fn time(vcpu: usize) -> VcpuTimeInfo {
    let at = vcpu_info(vcpu) + offset_of!(VcpuInfo, time);
    let version = u32_at(at + offset_of!(VcpuTimeInfo, version));
    loop {
        let v = version.load(Ordering::Acquire);
        if v & 1 != 0 {
            core::hint::spin_loop();
            continue;
        }
        let scale =
            u64_at(at + offset_of!(VcpuTimeInfo, tsc_to_system_mul)).load(Ordering::Acquire);
        let t = VcpuTimeInfo {
            version: v,
            tsc_timestamp: u64_at(at + offset_of!(VcpuTimeInfo, tsc_timestamp))
                .load(Ordering::Acquire),
            system_time: u64_at(at + offset_of!(VcpuTimeInfo, system_time)).load(Ordering::Acquire),
            // mul (u32), shift (i8), flags (u8), pad: one aligned u64.
            tsc_to_system_mul: scale as u32,
            tsc_shift: (scale >> 32) as u8 as i8,
            flags: (scale >> 40) as u8,
            ..Default::default()
        };
        if version.load(Ordering::Acquire) == v {
            return t;
        }
    }
}
