//! The toolstack's side of Xen's privileged interface: domctl and sysctl
//! calls (list, info, pause, unpause, destroy), and the xl-like commands
//! typed on Dom0's console, answered with `xl`'s output formats.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use guest_shim::Errno;
use guest_shim::hypercall;
use pv_abi::domctl::{self, Domctl, GetDomainInfo, member, set_member};
use pv_abi::sysctl::{self, GetDomainInfoList, PhysInfo, ReadConsole, Sysctl};
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

/// Reads the hypervisor's console ring into `buffer` with
/// `XEN_SYSCTL_readconsole`: from `from` (or the oldest byte held), and
/// forgetting what was read if `clear`. Returns the bytes read and the
/// index after them.
pub fn read_console(
    from: Option<u32>,
    clear: bool,
    buffer: &mut [u8],
) -> Result<(usize, u32), Errno> {
    let mut op = sysctl_op(sysctl::READCONSOLE);
    let mut request = ReadConsole::new_zeroed();
    request.clear = clear.into();
    request.incremental = from.is_some().into();
    request.index = from.unwrap_or(0);
    request.buffer = buffer.as_mut_ptr() as u64;
    request.count = u32::try_from(buffer.len()).unwrap_or(u32::MAX);
    set_member(&mut op.u, &request);
    hypercall::sysctl(&mut op)?;
    let answer: ReadConsole = member(&op.u);
    Ok(((answer.count as usize).min(buffer.len()), answer.index))
}

/// The whole console ring as text, as `xl dmesg` prints it (cleared
/// after reading if `clear`, as `xl dmesg -c`).
pub fn console_ring(clear: bool) -> Result<String, Errno> {
    let mut text = Vec::new();
    let mut buffer = alloc::vec![0u8; 4096];
    let mut from = None;
    // The ring holds 16 KiB: a writer racing the reads cannot keep it
    // going for ever.
    for _ in 0..64 {
        let (n, next) = read_console(from, clear, &mut buffer)?;
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buffer[..n]);
        from = Some(next);
    }
    if text.last().is_some_and(|&b| b != b'\n') {
        text.push(b'\n');
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
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

/// Gives up restarting a domain that keeps ending this way after this
/// many restarts (xl restarts for ever; a crash loop would then never
/// stop printing).
pub const MAX_RESTARTS: u32 = 3;

/// Domains built at run time that may be alive at once: each costs Dom0
/// two ring pages and its XenStore nodes from a 1 MiB heap, which must
/// not run out (an allocation failure would stop Dom0).
pub const MAX_MANAGED: usize = 32;

/// A domain this toolstack built, with the config it came from.
struct Managed {
    cfg: xlcfg::DomainConfig,
    restarts: u32,
    /// Kept shut down for examination (`preserve`); already reported.
    preserved: bool,
}

/// What the toolstack holds: the files it builds domains from (boot
/// modules and uploads, [`dom0::files`]) and the domains it built.
pub struct Toolstack {
    pub files: dom0::files::Files<'static>,
    managed: alloc::collections::BTreeMap<DomId, Managed>,
}

impl Toolstack {
    /// `boot`: (name, bytes) of Dom0's `file NAME` start-info modules;
    /// `room`: free RAM for uploaded files.
    pub fn new(boot: Vec<(&'static str, &'static [u8])>, room: &'static mut [u8]) -> Self {
        Self {
            files: dom0::files::Files::new(boot, room),
            managed: alloc::collections::BTreeMap::new(),
        }
    }

    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name)
    }

    pub fn files(&self) -> impl Iterator<Item = &str> + '_ {
        self.files.list().into_iter().map(|(n, _)| n)
    }
}

/// `xl create NAME`: builds the domain the held config file `name`
/// describes, connects its console and XenStore, and starts it. The
/// answer is the new domain's id, or one sentence.
pub fn create(
    host: &mut crate::console::Host,
    name: &str,
    overrides: &[String],
) -> Result<DomId, String> {
    // A host path names the file Dom0 holds under its last part.
    let name = crate::builder::basename(name);
    let Some(bytes) = host.toolstack.file(name) else {
        let held: Vec<&str> = host.toolstack.files().collect();
        return Err(alloc::format!(
            "there is no config file {name} among Dom0's files ({}); give it with cargo xtask run --config or --file, or create it from the host with cargo xtask xl create PATH, which sends it",
            if held.is_empty() {
                String::from("none")
            } else {
                held.join(", ")
            }
        ));
    };
    let text = core::str::from_utf8(bytes)
        .map_err(|_| alloc::format!("{name} is not a text file, so not an xl.cfg config"))?;
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let cfg = xlcfg::parse_with(text, &overrides).map_err(|e| alloc::format!("{name}: {e}"))?;
    if host.toolstack.managed.len() >= MAX_MANAGED {
        return Err(alloc::format!(
            "Dom0 already runs {MAX_MANAGED} domains it built, as many as it serves at once; destroy one first"
        ));
    }
    if find_by_name(&mut host.store, &cfg.name).is_some() {
        return Err(alloc::format!(
            "a domain called {} already exists; destroy it first or rename this one",
            cfg.name
        ));
    }
    start(host, cfg, 0)
}

