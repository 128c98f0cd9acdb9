//! The host's I/O APICs: where a device's interrupt line (a GSI) goes.
//!
//! Pavise routes only the GSIs Dom0 maps as pirqs (PHYSDEVOP_map_pirq);
//! every other pin stays masked. A routed pin is level-triggered, so the
//! interrupt handler masks it until Dom0 has served the device and says
//! so (PHYSDEVOP_eoi), as Xen does for a level-triggered pirq.

use bitflags::bitflags;
use spin::Mutex;

/// Register select and window, offsets from the I/O APIC's base.
const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
/// Indirect registers.
const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION_BASE: u32 = 0x10;

bitflags! {
    /// Low word of a redirection-table entry (fixed delivery, physical
    /// destination: the bits left clear).
    #[derive(Clone, Copy, Debug)]
    struct Redirection: u32 {
        const ACTIVE_LOW = 1 << 13;
        const LEVEL = 1 << 15;
        const MASKED = 1 << 16;
    }
}

const VECTOR_MASK: u32 = 0xff;
const DESTINATION_SHIFT: u32 = 24;

#[derive(Clone, Copy)]
struct Chip {
    base: u64,
    gsi_base: u32,
    pins: u32,
}

/// At most this many I/O APICs are used (QEMU and most PCs have one).
const MAX_CHIPS: usize = 4;

static CHIPS: Mutex<[Option<Chip>; MAX_CHIPS]> = Mutex::new([None; MAX_CHIPS]);

fn read(base: u64, reg: u32) -> u32 {
    // SAFETY: `base` is an I/O APIC's register page from the MADT,
    // identity-mapped uncached (non-RAM); callers hold CHIPS, so the
    // select/window pair is not interleaved.
    unsafe {
        core::ptr::write_volatile((base + IOREGSEL) as *mut u32, reg);
        core::ptr::read_volatile((base + IOWIN) as *const u32)
    }
}

fn write(base: u64, reg: u32, value: u32) {
    // SAFETY: as in `read`.
    unsafe {
        core::ptr::write_volatile((base + IOREGSEL) as *mut u32, reg);
        core::ptr::write_volatile((base + IOWIN) as *mut u32, value);
    }
}

/// Takes over the I/O APIC at `base` (below 4 GiB) whose first pin is
/// `gsi_base`, masking every pin. Returns its pin count.
pub fn add(base: u64, gsi_base: u32) -> Option<u32> {
    if base == 0 || base >= 1 << 32 {
        return None;
    }
    let mut chips = CHIPS.lock();
    let slot = chips.iter_mut().find(|c| c.is_none())?;
    let pins = ((read(base, REG_VERSION) >> 16) & 0xff) + 1;
    for pin in 0..pins {
        write(
            base,
            REG_REDIRECTION_BASE + 2 * pin,
            Redirection::MASKED.bits(),
        );
        write(base, REG_REDIRECTION_BASE + 2 * pin + 1, 0);
    }
    *slot = Some(Chip {
        base,
        gsi_base,
        pins,
    });
    Some(pins)
}

fn with_pin<R>(gsi: u32, f: impl FnOnce(u64, u32) -> R) -> Option<R> {
    let chips = CHIPS.lock();
    let chip = chips
        .iter()
        .flatten()
        .find(|c| gsi >= c.gsi_base && gsi - c.gsi_base < c.pins)?;
    Some(f(
        chip.base,
        REG_REDIRECTION_BASE + 2 * (gsi - chip.gsi_base),
    ))
}

/// GSIs the I/O APICs cover (Xen's `nr_irqs_gsi`: the highest pin's GSI
/// plus one, at least the 16 legacy IRQs).
pub fn gsi_count() -> u32 {
    CHIPS
        .lock()
        .iter()
        .flatten()
        .map(|c| c.gsi_base + c.pins)
        .max()
        .unwrap_or(0)
        .max(16)
}

/// Whether some I/O APIC has a pin for `gsi`.
pub fn has_gsi(gsi: u32) -> bool {
    with_pin(gsi, |_, _| ()).is_some()
}

/// Points `gsi` at `vector` on the CPU with `apic_id`, masked; `unmask`
/// then lets it fire.
pub fn route(gsi: u32, vector: u8, apic_id: u32, level: bool, active_low: bool) -> bool {
    with_pin(gsi, |base, reg| {
        let mut low = Redirection::MASKED;
        low.set(Redirection::LEVEL, level);
        low.set(Redirection::ACTIVE_LOW, active_low);
        write(base, reg + 1, apic_id << DESTINATION_SHIFT);
        write(base, reg, low.bits() | (vector as u32 & VECTOR_MASK));
    })
    .is_some()
}

fn set_masked(gsi: u32, masked: bool) {
    with_pin(gsi, |base, reg| {
        let mut low = Redirection::from_bits_retain(read(base, reg));
        low.set(Redirection::MASKED, masked);
        write(base, reg, low.bits());
    });
}

pub fn mask(gsi: u32) {
    set_masked(gsi, true);
}

pub fn unmask(gsi: u32) {
    set_masked(gsi, false);
}
