//! PCI core: config-space addressing (0xCF8/0xCFC and ECAM), bus
//! enumeration with BAR sizing and capability discovery, and `Dom0Config`,
//! the filter every Dom0 config-space access runs through.
//!
//! Pure logic, host-tested: hardware reads and writes come in as closures
//! taking a function and a dword-aligned register, so the same code runs
//! against the port-I/O mechanism, an ECAM window, or the fake config space
//! of the tests.
//!
//! Dom0 owns the PCI devices the hypervisor does not keep, but not where
//! they decode nor where they send interrupts: BARs stay where firmware put
//! them (the hypervisor maps exactly those ranges into Dom0), bridges keep
//! their bus numbers and windows, and MSI/MSI-X are switched on only by the
//! hypervisor (through PHYSDEVOP), never by a config write from Dom0.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::fmt;

// ---- Type 0/1 header registers (byte offsets) -----------------------------

pub const VENDOR_ID: u16 = 0x00;
pub const DEVICE_ID: u16 = 0x02;
pub const COMMAND: u16 = 0x04;
pub const STATUS: u16 = 0x06;
/// Revision id (byte 0), then prog-if, subclass, class.
pub const CLASS_REVISION: u16 = 0x08;
pub const HEADER_TYPE: u16 = 0x0e;
pub const BAR0: u16 = 0x10;
/// Type 0 only.
pub const ROM_ADDRESS: u16 = 0x30;
pub const CAP_PTR: u16 = 0x34;
pub const INTERRUPT_LINE: u16 = 0x3c;
pub const INTERRUPT_PIN: u16 = 0x3d;

// Type 1 (PCI-to-PCI bridge) registers.
pub const PRIMARY_BUS: u16 = 0x18;
pub const SECONDARY_BUS: u16 = 0x19;
pub const SUBORDINATE_BUS: u16 = 0x1a;
pub const SECONDARY_LATENCY: u16 = 0x1b;
pub const IO_BASE: u16 = 0x1c;
pub const SECONDARY_STATUS: u16 = 0x1e;
pub const MEMORY_BASE: u16 = 0x20;
pub const PREF_MEMORY_BASE: u16 = 0x24;
pub const PREF_BASE_UPPER32: u16 = 0x28;
pub const PREF_LIMIT_UPPER32: u16 = 0x2c;
pub const IO_BASE_UPPER16: u16 = 0x30;
pub const BRIDGE_ROM_ADDRESS: u16 = 0x38;
pub const BRIDGE_CONTROL: u16 = 0x3e;

/// Legacy config space (what 0xCF8/0xCFC reaches).
pub const CONFIG_SPACE_SIZE: u16 = 0x100;
/// PCIe extended config space (what ECAM reaches).
pub const EXT_CONFIG_SPACE_SIZE: u16 = 0x1000;
/// Capabilities live after the header.
const CAP_AREA_START: u8 = 0x40;

// ---- Register fields ------------------------------------------------------

pub const VENDOR_NONE: u16 = 0xffff;
/// Some bridges answer 0 rather than all ones for an empty slot.
const VENDOR_INVALID: u16 = 0x0000;

pub const CMD_IO: u16 = 1 << 0;
pub const CMD_MEMORY: u16 = 1 << 1;
pub const CMD_BUS_MASTER: u16 = 1 << 2;
pub const CMD_INTX_DISABLE: u16 = 1 << 10;
/// The command bits Dom0 may change; the rest keep the hardware's value.
pub const CMD_DOM0_WRITABLE: u16 = CMD_IO | CMD_MEMORY | CMD_BUS_MASTER | CMD_INTX_DISABLE;

pub const STATUS_CAP_LIST: u16 = 1 << 4;

pub const HEADER_LAYOUT_MASK: u8 = 0x7f;
pub const HEADER_MULTI_FUNCTION: u8 = 0x80;
pub const HEADER_NORMAL: u8 = 0x00;
pub const HEADER_BRIDGE: u8 = 0x01;

pub const BAR_IO: u32 = 1 << 0;
pub const BAR_IO_ADDR_MASK: u32 = !0x3;
pub const BAR_MEM_ADDR_MASK: u32 = !0xf;
pub const BAR_MEM_TYPE_MASK: u32 = 0x6;
pub const BAR_MEM_TYPE_32: u32 = 0x0;
/// Legacy "below 1 MiB" type; treated as 32-bit.
pub const BAR_MEM_TYPE_1M: u32 = 0x2;
pub const BAR_MEM_TYPE_64: u32 = 0x4;
pub const BAR_MEM_PREFETCH: u32 = 1 << 3;
/// BARs in a type 0 header.
pub const NORMAL_BARS: u8 = 6;
/// BARs in a type 1 header.
pub const BRIDGE_BARS: u8 = 2;
/// A 16-bit I/O decoder hardwires the upper half of an I/O BAR to zero.
const IO_BAR_UPPER16: u32 = 0xffff_0000;
/// The x86 I/O port space.
const IO_SPACE_END: u64 = 0x1_0000;

