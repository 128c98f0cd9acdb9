//! SMP start-up: the real-mode trampoline and bringing each AP to Rust.
//!
//! APs start one at a time: the BSP writes the AP's page-table root, stack
//! and index into the trampoline's data page, sends INIT-SIPI-SIPI and
//! waits for the AP to report in before reusing the page for the next.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use super::percpu::{self, PerCpu};
use super::{gdt, idt, lapic, time};
use crate::mm::paging::{self, CpuStacks, TRAMPOLINE_CODE, TRAMPOLINE_DATA};

core::arch::global_asm!(
    r#"
    .section .rodata.trampoline, "a"
    .set TRAMP, 0x8000
    .set DATA, 0x9000
    .global pavise_ap_trampoline_start
    .global pavise_ap_trampoline_end
    .code16
pavise_ap_trampoline_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    lgdtl (ap_gdt_ptr - pavise_ap_trampoline_start + TRAMP)
    // INIT leaves CR0.CD and CR0.NW set (0x60000010): caches off, which
    // QEMU ignores and hardware does not. Clear them with PE on.
    mov %cr0, %eax
    and $0x9fffffff, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(ap_protected - pavise_ap_trampoline_start + TRAMP)

    .code32
ap_protected:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov (DATA), %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x900, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010000, %eax
    mov %eax, %cr0
    ljmp $0x18, $(ap_long - pavise_ap_trampoline_start + TRAMP)

    .code64
ap_long:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov (DATA + 8), %rsp
    mov (DATA + 16), %rax
    mov (DATA + 24), %rdi
    xor %ebp, %ebp
    call *%rax
1:
    cli
    hlt
    jmp 1b

    .balign 8
ap_gdt:
    .quad 0
    .quad 0x00CF9B000000FFFF
    .quad 0x00CF93000000FFFF
    .quad 0x00AF9B000000FFFF
ap_gdt_ptr:
    .short ap_gdt_ptr - ap_gdt - 1
    .long ap_gdt - pavise_ap_trampoline_start + TRAMP
pavise_ap_trampoline_end:
    .code64
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static pavise_ap_trampoline_start: u8;
    static pavise_ap_trampoline_end: u8;
}

/// What the trampoline reads from `TRAMPOLINE_DATA`.
#[repr(C)]
struct TrampolineData {
    cr3: u64,
    stack_top: u64,
    entry: u64,
    cpu_index: u64,
}

/// CPUs fully set up (tables, APIC, timer calibrated), the BSP included.
static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// CPUs that reached Rust code (and so released the trampoline's data).
static STARTED: AtomicUsize = AtomicUsize::new(1);

pub fn online() -> usize {
    ONLINE.load(Ordering::SeqCst)
}

/// Copies the trampoline to low memory. Must run while low memory is still
/// writable (before the final page tables make the code page read-only).
pub fn install_trampoline() {
    let (start, end) = (
        &raw const pavise_ap_trampoline_start,
        &raw const pavise_ap_trampoline_end,
    );
    let len = end as usize - start as usize;
    assert!(len <= 4096, "AP trampoline larger than a page");
    // SAFETY: 0x8000 is below 1 MiB, which the frame allocator never hands
    // out, and the boot tables map it writable; source and destination
    // do not overlap.
    unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE_CODE as *mut u8, len) };
}

/// Loads descriptor tables, per-CPU data and the local APIC on the
/// calling CPU, and calibrates its timer.
pub fn init_this_cpu(index: usize, stacks: &CpuStacks) -> &'static PerCpu {
    gdt::load(stacks);
    idt::load();
    lapic::enable();
    let cpu: &'static PerCpu = Box::leak(Box::new(PerCpu {
        index,
        apic_id: lapic::id(),
        stack: (stacks.main_bottom(), stacks.main_top),
        lapic_ticks_per_ms: AtomicU32::new(0),
    }));
    percpu::install(cpu);
    let rate = lapic::calibrate_timer();
    cpu.set_lapic_rate(rate);
    log::info!(
        "cpu{index} up: APIC id {}, local APIC timer {rate} ticks/ms",
        cpu.apic_id
    );
    cpu
}

