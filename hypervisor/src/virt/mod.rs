//! Hardware virtualization behind one backend-neutral interface.
//!
//! Everything above `virt/` sees a [`VirtCpu`] and a decoded [`Exit`]; the
//! SVM backend (AMD-V with nested paging) implements them. The VMX backend
//! will sit beside it behind the same trait.

use crate::mm::guest::GuestPaging;

#[cfg(target_os = "none")]
pub mod svm;
pub mod vmcb;

/// General-purpose registers the world switch saves and restores (RAX,
/// RSP and RIP live in the backend's control structure).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRegs {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// Why the guest stopped running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// VMMCALL / VMCALL: a hypercall.
    Hypercall,
    Cpuid,
    Msr {
        write: bool,
    },
    Hlt,
    /// Port I/O: `size` in bytes; `string` for INS/OUTS.
    Io {
        port: u16,
        input: bool,
        size: u8,
        string: bool,
        next_rip: u64,
    },
    NestedPageFault {
        gpa: u64,
        error: u64,
    },
    /// Triple fault or shutdown.
    Shutdown,
    /// A host interrupt arrived (the timer, an IPI).
    ExternalInterrupt,
    /// The guest can now take an injected interrupt.
    InterruptWindow,
    Xsetbv,
    /// MOV to CR4 (intercepted: the backend does not decode it).
    Cr4Write,
    /// The hardware refused the guest state.
    InvalidState,
    Unexpected(u64),
}

/// Initial register state for a vCPU.
#[derive(Clone, Copy, Debug)]
pub enum StartState {
    /// Xen PVH entry: 32-bit protected mode, paging off, `ebx` = start info.
    Pvh32 { entry: u32, start_info: u32 },
    /// Real mode at `segment:0`, as a STARTUP IPI leaves an application
    /// processor (its vector names the page: segment = vector << 8).
    RealMode { segment: u16 },
    /// 64-bit mode with the given control registers (VCPUOP_initialise).
    Long64 {
        rip: u64,
        rsp: u64,
        cr0: u64,
        cr3: u64,
        cr4: u64,
        efer: u64,
        regs: GuestRegs,
        rax: u64,
        rflags: u64,
    },
}

/// One virtual CPU on some backend.
pub trait VirtCpu {
    fn reset(&mut self, state: StartState);
    /// Runs the guest until the next exit.
    fn run(&mut self) -> Exit;
    fn regs(&mut self) -> &mut GuestRegs;
    fn rax(&self) -> u64;
    fn set_rax(&mut self, value: u64);
    fn rip(&self) -> u64;
    /// Moves RIP (past an instruction the hypervisor emulated). That
    /// instruction has completed, so it ends any interrupt shadow, as
    /// Xen's `__update_guest_eip` does.
    fn set_rip(&mut self, value: u64);
    /// The guest is in an interrupt shadow (just after STI or MOV SS): it
    /// takes no interrupt before its next instruction has run.
    fn in_interrupt_shadow(&self) -> bool;
    fn paging(&self) -> GuestPaging;
    /// Guest privilege level (hypercalls are refused outside ring 0).
    fn cpl(&self) -> u8;
    fn inject_exception(&mut self, vector: u8, error_code: Option<u32>);
    /// Queues an external interrupt for delivery when the guest can take it.
    fn inject_interrupt(&mut self, vector: u8);
    /// An interrupt is queued and the guest has not taken it yet.
    fn interrupt_queued(&self) -> bool;
    /// RFLAGS.IF: the guest takes interrupts.
    fn interrupts_enabled(&self) -> bool;
    /// MSR value access for emulated MSRs (EFER, PAT) kept in the backend.
    fn efer(&self) -> u64;
    fn set_efer(&mut self, value: u64) -> bool;
    /// The guest's XCR0, and every XSAVE component the backend switches.
    fn xcr0(&self) -> u64;
    fn xcr0_supported(&self) -> u64;
    /// The guest's PAT (already validated), used by second-level paging.
    fn set_pat(&mut self, value: u64);
    /// What RDTSCP/RDPID return in this vCPU.
    fn set_tsc_aux(&mut self, value: u64);
    /// Sets CR4 if the value is one the guest may have (else false: the
    /// caller raises #GP, as the CPU would for a reserved bit).
    fn set_cr4(&mut self, value: u64) -> bool;
}
