//! Console output: `console_io` under a hypervisor, COM1 when bare.

use core::fmt::{self, Write};

use spin::Mutex;

use crate::ShutdownReason;

struct Console;

fn outb(port: u16, value: u8) {
    // SAFETY: only used bare (no hypervisor), on the PC's COM1 and the
    // debug-exit port, which QEMU provides.
    unsafe { core::arch::asm!("out dx, al", in("dx") port, in("al") value) };
}

fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as in `outb`.
    unsafe { core::arch::asm!("in al, dx", in("dx") port, out("al") v) };
    v
}

fn serial_write(bytes: &[u8]) {
    const COM1: u16 = 0x3f8;
    for &b in bytes {
        for _ in 0..100_000 {
            if inb(COM1 + 5) & 0x20 != 0 {
                break;
            }
        }
        outb(COM1, b);
    }
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if crate::hypercall::available() {
            let _ = crate::hypercall::console_write(s.as_bytes());
        } else {
            serial_write(s.as_bytes());
        }
        Ok(())
    }
}

static LOCK: Mutex<()> = Mutex::new(());

pub fn write_fmt(args: fmt::Arguments) {
    let _guard = LOCK.lock();
    let _ = Console.write_fmt(args);
}

/// Without a hypervisor: end QEMU through isa-debug-exit (status E + 0x10,
/// the same convention as Pavise).
pub fn bare_exit(reason: ShutdownReason) {
    let code = match reason {
        ShutdownReason::Poweroff => 0u32,
        _ => 3,
    };
    // SAFETY: the debug-exit port; harmless where absent.
    unsafe { core::arch::asm!("out dx, eax", in("dx") 0xf4u16, in("eax") code + 0x10) };
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}
