//! A domain's guest-physical memory (the p2m) and checked access to it.
//!
//! Every hypervisor read or write of guest memory goes through here: a
//! guest-virtual address is walked through the guest's own page tables,
//! each guest-physical page is translated through the p2m and bounds
//! checked, and data is copied once into or out of a hypervisor buffer (no
//! double fetch). Pure logic over [`HostMemory`]: the hypervisor backs it
//! with its identity map, host tests with a vector.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use smallvec::SmallVec;

use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::frame::{FRAME_SIZE, Frame};

/// A guest-physical frame number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gfn(pub u64);

/// A guest-physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gpa(pub u64);

/// A guest-virtual (linear) address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gva(pub u64);

impl Gpa {
    pub fn gfn(self) -> Gfn {
        Gfn(self.0 / FRAME_SIZE)
    }
    pub fn page_offset(self) -> usize {
        (self.0 % FRAME_SIZE) as usize
    }
}

/// Byte access to host frames.
pub trait HostMemory {
    fn read(&self, frame: Frame, offset: usize, buf: &mut [u8]);
    fn write(&self, frame: Frame, offset: usize, data: &[u8]);

    /// The little-endian u64 at 8-aligned `offset` (a page-table entry:
    /// every guest walk reads four, so it has its own path).
    fn read_u64(&self, frame: Frame, offset: usize) -> u64 {
        let mut b = [0u8; 8];
        self.read(frame, offset, &mut b);
        u64::from_le_bytes(b)
    }
}

/// Why an access to guest memory failed (becomes -EFAULT, or a crash for
/// the guest's own accesses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestFault {
    /// The guest-physical address is not backed by the domain's memory.
    Unmapped(Gpa),
    /// The guest's page tables do not map the address (or not writably).
    NotPresent(Gva),
    NonCanonical(Gva),
    /// Paging mode the walker does not handle (32-bit paging, PAE legacy).
    UnsupportedPaging,
}

/// The highest guest frame number (exclusive): the 40-bit guest-physical
/// address space that CPUID 0x80000008 reports to guests.
pub const GFN_LIMIT: u64 = 1 << (40 - 12);

/// Why [`P2m::resize_ram`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeError {
    /// Frames or placed pages are where RAM would end, or beyond the
    /// guest-physical limit.
    InUse,
    /// The hypervisor's heap cannot hold the map.
    NoMemory,
}

/// The guest-physical → host map of one domain: its RAM, plus the
/// hypervisor pages (shared info, grant frames) a guest placed in the
/// unpopulated space above it, as Linux does with its grant table.
pub struct P2m {
    frames: Vec<Option<Frame>>,
    outside_ram: BTreeMap<u64, Frame>,
}

impl P2m {
    pub fn new(pages: usize) -> Self {
        Self {
            frames: alloc::vec![None; pages],
            outside_ram: BTreeMap::new(),
        }
    }

    /// Whether `gfn` is one of the domain's RAM frames (backed or not).
    pub fn is_ram(&self, gfn: Gfn) -> bool {
        gfn.0 < self.frames.len() as u64
    }

    /// Puts `frame` at (or with `None` removes it from) `gfn` outside RAM,
    /// below [`GFN_LIMIT`]; returns what was there.
    pub fn set_outside_ram(
        &mut self,
        gfn: Gfn,
        frame: Option<Frame>,
    ) -> Result<Option<Frame>, GuestFault> {
        if self.is_ram(gfn) || gfn.0 >= GFN_LIMIT {
            return Err(GuestFault::Unmapped(Gpa(gfn.0.saturating_mul(FRAME_SIZE))));
        }
        Ok(match frame {
            Some(f) => self.outside_ram.insert(gfn.0, f),
            None => self.outside_ram.remove(&gfn.0),
        })
    }

