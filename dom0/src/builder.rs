//! Building a PVH DomU at run time, as libxc's builder does: create an
//! empty paused domain (`XEN_DOMCTL_createdomain`), give it its size
//! (`max_mem`) and memory (`XENMEM_populate_physmap`), lay out the kernel,
//! ramdisk, start info and ACPI tables with the same code the
//! hypervisor's boot-time builder uses (`pvh_builder::layout`), writing
//! them through foreign mappings of its pages, make its console and
//! XenStore channels, and set vCPU 0 at the PVH entry
//! (`XEN_DOMCTL_setvcpucontext`). The caller connects the backends and
//! unpauses it. A build that fails destroys what it had made.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use guest_shim::pages::PageBuf;
use guest_shim::{Errno, events, hypercall};
use pv_abi::PAGE_SIZE;
use pv_abi::domctl::set_member;
use pv_abi::domctl::{self, CreateDomain, Domctl, MaxMem, VcpuContext, VcpuGuestContext};
use pv_abi::hypercall::{
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use pvh_builder::layout::{self, Module, Request};
use xlcfg::DomainConfig;
use zerocopy::FromZeros;

use dom0::store::{DomId, RingInfo};

/// Pages in a 2 MiB extent (populate order 9).
const LARGE_ORDER: u32 = 9;
/// Extents asked for in one populate_physmap call.
const POPULATE_BATCH: usize = 64;
/// Free memory the hypervisor keeps for itself (page tables, vCPUs): a
/// domain that would leave less is refused before anything is made.
const HYPERVISOR_RESERVE_MIB: u64 = 8;

/// A DomU built and paused, with its rings' places and channels.
pub struct Built {
    pub domid: DomId,
    pub console: RingInfo,
    pub store: RingInfo,
}

fn domctl_op(cmd: u32, domain: DomId) -> Domctl {
    let mut op = Domctl::new_zeroed();
    op.cmd = cmd;
    op.interface_version = domctl::INTERFACE_VERSION;
    op.domain = domain;
    op
}

/// A file's name as Dom0 holds it: the last part of the config's path.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Builds `cfg` from the images among `files`; the domain is left paused.
/// Errors are one sentence.
pub fn build<'f>(
    cfg: &DomainConfig,
    file: impl Fn(&str) -> Option<&'f [u8]>,
) -> Result<Built, String> {
    let kernel = file(basename(&cfg.kernel)).ok_or_else(|| {
        format!(
            "{}: its kernel {} is not among Dom0's files; give it with cargo xtask run --config or --file, or send it with cargo xtask xl create PATH",
            cfg.name,
            basename(&cfg.kernel)
        )
    })?;
    let ramdisk = match &cfg.ramdisk {
        Some(path) => Some(file(basename(path)).ok_or_else(|| {
            format!(
                "{}: its ramdisk {} is not among Dom0's files; give it with cargo xtask run --config or --file, or send it with cargo xtask xl create PATH",
                cfg.name,
                basename(path)
            )
        })?),
        None => None,
    };
    let mem_bytes = u64::from(cfg.memory_mib) << 20;
    let phys = crate::toolstack::physinfo()
        .map_err(|e| format!("cannot read the free memory: {}", crate::toolstack::why(e)))?;
    let free_mib = (phys.free_pages * PAGE_SIZE as u64) >> 20;
    if u64::from(cfg.memory_mib) + HYPERVISOR_RESERVE_MIB > free_mib {
        return Err(format!(
            "{}: needs {} MiB but only {} MiB are free (less {} MiB the hypervisor keeps); lower memory= or destroy a domain",
            cfg.name, cfg.memory_mib, free_mib, HYPERVISOR_RESERVE_MIB
        ));
    }
    let domid = create(cfg.vcpus).map_err(|e| {
        format!(
            "{}: createdomain refused: {}",
            cfg.name,
            crate::toolstack::why(e)
        )
    })?;
    let modules: Vec<Module> = ramdisk
        .iter()
        .map(|bytes| Module { bytes, cmdline: "" })
        .collect();
    let request = Request {
        image: kernel,
        modules: &modules,
        cmdline: &cfg.cmdline,
        mem_bytes,
        vcpus: cfg.vcpus,
        privileged: false,
    };
    match fill(domid, &request) {
        Ok(built) => Ok(built),
        Err(sentence) => {
            let _ = crate::toolstack::destroy(domid);
            Err(format!("{}: {sentence}", cfg.name))
        }
    }
}

/// `XEN_DOMCTL_createdomain` for a PVH domain (HVM container, HAP, local
/// APIC only) with `vcpus` vCPUs; the hypervisor picks the id.
fn create(vcpus: u32) -> Result<DomId, Errno> {
    let mut op = domctl_op(domctl::CREATEDOMAIN, 0);
    let mut config = CreateDomain::new_zeroed();
    config.flags = domctl::XEN_DOMCTL_CDF_HVM | domctl::XEN_DOMCTL_CDF_HAP;
    config.max_vcpus = vcpus;
    config.max_evtchn_port = 1023;
    config.max_grant_frames = -1;
    config.max_maptrack_frames = -1;
    config.grant_opts = 1;
    config.arch.emulation_flags = domctl::XEN_X86_EMU_LAPIC;
    set_member(&mut op.u, &config);
    hypercall::domctl(&mut op)?;
    Ok(op.domain)
}

