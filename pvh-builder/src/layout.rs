//! Where a PVH domain's pieces go in its guest-physical memory, and the
//! bytes written there: the kernel's segments, `hvm_start_info`, the start
//! info's modules, a DomU's ACPI tables, and the memory map that reserves
//! the PV console and XenStore ring pages.
//!
//! Layout, from the bottom (`top` is the domain's memory size rounded down
//! to a page):
//!
//! ```text
//! kernel segments     where its ELF program headers say (below `start`)
//! start   start-info page: hvm_start_info at +0, a single module's entry
//!                     at +64, the memory map at +128, the kernel's
//!                     command line at +256 (NUL-terminated)
//! start+1 module page, only when there are several modules or one with a
//!                     command line: the module list at +0 (up to
//!                     MAX_MODULES entries), the modules' NUL-terminated
//!                     command lines from +512
//! next    the modules' bytes, one after another, each page aligned
//! ...
//! top-3   DomU only: the ACPI tables (memory-map type ACPI)
//! top-2   DomU only: the XenStore ring page  \ memory-map type reserved,
//! top-1   DomU only: the PV console ring page / Xen's "special pages"
//! ```
//!
//! A privileged domain (Dom0) gets neither ACPI tables (it reads the
//! machine's) nor special pages, and `SIF_PRIVILEGED | SIF_INITDOMAIN`.
//!
//! [`load`] only computes and hands bytes to a writer; the caller owns guest
//! memory, gives it zeroed, and maps it however it can (the hypervisor
//! through the p2m at boot, Dom0 through foreign mappings at run time).
//! Everything is checked before the first write, and nothing here panics
//! whatever the image, module or size.

use alloc::vec::Vec;
use core::fmt;

use crate::acpi::{self, AcpiError};
use crate::elf::{self, ElfError};
use pv_abi::start_info::{
    HVM_START_INFO_VERSION, MemmapTableEntry, ModlistEntry, SIF_INITDOMAIN, SIF_PRIVILEGED,
    StartInfo, XEN_HVM_MEMMAP_TYPE_ACPI, XEN_HVM_MEMMAP_TYPE_RAM, XEN_HVM_MEMMAP_TYPE_RESERVED,
    XEN_HVM_START_MAGIC_VALUE,
};
use zerocopy::{Immutable, IntoBytes};

/// The guest page size.
pub const PAGE_SIZE: u64 = 4096;
const PAGE: usize = PAGE_SIZE as usize;

/// Start-info page: `hvm_start_info`, then a single module's entry, the
/// memory map, then the kernel's command line.
const MODLIST_OFFSET: usize = 64;
const MEMMAP_OFFSET: usize = 128;
const MAX_MEMMAP: usize = 4;
const CMDLINE_OFFSET: usize = 256;
/// The longest kernel command line (bytes, without its NUL).
pub const CMDLINE_MAX: usize = PAGE - CMDLINE_OFFSET - 1;

/// The most modules a domain is given.
pub const MAX_MODULES: usize = 16;
const MODLIST_ENTRY: usize = size_of::<ModlistEntry>();
/// Module page: the module list, then the modules' command lines.
const MODULE_STRINGS_OFFSET: usize = MAX_MODULES * MODLIST_ENTRY;
/// Room for the modules' command lines, together and each with its NUL.
pub const MODULE_CMDLINES_MAX: usize = PAGE - MODULE_STRINGS_OFFSET;

/// Pages at the top of a DomU's memory for the PV console and XenStore
/// rings (reserved in the memory map, as Xen's special pages are).
pub const SPECIAL_PAGES: u64 = 2;
pub const CONSOLE_PAGE_FROM_TOP: u64 = 1;
pub const STORE_PAGE_FROM_TOP: u64 = 2;
/// A DomU's ACPI tables (RSDP, XSDT, FADT, DSDT, MADT) take one page just
/// below the special pages, marked ACPI in its memory map. (Xen puts them
/// at 0xfc000000, outside RAM; inside RAM is simpler and Linux does not
/// mind where they are.)
pub const ACPI_PAGES: u64 = 1;
/// Guest-physical addresses have at most 52 bits on x86-64.
pub const MAX_MEM_BYTES: u64 = 1 << 52;

const _: () = assert!(size_of::<StartInfo>() <= MODLIST_OFFSET);
const _: () = assert!(MODLIST_OFFSET + MODLIST_ENTRY <= MEMMAP_OFFSET);
const _: () = assert!(MEMMAP_OFFSET + MAX_MEMMAP * size_of::<MemmapTableEntry>() <= CMDLINE_OFFSET);
const _: () = assert!(MODULE_STRINGS_OFFSET < PAGE);

/// One start-info module (`hvm_modlist_entry`): its bytes and command line
/// (`""` for none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Module<'a> {
    pub bytes: &'a [u8],
    pub cmdline: &'a str,
}

/// What to build.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The PVH ELF kernel.
    pub image: &'a [u8],
    /// The start info's modules in order; a DomU's ramdisk is module 0 with
    /// command line `""` (xl's `ramdisk=`).
    pub modules: &'a [Module<'a>],
    /// The kernel's command line.
    pub cmdline: &'a str,
    /// The domain's memory, from guest-physical 0 (whole pages count).
    pub mem_bytes: u64,
    /// vCPUs, for a DomU's MADT.
    pub vcpus: u32,
    /// Dom0: no ACPI tables or special pages, `SIF_PRIVILEGED |
    /// SIF_INITDOMAIN`.
    pub privileged: bool,
}