pub const CAP_ID_MSI: u8 = 0x05;
pub const CAP_ID_MSIX: u8 = 0x11;
/// Capability header: id (byte 0), next pointer (byte 1).
const CAP_NEXT: u16 = 1;
/// MSI and MSI-X Message Control, a 16-bit register at cap + 2.
pub const CAP_MSG_CONTROL: u16 = 2;
/// MSI Message Address (low dword) at cap + 4.
const MSI_ADDRESS_LO: u16 = 4;
/// Last MSI address/data dword: data at cap + 8 (32-bit) or cap + 0xc.
const MSI_DATA_32: u16 = 0x8;
const MSI_DATA_64: u16 = 0xc;
pub const MSI_CTL_ENABLE: u16 = 1 << 0;
pub const MSI_CTL_64BIT: u16 = 1 << 7;
pub const MSIX_CTL_ENABLE: u16 = 1 << 15;
pub const MSIX_CTL_FUNCTION_MASK: u16 = 1 << 14;
/// Pointers are dword aligned; the low two bits are reserved.
const CAP_PTR_MASK: u8 = 0xfc;
/// At most (256 - 64) / 4 capabilities fit: more means a loop.
pub const MAX_CAPS: usize = 48;

// ---- Config mechanisms -----------------------------------------------------

/// Port 0xCF8 and the data window 0xCFC..0xCFF.
pub const CONFIG_ADDRESS_PORT: u16 = 0xcf8;
pub const CONFIG_DATA_PORT: u16 = 0xcfc;
const CONFIG_ENABLE: u32 = 1 << 31;
const CONFIG_BUS_SHIFT: u32 = 16;
const CONFIG_DEV_SHIFT: u32 = 11;
const CONFIG_FUNC_SHIFT: u32 = 8;
/// Bits 7:2 of CONFIG_ADDRESS: the dword register.
const CONFIG_REG_MASK: u32 = 0xfc;

const ECAM_BUS_SHIFT: u32 = 20;
const ECAM_DEV_SHIFT: u32 = 15;
const ECAM_FUNC_SHIFT: u32 = 12;
const ECAM_REG_MASK: u64 = 0xfff;
/// 256 buses × 1 MiB.
pub const ECAM_WINDOW_SIZE: u64 = 1 << 28;

pub const MAX_DEVICES: u8 = 32;
pub const MAX_FUNCTIONS: u8 = 8;
const DEV_MASK: u32 = 0x1f;
const FUNC_MASK: u32 = 0x7;
const BUS_MASK: u32 = 0xff;

pub const ALL_ONES: u32 = u32::MAX;
const DWORD: u16 = 4;
const BITS_PER_BYTE: u32 = 8;
const PAGE_SIZE: u64 = 4096;

/// Bus, device, function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub bus: u8,
    /// 0..32
    pub dev: u8,
    /// 0..8
    pub func: u8,
}

impl Bdf {
    pub fn new(bus: u8, dev: u8, func: u8) -> Option<Self> {
        (dev < MAX_DEVICES && func < MAX_FUNCTIONS).then_some(Self { bus, dev, func })
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{:x}", self.bus, self.dev, self.func)
    }
}

/// Decodes a CONFIG_ADDRESS value into the function and dword-aligned
/// register it selects; `None` when the enable bit is clear.
pub fn decode_config_address(value: u32) -> Option<(Bdf, u16)> {
    if value & CONFIG_ENABLE == 0 {
        return None;
    }
    let bdf = Bdf {
        bus: ((value >> CONFIG_BUS_SHIFT) & BUS_MASK) as u8,
        dev: ((value >> CONFIG_DEV_SHIFT) & DEV_MASK) as u8,
        func: ((value >> CONFIG_FUNC_SHIFT) & FUNC_MASK) as u8,
    };
    Some((bdf, (value & CONFIG_REG_MASK) as u16))
}

/// The CONFIG_ADDRESS value selecting `reg` (rounded down to its dword).
pub fn config_address(bdf: Bdf, reg: u16) -> u32 {
    CONFIG_ENABLE
        | u32::from(bdf.bus) << CONFIG_BUS_SHIFT
        | u32::from(bdf.dev) << CONFIG_DEV_SHIFT
        | u32::from(bdf.func) << CONFIG_FUNC_SHIFT
        | (u32::from(reg) & CONFIG_REG_MASK)
}