/// Memory, image, channels and entry state of the created `domid`.
fn fill(domid: DomId, request: &Request) -> Result<Built, String> {
    let why = crate::toolstack::why;
    let mut op = domctl_op(domctl::MAX_MEM, domid);
    set_member(
        &mut op.u,
        &MaxMem {
            max_memkb: request.mem_bytes >> 10,
        },
    );
    hypercall::domctl(&mut op).map_err(|e| format!("max_mem refused: {}", why(e)))?;
    populate(domid, request.mem_bytes / PAGE_SIZE as u64)?;

    let mut scratch = Scratch::new(domid)?;
    let loaded = layout::load(request, &mut |gpa, bytes| scratch.write(gpa, bytes))
        .map_err(|e| format!("{e}"))?;
    drop(scratch);

    let (Some(console_gfn), Some(store_gfn)) = (loaded.console_gfn, loaded.store_gfn) else {
        return Err(String::from("the layout gave no console or XenStore page"));
    };
    let console_port = events::alloc_unbound_in(domid, 0)
        .map_err(|e| format!("cannot make its console channel: {e:?}"))?;
    let store_port = events::alloc_unbound_in(domid, 0)
        .map_err(|e| format!("cannot make its XenStore channel: {e:?}"))?;
    for (param, value) in [
        (HVM_PARAM_CONSOLE_PFN, console_gfn),
        (HVM_PARAM_CONSOLE_EVTCHN, u64::from(console_port)),
        (HVM_PARAM_STORE_PFN, store_gfn),
        (HVM_PARAM_STORE_EVTCHN, u64::from(store_port)),
    ] {
        hypercall::hvm_set_param_of(domid, param, value)
            .map_err(|e| format!("cannot set its HVM parameter {param}: {e:?}"))?;
    }
    set_entry(domid, loaded.entry, loaded.start_info_gpa)
        .map_err(|e| format!("setvcpucontext refused: {}", why(e)))?;
    Ok(Built {
        domid,
        console: RingInfo {
            port: console_port,
            gfn: console_gfn,
        },
        store: RingInfo {
            port: store_port,
            gfn: store_gfn,
        },
    })
}

/// Backs frames `0..pages` of `domid`: 2 MiB extents where they fit,
/// single pages for the rest.
fn populate(domid: DomId, pages: u64) -> Result<(), String> {
    let large = 1u64 << LARGE_ORDER;
    let large_end = pages / large * large;
    let extents = |order: u32, from: u64, to: u64| -> Result<(), String> {
        let step = 1u64 << order;
        let all: Vec<u64> = (from..to).step_by(step as usize).collect();
        for batch in all.chunks(POPULATE_BATCH) {
            let done = hypercall::populate_physmap(domid, order, batch)
                .map_err(|e| format!("populate_physmap refused: {e:?}"))?;
            if done != batch.len() {
                return Err(format!(
                    "the hypervisor gave only {} of {} memory extents from gfn {:#x}: not enough free memory",
                    done,
                    batch.len(),
                    batch[0]
                ));
            }
        }
        Ok(())
    };
    extents(LARGE_ORDER, 0, large_end)?;
    extents(0, large_end, pages)
}

/// vCPU 0 starts at the PVH 32-bit `entry` with the start info in %ebx.
fn set_entry(domid: DomId, entry: u32, start_info: u64) -> Result<(), Errno> {
    let mut ctx = alloc::boxed::Box::new(VcpuGuestContext::new_zeroed());
    ctx.flags = domctl::VGCF_ONLINE;
    ctx.user_regs.rip = u64::from(entry);
    ctx.user_regs.rbx = start_info;
    let mut op = domctl_op(domctl::SETVCPUCONTEXT, domid);
    set_member(
        &mut op.u,
        &VcpuContext {
            vcpu: 0,
            pad: 0,
            ctxt: &*ctx as *const VcpuGuestContext as u64,
        },
    );
    hypercall::domctl(&mut op).map(|_| ())
}

/// One page of ours through which the new domain's pages are written,
/// each mapped there in turn (XENMAPSPACE_gmfn_foreign); the mapping is
/// undone when it goes.
struct Scratch {
    domid: DomId,
    page: PageBuf,
    mapped: Option<u64>,
}

impl Scratch {
    fn new(domid: DomId) -> Result<Self, String> {
        let page = PageBuf::zeroed(PAGE_SIZE)
            .ok_or_else(|| String::from("Dom0 has no free page to write the domain through"))?;
        Ok(Self {
            domid,
            page,
            mapped: None,
        })
    }

    /// Copies `bytes` to the new domain's guest-physical `gpa`.
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), ()> {
        let page_size = PAGE_SIZE as u64;
        let mut done = 0usize;
        while done < bytes.len() {
            let at = gpa + done as u64;
            let gfn = at / page_size;
            let offset = (at % page_size) as usize;
            let n = (PAGE_SIZE - offset).min(bytes.len() - done);
            if self.mapped != Some(gfn) {
                hypercall::map_foreign_page(self.domid, gfn, self.page.addr() / page_size)
                    .map_err(|_| ())?;
                self.mapped = Some(gfn);
            }
            // SAFETY: the scratch page is ours, PAGE_SIZE long, and now
            // backed by the new domain's frame; offset + n <= PAGE_SIZE.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    bytes[done..].as_ptr(),
                    (self.page.addr() as *mut u8).add(offset),
                    n,
                );
            }
            done += n;
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.mapped.is_some() {
            let _ = hypercall::unmap_foreign_page(self.page.addr() / PAGE_SIZE as u64);
        }
    }
}
