//! The ACPI tables a PVH DomU is given, laid out as Xen 4.17's libacpi does
//! for PVH (LINUX-PVH.md §3): RSDP rev 2 → XSDT (+ RSDT) → FADT rev 5 and
//! MADT; the FADT points at a FACS and a DSDT. Pure byte building, host-tested.
//!
//! Hand-written rather than rust-vmm's `acpi_tables`: its FADT builder is
//! fixed at revision 6 (276 bytes, not Xen's 268-byte revision 5), it stamps
//! its own creator id where Xen has "HVML", and it pulls in zerocopy 0.7 next
//! to our 0.8. Each table here is a few dozen lines of little-endian writes.
//!
//! Layout inside the blob (offsets from `base`, which is page aligned):
//! FACS at 0 (64-byte aligned, as the spec requires), then DSDT, FADT, MADT,
//! XSDT, RSDP and RSDT, each 16-byte aligned. The RSDT is last so that it
//! can be left out when the blob lies above 4 GiB, where 32-bit pointers
//! cannot reach; the FADT's 32-bit DSDT/FIRMWARE_CTRL are then 0 as well.

use alloc::vec::Vec;
use core::fmt;

/// Tables plus where the RSDP landed; `bytes[0]` sits at the `base` given
/// to [`build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiBlob {
    pub bytes: Vec<u8>,
    pub rsdp_gpa: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiError {
    /// The vCPU count is 0 or above [`MAX_VCPUS`].
    TooManyVcpus,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the MADT describes 1 to {MAX_VCPUS} vCPUs")
    }
}

/// vCPU n gets APIC ID 2n, which the type-0 MADT entry holds in a byte.
pub const MAX_VCPUS: u32 = 128;

// Header identity, as libacpi's acpi2_0.h.
const OEM_ID: [u8; 6] = *b"Xen\0\0\0";
const OEM_TABLE_ID: [u8; 8] = *b"HVM\0\0\0\0\0";
const OEM_REVISION: u32 = 0;
const CREATOR_ID: [u8; 4] = *b"HVML";
const CREATOR_REVISION: u32 = 0;

const HEADER_LEN: usize = 36;
const RSDP_LEN: usize = 36;
const FACS_LEN: usize = 64;
const FADT_LEN: usize = 268;
const MADT_LAPIC_LEN: usize = 8;

// Revisions: FADT 5 as Xen uses for PVH; the rest as libacpi's acpi2_0.h.
const RSDP_REVISION: u8 = 2;
const XSDT_REVISION: u8 = 1;
const RSDT_REVISION: u8 = 1;
const MADT_REVISION: u8 = 2;
const FADT_REVISION: u8 = 5;
const FACS_VERSION: u8 = 1;
/// 2: integers in the DSDT's AML are 64-bit (Xen's DSDT is the same).
const DSDT_REVISION: u8 = 2;

const LAPIC_ADDRESS: u32 = 0xfee0_0000;
const MADT_PCAT_COMPAT: u32 = 1;
const MADT_TYPE_LOCAL_APIC: u8 = 0;
const LAPIC_ENABLED: u32 = 1;

// FADT values, from what Xen 4.17 gave a PVH guest.
const SCI_INT: u16 = 9;
const PM1A_EVT_BLK: u16 = 0xb000;
const PM1_EVT_LEN: u8 = 4;
const PM1A_CNT_BLK: u16 = 0xb004;
const PM1_CNT_LEN: u8 = 2;
const GPE0_BLK: u16 = 0xafe0;
const GPE0_BLK_LEN: u8 = 4;
/// Above 100 / 1000 microseconds: no C2 / C3 state.
const P_LVL2_LAT: u16 = 0x0fff;
const P_LVL3_LAT: u16 = 0x0fff;
/// VGA not present (bit 2), CMOS RTC not present (bit 5).
const IAPC_BOOT_ARCH: u16 = 0x24;
/// WBINVD, PROC_C1, PWR_BUTTON, SLP_BUTTON, FIX_RTC, TMR_VAL_EXT and
/// USE_PLATFORM_CLOCK (bit 15). Like Xen, RESET_REG_SUP (bit 10) is clear
/// even though the reset register below is filled in.
const FADT_FLAGS: u32 = 0x8175;
const RESET_PORT: u16 = 0xcf9;
const RESET_VALUE: u8 = 6;