/// An access of `size` bytes at port `0xCFC + port_offset` with CONFIG_ADDRESS
/// holding `addr`: the function and byte register it reaches. `None` when
/// the enable bit is clear, the size is not 1, 2 or 4, or the access would
/// run past the dword.
pub fn config_data_access(addr: u32, port_offset: u8, size: u8) -> Option<(Bdf, u16)> {
    let (bdf, reg) = decode_config_address(addr)?;
    if !valid_size(size) || u16::from(port_offset) + u16::from(size) > DWORD {
        return None;
    }
    Some((bdf, reg + u16::from(port_offset)))
}

/// Decodes an offset into an ECAM (MCFG) window whose first bus is 0: the
/// function and byte register (0..4096). `None` past the 256th bus.
pub fn ecam_decode(offset: u64) -> Option<(Bdf, u16)> {
    if offset >= ECAM_WINDOW_SIZE {
        return None;
    }
    let bdf = Bdf {
        bus: ((offset >> ECAM_BUS_SHIFT) & u64::from(BUS_MASK)) as u8,
        dev: ((offset >> ECAM_DEV_SHIFT) & u64::from(DEV_MASK)) as u8,
        func: ((offset >> ECAM_FUNC_SHIFT) & u64::from(FUNC_MASK)) as u8,
    };
    Some((bdf, (offset & ECAM_REG_MASK) as u16))
}

/// Like `ecam_decode`, for an access of `size` bytes: `None` also for a bad
/// size or an access that would run past the dword.
pub fn ecam_access(offset: u64, size: u8) -> Option<(Bdf, u16)> {
    let (bdf, reg) = ecam_decode(offset)?;
    crosses_no_dword(reg, size).then_some((bdf, reg))
}

/// The offset of `reg` of `bdf` in an ECAM window whose first bus is 0.
pub fn ecam_offset(bdf: Bdf, reg: u16) -> u64 {
    u64::from(bdf.bus) << ECAM_BUS_SHIFT
        | u64::from(bdf.dev) << ECAM_DEV_SHIFT
        | u64::from(bdf.func) << ECAM_FUNC_SHIFT
        | (u64::from(reg) & ECAM_REG_MASK)
}

fn valid_size(size: u8) -> bool {
    matches!(size, 1 | 2 | 4)
}

/// A well-formed access: 1, 2 or 4 bytes, inside config space, not crossing
/// a dword.
fn crosses_no_dword(reg: u16, size: u8) -> bool {
    valid_size(size) && reg < EXT_CONFIG_SPACE_SIZE && (reg % DWORD) + u16::from(size) <= DWORD
}

/// The value bits of a `size`-byte access.
fn width_mask(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => ALL_ONES,
    }
}

fn byte_shift(reg: u16) -> u32 {
    u32::from(reg % DWORD) * BITS_PER_BYTE
}

fn dword_of(reg: u16) -> u16 {
    reg & !(DWORD - 1)
}

fn read8(read: &mut dyn FnMut(Bdf, u16) -> u32, bdf: Bdf, reg: u16) -> u8 {
    (read(bdf, dword_of(reg)) >> byte_shift(reg)) as u8
}

fn read16(read: &mut dyn FnMut(Bdf, u16) -> u32, bdf: Bdf, reg: u16) -> u16 {
    (read(bdf, dword_of(reg)) >> byte_shift(reg)) as u16
}

// ---- Enumeration -----------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32,
    Mem64,
}

/// One implemented BAR. A 64-bit BAR occupies registers `index` and
/// `index + 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub index: u8,
    pub kind: BarKind,
    /// As firmware assigned it (0: unassigned).
    pub base: u64,
    pub size: u64,
    pub prefetchable: bool,
}

impl Bar {
    pub fn is_mem(&self) -> bool {
        self.kind != BarKind::Io
    }
}

/// One PCI function as enumeration found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    /// class << 16 | subclass << 8 | prog-if.
    pub class: u32,
    /// The raw header-type byte, multi-function bit included.
    pub header_type: u8,
    pub bars: Vec<Bar>,
    pub interrupt_pin: u8,
    pub interrupt_line: u8,
    /// Config offset of the MSI capability.
    pub msi_cap: Option<u8>,
    /// Config offset of the MSI-X capability.
    pub msix_cap: Option<u8>,
}

impl Device {
    /// The header layout (0 normal, 1 PCI-to-PCI bridge, 2 CardBus).
    pub fn layout(&self) -> u8 {
        self.header_type & HEADER_LAYOUT_MASK
    }
    pub fn is_bridge(&self) -> bool {
        self.layout() == HEADER_BRIDGE
    }
    pub fn is_multi_function(&self) -> bool {
        self.header_type & HEADER_MULTI_FUNCTION != 0
    }
}

