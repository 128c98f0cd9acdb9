//! Hardware virtualization behind one backend-neutral interface.
//!
//! Everything above `virt/` sees a [`Vcpu`] (through the [`VirtCpu`]
//! trait), a decoded [`Exit`] and a domain's [`SecondLevelPaging`]; the
//! backend — SVM (AMD-V with nested paging) or VMX (VT-x with EPT) — is
//! chosen once at boot from what CPUID reports, and nothing outside this
//! folder names either.

use crate::mm::guest::GuestPaging;

#[cfg(target_os = "none")]
mod guest_state;
#[cfg(target_os = "none")]
mod second_level;
#[cfg(target_os = "none")]
mod svm;
pub mod vmcb;
pub mod vmcs;
#[cfg(target_os = "none")]
mod vmx;

#[cfg(target_os = "none")]
pub use backend::*;
#[cfg(target_os = "none")]
pub use second_level::SecondLevelPaging;

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
    /// The backend emulated what exited (a CR0 write VMX forces it to
    /// take): nothing to do but enter again.
    Handled,
    Xsetbv,
    /// MOV to CR4 (intercepted: the backend does not decode it).
    Cr4Write,
    /// A virtualization instruction the guest may not use (VMRUN, VMXON,
    /// ...): it gets #UD, as from a CPU without the extension.
    VirtInstruction,
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
    /// The guest's CR2: the address of its last page fault.
    fn cr2(&self) -> u64;
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
    /// XSETBV: sets the guest's XCR0 if valid (else false: #GP).
    fn set_xcr0(&mut self, value: u64) -> bool;
    /// Marks the TLB for a flush at the next entry (second-level mappings
    /// changed, or another vCPU ran on this CPU).
    fn request_flush(&mut self);
    /// At the start of a slice on this CPU: loads the vCPU's FPU state.
    fn load_fpu(&mut self);
    /// At the end of a slice: saves the FPU state and takes the debug
    /// registers back, so the next vCPU here sees neither.
    fn end_slice(&mut self);
    /// A crash report's backend details (stack pointer, CR2, the event
    /// being delivered, what the last entry injected).
    fn fault_report(&self) -> alloc::string::String;
    /// The backend's exit code and two qualifiers of the last exit.
    fn exit_info(&self) -> (u64, u64, u64);
}

/// The machine-specific part: which backend, its per-CPU start, its vCPUs.
#[cfg(target_os = "none")]
mod backend {
    use spin::Once;

    use super::{Exit, GuestPaging, GuestRegs, SecondLevelPaging, StartState, VirtCpu, svm, vmx};

