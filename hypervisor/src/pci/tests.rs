//! Host tests of the PCI core against a fake config space whose functions
//! behave like real ones: BARs hardwire their low address bits (that is how
//! sizing works), read-only registers ignore writes, status bits are
//! write-one-to-clear. Includes a property test that no Dom0 write moves a
//! BAR or enables MSI/MSI-X in the hardware.

use super::*;
use alloc::collections::BTreeMap;
use alloc::vec;
use core::cell::RefCell;
use proptest::prelude::*;

const CFG: usize = CONFIG_SPACE_SIZE as usize;
const REVISION: u32 = 0x01;
/// Status: a parity error was detected (write-one-to-clear).
const STATUS_DETECTED_PARITY: u16 = 1 << 15;
/// Bits 15..11 and 8 of (secondary) status are write-one-to-clear.
const STATUS_W1C_HIGH: u8 = 0xf9;
/// Command bits 0..=10 exist in hardware.
const CMD_HW_WRITABLE: u16 = 0x07ff;
const MSI_CTL_MME: u16 = 0x7 << 4;
const MSIX_TABLE_SIZE: u16 = 7;
const CAP_ID_PM: u8 = 0x01;
const CAP_ID_PCIE: u8 = 0x10;
const INTX_A: u8 = 1;
const INTX_B: u8 = 2;

fn bdf(bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf::new(bus, dev, func).unwrap()
}

/// One function's config space and how each byte reacts to writes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FakeFn {
    cfg: [u8; CFG],
    /// Bits software can change.
    wmask: [u8; CFG],
    /// Bits cleared by writing one.
    w1c: [u8; CFG],
}

impl FakeFn {
    fn new(vendor: u16, device: u16, class: u32, header_type: u8) -> Self {
        let mut f = FakeFn {
            cfg: [0; CFG],
            wmask: [0; CFG],
            w1c: [0; CFG],
        };
        f.set(VENDOR_ID, 2, u32::from(vendor));
        f.set(DEVICE_ID, 2, u32::from(device));
        f.set(CLASS_REVISION, 4, class << 8 | REVISION);
        f.set(HEADER_TYPE, 1, u32::from(header_type));
        f.writable(COMMAND, 2, u32::from(CMD_HW_WRITABLE));
        f.w1c[usize::from(STATUS) + 1] = STATUS_W1C_HIGH;
        f.writable(INTERRUPT_LINE, 1, 0xff);
        f.wmask[usize::from(CAP_AREA_START)..].fill(0xff);
        if header_type & HEADER_LAYOUT_MASK == HEADER_BRIDGE {
            f.writable(PRIMARY_BUS, 4, ALL_ONES);
            f.writable(IO_BASE, 2, 0xf0f0);
            f.w1c[usize::from(SECONDARY_STATUS) + 1] = STATUS_W1C_HIGH;
            f.writable(MEMORY_BASE, 4, 0xfff0_fff0);
            f.writable(PREF_MEMORY_BASE, 4, 0xfff0_fff0);
            f.writable(PREF_BASE_UPPER32, 4, ALL_ONES);
            f.writable(PREF_LIMIT_UPPER32, 4, ALL_ONES);
            f.writable(IO_BASE_UPPER16, 4, ALL_ONES);
            f.writable(BRIDGE_CONTROL, 2, 0x0fff);
        }
        f
    }

    fn set(&mut self, reg: u16, size: usize, value: u32) {
        let r = usize::from(reg);
        self.cfg[r..r + size].copy_from_slice(&value.to_le_bytes()[..size]);
    }

    fn get(&self, reg: u16, size: usize) -> u32 {
        let r = usize::from(reg);
        let mut b = [0; 4];
        b[..size].copy_from_slice(&self.cfg[r..r + size]);
        u32::from_le_bytes(b)
    }

    fn writable(&mut self, reg: u16, size: usize, mask: u32) {
        let r = usize::from(reg);
        self.wmask[r..r + size].copy_from_slice(&mask.to_le_bytes()[..size]);
    }

    fn with(mut self, reg: u16, size: usize, value: u32) -> Self {
        self.set(reg, size, value);
        self
    }

    fn command(mut self, cmd: u16) -> Self {
        self.set(COMMAND, 2, u32::from(cmd));
        self
    }

    /// A BAR decoding `size` bytes at `base`: address bits below the size
    /// are hardwired to zero, the type bits are read-only.
    fn bar(mut self, index: u8, kind: BarKind, base: u64, size: u64, pf: bool) -> Self {
        let reg = bar_reg(index);
        let span = size - 1;
        let pf = if pf { BAR_MEM_PREFETCH } else { 0 };
        match kind {
            BarKind::Io => {
                self.set(reg, 4, base as u32 | BAR_IO);
                self.writable(reg, 4, !span as u32 & BAR_IO_ADDR_MASK);
            }
            BarKind::Mem32 => {
                self.set(reg, 4, base as u32 | BAR_MEM_TYPE_32 | pf);
                self.writable(reg, 4, !span as u32 & BAR_MEM_ADDR_MASK);
            }
            BarKind::Mem64 => {
                self.set(reg, 4, base as u32 | BAR_MEM_TYPE_64 | pf);
                self.writable(reg, 4, !span as u32 & BAR_MEM_ADDR_MASK);
                self.set(reg + DWORD, 4, (base >> 32) as u32);
                self.writable(reg + DWORD, 4, (!span >> 32) as u32);
            }
        }
        self
    }

    /// An I/O BAR of a 16-bit decoder: the upper half reads zero.
    fn io16_bar(mut self, index: u8, base: u16, size: u16) -> Self {
        let reg = bar_reg(index);
        self.set(reg, 4, u32::from(base) | BAR_IO);
        self.writable(reg, 4, u32::from(!(size - 1)) & BAR_IO_ADDR_MASK);
        self
    }

    fn rom(mut self, reg: u16, base: u32, size: u32) -> Self {
        self.set(reg, 4, base);
        self.writable(reg, 4, !(size - 1) | 1);
        self
    }

    fn irq(mut self, pin: u8, line: u8) -> Self {
        self.set(INTERRUPT_PIN, 1, u32::from(pin));
        self.set(INTERRUPT_LINE, 1, u32::from(line));
        self
    }

