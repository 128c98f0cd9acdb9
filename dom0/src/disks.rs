//! Dom0's disks: every virtio-blk PCI function on bus 0, driven by the
//! `virtio-drivers` crate over our HAL (`virtio`), with its interrupt
//! line mapped to a pirq and bound to an event channel.
//!
//! Dom0 has no ACPI interpreter, so a device's GSI is the interrupt line
//! firmware wrote in its config space (SeaBIOS routes PCI interrupts to
//! ISA IRQs 5, 9, 10, 11, which the I/O APIC also receives on the same
//! pins).

use alloc::vec::Vec;

use guest_shim::println;
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::pci::PciTransport;

use crate::virtio::{self, Confined, PavisHal};

/// Transitional and modern virtio-blk device ids.
const VIRTIO_BLK_IDS: [u16; 2] = [0x1001, 0x1042];

pub type Blk = VirtIOBlk<PavisHal, Confined<PciTransport>>;

pub struct Disk {
    /// PCI device number on bus 0 (how xtask names it to us).
    pub slot: u8,
    pub blk: Blk,
    pub sectors: u64,
    pub readonly: bool,
    pub pirq: Option<u32>,
    /// Our event channel for the device's interrupt.
    pub port: Option<u32>,
}

/// Finds and starts every virtio-blk function on bus 0.
pub fn probe() -> Vec<Disk> {
    let mut disks = Vec::new();
    for slot in 0..32u8 {
        let Some((df, transport)) = virtio::open(slot, &VIRTIO_BLK_IDS) else {
            continue;
        };
        let blk = match Blk::new(transport) {
            Ok(b) => b,
            Err(e) => {
                println!("dom0: disk at slot {slot:#x}: virtio-blk failed: {e:?}");
                continue;
            }
        };
        // PCI lines are shared: a pirq another disk already bound keeps
        // its port, and every disk on it is acknowledged on its event.
        let shared = |pirq: u32| {
            disks
                .iter()
                .find(|d: &&Disk| d.pirq == Some(pirq))
                .and_then(|d| d.port)
        };
        let (line, pirq, port) =
            virtio::interrupt(df, &alloc::format!("disk at slot {slot:#x}"), shared);
        let sectors = blk.capacity();
        let readonly = blk.readonly();
        println!(
            "dom0: disk at slot {slot:#x}: {} MiB{}, GSI {line} pirq {pirq:?} port {port:?}",
            sectors >> 11,
            if readonly { " read-only" } else { "" },
        );
        disks.push(Disk {
            slot,
            blk,
            sectors,
            readonly,
            pirq,
            port,
        });
    }
    disks
}
