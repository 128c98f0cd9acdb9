//! The domain builder: memory, the loaded PVH kernel, `hvm_start_info`,
//! vCPUs, and the first vCPU set to the PVH entry state.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use super::manifest::DomainSpec;
use super::registry::{self, DomId, Domain, Memory};
use crate::mm::frame::FRAME_SIZE;
use crate::mm::guest::{Gfn, Gpa, P2m};
use crate::mm::{self, IdentityMap, scrub_and_free};
use crate::virt::svm::{NestedPaging, SvmError, SvmVcpu};
use crate::virt::{StartState, VirtCpu};
use pvh_builder::layout::{self, Request};

/// `memory_map` is also what `XENMEM_memory_map` returns to the domain.
pub use pvh_builder::layout::{Module, memory_map};

#[derive(Debug)]
pub enum BuildError {
    /// The image, modules, command line or size (pure checks).
    Layout(layout::BuildError),
    OutOfMemory,
    Virt(SvmError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Layout(e) => write!(f, "{e}"),
            Self::OutOfMemory => f.write_str("not enough free memory for the domain"),
            Self::Virt(e) => write!(f, "{e}"),
        }
    }
}

impl From<layout::BuildError> for BuildError {
    fn from(e: layout::BuildError) -> Self {
        Self::Layout(e)
    }
}

impl From<SvmError> for BuildError {
    fn from(e: SvmError) -> Self {
        Self::Virt(e)
    }
}

/// Guest memory being built; frees everything if the build fails.
struct Building {
    p2m: P2m,
    npt: Option<NestedPaging>,
}

impl Drop for Building {
    fn drop(&mut self) {
        for (_, frame) in self.p2m.frames() {
            scrub_and_free(frame);
        }
    }
}

/// Builds a domain from a PVH kernel image and its start-info modules (a
/// DomU's ramdisk is module 0, as xl's `ramdisk=`) and registers it; its
/// first vCPU is queued to run. The layout is `pvh_builder::layout`'s,
/// shared with Dom0's run-time builder.
pub fn build(
    id: DomId,
    spec: &DomainSpec,
    image: &[u8],
    modules: &[Module],
    privileged: bool,
    watched: bool,
) -> Result<Arc<Domain>, BuildError> {
    let mem_bytes = spec.mem_mib << 20;
    let req = Request {
        image,
        modules,
        cmdline: &spec.cmdline,
        mem_bytes,
        vcpus: spec.vcpus,
        privileged,
    };
    // Every check comes before the first write: a dry run refuses a bad
    // image before any memory is taken for it.
    layout::load(&req, &mut |_, _| Ok(()))?;
    if mm::frames().free_bytes() < mem_bytes + (4 << 20) {
        return Err(BuildError::OutOfMemory);
    }

    let pages = (mem_bytes / FRAME_SIZE) as usize;
    let mut building = Building {
        p2m: P2m::new(pages),
        npt: Some(NestedPaging::new()?),
    };
    for gfn in 0..pages as u64 {
        let frame = mm::frames().alloc().ok_or(BuildError::OutOfMemory)?;
        crate::mm::zero_frame(frame);
        let _ = building.p2m.set(Gfn(gfn), Some(frame));
        if let Some(npt) = building.npt.as_mut() {
            npt.map(gfn * FRAME_SIZE, frame)?;
        }
    }
    let p2m = &building.p2m;
    let loaded = layout::load(&req, &mut |gpa, bytes| {
        p2m.write(&IdentityMap, Gpa(gpa), bytes).map_err(|_| ())
    })?;

    let npt = building.npt.take().ok_or(BuildError::OutOfMemory)?;
    let mut vcpus = Vec::new();
    for _ in 0..spec.vcpus {
        vcpus.push(SvmVcpu::new(&npt)?);
    }
    vcpus[0].reset(StartState::Pvh32 {
        entry: loaded.entry,
        start_info: loaded.start_info_gpa as u32,
    });
    let shared_info = mm::frames().alloc().ok_or(BuildError::OutOfMemory)?;
    crate::mm::zero_frame(shared_info);

    let p2m = core::mem::replace(&mut building.p2m, P2m::new(0));
    let memory = Memory {
        p2m,
        npt,
        special: alloc::collections::BTreeMap::new(),
    };
    let domain = Arc::new(Domain::new(
        id,
        String::from(spec.name.as_str()),
        privileged,
        watched,
        mem_bytes,
        memory,
        shared_info,
        vcpus,
    ));
    domain.vcpus[0].lock().initialised = true;
    registry::register(domain.clone());
    if let (Some(console), Some(store)) = (loaded.console_gfn, loaded.store_gfn) {
        super::events::connect_backends(&domain, console, store)
            .map_err(|_| BuildError::OutOfMemory)?;
    }
    super::sched::start(&domain, 0);
    Ok(domain)
}
