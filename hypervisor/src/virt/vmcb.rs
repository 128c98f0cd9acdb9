//! The AMD-V virtual machine control block: layout, intercept bits and
//! exit codes (AMD APM vol. 2, appendix B). Pure data, host-tested.

use bitflags::bitflags;

/// A segment register in the VMCB's save area.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Segment {
    pub selector: u16,
    /// Descriptor attributes, compressed: type/S/DPL/P in bits 0-7,
    /// AVL/L/DB/G in bits 8-11.
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

bitflags! {
    /// Intercept vector 3 (offset 0x0c).
    #[derive(Clone, Copy, Debug)]
    pub struct Intercept3: u32 {
        const INTR = 1 << 0;
        const NMI = 1 << 1;
        const SMI = 1 << 2;
        const INIT = 1 << 3;
        const VINTR = 1 << 4;
        const CPUID = 1 << 18;
        const INVD = 1 << 22;
        const HLT = 1 << 24;
        const INVLPGA = 1 << 26;
        const IOIO_PROT = 1 << 27;
        const MSR_PROT = 1 << 28;
        const TASK_SWITCH = 1 << 29;
        const SHUTDOWN = 1 << 31;
    }
}

bitflags! {
    /// Intercept vector 4 (offset 0x10).
    #[derive(Clone, Copy, Debug)]
    pub struct Intercept4: u32 {
        const VMRUN = 1 << 0;
        const VMMCALL = 1 << 1;
        const VMLOAD = 1 << 2;
        const VMSAVE = 1 << 3;
        const STGI = 1 << 4;
        const CLGI = 1 << 5;
        const SKINIT = 1 << 6;
        const RDTSCP = 1 << 7;
        const ICEBP = 1 << 8;
        const MONITOR = 1 << 10;
        const MWAIT = 1 << 11;
        const XSETBV = 1 << 13;
    }
}

/// `intercept_cr` (offset 0x00): bits 16-31 intercept writes of CR0-CR15.
pub const INTERCEPT_CR4_WRITE: u32 = 1 << (16 + 4);

/// `vintr` field bits (offset 0x60).
pub const V_IRQ: u64 = 1 << 8;
pub const V_INTR_MASKING: u64 = 1 << 24;
pub const V_INTR_PRIO_SHIFT: u64 = 16;
pub const V_INTR_VECTOR_SHIFT: u64 = 32;
/// `intercept_dr`: reads (bits 0-15) and writes (16-31) of DR0-DR3, the
/// debug registers VMRUN does not switch (DR6 and DR7 are in the VMCB).
pub const INTERCEPT_DR0_3: u32 = 0x000f_000f;
/// `interrupt_shadow` bit 0: the guest is in an interrupt shadow.
pub const INTERRUPT_SHADOW: u64 = 1;
pub const NP_ENABLE: u64 = 1;
pub const TLB_FLUSH_ALL: u8 = 1;

/// Event injection (offset 0xa8).
pub const EVENT_VALID: u64 = 1 << 31;
pub const EVENT_ERROR_VALID: u64 = 1 << 11;
pub const EVENT_TYPE_INTR: u64 = 0 << 8;
pub const EVENT_TYPE_EXCEPTION: u64 = 3 << 8;
pub const EVENT_TYPE_NMI: u64 = 2 << 8;
pub const EVENT_TYPE_MASK: u64 = 7 << 8;
pub const EVENT_VECTOR_MASK: u64 = 0xff;
/// #BP and #OF: exceptions an instruction (INT3, INTO) raises.
const SOFT_EXCEPTIONS: [u64; 2] = [3, 4];

/// What to inject at the next VMRUN for an event whose delivery an exit
/// interrupted (`exit_int_info`, same layout as `event_inject`), or 0.
///
/// An interrupt, NMI or hardware exception was already accepted by the
/// guest (a virtual interrupt's V_IRQ is gone by then): dropping it would
/// lose it for good — an upcall lost this way leaves
/// `evtchn_upcall_pending` set and the guest never hears of an event
/// again. Those are injected again as they were. Software interrupts
/// (INT n) and the instruction-raised #BP/#OF are not: RIP still points
/// at the instruction, which raises them again when it re-executes.
pub fn reinjection(exit_int_info: u64) -> u64 {
    if exit_int_info & EVENT_VALID == 0 {
        return 0;
    }
    let kind = exit_int_info & EVENT_TYPE_MASK;
    let vector = exit_int_info & EVENT_VECTOR_MASK;
    if kind == EVENT_TYPE_EXCEPTION && vector >= FIRST_INTERRUPT_VECTOR {
        // An external or virtual interrupt recorded as an exception (QEMU
        // does): injecting an exception above 31 is refused by VMRUN, so
        // it goes in again as the interrupt it was (never an error code).
        return EVENT_VALID | EVENT_TYPE_INTR | vector;
    }
    let again = kind == EVENT_TYPE_INTR
        || kind == EVENT_TYPE_NMI
        || (kind == EVENT_TYPE_EXCEPTION && !SOFT_EXCEPTIONS.contains(&vector));
    if again { exit_int_info } else { 0 }
}

