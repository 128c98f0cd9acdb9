//! Dom0 owns the machine's PCI devices: its configuration-space accesses
//! (ports 0xCF8/0xCFC) go through the filter in `crate::pci`, the BARs'
//! MMIO is mapped into its physmap at the same addresses, their I/O ports
//! are forwarded, and their interrupt lines arrive as pirq events
//! (PHYSDEVOP_map_pirq + EVTCHNOP_bind_pirq, acknowledged with
//! PHYSDEVOP_eoi), as in Xen.
//!
//! DMA: there is no IOMMU programming yet. Dom0 gets a pool of
//! host-contiguous memory mapped at guest-physical == host-physical
//! ([`DMA_POOL_BYTES`], named on its command line as `pavise.dma=`), and
//! its drivers hand devices only addresses inside it. Nothing enforces
//! that: a bad Dom0 driver could make a device read or write any host
//! memory (README, "DMA").
//!
//! The hypervisor's own devices (serial, local APIC, I/O APIC) are not
//! PCI functions, so Dom0 never reaches them through config space, and
//! their ports and MMIO are never opened or mapped.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use spin::Mutex;

use super::registry::Domain;
use crate::acpi::{Drhd, InterruptOverride, Madt};
use crate::arch::{idt, ioapic, lapic, pci_config};
use crate::mm::frame::{FRAME_SIZE, Frame};
use crate::mm::guest::{Gfn, HostMemory};
use crate::pci::{self, Bdf, Dom0Config};
use crate::println;

/// Size of Dom0's identity-mapped DMA pool.
pub const DMA_POOL_BYTES: u64 = 16 << 20;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: core::ops::RangeInclusive<u16> = 0xcfc..=0xcff;

struct Devices {
    config: Dom0Config,
    /// Dom0's last CONFIG_ADDRESS write (its view; the hardware port is
    /// the hypervisor's).
    address: u32,
    io_ranges: Vec<(u16, u16)>,
}

static DEVICES: Mutex<Option<Devices>> = Mutex::new(None);
static OVERRIDES: Mutex<Vec<InterruptOverride>> = Mutex::new(Vec::new());

fn hw_read(bdf: Bdf, reg: u16) -> u32 {
    pci_config::read(pci::config_address(bdf, reg))
}

fn hw_write(bdf: Bdf, reg: u16, value: u32) {
    pci_config::write(pci::config_address(bdf, reg), value)
}

/// The IOMMUs the firmware described (DMAR), used once Dom0 is built.
static IOMMUS: Mutex<Vec<Drhd>> = Mutex::new(Vec::new());
/// Register base of the unit translating for Dom0 (0: none).
static ENABLED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Takes the I/O APICs, the IOMMUs and the PCI bus (before Dom0 is built).
pub fn init(madt: Option<&Madt>, iommus: &[Drhd]) {
    *IOMMUS.lock() = iommus.to_vec();
    if let Some(madt) = madt {
        for chip in &madt.io_apics {
            match ioapic::add(chip.address, chip.gsi_base) {
                Some(pins) => log::info!(
                    "I/O APIC {} at {:#x}: GSIs {}..{}",
                    chip.id,
                    chip.address,
                    chip.gsi_base,
                    chip.gsi_base + pins
                ),
                None => log::warn!("I/O APIC at {:#x} not usable", chip.address),
            }
        }
        *OVERRIDES.lock() = madt.overrides.clone();
    }
    let devices = pci::enumerate(&mut hw_read, &mut hw_write);
    for d in &devices {
        log::info!(
            "pci {} {:04x}:{:04x} class {:06x} irq pin {} line {} bars {:x?}",
            d.bdf,
            d.vendor,
            d.device,
            d.class,
            d.interrupt_pin,
            d.interrupt_line,
            d.bars
                .iter()
                .map(|b| (b.index, b.base, b.size))
                .collect::<Vec<_>>()
        );
    }
    let config = Dom0Config::new(devices, &[]);
    let io_ranges = config.io_ranges();
    *DEVICES.lock() = Some(Devices {
        config,
        address: 0,
        io_ranges,
    });
    idt::on_device_interrupt(device_interrupt);
}

