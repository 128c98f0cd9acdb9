//! The AMD-V backend: per-CPU enablement, one VMCB per vCPU and the world
//! switch (nested page tables are `second_level`, FPU and debug
//! registers `guest_state`).
//!
//! World switch order: VMSAVE host → load guest GPRs → VMLOAD guest →
//! VMRUN → VMSAVE guest → store guest GPRs → VMLOAD host. VMRUN saves no
//! host GPRs, so the callee-saved ones go on the stack around it. The
//! guest runs with GIF cleared around the switch and host IF set, so a
//! host interrupt causes an INTR exit and is taken right after.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use spin::Once;
use x86_64::registers::model_specific::Msr;

use super::guest_state::{self, DR6_INIT, DR7_ENABLES, DR7_INIT, DebugRegs, Fpu};
use super::vmcb::{self, Intercept3, Intercept4, Segment, Vmcb, exit_code};
use super::{Exit, GuestRegs, SecondLevelPaging, StartState, VirtCpu, VirtError};
use crate::cmdline::MAX_CPUS;
use crate::mm::frame::{FRAME_SIZE, Frame};
use crate::mm::guest::GuestPaging;
use crate::mm::{self};

const MSR_EFER: u32 = 0xc000_0080;
const MSR_VM_CR: u32 = 0xc001_0114;
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;
const MSR_TSC_AUX: u32 = 0xc000_0103;
const EFER_SVME: u64 = 1 << 12;
const VM_CR_SVMDIS: u64 = 1 << 4;

/// Guest EFER bits a guest may set: SCE, LME, LMA, NXE.
const GUEST_EFER_ALLOWED: u64 = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11);

/// CR4 bits a guest may set: VME, PVI, TSD, DE, PSE, PAE, MCE, PGE, PCE,
/// OSFXSR, OSXMMEXCPT, UMIP, FSGSBASE, PCIDE, SMEP, SMAP (OSXSAVE where
/// XSAVE is switched). Not VMXE/SMXE (no VMX here), LA57, PKE, CET, PKS
/// (not offered in CPUID).
const GUEST_CR4_ALLOWED: u64 = 0x7ff | (1 << 11) | (1 << 16) | (1 << 17) | (1 << 20) | (1 << 21);
const CR4_PAE: u64 = 1 << 5;
const CR4_PCIDE: u64 = 1 << 17;
const CR4_OSXSAVE: u64 = 1 << 18;
const EFER_LMA: u64 = 1 << 10;

/// MSRs swapped by VMLOAD/VMSAVE or kept in the VMCB: safe to pass through.
const PASSTHROUGH_MSRS: [u32; 10] = [
    0x174,
    0x175,
    0x176, // SYSENTER_CS/ESP/EIP
    0xc000_0081,
    0xc000_0082,
    0xc000_0083,
    0xc000_0084, // STAR, LSTAR, CSTAR, SFMASK
    0xc000_0100,
    0xc000_0101,
    0xc000_0102, // FS/GS/KERNEL_GS base
];

const IOPM_PAGES: usize = 3;
const MSRPM_PAGES: usize = 2;

struct Shared {
    iopm: u64,
    msrpm: u64,
    asids: u32,
}

static SHARED: Once<Result<Shared, VirtError>> = Once::new();
/// Per CPU: host save area used with VMSAVE/VMLOAD.
static HOST_SAVE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static NEXT_ASID: AtomicU32 = AtomicU32::new(0);
/// Per CPU: the value last written to the hardware TSC_AUX.
static LOADED_TSC_AUX: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

fn cpuid(leaf: u32, sub: u32) -> core::arch::x86_64::CpuidResult {
    core::arch::x86_64::__cpuid_count(leaf, sub)
}

fn alloc_zeroed(pages: usize, fill: u8) -> Result<u64, VirtError> {
    let frame = mm::frames()
        .alloc_contiguous(pages, 1)
        .ok_or(VirtError::OutOfMemory)?;
    // SAFETY: fresh identity-mapped frames owned by the caller from now on.
    unsafe { core::ptr::write_bytes(frame.start() as *mut u8, fill, pages * FRAME_SIZE as usize) };
    Ok(frame.start())
}

