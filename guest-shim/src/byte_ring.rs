//! Copies between private buffers and the byte arrays of shared rings
//! (XenStore's req/rsp), in at most two runs (`pv_abi::ring::byte_runs`)
//! instead of a byte at a time: one place for Dom0's server and the
//! guest-side client.

use pv_abi::ring::{RingIdx, byte_runs};

/// Copies `src` into the ring array at `base + array` (`size` bytes, a
/// power of two) from free-running index `idx`.
///
/// # Safety
/// `base + array .. base + array + size` is a mapped ring array the caller
/// may write, and `src.len() <= size`.
pub unsafe fn put(base: *mut u8, array: usize, size: u32, idx: RingIdx, src: &[u8]) {
    let mut from = 0;
    for (at, len) in byte_runs(idx, src.len(), size) {
        // SAFETY: `byte_runs` keeps `at + len` within the array (the
        // caller's contract), and `from + len <= src.len()`.
        unsafe { core::ptr::copy_nonoverlapping(src[from..].as_ptr(), base.add(array + at), len) };
        from += len;
    }
}

/// Copies `dst.len()` bytes out of the ring array at `base + array` from
/// free-running index `idx`: each byte is read once, into our buffer.
///
/// # Safety
/// As [`put`], for reading.
pub unsafe fn take(base: *const u8, array: usize, size: u32, idx: RingIdx, dst: &mut [u8]) {
    let mut to = 0;
    for (at, len) in byte_runs(idx, dst.len(), size) {
        // SAFETY: as in `put`, with `to + len <= dst.len()`.
        unsafe {
            core::ptr::copy_nonoverlapping(base.add(array + at), dst[to..].as_mut_ptr(), len)
        };
        to += len;
    }
}
