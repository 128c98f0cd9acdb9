//! The Intel VT-x virtual-machine control structure: field encodings,
//! control bits, exit reasons and the capability arithmetic (Intel SDM
//! vol. 3, chapters 25-28 and appendices A-C). Pure data, host-tested.
//!
//! A field's encoding is structured: bit 0 access (full/high), bits 1-9
//! index, bits 10-11 type (control, read-only, guest, host), bits 13-14
//! width (16-bit, 64-bit, 32-bit, natural).

/// VMCS field encodings.
pub mod field {
    // 16-bit control.
    pub const VPID: u32 = 0x0000;
    // 16-bit guest state: ES, CS, SS, DS, FS, GS, LDTR, TR selectors.
    pub const GUEST_ES_SELECTOR: u32 = 0x0800;
    // 16-bit host state.
    pub const HOST_ES_SELECTOR: u32 = 0x0c00;
    pub const HOST_CS_SELECTOR: u32 = 0x0c02;
    pub const HOST_SS_SELECTOR: u32 = 0x0c04;
    pub const HOST_DS_SELECTOR: u32 = 0x0c06;
    pub const HOST_FS_SELECTOR: u32 = 0x0c08;
    pub const HOST_GS_SELECTOR: u32 = 0x0c0a;
    pub const HOST_TR_SELECTOR: u32 = 0x0c0c;
    // 64-bit control.
    pub const IO_BITMAP_A: u32 = 0x2000;
    pub const IO_BITMAP_B: u32 = 0x2002;
    pub const MSR_BITMAP: u32 = 0x2004;
    pub const TSC_OFFSET: u32 = 0x2010;
    pub const EPT_POINTER: u32 = 0x201a;
    // 64-bit read-only.
    pub const GUEST_PHYSICAL_ADDRESS: u32 = 0x2400;
    // 64-bit guest state.
    pub const VMCS_LINK_POINTER: u32 = 0x2800;
    pub const GUEST_DEBUGCTL: u32 = 0x2802;
    pub const GUEST_PAT: u32 = 0x2804;
    pub const GUEST_EFER: u32 = 0x2806;
    // 64-bit host state.
    pub const HOST_PAT: u32 = 0x2c00;
    pub const HOST_EFER: u32 = 0x2c02;
    // 32-bit control.
    pub const PIN_BASED_CONTROLS: u32 = 0x4000;
    pub const PRIMARY_CONTROLS: u32 = 0x4002;
    pub const EXCEPTION_BITMAP: u32 = 0x4004;
    pub const CR3_TARGET_COUNT: u32 = 0x400a;
    pub const EXIT_CONTROLS: u32 = 0x400c;
    pub const EXIT_MSR_STORE_COUNT: u32 = 0x400e;
    pub const EXIT_MSR_LOAD_COUNT: u32 = 0x4010;
    pub const ENTRY_CONTROLS: u32 = 0x4012;
    pub const ENTRY_MSR_LOAD_COUNT: u32 = 0x4014;
    pub const ENTRY_INTERRUPTION_INFO: u32 = 0x4016;
    pub const ENTRY_EXCEPTION_ERROR_CODE: u32 = 0x4018;
    pub const ENTRY_INSTRUCTION_LENGTH: u32 = 0x401a;
    pub const SECONDARY_CONTROLS: u32 = 0x401e;
    // 32-bit read-only.
    pub const INSTRUCTION_ERROR: u32 = 0x4400;
    pub const EXIT_REASON: u32 = 0x4402;
    pub const IDT_VECTORING_INFO: u32 = 0x4408;
    pub const IDT_VECTORING_ERROR_CODE: u32 = 0x440a;
    pub const EXIT_INSTRUCTION_LENGTH: u32 = 0x440c;
    // 32-bit guest state: limits and access rights of ES..TR (2 apart).
    pub const GUEST_ES_LIMIT: u32 = 0x4800;
    pub const GUEST_GDTR_LIMIT: u32 = 0x4810;
    pub const GUEST_IDTR_LIMIT: u32 = 0x4812;
    pub const GUEST_ES_ACCESS_RIGHTS: u32 = 0x4814;
    pub const GUEST_INTERRUPTIBILITY: u32 = 0x4824;
    pub const GUEST_ACTIVITY_STATE: u32 = 0x4826;
    pub const GUEST_SYSENTER_CS: u32 = 0x482a;
    pub const GUEST_PREEMPTION_TIMER: u32 = 0x482e;
    // 32-bit host state.
    pub const HOST_SYSENTER_CS: u32 = 0x4c00;
    // Natural-width control.
    pub const CR0_GUEST_HOST_MASK: u32 = 0x6000;
    pub const CR4_GUEST_HOST_MASK: u32 = 0x6002;
    pub const CR0_READ_SHADOW: u32 = 0x6004;
    pub const CR4_READ_SHADOW: u32 = 0x6006;
    // Natural-width read-only.
    pub const EXIT_QUALIFICATION: u32 = 0x6400;
    // Natural-width guest state.
    pub const GUEST_CR0: u32 = 0x6800;
    pub const GUEST_CR3: u32 = 0x6802;
    pub const GUEST_CR4: u32 = 0x6804;
    /// Bases of ES..TR (2 apart), then GDTR and IDTR.
    pub const GUEST_ES_BASE: u32 = 0x6806;
    pub const GUEST_GDTR_BASE: u32 = 0x6816;
    pub const GUEST_IDTR_BASE: u32 = 0x6818;
    pub const GUEST_DR7: u32 = 0x681a;
    pub const GUEST_RSP: u32 = 0x681c;
    pub const GUEST_RIP: u32 = 0x681e;
    pub const GUEST_RFLAGS: u32 = 0x6820;
    pub const GUEST_PENDING_DEBUG: u32 = 0x6822;
    pub const GUEST_SYSENTER_ESP: u32 = 0x6824;
    pub const GUEST_SYSENTER_EIP: u32 = 0x6826;
    // Natural-width host state.
    pub const HOST_CR0: u32 = 0x6c00;
    pub const HOST_CR3: u32 = 0x6c02;
    pub const HOST_CR4: u32 = 0x6c04;
    pub const HOST_FS_BASE: u32 = 0x6c06;
    pub const HOST_GS_BASE: u32 = 0x6c08;
    pub const HOST_TR_BASE: u32 = 0x6c0a;
    pub const HOST_GDTR_BASE: u32 = 0x6c0c;
    pub const HOST_IDTR_BASE: u32 = 0x6c0e;
    pub const HOST_SYSENTER_ESP: u32 = 0x6c10;
    pub const HOST_SYSENTER_EIP: u32 = 0x6c12;
    pub const HOST_RSP: u32 = 0x6c14;
    pub const HOST_RIP: u32 = 0x6c16;
}

