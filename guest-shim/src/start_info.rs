//! The PVH `hvm_start_info` the domain builder (or QEMU) hands over in
//! `%ebx`, read into a safe view: flags, the command line as `&str`, the
//! boot modules and the memory map.
//!
//! Parsing is pure: it reads guest-physical memory through [`Memory`], so
//! host tests feed it a buffer; on bare metal `Identity` reads the
//! identity-mapped RAM directly.Everything is validated and copied once,
//! at start-up: magic, version, the command lines (NUL-terminated within
//! [`CMDLINE_MAX`] bytes; a non-UTF-8 tail is cut off), the module list and
//! every module's bytes, the memory map.

use alloc::vec::Vec;

use pv_abi::start_info::{
    self as abi, HVM_START_INFO_V0_SIZE, MemmapTableEntry, MemmapType, ModlistEntry, SifFlags,
    XEN_HVM_START_MAGIC_VALUE,
};
use zerocopy::FromBytes;

/// Longest command line read (bytes before the terminating NUL).
pub const CMDLINE_MAX: usize = 4096;
/// Most boot modules accepted.
pub const MODULES_MAX: u32 = 256;
/// Most memory-map entries accepted.
pub const MEMMAP_MAX: u32 = 1024;

/// Read access to guest-physical memory for the parser.
pub trait Memory<'a> {
    /// `len` bytes at guest-physical `addr`, if all of them are readable.
    fn bytes(&self, addr: u64, len: usize) -> Option<&'a [u8]>;
}

/// Why the start info was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// `%ebx` was 0.
    Null,
    /// The structure itself is not in readable memory.
    Unreadable(u64),
    /// The magic number is not `XEN_HVM_START_MAGIC_VALUE`.
    BadMagic(u32),
    /// The command line at this address is unreadable or unterminated.
    Cmdline(u64),
    /// The module list (address, count) is unreadable or too long.
    ModuleList(u64, u32),
    /// Module `n`'s bytes or command line are unreadable.
    Module(u32),
    /// The memory map (address, entries) is unreadable or too long.
    Memmap(u64, u32),
}

/// One boot module (`hvm_modlist_entry`), with its bytes and command line.
#[derive(Clone, Copy, Debug)]
pub struct Module<'a> {
    /// Where the module is.
    pub paddr: u64,
    pub bytes: &'a [u8],
    /// Where its command line is (0: none).
    pub cmdline_paddr: u64,
    pub cmdline: &'a str,
}

/// One memory-map entry (`hvm_memmap_table_entry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub addr: u64,
    pub size: u64,
    /// The type, or the raw number if it is not one Xen defines.
    pub kind: Result<MemmapType, u32>,
}

/// The parsed `hvm_start_info`.
#[derive(Clone, Debug)]
pub struct StartInfo<'a> {
    /// Where the structure is.
    addr: u64,
    raw: abi::StartInfo,
    cmdline: &'a str,
    modules: Vec<Module<'a>>,
    memmap: Vec<MemoryRegion>,
}

impl<'a> StartInfo<'a> {
    /// Reads and checks the structure at guest-physical `addr`.
    pub fn parse(mem: &impl Memory<'a>, addr: u64) -> Result<Self, StartInfoError> {
        if addr == 0 {
            return Err(StartInfoError::Null);
        }
        let head = mem
            .bytes(addr, HVM_START_INFO_V0_SIZE)
            .ok_or(StartInfoError::Unreadable(addr))?;
        let mut buf = [0u8; size_of::<abi::StartInfo>()];
        buf[..head.len()].copy_from_slice(head);
        let version = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if version >= 1 {
            let full = mem
                .bytes(addr, buf.len())
                .ok_or(StartInfoError::Unreadable(addr))?;
            buf.copy_from_slice(full);
        }
        let raw = abi::StartInfo::read_from_bytes(&buf[..])
            .map_err(|_| StartInfoError::Unreadable(addr))?;
        if !raw.has_magic() {
            return Err(StartInfoError::BadMagic(raw.magic));
        }
        let cmdline =
            c_string(mem, raw.cmdline_paddr).ok_or(StartInfoError::Cmdline(raw.cmdline_paddr))?;
        let modules = modules(mem, &raw)?;
        let memmap = if raw.has_memmap() {
            memmap(mem, &raw).ok_or(StartInfoError::Memmap(raw.memmap_paddr, raw.memmap_entries))?
        } else {
            Vec::new()
        };
        Ok(Self {
            addr,
            raw,
            cmdline,
            modules,
            memmap,
        })
    }

