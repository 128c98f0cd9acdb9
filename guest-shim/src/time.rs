//! Time: system time (ns since the hypervisor booted) from vCPU 0's
//! `vcpu_time_info` in shared info (pvclock: the TSC scaled from the last
//! update), and VIRQ_TIMER deadlines with singleshot timers.
//!
//! Needs the shared_info page ([`crate::shared_info::map`], which
//! [`crate::events::init`] does).

use pv_abi::shared_info::scale_delta;

use crate::hypercall::{self, Result};
use crate::shared_info;

/// System time in ns, as vCPU 0's pvclock gives it. A TSC behind the
/// last update (another physical CPU's) counts as no time since it.
pub fn system_time_ns() -> u64 {
    let t = shared_info::time(0);
    let delta = crate::rdtsc().saturating_sub(t.tsc_timestamp);
    t.system_time
        .wrapping_add(scale_delta(delta, t.tsc_to_system_mul, t.tsc_shift))
}

/// VIRQ_TIMER for vCPU 0 at system time `deadline_ns` (one shot).
pub fn set_timer(deadline_ns: u64) -> Result<()> {
    hypercall::set_singleshot_timer(0, deadline_ns, 0).map(|_| ())
}