    /// Chains capabilities `(offset, id)` in order from CAP_PTR; `next` of
    /// the last is `last_next` (0 ends the list, anything else may loop).
    fn caps(mut self, list: &[(u8, u8)], last_next: u8) -> Self {
        let status = self.get(STATUS, 2) as u16 | STATUS_CAP_LIST;
        self.set(STATUS, 2, u32::from(status));
        self.set(CAP_PTR, 1, u32::from(list[0].0));
        for (k, &(off, id)) in list.iter().enumerate() {
            let next = list.get(k + 1).map_or(last_next, |c| c.0);
            let off = u16::from(off);
            self.set(off, 1, u32::from(id));
            self.set(off + CAP_NEXT, 1, u32::from(next));
            self.writable(off, 2, 0);
            match id {
                CAP_ID_MSI => {
                    self.set(off + CAP_MSG_CONTROL, 2, u32::from(MSI_CTL_64BIT));
                    self.writable(
                        off + CAP_MSG_CONTROL,
                        2,
                        u32::from(MSI_CTL_ENABLE | MSI_CTL_MME),
                    );
                }
                CAP_ID_MSIX => {
                    self.set(off + CAP_MSG_CONTROL, 2, u32::from(MSIX_TABLE_SIZE));
                    self.writable(
                        off + CAP_MSG_CONTROL,
                        2,
                        u32::from(MSIX_CTL_ENABLE | MSIX_CTL_FUNCTION_MASK),
                    );
                    // Table and PBA offset/BIR: read-only.
                    self.set(off + 4, 4, 0x2000);
                    self.set(off + 8, 4, 0x3000);
                    self.writable(off + 4, 4, 0);
                    self.writable(off + 8, 4, 0);
                }
                _ => {}
            }
        }
        self
    }

    fn bridge_buses(mut self, primary: u8, secondary: u8, subordinate: u8) -> Self {
        self.set(PRIMARY_BUS, 1, u32::from(primary));
        self.set(SECONDARY_BUS, 1, u32::from(secondary));
        self.set(SUBORDINATE_BUS, 1, u32::from(subordinate));
        self
    }

    fn msg_control(&self, cap: Option<u8>) -> u16 {
        cap.map_or(0, |c| self.get(u16::from(c) + CAP_MSG_CONTROL, 2) as u16)
    }
}

#[derive(Clone, Debug)]
struct Fake {
    fns: BTreeMap<Bdf, FakeFn>,
    /// A BAR was written while the function decoded memory or I/O.
    bar_written_while_decoding: bool,
}

impl Fake {
    fn read(&self, bdf: Bdf, reg: u16) -> u32 {
        assert_eq!(reg % DWORD, 0, "hardware accesses are dword aligned");
        self.fns
            .get(&bdf)
            .map_or(ALL_ONES, |f| f.get(reg, usize::from(DWORD)))
    }

    fn write(&mut self, bdf: Bdf, reg: u16, value: u32) {
        assert_eq!(reg % DWORD, 0, "hardware accesses are dword aligned");
        let Some(f) = self.fns.get_mut(&bdf) else {
            return;
        };
        let layout = f.cfg[usize::from(HEADER_TYPE)] & HEADER_LAYOUT_MASK;
        let is_bar = (BAR0..bar_reg(bar_count(layout))).contains(&reg);
        let cmd = f.get(COMMAND, 2) as u16;
        if is_bar && cmd & (CMD_IO | CMD_MEMORY) != 0 {
            self.bar_written_while_decoding = true;
        }
        for (k, b) in value.to_le_bytes().into_iter().enumerate() {
            let r = usize::from(reg) + k;
            f.cfg[r] = (f.cfg[r] & !f.wmask[r]) | (b & f.wmask[r]);
            f.cfg[r] &= !(b & f.w1c[r]);
        }
    }

    fn get(&self, bdf: Bdf) -> &FakeFn {
        &self.fns[&bdf]
    }
}

// The machine the tests run against.
const HOST: Bdf = Bdf {
    bus: 0,
    dev: 0,
    func: 0,
};
const NIC: Bdf = Bdf {
    bus: 0,
    dev: 1,
    func: 0,
};
const USB0: Bdf = Bdf {
    bus: 0,
    dev: 2,
    func: 0,
};
const USB2: Bdf = Bdf {
    bus: 0,
    dev: 2,
    func: 2,
};
/// The hypervisor's own serial card.
const SERIAL: Bdf = Bdf {
    bus: 0,
    dev: 3,
    func: 0,
};
/// Present, but function 0 is not multi-function: never probed.
const GHOST: Bdf = Bdf {
    bus: 0,
    dev: 3,
    func: 1,
};
const BRIDGE: Bdf = Bdf {
    bus: 0,
    dev: 0x1e,
    func: 0,
};
const NVME: Bdf = Bdf {
    bus: 1,
    dev: 0,
    func: 0,
};
/// On a bus no bridge leads to.
const ORPHAN: Bdf = Bdf {
    bus: 2,
    dev: 0,
    func: 0,
};

const NIC_MSI: u8 = 0x50;
const NIC_MSIX: u8 = 0x70;
const NVME_MSIX: u8 = 0x48;
const GIB: u64 = 1 << 30;

