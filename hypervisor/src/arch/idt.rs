//! The IDT, the trap entry stubs and the trap handler.
//!
//! Every vector has a 16-byte stub that pushes a uniform frame (a zero
//! where the CPU pushes no error code) and calls [`trap_handler`]. A CPU
//! exception in the hypervisor is fatal: it prints a register dump, the
//! vector and the error code, and stops the machine cleanly — never a
//! triple-fault reboot loop.

use core::mem::size_of;

use bitflags::bitflags;
use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::registers::control::Cr2;
use x86_64::structures::DescriptorTablePointer;

use super::gdt::{IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI};
use super::power::{self, ExitCode};
use super::{lapic, percpu};

pub const VECTOR_NMI: u8 = 2;
pub const VECTOR_DOUBLE_FAULT: u8 = 8;
pub const VECTOR_PAGE_FAULT: u8 = 14;
pub const VECTOR_MACHINE_CHECK: u8 = 18;
/// Local APIC timer tick.
pub const VECTOR_TIMER: u8 = 0xf0;
/// Another CPU has put work on the run queue (see `lapic::wake`).
pub const VECTOR_WAKE: u8 = 0xf1;
/// Vectors the I/O APIC routes device interrupts (Dom0's pirqs) to.
pub const VECTOR_DEVICE_FIRST: u8 = 0x50;
pub const VECTOR_DEVICE_LAST: u8 = 0x6f;

/// Called with the vector of each device interrupt, before the EOI
/// (set by the layer that owns the devices: arch imports nothing above).
static DEVICE_HANDLER: core::sync::atomic::AtomicPtr<()> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

pub fn on_device_interrupt(handler: fn(u8)) {
    DEVICE_HANDLER.store(handler as *mut (), core::sync::atomic::Ordering::SeqCst);
}
/// Local APIC spurious interrupts.
pub const VECTOR_SPURIOUS: u8 = 0xff;

const KERNEL_CODE_SELECTOR: u16 = 0x08;

