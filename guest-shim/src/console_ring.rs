//! The PV console ring writer (`xencons_interface`), as Xen guests use it:
//! copy into `out`, publish `out_prod`, notify Dom0's backend, and wait
//! (yielding) for room when the ring is full.

use core::sync::atomic::{AtomicU32, Ordering};

use pv_abi::console::{OUT, OUT_CONS, OUT_PROD, OUT_SIZE};
use pv_abi::hypercall::{HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN};
use pv_abi::ring;

use crate::{events, hypercall};

pub struct ConsoleRing {
    page: *mut u8,
    port: u32,
}

// SAFETY: the page is the domain's console ring, identity-mapped for every
// vCPU; the indices are atomics, and the console keeps writers under a lock.
unsafe impl Send for ConsoleRing {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The hypervisor gave no console ring.
    NoRing,
    /// The ring indices are impossible (the page was overwritten).
    Corrupt,
    /// The backend did not drain the ring in time.
    Stuck,
}

fn index(page: *mut u8, offset: usize) -> &'static AtomicU32 {
    // SAFETY: the ring page is identity-mapped guest RAM; the offsets are
    // the aligned out_cons/out_prod fields.
    unsafe { AtomicU32::from_ptr(page.add(offset) as *mut u32) }
}

impl ConsoleRing {
    pub fn connect() -> Result<Self, RingError> {
        let pfn = hypercall::hvm_get_param(HVM_PARAM_CONSOLE_PFN).map_err(|_| RingError::NoRing)?;
        let port =
            hypercall::hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN).map_err(|_| RingError::NoRing)?;
        if pfn == 0 {
            return Err(RingError::NoRing);
        }
        Ok(Self {
            page: (pfn << 12) as *mut u8,
            port: port as u32,
        })
    }

    /// Notifies the backend on `port` from now on.
    pub fn set_port(&mut self, port: u32) {
        self.port = port;
    }

    /// Writes all of `bytes`, waiting for the backend when the ring fills.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), RingError> {
        let mut done = 0;
        let mut waits = 0u64;
        while done < bytes.len() {
            let cons = index(self.page, OUT_CONS).load(Ordering::Acquire);
            let prod = index(self.page, OUT_PROD).load(Ordering::Acquire);
            let room = ring::free_slots(prod, cons, OUT_SIZE).ok_or(RingError::Corrupt)?;
            if room == 0 {
                let _ = events::send(self.port);
                let _ = hypercall::sched_yield();
                waits += 1;
                if waits > 10_000_000 {
                    return Err(RingError::Stuck);
                }
                continue;
            }
            let n = (room as usize).min(bytes.len() - done);
            for (i, &b) in bytes[done..done + n].iter().enumerate() {
                let at = OUT + ring::ring_index(prod.wrapping_add(i as u32), OUT_SIZE);
                // SAFETY: inside out[] of the ring page.
                unsafe { core::ptr::write_volatile(self.page.add(at), b) };
            }
            index(self.page, OUT_PROD).store(prod.wrapping_add(n as u32), Ordering::Release);
            done += n;
        }
        let _ = events::send(self.port);
        Ok(())
    }

    /// Waits until the backend has taken everything written.
    pub fn flush(&mut self) -> Result<(), RingError> {
        let mut waits = 0u64;
        while index(self.page, OUT_CONS).load(Ordering::Acquire)
            != index(self.page, OUT_PROD).load(Ordering::Acquire)
        {
            let _ = hypercall::sched_yield();
            waits += 1;
            if waits > 10_000_000 {
                return Err(RingError::Stuck);
            }
        }
        Ok(())
    }
}
