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

/// What was pending when [`take_all`] cleared it.
pub struct Pending([u64; EVTCHN_WORDS]);

impl Pending {
    pub fn has(&self, port: u32) -> bool {
        let (word, bit) = (port as usize / 64, port % 64);
        word < EVTCHN_WORDS && self.0[word] & (1 << bit) != 0
    }
}

/// Clears vCPU 0's upcall flag and selector and takes every pending bit
/// (atomically, word by word: an event that arrives meanwhile stays
/// pending for the next round, so the next SCHEDOP_block returns at once
/// and nothing is lost), returning what was taken.
pub fn take_all() -> Pending {
    shared_info::upcall_pending(0).store(0, Ordering::SeqCst);
    shared_info::pending_sel(0).store(0, Ordering::SeqCst);
    let mut taken = [0u64; EVTCHN_WORDS];
    for (word, t) in taken.iter_mut().enumerate() {
        *t = shared_info::pending(word).swap(0, Ordering::SeqCst);
    }
    Pending(taken)
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

/// VIRQ_TIMER, so that a singleshot timer wakes Dom0 from SCHEDOP_block
/// when it polls a device or ring that gives no events.
pub fn bind_timer() -> Option<u32> {
    match guest_shim::events::bind_virq(guest_shim::pv_abi::event_channel::Virq::Timer, 0) {
        Ok(port) => Some(port),
        Err(e) => {
            println!("dom0: cannot bind VIRQ_TIMER: {e}; polling by yielding");
            None
        }
    }
}