/// Where the built domain starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The PVH 32-bit entry (`XEN_ELFNOTE_PHYS32_ENTRY`).
    pub entry: u32,
    /// Guest-physical address of `hvm_start_info` (the entry's `%ebx`).
    pub start_info_gpa: u64,
    /// DomU only: the PV console ring page.
    pub console_gfn: Option<u64>,
    /// DomU only: the XenStore ring page.
    pub store_gfn: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// The kernel image is malformed or not PVH.
    Image(ElfError),
    /// The kernel, start info and modules need memory up to `needs` (plus
    /// the pages reserved at the top); the domain has `has` bytes.
    DoesNotFit { needs: u64, has: u64 },
    /// The kernel's command line, or the modules' together, is this long.
    CmdlineTooLong(usize),
    /// This many modules, more than [`MAX_MODULES`].
    TooManyModules(usize),
    /// The ACPI tables cannot describe the domain.
    Acpi(AcpiError),
    /// The caller's writer failed at this guest-physical address.
    Write { gpa: u64 },
    /// `mem_bytes` is beyond [`MAX_MEM_BYTES`].
    TooMuchMemory { has: u64 },
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
            Self::CmdlineTooLong(n) => write!(
                f,
                "command line of {n} bytes is longer than {CMDLINE_MAX} (the kernel's) or \
                 {MODULE_CMDLINES_MAX} (the modules' together, each with its NUL)"
            ),
            Self::TooManyModules(n) => {
                write!(
                    f,
                    "{n} modules are more than the {MAX_MODULES} a domain can have"
                )
            }
            Self::Acpi(e) => write!(f, "its ACPI tables: {e}"),
            Self::Write { gpa } => write!(f, "writing its memory at {gpa:#x} failed"),
            Self::TooMuchMemory { has } => write!(
                f,
                "{} MiB of memory is more than the {} MiB a guest-physical address space holds",
                has >> 20,
                MAX_MEM_BYTES >> 20
            ),
        }
    }
}

impl core::error::Error for BuildError {}

/// The domain's memory: whole pages only.
fn top_of(mem_bytes: u64) -> u64 {
    mem_bytes & !(PAGE_SIZE - 1)
}

/// Bytes a DomU keeps at the top of its memory (ACPI tables and special
/// pages); none for Dom0.
fn reserved_at_top(privileged: bool) -> u64 {
    if privileged {
        0
    } else {
        (SPECIAL_PAGES + ACPI_PAGES) * PAGE_SIZE
    }
}

/// A domain's memory map (address, size, `XEN_HVM_MEMMAP_TYPE_*`): RAM,
/// and for a DomU its ACPI tables and the reserved special pages at the
/// top. (Never panics: a memory too small for the top pages gives empty
/// RAM, though [`load`] refuses such a domain.)
pub fn memory_map(mem_bytes: u64, privileged: bool) -> Vec<(u64, u64, u32)> {
    let top = top_of(mem_bytes);
    if privileged {
        alloc::vec![(0, top, XEN_HVM_MEMMAP_TYPE_RAM)]
    } else {
        let acpi = top.saturating_sub(reserved_at_top(false));
        let special = top.saturating_sub(SPECIAL_PAGES * PAGE_SIZE);
        alloc::vec![
            (0, acpi, XEN_HVM_MEMMAP_TYPE_RAM),
            (acpi, special - acpi, XEN_HVM_MEMMAP_TYPE_ACPI),
            (special, top - special, XEN_HVM_MEMMAP_TYPE_RESERVED)
        ]
    }
}

/// Copies `value` into `page` at `at` (callers' offsets are in bounds by
/// the layout's constant checks and the length checks in [`load`]).
fn put(page: &mut [u8], at: usize, value: &(impl IntoBytes + Immutable)) {
    put_bytes(page, at, value.as_bytes());
}

fn put_bytes(page: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = page.get_mut(at..at.saturating_add(bytes.len())) {
        dst.copy_from_slice(bytes);
    }
}

/// The caller's access to the new domain's memory: `write(gpa, bytes)`
/// copies `bytes` to guest-physical `gpa`, or fails.
pub type GuestWrite<'a> = dyn FnMut(u64, &[u8]) -> Result<(), ()> + 'a;

/// Where each module goes, and the end of everything loaded below the
/// top pages; `None` if an address overflows.
struct Placement {
    /// Module page (list and command lines), if any.
    module_page: Option<u64>,
    modules: Vec<u64>,
    end: u64,
}

fn place(start_info: u64, modules: &[Module], module_page: bool) -> Option<Placement> {
    let mut next = start_info.checked_add(PAGE_SIZE)?;
    let module_page = if module_page {
        let at = next;
        next = next.checked_add(PAGE_SIZE)?;
        Some(at)
    } else {
        None
    };
    let mut end = next;
    let mut at = Vec::with_capacity(modules.len());
    for m in modules {
        let len = u64::try_from(m.bytes.len()).ok()?;
        at.push(next);
        end = next.checked_add(len)?;
        next = end.checked_next_multiple_of(PAGE_SIZE)?;
    }
    Some(Placement {
        module_page,
        modules: at,
        end,
    })
}

