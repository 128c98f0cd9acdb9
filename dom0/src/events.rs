//! Event bookkeeping for Dom0: maps the shared-info page and acknowledges
//! pending events (Dom0 polls its backends after every wake-up, so it
//! needs no per-port dispatch yet).

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use guest_shim::{hypercall, println};

#[repr(C, align(4096))]
struct Page([u8; 4096]);

static mut SHARED_INFO: Page = Page([0; 4096]);
const PENDING: usize = 0x800;
const WORDS: usize = 64;

fn shared() -> *mut u8 {
    (&raw mut SHARED_INFO) as *mut u8
}

pub fn init() {
    if let Err(e) = hypercall::map_shared_info(shared() as u64 >> 12) {
        println!("dom0: cannot map shared info: {e:?}");
    }
}

/// Clears vCPU 0's upcall flag and selector and every pending bit, so that
/// the next SCHEDOP_block sleeps until a new event.
pub fn clear_all() {
    let si = shared();
    // SAFETY: shared info is mapped at this page; vcpu_info[0] starts at
    // offset 0 (upcall_pending @0, pending_sel @8), the pending bitmap at
    // 0x800; all aligned, accessed atomically as the hypervisor does.
    unsafe {
        AtomicU8::from_ptr(si).store(0, Ordering::SeqCst);
        AtomicU64::from_ptr(si.add(8) as *mut u64).store(0, Ordering::SeqCst);
        for w in 0..WORDS {
            AtomicU64::from_ptr(si.add(PENDING + w * 8) as *mut u64).store(0, Ordering::SeqCst);
        }
    }
}
