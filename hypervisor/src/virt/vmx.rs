//! The Intel VT-x backend: per-CPU VMXON, one VMCS per vCPU, EPT (the
//! domain's `SecondLevelPaging`), unrestricted guest for the PVH 32-bit
//! entry, and the world switch.
//!
//! A VMCS is current on at most one CPU at a time: it is loaded
//! (VMPTRLD) at the first entry of a slice and cleared (VMCLEAR) when the
//! slice ends, so a vCPU can run on any CPU next. Between slices the
//! guest state lives in [`Shadow`]: every accessor reads and writes that
//! copy, and `run` moves it in and out of the VMCS, so nothing outside a
//! slice needs the VMCS current.
//!
//! What VMX does not switch and the host never uses — STAR, LSTAR, CSTAR,
//! SFMASK, KERNEL_GS_BASE, TSC_AUX, CR2 and DR6 — is put in the hardware
//! when a slice starts, stays there (passed through) and is saved at its
//! end; DR0-DR3 likewise, but only once the guest touches them.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use spin::Once;
use x86_64::registers::model_specific::Msr;

use super::guest_state::{self, DR6_INIT, DR7_ENABLES, DR7_INIT, DebugRegs, Fpu};
use super::vmcb;
use super::vmcs::{
    self, BLOCKING_BY_MOV_SS, BLOCKING_BY_STI, CrAccess, EXIT_REASON_ENTRY_FAILURE,
    IoQualification, SegmentReg, entry, event, field, pin, primary, reason, secondary,
};
use super::{Exit, GuestRegs, SecondLevelPaging, StartState, VirtCpu, VirtError};
use crate::cmdline::MAX_CPUS;
use crate::mm::frame::Frame;
use crate::mm::guest::GuestPaging;
use crate::mm::{self};

const MSR_EFER: u32 = 0xc000_0080;
const MSR_PAT: u32 = 0x277;
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;
const MSR_TSC_AUX: u32 = 0xc000_0103;
const MSR_SYSENTER_CS: u32 = 0x174;
const MSR_SYSENTER_ESP: u32 = 0x175;
const MSR_SYSENTER_EIP: u32 = 0x176;

/// MSRs the guest reaches directly: kept in the VMCS (SYSENTER, FS/GS
/// base) or in the hardware for the slice (the syscall MSRs).
const PASSTHROUGH_MSRS: [u32; 10] = [
    MSR_SYSENTER_CS,
    MSR_SYSENTER_ESP,
    MSR_SYSENTER_EIP,
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    MSR_FS_BASE,
    MSR_GS_BASE,
    MSR_KERNEL_GS_BASE,
];
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
/// Passed-through MSRs VMX does not switch: saved and restored per slice.
const UNSWITCHED_MSRS: [u32; 5] = [
    0xc000_0081,
    0xc000_0082,
    0xc000_0083,
    0xc000_0084,
    MSR_KERNEL_GS_BASE,
];

/// Guest EFER bits a guest may set: SCE, LME, LMA, NXE.
const GUEST_EFER_ALLOWED: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11);
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// CR4 bits a guest may set (as on SVM): never VMXE, SMXE, LA57, PKE,
/// CET, PKS; OSXSAVE where XSAVE is switched.
const GUEST_CR4_ALLOWED: u64 = 0x7ff | (1 << 11) | (1 << 16) | (1 << 17) | (1 << 20) | (1 << 21);
const CR4_PAE: u64 = 1 << 5;
const CR4_PCIDE: u64 = 1 << 17;
const CR4_OSXSAVE: u64 = 1 << 18;
const CR0_PE: u64 = 1 << 0;
const CR0_PG: u64 = 1 << 31;
const RFLAGS_IF: u64 = 1 << 9;
const VECTOR_GP: u8 = 13;
/// The architectural PAT at reset.
const PAT_RESET: u64 = 0x0007_0406_0007_0406;

const ATTR_CODE32: u16 = 0xc9b;
const ATTR_DATA32: u16 = 0xc93;
const ATTR_CODE64: u16 = 0xa9b;
const ATTR_TSS_BUSY: u16 = 0x8b;
const ATTR_REAL_CODE: u16 = 0x9b;
const ATTR_REAL_DATA: u16 = 0x93;

/// The longest a guest runs without an exit, by the VMX-preemption timer
/// (where offered). Host interrupts exit too, but Bochs holds them back in
/// a guest entered with IF=0 (it masks them before noting that it is in
/// the guest), so a guest spinning with interrupts off would never give
/// its CPU back; the timer bounds that on any implementation.
const PREEMPTION_MS: u64 = 1;

/// What every CPU shares: the controls computed from the capability MSRs.
struct Shared {
    /// The VMX-preemption timer's count for [`PREEMPTION_MS`], if the CPU
    /// has one.
    preemption: Option<u64>,
    revision: u32,
    pin: u32,
    primary: u32,
    secondary: u32,
    exit: u32,
    entry: u32,
    /// CR0/CR4 bits VMX operation forces to 1 (FIXED0) and allows (FIXED1)
    /// in the guest; PE and PG are free with unrestricted guest.
    cr0_fixed: (u64, u64),
    cr4_fixed: (u64, u64),
    msr_bitmap: u64,
    vpid: bool,
    invept_single: bool,
    invvpid_single: bool,
    host_pat: u64,
    host_efer: u64,
}

static SHARED: Once<Result<Shared, VirtError>> = Once::new();
static VMXON_REGION: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static LOADED_TSC_AUX: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static NEXT_VPID: AtomicU32 = AtomicU32::new(0);
/// VMWRITEs the CPU refused (a field it lacks): shown in crash reports.
static VMWRITE_FAILURES: AtomicU32 = AtomicU32::new(0);

fn rdmsr(msr: u32) -> u64 {
    // SAFETY: only MSRs that exist where VMX does (checked by the caller's
    // CPUID test) are read.
    unsafe { Msr::new(msr).read() }
}

fn shared() -> &'static Shared {
    match SHARED.get() {
        Some(Ok(s)) => s,
        _ => panic!("VMX used before enable_this_cpu succeeded"),
    }
}

fn alloc_page() -> Result<u64, VirtError> {
    let frame = mm::frames().alloc().ok_or(VirtError::OutOfMemory)?;
    mm::zero_frame(frame);
    Ok(frame.start())
}

/// The controls from what Pavise needs, what it takes if offered, and the
/// capability MSR (the TRUE_* one where it exists).
fn controls(
    needed: u32,
    optional: u32,
    capability: u64,
    what: &'static str,
) -> Result<u32, VirtError> {
    let offered = optional & (capability >> 32) as u32;
    vmcs::adjust_controls(needed | offered, capability).map_err(|_| VirtError::VmxLacks(what))
}