/// `Scope (\_SB) {}`: the smallest AML that says something, and a no-op
/// (ACPICA predefines `\_SB`). Xen's DSDT also carries processor objects, a
/// CPU-present map at ports 0xaf00-0xaf0f and GPE0 methods; we leave all of
/// that out. Above all there is no `\_S5`, so Linux's poweroff halts.
const DSDT_AML: [u8; 7] = [0x10, 0x06, b'\\', b'_', b'S', b'B', b'_'];

/// Little-endian byte writer.
struct Writer(Vec<u8>);

impl Writer {
    fn new() -> Self {
        Self(Vec::new())
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    fn gas(&mut self, g: Gas) -> &mut Self {
        self.u8(g.space_id)
            .u8(g.bit_width)
            .u8(g.bit_offset)
            .u8(g.access_size)
            .u64(g.address)
    }
}

/// Generic Address Structure (12 bytes).
#[derive(Clone, Copy)]
struct Gas {
    space_id: u8,
    bit_width: u8,
    bit_offset: u8,
    /// 0 = undefined (legacy), as Xen leaves it.
    access_size: u8,
    address: u64,
}

impl Gas {
    const NONE: Self = Self {
        space_id: 0,
        bit_width: 0,
        bit_offset: 0,
        access_size: 0,
        address: 0,
    };

    /// `len` bytes of system I/O space at `port`.
    const fn io(port: u16, len: u8) -> Self {
        Self {
            space_id: 1,
            bit_width: len * 8,
            bit_offset: 0,
            access_size: 0,
            address: port as u64,
        }
    }
}

/// The byte that makes `bytes` sum to 0 when added.
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc.wrapping_add(*b))
        .wrapping_neg()
}

/// A system description table: the 36-byte header, then `body`.
fn sdt(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(HEADER_LEN + body.len()).unwrap_or(u32::MAX);
    let mut w = Writer::new();
    w.bytes(signature)
        .u32(len)
        .u8(revision)
        .u8(0) // checksum, below
        .bytes(&OEM_ID)
        .bytes(&OEM_TABLE_ID)
        .u32(OEM_REVISION)
        .bytes(&CREATOR_ID)
        .u32(CREATOR_REVISION)
        .bytes(body);
    let mut t = w.0;
    t[9] = checksum(&t);
    t
}

/// A 32-bit copy of a pointer, or 0 where one cannot reach.
fn addr32(gpa: u64, low: bool) -> u32 {
    match u32::try_from(gpa) {
        Ok(a) if low => a,
        _ => 0,
    }
}

fn facs() -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(b"FACS")
        .u32(FACS_LEN as u32)
        .u32(0) // hardware signature
        .u32(0) // firmware waking vector
        .u32(0) // global lock
        .u32(0) // flags
        .u64(0) // X firmware waking vector
        .u8(FACS_VERSION)
        .zeros(3)
        .u32(0) // OSPM flags
        .zeros(24);
    w.0
}