    /// Gives RAM room for `pages` frames (a domain built at run time:
    /// its size comes after it exists). Fails, changing nothing, if a
    /// frame would be dropped, a page placed above RAM would fall inside
    /// it, or the hypervisor's heap has no room for the map.
    pub fn resize_ram(&mut self, pages: usize) -> Result<(), ResizeError> {
        let dropped = self.frames.iter().skip(pages).any(Option::is_some);
        let covered = self.outside_ram.range(..pages as u64).next().is_some();
        if dropped || covered || pages as u64 > GFN_LIMIT {
            return Err(ResizeError::InUse);
        }
        let more = pages.saturating_sub(self.frames.len());
        self.frames
            .try_reserve_exact(more)
            .map_err(|_| ResizeError::NoMemory)?;
        self.frames.resize(pages, None);
        Ok(())
    }

    pub fn pages(&self) -> usize {
        self.frames.len()
    }

    pub fn get(&self, gfn: Gfn) -> Option<Frame> {
        match self.frames.get(usize::try_from(gfn.0).ok()?) {
            Some(slot) => *slot,
            None => self.outside_ram.get(&gfn.0).copied(),
        }
    }

    /// Sets the frame backing RAM frame `gfn`; returns the frame it
    /// replaces.
    pub fn set(&mut self, gfn: Gfn, frame: Option<Frame>) -> Result<Option<Frame>, GuestFault> {
        let slot = usize::try_from(gfn.0)
            .ok()
            .and_then(|i| self.frames.get_mut(i))
            .ok_or(GuestFault::Unmapped(Gpa(gfn.0.saturating_mul(FRAME_SIZE))))?;
        Ok(core::mem::replace(slot, frame))
    }

