//! The emulated local APIC of one vCPU: its register model, as far as Linux
//! uses it on Xen (LINUX-PVH.md §1, §3-§5). Pure, host-tested; the glue that
//! decodes the guest's MSR and MMIO exits, injects vectors and delivers IPIs
//! to other vCPUs lives elsewhere and calls in here.
//!
//! Facts from the Intel SDM vol. 3 ch. 11 ("APIC") and AMD APM vol. 2 ch. 16,
//! and Xen 4.17's values as measured (APIC_BASE 0xfee00900 / 0xfee00800,
//! version 0x00050014, SVR 0xff). Where the manuals leave a choice:
//!
//! - **APIC_BASE BSP bit**: the SDM (vol. 4, IA32_APIC_BASE) lists bit 8 as
//!   R/W, but it only means something at reset. Pavise keeps it read-only by
//!   *ignoring* the written bit (no #GP, the stored value stays), so a guest
//!   cannot fault on writing back a value it changed there, and cannot make an
//!   AP a BSP.
//! - **APIC relocation** is not supported: a write whose base is not
//!   0xfee00000 is #GP (Linux never moves it; the device window only decodes
//!   the default page).
//! - **Re-enabling** (APIC_BASE.EN 0 -> 1) brings the registers back to their
//!   power-up values, as Xen does (`vlapic_msr_set`); the state of a disabled
//!   APIC is not reachable anyway.
//! - **xAPIC ID** is read-only (writes ignored): the SDM says writability is
//!   model specific, and the ID is the vCPU's identity from the MADT.
//! - **Software-disabled** (SVR bit 8 clear, SDM 11.4.7.2): "pending
//!   interrupts in the IRR and ISR are held"; so [`VLapic::set_irr`] still
//!   latches a vector, but [`VLapic::pending_vector`] offers nothing until
//!   software enables the APIC. All LVT entries are masked and cannot be
//!   unmasked. INIT, SIPI, NMI and SMI are the caller's business and are not
//!   affected. A hardware-disabled APIC (EN = 0) accepts nothing.
//! - **Trigger mode**: every interrupt Pavise raises is edge-triggered (there
//!   is no IO-APIC), so TMR always reads 0 and EOI broadcasts nothing.
//! - **Timer**: its registers are kept (Linux programs them), but on Xen Linux
//!   never uses the LAPIC timer (it uses the VCPUOP singleshot timer), so
//!   expiry is not modelled and the current count always reads 0.
//! - **CMCI LVT** is kept as an ordinary LVT register (masked at reset),
//!   although version 0x00050014 (max LVT 5) would not strictly require it.
//! - **Illegal vectors** (< 16): a fixed or lowest-priority IPI is not sent
//!   and sets ESR "send illegal vector"; a received one is not accepted and
//!   sets ESR "receive illegal vector". A newly logged error raises the LVT
//!   error vector if that entry is unmasked and its vector is legal.
//! - **Reserved delivery modes** (3 and 7) in an ICR write send nothing.
//! - **MMIO** when the APIC is in x2APIC mode or disabled is not decoded:
//!   reads return all ones, writes are dropped. In xAPIC mode only 32-bit
//!   accesses at the start of a 16-byte register are meaningful; reads of
//!   anything else (reserved, write-only, not register-aligned) return 0 and
//!   writes to it are ignored. The "illegal register address" ESR bit is not
//!   raised (Xen does not either).
//! - **Addressing** ([`VLapic::matches`]) is interpreted in the receiver's
//!   mode; logical broadcast (0xff / 0xffffffff) matches every APIC, as in
//!   Xen; an xAPIC DFR model other than flat or cluster matches nothing.

/// IA32_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1b;
/// The x2APIC MSR range (SDM: 0x800-0x8ff is reserved for the x2APIC).
pub const X2APIC_MSR_FIRST: u32 = 0x800;
/// Last MSR of the x2APIC range.
pub const X2APIC_MSR_LAST: u32 = 0x8ff;
/// The (only) guest-physical address of the xAPIC page.
pub const APIC_BASE_ADDRESS: u64 = 0xfee0_0000;
/// APIC_BASE bit 8: this processor is the bootstrap processor.
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// APIC_BASE bit 10: x2APIC mode.
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// APIC_BASE bit 11: APIC globally enabled.
pub const APIC_BASE_EN: u64 = 1 << 11;
/// Version register: version 0x14, max LVT entry 5, no directed EOI (Xen).
pub const VERSION: u32 = 0x0005_0014;

/// ESR bit 5: an IPI with an illegal vector was not sent.
pub const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
/// ESR bit 6: an interrupt with an illegal vector was not accepted.
pub const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;

/// Register offsets in the xAPIC page. The x2APIC MSR of each is
/// [`x2apic_msr`]`(offset)`.
pub mod reg {
    pub const ID: u32 = 0x020;
    pub const VERSION: u32 = 0x030;
    pub const TPR: u32 = 0x080;
    pub const APR: u32 = 0x090;
    pub const PPR: u32 = 0x0a0;
    pub const EOI: u32 = 0x0b0;
    pub const RRD: u32 = 0x0c0;
    pub const LDR: u32 = 0x0d0;
    pub const DFR: u32 = 0x0e0;
    pub const SVR: u32 = 0x0f0;
    pub const ISR0: u32 = 0x100;
    pub const ISR7: u32 = 0x170;
    pub const TMR0: u32 = 0x180;
    pub const TMR7: u32 = 0x1f0;
    pub const IRR0: u32 = 0x200;
    pub const IRR7: u32 = 0x270;
    pub const ESR: u32 = 0x280;
    pub const LVT_CMCI: u32 = 0x2f0;
    pub const ICR_LOW: u32 = 0x300;
    pub const ICR_HIGH: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_THERMAL: u32 = 0x330;
    pub const LVT_PMC: u32 = 0x340;
    pub const LVT_LINT0: u32 = 0x350;
    pub const LVT_LINT1: u32 = 0x360;
    pub const LVT_ERROR: u32 = 0x370;
    pub const TIMER_INITIAL: u32 = 0x380;
    pub const TIMER_CURRENT: u32 = 0x390;
    pub const TIMER_DIVIDE: u32 = 0x3e0;
    /// x2APIC only.
    pub const SELF_IPI: u32 = 0x3f0;
}

/// The x2APIC MSR of the register at xAPIC `offset`.
pub const fn x2apic_msr(offset: u32) -> u32 {
    X2APIC_MSR_FIRST + (offset >> 4)
}

/// Whether `msr` is in the x2APIC range (route it to [`VLapic::read_msr`] /
/// [`VLapic::write_msr`]).
pub fn is_x2apic_msr(msr: u32) -> bool {
    (X2APIC_MSR_FIRST..=X2APIC_MSR_LAST).contains(&msr)
}

// Register size of the xAPIC page and register alignment.
const PAGE_SIZE: u32 = 0x1000;
const REG_ALIGN: u32 = 0x10;

const VECTOR_MASK: u32 = 0xff;
/// Vectors 0-15 are illegal for interrupts.
const FIRST_LEGAL_VECTOR: u8 = 16;

// ICR fields (SDM figure 11-12).
const ICR_DELIVERY_MODE_SHIFT: u32 = 8;
const ICR_DELIVERY_MODE_MASK: u32 = 0x7;
const ICR_DEST_LOGICAL: u32 = 1 << 11;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_TRIGGER_LEVEL: u32 = 1 << 15;
const ICR_SHORTHAND_SHIFT: u32 = 18;
const ICR_SHORTHAND_MASK: u32 = 0x3;
/// Vector, delivery mode, destination mode, level, trigger, shorthand. The
/// delivery-status bit 12 is read-only and always reads 0 (delivery is
/// instant).
const ICR_LOW_WRITABLE: u32 = 0x000c_cfff;
const ICR_HIGH_XAPIC_DEST_SHIFT: u32 = 24;
const ICR_HIGH_XAPIC_WRITABLE: u32 = 0xff00_0000;

