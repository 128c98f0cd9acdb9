//! PCI configuration space through the legacy mechanism #1 ports
//! (CONFIG_ADDRESS 0xCF8, CONFIG_DATA 0xCFC), dword at a time. One lock
//! covers the address/data pair for every CPU.

use spin::Mutex;
use x86_64::instructions::port::Port;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

static LOCK: Mutex<()> = Mutex::new(());

/// Reads the dword at `address` (a CONFIG_ADDRESS value, enable bit set).
pub fn read(address: u32) -> u32 {
    let _guard = LOCK.lock();
    // SAFETY: the configuration ports are the hypervisor's (guests' I/O
    // to them is intercepted); the lock keeps address and data paired.
    unsafe {
        Port::<u32>::new(CONFIG_ADDRESS).write(address);
        Port::<u32>::new(CONFIG_DATA).read()
    }
}

pub fn write(address: u32, value: u32) {
    let _guard = LOCK.lock();
    // SAFETY: as in `read`.
    unsafe {
        Port::<u32>::new(CONFIG_ADDRESS).write(address);
        Port::<u32>::new(CONFIG_DATA).write(value);
    }
}

/// Forwards a guest's access to an I/O port a device BAR decodes (the
/// caller checked that Dom0 owns it). `size` is 1, 2 or 4.
pub fn port_in(port: u16, size: u8) -> u32 {
    // SAFETY: the port belongs to a PCI device given to Dom0, not to the
    // hypervisor; reading it has no effect on Pavise's own devices.
    unsafe {
        match size {
            1 => Port::<u8>::new(port).read() as u32,
            2 => Port::<u16>::new(port).read() as u32,
            _ => Port::<u32>::new(port).read(),
        }
    }
}

pub fn port_out(port: u16, size: u8, value: u32) {
    // SAFETY: as in `port_in`.
    unsafe {
        match size {
            1 => Port::<u8>::new(port).write(value as u8),
            2 => Port::<u16>::new(port).write(value as u16),
            _ => Port::<u32>::new(port).write(value),
        }
    }
}