extern "C" fn ap_entry(index: u64) -> ! {
    // The boot CPU publishes its TSC until this AP says it has started.
    time::sync_with_bsp(index as usize);
    STARTED.fetch_add(1, Ordering::SeqCst);
    log::debug!(
        "cpu{index}: TSC {:+} cycles from the boot CPU's",
        time::tsc_offset(index as usize) as i64
    );
    let stacks = paging::stacks_of(index as usize);
    init_this_cpu(index as usize, &stacks);
    let cpu = super::percpu::current().map_or(0, |c| c.lapic_ticks_per_ms.load(Ordering::Relaxed));
    ONLINE.fetch_add(1, Ordering::SeqCst);
    // Sleep until the boot CPU has work for it, waking on the timer.
    loop {
        if let Some(work) = AP_WORK.get() {
            work(index as usize)
        }
        lapic::arm_oneshot(cpu, time::TICK_MS as u64 * 1_000_000);
        // SAFETY: sti;hlt waits for the timer; IF goes back off.
        unsafe { core::arch::asm!("sti", "hlt", "cli") };
    }
}

/// What every started AP runs once released (given its CPU index).
static AP_WORK: spin::Once<fn(usize) -> !> = spin::Once::new();

/// Releases the started APs into `work` (the scheduler: `arch` knows
/// nothing above it, so the boot path hands it over).
pub fn release_aps(work: fn(usize) -> !) {
    AP_WORK.call_once(|| work);
}

/// Starts the given APs: one INIT to all, then a STARTUP to each in turn
/// (the next as soon as the previous has left the trampoline), while the
/// started ones set themselves up in parallel. Returns how many came up.
pub fn start_aps(apic_ids: &[u32]) -> usize {
    if apic_ids.is_empty() {
        return 0;
    }
    lapic::init_all_others();
    let mut started = 0;
    for (i, &apic_id) in apic_ids.iter().enumerate() {
        let index = 1 + started;
        let stacks = match paging::map_cpu_stacks(index) {
            Ok(s) => s,
            Err(_) => {
                log::warn!(
                    "no memory for the stacks of CPU with APIC id {apic_id}; not starting it"
                );
                break;
            }
        };
        let data = TrampolineData {
            cr3: paging::root(),
            stack_top: stacks.main_top,
            entry: ap_entry as *const () as u64,
            cpu_index: index as u64,
        };
        // SAFETY: TRAMPOLINE_DATA is a reserved low page mapped read-write;
        // no AP is reading it (the previous one has left the trampoline).
        unsafe { core::ptr::write_volatile(TRAMPOLINE_DATA as *mut TrampolineData, data) };
        let before = STARTED.load(Ordering::SeqCst);
        let has_started = || STARTED.load(Ordering::SeqCst) > before;
        lapic::start_ap(apic_id, (TRAMPOLINE_CODE >> 12) as u8, has_started);
        if !wait_until(1000, has_started) {
            log::warn!("CPU with APIC id {apic_id} did not start (#{i})");
            break;
        }
        started += 1;
    }
    if !wait_until(2000, || online() == 1 + started) {
        log::warn!(
            "only {} of {} started CPUs finished their set-up",
            online() - 1,
            started
        );
    }
    online() - 1
}

/// Spins until `done` or `ms` milliseconds pass; returns `done()`.
/// (The boot CPU publishes its TSC meanwhile, for APs measuring theirs.)
fn wait_until(ms: u64, done: impl Fn() -> bool) -> bool {
    let deadline = time::rdtsc() + time::tsc_per_ms() * ms;
    while !done() && time::rdtsc() < deadline {
        time::publish_bsp_tsc();
        core::hint::spin_loop();
    }
    done()
}
