//! The local APIC, as far as event upcalls need it. Xen delivers the
//! per-vCPU upcall vector (HVMOP_set_evtchn_upcall_vector) through the
//! vCPU's local APIC, so a guest must software-enable it (SVR) and end
//! each upcall with an EOI, as Linux does; with the APIC left as reset
//! (software-disabled) Xen 4.17 never delivers an upcall. x2APIC mode
//! where the CPU offers it (an EOI is one WRMSR), else the xAPIC page.

use core::sync::atomic::{AtomicBool, Ordering};

const MSR_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
/// x2APIC registers: MSR 0x800 + (xAPIC offset >> 4).
const MSR_X2APIC_EOI: u32 = 0x80b;
const MSR_X2APIC_SVR: u32 = 0x80f;
/// The xAPIC page (identity-mapped by the entry code) and its registers.
const XAPIC_BASE: usize = 0xfee0_0000;
const XAPIC_EOI: usize = 0xb0;
const XAPIC_SVR: usize = 0xf0;
/// SVR: APIC software enable, spurious vector 0xff.
const SVR_ENABLED: u32 = 0x100 | 0xff;
/// CPUID.1:ECX bit 21.
const CPUID_X2APIC: u32 = 1 << 21;

static X2APIC: AtomicBool = AtomicBool::new(false);

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: an architectural MSR every x86-64 CPU (and hypervisor) has.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the APIC MSRs, written only as the SDM allows (x2APIC mode
    // entered before its registers are used).
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nomem, nostack))
    };
}

fn xapic_write(offset: usize, value: u32) {
    // SAFETY: the xAPIC register page, identity-mapped; aligned 32-bit
    // stores are how its registers are written.
    unsafe { core::ptr::write_volatile((XAPIC_BASE + offset) as *mut u32, value) };
}

/// Software-enables this vCPU's local APIC (x2APIC mode if offered).
pub fn enable() {
    let [_, _, ecx, _] = crate::discovery::cpuid(1);
    if ecx & CPUID_X2APIC != 0 {
        let base = rdmsr(MSR_APIC_BASE);
        wrmsr(MSR_APIC_BASE, base | APIC_BASE_ENABLE | APIC_BASE_X2APIC);
        wrmsr(MSR_X2APIC_SVR, u64::from(SVR_ENABLED));
        X2APIC.store(true, Ordering::SeqCst);
    } else {
        xapic_write(XAPIC_SVR, SVR_ENABLED);
    }
}

/// Ends the interrupt in service.
pub fn eoi() {
    if X2APIC.load(Ordering::Relaxed) {
        wrmsr(MSR_X2APIC_EOI, 0);
    } else {
        xapic_write(XAPIC_EOI, 0);
    }
}
