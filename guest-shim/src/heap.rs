//! The kernel heap behind `alloc`: Talc over a static 1 MiB array in the
//! image's .bss, set up once at start-up, and at most one more region a
//! kernel may add later ([`add_region`]: Dom0 does, for the frames its
//! network switch holds). (A first-fit linked-list allocator cost some 515
//! instructions an allocation and free in Dom0, several of them in every
//! XenStore request; Talc's binned free lists do not walk the heap.)

use core::sync::atomic::{AtomicBool, Ordering};

use talc::{ErrOnOom, Span, Talc, Talck};

/// Bytes the heap manages.
pub const HEAP_SIZE: usize = 1 << 20;

#[repr(C, align(4096))]
struct Space([u8; HEAP_SIZE]);

static mut SPACE: Space = Space([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: Talck<spin::Mutex<()>, ErrOnOom> = Talc::new(ErrOnOom).lock();

/// Whether [`add_region`] has added its region.
static REGION_ADDED: AtomicBool = AtomicBool::new(false);

/// Hands the array to the allocator (boot vCPU, once, before any
/// allocation).
pub(crate) fn init() {
    let space = &raw mut SPACE;
    // SAFETY: SPACE is used by nothing but the allocator, and this runs
    // once, on the boot vCPU, before anything allocates.
    let claimed = unsafe {
        HEAP.lock()
            .claim(Span::from_base_size(space.cast::<u8>(), HEAP_SIZE))
    };
    debug_assert!(claimed.is_ok());
}

/// Adds `region` to the heap (once; false if a region was added before,
/// or if it is too small to hold anything).
pub fn add_region(region: &'static mut [u8]) -> bool {
    if REGION_ADDED.swap(true, Ordering::SeqCst) {
        return false;
    }
    let span = Span::from_base_size(region.as_mut_ptr(), region.len());
    // SAFETY: the region is 'static, exclusively ours (taken by `&mut`)
    // and from now on used by nothing but the allocator.
    unsafe { HEAP.lock().claim(span) }.is_ok()
}