/// BAR registers a header layout has.
fn bar_count(layout: u8) -> u8 {
    match layout {
        HEADER_NORMAL => NORMAL_BARS,
        HEADER_BRIDGE => BRIDGE_BARS,
        _ => 0,
    }
}

fn bar_reg(index: u8) -> u16 {
    BAR0 + u16::from(index) * DWORD
}

fn rom_reg(layout: u8) -> Option<u16> {
    match layout {
        HEADER_NORMAL => Some(ROM_ADDRESS),
        HEADER_BRIDGE => Some(BRIDGE_ROM_ADDRESS),
        _ => None,
    }
}

fn present(vendor: u16) -> bool {
    vendor != VENDOR_NONE && vendor != VENDOR_INVALID
}

/// Walks bus 0 and every bus behind PCI-to-PCI bridges; see
/// `enumerate_from`.
pub fn enumerate(
    read: &mut dyn FnMut(Bdf, u16) -> u32,
    write: &mut dyn FnMut(Bdf, u16, u32),
) -> Vec<Device> {
    enumerate_from(&[0], read, write)
}

/// Walks the root buses `roots` (bus 0, plus the `_BBN`s of further host
/// bridges on multi-root machines) and every bus behind PCI-to-PCI bridges,
/// by the secondary bus numbers firmware programmed; each bus is walked
/// once. Functions 1-7 are probed only when function 0 says it is
/// multi-function. For each function the BARs are sized (with I/O and
/// memory decode off meanwhile) and the capability list is searched for MSI
/// and MSI-X. The result is sorted by `Bdf`.
pub fn enumerate_from(
    roots: &[u8],
    read: &mut dyn FnMut(Bdf, u16) -> u32,
    write: &mut dyn FnMut(Bdf, u16, u32),
) -> Vec<Device> {
    let mut seen = BTreeSet::new();
    let mut pending: Vec<u8> = roots.to_vec();
    let mut devices = Vec::new();
    while let Some(bus) = pending.pop() {
        if !seen.insert(bus) {
            continue;
        }
        for dev in 0..MAX_DEVICES {
            let slot = Bdf { bus, dev, func: 0 };
            if !present(read16(read, slot, VENDOR_ID)) {
                continue;
            }
            let multi = read8(read, slot, HEADER_TYPE) & HEADER_MULTI_FUNCTION != 0;
            let funcs = if multi { MAX_FUNCTIONS } else { 1 };
            for func in 0..funcs {
                let bdf = Bdf { bus, dev, func };
                let Some(d) = probe_function(bdf, read, write) else {
                    continue;
                };
                if d.is_bridge() {
                    let secondary = read8(read, bdf, SECONDARY_BUS);
                    // 0 means firmware left the bridge unconfigured.
                    if secondary != 0 && !seen.contains(&secondary) {
                        pending.push(secondary);
                    }
                }
                devices.push(d);
            }
        }
    }
    devices.sort_by_key(|d| d.bdf);
    devices
}

fn probe_function(
    bdf: Bdf,
    read: &mut dyn FnMut(Bdf, u16) -> u32,
    write: &mut dyn FnMut(Bdf, u16, u32),
) -> Option<Device> {
    let id = read(bdf, VENDOR_ID);
    let vendor = id as u16;
    if !present(vendor) {
        return None;
    }
    let header_type = read8(read, bdf, HEADER_TYPE);
    let layout = header_type & HEADER_LAYOUT_MASK;
    let (msi_cap, msix_cap) = if bar_count(layout) > 0 {
        find_msi_caps(bdf, read)
    } else {
        (None, None)
    };
    Some(Device {
        bdf,
        vendor,
        device: (id >> (u32::from(DEVICE_ID) * BITS_PER_BYTE)) as u16,
        class: read(bdf, CLASS_REVISION) >> BITS_PER_BYTE,
        header_type,
        bars: size_bars(bdf, bar_count(layout), read, write),
        interrupt_pin: read8(read, bdf, INTERRUPT_PIN),
        interrupt_line: read8(read, bdf, INTERRUPT_LINE),
        msi_cap,
        msix_cap,
    })
}

/// The value a BAR register reads after all ones were written to it.
fn probe_register(
    bdf: Bdf,
    reg: u16,
    read: &mut dyn FnMut(Bdf, u16) -> u32,
    write: &mut dyn FnMut(Bdf, u16, u32),
) -> (u32, u32) {
    let original = read(bdf, reg);
    write(bdf, reg, ALL_ONES);
    let probed = read(bdf, reg);
    write(bdf, reg, original);
    (original, probed)
}

/// The size a BAR decodes: the lowest writable address bit.
fn lowest_bit(mask: u64) -> u64 {
    mask & mask.wrapping_neg()
}

