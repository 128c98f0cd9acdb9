//! The PVH entry: Xen note, 32-bit start, long mode on identity page
//! tables (first 4 GiB, 2 MiB pages), SSE on, an IDT that turns any
//! exception into a crash report, the heap, and the panic handler.

use core::panic::PanicInfo;

use linked_list_allocator::LockedHeap;

use crate::{ShutdownReason, StartInfo, hypercall, println, shutdown};

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
    mov $guest_boot_stack_top, %esp
    mov $guest_page_tables, %edi
    xor %eax, %eax
    mov $(6 * 4096 / 4), %ecx
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
    or $0x80000003, %eax
    mov %eax, %cr0
    lgdt guest_gdt_ptr
    ljmp $0x08, $guest_long_mode

    .code64
guest_long_mode:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $guest_boot_stack_top, %rsp
    mov %esi, %edi
    xor %ebp, %ebp
    call {start}
2:
    hlt
    jmp 2b

    .balign 8
guest_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF
    .quad 0x00CF93000000FFFF
guest_gdt_ptr:
    .short guest_gdt_ptr - guest_gdt - 1
    .long guest_gdt

    .section .text.guest_traps, "ax"
    .balign 16
    .global guest_trap_stubs
guest_trap_stubs:
    .set vec, 0
    .rept 32
    .balign 16
    mov $vec, %edi
    mov %rsp, %rsi
    jmp guest_trap_common
    .set vec, vec + 1
    .endr
guest_trap_common:
    and $-16, %rsp
    call {trap}
3:
    hlt
    jmp 3b

    .section .bss.guest_boot, "aw", @nobits
    .balign 4096
guest_page_tables:
    .skip 6 * 4096
guest_boot_stack:
    .skip 64 * 1024
guest_boot_stack_top:
"#,
    start = sym rust_start,
    trap = sym exception,
    options(att_syntax)
);

unsafe extern "C" {
    static guest_trap_stubs: u8;
}

#[repr(C, align(16))]
struct Idt([[u64; 2]; 256]);

static mut IDT: Idt = Idt([[0; 2]; 256]);

fn gate(handler: u64) -> [u64; 2] {
    let low = (handler & 0xffff) | (0x08 << 16) | (0x8e00 << 32) | ((handler >> 16) & 0xffff) << 48;
    [low, handler >> 32]
}

/// Points IDT `vector` at `handler` (an interrupt-gate entry point).
pub(crate) fn set_gate(vector: u8, handler: u64) {
    let idt = &raw mut IDT;
    // SAFETY: the IDT is ours; a 16-byte store of one gate.
    unsafe { (*idt).0[vector as usize] = gate(handler) };
}

fn load_idt() {
    let base = &raw const guest_trap_stubs as u64;
    for vector in 0..32u64 {
        set_gate(vector as u8, base + vector * 16);
    }
    let idt = &raw mut IDT;
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let pointer = Pointer {
        limit: (256 * 16 - 1) as u16,
        base: idt as u64,
    };
    // SAFETY: the IDT is a static; its gates point at our stubs.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &pointer) };
}

/// Loads an empty IDT: the next exception escalates to a triple fault
/// (for the crasher test kernel).
pub fn clear_idt() {
    let pointer = [0u16; 5];
    // SAFETY: a zero-limit IDT; deliberate.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &pointer) };
}

extern "C" fn exception(vector: u64, frame: *const u64) -> ! {
    // SAFETY: `frame` is the stack at trap entry: [error code,] rip, ...
    let word = |i: usize| unsafe { core::ptr::read_volatile(frame.add(i)) };
    let has_error = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
    let rip = if has_error { word(1) } else { word(0) };
    println!("guest exception {} at rip {:#x}", vector, rip);
    shutdown(ShutdownReason::Crash)
}

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();
const HEAP_SIZE: usize = 256 * 1024;
static mut HEAP_SPACE: [u8; HEAP_SIZE] = [0; HEAP_SIZE];

unsafe extern "Rust" {
    fn __guest_main(info: &StartInfo) -> !;
}

extern "C" fn rust_start(start_info: u32) -> ! {
    load_idt();
    // SAFETY: HEAP_SPACE is used only by the allocator, set up once here.
    unsafe { HEAP.lock().init(&raw mut HEAP_SPACE as *mut u8, HEAP_SIZE) };
    hypercall::init();
    // SAFETY: %ebx at entry, as the PVH ABI defines.
    let info = unsafe { StartInfo::from_addr(start_info as u64) };
    let Some(info) = info else {
        println!("guest: no valid hvm_start_info");
        shutdown(ShutdownReason::Crash)
    };
    // SAFETY: `entry!` defines this symbol in the kernel crate.
    unsafe { __guest_main(&info) }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    println!("panic: {}", info.message());
    shutdown(ShutdownReason::Crash)
}