const DM_FIXED: u32 = 0;
const DM_LOWEST: u32 = 1;
const DM_SMI: u32 = 2;
const DM_NMI: u32 = 4;
const DM_INIT: u32 = 5;
const DM_STARTUP: u32 = 6;

const SH_NONE: u32 = 0;
const SH_SELF: u32 = 1;
const SH_ALL: u32 = 2;

// LVT fields (SDM figure 11-8).
const LVT_DELIVERY_MODE: u32 = 0x700;
const LVT_DELIVERY_STATUS: u32 = 1 << 12;
const LVT_POLARITY: u32 = 1 << 13;
const LVT_REMOTE_IRR: u32 = 1 << 14;
const LVT_TRIGGER_LEVEL: u32 = 1 << 15;
const LVT_MASKED: u32 = 1 << 16;
const LVT_TIMER_MODE: u32 = 0x3 << 17;

const TPR_WRITABLE: u32 = 0xff;
/// Spurious vector, APIC software enable, focus processor checking. Bit 12
/// (EOI-broadcast suppression) is reserved: the version has no directed EOI.
const SVR_WRITABLE: u32 = 0x3ff;
const SVR_ENABLE: u32 = 1 << 8;
const SVR_RESET: u32 = 0xff;
const LDR_XAPIC_WRITABLE: u32 = 0xff00_0000;
const LDR_XAPIC_SHIFT: u32 = 24;
const DFR_WRITABLE: u32 = 0xf000_0000;
const DFR_RESET: u32 = 0xffff_ffff;
const DFR_MODEL_FLAT: u32 = 0xf;
const DFR_MODEL_CLUSTER: u32 = 0x0;
const DFR_MODEL_SHIFT: u32 = 28;
const TIMER_DIVIDE_WRITABLE: u32 = 0xb;

const XAPIC_ID_SHIFT: u32 = 24;
const XAPIC_BROADCAST: u32 = 0xff;
const X2APIC_BROADCAST: u32 = 0xffff_ffff;

/// "Raise #GP(0) in the guest."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gp;

/// An IPI's delivery mode (ICR bits 10:8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    /// The caller picks one of the matching APICs (any one is correct).
    LowestPriority,
    Smi,
    Nmi,
    /// INIT, level assert (or edge).
    Init,
    /// INIT with level = 0 and trigger = level: a no-op on modern CPUs.
    InitDeassert,
    /// SIPI: the target starts in real mode at `vector << 12`.
    Startup,
}

/// Whom an IPI is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// x2APIC 32-bit id, or xAPIC 8-bit id; 0xffffffff / 0xff = broadcast.
    Physical(u32),
    /// x2APIC cluster/bitmap (bits 31:16 / 15:0), or xAPIC 8-bit MDA.
    Logical(u32),
    SelfOnly,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// An IPI the guest asked for; the caller delivers it to the vCPUs whose
/// APIC [`VLapic::matches`] it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipi {
    pub mode: DeliveryMode,
    /// Meaningful for Fixed, LowestPriority and Startup.
    pub vector: u8,
    pub dest: Destination,
}