/// Reserves the DMA pool: host-contiguous, at or above `min` (Dom0's RAM
/// ends there, so guest-physical == host-physical is free) and below
/// 4 GiB (where Dom0's kernel maps everything one to one).
pub fn reserve_dma_pool(min: u64) -> Option<Frame> {
    let frames = (DMA_POOL_BYTES / FRAME_SIZE) as usize;
    let align = (2 << 20) / FRAME_SIZE as usize;
    let mut allocator = crate::mm::frames();
    let base = allocator.alloc_contiguous_from(frames, align, min / FRAME_SIZE)?;
    if base.start() + DMA_POOL_BYTES > 1 << 32 {
        for i in 0..frames as u64 {
            let _ = allocator.free(Frame(base.0 + i));
        }
        return None;
    }
    Some(base)
}

/// Maps the DMA pool and every device BAR into Dom0.
pub fn give_to_dom0(dom0: &Domain, pool: Option<Frame>) {
    let mut memory = dom0.memory.lock();
    if let Some(base) = pool {
        for i in 0..DMA_POOL_BYTES / FRAME_SIZE {
            let frame = Frame(base.0 + i);
            crate::mm::IdentityMap.write(frame, 0, &[0u8; FRAME_SIZE as usize]);
            let gfn = Gfn(frame.0);
            if memory.p2m.set_outside_ram(gfn, Some(frame)).is_err()
                || memory.second_level.map(frame.start(), frame).is_err()
            {
                log::warn!("DMA pool page {:#x} not mapped into Dom0", frame.start());
            }
        }
    }
    let Some(devices) = DEVICES.lock().as_ref().map(|d| d.config.mmio_ranges()) else {
        return;
    };
    let mut pages = 0;
    for (start, end) in devices {
        let mut gpa = start;
        while gpa < end {
            if gpa < dom0.mem_bytes() || memory.p2m.get(Gfn(gpa / FRAME_SIZE)).is_some() {
                log::warn!("BAR page {gpa:#x} overlaps Dom0's memory: not mapped");
            } else if memory.second_level.map_mmio(gpa, gpa).is_ok() {
                pages += 1;
            }
            gpa += FRAME_SIZE;
        }
    }
    log::info!("dom0: {pages} pages of device MMIO mapped");
    drop(memory);
    confine_dma(dom0);
}

/// Puts Dom0's devices behind the IOMMU, mapping Dom0's memory only; with
/// no IOMMU, says what that means.
fn confine_dma(dom0: &Domain) {
    // The unit covering segment 0: the INCLUDE_PCI_ALL one, or else the
    // only one (QEMU lists its devices as scopes; those are not parsed,
    // so a machine with several partial units gets no IOMMU).
    let units = IOMMUS.lock().clone();
    let segment0: Vec<&Drhd> = units.iter().filter(|u| u.segment == 0).collect();
    let unit = segment0
        .iter()
        .find(|u| u.include_pci_all)
        .or(if segment0.len() == 1 {
            segment0.first()
        } else {
            None
        });
    let Some(unit) = unit else {
        println!("pavise: no IOMMU: Dom0's devices can reach all memory (README, \"DMA\")");
        return;
    };
    let mut buses: Vec<u8> = DEVICES.lock().as_ref().map_or(Vec::new(), |d| {
        d.config.devices().iter().map(|d| d.bdf.bus).collect()
    });
    buses.push(0);
    let pages: Vec<(u64, Frame)> = dom0
        .memory
        .lock()
        .p2m
        .frames()
        .map(|(gfn, frame)| (gfn.0, frame))
        .collect();
    match crate::iommu::protect(unit, &buses, pages.into_iter()) {
        Ok(p) => {
            ENABLED.store(p.base, Ordering::SeqCst);
            println!(
                "pavise: IOMMU at {:#x}: Dom0's devices reach its {} pages only ({}-level tables)",
                p.base, p.pages, p.levels
            )
        }
        Err(e) => println!(
            "pavise: the IOMMU at {:#x} is not usable: {e}; Dom0's devices can reach all memory",
            unit.register_base
        ),
    }
}

