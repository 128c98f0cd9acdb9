//! Event delivery into guests: the 2-level pending/mask bitmaps and
//! selector in shared info, `evtchn_upcall_pending` in vcpu_info, the
//! upcall vector, VIRQ_TIMER with singleshot timers, SCHEDOP_poll
//! time-outs, and the time fields guests read (vcpu_time_info, wallclock).
//!
//! The port bookkeeping is the pure core in `crate::evtchn`; this module
//! applies its decisions to guest memory with atomic operations.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Mutex;

use super::registry::{self, DomId, Domain, VCPU_INFO_DEFAULT};
use super::sched;
use crate::arch::time;
use crate::evtchn::{self, Delivery, EventChannels, PortNo};
use crate::mm::frame::Frame;
use crate::mm::guest::Gfn;
use crate::mm::shared;
use crate::virt::VirtCpu;

pub static CHANNELS: Mutex<EventChannels> = Mutex::new(EventChannels::EMPTY);

/// Earliest timer deadline of any vCPU (0 = none): a cheap check for the
/// scheduler loop.
static NEXT_DEADLINE: AtomicU64 = AtomicU64::new(0);
/// Wallclock (Unix seconds) at system time 0.
static BOOT_WALLCLOCK: AtomicU64 = AtomicU64::new(0);

const SHARED_PENDING: usize = 0x800;
const SHARED_MASK: usize = 0xa00;
const SHARED_WC_VERSION: usize = 0xc00;
const SHARED_WC_SEC: usize = 0xc04;
const SHARED_WC_NSEC: usize = 0xc08;
const VCPU_INFO_SIZE: usize = 64;
const VCPU_INFO_IN_SHARED: usize = 32;
const VI_UPCALL_PENDING: usize = 0;
const VI_PENDING_SEL: usize = 8;
const VI_TIME: usize = 32;
/// HVM_PARAM_CALLBACK_IRQ: value[63:56] = 2 means "vector in value[7:0]".
const CALLBACK_TYPE_VECTOR: u64 = 2;
const HVM_PARAM_CALLBACK_IRQ: usize = 0;

pub fn set_boot_wallclock(unix_seconds: u64) {
    BOOT_WALLCLOCK.store(unix_seconds, Ordering::SeqCst);
}

pub fn add_domain(domain: &Domain) {
    CHANNELS
        .lock()
        .add_domain(domain.id, domain.vcpus.len() as u32, domain.privileged);
    write_wallclock(domain);
}

pub fn remove_domain(id: DomId) {
    CHANNELS.lock().remove_domain(id);
}

/// Writes a domain's wallclock (at start, and when its offset changes).
pub fn write_wallclock(domain: &Domain) {
    let si = domain.shared_info;
    let version = shared::load_u32(si, SHARED_WC_VERSION);
    shared::store_u32(si, SHARED_WC_VERSION, version.wrapping_add(1) | 1);
    shared::store_u32(
        si,
        SHARED_WC_SEC,
        // As Xen: the host's wallclock plus the domain's offset.
        (BOOT_WALLCLOCK.load(Ordering::SeqCst) as i64)
            .wrapping_add(domain.time_offset_seconds.load(Ordering::SeqCst)) as u32,
    );
    shared::store_u32(si, SHARED_WC_NSEC, 0);
    shared::store_u32(
        si,
        SHARED_WC_VERSION,
        (version.wrapping_add(1) | 1).wrapping_add(1),
    );
}

/// The frame and offset of a vCPU's vcpu_info, if it has one.
fn vcpu_info(domain: &Domain, vcpu: usize) -> Option<(Frame, usize)> {
    let at = domain.vcpu_info_at.get(vcpu)?.load(Ordering::SeqCst);
    if at == VCPU_INFO_DEFAULT {
        return (vcpu < VCPU_INFO_IN_SHARED).then_some((domain.shared_info, vcpu * VCPU_INFO_SIZE));
    }
    let frame = domain.memory.lock().p2m.get(Gfn(at >> 12))?;
    Some((frame, (at & 0xfff) as usize))
}

/// Sets `port` pending in `domain` and, unless masked, raises the upcall
/// on `vcpu` — the 2-level rules of Xen's `evtchn_2l_set_pending`.
fn set_pending(domain: &Arc<Domain>, port: PortNo, vcpu: u32) {
    let (word, bit) = ((port / 64) as usize, 1u64 << (port % 64));
    let si = domain.shared_info;
    if shared::fetch_or_u64(si, SHARED_PENDING + word * 8, bit) & bit != 0 {
        return;
    }
    if shared::load_u64(si, SHARED_MASK + word * 8) & bit == 0 {
        raise(domain, vcpu as usize, word);
    }
    // As Xen's evtchn_check_pollers: a vCPU in SCHEDOP_poll on this port
    // wakes even though the port is masked (Linux's PV spinlocks poll a
    // masked port; missing this hangs an SMP guest).
    wake_pollers(domain, port);
}

