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
use crate::platform::acpi_tables;
use crate::virt::svm::{NestedPaging, SvmError, SvmVcpu};
use crate::virt::{StartState, VirtCpu};
use pv_abi::start_info::{
    HVM_START_INFO_VERSION, MemmapTableEntry, ModlistEntry, SIF_INITDOMAIN, SIF_PRIVILEGED,
    StartInfo, XEN_HVM_MEMMAP_TYPE_ACPI, XEN_HVM_MEMMAP_TYPE_RAM, XEN_HVM_MEMMAP_TYPE_RESERVED,
    XEN_HVM_START_MAGIC_VALUE,
};
use zerocopy::{Immutable, IntoBytes};

/// Layout of the start-info page: the struct, the module list, the
/// memory map, then the command line.
const MODLIST_OFFSET: u64 = 64;
const MAX_MODULES: usize = 1;
const MEMMAP_OFFSET: u64 = 128;
const MAX_MEMMAP: usize = 4;
const CMDLINE_OFFSET: u64 = 256;
/// Pages at the top of guest memory for the PV console and XenStore rings
/// (reserved in the memory map, as Xen's special pages are).
const SPECIAL_PAGES: u64 = 2;
const CONSOLE_PAGE_FROM_TOP: u64 = 1;
const STORE_PAGE_FROM_TOP: u64 = 2;
/// A DomU's ACPI tables (RSDP, XSDT, FADT, DSDT, MADT) take one page just
/// below the special pages, marked ACPI in its memory map. (Xen puts them
/// at 0xfc000000, outside RAM; inside RAM is simpler and Linux does not
/// mind where they are.)
const ACPI_PAGES: u64 = 1;
const CMDLINE_MAX: usize = (FRAME_SIZE - CMDLINE_OFFSET) as usize - 1;

#[derive(Debug)]
pub enum BuildError {
    Image(ElfError),
    DoesNotFit { needs: u64, has: u64 },
    CmdlineTooLong(usize),
    OutOfMemory,
    Acpi(crate::platform::acpi_tables::AcpiError),
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
            Self::Acpi(e) => write!(f, "its ACPI tables: {e}"),
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
/// its ACPI tables and the reserved special pages at the top.
pub fn memory_map(mem_bytes: u64, privileged: bool) -> Vec<(u64, u64, u32)> {
    if privileged {
        alloc::vec![(0, mem_bytes, XEN_HVM_MEMMAP_TYPE_RAM)]
    } else {
        let special = SPECIAL_PAGES * FRAME_SIZE;
        let acpi = ACPI_PAGES * FRAME_SIZE;
        alloc::vec![
            (0, mem_bytes - special - acpi, XEN_HVM_MEMMAP_TYPE_RAM),
            (mem_bytes - special - acpi, acpi, XEN_HVM_MEMMAP_TYPE_ACPI),
            (mem_bytes - special, special, XEN_HVM_MEMMAP_TYPE_RESERVED)
        ]
    }
}

/// Where a DomU's ACPI tables start.
fn acpi_base(mem_bytes: u64) -> u64 {
    mem_bytes - (SPECIAL_PAGES + ACPI_PAGES) * FRAME_SIZE
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

fn put(page: &mut [u8], at: u64, value: &(impl IntoBytes + Immutable)) {
    let bytes = value.as_bytes();
    page[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
}

/// Builds a domain from a PVH kernel image (and an optional ramdisk, the
/// start info's module 0 as xl's `ramdisk=`) and registers it; its first
/// vCPU is queued to run.
pub fn build(
    id: DomId,
    spec: &DomainSpec,
    image: &[u8],
    ramdisk: Option<&[u8]>,
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
    let ramdisk_gpa = start_info_gpa + FRAME_SIZE;
    let loaded_end = ramdisk_gpa + ramdisk.map_or(0, |r| r.len() as u64);
    // The top pages hold the ACPI tables and the PV console and XenStore
    // rings.
    let usable = if privileged {
        mem_bytes
    } else {
        acpi_base(mem_bytes)
    };
    if loaded_end > usable {
        return Err(BuildError::DoesNotFit {
            needs: loaded_end + (mem_bytes - usable),
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

    let mut start_info = StartInfo {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: HVM_START_INFO_VERSION,
        flags: if privileged {
            SIF_PRIVILEGED | SIF_INITDOMAIN
        } else {
            0
        },
        memmap_paddr: start_info_gpa + MEMMAP_OFFSET,
        ..Default::default()
    };
    let mut page = [0u8; FRAME_SIZE as usize];
    if let Some(ramdisk) = ramdisk {
        building
            .p2m
            .write(&host, Gpa(ramdisk_gpa), ramdisk)
            .map_err(|_| BuildError::OutOfMemory)?;
        let module = ModlistEntry {
            paddr: ramdisk_gpa,
            size: ramdisk.len() as u64,
            ..Default::default()
        };
        put(&mut page, MODLIST_OFFSET, &module);
        start_info.nr_modules = 1;
        start_info.modlist_paddr = start_info_gpa + MODLIST_OFFSET;
    }
    const _: () = assert!(MODLIST_OFFSET as usize + MAX_MODULES * 32 <= MEMMAP_OFFSET as usize);
    const _: () = assert!(MEMMAP_OFFSET as usize + MAX_MEMMAP * 24 <= CMDLINE_OFFSET as usize);
    let map = memory_map(mem_bytes, privileged);
    start_info.memmap_entries = map.len() as u32;
    for (i, &(addr, size, kind)) in map.iter().enumerate() {
        let entry = MemmapTableEntry {
            addr,
            size,
            r#type: kind,
            reserved: 0,
        };
        put(&mut page, MEMMAP_OFFSET + i as u64 * 24, &entry);
    }
    if !spec.cmdline.is_empty() {
        start_info.cmdline_paddr = start_info_gpa + CMDLINE_OFFSET;
        let c = CMDLINE_OFFSET as usize;
        page[c..c + spec.cmdline.len()].copy_from_slice(spec.cmdline.as_bytes());
    }
    if !privileged {
        let base = acpi_base(mem_bytes);
        let acpi = acpi_tables::build(spec.vcpus, base).map_err(BuildError::Acpi)?;
        if acpi.bytes.len() as u64 > ACPI_PAGES * FRAME_SIZE {
            return Err(BuildError::Acpi(acpi_tables::AcpiError::TooManyVcpus));
        }
        building
            .p2m
            .write(&host, Gpa(base), &acpi.bytes)
            .map_err(|_| BuildError::OutOfMemory)?;
        start_info.rsdp_paddr = acpi.rsdp_gpa;
    }
    put(&mut page, 0, &start_info);
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
