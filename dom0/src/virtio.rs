//! What the `virtio-drivers` crate needs from Dom0: a HAL over the DMA
//! pool (`dom0::dma`), with bounce buffers for memory outside it, and
//! PCI configuration access through ports 0xCF8/0xCFC (which the
//! hypervisor filters: BARs stay where firmware put them, MSI stays off).
//!
//! Dom0 runs on guest-shim's identity map of the low 4 GiB, so a
//! guest-physical address below 4 GiB is also its virtual address; the
//! pool's guest-physical addresses are host-physical too, so they are
//! what the device is given.

use core::ptr::NonNull;

use dom0::dma::{PAGE, PagePool};
use guest_shim::{events, hypercall, println};
use spin::Mutex;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

static POOL: Mutex<Option<PagePool>> = Mutex::new(None);

/// `pavise.dmatest` only: the device address the next shared buffer is
/// given instead of its own, to show the IOMMU refusing it.
static AIM: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Makes the next `share` hand the device `addr` (0: back to normal).
pub fn aim_next_share(addr: u64) {
    AIM.store(addr, core::sync::atomic::Ordering::SeqCst);
}

/// Takes the pool named by `pavise.dma=` on the command line.
pub fn init(cmdline: &str) -> bool {
    match dom0::dma::parse_word(cmdline) {
        Some((base, size)) if base + size <= 1 << 32 => {
            *POOL.lock() = Some(PagePool::new(base, size));
            true
        }
        _ => false,
    }
}

pub fn free_pages() -> usize {
    POOL.lock().as_ref().map_or(0, PagePool::free_pages)
}

fn pages_for(len: usize) -> usize {
    len.div_ceil(PAGE as usize).max(1)
}

/// `pages` zeroed pool pages: (device address, pointer), or None.
pub fn alloc(pages: usize) -> Option<(u64, NonNull<u8>)> {
    let addr = POOL.lock().as_mut()?.alloc(pages)?;
    let ptr = NonNull::new(addr as *mut u8)?;
    // SAFETY: the run was just allocated from the pool, which the
    // hypervisor mapped (identity) for Dom0 alone; nobody else uses it.
    unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, pages * PAGE as usize) };
    Some((addr, ptr))
}

pub fn free(addr: u64, pages: usize) {
    if let Some(pool) = POOL.lock().as_mut()
        && !pool.free(addr, pages)
    {
        guest_shim::println!("dom0: DMA pool: bad free of {addr:#x} ({pages} pages)");
    }
}

fn in_pool(addr: u64, len: usize) -> bool {
    POOL.lock()
        .as_ref()
        .is_some_and(|p| p.contains(addr, len as u64))
}

pub struct PavisHal;

// SAFETY: dma_alloc returns zeroed, page-aligned pool memory that is
// device-visible at the returned address and stays allocated until
// dma_dealloc; share returns an address the device may use for the
// buffer's length (the buffer itself if in the pool, else a bounce copy)
// until unshare.
unsafe impl Hal for PavisHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        alloc(pages).unwrap_or((0, NonNull::dangling()))
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        free(paddr, pages);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // BARs below 4 GiB are identity-mapped (the hypervisor mapped
        // them into Dom0 at their own addresses).
        NonNull::new(paddr as *mut u8).expect("BAR at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let addr = buffer.as_ptr() as *mut u8 as u64;
        let len = buffer.len();
        let aimed = AIM.swap(0, core::sync::atomic::Ordering::SeqCst);
        if aimed != 0 && len > 16 {
            return aimed;
        } else if aimed != 0 {
            AIM.store(aimed, core::sync::atomic::Ordering::SeqCst);
        }
        if in_pool(addr, len) {
            return addr;
        }
        let Some((bounce, ptr)) = alloc(pages_for(len)) else {
            panic!("DMA pool exhausted ({len} bytes to bounce)");
        };
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller's buffer is valid for `len` bytes; the
            // bounce run is at least that long and ours.
            unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, ptr.as_ptr(), len) };
        }
        bounce
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let addr = buffer.as_ptr() as *mut u8 as u64;
        let len = buffer.len();
        if paddr == addr || !in_pool(paddr, len) {
            return;
        }
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: `paddr` is the bounce run `share` made for this
            // buffer, which is valid for `len` bytes.
            unsafe { core::ptr::copy_nonoverlapping(paddr as *const u8, addr as *mut u8, len) };
        }
        free(paddr, pages_for(len));
    }
}

/// Configuration mechanism #1 through the (filtered) ports.
pub struct PortCam;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

fn address(df: DeviceFunction, reg: u8) -> u32 {
    1 << 31
        | (df.bus as u32) << 16
        | (df.device as u32) << 11
        | (df.function as u32) << 8
        | (reg as u32 & 0xfc)
}

fn outl(port: u16, value: u32) {
    // SAFETY: the configuration ports; the hypervisor emulates them.
    unsafe { core::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack)) };
}

fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as in `outl`.
    unsafe { core::arch::asm!("in eax, dx", in("dx") port, out("eax") value, options(nostack)) };
    value
}

