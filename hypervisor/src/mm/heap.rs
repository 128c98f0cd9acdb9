//! The hypervisor heap: `linked_list_allocator` over contiguous frames.

use linked_list_allocator::LockedHeap;

use super::frame::FRAME_SIZE;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

pub const HEAP_SIZE: u64 = 8 << 20;

/// Takes `HEAP_SIZE` of contiguous frames and makes them the heap.
pub fn init() -> Result<(), &'static str> {
    let frames = (HEAP_SIZE / FRAME_SIZE) as usize;
    let start = super::frames()
        .alloc_contiguous(frames, 1)
        .ok_or("no contiguous memory for the hypervisor heap")?;
    // SAFETY: the frames were just taken from the allocator, so nothing
    // else uses them, and they are identity-mapped read-write.
    unsafe {
        HEAP.lock()
            .init(start.start() as *mut u8, HEAP_SIZE as usize)
    };
    Ok(())
}
