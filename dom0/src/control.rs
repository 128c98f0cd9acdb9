//! The control channel: a virtio console (QEMU's virtio-serial, whose
//! other end is a Unix socket on the host) over which `cargo xtask xl`
//! sends the same xl commands that are typed on the serial console. Each
//! request is one line; the answer is the command's output followed by a
//! line `.end STATUS` (0: done, 1: refused), so scripts need not scrape
//! the console.

use alloc::string::String;
use alloc::vec::Vec;

use guest_shim::println;
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::transport::pci::PciTransport;

use crate::virtio::{self, Confined, PavisHal};

/// Transitional and modern virtio-console device ids.
const VIRTIO_CONSOLE_IDS: [u16; 2] = [0x1003, 0x1043];
/// Longest request line kept; a longer one is refused whole.
const LINE_MAX: usize = 1024;

type Device = VirtIOConsole<PavisHal, Confined<PciTransport>>;

pub struct Control {
    device: Device,
    /// Our event channel for its interrupt (None: polled), and its pirq.
    pub port: Option<u32>,
    pub pirq: Option<u32>,
    line: Vec<u8>,
    overlong: bool,
}

/// The slot xtask gives the channel's virtio-serial device.
pub const DEFAULT_SLOT: u8 = 0x09;

/// Starts the virtio console in `slot` (`pavise.control=`), or looks for
/// one in [`DEFAULT_SLOT`] (a machine without it has no channel). `shared`
/// names the port of a pirq another device already bound.
pub fn probe(slot: Option<u8>, shared: impl Fn(u32) -> Option<u32>) -> Option<Control> {
    let asked = slot.is_some();
    let slot = slot.unwrap_or(DEFAULT_SLOT);
    let Some((df, transport)) = virtio::open(slot, &VIRTIO_CONSOLE_IDS) else {
        if asked {
            println!("dom0: control channel: no virtio console in slot {slot:#x}");
        }
        return None;
    };
    let device = match Device::new(transport) {
        Ok(d) => d,
        Err(e) => {
            println!("dom0: control channel at slot {slot:#x}: virtio console failed: {e:?}");
            return None;
        }
    };
    let (line, pirq, port) = virtio::interrupt(df, "control channel", shared);
    println!("dom0: control channel at slot {slot:#x}: GSI {line} pirq {pirq:?} port {port:?}");
    Some(Control {
        device,
        port,
        pirq,
        line: Vec::new(),
        overlong: false,
    })
}

impl Control {
    /// Acknowledges the interrupt (the pirq's EOI is the caller's).
    pub fn ack(&mut self) {
        let _ = self.device.ack_interrupt();
    }

    /// Runs every complete request line that has arrived. True if any
    /// byte came in.
    pub fn serve(&mut self, host: &mut crate::console::Host) -> bool {
        let mut moved = false;
        while let Ok(Some(byte)) = self.device.recv(true) {
            moved = true;
            match byte {
                b'\n' => {
                    let line = core::mem::take(&mut self.line);
                    let reply = if core::mem::take(&mut self.overlong) {
                        crate::console::Reply {
                            text: alloc::format!(
                                "dom0: a request is one line of at most {LINE_MAX} bytes\n"
                            ),
                            ok: false,
                        }
                    } else {
                        let text = String::from_utf8_lossy(&line);
                        crate::console::run(text.trim(), host, false)
                    };
                    self.answer(&reply);
                }
                b'\r' => {}
                _ if self.line.len() < LINE_MAX => self.line.push(byte),
                _ => self.overlong = true,
            }
        }
        moved
    }

    fn answer(&mut self, reply: &crate::console::Reply) {
        let end = alloc::format!(".end {}\n", if reply.ok { 0 } else { 1 });
        // A host that went away loses its answer; the next one connects anew.
        let _ = self.device.send_bytes(reply.text.as_bytes());
        let _ = self.device.send_bytes(end.as_bytes());
    }
}
