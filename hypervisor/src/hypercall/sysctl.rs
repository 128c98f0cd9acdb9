//! `sysctl`: Xen's privileged interface for the whole host, Dom0's only
//! (`xen/include/public/sysctl.h`, interface version 0x15 of Xen 4.19,
//! the version Pavise reports).
//! As Xen's `do_sysctl`: read once (-EFAULT), a wrong interface version is
//! -EACCES, then a DomU is refused with -EPERM.
//!
//! Implemented: readconsole, physinfo and getdomaininfolist; other
//! commands -ENOSYS.

use alloc::vec;
use pv_abi::domctl::{member, set_member};
use pv_abi::sysctl::{
    GETDOMAININFOLIST, GetDomainInfoList, INTERFACE_VERSION, PHYSINFO, PhysInfo, READCONSOLE,
    ReadConsole, Sysctl, XEN_SYSCTL_PHYSCAP_GNTTAB_V1, XEN_SYSCTL_PHYSCAP_HAP,
    XEN_SYSCTL_PHYSCAP_HVM,
};
use zerocopy::FromZeros;

use super::{Caller, Errno, HcResult};
use crate::domain::registry;

/// Entries of getdomaininfolist written per call at most: a caller
/// cannot make one hypercall walk an unbounded list.
const DOMAININFO_BATCH_MAX: u32 = 1024;

pub(super) fn sysctl_op(c: &Caller, arg: u64) -> HcResult {
    let mut op: Sysctl = c.read(arg)?;
    if op.interface_version != INTERFACE_VERSION {
        return Err(Errno::Acces);
    }
    if !c.domain.privileged {
        return Err(Errno::Perm);
    }
    match op.cmd {
        READCONSOLE => {
            let mut request: ReadConsole = member(&op.u);
            read_console(c, &mut request)?;
            set_member(&mut op.u, &request);
            c.write(arg, &op)?;
            Ok(0)
        }
        PHYSINFO => {
            set_member(&mut op.u, &physinfo());
            c.write(arg, &op)?;
            Ok(0)
        }
        GETDOMAININFOLIST => {
            let mut list: GetDomainInfoList = member(&op.u);
            let max = list.max_domains.min(DOMAININFO_BATCH_MAX) as usize;
            let entry_size = core::mem::size_of::<pv_abi::domctl::GetDomainInfo>() as u64;
            let mut written = 0u32;
            for d in registry::all()
                .into_iter()
                .filter(|d| d.id >= list.first_domain)
                .take(max)
            {
                let at = list.buffer.wrapping_add(u64::from(written) * entry_size);
                c.write(at, &super::domctl::domain_info(&d))?;
                written += 1;
            }
            list.num_domains = written;
            set_member(&mut op.u, &list);
            c.write(arg, &op)?;
            Ok(0)
        }
        _ => Err(Errno::NoSys),
    }
}

/// Xen's `read_console_ring`: copies the ring (from `index` if
/// `incremental` and still held) into the caller's buffer, then forgets
/// what was read if `clear`. The bytes go through a bounce buffer so the
/// ring's lock is never held while touching guest memory.
fn read_console(c: &Caller, request: &mut ReadConsole) -> Result<(), Errno> {
    let from = (request.incremental != 0).then_some(request.index);
    let mut bytes = vec![0u8; (request.count as usize).min(crate::conring::SIZE)];
    let (copied, next) = crate::console::read_ring(from, &mut bytes);
    if copied > 0 {
        c.write(request.buffer, &bytes[..copied])?;
    }
    if request.clear != 0 {
        crate::console::clear_ring_to(next);
    }
    request.count = copied as u32;
    request.index = next;
    Ok(())
}

/// The host as Xen's `xl info` shows it: one socket, one thread per core,
/// one NUMA node; HVM with HAP and nothing else (no PV guests, no shadow
/// paging).
fn physinfo() -> PhysInfo {
    let cpus = crate::arch::smp::online() as u32;
    let mut info = PhysInfo::new_zeroed();
    info.threads_per_core = 1;
    info.cores_per_socket = cpus;
    info.nr_cpus = cpus;
    info.max_cpu_id = cpus.saturating_sub(1);
    info.nr_nodes = 1;
    info.max_node_id = 0;
    info.cpu_khz = crate::arch::time::tsc_per_ms() as u32;
    info.capabilities =
        XEN_SYSCTL_PHYSCAP_HVM | XEN_SYSCTL_PHYSCAP_HAP | XEN_SYSCTL_PHYSCAP_GNTTAB_V1;
    let frames = crate::mm::frames();
    info.total_pages = frames.managed_frames() as u64;
    info.free_pages = frames.free_frames() as u64;
    // max_mfn stays 0: no caller of ours needs the host's highest frame.
    info
}