fn machine() -> Fake {
    let mut fns = BTreeMap::new();
    fns.insert(HOST, FakeFn::new(0x8086, 0x29c0, 0x06_00_00, HEADER_NORMAL));
    fns.insert(
        NIC,
        FakeFn::new(0x8086, 0x10d3, 0x02_00_00, HEADER_NORMAL)
            .bar(0, BarKind::Mem32, 0xfeb0_0000, 0x2_0000, false)
            .bar(1, BarKind::Io, 0xc000, 0x20, false)
            .bar(2, BarKind::Mem64, 0x8_0000_0000, 0x10_0000, true)
            .rom(ROM_ADDRESS, 0xfe80_0000, 0x4_0000)
            .caps(
                &[
                    (0x40, CAP_ID_PM),
                    (NIC_MSI, CAP_ID_MSI),
                    (NIC_MSIX, CAP_ID_MSIX),
                ],
                0,
            )
            .irq(INTX_A, 11)
            .command(CMD_IO | CMD_MEMORY | CMD_BUS_MASTER),
    );
    fns.insert(
        USB0,
        FakeFn::new(
            0x8086,
            0x2934,
            0x0c_03_00,
            HEADER_NORMAL | HEADER_MULTI_FUNCTION,
        )
        .bar(0, BarKind::Mem32, 0xfebf_3100, 0x100, false)
        .io16_bar(4, 0xc040, 0x20)
        .irq(0, 9)
        .command(CMD_IO | CMD_MEMORY),
    );
    fns.insert(
        USB2,
        FakeFn::new(0x8086, 0x293a, 0x0c_03_20, HEADER_NORMAL)
            .bar(0, BarKind::Mem32, 0xfebf_1000, 0x400, false)
            .bar(1, BarKind::Mem32, 0xfebf_4000, 0x1000, false)
            .irq(INTX_B, 0xff),
    );
    fns.insert(
        SERIAL,
        FakeFn::new(0x1415, 0xc158, 0x07_00_02, HEADER_NORMAL)
            .bar(0, BarKind::Io, 0xc080, 0x8, false)
            .bar(1, BarKind::Mem32, 0xfebf_1800, 0x100, false)
            .irq(INTX_A, 4),
    );
    fns.insert(
        GHOST,
        FakeFn::new(0x1415, 0xc159, 0x07_00_02, HEADER_NORMAL),
    );
    fns.insert(
        BRIDGE,
        FakeFn::new(0x8086, 0x244e, 0x06_04_01, HEADER_BRIDGE)
            .bar(0, BarKind::Mem32, 0xfea0_0000, 0x1000, false)
            .bridge_buses(0, 1, 1)
            .with(MEMORY_BASE, 4, 0xfe90_fe80)
            .command(CMD_MEMORY | CMD_BUS_MASTER),
    );
    fns.insert(
        NVME,
        FakeFn::new(0x144d, 0xa808, 0x01_08_02, HEADER_NORMAL)
            .bar(0, BarKind::Mem64, 0x10_0000_0000, 8 * GIB, false)
            // PCIe -> MSI-X -> back to PCIe: a loop.
            .caps(&[(0x40, CAP_ID_PCIE), (NVME_MSIX, CAP_ID_MSIX)], 0x40)
            .irq(INTX_A, 10)
            .command(CMD_MEMORY),
    );
    fns.insert(
        ORPHAN,
        FakeFn::new(0x1af4, 0x1000, 0x02_00_00, HEADER_NORMAL),
    );
    Fake {
        fns,
        bar_written_while_decoding: false,
    }
}

fn enumerate_fake(fake: &RefCell<Fake>) -> Vec<Device> {
    enumerate(&mut |b, r| fake.borrow().read(b, r), &mut |b, r, v| {
        fake.borrow_mut().write(b, r, v)
    })
}

fn find(devs: &[Device], bdf: Bdf) -> &Device {
    devs.iter().find(|d| d.bdf == bdf).unwrap()
}

/// The machine, its devices, and Dom0's view with the serial card hidden.
fn dom0() -> (RefCell<Fake>, Dom0Config) {
    let fake = RefCell::new(machine());
    let devs = enumerate_fake(&fake);
    (fake, Dom0Config::new(devs, &[SERIAL]))
}

fn d0_read(cfg: &mut Dom0Config, fake: &RefCell<Fake>, bdf: Bdf, reg: u16, size: u8) -> u32 {
    cfg.read(bdf, reg, size, &mut |b, r| fake.borrow().read(b, r))
}

fn d0_write(
    cfg: &mut Dom0Config,
    fake: &RefCell<Fake>,
    bdf: Bdf,
    reg: u16,
    size: u8,
    value: u32,
) -> WriteOutcome {
    cfg.write(
        bdf,
        reg,
        size,
        value,
        &mut |b, r| fake.borrow().read(b, r),
        &mut |b, r, v| fake.borrow_mut().write(b, r, v),
    )
}

// ---- Addressing ------------------------------------------------------------

#[test]
fn bdf_checks_ranges_and_displays() {
    assert!(Bdf::new(0, 32, 0).is_none());
    assert!(Bdf::new(0, 0, 8).is_none());
    assert_eq!(alloc::format!("{}", bdf(0, 0x1f, 2)), "00:1f.2");
    assert_eq!(alloc::format!("{}", bdf(0xa3, 3, 7)), "a3:03.7");
}

#[test]
fn config_address_encodes_and_decodes() {
    let a = config_address(bdf(1, 0x1f, 3), 0x3d);
    assert_eq!(a, 0x8001_fb3c);
    assert_eq!(decode_config_address(a), Some((bdf(1, 0x1f, 3), 0x3c)));
    assert_eq!(decode_config_address(a & !CONFIG_ENABLE), None);
    // Reserved bits 30:24 and 1:0 are ignored.
    assert_eq!(
        decode_config_address(a | 0x7f00_0003),
        Some((bdf(1, 0x1f, 3), 0x3c))
    );
}

#[test]
fn config_data_access_adds_the_port_offset() {
    let a = config_address(NIC, COMMAND);
    assert_eq!(config_data_access(a, 0, 4), Some((NIC, COMMAND)));
    assert_eq!(config_data_access(a, 2, 2), Some((NIC, STATUS)));
    assert_eq!(config_data_access(a, 3, 1), Some((NIC, COMMAND + 3)));
    assert_eq!(config_data_access(a, 1, 2), Some((NIC, COMMAND + 1)));
    assert_eq!(config_data_access(a, 3, 2), None, "crosses the dword");
    assert_eq!(config_data_access(a, 1, 4), None, "crosses the dword");
    assert_eq!(config_data_access(a, 0, 3), None, "bad size");
    assert_eq!(config_data_access(a, 4, 1), None, "bad port");
    assert_eq!(config_data_access(a & !CONFIG_ENABLE, 0, 4), None);
}