    /// The hardware extension guests run on.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Backend {
        /// AMD-V with nested paging.
        Svm,
        /// Intel VT-x with EPT and unrestricted guest.
        Vmx,
    }

    impl Backend {
        pub fn name(self) -> &'static str {
            match self {
                Self::Svm => "AMD-V (SVM + nested paging)",
                Self::Vmx => "Intel VT-x (VMX + EPT)",
            }
        }
    }

    /// Why guests cannot run (one sentence each, for the boot console).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum VirtError {
        /// Neither extension in CPUID.
        NoExtension,
        SvmDisabledByFirmware,
        NoNestedPaging,
        VmxDisabledByFirmware,
        /// VMX lacks EPT, unrestricted guest or a control Pavise needs.
        VmxLacks(&'static str),
        /// VMXON failed (a CR0/CR4 fixed bit, or VMX already on).
        VmxonFailed,
        OutOfMemory,
    }

    impl core::fmt::Display for VirtError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                Self::NoExtension => f.write_str(
                    "this CPU has neither AMD-V (SVM) nor Intel VT-x (VMX); run QEMU with -cpu max (SVM), Bochs with an Intel model (VMX), or a host with either",
                ),
                Self::SvmDisabledByFirmware => {
                    f.write_str("AMD-V is disabled by the firmware (VM_CR.SVMDIS)")
                }
                Self::NoNestedPaging => f.write_str("this CPU's AMD-V lacks nested paging"),
                Self::VmxDisabledByFirmware => f.write_str(
                    "VT-x is locked off by the firmware (IA32_FEATURE_CONTROL); enable it in the firmware set-up",
                ),
                Self::VmxLacks(what) => write!(f, "this CPU's VT-x lacks {what}"),
                Self::VmxonFailed => f.write_str("VMXON failed on this CPU"),
                Self::OutOfMemory => f.write_str("out of memory for virtualization structures"),
            }
        }
    }

    static BACKEND: Once<Result<Backend, VirtError>> = Once::new();

    /// The backend CPUID offers: SVM where it is there, else VMX.
    fn detect() -> Result<Backend, VirtError> {
        let cpuid = |leaf| core::arch::x86_64::__cpuid_count(leaf, 0);
        let max_extended = cpuid(0x8000_0000).eax;
        if max_extended >= 0x8000_0001 && cpuid(0x8000_0001).ecx & (1 << 2) != 0 {
            Ok(Backend::Svm)
        } else if cpuid(1).ecx & (1 << 5) != 0 {
            Ok(Backend::Vmx)
        } else {
            Err(VirtError::NoExtension)
        }
    }

    /// The backend chosen at boot (by the boot CPU's first
    /// [`enable_this_cpu`]).
    pub fn backend() -> Result<Backend, VirtError> {
        *BACKEND.call_once(detect)
    }

    /// Turns the extension on for the calling CPU. Every CPU that runs
    /// guests calls it, the boot CPU first.
    pub fn enable_this_cpu(cpu_index: usize) -> Result<Backend, VirtError> {
        let backend = backend()?;
        super::guest_state::enable_this_cpu();
        match backend {
            Backend::Svm => svm::enable_this_cpu(cpu_index)?,
            Backend::Vmx => vmx::enable_this_cpu(cpu_index)?,
        }
        Ok(backend)
    }

    /// The hypercall instruction to write into a guest's hypercall page.
    pub fn hypercall_instruction() -> [u8; 3] {
        match backend() {
            Ok(Backend::Vmx) => [0x0f, 0x01, 0xc1], // vmcall
            _ => [0x0f, 0x01, 0xd9],                // vmmcall
        }
    }

    /// Measures the bare exit cost: a one-page guest that loops on the
    /// hypercall instruction, resumed at once with no hypercall work,
    /// `iterations` times. Returns the average TSC cycles per round trip.
    pub fn bare_exit_cycles(iterations: u32) -> Result<u64, VirtError> {
        const CODE_GPA: u64 = 0x1000;
        let [a, b, c] = hypercall_instruction();
        // the hypercall instruction; jmp back to it
        let code: [u8; 5] = [a, b, c, 0xeb, 0xfb];
        let mut paging = SecondLevelPaging::new()?;
        let page = crate::mm::frames().alloc().ok_or(VirtError::OutOfMemory)?;
        crate::mm::zero_frame(page);
        // SAFETY: a fresh identity-mapped frame; it becomes the guest's code.
        unsafe {
            core::ptr::copy_nonoverlapping(code.as_ptr(), page.start() as *mut u8, code.len())
        };
        let result = (|| {
            paging.map(CODE_GPA, page)?;
            let mut vcpu = Vcpu::new(&paging)?;
            vcpu.reset(StartState::Pvh32 {
                entry: CODE_GPA as u32,
                start_info: 0,
            });
            let mut exits = 0u32;
            let start = crate::arch::time::rdtsc();
            while exits < iterations {
                match vcpu.run() {
                    Exit::Hypercall => {
                        exits += 1;
                        vcpu.set_rip(vcpu.rip() + 3);
                    }
                    Exit::ExternalInterrupt => {
                        // SAFETY: take the host interrupt, as the scheduler does.
                        unsafe { core::arch::asm!("sti", "nop", "cli") };
                    }
                    other => {
                        log::warn!(
                            "bench guest exited with {other:?} ({})",
                            vcpu.fault_report()
                        );
                        return Err(VirtError::NoExtension);
                    }
                }
            }
            Ok((crate::arch::time::rdtsc() - start) / iterations.max(1) as u64)
        })();
        drop(paging);
        crate::mm::scrub_and_free(page);
        result
    }

    // One per vCPU, used on every exit: a box would only add a pointer
    // chase to save a few hundred bytes.
    #[allow(clippy::large_enum_variant)]
    enum Inner {
        Svm(svm::SvmVcpu),
        Vmx(vmx::VmxVcpu),
    }

    /// A vCPU on the boot-time backend.
    pub struct Vcpu(Inner);

    impl Vcpu {
        pub fn new(paging: &SecondLevelPaging) -> Result<Self, VirtError> {
            Ok(Self(match backend()? {
                Backend::Svm => Inner::Svm(svm::SvmVcpu::new(paging)?),
                Backend::Vmx => Inner::Vmx(vmx::VmxVcpu::new(paging)?),
            }))
        }
    }

    /// Forwards a [`VirtCpu`] method to the backend's vCPU.
    macro_rules! forward {
        ($self:ident, $cpu:ident => $call:expr) => {
            match &$self.0 {
                Inner::Svm($cpu) => $call,
                Inner::Vmx($cpu) => $call,
            }
        };
        (mut $self:ident, $cpu:ident => $call:expr) => {
            match &mut $self.0 {
                Inner::Svm($cpu) => $call,
                Inner::Vmx($cpu) => $call,
            }
        };
    }

    impl VirtCpu for Vcpu {
        fn reset(&mut self, state: StartState) {
            forward!(mut self, c => c.reset(state))
        }
        fn run(&mut self) -> Exit {
            forward!(mut self, c => c.run())
        }
        fn regs(&mut self) -> &mut GuestRegs {
            forward!(mut self, c => c.regs())
        }
        fn rax(&self) -> u64 {
            forward!(self, c => c.rax())
        }
        fn set_rax(&mut self, value: u64) {
            forward!(mut self, c => c.set_rax(value))
        }
        fn rip(&self) -> u64 {
            forward!(self, c => c.rip())
        }
        fn set_rip(&mut self, value: u64) {
            forward!(mut self, c => c.set_rip(value))
        }
        fn in_interrupt_shadow(&self) -> bool {
            forward!(self, c => c.in_interrupt_shadow())
        }
        fn paging(&self) -> GuestPaging {
            forward!(self, c => c.paging())
        }
        fn cr2(&self) -> u64 {
            forward!(self, c => c.cr2())
        }
        fn cpl(&self) -> u8 {
            forward!(self, c => c.cpl())
        }
        fn inject_exception(&mut self, vector: u8, error_code: Option<u32>) {
            forward!(mut self, c => c.inject_exception(vector, error_code))
        }
        fn inject_interrupt(&mut self, vector: u8) {
            forward!(mut self, c => c.inject_interrupt(vector))
        }
        fn interrupt_queued(&self) -> bool {
            forward!(self, c => c.interrupt_queued())
        }
        fn interrupts_enabled(&self) -> bool {
            forward!(self, c => c.interrupts_enabled())
        }
        fn efer(&self) -> u64 {
            forward!(self, c => c.efer())
        }
        fn set_efer(&mut self, value: u64) -> bool {
            forward!(mut self, c => c.set_efer(value))
        }
        fn xcr0(&self) -> u64 {
            forward!(self, c => c.xcr0())
        }
        fn xcr0_supported(&self) -> u64 {
            forward!(self, c => c.xcr0_supported())
        }
        fn set_pat(&mut self, value: u64) {
            forward!(mut self, c => c.set_pat(value))
        }
        fn set_tsc_aux(&mut self, value: u64) {
            forward!(mut self, c => c.set_tsc_aux(value))
        }
        fn set_cr4(&mut self, value: u64) -> bool {
            forward!(mut self, c => c.set_cr4(value))
        }
        fn set_xcr0(&mut self, value: u64) -> bool {
            forward!(mut self, c => c.set_xcr0(value))
        }
        fn request_flush(&mut self) {
            forward!(mut self, c => c.request_flush())
        }
        fn load_fpu(&mut self) {
            forward!(mut self, c => c.load_fpu())
        }
        fn end_slice(&mut self) {
            forward!(mut self, c => c.end_slice())
        }
        fn fault_report(&self) -> alloc::string::String {
            forward!(self, c => c.fault_report())
        }
        fn exit_info(&self) -> (u64, u64, u64) {
            forward!(self, c => c.exit_info())
        }
    }
}
