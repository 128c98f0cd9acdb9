//! The PV console backend (what xenconsoled does in Xen): for every DomU
//! it maps the console ring page the builder gave it, binds to its
//! console event channel, and relays what the guest writes to the
//! hypervisor console, a line at a time with the `(dN)` prefix. Guests
//! that wait for the ring to drain (as Xen's test framework does) are
//! woken by the event sent after each drain.
//!
//! A ring line that repeats a line the guest just wrote with CONSOLEIO_write
//! (already on the console from the hypervisor) is not shown again
//! (`dom0::echoes`).
//!
//! Serial input (VIRQ_CONSOLE, CONSOLEIO_read) is routed as Xen's console
//! switching does (`dom0::input`): to the DomU console's `in` ring, or to
//! Dom0's command line.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering, fence};

use dom0::echoes::Echoes;
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

use crate::foreign_page::ForeignPage;
use crate::xenstored::Xenstored;

/// The DomUs' recent CONSOLEIO lines, read from the hypervisor's console
/// ring; shared by every console's relay.
static ECHOES: spin::Mutex<Echoes> = spin::Mutex::new(Echoes::new());

/// Whether `domid`'s ring line `line` echoes its CONSOLEIO output: first
/// against what was read before, then after reading what is new.
fn is_echo(domid: u16, line: &[u8]) -> bool {
    let mut echoes = ECHOES.lock();
    if echoes.take(domid, line) {
        return true;
    }
    let mut buffer = [0u8; 2048];
    // Bounded: the ring holds 16 KiB; what a reader misses is only an
    // echo shown twice.
    for _ in 0..16 {
        match crate::toolstack::read_console(echoes.next_index(), false, &mut buffer) {
            Ok((0, _)) | Err(_) => break,
            Ok((n, next)) => echoes.feed(&buffer[..n], next),
        }
    }
    echoes.take(domid, line)
}

/// Domain ids probed for boot-time DomUs' consoles.
const MAX_DOMID: u16 = 32;
const LINE_MAX: usize = 256;

pub struct Console {
    domid: u16,
    /// Our page where the DomU's ring is mapped (held for its mapping).
    _page: ForeignPage,
    ring: *mut u8,
    port: u32,
    line: Vec<u8>,
    /// How much of `line` is already on the console (a prompt shown
    /// before its line ended).
    shown: usize,
    /// Input bytes that did not fit in the `in` ring.
    dropped: u64,
    /// Complete lines it has written.
    lines: u64,
}

fn ring_u32(ring: *mut u8, offset: usize) -> &'static AtomicU32 {
    // SAFETY: `ring` is a mapped 4 KiB ring page; the offsets are the
    // aligned cons/prod fields of xencons_interface.
    unsafe { AtomicU32::from_ptr(ring.add(offset) as *mut u32) }
}

/// Connects to the console of every boot-time DomU that has one.
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
        match Console::connect(domid, pfn, port as u32) {
            Ok(c) => consoles.push(c),
            Err(e) => println!("dom0: {e}"),
        }
    }
    consoles
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = events::close(self.port);
    }
}

impl Console {
    /// Maps the DomU's console ring page `gfn` and binds its channel.
    pub fn connect(domid: u16, gfn: u64, port: u32) -> Result<Self, String> {
        let page = ForeignPage::map(domid, gfn, "console ring")?;
        let ring = page.ptr();
        let local = events::bind_interdomain(domid, port)
            .map_err(|e| format!("cannot bind d{domid}'s console event channel: {e:?}"))?;
        // A reused domain id's old lines are not this domain's.
        ECHOES.lock().forget(domid);
        Ok(Console {
            domid,
            _page: page,
            ring,
            port: local,
            line: Vec::new(),
            shown: 0,
            dropped: 0,
            lines: 0,
        })
    }

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

