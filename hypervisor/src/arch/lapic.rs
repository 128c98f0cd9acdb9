//! The local APIC (xAPIC, memory-mapped): enable, EOI, inter-processor
//! interrupts for SMP start-up and halting, and the timer.

use core::sync::atomic::{AtomicU64, Ordering};

use bitflags::bitflags;
use x86_64::registers::model_specific::Msr;

use super::idt::{VECTOR_SPURIOUS, VECTOR_TIMER, VECTOR_WAKE};
use super::time;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Register offsets from the APIC base.
#[derive(Clone, Copy)]
#[repr(u64)]
enum Reg {
    Id = 0x20,
    Eoi = 0xb0,
    SpuriousVector = 0xf0,
    IcrLow = 0x300,
    IcrHigh = 0x310,
    LvtTimer = 0x320,
    TimerInitialCount = 0x380,
    TimerCurrentCount = 0x390,
    TimerDivide = 0x3e0,
}

bitflags! {
    /// Interrupt command register, low word.
    #[derive(Clone, Copy)]
    struct Icr: u32 {
        const DELIVERY_NMI = 0b100 << 8;
        const DELIVERY_INIT = 0b101 << 8;
        const DELIVERY_STARTUP = 0b110 << 8;
        const SEND_PENDING = 1 << 12;
        const LEVEL_ASSERT = 1 << 14;
        const ALL_EXCLUDING_SELF = 0b11 << 18;
    }
}

bitflags! {
    #[derive(Clone, Copy)]
    struct LvtTimer: u32 {
        const MASKED = 1 << 16;
    }
}

const SVR_APIC_ENABLE: u32 = 1 << 8;
const TIMER_DIVIDE_BY_16: u32 = 0b0011;

/// Physical = virtual (identity map) base of the xAPIC; 0 until enabled.
static BASE: AtomicU64 = AtomicU64::new(0);

fn read(reg: Reg) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: BASE is the identity-mapped, uncached APIC page set up by
    // `enable`; the offset is one of the architectural registers.
    unsafe { core::ptr::read_volatile((base + reg as u64) as *const u32) }
}

fn write(reg: Reg, value: u32) {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile((base + reg as u64) as *mut u32, value) }
}

/// Enables this CPU's local APIC with the spurious vector set.
pub fn enable() {
    let mut msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; setting the enable
    // bit keeps the architectural base address.
    let base = unsafe {
        let value = msr.read() | APIC_BASE_ENABLE;
        msr.write(value);
        value & APIC_BASE_ADDR_MASK
    };
    BASE.store(base, Ordering::Relaxed);
    write(
        Reg::SpuriousVector,
        SVR_APIC_ENABLE | VECTOR_SPURIOUS as u32,
    );
}

pub fn is_enabled() -> bool {
    BASE.load(Ordering::Relaxed) != 0
}

pub fn id() -> u32 {
    read(Reg::Id) >> 24
}

pub fn eoi() {
    if is_enabled() {
        write(Reg::Eoi, 0);
    }
}

fn send_ipi(dest_apic: u32, icr: Icr, vector: u8) {
    write(Reg::IcrHigh, dest_apic << 24);
    write(Reg::IcrLow, icr.bits() | vector as u32);
    while read(Reg::IcrLow) & Icr::SEND_PENDING.bits() != 0 {
        core::hint::spin_loop();
    }
}

/// INIT to every other CPU at once, then the 10 ms the MP specification
/// asks for before any STARTUP.
pub fn init_all_others() {
    send_ipi(
        0,
        Icr::DELIVERY_INIT | Icr::LEVEL_ASSERT | Icr::ALL_EXCLUDING_SELF,
        0,
    );
    time::delay_us(10_000);
}

/// Up to two STARTUPs at `page` (the trampoline's 4 KiB page number) to a
/// CPU that got INIT, until `started` says it runs.
pub fn start_ap(apic_id: u32, page: u8, started: impl Fn() -> bool) {
    for _ in 0..2 {
        if started() {
            return;
        }
        send_ipi(apic_id, Icr::DELIVERY_STARTUP, page);
        time::delay_us(200);
    }
}

/// Wakes the CPU with dense index `cpu` from its idle halt (a fixed
/// interrupt whose handler only EOIs: the scheduler loop does the rest).
pub fn wake(cpu: usize) {
    if let Some(target) = super::percpu::by_index(cpu)
        && is_enabled()
    {
        send_ipi(target.apic_id, Icr::empty(), VECTOR_WAKE);
    }
}