#[test]
fn ecam_decodes_bus_dev_func_reg() {
    let off = 0x3 << 20 | 0x1f << 15 | 0x5 << 12 | 0x104;
    assert_eq!(ecam_decode(off), Some((bdf(3, 0x1f, 5), 0x104)));
    assert_eq!(ecam_offset(bdf(3, 0x1f, 5), 0x104), off);
    assert_eq!(
        ecam_decode(ECAM_WINDOW_SIZE - 1),
        Some((bdf(0xff, 0x1f, 7), 0xfff))
    );
    assert_eq!(ecam_decode(ECAM_WINDOW_SIZE), None);
    assert_eq!(ecam_access(off + 2, 2), Some((bdf(3, 0x1f, 5), 0x106)));
    assert_eq!(ecam_access(off + 2, 4), None);
}

// ---- Enumeration -----------------------------------------------------------

#[test]
fn enumeration_walks_functions_and_bridges() {
    let fake = RefCell::new(machine());
    let devs = enumerate_fake(&fake);
    let bdfs: Vec<Bdf> = devs.iter().map(|d| d.bdf).collect();
    assert_eq!(bdfs, vec![HOST, NIC, USB0, USB2, SERIAL, BRIDGE, NVME]);
    let nic = find(&devs, NIC);
    assert_eq!((nic.vendor, nic.device), (0x8086, 0x10d3));
    assert_eq!(nic.class, 0x02_00_00);
    assert_eq!((nic.interrupt_pin, nic.interrupt_line), (INTX_A, 11));
    assert!(find(&devs, USB0).is_multi_function());
    assert!(find(&devs, BRIDGE).is_bridge());
    assert_eq!(find(&devs, BRIDGE).header_type, HEADER_BRIDGE);
}

#[test]
fn enumeration_of_a_second_root_bus() {
    let fake = RefCell::new(machine());
    let devs = enumerate_from(
        &[0, 2],
        &mut |b, r| fake.borrow().read(b, r),
        &mut |b, r, v| fake.borrow_mut().write(b, r, v),
    );
    assert!(devs.iter().any(|d| d.bdf == ORPHAN));
    assert_eq!(devs.len(), 8);
}

#[test]
fn bar_sizing_32_64_and_io() {
    let fake = RefCell::new(machine());
    let devs = enumerate_fake(&fake);
    assert_eq!(
        find(&devs, NIC).bars,
        vec![
            Bar {
                index: 0,
                kind: BarKind::Mem32,
                base: 0xfeb0_0000,
                size: 0x2_0000,
                prefetchable: false
            },
            Bar {
                index: 1,
                kind: BarKind::Io,
                base: 0xc000,
                size: 0x20,
                prefetchable: false
            },
            Bar {
                index: 2,
                kind: BarKind::Mem64,
                base: 0x8_0000_0000,
                size: 0x10_0000,
                prefetchable: true
            },
        ]
    );
    // 8 GiB: no address bit in the low register at all.
    assert_eq!(
        find(&devs, NVME).bars,
        vec![Bar {
            index: 0,
            kind: BarKind::Mem64,
            base: 0x10_0000_0000,
            size: 8 * GIB,
            prefetchable: false
        }]
    );
    // A 16-bit I/O decoder (upper half reads zero) still sizes right.
    let usb = &find(&devs, USB0).bars;
    assert_eq!(usb[1].kind, BarKind::Io);
    assert_eq!((usb[1].index, usb[1].base, usb[1].size), (4, 0xc040, 0x20));
    // A bridge has two BAR registers; bus numbers are not BARs.
    assert_eq!(find(&devs, BRIDGE).bars.len(), 1);
    assert!(find(&devs, HOST).bars.is_empty());
}

#[test]
fn enumeration_restores_everything_and_sizes_with_decode_off() {
    let fake = RefCell::new(machine());
    let before = fake.borrow().fns.clone();
    enumerate_fake(&fake);
    assert_eq!(fake.borrow().fns, before);
    assert!(!fake.borrow().bar_written_while_decoding);
}

#[test]
fn sizing_does_not_clear_status_bits() {
    let mut m = machine();
    let nic = m.fns.get_mut(&NIC).unwrap();
    let status = nic.get(STATUS, 2) as u16 | STATUS_DETECTED_PARITY;
    nic.set(STATUS, 2, u32::from(status));
    let fake = RefCell::new(m);
    enumerate_fake(&fake);
    assert_eq!(fake.borrow().get(NIC).get(STATUS, 2) as u16, status);
}

#[test]
fn capabilities_found_and_loops_end() {
    let fake = RefCell::new(machine());
    let devs = enumerate_fake(&fake);
    let nic = find(&devs, NIC);
    assert_eq!((nic.msi_cap, nic.msix_cap), (Some(NIC_MSI), Some(NIC_MSIX)));
    let nvme = find(&devs, NVME);
    assert_eq!((nvme.msi_cap, nvme.msix_cap), (None, Some(NVME_MSIX)));
    let usb = find(&devs, USB0);
    assert_eq!((usb.msi_cap, usb.msix_cap), (None, None));
}

#[test]
fn capability_walk_is_bounded() {
    // A capability pointing at itself.
    let mut m = machine();
    let f = m.fns.get_mut(&USB2).unwrap();
    *f = f.clone().caps(&[(0x80, CAP_ID_PM)], 0x80);
    let reads = core::cell::Cell::new(0usize);
    let fake = RefCell::new(m);
    let devs = enumerate(
        &mut |b, r| {
            if b == USB2 && r == 0x80 {
                reads.set(reads.get() + 1);
            }
            fake.borrow().read(b, r)
        },
        &mut |b, r, v| fake.borrow_mut().write(b, r, v),
    );
    assert_eq!(reads.get(), MAX_CAPS);
    assert_eq!(find(&devs, USB2).msi_cap, None);
}

// ---- Dom0's view -----------------------------------------------------------

/// What the hardware itself reads after all ones are written to `reg`.
fn hw_probe(fake: &RefCell<Fake>, b: Bdf, reg: u16) -> u32 {
    let mut copy = fake.borrow().clone();
    copy.write(b, reg, ALL_ONES);
    copy.read(b, reg)
}