/// When the IOMMU's fault records were last looked at (system-time ns).
static FAULTS_CHECKED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
const FAULT_POLL_NS: u64 = 20_000_000;

/// Reports DMA the IOMMU blocked (a Dom0 device reaching outside Dom0's
/// memory); looked at every 20 ms from the scheduler loop.
pub fn poll_dma_faults() {
    let now = crate::arch::time::system_time_ns();
    let last = FAULTS_CHECKED.load(Ordering::Relaxed);
    if now < last + FAULT_POLL_NS
        || FAULTS_CHECKED
            .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
    {
        return;
    }
    let Some(units) = IOMMUS.try_lock().map(|u| u.clone()) else {
        return;
    };
    for unit in units
        .iter()
        .filter(|u| ENABLED.load(Ordering::Relaxed) == u.register_base)
    {
        while let Some(f) = crate::iommu::take_fault(unit.register_base) {
            println!(
                "pavise: IOMMU blocked a DMA {} by {:02x}:{:02x}.{} at {:#x}, outside Dom0's memory",
                if f.write { "write" } else { "read" },
                f.source >> 8,
                (f.source >> 3) & 0x1f,
                f.source & 7,
                f.address
            );
        }
    }
}

/// A Dom0 port access the PCI bus answers: configuration space or a
/// device's I/O BAR. `None`: not a device port (the caller treats it as
/// an unbacked port).
pub fn dom0_io(port: u16, input: bool, size: u8, value: u32) -> Option<u32> {
    let mut guard = DEVICES.lock();
    let devices = guard.as_mut()?;
    if port == CONFIG_ADDRESS && size == 4 {
        if input {
            return Some(devices.address);
        }
        devices.address = value;
        return Some(0);
    }
    if CONFIG_DATA.contains(&port) {
        let offset = (port - CONFIG_DATA.start()) as u8;
        let Some((bdf, reg)) = pci::config_data_access(devices.address, offset, size) else {
            return Some(u32::MAX);
        };
        if input {
            return Some(devices.config.read(bdf, reg, size, &mut hw_read));
        }
        let outcome = devices
            .config
            .write(bdf, reg, size, value, &mut hw_read, &mut hw_write);
        if let pci::WriteOutcome::RefusedBarMove = outcome {
            log::warn!("dom0 tried to move a BAR of {bdf} (reg {reg:#x}): refused");
        }
        return Some(0);
    }
    let last = port.checked_add(size as u16 - 1)?;
    if devices
        .io_ranges
        .iter()
        .any(|&(start, end)| port >= start && last <= end)
    {
        drop(guard);
        if input {
            return Some(pci_config::port_in(port, size));
        }
        pci_config::port_out(port, size, value);
        return Some(0);
    }
    None
}

// ---- pirqs ----

/// A GSI Dom0 mapped; its pirq number is the GSI (as Xen gives a PVH or
/// PV Dom0 for legacy GSIs).
#[derive(Clone, Copy)]
struct MappedGsi {
    gsi: u32,
    bound: bool,
}

const VECTORS: usize = (idt::VECTOR_DEVICE_LAST - idt::VECTOR_DEVICE_FIRST + 1) as usize;

/// Indexed by vector - VECTOR_DEVICE_FIRST.
static MAPPED: Mutex<[Option<MappedGsi>; VECTORS]> = Mutex::new([None; VECTORS]);
/// Vectors (bit = index) that fired and wait for delivery to Dom0.
static PENDING: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PirqError {
    /// -EINVAL: not a GSI of a device Dom0 owns.
    NotADeviceGsi,
    /// -ENOSPC: every device vector is in use.
    NoVector,
}

