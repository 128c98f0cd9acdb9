//! Reading a PVH kernel image: ELF32 or ELF64, its loadable segments and
//! the `XEN_ELFNOTE_PHYS32_ENTRY` note.
//!
//! Pure and total: every offset and size is checked, so a malformed image
//! gives an [`ElfError`], never a panic. Hand-written rather than with
//! `xmas-elf`, whose accessors slice the input without bounds checks and
//! can panic on a truncated or hostile image.

use alloc::vec::Vec;
use core::fmt;

/// Xen's note type for the 32-bit PVH entry point.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;
const MAX_SEGMENTS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    NotElf,
    UnsupportedClass,
    WrongMachine(u16),
    Truncated(&'static str),
    NoPvhNote,
    BadPvhNote,
    SegmentOutOfFile,
    TooManySegments,
    NoLoadableSegment,
    Overflow,
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotElf => f.write_str("not an ELF file"),
            Self::UnsupportedClass => f.write_str("ELF class is neither 32- nor 64-bit little-endian"),
            Self::WrongMachine(m) => write!(f, "ELF machine {m} is neither x86 nor x86-64"),
            Self::Truncated(what) => write!(f, "image truncated ({what})"),
            Self::NoPvhNote => f.write_str(
                "no XEN_ELFNOTE_PHYS32_ENTRY note: not a PVH kernel (build it with a Xen PVH entry point)",
            ),
            Self::BadPvhNote => f.write_str("the PVH entry note has a descriptor that is not 4 or 8 bytes"),
            Self::SegmentOutOfFile => f.write_str("a segment's file data lies outside the image"),
            Self::TooManySegments => write!(f, "more than {MAX_SEGMENTS} program headers"),
            Self::NoLoadableSegment => f.write_str("no loadable segment"),
            Self::Overflow => f.write_str("segment addresses overflow"),
        }
    }
}

/// One `PT_LOAD` segment: copy `file_range` of the image to guest-physical
/// `paddr`, then zero up to `mem_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    pub file_offset: usize,
    pub file_size: usize,
    pub mem_size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvhImage {
    pub entry: u32,
    pub segments: Vec<Segment>,
}

impl PvhImage {
    /// Lowest and highest (exclusive) guest-physical address loaded.
    pub fn span(&self) -> (u64, u64) {
        let lo = self.segments.iter().map(|s| s.paddr).min().unwrap_or(0);
        let hi = self
            .segments
            .iter()
            .map(|s| s.paddr + s.mem_size)
            .max()
            .unwrap_or(0);
        (lo, hi)
    }
}

fn bytes<const N: usize>(b: &[u8], off: usize, what: &'static str) -> Result<[u8; N], ElfError> {
    let end = off.checked_add(N).ok_or(ElfError::Truncated(what))?;
    b.get(off..end)
        .and_then(|s| s.try_into().ok())
        .ok_or(ElfError::Truncated(what))
}
fn u16_at(b: &[u8], off: usize, what: &'static str) -> Result<u16, ElfError> {
    bytes::<2>(b, off, what).map(u16::from_le_bytes)
}
fn u32_at(b: &[u8], off: usize, what: &'static str) -> Result<u32, ElfError> {
    bytes::<4>(b, off, what).map(u32::from_le_bytes)
}
fn u64_at(b: &[u8], off: usize, what: &'static str) -> Result<u64, ElfError> {
    bytes::<8>(b, off, what).map(u64::from_le_bytes)
}

struct ProgramHeader {
    kind: u32,
    offset: u64,
    paddr: u64,
    file_size: u64,
    mem_size: u64,
}

