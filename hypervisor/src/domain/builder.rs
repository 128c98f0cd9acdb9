//! The domain builder: memory, the loaded PVH kernel, `hvm_start_info`,
//! vCPUs, and the first vCPU set to the PVH entry state.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use super::elf::{self, ElfError};
use super::manifest::DomainSpec;
use super::registry::{self, DomId, Domain, Memory};
use crate::mm::frame::{FRAME_SIZE, Frame};
use crate::mm::guest::{Gfn, Gpa, P2m};
use crate::mm::{self, IdentityMap, scrub_and_free};
use crate::virt::svm::{NestedPaging, SvmError, SvmVcpu};
use crate::virt::{StartState, VirtCpu};

const START_INFO_MAGIC: u32 = 0x336e_c578;
const SIF_PRIVILEGED: u32 = 1 << 0;
const SIF_INITDOMAIN: u32 = 1 << 1;
const E820_RAM: u32 = 1;
/// Layout of the start-info page: the struct, one memmap entry, cmdline.
const MEMMAP_OFFSET: u64 = 64;
const CMDLINE_OFFSET: u64 = 128;
const E820_RESERVED: u32 = 2;
/// Pages at the top of guest memory for the PV console and XenStore rings
/// (reserved in the memory map, as Xen's special pages are).
const SPECIAL_PAGES: u64 = 2;
const CONSOLE_PAGE_FROM_TOP: u64 = 1;
const STORE_PAGE_FROM_TOP: u64 = 2;
const CMDLINE_MAX: usize = (FRAME_SIZE - CMDLINE_OFFSET) as usize - 1;

#[derive(Debug)]
pub enum BuildError {
    Image(ElfError),
    DoesNotFit { needs: u64, has: u64 },
    CmdlineTooLong(usize),
    OutOfMemory,
    Virt(SvmError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Image(e) => write!(f, "bad kernel image: {e}"),
            Self::DoesNotFit { needs, has } => write!(
                f,
                "the kernel needs guest memory up to {:#x} but the domain has {} MiB — give it more mem=",
                needs,
                has >> 20
            ),
            Self::CmdlineTooLong(n) => {
                write!(f, "command line of {n} bytes is longer than {CMDLINE_MAX}")
            }
            Self::OutOfMemory => f.write_str("not enough free memory for the domain"),
            Self::Virt(e) => write!(f, "{e}"),
        }
    }
}

impl From<SvmError> for BuildError {
    fn from(e: SvmError) -> Self {
        Self::Virt(e)
    }
}

/// A domain's memory map (address, size, e820 type): RAM, and for a DomU
/// the reserved special pages at the top.
pub fn memory_map(mem_bytes: u64, privileged: bool) -> Vec<(u64, u64, u32)> {
    if privileged {
        alloc::vec![(0, mem_bytes, E820_RAM)]
    } else {
        let special = SPECIAL_PAGES * FRAME_SIZE;
        alloc::vec![
            (0, mem_bytes - special, E820_RAM),
            (mem_bytes - special, special, E820_RESERVED)
        ]
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

fn put_u32(page: &mut [u8], at: usize, v: u32) {
    page[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(page: &mut [u8], at: usize, v: u64) {
    page[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Builds a domain from a PVH kernel image and registers it; its first
/// vCPU is queued to run.
pub fn build(
    id: DomId,
    spec: &DomainSpec,
    image: &[u8],
    privileged: bool,
    watched: bool,
) -> Result<Arc<Domain>, BuildError> {
    let pvh = elf::parse(image).map_err(BuildError::Image)?;
    if spec.cmdline.len() > CMDLINE_MAX {
        return Err(BuildError::CmdlineTooLong(spec.cmdline.len()));
    }
    let mem_bytes = spec.mem_mib << 20;
    let (_, image_end) = pvh.span();
    let start_info_gpa = image_end.next_multiple_of(FRAME_SIZE);
    // The top two pages hold the PV console and XenStore rings.
    if start_info_gpa + FRAME_SIZE > mem_bytes - SPECIAL_PAGES * FRAME_SIZE {
        return Err(BuildError::DoesNotFit {
            needs: start_info_gpa + FRAME_SIZE,
            has: mem_bytes,
        });
    }
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
        zero_frame(frame);
        let _ = building.p2m.set(Gfn(gfn), Some(frame));
        if let Some(npt) = building.npt.as_mut() {
            npt.map(gfn * FRAME_SIZE, frame)?;
        }
    }
    let host = IdentityMap;
    for seg in &pvh.segments {
        let data = &image[seg.file_offset..seg.file_offset + seg.file_size];
        building
            .p2m
            .write(&host, Gpa(seg.paddr), data)
            .map_err(|_| BuildError::DoesNotFit {
                needs: seg.paddr + seg.mem_size,
                has: mem_bytes,
            })?;
        if seg.paddr + seg.mem_size > mem_bytes {
            return Err(BuildError::DoesNotFit {
                needs: seg.paddr + seg.mem_size,
                has: mem_bytes,
            });
        }
    }

    let mut page = [0u8; FRAME_SIZE as usize];
    put_u32(&mut page, 0, START_INFO_MAGIC);
    put_u32(&mut page, 4, 1);
    put_u32(
        &mut page,
        8,
        if privileged {
            SIF_PRIVILEGED | SIF_INITDOMAIN
        } else {
            0
        },
    );
    put_u32(&mut page, 12, 0);
    put_u64(
        &mut page,
        24,
        if spec.cmdline.is_empty() {
            0
        } else {
            start_info_gpa + CMDLINE_OFFSET
        },
    );
    put_u64(&mut page, 40, start_info_gpa + MEMMAP_OFFSET);
    let map = memory_map(mem_bytes, privileged);
    put_u32(&mut page, 48, map.len() as u32);
    for (i, &(addr, size, kind)) in map.iter().enumerate() {
        let m = MEMMAP_OFFSET as usize + i * 24;
        put_u64(&mut page, m, addr);
        put_u64(&mut page, m + 8, size);
        put_u32(&mut page, m + 16, kind);
    }
    let c = CMDLINE_OFFSET as usize;
    page[c..c + spec.cmdline.len()].copy_from_slice(spec.cmdline.as_bytes());
    building
        .p2m
        .write(&host, Gpa(start_info_gpa), &page)
        .map_err(|_| BuildError::OutOfMemory)?;

    let npt = building.npt.take().ok_or(BuildError::OutOfMemory)?;
    let mut vcpus = Vec::new();
    for _ in 0..spec.vcpus {
        vcpus.push(SvmVcpu::new(&npt)?);
    }
    vcpus[0].reset(StartState::Pvh32 {
        entry: pvh.entry,
        start_info: start_info_gpa as u32,
    });
    let shared_info = mm::frames().alloc().ok_or(BuildError::OutOfMemory)?;
    zero_frame(shared_info);

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
    if !privileged {
        let pages = mem_bytes / FRAME_SIZE;
        super::events::connect_backends(
            &domain,
            pages - CONSOLE_PAGE_FROM_TOP,
            pages - STORE_PAGE_FROM_TOP,
        )
        .map_err(|_| BuildError::OutOfMemory)?;
    }
    super::sched::start(&domain, 0);
    Ok(domain)
}

fn zero_frame(frame: Frame) {
    use crate::mm::guest::HostMemory;
    IdentityMap.write(frame, 0, &[0u8; FRAME_SIZE as usize]);
}
