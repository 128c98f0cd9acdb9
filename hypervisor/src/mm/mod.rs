//! Memory management: physical frames, hypervisor page tables and heap.

pub mod frame;
pub mod guest;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod paging;

#[cfg(target_os = "none")]
pub use global::{frames, init_frames};

#[cfg(target_os = "none")]
mod global {
    use spin::{Mutex, MutexGuard, Once};

    use super::frame::{FrameAllocator, MemRegion, PhysRange};

    /// Physical memory Pavise can track: 64 GiB (one bit per 4 KiB frame).
    const BITMAP_WORDS: usize = (64 << 30) / 4096 / 64;
    static mut BITMAP: [u64; BITMAP_WORDS] = [0; BITMAP_WORDS];
    static FRAMES: Once<Mutex<FrameAllocator<'static>>> = Once::new();

    /// Builds the global frame allocator; only the first call has effect.
    pub fn init_frames(regions: &[MemRegion], reserved: &[PhysRange]) {
        FRAMES.call_once(|| {
            // SAFETY: BITMAP is referenced only here, and `call_once` runs
            // this closure at most once, so the `&'static mut` is unique.
            let storage = unsafe { &mut *&raw mut BITMAP };
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
