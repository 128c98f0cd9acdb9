//! `domctl`: Xen's privileged interface for managing one domain, Dom0's
//! only (`xen/include/public/domctl.h`, interface version 0x17 of Xen
//! 4.19, the version Pavise reports). As Xen's `do_domctl`: the whole structure is read once
//! (-EFAULT), a wrong interface version is -EACCES, a domain that does not
//! exist -ESRCH, and then a DomU is refused with -EPERM (XSM's default
//! policy).
//!
//! Implemented: getdomaininfo, pausedomain, unpausedomain, destroydomain,
//! max_mem, settimeoffset. Building a domain at run time
//! (createdomain, setvcpucontext) is not yet: those are -ENOSYS.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use pv_abi::domctl::{
    DESTROYDOMAIN, Domctl, GETDOMAININFO, GetDomainInfo, INTERFACE_VERSION, MAX_MEM, MaxMem,
    PAUSEDOMAIN, SETTIMEOFFSET, SetTimeOffset, UNPAUSEDOMAIN, XEN_DOMINF_BLOCKED, XEN_DOMINF_DYING,
    XEN_DOMINF_HAP, XEN_DOMINF_HVM_GUEST, XEN_DOMINF_PAUSED, XEN_DOMINF_RUNNING,
};
use pv_abi::domctl::{member, set_member};
use zerocopy::FromZeros;

use super::{Caller, Errno, HcResult};
use crate::domain::registry::{self, DomId, Domain, EndReason, PAUSE_COUNT_MAX, vcpu_state};
use crate::domain::sched;
use crate::mm::frame::FRAME_SIZE;

/// Xen's `XEN_INVALID_MAX_VCPU_ID`: a domain with no vCPUs.
const INVALID_MAX_VCPU_ID: u32 = !0;

pub(super) fn domctl_op(c: &Caller, arg: u64) -> HcResult {
    let mut op: Domctl = c.read(arg)?;
    if op.interface_version != INTERFACE_VERSION {
        return Err(Errno::Acces);
    }
    // Every command here names an existing domain (since Xen 4.18 also
    // getdomaininfo, which had answered for the next one up).
    let d = registry::lookup(op.domain as DomId).ok_or(Errno::Srch)?;
    if !c.domain.privileged {
        return Err(Errno::Perm);
    }
    match op.cmd {
        GETDOMAININFO => {
            set_member(&mut op.u, &domain_info(&d));
            c.write(arg, &op)?;
            Ok(0)
        }
        PAUSEDOMAIN => pause(c, &d).map(|()| 0),
        UNPAUSEDOMAIN => unpause(&d).map(|()| 0),
        DESTROYDOMAIN => {
            if Arc::ptr_eq(&d, c.domain) {
                return Err(Errno::Inval);
            }
            d.end(EndReason::Destroyed);
            Ok(0)
        }
        MAX_MEM => {
            let max: MaxMem = member(&op.u);
            // Memory is fixed when a domain is built: only its own size is
            // accepted (Xen would let it balloon up to the new limit).
            if max.max_memkb.saturating_mul(1024) != d.mem_bytes {
                return Err(Errno::Inval);
            }
            Ok(0)
        }
        SETTIMEOFFSET => {
            let offset: SetTimeOffset = member(&op.u);
            d.time_offset_seconds
                .store(offset.time_offset_seconds, Ordering::SeqCst);
            crate::domain::events::write_wallclock(&d);
            Ok(0)
        }
        _ => Err(Errno::NoSys),
    }
}

/// Pausing is counted, at most `PAUSE_COUNT_MAX` deep (-EOVERFLOW beyond,
/// as Xen); a domain cannot pause itself (-EINVAL).
fn pause(c: &Caller, d: &Arc<Domain>) -> Result<(), Errno> {
    if Arc::ptr_eq(d, c.domain) {
        return Err(Errno::Inval);
    }
    d.pause_count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < PAUSE_COUNT_MAX).then_some(n + 1)
        })
        .map_err(|_| Errno::Overflow)?;
    Ok(())
}

/// Undoes one pause; unpausing a domain nobody paused is -EINVAL.
fn unpause(d: &Arc<Domain>) -> Result<(), Errno> {
    let before = d
        .pause_count
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .map_err(|_| Errno::Inval)?;
    if before == 1 {
        sched::unparked(d);
    }
    Ok(())
}

/// `xen_domctl_getdomaininfo` for `d` (getdomaininfolist's entries too).
pub(super) fn domain_info(d: &Domain) -> GetDomainInfo {
    let mut info = GetDomainInfo::new_zeroed();
    info.domain = d.id;
    let states: alloc::vec::Vec<u8> = d
        .vcpu_states
        .iter()
        .map(|s| s.load(Ordering::SeqCst))
        .collect();
    let online = states.iter().filter(|&&s| s != vcpu_state::DOWN).count();
    let mut flags = XEN_DOMINF_HVM_GUEST | XEN_DOMINF_HAP;
    if d.is_dead() {
        flags |= XEN_DOMINF_DYING;
    }
    if d.is_paused() {
        flags |= XEN_DOMINF_PAUSED;
    }
    if states.contains(&vcpu_state::RUNNING) {
        flags |= XEN_DOMINF_RUNNING;
    } else if online > 0
        && states
            .iter()
            .all(|&s| s == vcpu_state::DOWN || s == vcpu_state::BLOCKED)
    {
        flags |= XEN_DOMINF_BLOCKED;
    }
    info.flags = flags;
    info.tot_pages = d.total_pages();
    info.max_pages = d.mem_bytes / FRAME_SIZE;
    info.shared_info_frame = d.shared_info.start() / FRAME_SIZE;
    info.cpu_time = d.cpu_time_ns();
    info.nr_online_vcpus = online as u32;
    info.max_vcpu_id = match d.vcpus.len() {
        0 => INVALID_MAX_VCPU_ID,
        n => n as u32 - 1,
    };
    info.gpaddr_bits = 48;
    info.arch_config.emulation_flags = pv_abi::domctl::XEN_X86_EMU_LAPIC;
    info
}
