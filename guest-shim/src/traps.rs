//! Faults end the domain: the IDT with a stub for each of the 32
//! exception vectors, the handler that reports the vector, error code,
//! `rip` and a frame-pointer backtrace before shutting down with reason
//! crash, and the panic handler doing the same for Rust panics.
//!
//! Other vectors (the event upcall) are installed with [`set_gate`]. A
//! fault while already crashing (in the report itself, or on a second
//! vCPU at the same moment) shuts down without another report.

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::{ShutdownReason, console, shutdown};

core::arch::global_asm!(
    r#"
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
    mov %rbp, %rdx
    and $-16, %rsp
    call {trap}
1:
    hlt
    jmp 1b
"#,
    trap = sym exception,
    options(att_syntax)
);

unsafe extern "C" {
    /// 32 stubs, 16 bytes apart: stub N reports vector N.
    static guest_trap_stubs: u8;
    static __guest_image_start: u8;
    static __guest_image_end: u8;
}

/// Code segment selector of the shim's GDT (see `entry`).
const KERNEL_CS: u64 = 0x08;
/// Present, DPL 0, 64-bit interrupt gate.
const INTERRUPT_GATE: u64 = 0x8e00;

#[repr(C, align(16))]
struct Idt([[u64; 2]; 256]);

static mut IDT: Idt = Idt([[0; 2]; 256]);
static CRASHING: AtomicBool = AtomicBool::new(false);

fn gate(handler: u64) -> [u64; 2] {
    let low = (handler & 0xffff)
        | KERNEL_CS << 16
        | INTERRUPT_GATE << 32
        | ((handler >> 16) & 0xffff) << 48;
    [low, handler >> 32]
}

/// Points IDT `vector` at `handler` (an interrupt-gate entry point) for
/// every vCPU.
pub fn set_gate(vector: u8, handler: u64) {
    let idt = &raw mut IDT;
    // SAFETY: the IDT is a static only this module and `set_gate` write;
    // one 16-byte gate is stored, and a CPU reading the gate meanwhile
    // could only take that vector, which is not yet in use.
    unsafe { core::ptr::write_volatile(&raw mut (*idt).0[vector as usize], gate(handler)) };
}

/// Points exception `vector` back at guest-shim's own stub (after a test
/// kernel borrowed it with [`set_gate`]).
pub fn restore_gate(vector: u8) {
    set_gate(
        vector,
        &raw const guest_trap_stubs as u64 + vector as u64 * 16,
    );
}

/// Fills the exception gates and loads the IDT (boot vCPU).
pub(crate) fn init() {
    for vector in 0..32u8 {
        restore_gate(vector);
    }
    load();
}

/// Loads the shared IDT on the calling vCPU (secondaries, after [`init`]).
pub(crate) fn load() {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let pointer = Pointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: &raw const IDT as u64,
    };
    // SAFETY: the IDT is a static whose exception gates point at our stubs.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack)) };
}

/// Loads an empty IDT on the calling vCPU: its next exception escalates
/// to a triple fault (for the crasher test kernel).
pub fn clear_idt() {
    let pointer = [0u16; 5];
    // SAFETY: a zero-limit IDT; the caller wants the next fault fatal.
    unsafe { core::arch::asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack)) };
}

/// Vectors for which the CPU pushes an error code.
fn has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30)
}

fn name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "#DE",
        "#DB",
        "NMI",
        "#BP",
        "#OF",
        "#BR",
        "#UD",
        "#NM",
        "#DF",
        "coprocessor overrun",
        "#TS",
        "#NP",
        "#SS",
        "#GP",
        "#PF",
        "reserved",
        "#MF",
        "#AC",
        "#MC",
        "#XM",
        "#VE",
        "#CP",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "#HV",
        "#VC",
        "#SX",
        "reserved",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("?")
}

/// Whether a frame pointer may be followed: inside the kernel image
/// (every stack is) and aligned.
fn frame_ok(rbp: u64) -> bool {
    let start = &raw const __guest_image_start as u64;
    let end = &raw const __guest_image_end as u64;
    rbp.is_multiple_of(8) && rbp >= start && rbp.saturating_add(16) <= end
}

/// Prints the return addresses along the frame-pointer chain from `rbp`.
fn backtrace(mut rbp: u64) {
    crate::print!("backtrace:");
    for _ in 0..16 {
        if !frame_ok(rbp) {
            break;
        }
        let frame = rbp as *const u64;
        // SAFETY: `frame_ok` checked that both words are inside the image
        // (identity-mapped); a wrong chain reads harmless garbage.
        let (next, ret) = unsafe { (frame.read_volatile(), frame.add(1).read_volatile()) };
        if ret == 0 {
            break;
        }
        crate::print!(" {ret:#x}");
        rbp = next;
    }
    crate::println!();
}

/// First crash reports; a crash during the report does not.
fn start_crash() -> bool {
    !CRASHING.swap(true, Ordering::SeqCst)
}

extern "C" fn exception(vector: u64, frame: *const u64, rbp: u64) -> ! {
    if start_crash() {
        console::force_unlock_if_stuck();
        // SAFETY: `frame` is the stack at trap entry: [error code,] rip,
        // cs, rflags, rsp, ss, all pushed by the CPU.
        let word = |i: usize| unsafe { frame.add(i).read_volatile() };
        let (error, rip) = if has_error_code(vector) {
            (Some(word(0)), word(1))
        } else {
            (None, word(0))
        };
        crate::print!(
            "guest exception {vector} ({}) at rip {rip:#x}",
            name(vector)
        );
        if let Some(error) = error {
            crate::print!(", error code {error:#x}");
        }
        if vector == 14 {
            let cr2: u64;
            // SAFETY: reading CR2 in ring 0 has no side effects.
            unsafe { core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack)) };
            crate::print!(", address {cr2:#x}");
        }
        crate::println!();
        backtrace(rbp);
    }
    shutdown(ShutdownReason::Crash)
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    if start_crash() {
        console::force_unlock_if_stuck();
        crate::println!("panic: {}", info.message());
        if let Some(at) = info.location() {
            crate::println!("panic: at {}:{}:{}", at.file(), at.line(), at.column());
        }
        let rbp: u64;
        // SAFETY: reads the frame pointer register.
        unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack)) };
        backtrace(rbp);
    }
    shutdown(ShutdownReason::Crash)
}
