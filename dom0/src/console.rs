//! The PV console backend (what xenconsoled does in Xen): for every DomU
//! it maps the console ring page the builder gave it, binds to its
//! console event channel, and relays what the guest writes to the
//! hypervisor console, a line at a time with the `(dN)` prefix. Guests
//! that wait for the ring to drain (as Xen's test framework does) are
//! woken by the event sent after each drain.
//!
//! Serial input (VIRQ_CONSOLE, CONSOLEIO_read) is routed as Xen's console
//! switching does (`dom0::input`): to the DomU console's `in` ring, or to
//! Dom0's command line.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering, fence};

use dom0::input::{self, Action, Router};
use dom0::store::Shutdown;
use dom0::xl::{self, XlCommand};
use guest_shim::events::{self, Virq};
use guest_shim::{hypercall, print, println};
use pv_abi::console::{
    IN as IN_OFFSET, IN_CONS, IN_PROD, IN_SIZE, OUT as OUT_OFFSET, OUT_CONS, OUT_PROD, OUT_SIZE,
};
use pv_abi::hypercall::{HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN};
use pv_abi::ring;

use crate::xenstored::Xenstored;

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
    /// How much of `line` is already on the console (a prompt shown
    /// before its line ended).
    shown: usize,
    /// Input bytes that did not fit in the `in` ring.
    dropped: u64,
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
                shown: 0,
                dropped: 0,
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

    pub fn domid(&self) -> u16 {
        self.domid
    }

    /// Puts typed bytes in the guest's `in` ring and notifies it; what
    /// does not fit is dropped (and counted), never overrunning the ring.
    pub fn send_input(&mut self, bytes: &[u8]) {
        let cons = ring_u32(self.ring, IN_CONS).load(Ordering::Acquire);
        let prod = ring_u32(self.ring, IN_PROD).load(Ordering::Acquire);
        let (n, dropped) = input::fit_input(prod, cons, bytes.len());
        for (i, &byte) in bytes[..n].iter().enumerate() {
            let index = ring::ring_index(prod.wrapping_add(i as u32), IN_SIZE);
            // SAFETY: index < IN_SIZE, inside the in[] array of the page.
            unsafe { core::ptr::write_volatile(self.ring.add(IN_OFFSET + index), byte) };
        }
        if n > 0 {
            fence(Ordering::Release);
            ring_u32(self.ring, IN_PROD).store(prod.wrapping_add(n as u32), Ordering::Release);
            let _ = events::send(self.port);
        }
        if dropped > 0 {
            self.dropped += dropped as u64;
            println!(
                "dom0: d{}'s console input is full; dropped {dropped} bytes ({} so far)",
                self.domid, self.dropped
            );
        }
    }

    fn push(&mut self, byte: u8) {
        if byte == b'\n' || self.line.len() >= LINE_MAX {
            self.show_rest();
            println!();
            self.line.clear();
            self.shown = 0;
            if byte == b'\n' {
                return;
            }
        }
        if byte != b'\r' {
            self.line.push(byte);
        }
    }

    /// Prints what of the current line is not shown yet (with the domain
    /// prefix if none of it was).
    fn show_rest(&mut self) {
        let rest = core::str::from_utf8(&self.line[self.shown..]).unwrap_or("?");
        if self.shown == 0 {
            print!("(d{}) {rest}", self.domid);
        } else {
            print!("{rest}");
        }
        self.shown = self.line.len();
    }

    /// Shows a line that has not ended yet — for the console the serial
    /// input goes to, whose shell prompt and echoed keys have no newline.
    pub fn show_partial_line(&mut self) {
        if self.line.len() > self.shown {
            self.show_rest();
        }
    }
}

/// The hypervisor console's input (VIRQ_CONSOLE, CONSOLEIO_read), routed
/// to a DomU's console or to Dom0's commands.
pub struct Input {
    router: Router,
    bound: bool,
    /// Our VIRQ_CONSOLE port.
    port: Option<u32>,
}

impl Input {
    /// The DomU the serial input goes to, if any.
    pub fn focused_domu(&self) -> Option<u16> {
        match self.router.focus() {
            input::Focus::Domu(id) => Some(id),
            _ => None,
        }
    }

    /// Binds VIRQ_CONSOLE; the input starts at the only DomU console if
    /// there is exactly one, else at Dom0.
    pub fn bind(consoles: &[Console]) -> Self {
        let port = events::bind_virq(Virq::Console, 0).ok();
        let bound = port.is_some();
        let domids: Vec<u16> = consoles.iter().map(Console::domid).collect();
        let router = Router::new(&domids);
        if bound {
            println!("{}", router.focus().announcement());
        } else {
            println!("dom0: cannot bind VIRQ_CONSOLE; console input is off");
        }
        Self {
            router,
            bound,
            port,
        }
    }