fn build_shared() -> Result<Shared, VirtError> {
    use vmcs::msr as cap;
    let basic = rdmsr(cap::BASIC);
    let true_controls = basic & vmcs::BASIC_TRUE_CONTROLS != 0;
    let pick = |plain, truer| rdmsr(if true_controls { truer } else { plain });
    let pin = controls(
        pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING,
        pin::PREEMPTION_TIMER,
        pick(cap::PINBASED_CTLS, cap::TRUE_PINBASED_CTLS),
        "external-interrupt and NMI exiting",
    )?;
    let primary = controls(
        primary::HLT_EXITING
            | primary::USE_TSC_OFFSETTING
            | primary::MWAIT_EXITING
            | primary::MONITOR_EXITING
            | primary::UNCONDITIONAL_IO_EXITING
            | primary::USE_MSR_BITMAPS
            | primary::MOV_DR_EXITING
            | primary::CR8_LOAD_EXITING
            | primary::CR8_STORE_EXITING
            | primary::SECONDARY_CONTROLS,
        0,
        pick(cap::PROCBASED_CTLS, cap::TRUE_PROCBASED_CTLS),
        "the processor-based controls Pavise needs",
    )?;
    let secondary_cap = rdmsr(cap::PROCBASED_CTLS2);
    let secondary = controls(
        secondary::ENABLE_EPT | secondary::UNRESTRICTED_GUEST,
        secondary::ENABLE_VPID | secondary::ENABLE_RDTSCP | secondary::ENABLE_INVPCID,
        secondary_cap,
        "EPT with unrestricted guest",
    )?;
    let ept_cap = rdmsr(cap::EPT_VPID_CAP);
    use vmcs::ept_cap as e;
    if ept_cap & e::WALK_LENGTH_4 == 0 || ept_cap & e::MEMORY_TYPE_WB == 0 {
        return Err(VirtError::VmxLacks("four-level write-back EPT"));
    }
    if ept_cap & e::INVEPT == 0
        || ept_cap & (e::INVEPT_SINGLE_CONTEXT | e::INVEPT_ALL_CONTEXTS) == 0
    {
        return Err(VirtError::VmxLacks("INVEPT"));
    }
    let invvpid = ept_cap & e::INVVPID != 0
        && ept_cap & (e::INVVPID_SINGLE_CONTEXT | e::INVVPID_ALL_CONTEXTS) != 0;
    let vpid = secondary & secondary::ENABLE_VPID != 0 && invvpid;
    let secondary = if vpid {
        secondary
    } else {
        secondary & !secondary::ENABLE_VPID
    };
    let exit = controls(
        vmcs::exit::HOST_ADDRESS_SPACE_SIZE
            | vmcs::exit::SAVE_DEBUG_CONTROLS
            | vmcs::exit::SAVE_PAT
            | vmcs::exit::LOAD_PAT
            | vmcs::exit::SAVE_EFER
            | vmcs::exit::LOAD_EFER,
        0,
        pick(cap::EXIT_CTLS, cap::TRUE_EXIT_CTLS),
        "64-bit hosts with PAT and EFER switching",
    )?;
    let entry = controls(
        entry::LOAD_DEBUG_CONTROLS | entry::LOAD_PAT | entry::LOAD_EFER,
        0,
        pick(cap::ENTRY_CTLS, cap::TRUE_ENTRY_CTLS),
        "PAT and EFER loading on entry",
    )?;
    // IA-32e mode guest is set per entry (from the guest's EFER.LMA).
    let entry = entry & !entry::IA32E_MODE_GUEST;
    let unrestricted = CR0_PE | CR0_PG;
    let msr_bitmap = alloc_page()?;
    // SAFETY: the page was just allocated and is ours; all ones = every
    // access exits, then the pass-through MSRs are cleared.
    unsafe { core::ptr::write_bytes(msr_bitmap as *mut u8, 0xff, 4096) };
    for msr in PASSTHROUGH_MSRS {
        let (offset, bit) = match msr {
            0..=0x1fff => (0, msr),
            _ => (0x400, msr - 0xc000_0000),
        };
        for write_half in [0, 0x800] {
            let byte = msr_bitmap + write_half + offset + (bit / 8) as u64;
            // SAFETY: inside the bitmap page just allocated.
            unsafe { *(byte as *mut u8) &= !(1 << (bit % 8)) };
        }
    }
    let preemption = (pin & pin::PREEMPTION_TIMER != 0).then(|| {
        let shift = rdmsr(cap::MISC) & 0x1f;
        ((crate::arch::time::tsc_per_ms() * PREEMPTION_MS) >> shift).clamp(1, u32::MAX as u64)
    });
    Ok(Shared {
        preemption,
        revision: basic as u32 & 0x7fff_ffff,
        pin,
        primary,
        secondary,
        exit,
        entry,
        cr0_fixed: (
            rdmsr(cap::CR0_FIXED0) & !unrestricted,
            rdmsr(cap::CR0_FIXED1),
        ),
        cr4_fixed: (rdmsr(cap::CR4_FIXED0), rdmsr(cap::CR4_FIXED1)),
        msr_bitmap,
        vpid,
        invept_single: ept_cap & e::INVEPT_SINGLE_CONTEXT != 0,
        invvpid_single: ept_cap & e::INVVPID_SINGLE_CONTEXT != 0,
        host_pat: rdmsr(MSR_PAT),
        host_efer: rdmsr(MSR_EFER),
    })
}

