//! Stopping the machine: halting every CPU, and under QEMU reporting a
//! status through `isa-debug-exit` (enabled by the `qemu_exit` option).

use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::instructions::port::Port;

/// Port of QEMU's `isa-debug-exit` device as xtask configures it.
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Bochs's debug console (its `port_e9_hack`), and what the status written
/// there follows (xtask reads it: `pavise-exit-status=016`).
const BOCHS_DEBUG_PORT: u16 = 0xe9;
const BOCHS_STATUS_PREFIX: &[u8] = b"\npavise-exit-status=";
/// Added to every status so that QEMU's own exit codes (0, 1) never look
/// like a hypervisor verdict; xtask undoes it.
const DEBUG_EXIT_BIAS: u32 = 0x10;

/// What the hypervisor reports when it stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Nothing left to run, everything ended well.
    Success = 0,
    /// Boot could not proceed (bad command line, too little memory, ...).
    BootError = 1,
    /// A hypervisor panic or CPU exception.
    Crash = 2,
    /// A guest that was to be watched did not end cleanly.
    GuestFailed = 3,
}

static QEMU_EXIT: AtomicBool = AtomicBool::new(false);
/// Set once other CPUs are told to halt; their NMI handler obeys it.
pub static HALT_REQUESTED: AtomicBool = AtomicBool::new(false);

pub fn set_qemu_exit(enabled: bool) {
    QEMU_EXIT.store(enabled, Ordering::SeqCst);
}

pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Stops every CPU and, with `qemu_exit`, powers QEMU off with `code`.
pub fn stop(code: ExitCode) -> ! {
    // Only CPUs Pavise started run code that must be stopped; the others
    // still wait for their start-up IPI.
    if !HALT_REQUESTED.swap(true, Ordering::SeqCst) && super::smp::online() > 1 {
        super::lapic::nmi_all_others();
    }
    if QEMU_EXIT.load(Ordering::SeqCst) {
        let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
        // SAFETY: writing the debug-exit port has no effect on memory; on
        // QEMU it ends the process, elsewhere the port is unused.
        unsafe { port.write(code as u32 + DEBUG_EXIT_BIAS) };
        // Still here: not QEMU. Bochs (which has no isa-debug-exit) is
        // told the status on its debug port 0xe9, then stops in its
        // debugger at the magic breakpoint; on other machines neither the
        // port nor `xchg bx, bx` does anything.
        let mut e9 = Port::<u8>::new(BOCHS_DEBUG_PORT);
        let status = code as u8 + DEBUG_EXIT_BIAS as u8;
        let digits = [
            b'0' + status / 100,
            b'0' + status / 10 % 10,
            b'0' + status % 10,
        ];
        for byte in BOCHS_STATUS_PREFIX.iter().chain(&digits).chain(b"\n") {
            // SAFETY: port 0xe9 is Bochs's debug console; writing it
            // touches no memory.
            unsafe { e9.write(*byte) };
        }
        // SAFETY: exchanges a register with itself; no memory is touched.
        unsafe { core::arch::asm!("xchg bx, bx", options(nomem, nostack)) };
    }
    halt_forever()
}
