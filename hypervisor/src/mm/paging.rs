//! The hypervisor's own page tables.
//!
//! Physical memory is identity-mapped (2 MiB pages, no-execute). The image
//! is mapped with 4 KiB pages by section: text read-only and executable,
//! rodata read-only, data and bss no-execute. Page 0 stays unmapped so a
//! null dereference faults. Non-RAM ranges are uncached (MMIO). Each CPU's
//! stacks live in their own virtual slot with an unmapped guard page below
//! every stack.

use x86_64::PhysAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::{PageTable, PageTableFlags as Flags, PhysFrame};

use super::frame::{FRAME_SIZE, Frame, MemRegion, RegionKind};

const HUGE: u64 = 2 << 20;
const FOUR_GIB: u64 = 4 << 30;

/// Low page holding the AP start-up code (executable, read-only).
pub const TRAMPOLINE_CODE: u64 = 0x8000;
/// Low page holding the AP start-up parameters (read-write).
pub const TRAMPOLINE_DATA: u64 = 0x9000;

/// Virtual base of the per-CPU stack slots.
const STACKS_BASE: u64 = 0xffff_9000_0000_0000;
const STACK_SLOT: u64 = 256 << 10;
pub const MAIN_STACK_SIZE: u64 = 64 << 10;
const IST_STACK_SIZE: u64 = 16 << 10;

#[derive(Debug)]
pub enum PagingError {
    OutOfFrames,
}

/// The stacks of one CPU (top addresses; stacks grow down).
#[derive(Clone, Copy, Debug)]
pub struct CpuStacks {
    pub main_top: u64,
    pub double_fault_top: u64,
    pub nmi_top: u64,
    pub machine_check_top: u64,
}

impl CpuStacks {
    pub fn main_bottom(&self) -> u64 {
        self.main_top - MAIN_STACK_SIZE
    }
}

unsafe extern "C" {
    static __image_start: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __image_end: u8;
}

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// Physical address of the active PML4 (for APs' CR3).
pub fn root() -> u64 {
    Cr3::read().0.start_address().as_u64()
}

pub fn alloc_table() -> Result<u64, PagingError> {
    let frame = super::frames().alloc().ok_or(PagingError::OutOfFrames)?;
    let addr = frame.start();
    // SAFETY: a fresh frame from the allocator, identity-mapped and
    // unused; it becomes a page table, which must start zeroed.
    unsafe { core::ptr::write_bytes(addr as *mut u8, 0, FRAME_SIZE as usize) };
    Ok(addr)
}

fn table_at(addr: u64) -> &'static mut PageTable {
    // SAFETY: `addr` is a page-table frame this module allocated (or the
    // active root); page tables are identity-mapped and only touched with
    // the paging lock held (boot is single-threaded; APs map nothing).
    unsafe { &mut *(addr as *mut PageTable) }
}

/// Maps one page of `size` (4 KiB or 2 MiB) at `virt` → `phys` under
/// `root`, creating intermediate tables.
fn map(root: u64, virt: u64, phys: u64, size: u64, flags: Flags) -> Result<(), PagingError> {
    map_with(
        root,
        virt,
        phys,
        size,
        flags,
        Flags::PRESENT | Flags::WRITABLE,
    )
}

/// [`map`] with chosen flags for newly created intermediate tables (nested
/// page tables need the user bit on every level).
pub fn map_with(
    root: u64,
    virt: u64,
    phys: u64,
    size: u64,
    flags: Flags,
    table_flags: Flags,
) -> Result<(), PagingError> {
    let indices = [
        (virt >> 39) & 511,
        (virt >> 30) & 511,
        (virt >> 21) & 511,
        (virt >> 12) & 511,
    ];
    let levels = if size == HUGE { 3 } else { 4 };
    let mut table = table_at(root);
    for &index in &indices[..levels - 1] {
        let entry = &mut table[index as usize];
        if entry.is_unused() {
            let next = alloc_table()?;
            entry.set_addr(PhysAddr::new(next), table_flags);
        }
        table = table_at(entry.addr().as_u64());
    }
    let leaf_flags = if size == HUGE {
        flags | Flags::HUGE_PAGE
    } else {
        flags
    };
    table[indices[levels - 1] as usize].set_addr(PhysAddr::new(phys), leaf_flags);
    Ok(())
}

fn image_page_flags(addr: u64) -> Flags {
    // SAFETY: linker-script symbols; only their addresses are used.
    let (text_start, text_end, rodata_end) =
        unsafe { (sym(&__text_start), sym(&__text_end), sym(&__rodata_end)) };
    if (text_start..text_end).contains(&addr) {
        Flags::PRESENT
    } else if addr < rodata_end {
        Flags::PRESENT | Flags::NO_EXECUTE
    } else {
        Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE
    }
}