/// Turns VMX on for the calling CPU (VMXON). Every CPU that runs guests
/// calls it.
pub fn enable_this_cpu(cpu_index: usize) -> Result<(), VirtError> {
    use vmcs::msr as cap;
    let feature_control = rdmsr(cap::FEATURE_CONTROL);
    if feature_control & vmcs::FEATURE_CONTROL_LOCKED == 0 {
        // SAFETY: an unlocked FEATURE_CONTROL may be written once; this
        // allows VMX outside SMX and locks it, as firmware would.
        unsafe {
            Msr::new(cap::FEATURE_CONTROL).write(
                feature_control
                    | vmcs::FEATURE_CONTROL_LOCKED
                    | vmcs::FEATURE_CONTROL_VMX_OUTSIDE_SMX,
            )
        };
    } else if feature_control & vmcs::FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0 {
        return Err(VirtError::VmxDisabledByFirmware);
    }
    let shared = SHARED.call_once(build_shared).as_ref().map_err(|e| *e)?;
    let region = alloc_page()?;
    // SAFETY: our own fresh page: the VMXON region starts with the VMCS
    // revision identifier.
    unsafe { *(region as *mut u32) = shared.revision };
    // VMX operation needs the host's CR0 and CR4 within the fixed bits
    // (NE on, VMXE on); neither change matters to the hypervisor.
    let host_cr0 = vmcs::fixed_bits(read_cr0(), rdmsr(cap::CR0_FIXED0), rdmsr(cap::CR0_FIXED1));
    let host_cr4 = vmcs::fixed_bits(read_cr4(), rdmsr(cap::CR4_FIXED0), rdmsr(cap::CR4_FIXED1));
    let failed: u8;
    // SAFETY: CR0/CR4 get only the bits VMX requires; VMXON takes the
    // physical address of the region, which stays this CPU's for ever.
    unsafe {
        core::arch::asm!("mov cr0, {}", in(reg) host_cr0, options(nostack));
        core::arch::asm!("mov cr4, {}", in(reg) host_cr4, options(nostack));
        core::arch::asm!(
            "vmxon [{}]",
            "setna {}",
            in(reg) &region,
            out(reg_byte) failed,
            options(nostack)
        );
    }
    if failed != 0 {
        return Err(VirtError::VmxonFailed);
    }
    VMXON_REGION[cpu_index].store(region, Ordering::SeqCst);
    Ok(())
}

fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects.
    unsafe { core::arch::asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)) };
    v
}

fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: as in `read_cr0`.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)) };
    v
}

fn vmwrite(field: u32, value: u64) {
    let failed: u8;
    // SAFETY: only called with this vCPU's VMCS current on this CPU (in
    // `run`); a field the CPU lacks fails harmlessly (counted).
    unsafe {
        core::arch::asm!(
            "vmwrite {}, {}",
            "setna {}",
            in(reg) field as u64,
            in(reg) value,
            out(reg_byte) failed,
            options(nostack)
        )
    };
    if failed != 0 {
        VMWRITE_FAILURES.fetch_add(1, Ordering::Relaxed);
    }
}

fn vmread(field: u32) -> u64 {
    let value: u64;
    // SAFETY: as in `vmwrite`; VMREAD has no side effects.
    unsafe {
        core::arch::asm!(
            "vmread {}, {}",
            out(reg) value,
            in(reg) field as u64,
            options(nostack)
        )
    };
    value
}

core::arch::global_asm!(
    r#"
    .section .text.vmx, "ax"
    .global pavise_vmx_world_switch
// rdi: *mut VmxRegs (GuestRegs then RAX); rsi: 0 = VMLAUNCH, else VMRESUME.
// Returns 0 after a VM exit, 1 if the entry instruction itself failed.
pavise_vmx_world_switch:
    push rbx
    push rbp
    push r12
    push r13
    push r14
    push r15
    push rdi
    mov rax, 0x6c14
    vmwrite rax, rsp
    lea rdx, [rip + .Lvmx_exit]
    mov rax, 0x6c16
    vmwrite rax, rdx
    test rsi, rsi
    mov rax, [rdi + 112]
    mov rbx, [rdi + 0]
    mov rcx, [rdi + 8]
    mov rdx, [rdi + 16]
    mov rsi, [rdi + 24]
    mov rbp, [rdi + 40]
    mov r8, [rdi + 48]
    mov r9, [rdi + 56]
    mov r10, [rdi + 64]
    mov r11, [rdi + 72]
    mov r12, [rdi + 80]
    mov r13, [rdi + 88]
    mov r14, [rdi + 96]
    mov r15, [rdi + 104]
    mov rdi, [rdi + 32]
    // Host interrupts stay off (IF=0) across the switch: in the guest a
    // pending one exits (external-interrupt exiting) whatever its IF.
    jnz .Lvmx_resume
    vmlaunch
    jmp .Lvmx_failed
.Lvmx_resume:
    vmresume
.Lvmx_failed:
    // The entry failed: the host's registers are the guest's now, but its
    // stack is intact.
    pop rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    mov eax, 1
    ret
.Lvmx_exit:
    // VM exit: RSP is the value written above (the regs pointer on top).
    push rdi
    mov rdi, [rsp + 8]
    mov [rdi + 112], rax
    mov [rdi + 0], rbx
    mov [rdi + 8], rcx
    mov [rdi + 16], rdx
    mov [rdi + 24], rsi
    mov [rdi + 40], rbp
    mov [rdi + 48], r8
    mov [rdi + 56], r9
    mov [rdi + 64], r10
    mov [rdi + 72], r11
    mov [rdi + 80], r12
    mov [rdi + 88], r13
    mov [rdi + 96], r14
    mov [rdi + 104], r15
    pop rax
    mov [rdi + 32], rax
    pop rdi
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbp
    pop rbx
    xor eax, eax
    ret
"#
);

unsafe extern "C" {
    fn pavise_vmx_world_switch(regs: *mut VmxRegs, resume: u64) -> u64;
}

/// The registers the world switch moves: VMX keeps no GPR in the VMCS,
/// not even RAX.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct VmxRegs {
    regs: GuestRegs,
    rax: u64,
}

/// A segment register as the shadow keeps it (SVM's packed attributes).
#[derive(Clone, Copy, Default)]
struct Segment {
    selector: u16,
    attrib: u16,
    limit: u32,
    base: u64,
}

fn flat(selector: u16, attrib: u16) -> Segment {
    Segment {
        selector,
        attrib,
        limit: 0xffff_ffff,
        base: 0,
    }
}

/// The guest state between slices (see the module comment).
#[derive(Clone, Copy, Default)]
struct Shadow {
    rip: u64,
    rsp: u64,
    rflags: u64,
    /// CR0 and CR4 as the hardware holds them (fixed bits applied) and
    /// as the guest sees them (read shadows).
    cr0: u64,
    cr0_shadow: u64,
    cr3: u64,
    cr4: u64,
    cr4_shadow: u64,
    efer: u64,
    pat: u64,
    dr7: u64,
    interruptibility: u32,
    /// ES, CS, SS, DS, FS, GS, LDTR, TR (VMCS order).
    segments: [Segment; 8],
    gdtr: (u64, u32),
    idtr: (u64, u32),
    /// The segment, descriptor-table and SYSENTER state must be written
    /// at the next entry (after a reset); the rest is written every time.
    reload: bool,
}