fn size_bars(
    bdf: Bdf,
    count: u8,
    read: &mut dyn FnMut(Bdf, u16) -> u32,
    write: &mut dyn FnMut(Bdf, u16, u32),
) -> Vec<Bar> {
    let mut bars = Vec::new();
    if count == 0 {
        return bars;
    }
    let command = read16(read, bdf, COMMAND);
    let decode = command & (CMD_IO | CMD_MEMORY);
    // The status half is written as zero: its bits are write-one-to-clear.
    if decode != 0 {
        write(bdf, COMMAND, u32::from(command & !decode));
    }
    let mut index = 0;
    while index < count {
        let (original, probed) = probe_register(bdf, bar_reg(index), read, write);
        let this = index;
        index += 1;
        if original & BAR_IO != 0 {
            let mut mask = probed & BAR_IO_ADDR_MASK;
            if mask == 0 {
                continue;
            }
            if mask & IO_BAR_UPPER16 == 0 {
                mask |= IO_BAR_UPPER16;
            }
            bars.push(Bar {
                index: this,
                kind: BarKind::Io,
                base: u64::from(original & BAR_IO_ADDR_MASK),
                size: lowest_bit(u64::from(mask)),
                prefetchable: false,
            });
            continue;
        }
        let prefetchable = original & BAR_MEM_PREFETCH != 0;
        let (kind, base, mask) = match original & BAR_MEM_TYPE_MASK {
            BAR_MEM_TYPE_32 | BAR_MEM_TYPE_1M => (
                BarKind::Mem32,
                u64::from(original & BAR_MEM_ADDR_MASK),
                u64::from(probed & BAR_MEM_ADDR_MASK),
            ),
            BAR_MEM_TYPE_64 if index < count => {
                let (high, high_probed) = probe_register(bdf, bar_reg(index), read, write);
                index += 1;
                (
                    BarKind::Mem64,
                    u64::from(high) << u32::BITS | u64::from(original & BAR_MEM_ADDR_MASK),
                    u64::from(high_probed) << u32::BITS | u64::from(probed & BAR_MEM_ADDR_MASK),
                )
            }
            // Reserved type, or a 64-bit BAR in the last register.
            _ => continue,
        };
        if mask != 0 {
            bars.push(Bar {
                index: this,
                kind,
                base,
                size: lowest_bit(mask),
                prefetchable,
            });
        }
    }
    if decode != 0 {
        write(bdf, COMMAND, u32::from(command));
    }
    bars
}

/// Offsets of the first MSI and MSI-X capabilities, following at most
/// `MAX_CAPS` links.
fn find_msi_caps(bdf: Bdf, read: &mut dyn FnMut(Bdf, u16) -> u32) -> (Option<u8>, Option<u8>) {
    let (mut msi, mut msix) = (None, None);
    if read16(read, bdf, STATUS) & STATUS_CAP_LIST == 0 {
        return (msi, msix);
    }
    let mut ptr = read8(read, bdf, CAP_PTR) & CAP_PTR_MASK;
    for _ in 0..MAX_CAPS {
        if ptr < CAP_AREA_START {
            break;
        }
        let header = read(bdf, u16::from(ptr));
        match header as u8 {
            CAP_ID_MSI if msi.is_none() => msi = Some(ptr),
            CAP_ID_MSIX if msix.is_none() => msix = Some(ptr),
            _ => {}
        }
        ptr = (header >> (u32::from(CAP_NEXT) * BITS_PER_BYTE)) as u8 & CAP_PTR_MASK;
    }
    (msi, msix)
}

// ---- Dom0's view -----------------------------------------------------------

/// What became of a Dom0 config write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Forwarded (or, for a BAR, emulated) as written.
    Done,
    /// Discarded: a hidden or absent function, a malformed access, the
    /// expansion ROM register, or a function of unknown layout.
    Dropped,
    /// Forwarded with some bits replaced by the hardware's: MSI/MSI-X
    /// enable Dom0 tried to set, command bits outside `CMD_DOM0_WRITABLE`,
    /// MSI address/data (not forwarded at all).
    Filtered,
    /// An attempt to move a BAR, or a bridge's bus numbers or windows;
    /// nothing of it reached the hardware.
    RefusedBarMove,
}

/// One BAR register as Dom0 sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct BarReg {
    /// The firmware-assigned value (address and type flags).
    current: u32,
    /// What it reads after Dom0 set every writable bit: the size mask.
    probe: u32,
    /// Its address bits; the rest are read-only flags. 0: not implemented.
    addr_mask: u32,
}

impl BarReg {
    /// Address bits the hardware lets software write.
    fn writable(&self) -> u32 {
        self.probe & self.addr_mask
    }
}

