//! Page-aligned memory from the heap for what is shared with other
//! domains (ring pages, indirect pages, buffers): the front ends grant
//! it by frame number, which in this identity-mapped guest is the
//! address shifted by 12.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ptr::NonNull;

use pv_abi::PAGE_SIZE;

/// Page-aligned, zeroed memory from the heap, freed on drop (ring pages,
/// indirect pages, buffers for callers who have none).
pub struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

impl PageBuf {
    /// `len` bytes (rounded up to whole pages), zeroed; `None` when the
    /// heap is out.
    pub fn zeroed(len: usize) -> Option<Self> {
        let size = len.max(1).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let layout = Layout::from_size_align(size, PAGE_SIZE).ok()?;
        // SAFETY: the layout has a nonzero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(PageBuf { ptr, len, layout })
    }

    /// The address of the first byte (page-aligned; also its
    /// guest-physical address).
    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// Gives the memory up for good: a backend may still map it.
    pub fn leak(self) {
        core::mem::forget(self);
    }
}

impl core::ops::Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len` bytes allocated by `zeroed`, owned by self.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl core::ops::DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`, and self is borrowed mutably.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: allocated by `zeroed` with this layout.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Hands out, once, the RAM above the image and everything the loader
/// placed ([`crate::StartInfo::free_ram`]), within the identity-mapped
/// first 4 GiB: Dom0 keeps the files the host uploads there. `None` the
/// second time or if there is none.
#[cfg(target_os = "none")]
pub fn take_free_ram(info: &crate::StartInfo<'_>) -> Option<&'static mut [u8]> {
    use core::sync::atomic::{AtomicBool, Ordering};
    static TAKEN: AtomicBool = AtomicBool::new(false);
    unsafe extern "C" {
        static __guest_image_end: u8;
    }
    let image_end = &raw const __guest_image_end as u64;
    let (start, end) = info.free_ram(image_end)?;
    let end = end.min(1 << 32);
    if start >= end || TAKEN.swap(true, Ordering::SeqCst) {
        return None;
    }
    // SAFETY: [start, end) is RAM of ours (the memory map says so) above
    // the image and everything the start info describes, so nothing else
    // uses it; it is below 4 GiB, which the identity map covers; TAKEN
    // makes this the only slice of it ever made.
    Some(unsafe { core::slice::from_raw_parts_mut(start as *mut u8, (end - start) as usize) })
}