/// One vCPU on VMX.
pub struct VmxVcpu {
    vmcs: u64,
    eptp: u64,
    vpid: u16,
    fpu: Fpu,
    regs: VmxRegs,
    shadow: Shadow,
    /// The VMCS is current on this CPU (within a slice), and launched.
    active: bool,
    launched: bool,
    /// Set when the TLB must be flushed at the next entry.
    flush: bool,
    /// What the next entry injects (interruption-information layout, with
    /// its error code): an exception, or an event whose delivery the last
    /// exit interrupted.
    event_inject: u32,
    event_error: u32,
    /// A vector waiting for the guest's interrupt window.
    pending_interrupt: Option<u8>,
    /// The last entry's injection, for crash reports.
    entered_with: u32,
    /// Interrupt-window exiting is on in the VMCS.
    window_exiting: bool,
    /// MOV-DR exiting is on in the VMCS (DR0-DR3 not loaded).
    dr_exiting: bool,
    tsc_aux: u64,
    debug_regs: DebugRegs,
    /// The unswitched MSRs (UNSWITCHED_MSRS order) and CR2.
    msrs: [u64; 5],
    cr2: u64,
    /// DR6, which the CPU sets on the guest's debug exceptions.
    dr6: u64,
    /// CR8 (the task priority).
    tpr: u64,
    /// The last exit: reason, qualification, and the VM-instruction error
    /// of a failed entry.
    exit: (u32, u64, u64),
}

// SAFETY: the VMCS page is owned by this value; it is current on a CPU
// only within a slice, under the vCPU's lock, and cleared at its end.
unsafe impl Send for VmxVcpu {}

impl VmxVcpu {
    pub fn new(paging: &SecondLevelPaging) -> Result<Self, VirtError> {
        let shared = shared();
        let fpu = Fpu::new()?;
        let vmcs = alloc_page()?;
        // SAFETY: our own fresh page; VMCLEAR initialises it (launch state
        // clear) without making it current.
        unsafe {
            *(vmcs as *mut u32) = shared.revision;
            core::arch::asm!("vmclear [{}]", in(reg) &vmcs, options(nostack));
        }
        let vpid = if shared.vpid {
            (1 + NEXT_VPID.fetch_add(1, Ordering::Relaxed) % 0xfffe) as u16
        } else {
            0
        };
        Ok(Self {
            vmcs,
            eptp: vmcs::ept_pointer(paging.root()),
            vpid,
            fpu,
            regs: VmxRegs::default(),
            shadow: Shadow::default(),
            active: false,
            launched: false,
            flush: true,
            event_inject: 0,
            event_error: 0,
            pending_interrupt: None,
            entered_with: 0,
            window_exiting: false,
            dr_exiting: true,
            tsc_aux: 0,
            debug_regs: DebugRegs::default(),
            msrs: [0; 5],
            cr2: 0,
            dr6: DR6_INIT,
            tpr: 0,
            exit: (0, 0, 0),
        })
    }

    /// First entry of a slice: makes the VMCS current here, writes the
    /// controls and this CPU's host state, and puts back the guest state
    /// VMX does not switch.
    fn activate(&mut self, cpu: usize) {
        let shared = shared();
        // SAFETY: the VMCS was cleared at the end of its last slice (or
        // when created), so it is current nowhere else.
        unsafe { core::arch::asm!("vmptrld [{}]", in(reg) &self.vmcs, options(nostack)) };
        self.active = true;
        self.launched = false;
        vmwrite(field::PIN_BASED_CONTROLS, shared.pin as u64);
        vmwrite(field::SECONDARY_CONTROLS, shared.secondary as u64);
        vmwrite(field::EXIT_CONTROLS, shared.exit as u64);
        vmwrite(field::EXCEPTION_BITMAP, 0);
        vmwrite(field::CR3_TARGET_COUNT, 0);
        vmwrite(field::EXIT_MSR_STORE_COUNT, 0);
        vmwrite(field::EXIT_MSR_LOAD_COUNT, 0);
        vmwrite(field::ENTRY_MSR_LOAD_COUNT, 0);
        vmwrite(field::MSR_BITMAP, shared.msr_bitmap);
        vmwrite(field::EPT_POINTER, self.eptp);
        if shared.vpid {
            vmwrite(field::VPID, self.vpid as u64);
        }
        vmwrite(field::VMCS_LINK_POINTER, u64::MAX);
        // Every CR4 bit is the hypervisor's (a write that changes one
        // exits); of CR0 only those VMX forces.
        let (cr0_fixed0, cr0_fixed1) = shared.cr0_fixed;
        vmwrite(
            field::CR0_GUEST_HOST_MASK,
            cr0_fixed0 | (!cr0_fixed1 & 0xffff_ffff),
        );
        vmwrite(field::CR4_GUEST_HOST_MASK, u64::MAX);
        self.write_host_state();
        for (msr, value) in UNSWITCHED_MSRS.iter().zip(self.msrs) {
            // SAFETY: syscall MSRs and KERNEL_GS_BASE, which the host never
            // uses; the guest's values stay in them for its slice.
            unsafe { Msr::new(*msr).write(value) };
        }
        // SAFETY: the host never takes a page fault or a debug exception
        // in normal operation, so CR2 and DR6 are the guest's to hold for
        // the slice.
        unsafe {
            core::arch::asm!("mov cr2, {}", in(reg) self.cr2, options(nostack));
            core::arch::asm!("mov dr6, {}", in(reg) self.dr6, options(nostack));
        }
        if LOADED_TSC_AUX[cpu].swap(self.tsc_aux, Ordering::Relaxed) != self.tsc_aux {
            // SAFETY: TSC_AUX exists where RDTSCP does; the host ignores it.
            unsafe { Msr::new(MSR_TSC_AUX).write(self.tsc_aux) };
        }
    }