fn build_shared() -> Result<Shared, VirtError> {
    if cpuid(0x8000_0001, 0).ecx & (1 << 2) == 0 {
        return Err(VirtError::NoExtension);
    }
    let features = cpuid(0x8000_000a, 0);
    if features.edx & 1 == 0 {
        return Err(VirtError::NoNestedPaging);
    }
    let iopm = alloc_zeroed(IOPM_PAGES, 0xff)?;
    let msrpm = alloc_zeroed(MSRPM_PAGES, 0xff)?;
    for msr in PASSTHROUGH_MSRS {
        let (base, first) = match msr {
            0..=0x1fff => (0x0, 0),
            0xc000_0000..=0xc000_1fff => (0x800, 0xc000_0000),
            _ => (0x1000, 0xc001_0000),
        };
        let bit = (msr - first) as u64 * 2;
        let byte = msrpm + base + bit / 8;
        // SAFETY: inside the MSRPM pages just allocated.
        unsafe { *(byte as *mut u8) &= !(0b11 << (bit % 8)) };
    }
    Ok(Shared {
        iopm,
        msrpm,
        asids: features.ebx.max(2),
    })
}

/// Enables SVM on the calling CPU. Every CPU that runs guests calls it.
pub fn enable_this_cpu(cpu_index: usize) -> Result<(), VirtError> {
    SHARED.call_once(build_shared).as_ref().map_err(|e| *e)?;
    // SAFETY: VM_CR exists when CPUID reports SVM (checked in build_shared).
    if unsafe { Msr::new(MSR_VM_CR).read() } & VM_CR_SVMDIS != 0 {
        return Err(VirtError::SvmDisabledByFirmware);
    }
    let hsave = alloc_zeroed(1, 0)?;
    let host_save = alloc_zeroed(1, 0)?;
    // SAFETY: setting EFER.SVME and the host save area is the documented
    // way to enable SVM; the page belongs to this CPU for ever.
    unsafe {
        let mut efer = Msr::new(MSR_EFER);
        let value = efer.read();
        efer.write(value | EFER_SVME);
        Msr::new(MSR_VM_HSAVE_PA).write(hsave);
    }
    HOST_SAVE[cpu_index].store(host_save, Ordering::SeqCst);
    Ok(())
}

fn shared() -> &'static Shared {
    match SHARED.get() {
        Some(Ok(s)) => s,
        _ => panic!("SVM used before enable_this_cpu succeeded"),
    }
}

core::arch::global_asm!(
    r#"
    .section .text.svm, "ax"
    .global pavise_svm_world_switch
pavise_svm_world_switch:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdi
    push %rsi
    push %rdx
    mov %rdx, %rax
    vmsave %rax
    mov 0(%rdi), %rbx
    mov 8(%rdi), %rcx
    mov 16(%rdi), %rdx
    mov 24(%rdi), %rsi
    mov 40(%rdi), %rbp
    mov 48(%rdi), %r8
    mov 56(%rdi), %r9
    mov 64(%rdi), %r10
    mov 72(%rdi), %r11
    mov 80(%rdi), %r12
    mov 88(%rdi), %r13
    mov 96(%rdi), %r14
    mov 104(%rdi), %r15
    mov 8(%rsp), %rax
    mov 32(%rdi), %rdi
    vmload %rax
    vmrun %rax
    // Until the host's vmload below, TR, FS, GS and the syscall MSRs are
    // the guest's: nothing may interrupt the host here. GIF is 0, and IF
    // goes off at once too, so no emulation of GIF can let an interrupt
    // in; the host state comes back before anything else.
    cli
    vmsave %rax
    xchg %rax, 0(%rsp)
    vmload %rax
    xchg %rax, 0(%rsp)
    push %rdi
    mov 24(%rsp), %rdi
    mov %rbx, 0(%rdi)
    mov %rcx, 8(%rdi)
    mov %rdx, 16(%rdi)
    mov %rsi, 24(%rdi)
    mov %rbp, 40(%rdi)
    mov %r8, 48(%rdi)
    mov %r9, 56(%rdi)
    mov %r10, 64(%rdi)
    mov %r11, 72(%rdi)
    mov %r12, 80(%rdi)
    mov %r13, 88(%rdi)
    mov %r14, 96(%rdi)
    mov %r15, 104(%rdi)
    pop %rax
    mov %rax, 32(%rdi)
    add $24, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret
"#,
    options(att_syntax)
);