/// Wakes every vCPU of `domain` polling `port`.
fn wake_pollers(domain: &Arc<Domain>, port: PortNo) {
    for vcpu in 0..domain.vcpus.len() {
        if domain.poll_ports[vcpu].lock().contains(&port) {
            sched::wake(domain, vcpu);
        }
    }
}

/// True if `vcpu` is in SCHEDOP_poll and one of its ports is pending.
pub fn poll_satisfied(domain: &Domain, vcpu: usize) -> bool {
    let ports = domain.poll_ports[vcpu].lock();
    !ports.is_empty() && any_pending(domain, &ports)
}

fn raise(domain: &Arc<Domain>, vcpu: usize, word: usize) {
    let Some((frame, offset)) = vcpu_info(domain, vcpu) else {
        return;
    };
    let sel = 1u64 << word;
    if shared::fetch_or_u64(frame, offset + VI_PENDING_SEL, sel) & sel != 0 {
        return;
    }
    if shared::swap_u8(frame, offset + VI_UPCALL_PENDING, 1) != 0 {
        return;
    }
    domain.upcall_asserted[vcpu].store(true, Ordering::SeqCst);
    sched::wake(domain, vcpu);
}

/// A new way of delivering upcalls to `vcpu` (HVMOP_set_evtchn_upcall_vector,
/// HVM_PARAM_CALLBACK_IRQ), as Xen's `hvm_assert_evtchn_irq` there: an
/// upcall raised before the guest said how to take it was asserted to
/// nobody, and `evtchn_upcall_pending` — already 1 — stops [`raise`] from
/// ever asserting another. Asserted again now, it is delivered. (Xen 4.17
/// asserts even with nothing pending; a spurious upcall into a vCPU not
/// yet up, before it has an IDT, helps no one, so only a pending one.)
pub fn reassert_upcall(domain: &Arc<Domain>, vcpu: usize) {
    if upcall_pending(domain, vcpu) {
        domain.upcall_asserted[vcpu].store(true, Ordering::SeqCst);
        sched::wake(domain, vcpu);
    }
}

pub fn deliver(delivery: Delivery) {
    if let Some(domain) = registry::lookup(delivery.domain) {
        set_pending(&domain, delivery.port, delivery.vcpu);
    }
}

/// [`deliver`] from `sender`: an event for the sender itself (an IPI
/// port — Linux's cross-CPU calls — or a loopback channel) needs no
/// lookup in the registry.
pub fn deliver_from(sender: &Arc<Domain>, delivery: Delivery) {
    if delivery.domain == sender.id {
        set_pending(sender, delivery.port, delivery.vcpu);
    } else {
        deliver(delivery);
    }
}

/// Raises virtual IRQ `virq` of `domain` on `vcpu` if the guest bound it.
/// Returns whether the guest had it bound.
pub fn send_virq(domain: &Arc<Domain>, virq: u32, vcpu: u32) -> bool {
    let target = CHANNELS.lock().virq_target(domain.id, virq, vcpu);
    if let Some(d) = target {
        set_pending(domain, d.port, d.vcpu);
    }
    target.is_some()
}

/// Serial input waiting and not yet announced to Dom0.
static CONSOLE_ANNOUNCED: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// Raises VIRQ_CONSOLE in Dom0 when serial input is waiting (Xen's
/// console input path); Dom0 then reads it with CONSOLEIO_read.
///
/// The flag is raised before the VIRQ goes out: Dom0, woken at once on
/// another CPU, may read the input and lower it again before this CPU
/// returns — raising it afterwards would then leave it up with nobody to
/// lower it, and Dom0 would never hear of input again.
fn poll_console_input() {
    if CONSOLE_ANNOUNCED.load(Ordering::SeqCst) || !crate::console::input_waiting() {
        return;
    }
    if CONSOLE_ANNOUNCED
        .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return; // another CPU is announcing it
    }
    let bound = registry::lookup(0).is_some_and(|dom0| send_virq(&dom0, evtchn::VIRQ_CONSOLE, 0));
    if !bound {
        CONSOLE_ANNOUNCED.store(false, Ordering::SeqCst);
    }
}

/// Dom0 has read the console input: announce the next arrival again.
pub fn console_input_taken() {
    CONSOLE_ANNOUNCED.store(false, Ordering::SeqCst);
}