/// Sends an NMI to every other CPU (used to halt them on a fatal error).
pub fn nmi_all_others() {
    if is_enabled() {
        send_ipi(0, Icr::DELIVERY_NMI | Icr::ALL_EXCLUDING_SELF, 0);
    }
}

/// Measures this CPU's timer rate against the calibrated TSC, in timer
/// ticks (after divide-by-16) per millisecond.
pub fn calibrate_timer() -> u32 {
    const WINDOW_MS: u64 = 10;
    write(Reg::TimerDivide, TIMER_DIVIDE_BY_16);
    write(Reg::LvtTimer, LvtTimer::MASKED.bits() | VECTOR_TIMER as u32);
    write(Reg::TimerInitialCount, u32::MAX);
    time::delay_us(WINDOW_MS * 1000);
    let elapsed = u32::MAX - read(Reg::TimerCurrentCount);
    write(Reg::TimerInitialCount, 0);
    (elapsed as u64 / WINDOW_MS) as u32
}

/// Per CPU: the system time (ns) its one-shot timer is armed for; 0 once
/// it has fired (or was never armed).
static ARMED_FOR: [AtomicU64; crate::cmdline::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::cmdline::MAX_CPUS];

/// Arms this CPU's one-shot timer for system time `at` (ns), unless it is
/// already armed for exactly then — re-arming costs device accesses, slow
/// under emulation, and this runs before every guest entry. `at` in the
/// past fires at once (after `min_ns`).
pub fn arm_at(at: u64, min_ns: u64) {
    let cpu = super::percpu::current();
    let index = cpu.map_or(0, |c| c.index);
    if ARMED_FOR[index].load(Ordering::Relaxed) == at {
        return;
    }
    ARMED_FOR[index].store(at, Ordering::Relaxed);
    let ticks_per_ms = cpu.map_or(0, |c| c.lapic_ticks_per_ms.load(Ordering::Relaxed));
    let now = time::system_time_ns();
    arm_oneshot(ticks_per_ms, at.saturating_sub(now).max(min_ns));
}

/// The timer interrupt: the armed moment has come.
pub fn timer_fired(cpu: usize) {
    ARMED_FOR[cpu].store(0, Ordering::Relaxed);
}

/// Arms a one-shot timer interrupt `ns` nanoseconds from now at
/// `ticks_per_ms` (at least one tick; far deadlines are capped at the
/// counter's range, so the CPU just wakes early and re-arms).
pub fn arm_oneshot(ticks_per_ms: u32, ns: u64) {
    let ticks = (ns as u128 * ticks_per_ms as u128 / 1_000_000).clamp(1, u32::MAX as u128) as u32;
    // Divide and LVT stay as `calibrate_timer` and the first call left
    // them; only the count changes.
    if read(Reg::LvtTimer) != VECTOR_TIMER as u32 {
        write(Reg::TimerDivide, TIMER_DIVIDE_BY_16);
        write(Reg::LvtTimer, VECTOR_TIMER as u32);
    }
    write(Reg::TimerInitialCount, ticks);
}

/// Remaps the legacy 8259 PICs away from the exception vectors (0x20-0x2f)
/// and masks every line: Pavise takes interrupts only from local APICs.
pub fn disable_legacy_pic() {
    use x86_64::instructions::port::Port;
    const PIC1_COMMAND: u16 = 0x20;
    const PIC1_DATA: u16 = 0x21;
    const PIC2_COMMAND: u16 = 0xa0;
    const PIC2_DATA: u16 = 0xa1;
    const ICW1_INIT_ICW4: u8 = 0x11;
    const ICW4_8086: u8 = 0x01;
    const VECTOR_BASE: u8 = 0x20;
    let (mut c1, mut d1) = (Port::<u8>::new(PIC1_COMMAND), Port::<u8>::new(PIC1_DATA));
    let (mut c2, mut d2) = (Port::<u8>::new(PIC2_COMMAND), Port::<u8>::new(PIC2_DATA));
    // SAFETY: the standard 8259 initialisation sequence on the PC's fixed
    // ports; nothing else in Pavise uses the PICs.
    unsafe {
        c1.write(ICW1_INIT_ICW4);
        c2.write(ICW1_INIT_ICW4);
        d1.write(VECTOR_BASE);
        d2.write(VECTOR_BASE + 8);
        d1.write(4); // slave on IRQ2
        d2.write(2);
        d1.write(ICW4_8086);
        d2.write(ICW4_8086);
        d1.write(0xff);
        d2.write(0xff);
    }
}