/// Per-function emulation state.
#[derive(Clone, Debug)]
struct Shadow {
    bars: [BarReg; NORMAL_BARS as usize],
    /// Bit i: BAR register i reads its size mask.
    probing: u8,
}

fn shadow_bars(d: &Device) -> [BarReg; NORMAL_BARS as usize] {
    let mut regs = [BarReg::default(); NORMAL_BARS as usize];
    let count = bar_count(d.layout());
    for b in &d.bars {
        let i = usize::from(b.index);
        let span = b.size.wrapping_sub(1);
        if b.size == 0 || b.index >= count {
            continue;
        }
        let pf = if b.prefetchable { BAR_MEM_PREFETCH } else { 0 };
        match b.kind {
            BarKind::Io => {
                regs[i] = BarReg {
                    current: (b.base as u32 & BAR_IO_ADDR_MASK) | BAR_IO,
                    probe: (!span as u32 & BAR_IO_ADDR_MASK) | BAR_IO,
                    addr_mask: BAR_IO_ADDR_MASK,
                };
            }
            BarKind::Mem32 => {
                let flags = BAR_MEM_TYPE_32 | pf;
                regs[i] = BarReg {
                    current: (b.base as u32 & BAR_MEM_ADDR_MASK) | flags,
                    probe: (!span as u32 & BAR_MEM_ADDR_MASK) | flags,
                    addr_mask: BAR_MEM_ADDR_MASK,
                };
            }
            BarKind::Mem64 if b.index + 1 < count => {
                let flags = BAR_MEM_TYPE_64 | pf;
                regs[i] = BarReg {
                    current: (b.base as u32 & BAR_MEM_ADDR_MASK) | flags,
                    probe: (!span as u32 & BAR_MEM_ADDR_MASK) | flags,
                    addr_mask: BAR_MEM_ADDR_MASK,
                };
                regs[i + 1] = BarReg {
                    current: (b.base >> u32::BITS) as u32,
                    probe: (!span >> u32::BITS) as u32,
                    addr_mask: ALL_ONES,
                };
            }
            BarKind::Mem64 => {}
        }
    }
    regs
}

/// Dom0's view of config space: the functions it may see, with BARs pinned
/// where firmware put them and interrupt enables kept for the hypervisor.
#[derive(Clone, Debug)]
pub struct Dom0Config {
    /// Visible functions, sorted by `Bdf`.
    devices: Vec<Device>,
    shadows: Vec<Shadow>,
    /// Functions the hypervisor keeps; only their BARs are remembered, so
    /// that no page of theirs is mapped into Dom0.
    hidden: Vec<Device>,
}

/// How the bits of one config dword are treated on a Dom0 write.
#[derive(Clone, Copy, Default)]
struct DwordPolicy {
    /// Keep the hardware's value, Dom0's is ignored (reported as Filtered).
    keep: u32,
    /// Keep the hardware's value, and a change is a refused move.
    pinned: u32,
    /// Write-one-to-clear: bytes Dom0 did not write go out as zero.
    rw1c: u32,
    /// Enable bits Dom0 may clear but never set.
    clear_only: u32,
}

/// The upper half of a dword (a 16-bit register at offset 2).
const UPPER_HALF: u32 = 0xffff_0000;
const LOWER_HALF: u32 = 0x0000_ffff;
/// Primary, secondary and subordinate bus numbers, not the latency timer.
const BUS_NUMBER_BYTES: u32 = 0x00ff_ffff;

impl Dom0Config {
    /// `devices` as `enumerate` found them; `hidden` are the functions the
    /// hypervisor keeps for itself.
    pub fn new(devices: Vec<Device>, hidden: &[Bdf]) -> Self {
        let (mut visible, mut kept): (Vec<Device>, Vec<Device>) =
            devices.into_iter().partition(|d| !hidden.contains(&d.bdf));
        visible.sort_by_key(|d| d.bdf);
        visible.dedup_by_key(|d| d.bdf);
        kept.sort_by_key(|d| d.bdf);
        let shadows = visible
            .iter()
            .map(|d| Shadow {
                bars: shadow_bars(d),
                probing: 0,
            })
            .collect();
        Self {
            devices: visible,
            shadows,
            hidden: kept,
        }
    }

    /// The functions Dom0 may see, sorted by `Bdf`.
    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    pub fn device(&self, bdf: Bdf) -> Option<&Device> {
        self.index(bdf).map(|i| &self.devices[i])
    }

    pub fn is_visible(&self, bdf: Bdf) -> bool {
        self.index(bdf).is_some()
    }

    fn index(&self, bdf: Bdf) -> Option<usize> {
        self.devices.binary_search_by_key(&bdf, |d| d.bdf).ok()
    }