/// Builds the final address space and switches to it. Must run on the
/// boot stack (inside the image) before any CPU stack is used.
pub fn init(regions: &[MemRegion]) -> Result<(), PagingError> {
    // SAFETY: linker-script symbols; only their addresses are used.
    let (image_start, image_end) = unsafe { (sym(&__image_start), sym(&__image_end)) };
    let ram_top = regions
        .iter()
        .filter(|r| r.kind == RegionKind::Usable)
        .map(|r| r.start.saturating_add(r.len))
        .max()
        .unwrap_or(0);
    let top = ram_top.max(FOUR_GIB).next_multiple_of(HUGE);
    let is_ram = |start: u64, end: u64| {
        regions
            .iter()
            .any(|r| r.kind == RegionKind::Usable && r.start < end && start < r.start + r.len)
    };
    let data = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE;
    let mmio = data | Flags::NO_CACHE | Flags::WRITE_THROUGH;

    let root = alloc_table()?;
    let mut chunk = 0;
    while chunk < top {
        let end = chunk + HUGE;
        let holds_image = chunk < image_end && image_start < end;
        if chunk == 0 || holds_image {
            let mut page = chunk;
            while page < end {
                let flags = if page == 0 {
                    None
                } else if page == TRAMPOLINE_CODE {
                    Some(Flags::PRESENT)
                } else if (image_start..image_end).contains(&page) {
                    Some(image_page_flags(page))
                } else {
                    Some(data)
                };
                if let Some(flags) = flags {
                    map(root, page, page, FRAME_SIZE, flags)?;
                }
                page += FRAME_SIZE;
            }
        } else {
            let flags = if is_ram(chunk, end) { data } else { mmio };
            map(root, chunk, chunk, HUGE, flags)?;
        }
        chunk = end;
    }
    let frame = PhysFrame::containing_address(PhysAddr::new(root));
    // SAFETY: the new tables map everything the hypervisor uses now (its
    // image including the boot stack, all RAM, MMIO) at the same addresses.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    Ok(())
}

/// Where the stacks of CPU `index` live: its slot holds, from the bottom,
/// a guard page and the main stack, then a guard page and each IST stack.
pub fn stacks_of(index: usize) -> CpuStacks {
    let slot = STACKS_BASE + index as u64 * STACK_SLOT;
    let main_top = slot + FRAME_SIZE + MAIN_STACK_SIZE;
    let double_fault_top = main_top + FRAME_SIZE + IST_STACK_SIZE;
    let nmi_top = double_fault_top + FRAME_SIZE + IST_STACK_SIZE;
    let machine_check_top = nmi_top + FRAME_SIZE + IST_STACK_SIZE;
    CpuStacks {
        main_top,
        double_fault_top,
        nmi_top,
        machine_check_top,
    }
}

/// Maps the stacks of CPU `index` (see [`stacks_of`]); guard pages stay
/// unmapped.
pub fn map_cpu_stacks(index: usize) -> Result<CpuStacks, PagingError> {
    let stacks = stacks_of(index);
    let ranges = [
        (stacks.main_top, MAIN_STACK_SIZE),
        (stacks.double_fault_top, IST_STACK_SIZE),
        (stacks.nmi_top, IST_STACK_SIZE),
        (stacks.machine_check_top, IST_STACK_SIZE),
    ];
    let flags = Flags::PRESENT | Flags::WRITABLE | Flags::NO_EXECUTE;
    for (top, size) in ranges {
        let mut page = top - size;
        while page < top {
            let frame: Frame = super::frames().alloc().ok_or(PagingError::OutOfFrames)?;
            map(root(), page, frame.start(), FRAME_SIZE, flags)?;
            page += FRAME_SIZE;
        }
    }
    Ok(stacks)
}

/// Frees the page-table frames under `root` (not the pages they map) and
/// `root` itself. For address spaces built with [`map_with`] and 4 KiB
/// leaves only (nested page tables).
pub fn free_tables(root: u64) {
    fn free_level(table: u64, level: u32) {
        if level > 1 {
            for entry in table_at(table).iter() {
                if !entry.is_unused() {
                    free_level(entry.addr().as_u64(), level - 1);
                }
            }
        }
        let _ = super::frames().free(Frame::containing(table));
    }
    free_level(root, 4);
}

/// Points the 4 KiB leaf for `virt` under `root` at `phys` (or unmaps it).
/// The intermediate tables must exist.
pub fn set_leaf(root: u64, virt: u64, phys: Option<u64>, flags: Flags) -> bool {
    let mut table = table_at(root);
    for shift in [39u64, 30, 21] {
        let entry = &table[((virt >> shift) & 511) as usize];
        if entry.is_unused() {
            return false;
        }
        table = table_at(entry.addr().as_u64());
    }
    let leaf = &mut table[((virt >> 12) & 511) as usize];
    match phys {
        Some(p) => leaf.set_addr(PhysAddr::new(p), flags),
        None => leaf.set_unused(),
    }
    true
}
