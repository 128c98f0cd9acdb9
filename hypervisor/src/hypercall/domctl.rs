//! `domctl`: Xen's privileged interface for managing one domain, Dom0's
//! only (`xen/include/public/domctl.h`, interface version 0x17 of Xen
//! 4.19, the version Pavise reports). As Xen's `do_domctl`: the whole structure is read once
//! (-EFAULT), a wrong interface version is -EACCES, a domain that does not
//! exist -ESRCH, and then a DomU is refused with -EPERM (XSM's default
//! policy).
//!
//! Implemented: createdomain, max_vcpus, max_mem, setvcpucontext (the
//! PVH entry state of a domain being built), getdomaininfo, pausedomain,
//! unpausedomain, destroydomain, settimeoffset; the rest is -ENOSYS.
//! With `XENMEM_populate_physmap` and foreign mapping for another domain
//! (`hypercall::memory_op`) that is what Dom0 needs to build a PVH
//! domain itself, as libxc does.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use pv_abi::domctl::{
    CREATEDOMAIN, CreateDomain, DESTROYDOMAIN, Domctl, GETDOMAININFO, GetDomainInfo,
    INTERFACE_VERSION, MAX_MEM, MAX_VCPUS, MaxMem, MaxVcpus, PAUSEDOMAIN, SETTIMEOFFSET,
    SETVCPUCONTEXT, SetTimeOffset, UNPAUSEDOMAIN, VGCF_ONLINE, VcpuContext, VcpuGuestContext,
    XEN_DOMCTL_CDF_HAP, XEN_DOMCTL_CDF_HVM, XEN_DOMINF_BLOCKED, XEN_DOMINF_DYING, XEN_DOMINF_HAP,
    XEN_DOMINF_HVM_GUEST, XEN_DOMINF_PAUSED, XEN_DOMINF_RUNNING, XEN_DOMINF_SHUTDOWN,
    XEN_DOMINF_SHUTDOWNSHIFT, XEN_X86_EMU_LAPIC,
};
use pv_abi::domctl::{member, set_member};
use zerocopy::FromZeros;

use super::{Caller, Errno, HcResult};
use crate::domain::registry::{self, DomId, Domain, EndReason, PAUSE_COUNT_MAX, vcpu_state};
use crate::domain::sched;
use crate::mm::frame::FRAME_SIZE;
use crate::virt::VirtCpu;

/// Xen's `XEN_INVALID_MAX_VCPU_ID`: a domain with no vCPUs.
const INVALID_MAX_VCPU_ID: u32 = !0;

pub(super) fn domctl_op(c: &Caller, arg: u64) -> HcResult {
    let mut op: Domctl = c.read(arg)?;
    if op.interface_version != INTERFACE_VERSION {
        return Err(Errno::Acces);
    }
    if op.cmd == CREATEDOMAIN {
        if !c.domain.privileged {
            return Err(Errno::Perm);
        }
        op.domain = create(op.domain, &member(&op.u))?;
        return c.write(arg, &op).map(|()| 0);
    }
    // Every other command names an existing domain (since Xen 4.18 also
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
            let bytes = max.max_memkb.saturating_mul(1024);
            if bytes == d.mem_bytes() {
                return Ok(0);
            }
            // A domain being built gets its size here; once it runs its
            // memory is fixed (Xen would let it balloon up to the limit).
            if d.started.load(Ordering::SeqCst)
                || !bytes.is_multiple_of(FRAME_SIZE)
                || bytes > MAX_DOMAIN_BYTES
            {
                return Err(Errno::Inval);
            }
            d.set_mem_bytes(bytes).map_err(|e| match e {
                crate::mm::guest::ResizeError::InUse => Errno::Inval,
                crate::mm::guest::ResizeError::NoMemory => Errno::NoMem,
            })?;
            Ok(0)
        }
        MAX_VCPUS => {
            // The vCPUs were made by createdomain; as Xen since 4.12 this
            // only confirms their number.
            let max: MaxVcpus = member(&op.u);
            if Arc::ptr_eq(&d, c.domain) || max.max as usize != d.vcpus.len() {
                return Err(Errno::Inval);
            }
            Ok(0)
        }
        SETVCPUCONTEXT => set_vcpu_context(c, &d, &member(&op.u)).map(|()| 0),
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

/// Domains Pavise can hold at once besides Dom0.
const MAX_DOMAINS: usize = 256;
/// Xen's `DOMID_FIRST_RESERVED`: ids from here on name no domain.
const DOMID_FIRST_RESERVED: u16 = 0x7ff0;
/// Largest RAM a run-time domain may be given (the boot manifest's limit).
const MAX_DOMAIN_BYTES: u64 = crate::domain::manifest::MAX_DOMAIN_MIB << 20;
/// The id after which createdomain looks for a free one (Xen's `rover`:
/// ids are not reused at once, so a stale id names nobody).
static ROVER: spin::Mutex<u16> = spin::Mutex::new(0);