/// The guest segment registers in VMCS order (their selector, limit,
/// access-rights and base fields are each 2 apart from ES's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentReg {
    Es = 0,
    Cs = 1,
    Ss = 2,
    Ds = 3,
    Fs = 4,
    Gs = 5,
    Ldtr = 6,
    Tr = 7,
}

impl SegmentReg {
    pub const ALL: [Self; 8] = [
        Self::Es,
        Self::Cs,
        Self::Ss,
        Self::Ds,
        Self::Fs,
        Self::Gs,
        Self::Ldtr,
        Self::Tr,
    ];
    pub fn selector(self) -> u32 {
        field::GUEST_ES_SELECTOR + 2 * self as u32
    }
    pub fn limit(self) -> u32 {
        field::GUEST_ES_LIMIT + 2 * self as u32
    }
    pub fn access_rights(self) -> u32 {
        field::GUEST_ES_ACCESS_RIGHTS + 2 * self as u32
    }
    pub fn base(self) -> u32 {
        field::GUEST_ES_BASE + 2 * self as u32
    }
}

/// VMX access rights from the packed 12-bit attribute form the SVM VMCB
/// uses (type/S/DPL/P in bits 0-7, AVL/L/D/G in bits 8-11): VMX keeps
/// AVL/L/D/G in bits 12-15. Attribute 0 (a null selector) is "unusable".
pub fn access_rights(attrib: u16) -> u32 {
    const UNUSABLE: u32 = 1 << 16;
    if attrib == 0 {
        return UNUSABLE;
    }
    (attrib as u32 & 0xff) | ((attrib as u32 & 0xf00) << 4)
}