unsafe extern "C" {
    fn pavise_svm_world_switch(regs: *mut GuestRegs, vmcb_pa: u64, host_save_pa: u64);
}

/// One vCPU on SVM.
pub struct SvmVcpu {
    vmcb: u64,
    fpu: Fpu,
    regs: GuestRegs,
    /// Set when the TLB must be flushed at the next VMRUN.
    flush: bool,
    /// A vector waiting for the guest's interrupt window.
    pending_interrupt: Option<u8>,
    /// The injection of the last entry (`event_inject`, V_IRQ vector), for
    /// crash reports.
    entered_with: (u64, Option<u8>),
    /// The guest's TSC_AUX; VMRUN does not switch it, so the run loop puts
    /// it in the hardware MSR (the host never uses TSC_AUX).
    tsc_aux: u64,
    /// DR0-DR3 (DR6 and DR7 are in the VMCB).
    debug_regs: DebugRegs,
    /// Where the guest was last seen in an interrupt shadow (the `rip`
    /// of the instruction after its `sti` or `mov ss`). QEMU's VMRUN does
    /// not load the VMCB's shadow and its #VMEXIT saves only its own: an
    /// exit before the guest has run that instruction reports no shadow,
    /// though the guest is still in it. Until `rip` moves, it is.
    shadow_at: Option<u64>,
}

// SAFETY: the VMCB page is owned by this value; it moves between
// CPUs only while not running (under the vCPU's lock).
unsafe impl Send for SvmVcpu {}

const ATTR_CODE32: u16 = 0xc9b;
const ATTR_DATA32: u16 = 0xc93;
const ATTR_CODE64: u16 = 0xa9b;
const ATTR_TSS_BUSY: u16 = 0x8b;
const ATTR_LDT: u16 = 0x82;
const ATTR_REAL_CODE: u16 = 0x9b;
const ATTR_REAL_DATA: u16 = 0x93;

fn flat(selector: u16, attrib: u16) -> Segment {
    Segment {
        selector,
        attrib,
        limit: 0xffff_ffff,
        base: 0,
    }
}

impl SvmVcpu {
    pub fn new(npt: &SecondLevelPaging) -> Result<Self, VirtError> {
        let shared = shared();
        let fpu = Fpu::new()?;
        let vmcb = alloc_zeroed(1, 0)?;
        let mut vcpu = Self {
            vmcb,
            fpu,
            regs: GuestRegs::default(),
            flush: true,
            pending_interrupt: None,
            shadow_at: None,
            entered_with: (0, None),
            tsc_aux: 0,
            debug_regs: DebugRegs::default(),
        };
        let asid = 1 + NEXT_ASID.fetch_add(1, Ordering::Relaxed) % (shared.asids - 1);
        let c = &mut vcpu.vmcb_mut().control;
        c.intercept3 = (Intercept3::INTR
            | Intercept3::NMI
            | Intercept3::SMI
            | Intercept3::INIT
            | Intercept3::CPUID
            | Intercept3::INVD
            | Intercept3::HLT
            | Intercept3::INVLPGA
            | Intercept3::IOIO_PROT
            | Intercept3::MSR_PROT
            | Intercept3::TASK_SWITCH
            | Intercept3::SHUTDOWN)
            .bits();
        // ICEBP is not intercepted: the CPU raises its #DB through the
        // guest's IDT, as a guest expects (intercepted, it was an exit
        // nothing handled, and the domain ended).
        c.intercept4 = (Intercept4::VMRUN
            | Intercept4::VMMCALL
            | Intercept4::VMLOAD
            | Intercept4::VMSAVE
            | Intercept4::STGI
            | Intercept4::CLGI
            | Intercept4::SKINIT
            | Intercept4::MONITOR
            | Intercept4::MWAIT
            | Intercept4::XSETBV)
            .bits();
        // CR4 writes are checked here: a bit this CPU lacks (VMXE on AMD,
        // say) must be a #GP in the guest, not a state VMRUN refuses.
        c.intercept_cr = vmcb::INTERCEPT_CR4_WRITE;
        // DR0-DR3 stay with the CPU across VMRUN: they are loaded at the
        // guest's first touch (or when its DR7 enables a breakpoint), as
        // Xen does, and saved when its slice ends.
        c.intercept_dr = vmcb::INTERCEPT_DR0_3;
        c.iopm_base_pa = shared.iopm;
        c.msrpm_base_pa = shared.msrpm;
        c.guest_asid = asid;
        c.vintr = vmcb::V_INTR_MASKING;
        c.np_control = vmcb::NP_ENABLE;
        c.n_cr3 = npt.root();
        Ok(vcpu)
    }

