//! Event channels on the guest side (2-level ABI): the upcall vector and
//! its entry stub, dispatch of pending ports to handlers, and the
//! EVTCHNOP_* operations (VIRQs, interdomain channels, send, close).
//!
//! Upcalls are taken on vCPU 0 only: [`init`] maps shared info, installs
//! the vector with HVMOP_set_evtchn_upcall_vector and enables interrupts.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use pv_abi::event_channel::{
    EvtchnAllocUnbound, EvtchnBindInterdomain, EvtchnBindVirq, EvtchnClose, EvtchnOp, EvtchnPort,
    EvtchnSend,
};
use pv_abi::hypercall::Hypercall;
use pv_abi::shared_info::EVTCHN_WORDS;

use crate::hypercall::{self, DOMID_SELF, Errno, Result};
use crate::shared_info;

pub use pv_abi::event_channel::Virq;

/// The vector Pavise injects for event upcalls.
pub const UPCALL_VECTOR: u8 = 0xf3;
/// Ports that can have a handler (higher ones are acknowledged only).
const MAX_HANDLERS: usize = 64;

/// Handlers by port: a `fn(u32)` as usize, 0 for none.
static HANDLERS: [AtomicUsize; MAX_HANDLERS] = [const { AtomicUsize::new(0) }; MAX_HANDLERS];
/// Upcalls taken (for waiting, and for tests).
pub static UPCALLS: AtomicU32 = AtomicU32::new(0);

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
    /// Saves the caller-saved registers, runs `dispatch`, returns with
    /// `iretq`.
    static guest_upcall_entry: u8;
}

/// Maps shared info, installs the upcall vector for vCPU 0 and enables
/// interrupts there.
pub fn init() -> Result<()> {
    shared_info::map()?;
    crate::traps::set_gate(UPCALL_VECTOR, &raw const guest_upcall_entry as u64);
    // Xen delivers the upcall vector through the local APIC (see `lapic`).
    crate::lapic::enable();
    hypercall::set_evtchn_upcall_vector(0, UPCALL_VECTOR)?;
    // SAFETY: the upcall gate is installed; interrupts may now arrive.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
    Ok(())
}

/// Runs `handler` (in the upcall, interrupts off) when `port` fires.
pub fn on(port: EvtchnPort, handler: fn(EvtchnPort)) {
    if let Some(slot) = HANDLERS.get(port as usize) {
        slot.store(handler as usize, Ordering::SeqCst);
    }
}

/// The upcall: acknowledge, then run the handler of every pending
/// unmasked port, clearing its pending bit first.
extern "C" fn dispatch() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    shared_info::upcall_pending(0).store(0, Ordering::SeqCst);
    let selector = shared_info::pending_sel(0).swap(0, Ordering::SeqCst);
    use pv_abi::event_channel::set_bits;
    for word in set_bits(selector).filter(|&w| w < EVTCHN_WORDS) {
        let pending = shared_info::pending(word).load(Ordering::SeqCst)
            & !shared_info::mask(word).load(Ordering::SeqCst);
        for bit in set_bits(pending) {
            shared_info::pending(word).fetch_and(!(1 << bit), Ordering::SeqCst);
            let port = (word * 64 + bit) as EvtchnPort;
            let Some(slot) = HANDLERS.get(port as usize) else {
                continue;
            };
            let f = slot.load(Ordering::SeqCst);
            if f != 0 {
                // SAFETY: only `on` stores here, always a `fn(u32)`.
                let handler = unsafe { core::mem::transmute::<usize, fn(EvtchnPort)>(f) };
                handler(port);
            }
        }
    }
    crate::lapic::eoi();
}

fn op<T>(cmd: EvtchnOp, arg: &mut T) -> Result<()> {
    let nr = Hypercall::EventChannelOp.raw() as u64;
    // SAFETY: EVTCHNOP_* with a live argument of the sub-op's layout,
    // which the hypervisor may write.
    let ret = unsafe {
        hypercall::raw(
            nr,
            cmd.raw().into(),
            core::ptr::from_mut(arg) as u64,
            0,
            0,
            0,
        )
    };
    Errno::check_ret(ret).map(|_| ())
}

/// EVTCHNOP_bind_virq: a port for `virq` delivered to `vcpu`.
pub fn bind_virq(virq: Virq, vcpu: u32) -> Result<EvtchnPort> {
    let mut a = EvtchnBindVirq {
        virq: virq.raw(),
        vcpu,
        port: 0,
    };
    op(EvtchnOp::BindVirq, &mut a)?;
    Ok(a.port)
}