/// Pin-based controls.
pub mod pin {
    pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
    pub const NMI_EXITING: u32 = 1 << 3;
    pub const VIRTUAL_NMIS: u32 = 1 << 5;
    pub const PREEMPTION_TIMER: u32 = 1 << 6;
}

/// Primary processor-based controls.
pub mod primary {
    pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
    pub const USE_TSC_OFFSETTING: u32 = 1 << 3;
    pub const HLT_EXITING: u32 = 1 << 7;
    pub const MWAIT_EXITING: u32 = 1 << 10;
    pub const CR8_LOAD_EXITING: u32 = 1 << 19;
    pub const CR8_STORE_EXITING: u32 = 1 << 20;
    pub const MOV_DR_EXITING: u32 = 1 << 23;
    pub const UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
    pub const USE_IO_BITMAPS: u32 = 1 << 25;
    pub const USE_MSR_BITMAPS: u32 = 1 << 28;
    pub const MONITOR_EXITING: u32 = 1 << 29;
    pub const SECONDARY_CONTROLS: u32 = 1 << 31;
}

/// Secondary processor-based controls.
pub mod secondary {
    pub const ENABLE_EPT: u32 = 1 << 1;
    pub const ENABLE_RDTSCP: u32 = 1 << 3;
    pub const ENABLE_VPID: u32 = 1 << 5;
    pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
    pub const ENABLE_INVPCID: u32 = 1 << 12;
    pub const ENABLE_XSAVES: u32 = 1 << 20;
}

/// VM-exit controls.
pub mod exit {
    pub const SAVE_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
    pub const SAVE_PAT: u32 = 1 << 18;
    pub const LOAD_PAT: u32 = 1 << 19;
    pub const SAVE_EFER: u32 = 1 << 20;
    pub const LOAD_EFER: u32 = 1 << 21;
}

/// VM-entry controls.
pub mod entry {
    pub const LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const IA32E_MODE_GUEST: u32 = 1 << 9;
    pub const LOAD_PAT: u32 = 1 << 14;
    pub const LOAD_EFER: u32 = 1 << 15;
}

/// Basic exit reasons (bits 0-15 of the exit-reason field).
pub mod reason {
    pub const EXCEPTION_OR_NMI: u16 = 0;
    pub const EXTERNAL_INTERRUPT: u16 = 1;
    pub const TRIPLE_FAULT: u16 = 2;
    pub const INIT: u16 = 3;
    pub const INTERRUPT_WINDOW: u16 = 7;
    pub const CPUID: u16 = 10;
    pub const HLT: u16 = 12;
    pub const VMCALL: u16 = 18;
    /// VMCLEAR (19) to VMXON (27): the VMX instructions.
    pub const VMCLEAR: u16 = 19;
    pub const VMXON: u16 = 27;
    pub const CR_ACCESS: u16 = 28;
    pub const DR_ACCESS: u16 = 29;
    pub const IO: u16 = 30;
    pub const RDMSR: u16 = 31;
    pub const WRMSR: u16 = 32;
    pub const INVALID_GUEST_STATE: u16 = 33;
    pub const MSR_LOADING: u16 = 34;
    pub const MACHINE_CHECK: u16 = 41;
    pub const EPT_VIOLATION: u16 = 48;
    pub const EPT_MISCONFIG: u16 = 49;
    pub const INVEPT: u16 = 50;
    pub const INVVPID: u16 = 53;
    pub const PREEMPTION_TIMER: u16 = 52;
    pub const XSETBV: u16 = 55;
    pub const VMFUNC: u16 = 59;
}

/// Bit 31 of the exit reason: the VM entry itself failed.
pub const EXIT_REASON_ENTRY_FAILURE: u32 = 1 << 31;

/// Interruption-information fields (VM-entry injection, IDT vectoring):
/// the same layout as SVM's EVENTINJ low half.
pub mod event {
    pub const VALID: u32 = 1 << 31;
    pub const DELIVER_ERROR_CODE: u32 = 1 << 11;
    pub const TYPE_EXTERNAL: u32 = 0 << 8;
    pub const TYPE_NMI: u32 = 2 << 8;
    pub const TYPE_HARDWARE_EXCEPTION: u32 = 3 << 8;
}