/// The MAC a run-time domain's interface gets when its config gives none
/// (xl picks a random one in Xen's OUI): 00:16:3e, then the domain id
/// with the top bit set (boot-time DomUs' defaults have it clear), then
/// the handle.
pub fn default_mac(domid: DomId, handle: u32) -> [u8; 6] {
    let [hi, lo] = domid.to_be_bytes();
    [0x00, 0x16, 0x3e, 0x80 | hi, lo, handle as u8]
}

/// The held disks `cfg` names, as PCI slots (in `cfg.disks` order), if
/// every one is held, free and named once; else one sentence.
fn disk_slots(host: &crate::console::Host, cfg: &xlcfg::DomainConfig) -> Result<Vec<u8>, String> {
    let mut slots: Vec<u8> = Vec::new();
    for disk in &cfg.disks {
        let name = crate::builder::basename(&disk.target);
        let Some(slot) = host.blkback.named_slot(name) else {
            let held: Vec<&str> = host.blkback.names().collect();
            return Err(alloc::format!(
                "{}: its disk {name} is not attached ({}); start Pavise with cargo xtask run --disk {}",
                cfg.name,
                if held.is_empty() {
                    String::from("Dom0 holds no disks")
                } else {
                    alloc::format!("Dom0 holds {}", held.join(", "))
                },
                disk.target
            ));
        };
        if slots.contains(&slot) {
            return Err(alloc::format!(
                "{}: it names the disk {name} twice; a disk serves one device",
                cfg.name
            ));
        }
        if let Some((domid, dev)) = host.blkback.user_of(slot) {
            return Err(alloc::format!(
                "{}: its disk {name} is in use as d{domid}'s {dev}; destroy d{domid} first",
                cfg.name
            ));
        }
        slots.push(slot);
    }
    for vif in &cfg.vifs {
        if let Some(mac) = vif.mac
            && host.netback.mac_in_use(mac)
        {
            return Err(alloc::format!(
                "{}: the mac {} is another interface's; give this vif a mac of its own",
                cfg.name,
                dom0::netback::Mac(mac)
            ));
        }
    }
    Ok(slots)
}

/// Gives the new domain `domid` the disks (in `slots`) and interfaces of
/// `cfg`, as xl adds devices before it unpauses a domain.
fn attach_devices(
    host: &mut crate::console::Host,
    domid: DomId,
    cfg: &xlcfg::DomainConfig,
    slots: &[u8],
) -> Result<(), String> {
    for (disk, &pci_slot) in cfg.disks.iter().zip(slots) {
        let spec = dom0::cmdline::VbdSpec {
            domid,
            dev: disk.vdev.clone(),
            readonly: disk.readonly,
            pci_slot,
        };
        host.blkback.attach(&spec, host.store.store())?;
    }
    for (handle, vif) in cfg.vifs.iter().enumerate() {
        let handle = handle as u32;
        let spec = dom0::cmdline::VifSpec {
            domid,
            handle,
            mac: vif.mac.unwrap_or_else(|| default_mac(domid, handle)),
        };
        host.netback.attach(&spec, host.store.store())?;
    }
    Ok(())
}

/// Builds and starts `cfg` (its `restarts`-th restart).
fn start(
    host: &mut crate::console::Host,
    cfg: xlcfg::DomainConfig,
    restarts: u32,
) -> Result<DomId, String> {
    let slots = disk_slots(host, &cfg)?;
    let files = &host.toolstack;
    let built = crate::builder::build(&cfg, |n| files.file(n))?;
    let domid = built.domid;
    let info = dom0::store::DomainInfo {
        domid,
        name: cfg.name.clone(),
        vcpus: cfg.vcpus,
        mem_kib: Some(u64::from(cfg.memory_mib) * 1024),
        store: built.store,
        console: Some(built.console),
    };
    let connected = crate::console::Console::connect(domid, built.console.gfn, built.console.port)
        .and_then(|console| {
            host.store.connect(&info)?;
            Ok(console)
        });
    let console = match connected {
        Ok(c) => c,
        Err(e) => {
            let _ = destroy(domid);
            return Err(alloc::format!("{}: {e}", cfg.name));
        }
    };
    host.consoles.push(console);
    host.consoles_changed = true;
    if let Err(e) = attach_devices(host, domid, &cfg, &slots) {
        let _ = destroy(domid);
        forget(host, domid);
        return Err(alloc::format!("{}: {e}", cfg.name));
    }
    if let Err(e) = unpause(domid) {
        let _ = destroy(domid);
        forget(host, domid);
        return Err(alloc::format!(
            "{}: cannot unpause it: {}",
            cfg.name,
            why(e)
        ));
    }
    host.toolstack.managed.insert(
        domid,
        Managed {
            cfg,
            restarts,
            preserved: false,
        },
    );
    Ok(domid)
}