    /// The structure as the loader wrote it.
    pub fn raw(&self) -> &abi::StartInfo {
        &self.raw
    }

    pub fn flags(&self) -> SifFlags {
        SifFlags::from_bits_retain(self.raw.flags)
    }

    /// SIF_PRIVILEGED: the domain may use privileged hypercalls.
    pub fn privileged(&self) -> bool {
        self.flags().contains(SifFlags::PRIVILEGED)
    }

    /// SIF_INITDOMAIN: this is the initial control domain (Dom0).
    pub fn initdomain(&self) -> bool {
        self.flags().contains(SifFlags::INITDOMAIN)
    }

    /// The kernel command line ("" if none was given).
    pub fn cmdline(&self) -> &'a str {
        self.cmdline
    }

    pub fn modules(&self) -> &[Module<'a>] {
        &self.modules
    }

    /// The memory map (empty for a version-0 start info or when none was
    /// given).
    pub fn memmap(&self) -> &[MemoryRegion] {
        &self.memmap
    }

    /// The ACPI RSDP's guest-physical address, if the loader gave one.
    pub fn rsdp(&self) -> Option<u64> {
        Some(self.raw.rsdp_paddr).filter(|&a| a != 0)
    }

    /// The free RAM above the kernel image (which ends at `image_end`) and
    /// everything the loader placed after it (this structure, the command
    /// lines, module list, modules and memory map): from the first page
    /// boundary above all of them to the end of the RAM region holding
    /// it, as (start, end). `None` if no RAM is left there.
    pub fn free_ram(&self, image_end: u64) -> Option<(u64, u64)> {
        const PAGE: u64 = 4096;
        let mut used = image_end.max(self.addr.saturating_add(PAGE));
        let mut place = |paddr: u64, len: u64| {
            if paddr != 0 && len != 0 {
                used = used.max(paddr.saturating_add(len));
            }
        };
        let raw = &self.raw;
        place(raw.cmdline_paddr, self.cmdline.len() as u64 + 1);
        place(
            raw.modlist_paddr,
            u64::from(raw.nr_modules) * size_of::<ModlistEntry>() as u64,
        );
        if raw.has_memmap() {
            place(
                raw.memmap_paddr,
                u64::from(raw.memmap_entries) * size_of::<MemmapTableEntry>() as u64,
            );
        }
        for m in &self.modules {
            place(m.paddr, m.bytes.len() as u64);
            place(m.cmdline_paddr, m.cmdline.len() as u64 + 1);
        }
        let start = used.checked_next_multiple_of(PAGE)?;
        let region = self.memmap.iter().find(|r| {
            r.kind == Ok(MemmapType::Ram)
                && r.addr <= start
                && start < r.addr.saturating_add(r.size)
        })?;
        let end = region.addr.saturating_add(region.size) & !(PAGE - 1);
        (start < end).then_some((start, end))
    }

    /// Whether the view still reads memory below `end` (a command line or
    /// a module there): then that memory must stay mapped.
    pub fn borrows_below(&self, end: u64) -> bool {
        let below = |paddr: u64, s: &[u8]| !s.is_empty() && paddr < end;
        below(self.raw.cmdline_paddr, self.cmdline.as_bytes())
            || self
                .modules
                .iter()
                .any(|m| below(m.cmdline_paddr, m.cmdline.as_bytes()) || below(m.paddr, m.bytes))
    }
}