/// Validates and lays out the domain, calling `write(gpa, bytes)` for
/// every (nonempty) piece of guest memory to fill: the kernel segments'
/// file bytes, the modules, the module page, the ACPI tables, the
/// start-info page, in that order. Memory not written is assumed zero (the caller gives zeroed
/// pages). Everything is checked before the first `write`; a `write` error
/// becomes [`BuildError::Write`] and ends the build.
pub fn load(req: &Request, write: &mut GuestWrite<'_>) -> Result<Loaded, BuildError> {
    let pvh = elf::parse(req.image).map_err(BuildError::Image)?;
    if req.modules.len() > MAX_MODULES {
        return Err(BuildError::TooManyModules(req.modules.len()));
    }
    if req.cmdline.len() > CMDLINE_MAX {
        return Err(BuildError::CmdlineTooLong(req.cmdline.len()));
    }
    let module_cmdlines: usize = req
        .modules
        .iter()
        .filter(|m| !m.cmdline.is_empty())
        .map(|m| m.cmdline.len().saturating_add(1))
        .fold(0, usize::saturating_add);
    if module_cmdlines > MODULE_CMDLINES_MAX {
        return Err(BuildError::CmdlineTooLong(module_cmdlines));
    }
    if req.mem_bytes > MAX_MEM_BYTES {
        return Err(BuildError::TooMuchMemory { has: req.mem_bytes });
    }

    let top = top_of(req.mem_bytes);
    let reserved = reserved_at_top(req.privileged);
    let usable = top.saturating_sub(reserved);
    let segments = pvh
        .segments
        .iter()
        .map(|seg| {
            let data = seg
                .file_offset
                .checked_add(seg.file_size)
                .and_then(|end| req.image.get(seg.file_offset..end));
            Some((seg.paddr, data?))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(BuildError::Image(ElfError::SegmentOutOfFile))?;
    let (_, image_end) = pvh.span();
    // A module list longer than one entry, or any module command line,
    // needs the module page.
    let with_module_page = req.modules.len() > 1 || module_cmdlines > 0;
    let placed = image_end
        .checked_next_multiple_of(PAGE_SIZE)
        .and_then(|start_info| {
            Some((
                start_info,
                place(start_info, req.modules, with_module_page)?,
            ))
        });
    let (start_info_gpa, placed) = match placed {
        Some((s, p)) if p.end <= usable => (s, p),
        other => {
            let end = other.map_or(u64::MAX, |(_, p)| p.end);
            return Err(BuildError::DoesNotFit {
                needs: end.saturating_add(reserved),
                has: req.mem_bytes,
            });
        }
    };

    // Guest pages below `usable` from here on: no address below overflows.
    let acpi = if req.privileged {
        None
    } else {
        let blob = acpi::build(req.vcpus, usable).map_err(BuildError::Acpi)?;
        if blob.bytes.len() as u64 > ACPI_PAGES * PAGE_SIZE {
            return Err(BuildError::Acpi(AcpiError::TooManyVcpus));
        }
        Some(blob)
    };

    let mut start_info = StartInfo {
        magic: XEN_HVM_START_MAGIC_VALUE,
        version: HVM_START_INFO_VERSION,
        flags: if req.privileged {
            SIF_PRIVILEGED | SIF_INITDOMAIN
        } else {
            0
        },
        memmap_paddr: start_info_gpa + MEMMAP_OFFSET as u64,
        rsdp_paddr: acpi.as_ref().map_or(0, |a| a.rsdp_gpa),
        ..Default::default()
    };
    let mut page = [0u8; PAGE];

    let mut module_page = [0u8; PAGE];
    if !req.modules.is_empty() {
        start_info.nr_modules = req.modules.len() as u32;
        start_info.modlist_paddr = placed
            .module_page
            .unwrap_or(start_info_gpa + MODLIST_OFFSET as u64);
    }
    let mut strings_at = MODULE_STRINGS_OFFSET;
    for (i, (m, &paddr)) in req.modules.iter().zip(&placed.modules).enumerate() {
        let mut entry = ModlistEntry {
            paddr,
            size: m.bytes.len() as u64,
            ..Default::default()
        };
        match placed.module_page {
            Some(gpa) => {
                if !m.cmdline.is_empty() {
                    entry.cmdline_paddr = gpa + strings_at as u64;
                    put_bytes(&mut module_page, strings_at, m.cmdline.as_bytes());
                    strings_at += m.cmdline.len() + 1;
                }
                put(&mut module_page, i * MODLIST_ENTRY, &entry);
            }
            None => put(&mut page, MODLIST_OFFSET, &entry),
        }
    }

    let map = memory_map(req.mem_bytes, req.privileged);
    start_info.memmap_entries = map.len() as u32;
    for (i, &(addr, size, kind)) in map.iter().enumerate() {
        let entry = MemmapTableEntry {
            addr,
            size,
            r#type: kind,
            reserved: 0,
        };
        put(
            &mut page,
            MEMMAP_OFFSET + i * size_of::<MemmapTableEntry>(),
            &entry,
        );
    }
    if !req.cmdline.is_empty() {
        start_info.cmdline_paddr = start_info_gpa + CMDLINE_OFFSET as u64;
        put_bytes(&mut page, CMDLINE_OFFSET, req.cmdline.as_bytes());
    }
    put(&mut page, 0, &start_info);

    let mut write = |gpa: u64, bytes: &[u8]| {
        if bytes.is_empty() {
            return Ok(());
        }
        write(gpa, bytes).map_err(|()| BuildError::Write { gpa })
    };
    for (paddr, data) in segments {
        write(paddr, data)?;
    }
    for (m, &paddr) in req.modules.iter().zip(&placed.modules) {
        write(paddr, m.bytes)?;
    }
    if let Some(gpa) = placed.module_page {
        write(gpa, &module_page)?;
    }
    if let Some(blob) = &acpi {
        write(usable, &blob.bytes)?;
    }
    write(start_info_gpa, &page)?;

    let pages = top / PAGE_SIZE;
    Ok(Loaded {
        entry: pvh.entry,
        start_info_gpa,
        console_gfn: (!req.privileged).then(|| pages - CONSOLE_PAGE_FROM_TOP),
        store_gfn: (!req.privileged).then(|| pages - STORE_PAGE_FROM_TOP),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use proptest::prelude::*;
    use pv_abi::start_info::XEN_ELFNOTE_PHYS32_ENTRY;
    use zerocopy::FromBytes;

    const MIB: u64 = 1 << 20;

    /// An ELF64 PVH kernel: a PT_NOTE with the entry, then one PT_LOAD per
    /// `(paddr, file bytes, mem_size)`.
    fn kernel(entry: u32, segments: &[(u64, &[u8], u64)]) -> Vec<u8> {
        let phnum = 1 + segments.len();
        let note_at = 64 + 56 * phnum;
        let data_at = note_at + 20;
        let mut img = vec![0u8; data_at];
        img[..4].copy_from_slice(b"\x7fELF");
        img[4] = 2;
        img[5] = 1;
        img[18..20].copy_from_slice(&62u16.to_le_bytes());
        img[32..40].copy_from_slice(&64u64.to_le_bytes());
        img[54..56].copy_from_slice(&56u16.to_le_bytes());
        img[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
        let ph = |img: &mut Vec<u8>,
                  i: usize,
                  kind: u32,
                  off: usize,
                  paddr: u64,
                  file: usize,
                  mem: u64| {
            let at = 64 + 56 * i;
            img[at..at + 4].copy_from_slice(&kind.to_le_bytes());
            img[at + 8..at + 16].copy_from_slice(&(off as u64).to_le_bytes());
            img[at + 24..at + 32].copy_from_slice(&paddr.to_le_bytes());
            img[at + 32..at + 40].copy_from_slice(&(file as u64).to_le_bytes());
            img[at + 40..at + 48].copy_from_slice(&mem.to_le_bytes());
        };
        ph(&mut img, 0, 4, note_at, 0, 20, 0);
        img[note_at..note_at + 4].copy_from_slice(&4u32.to_le_bytes());
        img[note_at + 4..note_at + 8].copy_from_slice(&4u32.to_le_bytes());
        img[note_at + 8..note_at + 12].copy_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
        img[note_at + 12..note_at + 16].copy_from_slice(b"Xen\0");
        img[note_at + 16..note_at + 20].copy_from_slice(&entry.to_le_bytes());
        for (i, (paddr, bytes, mem)) in segments.iter().enumerate() {
            let off = img.len();
            img.extend_from_slice(bytes);
            ph(&mut img, 1 + i, 1, off, *paddr, bytes.len(), *mem);
        }
        img
    }

    /// A kernel of two segments, text at 1 MiB and data+bss after it.
    fn linux_like() -> Vec<u8> {
        let text: Vec<u8> = (0..0x1800u32).map(|i| i as u8).collect();
        let data = [0xaau8; 0x300];
        kernel(
            0x10_0040,
            &[(0x10_0000, &text, 0x2000), (0x10_2000, &data, 0x1234)],
        )
    }

    type Writes = Vec<(u64, Vec<u8>)>;

    fn record(req: &Request) -> Result<(Loaded, Writes), BuildError> {
        let mut writes = Vec::new();
        let loaded = load(req, &mut |gpa, bytes| {
            writes.push((gpa, bytes.to_vec()));
            Ok(())
        })?;
        Ok((loaded, writes))
    }

    /// Guest memory after the writes, as a sparse byte map.
    fn memory(writes: &Writes) -> BTreeMap<u64, u8> {
        let mut m = BTreeMap::new();
        for (gpa, bytes) in writes {
            for (i, b) in bytes.iter().enumerate() {
                m.insert(gpa + i as u64, *b);
            }
        }
        m
    }

    fn read(mem: &BTreeMap<u64, u8>, gpa: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| mem.get(&(gpa + i)).copied().unwrap_or(0))
            .collect()
    }

    fn start_info(mem: &BTreeMap<u64, u8>, gpa: u64) -> StartInfo {
        StartInfo::read_from_bytes(&read(mem, gpa, size_of::<StartInfo>())).unwrap()
    }

    fn modlist(mem: &BTreeMap<u64, u8>, si: &StartInfo) -> Vec<ModlistEntry> {
        (0..si.nr_modules as u64)
            .map(|i| {
                let at = si.modlist_paddr + i * MODLIST_ENTRY as u64;
                ModlistEntry::read_from_bytes(&read(mem, at, MODLIST_ENTRY)).unwrap()
            })
            .collect()
    }

    fn c_string(mem: &BTreeMap<u64, u8>, gpa: u64) -> Vec<u8> {
        let mut s = Vec::new();
        while let Some(&b) = mem.get(&(gpa + s.len() as u64)) {
            if b == 0 {
                return s;
            }
            s.push(b);
        }
        panic!("string at {gpa:#x} not NUL-terminated in written memory");
    }

    /// hypervisor/src/domain/builder.rs's `build` before this crate,
    /// line for line, with its `p2m.write`s recorded instead: the reference
    /// for the one-ramdisk layout.
    fn old_builder(
        image: &[u8],
        ramdisk: Option<&[u8]>,
        cmdline: &str,
        mem_bytes: u64,
        vcpus: u32,
        privileged: bool,
    ) -> (u32, u64, Writes) {
        const MODLIST_OFFSET: u64 = 64;
        const MEMMAP_OFFSET: u64 = 128;
        const CMDLINE_OFFSET: u64 = 256;
        const FRAME_SIZE: u64 = 4096;
        fn put(page: &mut [u8], at: u64, value: &(impl IntoBytes + Immutable)) {
            let bytes = value.as_bytes();
            page[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
        }
        let acpi_base = |mem_bytes: u64| mem_bytes - (SPECIAL_PAGES + ACPI_PAGES) * FRAME_SIZE;
        let mut writes: Writes = Vec::new();
        let pvh = elf::parse(image).unwrap();
        let (_, image_end) = pvh.span();
        let start_info_gpa = image_end.next_multiple_of(FRAME_SIZE);
        let ramdisk_gpa = start_info_gpa + FRAME_SIZE;
        for seg in &pvh.segments {
            let data = &image[seg.file_offset..seg.file_offset + seg.file_size];
            writes.push((seg.paddr, data.to_vec()));
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
            writes.push((ramdisk_gpa, ramdisk.to_vec()));
            let module = ModlistEntry {
                paddr: ramdisk_gpa,
                size: ramdisk.len() as u64,
                ..Default::default()
            };
            put(&mut page, MODLIST_OFFSET, &module);
            start_info.nr_modules = 1;
            start_info.modlist_paddr = start_info_gpa + MODLIST_OFFSET;
        }
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
        if !cmdline.is_empty() {
            start_info.cmdline_paddr = start_info_gpa + CMDLINE_OFFSET;
            let c = CMDLINE_OFFSET as usize;
            page[c..c + cmdline.len()].copy_from_slice(cmdline.as_bytes());
        }
        if !privileged {
            let base = acpi_base(mem_bytes);
            let acpi = acpi::build(vcpus, base).unwrap();
            writes.push((base, acpi.bytes.clone()));
            start_info.rsdp_paddr = acpi.rsdp_gpa;
        }
        put(&mut page, 0, &start_info);
        writes.push((start_info_gpa, page.to_vec()));
        (pvh.entry, start_info_gpa, writes)
    }

    #[test]
    fn one_ramdisk_layout_is_unchanged() {
        let ramdisk: Vec<u8> = (0..0x2345u32).map(|i| (i * 7) as u8).collect();
        let small = kernel(0x20_0000, &[(0x20_0000, &[1, 2, 3], 0x10)]);
        for image in [linux_like(), small] {
            for with_ramdisk in [false, true] {
                for cmdline in ["", "console=hvc0 root=/dev/ram0"] {
                    for (privileged, vcpus) in [(false, 1), (false, 4), (true, 2)] {
                        for mem_bytes in [24 * MIB, 256 * MIB] {
                            let modules = [Module {
                                bytes: &ramdisk,
                                cmdline: "",
                            }];
                            let req = Request {
                                image: &image,
                                modules: if with_ramdisk { &modules } else { &[] },
                                cmdline,
                                mem_bytes,
                                vcpus,
                                privileged,
                            };
                            let (loaded, writes) = record(&req).unwrap();
                            let (entry, si, old) = old_builder(
                                &image,
                                with_ramdisk.then_some(&ramdisk[..]),
                                cmdline,
                                mem_bytes,
                                vcpus,
                                privileged,
                            );
                            // (The old builder also wrote empty slices.)
                            let old: Writes =
                                old.into_iter().filter(|(_, b)| !b.is_empty()).collect();
                            assert_eq!(writes, old);
                            assert_eq!((loaded.entry, loaded.start_info_gpa), (entry, si));
                            let pages = mem_bytes / PAGE_SIZE;
                            let special = (!privileged).then_some((pages - 1, pages - 2));
                            assert_eq!(loaded.console_gfn.zip(loaded.store_gfn), special);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn one_ramdisk_layout_by_address() {
        let image = linux_like();
        let ramdisk = [0x5au8; 5000];
        let modules = [Module {
            bytes: &ramdisk,
            cmdline: "",
        }];
        let req = Request {
            image: &image,
            modules: &modules,
            cmdline: "console=hvc0",
            mem_bytes: 64 * MIB,
            vcpus: 2,
            privileged: false,
        };
        let (loaded, writes) = record(&req).unwrap();
        // Kernel ends at 0x103234: start info on the next page.
        assert_eq!(loaded.entry, 0x10_0040);
        assert_eq!(loaded.start_info_gpa, 0x10_4000);
        let top = 64 * MIB;
        assert_eq!(
            writes
                .iter()
                .map(|(g, b)| (*g, b.len()))
                .collect::<Vec<_>>(),
            vec![
                (0x10_0000, 0x1800),
                (0x10_2000, 0x300),
                (0x10_5000, 5000),
                (top - 3 * PAGE_SIZE, writes[3].1.len()),
                (0x10_4000, PAGE),
            ]
        );
        let mem = memory(&writes);
        let si = start_info(&mem, 0x10_4000);
        assert!(si.has_magic());
        assert_eq!(si.flags, 0);
        assert_eq!((si.nr_modules, si.modlist_paddr), (1, 0x10_4000 + 64));
        assert_eq!(si.memmap_paddr, 0x10_4000 + 128);
        assert_eq!(si.memmap_entries, 3);
        assert_eq!(si.cmdline_paddr, 0x10_4000 + 256);
        assert_eq!(c_string(&mem, si.cmdline_paddr), b"console=hvc0");
        assert_eq!(
            modlist(&mem, &si),
            vec![ModlistEntry {
                paddr: 0x10_5000,
                size: 5000,
                cmdline_paddr: 0,
                reserved: 0
            }]
        );
        assert!(si.rsdp_paddr >= top - 3 * PAGE_SIZE && si.rsdp_paddr < top - 2 * PAGE_SIZE);
        assert_eq!(read(&mem, si.rsdp_paddr, 8), b"RSD PTR ");
        assert_eq!(loaded.console_gfn, Some(top / PAGE_SIZE - 1));
        assert_eq!(loaded.store_gfn, Some(top / PAGE_SIZE - 2));
    }

    #[test]
    fn several_modules_with_command_lines() {
        let image = linux_like();
        let a = [1u8; 10];
        let b = [2u8; 4096];
        let c = [3u8; 4097];
        let d: [u8; 0] = [];
        let modules = [
            Module {
                bytes: &a,
                cmdline: "",
            },
            Module {
                bytes: &b,
                cmdline: "second module",
            },
            Module {
                bytes: &c,
                cmdline: "x",
            },
            Module {
                bytes: &d,
                cmdline: "",
            },
        ];
        let req = Request {
            image: &image,
            modules: &modules,
            cmdline: "",
            mem_bytes: 32 * MIB,
            vcpus: 1,
            privileged: false,
        };
        let (loaded, writes) = record(&req).unwrap();
        let si_gpa = loaded.start_info_gpa;
        assert_eq!(si_gpa, 0x10_4000);
        let mem = memory(&writes);
        let si = start_info(&mem, si_gpa);
        assert_eq!(si.nr_modules, 4);
        assert_eq!(si.cmdline_paddr, 0);
        // The module page right after the start info, modules after it.
        let mp = si_gpa + PAGE_SIZE;
        assert_eq!(si.modlist_paddr, mp);
        let list = modlist(&mem, &si);
        let first = mp + PAGE_SIZE;
        assert_eq!(
            list.iter().map(|e| (e.paddr, e.size)).collect::<Vec<_>>(),
            vec![
                (first, 10),
                (first + PAGE_SIZE, 4096),
                (first + 2 * PAGE_SIZE, 4097),
                (first + 4 * PAGE_SIZE, 0),
            ]
        );
        assert_eq!(list[0].cmdline_paddr, 0);
        assert_eq!(list[3].cmdline_paddr, 0);
        assert_eq!(c_string(&mem, list[1].cmdline_paddr), b"second module");
        assert_eq!(c_string(&mem, list[2].cmdline_paddr), b"x");
        for (e, m) in list.iter().zip(&modules) {
            assert_eq!(read(&mem, e.paddr, m.bytes.len()), m.bytes);
            assert!(e.cmdline_paddr == 0 || (mp..mp + PAGE_SIZE).contains(&e.cmdline_paddr));
        }
        // Nothing of the start-info page's single-module slot is used.
        assert_eq!(read(&mem, si_gpa + 64, 32), [0; 32]);
    }

    #[test]
    fn one_module_with_a_command_line_uses_the_module_page() {
        let image = linux_like();
        let modules = [Module {
            bytes: &[9; 3],
            cmdline: "rdinit=/bin/sh",
        }];
        let req = Request {
            image: &image,
            modules: &modules,
            cmdline: "quiet",
            mem_bytes: 16 * MIB,
            vcpus: 1,
            privileged: true,
        };
        let (loaded, writes) = record(&req).unwrap();
        let mem = memory(&writes);
        let si = start_info(&mem, loaded.start_info_gpa);
        let mp = loaded.start_info_gpa + PAGE_SIZE;
        assert_eq!(si.modlist_paddr, mp);
        let list = modlist(&mem, &si);
        assert_eq!(list[0].paddr, mp + PAGE_SIZE);
        assert_eq!(c_string(&mem, list[0].cmdline_paddr), b"rdinit=/bin/sh");
        assert_eq!(c_string(&mem, si.cmdline_paddr), b"quiet");
    }

    #[test]
    fn modules_without_command_lines() {
        let image = linux_like();
        let modules = [
            Module {
                bytes: &[1; 100],
                cmdline: "",
            },
            Module {
                bytes: &[2; 100],
                cmdline: "",
            },
        ];
        let req = Request {
            image: &image,
            modules: &modules,
            cmdline: "",
            mem_bytes: 16 * MIB,
            vcpus: 1,
            privileged: false,
        };
        let (loaded, writes) = record(&req).unwrap();
        let mem = memory(&writes);
        let si = start_info(&mem, loaded.start_info_gpa);
        let list = modlist(&mem, &si);
        assert_eq!(si.modlist_paddr, loaded.start_info_gpa + PAGE_SIZE);
        assert!(list.iter().all(|e| e.cmdline_paddr == 0));
        assert_eq!(list[1].paddr, list[0].paddr + PAGE_SIZE);
    }

    #[test]
    fn does_not_fit() {
        let image = linux_like();
        let big = vec![0u8; 3 * MIB as usize];
        let modules = [Module {
            bytes: &big,
            cmdline: "",
        }];
        let mut req = Request {
            image: &image,
            modules: &modules,
            cmdline: "",
            mem_bytes: 4 * MIB,
            vcpus: 1,
            privileged: false,
        };
        // 0x105000 + 3 MiB, plus the three pages at the top.
        let needs = 0x10_5000 + 3 * MIB + 3 * PAGE_SIZE;
        assert_eq!(
            record(&req).map(|_| ()),
            Err(BuildError::DoesNotFit {
                needs,
                has: 4 * MIB
            })
        );
        // Exactly enough.
        req.mem_bytes = needs;
        assert!(record(&req).is_ok());
        req.mem_bytes = needs - PAGE_SIZE;
        assert!(matches!(record(&req), Err(BuildError::DoesNotFit { .. })));
        // Dom0 keeps nothing at the top.
        req.privileged = true;
        assert!(record(&req).is_ok());
        req.mem_bytes = needs - 4 * PAGE_SIZE;
        assert!(matches!(record(&req), Err(BuildError::DoesNotFit { .. })));
        // No memory at all, or too little for the top pages.
        for (mem_bytes, privileged) in [(0, false), (0, true), (PAGE_SIZE, false), (100, false)] {
            req.mem_bytes = mem_bytes;
            req.privileged = privileged;
            assert!(matches!(record(&req), Err(BuildError::DoesNotFit { .. })));
        }
        // A kernel that ends at the very top of the address space.
        let image = kernel(0, &[(u64::MAX - 0x10, &[1], 0x10)]);
        req.image = &image;
        req.mem_bytes = MAX_MEM_BYTES;
        assert_eq!(
            record(&req).map(|_| ()),
            Err(BuildError::DoesNotFit {
                needs: u64::MAX,
                has: MAX_MEM_BYTES
            })
        );
    }

    #[test]
    fn command_line_too_long() {
        let image = linux_like();
        let long = "x".repeat(CMDLINE_MAX + 1);
        let mut req = Request {
            image: &image,
            modules: &[],
            cmdline: &long,
            mem_bytes: 16 * MIB,
            vcpus: 1,
            privileged: false,
        };
        assert_eq!(
            record(&req).map(|_| ()),
            Err(BuildError::CmdlineTooLong(CMDLINE_MAX + 1))
        );
        req.cmdline = &long[..CMDLINE_MAX];
        let (loaded, writes) = record(&req).unwrap();
        let mem = memory(&writes);
        let si = start_info(&mem, loaded.start_info_gpa);
        assert_eq!(c_string(&mem, si.cmdline_paddr).len(), CMDLINE_MAX);

        // Module command lines: MODULE_CMDLINES_MAX bytes with the NULs.
        req.cmdline = "";
        let half = "m".repeat(MODULE_CMDLINES_MAX / 2 - 1);
        let modules = [
            Module {
                bytes: &[1],
                cmdline: &half,
            },
            Module {
                bytes: &[2],
                cmdline: &half,
            },
        ];
        req.modules = &modules;
        let (loaded, writes) = record(&req).unwrap();
        let mem = memory(&writes);
        let si = start_info(&mem, loaded.start_info_gpa);
        for e in modlist(&mem, &si) {
            assert_eq!(c_string(&mem, e.cmdline_paddr), half.as_bytes());
        }
        let longer = "m".repeat(MODULE_CMDLINES_MAX / 2);
        let modules = [
            Module {
                bytes: &[1],
                cmdline: &half,
            },
            Module {
                bytes: &[2],
                cmdline: &longer,
            },
        ];
        req.modules = &modules;
        assert_eq!(
            record(&req).map(|_| ()),
            Err(BuildError::CmdlineTooLong(MODULE_CMDLINES_MAX + 1))
        );
    }

    #[test]
    fn too_many_modules() {
        let image = linux_like();
        let modules = [Module {
            bytes: &[7; 8],
            cmdline: "m",
        }; MAX_MODULES + 1];
        let mut req = Request {
            image: &image,
            modules: &modules,
            cmdline: "",
            mem_bytes: 16 * MIB,
            vcpus: 1,
            privileged: false,
        };
        assert_eq!(
            record(&req).map(|_| ()),
            Err(BuildError::TooManyModules(MAX_MODULES + 1))
        );
        req.modules = &modules[..MAX_MODULES];
        let (loaded, writes) = record(&req).unwrap();
        let mem = memory(&writes);
        let si = start_info(&mem, loaded.start_info_gpa);
        let list = modlist(&mem, &si);
        assert_eq!(list.len(), MAX_MODULES);
        for e in &list {
            assert_eq!(c_string(&mem, e.cmdline_paddr), b"m");
            assert_eq!(read(&mem, e.paddr, 8), [7; 8]);
        }
    }

    #[test]
    fn dom0_has_no_acpi_or_special_pages() {
        let image = linux_like();
        let ramdisk = [1u8; 100];
        let modules = [Module {
            bytes: &ramdisk,
            cmdline: "",
        }];
        let mem_bytes = 64 * MIB;
        let req = Request {
            image: &image,
            modules: &modules,
            cmdline: "pavise.dma=0x1000:0x1000",
            mem_bytes,
            vcpus: 0,
            privileged: true,
        };
        let (loaded, writes) = record(&req).unwrap();
        assert_eq!((loaded.console_gfn, loaded.store_gfn), (None, None));
        // Kernel, ramdisk, start info: nothing near the top.
        assert_eq!(writes.len(), 4);
        assert!(writes.iter().all(|(g, b)| g + (b.len() as u64) < 2 * MIB));
        let mem = memory(&writes);
        let si = start_info(&mem, loaded.start_info_gpa);
        assert_eq!(si.flags, SIF_PRIVILEGED | SIF_INITDOMAIN);
        assert_eq!(si.rsdp_paddr, 0);
        assert_eq!(si.memmap_entries, 1);
        assert_eq!(
            read(&mem, si.memmap_paddr, 24),
            MemmapTableEntry {
                addr: 0,
                size: mem_bytes,
                r#type: XEN_HVM_MEMMAP_TYPE_RAM,
                reserved: 0
            }
            .as_bytes()
        );
        assert_eq!(memory_map(mem_bytes, true), vec![(0, mem_bytes, 1)]);
    }

    #[test]
    fn domu_memory_map_and_acpi() {
        let top = 32 * MIB;
        assert_eq!(
            memory_map(top, false),
            vec![
                (0, top - 3 * PAGE_SIZE, XEN_HVM_MEMMAP_TYPE_RAM),
                (top - 3 * PAGE_SIZE, PAGE_SIZE, XEN_HVM_MEMMAP_TYPE_ACPI),
                (
                    top - 2 * PAGE_SIZE,
                    2 * PAGE_SIZE,
                    XEN_HVM_MEMMAP_TYPE_RESERVED
                ),
            ]
        );
        // Whole pages only, and never a panic for tiny sizes.
        assert_eq!(memory_map(top + 100, false), memory_map(top, false));
        for mem in [0, 1, PAGE_SIZE, 2 * PAGE_SIZE + 1, u64::MAX] {
            for privileged in [false, true] {
                let map = memory_map(mem, privileged);
                let end = map.iter().fold(0, |at, &(a, s, _)| {
                    assert_eq!(a, at);
                    a + s
                });
                assert_eq!(end, top_of(mem));
            }
        }
        let image = linux_like();
        let req = Request {
            image: &image,
            modules: &[],
            cmdline: "",
            mem_bytes: top,
            vcpus: 0,
            privileged: false,
        };
        assert_eq!(
            record(&req).map(|_| ()),
            Err(BuildError::Acpi(AcpiError::TooManyVcpus))
        );
        let req = Request {
            vcpus: acpi::MAX_VCPUS + 1,
            ..req
        };
        assert_eq!(
            record(&req).map(|_| ()),
            Err(BuildError::Acpi(AcpiError::TooManyVcpus))
        );
    }

    #[test]
    fn errors_from_image_memory_and_writer() {
        let req = Request {
            image: b"MZ not an ELF",
            modules: &[],
            cmdline: "",
            mem_bytes: 16 * MIB,
            vcpus: 1,
            privileged: false,
        };
        assert_eq!(
            record(&req).map(|_| ()),
            Err(BuildError::Image(ElfError::NotElf))
        );
        let image = linux_like();
        let req = Request {
            image: &image,
            mem_bytes: MAX_MEM_BYTES + PAGE_SIZE,
            ..req
        };
        assert_eq!(
            record(&req).map(|_| ()),
            Err(BuildError::TooMuchMemory {
                has: MAX_MEM_BYTES + PAGE_SIZE
            })
        );
        let req = Request {
            mem_bytes: 16 * MIB,
            ..req
        };
        let mut calls = 0;
        let failed = load(&req, &mut |gpa, _| {
            calls += 1;
            if gpa == 0x10_2000 { Err(()) } else { Ok(()) }
        });
        assert_eq!(failed, Err(BuildError::Write { gpa: 0x10_2000 }));
        assert_eq!(calls, 2, "the build stops at the failed write");
    }

    #[test]
    fn every_error_says_something() {
        for e in [
            BuildError::Image(ElfError::NoPvhNote),
            BuildError::DoesNotFit {
                needs: 0x100_0000,
                has: 8 * MIB,
            },
            BuildError::CmdlineTooLong(5000),
            BuildError::TooManyModules(17),
            BuildError::Acpi(AcpiError::TooManyVcpus),
            BuildError::Write { gpa: 0x1000 },
            BuildError::TooMuchMemory { has: u64::MAX },
        ] {
            let s = e.to_string();
            assert!(s.len() > 10 && !s.ends_with('.'), "{s}");
        }
        assert_eq!(
            BuildError::Image(ElfError::NotElf).to_string(),
            "bad kernel image: not an ELF file"
        );
    }

    /// Checks what a successful build wrote: within the domain, nothing of
    /// a DomU's top pages but its ACPI tables, and a start info that
    /// describes the modules as written.
    fn check_writes(req: &Request, loaded: &Loaded, writes: &Writes) {
        let top = top_of(req.mem_bytes);
        let acpi_base = top.saturating_sub(3 * PAGE_SIZE);
        for (gpa, bytes) in writes {
            let end = gpa.checked_add(bytes.len() as u64).unwrap();
            assert!(end <= top, "write {gpa:#x}+{} beyond {top:#x}", bytes.len());
            if !req.privileged && *gpa != acpi_base {
                assert!(end <= acpi_base, "write {gpa:#x} into the top pages");
            }
        }
        let mem = memory(writes);
        let si = start_info(&mem, loaded.start_info_gpa);
        assert!(si.has_magic());
        assert_eq!(si.nr_modules as usize, req.modules.len());
        for (e, m) in modlist(&mem, &si).iter().zip(req.modules) {
            assert_eq!(e.size, m.bytes.len() as u64);
            assert_eq!(e.paddr % PAGE_SIZE, 0);
            assert!(e.paddr > loaded.start_info_gpa);
            if m.cmdline.is_empty() {
                assert_eq!(e.cmdline_paddr, 0);
            } else {
                assert_eq!(c_string(&mem, e.cmdline_paddr), m.cmdline.as_bytes());
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_images_never_panic(
            image in proptest::collection::vec(any::<u8>(), 0..512),
            mem_bytes in any::<u64>(),
            vcpus in any::<u32>(),
            privileged in any::<bool>(),
            cmdline in ".{0,8}",
        ) {
            let modules = [Module { bytes: &image, cmdline: &cmdline }];
            for modules in [&[][..], &modules[..]] {
                let req = Request { image: &image, modules, cmdline: &cmdline, mem_bytes, vcpus, privileged };
                let _ = load(&req, &mut |_, _| Ok(()));
            }
        }

        #[test]
        fn arbitrary_layouts_never_panic(
            segments in proptest::collection::vec(
                (prop_oneof![1 => any::<u64>(), 4 => 0u64..(64 << 20)],
                 proptest::collection::vec(any::<u8>(), 0..64),
                 prop_oneof![1 => any::<u64>(), 4 => 0u64..(1 << 20)]),
                1..4),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..2),
            module_sizes in proptest::collection::vec((0usize..6000, 0usize..300), 0..18),
            mem_bytes in prop_oneof![
                1 => any::<u64>(),
                4 => 0u64..(128 << 20),
                1 => Just(MAX_MEM_BYTES)
            ],
            vcpus in 0u32..140,
            privileged in any::<bool>(),
            cmdline_len in prop_oneof![1 => 0usize..5000, 3 => 0usize..100],
        ) {
            let segments: Vec<(u64, &[u8], u64)> = segments
                .iter()
                .map(|(p, b, m)| (*p, &b[..], (*m).max(b.len() as u64)))
                .collect();
            let mut image = kernel(0x10_0000, &segments);
            for (at, v) in flips {
                let len = image.len();
                image[at % len] = v;
            }
            let blobs: Vec<(Vec<u8>, String)> = module_sizes
                .iter()
                .map(|&(n, c)| (vec![0xa5; n], "c".repeat(c)))
                .collect();
            let modules: Vec<Module> = blobs
                .iter()
                .map(|(b, c)| Module { bytes: b, cmdline: c })
                .collect();
            let cmdline = "k".repeat(cmdline_len);
            let req = Request { image: &image, modules: &modules, cmdline: &cmdline, mem_bytes, vcpus, privileged };
            if let Ok((loaded, writes)) = record(&req) {
                check_writes(&req, &loaded, &writes);
            }
        }
    }
}
