//! The scheduler: one global round-robin queue of runnable vCPUs, served
//! by every CPU. A vCPU runs until it yields, blocks, its domain ends, or
//! its time slice passes while others wait — so a spinning guest cannot
//! starve the rest.
//!
//! Each CPU's local APIC timer is one-shot, armed for whichever comes
//! first: the end of the running slice or the earliest guest timer
//! (singleshot timers, poll time-outs). So guest timers fire at their
//! deadline, not on a scheduler tick, and an idle CPU sleeps until there
//! is something to do: the next deadline, or a wake-up IPI from the CPU
//! that queued a vCPU. (The idle boot CPU also wakes every 20 ms to poll
//! console input and the devices.)

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::exits::{self, Next};
use super::registry::{Domain, vcpu_state};
use super::runstate::{self, State};
use crate::arch::time;
use crate::virt::VirtCpu;

static RUNQ: Mutex<VecDeque<(Arc<Domain>, usize)>> = Mutex::new(VecDeque::new());

fn make_runnable(domain: &Arc<Domain>, vcpu: usize, from: u8) {
    let state = &domain.vcpu_states[vcpu];
    if state
        .compare_exchange(
            from,
            vcpu_state::RUNNABLE,
            Ordering::SeqCst,
            Ordering::SeqCst,
        )
        .is_ok()
    {
        RUNQ.lock().push_back((domain.clone(), vcpu));
        wake_an_idle_cpu();
    }
}

/// CPUs halted in [`idle`], one bit per dense index.
static IDLE_CPUS: AtomicU64 = AtomicU64::new(0);

/// After a push to the run queue: an idle CPU takes it now rather than at
/// its next timer. (An idle CPU sets its bit before its last look at the
/// queue, and this reads the bits after the push, so one of the two sees
/// the other.)
fn wake_an_idle_cpu() {
    let me = crate::arch::percpu::current_index();
    let idle = IDLE_CPUS.load(Ordering::SeqCst) & !(1u64 << me);
    if idle != 0 {
        crate::arch::lapic::wake(idle.trailing_zeros() as usize);
    }
}

/// Makes a blocked vCPU runnable (an event or time-out arrived).
pub fn wake(domain: &Arc<Domain>, vcpu: usize) {
    make_runnable(domain, vcpu, vcpu_state::BLOCKED);
}

/// Starts a vCPU that is down (boot, VCPUOP_up).
pub fn start(domain: &Arc<Domain>, vcpu: usize) {
    make_runnable(domain, vcpu, vcpu_state::DOWN);
}

/// Lets a paused domain's vCPUs run again once its last pause is undone:
/// each parked vCPU goes back on the run queue.
pub fn unparked(domain: &Arc<Domain>) {
    for vcpu in 0..domain.vcpus.len() {
        make_runnable(domain, vcpu, vcpu_state::PARKED);
    }
}

/// Sets a vCPU of a paused domain aside; if the pause ended meanwhile it
/// goes straight back (`unparked` may have looked before it was parked).
fn park(domain: &Arc<Domain>, vcpu: usize) {
    domain.vcpu_states[vcpu].store(vcpu_state::PARKED, Ordering::SeqCst);
    if !domain.is_paused() {
        make_runnable(domain, vcpu, vcpu_state::PARKED);
    }
}

/// The time slice (system-time ns).
const SLICE_NS: u64 = time::TICK_MS as u64 * 1_000_000;
/// Timers closer than this fire now rather than being armed: less than
/// the cost of an interrupt round trip.
const TIMER_SLACK_NS: u64 = 2_000;
/// How long a guest in an interrupt shadow runs before the exit that lets
/// a waiting interrupt in (most shadowed instructions — the `hlt` of
/// `sti; hlt` — exit by themselves long before).
const SHADOW_EXIT_NS: u64 = 50_000;

/// Arms this CPU's timer for `until` or the next guest deadline,
/// whichever is first.
fn arm_timer(until: u64) {
    let next = match super::events::next_deadline() {
        0 => until,
        d => d.min(until),
    };
    crate::arch::lapic::arm_at(next, TIMER_SLACK_NS);
}

/// How often the idle boot CPU looks for serial input and device work
/// that no interrupt announces (keystrokes wait at most this long).
const IDLE_POLL_NS: u64 = 20_000_000;
/// How long another idle CPU sleeps at most: deadlines and wake-up IPIs
/// end its sleep, and it has nothing to poll.
const IDLE_MAX_NS: u64 = 1_000_000_000;