/// The vector of an external interrupt in `event_inject` layout, if that
/// is what `event` holds.
pub fn interrupt_vector(event: u64) -> Option<u8> {
    (event & EVENT_VALID != 0 && event & EVENT_TYPE_MASK == EVENT_TYPE_INTR)
        .then_some((event & EVENT_VECTOR_MASK) as u8)
}

/// Vectors from here on are interrupts, never exceptions.
const FIRST_INTERRUPT_VECTOR: u64 = 32;

/// Exit codes the hypervisor handles.
pub mod exit_code {
    pub const EXCEPTION_BASE: u64 = 0x40;
    pub const INTR: u64 = 0x60;
    pub const NMI: u64 = 0x61;
    pub const VINTR: u64 = 0x64;
    /// MOV to CR4 (0x10 + the register number).
    pub const CR4_WRITE: u64 = 0x14;
    /// MOV from DR0 (0x20 + the register number) and to DR0 (0x30 + it).
    pub const DR0_READ: u64 = 0x20;
    pub const DR0_WRITE: u64 = 0x30;
    pub const CPUID: u64 = 0x72;
    pub const HLT: u64 = 0x78;
    pub const IOIO: u64 = 0x7b;
    pub const MSR: u64 = 0x7c;
    pub const SHUTDOWN: u64 = 0x7f;
    /// VMRUN, VMMCALL, VMLOAD, VMSAVE, STGI, CLGI, SKINIT: 0x80-0x86.
    pub const VMRUN: u64 = 0x80;
    pub const VMMCALL: u64 = 0x81;
    pub const SKINIT: u64 = 0x86;
    pub const XSETBV: u64 = 0x8d;
    pub const NPF: u64 = 0x400;
    pub const INVALID: u64 = u64::MAX;
}

#[repr(C)]
pub struct Control {
    pub intercept_cr: u32,
    pub intercept_dr: u32,
    pub intercept_exceptions: u32,
    pub intercept3: u32,
    pub intercept4: u32,
    pub intercept5: u32,
    _reserved1: [u8; 0x3c - 0x18],
    pub pause_filter_threshold: u16,
    pub pause_filter_count: u16,
    pub iopm_base_pa: u64,
    pub msrpm_base_pa: u64,
    pub tsc_offset: u64,
    pub guest_asid: u32,
    pub tlb_control: u8,
    _reserved2: [u8; 3],
    pub vintr: u64,
    pub interrupt_shadow: u64,
    pub exit_code: u64,
    pub exit_info1: u64,
    pub exit_info2: u64,
    pub exit_int_info: u64,
    pub np_control: u64,
    pub avic_apic_bar: u64,
    pub ghcb_pa: u64,
    pub event_inject: u64,
    pub n_cr3: u64,
    pub lbr_virtualization: u64,
    pub clean_bits: u32,
    _reserved3: u32,
    pub next_rip: u64,
    pub insn_len: u8,
    pub insn_bytes: [u8; 15],
    _reserved4: [u8; 0x400 - 0xe0],
}

#[repr(C)]
pub struct SaveArea {
    pub es: Segment,
    pub cs: Segment,
    pub ss: Segment,
    pub ds: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub gdtr: Segment,
    pub ldtr: Segment,
    pub idtr: Segment,
    pub tr: Segment,
    _reserved1: [u8; 0xcb - 0xa0],
    pub cpl: u8,
    _reserved2: [u8; 4],
    pub efer: u64,
    _reserved3: [u8; 0x148 - 0xd8],
    pub cr4: u64,
    pub cr3: u64,
    pub cr0: u64,
    pub dr7: u64,
    pub dr6: u64,
    pub rflags: u64,
    pub rip: u64,
    _reserved4: [u8; 0x1d8 - 0x180],
    pub rsp: u64,
    _reserved5: [u8; 0x1f8 - 0x1e0],
    pub rax: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub cr2: u64,
    _reserved6: [u8; 0x268 - 0x248],
    pub g_pat: u64,
    _reserved7: [u8; 0xc00 - 0x270],
}

