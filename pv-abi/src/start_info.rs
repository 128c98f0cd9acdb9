//! PVH boot: the start-of-day structure a PVH guest finds in `%ebx`
//! (arch-x86/hvm/start_info.h), its module list and memory map, the
//! `SIF_*` flags (xen.h), and the ELF note types (elfnote.h) a guest
//! image uses to announce its entry point.

use bitflags::bitflags;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_HVM_START_MAGIC_VALUE`: "xEn3" with the 0x80 bit of the "E" set.
pub const XEN_HVM_START_MAGIC_VALUE: u32 = 0x336e_c578;
/// The structure version Pavise writes (version 1 added the memory map).
pub const HVM_START_INFO_VERSION: u32 = 1;

/// `struct hvm_start_info`. Address fields of 0 mean "not present".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct StartInfo {
    /// [`XEN_HVM_START_MAGIC_VALUE`].
    pub magic: u32,
    /// Version of this structure (1).
    pub version: u32,
    /// `SIF_*` ([`SifFlags`]).
    pub flags: u32,
    /// Entries at `modlist_paddr`.
    pub nr_modules: u32,
    /// Physical address of `nr_modules` [`ModlistEntry`]s.
    pub modlist_paddr: u64,
    /// Physical address of the NUL-terminated command line.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP.
    pub rsdp_paddr: u64,
    /// Physical address of `memmap_entries` [`MemmapTableEntry`]s
    /// (version 1).
    pub memmap_paddr: u64,
    /// Entries at `memmap_paddr`; 0 if no map is given (version 1).
    pub memmap_entries: u32,
    /// Must be zero.
    pub reserved: u32,
}

impl StartInfo {
    /// Whether `magic` is right.
    pub const fn has_magic(&self) -> bool {
        self.magic == XEN_HVM_START_MAGIC_VALUE
    }

    /// Whether the memory-map fields are present (version 1 or later and
    /// a nonzero entry count).
    pub const fn has_memmap(&self) -> bool {
        self.version >= 1 && self.memmap_entries != 0
    }
}

/// Size of a version-0 `hvm_start_info` (before the memory-map fields).
pub const HVM_START_INFO_V0_SIZE: usize = 40;

/// `struct hvm_modlist_entry`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ModlistEntry {
    /// Physical address of the module.
    pub paddr: u64,
    /// Size in bytes.
    pub size: u64,
    /// Physical address of its NUL-terminated command line (0 = none).
    pub cmdline_paddr: u64,
    pub reserved: u64,
}

/// `struct hvm_memmap_table_entry`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct MemmapTableEntry {
    /// Base address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
    /// `XEN_HVM_MEMMAP_TYPE_*` ([`MemmapType`]).
    pub r#type: u32,
    /// Must be zero.
    pub reserved: u32,
}

abi_enum! {
    /// `XEN_HVM_MEMMAP_TYPE_*` (the ACPI address range types).
    pub enum MemmapType: u32 {
        Ram = 1,
        Reserved = 2,
        Acpi = 3,
        Nvs = 4,
        Unusable = 5,
        Disabled = 6,
        Pmem = 7,
    }
}

pub const XEN_HVM_MEMMAP_TYPE_RAM: u32 = 1;
pub const XEN_HVM_MEMMAP_TYPE_RESERVED: u32 = 2;
pub const XEN_HVM_MEMMAP_TYPE_ACPI: u32 = 3;
pub const XEN_HVM_MEMMAP_TYPE_NVS: u32 = 4;
pub const XEN_HVM_MEMMAP_TYPE_UNUSABLE: u32 = 5;
pub const XEN_HVM_MEMMAP_TYPE_DISABLED: u32 = 6;
pub const XEN_HVM_MEMMAP_TYPE_PMEM: u32 = 7;

/// Is the domain privileged?
pub const SIF_PRIVILEGED: u32 = 1 << 0;
/// Is this the initial control domain?
pub const SIF_INITDOMAIN: u32 = 1 << 1;
/// Is mod_start a multiboot module? (PV start_info)
pub const SIF_MULTIBOOT_MOD: u32 = 1 << 2;
/// Is mod_start a PFN? (PV start_info)
pub const SIF_MOD_START_PFN: u32 = 1 << 3;
/// Do the tools understand a virtually mapped P2M? (PV start_info)
pub const SIF_VIRT_P2M_4TOOLS: u32 = 1 << 4;
/// Byte reserved for xen-pm options.
pub const SIF_PM_MASK: u32 = 0xff << 8;

bitflags! {
    /// The `SIF_*` flags of [`StartInfo::flags`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct SifFlags: u32 {
        const PRIVILEGED = SIF_PRIVILEGED;
        const INITDOMAIN = SIF_INITDOMAIN;
        const MULTIBOOT_MOD = SIF_MULTIBOOT_MOD;
        const MOD_START_PFN = SIF_MOD_START_PFN;
        const VIRT_P2M_4TOOLS = SIF_VIRT_P2M_4TOOLS;
        const PM_MASK = SIF_PM_MASK;
    }
}

// ---------------------------------------------------------------------------
// ELF notes (elfnote.h): owner name "Xen", type XEN_ELFNOTE_*.
// ---------------------------------------------------------------------------

/// The note owner name, NUL-terminated as it appears in the note (namesz 4).
pub const XEN_ELFNOTE_NAME: &[u8; 4] = b"Xen\0";

pub const XEN_ELFNOTE_INFO: u32 = 0;
pub const XEN_ELFNOTE_ENTRY: u32 = 1;
pub const XEN_ELFNOTE_HYPERCALL_PAGE: u32 = 2;
pub const XEN_ELFNOTE_VIRT_BASE: u32 = 3;
pub const XEN_ELFNOTE_PADDR_OFFSET: u32 = 4;
pub const XEN_ELFNOTE_XEN_VERSION: u32 = 5;
pub const XEN_ELFNOTE_GUEST_OS: u32 = 6;
pub const XEN_ELFNOTE_GUEST_VERSION: u32 = 7;
pub const XEN_ELFNOTE_LOADER: u32 = 8;
pub const XEN_ELFNOTE_PAE_MODE: u32 = 9;
pub const XEN_ELFNOTE_FEATURES: u32 = 10;
pub const XEN_ELFNOTE_BSD_SYMTAB: u32 = 11;
pub const XEN_ELFNOTE_HV_START_LOW: u32 = 12;
pub const XEN_ELFNOTE_L1_MFN_VALID: u32 = 13;
pub const XEN_ELFNOTE_SUSPEND_CANCEL: u32 = 14;
pub const XEN_ELFNOTE_INIT_P2M: u32 = 15;
pub const XEN_ELFNOTE_MOD_START_PFN: u32 = 16;
pub const XEN_ELFNOTE_SUPPORTED_FEATURES: u32 = 17;
/// The 32-bit physical entry point of a PVH image (4- or 8-byte value).
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// Relocation constraints of a PVH image (alignment, min, max).
pub const XEN_ELFNOTE_PHYS32_RELOC: u32 = 19;
/// The highest guest-image note type (`XEN_ELFNOTE_MAX`).
pub const XEN_ELFNOTE_MAX: u32 = XEN_ELFNOTE_PHYS32_RELOC;
pub const XEN_ELFNOTE_CRASH_INFO: u32 = 0x100_0001;
pub const XEN_ELFNOTE_CRASH_REGS: u32 = 0x100_0002;
pub const XEN_ELFNOTE_DUMPCORE_NONE: u32 = 0x200_0000;
pub const XEN_ELFNOTE_DUMPCORE_HEADER: u32 = 0x200_0001;
pub const XEN_ELFNOTE_DUMPCORE_XEN_VERSION: u32 = 0x200_0002;
pub const XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION: u32 = 0x200_0003;

/// The entry address in a XEN_ELFNOTE_PHYS32_ENTRY descriptor: 4 bytes
/// (ELF32 images) or 8 bytes (Linux), little-endian. `None` for any other
/// length or an 8-byte value that does not fit in 32 bits.
pub fn phys32_entry(desc: &[u8]) -> Option<u32> {
    match *desc {
        [a, b, c, d] => Some(u32::from_le_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => {
            u32::try_from(u64::from_le_bytes([a, b, c, d, e, f, g, h])).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn start_info_layout() {
        assert_eq!(size_of::<StartInfo>(), 56);
        assert_eq!(offset_of!(StartInfo, magic), 0);
        assert_eq!(offset_of!(StartInfo, version), 4);
        assert_eq!(offset_of!(StartInfo, flags), 8);
        assert_eq!(offset_of!(StartInfo, nr_modules), 12);
        assert_eq!(offset_of!(StartInfo, modlist_paddr), 16);
        assert_eq!(offset_of!(StartInfo, cmdline_paddr), 24);
        assert_eq!(offset_of!(StartInfo, rsdp_paddr), 32);
        assert_eq!(offset_of!(StartInfo, memmap_paddr), 40);
        assert_eq!(offset_of!(StartInfo, memmap_entries), 48);
        assert_eq!(offset_of!(StartInfo, reserved), 52);
        assert_eq!(offset_of!(StartInfo, memmap_paddr), HVM_START_INFO_V0_SIZE);
    }

    #[test]
    fn modlist_and_memmap_layouts() {
        assert_eq!(size_of::<ModlistEntry>(), 32);
        assert_eq!(offset_of!(ModlistEntry, paddr), 0);
        assert_eq!(offset_of!(ModlistEntry, size), 8);
        assert_eq!(offset_of!(ModlistEntry, cmdline_paddr), 16);
        assert_eq!(offset_of!(ModlistEntry, reserved), 24);
        assert_eq!(size_of::<MemmapTableEntry>(), 24);
        assert_eq!(offset_of!(MemmapTableEntry, addr), 0);
        assert_eq!(offset_of!(MemmapTableEntry, size), 8);
        assert_eq!(offset_of!(MemmapTableEntry, r#type), 16);
        assert_eq!(offset_of!(MemmapTableEntry, reserved), 20);
    }

    #[test]
    fn constants() {
        assert_eq!(XEN_HVM_START_MAGIC_VALUE, 0x336ec578);
        // "xEn3" with the 0x80 bit of the "E" set, little-endian.
        assert_eq!(
            XEN_HVM_START_MAGIC_VALUE.to_le_bytes(),
            [b'x', b'E' | 0x80, b'n', b'3']
        );
        assert_eq!(SifFlags::PRIVILEGED.bits(), 1);
        assert_eq!(SifFlags::INITDOMAIN.bits(), 2);
        assert_eq!(SIF_PM_MASK, 0xff00);
        assert_eq!(MemmapType::Ram.raw(), 1);
        assert_eq!(MemmapType::Pmem.raw(), XEN_HVM_MEMMAP_TYPE_PMEM);
        assert_eq!(MemmapType::try_from(0), Err(0));
        assert_eq!(MemmapType::try_from(8), Err(8));
        assert_eq!(XEN_ELFNOTE_ENTRY, 1);
        assert_eq!(XEN_ELFNOTE_HYPERCALL_PAGE, 2);
        assert_eq!(XEN_ELFNOTE_PHYS32_ENTRY, 18);
        assert_eq!(XEN_ELFNOTE_MAX, 19);
    }

    #[test]
    fn start_info_bytes() {
        let si = StartInfo {
            magic: XEN_HVM_START_MAGIC_VALUE,
            version: 1,
            flags: (SifFlags::PRIVILEGED | SifFlags::INITDOMAIN).bits(),
            memmap_entries: 3,
            ..Default::default()
        };
        let bytes = si.as_bytes();
        assert_eq!(&bytes[0..4], &[0x78, 0xc5, 0x6e, 0x33]);
        assert_eq!(bytes[8], 3);
        assert_eq!(bytes[48], 3);
        let back = StartInfo::read_from_bytes(bytes).unwrap();
        assert!(back.has_magic());
        assert!(back.has_memmap());
    }

    #[test]
    fn phys32_entry_forms() {
        assert_eq!(
            phys32_entry(&0x0100_0000u32.to_le_bytes()),
            Some(0x0100_0000)
        );
        assert_eq!(
            phys32_entry(&0x0100_0040u64.to_le_bytes()),
            Some(0x0100_0040)
        );
        assert_eq!(phys32_entry(&0x1_0000_0000u64.to_le_bytes()), None);
        assert_eq!(phys32_entry(&[1, 2]), None);
        assert_eq!(phys32_entry(&[]), None);
    }
}