pub fn config_read(df: DeviceFunction, reg: u8) -> u32 {
    outl(CONFIG_ADDRESS, address(df, reg));
    inl(CONFIG_DATA)
}

pub fn config_write(df: DeviceFunction, reg: u8, value: u32) {
    outl(CONFIG_ADDRESS, address(df, reg));
    outl(CONFIG_DATA, value);
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, reg: u8) -> u32 {
        config_read(df, reg)
    }

    fn write_word(&mut self, df: DeviceFunction, reg: u8, value: u32) {
        config_write(df, reg, value)
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// A virtio transport that accepts VIRTIO_F_ACCESS_PLATFORM when the
/// device offers it. The `virtio-drivers` block driver does not list that
/// feature, but a device behind an IOMMU (QEMU's `iommu_platform=on`)
/// refuses a driver that declines it — and accepting it is what makes the
/// device's DMA go through the IOMMU, which confines it to Dom0. Our HAL
/// already hands devices Dom0 addresses, which is what the feature asks.
pub struct Confined<T: Transport> {
    inner: T,
    offered: u64,
}

const ACCESS_PLATFORM: u64 = 1 << 33;

impl<T: Transport> Confined<T> {
    pub fn new(inner: T) -> Self {
        Self { inner, offered: 0 }
    }
}

impl<T: Transport> Transport for Confined<T> {
    fn device_type(&self) -> DeviceType {
        self.inner.device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        self.offered = self.inner.read_device_features();
        self.offered
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        self.inner
            .write_driver_features(driver_features | (self.offered & ACCESS_PLATFORM));
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.inner.max_queue_size(queue)
    }
    fn notify(&mut self, queue: u16) {
        self.inner.notify(queue)
    }
    fn get_status(&self) -> DeviceStatus {
        self.inner.get_status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.inner.set_status(status)
    }
    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.inner.set_guest_page_size(guest_page_size)
    }
    fn requires_legacy_layout(&self) -> bool {
        self.inner.requires_legacy_layout()
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.inner
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }
    fn queue_unset(&mut self, queue: u16) {
        self.inner.queue_unset(queue)
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.inner.queue_used(queue)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.inner.ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.inner.read_config_generation()
    }
    fn read_config_space<V: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<V> {
        self.inner.read_config_space(offset)
    }
    fn write_config_space<V: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> virtio_drivers::Result<()> {
        self.inner.write_config_space(offset, value)
    }
}

const VIRTIO_VENDOR: u16 = 0x1af4;
const REG_COMMAND: u8 = 0x04;
const REG_INTERRUPT: u8 = 0x3c;
const COMMAND_IO: u32 = 1 << 0;
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_BUS_MASTER: u32 = 1 << 2;
const NO_LINE: u32 = 0xff;

/// The virtio function 0 in `slot` of bus 0 if its device id is one of
/// `ids`: decoding and bus mastering on, its transport started.
pub fn open(slot: u8, ids: &[u16]) -> Option<(DeviceFunction, Confined<PciTransport>)> {
    let df = DeviceFunction {
        bus: 0,
        device: slot,
        function: 0,
    };
    let id = config_read(df, 0);
    let (vendor, device) = (id as u16, (id >> 16) as u16);
    if vendor != VIRTIO_VENDOR || !ids.contains(&device) {
        return None;
    }
    let command = config_read(df, REG_COMMAND);
    config_write(
        df,
        REG_COMMAND,
        (command & 0xffff) | COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER,
    );
    let mut root = PciRoot::new(PortCam);
    match PciTransport::new::<PavisHal, PortCam>(&mut root, df) {
        Ok(t) => Some((df, Confined::new(t))),
        Err(e) => {
            println!("dom0: device at slot {slot:#x}: virtio transport failed: {e:?}");
            None
        }
    }
}

/// The function's interrupt line (its GSI: Dom0 has no ACPI interpreter,
/// and SeaBIOS routes PCI lines to ISA IRQs the I/O APIC also receives on
/// the same pins) mapped to a pirq and bound to an event channel:
/// `(line, pirq, port)`, both `None` without a line or when binding
/// failed (then `what` — "disk at slot 0x10" — says so once, and the
/// device is polled). `shared` names the port of a pirq some other device
/// already bound (PCI lines are shared; the pirq is bound once).
pub fn interrupt(
    df: DeviceFunction,
    what: &str,
    shared: impl Fn(u32) -> Option<u32>,
) -> (u32, Option<u32>, Option<u32>) {
    let interrupt = config_read(df, REG_INTERRUPT);
    let (line, pin) = (interrupt & 0xff, (interrupt >> 8) & 0xff);
    if pin == 0 || line == NO_LINE {
        return (line, None, None);
    }
    let bound = hypercall::physdev_map_gsi(line).and_then(|p| match shared(p) {
        Some(port) => Ok((p, port)),
        None => Ok((p, events::bind_pirq(p)?)),
    });
    match bound {
        Ok((pirq, port)) => (line, Some(pirq), Some(port)),
        Err(e) => {
            println!("dom0: {what}: no interrupt (GSI {line}: {e}); polling");
            (line, None, None)
        }
    }
}