/// Guest interruptibility: blocking by STI or by MOV SS (an interrupt
/// shadow).
pub const BLOCKING_BY_STI: u32 = 1 << 0;
pub const BLOCKING_BY_MOV_SS: u32 = 1 << 1;

/// Capability MSRs (appendix A).
pub mod msr {
    pub const FEATURE_CONTROL: u32 = 0x3a;
    pub const BASIC: u32 = 0x480;
    /// Bits 4:0: the preemption timer counts once every 2^n TSC ticks.
    pub const MISC: u32 = 0x485;
    pub const PINBASED_CTLS: u32 = 0x481;
    pub const PROCBASED_CTLS: u32 = 0x482;
    pub const EXIT_CTLS: u32 = 0x483;
    pub const ENTRY_CTLS: u32 = 0x484;
    pub const CR0_FIXED0: u32 = 0x486;
    pub const CR0_FIXED1: u32 = 0x487;
    pub const CR4_FIXED0: u32 = 0x488;
    pub const CR4_FIXED1: u32 = 0x489;
    pub const PROCBASED_CTLS2: u32 = 0x48b;
    pub const EPT_VPID_CAP: u32 = 0x48c;
    pub const TRUE_PINBASED_CTLS: u32 = 0x48d;
    pub const TRUE_PROCBASED_CTLS: u32 = 0x48e;
    pub const TRUE_EXIT_CTLS: u32 = 0x48f;
    pub const TRUE_ENTRY_CTLS: u32 = 0x490;
}

/// IA32_FEATURE_CONTROL: locked, and VMX allowed outside SMX.
pub const FEATURE_CONTROL_LOCKED: u64 = 1 << 0;
pub const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
/// IA32_VMX_BASIC bit 55: the TRUE_* control MSRs exist.
pub const BASIC_TRUE_CONTROLS: u64 = 1 << 55;

/// IA32_VMX_EPT_VPID_CAP bits.
pub mod ept_cap {
    pub const WALK_LENGTH_4: u64 = 1 << 6;
    pub const MEMORY_TYPE_WB: u64 = 1 << 14;
    pub const INVEPT: u64 = 1 << 20;
    pub const INVEPT_SINGLE_CONTEXT: u64 = 1 << 25;
    pub const INVEPT_ALL_CONTEXTS: u64 = 1 << 26;
    pub const INVVPID: u64 = 1 << 32;
    pub const INVVPID_SINGLE_CONTEXT: u64 = 1 << 41;
    pub const INVVPID_ALL_CONTEXTS: u64 = 1 << 42;
}

/// The EPT pointer for a four-level table at `root`, write-back walks.
pub fn ept_pointer(root: u64) -> u64 {
    const WALK_LENGTH_MINUS_ONE: u64 = 3 << 3;
    const MEMORY_TYPE_WB: u64 = 6;
    root | WALK_LENGTH_MINUS_ONE | MEMORY_TYPE_WB
}

/// A control value from what Pavise wants and a capability MSR: bits the
/// MSR's low half sets must be 1, bits its high half clears must be 0.
/// Err names the wanted bits the CPU cannot set.
pub fn adjust_controls(wanted: u32, capability: u64) -> Result<u32, u32> {
    let must_be_one = capability as u32;
    let may_be_one = (capability >> 32) as u32;
    let missing = wanted & !may_be_one;
    if missing != 0 {
        return Err(missing);
    }
    Ok((wanted | must_be_one) & may_be_one)
}

/// A control register value forced into what VMX operation allows:
/// FIXED0's bits set, FIXED1's clear bits cleared.
pub fn fixed_bits(value: u64, fixed0: u64, fixed1: u64) -> u64 {
    (value | fixed0) & fixed1
}

/// I/O-instruction exit qualification (table 28-5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoQualification {
    pub port: u16,
    pub input: bool,
    pub size: u8,
    pub string: bool,
}

impl IoQualification {
    pub fn decode(qualification: u64) -> Self {
        Self {
            size: (qualification & 0b111) as u8 + 1,
            input: qualification & (1 << 3) != 0,
            string: qualification & (1 << 4) != 0,
            port: (qualification >> 16) as u16,
        }
    }
}