#[test]
fn dom0_bar_sizing_matches_the_hardware() {
    let (fake, mut cfg) = dom0();
    let before = fake.borrow().fns.clone();
    for d in cfg.devices().to_vec() {
        for i in 0..bar_count(d.layout()) {
            let reg = bar_reg(i);
            let original = fake.borrow().read(d.bdf, reg);
            assert_eq!(d0_read(&mut cfg, &fake, d.bdf, reg, 4), original);
            let expect = hw_probe(&fake, d.bdf, reg);
            let o = d0_write(&mut cfg, &fake, d.bdf, reg, 4, ALL_ONES);
            assert_eq!(o, WriteOutcome::Done);
            let got = d0_read(&mut cfg, &fake, d.bdf, reg, 4);
            if expect & BAR_IO != 0 && expect & IO_BAR_UPPER16 == 0 {
                // 16-bit decoder: Dom0 gets the canonical 32-bit mask.
                assert_eq!(got, expect | IO_BAR_UPPER16, "{} BAR{i}", d.bdf);
            } else {
                assert_eq!(got, expect, "{} BAR{i}", d.bdf);
            }
            // Byte reads of the probe see the same mask.
            assert_eq!(
                d0_read(&mut cfg, &fake, d.bdf, reg + 1, 1),
                (got >> 8) & 0xff
            );
            let o = d0_write(&mut cfg, &fake, d.bdf, reg, 4, original);
            assert_eq!(o, WriteOutcome::Done);
            assert_eq!(d0_read(&mut cfg, &fake, d.bdf, reg, 4), original);
        }
    }
    assert_eq!(fake.borrow().fns, before, "no BAR write reached hardware");
}

#[test]
fn dom0_sizes_a_64_bit_bar_like_linux() {
    let (fake, mut cfg) = dom0();
    let (lo, hi) = (bar_reg(2), bar_reg(3));
    let l = d0_read(&mut cfg, &fake, NIC, lo, 4);
    let h = d0_read(&mut cfg, &fake, NIC, hi, 4);
    assert_eq!(l & BAR_MEM_TYPE_MASK, BAR_MEM_TYPE_64);
    d0_write(&mut cfg, &fake, NIC, lo, 4, ALL_ONES);
    d0_write(&mut cfg, &fake, NIC, hi, 4, ALL_ONES);
    let sz = u64::from(d0_read(&mut cfg, &fake, NIC, hi, 4)) << 32
        | u64::from(d0_read(&mut cfg, &fake, NIC, lo, 4) & BAR_MEM_ADDR_MASK);
    assert_eq!(!sz + 1, 0x10_0000);
    d0_write(&mut cfg, &fake, NIC, lo, 4, l);
    d0_write(&mut cfg, &fake, NIC, hi, 4, h);
    let base = u64::from(d0_read(&mut cfg, &fake, NIC, hi, 4)) << 32
        | u64::from(d0_read(&mut cfg, &fake, NIC, lo, 4) & BAR_MEM_ADDR_MASK);
    assert_eq!(base, 0x8_0000_0000);
}

#[test]
fn dom0_cannot_move_a_bar() {
    let (fake, mut cfg) = dom0();
    let before = fake.borrow().fns.clone();
    let reg = bar_reg(0);
    let o = d0_write(&mut cfg, &fake, NIC, reg, 4, 0xfe00_0000);
    assert_eq!(o, WriteOutcome::RefusedBarMove);
    assert_eq!(d0_read(&mut cfg, &fake, NIC, reg, 4), 0xfeb0_0000);
    // Mid-probe a move is refused too, and the probe ends.
    d0_write(&mut cfg, &fake, NIC, reg, 4, ALL_ONES);
    let o = d0_write(&mut cfg, &fake, NIC, reg, 4, 0x1000_0000);
    assert_eq!(o, WriteOutcome::RefusedBarMove);
    assert_eq!(d0_read(&mut cfg, &fake, NIC, reg, 4), 0xfeb0_0000);
    // A byte write moving the base.
    let o = d0_write(&mut cfg, &fake, NIC, reg + 3, 1, 0x12);
    assert_eq!(o, WriteOutcome::RefusedBarMove);
    // Unimplemented BARs stay zero.
    let o = d0_write(&mut cfg, &fake, NIC, bar_reg(5), 4, ALL_ONES);
    assert_eq!(o, WriteOutcome::Done);
    assert_eq!(d0_read(&mut cfg, &fake, NIC, bar_reg(5), 4), 0);
    assert_eq!(fake.borrow().fns, before);
}

#[test]
fn expansion_rom_is_hidden() {
    let (fake, mut cfg) = dom0();
    let before = fake.borrow().fns.clone();
    assert_eq!(d0_read(&mut cfg, &fake, NIC, ROM_ADDRESS, 4), 0);
    let o = d0_write(&mut cfg, &fake, NIC, ROM_ADDRESS, 4, 0xfe00_0001);
    assert_eq!(o, WriteOutcome::Dropped);
    assert_eq!(fake.borrow().fns, before);
}

#[test]
fn msi_and_msix_enable_bits_are_filtered() {
    let (fake, mut cfg) = dom0();
    let msi_ctl = u16::from(NIC_MSI) + CAP_MSG_CONTROL;
    let msix_ctl = u16::from(NIC_MSIX) + CAP_MSG_CONTROL;
    let ctl = |f: &RefCell<Fake>, cap| f.borrow().get(NIC).msg_control(Some(cap));

    let want = MSI_CTL_64BIT | MSI_CTL_ENABLE | 0x1 << 4;
    let o = d0_write(&mut cfg, &fake, NIC, msi_ctl, 2, u32::from(want));
    assert_eq!(o, WriteOutcome::Filtered);
    assert_eq!(ctl(&fake, NIC_MSI), MSI_CTL_64BIT | 0x1 << 4, "MME passes");

    let want = MSIX_CTL_ENABLE | MSIX_CTL_FUNCTION_MASK;
    let o = d0_write(&mut cfg, &fake, NIC, msix_ctl, 2, u32::from(want));
    assert_eq!(o, WriteOutcome::Filtered);
    assert_eq!(
        ctl(&fake, NIC_MSIX),
        MSIX_TABLE_SIZE | MSIX_CTL_FUNCTION_MASK
    );
    // The same through a dword write and a byte write.
    let dword = u32::from(MSIX_CTL_ENABLE) << 16;
    let o = d0_write(&mut cfg, &fake, NIC, u16::from(NIC_MSIX), 4, dword);
    assert_eq!(o, WriteOutcome::Filtered);
    let o = d0_write(&mut cfg, &fake, NIC, msix_ctl + 1, 1, 0x80);
    assert_eq!(o, WriteOutcome::Filtered);
    assert_eq!(ctl(&fake, NIC_MSIX) & MSIX_CTL_ENABLE, 0);
    assert_eq!(ctl(&fake, NIC_MSIX) & MSIX_CTL_FUNCTION_MASK, 0);

    // Once the hypervisor has enabled MSI-X, Dom0 toggling the function
    // mask keeps it on, and Dom0 may switch it off.
    let cap = u16::from(NIC_MSIX);
    let on = u32::from(MSIX_CTL_ENABLE) << 16;
    fake.borrow_mut().write(NIC, cap, on);
    let both = u32::from(MSIX_CTL_ENABLE | MSIX_CTL_FUNCTION_MASK);
    assert_eq!(
        d0_write(&mut cfg, &fake, NIC, msix_ctl, 2, both),
        WriteOutcome::Done
    );
    let o = d0_write(
        &mut cfg,
        &fake,
        NIC,
        msix_ctl,
        2,
        u32::from(MSIX_CTL_ENABLE),
    );
    assert_eq!(o, WriteOutcome::Done);
    assert_eq!(ctl(&fake, NIC_MSIX), MSIX_TABLE_SIZE | MSIX_CTL_ENABLE);
    assert_eq!(
        d0_write(&mut cfg, &fake, NIC, msix_ctl, 2, 0),
        WriteOutcome::Done
    );
    assert_eq!(ctl(&fake, NIC_MSIX), MSIX_TABLE_SIZE);
}