/// `XEN_DOMCTL_createdomain`: a PVH domain with its vCPUs and no memory,
/// paused until the toolstack has built it and unpauses it. Checks as
/// Xen's `sanitise_domain_config`: unknown flags, PV, shadow paging, IOMMU
/// or vPMU asked for, or no vCPUs are -EINVAL; emulation other than the
/// local APIC alone (PVH) is -EOPNOTSUPP; a taken id is -EEXIST.
fn create(wanted: u16, config: &CreateDomain) -> Result<u16, Errno> {
    const KNOWN_FLAGS: u32 = (1 << 8) - 1;
    const GRANT_VERSION_MASK: u32 = 0xf;
    let needed = XEN_DOMCTL_CDF_HVM | XEN_DOMCTL_CDF_HAP;
    if config.flags & !KNOWN_FLAGS != 0 || config.flags != needed {
        return Err(Errno::Inval);
    }
    if config.max_vcpus == 0 || config.max_vcpus > crate::domain::manifest::MAX_VCPUS {
        return Err(Errno::Inval);
    }
    if config.grant_opts & GRANT_VERSION_MASK > 1 || config.iommu_opts != 0 {
        return Err(Errno::Inval);
    }
    if config.arch.emulation_flags != XEN_X86_EMU_LAPIC {
        return Err(Errno::OpNotSupp);
    }
    if registry::all().len() > MAX_DOMAINS {
        return Err(Errno::NoMem);
    }
    let mut rover = ROVER.lock();
    let id = if wanted > 0 && wanted < DOMID_FIRST_RESERVED {
        if registry::lookup(wanted).is_some() {
            return Err(Errno::Exist);
        }
        wanted
    } else {
        let mut id = *rover;
        loop {
            id = if id + 1 >= DOMID_FIRST_RESERVED {
                1
            } else {
                id + 1
            };
            if registry::lookup(id).is_none() {
                break id;
            }
            if id == *rover {
                return Err(Errno::NoMem);
            }
        }
    };
    registry::create_blank(id, config.max_vcpus).map_err(|_| Errno::NoMem)?;
    *rover = id;
    Ok(id)
}

/// `XEN_DOMCTL_setvcpucontext` for a PVH domain being built: the vCPU
/// starts at the PVH 32-bit entry `user_regs.rip` with the start info's
/// address in `user_regs.rbx` (the state libxc's `vcpu_hvm` gives); with
/// `VGCF_online` it is brought up and runs once the domain is unpaused.
/// Only a vCPU that has not run may be set (-EINVAL), as Xen needs the
/// domain paused; a null context (Xen's vCPU reset) is -EINVAL too.
fn set_vcpu_context(c: &Caller, d: &Arc<Domain>, ctx: &VcpuContext) -> Result<(), Errno> {
    use core::mem::offset_of;
    use pv_abi::domctl::CpuUserRegs;
    let vcpu = ctx.vcpu as usize;
    if Arc::ptr_eq(d, c.domain) || vcpu >= d.vcpus.len() || ctx.ctxt == 0 {
        return Err(Errno::Inval);
    }
    let flags: u64 = c.read(
        ctx.ctxt
            .wrapping_add(offset_of!(VcpuGuestContext, flags) as u64),
    )?;
    let regs: CpuUserRegs = c.read(
        ctx.ctxt
            .wrapping_add(offset_of!(VcpuGuestContext, user_regs) as u64),
    )?;
    let (Ok(entry), Ok(start_info)) = (u32::try_from(regs.rip), u32::try_from(regs.rbx)) else {
        return Err(Errno::Inval);
    };
    if d.vcpu_states[vcpu].load(Ordering::SeqCst) != vcpu_state::DOWN || d.is_dead() {
        return Err(Errno::Inval);
    }
    {
        let mut slot = d.vcpus[vcpu].lock();
        slot.cpu
            .reset(crate::virt::StartState::Pvh32 { entry, start_info });
        slot.initialised = true;
    }
    if flags & VGCF_ONLINE != 0 {
        d.started.store(true, Ordering::SeqCst);
        sched::start(d, vcpu);
    }
    Ok(())
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
    match d.shutdown_code() {
        // Ended, and waiting for the toolstack to destroy it.
        Some(code) if !d.is_removed() => {
            flags |= XEN_DOMINF_SHUTDOWN | code << XEN_DOMINF_SHUTDOWNSHIFT;
        }
        _ if d.is_dead() => flags |= XEN_DOMINF_DYING,
        _ => {}
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
    info.max_pages = d.mem_bytes() / FRAME_SIZE;
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
