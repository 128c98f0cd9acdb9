//! The toolstack's side of Xen's privileged interface: domctl and sysctl
//! calls (list, info, pause, unpause, destroy), and the xl-like commands
//! typed on Dom0's console, answered with `xl`'s output formats.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use guest_shim::Errno;
use guest_shim::hypercall;
use pv_abi::domctl::{self, Domctl, GetDomainInfo, member, set_member};
use pv_abi::sysctl::{self, GetDomainInfoList, PhysInfo, Sysctl};
use zerocopy::FromZeros;

use dom0::store::DomId;
use dom0::xl::{DomainRow, DomainState, HostInfo};

use crate::xenstored::Xenstored;

fn domctl_op(cmd: u32, domain: DomId) -> Domctl {
    let mut op = Domctl::new_zeroed();
    op.cmd = cmd;
    op.interface_version = domctl::INTERFACE_VERSION;
    op.domain = domain;
    op
}

fn sysctl_op(cmd: u32) -> Sysctl {
    let mut op = Sysctl::new_zeroed();
    op.cmd = cmd;
    op.interface_version = sysctl::INTERFACE_VERSION;
    op
}

/// Every domain, as `XEN_SYSCTL_getdomaininfolist` gives them, in
/// batches as libxc asks.
pub fn domains() -> Result<Vec<GetDomainInfo>, Errno> {
    const BATCH: usize = 64;
    let mut all = Vec::new();
    let mut first: DomId = 0;
    loop {
        let mut buffer: Vec<GetDomainInfo> =
            (0..BATCH).map(|_| GetDomainInfo::new_zeroed()).collect();
        let mut op = sysctl_op(sysctl::GETDOMAININFOLIST);
        let mut list = GetDomainInfoList::new_zeroed();
        list.first_domain = first;
        list.max_domains = BATCH as u32;
        list.buffer = buffer.as_mut_ptr() as u64;
        set_member(&mut op.u, &list);
        hypercall::sysctl(&mut op)?;
        let answer: GetDomainInfoList = member(&op.u);
        let n = (answer.num_domains as usize).min(BATCH);
        buffer.truncate(n);
        let last = buffer.last().map(|d| d.domain);
        all.extend(buffer);
        match last {
            Some(id) if n == BATCH => first = id + 1,
            _ => return Ok(all),
        }
    }
}

pub fn pause(domid: DomId) -> Result<(), Errno> {
    hypercall::domctl(&mut domctl_op(domctl::PAUSEDOMAIN, domid)).map(|_| ())
}

pub fn unpause(domid: DomId) -> Result<(), Errno> {
    hypercall::domctl(&mut domctl_op(domctl::UNPAUSEDOMAIN, domid)).map(|_| ())
}

pub fn destroy(domid: DomId) -> Result<(), Errno> {
    hypercall::domctl(&mut domctl_op(domctl::DESTROYDOMAIN, domid)).map(|_| ())
}

pub fn physinfo() -> Result<PhysInfo, Errno> {
    let mut op = sysctl_op(sysctl::PHYSINFO);
    hypercall::sysctl(&mut op)?;
    Ok(member(&op.u))
}

/// A domain's name: Dom0's is xl's `Domain-0`; a DomU's is its XenStore
/// `name` node.
fn name_of(store: &mut Xenstored, domid: DomId) -> String {
    if domid == 0 {
        return "Domain-0".to_string();
    }
    store
        .store()
        .local_read(&alloc::format!("/local/domain/{domid}/name"))
        .unwrap_or_else(|| alloc::format!("(d{domid})"))
}

fn row(store: &mut Xenstored, info: &GetDomainInfo) -> DomainRow {
    DomainRow {
        domid: info.domain,
        name: name_of(store, info.domain),
        memory_kib: info.tot_pages * 4,
        vcpus: info.nr_online_vcpus,
        state: DomainState::from_dominf(info.flags),
        cpu_time_ns: info.cpu_time,
    }
}

/// `xl list` rows for every domain.
pub fn rows(store: &mut Xenstored) -> Result<Vec<DomainRow>, Errno> {
    Ok(domains()?.iter().map(|d| row(store, d)).collect())
}

/// `xl info`'s facts.
pub fn host_info() -> Result<HostInfo, Errno> {
    let phys = physinfo()?;
    let (major, minor) = hypercall::xen_version()?;
    let extra = hypercall::xen_extraversion()
        .map(|e| e.as_str().to_string())
        .unwrap_or_default();
    Ok(HostInfo {
        nr_cpus: phys.nr_cpus,
        total_memory_kib: phys.total_pages * 4,
        free_memory_kib: phys.free_pages * 4,
        xen_major: major,
        xen_minor: minor,
        xen_extra: extra,
        cpu_khz: phys.cpu_khz,
    })
}

/// The domain called `name` (its XenStore `name`; Dom0 is `Domain-0`).
pub fn find_by_name(store: &mut Xenstored, name: &str) -> Option<DomId> {
    domains()
        .ok()?
        .iter()
        .map(|d| d.domain)
        .find(|&d| name_of(store, d) == name)
}

/// What a refused domctl means, in words.
pub fn why(e: Errno) -> &'static str {
    match e {
        Errno::ESRCH => "no such domain (-ESRCH)",
        Errno::EINVAL => "not in a state that allows it (-EINVAL)",
        Errno::EOVERFLOW => "paused too many times already (-EOVERFLOW)",
        Errno::EPERM => "not permitted (-EPERM)",
        Errno::EACCES => "the hypervisor speaks another domctl version (-EACCES)",
        Errno::ENOSYS => "the hypervisor does not offer it (-ENOSYS)",
        _ => "the hypervisor refused it",
    }
}