/// After a domain ended (VIRQ_DOM_EXC) or a command: applies
/// `on_poweroff`/`on_reboot`/`on_crash` to the domains this toolstack
/// built that have shut down, and disconnects the backends of every
/// domain that is gone (firing `@releaseDomain`). Returns what it did,
/// a line each.
pub fn reap(host: &mut crate::console::Host) -> Vec<String> {
    use pv_abi::hypercall::ShutdownReason;
    use xlcfg::Action;
    let mut said = Vec::new();
    let Ok(list) = domains() else {
        return said;
    };
    for info in &list {
        let Some(managed) = host.toolstack.managed.get_mut(&info.domain) else {
            continue;
        };
        if info.flags & domctl::XEN_DOMINF_SHUTDOWN == 0 || managed.preserved {
            continue;
        }
        let code =
            (info.flags >> domctl::XEN_DOMINF_SHUTDOWNSHIFT) & domctl::XEN_DOMINF_SHUTDOWNMASK;
        let (what, action) = match ShutdownReason::try_from(code).ok() {
            Some(ShutdownReason::Poweroff) => ("powered off", managed.cfg.on_poweroff),
            Some(ShutdownReason::Reboot) => ("rebooted", managed.cfg.on_reboot),
            _ => ("crashed", managed.cfg.on_crash),
        };
        let domid = info.domain;
        let name = managed.cfg.name.clone();
        match action {
            Action::Preserve => {
                managed.preserved = true;
                said.push(alloc::format!(
                    "dom0: d{domid} ({name}) {what}; preserved as on_* says: xl destroy {domid} removes it"
                ));
            }
            Action::Destroy | Action::CoredumpDestroy | Action::SoftReset => {
                let _ = destroy(domid);
                said.push(alloc::format!("dom0: d{domid} ({name}) {what}; destroyed"));
            }
            Action::Restart | Action::RenameRestart | Action::CoredumpRestart => {
                let restarts = managed.restarts + 1;
                let cfg = managed.cfg.clone();
                let _ = destroy(domid);
                forget(host, domid);
                if restarts > MAX_RESTARTS {
                    said.push(alloc::format!(
                        "dom0: d{domid} ({name}) {what} again; restarted {MAX_RESTARTS} times already, so destroyed"
                    ));
                    continue;
                }
                match start(host, cfg, restarts) {
                    Ok(new) => said.push(alloc::format!(
                        "dom0: d{domid} ({name}) {what}; restarted as d{new} (restart {restarts} of {MAX_RESTARTS})"
                    )),
                    Err(e) => said.push(alloc::format!(
                        "dom0: d{domid} ({name}) {what}; cannot restart it: {e}"
                    )),
                }
            }
        }
    }
    let live: Vec<DomId> = match domains() {
        Ok(list) => list.iter().map(|d| d.domain).collect(),
        Err(_) => return said,
    };
    let gone: Vec<DomId> = host
        .consoles
        .iter()
        .map(|c| c.domid())
        .chain(host.toolstack.managed.keys().copied())
        .filter(|d| !live.contains(d))
        .collect();
    for domid in gone {
        forget(host, domid);
    }
    said
}

/// Drops what Dom0 held for a domain that is gone: its disks and
/// interfaces, console, XenStore connection and home (`@releaseDomain`
/// fires), its config.
fn forget(host: &mut crate::console::Host, domid: DomId) {
    let before = host.consoles.len();
    host.consoles.retain(|c| c.domid() != domid);
    host.consoles_changed |= host.consoles.len() != before;
    host.blkback.detach(domid, host.store.store());
    host.netback.detach(domid, host.store.store());
    if host.store.serves(domid) {
        host.store.disconnect(domid);
    }
    host.toolstack.managed.remove(&domid);
}