    /// The host state a VM exit loads: this CPU's control registers,
    /// selectors, descriptor tables and the MSRs VMX switches.
    fn write_host_state(&self) {
        let shared = shared();
        let (cs, ss, ds, es, fs, gs, tr): (u16, u16, u16, u16, u16, u16, u16);
        let mut gdtr = [0u8; 10];
        let mut idtr = [0u8; 10];
        let cr3: u64;
        // SAFETY: reading selectors, CR3 and the descriptor-table
        // registers into local buffers has no side effects.
        unsafe {
            core::arch::asm!(
                "mov {0:x}, cs", "mov {1:x}, ss", "mov {2:x}, ds", "mov {3:x}, es",
                "mov {4:x}, fs", "mov {5:x}, gs", "str {6:x}",
                out(reg) cs, out(reg) ss, out(reg) ds, out(reg) es,
                out(reg) fs, out(reg) gs, out(reg) tr,
                options(nomem, nostack)
            );
            core::arch::asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack));
            core::arch::asm!("sgdt [{}]", in(reg) gdtr.as_mut_ptr(), options(nostack));
            core::arch::asm!("sidt [{}]", in(reg) idtr.as_mut_ptr(), options(nostack));
        }
        let base_of = |table: &[u8; 10]| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&table[2..10]);
            u64::from_le_bytes(b)
        };
        let gdt_base = base_of(&gdtr);
        // The TSS descriptor (16 bytes in long mode) gives TR's base.
        let descriptor = gdt_base + (tr & !7) as u64;
        // SAFETY: TR names a valid TSS descriptor in the live GDT.
        let (low, high) = unsafe {
            (
                core::ptr::read_unaligned(descriptor as *const u64),
                core::ptr::read_unaligned((descriptor + 8) as *const u64),
            )
        };
        let tr_base =
            ((low >> 16) & 0xff_ffff) | (((low >> 56) & 0xff) << 24) | ((high & 0xffff_ffff) << 32);
        let selector = |s: u16| s as u64 & !7;
        vmwrite(field::HOST_CS_SELECTOR, selector(cs));
        vmwrite(field::HOST_SS_SELECTOR, selector(ss));
        vmwrite(field::HOST_DS_SELECTOR, selector(ds));
        vmwrite(field::HOST_ES_SELECTOR, selector(es));
        vmwrite(field::HOST_FS_SELECTOR, selector(fs));
        vmwrite(field::HOST_GS_SELECTOR, selector(gs));
        vmwrite(field::HOST_TR_SELECTOR, selector(tr));
        vmwrite(field::HOST_CR0, read_cr0());
        vmwrite(field::HOST_CR3, cr3);
        vmwrite(field::HOST_CR4, read_cr4());
        vmwrite(field::HOST_FS_BASE, rdmsr(MSR_FS_BASE));
        vmwrite(field::HOST_GS_BASE, rdmsr(MSR_GS_BASE));
        vmwrite(field::HOST_TR_BASE, tr_base);
        vmwrite(field::HOST_GDTR_BASE, gdt_base);
        vmwrite(field::HOST_IDTR_BASE, base_of(&idtr));
        vmwrite(field::HOST_SYSENTER_CS, rdmsr(MSR_SYSENTER_CS));
        vmwrite(field::HOST_SYSENTER_ESP, rdmsr(MSR_SYSENTER_ESP));
        vmwrite(field::HOST_SYSENTER_EIP, rdmsr(MSR_SYSENTER_EIP));
        vmwrite(field::HOST_PAT, shared.host_pat);
        vmwrite(field::HOST_EFER, shared.host_efer);
    }

    /// End of a slice: the unswitched state back from the hardware, the
    /// VMCS cleared so that any CPU may load it next.
    fn deactivate(&mut self) {
        if !self.active {
            return;
        }
        for (msr, value) in UNSWITCHED_MSRS.iter().zip(self.msrs.iter_mut()) {
            *value = rdmsr(*msr);
        }
        // SAFETY: reading CR2 and DR6 has no side effects.
        unsafe {
            core::arch::asm!("mov {}, cr2", out(reg) self.cr2, options(nomem, nostack));
            core::arch::asm!("mov {}, dr6", out(reg) self.dr6, options(nomem, nostack));
        }
        // SAFETY: our VMCS, current on this CPU: VMCLEAR writes it back to
        // memory and makes it current nowhere.
        unsafe { core::arch::asm!("vmclear [{}]", in(reg) &self.vmcs, options(nostack)) };
        self.active = false;
        self.launched = false;
    }

    /// Writes the shadow into the current VMCS.
    fn write_guest_state(&mut self) {
        let s = &mut self.shadow;
        if core::mem::take(&mut s.reload) {
            for (reg, seg) in SegmentReg::ALL.iter().zip(s.segments) {
                vmwrite(reg.selector(), seg.selector as u64);
                vmwrite(reg.limit(), seg.limit as u64);
                vmwrite(reg.access_rights(), vmcs::access_rights(seg.attrib) as u64);
                vmwrite(reg.base(), seg.base);
            }
            vmwrite(field::GUEST_GDTR_BASE, s.gdtr.0);
            vmwrite(field::GUEST_GDTR_LIMIT, s.gdtr.1 as u64);
            vmwrite(field::GUEST_IDTR_BASE, s.idtr.0);
            vmwrite(field::GUEST_IDTR_LIMIT, s.idtr.1 as u64);
            vmwrite(field::GUEST_SYSENTER_CS, 0);
            vmwrite(field::GUEST_SYSENTER_ESP, 0);
            vmwrite(field::GUEST_SYSENTER_EIP, 0);
            vmwrite(field::GUEST_DEBUGCTL, 0);
            vmwrite(field::GUEST_ACTIVITY_STATE, 0);
            vmwrite(field::GUEST_PENDING_DEBUG, 0);
        }
        vmwrite(field::GUEST_RIP, s.rip);
        vmwrite(field::GUEST_RSP, s.rsp);
        vmwrite(field::GUEST_RFLAGS, s.rflags);
        vmwrite(field::GUEST_CR0, s.cr0);
        vmwrite(field::CR0_READ_SHADOW, s.cr0_shadow);
        vmwrite(field::GUEST_CR3, s.cr3);
        vmwrite(field::GUEST_CR4, s.cr4);
        vmwrite(field::CR4_READ_SHADOW, s.cr4_shadow);
        vmwrite(field::GUEST_EFER, s.efer);
        vmwrite(field::GUEST_PAT, s.pat);
        vmwrite(field::GUEST_DR7, s.dr7);
        vmwrite(field::GUEST_INTERRUPTIBILITY, s.interruptibility as u64);
        let long_mode = if s.efer & EFER_LMA != 0 {
            entry::IA32E_MODE_GUEST
        } else {
            0
        };
        vmwrite(field::ENTRY_CONTROLS, (shared().entry | long_mode) as u64);
    }

    /// Reads back what the guest can change without an exit.
    fn read_guest_state(&mut self) {
        let s = &mut self.shadow;
        s.rip = vmread(field::GUEST_RIP);
        s.rsp = vmread(field::GUEST_RSP);
        s.rflags = vmread(field::GUEST_RFLAGS);
        s.cr0 = vmread(field::GUEST_CR0);
        s.cr3 = vmread(field::GUEST_CR3);
        s.efer = vmread(field::GUEST_EFER);
        s.pat = vmread(field::GUEST_PAT);
        s.dr7 = vmread(field::GUEST_DR7);
        s.interruptibility = vmread(field::GUEST_INTERRUPTIBILITY) as u32;
        let ss = SegmentReg::Ss;
        let ar = vmread(ss.access_rights()) as u32;
        s.segments[ss as usize].attrib = ((ar & 0xff) | ((ar >> 4) & 0xf00)) as u16;
    }

    /// The guest-visible CR0: the hypervisor's bits from the shadow.
    fn guest_cr0(&self) -> u64 {
        let (fixed0, fixed1) = shared().cr0_fixed;
        let mask = fixed0 | (!fixed1 & 0xffff_ffff);
        (self.shadow.cr0 & !mask) | (self.shadow.cr0_shadow & mask)
    }

    fn set_guest_cr0(&mut self, value: u64) {
        let (fixed0, fixed1) = shared().cr0_fixed;
        self.shadow.cr0_shadow = value;
        self.shadow.cr0 = vmcs::fixed_bits(value, fixed0, fixed1);
    }

    fn set_guest_cr4(&mut self, value: u64) {
        let (fixed0, fixed1) = shared().cr4_fixed;
        self.shadow.cr4_shadow = value;
        self.shadow.cr4 = vmcs::fixed_bits(value, fixed0, fixed1);
    }

    /// MOV to CR0 (or CLTS/LMSW) that touched a bit VMX forces: the
    /// hypervisor does what the CPU would. Returns false for a #GP.
    fn emulate_cr0_write(&mut self, value: u64) -> bool {
        const CR0_RESERVED: u64 = !0xe005_003f;
        if value & CR0_RESERVED != 0 || (value & CR0_PG != 0 && value & CR0_PE == 0) {
            return false;
        }
        let s = &self.shadow;
        if value & CR0_PG != 0 && s.efer & EFER_LME != 0 && s.cr4_shadow & CR4_PAE == 0 {
            return false;
        }
        // Paging turned on or off with LME: long mode follows, as the CPU
        // sets LMA.
        if s.efer & EFER_LME != 0 {
            if value & CR0_PG != 0 {
                self.shadow.efer |= EFER_LMA;
            } else {
                self.shadow.efer &= !EFER_LMA;
            }
        }
        self.set_guest_cr0(value);
        self.flush = true;
        true
    }

    fn gpr(&mut self, n: u8) -> &mut u64 {
        let r = &mut self.regs.regs;
        match n {
            0 => &mut self.regs.rax,
            1 => &mut r.rcx,
            2 => &mut r.rdx,
            3 => &mut r.rbx,
            4 => &mut self.shadow.rsp,
            5 => &mut r.rbp,
            6 => &mut r.rsi,
            7 => &mut r.rdi,
            8 => &mut r.r8,
            9 => &mut r.r9,
            10 => &mut r.r10,
            11 => &mut r.r11,
            12 => &mut r.r12,
            13 => &mut r.r13,
            14 => &mut r.r14,
            _ => &mut r.r15,
        }
    }

    /// Flushes what the TLB may cache for this vCPU: EPT-derived and,
    /// with VPIDs, its linear translations.
    fn invalidate(&self) {
        let shared = shared();
        let ept_descriptor: [u64; 2] = [self.eptp, 0];
        let ept_type: u64 = if shared.invept_single { 1 } else { 2 };
        // SAFETY: INVEPT only drops cached translations; the type is one
        // the CPU reports.
        unsafe {
            core::arch::asm!("invept {}, [{}]", in(reg) ept_type, in(reg) ept_descriptor.as_ptr(), options(nostack))
        };
        if shared.vpid {
            let vpid_descriptor: [u64; 2] = [self.vpid as u64, 0];
            let vpid_type: u64 = if shared.invvpid_single { 1 } else { 2 };
            // SAFETY: as for INVEPT.
            unsafe {
                core::arch::asm!("invvpid {}, [{}]", in(reg) vpid_type, in(reg) vpid_descriptor.as_ptr(), options(nostack))
            };
        }
    }

    /// Queues the pending interrupt for this entry if the guest can take
    /// it, or asks for an exit when it can.
    fn offer_interrupt(&mut self) {
        let mut want_window = false;
        if let Some(vector) = self.pending_interrupt
            && self.event_inject & event::VALID == 0
        {
            let blocked =
                self.shadow.interruptibility & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != 0;
            if self.shadow.rflags & RFLAGS_IF != 0 && !blocked {
                self.event_inject = event::VALID | event::TYPE_EXTERNAL | vector as u32;
                self.pending_interrupt = None;
            } else {
                want_window = true;
            }
        }
        if want_window != self.window_exiting {
            self.window_exiting = want_window;
            self.write_primary_controls();
        }
    }

    fn write_primary_controls(&self) {
        let mut controls = shared().primary;
        if self.window_exiting {
            controls |= primary::INTERRUPT_WINDOW_EXITING;
        }
        if !self.dr_exiting {
            controls &= !primary::MOV_DR_EXITING;
        }
        vmwrite(field::PRIMARY_CONTROLS, controls as u64);
    }

    fn load_debug_registers(&mut self) {
        self.debug_regs.load();
        self.dr_exiting = false;
        self.write_primary_controls();
    }

    fn report(&self) -> alloc::string::String {
        let s = &self.shadow;
        alloc::format!(
            "rsp {:#x} cr2 {:#x} cr0 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x} rflags {:#x}, exit reason {:#x} qualification {:#x} instruction error {}, entered with event {:#x}{}",
            s.rsp,
            self.cr2,
            s.cr0,
            s.cr3,
            s.cr4,
            s.efer,
            s.rflags,
            self.exit.0,
            self.exit.1,
            self.exit.2,
            self.entered_with,
            match VMWRITE_FAILURES.load(Ordering::Relaxed) {
                0 => alloc::string::String::new(),
                n => alloc::format!(", {n} VMWRITEs refused"),
            }
        )
    }
}