    /// All backing frames (for teardown), RAM first.
    pub fn frames(&self) -> impl Iterator<Item = (Gfn, Frame)> + '_ {
        self.frames
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.map(|f| (Gfn(i as u64), f)))
            .chain(self.outside_ram.iter().map(|(&g, &f)| (Gfn(g), f)))
    }

    /// Each page-sized piece of `[gpa, gpa+len)` as (frame, offset, byte
    /// range in the caller's buffer), or the fault at the first unbacked
    /// page (after which it ends).
    fn pieces(
        &self,
        gpa: Gpa,
        len: usize,
    ) -> impl Iterator<Item = Result<(Frame, usize, usize, usize), GuestFault>> + '_ {
        let mut done = 0usize;
        let mut failed = false;
        core::iter::from_fn(move || {
            if done >= len || failed {
                return None;
            }
            let piece = gpa
                .0
                .checked_add(done as u64)
                .map(Gpa)
                .ok_or(GuestFault::Unmapped(gpa))
                .and_then(|at| {
                    let frame = self.get(at.gfn()).ok_or(GuestFault::Unmapped(at))?;
                    let chunk = (FRAME_SIZE as usize - at.page_offset()).min(len - done);
                    Ok((frame, at.page_offset(), done, done + chunk))
                });
            match &piece {
                Ok((.., end)) => done = *end,
                Err(_) => failed = true,
            }
            Some(piece)
        })
    }

    /// Checks that every page of `[gpa, gpa+len)` is backed, so that a
    /// write fails before touching anything (no heap: this is on every
    /// hypercall's path).
    fn check(&self, gpa: Gpa, len: usize) -> Result<(), GuestFault> {
        self.pieces(gpa, len).try_for_each(|p| p.map(drop))
    }

    /// Reads `[gpa, gpa+len)` into `buf`; on a fault `buf` may be filled
    /// in part (a read leaves the guest as it was, so no look ahead).
    pub fn read(&self, mem: &impl HostMemory, gpa: Gpa, buf: &mut [u8]) -> Result<(), GuestFault> {
        for piece in self.pieces(gpa, buf.len()) {
            let (frame, off, a, b) = piece?;
            mem.read(frame, off, &mut buf[a..b]);
        }
        Ok(())
    }

    pub fn write(&self, mem: &impl HostMemory, gpa: Gpa, data: &[u8]) -> Result<(), GuestFault> {
        self.check(gpa, data.len())?;
        for (frame, off, a, b) in self.pieces(gpa, data.len()).flatten() {
            mem.write(frame, off, &data[a..b]);
        }
        Ok(())
    }

    pub fn read_u64(&self, mem: &impl HostMemory, gpa: Gpa) -> Result<u64, GuestFault> {
        if gpa.0.is_multiple_of(8) {
            // Aligned: inside one page, one lookup.
            let frame = self.get(gpa.gfn()).ok_or(GuestFault::Unmapped(gpa))?;
            return Ok(mem.read_u64(frame, gpa.page_offset()));
        }
        let mut b = [0u8; 8];
        self.read(mem, gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// The guest's paging registers at the time of a hypercall.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestPaging {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LMA: u64 = 1 << 10;
pub const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
pub const PTE_HUGE: u64 = 1 << 7;
pub const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// Translates a guest-virtual address through the guest's page tables.
/// Paging off: virtual = physical. Long mode: the 4-level walk (with 1 GiB
/// and 2 MiB pages). Other modes are refused.
pub fn translate(
    p2m: &P2m,
    mem: &impl HostMemory,
    paging: &GuestPaging,
    gva: Gva,
    write: bool,
) -> Result<Gpa, GuestFault> {
    if paging.cr0 & CR0_PG == 0 {
        return Ok(Gpa(gva.0));
    }
    if paging.efer & EFER_LMA == 0 || paging.cr4 & CR4_PAE == 0 {
        return Err(GuestFault::UnsupportedPaging);
    }
    let canonical = ((gva.0 as i64) << 16 >> 16) as u64 == gva.0;
    if !canonical {
        return Err(GuestFault::NonCanonical(gva));
    }
    let mut table = paging.cr3 & PTE_ADDR;
    for level in (0..4).rev() {
        let index = (gva.0 >> (12 + 9 * level)) & 511;
        let entry = p2m.read_u64(mem, Gpa(table + index * 8))?;
        if entry & PTE_PRESENT == 0 || (write && entry & PTE_WRITABLE == 0) {
            return Err(GuestFault::NotPresent(gva));
        }
        let page_bits = 12 + 9 * level;
        if level == 0 || (entry & PTE_HUGE != 0 && (level == 1 || level == 2)) {
            let base = entry & PTE_ADDR & !((1u64 << page_bits) - 1);
            return Ok(Gpa(base | (gva.0 & ((1u64 << page_bits) - 1))));
        }
        table = entry & PTE_ADDR;
    }
    Err(GuestFault::NotPresent(gva))
}

/// Guest-virtual ranges: reads and writes that may cross guest pages.
pub struct GuestView<'a, M: HostMemory> {
    pub p2m: &'a P2m,
    pub mem: &'a M,
    pub paging: GuestPaging,
}

impl<M: HostMemory> GuestView<'_, M> {
    fn each_page(
        &self,
        gva: Gva,
        len: usize,
        write: bool,
        mut f: impl FnMut(Gpa, usize, usize) -> Result<(), GuestFault>,
    ) -> Result<(), GuestFault> {
        // Translate every page first so a fault leaves nothing half done
        // (on the stack for up to four pages: most hypercall arguments).
        let mut pieces: SmallVec<[(Gpa, usize, usize); 4]> = SmallVec::new();
        let mut done = 0usize;
        while done < len {
            let addr = gva
                .0
                .checked_add(done as u64)
                .ok_or(GuestFault::NonCanonical(gva))?;
            let gpa = translate(self.p2m, self.mem, &self.paging, Gva(addr), write)?;
            let chunk = (FRAME_SIZE as usize - gpa.page_offset()).min(len - done);
            if self.p2m.get(gpa.gfn()).is_none() {
                return Err(GuestFault::Unmapped(gpa));
            }
            pieces.push((gpa, done, done + chunk));
            done += chunk;
        }
        for (gpa, a, b) in pieces {
            f(gpa, a, b)?;
        }
        Ok(())
    }

    pub fn read(&self, gva: Gva, buf: &mut [u8]) -> Result<(), GuestFault> {
        let len = buf.len();
        self.each_page(gva, len, false, |gpa, a, b| {
            self.p2m.read(self.mem, gpa, &mut buf[a..b])
        })
    }

    pub fn write(&self, gva: Gva, data: &[u8]) -> Result<(), GuestFault> {
        self.each_page(gva, data.len(), true, |gpa, a, b| {
            self.p2m.write(self.mem, gpa, &data[a..b])
        })
    }

    /// Reads a plain-old-data value (copied once).
    pub fn read_obj<T: FromBytes + IntoBytes>(&self, gva: Gva) -> Result<T, GuestFault> {
        let mut value = T::new_zeroed();
        self.read(gva, value.as_mut_bytes())?;
        Ok(value)
    }

    pub fn write_obj<T: IntoBytes + Immutable + ?Sized>(
        &self,
        gva: Gva,
        value: &T,
    ) -> Result<(), GuestFault> {
        self.write(gva, value.as_bytes())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use core::cell::RefCell;
    use proptest::prelude::*;

    /// Host memory as a map of frames.
    pub(crate) struct FakeHost(pub RefCell<std::collections::HashMap<u64, Vec<u8>>>);

    impl FakeHost {
        pub(crate) fn new() -> Self {
            Self(RefCell::new(Default::default()))
        }
    }

    impl HostMemory for FakeHost {
        fn read(&self, frame: Frame, offset: usize, buf: &mut [u8]) {
            let mut m = self.0.borrow_mut();
            let page = m.entry(frame.0).or_insert_with(|| vec![0; 4096]);
            buf.copy_from_slice(&page[offset..offset + buf.len()]);
        }
        fn write(&self, frame: Frame, offset: usize, data: &[u8]) {
            let mut m = self.0.borrow_mut();
            let page = m.entry(frame.0).or_insert_with(|| vec![0; 4096]);
            page[offset..offset + data.len()].copy_from_slice(data);
        }
    }

    /// A p2m of `pages` pages backed by host frames 1000+gfn.
    pub(crate) fn p2m(pages: usize) -> P2m {
        let mut p = P2m::new(pages);
        for i in 0..pages {
            p.set(Gfn(i as u64), Some(Frame(1000 + i as u64))).unwrap();
        }
        p
    }

    #[test]
    fn ram_grows_empty_and_never_drops_a_frame() {
        let mut p2m = P2m::new(0);
        assert_eq!(p2m.resize_ram(4), Ok(()));
        assert_eq!(p2m.pages(), 4);
        assert_eq!(p2m.get(Gfn(3)), None);
        p2m.set(Gfn(3), Some(Frame::containing(0x5000))).unwrap();
        assert_eq!(
            p2m.resize_ram(3),
            Err(ResizeError::InUse),
            "gfn 3 is populated"
        );
        assert_eq!(p2m.resize_ram(8), Ok(()));
        p2m.set_outside_ram(Gfn(20), Some(Frame::containing(0x9000)))
            .unwrap();
        assert_eq!(
            p2m.resize_ram(21),
            Err(ResizeError::InUse),
            "a page placed above RAM would fall inside"
        );
        assert_eq!(p2m.resize_ram(20), Ok(()));
        assert_eq!(
            p2m.resize_ram(GFN_LIMIT as usize + 1),
            Err(ResizeError::InUse)
        );
    }

    #[test]
    fn physical_reads_cross_pages_and_stop_at_the_end() {
        let (p, host) = (p2m(4), FakeHost::new());
        p.write(&host, Gpa(4096 - 3), b"abcdef").unwrap();
        let mut buf = [0u8; 6];
        p.read(&host, Gpa(4096 - 3), &mut buf).unwrap();
        assert_eq!(&buf, b"abcdef");
        assert_eq!(host.0.borrow()[&1001][..3], *b"def");
        assert_eq!(
            p.read(&host, Gpa(4 * 4096 - 2), &mut buf),
            Err(GuestFault::Unmapped(Gpa(4 * 4096)))
        );
        assert!(p.read(&host, Gpa(u64::MAX - 2), &mut buf).is_err());
    }

    /// Builds 4-level tables in guest memory mapping gva 0x40_0000.. onto
    /// gpa 0x3000.. (4 KiB pages, the second read-only) and a 1 GiB page
    /// at gva 0x8000_0000.
    fn paged() -> (P2m, FakeHost, GuestPaging) {
        let (p, host) = (p2m(1024), FakeHost::new());
        let (pml4, pdpt, pd, pt) = (0x10000u64, 0x11000, 0x12000, 0x13000);
        let w = |gpa: u64, v: u64| p.write(&host, Gpa(gpa), &v.to_le_bytes()).unwrap();
        w(pml4, pdpt | 3);
        w(pdpt, pd | 3);
        w(pd + 2 * 8, pt | 3); // gva 0x40_0000 → pd index 2
        w(pt, 0x3000 | 3);
        w(pt + 8, 0x4000 | 1); // read-only
        w(pdpt + 2 * 8, 0x20_0000 | 0x83); // gva 2 GiB: a 1 GiB page, base rounds down to 0
        let paging = GuestPaging {
            cr0: CR0_PG | 1,
            cr3: pml4,
            cr4: CR4_PAE,
            efer: EFER_LMA,
        };
        (p, host, paging)
    }

    #[test]
    fn long_mode_walk() {
        let (p, host, paging) = paged();
        let t = |gva: u64, w: bool| translate(&p, &host, &paging, Gva(gva), w);
        assert_eq!(t(0x40_0010, false), Ok(Gpa(0x3010)));
        assert_eq!(t(0x40_1010, false), Ok(Gpa(0x4010)));
        assert_eq!(
            t(0x40_1010, true),
            Err(GuestFault::NotPresent(Gva(0x40_1010)))
        );
        assert_eq!(
            t(0x40_2000, false),
            Err(GuestFault::NotPresent(Gva(0x40_2000)))
        );
        assert_eq!(t(0x8000_1234, false), Ok(Gpa(0x1234)));
        assert_eq!(
            t(0x8000_0000_0000, false),
            Err(GuestFault::NonCanonical(Gva(0x8000_0000_0000)))
        );
        let real = GuestPaging::default();
        assert_eq!(
            translate(&p, &host, &real, Gva(0x1234), true),
            Ok(Gpa(0x1234))
        );
    }

    #[test]
    fn view_write_is_all_or_nothing() {
        let (p, host, paging) = paged();
        let view = GuestView {
            p2m: &p,
            mem: &host,
            paging,
        };
        // 0x40_0ffe..0x40_1002 crosses into the read-only page: nothing written.
        assert!(view.write(Gva(0x40_0ffe), b"WXYZ").is_err());
        let mut b = [0u8; 2];
        view.read(Gva(0x40_0ffe), &mut b).unwrap();
        assert_eq!(b, [0, 0]);
        view.write(Gva(0x40_0ff0), b"ok").unwrap();
        let v: u16 = view.read_obj(Gva(0x40_0ff0)).unwrap();
        assert_eq!(v, u16::from_le_bytes(*b"ok"));
    }

    proptest! {
        #[test]
        fn translate_never_leaves_the_domain(gva in any::<u64>(), cr3 in any::<u64>(), write in any::<bool>()) {
            let (p, host, mut paging) = paged();
            paging.cr3 = cr3;
            if let Ok(gpa) = translate(&p, &host, &paging, Gva(gva), write) {
                // Translation itself may name any gpa; access then checks the p2m.
                let mut b = [0u8; 1];
                let r = p.read(&host, gpa, &mut b);
                prop_assert_eq!(r.is_ok(), p.get(gpa.gfn()).is_some());
            }
        }
    }
}
