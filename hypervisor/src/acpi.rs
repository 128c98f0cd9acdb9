//! ACPI tables Pavise reads: RSDP → RSDT/XSDT → MADT, for CPU discovery.
//!
//! Pure parsing over byte slices, host-tested. Hand-written rather than the
//! `acpi` crate: its 6.x `Handler` asks for an AML host (PCI config space,
//! mutexes, sleeping) to read what here is one flat table.

use alloc::vec::Vec;
use core::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    BadSignature,
    BadChecksum,
    Truncated,
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::BadSignature => "ACPI table has the wrong signature",
            Self::BadChecksum => "ACPI table checksum does not add up",
            Self::Truncated => "ACPI table is shorter than its header says",
        })
    }
}

pub const SDT_HEADER_LEN: usize = 36;
const MADT_ENTRIES_OFFSET: usize = SDT_HEADER_LEN + 8;

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b)) == 0
}

/// Where the root table is, from a 20- or 36-byte RSDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootTable {
    Rsdt(u32),
    Xsdt(u64),
}

pub fn parse_rsdp(bytes: &[u8]) -> Result<RootTable, AcpiError> {
    let v1 = bytes.get(..20).ok_or(AcpiError::Truncated)?;
    if &v1[..8] != b"RSD PTR " {
        return Err(AcpiError::BadSignature);
    }
    if !checksum_ok(v1) {
        return Err(AcpiError::BadChecksum);
    }
    let revision = v1[15];
    if revision >= 2 {
        let len = u32_at(bytes, 20).ok_or(AcpiError::Truncated)? as usize;
        let v2 = bytes.get(..len.max(36)).ok_or(AcpiError::Truncated)?;
        if !checksum_ok(v2) {
            return Err(AcpiError::BadChecksum);
        }
        let xsdt = u64_at(bytes, 24).ok_or(AcpiError::Truncated)?;
        if xsdt != 0 {
            return Ok(RootTable::Xsdt(xsdt));
        }
    }
    Ok(RootTable::Rsdt(u32_at(v1, 16).ok_or(AcpiError::Truncated)?))
}

/// Length field of an SDT header (to know how much to read).
pub fn sdt_length(header: &[u8]) -> Option<usize> {
    u32_at(header, 4).map(|l| l as usize)
}

/// Checks signature, length and checksum; returns the table's body.
pub fn validate_sdt<'a>(table: &'a [u8], signature: &[u8; 4]) -> Result<&'a [u8], AcpiError> {
    if table.get(..4) != Some(&signature[..]) {
        return Err(AcpiError::BadSignature);
    }
    let len = sdt_length(table).ok_or(AcpiError::Truncated)?;
    let table = table.get(..len).ok_or(AcpiError::Truncated)?;
    if len < SDT_HEADER_LEN {
        return Err(AcpiError::Truncated);
    }
    if !checksum_ok(table) {
        return Err(AcpiError::BadChecksum);
    }
    Ok(table)
}

/// Physical addresses of the tables a validated RSDT/XSDT lists.
pub fn root_entries(root: &[u8], wide: bool) -> impl Iterator<Item = u64> + '_ {
    let step = if wide { 8 } else { 4 };
    root[SDT_HEADER_LEN..].chunks_exact(step).map(move |c| {
        if wide {
            u64_at(c, 0).unwrap_or(0)
        } else {
            u32_at(c, 0).unwrap_or(0) as u64
        }
    })
}

/// What the MADT says about the CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Madt {
    pub lapic_address: u64,
    /// APIC ids of the processors that are enabled, in table order.
    pub apic_ids: Vec<u32>,
    pub io_apics: Vec<IoApicEntry>,
    /// Legacy IRQs wired to another GSI or with other than ISA polarity
    /// and trigger.
    pub overrides: Vec<InterruptOverride>,
}

/// An I/O APIC: its registers and the first GSI its pins carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApicEntry {
    pub id: u8,
    pub address: u64,
    pub gsi_base: u32,
}

/// An Interrupt Source Override: ISA IRQ `source` arrives on `gsi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptOverride {
    pub source: u8,
    pub gsi: u32,
    /// MPS INTI flags: polarity in bits 0-1, trigger mode in bits 2-3.
    pub flags: u16,
}

impl InterruptOverride {
    /// Polarity field 3: active low.
    pub fn active_low(&self) -> bool {
        self.flags & 0b11 == 0b11
    }
    /// Trigger field 3: level.
    pub fn level(&self) -> bool {
        (self.flags >> 2) & 0b11 == 0b11
    }
}

const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_INTERRUPT_OVERRIDE: u8 = 2;
const MADT_LAPIC_ADDRESS_OVERRIDE: u8 = 5;
const MADT_LOCAL_X2APIC: u8 = 9;
const MADT_ENABLED: u32 = 1;

