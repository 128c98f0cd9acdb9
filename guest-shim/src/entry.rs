//! The PVH entry: the Xen ELF note naming `pvh_start32`, the 32-bit start
//! (protected mode, paging off, `%ebx` = `hvm_start_info`), identity page
//! tables for the first 4 GiB, long mode, SSE, and the Rust start-up that
//! calls the kernel's `__guest_main` (defined by [`crate::entry!`]).
//!
//! Page tables: one PML4, one PDPT, four page directories of 2 MiB pages,
//! and one page table for the first 2 MiB in 4 KiB pages, so that page 0
//! can be unmapped once the start info is read (QEMU's loader puts its
//! memory map there): null pointers then fault in the guest, and are
//! -EFAULT when passed to a hypercall.

use core::sync::atomic::{AtomicBool, Ordering};

use crate::start_info::{Identity, StartInfo};
use crate::{ShutdownReason, heap, hypercall, println, shutdown, traps};

/// End of the identity-mapped guest-physical range (4 GiB).
pub(crate) const IDENTITY_MAPPED_END: u64 = 4 << 30;
/// Index of the page table for the first 2 MiB among the boot tables.
const FIRST_2M_TABLE: usize = 6;

static NULL_PAGE_MAPPED: AtomicBool = AtomicBool::new(true);

// The GDT (null, 64-bit code 0x08, data 0x10) is shared with the
// secondary-vCPU trampoline (`smp`), hence the global symbols and the
// 10-byte pointer, which 32-bit `lgdt` reads as its first 6 bytes.
core::arch::global_asm!(
    r#"
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .balign 4
    .long pvh_start32

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi
    mov $guest_page_tables, %edi
    xor %eax, %eax
    mov $(7 * 4096 / 4), %ecx
    rep stosl
    mov $guest_page_tables, %ebx
    lea 0x1003(%ebx), %eax
    mov %eax, (%ebx)
    lea 0x2003(%ebx), %eax
    mov %eax, 0x1000(%ebx)
    lea 0x3003(%ebx), %eax
    mov %eax, 0x1008(%ebx)
    lea 0x4003(%ebx), %eax
    mov %eax, 0x1010(%ebx)
    lea 0x5003(%ebx), %eax
    mov %eax, 0x1018(%ebx)
    lea 0x2000(%ebx), %edi
    xor %ecx, %ecx
1:
    mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax
    mov %eax, (%edi, %ecx, 8)
    inc %ecx
    cmp $2048, %ecx
    jne 1b
    lea 0x6003(%ebx), %eax
    mov %eax, 0x2000(%ebx)
    lea 0x6000(%ebx), %edi
    xor %ecx, %ecx
2:
    mov %ecx, %eax
    shl $12, %eax
    or $0x3, %eax
    mov %eax, (%edi, %ecx, 8)
    inc %ecx
    cmp $512, %ecx
    jne 2b
    mov %cr4, %eax
    or $0x620, %eax
    mov %eax, %cr4
    mov %ebx, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    and $0xfffffffb, %eax
    or $0x80000023, %eax
    mov %eax, %cr0
    lgdt guest_gdt_ptr
    ljmp $0x08, $guest_long_mode

    .code64
guest_long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    mov $guest_boot_stack_top, %rsp
    fninit
    mov %esi, %edi
    xor %ebp, %ebp
    call {start}
3:
    hlt
    jmp 3b

    .balign 8
    .global guest_gdt
guest_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF
    .quad 0x00CF93000000FFFF
    .global guest_gdt_ptr
guest_gdt_ptr:
    .short guest_gdt_ptr - guest_gdt - 1
    .quad guest_gdt

    .section .bss.guest_boot, "aw", @nobits
    .balign 4096
    .global guest_page_tables
guest_page_tables:
    .skip 7 * 4096
guest_boot_stack:
    .skip 64 * 1024
guest_boot_stack_top:
"#,
    start = sym rust_start,
    options(att_syntax)
);

unsafe extern "Rust" {
    /// The kernel's main function, named with `guest_shim::entry!`.
    fn __guest_main(info: &StartInfo<'static>) -> !;
}

unsafe extern "C" {
    /// The boot page tables: PML4, PDPT, 4 page directories, the page
    /// table of the first 2 MiB.
    static mut guest_page_tables: [[u64; 512]; 7];
}

/// Whether guest-physical page 0 is still mapped.
pub(crate) fn null_page_mapped() -> bool {
    NULL_PAGE_MAPPED.load(Ordering::SeqCst)
}

/// Unmaps page 0 on every vCPU (only the boot vCPU runs yet).
fn unmap_null_page() {
    NULL_PAGE_MAPPED.store(false, Ordering::SeqCst);
    let tables = &raw mut guest_page_tables;
    // SAFETY: entry 0 of the first 2 MiB's page table maps page 0, which
    // nothing uses (checked by the caller); the TLB entry is flushed.
    unsafe {
        core::ptr::write_volatile(&raw mut (*tables)[FIRST_2M_TABLE][0], 0);
        core::arch::asm!("invlpg [{}]", in(reg) 0u64, options(nostack));
    }
}

/// Long mode on the boot vCPU: the IDT first (so that any fault is
/// reported), the hypercall page (so that reports reach the console), the
/// heap, then the start info and the kernel.
extern "C" fn rust_start(start_info: u32) -> ! {
    traps::init();
    hypercall::init();
    heap::init();
    match StartInfo::parse(&Identity, start_info as u64) {
        Ok(info) => {
            if !info.borrows_below(pv_abi::PAGE_SIZE as u64) {
                unmap_null_page();
            }
            // SAFETY: `entry!` defines this symbol in the kernel crate
            // with exactly this signature.
            unsafe { __guest_main(&info) }
        }
        Err(e) => {
            println!("guest: unusable hvm_start_info at {start_info:#x}: {e:?}");
            shutdown(ShutdownReason::Crash)
        }
    }
}
