//! The domain builder: memory, the loaded PVH kernel, `hvm_start_info`,
//! vCPUs, and the first vCPU set to the PVH entry state.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use super::manifest::DomainSpec;
use super::registry::{self, DomId, Domain, Memory};
use crate::mm::frame::FRAME_SIZE;
use crate::mm::guest::{Gpa, P2m};
use crate::mm::{self, IdentityMap, scrub_and_free};
use crate::virt::{SecondLevelPaging, Vcpu, VirtError};
use crate::virt::{StartState, VirtCpu};
use pvh_builder::layout::{self, Request};

/// `memory_map` is also what `XENMEM_memory_map` returns to the domain.
pub use pvh_builder::layout::{Module, memory_map};

#[derive(Debug)]
pub enum BuildError {
    /// The image, modules, command line or size (pure checks).
    Layout(layout::BuildError),
    OutOfMemory,
    Virt(VirtError),
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

impl From<VirtError> for BuildError {
    fn from(e: VirtError) -> Self {
        Self::Virt(e)
    }
}

/// Guest memory being built; its frames are freed if the build fails
/// before the domain takes it.
struct Building(Option<Memory>);

impl Drop for Building {
    fn drop(&mut self) {
        if let Some(memory) = &self.0 {
            for (_, frame) in memory.p2m.frames() {
                scrub_and_free(frame);
            }
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
    if mm::frames().free_bytes() < mem_bytes + mm::HYPERVISOR_RESERVE_BYTES {
        return Err(BuildError::OutOfMemory);
    }

    let pages = mem_bytes / FRAME_SIZE;
    let mut building = Building(Some(Memory {
        p2m: P2m::new(pages as usize),
        second_level: SecondLevelPaging::new()?,
        special: alloc::collections::BTreeMap::new(),
        loose: alloc::vec::Vec::new(),
        owned: 0,
    }));
    let memory = building.0.as_mut().ok_or(BuildError::OutOfMemory)?;
    if !memory.back(0, pages, pages, None) {
        return Err(BuildError::OutOfMemory);
    }
    let p2m = &memory.p2m;
    let loaded = layout::load(&req, &mut |gpa, bytes| {
        p2m.write(&IdentityMap, Gpa(gpa), bytes).map_err(|_| ())
    })?;

    let mut vcpus = Vec::new();
    for _ in 0..spec.vcpus {
        vcpus.push(Vcpu::new(&memory.second_level)?);
    }
    vcpus[0].reset(StartState::Pvh32 {
        entry: loaded.entry,
        start_info: loaded.start_info_gpa as u32,
    });
    let shared_info = mm::frames().alloc().ok_or(BuildError::OutOfMemory)?;
    crate::mm::zero_frame(shared_info);

    let memory = building.0.take().ok_or(BuildError::OutOfMemory)?;
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
