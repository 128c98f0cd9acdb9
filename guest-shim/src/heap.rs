//! The kernel heap behind `alloc`: a linked-list allocator over a static
//! 1 MiB array in the image's .bss, set up once at start-up.

use linked_list_allocator::LockedHeap;

/// Bytes the heap manages.
pub const HEAP_SIZE: usize = 1 << 20;

#[repr(C, align(4096))]
struct Space([u8; HEAP_SIZE]);

static mut SPACE: Space = Space([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Hands the array to the allocator (boot vCPU, once, before any
/// allocation).
pub(crate) fn init() {
    let space = &raw mut SPACE;
    // SAFETY: SPACE is used by nothing but the allocator, and this runs
    // once, on the boot vCPU, before anything allocates.
    unsafe { HEAP.lock().init(space.cast::<u8>(), HEAP_SIZE) };
}
