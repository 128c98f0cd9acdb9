//! VT-d translation structures as pure data: root and context entries,
//! and second-level page tables built in memory (then written to their
//! frames by the glue). Host-tested.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::mm::frame::Frame;

/// Second-level entry bits: read, write (also set on non-leaf entries).
pub const SL_READ: u64 = 1 << 0;
pub const SL_WRITE: u64 = 1 << 1;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const ENTRIES: usize = 512;

/// Table depth, from the capability register's SAGAW field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Levels {
    /// 39-bit guest addresses.
    Three,
    /// 48-bit guest addresses.
    Four,
}

impl Levels {
    /// Four levels if supported, else three (SAGAW bit 2 / bit 1).
    pub fn from_sagaw(sagaw: u8) -> Option<Self> {
        if sagaw & 0b100 != 0 {
            Some(Self::Four)
        } else if sagaw & 0b010 != 0 {
            Some(Self::Three)
        } else {
            None
        }
    }

    pub fn count(self) -> u32 {
        match self {
            Self::Three => 3,
            Self::Four => 4,
        }
    }

    /// The context entry's AW field.
    fn address_width(self) -> u64 {
        match self {
            Self::Three => 1,
            Self::Four => 2,
        }
    }

    /// One past the highest address the tables translate.
    pub fn limit(self) -> u64 {
        1 << (12 + 9 * self.count())
    }
}

/// A root-table entry: present, pointing at a bus's context table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootEntry(u64);

impl RootEntry {
    pub fn new(context_table: u64) -> Self {
        Self((context_table & ADDR_MASK) | 1)
    }
    pub fn bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.0.to_le_bytes());
        b
    }
}

/// A context entry: present, translation type 0 (second-level only),
/// the second-level root, address width and domain id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextEntry {
    lo: u64,
    hi: u64,
}

impl ContextEntry {
    pub fn new(sl_root: u64, levels: Levels, domain: u16) -> Self {
        Self {
            lo: (sl_root & ADDR_MASK) | 1,
            hi: levels.address_width() | (domain as u64) << 8,
        }
    }
    pub fn bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.lo.to_le_bytes());
        b[8..].copy_from_slice(&self.hi.to_le_bytes());
        b
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError<E> {
    /// The address is beyond what the tables translate, or not aligned.
    BadAddress,
    Alloc(E),
}

/// Second-level tables under construction: each table's frame and its
/// 512 entries.
pub struct SecondLevel {
    levels: Levels,
    root: Frame,
    tables: BTreeMap<u64, Box<[u64; ENTRIES]>>,
}

impl SecondLevel {
    pub fn new<E>(levels: Levels, mut alloc: impl FnMut() -> Result<Frame, E>) -> Result<Self, E> {
        let root = alloc()?;
        let mut tables = BTreeMap::new();
        tables.insert(root.start(), Box::new([0u64; ENTRIES]));
        Ok(Self {
            levels,
            root,
            tables,
        })
    }

    pub fn root(&self) -> Frame {
        self.root
    }

    /// Maps the 4 KiB page at `iova` to `hpa`, read-write.
    pub fn map<E>(
        &mut self,
        iova: u64,
        hpa: u64,
        mut alloc: impl FnMut() -> Result<Frame, E>,
    ) -> Result<(), MapError<E>> {
        if iova >= self.levels.limit() || !iova.is_multiple_of(4096) || !hpa.is_multiple_of(4096) {
            return Err(MapError::BadAddress);
        }
        let mut table = self.root.start();
        for level in (1..self.levels.count()).rev() {
            let index = ((iova >> (12 + 9 * level)) & 511) as usize;
            let entry = self.tables[&table][index];
            table = if entry & SL_READ != 0 {
                entry & ADDR_MASK
            } else {
                let next = alloc().map_err(MapError::Alloc)?.start();
                self.tables.insert(next, Box::new([0u64; ENTRIES]));
                if let Some(t) = self.tables.get_mut(&table) {
                    t[index] = next | SL_READ | SL_WRITE;
                }
                next
            };
        }
        let index = ((iova >> 12) & 511) as usize;
        if let Some(t) = self.tables.get_mut(&table) {
            t[index] = (hpa & ADDR_MASK) | SL_READ | SL_WRITE;
        }
        Ok(())
    }

    /// Where `iova` leads, if mapped (a walk, as the hardware does).
    pub fn translate(&self, iova: u64) -> Option<u64> {
        let mut table = self.root.start();
        for level in (0..self.levels.count()).rev() {
            let index = ((iova >> (12 + 9 * level)) & 511) as usize;
            let entry = self.tables.get(&table)?[index];
            if entry & SL_READ == 0 {
                return None;
            }
            table = entry & ADDR_MASK;
        }
        Some(table | (iova & 0xfff))
    }

    /// Every table: its frame's address and its bytes.
    pub fn tables(&self) -> impl Iterator<Item = (u64, Vec<u8>)> + '_ {
        self.tables
            .iter()
            .map(|(&addr, t)| (addr, t.iter().flat_map(|e| e.to_le_bytes()).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn allocator() -> impl FnMut() -> Result<Frame, ()> {
        let mut next = 0x100u64;
        move || {
            next += 1;
            Ok(Frame(next))
        }
    }

    #[test]
    fn entries_have_the_spec_layout() {
        assert_eq!(
            RootEntry::new(0x1234_5000).bytes()[..8],
            0x1234_5001u64.to_le_bytes()
        );
        let c = ContextEntry::new(0x7000, Levels::Three, 1).bytes();
        assert_eq!(u64::from_le_bytes(c[..8].try_into().unwrap()), 0x7001);
        assert_eq!(u64::from_le_bytes(c[8..].try_into().unwrap()), 1 | 1 << 8);
        assert_eq!(Levels::from_sagaw(0b110), Some(Levels::Four));
        assert_eq!(Levels::from_sagaw(0b010), Some(Levels::Three));
        assert_eq!(Levels::from_sagaw(0b001), None);
    }

    #[test]
    fn only_mapped_pages_translate() {
        let mut alloc = allocator();
        let mut t = SecondLevel::new(Levels::Three, &mut alloc).unwrap();
        t.map(0x20_0000, 0x9_8765_4000, &mut alloc).unwrap();
        assert_eq!(t.translate(0x20_0123), Some(0x9_8765_4123));
        assert_eq!(t.translate(0x20_1000), None);
        assert_eq!(t.translate(0), None);
        assert_eq!(
            t.map(Levels::Three.limit(), 0x1000, &mut alloc),
            Err(MapError::BadAddress)
        );
        // Root, one table per lower level.
        assert_eq!(t.tables().count(), 3);
    }

    proptest! {
        #[test]
        fn a_walk_finds_exactly_what_was_mapped(
            pages in proptest::collection::btree_map(0u64..(1 << 20), 1u64..(1 << 28), 1..40),
            probe in 0u64..(1 << 20),
        ) {
            let mut alloc = allocator();
            let mut t = SecondLevel::new(Levels::Four, &mut alloc).unwrap();
            for (&gfn, &frame) in &pages {
                t.map(gfn << 12, frame << 12, &mut alloc).unwrap();
            }
            for (&gfn, &frame) in &pages {
                prop_assert_eq!(t.translate(gfn << 12), Some(frame << 12));
            }
            prop_assert_eq!(t.translate(probe << 12), pages.get(&probe).map(|f| f << 12));
        }
    }
}