fn fadt(facs: u64, dsdt: u64, low: bool) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(addr32(facs, low)) // FIRMWARE_CTRL
        .u32(addr32(dsdt, low)) // DSDT
        .u8(0) // reserved
        .u8(0) // preferred PM profile: unspecified
        .u16(SCI_INT)
        .u32(0) // SMI_CMD: none, the platform is always in ACPI mode
        .u8(0) // ACPI_ENABLE
        .u8(0) // ACPI_DISABLE
        .u8(0) // S4BIOS_REQ
        .u8(0) // PSTATE_CNT
        .u32(PM1A_EVT_BLK.into())
        .u32(0) // PM1b_EVT_BLK
        .u32(PM1A_CNT_BLK.into())
        .u32(0) // PM1b_CNT_BLK
        .u32(0) // PM2_CNT_BLK
        .u32(0) // PM_TMR_BLK: no PM timer
        .u32(GPE0_BLK.into())
        .u32(0) // GPE1_BLK
        .u8(PM1_EVT_LEN)
        .u8(PM1_CNT_LEN)
        .u8(0) // PM2_CNT_LEN
        .u8(0) // PM_TMR_LEN
        .u8(GPE0_BLK_LEN)
        .u8(0) // GPE1_BLK_LEN
        .u8(0) // GPE1_BASE
        .u8(0) // CST_CNT
        .u16(P_LVL2_LAT)
        .u16(P_LVL3_LAT)
        .u16(0) // FLUSH_SIZE
        .u16(0) // FLUSH_STRIDE
        .u8(0) // DUTY_OFFSET
        .u8(0) // DUTY_WIDTH
        .u8(0) // DAY_ALRM
        .u8(0) // MON_ALRM
        .u8(0) // CENTURY: no CMOS RTC
        .u16(IAPC_BOOT_ARCH)
        .u8(0) // reserved
        .u32(FADT_FLAGS)
        .gas(Gas::io(RESET_PORT, 1))
        .u8(RESET_VALUE)
        .zeros(3) // ARM_BOOT_ARCH, FADT minor version (ACPI 5.1+)
        .u64(facs) // X_FIRMWARE_CTRL
        .u64(dsdt) // X_DSDT
        .gas(Gas::io(PM1A_EVT_BLK, PM1_EVT_LEN))
        .gas(Gas::NONE) // X_PM1b_EVT_BLK
        .gas(Gas::io(PM1A_CNT_BLK, PM1_CNT_LEN))
        .gas(Gas::NONE) // X_PM1b_CNT_BLK
        .gas(Gas::NONE) // X_PM2_CNT_BLK
        .gas(Gas::NONE) // X_PM_TMR_BLK
        .gas(Gas::io(GPE0_BLK, GPE0_BLK_LEN))
        .gas(Gas::NONE) // X_GPE1_BLK
        .gas(Gas::NONE) // SLEEP_CONTROL_REG (HW-reduced only)
        .gas(Gas::NONE); // SLEEP_STATUS_REG
    sdt(b"FACP", FADT_REVISION, &w.0)
}

fn madt(vcpus: u8) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(LAPIC_ADDRESS).u32(MADT_PCAT_COMPAT);
    for n in 0..vcpus {
        w.u8(MADT_TYPE_LOCAL_APIC)
            .u8(MADT_LAPIC_LEN as u8)
            .u8(n) // ACPI processor UID
            .u8(2 * n) // APIC ID
            .u32(LAPIC_ENABLED);
    }
    sdt(b"APIC", MADT_REVISION, &w.0)
}

