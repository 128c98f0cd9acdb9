//! The boot timeline that `cargo xtask bench` draws. With the `bench`
//! option, moments of a run are printed as `pavise: bench:
//! at_<moment>_us=N`: microseconds of machine time since power-on (the
//! boot CPU's TSC counts from 0 at reset, so the firmware's and the boot
//! loader's share is in the first moment).

use core::fmt::Display;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::time;
use crate::println;

static ON: AtomicBool = AtomicBool::new(false);

/// Turns the timeline on (the `bench` option).
pub fn enable() {
    ON.store(true, Ordering::SeqCst);
}

/// Prints `moment` at TSC value `tsc` (on the boot CPU's time line).
pub fn mark_at(moment: impl Display, tsc: u64) {
    if ON.load(Ordering::Relaxed) {
        let us = tsc as u128 * 1000 / time::tsc_per_ms() as u128;
        println!("pavise: bench: at_{moment}_us={us}");
    }
}

/// Prints `moment` now.
pub fn mark(moment: impl Display) {
    mark_at(moment, time::rdtsc());
}