/// One VMCB: exactly one 4 KiB page.
#[repr(C, align(4096))]
pub struct Vmcb {
    pub control: Control,
    pub save: SaveArea,
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn only_a_valid_external_interrupt_has_an_interrupt_vector() {
        assert_eq!(
            interrupt_vector(EVENT_VALID | EVENT_TYPE_INTR | 0xf3),
            Some(0xf3)
        );
        assert_eq!(interrupt_vector(EVENT_TYPE_INTR | 0xf3), None);
        assert_eq!(
            interrupt_vector(EVENT_VALID | EVENT_TYPE_EXCEPTION | 13),
            None
        );
        assert_eq!(interrupt_vector(EVENT_VALID | EVENT_TYPE_NMI | 2), None);
    }

    #[test]
    fn interrupted_deliveries_are_injected_again_unless_an_instruction_repeats_them() {
        let event = |kind: u64, vector: u64| EVENT_VALID | kind | vector;
        assert_eq!(reinjection(0), 0);
        assert_eq!(reinjection(0xf3), 0, "not valid");
        let upcall = event(EVENT_TYPE_INTR, 0xf3);
        assert_eq!(reinjection(upcall), upcall);
        assert_eq!(
            reinjection(event(EVENT_TYPE_NMI, 2)),
            event(EVENT_TYPE_NMI, 2)
        );
        let gp = event(EVENT_TYPE_EXCEPTION, 13) | EVENT_ERROR_VALID | 0x18 << 32;
        assert_eq!(reinjection(gp), gp, "error code kept");
        assert_eq!(
            reinjection(event(EVENT_TYPE_EXCEPTION, 3)),
            0,
            "INT3 re-executes"
        );
        assert_eq!(
            reinjection(event(EVENT_TYPE_EXCEPTION, 4)),
            0,
            "INTO re-executes"
        );
        assert_eq!(reinjection(event(4 << 8, 0x80)), 0, "INT n re-executes");
        assert_eq!(
            reinjection(event(EVENT_TYPE_EXCEPTION, 0xf3) | EVENT_ERROR_VALID),
            upcall,
            "an interrupt recorded as an exception goes in as an interrupt"
        );
    }

    #[test]
    fn layout_matches_the_apm() {
        assert_eq!(size_of::<Vmcb>(), 4096);
        assert_eq!(size_of::<Segment>(), 16);
        assert_eq!(offset_of!(Control, intercept3), 0x0c);
        assert_eq!(offset_of!(Control, intercept4), 0x10);
        assert_eq!(offset_of!(Control, iopm_base_pa), 0x40);
        assert_eq!(offset_of!(Control, msrpm_base_pa), 0x48);
        assert_eq!(offset_of!(Control, tsc_offset), 0x50);
        assert_eq!(offset_of!(Control, guest_asid), 0x58);
        assert_eq!(offset_of!(Control, tlb_control), 0x5c);
        assert_eq!(offset_of!(Control, vintr), 0x60);
        assert_eq!(offset_of!(Control, interrupt_shadow), 0x68);
        assert_eq!(offset_of!(Control, exit_code), 0x70);
        assert_eq!(offset_of!(Control, exit_info1), 0x78);
        assert_eq!(offset_of!(Control, exit_info2), 0x80);
        assert_eq!(offset_of!(Control, exit_int_info), 0x88);
        assert_eq!(offset_of!(Control, np_control), 0x90);
        assert_eq!(offset_of!(Control, event_inject), 0xa8);
        assert_eq!(offset_of!(Control, n_cr3), 0xb0);
        assert_eq!(offset_of!(Control, clean_bits), 0xc0);
        assert_eq!(offset_of!(Control, next_rip), 0xc8);
        assert_eq!(offset_of!(Vmcb, save), 0x400);
        assert_eq!(offset_of!(SaveArea, cs), 0x10);
        assert_eq!(offset_of!(SaveArea, tr), 0x90);
        assert_eq!(offset_of!(SaveArea, cpl), 0xcb);
        assert_eq!(offset_of!(SaveArea, efer), 0xd0);
        assert_eq!(offset_of!(SaveArea, cr4), 0x148);
        assert_eq!(offset_of!(SaveArea, cr3), 0x150);
        assert_eq!(offset_of!(SaveArea, cr0), 0x158);
        assert_eq!(offset_of!(SaveArea, rflags), 0x170);
        assert_eq!(offset_of!(SaveArea, rip), 0x178);
        assert_eq!(offset_of!(SaveArea, rsp), 0x1d8);
        assert_eq!(offset_of!(SaveArea, rax), 0x1f8);
        assert_eq!(offset_of!(SaveArea, star), 0x200);
        assert_eq!(offset_of!(SaveArea, kernel_gs_base), 0x220);
        assert_eq!(offset_of!(SaveArea, cr2), 0x240);
        assert_eq!(offset_of!(SaveArea, g_pat), 0x268);
    }
}