bitflags! {
    #[derive(Clone, Copy)]
    struct GateFlags: u8 {
        const PRESENT = 1 << 7;
        /// 64-bit interrupt gate: interrupts off on entry.
        const INTERRUPT_GATE = 0x0e;
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    flags: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    fn interrupt(handler: u64, ist: u8) -> Self {
        Self {
            offset_low: handler as u16,
            selector: KERNEL_CODE_SELECTOR,
            ist,
            flags: (GateFlags::PRESENT | GateFlags::INTERRUPT_GATE).bits(),
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

/// The frame every stub builds, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

core::arch::global_asm!(
    r#"
    .section .text.traps, "ax"
    .balign 16
    .global pavise_trap_stubs
pavise_trap_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    .if vec < 128
    pushq $vec
    .else
    pushq $(vec - 256)
    .endif
    jmp pavise_trap_common
    .set vec, vec + 1
    .endr

pavise_trap_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    cld
    call {handler}
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq
"#,
    handler = sym trap_handler,
    options(att_syntax)
);

unsafe extern "C" {
    static pavise_trap_stubs: u8;
}

const STUB_SIZE: u64 = 16;

/// Loads the IDT on this CPU (built on first use).
pub fn load() {
    let idt = IDT.call_once(|| {
        let base = &raw const pavise_trap_stubs as u64;
        let mut gates = [Gate::default(); 256];
        for (vector, gate) in gates.iter_mut().enumerate() {
            let ist = match vector as u8 {
                VECTOR_DOUBLE_FAULT => IST_DOUBLE_FAULT,
                VECTOR_NMI => IST_NMI,
                VECTOR_MACHINE_CHECK => IST_MACHINE_CHECK,
                _ => 0,
            };
            *gate = Gate::interrupt(base + vector as u64 * STUB_SIZE, ist);
        }
        Idt(gates)
    });
    let pointer = DescriptorTablePointer {
        limit: (size_of::<Idt>() - 1) as u16,
        base: VirtAddr::from_ptr(idt),
    };
    // SAFETY: the IDT is a static that lives forever and every gate points
    // at a stub in this image.
    unsafe { lidt(&pointer) };
}

const EXCEPTION_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved 15",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD error",
    "#VE virtualization",
    "#CP control protection",
    "reserved 22",
    "reserved 23",
    "reserved 24",
    "reserved 25",
    "reserved 26",
    "reserved 27",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security",
    "reserved 31",
];

extern "C" fn trap_handler(frame: &mut TrapFrame) {
    let vector = frame.vector as u8;
    match vector {
        VECTOR_NMI if power::HALT_REQUESTED.load(core::sync::atomic::Ordering::SeqCst) => {
            power::halt_forever()
        }
        0..=31 => exception(frame),
        VECTOR_SPURIOUS => {}
        // The scheduler reads the clock itself; the interrupt only ends
        // the guest's run or the idle halt.
        VECTOR_TIMER => {
            lapic::timer_fired(percpu::current_index());
            lapic::eoi();
        }
        // The wake-up only ends the idle halt (or the guest's run).
        VECTOR_WAKE => lapic::eoi(),
        VECTOR_DEVICE_FIRST..=VECTOR_DEVICE_LAST => {
            let handler = DEVICE_HANDLER.load(core::sync::atomic::Ordering::SeqCst);
            if !handler.is_null() {
                // SAFETY: only `on_device_interrupt` stores here, and it
                // stores a `fn(u8)`.
                let handler: fn(u8) = unsafe { core::mem::transmute(handler) };
                handler(vector);
            }
            lapic::eoi();
        }
        _ => {
            log::warn!("unexpected interrupt vector {vector:#x}");
            lapic::eoi();
        }
    }
}

/// Where crash reports are written: the console's emergency writer,
/// handed over at boot.
static REPORTER: Once<fn(core::fmt::Arguments)> = Once::new();

/// Makes `write` the writer of crash reports (exceptions, backtraces).
pub fn set_reporter(write: fn(core::fmt::Arguments)) {
    REPORTER.call_once(|| write);
}

fn report(args: core::fmt::Arguments) {
    if let Some(write) = REPORTER.get() {
        write(args);
    }
}

/// Prints return addresses by walking the frame-pointer chain (the image is
/// built with frame pointers), staying inside the current stack.
pub fn print_backtrace(mut rbp: u64) {
    let (bottom, top) = percpu::current().map_or_else(
        || {
            unsafe extern "C" {
                static boot_stack_bottom: u8;
                static boot_stack_top: u8;
            }
            (
                &raw const boot_stack_bottom as u64,
                &raw const boot_stack_top as u64,
            )
        },
        |c| c.stack,
    );
    report(format_args!("  backtrace:"));
    for _ in 0..24 {
        if !rbp.is_multiple_of(8) || rbp < bottom || rbp + 16 > top {
            break;
        }
        // SAFETY: rbp lies inside this CPU's mapped, identity-mapped stack
        // (checked above), 8-aligned.
        let (next, ret) = unsafe {
            (
                core::ptr::read(rbp as *const u64),
                core::ptr::read((rbp + 8) as *const u64),
            )
        };
        report(format_args!(" {ret:#x}"));
        rbp = next;
    }
    report(format_args!("\n"));
}

fn exception(frame: &TrapFrame) -> ! {
    let vector = frame.vector as usize;
    let cpu = percpu::current_index();
    report(format_args!(
        "pavise: exception {} (vector {}, error code {:#x}) on cpu{} at rip {:#018x}\n",
        EXCEPTION_NAMES[vector], vector, frame.error_code, cpu, frame.rip
    ));
    if vector == VECTOR_PAGE_FAULT as usize {
        report(format_args!("  cr2 {:#018x}\n", Cr2::read_raw()));
    }
    let f = frame;
    let rows: [[(&str, u64); 4]; 5] = [
        [
            ("rax", f.rax),
            ("rbx", f.rbx),
            ("rcx", f.rcx),
            ("rdx", f.rdx),
        ],
        [
            ("rsi", f.rsi),
            ("rdi", f.rdi),
            ("rbp", f.rbp),
            ("rsp", f.rsp),
        ],
        [("r8 ", f.r8), ("r9 ", f.r9), ("r10", f.r10), ("r11", f.r11)],
        [
            ("r12", f.r12),
            ("r13", f.r13),
            ("r14", f.r14),
            ("r15", f.r15),
        ],
        [
            ("cs ", f.cs),
            ("ss ", f.ss),
            ("rfl", f.rflags),
            ("err", f.error_code),
        ],
    ];
    for row in rows {
        report(format_args!(
            "  {} {:#018x}  {} {:#018x}  {} {:#018x}  {} {:#018x}\n",
            row[0].0, row[0].1, row[1].0, row[1].1, row[2].0, row[2].1, row[3].0, row[3].1
        ));
    }
    print_backtrace(frame.rbp);
    power::stop(ExitCode::Crash)
}