/// What a register write asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Deliver this IPI.
    Ipi(Ipi),
    /// An EOI ended this in-service vector.
    Eoi(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disabled,
    XApic,
    X2Apic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lvt {
    Cmci,
    Timer,
    Thermal,
    Pmc,
    Lint0,
    Lint1,
    Error,
}

const LVT_COUNT: usize = 7;

impl Lvt {
    /// Bits software sets.
    fn writable(self) -> u32 {
        match self {
            Lvt::Timer => VECTOR_MASK | LVT_MASKED | LVT_TIMER_MODE,
            Lvt::Cmci | Lvt::Thermal | Lvt::Pmc => VECTOR_MASK | LVT_DELIVERY_MODE | LVT_MASKED,
            Lvt::Lint0 | Lvt::Lint1 => {
                VECTOR_MASK | LVT_DELIVERY_MODE | LVT_POLARITY | LVT_TRIGGER_LEVEL | LVT_MASKED
            }
            Lvt::Error => VECTOR_MASK | LVT_MASKED,
        }
    }

    /// Read-only status bits an x2APIC write may carry (ignored), as Xen.
    fn read_only(self) -> u32 {
        match self {
            Lvt::Lint0 | Lvt::Lint1 => LVT_DELIVERY_STATUS | LVT_REMOTE_IRR,
            _ => LVT_DELIVERY_STATUS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadOnly,
    WriteOnly,
    ReadWrite,
}

/// One architectural register, whatever way it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    Id,
    Version,
    Tpr,
    Apr,
    Ppr,
    Eoi,
    Rrd,
    Ldr,
    Dfr,
    Svr,
    Isr(usize),
    Tmr(usize),
    Irr(usize),
    Esr,
    Lvt(Lvt),
    /// xAPIC ICR low word; in x2APIC the whole 64-bit ICR.
    IcrLow,
    /// xAPIC only.
    IcrHigh,
    TimerInitial,
    TimerCurrent,
    TimerDivide,
    SelfIpi,
}

impl Reg {
    /// The register at 16-byte-aligned `offset` of the xAPIC page.
    fn at(offset: u32) -> Option<Reg> {
        let word = |base: u32| ((offset - base) / REG_ALIGN) as usize;
        Some(match offset {
            reg::ID => Reg::Id,
            reg::VERSION => Reg::Version,
            reg::TPR => Reg::Tpr,
            reg::APR => Reg::Apr,
            reg::PPR => Reg::Ppr,
            reg::EOI => Reg::Eoi,
            reg::RRD => Reg::Rrd,
            reg::LDR => Reg::Ldr,
            reg::DFR => Reg::Dfr,
            reg::SVR => Reg::Svr,
            reg::ISR0..=reg::ISR7 => Reg::Isr(word(reg::ISR0)),
            reg::TMR0..=reg::TMR7 => Reg::Tmr(word(reg::TMR0)),
            reg::IRR0..=reg::IRR7 => Reg::Irr(word(reg::IRR0)),
            reg::ESR => Reg::Esr,
            reg::LVT_CMCI => Reg::Lvt(Lvt::Cmci),
            reg::ICR_LOW => Reg::IcrLow,
            reg::ICR_HIGH => Reg::IcrHigh,
            reg::LVT_TIMER => Reg::Lvt(Lvt::Timer),
            reg::LVT_THERMAL => Reg::Lvt(Lvt::Thermal),
            reg::LVT_PMC => Reg::Lvt(Lvt::Pmc),
            reg::LVT_LINT0 => Reg::Lvt(Lvt::Lint0),
            reg::LVT_LINT1 => Reg::Lvt(Lvt::Lint1),
            reg::LVT_ERROR => Reg::Lvt(Lvt::Error),
            reg::TIMER_INITIAL => Reg::TimerInitial,
            reg::TIMER_CURRENT => Reg::TimerCurrent,
            reg::TIMER_DIVIDE => Reg::TimerDivide,
            reg::SELF_IPI => Reg::SelfIpi,
            _ => return None,
        })
    }

    /// The register an xAPIC MMIO access at `offset` reaches.
    fn at_mmio(offset: u32) -> Option<Reg> {
        if offset >= PAGE_SIZE || !offset.is_multiple_of(REG_ALIGN) {
            return None;
        }
        Reg::at(offset).filter(|r| *r != Reg::SelfIpi)
    }

    /// The register x2APIC MSR `msr` reaches (SDM table 11-6).
    fn at_msr(msr: u32) -> Option<Reg> {
        if !is_x2apic_msr(msr) {
            return None;
        }
        Reg::at((msr - X2APIC_MSR_FIRST) * REG_ALIGN)
            .filter(|r| !matches!(r, Reg::Apr | Reg::Rrd | Reg::Dfr | Reg::IcrHigh))
    }

    fn access(self, x2apic: bool) -> Access {
        match self {
            Reg::Id
            | Reg::Version
            | Reg::Apr
            | Reg::Ppr
            | Reg::Rrd
            | Reg::Isr(_)
            | Reg::Tmr(_)
            | Reg::Irr(_)
            | Reg::TimerCurrent => Access::ReadOnly,
            Reg::Ldr if x2apic => Access::ReadOnly,
            Reg::Eoi | Reg::SelfIpi => Access::WriteOnly,
            _ => Access::ReadWrite,
        }
    }

    /// Bits software can set; in x2APIC mode writing any other bit (outside
    /// [`Reg::x2apic_allowed`]) is #GP, in xAPIC mode they are dropped.
    fn writable(self) -> u32 {
        match self {
            Reg::Tpr => TPR_WRITABLE,
            Reg::Ldr => LDR_XAPIC_WRITABLE,
            Reg::Dfr => DFR_WRITABLE,
            Reg::Svr => SVR_WRITABLE,
            Reg::Lvt(l) => l.writable(),
            Reg::IcrLow => ICR_LOW_WRITABLE,
            Reg::IcrHigh => ICR_HIGH_XAPIC_WRITABLE,
            Reg::TimerInitial => u32::MAX,
            Reg::TimerDivide => TIMER_DIVIDE_WRITABLE,
            Reg::SelfIpi => VECTOR_MASK,
            // EOI and ESR: any value in xAPIC mode, only 0 in x2APIC mode.
            _ => 0,
        }
    }

    /// Low 32 bits an x2APIC WRMSR may set without #GP (SDM 11.12.1.3).
    fn x2apic_allowed(self) -> u32 {
        match self {
            Reg::Lvt(l) => l.writable() | l.read_only(),
            r => r.writable(),
        }
    }
}

fn bit_test(map: &[u32; 8], vector: u8) -> bool {
    map[usize::from(vector >> 5)] & (1 << (vector & 31)) != 0
}

fn bit_set(map: &mut [u32; 8], vector: u8) {
    map[usize::from(vector >> 5)] |= 1 << (vector & 31);
}

fn bit_clear(map: &mut [u32; 8], vector: u8) {
    map[usize::from(vector >> 5)] &= !(1 << (vector & 31));
}

fn highest(map: &[u32; 8]) -> Option<u8> {
    map.iter()
        .enumerate()
        .rev()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| (i as u32 * 32 + 31 - w.leading_zeros()) as u8)
}

/// Priority class of a vector or priority value.
fn class(v: u32) -> u32 {
    (v >> 4) & 0xf
}

/// The x2APIC logical id: cluster (id[31:4]) in 31:16, one bit of id[3:0].
fn x2apic_ldr(id: u32) -> u32 {
    ((id >> 4) << 16) | (1 << (id & 0xf))
}

/// The local APIC of one vCPU.
#[derive(Debug, Clone)]
pub struct VLapic {
    id: u32,
    bsp: bool,
    mode: Mode,
    tpr: u32,
    /// xAPIC LDR (bits 31:24); in x2APIC mode the LDR is derived from `id`.
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: [u32; 8],
    irr: [u32; 8],
    /// What ESR reads: the errors latched by the last ESR write.
    esr: u32,
    /// Errors seen since the last ESR write.
    esr_pending: u32,
    icr_low: u32,
    icr_high: u32,
    lvt: [u32; LVT_COUNT],
    timer_initial: u32,
    timer_divide: u32,
}

impl VLapic {
    /// An APIC at power-up: xAPIC mode, enabled, software-disabled.
    /// `apic_id` is the MADT's APIC ID; xAPIC mode shows its low 8 bits.
    pub fn new(apic_id: u32, bsp: bool) -> Self {
        let mut lapic = VLapic {
            id: apic_id,
            bsp,
            mode: Mode::XApic,
            tpr: 0,
            ldr: 0,
            dfr: 0,
            svr: 0,
            isr: [0; 8],
            irr: [0; 8],
            esr: 0,
            esr_pending: 0,
            icr_low: 0,
            icr_high: 0,
            lvt: [0; LVT_COUNT],
            timer_initial: 0,
            timer_divide: 0,
        };
        lapic.reset();
        lapic
    }

    /// INIT (SDM 11.4.7.3): every register to its power-up value except
    /// APIC_BASE (so the mode) and the APIC ID; in x2APIC mode the LDR stays
    /// (it is derived from the ID).
    pub fn reset(&mut self) {
        self.tpr = 0;
        self.ldr = 0;
        self.dfr = DFR_RESET;
        self.svr = SVR_RESET;
        self.isr = [0; 8];
        self.irr = [0; 8];
        self.esr = 0;
        self.esr_pending = 0;
        self.icr_low = 0;
        self.icr_high = 0;
        self.lvt = [LVT_MASKED; LVT_COUNT];
        self.timer_initial = 0;
        self.timer_divide = 0;
    }

    /// The APIC ID (32 bits; the MADT's).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// In x2APIC mode.
    pub fn x2apic(&self) -> bool {
        self.mode == Mode::X2Apic
    }

    /// Globally enabled (APIC_BASE.EN).
    pub fn enabled(&self) -> bool {
        self.mode != Mode::Disabled
    }

    /// Software-enabled (SVR bit 8).
    pub fn sw_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    /// RDMSR IA32_APIC_BASE.
    pub fn read_apic_base(&self) -> u64 {
        let bsp = if self.bsp { APIC_BASE_BSP } else { 0 };
        let mode = match self.mode {
            Mode::Disabled => 0,
            Mode::XApic => APIC_BASE_EN,
            Mode::X2Apic => APIC_BASE_EN | APIC_BASE_EXTD,
        };
        APIC_BASE_ADDRESS | bsp | mode
    }

    /// WRMSR IA32_APIC_BASE, with the transitions of SDM figure 11-27:
    /// xAPIC <-> disabled, xAPIC -> x2APIC, x2APIC -> disabled. x2APIC ->
    /// xAPIC, disabled -> x2APIC, EXTD without EN, reserved bits and a moved
    /// base are #GP. The BSP bit is ignored (see the module comment).
    pub fn write_apic_base(&mut self, v: u64) -> Result<(), Gp> {
        if v & !(APIC_BASE_EN | APIC_BASE_EXTD | APIC_BASE_BSP) != APIC_BASE_ADDRESS {
            return Err(Gp);
        }
        let new = match (v & APIC_BASE_EN != 0, v & APIC_BASE_EXTD != 0) {
            (false, false) => Mode::Disabled,
            (true, false) => Mode::XApic,
            (true, true) => Mode::X2Apic,
            (false, true) => return Err(Gp),
        };
        match (self.mode, new) {
            (Mode::Disabled, Mode::Disabled)
            | (Mode::XApic, Mode::XApic)
            | (Mode::X2Apic, Mode::X2Apic) => {}
            (Mode::X2Apic, Mode::XApic) | (Mode::Disabled, Mode::X2Apic) => return Err(Gp),
            (Mode::Disabled, Mode::XApic) => {
                self.mode = Mode::XApic;
                self.reset();
            }
            // xAPIC -> x2APIC keeps every register; the ID and LDR now read
            // as their x2APIC forms (SDM 11.12.5.1).
            (_, Mode::Disabled) | (Mode::XApic, Mode::X2Apic) => self.mode = new,
        }
        Ok(())
    }

    /// RDMSR of an x2APIC MSR. #GP unless in x2APIC mode, for reserved
    /// MSRs and for write-only ones (EOI, SELF_IPI).
    pub fn read_msr(&self, msr: u32) -> Result<u64, Gp> {
        if !self.x2apic() {
            return Err(Gp);
        }
        let r = Reg::at_msr(msr).ok_or(Gp)?;
        if r.access(true) == Access::WriteOnly {
            return Err(Gp);
        }
        Ok(match r {
            Reg::IcrLow => (u64::from(self.icr_high) << 32) | u64::from(self.icr_low),
            r => u64::from(self.read_reg(r)),
        })
    }

    /// WRMSR of an x2APIC MSR. #GP unless in x2APIC mode, for reserved and
    /// read-only MSRs, and for non-zero reserved bits (bits 63:32 of every
    /// register but the ICR; a non-zero EOI or ESR write).
    pub fn write_msr(&mut self, msr: u32, v: u64) -> Result<Option<Effect>, Gp> {
        if !self.x2apic() {
            return Err(Gp);
        }
        let r = Reg::at_msr(msr).ok_or(Gp)?;
        if r.access(true) == Access::ReadOnly {
            return Err(Gp);
        }
        let low = v as u32;
        let high = (v >> 32) as u32;
        if (r != Reg::IcrLow && high != 0) || low & !r.x2apic_allowed() != 0 {
            return Err(Gp);
        }
        Ok(match r {
            Reg::IcrLow => {
                self.icr_low = low;
                self.icr_high = high;
                self.send(low, high)
            }
            Reg::SelfIpi => self.send((SH_SELF << ICR_SHORTHAND_SHIFT) | low, 0),
            r => self.write_reg(r, low & r.writable()),
        })
    }

    /// 32-bit read at `offset` of the xAPIC page.
    pub fn read_mmio(&self, offset: u32) -> u32 {
        if self.mode != Mode::XApic {
            return u32::MAX;
        }
        match Reg::at_mmio(offset) {
            Some(r) if r.access(false) != Access::WriteOnly => self.read_reg(r),
            _ => 0,
        }
    }

    /// 32-bit write at `offset` of the xAPIC page. Writing the ICR low word
    /// sends, to the destination in the ICR high word.
    pub fn write_mmio(&mut self, offset: u32, v: u32) -> Option<Effect> {
        if self.mode != Mode::XApic {
            return None;
        }
        let r = Reg::at_mmio(offset)?;
        if r.access(false) == Access::ReadOnly {
            return None;
        }
        let v = v & r.writable();
        match r {
            Reg::IcrLow => {
                self.icr_low = v;
                self.send(v, self.icr_high >> ICR_HIGH_XAPIC_DEST_SHIFT)
            }
            Reg::IcrHigh => {
                self.icr_high = v;
                None
            }
            r => self.write_reg(r, v),
        }
    }

    /// Offer `vector` to this APIC (an event-channel upcall, or a fixed IPI
    /// the caller routed here). Returns whether it was latched in the IRR: not
    /// when the APIC is hardware-disabled, nor for an illegal vector (< 16;
    /// sets ESR "receive illegal vector").
    pub fn set_irr(&mut self, vector: u8) -> bool {
        if self.mode == Mode::Disabled {
            return false;
        }
        if vector < FIRST_LEGAL_VECTOR {
            self.log_error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return false;
        }
        bit_set(&mut self.irr, vector);
        true
    }

    /// The vector to inject next, if any: the highest IRR vector whose
    /// priority class is above the processor priority's (SDM 11.8.3). None
    /// while the APIC is disabled or software-disabled.
    pub fn pending_vector(&self) -> Option<u8> {
        if self.mode == Mode::Disabled || !self.sw_enabled() {
            return None;
        }
        let v = highest(&self.irr)?;
        (class(u32::from(v)) > class(self.ppr())).then_some(v)
    }

    /// `vector` was injected into the guest: move it from IRR to ISR. A
    /// vector not in the IRR is left alone.
    pub fn ack(&mut self, vector: u8) {
        if bit_test(&self.irr, vector) {
            bit_clear(&mut self.irr, vector);
            bit_set(&mut self.isr, vector);
        }
    }

    /// Whether this APIC is a target of `dest`; `sender_is_self` says
    /// whether this APIC sent it (for the shorthands).
    pub fn matches(&self, dest: &Destination, sender_is_self: bool) -> bool {
        match *dest {
            Destination::SelfOnly => sender_is_self,
            Destination::AllIncludingSelf => true,
            Destination::AllExcludingSelf => !sender_is_self,
            Destination::Physical(d) if self.x2apic() => d == X2APIC_BROADCAST || d == self.id,
            Destination::Physical(d) => d == XAPIC_BROADCAST || d == self.id & XAPIC_BROADCAST,
            Destination::Logical(d) if self.x2apic() => {
                let ldr = x2apic_ldr(self.id);
                d == X2APIC_BROADCAST || ((d >> 16) == (ldr >> 16) && d & ldr & 0xffff != 0)
            }
            Destination::Logical(d) => {
                let ldr = self.ldr >> LDR_XAPIC_SHIFT;
                d == XAPIC_BROADCAST
                    || match self.dfr >> DFR_MODEL_SHIFT {
                        DFR_MODEL_FLAT => d & ldr != 0,
                        DFR_MODEL_CLUSTER => (d >> 4) == (ldr >> 4) && d & ldr & 0xf != 0,
                        _ => false,
                    }
            }
        }
    }

    /// PPR (SDM 11.8.3.1): the TPR if its class is at least that of the
    /// highest in-service vector, else that vector's class.
    fn ppr(&self) -> u32 {
        let isrv = highest(&self.isr).map_or(0, u32::from);
        if class(self.tpr) >= class(isrv) {
            self.tpr
        } else {
            isrv & 0xf0
        }
    }

    fn read_reg(&self, r: Reg) -> u32 {
        match r {
            Reg::Id if self.x2apic() => self.id,
            Reg::Id => (self.id & XAPIC_BROADCAST) << XAPIC_ID_SHIFT,
            Reg::Version => VERSION,
            Reg::Tpr => self.tpr,
            Reg::Ppr => self.ppr(),
            Reg::Ldr if self.x2apic() => x2apic_ldr(self.id),
            Reg::Ldr => self.ldr,
            Reg::Dfr => self.dfr,
            Reg::Svr => self.svr,
            Reg::Isr(i) => self.isr[i],
            Reg::Irr(i) => self.irr[i],
            Reg::Esr => self.esr,
            Reg::Lvt(l) => self.lvt[l as usize],
            Reg::IcrLow => self.icr_low,
            Reg::IcrHigh => self.icr_high,
            Reg::TimerInitial => self.timer_initial,
            Reg::TimerDivide => self.timer_divide,
            // APR, RRD, TMR (all edge), the timer's current count (expiry not
            // modelled) and the write-only registers.
            Reg::Apr | Reg::Rrd | Reg::Tmr(_) | Reg::TimerCurrent | Reg::Eoi | Reg::SelfIpi => 0,
        }
    }

    /// A permitted write of `v` (already masked to the writable bits).
    fn write_reg(&mut self, r: Reg, v: u32) -> Option<Effect> {
        match r {
            Reg::Tpr => self.tpr = v,
            Reg::Eoi => return self.eoi().map(Effect::Eoi),
            Reg::Ldr => self.ldr = v,
            Reg::Dfr => self.dfr = v | !DFR_WRITABLE,
            Reg::Svr => {
                self.svr = v;
                if !self.sw_enabled() {
                    for l in &mut self.lvt {
                        *l |= LVT_MASKED;
                    }
                }
            }
            // SDM 11.5.3: a write latches the errors seen since the last one.
            Reg::Esr => {
                self.esr = self.esr_pending;
                self.esr_pending = 0;
            }
            Reg::Lvt(l) => {
                let masked = if self.sw_enabled() { 0 } else { LVT_MASKED };
                self.lvt[l as usize] = v | masked;
            }
            Reg::TimerInitial => self.timer_initial = v,
            Reg::TimerDivide => self.timer_divide = v,
            // Read-only ones never get here; ICR and SELF_IPI are the
            // callers'.
            _ => {}
        }
        None
    }

    /// EOI: end the highest in-service vector.
    fn eoi(&mut self) -> Option<u8> {
        let v = highest(&self.isr)?;
        bit_clear(&mut self.isr, v);
        Some(v)
    }

    /// Log an ESR error; raise the LVT error vector if the error is new.
    fn log_error(&mut self, bits: u32) {
        let new = bits & !self.esr_pending;
        self.esr_pending |= bits;
        let lvt = self.lvt[Lvt::Error as usize];
        if new != 0 && lvt & LVT_MASKED == 0 {
            let vector = (lvt & VECTOR_MASK) as u8;
            if vector >= FIRST_LEGAL_VECTOR {
                self.set_irr(vector);
            } else {
                // The error interrupt's own vector is illegal: it is not
                // delivered, and says so (Xen's vlapic_error since
                // XSA-462, which breaks the loop this way).
                self.esr_pending |= ESR_RECEIVE_ILLEGAL_VECTOR;
            }
        }
    }

    /// Decode an ICR write (`low` = ICR bits 31:0, `dest` = the destination
    /// field) into the IPI the caller must deliver.
    fn send(&mut self, low: u32, dest: u32) -> Option<Effect> {
        let vector = (low & VECTOR_MASK) as u8;
        let mode = match (low >> ICR_DELIVERY_MODE_SHIFT) & ICR_DELIVERY_MODE_MASK {
            DM_FIXED => DeliveryMode::Fixed,
            DM_LOWEST => DeliveryMode::LowestPriority,
            DM_SMI => DeliveryMode::Smi,
            DM_NMI => DeliveryMode::Nmi,
            DM_INIT if low & ICR_TRIGGER_LEVEL != 0 && low & ICR_LEVEL_ASSERT == 0 => {
                DeliveryMode::InitDeassert
            }
            DM_INIT => DeliveryMode::Init,
            DM_STARTUP => DeliveryMode::Startup,
            _ => return None,
        };
        if matches!(mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority)
            && vector < FIRST_LEGAL_VECTOR
        {
            self.log_error(ESR_SEND_ILLEGAL_VECTOR);
            return None;
        }
        let dest = match (low >> ICR_SHORTHAND_SHIFT) & ICR_SHORTHAND_MASK {
            SH_NONE if low & ICR_DEST_LOGICAL != 0 => Destination::Logical(dest),
            SH_NONE => Destination::Physical(dest),
            SH_SELF => Destination::SelfOnly,
            SH_ALL => Destination::AllIncludingSelf,
            _ => Destination::AllExcludingSelf,
        };
        Some(Effect::Ipi(Ipi { mode, vector, dest }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BSP_X2APIC: u64 = 0xfee0_0d00;
    const AP_X2APIC: u64 = 0xfee0_0c00;

    fn msr(offset: u32) -> u32 {
        x2apic_msr(offset)
    }

    /// An x2APIC-mode, software-enabled APIC.
    fn x2(id: u32) -> VLapic {
        let mut l = VLapic::new(id, id == 0);
        l.write_apic_base(l.read_apic_base() | APIC_BASE_EXTD)
            .unwrap();
        l.write_msr(msr(reg::SVR), 0x1ff).unwrap();
        l
    }

    fn ipi(e: Option<Effect>) -> Ipi {
        match e {
            Some(Effect::Ipi(i)) => i,
            other => panic!("expected an IPI, got {other:?}"),
        }
    }

    #[test]
    fn reset_values() {
        let bsp = VLapic::new(0, true);
        let ap = VLapic::new(2, false);
        assert_eq!(bsp.read_apic_base(), 0xfee0_0900);
        assert_eq!(ap.read_apic_base(), 0xfee0_0800);
        assert!(bsp.enabled() && !bsp.x2apic() && !bsp.sw_enabled());
        assert_eq!(ap.read_mmio(reg::ID), 2 << 24);
        assert_eq!(ap.read_mmio(reg::VERSION), 0x0005_0014);
        assert_eq!(ap.read_mmio(reg::SVR), 0xff);
        assert_eq!(ap.read_mmio(reg::DFR), 0xffff_ffff);
        assert_eq!(ap.read_mmio(reg::LDR), 0);
        assert_eq!(ap.read_mmio(reg::TPR), 0);
        assert_eq!(ap.read_mmio(reg::PPR), 0);
        for off in [
            reg::LVT_CMCI,
            reg::LVT_TIMER,
            reg::LVT_THERMAL,
            reg::LVT_PMC,
            reg::LVT_LINT0,
            reg::LVT_LINT1,
            reg::LVT_ERROR,
        ] {
            assert_eq!(ap.read_mmio(off), 0x1_0000, "LVT {off:#x}");
        }
        let mut a = VLapic::new(2, false);
        a.write_apic_base(AP_X2APIC).unwrap();
        assert_eq!(a.read_msr(msr(reg::ID)), Ok(2));
        assert_eq!(a.read_msr(msr(reg::VERSION)), Ok(0x0005_0014));
        assert_eq!(a.read_msr(msr(reg::SVR)), Ok(0xff));
        assert_eq!(a.read_msr(msr(reg::LDR)), Ok(0x4));
        assert_eq!(a.read_msr(msr(reg::LVT_LINT0)), Ok(0x1_0000));
        assert_eq!(x2(0).read_msr(msr(reg::LDR)), Ok(0x1)); // as measured on Xen
        assert_eq!(x2(0x23).read_msr(msr(reg::LDR)), Ok((2 << 16) | (1 << 3)));
        assert_eq!(x2(0x123).read_msr(msr(reg::ID)), Ok(0x123));
    }

    #[test]
    fn apic_base_transitions() {
        let mut l = VLapic::new(0, true);
        // Linux: rdmsr, | EXTD, wrmsr.
        l.write_apic_base(BSP_X2APIC).unwrap();
        assert!(l.x2apic() && l.enabled());
        assert_eq!(l.read_apic_base(), BSP_X2APIC);
        // x2APIC -> xAPIC directly is invalid.
        assert_eq!(l.write_apic_base(0xfee0_0900), Err(Gp));
        assert!(l.x2apic());
        // EXTD without EN is invalid.
        assert_eq!(l.write_apic_base(0xfee0_0500), Err(Gp));
        // x2APIC -> disabled -> xAPIC is fine.
        l.write_apic_base(0xfee0_0100).unwrap();
        assert!(!l.enabled() && !l.x2apic());
        assert_eq!(l.read_apic_base(), 0xfee0_0100);
        // disabled -> x2APIC directly is invalid.
        assert_eq!(l.write_apic_base(BSP_X2APIC), Err(Gp));
        l.write_apic_base(0xfee0_0900).unwrap();
        assert!(l.enabled() && !l.x2apic());
        // Reserved bits, relocation.
        for bad in [
            0xfee0_0901,
            0xfee0_0b00,
            0xfee0_1900,
            0xfec0_0900,
            0x1_fee0_0900,
            1 << 63 | 0xfee0_0900,
        ] {
            assert_eq!(l.write_apic_base(bad), Err(Gp), "{bad:#x}");
        }
        assert_eq!(l.read_apic_base(), 0xfee0_0900);
        // The BSP bit is read-only: writes of the other value are ignored.
        l.write_apic_base(0xfee0_0800).unwrap();
        assert_eq!(l.read_apic_base(), 0xfee0_0900);
        let mut ap = VLapic::new(2, false);
        ap.write_apic_base(0xfee0_0d00).unwrap();
        assert_eq!(ap.read_apic_base(), AP_X2APIC);
    }

    #[test]
    fn reenable_resets_registers() {
        let mut l = VLapic::new(0, true);
        l.write_mmio(reg::SVR, 0x1ff);
        l.write_mmio(reg::TPR, 0x20);
        l.set_irr(0x40);
        l.write_apic_base(0xfee0_0100).unwrap();
        assert_eq!(l.read_mmio(reg::SVR), u32::MAX); // not decoded
        assert!(!l.set_irr(0x41));
        assert_eq!(l.pending_vector(), None);
        l.write_apic_base(0xfee0_0900).unwrap();
        assert_eq!(l.read_mmio(reg::SVR), 0xff);
        assert_eq!(l.read_mmio(reg::TPR), 0);
        assert_eq!(l.read_mmio(reg::IRR0 + 0x20), 0);
    }

    /// SDM table 11-6, written out independently of `Reg`.
    fn expected_access(m: u32) -> Option<Access> {
        use Access::*;
        Some(match m {
            0x802 | 0x803 | 0x80a | 0x80d | 0x810..=0x827 | 0x839 => ReadOnly,
            0x80b | 0x83f => WriteOnly,
            0x808 | 0x80f | 0x828 | 0x82f | 0x830 | 0x832..=0x838 | 0x83e => ReadWrite,
            _ => return None,
        })
    }

    #[test]
    fn x2apic_msr_permissions() {
        for m in X2APIC_MSR_FIRST..=X2APIC_MSR_LAST {
            let l = x2(2);
            let acc = expected_access(m);
            let readable = matches!(acc, Some(Access::ReadOnly | Access::ReadWrite));
            let writable = matches!(acc, Some(Access::WriteOnly | Access::ReadWrite));
            assert_eq!(l.read_msr(m).is_ok(), readable, "read {m:#x}");
            // 1 is legal for every writable register except EOI/ESR, which
            // take only 0.
            let v = if m == 0x80b || m == 0x828 { 0 } else { 1 };
            assert_eq!(l.clone().write_msr(m, v).is_ok(), writable, "write {m:#x}");
            // Not in x2APIC mode: every one is #GP.
            let mut x = VLapic::new(2, false);
            assert_eq!(x.read_msr(m), Err(Gp));
            assert_eq!(x.write_msr(m, v), Err(Gp));
            // Bits 63:32 are reserved everywhere but the ICR.
            if writable && m != 0x830 {
                assert_eq!(l.clone().write_msr(m, 1 << 32 | v), Err(Gp), "{m:#x}");
            }
        }
        let mut l = x2(2);
        assert_eq!(l.read_msr(0x7ff), Err(Gp));
        assert_eq!(l.read_msr(0x900), Err(Gp));
        assert!(is_x2apic_msr(0x800) && is_x2apic_msr(0x8ff) && !is_x2apic_msr(0x900));
        // Reserved bits within the low word.
        assert_eq!(l.write_msr(msr(reg::TPR), 0x100), Err(Gp));
        assert_eq!(l.write_msr(msr(reg::EOI), 1), Err(Gp));
        assert_eq!(l.write_msr(msr(reg::ESR), 1), Err(Gp));
        assert_eq!(l.write_msr(msr(reg::SVR), 0x11ff), Err(Gp));
        assert_eq!(l.write_msr(msr(reg::LVT_TIMER), 1 << 20), Err(Gp));
        assert_eq!(l.write_msr(msr(reg::LVT_ERROR), 0x700), Err(Gp));
        assert_eq!(l.write_msr(msr(reg::TIMER_DIVIDE), 0x4), Err(Gp));
        assert_eq!(l.write_msr(msr(reg::SELF_IPI), 0x100), Err(Gp));
        assert_eq!(l.write_msr(msr(reg::ICR_LOW), 1 << 12 | 0x30), Err(Gp));
        // Read-only status bits are tolerated and dropped.
        // (bit 13, polarity, is writable; 12 and 14 are status).
        l.write_msr(msr(reg::LVT_LINT0), 0x1_7700).unwrap();
        assert_eq!(l.read_msr(msr(reg::LVT_LINT0)), Ok(0x1_2700));
        // Accepted values read back.
        l.write_msr(msr(reg::TPR), 0x20).unwrap();
        assert_eq!(l.read_msr(msr(reg::TPR)), Ok(0x20));
        assert_eq!(l.read_msr(msr(reg::PPR)), Ok(0x20));
    }

    #[test]
    fn linux_ap_start_sequence() {
        let mut bsp = x2(0);
        let ap = x2(2);
        let seq = [
            (0x2_0000_c500, DeliveryMode::Init, 0x00),
            (0x2_0000_8500, DeliveryMode::InitDeassert, 0x00),
            (0x2_0000_0699, DeliveryMode::Startup, 0x99),
            (0x2_0000_0699, DeliveryMode::Startup, 0x99),
        ];
        for (icr, mode, vector) in seq {
            let i = ipi(bsp.write_msr(msr(reg::ICR_LOW), icr).unwrap());
            assert_eq!(
                i,
                Ipi {
                    mode,
                    vector,
                    dest: Destination::Physical(2)
                }
            );
            assert_eq!(bsp.read_msr(msr(reg::ICR_LOW)), Ok(icr));
            assert!(ap.matches(&i.dest, false));
            assert!(!bsp.matches(&i.dest, true));
        }
    }

    #[test]
    fn all_but_self_stop_ipi() {
        let mut bsp = x2(0);
        let i = ipi(bsp.write_msr(msr(reg::ICR_LOW), 0x000c_00f8).unwrap());
        assert_eq!(
            i,
            Ipi {
                mode: DeliveryMode::Fixed,
                vector: 0xf8,
                dest: Destination::AllExcludingSelf
            }
        );
        assert!(!bsp.matches(&i.dest, true));
        let mut ap = x2(2);
        assert!(ap.matches(&i.dest, false));
        assert!(ap.set_irr(i.vector));
        assert_eq!(ap.pending_vector(), Some(0xf8));
    }

    #[test]
    fn self_ipi_msr() {
        let mut l = x2(4);
        let i = ipi(l.write_msr(msr(reg::SELF_IPI), 0x31).unwrap());
        assert_eq!(
            i,
            Ipi {
                mode: DeliveryMode::Fixed,
                vector: 0x31,
                dest: Destination::SelfOnly
            }
        );
        assert!(l.matches(&i.dest, true));
        assert_eq!(l.read_msr(msr(reg::ICR_LOW)), Ok(0)); // ICR untouched
        // In xAPIC mode offset 0x3f0 is reserved.
        let mut x = VLapic::new(4, false);
        assert_eq!(x.write_mmio(reg::SELF_IPI, 0x31), None);
    }

    #[test]
    fn xapic_icr_via_mmio() {
        let mut l = VLapic::new(0, true);
        assert_eq!(l.write_mmio(reg::ICR_HIGH, 0x0200_0000), None);
        assert_eq!(l.read_mmio(reg::ICR_HIGH), 0x0200_0000);
        let i = ipi(l.write_mmio(reg::ICR_LOW, 0xc500));
        assert_eq!(
            i,
            Ipi {
                mode: DeliveryMode::Init,
                vector: 0,
                dest: Destination::Physical(2)
            }
        );
        // Delivery status (bit 12) reads clear; written it is dropped.
        let i = ipi(l.write_mmio(reg::ICR_LOW, 0x1699));
        assert_eq!(i.mode, DeliveryMode::Startup);
        assert_eq!(l.read_mmio(reg::ICR_LOW), 0x0699);
        // Logical, and a broadcast.
        l.write_mmio(reg::ICR_HIGH, 0x0300_0000);
        let i = ipi(l.write_mmio(reg::ICR_LOW, 0x0830));
        assert_eq!(i.dest, Destination::Logical(3));
        l.write_mmio(reg::ICR_HIGH, 0xff00_0000);
        let i = ipi(l.write_mmio(reg::ICR_LOW, 0x0030));
        assert_eq!(i.dest, Destination::Physical(0xff));
        assert!(VLapic::new(6, false).matches(&i.dest, false));
        // Reserved delivery modes send nothing.
        assert_eq!(l.write_mmio(reg::ICR_LOW, 0x0330), None);
        assert_eq!(l.write_mmio(reg::ICR_LOW, 0x0730), None);
    }

    #[test]
    fn mmio_decoding() {
        let mut l = VLapic::new(2, false);
        assert_eq!(l.read_mmio(0x000), 0);
        assert_eq!(l.read_mmio(reg::EOI), 0);
        assert_eq!(l.read_mmio(reg::ID + 4), 0);
        assert_eq!(l.read_mmio(0x1000), 0);
        assert_eq!(l.read_mmio(0x3f0), 0);
        // Read-only and reserved writes are ignored.
        l.write_mmio(reg::ID, 0x0500_0000);
        l.write_mmio(reg::VERSION, 0);
        l.write_mmio(0x040, 1);
        assert_eq!(l.read_mmio(reg::ID), 0x0200_0000);
        assert_eq!(l.read_mmio(reg::VERSION), VERSION);
        // Writable bits only.
        l.write_mmio(reg::TPR, 0xffff_ffff);
        assert_eq!(l.read_mmio(reg::TPR), 0xff);
        l.write_mmio(reg::LDR, 0xffff_ffff);
        assert_eq!(l.read_mmio(reg::LDR), 0xff00_0000);
        l.write_mmio(reg::DFR, 0);
        assert_eq!(l.read_mmio(reg::DFR), 0x0fff_ffff);
        // x2APIC: MMIO not decoded.
        l.write_apic_base(AP_X2APIC).unwrap();
        assert_eq!(l.read_mmio(reg::ID), u32::MAX);
        assert_eq!(l.write_mmio(reg::TPR, 0x10), None);
        assert_eq!(l.read_msr(msr(reg::TPR)), Ok(0xff));
    }

    #[test]
    fn eoi_ends_nested_vectors_in_order() {
        let mut l = x2(0);
        assert!(l.set_irr(0x30));
        assert_eq!(l.pending_vector(), Some(0x30));
        l.ack(0x30);
        assert_eq!(l.read_msr(msr(reg::ISR0 + 0x10)), Ok(1 << 16));
        assert_eq!(l.read_msr(msr(reg::PPR)), Ok(0x30));
        // Same class is blocked, a higher one nests.
        l.set_irr(0x31);
        assert_eq!(l.pending_vector(), None);
        l.set_irr(0x50);
        assert_eq!(l.pending_vector(), Some(0x50));
        l.ack(0x50);
        assert_eq!(l.pending_vector(), None);
        assert_eq!(l.write_msr(msr(reg::EOI), 0), Ok(Some(Effect::Eoi(0x50))));
        assert_eq!(l.pending_vector(), None); // 0x31 still below 0x30's class
        assert_eq!(l.write_msr(msr(reg::EOI), 0), Ok(Some(Effect::Eoi(0x30))));
        assert_eq!(l.pending_vector(), Some(0x31));
        assert_eq!(l.write_msr(msr(reg::EOI), 0), Ok(None));
        // xAPIC EOI takes any value.
        let mut x = VLapic::new(0, true);
        x.write_mmio(reg::SVR, 0x1ff);
        x.set_irr(0xf3);
        x.ack(0xf3);
        assert_eq!(x.write_mmio(reg::EOI, 0x1234), Some(Effect::Eoi(0xf3)));
    }

    #[test]
    fn tpr_masks_pending() {
        let mut l = x2(0);
        l.write_msr(msr(reg::TPR), 0x40).unwrap();
        l.set_irr(0x45);
        assert_eq!(l.pending_vector(), None);
        l.set_irr(0x51);
        assert_eq!(l.pending_vector(), Some(0x51));
        l.write_msr(msr(reg::TPR), 0x50).unwrap();
        assert_eq!(l.pending_vector(), None);
        l.write_msr(msr(reg::TPR), 0).unwrap();
        assert_eq!(l.pending_vector(), Some(0x51));
        // ack of a vector not pending changes nothing.
        l.ack(0x99);
        assert_eq!(l.read_msr(msr(reg::ISR0 + 0x40)), Ok(0));
    }

    #[test]
    fn xtf_xsa_462_sequence() {
        // XTF's XSA-462 PoC: an illegal vector sent with LVTERR set to an
        // illegal one: "send illegal" and, for LVTERR, "receive illegal".
        let mut l = VLapic::new(0, true);
        l.write_mmio(reg::SVR, 0x1ff);
        l.write_mmio(reg::ESR, 0);
        l.write_mmio(reg::LVT_ERROR, 0xf);
        l.write_mmio(reg::ICR_HIGH, 0);
        let sent = l.write_mmio(reg::ICR_LOW, 0xf);
        l.write_mmio(reg::ESR, 0);
        assert_eq!((sent.is_none(), l.read_mmio(reg::ESR)), (true, 0x60));
    }

    #[test]
    fn illegal_vectors_set_esr() {
        let mut l = x2(0);
        assert!(!l.set_irr(15));
        assert_eq!(l.read_msr(msr(reg::IRR0)), Ok(0));
        // ESR shows errors only after a write (SDM 11.5.3).
        assert_eq!(l.read_msr(msr(reg::ESR)), Ok(0));
        l.write_msr(msr(reg::ESR), 0).unwrap();
        assert_eq!(
            l.read_msr(msr(reg::ESR)),
            Ok(u64::from(ESR_RECEIVE_ILLEGAL_VECTOR))
        );
        l.write_msr(msr(reg::ESR), 0).unwrap();
        assert_eq!(l.read_msr(msr(reg::ESR)), Ok(0));
        // Sending one: nothing sent, ESR bit 5.
        assert_eq!(l.write_msr(msr(reg::ICR_LOW), 0x2_0000_0005), Ok(None));
        assert_eq!(l.write_msr(msr(reg::SELF_IPI), 3), Ok(None));
        l.write_msr(msr(reg::ESR), 0).unwrap();
        assert_eq!(
            l.read_msr(msr(reg::ESR)),
            Ok(u64::from(ESR_SEND_ILLEGAL_VECTOR))
        );
        // With the error LVT unmasked, a new error raises its vector.
        l.write_msr(msr(reg::LVT_ERROR), 0xfe).unwrap();
        assert!(!l.set_irr(1));
        assert_eq!(l.pending_vector(), Some(0xfe));
        // xAPIC ESR: any value written latches.
        let mut x = VLapic::new(0, true);
        x.set_irr(0);
        x.write_mmio(reg::ESR, 0xdead);
        assert_eq!(x.read_mmio(reg::ESR), ESR_RECEIVE_ILLEGAL_VECTOR);
    }

    #[test]
    fn software_disabled() {
        let mut l = VLapic::new(2, false);
        l.write_apic_base(AP_X2APIC).unwrap();
        assert!(l.set_irr(0xf3)); // held
        assert_eq!(l.pending_vector(), None);
        l.write_msr(msr(reg::LVT_LINT0), 0x700).unwrap();
        assert_eq!(l.read_msr(msr(reg::LVT_LINT0)), Ok(0x1_0700)); // stays masked
        l.write_msr(msr(reg::SVR), 0x1ff).unwrap();
        assert_eq!(l.pending_vector(), Some(0xf3));
        l.write_msr(msr(reg::LVT_LINT0), 0x700).unwrap();
        assert_eq!(l.read_msr(msr(reg::LVT_LINT0)), Ok(0x700));
        l.write_msr(msr(reg::SVR), 0xff).unwrap();
        assert_eq!(l.read_msr(msr(reg::LVT_LINT0)), Ok(0x1_0700));
        assert_eq!(l.pending_vector(), None);
    }

    #[test]
    fn init_reset() {
        let mut l = x2(2);
        l.write_msr(msr(reg::TPR), 0x30).unwrap();
        l.write_msr(msr(reg::LVT_TIMER), 0xef).unwrap();
        l.set_irr(0x40);
        l.set_irr(0x80);
        l.ack(0x80);
        l.reset();
        assert_eq!(l.read_apic_base(), AP_X2APIC);
        assert_eq!(l.read_msr(msr(reg::ID)), Ok(2));
        assert_eq!(l.read_msr(msr(reg::LDR)), Ok(0x4));
        assert_eq!(l.read_msr(msr(reg::TPR)), Ok(0));
        assert_eq!(l.read_msr(msr(reg::SVR)), Ok(0xff));
        assert_eq!(l.read_msr(msr(reg::LVT_TIMER)), Ok(0x1_0000));
        assert_eq!(l.read_msr(msr(reg::IRR0 + 0x20)), Ok(0));
        assert_eq!(l.read_msr(msr(reg::ISR0 + 0x40)), Ok(0));
        let mut x = VLapic::new(2, false);
        x.write_mmio(reg::LDR, 0x0100_0000);
        x.reset();
        assert_eq!(x.read_mmio(reg::LDR), 0);
        assert_eq!(x.read_mmio(reg::ID), 0x0200_0000);
    }

    #[test]
    fn timer_registers_kept() {
        let mut l = x2(0);
        l.write_msr(msr(reg::LVT_TIMER), 0x2_00ec).unwrap();
        l.write_msr(msr(reg::TIMER_INITIAL), 0xffff_ffff).unwrap();
        l.write_msr(msr(reg::TIMER_DIVIDE), 0xb).unwrap();
        assert_eq!(l.read_msr(msr(reg::LVT_TIMER)), Ok(0x2_00ec));
        assert_eq!(l.read_msr(msr(reg::TIMER_INITIAL)), Ok(0xffff_ffff));
        assert_eq!(l.read_msr(msr(reg::TIMER_DIVIDE)), Ok(0xb));
        assert_eq!(l.read_msr(msr(reg::TIMER_CURRENT)), Ok(0));
        assert_eq!(l.write_msr(msr(reg::TIMER_CURRENT), 0), Err(Gp));
    }

    #[test]
    fn destination_matching() {
        use Destination::*;
        let a = x2(2);
        assert!(a.matches(&Physical(2), false));
        assert!(!a.matches(&Physical(3), false));
        assert!(!a.matches(&Physical(0x102), false));
        assert!(a.matches(&Physical(0xffff_ffff), false));
        assert!(a.matches(&Physical(0xffff_ffff), true));
        assert!(!a.matches(&Physical(0xff), false)); // a real id in x2APIC
        assert!(a.matches(&SelfOnly, true) && !a.matches(&SelfOnly, false));
        assert!(a.matches(&AllIncludingSelf, true) && a.matches(&AllIncludingSelf, false));
        assert!(!a.matches(&AllExcludingSelf, true) && a.matches(&AllExcludingSelf, false));
        // x2APIC cluster logical: id 0x23 is cluster 2, bit 3.
        let c = x2(0x23);
        assert!(c.matches(&Logical((2 << 16) | 0x8), false));
        assert!(c.matches(&Logical((2 << 16) | 0xff0f), false));
        assert!(!c.matches(&Logical((2 << 16) | 0x4), false));
        assert!(!c.matches(&Logical((1 << 16) | 0x8), false));
        assert!(c.matches(&Logical(0xffff_ffff), false));
        // xAPIC physical and broadcast.
        let mut x = VLapic::new(2, false);
        assert!(x.matches(&Physical(2), false));
        assert!(x.matches(&Physical(0xff), false));
        assert!(!x.matches(&Physical(4), false));
        // xAPIC flat logical.
        x.write_mmio(reg::LDR, 0x0100_0000);
        assert!(x.matches(&Logical(0x01), false));
        assert!(x.matches(&Logical(0x03), false));
        assert!(!x.matches(&Logical(0x02), false));
        assert!(x.matches(&Logical(0xff), false));
        // xAPIC cluster logical.
        x.write_mmio(reg::DFR, 0x0fff_ffff);
        x.write_mmio(reg::LDR, 0x1200_0000);
        assert!(x.matches(&Logical(0x12), false));
        assert!(x.matches(&Logical(0x13), false));
        assert!(!x.matches(&Logical(0x11), false));
        assert!(!x.matches(&Logical(0x22), false));
        assert!(x.matches(&Logical(0xff), false));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Msr(u32, u64),
        Mmio(u32, u32),
        Base(u64),
        SetIrr(u8),
        AckPending,
        Ack(u8),
        Reset,
    }

    fn value64() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..0x200, 0u64..0x2_0010_0000, any::<u64>()]
    }

    fn op() -> impl Strategy<Value = Op> {
        let msr = prop_oneof![0x800u32..0x840, 0x800u32..=0x8ff];
        let off = prop_oneof![(0u32..0x40).prop_map(|i| i * 16), 0u32..0x1100];
        let base = prop_oneof![
            Just(0xfee0_0800u64),
            Just(0xfee0_0c00),
            Just(0xfee0_0d00),
            Just(0xfee0_0000),
            Just(0xfee0_0400),
            Just(0xfee0_0900),
            any::<u64>(),
        ];
        prop_oneof![
            4 => (msr, value64()).prop_map(|(m, v)| Op::Msr(m, v)),
            3 => (off, prop_oneof![0u32..0x200, any::<u32>()]).prop_map(|(o, v)| Op::Mmio(o, v)),
            1 => base.prop_map(Op::Base),
            3 => any::<u8>().prop_map(Op::SetIrr),
            3 => Just(Op::AckPending),
            1 => any::<u8>().prop_map(Op::Ack),
            1 => Just(Op::Reset),
        ]
    }

    fn check_invariants(l: &VLapic, id: u32, bsp: bool) {
        // Illegal vectors are never latched nor in service.
        assert_eq!(l.irr[0] & 0xffff, 0);
        assert_eq!(l.isr[0] & 0xffff, 0);
        if let Some(v) = l.pending_vector() {
            assert!(bit_test(&l.irr, v));
            assert_eq!(highest(&l.irr), Some(v));
            assert!(class(u32::from(v)) > class(l.ppr()));
            assert!(l.sw_enabled() && l.enabled());
        }
        let base = l.read_apic_base();
        assert_eq!(
            base & !(APIC_BASE_EN | APIC_BASE_EXTD | APIC_BASE_BSP),
            APIC_BASE_ADDRESS
        );
        assert_eq!(base & APIC_BASE_BSP != 0, bsp);
        assert!(base & APIC_BASE_EXTD == 0 || base & APIC_BASE_EN != 0);
        assert_eq!(l.id(), id);
        if l.x2apic() {
            assert_eq!(l.read_msr(msr(reg::LDR)), Ok(u64::from(x2apic_ldr(id))));
            assert_eq!(l.read_msr(msr(reg::ID)), Ok(u64::from(id)));
            assert_eq!(l.read_mmio(reg::ID), u32::MAX);
        } else if l.enabled() {
            assert_eq!(l.read_mmio(reg::ID), (id & 0xff) << 24);
        }
        if !l.sw_enabled() {
            assert!(l.lvt.iter().all(|v| v & LVT_MASKED != 0));
        }
        for m in X2APIC_MSR_FIRST..=X2APIC_MSR_LAST {
            let _ = l.read_msr(m);
        }
        for o in (0..0x1000).step_by(16) {
            let _ = l.read_mmio(o);
        }
    }

    /// No fixed or lowest-priority IPI with an illegal vector is sent.
    fn legal_effect(e: Option<Effect>) -> bool {
        match e {
            Some(Effect::Ipi(i)) => {
                i.vector >= 16
                    || !matches!(i.mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority)
            }
            _ => true,
        }
    }

    proptest! {
        #[test]
        fn arbitrary_writes_keep_invariants(
            id in prop_oneof![0u32..8, any::<u32>()],
            bsp in any::<bool>(),
            ops in proptest::collection::vec(op(), 0..64),
        ) {
            let mut l = VLapic::new(id, bsp);
            check_invariants(&l, id, bsp);
            for o in ops {
                let (irr_before, isr_before) = (l.irr, l.isr);
                match o {
                    Op::Msr(m, v) => {
                        prop_assert!(legal_effect(l.write_msr(m, v).unwrap_or(None)));
                    }
                    Op::Mmio(off, v) => {
                        prop_assert!(legal_effect(l.write_mmio(off, v)));
                    }
                    Op::Base(v) => {
                        let _ = l.write_apic_base(v);
                    }
                    Op::SetIrr(v) => {
                        let accepted = l.set_irr(v);
                        prop_assert_eq!(accepted, v >= 16 && l.enabled());
                    }
                    Op::AckPending => {
                        if let Some(v) = l.pending_vector() {
                            l.ack(v);
                            prop_assert!(bit_test(&l.isr, v) && !bit_test(&l.irr, v));
                        }
                    }
                    Op::Ack(v) => l.ack(v),
                    Op::Reset => l.reset(),
                }
                // ISR only grows by vectors accepted into the IRR before.
                for w in 0..8 {
                    prop_assert_eq!(l.isr[w] & !(isr_before[w] | irr_before[w]), 0);
                }
                check_invariants(&l, id, bsp);
            }
        }
    }
}
