//! Memory management: physical frames, hypervisor page tables and heap.

pub mod frame;
pub mod guest;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod paging;

/// Free memory a domain's build must leave to the hypervisor itself (its
/// page tables, vCPUs, heap growth).
pub const HYPERVISOR_RESERVE_BYTES: u64 = 4 << 20;

#[cfg(target_os = "none")]
pub use global::{IdentityMap, copy_between, frames, init_frames, scrub_and_free, zero_frame};
#[cfg(target_os = "none")]
pub mod shared;

#[cfg(target_os = "none")]
mod global {
    use spin::{Mutex, MutexGuard, Once};

    use super::frame::{FRAME_SIZE, Frame, FrameAllocator, MemRegion, PhysRange};
    use super::guest::HostMemory;

    /// Host frames through the hypervisor's identity map.
    pub struct IdentityMap;

    impl HostMemory for IdentityMap {
        fn read_u64(&self, frame: Frame, offset: usize) -> u64 {
            assert!(offset.is_multiple_of(8) && offset + 8 <= FRAME_SIZE as usize);
            // SAFETY: every RAM frame is identity-mapped; an aligned word
            // inside the frame (asserted); callers pass frames they own.
            unsafe { core::ptr::read((frame.start() as usize + offset) as *const u64) }
        }

        fn read(&self, frame: Frame, offset: usize, buf: &mut [u8]) {
            assert!(offset + buf.len() <= FRAME_SIZE as usize);
            // SAFETY: every RAM frame is identity-mapped; the range stays
            // inside the frame (asserted); callers pass frames they own.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    (frame.start() as usize + offset) as *const u8,
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            }
        }
        fn write(&self, frame: Frame, offset: usize, data: &[u8]) {
            assert!(offset + data.len() <= FRAME_SIZE as usize);
            // SAFETY: as in `read`.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    (frame.start() as usize + offset) as *mut u8,
                    data.len(),
                )
            }
        }
    }

    /// Copies `len` bytes from `src` at `src_offset` to `dst` at
    /// `dst_offset` (the same frame is allowed: overlapping ranges move
    /// as memmove does).
    pub fn copy_between(src: Frame, src_offset: usize, dst: Frame, dst_offset: usize, len: usize) {
        assert!(src_offset + len <= FRAME_SIZE as usize && dst_offset + len <= FRAME_SIZE as usize);
        let from = src.start() as usize + src_offset;
        let to = dst.start() as usize + dst_offset;
        if src == dst || !(from | to | len).is_multiple_of(8) {
            // SAFETY: both ranges lie inside identity-mapped RAM frames
            // (asserted); `copy` allows them to overlap.
            unsafe { core::ptr::copy(from as *const u8, to as *mut u8, len) };
            return;
        }
        // Distinct frames, 8-byte aligned: plain 64-bit moves. The
        // compiler's memcpy is `rep movsq`, which QEMU's TCG runs an
        // iteration at a time — several times slower than a loop of
        // moves, and grant copies are Dom0's whole data path.
        for i in (0..len).step_by(8) {
            // SAFETY: inside the two (different) frames, aligned.
            unsafe {
                let word = core::ptr::read_volatile((from + i) as *const u64);
                core::ptr::write_volatile((to + i) as *mut u64, word);
            }
        }
    }

    /// Zeroes a frame before a domain gets it.
    pub fn zero_frame(frame: Frame) {
        // SAFETY: the caller owns the frame (just allocated, not yet
        // given to anyone); it is identity-mapped RAM.
        unsafe { core::ptr::write_bytes(frame.start() as *mut u8, 0, FRAME_SIZE as usize) };
    }

    /// Zeroes a frame a domain used and returns it to the allocator.
    pub fn scrub_and_free(frame: Frame) {
        // SAFETY: the caller owned the frame and gives it up; it is
        // identity-mapped RAM.
        unsafe { core::ptr::write_bytes(frame.start() as *mut u8, 0, FRAME_SIZE as usize) };
        if let Err(e) = frames().free(frame) {
            log::error!("frame accounting: {e}");
        }
    }

    /// Physical memory Pavise can track: 64 GiB (one bit per 4 KiB frame).
    const BITMAP_WORDS: usize = (64 << 30) / 4096 / 64;
    static mut BITMAP: [u64; BITMAP_WORDS] = [0; BITMAP_WORDS];
    static FRAMES: Once<Mutex<FrameAllocator<'static>>> = Once::new();

    /// Builds the global frame allocator; only the first call has effect.
    pub fn init_frames(regions: &[MemRegion], reserved: &[PhysRange]) {
        FRAMES.call_once(|| {
            // SAFETY: BITMAP is referenced only here, and `call_once` runs
            // this closure at most once, so the `&'static mut` is unique.
            let bitmap = &raw mut BITMAP;
            let storage = unsafe { &mut *bitmap };
            Mutex::new(FrameAllocator::new(storage, regions, reserved))
        });
    }

    /// The global frame allocator.
    ///
    /// # Panics
    /// Before `init_frames`: a boot-order bug, not a runtime condition.
    pub fn frames() -> MutexGuard<'static, FrameAllocator<'static>> {
        FRAMES
            .get()
            .expect("frame allocator used before init_frames")
            .lock()
    }
}