fn rsdp(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(b"RSD PTR ")
        .u8(0) // checksum over the first 20 bytes, below
        .bytes(&OEM_ID)
        .u8(RSDP_REVISION)
        .u32(rsdt)
        .u32(RSDP_LEN as u32)
        .u64(xsdt)
        .u8(0) // extended checksum over all 36, below
        .zeros(3);
    let mut r = w.0;
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

const fn align_up(off: usize, align: usize) -> usize {
    off.div_ceil(align) * align
}

/// Builds RSDP, XSDT, FADT, FACS?, DSDT and MADT laid out contiguously from guest-physical `base` (page aligned); bytes[0] is at `base`.
///
/// FACS is always present. An RSDT is added too (as Xen does) when the
/// whole blob lies below 4 GiB. `base` is chosen by the domain builder, not
/// a guest; it must be page aligned, nonzero (a pointer 0 reads as "absent")
/// and below 2^52.
pub fn build(vcpus: u32, base: u64) -> Result<AcpiBlob, AcpiError> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(AcpiError::TooManyVcpus);
    }
    let vcpus = u8::try_from(vcpus).map_err(|_| AcpiError::TooManyVcpus)?;
    debug_assert!(base != 0 && base.is_multiple_of(4096) && base < 1 << 52);

    let dsdt_len = HEADER_LEN + DSDT_AML.len();
    let madt_len = HEADER_LEN + 8 + usize::from(vcpus) * MADT_LAPIC_LEN;
    let xsdt_len = HEADER_LEN + 2 * 8;
    let rsdt_len = HEADER_LEN + 2 * 4;

    let facs_off = 0;
    let dsdt_off = align_up(facs_off + FACS_LEN, 16);
    let fadt_off = align_up(dsdt_off + dsdt_len, 16);
    let madt_off = align_up(fadt_off + FADT_LEN, 16);
    let xsdt_off = align_up(madt_off + madt_len, 16);
    let rsdp_off = align_up(xsdt_off + xsdt_len, 16);
    let rsdt_off = align_up(rsdp_off + RSDP_LEN, 16);
    let end_with_rsdt = rsdt_off + rsdt_len;

    let gpa = |off: usize| base.wrapping_add(off as u64);
    let low = gpa(end_with_rsdt) <= 1 << 32;

    let mut xsdt_body = Writer::new();
    xsdt_body.u64(gpa(fadt_off)).u64(gpa(madt_off));
    let mut rsdt_body = Writer::new();
    rsdt_body
        .u32(addr32(gpa(fadt_off), low))
        .u32(addr32(gpa(madt_off), low));
    let rsdt_gpa = if low { addr32(gpa(rsdt_off), low) } else { 0 };

    let mut placed = alloc::vec![
        (facs_off, facs()),
        (dsdt_off, sdt(b"DSDT", DSDT_REVISION, &DSDT_AML)),
        (fadt_off, fadt(gpa(facs_off), gpa(dsdt_off), low)),
        (madt_off, madt(vcpus)),
        (xsdt_off, sdt(b"XSDT", XSDT_REVISION, &xsdt_body.0)),
        (rsdp_off, rsdp(rsdt_gpa, gpa(xsdt_off))),
    ];
    if low {
        placed.push((rsdt_off, sdt(b"RSDT", RSDT_REVISION, &rsdt_body.0)));
    }

    let mut bytes = Vec::new();
    for (off, table) in placed {
        debug_assert!(bytes.len() <= off);
        bytes.resize(off, 0);
        bytes.extend_from_slice(&table);
    }
    Ok(AcpiBlob {
        bytes,
        rsdp_gpa: gpa(rsdp_off),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware_acpi::{self as acpi, RootTable};
    use proptest::prelude::*;

    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }
    fn sums_to_zero(b: &[u8]) -> bool {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x)) == 0
    }

    /// The blob seen from guest-physical addresses.
    struct View<'a> {
        blob: &'a AcpiBlob,
        base: u64,
    }

    impl View<'_> {
        fn offset(&self, gpa: u64, len: usize) -> usize {
            let end = self.base + self.blob.bytes.len() as u64;
            assert!(
                gpa >= self.base && gpa + len as u64 <= end,
                "{gpa:#x}+{len} outside [{:#x}, {end:#x})",
                self.base
            );
            (gpa - self.base) as usize
        }
        /// A table with a standard header: signature, length in bounds,
        /// checksum; also 16-byte aligned.
        fn sdt(&self, gpa: u64, signature: &[u8; 4]) -> &[u8] {
            let off = self.offset(gpa, HEADER_LEN);
            assert_eq!(off % 16, 0, "{signature:?} misaligned");
            let len = u32_at(&self.blob.bytes, off + 4) as usize;
            let off = self.offset(gpa, len);
            let t = &self.blob.bytes[off..off + len];
            assert_eq!(&t[..4], signature);
            assert!(sums_to_zero(t), "{signature:?} checksum");
            assert_eq!(&t[10..16], b"Xen\0\0\0");
            assert_eq!(&t[16..24], b"HVM\0\0\0\0\0");
            assert_eq!(&t[28..32], b"HVML");
            assert!(acpi::validate_sdt(t, signature).is_ok());
            t
        }
        fn rsdp(&self) -> &[u8] {
            let off = self.offset(self.blob.rsdp_gpa, RSDP_LEN);
            assert_eq!(off % 16, 0);
            &self.blob.bytes[off..off + RSDP_LEN]
        }
    }

    struct Tables<'a> {
        rsdp: &'a [u8],
        xsdt: &'a [u8],
        fadt: &'a [u8],
        madt: &'a [u8],
        dsdt: &'a [u8],
        facs: &'a [u8],
    }

    /// Walks every pointer from the RSDP, checking each table on the way.
    fn walk<'a>(view: &'a View<'a>) -> Tables<'a> {
        let rsdp = view.rsdp();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert!(sums_to_zero(&rsdp[..20]));
        assert!(sums_to_zero(rsdp));
        assert_eq!(rsdp[15], 2);
        assert_eq!(u32_at(rsdp, 20), 36);
        assert_eq!(&rsdp[9..15], b"Xen\0\0\0");
        let xsdt_gpa = u64_at(rsdp, 24);
        assert_eq!(acpi::parse_rsdp(rsdp), Ok(RootTable::Xsdt(xsdt_gpa)));

        let xsdt = view.sdt(xsdt_gpa, b"XSDT");
        let entries: Vec<u64> = acpi::root_entries(xsdt, true).collect();
        assert_eq!(entries.len(), 2);
        let fadt = view.sdt(entries[0], b"FACP");
        let madt = view.sdt(entries[1], b"APIC");

        let rsdt_gpa = u32_at(rsdp, 16);
        if rsdt_gpa != 0 {
            let rsdt = view.sdt(rsdt_gpa.into(), b"RSDT");
            let narrow: Vec<u64> = acpi::root_entries(rsdt, false).collect();
            assert_eq!(narrow, entries);
        } else {
            assert!(view.base + view.blob.bytes.len() as u64 > 1 << 32);
        }

        assert_eq!(fadt.len(), 268);
        assert_eq!(fadt[8], 5);
        let x_dsdt = u64_at(fadt, 140);
        let dsdt = view.sdt(x_dsdt, b"DSDT");
        let x_facs = u64_at(fadt, 132);
        let facs_off = view.offset(x_facs, FACS_LEN);
        assert_eq!(x_facs % 64, 0);
        let facs = &view.blob.bytes[facs_off..facs_off + FACS_LEN];
        assert_eq!(&facs[..4], b"FACS");
        assert_eq!(u32_at(facs, 4), 64);
        for (narrow, wide) in [(u32_at(fadt, 36), x_facs), (u32_at(fadt, 40), x_dsdt)] {
            assert!(u64::from(narrow) == wide || narrow == 0);
            assert_eq!(narrow == 0, rsdt_gpa == 0);
        }
        Tables {
            rsdp,
            xsdt,
            fadt,
            madt,
            dsdt,
            facs,
        }
    }

    fn check(vcpus: u32, base: u64) {
        let blob = build(vcpus, base).unwrap();
        let view = View { blob: &blob, base };
        let t = walk(&view);
        assert_eq!(t.rsdp.len(), 36);
        assert_eq!(t.xsdt.len(), 36 + 16);
        assert_eq!(t.facs.len(), 64);
        assert_eq!(t.dsdt.len(), 36 + DSDT_AML.len());

        // MADT: exactly `vcpus` enabled type-0 entries, UID n, APIC ID 2n.
        assert_eq!(t.madt.len(), 44 + 8 * vcpus as usize);
        assert_eq!(u32_at(t.madt, 36), 0xfee0_0000);
        assert_eq!(u32_at(t.madt, 40), 1);
        for (n, e) in t.madt[44..].chunks_exact(8).enumerate() {
            assert_eq!((e[0], e[1]), (0, 8));
            assert_eq!(usize::from(e[2]), n);
            assert_eq!(usize::from(e[3]), 2 * n);
            assert_eq!(u32_at(e, 4), 1);
        }
        let parsed = acpi::parse_madt(t.madt).unwrap();
        assert_eq!(parsed.lapic_address, 0xfee0_0000);
        assert_eq!(
            parsed.apic_ids,
            (0..vcpus).map(|n| 2 * n).collect::<Vec<_>>()
        );
    }

    #[test]
    fn one_and_eight_vcpus_below_4g() {
        for vcpus in [1, 2, 8] {
            check(vcpus, 0xfc00_1000);
        }
        // FACS 64, DSDT 43, FADT 268, MADT 44+8n, XSDT 52, RSDP 36, RSDT 44,
        // each start rounded up to 16.
        assert_eq!(build(1, 0xfc00_1000).unwrap().bytes.len(), 604);
        assert_eq!(build(8, 0xfc00_1000).unwrap().bytes.len(), 652);
        assert_eq!(build(MAX_VCPUS, 0xfc00_1000).unwrap().bytes.len(), 1612);
    }

    #[test]
    fn fadt_fields_are_xens() {
        let blob = build(2, 0xfc00_1000).unwrap();
        let view = View {
            blob: &blob,
            base: 0xfc00_1000,
        };
        let f = walk(&view).fadt;
        assert_eq!(u16_at(f, 46), 9); // SCI_INT
        assert_eq!(u32_at(f, 48), 0); // SMI_CMD
        assert_eq!(u32_at(f, 56), 0xb000); // PM1a_EVT_BLK
        assert_eq!(u32_at(f, 64), 0xb004); // PM1a_CNT_BLK
        assert_eq!(u32_at(f, 76), 0); // PM_TMR_BLK
        assert_eq!(u32_at(f, 80), 0xafe0); // GPE0_BLK
        assert_eq!(&f[88..96], &[4, 2, 0, 0, 4, 0, 0, 0]); // block lengths
        assert_eq!(u16_at(f, 109), 0x24); // IAPC_BOOT_ARCH
        assert_eq!(u32_at(f, 112), 0x8175); // flags
        assert_eq!(u32_at(f, 112) & (1 << 20), 0); // not HW-reduced
        // RESET_REG: system I/O, 8 bits at 0xcf9; RESET_VALUE 6.
        assert_eq!(&f[116..120], &[1, 8, 0, 0]);
        assert_eq!(u64_at(f, 120), 0xcf9);
        assert_eq!(f[128], 6);
        // X_PM1a_EVT, X_PM1a_CNT, X_GPE0 match the 32-bit blocks.
        let gas = |off: usize| (f[off], f[off + 1], u64_at(f, off + 4));
        assert_eq!(gas(148), (1, 32, 0xb000));
        assert_eq!(gas(172), (1, 16, 0xb004));
        assert_eq!(gas(220), (1, 32, 0xafe0));
        for unused in [160, 184, 196, 208, 232, 244, 256] {
            assert_eq!(&f[unused..unused + 12], &[0; 12]);
        }
    }

    #[test]
    fn dsdt_has_no_s5() {
        let blob = build(MAX_VCPUS, 0x1000).unwrap();
        let view = View {
            blob: &blob,
            base: 0x1000,
        };
        let dsdt = walk(&view).dsdt;
        assert!(!dsdt.windows(4).any(|w| w == b"_S5_"));
        assert!(!blob.bytes.windows(4).any(|w| w == b"_S5_"));
    }

    #[test]
    fn vcpu_count_limits() {
        assert_eq!(build(0, 0x1000), Err(AcpiError::TooManyVcpus));
        assert_eq!(build(MAX_VCPUS + 1, 0x1000), Err(AcpiError::TooManyVcpus));
        assert_eq!(build(u32::MAX, 0x1000), Err(AcpiError::TooManyVcpus));
        check(MAX_VCPUS, 0x1000);
        assert!(!AcpiError::TooManyVcpus.to_string().is_empty());
    }

    #[test]
    fn above_4g_drops_32_bit_pointers() {
        let base = 0x1_0000_0000;
        let blob = build(4, base).unwrap();
        let view = View { blob: &blob, base };
        let t = walk(&view);
        assert_eq!(u32_at(t.rsdp, 16), 0);
        assert_eq!((u32_at(t.fadt, 36), u32_at(t.fadt, 40)), (0, 0));
        check(4, base);
        // Straddling 4 GiB also counts as high.
        check(4, 0xffff_f000);
    }

    proptest! {
        #[test]
        fn any_count_any_page(vcpus in 1..=MAX_VCPUS, page in 1u64..(1 << 40)) {
            check(vcpus, page << 12);
        }

        #[test]
        fn low_pages(vcpus in 1..=MAX_VCPUS, page in 1u64..(1 << 20)) {
            check(vcpus, page << 12);
        }
    }
}