impl Drop for VmxVcpu {
    fn drop(&mut self) {
        self.deactivate();
        mm::scrub_and_free(Frame::containing(self.vmcs));
    }
}

impl VirtCpu for VmxVcpu {
    fn reset(&mut self, state: StartState) {
        self.debug_regs.reset();
        self.dr6 = DR6_INIT;
        self.regs = VmxRegs::default();
        let mut s = Shadow {
            dr7: DR7_INIT,
            pat: PAT_RESET,
            rflags: 0x2,
            reload: true,
            gdtr: (0, 0xffff),
            idtr: (0, 0xffff),
            ..Shadow::default()
        };
        // LDTR unusable (null); TR a busy TSS, as SVM's reset leaves it.
        s.segments[SegmentReg::Tr as usize] = Segment {
            selector: 0x18,
            attrib: ATTR_TSS_BUSY,
            limit: 0x67,
            base: 0,
        };
        let (cr0, cr4) = match state {
            StartState::Pvh32 { entry, start_info } => {
                s.segments[SegmentReg::Cs as usize] = flat(0x08, ATTR_CODE32);
                for r in [
                    SegmentReg::Ds,
                    SegmentReg::Es,
                    SegmentReg::Ss,
                    SegmentReg::Fs,
                    SegmentReg::Gs,
                ] {
                    s.segments[r as usize] = flat(0x10, ATTR_DATA32);
                }
                s.rip = entry as u64;
                self.regs.regs.rbx = start_info as u64;
                (0x11, 0) // PE | ET
            }
            StartState::RealMode { segment } => {
                let real = |selector: u16, attrib: u16| Segment {
                    selector,
                    attrib,
                    limit: 0xffff,
                    base: (selector as u64) << 4,
                };
                s.segments[SegmentReg::Cs as usize] = real(segment, ATTR_REAL_CODE);
                for r in [
                    SegmentReg::Ds,
                    SegmentReg::Es,
                    SegmentReg::Ss,
                    SegmentReg::Fs,
                    SegmentReg::Gs,
                ] {
                    s.segments[r as usize] = real(0, ATTR_REAL_DATA);
                }
                let tr = &mut s.segments[SegmentReg::Tr as usize];
                tr.selector = 0;
                tr.limit = 0xffff;
                (0x10, 0) // ET
            }
            StartState::Long64 {
                rip,
                rsp,
                cr0,
                cr3,
                cr4,
                efer,
                regs,
                rax,
                rflags,
            } => {
                s.segments[SegmentReg::Cs as usize] = Segment {
                    selector: 0x08,
                    attrib: ATTR_CODE64,
                    limit: 0xffff_ffff,
                    base: 0,
                };
                for r in [
                    SegmentReg::Ds,
                    SegmentReg::Es,
                    SegmentReg::Ss,
                    SegmentReg::Fs,
                    SegmentReg::Gs,
                ] {
                    s.segments[r as usize] = flat(0x10, ATTR_DATA32);
                }
                s.cr3 = cr3;
                s.efer = efer & GUEST_EFER_ALLOWED;
                s.rflags = (rflags & 0x3f_7fd5) | 0x2;
                s.rip = rip;
                s.rsp = rsp;
                self.regs.rax = rax;
                self.regs.regs = regs;
                (cr0, cr4 & GUEST_CR4_ALLOWED)
            }
        };
        self.shadow = s;
        self.set_guest_cr0(cr0);
        self.set_guest_cr4(cr4);
        self.pending_interrupt = None;
        self.event_inject = 0;
        self.flush = true;
    }

