//! Secondary vCPUs: [`start_secondary_vcpu`] starts one in 64-bit mode
//! (VCPUOP_initialise with a 64-bit `vcpu_hvm_context`, then VCPUOP_up)
//! on the boot vCPU's page tables and control registers, so SSE is on
//! there too. It begins in a small trampoline that loads the shim's GDT
//! (the hypervisor's flat segments have no GDT behind them, and the IDT's
//! gates name the shim's code selector) and IDT, then calls the entry.

use alloc::boxed::Box;
use alloc::vec;

use pv_abi::hypercall::{VcpuHvmContext, VcpuHvmX86_64};

use crate::hypercall::{self, Errno, Result};

/// Smallest stack accepted for a secondary vCPU.
pub const MIN_STACK: usize = 4096;

// Entered with rsp pointing at the entry function's address (see
// `start_secondary_vcpu`); interrupts off.
core::arch::global_asm!(
    r#"
    .section .text.guest_secondary, "ax"
    .global guest_secondary_entry
guest_secondary_entry:
    lgdt guest_gdt_ptr(%rip)
    lea 1f(%rip), %rax
    pushq $0x08
    push %rax
    lretq
1:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    fninit
    pop %rdi
    and $-16, %rsp
    xor %ebp, %ebp
    call {start}
2:
    hlt
    jmp 2b
"#,
    start = sym secondary_start,
    options(att_syntax)
);

unsafe extern "C" {
    static guest_secondary_entry: u8;
}

extern "C" fn secondary_start(entry: extern "C" fn() -> !) -> ! {
    crate::traps::load();
    entry()
}

/// A zeroed stack of `size` bytes from the heap, never freed (a vCPU
/// keeps its stack for good).
pub fn alloc_stack(size: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; size].into_boxed_slice())
}

/// Brings up vCPU `vcpu` running `entry` on `stack`, with the boot vCPU's
/// CR0, CR3, CR4 and EFER. `EINVAL` for a stack under [`MIN_STACK`];
/// otherwise the hypervisor's answer to VCPUOP_initialise or VCPUOP_up.
pub fn start_secondary_vcpu(
    vcpu: u32,
    entry: extern "C" fn() -> !,
    stack: &'static mut [u8],
) -> Result<()> {
    if stack.len() < MIN_STACK {
        return Err(Errno::EINVAL);
    }
    // The entry's address goes in the top 16-byte-aligned slot; the
    // trampoline pops it.
    let end = stack.as_ptr() as u64 + stack.len() as u64;
    let slot = (end & !0xf) - 16;
    let offset = (slot - stack.as_ptr() as u64) as usize;
    stack[offset..offset + 8].copy_from_slice(&(entry as usize as u64).to_le_bytes());

    let (cr0, cr3, cr4): (u64, u64, u64);
    // SAFETY: reading control registers in ring 0 has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        core::arch::asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack));
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
    }
    let (lo, hi): (u32, u32);
    // SAFETY: reading EFER (MSR 0xC0000080) has no side effects.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") 0xc000_0080u32, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    let regs = VcpuHvmX86_64 {
        rip: &raw const guest_secondary_entry as u64,
        rsp: slot,
        // Bit 1 is always set; IF stays clear.
        rflags: 0x2,
        cr0,
        cr3,
        cr4,
        efer: (hi as u64) << 32 | lo as u64,
        ..Default::default()
    };
    hypercall::vcpu_initialise(vcpu, &VcpuHvmContext::new_64(&regs))?;
    hypercall::vcpu_up(vcpu)?;
    Ok(())
}
