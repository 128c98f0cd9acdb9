//! Event bookkeeping for Dom0: it takes no upcalls (it polls its backends
//! after every wake-up from SCHEDOP_block), so it only maps shared info
//! and acknowledges whatever is pending before it sleeps again.

use core::sync::atomic::Ordering;

use guest_shim::pv_abi::shared_info::EVTCHN_WORDS;
use guest_shim::{println, shared_info};

pub fn init() {
    if let Err(e) = shared_info::map() {
        println!("dom0: cannot map shared info: {e}");
    }
}

/// Clears vCPU 0's upcall flag and selector and every pending bit, so that
/// the next SCHEDOP_block sleeps until a new event.
pub fn clear_all() {
    shared_info::upcall_pending(0).store(0, Ordering::SeqCst);
    shared_info::pending_sel(0).store(0, Ordering::SeqCst);
    for word in 0..EVTCHN_WORDS {
        shared_info::pending(word).store(0, Ordering::SeqCst);
    }
}

/// Whether event `port` is pending (read before `clear_all`).
pub fn is_pending(port: u32) -> bool {
    let (word, bit) = (port as usize / 64, port % 64);
    word < EVTCHN_WORDS && shared_info::pending(word).load(Ordering::SeqCst) & (1 << bit) != 0
}

/// Binds VIRQ_DOM_EXC (a domain ended) on vCPU 0.
pub fn bind_dom_exc() -> Option<u32> {
    match guest_shim::events::bind_virq(guest_shim::pv_abi::event_channel::Virq::DomExc, 0) {
        Ok(port) => Some(port),
        Err(e) => {
            println!("dom0: cannot bind VIRQ_DOM_EXC: {e}");
            None
        }
    }
}
