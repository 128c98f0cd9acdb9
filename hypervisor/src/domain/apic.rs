//! The emulated local APICs of a domain, wired to its vCPUs: APIC_BASE and
//! the x2APIC MSRs, reads of the xAPIC page, IPIs between vCPUs (fixed
//! vectors, INIT and STARTUP to bring a secondary vCPU up in real mode, as
//! Linux does on Xen), and the choice of the next vector to inject.
//!
//! The register model is the pure core `platform::vlapic`; this file only
//! routes its effects. Each APIC has its own lock, apart from the vCPU's,
//! so that another vCPU can raise an interrupt while this one runs.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use super::registry::{Domain, vcpu_state};
use super::sched;
use crate::platform::vlapic::{DeliveryMode, Effect, Gp, Ipi, MSR_APIC_BASE, is_x2apic_msr};
use crate::virt::{StartState, VirtCpu};

/// Guest-physical page of the xAPIC registers.
pub const XAPIC_PAGE: core::ops::Range<u64> = 0xfee0_0000..0xfee0_1000;

/// Whether `msr` belongs to the local APIC.
pub fn is_apic_msr(msr: u32) -> bool {
    msr == MSR_APIC_BASE || is_x2apic_msr(msr)
}

pub fn read_msr(domain: &Domain, vcpu: usize, msr: u32) -> Result<u64, Gp> {
    let lapic = domain.lapics[vcpu].lock();
    if msr == MSR_APIC_BASE {
        Ok(lapic.read_apic_base())
    } else {
        lapic.read_msr(msr)
    }
}

pub fn write_msr(domain: &Arc<Domain>, vcpu: usize, msr: u32, value: u64) -> Result<(), Gp> {
    let effect = {
        let mut lapic = domain.lapics[vcpu].lock();
        if msr == MSR_APIC_BASE {
            lapic.write_apic_base(value)?;
            None
        } else {
            lapic.write_msr(msr, value)?
        }
    };
    apply(domain, vcpu, effect);
    Ok(())
}

/// A 32-bit read of the xAPIC page at `offset`.
pub fn read_mmio(domain: &Domain, vcpu: usize, offset: u32) -> u32 {
    domain.lapics[vcpu].lock().read_mmio(offset & !0xf)
}

pub fn write_mmio(domain: &Arc<Domain>, vcpu: usize, offset: u32, value: u32) {
    let effect = domain.lapics[vcpu].lock().write_mmio(offset & !0xf, value);
    apply(domain, vcpu, effect);
}

fn apply(domain: &Arc<Domain>, sender: usize, effect: Option<Effect>) {
    // An EOI, TPR or enable may let a held vector through.
    domain.apic_hint[sender].store(true, Ordering::SeqCst);
    match effect {
        Some(Effect::Ipi(ipi)) => send_ipi(domain, sender, ipi),
        // The next vector, if any, is chosen before the next entry.
        Some(Effect::Eoi(_)) | None => {}
    }
}

/// Delivers an IPI from vCPU `sender` to every vCPU it names.
fn send_ipi(domain: &Arc<Domain>, sender: usize, ipi: Ipi) {
    for target in 0..domain.vcpus.len() {
        let hit = domain.lapics[target]
            .lock()
            .matches(&ipi.dest, target == sender);
        if !hit {
            continue;
        }
        match ipi.mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                if domain.lapics[target].lock().set_irr(ipi.vector) {
                    domain.apic_hint[target].store(true, Ordering::SeqCst);
                    domain.upcall_asserted[target].store(true, Ordering::SeqCst);
                    sched::wake(domain, target);
                }
            }
            DeliveryMode::Init => init(domain, target),
            DeliveryMode::Startup => startup(domain, target, ipi.vector),
            // Pavise injects no NMI or SMI into guests; INIT de-assert
            // does nothing on a modern APIC.
            DeliveryMode::Nmi | DeliveryMode::Smi | DeliveryMode::InitDeassert => {
                log::debug!(
                    "d{} vcpu{sender}: {:?} IPI not delivered",
                    domain.id,
                    ipi.mode
                );
            }
        }
    }
}

/// INIT: a vCPU that is down waits for STARTUP with its APIC reset. (A
/// running vCPU is not reset: Linux sends INIT only to vCPUs it brings up.)
fn init(domain: &Domain, target: usize) {
    if domain.vcpu_states[target].load(Ordering::SeqCst) != vcpu_state::DOWN {
        log::debug!(
            "d{} vcpu{target}: INIT to a running vCPU ignored",
            domain.id
        );
        return;
    }
    domain.lapics[target].lock().reset();
    domain.wait_for_sipi[target].store(true, Ordering::SeqCst);
}

/// STARTUP: a vCPU waiting after INIT starts in real mode at `vector << 12`.
fn startup(domain: &Arc<Domain>, target: usize, vector: u8) {
    if !domain.wait_for_sipi[target].swap(false, Ordering::SeqCst) {
        return; // the second STARTUP of the pair, or no INIT before it
    }
    if domain.vcpu_states[target].load(Ordering::SeqCst) != vcpu_state::DOWN {
        return;
    }
    {
        let mut slot = domain.vcpus[target].lock();
        slot.cpu.reset(StartState::RealMode {
            segment: (vector as u16) << 8,
        });
        slot.initialised = true;
    }
    sched::start(domain, target);
}

/// The vector to inject next into `vcpu`, if its APIC has one above its
/// priority; it moves to in-service.
pub fn take_pending(domain: &Domain, vcpu: usize) -> Option<u8> {
    let hint = &domain.apic_hint[vcpu];
    if !hint.load(Ordering::SeqCst) || !hint.swap(false, Ordering::SeqCst) {
        return None;
    }
    let mut lapic = domain.lapics[vcpu].lock();
    let vector = lapic.pending_vector()?;
    lapic.ack(vector);
    // There may be more behind it.
    domain.apic_hint[vcpu].store(true, Ordering::SeqCst);
    Some(vector)
}

/// Raises `vector` in `vcpu`'s APIC (the per-vCPU event upcall). Returns
/// false when the APIC cannot take it (software-disabled, as before Linux
/// sets it up): the caller then injects it directly.
pub fn raise(domain: &Domain, vcpu: usize, vector: u8) -> bool {
    let mut lapic = domain.lapics[vcpu].lock();
    let raised = lapic.sw_enabled() && lapic.set_irr(vector);
    if raised {
        domain.apic_hint[vcpu].store(true, Ordering::SeqCst);
    }
    raised
}

/// True if the vCPU's APIC has a vector to deliver (for HLT wake-ups).
pub fn has_pending(domain: &Domain, vcpu: usize) -> bool {
    domain.lapics[vcpu].lock().pending_vector().is_some()
}

/// Whether a nested page fault at `gpa` is an access to the xAPIC page.
pub fn is_xapic_access(gpa: u64) -> bool {
    XAPIC_PAGE.contains(&gpa)
}
