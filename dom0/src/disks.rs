//! Dom0's disks: every virtio-blk PCI function on bus 0, driven by the
//! `virtio-drivers` crate over our HAL (`virtio`), with its interrupt
//! line mapped to a pirq and bound to an event channel.
//!
//! Dom0 has no ACPI interpreter, so a device's GSI is the interrupt line
//! firmware wrote in its config space (SeaBIOS routes PCI interrupts to
//! ISA IRQs 5, 9, 10, 11, which the I/O APIC also receives on the same
//! pins).

use alloc::vec::Vec;

use guest_shim::{events, hypercall, println};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};

use crate::virtio::{self, Confined, PavisHal, PortCam};

const VIRTIO_VENDOR: u16 = 0x1af4;
/// Transitional and modern virtio-blk device ids.
const VIRTIO_BLK_IDS: [u16; 2] = [0x1001, 0x1042];
const REG_COMMAND: u8 = 0x04;
const REG_INTERRUPT: u8 = 0x3c;
const COMMAND_IO: u32 = 1 << 0;
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_BUS_MASTER: u32 = 1 << 2;

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
        let df = DeviceFunction {
            bus: 0,
            device: slot,
            function: 0,
        };
        let id = virtio::config_read(df, 0);
        let (vendor, device) = (id as u16, (id >> 16) as u16);
        if vendor != VIRTIO_VENDOR || !VIRTIO_BLK_IDS.contains(&device) {
            continue;
        }
        let command = virtio::config_read(df, REG_COMMAND);
        virtio::config_write(
            df,
            REG_COMMAND,
            (command & 0xffff) | COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER,
        );
        let mut root = PciRoot::new(PortCam);
        let transport = match PciTransport::new::<PavisHal, PortCam>(&mut root, df) {
            Ok(t) => t,
            Err(e) => {
                println!("dom0: disk at slot {slot:#x}: virtio transport failed: {e:?}");
                continue;
            }
        };
        let transport = Confined::new(transport);
        let blk = match Blk::new(transport) {
            Ok(b) => b,
            Err(e) => {
                println!("dom0: disk at slot {slot:#x}: virtio-blk failed: {e:?}");
                continue;
            }
        };
        let interrupt = virtio::config_read(df, REG_INTERRUPT);
        let (line, pin) = (interrupt & 0xff, (interrupt >> 8) & 0xff);
        // PCI lines are shared: a pirq another disk already bound keeps
        // its port, and every disk on it is acknowledged on its event.
        let shared = |pirq: u32| {
            disks
                .iter()
                .find(|d: &&Disk| d.pirq == Some(pirq))
                .and_then(|d| d.port)
        };
        let (pirq, port) = if pin != 0 && line != 0xff {
            let bound = hypercall::physdev_map_gsi(line).and_then(|p| match shared(p) {
                Some(port) => Ok((p, port)),
                None => Ok((p, events::bind_pirq(p)?)),
            });
            match bound {
                Ok((pirq, port)) => (Some(pirq), Some(port)),
                Err(e) => {
                    println!(
                        "dom0: disk at slot {slot:#x}: no interrupt (GSI {line}: {e}); polling"
                    );
                    (None, None)
                }
            }
        } else {
            (None, None)
        };
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