fn program_headers(image: &[u8]) -> Result<Vec<ProgramHeader>, ElfError> {
    if image.get(..4) != Some(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    let wide = match (image.get(4), image.get(5)) {
        (Some(1), Some(1)) => false,
        (Some(2), Some(1)) => true,
        _ => return Err(ElfError::UnsupportedClass),
    };
    let machine = u16_at(image, 18, "header")?;
    // Either class may carry either x86 machine: Xen's test framework
    // links 64-bit code into ELF32 containers, and the entry is 32-bit anyway.
    if machine != EM_X86_64 && machine != EM_386 {
        return Err(ElfError::WrongMachine(machine));
    }
    let (phoff, phentsize, phnum) = if wide {
        (
            u64_at(image, 32, "header")?,
            u16_at(image, 54, "header")?,
            u16_at(image, 56, "header")?,
        )
    } else {
        (
            u32_at(image, 28, "header")? as u64,
            u16_at(image, 42, "header")?,
            u16_at(image, 44, "header")?,
        )
    };
    if phnum as usize > MAX_SEGMENTS {
        return Err(ElfError::TooManySegments);
    }
    let min_size = if wide { 56 } else { 32 };
    if (phentsize as usize) < min_size {
        return Err(ElfError::Truncated("program header size"));
    }
    let mut headers = Vec::new();
    for i in 0..phnum as u64 {
        let at = phoff
            .checked_add(i * phentsize as u64)
            .and_then(|a| usize::try_from(a).ok())
            .ok_or(ElfError::Truncated("program headers"))?;
        let what = "program headers";
        headers.push(if wide {
            ProgramHeader {
                kind: u32_at(image, at, what)?,
                offset: u64_at(image, at + 8, what)?,
                paddr: u64_at(image, at + 24, what)?,
                file_size: u64_at(image, at + 32, what)?,
                mem_size: u64_at(image, at + 40, what)?,
            }
        } else {
            ProgramHeader {
                kind: u32_at(image, at, what)?,
                offset: u32_at(image, at + 4, what)? as u64,
                paddr: u32_at(image, at + 12, what)? as u64,
                file_size: u32_at(image, at + 16, what)? as u64,
                mem_size: u32_at(image, at + 20, what)? as u64,
            }
        });
    }
    Ok(headers)
}

fn file_range(image: &[u8], offset: u64, size: u64) -> Result<(usize, usize), ElfError> {
    let start = usize::try_from(offset).map_err(|_| ElfError::SegmentOutOfFile)?;
    let size = usize::try_from(size).map_err(|_| ElfError::SegmentOutOfFile)?;
    let end = start.checked_add(size).ok_or(ElfError::SegmentOutOfFile)?;
    if end > image.len() {
        return Err(ElfError::SegmentOutOfFile);
    }
    Ok((start, size))
}

/// Finds the PVH entry in a note segment's bytes (4- or 8-byte descriptor).
fn pvh_entry_in_notes(notes: &[u8]) -> Result<Option<u32>, ElfError> {
    let mut off = 0usize;
    while off + 12 <= notes.len() {
        let namesz = u32_at(notes, off, "note")? as usize;
        let descsz = u32_at(notes, off + 4, "note")? as usize;
        let kind = u32_at(notes, off + 8, "note")?;
        let name_at = off + 12;
        let desc_at = name_at
            .checked_add(namesz.next_multiple_of(4))
            .ok_or(ElfError::BadPvhNote)?;
        let next = desc_at
            .checked_add(descsz.next_multiple_of(4))
            .ok_or(ElfError::BadPvhNote)?;
        let name = notes
            .get(name_at..name_at + namesz)
            .ok_or(ElfError::Truncated("note"))?;
        if kind == XEN_ELFNOTE_PHYS32_ENTRY && name.strip_suffix(b"\0").unwrap_or(name) == b"Xen" {
            return match descsz {
                4 => Ok(Some(u32_at(notes, desc_at, "note")?)),
                8 => {
                    let entry = u64_at(notes, desc_at, "note")?;
                    u32::try_from(entry)
                        .map(Some)
                        .map_err(|_| ElfError::BadPvhNote)
                }
                _ => Err(ElfError::BadPvhNote),
            };
        }
        off = next;
    }
    Ok(None)
}

/// Parses and checks a PVH kernel image.
pub fn parse(image: &[u8]) -> Result<PvhImage, ElfError> {
    let headers = program_headers(image)?;
    let mut entry = None;
    let mut segments = Vec::new();
    for ph in &headers {
        match ph.kind {
            PT_NOTE => {
                let (start, size) = file_range(image, ph.offset, ph.file_size)?;
                if let Some(e) = pvh_entry_in_notes(&image[start..start + size])? {
                    entry = Some(e);
                }
            }
            PT_LOAD if ph.mem_size > 0 => {
                let (file_offset, file_size) = file_range(image, ph.offset, ph.file_size)?;
                if ph.file_size > ph.mem_size || ph.paddr.checked_add(ph.mem_size).is_none() {
                    return Err(ElfError::Overflow);
                }
                segments.push(Segment {
                    paddr: ph.paddr,
                    file_offset,
                    file_size,
                    mem_size: ph.mem_size,
                });
            }
            _ => {}
        }
    }
    let entry = entry.ok_or(ElfError::NoPvhNote)?;
    if segments.is_empty() {
        return Err(ElfError::NoLoadableSegment);
    }
    Ok(PvhImage { entry, segments })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal ELF64 with one PT_NOTE and one PT_LOAD.
    pub(crate) fn elf64(desc: &[u8]) -> Vec<u8> {
        let mut img = vec![0u8; 0x200];
        img[..4].copy_from_slice(b"\x7fELF");
        img[4] = 2;
        img[5] = 1;
        img[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        img[32..40].copy_from_slice(&64u64.to_le_bytes());
        img[54..56].copy_from_slice(&56u16.to_le_bytes());
        img[56..58].copy_from_slice(&2u16.to_le_bytes());
        // PT_NOTE at 0x100
        let note_len = 12 + 4 + desc.len().next_multiple_of(4);
        let ph = 64;
        img[ph..ph + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        img[ph + 8..ph + 16].copy_from_slice(&0x100u64.to_le_bytes());
        img[ph + 32..ph + 40].copy_from_slice(&(note_len as u64).to_le_bytes());
        // PT_LOAD of 0x80 bytes at 0x180 → paddr 1 MiB, mem 0x1000
        let ph = 64 + 56;
        img[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        img[ph + 8..ph + 16].copy_from_slice(&0x180u64.to_le_bytes());
        img[ph + 24..ph + 32].copy_from_slice(&0x10_0000u64.to_le_bytes());
        img[ph + 32..ph + 40].copy_from_slice(&0x80u64.to_le_bytes());
        img[ph + 40..ph + 48].copy_from_slice(&0x1000u64.to_le_bytes());
        let n = 0x100;
        img[n..n + 4].copy_from_slice(&4u32.to_le_bytes());
        img[n + 4..n + 8].copy_from_slice(&(desc.len() as u32).to_le_bytes());
        img[n + 8..n + 12].copy_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
        img[n + 12..n + 16].copy_from_slice(b"Xen\0");
        img[n + 16..n + 16 + desc.len()].copy_from_slice(desc);
        img
    }

    #[test]
    fn elf64_with_4_and_8_byte_notes() {
        let img = elf64(&0x10_0040u32.to_le_bytes());
        let pvh = parse(&img).unwrap();
        assert_eq!(pvh.entry, 0x10_0040);
        assert_eq!(
            pvh.segments,
            vec![Segment {
                paddr: 0x10_0000,
                file_offset: 0x180,
                file_size: 0x80,
                mem_size: 0x1000
            }]
        );
        assert_eq!(pvh.span(), (0x10_0000, 0x10_1000));
        let img = elf64(&0x10_0080u64.to_le_bytes());
        assert_eq!(parse(&img).unwrap().entry, 0x10_0080);
        let img = elf64(&0x1_0000_0000u64.to_le_bytes());
        assert_eq!(parse(&img), Err(ElfError::BadPvhNote));
        let img = elf64(&[1, 2]);
        assert_eq!(parse(&img), Err(ElfError::BadPvhNote));
    }

    #[test]
    fn elf32() {
        let mut img = vec![0u8; 0x100];
        img[..4].copy_from_slice(b"\x7fELF");
        img[4] = 1;
        img[5] = 1;
        img[18..20].copy_from_slice(&EM_386.to_le_bytes());
        img[28..32].copy_from_slice(&52u32.to_le_bytes());
        img[42..44].copy_from_slice(&32u16.to_le_bytes());
        img[44..46].copy_from_slice(&2u16.to_le_bytes());
        let ph = 52;
        img[ph..ph + 4].copy_from_slice(&PT_NOTE.to_le_bytes());
        img[ph + 4..ph + 8].copy_from_slice(&0xc0u32.to_le_bytes());
        img[ph + 16..ph + 20].copy_from_slice(&20u32.to_le_bytes());
        let ph = 84;
        img[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        img[ph + 4..ph + 8].copy_from_slice(&0xe0u32.to_le_bytes());
        img[ph + 12..ph + 16].copy_from_slice(&0x20_0000u32.to_le_bytes());
        img[ph + 16..ph + 20].copy_from_slice(&0x10u32.to_le_bytes());
        img[ph + 20..ph + 24].copy_from_slice(&0x10u32.to_le_bytes());
        let n = 0xc0;
        img[n..n + 4].copy_from_slice(&4u32.to_le_bytes());
        img[n + 4..n + 8].copy_from_slice(&4u32.to_le_bytes());
        img[n + 8..n + 12].copy_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
        img[n + 12..n + 16].copy_from_slice(b"Xen\0");
        img[n + 16..n + 20].copy_from_slice(&0x20_0000u32.to_le_bytes());
        let pvh = parse(&img).unwrap();
        assert_eq!(pvh.entry, 0x20_0000);
        assert_eq!(pvh.segments.len(), 1);
    }

    #[test]
    fn rejects_bad_images() {
        assert_eq!(parse(b"hello"), Err(ElfError::NotElf));
        assert_eq!(parse(b""), Err(ElfError::NotElf));
        let mut img = elf64(&0x10_0040u32.to_le_bytes());
        img[0x100 + 8] = 17; // note of another type
        assert_eq!(parse(&img), Err(ElfError::NoPvhNote));
        let img = elf64(&0x10_0040u32.to_le_bytes());
        assert!(matches!(
            parse(&img[..0x150]),
            Err(ElfError::SegmentOutOfFile)
        ));
        assert!(matches!(parse(&img[..100]), Err(ElfError::Truncated(_))));
        let mut img = elf64(&0x10_0040u32.to_le_bytes());
        img[18] = 40; // ARM
        assert_eq!(parse(&img), Err(ElfError::WrongMachine(40)));
    }

    proptest! {
        #[test]
        fn never_panics_on_corruption(flips in proptest::collection::vec((0usize..0x200, any::<u8>()), 1..16), cut in 0usize..0x200) {
            let mut img = elf64(&0x10_0040u32.to_le_bytes());
            for (at, v) in flips { img[at] = v; }
            let _ = parse(&img);
            let _ = parse(&img[..cut]);
        }
    }
}
