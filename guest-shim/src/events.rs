//! Event channels on the guest side: the shared-info page, the upcall
//! vector and dispatch of pending ports to handlers (2-level ABI), VIRQs,
//! interdomain channels, and time from `vcpu_time_info` (pvclock) with
//! singleshot timers.

use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::hypercall::{self, Errno, Result, nr};

/// The vector Pavise injects for event upcalls.
pub const UPCALL_VECTOR: u8 = 0xf3;
pub const VIRQ_TIMER: u32 = 0;
const PENDING: usize = 0x800;
const MASK: usize = 0xa00;
const MAX_HANDLERS: usize = 64;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

static mut SHARED_INFO: Page = Page([0; 4096]);
/// Handlers by port (ports ≥ MAX_HANDLERS are not dispatched).
static HANDLERS: [AtomicUsize; MAX_HANDLERS] = [const { AtomicUsize::new(0) }; MAX_HANDLERS];
/// Upcalls taken, for tests.
pub static UPCALLS: AtomicU32 = AtomicU32::new(0);

fn shared() -> *mut u8 {
    (&raw mut SHARED_INFO) as *mut u8
}

fn u64_at(offset: usize) -> &'static AtomicU64 {
    // SAFETY: shared info is mapped at our static page; offsets are aligned
    // fields of shared_info / vcpu_info[0], accessed atomically as the
    // hypervisor does.
    unsafe { AtomicU64::from_ptr(shared().add(offset) as *mut u64) }
}

core::arch::global_asm!(
    r#"
    .section .text.guest_upcall, "ax"
    .global guest_upcall_entry
guest_upcall_entry:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    mov %rsp, %rax
    and $-16, %rsp
    push %rax
    sub $8, %rsp
    cld
    call {dispatch}
    add $8, %rsp
    pop %rsp
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq
"#,
    dispatch = sym dispatch,
    options(att_syntax)
);

unsafe extern "C" {
    static guest_upcall_entry: u8;
}

/// Maps shared info, installs the upcall vector for vCPU 0 and enables
/// interrupts.
pub fn init() -> Result<()> {
    hypercall::map_shared_info(shared() as u64 >> 12)?;
    crate::entry::set_gate(UPCALL_VECTOR, &raw const guest_upcall_entry as u64);
    let req = [0u32, UPCALL_VECTOR as u32];
    // SAFETY: HVMOP_set_evtchn_upcall_vector with a live struct.
    let ret = unsafe { hypercall::raw(nr::HVM_OP, 23, req.as_ptr() as u64, 0, 0, 0) };
    if ret < 0 {
        return Err(Errno(-ret));
    }
    // SAFETY: the upcall gate is installed; interrupts may now arrive.
    unsafe { core::arch::asm!("sti") };
    Ok(())
}

/// Runs `handler` (from the upcall, interrupts off) when `port` fires.
pub fn on(port: u32, handler: fn(u32)) {
    if (port as usize) < MAX_HANDLERS {
        HANDLERS[port as usize].store(handler as usize, Ordering::SeqCst);
    }
}

extern "C" fn dispatch() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: vcpu_info[0].evtchn_upcall_pending is byte 0 of shared info.
    unsafe { AtomicU8::from_ptr(shared()).store(0, Ordering::SeqCst) };
    let selector = u64_at(8).swap(0, Ordering::SeqCst);
    for word in 0..64usize {
        if selector & (1 << word) == 0 {
            continue;
        }
        let pending = u64_at(PENDING + word * 8).load(Ordering::SeqCst)
            & !u64_at(MASK + word * 8).load(Ordering::SeqCst);
        for bit in 0..64usize {
            if pending & (1 << bit) == 0 {
                continue;
            }
            u64_at(PENDING + word * 8).fetch_and(!(1 << bit), Ordering::SeqCst);
            let port = (word * 64 + bit) as u32;
            if let Some(h) = HANDLERS.get(port as usize) {
                let f = h.load(Ordering::SeqCst);
                if f != 0 {
                    // SAFETY: only `on` stores here, always a `fn(u32)`.
                    let handler: fn(u32) = unsafe { core::mem::transmute::<usize, fn(u32)>(f) };
                    handler(port);
                }
            }
        }
    }
}

fn op<T>(cmd: u64, arg: &mut T) -> Result<()> {
    // SAFETY: EVTCHNOP_* with a live, correctly laid out argument.
    let ret = unsafe { hypercall::raw(nr::EVENT_CHANNEL_OP, cmd, arg as *mut T as u64, 0, 0, 0) };
    if ret < 0 { Err(Errno(-ret)) } else { Ok(()) }
}

pub fn bind_virq(virq: u32, vcpu: u32) -> Result<u32> {
    let mut a = [virq, vcpu, 0];
    op(1, &mut a)?;
    Ok(a[2])
}

/// A port in our domain that `remote` may bind to.
pub fn alloc_unbound(remote: u16) -> Result<u32> {
    let mut a = [hypercall::DOMID_SELF as u32 | (remote as u32) << 16, 0];
    op(6, &mut a)?;
    Ok(a[1])
}

pub fn bind_interdomain(remote: u16, remote_port: u32) -> Result<u32> {
    hypercall::evtchn_bind_interdomain(remote, remote_port)
}

pub fn send(port: u32) -> Result<()> {
    let mut p = port;
    op(4, &mut p)
}

pub fn close(port: u32) -> Result<()> {
    let mut p = port;
    op(3, &mut p)
}

/// System time (ns since the hypervisor booted) from vcpu_time_info.
pub fn system_time_ns() -> u64 {
    let t = 32usize; // vcpu_info[0].time
    loop {
        let v = u64_at(t).load(Ordering::SeqCst) as u32;
        if v & 1 != 0 {
            continue;
        }
        let tsc_timestamp = u64_at(t + 8).load(Ordering::SeqCst);
        let system_time = u64_at(t + 16).load(Ordering::SeqCst);
        let scale = u64_at(t + 24).load(Ordering::SeqCst);
        let (mul, shift) = (scale as u32, (scale >> 32) as u8 as i8);
        let delta = crate::rdtsc().saturating_sub(tsc_timestamp);
        let d = if shift >= 0 {
            delta << shift
        } else {
            delta >> (-shift)
        };
        let ns = system_time + ((d as u128 * mul as u128) >> 32) as u64;
        if u64_at(t).load(Ordering::SeqCst) as u32 == v {
            return ns;
        }
    }
}

/// VCPUOP_set_singleshot_timer for vCPU 0 at absolute `deadline_ns`.
pub fn set_timer(deadline_ns: u64) -> Result<()> {
    let t = [deadline_ns, 0u64];
    // SAFETY: VCPUOP_set_singleshot_timer with a live struct.
    let ret = unsafe { hypercall::raw(nr::VCPU_OP, 8, 0, t.as_ptr() as u64, 0, 0) };
    if ret < 0 { Err(Errno(-ret)) } else { Ok(()) }
}

/// Sleeps (SCHEDOP_block) until an upcall has run.
pub fn wait_for_event() {
    let before = UPCALLS.load(Ordering::SeqCst);
    while UPCALLS.load(Ordering::SeqCst) == before {
        // Blocking returns at once if an event is already pending; the
        // upcall is injected as we resume.
        let _ = hypercall::sched_block();
    }
}