    fn vmcb_ref(&self) -> &Vmcb {
        // SAFETY: `vmcb` is this vCPU's own zeroed, identity-mapped page.
        unsafe { &*(self.vmcb as *const Vmcb) }
    }

    fn vmcb_mut(&mut self) -> &mut Vmcb {
        // SAFETY: as in `vmcb_ref`; `&mut self` makes the access unique.
        unsafe { &mut *(self.vmcb as *mut Vmcb) }
    }

    /// What a crash report adds for this backend: the stack pointer, CR2,
    /// the event being delivered when the exit came (`exit_int_info`) and
    /// what the last entry injected (`event_inject`, the V_IRQ vector).
    fn report(&self) -> alloc::string::String {
        let (s, c) = (&self.vmcb_ref().save, &self.vmcb_ref().control);
        alloc::format!(
            "rsp {:#x} cr2 {:#x} cr3 {:#x} rflags {:#x}, delivering {:#x}, entered with event {:#x} virq {:?}",
            s.rsp,
            s.cr2,
            s.cr3,
            s.rflags,
            c.exit_int_info,
            self.entered_with.0,
            self.entered_with.1
        )
    }

    /// Puts this vCPU's DR0-DR3 in the hardware and lets the guest reach
    /// them directly until its slice ends.
    fn load_debug_registers(&mut self) {
        self.debug_regs.load();
        self.vmcb_mut().control.intercept_dr &= !vmcb::INTERCEPT_DR0_3;
    }
}

impl Drop for SvmVcpu {
    fn drop(&mut self) {
        mm::scrub_and_free(Frame::containing(self.vmcb));
    }
}