#[test]
fn msi_address_and_data_belong_to_the_hypervisor() {
    let (fake, mut cfg) = dom0();
    let before = fake.borrow().fns.clone();
    let cap = u16::from(NIC_MSI);
    for reg in [cap + MSI_ADDRESS_LO, cap + MSI_DATA_32, cap + MSI_DATA_64] {
        let o = d0_write(&mut cfg, &fake, NIC, reg, 4, 0xfee0_0000);
        assert_eq!(o, WriteOutcome::Filtered, "{reg:#x}");
    }
    assert_eq!(fake.borrow().fns, before);
    // The mask bits after a 64-bit MSI's data are Dom0's.
    let mask = cap + MSI_DATA_64 + DWORD;
    assert_eq!(
        d0_write(&mut cfg, &fake, NIC, mask, 4, 1),
        WriteOutcome::Done
    );
    assert_eq!(fake.borrow().read(NIC, mask), 1);
}

#[test]
fn hidden_and_absent_functions_read_all_ones() {
    let (fake, mut cfg) = dom0();
    let before = fake.borrow().fns.clone();
    assert!(cfg.devices().iter().all(|d| d.bdf != SERIAL));
    assert!(!cfg.is_visible(SERIAL) && cfg.is_visible(NIC));
    for b in [SERIAL, GHOST, ORPHAN, bdf(0, 5, 0)] {
        assert_eq!(d0_read(&mut cfg, &fake, b, VENDOR_ID, 4), ALL_ONES);
        assert_eq!(d0_read(&mut cfg, &fake, b, VENDOR_ID, 2), 0xffff);
        assert_eq!(d0_read(&mut cfg, &fake, b, HEADER_TYPE, 1), 0xff);
        assert_eq!(d0_read(&mut cfg, &fake, b, bar_reg(0), 4), ALL_ONES);
        for reg in [COMMAND, bar_reg(0), INTERRUPT_LINE] {
            let o = d0_write(&mut cfg, &fake, b, reg, 4, 0);
            assert_eq!(o, WriteOutcome::Dropped);
        }
    }
    assert_eq!(fake.borrow().fns, before);
}

#[test]
fn partial_reads() {
    let (fake, mut cfg) = dom0();
    assert_eq!(d0_read(&mut cfg, &fake, NIC, VENDOR_ID, 2), 0x8086);
    assert_eq!(d0_read(&mut cfg, &fake, NIC, DEVICE_ID, 2), 0x10d3);
    assert_eq!(d0_read(&mut cfg, &fake, NIC, CLASS_REVISION + 3, 1), 0x02);
    assert_eq!(d0_read(&mut cfg, &fake, USB0, HEADER_TYPE, 1), 0x80);
    assert_eq!(d0_read(&mut cfg, &fake, NIC, INTERRUPT_PIN, 1), 1);
    assert_eq!(d0_read(&mut cfg, &fake, NIC, bar_reg(0) + 2, 2), 0xfeb0);
    assert_eq!(d0_read(&mut cfg, &fake, NIC, 0x03, 2), 0xffff, "crosses");
    assert_eq!(d0_read(&mut cfg, &fake, NIC, 0x00, 3), ALL_ONES, "bad size");
}

#[test]
fn partial_writes_merge_into_the_dword() {
    let (fake, mut cfg) = dom0();
    let o = d0_write(&mut cfg, &fake, NIC, INTERRUPT_LINE, 1, 5);
    assert_eq!(o, WriteOutcome::Done);
    let f = fake.borrow().get(NIC).clone();
    assert_eq!((f.get(INTERRUPT_LINE, 1), f.get(INTERRUPT_PIN, 1)), (5, 1));
    // A 2-byte write in the middle of a dword.
    let reg = u16::from(NIC_MSIX) + 0x10;
    d0_write(&mut cfg, &fake, NIC, reg, 4, 0x1122_3344);
    d0_write(&mut cfg, &fake, NIC, reg + 1, 2, 0xaabb);
    assert_eq!(fake.borrow().read(NIC, reg), 0x11aa_bb44);
    assert_eq!(d0_read(&mut cfg, &fake, NIC, reg + 2, 1), 0xaa);
    assert_eq!(
        d0_write(&mut cfg, &fake, NIC, reg + 3, 2, 0),
        WriteOutcome::Dropped
    );
}