fn idle() {
    let cpu = crate::arch::percpu::current_index();
    let bit = 1u64 << cpu;
    IDLE_CPUS.fetch_or(bit, Ordering::SeqCst);
    if RUNQ.lock().is_empty() {
        let longest = if cpu == 0 { IDLE_POLL_NS } else { IDLE_MAX_NS };
        arm_timer(time::system_time_ns() + longest);
        // SAFETY: sti;hlt is atomic with respect to interrupts (the shadow
        // of sti covers hlt), so the interrupt that wakes us is not lost.
        unsafe { core::arch::asm!("sti", "hlt", "cli") };
    }
    IDLE_CPUS.fetch_and(!bit, Ordering::SeqCst);
}

enum SliceEnd {
    Requeue,
    Block,
    Stop,
}

/// Serves the run queue on this CPU for ever.
pub fn run_cpu() -> ! {
    loop {
        super::events::run_timers();
        let next = RUNQ.lock().pop_front();
        let Some((domain, vcpu)) = next else {
            idle();
            continue;
        };
        if domain.is_dead() {
            continue;
        }
        if domain.is_paused() {
            park(&domain, vcpu);
            continue;
        }
        domain.vcpu_states[vcpu].store(vcpu_state::RUNNING, Ordering::SeqCst);
        match run_slice(&domain, vcpu) {
            SliceEnd::Requeue => {
                domain.vcpu_states[vcpu].store(vcpu_state::RUNNABLE, Ordering::SeqCst);
                RUNQ.lock().push_back((domain, vcpu));
            }
            SliceEnd::Block => {
                domain.vcpu_states[vcpu].store(vcpu_state::BLOCKED, Ordering::SeqCst);
                if domain.privileged {
                    super::registry::note_privileged_block();
                }
                // An event that arrived while it was going to sleep must
                // not be lost.
                if super::events::upcall_pending(&domain, vcpu)
                    || super::apic::has_pending(&domain, vcpu)
                    || super::events::poll_satisfied(&domain, vcpu)
                {
                    wake(&domain, vcpu);
                }
            }
            SliceEnd::Stop => domain.vcpu_states[vcpu].store(vcpu_state::DOWN, Ordering::SeqCst),
        }
    }
}

fn run_slice(domain: &Arc<Domain>, vcpu: usize) -> SliceEnd {
    let mut slot = domain.vcpus[vcpu].lock();
    // Whatever woke it, a poll is over once the vCPU runs again.
    domain.poll_ports[vcpu].lock().clear();
    slot.cpu.request_flush();
    slot.cpu.load_fpu();
    runstate::switch(domain, vcpu, slot.cpu.paging(), State::Running);
    super::events::refresh_time(domain, vcpu);
    let mut slice_end = time::system_time_ns() + SLICE_NS;
    let end = loop {
        super::events::prepare_entry(domain, vcpu, &mut slot.cpu);
        let generation = domain.mapping_generation.load(Ordering::SeqCst);
        if slot.mapping_generation != generation {
            slot.mapping_generation = generation;
            slot.cpu.request_flush();
        }
        if slot.cpu.interrupt_queued() && slot.cpu.in_interrupt_shadow() {
            // The interrupt waits for the end of the shadow (one guest
            // instruction): an exit soon after it lets it in. Not at once:
            // an exit before the guest has run the instruction leaves it
            // in the shadow, and one every time would never let it run.
            arm_timer(time::system_time_ns() + SHADOW_EXIT_NS);
        } else {
            arm_timer(slice_end);
        }
        let epoch = &domain.guest_epoch[vcpu];
        epoch.fetch_add(1, Ordering::SeqCst);
        let exit = slot.cpu.run();
        epoch.fetch_add(1, Ordering::SeqCst);
        if domain.is_dead() {
            break SliceEnd::Stop;
        }
        match exits::handle(domain, vcpu, &mut slot, exit) {
            Next::Continue => {}
            Next::Yield => break SliceEnd::Requeue,
            Next::Block => break SliceEnd::Block,
            Next::Stop => break SliceEnd::Stop,
        }
        // Paused: off the CPU now; the run queue parks it.
        if domain.is_paused() {
            break SliceEnd::Requeue;
        }
        if exit == crate::virt::Exit::ExternalInterrupt {
            // Take the pending host interrupt (timer tick, IPI) now.
            // SAFETY: the IDT handles every vector; IF goes back off.
            unsafe { core::arch::asm!("sti", "nop", "cli") };
            super::events::run_timers();
            let now = time::system_time_ns();
            if now >= slice_end {
                if !RUNQ.lock().is_empty() {
                    break SliceEnd::Requeue;
                }
                // Nobody waits: a new slice (and no timer armed in the past).
                slice_end = now + SLICE_NS;
            }
        }
    };
    slot.cpu.end_slice();
    let state = match end {
        SliceEnd::Requeue => State::Runnable,
        SliceEnd::Block => State::Blocked,
        SliceEnd::Stop => State::Offline,
    };
    runstate::switch(domain, vcpu, slot.cpu.paging(), state);
    end
}
