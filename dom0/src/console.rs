//! The PV console backend (what xenconsoled does in Xen): for every DomU
//! it maps the console ring page the builder gave it, binds to its
//! console event channel, and relays what the guest writes to the
//! hypervisor console, a line at a time with the `(dN)` prefix. Guests
//! that wait for the ring to drain (as Xen's test framework does) are
//! woken by the event sent after each drain.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering, fence};

use guest_shim::events::{self, Virq};
use guest_shim::{hypercall, println};
use pv_abi::console::{OUT as OUT_OFFSET, OUT_CONS, OUT_PROD, OUT_SIZE};
use pv_abi::hypercall::{HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN};
use pv_abi::ring;

/// Domain ids probed for consoles.
const MAX_DOMID: u16 = 32;
const LINE_MAX: usize = 256;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// Where the DomUs' ring pages get mapped in our physmap.
static mut RING_SLOTS: [Page; MAX_DOMID as usize] = [const { Page([0; 4096]) }; MAX_DOMID as usize];

pub struct Console {
    domid: u16,
    ring: *mut u8,
    port: u32,
    line: Vec<u8>,
}

fn ring_u32(ring: *mut u8, offset: usize) -> &'static AtomicU32 {
    // SAFETY: `ring` is a mapped 4 KiB ring page; the offsets are the
    // aligned cons/prod fields of xencons_interface.
    unsafe { AtomicU32::from_ptr(ring.add(offset) as *mut u32) }
}

/// Connects to the console of every DomU that has one.
pub fn connect_all() -> Vec<Console> {
    let mut consoles = Vec::new();
    for domid in 1..MAX_DOMID {
        let Ok(pfn) = hypercall::hvm_get_param_of(domid, HVM_PARAM_CONSOLE_PFN) else {
            continue;
        };
        let Ok(port) = hypercall::hvm_get_param_of(domid, HVM_PARAM_CONSOLE_EVTCHN) else {
            continue;
        };
        if pfn == 0 {
            continue;
        }
        let slot = &raw mut RING_SLOTS;
        // SAFETY: one slot per domid, used only for this mapping.
        let ring = unsafe { (*slot)[domid as usize].0.as_mut_ptr() };
        if let Err(e) = hypercall::map_foreign_page(domid, pfn, ring as u64 >> 12) {
            println!("dom0: cannot map d{domid}'s console ring: {e:?}");
            continue;
        }
        match events::bind_interdomain(domid, port as u32) {
            Ok(local) => consoles.push(Console {
                domid,
                ring,
                port: local,
                line: Vec::new(),
            }),
            Err(e) => println!("dom0: cannot bind d{domid}'s console event channel: {e:?}"),
        }
    }
    consoles
}

impl Console {
    /// Moves what the guest wrote to our console; true if anything moved.
    pub fn drain(&mut self) -> bool {
        let cons = ring_u32(self.ring, OUT_CONS).load(Ordering::Acquire);
        let prod = ring_u32(self.ring, OUT_PROD).load(Ordering::Acquire);
        // A producer more than a ring ahead is lying: take one ring's worth.
        let take = ring::unconsumed(prod, cons, OUT_SIZE).unwrap_or(OUT_SIZE);
        if take == 0 {
            return false;
        }
        for i in 0..take {
            let index = ring::ring_index(cons.wrapping_add(i), OUT_SIZE);
            // SAFETY: index < OUT_SIZE, inside the out[] array of the page.
            let byte = unsafe { core::ptr::read_volatile(self.ring.add(OUT_OFFSET + index)) };
            self.push(byte);
        }
        fence(Ordering::Release);
        ring_u32(self.ring, OUT_CONS).store(cons.wrapping_add(take), Ordering::Release);
        let _ = events::send(self.port);
        true
    }

    fn push(&mut self, byte: u8) {
        if byte == b'\n' || self.line.len() >= LINE_MAX {
            let text = core::str::from_utf8(&self.line).unwrap_or("?");
            println!("(d{}) {}", self.domid, text);
            self.line.clear();
            if byte == b'\n' {
                return;
            }
        }
        if byte != b'\r' {
            self.line.push(byte);
        }
    }
}

/// The hypervisor console's input (VIRQ_CONSOLE, CONSOLEIO_read): what
/// arrives is echoed a line at a time, for now its only consumer.
pub struct Input {
    line: Vec<u8>,
    bound: bool,
}

impl Input {
    pub fn bind() -> Self {
        let bound = events::bind_virq(Virq::Console, 0).is_ok();
        if !bound {
            println!("dom0: cannot bind VIRQ_CONSOLE; console input is off");
        }
        Self {
            line: Vec::new(),
            bound,
        }
    }

    /// Reads what is waiting; prints each complete line.
    pub fn take(&mut self) {
        if !self.bound {
            return;
        }
        let mut buf = [0u8; 64];
        while let Ok(n) = hypercall::console_read(&mut buf) {
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if b == b'\n' || b == b'\r' || self.line.len() >= LINE_MAX {
                    if !self.line.is_empty() {
                        println!(
                            "dom0: console input: {}",
                            core::str::from_utf8(&self.line).unwrap_or("?")
                        );
                        self.line.clear();
                    }
                } else {
                    self.line.push(b);
                }
            }
        }
    }
}