/// Parses a validated MADT (from [`validate_sdt`] with `b"APIC"`).
pub fn parse_madt(table: &[u8]) -> Result<Madt, AcpiError> {
    let mut madt = Madt {
        lapic_address: u32_at(table, SDT_HEADER_LEN).ok_or(AcpiError::Truncated)? as u64,
        apic_ids: Vec::new(),
        io_apics: Vec::new(),
        overrides: Vec::new(),
    };
    let mut off = MADT_ENTRIES_OFFSET;
    while off + 2 <= table.len() {
        let (kind, len) = (table[off], table[off + 1] as usize);
        let entry = table.get(off..off + len).ok_or(AcpiError::Truncated)?;
        if len < 2 {
            return Err(AcpiError::Truncated);
        }
        match kind {
            MADT_LOCAL_APIC if len >= 8 => {
                let flags = u32_at(entry, 4).unwrap_or(0);
                if flags & MADT_ENABLED != 0 {
                    madt.apic_ids.push(entry[3] as u32);
                }
            }
            MADT_LOCAL_X2APIC if len >= 16 => {
                let flags = u32_at(entry, 8).unwrap_or(0);
                let id = u32_at(entry, 4).unwrap_or(0);
                if flags & MADT_ENABLED != 0 && !madt.apic_ids.contains(&id) {
                    madt.apic_ids.push(id);
                }
            }
            MADT_IO_APIC if len >= 12 => madt.io_apics.push(IoApicEntry {
                id: entry[2],
                address: u32_at(entry, 4).unwrap_or(0) as u64,
                gsi_base: u32_at(entry, 8).unwrap_or(0),
            }),
            MADT_INTERRUPT_OVERRIDE if len >= 10 => madt.overrides.push(InterruptOverride {
                source: entry[3],
                gsi: u32_at(entry, 4).unwrap_or(0),
                flags: u16::from_le_bytes([entry[8], entry[9]]),
            }),
            MADT_LAPIC_ADDRESS_OVERRIDE if len >= 12 => {
                madt.lapic_address = u64_at(entry, 4).unwrap_or(madt.lapic_address);
            }
            _ => {}
        }
        off += len;
    }
    Ok(madt)
}

/// A DMA remapping hardware unit (DRHD) of the ACPI DMAR table: an
/// Intel VT-d IOMMU's register page and whether it covers every PCI
/// device of its segment not claimed by another unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drhd {
    pub register_base: u64,
    pub segment: u16,
    pub include_pci_all: bool,
}

/// Offset of the first remapping structure in the DMAR table (after the
/// header, host address width, flags and 10 reserved bytes).
const DMAR_STRUCTURES_OFFSET: usize = SDT_HEADER_LEN + 12;
const DMAR_TYPE_DRHD: u16 = 0;
const DRHD_INCLUDE_PCI_ALL: u8 = 1;

