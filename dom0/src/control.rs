//! The control channel: a virtio console (QEMU's virtio-serial, whose
//! other end is a Unix socket on the host) over which `cargo xtask xl`
//! sends the same xl commands that are typed on the serial console. Each
//! request is one line; the answer is the command's output followed by a
//! line `.end STATUS` (0: done, 1: refused), so scripts need not scrape
//! the console.
//!
//! `upload NAME SIZE CRC32` is answered at once (`.end 0`: send them;
//! `.end 1`: refused, send nothing); then the next SIZE bytes are the
//! file, written straight into Dom0's file room, and a second answer says
//! whether it arrived whole (its CRC-32 matches).

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
    /// A file coming in after an `upload` line.
    upload: Option<dom0::files::Upload>,
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
        upload: None,
    })
}

impl Control {
    /// Acknowledges the interrupt (the pirq's EOI is the caller's).
    pub fn ack(&mut self) {
        let _ = self.device.ack_interrupt();
    }

    /// Whether a file is coming in (Dom0 then polls without sleeping).
    pub fn receiving(&self) -> bool {
        self.upload.is_some()
    }

    /// Runs every complete request line that has arrived, and takes the
    /// bytes of a file being uploaded. True if any byte came in.
    pub fn serve(&mut self, host: &mut crate::console::Host) -> bool {
        let mut moved = false;
        loop {
            if self.upload.is_some() {
                match self.take_upload_bytes(host) {
                    0 => return moved,
                    _ => {
                        moved = true;
                        continue;
                    }
                }
            }
            let Ok(Some(byte)) = self.device.recv(true) else {
                return moved;
            };
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
                        let text = text.trim();
                        match dom0::xl::parse(text) {
                            Ok(dom0::xl::XlCommand::Upload(file)) => self.begin_upload(host, file),
                            _ => crate::console::run(text, host, false),
                        }
                    };
                    self.answer(&reply);
                    // An empty file is whole at once.
                    if self.upload.as_ref().is_some_and(|u| u.remaining() == 0) {
                        self.end_upload(host);
                    }
                }
                b'\r' => {}
                _ if self.line.len() < LINE_MAX => self.line.push(byte),
                _ => self.overlong = true,
            }
        }
    }

    fn begin_upload(
        &mut self,
        host: &mut crate::console::Host,
        file: dom0::xl::Announced,
    ) -> crate::console::Reply {
        match host.toolstack.files.begin(&file.name, file.size, file.crc) {
            Ok(upload) => {
                self.upload = Some(upload);
                crate::console::Reply {
                    text: alloc::format!("dom0: send {} bytes of {}\n", file.size, file.name),
                    ok: true,
                }
            }
            Err(e) => crate::console::Reply {
                text: alloc::format!("dom0: {e}\n"),
                ok: false,
            },
        }
    }

    /// Moves what has arrived of the file into the room; answers when it
    /// is all in. Returns the bytes taken.
    fn take_upload_bytes(&mut self, host: &mut crate::console::Host) -> usize {
        let Some(upload) = self.upload.as_mut() else {
            return 0;
        };
        let mut chunk = [0u8; 4096];
        let mut n = 0;
        while n < chunk.len().min(upload.remaining()) {
            match self.device.recv(true) {
                Ok(Some(b)) => {
                    chunk[n] = b;
                    n += 1;
                }
                _ => break,
            }
        }
        host.toolstack.files.write(upload, &chunk[..n]);
        if upload.remaining() == 0 {
            self.end_upload(host);
        }
        n
    }

    fn end_upload(&mut self, host: &mut crate::console::Host) {
        let Some(upload) = self.upload.take() else {
            return;
        };
        let (name, len) = (String::from(upload.name()), upload.len());
        let reply = match host.toolstack.files.finish(upload) {
            Ok(()) => {
                println!("dom0: holding {name} ({len} bytes) from the host");
                crate::console::Reply {
                    text: alloc::format!("dom0: holding {name} ({len} bytes)\n"),
                    ok: true,
                }
            }
            Err(e) => crate::console::Reply {
                text: alloc::format!("dom0: {e}\n"),
                ok: false,
            },
        };
        self.answer(&reply);
    }

    fn answer(&mut self, reply: &crate::console::Reply) {
        let end = alloc::format!(".end {}\n", if reply.ok { 0 } else { 1 });
        // A host that went away loses its answer; the next one connects anew.
        // An empty buffer would be a zero-length descriptor, which the
        // device never completes.
        if !reply.text.is_empty() {
            let _ = self.device.send_bytes(reply.text.as_bytes());
        }
        let _ = self.device.send_bytes(end.as_bytes());
    }
}