impl VirtCpu for SvmVcpu {
    fn reset(&mut self, state: StartState) {
        self.debug_regs.reset();
        let s = &mut self.vmcb_mut().save;
        s.ldtr = Segment {
            selector: 0,
            attrib: ATTR_LDT,
            limit: 0xffff,
            base: 0,
        };
        s.gdtr = Segment {
            selector: 0,
            attrib: 0,
            limit: 0xffff,
            base: 0,
        };
        s.idtr = Segment {
            selector: 0,
            attrib: 0,
            limit: 0xffff,
            base: 0,
        };
        s.tr = Segment {
            selector: 0x18,
            attrib: ATTR_TSS_BUSY,
            limit: 0x67,
            base: 0,
        };
        s.dr6 = DR6_INIT;
        s.dr7 = DR7_INIT;
        s.g_pat = 0x0007_0406_0007_0406;
        s.cpl = 0;
        self.regs = GuestRegs::default();
        match state {
            StartState::Pvh32 { entry, start_info } => {
                let s = &mut self.vmcb_mut().save;
                s.cs = flat(0x08, ATTR_CODE32);
                for seg in [&mut s.ds, &mut s.es, &mut s.ss, &mut s.fs, &mut s.gs] {
                    *seg = flat(0x10, ATTR_DATA32);
                }
                s.cr0 = 0x11; // PE | ET
                s.cr3 = 0;
                s.cr4 = 0;
                s.efer = EFER_SVME;
                s.rflags = 0x2;
                s.rip = entry as u64;
                s.rsp = 0;
                s.rax = 0;
                self.regs.rbx = start_info as u64;
            }
            StartState::RealMode { segment } => {
                let s = &mut self.vmcb_mut().save;
                let real = |selector: u16, attrib: u16| Segment {
                    selector,
                    attrib,
                    limit: 0xffff,
                    base: (selector as u64) << 4,
                };
                s.cs = real(segment, ATTR_REAL_CODE);
                for seg in [&mut s.ds, &mut s.es, &mut s.ss, &mut s.fs, &mut s.gs] {
                    *seg = real(0, ATTR_REAL_DATA);
                }
                s.tr.selector = 0;
                s.tr.limit = 0xffff;
                s.cr0 = 0x10; // ET
                s.cr3 = 0;
                s.cr4 = 0;
                s.efer = EFER_SVME;
                s.rflags = 0x2;
                s.rip = 0;
                s.rsp = 0;
                s.rax = 0;
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
                let s = &mut self.vmcb_mut().save;
                s.cs = Segment {
                    selector: 0x08,
                    attrib: ATTR_CODE64,
                    limit: 0xffff_ffff,
                    base: 0,
                };
                for seg in [&mut s.ds, &mut s.es, &mut s.ss, &mut s.fs, &mut s.gs] {
                    *seg = flat(0x10, ATTR_DATA32);
                }
                s.cr0 = cr0;
                s.cr3 = cr3;
                s.cr4 = cr4;
                s.efer = (efer & GUEST_EFER_ALLOWED) | EFER_SVME;
                s.rflags = (rflags & 0x3f_7fd5) | 0x2;
                s.rip = rip;
                s.rsp = rsp;
                s.rax = rax;
                self.regs = regs;
            }
        }
        self.pending_interrupt = None;
        self.shadow_at = None;
        let c = &mut self.vmcb_mut().control;
        c.event_inject = 0;
        c.vintr &= !vmcb::V_IRQ;
        self.flush = true;
    }

