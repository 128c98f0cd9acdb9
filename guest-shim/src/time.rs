//! Time: system time (ns since the hypervisor booted) from vCPU 0's
//! `vcpu_time_info` in shared info (pvclock: the TSC scaled from the last
//! update), and VIRQ_TIMER deadlines with singleshot timers.
//!
//! Needs the shared_info page ([`crate::shared_info::map`], which
//! [`crate::events::init`] does).

use core::sync::atomic::{AtomicU32, Ordering};

use pv_abi::DOMID_SELF;
use pv_abi::shared_info::scale_delta;

use crate::hypercall::{self, Result};
use crate::{events, shared_info};

/// System time in ns, as vCPU 0's pvclock gives it. The TSC stamp is on
/// the guest's TSC, which may have started after it (Xen stamps an HVM
/// guest's clock before its TSC's zero: the stamp reads as a huge u64), so
/// the difference is taken wrapping, as Linux's pvclock does; a TSC just
/// behind the stamp (another physical CPU's) counts as no time since it.
pub fn system_time_ns() -> u64 {
    let t = shared_info::time(0);
    let delta = (crate::rdtsc().wrapping_sub(t.tsc_timestamp) as i64).max(0) as u64;
    t.system_time
        .wrapping_add(scale_delta(delta, t.tsc_to_system_mul, t.tsc_shift))
}

/// VIRQ_TIMER for vCPU 0 at system time `deadline_ns` (one shot).
pub fn set_timer(deadline_ns: u64) -> Result<()> {
    hypercall::set_singleshot_timer(0, deadline_ns, 0).map(|_| ())
}

/// A port of ours nobody signals, masked: SCHEDOP_poll on it with a
/// deadline is a sleep that does not spin (0 until allocated).
static SLEEP_PORT: AtomicU32 = AtomicU32::new(0);

/// Sleeps for `ns` nanoseconds of system time without spinning (with
/// SCHEDOP_poll on a private, never-signalled port).
pub fn sleep_ns(ns: u64) {
    let deadline = system_time_ns().saturating_add(ns);
    let mut port = SLEEP_PORT.load(Ordering::SeqCst);
    if port == 0
        && let Ok(p) = events::alloc_unbound(DOMID_SELF)
    {
        events::mask_port(p);
        SLEEP_PORT.store(p, Ordering::SeqCst);
        port = p;
    }
    while system_time_ns() < deadline {
        if port == 0 || hypercall::sched_poll(&[port], deadline).is_err() {
            let _ = hypercall::sched_yield();
        }
    }
}