/// `EVTCHNOP_unmask`: clears the mask bit and re-raises a pending event.
pub fn unmask(domain: &Arc<Domain>, port: PortNo) -> Result<(), evtchn::EvtchnError> {
    if port >= evtchn::NR_PORTS {
        return Err(evtchn::EvtchnError::Invalid);
    }
    let vcpu = CHANNELS.lock().status(domain.id, domain.id, port)?.vcpu as usize;
    let (word, bit) = ((port / 64) as usize, 1u64 << (port % 64));
    let si = domain.shared_info;
    let was_masked = shared::fetch_and_u64(si, SHARED_MASK + word * 8, !bit) & bit != 0;
    if was_masked && shared::load_u64(si, SHARED_PENDING + word * 8) & bit != 0 {
        raise(domain, vcpu, word);
    }
    Ok(())
}

/// Clears `port`'s pending bit (Xen's `evtchn_2l_clear_pending`, done when
/// a port is freed, so its next owner starts clean).
pub fn clear_pending(domain: &Domain, port: PortNo) {
    if port < evtchn::NR_PORTS {
        let (word, bit) = ((port / 64) as usize, 1u64 << (port % 64));
        shared::fetch_and_u64(domain.shared_info, SHARED_PENDING + word * 8, !bit);
    }
}

/// True if any of `ports` is pending (for SCHEDOP_poll).
pub fn any_pending(domain: &Domain, ports: &[PortNo]) -> bool {
    ports.iter().any(|&p| {
        p < evtchn::NR_PORTS
            && shared::load_u64(domain.shared_info, SHARED_PENDING + (p as usize / 64) * 8)
                & (1 << (p % 64))
                != 0
    })
}

pub fn upcall_pending(domain: &Domain, vcpu: usize) -> bool {
    vcpu_info(domain, vcpu).is_some_and(|(f, o)| shared::load_u64(f, o) & 0xff != 0)
}

fn callback_vector(domain: &Domain, vcpu: usize) -> Option<u8> {
    let per_vcpu = domain.upcall_vector[vcpu].load(Ordering::SeqCst);
    if per_vcpu != 0 {
        return Some(per_vcpu);
    }
    let param = domain.hvm_params.lock()[HVM_PARAM_CALLBACK_IRQ];
    (param >> 56 == CALLBACK_TYPE_VECTOR)
        .then_some(param as u8)
        .filter(|&v| v >= 0x10)
}

/// Before each guest entry: route a raised upcall (through the vCPU's
/// APIC when the guest enabled it, as Xen's per-vCPU upcall vector, which
/// the guest then EOIs; directly otherwise), inject the APIC's next
/// vector. (Plain loads first: on most entries there is nothing to do,
/// and this is on every exit's path.)
pub fn prepare_entry(domain: &Domain, vcpu: usize, cpu: &mut impl VirtCpu) {
    if domain.upcall_asserted[vcpu].load(Ordering::SeqCst)
        && domain.upcall_asserted[vcpu].swap(false, Ordering::SeqCst)
        && let Some(vector) = callback_vector(domain, vcpu)
    {
        let per_vcpu = domain.upcall_vector[vcpu].load(Ordering::SeqCst) == vector;
        if !(per_vcpu && super::apic::raise(domain, vcpu, vector)) {
            if cpu.interrupt_queued() {
                // One at a time: try again at the next entry.
                domain.upcall_asserted[vcpu].store(true, Ordering::SeqCst);
            } else {
                cpu.inject_interrupt(vector);
            }
        }
    }
    if !cpu.interrupt_queued()
        && let Some(vector) = super::apic::take_pending(domain, vcpu)
    {
        cpu.inject_interrupt(vector);
    }
}

/// Writes vcpu_time_info (version odd while writing, as pvclock wants),
/// as Xen's `update_vcpu_system_time`: when the vCPU is scheduled in and
/// when its vcpu_info moves. Not on every entry: the TSC rate is fixed,
/// so the guest's extrapolation from the last stamp (tsc_timestamp,
/// system_time, the scale) stays on the hypervisor's clock (to within
/// the scale's 2^-32 rounding: nanoseconds over many seconds).
pub fn refresh_time(domain: &Domain, vcpu: usize) {
    let Some((frame, offset)) = vcpu_info(domain, vcpu) else {
        return;
    };
    let t = offset + VI_TIME;
    // The TSC rate is fixed after boot: compute the scale once.
    static SCALE: spin::Once<(u32, i8)> = spin::Once::new();
    let &(mul, shift) = SCALE.call_once(|| evtchn::pvclock_scale(time::tsc_per_ms()));
    let version = shared::load_u32(frame, t);
    let odd = version.wrapping_add(1) | 1;
    shared::store_u32(frame, t, odd);
    let tsc = time::rdtsc();
    shared::store_u64(frame, t + 8, tsc);
    shared::store_u64(frame, t + 16, time::system_time_at(tsc));
    shared::store_u32(frame, t + 24, mul);
    // tsc_shift (i8) @28 and flags (u8) @29 share one u32 with the padding.
    shared::store_u32(frame, t + 28, shift as u8 as u32);
    shared::store_u32(frame, t, odd.wrapping_add(1));
}