    fn run(&mut self) -> Exit {
        let cpu = crate::arch::percpu::current_index();
        let host_save = HOST_SAVE[cpu].load(Ordering::Relaxed);
        if LOADED_TSC_AUX[cpu].swap(self.tsc_aux, Ordering::Relaxed) != self.tsc_aux {
            // SAFETY: TSC_AUX exists where RDTSCP does (the guest only
            // writes it when CPUID offers RDTSCP/RDPID); the host ignores it.
            unsafe { Msr::new(MSR_TSC_AUX).write(self.tsc_aux) };
        }
        if !self.debug_regs.loaded() && self.vmcb_ref().save.dr7 & DR7_ENABLES != 0 {
            // A breakpoint armed: its address must be the guest's own.
            self.load_debug_registers();
        }
        if let Some(vector) = self.pending_interrupt {
            let in_shadow = self.in_interrupt_shadow();
            let c = &mut self.vmcb_mut().control;
            let fields = vmcb::V_IRQ
                | (0xf << vmcb::V_INTR_PRIO_SHIFT)
                | (0xff << vmcb::V_INTR_VECTOR_SHIFT);
            if in_shadow {
                // Not offered in an interrupt shadow: QEMU's VMRUN does
                // not load the VMCB's shadow and would deliver V_IRQ at
                // once — between a guest's `sti` and `hlt`, so the guest's
                // handler returns to the `hlt` and the guest sleeps
                // through the event it has just taken (the "lost timer").
                // The shadow lasts one instruction; the scheduler asks
                // for an exit right after it.
                c.vintr &= !vmcb::V_IRQ;
            } else if c.event_inject & vmcb::EVENT_VALID == 0 {
                c.vintr = (c.vintr & !fields)
                    | vmcb::V_IRQ
                    | (0xf << vmcb::V_INTR_PRIO_SHIFT)
                    | ((vector as u64) << vmcb::V_INTR_VECTOR_SHIFT);
            }
        }
        {
            let c = &self.vmcb_ref().control;
            let virq = (c.vintr & vmcb::V_IRQ != 0)
                .then_some((c.vintr >> vmcb::V_INTR_VECTOR_SHIFT) as u8);
            self.entered_with = (c.event_inject, virq);
        }
        // The guest reads the TSC on the boot CPU's time line, whichever
        // CPU it runs on (its pvclock is written on that line too).
        self.vmcb_mut().control.tsc_offset = crate::arch::time::tsc_offset(cpu);
        let flush = core::mem::take(&mut self.flush);
        self.vmcb_mut().control.tlb_control = if flush { vmcb::TLB_FLUSH_ALL } else { 0 };
        let regs: *mut GuestRegs = &mut self.regs;
        // SAFETY: the VMCB is valid (built by `new`/`reset`), SVM is enabled
        // on this CPU with its host save area; interrupts stay held by
        // GIF=0 until after the world switch, then IF is cleared again
        // before GIF is set so the host decides when to take them.
        unsafe {
            core::arch::asm!("clgi", "sti");
            pavise_svm_world_switch(regs, self.vmcb, host_save);
            core::arch::asm!("cli", "stgi");
        }
        // Not every implementation intercepts XSETBV (QEMU's does not):
        // the guest's XCR0 is whatever the hardware holds now.
        self.fpu.note_hardware_xcr0();
        let rip = self.vmcb_ref().save.rip;
        if self.vmcb_ref().control.interrupt_shadow & vmcb::INTERRUPT_SHADOW != 0 {
            self.shadow_at = Some(rip);
        } else if self.shadow_at != Some(rip) {
            self.shadow_at = None;
        }
        let c = &mut self.vmcb_mut().control;
        // An event whose delivery this exit interrupted goes in again
        // (an exception an exit handler injects replaces it).
        c.event_inject = vmcb::reinjection(c.exit_int_info);
        let (code, info1, info2, vintr) = (c.exit_code, c.exit_info1, c.exit_info2, c.vintr);
        if self.pending_interrupt.is_some()
            && self.entered_with.1.is_some()
            && vintr & vmcb::V_IRQ == 0
        {
            // The guest took the virtual interrupt. (Only if it was offered:
            // an entry that injected another event first did not raise
            // V_IRQ, and its vector is still to come — dropping it would
            // leave evtchn_upcall_pending set with no upcall, and the
            // guest waiting for ever.)
            self.pending_interrupt = None;
        }
        let dr0_3 = |first: u64| (first..first + 4).contains(&code);
        if dr0_3(exit_code::DR0_READ) || dr0_3(exit_code::DR0_WRITE) {
            // The guest's first touch of DR0-DR3 this slice: give it its
            // own and run the instruction again. The intercept is off now,
            // so this recurses once at most.
            self.load_debug_registers();
            return self.run();
        }
        match code {
            exit_code::VMMCALL => Exit::Hypercall,
            exit_code::CPUID => Exit::Cpuid,
            exit_code::MSR => Exit::Msr {
                write: info1 & 1 != 0,
            },
            exit_code::HLT => Exit::Hlt,
            exit_code::IOIO => Exit::Io {
                port: (info1 >> 16) as u16,
                input: info1 & 1 != 0,
                size: match (info1 >> 4) & 0b111 {
                    0b001 => 1,
                    0b010 => 2,
                    _ => 4,
                },
                string: info1 & (1 << 2) != 0,
                next_rip: info2,
            },
            exit_code::NPF => Exit::NestedPageFault {
                gpa: info2,
                error: info1,
            },
            exit_code::SHUTDOWN => Exit::Shutdown,
            exit_code::INTR | exit_code::NMI => Exit::ExternalInterrupt,
            exit_code::VINTR => Exit::InterruptWindow,
            exit_code::XSETBV => Exit::Xsetbv,
            exit_code::CR4_WRITE => Exit::Cr4Write,
            exit_code::INVALID => Exit::InvalidState,
            exit_code::VMRUN..=exit_code::SKINIT => Exit::VirtInstruction,
            other => Exit::Unexpected(other),
        }
    }