#[test]
fn command_register_and_write_one_to_clear_status() {
    let (fake, mut cfg) = dom0();
    let status = fake.borrow().get(NIC).get(STATUS, 2) as u16 | STATUS_DETECTED_PARITY;
    fake.borrow_mut()
        .fns
        .get_mut(&NIC)
        .unwrap()
        .set(STATUS, 2, u32::from(status));
    // Everything Dom0 may not set is kept.
    let o = d0_write(&mut cfg, &fake, NIC, COMMAND, 2, 0xffff);
    assert_eq!(o, WriteOutcome::Filtered);
    let cmd = fake.borrow().get(NIC).get(COMMAND, 2) as u16;
    assert_eq!(cmd, CMD_DOM0_WRITABLE);
    // Writing the command did not clear the status error bit.
    assert_eq!(fake.borrow().get(NIC).get(STATUS, 2) as u16, status);
    let o = d0_write(&mut cfg, &fake, NIC, COMMAND + 1, 1, 0);
    assert_eq!(o, WriteOutcome::Done);
    let cmd = fake.borrow().get(NIC).get(COMMAND, 2) as u16;
    assert_eq!(cmd, CMD_IO | CMD_MEMORY | CMD_BUS_MASTER);
    // Writing one to the status bit clears it.
    let o = d0_write(
        &mut cfg,
        &fake,
        NIC,
        STATUS,
        2,
        u32::from(STATUS_DETECTED_PARITY),
    );
    assert_eq!(o, WriteOutcome::Done);
    assert_eq!(
        fake.borrow().get(NIC).get(STATUS, 2) as u16,
        status & !STATUS_DETECTED_PARITY
    );
}

#[test]
fn bridge_keeps_its_buses_and_windows() {
    let (fake, mut cfg) = dom0();
    let before = fake.borrow().get(BRIDGE).clone();
    let o = d0_write(&mut cfg, &fake, BRIDGE, SECONDARY_BUS, 1, 5);
    assert_eq!(o, WriteOutcome::RefusedBarMove);
    let o = d0_write(&mut cfg, &fake, BRIDGE, MEMORY_BASE, 4, 0xfff0_0000);
    assert_eq!(o, WriteOutcome::RefusedBarMove);
    // Writing back what is there is fine.
    let same = before.get(PRIMARY_BUS, 4);
    assert_eq!(
        d0_write(&mut cfg, &fake, BRIDGE, PRIMARY_BUS, 4, same),
        WriteOutcome::Done
    );
    assert_eq!(fake.borrow().get(BRIDGE), &before);
    // The secondary latency timer is Dom0's.
    let o = d0_write(&mut cfg, &fake, BRIDGE, SECONDARY_LATENCY, 1, 0x40);
    assert_eq!(o, WriteOutcome::Done);
    assert_eq!(fake.borrow().get(BRIDGE).get(SECONDARY_LATENCY, 1), 0x40);
    // Secondary status is write-one-to-clear, next to the pinned I/O window.
    let mut f = before.clone();
    f.set(SECONDARY_STATUS, 2, u32::from(STATUS_DETECTED_PARITY));
    fake.borrow_mut().fns.insert(BRIDGE, f);
    d0_write(&mut cfg, &fake, BRIDGE, IO_BASE, 2, 0);
    assert_eq!(
        fake.borrow().get(BRIDGE).get(SECONDARY_STATUS, 2) as u16,
        STATUS_DETECTED_PARITY
    );
    let v = u32::from(STATUS_DETECTED_PARITY);
    d0_write(&mut cfg, &fake, BRIDGE, SECONDARY_STATUS, 2, v);
    assert_eq!(fake.borrow().get(BRIDGE).get(SECONDARY_STATUS, 2), 0);
}

#[test]
fn mmio_ranges_are_page_rounded_merged_and_avoid_hidden_pages() {
    let (_, cfg) = dom0();
    assert_eq!(
        cfg.mmio_ranges(),
        vec![
            (0xfea0_0000, 0xfea0_1000),
            (0xfeb0_0000, 0xfeb2_0000),
            // USB0's 0x100 bytes at 0x...3100 and USB2's page at 0x...4000.
            (0xfebf_3000, 0xfebf_5000),
            (0x8_0000_0000, 0x8_0010_0000),
            (0x10_0000_0000, 0x12_0000_0000),
        ]
    );
    // With nothing hidden, USB2's page shared with the serial card appears.
    let fake = RefCell::new(machine());
    let all = Dom0Config::new(enumerate_fake(&fake), &[]);
    assert!(all.mmio_ranges().contains(&(0xfebf_1000, 0xfebf_2000)));
}

#[test]
fn io_ranges_are_inclusive_and_skip_hidden() {
    let (_, cfg) = dom0();
    assert_eq!(cfg.io_ranges(), vec![(0xc000, 0xc01f), (0xc040, 0xc05f)]);
    let fake = RefCell::new(machine());
    let all = Dom0Config::new(enumerate_fake(&fake), &[]);
    assert!(all.io_ranges().contains(&(0xc080, 0xc087)));
}

#[test]
fn gsis_of_visible_devices_only() {
    let (_, cfg) = dom0();
    assert!(cfg.owns_gsi(11));
    assert!(cfg.owns_gsi(10));
    assert!(!cfg.owns_gsi(4), "the hidden serial card's");
    assert!(!cfg.owns_gsi(9), "no interrupt pin");
    assert!(!cfg.owns_gsi(0xff), "line unknown");
    assert!(!cfg.owns_gsi(0));
    assert!(!cfg.owns_gsi(0x1_0000 + 11));
}

// ---- Properties ------------------------------------------------------------

/// The registers of `f` no Dom0 write may change.
fn protected_state(f: &FakeFn, dev: Option<&Device>) -> Vec<u32> {
    let layout = f.cfg[usize::from(HEADER_TYPE)] & HEADER_LAYOUT_MASK;
    let mut regs: Vec<u32> = (0..bar_count(layout))
        .map(|i| f.get(bar_reg(i), 4))
        .collect();
    if let Some(rom) = rom_reg(layout) {
        regs.push(f.get(rom, 4));
    }
    if layout == HEADER_BRIDGE {
        regs.push(f.get(PRIMARY_BUS, 4) & BUS_NUMBER_BYTES);
        regs.push(f.get(IO_BASE, 2));
        for r in [
            MEMORY_BASE,
            PREF_MEMORY_BASE,
            PREF_BASE_UPPER32,
            PREF_LIMIT_UPPER32,
            IO_BASE_UPPER16,
        ] {
            regs.push(f.get(r, 4));
        }
    }
    if let Some(cap) = dev.and_then(|d| d.msi_cap).map(u16::from) {
        for r in [MSI_ADDRESS_LO, MSI_DATA_32, MSI_DATA_64] {
            regs.push(f.get(cap + r, 4));
        }
    }
    regs
}