    /// Which BAR register (0..6) `dword` is in `devices[i]`, if any.
    fn bar_slot(&self, i: usize, dword: u16) -> Option<usize> {
        let count = bar_count(self.devices[i].layout());
        let end = bar_reg(count);
        (BAR0..end)
            .contains(&dword)
            .then(|| usize::from((dword - BAR0) / DWORD))
    }

    fn bar_value(&self, i: usize, slot: usize) -> u32 {
        let s = &self.shadows[i];
        let r = s.bars[slot];
        if s.probing & (1 << slot) != 0 {
            r.probe
        } else {
            r.current
        }
    }

    /// A Dom0 read of `size` bytes at byte register `reg`. Hidden or absent
    /// functions and malformed accesses read all ones.
    pub fn read(
        &mut self,
        bdf: Bdf,
        reg: u16,
        size: u8,
        hw_read: &mut dyn FnMut(Bdf, u16) -> u32,
    ) -> u32 {
        let mask = width_mask(size);
        let Some(i) = self.index(bdf) else {
            return mask;
        };
        if !crosses_no_dword(reg, size) {
            return mask;
        }
        let dword = dword_of(reg);
        let value = if let Some(slot) = self.bar_slot(i, dword) {
            self.bar_value(i, slot)
        } else if rom_reg(self.devices[i].layout()) == Some(dword) {
            // Dom0 sees no expansion ROM: it could be decoded anywhere.
            0
        } else {
            hw_read(bdf, dword)
        };
        (value >> byte_shift(reg)) & mask
    }

    /// A Dom0 write of the low `size` bytes of `value` at byte register
    /// `reg`; see `WriteOutcome` for what can become of it.
    pub fn write(
        &mut self,
        bdf: Bdf,
        reg: u16,
        size: u8,
        value: u32,
        hw_read: &mut dyn FnMut(Bdf, u16) -> u32,
        hw_write: &mut dyn FnMut(Bdf, u16, u32),
    ) -> WriteOutcome {
        let Some(i) = self.index(bdf) else {
            return WriteOutcome::Dropped;
        };
        if !crosses_no_dword(reg, size) {
            return WriteOutcome::Dropped;
        }
        let dword = dword_of(reg);
        let shift = byte_shift(reg);
        let bytes = width_mask(size) << shift;
        let value = (value << shift) & bytes;
        let layout = self.devices[i].layout();
        if let Some(slot) = self.bar_slot(i, dword) {
            let shown = self.bar_value(i, slot);
            return self.bar_write(i, slot, (shown & !bytes) | value);
        }
        if rom_reg(layout) == Some(dword) {
            return WriteOutcome::Dropped;
        }
        if bar_count(layout) == 0 && dword != COMMAND {
            // Unknown layout (CardBus, reserved): nothing to know it by.
            return WriteOutcome::Dropped;
        }
        let policy = self.policy(i, dword, hw_read);
        let hw = hw_read(bdf, dword);
        let requested = (hw & !bytes) | value;
        let protected = policy.keep | policy.pinned;
        let mut out = (requested & !protected) | (hw & protected);
        out = (out & !policy.clear_only) | (requested & hw & policy.clear_only);
        // Bytes Dom0 did not write must not clear status bits.
        out &= !(policy.rw1c & !bytes);
        let changed = (out ^ requested) & bytes;
        let outcome = if changed & policy.pinned != 0 {
            WriteOutcome::RefusedBarMove
        } else if changed != 0 {
            WriteOutcome::Filtered
        } else {
            WriteOutcome::Done
        };
        // Skip the write when no bit Dom0 wrote may reach the hardware.
        if bytes & !protected != 0 {
            hw_write(bdf, dword, out);
        }
        outcome
    }

    fn bar_write(&mut self, i: usize, slot: usize, value: u32) -> WriteOutcome {
        let r = self.shadows[i].bars[slot];
        let bit = 1 << slot;
        if r.writable() == 0 {
            // Not implemented (or no address bit in this half): read-only.
            return WriteOutcome::Done;
        }
        let probing = &mut self.shadows[i].probing;
        if value & r.writable() == r.writable() {
            // The hardware would now read back the size mask.
            *probing |= bit;
            return WriteOutcome::Done;
        }
        *probing &= !bit;
        if (value ^ r.current) & r.addr_mask == 0 {
            WriteOutcome::Done
        } else {
            WriteOutcome::RefusedBarMove
        }
    }