    fn regs(&mut self) -> &mut GuestRegs {
        &mut self.regs
    }
    fn rax(&self) -> u64 {
        self.vmcb_ref().save.rax
    }
    fn set_rax(&mut self, value: u64) {
        self.vmcb_mut().save.rax = value;
    }
    fn rip(&self) -> u64 {
        self.vmcb_ref().save.rip
    }
    fn set_rip(&mut self, value: u64) {
        let vmcb = self.vmcb_mut();
        vmcb.save.rip = value;
        vmcb.control.interrupt_shadow &= !vmcb::INTERRUPT_SHADOW;
        self.shadow_at = None;
    }
    fn in_interrupt_shadow(&self) -> bool {
        let vmcb = self.vmcb_ref();
        vmcb.control.interrupt_shadow & vmcb::INTERRUPT_SHADOW != 0
            || self.shadow_at == Some(vmcb.save.rip)
    }
    fn paging(&self) -> GuestPaging {
        let s = &self.vmcb_ref().save;
        GuestPaging {
            cr0: s.cr0,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer,
        }
    }
    fn cr2(&self) -> u64 {
        self.vmcb_ref().save.cr2
    }
    fn cpl(&self) -> u8 {
        self.vmcb_ref().save.cpl
    }
    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
        let mut event = vmcb::EVENT_VALID | vmcb::EVENT_TYPE_EXCEPTION | vector as u64;
        if let Some(code) = error_code {
            event |= vmcb::EVENT_ERROR_VALID | (code as u64) << 32;
        }
        let replaced = core::mem::replace(&mut self.vmcb_mut().control.event_inject, event);
        // An interrupt whose delivery the exit interrupted is not lost to
        // the exception: it waits for the guest's next interrupt window.
        if let Some(vector) = vmcb::interrupt_vector(replaced)
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
    }
    fn interrupts_enabled(&self) -> bool {
        self.vmcb_ref().save.rflags & (1 << 9) != 0
    }
    fn efer(&self) -> u64 {
        self.vmcb_ref().save.efer & !EFER_SVME
    }
    fn set_efer(&mut self, value: u64) -> bool {
        const EFER_LME: u64 = 1 << 8;
        const CR0_PG: u64 = 1 << 31;
        let s = &self.vmcb_ref().save;
        let (current, paging) = (s.efer, s.cr0 & CR0_PG != 0);
        // As the CPU does: reserved bits and toggling LME with paging on
        // are #GP; LMA is the CPU's own (a written LMA is ignored).
        if value & !GUEST_EFER_ALLOWED != 0 || (paging && (value ^ current) & EFER_LME != 0) {
            return false;
        }
        let value = (value & !EFER_LMA) | (current & EFER_LMA);
        self.vmcb_mut().save.efer = value | EFER_SVME;
        true
    }
    fn xcr0(&self) -> u64 {
        self.fpu.xcr0()
    }
    fn xcr0_supported(&self) -> u64 {
        guest_state::xcr0_supported()
    }
    fn set_pat(&mut self, value: u64) {
        self.vmcb_mut().save.g_pat = value;
    }
    fn set_tsc_aux(&mut self, value: u64) {
        self.tsc_aux = value;
    }
    fn set_cr4(&mut self, value: u64) -> bool {
        let mut allowed = GUEST_CR4_ALLOWED;
        if guest_state::xcr0_supported() != 0 {
            allowed |= CR4_OSXSAVE;
        }
        let long_mode = self.vmcb_ref().save.efer & EFER_LMA != 0;
        let valid = value & !allowed == 0
            && !(long_mode && value & CR4_PAE == 0)
            && (long_mode || value & CR4_PCIDE == 0);
        if valid {
            self.vmcb_mut().save.cr4 = value;
            // PGE, PCIDE and paging-mode bits change what the TLB may hold.
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
            self.vmcb_mut().control.intercept_dr |= vmcb::INTERCEPT_DR0_3;
        }
    }
    fn fault_report(&self) -> alloc::string::String {
        self.report()
    }
    fn exit_info(&self) -> (u64, u64, u64) {
        let c = &self.vmcb_ref().control;
        (c.exit_code, c.exit_info1, c.exit_info2)
    }
}