/// The DRHD units of a validated DMAR table (`validate_sdt` with
/// `b"DMAR"`); other structures (reserved memory, ATSR, ...) are skipped.
pub fn parse_dmar(table: &[u8]) -> Result<Vec<Drhd>, AcpiError> {
    let mut units = Vec::new();
    let mut off = DMAR_STRUCTURES_OFFSET;
    while off + 4 <= table.len() {
        let kind = u16::from_le_bytes([table[off], table[off + 1]]);
        let len = u16::from_le_bytes([table[off + 2], table[off + 3]]) as usize;
        if len < 4 {
            return Err(AcpiError::Truncated);
        }
        let entry = table.get(off..off + len).ok_or(AcpiError::Truncated)?;
        if kind == DMAR_TYPE_DRHD {
            if len < 16 {
                return Err(AcpiError::Truncated);
            }
            units.push(Drhd {
                register_base: u64_at(entry, 8).ok_or(AcpiError::Truncated)?,
                segment: u16::from_le_bytes([entry[6], entry[7]]),
                include_pci_all: entry[4] & DRHD_INCLUDE_PCI_ALL != 0,
            });
        }
        off += len;
    }
    Ok(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix_checksum(t: &mut [u8], at: usize) {
        t[at] = 0;
        let sum = t.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        t[at] = 0u8.wrapping_sub(sum);
    }

    fn sdt(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; SDT_HEADER_LEN];
        t[..4].copy_from_slice(sig);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t, 9);
        t
    }

    fn madt_body(entries: &[&[u8]]) -> Vec<u8> {
        let mut b = 0xfee0_0000u32.to_le_bytes().to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        for e in entries {
            b.extend_from_slice(e);
        }
        b
    }

    #[test]
    fn madt_counts_enabled_cpus() {
        let body = madt_body(&[
            &[0, 8, 0, 0, 1, 0, 0, 0],                          // cpu apic 0 enabled
            &[0, 8, 1, 1, 1, 0, 0, 0],                          // apic 1 enabled
            &[0, 8, 2, 5, 0, 0, 0, 0],                          // apic 5 disabled
            &[1, 12, 3, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0],       // io apic 3 at 0xfec00000
            &[2, 10, 0, 0, 2, 0, 0, 0, 0, 0],                   // irq 0 -> gsi 2
            &[2, 10, 0, 11, 11, 0, 0, 0, 0x0d, 0],              // irq 11 level, active high
            &[9, 16, 0, 0, 7, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0], // x2apic id 7
        ]);
        let t = sdt(b"APIC", &body);
        let table = validate_sdt(&t, b"APIC").unwrap();
        let madt = parse_madt(table).unwrap();
        assert_eq!(madt.apic_ids, vec![0, 1, 7]);
        assert_eq!(madt.lapic_address, 0xfee0_0000);
        assert_eq!(
            madt.io_apics,
            vec![IoApicEntry {
                id: 3,
                address: 0xfec0_0000,
                gsi_base: 0
            }]
        );
        assert_eq!(madt.overrides.len(), 2);
        assert_eq!((madt.overrides[0].source, madt.overrides[0].gsi), (0, 2));
        assert!(madt.overrides[1].level() && !madt.overrides[1].active_low());
    }

    #[test]
    fn madt_truncated_entry_is_an_error() {
        let mut body = madt_body(&[&[0, 8, 0, 0, 1, 0, 0, 0]]);
        body.extend_from_slice(&[0, 8, 1]); // entry says 8 bytes, has 3
        let t = sdt(b"APIC", &body);
        assert_eq!(
            parse_madt(validate_sdt(&t, b"APIC").unwrap()),
            Err(AcpiError::Truncated)
        );
        let body = madt_body(&[&[0, 0]]); // zero-length entry must not loop forever
        let t = sdt(b"APIC", &body);
        assert_eq!(
            parse_madt(validate_sdt(&t, b"APIC").unwrap()),
            Err(AcpiError::Truncated)
        );
    }

    #[test]
    fn sdt_checks() {
        let mut t = sdt(b"APIC", &madt_body(&[]));
        assert_eq!(validate_sdt(&t, b"FACP"), Err(AcpiError::BadSignature));
        t[20] ^= 1;
        assert_eq!(validate_sdt(&t, b"APIC"), Err(AcpiError::BadChecksum));
        assert_eq!(validate_sdt(&t[..10], b"APIC"), Err(AcpiError::Truncated));
    }

    #[test]
    fn rsdp_versions() {
        let mut v1 = b"RSD PTR ".to_vec();
        v1.extend_from_slice(&[0, b'B', b'O', b'C', b'H', b'S', b' ', 0]);
        v1.extend_from_slice(&0x7fe_0000u32.to_le_bytes());
        fix_checksum(&mut v1, 8);
        assert_eq!(parse_rsdp(&v1), Ok(RootTable::Rsdt(0x7fe_0000)));

        let mut v2 = v1.clone();
        v2[15] = 2;
        fix_checksum(&mut v2, 8);
        v2.extend_from_slice(&36u32.to_le_bytes());
        v2.extend_from_slice(&0x1_2345_6000u64.to_le_bytes());
        v2.extend_from_slice(&[0, 0, 0, 0]);
        fix_checksum(&mut v2, 32);
        assert_eq!(parse_rsdp(&v2), Ok(RootTable::Xsdt(0x1_2345_6000)));

        let mut bad = v1.clone();
        bad[0] = b'X';
        assert_eq!(parse_rsdp(&bad), Err(AcpiError::BadSignature));
        bad = v1.clone();
        bad[17] ^= 0xff;
        assert_eq!(parse_rsdp(&bad), Err(AcpiError::BadChecksum));
    }

    #[test]
    fn root_table_entries() {
        let mut body = 0x1000u32.to_le_bytes().to_vec();
        body.extend_from_slice(&0x2000u32.to_le_bytes());
        let t = sdt(b"RSDT", &body);
        let t = validate_sdt(&t, b"RSDT").unwrap();
        assert_eq!(
            root_entries(t, false).collect::<Vec<_>>(),
            vec![0x1000, 0x2000]
        );
    }

    #[test]
    fn dmar_lists_its_remapping_units() {
        let mut body = vec![38u8, 1]; // host address width 39, flags
        body.extend_from_slice(&[0; 10]);
        // DRHD: type 0, length 16, INCLUDE_PCI_ALL, segment 0, base.
        body.extend_from_slice(&[0, 0, 16, 0, 1, 0, 0, 0]);
        body.extend_from_slice(&0xfed9_0000u64.to_le_bytes());
        // An RMRR (type 1) is skipped.
        body.extend_from_slice(&[1, 0, 24, 0]);
        body.extend_from_slice(&[0; 20]);
        let t = sdt(b"DMAR", &body);
        let units = parse_dmar(validate_sdt(&t, b"DMAR").unwrap()).unwrap();
        assert_eq!(
            units,
            vec![Drhd {
                register_base: 0xfed9_0000,
                segment: 0,
                include_pci_all: true
            }]
        );
        let mut bad = body.clone();
        bad[12 + 2] = 2; // a structure shorter than its header
        let t = sdt(b"DMAR", &bad);
        assert_eq!(
            parse_dmar(validate_sdt(&t, b"DMAR").unwrap()),
            Err(AcpiError::Truncated)
        );
    }
}
