//! Atomic access to pages shared with a guest (shared info, vcpu_info):
//! the guest changes them concurrently, so the hypervisor uses the same
//! locked instructions a guest would, never a plain read-modify-write.

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

use super::frame::{FRAME_SIZE, Frame};

fn addr(frame: Frame, offset: usize, align: usize) -> usize {
    assert!(
        offset.is_multiple_of(align) && offset + align <= FRAME_SIZE as usize,
        "bad shared-page offset"
    );
    frame.start() as usize + offset
}

fn u64_at(frame: Frame, offset: usize) -> &'static AtomicU64 {
    // SAFETY: the frame is RAM, identity-mapped, and the offset is aligned
    // and inside it (asserted). Callers pass frames owned by a live domain
    // (its shared-info page or a page of its p2m), which outlive the call.
    unsafe { AtomicU64::from_ptr(addr(frame, offset, 8) as *mut u64) }
}

fn u32_at(frame: Frame, offset: usize) -> &'static AtomicU32 {
    // SAFETY: as in `u64_at`.
    unsafe { AtomicU32::from_ptr(addr(frame, offset, 4) as *mut u32) }
}

fn u8_at(frame: Frame, offset: usize) -> &'static AtomicU8 {
    // SAFETY: as in `u64_at`.
    unsafe { AtomicU8::from_ptr(addr(frame, offset, 1) as *mut u8) }
}

pub fn fetch_or_u64(frame: Frame, offset: usize, bits: u64) -> u64 {
    u64_at(frame, offset).fetch_or(bits, Ordering::SeqCst)
}

pub fn fetch_and_u64(frame: Frame, offset: usize, mask: u64) -> u64 {
    u64_at(frame, offset).fetch_and(mask, Ordering::SeqCst)
}

pub fn load_u64(frame: Frame, offset: usize) -> u64 {
    u64_at(frame, offset).load(Ordering::SeqCst)
}

pub fn store_u64(frame: Frame, offset: usize, value: u64) {
    u64_at(frame, offset).store(value, Ordering::SeqCst)
}

pub fn load_u32(frame: Frame, offset: usize) -> u32 {
    u32_at(frame, offset).load(Ordering::SeqCst)
}

pub fn store_u32(frame: Frame, offset: usize, value: u32) {
    u32_at(frame, offset).store(value, Ordering::SeqCst)
}

pub fn swap_u8(frame: Frame, offset: usize, value: u8) -> u8 {
    u8_at(frame, offset).swap(value, Ordering::SeqCst)
}

pub fn load_u8(frame: Frame, offset: usize) -> u8 {
    u8_at(frame, offset).load(Ordering::SeqCst)
}

pub fn store_u8(frame: Frame, offset: usize, value: u8) {
    u8_at(frame, offset).store(value, Ordering::SeqCst)
}

/// Compare-and-swap of an aligned u32 in a shared page.
pub fn compare_exchange_u32(frame: Frame, offset: usize, current: u32, new: u32) -> bool {
    u32_at(frame, offset)
        .compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}
