//! The hypervisor binary: multiboot2 header, Xen PVH note and the 32-bit
//! bootstrap that reaches long mode and calls [`hypervisor::boot::entry`].
//!
//! Both GRUB (multiboot2) and QEMU's direct boot (PVH) enter in 32-bit
//! protected mode with paging off; the bootstrap identity-maps the first
//! 4 GiB with 2 MiB pages, enables long mode and NX, and passes the boot
//! protocol and its information pointer to Rust.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
core::arch::global_asm!(
    r#"
    .set MB2_MAGIC, 0xE85250D6
    .set PVH_NOTE_PHYS32_ENTRY, 18

    .section .multiboot2, "a"
    .balign 8
mb2_header:
    .long MB2_MAGIC
    .long 0
    .long mb2_header_end - mb2_header
    .long 0x100000000 - (MB2_MAGIC + (mb2_header_end - mb2_header))
    .short 0
    .short 0
    .long 8
mb2_header_end:

    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long PVH_NOTE_PHYS32_ENTRY
    .asciz "Xen"
    .balign 4
    .long _start_pvh

    .section .boot.text, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    mov %eax, %edx
    mov %ebx, %esi
    mov $1, %edi
    jmp boot32_common

    .global _start_pvh
_start_pvh:
    cli
    cld
    xor %edx, %edx
    mov %ebx, %esi
    mov $2, %edi

boot32_common:
    mov $boot_stack_top, %esp
    push %edx
    push %esi
    push %edi

    /* Long mode (bit 29) and NX (bit 20) are required. */
    mov $0x80000000, %eax
    cpuid
    cmp $0x80000001, %eax
    jb no_long_mode
    mov $0x80000001, %eax
    cpuid
    test $(1 << 29), %edx
    jz no_long_mode
    test $(1 << 20), %edx
    jz no_long_mode

    /* PML4, PDPT and four page directories: identity map of 0..4 GiB. */
    mov $boot_page_tables, %edi
    xor %eax, %eax
    mov $(6 * 4096 / 4), %ecx
    rep stosl
    mov $boot_page_tables, %ebx
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

    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov %ebx, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x900, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax
    mov %eax, %cr0
    lgdt boot_gdt_ptr
    pop %edi
    pop %esi
    pop %edx
    ljmp $0x08, $boot64

no_long_mode:
    mov $no_long_mode_msg, %esi
2:
    lodsb
    test %al, %al
    jz 4f
    mov %al, %bl
    mov $0x3fd, %dx
3:
    inb %dx, %al
    test $0x20, %al
    jz 3b
    mov %bl, %al
    mov $0x3f8, %dx
    outb %al, %dx
    jmp 2b
4:
    cli
    hlt
    jmp 4b

    .code64
boot64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    mov $boot_stack_top, %rsp
    mov %edi, %edi
    mov %esi, %esi
    mov %edx, %edx
    xor %ebp, %ebp
    call {entry}
5:
    cli
    hlt
    jmp 5b

    .balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF
    .quad 0x00CF93000000FFFF
boot_gdt_ptr:
    .short boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt
no_long_mode_msg:
    .asciz "pavise: fatal: this CPU lacks long mode or NX; Pavise needs an x86_64 CPU with both\r\n"

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_page_tables:
    .skip 6 * 4096
    .global boot_stack_bottom
boot_stack_bottom:
    .skip 64 * 1024
    .global boot_stack_top
boot_stack_top:
"#,
    entry = sym hypervisor::boot::entry,
    options(att_syntax)
);

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the hypervisor runs on bare metal: build it with `cargo xtask build`");
    std::process::exit(2);
}
