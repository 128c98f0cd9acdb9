//! Console output for `print!`/`println!`: CONSOLEIO_write under a
//! hypervisor, COM1 (port 0x3f8) when running bare; and the bare-metal
//! way out, QEMU's `isa-debug-exit` port.
//!
//! A release build of Xen refuses a DomU's CONSOLEIO_write (-EPERM; a
//! debug build and Pavise take it): from the first refusal on, output
//! goes to the domain's PV console ring instead, which Dom0's console
//! backend shows, so the same kernel prints on either.
//!
//! Each `print!` is formatted into a buffer and written with as few
//! hypercalls as its length needs (each costs a VM exit), under a lock so
//! that lines from different vCPUs do not interleave.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;

use crate::{ShutdownReason, hypercall};

const COM1: u16 = 0x3f8;
/// QEMU's `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4`).
const DEBUG_EXIT: u16 = 0xf4;
/// Bytes gathered before a write.
const CHUNK: usize = 256;

fn outb(port: u16, value: u8) {
    // SAFETY: used bare only (no hypervisor), on COM1, which the PC has;
    // a port write touches no memory.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack))
    };
}

fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as in `outb`.
    unsafe { core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) };
    v
}

fn serial_write(bytes: &[u8]) {
    for &b in bytes {
        // Wait (boundedly) for the transmit holding register to empty.
        for _ in 0..100_000 {
            if inb(COM1 + 5) & 0x20 != 0 {
                break;
            }
        }
        outb(COM1, b);
    }
}

/// The PV console ring, once CONSOLEIO_write was refused.
static RING: Mutex<Option<crate::console_ring::ConsoleRing>> = Mutex::new(None);
/// CONSOLEIO_write was refused: use [`RING`].
static USE_RING: AtomicBool = AtomicBool::new(false);

/// Waits (boundedly) until the backend has read the console ring, if
/// output goes there: lines still in it would be lost with the domain.
pub fn drain() {
    if USE_RING.load(Ordering::Relaxed)
        && let Some(r) = RING.lock().as_mut()
    {
        let _ = r.flush();
    }
}

/// The console ring's event channel is now `port` (the guest bound its
/// far end again, e.g. after EVTCHNOP_reset).
pub fn use_ring_port(port: u32) {
    if let Some(r) = RING.lock().as_mut() {
        r.set_port(port);
    }
}

fn write_bytes(bytes: &[u8]) {
    if !hypercall::available() {
        serial_write(bytes);
        return;
    }
    if !USE_RING.load(Ordering::Relaxed) {
        match hypercall::console_write(bytes) {
            Err(pv_abi::errno::Errno::EPERM) => USE_RING.store(true, Ordering::Relaxed),
            _ => return,
        }
    }
    let mut ring = RING.lock();
    if ring.is_none() {
        *ring = crate::console_ring::ConsoleRing::connect().ok();
    }
    if let Some(r) = ring.as_mut() {
        let _ = r.write(bytes);
    }
}

/// Gathers formatted text and writes it out a chunk at a time.
struct Buffered {
    buf: [u8; CHUNK],
    len: usize,
}

impl Buffered {
    /// Writes out what is gathered — when the buffer filled (`full`),
    /// only up to its last line end: a line shorter than the buffer goes
    /// out in one write, so another domain's output cannot land inside it
    /// (a `print!` of several lines used to be cut at 256 bytes, mid-line);
    /// a line longer than the buffer goes out in pieces.
    fn flush(&mut self, full: bool) {
        let gathered = &self.buf[..self.len];
        let n = match gathered.iter().rposition(|&b| b == b'\n') {
            Some(end) if full => end + 1,
            _ => self.len,
        };
        if n > 0 {
            write_bytes(&self.buf[..n]);
            self.buf.copy_within(n..self.len, 0);
            self.len -= n;
        }
    }
}

impl Write for Buffered {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == CHUNK {
                self.flush(true);
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

static LOCK: Mutex<()> = Mutex::new(());

/// What `print!` calls.
pub fn write_fmt(args: fmt::Arguments) {
    let _guard = LOCK.lock();
    let mut out = Buffered {
        buf: [0; CHUNK],
        len: 0,
    };
    let _ = out.write_fmt(args);
    out.flush(false);
}

/// For the crash handlers: if the console lock stays held (a fault or
/// panic in the middle of a `print!`, possibly on this very vCPU), take
/// it away, so that the report still gets out.
pub(crate) fn force_unlock_if_stuck() {
    for _ in 0..1_000_000 {
        if !LOCK.is_locked() {
            return;
        }
        core::hint::spin_loop();
    }
    // SAFETY: called only by the first crash report, just before the
    // domain ends; interleaved output is the worst that can follow.
    unsafe { LOCK.force_unlock() };
}

/// Without a hypervisor: end QEMU through `isa-debug-exit` with
/// `E + 0x10` (E = 0 poweroff, 3 otherwise), the convention the
/// hypervisor uses for its own exit; QEMU exits with `(E + 0x10) << 1 | 1`.
/// Returns only if the device is absent.
pub fn bare_exit(reason: ShutdownReason) {
    let code: u32 = match reason {
        ShutdownReason::Poweroff => 0,
        _ => 3,
    };
    // SAFETY: a port write touching no memory; ignored where the device is
    // absent.
    unsafe {
        core::arch::asm!("out dx, eax", in("dx") DEBUG_EXIT, in("eax") code + 0x10, options(nomem, nostack))
    };
}

/// Prints to the console (hypervisor console, or COM1 when bare).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the console (hypervisor console, or COM1 when bare).
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {
        $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}