/// The NUL-terminated string at `addr` ("" for address 0), cut at the
/// first byte that is not valid UTF-8.
fn c_string<'a>(mem: &impl Memory<'a>, addr: u64) -> Option<&'a str> {
    if addr == 0 {
        return Some("");
    }
    let mut len = 0;
    loop {
        if len > CMDLINE_MAX {
            return None;
        }
        let byte = mem.bytes(addr.checked_add(len as u64)?, 1)?;
        if byte[0] == 0 {
            break;
        }
        len += 1;
    }
    let bytes = mem.bytes(addr, len)?;
    Some(match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            // Cannot fail: `valid_up_to` bytes are valid UTF-8.
            core::str::from_utf8(valid).unwrap_or("")
        }
    })
}

/// `count` records of `T` at `addr`, copied out.
fn records<'a, T: FromBytes>(mem: &impl Memory<'a>, addr: u64, count: u32) -> Option<Vec<T>> {
    let len = (count as usize).checked_mul(size_of::<T>())?;
    let bytes = mem.bytes(addr, len)?;
    bytes
        .chunks_exact(size_of::<T>())
        .map(|chunk| T::read_from_bytes(chunk).ok())
        .collect()
}

fn modules<'a>(
    mem: &impl Memory<'a>,
    raw: &abi::StartInfo,
) -> Result<Vec<Module<'a>>, StartInfoError> {
    if raw.nr_modules == 0 {
        return Ok(Vec::new());
    }
    let bad_list = StartInfoError::ModuleList(raw.modlist_paddr, raw.nr_modules);
    if raw.nr_modules > MODULES_MAX {
        return Err(bad_list);
    }
    let list: Vec<ModlistEntry> =
        records(mem, raw.modlist_paddr, raw.nr_modules).ok_or(bad_list)?;
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let bad = StartInfoError::Module(i as u32);
            let size = usize::try_from(m.size).map_err(|_| bad)?;
            Ok(Module {
                paddr: m.paddr,
                bytes: mem.bytes(m.paddr, size).ok_or(bad)?,
                cmdline_paddr: m.cmdline_paddr,
                cmdline: c_string(mem, m.cmdline_paddr).ok_or(bad)?,
            })
        })
        .collect()
}

fn memmap<'a>(mem: &impl Memory<'a>, raw: &abi::StartInfo) -> Option<Vec<MemoryRegion>> {
    if raw.memmap_entries > MEMMAP_MAX {
        return None;
    }
    let entries: Vec<MemmapTableEntry> = records(mem, raw.memmap_paddr, raw.memmap_entries)?;
    Some(
        entries
            .iter()
            .map(|e| MemoryRegion {
                addr: e.addr,
                size: e.size,
                kind: MemmapType::try_from(e.r#type),
            })
            .collect(),
    )
}

/// Guest-physical memory as the shim's identity page tables map it: the
/// first 4 GiB (page 0 only until start-up unmaps it).
#[cfg(target_os = "none")]
#[derive(Clone, Copy, Debug)]
pub struct Identity;

#[cfg(target_os = "none")]
impl Memory<'static> for Identity {
    fn bytes(&self, addr: u64, len: usize) -> Option<&'static [u8]> {
        let end = addr.checked_add(len as u64)?;
        let start = if crate::entry::null_page_mapped() {
            1
        } else {
            pv_abi::PAGE_SIZE as u64
        };
        if addr < start || end > crate::entry::IDENTITY_MAPPED_END {
            return None;
        }
        // SAFETY: the range is non-null and mapped by the identity page
        // tables; it is memory the loader filled before entry (start info,
        // command lines, modules), which the shim never writes.
        Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len) })
    }
}

