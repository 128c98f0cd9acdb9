//! The kernel heap behind `alloc`: a linked-list allocator over a static
//! 1 MiB array in the image's .bss, set up once at start-up, and at most
//! one more region a kernel may add later ([`add_region`]: Dom0 does, for
//! the frames its network switch holds).

use core::alloc::{GlobalAlloc, Layout};

use linked_list_allocator::LockedHeap;

/// Bytes the heap manages.
pub const HEAP_SIZE: usize = 1 << 20;

#[repr(C, align(4096))]
struct Space([u8; HEAP_SIZE]);

static mut SPACE: Space = Space([0; HEAP_SIZE]);

/// The static array first, then the added region.
struct Heaps {
    first: LockedHeap,
    second: LockedHeap,
}

// SAFETY: each block comes from one of two disjoint allocators and goes
// back to the one whose range holds it; both are locked heaps.
unsafe impl GlobalAlloc for Heaps {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let ptr = unsafe { self.first.alloc(layout) };
        if !ptr.is_null() {
            return ptr;
        }
        // SAFETY: as above.
        unsafe { self.second.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let in_first = {
            let first = self.first.lock();
            (first.bottom()..first.top()).contains(&ptr)
        };
        let heap = if in_first { &self.first } else { &self.second };
        // SAFETY: `ptr` came from `heap` (the ranges are disjoint) with
        // `layout`.
        unsafe { heap.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static HEAP: Heaps = Heaps {
    first: LockedHeap::empty(),
    second: LockedHeap::empty(),
};

/// Hands the array to the allocator (boot vCPU, once, before any
/// allocation).
pub(crate) fn init() {
    let space = &raw mut SPACE;
    // SAFETY: SPACE is used by nothing but the allocator, and this runs
    // once, on the boot vCPU, before anything allocates.
    unsafe { HEAP.first.lock().init(space.cast::<u8>(), HEAP_SIZE) };
}

/// Adds `region` to the heap (once; false if a region was added before).
pub fn add_region(region: &'static mut [u8]) -> bool {
    let mut second = HEAP.second.lock();
    if second.size() != 0 {
        return false;
    }
    // SAFETY: the region is 'static, exclusively ours (taken by `&mut`)
    // and from now on used by nothing but the allocator.
    unsafe { second.init(region.as_mut_ptr(), region.len()) };
    true
}

/// Bytes free in the heap (both regions).
pub fn free_bytes() -> usize {
    HEAP.first.lock().free() + HEAP.second.lock().free()
}