    fn run(&mut self) -> Exit {
        let cpu = crate::arch::percpu::current_index();
        if !self.active {
            self.activate(cpu);
            self.write_primary_controls();
        }
        if !self.debug_regs.loaded() && self.shadow.dr7 & DR7_ENABLES != 0 {
            // A breakpoint armed: its address must be the guest's own.
            self.load_debug_registers();
        }
        self.offer_interrupt();
        self.write_guest_state();
        let mut inject = self.event_inject;
        if inject & event::DELIVER_ERROR_CODE != 0 && self.shadow.cr0 & CR0_PE == 0 {
            // Real mode pushes no error code (the entry would be refused).
            inject &= !event::DELIVER_ERROR_CODE;
        }
        vmwrite(field::ENTRY_INTERRUPTION_INFO, inject as u64);
        vmwrite(field::ENTRY_EXCEPTION_ERROR_CODE, self.event_error as u64);
        self.entered_with = inject;
        self.event_inject = 0;
        vmwrite(field::TSC_OFFSET, crate::arch::time::tsc_offset(cpu));
        if let Some(count) = shared().preemption {
            vmwrite(field::GUEST_PREEMPTION_TIMER, count);
        }
        if core::mem::take(&mut self.flush) {
            self.invalidate();
        }
        let regs: *mut VmxRegs = &mut self.regs;
        // SAFETY: this vCPU's VMCS is current on this CPU with controls,
        // host and guest state written; host interrupts stay disabled
        // (IF=0) across the switch, and external interrupts exit.
        let failed = unsafe { pavise_vmx_world_switch(regs, self.launched as u64) };
        if failed != 0 {
            self.exit = (u32::MAX, 0, vmread(field::INSTRUCTION_ERROR));
            return Exit::InvalidState;
        }
        self.launched = true;
        self.read_guest_state();
        // The guest may have set XCR0 itself where XSETBV does not exit.
        self.fpu.note_hardware_xcr0();
        let reason = vmread(field::EXIT_REASON) as u32;
        let qualification = vmread(field::EXIT_QUALIFICATION);
        self.exit = (reason, qualification, 0);
        // An event whose delivery this exit interrupted goes in again
        // (an exception an exit handler injects replaces it).
        let vectoring = vmread(field::IDT_VECTORING_INFO) as u32;
        self.event_inject = vmcb::reinjection(vectoring as u64) as u32;
        self.event_error = vmread(field::IDT_VECTORING_ERROR_CODE) as u32;
        if reason & EXIT_REASON_ENTRY_FAILURE != 0 {
            self.launched = false;
            return Exit::InvalidState;
        }
        match reason as u16 {
            reason::EXCEPTION_OR_NMI => {
                // Only NMIs exit this way (the exception bitmap is empty):
                // the host's NMI handler takes it, as it would have.
                // SAFETY: vector 2 is the host's NMI handler.
                unsafe { core::arch::asm!("int 2", options(nostack)) };
                Exit::ExternalInterrupt
            }
            // The preemption timer: as a host timer interrupt would, it
            // lets the scheduler look at the clock.
            reason::EXTERNAL_INTERRUPT | reason::PREEMPTION_TIMER => Exit::ExternalInterrupt,
            reason::TRIPLE_FAULT => Exit::Shutdown,
            reason::INTERRUPT_WINDOW => Exit::InterruptWindow,
            reason::CPUID => Exit::Cpuid,
            reason::HLT => Exit::Hlt,
            reason::VMCALL => Exit::Hypercall,
            reason::VMCLEAR..=reason::VMXON | reason::INVEPT | reason::INVVPID | reason::VMFUNC => {
                Exit::VirtInstruction
            }
            reason::CR_ACCESS => {
                let access = CrAccess::decode(qualification);
                let len = vmread(field::EXIT_INSTRUCTION_LENGTH);
                match (access.cr, access.access_type) {
                    (4, CrAccess::MOV_TO_CR) => Exit::Cr4Write,
                    (0, kind) => {
                        let current = self.guest_cr0();
                        let value = match kind {
                            CrAccess::MOV_TO_CR => *self.gpr(access.register),
                            CrAccess::CLTS => current & !(1 << 3),
                            // LMSW sets PE, MP, EM, TS; it never clears PE.
                            _ => (current & !0xe) | (access.lmsw_data as u64 & 0xf),
                        };
                        if self.emulate_cr0_write(value) {
                            self.set_rip(self.shadow.rip + len);
                        } else {
                            self.inject_exception(VECTOR_GP, Some(0));
                        }
                        Exit::Handled
                    }
                    // CR8 is the task priority: kept per vCPU, as SVM's
                    // V_TPR is (the emulated APIC does not use it).
                    (8, CrAccess::MOV_TO_CR) => {
                        self.tpr = *self.gpr(access.register) & 0xf;
                        self.set_rip(self.shadow.rip + len);
                        Exit::Handled
                    }
                    (8, CrAccess::MOV_FROM_CR) => {
                        let tpr = self.tpr;
                        *self.gpr(access.register) = tpr;
                        self.set_rip(self.shadow.rip + len);
                        Exit::Handled
                    }
                    _ => Exit::Unexpected(reason as u64),
                }
            }
            reason::DR_ACCESS => {
                // The guest's first touch of a debug register this slice:
                // give it its own and run the instruction again (MOV-DR
                // exiting is off now, so this recurses once at most).
                self.load_debug_registers();
                self.run()
            }
            reason::IO => {
                let io = IoQualification::decode(qualification);
                let len = vmread(field::EXIT_INSTRUCTION_LENGTH);
                Exit::Io {
                    port: io.port,
                    input: io.input,
                    size: io.size,
                    string: io.string,
                    next_rip: self.shadow.rip + len,
                }
            }
            reason::RDMSR => Exit::Msr { write: false },
            reason::WRMSR => Exit::Msr { write: true },
            reason::EPT_VIOLATION => Exit::NestedPageFault {
                gpa: vmread(field::GUEST_PHYSICAL_ADDRESS),
                error: qualification,
            },
            reason::XSETBV => Exit::Xsetbv,
            reason::INVALID_GUEST_STATE | reason::MSR_LOADING | reason::MACHINE_CHECK => {
                Exit::InvalidState
            }
            other => Exit::Unexpected(other as u64),
        }
    }

