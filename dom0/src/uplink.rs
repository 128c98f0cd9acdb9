//! The uplink: the machine's virtio-net NIC (QEMU user networking when
//! xtask runs with `--net`), driven by `virtio-drivers` over our HAL, one
//! port of the switch beside the DomUs' vifs. Frames go out and come in
//! unchanged: the NIC is a plain Ethernet port (no offloads negotiated),
//! so what reaches it has its checksums complete.

use guest_shim::println;
use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::transport::pci::PciTransport;

use crate::virtio::{self, Confined, PavisHal};

/// Transitional and modern virtio-net device ids.
const VIRTIO_NET_IDS: [u16; 2] = [0x1000, 0x1041];
/// Receive buffers kept posted (the virtqueue size).
const QUEUE_SIZE: usize = 64;
/// One receive buffer: an Ethernet frame of a 1500-byte MTU with its VLAN
/// tag and the virtio-net header fit (virtio-drivers' minimum).
const RX_BUFFER_LEN: usize = 2048;
/// Largest frame sent: 1500-byte MTU, Ethernet header and a VLAN tag.
pub const MAX_FRAME: usize = 1518;

type Net = VirtIONet<PavisHal, Confined<PciTransport>, QUEUE_SIZE>;

pub struct Uplink {
    net: Net,
    /// Our event channel for the NIC's interrupt (None: polled).
    pub port: Option<u32>,
    pub pirq: Option<u32>,
    pub sent: u64,
    pub received: u64,
    pub send_errors: u64,
}

/// Starts the virtio-net function in `slot` (`pavise.uplink=`). `shared`
/// names the port of a pirq a disk already bound.
pub fn probe(slot: u8, shared: impl Fn(u32) -> Option<u32>) -> Option<Uplink> {
    let Some((df, transport)) = virtio::open(slot, &VIRTIO_NET_IDS) else {
        println!("dom0: uplink: no virtio-net device in slot {slot:#x}");
        return None;
    };
    let mut net = match Net::new(transport, RX_BUFFER_LEN) {
        Ok(n) => n,
        Err(e) => {
            println!("dom0: uplink at slot {slot:#x}: virtio-net failed: {e:?}");
            return None;
        }
    };
    let (line, pirq, port) = virtio::interrupt(df, "uplink", shared);
    net.enable_interrupts();
    let mac = net.mac_address();
    println!(
        "dom0: uplink at slot {slot:#x}: mac {}, GSI {line} pirq {pirq:?} port {port:?}",
        dom0::netback::format_mac(&mac)
    );
    Some(Uplink {
        net,
        port,
        pirq,
        sent: 0,
        received: 0,
        send_errors: 0,
    })
}

impl Uplink {
    /// Sends one frame (waits for the NIC to take it: QEMU does at once).
    pub fn send(&mut self, frame: &[u8]) {
        if frame.len() > MAX_FRAME {
            self.send_errors += 1;
            return;
        }
        let mut buffer = self.net.new_tx_buffer(frame.len());
        buffer.packet_mut().copy_from_slice(frame);
        match self.net.send(buffer) {
            Ok(()) => self.sent += 1,
            Err(_) => self.send_errors += 1,
        }
    }

    /// Hands every frame the NIC has received to `deliver`, at most
    /// `budget` of them (so a flood from outside leaves time for the
    /// vifs); true if more may be waiting.
    pub fn receive(&mut self, budget: usize, mut deliver: impl FnMut(&[u8])) -> bool {
        for _ in 0..budget {
            let Ok(buffer) = self.net.receive() else {
                return false;
            };
            self.received += 1;
            deliver(buffer.packet());
            if let Err(e) = self.net.recycle_rx_buffer(buffer) {
                println!("dom0: uplink: receive buffer lost: {e:?}");
            }
        }
        self.net.can_recv()
    }

    /// Acknowledges the NIC's interrupt (its line is level-triggered).
    pub fn ack(&mut self) {
        let _ = self.net.ack_interrupt();
    }
}