#[derive(Clone, Debug)]
enum Op {
    Write {
        target: usize,
        reg: u16,
        size: u8,
        value: u32,
    },
    Read {
        target: usize,
        reg: u16,
        size: u8,
    },
}

const TARGETS: [Bdf; 10] = [
    HOST,
    NIC,
    USB0,
    USB2,
    SERIAL,
    GHOST,
    BRIDGE,
    NVME,
    ORPHAN,
    Bdf {
        bus: 0,
        dev: 4,
        func: 0,
    },
];

fn reg_strategy() -> impl Strategy<Value = u16> {
    prop_oneof![
        0u16..CONFIG_SPACE_SIZE,
        // Registers where the filtering happens, any byte of them.
        (
            prop::sample::select(vec![
                COMMAND,
                bar_reg(0),
                bar_reg(1),
                bar_reg(2),
                bar_reg(3),
                ROM_ADDRESS,
                BRIDGE_ROM_ADDRESS,
                PRIMARY_BUS,
                IO_BASE,
                MEMORY_BASE,
                u16::from(NIC_MSI),
                u16::from(NIC_MSI) + MSI_ADDRESS_LO,
                u16::from(NIC_MSI) + MSI_DATA_64,
                u16::from(NIC_MSIX),
                u16::from(NVME_MSIX),
            ]),
            0u16..DWORD
        )
            .prop_map(|(r, o)| r + o),
    ]
}

fn value_strategy() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        Just(ALL_ONES),
        Just(0),
        Just(u32::from(MSIX_CTL_ENABLE) << 16 | u32::from(MSI_CTL_ENABLE) << 16),
        Just(u32::from(MSIX_CTL_ENABLE) | u32::from(MSI_CTL_ENABLE)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop::sample::select(vec![1u8, 2, 4, 3]);
    prop_oneof![
        4 => (0..TARGETS.len(), reg_strategy(), size.clone(), value_strategy())
            .prop_map(|(target, reg, size, value)| Op::Write { target, reg, size, value }),
        1 => (0..TARGETS.len(), reg_strategy(), size)
            .prop_map(|(target, reg, size)| Op::Read { target, reg, size }),
    ]
}

proptest! {
    #[test]
    fn dom0_writes_never_move_bars_nor_enable_msi(ops in prop::collection::vec(op(), 1..120)) {
        let (fake, mut cfg) = dom0();
        let devs = cfg.devices().to_vec();
        let dev = |b: Bdf| devs.iter().find(|d| d.bdf == b);
        let initial: BTreeMap<Bdf, Vec<u32>> = fake
            .borrow()
            .fns
            .iter()
            .map(|(&b, f)| (b, protected_state(f, dev(b))))
            .collect();
        let untouchable: Vec<(Bdf, FakeFn)> = [SERIAL, GHOST, ORPHAN]
            .iter()
            .map(|&b| (b, fake.borrow().get(b).clone()))
            .collect();
        for op in ops {
            match op {
                Op::Write { target, reg, size, value } => {
                    d0_write(&mut cfg, &fake, TARGETS[target], reg, size, value);
                }
                Op::Read { target, reg, size } => {
                    let v = d0_read(&mut cfg, &fake, TARGETS[target], reg, size);
                    prop_assert_eq!(v & !width_mask(size), 0);
                }
            }
            let hw = fake.borrow();
            for (b, f) in &hw.fns {
                prop_assert_eq!(&protected_state(f, dev(*b)), &initial[b], "{}", b);
                if let Some(d) = dev(*b) {
                    prop_assert_eq!(f.msg_control(d.msi_cap) & MSI_CTL_ENABLE, 0);
                    prop_assert_eq!(f.msg_control(d.msix_cap) & MSIX_CTL_ENABLE, 0);
                }
            }
            for (b, f) in &untouchable {
                prop_assert_eq!(hw.get(*b), f, "{}", b);
            }
        }
    }

    #[test]
    fn config_address_round_trips(bus in any::<u8>(), dev in 0u8..32, func in 0u8..8, reg in 0u16..256) {
        let b = bdf(bus, dev, func);
        prop_assert_eq!(decode_config_address(config_address(b, reg)), Some((b, reg & !3)));
    }

    #[test]
    fn ecam_round_trips(bus in any::<u8>(), dev in 0u8..32, func in 0u8..8, reg in 0u16..4096) {
        let b = bdf(bus, dev, func);
        prop_assert_eq!(ecam_decode(ecam_offset(b, reg)), Some((b, reg)));
    }

    #[test]
    fn dom0_bar_probe_of_any_bar_matches_hardware(size_log in 4u32..40, io in any::<bool>(), base_page in 1u64..0x1000) {
        // One function with one BAR of a random size.
        let size = 1u64 << if io { size_log.min(8) } else { size_log };
        let kind = match (io, size > 1 << 31) {
            (true, _) => BarKind::Io,
            (false, false) => BarKind::Mem32,
            (false, true) => BarKind::Mem64,
        };
        let base = (base_page * size) & match kind {
            BarKind::Io => u64::from(u16::MAX),
            BarKind::Mem32 => u64::from(u32::MAX),
            BarKind::Mem64 => u64::MAX,
        };
        let mut m = machine();
        m.fns.insert(USB2, FakeFn::new(0x1234, 0x5678, 0, HEADER_NORMAL).bar(0, kind, base, size, false));
        let fake = RefCell::new(m);
        let devs = enumerate_fake(&fake);
        let bar = find(&devs, USB2).bars[0];
        prop_assert_eq!((bar.kind, bar.base, bar.size), (kind, base, size));
        let mut cfg = Dom0Config::new(devs, &[]);
        let regs = if kind == BarKind::Mem64 { 2 } else { 1 };
        for i in 0..regs {
            let reg = bar_reg(i);
            let expect = hw_probe(&fake, USB2, reg);
            d0_write(&mut cfg, &fake, USB2, reg, 4, ALL_ONES);
            prop_assert_eq!(d0_read(&mut cfg, &fake, USB2, reg, 4), expect);
        }
    }
}