    fn regs(&mut self) -> &mut GuestRegs {
        &mut self.regs.regs
    }
    fn rax(&self) -> u64 {
        self.regs.rax
    }
    fn set_rax(&mut self, value: u64) {
        self.regs.rax = value;
    }
    fn rip(&self) -> u64 {
        self.shadow.rip
    }
    fn set_rip(&mut self, value: u64) {
        self.shadow.rip = value;
        self.shadow.interruptibility &= !(BLOCKING_BY_STI | BLOCKING_BY_MOV_SS);
    }
    fn in_interrupt_shadow(&self) -> bool {
        self.shadow.interruptibility & (BLOCKING_BY_STI | BLOCKING_BY_MOV_SS) != 0
    }
    fn paging(&self) -> GuestPaging {
        GuestPaging {
            cr0: self.guest_cr0(),
            cr3: self.shadow.cr3,
            cr4: self.shadow.cr4_shadow,
            efer: self.shadow.efer,
        }
    }
    fn cr2(&self) -> u64 {
        self.cr2
    }
    fn cpl(&self) -> u8 {
        ((self.shadow.segments[SegmentReg::Ss as usize].attrib >> 5) & 3) as u8
    }
    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        let mut info = event::VALID | event::TYPE_HARDWARE_EXCEPTION | vector as u32;
        if let Some(code) = error_code {
            info |= event::DELIVER_ERROR_CODE;
            self.event_error = code;
        }
        let replaced = core::mem::replace(&mut self.event_inject, info);
        // An interrupt whose delivery the exit interrupted is not lost to
        // the exception: it waits for the guest's next interrupt window.
        if let Some(vector) = vmcb::interrupt_vector(replaced as u64)
            && self.pending_interrupt.is_none()
        {
            self.pending_interrupt = Some(vector);
        }
    }
    fn inject_interrupt(&mut self, vector: u8) {
        self.pending_interrupt = Some(vector);
    }
    fn interrupt_queued(&self) -> bool {
        self.pending_interrupt.is_some()
            || vmcb::interrupt_vector(self.event_inject as u64).is_some()
    }
    fn interrupts_enabled(&self) -> bool {
        self.shadow.rflags & RFLAGS_IF != 0
    }
    fn efer(&self) -> u64 {
        self.shadow.efer
    }
    fn set_efer(&mut self, value: u64) -> bool {
        let current = self.shadow.efer;
        let paging = self.shadow.cr0 & CR0_PG != 0;
        if value & !GUEST_EFER_ALLOWED != 0 || (paging && (value ^ current) & EFER_LME != 0) {
            return false;
        }
        self.shadow.efer = (value & !EFER_LMA) | (current & EFER_LMA);
        true
    }
    fn xcr0(&self) -> u64 {
        self.fpu.xcr0()
    }
    fn xcr0_supported(&self) -> u64 {
        guest_state::xcr0_supported()
    }
    fn set_pat(&mut self, value: u64) {
        self.shadow.pat = value;
    }
    fn set_tsc_aux(&mut self, value: u64) {
        self.tsc_aux = value;
        if self.active {
            let cpu = crate::arch::percpu::current_index();
            LOADED_TSC_AUX[cpu].store(value, Ordering::Relaxed);
            // SAFETY: as in `activate`.
            unsafe { Msr::new(MSR_TSC_AUX).write(value) };
        }
    }
    fn set_cr4(&mut self, value: u64) -> bool {
        let mut allowed = GUEST_CR4_ALLOWED;
        if guest_state::xcr0_supported() != 0 {
            allowed |= CR4_OSXSAVE;
        }
        let long_mode = self.shadow.efer & EFER_LMA != 0;
        let valid = value & !allowed == 0
            && !(long_mode && value & CR4_PAE == 0)
            && (long_mode || value & CR4_PCIDE == 0);
        if valid {
            self.set_guest_cr4(value);
            self.flush = true;
        }
        valid
    }
    fn set_xcr0(&mut self, value: u64) -> bool {
        self.fpu.set_xcr0(value)
    }
    fn request_flush(&mut self) {
        self.flush = true;
    }
    fn load_fpu(&mut self) {
        self.fpu.load();
    }
    fn end_slice(&mut self) {
        self.fpu.save();
        if self.debug_regs.save() {
            self.dr_exiting = true;
        }
        self.deactivate();
    }
    fn fault_report(&self) -> alloc::string::String {
        self.report()
    }
    fn exit_info(&self) -> (u64, u64, u64) {
        (self.exit.0 as u64, self.exit.1, self.exit.2)
    }
}