/// Control-register access exit qualification (table 28-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrAccess {
    pub cr: u8,
    /// 0 MOV to CR, 1 MOV from CR, 2 CLTS, 3 LMSW.
    pub access_type: u8,
    /// The general-purpose register of a MOV (0 RAX .. 15 R15).
    pub register: u8,
    /// LMSW's source data (bits 16-31).
    pub lmsw_data: u16,
}

impl CrAccess {
    pub const MOV_TO_CR: u8 = 0;
    pub const MOV_FROM_CR: u8 = 1;
    pub const CLTS: u8 = 2;
    pub const LMSW: u8 = 3;

    pub fn decode(qualification: u64) -> Self {
        Self {
            cr: (qualification & 0xf) as u8,
            access_type: ((qualification >> 4) & 0b11) as u8,
            register: ((qualification >> 8) & 0xf) as u8,
            lmsw_data: (qualification >> 16) as u16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_encodings_follow_the_structured_form() {
        // width << 13 | type << 10 | index << 1
        let encode =
            |width: u32, kind: u32, index: u32| (width << 13) | (kind << 10) | (index << 1);
        assert_eq!(field::GUEST_INTERRUPTIBILITY, encode(2, 2, 18));
        assert_eq!(field::HOST_RIP, encode(3, 3, 11));
        assert_eq!(field::EPT_POINTER, encode(1, 0, 13));
        assert_eq!(field::EXIT_REASON, encode(2, 1, 1));
        assert_eq!(field::GUEST_PHYSICAL_ADDRESS, encode(1, 1, 0));
        assert_eq!(field::SECONDARY_CONTROLS, encode(2, 0, 15));
        assert_eq!(SegmentReg::Tr.selector(), 0x080e);
        assert_eq!(SegmentReg::Tr.access_rights(), 0x4822);
        assert_eq!(SegmentReg::Ldtr.base(), 0x6812);
        assert_eq!(SegmentReg::Cs.limit(), 0x4802);
    }

    #[test]
    fn access_rights_move_the_flag_nibble_and_mark_null_unusable() {
        assert_eq!(access_rights(0xc9b), 0xc09b); // 32-bit code, G, D
        assert_eq!(access_rights(0xa9b), 0xa09b); // 64-bit code, G, L
        assert_eq!(access_rights(0x8b), 0x8b); // busy TSS
        assert_eq!(access_rights(0), 1 << 16);
    }

    #[test]
    fn controls_take_the_must_be_one_bits_and_refuse_impossible_ones() {
        // Low half: bits 1, 2 must be 1; high half: bits 0-7 may be 1.
        let cap = (0xffu64 << 32) | 0b110;
        assert_eq!(adjust_controls(0b1000_0001, cap), Ok(0b1000_0111));
        assert_eq!(adjust_controls(1 << 9, cap), Err(1 << 9));
    }

    #[test]
    fn fixed_bits_force_and_clear() {
        // CR0: PE, NE, PG fixed to 1; nothing above bit 31 allowed.
        assert_eq!(fixed_bits(0x11, 0x8000_0021, 0xffff_ffff), 0x8000_0031);
        assert_eq!(fixed_bits(1 << 40, 0, 0xffff_ffff), 0);
    }

    #[test]
    fn io_and_cr_qualifications_decode() {
        // IN AL, 0x71: size 1, in, not string.
        let q = IoQualification::decode((0x71 << 16) | (1 << 3));
        assert_eq!(
            q,
            IoQualification {
                port: 0x71,
                input: true,
                size: 1,
                string: false
            }
        );
        assert_eq!(IoQualification::decode(3).size, 4);
        // MOV CR4, RBX: cr 4, type 0, register 3.
        let c = CrAccess::decode(4 | (3 << 8));
        assert_eq!(
            (c.cr, c.access_type, c.register),
            (4, CrAccess::MOV_TO_CR, 3)
        );
    }

    #[test]
    fn ept_pointer_is_four_levels_write_back() {
        assert_eq!(ept_pointer(0x1234_5000), 0x1234_501e);
    }
}