/// PHYSDEVOP_map_pirq(GSI): routes `gsi` (masked until bound) and gives
/// its pirq.
pub fn map_gsi(gsi: u32) -> Result<u32, PirqError> {
    let owned = DEVICES
        .lock()
        .as_ref()
        .is_some_and(|d| d.config.owns_gsi(gsi));
    if !owned || !ioapic::has_gsi(gsi) {
        return Err(PirqError::NotADeviceGsi);
    }
    let mut mapped = MAPPED.lock();
    if mapped.iter().flatten().any(|m| m.gsi == gsi) {
        return Ok(gsi);
    }
    let index = mapped
        .iter()
        .position(Option::is_none)
        .ok_or(PirqError::NoVector)?;
    // PCI lines are level-triggered; QEMU's tables make them active high
    // (and an override in the MADT says otherwise where it differs).
    let (level, active_low) = OVERRIDES
        .lock()
        .iter()
        .find(|o| o.gsi == gsi)
        .map_or((true, false), |o| (o.level() || gsi >= 16, o.active_low()));
    let vector = idt::VECTOR_DEVICE_FIRST + index as u8;
    // To the CPU Dom0 asked from (any CPU would do: the handler only
    // notes the event).
    ioapic::route(gsi, vector, lapic::id(), level, active_low);
    mapped[index] = Some(MappedGsi { gsi, bound: false });
    Ok(gsi)
}

pub fn is_mapped(pirq: u32) -> bool {
    MAPPED.lock().iter().flatten().any(|m| m.gsi == pirq)
}

fn set_bound(pirq: u32, bound: bool) {
    let mut mapped = MAPPED.lock();
    if let Some(m) = mapped.iter_mut().flatten().find(|m| m.gsi == pirq) {
        m.bound = bound;
        if bound {
            ioapic::unmask(pirq);
        } else {
            ioapic::mask(pirq);
        }
    }
}

/// The pirq got an event channel: its line may fire.
pub fn bound(pirq: u32) {
    set_bound(pirq, true);
}

/// Its event channel was closed: masked again.
pub fn unbound(pirq: u32) {
    set_bound(pirq, false);
}

/// PHYSDEVOP_eoi: Dom0 has served the device; the line may fire again.
pub fn eoi(pirq: u32) -> bool {
    let mapped = MAPPED.lock();
    match mapped.iter().flatten().find(|m| m.gsi == pirq) {
        Some(m) => {
            if m.bound {
                ioapic::unmask(pirq);
            }
            true
        }
        None => false,
    }
}

/// The interrupt handler: mask the level-triggered line (it stays
/// asserted until Dom0 has served the device) and leave the event for
/// the scheduler loop, which holds no locks when it delivers.
fn device_interrupt(vector: u8) {
    let index = (vector - idt::VECTOR_DEVICE_FIRST) as usize;
    // Interrupts are taken only where the hypervisor holds no lock.
    if let Some(m) = MAPPED.lock()[index] {
        ioapic::mask(m.gsi);
    }
    PENDING.fetch_or(1 << index, Ordering::SeqCst);
}

/// Sends Dom0 the events of the interrupts that fired.
pub fn deliver_pending() {
    if PENDING.load(Ordering::Relaxed) == 0 {
        return;
    }
    let bits = PENDING.swap(0, Ordering::SeqCst);
    for index in 0..VECTORS {
        if bits & (1 << index) == 0 {
            continue;
        }
        let Some(m) = MAPPED.lock()[index] else {
            continue;
        };
        let target = super::events::CHANNELS.lock().pirq_target(0, m.gsi);
        if let Some(d) = target {
            super::events::deliver(d);
        }
    }
}