    /// The VIRQ_CONSOLE port: input waits when it is pending (reading
    /// without one would cost a hypercall for nothing on every wake-up).
    pub fn port(&self) -> Option<u32> {
        self.port
    }

    /// Reads what is waiting and routes it.
    pub fn take(&mut self, consoles: &mut [Console], store: &mut Xenstored) {
        if !self.bound {
            return;
        }
        let mut buf = [0u8; 64];
        while let Ok(n) = hypercall::console_read(&mut buf) {
            if n == 0 {
                break;
            }
            for action in self.router.feed(&buf[..n]) {
                match action {
                    Action::ToDomu(domid, bytes) => {
                        if let Some(c) = consoles.iter_mut().find(|c| c.domid == domid) {
                            c.send_input(&bytes);
                        }
                    }
                    Action::Switched(focus) => println!("{}", focus.announcement()),
                    Action::Line(line) => command(&line, store),
                }
            }
        }
    }
}

/// Runs one line typed to Dom0 (echoed first, as before commands existed).
fn command(line: &str, store: &mut Xenstored) {
    println!("dom0: console input: {line}");
    print!("{}", run(line, store).text);
}

/// What an xl command answered: its output, and whether it did what was
/// asked (the control channel reports that as its status).
pub struct Reply {
    pub text: String,
    pub ok: bool,
}

/// Runs one xl command, answered in xl's formats; refusals are one
/// sentence each.
pub fn run(line: &str, store: &mut Xenstored) -> Reply {
    use crate::toolstack::{self, why};
    let fail = |text: String| Reply {
        text: format!("dom0: {text}\n"),
        ok: false,
    };
    let cmd = match xl::parse(line) {
        Ok(cmd) => cmd,
        Err(sentence) => return fail(sentence),
    };
    let domid = match cmd.resolve(|name| toolstack::find_by_name(store, name)) {
        Ok(d) => d,
        Err(sentence) => return fail(sentence),
    };
    let verb = cmd.verb();
    let done = |what: &str, r: Result<(), guest_shim::Errno>, d: u16| match r {
        Ok(()) => Reply {
            text: format!("dom0: {what} d{d}\n"),
            ok: true,
        },
        Err(e) => fail(format!("cannot {verb} d{d}: {}", why(e))),
    };
    let ok = |text: String| Reply { text, ok: true };
    match (cmd, domid) {
        (XlCommand::Help, _) => ok(format!("{}\n", xl::HELP)),
        (XlCommand::List { json }, _) => match toolstack::rows(store) {
            Ok(rows) if json => ok(format!("{}\n", xl::list_json(&rows))),
            Ok(rows) => ok(xl::list_table(&rows)),
            Err(e) => fail(format!("cannot list the domains: {}", why(e))),
        },
        (XlCommand::Info { json }, _) => match toolstack::host_info() {
            Ok(info) if json => ok(format!("{}\n", xl::info_json(&info))),
            Ok(info) => ok(xl::info_text(&info)),
            Err(e) => fail(format!("cannot read the host's facts: {}", why(e))),
        },
        (XlCommand::Pause(_), Some(d)) => done("paused", toolstack::pause(d), d),
        (XlCommand::Unpause(_), Some(d)) => done("unpaused", toolstack::unpause(d), d),
        (XlCommand::Destroy(_), Some(d)) => done("destroyed", toolstack::destroy(d), d),
        (XlCommand::Shutdown(_), Some(d)) => shutdown(store, d, Shutdown::Poweroff),
        (XlCommand::Reboot(_), Some(d)) => shutdown(store, d, Shutdown::Reboot),
        (XlCommand::Console(_), _) | (XlCommand::Create { .. }, _) => fail(format!(
            "{verb} is not available yet: on the serial console, Ctrl-A three times switches the input to each DomU"
        )),
        (_, None) => fail(format!("{verb} needs a domain")),
    }
}

/// Asks a DomU to power off or reboot through its control/shutdown node.
fn shutdown(store: &mut Xenstored, domid: u16, kind: Shutdown) -> Reply {
    match store.request_shutdown(domid, kind) {
        Ok(()) => Reply {
            text: format!("{}\n", input::asked(domid, kind)),
            ok: true,
        },
        Err(e) => Reply {
            text: format!(
                "dom0: cannot ask d{domid} to {}: its control/shutdown is not in XenStore ({})\n",
                kind.value(),
                e.name()
            ),
            ok: false,
        },
    }
}
