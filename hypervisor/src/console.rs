//! The hypervisor console: COM1 through `uart_16550`, the `log` backend, and
//! the status lines (`pavise: ...`) that users and tests read. What it
//! prints is also kept in the console ring (`conring`), as in Xen, for
//! Dom0's `XEN_SYSCTL_readconsole` — except Dom0's own output, which Xen
//! keeps out of the ring by default (`console_to_ring` off).
//!
//! One lock serialises all CPUs' output. A CPU that dies while another
//! holds the lock (panic, exception, NMI halt) takes it anyway after a
//! bounded wait, so the last words always reach the console.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;
use uart_16550::Uart16550Tty;
use uart_16550::backend::PioBackend;

use crate::conring::Conring;

const COM1: u16 = 0x3f8;

static SERIAL: Mutex<Option<Uart16550Tty<PioBackend>>> = Mutex::new(None);
/// Taken only under SERIAL's lock (or alone, by a reader), so the ring
/// holds the output in the order it reached the port.
static CONRING: Mutex<Conring> = Mutex::new(Conring::new());
static LOGGER: Logger = Logger;
static LOGGER_SET: AtomicBool = AtomicBool::new(false);

pub fn init() {
    // SAFETY: COM1 is the standard PC serial port; nothing else in Pavise
    // drives it, and the port is only reached through SERIAL's lock.
    let port = unsafe { Uart16550Tty::new_port(COM1, uart_16550::Config::default()) };
    *SERIAL.lock() = port.ok();
}

/// The last text written did not end its line (Dom0 shows a shell's
/// prompt as it comes): the next status line starts on a line of its own.
static MID_LINE: AtomicBool = AtomicBool::new(false);

/// Counts what passes to the port, to know how the output ends, and
/// keeps a copy in the console ring if given one.
struct Tracking<'a, W: Write> {
    port: &'a mut W,
    ring: Option<&'a mut Conring>,
    last: Option<u8>,
}

impl<W: Write> Write for Tracking<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(&b) = s.as_bytes().last() {
            self.last = Some(b);
        }
        if let Some(ring) = self.ring.as_mut() {
            ring.put(s.as_bytes());
        }
        self.port.write_str(s)
    }
}

/// Whether output goes to the console ring too.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ring {
    Keep,
    Skip,
}

fn write_tracked(args: fmt::Arguments, own_line: bool, ring: Ring) {
    let mut guard = SERIAL.lock();
    if let Some(port) = guard.as_mut() {
        let mut conring = (ring == Ring::Keep).then(|| CONRING.lock());
        let mut out = Tracking {
            port,
            ring: conring.as_deref_mut(),
            last: None,
        };
        if own_line && MID_LINE.load(Ordering::Relaxed) {
            let _ = out.write_str("\n");
        }
        let _ = out.write_fmt(args);
        if let Some(last) = out.last {
            MID_LINE.store(last != b'\n', Ordering::Relaxed);
        }
    }
}

/// Writes formatted text to the console, whole, as one unit (a line or
/// part of one).
pub fn write_fmt(args: fmt::Arguments) {
    write_tracked(args, false, Ring::Keep);
}

/// Like [`write_fmt`] but kept out of the console ring: the privileged
/// domain's own output (it reads the ring, and relays the DomUs' PV
/// consoles through here).
pub fn write_fmt_unringed(args: fmt::Arguments) {
    write_tracked(args, false, Ring::Skip);
}

/// Writes a whole line (what [`println!`] prints), starting a new line
/// first if the console is in the middle of one.
pub fn write_line(args: fmt::Arguments) {
    write_tracked(args, true, Ring::Keep);
}

/// Copies held console-ring bytes into `out` (see [`Conring::read`]).
pub fn read_ring(from: Option<u32>, out: &mut [u8]) -> (usize, u32) {
    CONRING.lock().read(from, out)
}

/// Forgets the console ring's bytes before `index` (see
/// [`Conring::clear_to`]).
pub fn clear_ring_to(index: u32) {
    CONRING.lock().clear_to(index);
}

/// Like [`write_fmt`] but usable from a dying CPU: never waits forever.
pub fn write_fmt_emergency(args: fmt::Arguments) {
    let mut guard = None;
    for _ in 0..10_000_000 {
        if let Some(g) = SERIAL.try_lock() {
            guard = Some(g);
            break;
        }
        core::hint::spin_loop();
    }
    let mut guard = guard.unwrap_or_else(|| {
        // SAFETY: the holder has not released the lock in a long time;
        // we are stopping the machine and prefer garbled output to none.
        unsafe { SERIAL.force_unlock() };
        SERIAL.lock()
    });
    if let Some(port) = guard.as_mut() {
        let _ = port.write_fmt(args);
    }
}

/// Prints a line on the console, whatever the log level.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::write_line(format_args!("{}\n", format_args!($($arg)*)))
    };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let cpu = crate::arch::percpu::current_index();
            match record.level() {
                log::Level::Error | log::Level::Warn => write_line(format_args!(
                    "(pavise cpu{cpu}) {}: {}\n",
                    record.level(),
                    record.args()
                )),
                _ => write_line(format_args!("(pavise cpu{cpu}) {}\n", record.args())),
            }
        }
    }

    fn flush(&self) {}
}

pub fn init_log(level: log::LevelFilter) {
    if !LOGGER_SET.swap(true, Ordering::SeqCst) {
        let _ = log::set_logger(&LOGGER);
    }
    log::set_max_level(level);
}

/// Takes the bytes waiting on the serial line, without blocking.
pub fn read_available(buf: &mut [u8]) -> usize {
    let mut guard = SERIAL.lock();
    let Some(port) = guard.as_mut() else { return 0 };
    let mut n = 0;
    while n < buf.len() {
        match port.inner_mut().try_receive_byte() {
            Ok(b) => {
                buf[n] = b;
                n += 1;
            }
            Err(_) => break,
        }
    }
    n
}

/// True if the serial line holds received bytes (line status "data ready").
pub fn input_waiting() -> bool {
    const LINE_STATUS: u16 = COM1 + 5;
    const DATA_READY: u8 = 1;
    // Only look when nobody is using the port; a busy port is looked at again
    // on the next scheduler pass.
    let Some(_guard) = SERIAL.try_lock() else {
        return false;
    };
    let mut lsr = x86_64::instructions::port::PortReadOnly::<u8>::new(LINE_STATUS);
    // SAFETY: reading the 16550 line status register has no side effect on
    // received data; the port is COM1, owned by this module, lock held.
    unsafe { lsr.read() & DATA_READY != 0 }
}