    /// How a write to `dword` of `devices[i]` is filtered.
    fn policy(
        &self,
        i: usize,
        dword: u16,
        hw_read: &mut dyn FnMut(Bdf, u16) -> u32,
    ) -> DwordPolicy {
        let d = &self.devices[i];
        let mut p = DwordPolicy::default();
        if dword == COMMAND {
            p.keep = u32::from(!CMD_DOM0_WRITABLE);
            p.rw1c = UPPER_HALF;
            return p;
        }
        if d.is_bridge() {
            match dword {
                PRIMARY_BUS => p.pinned = BUS_NUMBER_BYTES,
                IO_BASE => {
                    p.pinned = LOWER_HALF;
                    p.rw1c = UPPER_HALF;
                }
                MEMORY_BASE | PREF_MEMORY_BASE | PREF_BASE_UPPER32 | PREF_LIMIT_UPPER32
                | IO_BASE_UPPER16 => p.pinned = ALL_ONES,
                _ => {}
            }
        }
        let ctl_shift = u32::from(CAP_MSG_CONTROL) * BITS_PER_BYTE;
        if let Some(cap) = d.msi_cap.map(u16::from) {
            if dword == cap {
                p.clear_only |= u32::from(MSI_CTL_ENABLE) << ctl_shift;
            } else if dword >= cap + MSI_ADDRESS_LO && dword <= cap + MSI_DATA_64 {
                let ctl = (hw_read(d.bdf, cap) >> ctl_shift) as u16;
                let last = if ctl & MSI_CTL_64BIT != 0 {
                    MSI_DATA_64
                } else {
                    MSI_DATA_32
                };
                if dword <= cap + last {
                    // The hypervisor programs where MSIs go.
                    p.keep = ALL_ONES;
                }
            }
        }
        if let Some(cap) = d.msix_cap.map(u16::from)
            && dword == cap
        {
            p.clear_only |= u32::from(MSIX_CTL_ENABLE) << ctl_shift;
        }
        p
    }

    /// Every memory range Dom0 may map, as half-open `[start, end)` rounded
    /// out to 4 KiB pages, sorted and merged; pages that also hold a hidden
    /// function's BAR are left out. Unassigned (base 0) BARs are skipped.
    pub fn mmio_ranges(&self) -> Vec<(u64, u64)> {
        let pages = |devs: &[Device]| {
            merge(
                devs.iter()
                    .flat_map(|d| d.bars.iter())
                    .filter(|b| b.is_mem())
                    .filter_map(bar_span)
                    .map(|(s, e)| (align_down(s), align_up(e)))
                    .collect(),
            )
        };
        subtract(&pages(&self.devices), &pages(&self.hidden))
    }

    /// Every I/O port range of Dom0's devices, as inclusive
    /// `(first, last)`, sorted and merged. Ports a hidden function decodes
    /// are left out; BARs beyond the 64 KiB port space are skipped.
    pub fn io_ranges(&self) -> Vec<(u16, u16)> {
        let spans = |devs: &[Device]| {
            merge(
                devs.iter()
                    .flat_map(|d| d.bars.iter())
                    .filter(|b| b.kind == BarKind::Io)
                    .filter_map(bar_span)
                    .filter(|&(_, e)| e <= IO_SPACE_END)
                    .collect(),
            )
        };
        subtract(&spans(&self.devices), &spans(&self.hidden))
            .into_iter()
            .map(|(s, e)| (s as u16, (e - 1) as u16))
            .collect()
    }

    /// Does `gsi` belong to a device Dom0 sees (one with an interrupt pin
    /// whose interrupt line, as firmware set it, is `gsi`)? Line 0xff means
    /// "not connected".
    pub fn owns_gsi(&self, gsi: u32) -> bool {
        const LINE_UNKNOWN: u8 = 0xff;
        self.devices.iter().any(|d| {
            d.interrupt_pin != 0
                && d.interrupt_line != LINE_UNKNOWN
                && u32::from(d.interrupt_line) == gsi
        })
    }
}

/// `[base, base + size)` of an assigned BAR.
fn bar_span(b: &Bar) -> Option<(u64, u64)> {
    if b.base == 0 || b.size == 0 {
        return None;
    }
    Some((b.base, b.base.checked_add(b.size)?))
}

fn align_down(a: u64) -> u64 {
    a & !(PAGE_SIZE - 1)
}

fn align_up(a: u64) -> u64 {
    a.checked_next_multiple_of(PAGE_SIZE)
        .unwrap_or(align_down(u64::MAX))
}

/// Sorts half-open ranges and merges overlapping or touching ones.
fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// `a` minus `b`, both sorted and merged half-open ranges.
fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(mut s, e) in a {
        for &(bs, be) in b {
            if be <= s || bs >= e {
                continue;
            }
            if bs > s {
                out.push((s, bs));
            }
            s = s.max(be);
            if s >= e {
                break;
            }
        }
        if s < e {
            out.push((s, e));
        }
    }
    out
}

#[cfg(test)]
mod tests;