    /// Complete lines the guest has written so far.
    pub fn lines(&self) -> u64 {
        self.lines
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
            if self.shown > 0 || !is_echo(self.domid, &self.line) {
                self.show_rest();
                println!();
            }
            self.lines += 1;
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

/// What commands act on: XenStore, the DomU consoles, the toolstack.
pub struct Host {
    pub store: Xenstored,
    pub consoles: Vec<Console>,
    pub toolstack: crate::toolstack::Toolstack,
    pub blkback: crate::vbd::Blkback,
    pub netback: crate::vif::Netback,
    /// Consoles came or went since the input router last looked.
    pub consoles_changed: bool,
    /// `xl console N` asked for the serial input to go to N.
    pub attach: Option<u16>,
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

    /// Follows consoles that came or went, and `xl console`'s attach.
    pub fn update(&mut self, host: &mut Host) {
        if core::mem::take(&mut host.consoles_changed) {
            let domids: Vec<u16> = host.consoles.iter().map(Console::domid).collect();
            if self.router.set_consoles(&domids) && self.bound {
                println!("{}", self.router.focus().announcement());
            }
        }
        if let Some(dom) = host.attach.take()
            && self.router.attach(dom)
        {
            println!("dom0: *** serial input -> d{dom} (Ctrl-] comes back to dom0)");
        }
    }

    /// Reads what is waiting and routes it.
    pub fn take(&mut self, host: &mut Host) {
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
                        if let Some(c) = host.consoles.iter_mut().find(|c| c.domid == domid) {
                            c.send_input(&bytes);
                        }
                    }
                    Action::Switched(focus) => println!("{}", focus.announcement()),
                    Action::Line(line) => {
                        command(&line, host, true);
                        self.update(host);
                    }
                }
            }
        }
    }
}

/// Runs one line typed to Dom0 (echoed first, as before commands existed).
fn command(line: &str, host: &mut Host, serial: bool) {
    println!("dom0: console input: {line}");
    print!("{}", run(line, host, serial).text);
}

/// What an xl command answered: its output, and whether it did what was
/// asked (the control channel reports that as its status).
pub struct Reply {
    pub text: String,
    pub ok: bool,
}

/// Runs one xl command, answered in xl's formats; refusals are one
/// sentence each. `serial`: typed on the serial console (only there can
/// `console` attach).
pub fn run(line: &str, host: &mut Host, serial: bool) -> Reply {
    let reply = run_one(line, host, serial);
    for said in crate::toolstack::reap(host) {
        println!("{said}");
    }
    reply
}

fn run_one(line: &str, host: &mut Host, serial: bool) -> Reply {
    let store = &mut host.store;
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
        (XlCommand::Console(_), Some(d)) if !serial => fail(format!(
            "console attaches Dom0's serial console to d{d}; over the control channel there is no terminal to attach"
        )),
        (XlCommand::Console(_), Some(d)) => {
            if host.consoles.iter().any(|c| c.domid() == d) {
                host.attach = Some(d);
                ok(format!("dom0: attaching the serial console to d{d}\n"))
            } else {
                fail(format!("d{d} has no console connected to Dom0"))
            }
        }
        (
            XlCommand::Create {
                config_name: config,
                overrides,
            },
            _,
        ) => match crate::toolstack::create(host, &config, &overrides) {
            Ok(d) => ok(format!("dom0: created d{d} from {config}\n")),
            Err(sentence) => fail(sentence),
        },
        (XlCommand::Dmesg { clear }, _) => match toolstack::console_ring(clear) {
            Ok(text) => ok(text),
            Err(e) => fail(format!(
                "cannot read the hypervisor's console ring: {}",
                why(e)
            )),
        },
        (XlCommand::Files, _) => {
            let mut text = String::new();
            for (name, size) in host.toolstack.files.list() {
                text.push_str(&format!("{name} {size}\n"));
            }
            let (free, largest) = host.toolstack.files.room_free();
            text.push_str(&format!(
                "({} KiB free for uploads, {} KiB in one piece)\n",
                free / 1024,
                largest / 1024
            ));
            ok(text)
        }
        (XlCommand::Have(file), _) => {
            if host.toolstack.files.holds(&file.name, file.size, file.crc) {
                ok(format!("dom0: holding {} already\n", file.name))
            } else {
                fail(format!(
                    "holding no {} of {} bytes with CRC-32 {:08x}",
                    file.name, file.size, file.crc
                ))
            }
        }
        (XlCommand::Upload(_), _) => fail(String::from(
            "upload takes the file's bytes after it, so it works over the control channel only: cargo xtask xl create PATH sends the files a config needs",
        )),
        (XlCommand::BenchCreate { config_name }, _) => {
            match crate::create_bench::run(host, &config_name) {
                Ok(text) => ok(text),
                Err(sentence) => fail(sentence),
            }
        }
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