/// Sanity check against the header sizes (`pv-abi` tests them in full).
const _: () =
    assert!(size_of::<abi::StartInfo>() == 56 && XEN_HVM_START_MAGIC_VALUE == 0x336e_c578);

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec;
    use zerocopy::IntoBytes;

    /// Guest-physical memory from `BASE` on, in a buffer.
    struct Fake(Vec<u8>);
    const BASE: u64 = 0x10_0000;

    impl<'a> Memory<'a> for &'a Fake {
        fn bytes(&self, addr: u64, len: usize) -> Option<&'a [u8]> {
            let start = usize::try_from(addr.checked_sub(BASE)?).ok()?;
            self.0.get(start..start.checked_add(len)?)
        }
    }

    impl Fake {
        fn put(&mut self, addr: u64, bytes: &[u8]) {
            let at = (addr - BASE) as usize;
            self.0[at..at + bytes.len()].copy_from_slice(bytes);
        }
    }

    const INFO: u64 = BASE;
    const CMDLINE: u64 = BASE + 0x100;
    const MODLIST: u64 = BASE + 0x200;
    const MEMMAP: u64 = BASE + 0x300;
    const MOD0: u64 = BASE + 0x400;
    const MOD0_CMDLINE: u64 = BASE + 0x500;

    fn sample() -> (Fake, abi::StartInfo) {
        let mut mem = Fake(vec![0; 0x1000]);
        let raw = abi::StartInfo {
            magic: XEN_HVM_START_MAGIC_VALUE,
            version: 1,
            flags: abi::SIF_PRIVILEGED | abi::SIF_INITDOMAIN,
            nr_modules: 1,
            modlist_paddr: MODLIST,
            cmdline_paddr: CMDLINE,
            rsdp_paddr: 0,
            memmap_paddr: MEMMAP,
            memmap_entries: 2,
            reserved: 0,
        };
        mem.put(INFO, raw.as_bytes());
        mem.put(CMDLINE, b"console=hvc0 quiet\0");
        let module = ModlistEntry {
            paddr: MOD0,
            size: 5,
            cmdline_paddr: MOD0_CMDLINE,
            reserved: 0,
        };
        mem.put(MODLIST, module.as_bytes());
        mem.put(MOD0, b"\x7fELF!");
        mem.put(MOD0_CMDLINE, b"name=hello mem=16\0");
        let ram = MemmapTableEntry {
            addr: 0,
            size: 16 << 20,
            r#type: 1,
            reserved: 0,
        };
        let odd = MemmapTableEntry {
            addr: 16 << 20,
            size: 4096,
            r#type: 99,
            reserved: 0,
        };
        mem.put(MEMMAP, ram.as_bytes());
        mem.put(MEMMAP + 24, odd.as_bytes());
        (mem, raw)
    }

    #[test]
    fn parses_everything() {
        let (mem, _) = sample();
        let info = StartInfo::parse(&&mem, INFO).unwrap();
        assert!(info.privileged());
        assert!(info.initdomain());
        assert_eq!(info.cmdline(), "console=hvc0 quiet");
        assert_eq!(info.modules().len(), 1);
        let m = info.modules()[0];
        assert_eq!(m.paddr, MOD0);
        assert_eq!(m.bytes, b"\x7fELF!");
        assert_eq!(m.cmdline, "name=hello mem=16");
        assert_eq!(
            info.memmap(),
            &[
                MemoryRegion {
                    addr: 0,
                    size: 16 << 20,
                    kind: Ok(MemmapType::Ram)
                },
                MemoryRegion {
                    addr: 16 << 20,
                    size: 4096,
                    kind: Err(99)
                },
            ]
        );
        assert_eq!(info.rsdp(), None);
        assert!(!info.borrows_below(CMDLINE));
        assert!(info.borrows_below(CMDLINE + 1));

        // Without a kernel command line, the module is the lowest borrow.
        let (mut mem, mut raw) = sample();
        raw.cmdline_paddr = 0;
        mem.put(INFO, raw.as_bytes());
        let info = StartInfo::parse(&&mem, INFO).unwrap();
        assert!(!info.borrows_below(MOD0));
        assert!(info.borrows_below(MOD0 + 1));
    }

    #[test]
    fn free_ram_starts_above_everything_placed() {
        let (mem, _) = sample();
        let info = StartInfo::parse(&&mem, INFO).unwrap();
        // Everything sits in the first page after BASE; the image ends
        // below it: free RAM is the rest of the 16 MiB region.
        assert_eq!(info.free_ram(BASE), Some((BASE + 0x1000, 16 << 20)));
        // An image ending higher moves the start up to its next page.
        assert_eq!(
            info.free_ram(BASE + 0x5001),
            Some((BASE + 0x6000, 16 << 20))
        );
        // Past the RAM region there is none.
        assert_eq!(info.free_ram(16 << 20), None);
        assert_eq!(info.free_ram(u64::MAX - 1), None);
    }

    #[test]
    fn refuses_bad_structures() {
        let (mem, _) = sample();
        assert_eq!(
            StartInfo::parse(&&mem, 0).unwrap_err(),
            StartInfoError::Null
        );
        assert_eq!(
            StartInfo::parse(&&mem, BASE + 0x2000).unwrap_err(),
            StartInfoError::Unreadable(BASE + 0x2000)
        );
        assert_eq!(
            StartInfo::parse(&&mem, CMDLINE).unwrap_err(),
            StartInfoError::BadMagic(u32::from_le_bytes(*b"cons"))
        );

        let (mut mem, mut raw) = sample();
        raw.nr_modules = 2;
        mem.put(INFO, raw.as_bytes());
        // The second module entry is all zeroes: address 0, size 0, which
        // the fake memory cannot read.
        assert_eq!(
            StartInfo::parse(&&mem, INFO).unwrap_err(),
            StartInfoError::Module(1)
        );

        let (mut mem, mut raw) = sample();
        raw.nr_modules = MODULES_MAX + 1;
        mem.put(INFO, raw.as_bytes());
        assert_eq!(
            StartInfo::parse(&&mem, INFO).unwrap_err(),
            StartInfoError::ModuleList(MODLIST, MODULES_MAX + 1)
        );

        let (mut mem, mut raw) = sample();
        raw.memmap_paddr = BASE + 0xff0;
        mem.put(INFO, raw.as_bytes());
        assert_eq!(
            StartInfo::parse(&&mem, INFO).unwrap_err(),
            StartInfoError::Memmap(BASE + 0xff0, 2)
        );
    }

    #[test]
    fn command_lines() {
        let (mut mem, _) = sample();
        // Invalid UTF-8 is cut off where it starts.
        mem.put(CMDLINE, b"ok \xff\xfe rest\0");
        assert_eq!(StartInfo::parse(&&mem, INFO).unwrap().cmdline(), "ok ");

        // No NUL before the end of readable memory.
        let (mut mem, _) = sample();
        let tail = BASE + 0x1000 - 4;
        mem.put(tail, b"abcd");
        let mut raw = abi::StartInfo::read_from_bytes(&mem.0[..56]).unwrap();
        raw.cmdline_paddr = tail;
        mem.put(INFO, raw.as_bytes());
        assert_eq!(
            StartInfo::parse(&&mem, INFO).unwrap_err(),
            StartInfoError::Cmdline(tail)
        );

        // Too long, though terminated.
        let mut mem = Fake(vec![b'x'; 0x3000]);
        let (sample_mem, mut raw) = sample();
        mem.0[..0x1000].copy_from_slice(&sample_mem.0);
        raw.cmdline_paddr = BASE + 0x1000;
        mem.put(INFO, raw.as_bytes());
        *mem.0.last_mut().unwrap() = 0;
        assert_eq!(
            StartInfo::parse(&&mem, INFO).unwrap_err(),
            StartInfoError::Cmdline(BASE + 0x1000)
        );

        // No command line at all.
        let (mut mem, mut raw) = sample();
        raw.cmdline_paddr = 0;
        mem.put(INFO, raw.as_bytes());
        assert_eq!(StartInfo::parse(&&mem, INFO).unwrap().cmdline(), "");
    }

    #[test]
    fn version_0_has_no_memmap() {
        let (mut mem, mut raw) = sample();
        raw.version = 0;
        mem.put(INFO, raw.as_bytes());
        // A version-0 structure is 40 bytes: whatever follows is not read.
        mem.put(INFO + 40, &[0xff; 16]);
        let info = StartInfo::parse(&&mem, INFO).unwrap();
        assert!(info.memmap().is_empty());
        assert_eq!(info.modules().len(), 1);
    }
}