/// EVTCHNOP_bind_pirq: a port for physical IRQ `pirq` (privileged only).
pub fn bind_pirq(pirq: u32) -> Result<EvtchnPort> {
    let mut a = pv_abi::event_channel::EvtchnBindPirq {
        pirq,
        flags: pv_abi::event_channel::BIND_PIRQ_WILL_SHARE,
        port: 0,
    };
    op(EvtchnOp::BindPirq, &mut a)?;
    Ok(a.port)
}

/// EVTCHNOP_alloc_unbound: a port of ours that `remote` may bind to.
pub fn alloc_unbound(remote: u16) -> Result<EvtchnPort> {
    alloc_unbound_in(DOMID_SELF, remote)
}

/// EVTCHNOP_alloc_unbound in domain `dom` (privileged callers): a port
/// of `dom`'s that `remote` may bind to — the toolstack making a new
/// domain's console and XenStore channels.
pub fn alloc_unbound_in(dom: u16, remote: u16) -> Result<EvtchnPort> {
    let mut a = EvtchnAllocUnbound {
        dom,
        remote_dom: remote,
        port: 0,
    };
    op(EvtchnOp::AllocUnbound, &mut a)?;
    Ok(a.port)
}

/// EVTCHNOP_bind_interdomain: our new port connected to `remote`'s
/// `remote_port`.
pub fn bind_interdomain(remote: u16, remote_port: EvtchnPort) -> Result<EvtchnPort> {
    let mut a = EvtchnBindInterdomain {
        remote_dom: remote,
        pad: 0,
        remote_port,
        local_port: 0,
    };
    op(EvtchnOp::BindInterdomain, &mut a)?;
    Ok(a.local_port)
}

/// EVTCHNOP_send: notify the other end of `port`.
pub fn send(port: EvtchnPort) -> Result<()> {
    op(EvtchnOp::Send, &mut EvtchnSend { port })
}

/// EVTCHNOP_close.
pub fn close(port: EvtchnPort) -> Result<()> {
    op(EvtchnOp::Close, &mut EvtchnClose { port })
}

/// Masks `port`: its events set the pending bit (which SCHEDOP_poll
/// sees) but raise no upcall, so no upcall handler can clear the bit
/// between a look at a ring and a poll on the port.
pub fn mask_port(port: EvtchnPort) {
    let (word, bit) = (port as usize / 64, 1u64 << (port % 64));
    shared_info::mask(word).fetch_or(bit, Ordering::SeqCst);
}

/// Clears `port`'s pending bit (before a look at what it signals).
pub fn clear_pending(port: EvtchnPort) {
    let (word, bit) = (port as usize / 64, 1u64 << (port % 64));
    shared_info::pending(word).fetch_and(!bit, Ordering::SeqCst);
}

/// Undoes [`mask_port`] and any pending bit, so that a later owner of
/// the port number starts clean.
pub fn release_port(port: EvtchnPort) {
    let (word, bit) = (port as usize / 64, 1u64 << (port % 64));
    clear_pending(port);
    shared_info::mask(word).fetch_and(!bit, Ordering::SeqCst);
}

/// The number of upcalls taken so far: a point to wait from.
pub fn upcalls() -> u32 {
    UPCALLS.load(Ordering::SeqCst)
}

/// Sleeps until an upcall has run since [`upcalls`] returned `since`.
///
/// It looks with interrupts off and then halts with `sti; hlt`: the CPU
/// takes an interrupt only after the instruction that follows `sti`, so an
/// upcall that comes between the look and the halt still wakes it. (With
/// interrupts on, an upcall taken just before SCHEDOP_block clears
/// `evtchn_upcall_pending`, and the block then sleeps through it — the
/// race Xen's PVH guests avoid the same way.)
pub fn wait_for_upcall_since(since: u32) {
    loop {
        // SAFETY: only IF changes; interrupts come back on in both arms.
        unsafe { core::arch::asm!("cli", options(nomem, nostack)) };
        if UPCALLS.load(Ordering::SeqCst) != since {
            // SAFETY: as above.
            unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
            return;
        }
        // SAFETY: halts with interrupts on; the upcall handler runs first.
        unsafe { core::arch::asm!("sti", "hlt", options(nomem, nostack)) };
    }
}

/// Sleeps until `done()` holds, re-checking after every upcall. The
/// upcall count is read before each check, so an upcall that makes
/// `done()` true just after it was checked still ends the wait (waiting
/// for "the next upcall" after a check would sleep through it).
pub fn wait_until(done: impl Fn() -> bool) {
    loop {
        let since = upcalls();
        if done() {
            return;
        }
        wait_for_upcall_since(since);
    }
}