/// Arms `vcpu`'s singleshot timer (absolute system time; 0 cancels).
pub fn set_timer(domain: &Domain, vcpu: usize, deadline_ns: u64) {
    domain.timer_deadline[vcpu].store(deadline_ns, Ordering::SeqCst);
    note_deadline(deadline_ns);
}

pub fn set_poll_deadline(domain: &Domain, vcpu: usize, deadline_ns: u64) {
    domain.poll_deadline[vcpu].store(deadline_ns, Ordering::SeqCst);
    note_deadline(deadline_ns);
}

/// The earliest armed timer or poll deadline of any vCPU (system-time ns;
/// 0 = none).
pub fn next_deadline() -> u64 {
    NEXT_DEADLINE.load(Ordering::SeqCst)
}

fn note_deadline(deadline: u64) {
    if deadline != 0 {
        let _ = NEXT_DEADLINE.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
            (cur == 0 || deadline < cur).then_some(deadline)
        });
    }
}

/// Fires expired timers: VIRQ_TIMER for singleshot timers, a wake-up for
/// poll time-outs. Called from every CPU's scheduler loop.
pub fn run_timers() {
    super::foreign::release_quarantine();
    super::registry::stop_when_settled();
    super::devices::deliver_pending();
    super::devices::poll_dma_faults();
    poll_console_input();
    let next = NEXT_DEADLINE.load(Ordering::SeqCst);
    let now = time::system_time_ns();
    if next == 0 || now < next {
        return;
    }
    if NEXT_DEADLINE
        .compare_exchange(next, 0, Ordering::SeqCst, Ordering::SeqCst)
        .is_err()
    {
        return; // another CPU is on it
    }
    // A deadline is taken only if it is still the one read: the vCPU may
    // set a new timer meanwhile on another CPU, and clearing that one
    // would lose it.
    let take = |slot: &AtomicU64| -> bool {
        let deadline = slot.load(Ordering::SeqCst);
        if deadline == 0 {
            return false;
        }
        if deadline > now {
            note_deadline(deadline);
            return false;
        }
        slot.compare_exchange(deadline, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    };
    for domain in registry::all() {
        for vcpu in 0..domain.vcpus.len() {
            if take(&domain.timer_deadline[vcpu]) {
                send_virq(&domain, evtchn::VIRQ_TIMER, vcpu as u32);
            }
            if take(&domain.poll_deadline[vcpu]) {
                sched::wake(&domain, vcpu);
            }
        }
    }
}

const HVM_PARAM_STORE_PFN: usize = 1;
const HVM_PARAM_STORE_EVTCHN: usize = 2;
pub(super) const HVM_PARAM_CONSOLE_PFN: usize = 17;
const HVM_PARAM_CONSOLE_EVTCHN: usize = 18;
/// The domain that runs the backends (console, XenStore).
const BACKEND_DOMAIN: DomId = 0;

/// Gives a new DomU its PV console and XenStore channels, as Xen's
/// toolstack does: an unbound port for each, offered to Dom0, and the
/// ring pages' frame numbers and ports in its HVM parameters.
pub fn connect_backends(
    domain: &Domain,
    console_gfn: u64,
    store_gfn: u64,
) -> Result<(), evtchn::EvtchnError> {
    let mut channels = CHANNELS.lock();
    let console = channels.alloc_unbound(domain.id, domain.id, BACKEND_DOMAIN)?;
    let store = channels.alloc_unbound(domain.id, domain.id, BACKEND_DOMAIN)?;
    drop(channels);
    let mut params = domain.hvm_params.lock();
    params[HVM_PARAM_CONSOLE_PFN] = console_gfn;
    params[HVM_PARAM_CONSOLE_EVTCHN] = console as u64;
    params[HVM_PARAM_STORE_PFN] = store_gfn;
    params[HVM_PARAM_STORE_EVTCHN] = store as u64;
    Ok(())
}
