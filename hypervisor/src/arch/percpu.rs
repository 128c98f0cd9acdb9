//! Per-CPU data: one `PerCpu` per started CPU, found through GS base.

use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

use x86_64::VirtAddr;
use x86_64::registers::model_specific::GsBase;

pub struct PerCpu {
    /// Dense index, 0 = boot CPU.
    pub index: usize,
    pub apic_id: u32,
    /// The CPU's main stack `[bottom, top)`, for the backtrace walker.
    pub stack: (u64, u64),
    pub lapic_ticks_per_ms: AtomicU32,
}

/// Every installed CPU's data, by index (for IPIs to a given CPU).
static BY_INDEX: [AtomicPtr<PerCpu>; crate::cmdline::MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; crate::cmdline::MAX_CPUS];

/// Makes `cpu` this CPU's per-CPU data.
pub fn install(cpu: &'static PerCpu) {
    GsBase::write(VirtAddr::from_ptr(cpu));
    if let Some(slot) = BY_INDEX.get(cpu.index) {
        slot.store(core::ptr::from_ref(cpu).cast_mut(), Ordering::SeqCst);
    }
}

/// The data of the CPU with dense index `index`, once it is installed.
pub fn by_index(index: usize) -> Option<&'static PerCpu> {
    let cpu = BY_INDEX.get(index)?.load(Ordering::SeqCst);
    // SAFETY: only `install` stores here, a leaked `&'static PerCpu`.
    (!cpu.is_null()).then(|| unsafe { &*cpu })
}

pub fn current() -> Option<&'static PerCpu> {
    let base = GsBase::read();
    if base.is_null() {
        return None;
    }
    // SAFETY: GS base is only ever written by `install` with a leaked,
    // never-freed `&'static PerCpu`.
    Some(unsafe { &*base.as_ptr::<PerCpu>() })
}

pub fn current_index() -> usize {
    current().map_or(0, |c| c.index)
}

impl PerCpu {
    pub fn set_lapic_rate(&self, ticks_per_ms: u32) {
        self.lapic_ticks_per_ms
            .store(ticks_per_ms, Ordering::Relaxed);
    }
}
