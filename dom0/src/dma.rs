//! Dom0's DMA pool: the host-contiguous region the hypervisor maps at
//! guest-physical == host-physical and names on the command line
//! (`pavise.dma=BASE:SIZE`). Device drivers hand devices addresses inside
//! it only. Pure page accounting (first fit over a bitmap), host-tested;
//! the driver glue owns the bytes.

use alloc::vec;
use alloc::vec::Vec;

pub const PAGE: u64 = 4096;
/// The word's prefix.
pub const DMA_WORD: &str = "pavise.dma=";

/// `pavise.dma=BASE:SIZE` (hex with `0x`, or decimal): page-aligned and
/// non-empty, else `None`.
pub fn parse_word(cmdline: &str) -> Option<(u64, u64)> {
    let value = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(DMA_WORD))?;
    let (base, size) = value.split_once(':')?;
    let number = |s: &str| match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    };
    let (base, size) = (number(base)?, number(size)?);
    (size > 0 && base % PAGE == 0 && size % PAGE == 0 && base.checked_add(size).is_some())
        .then_some((base, size))
}

/// Pages of a region, handed out in contiguous runs.
pub struct PagePool {
    base: u64,
    used: Vec<bool>,
    free: usize,
}

impl PagePool {
    pub fn new(base: u64, size: u64) -> Self {
        let pages = (size / PAGE) as usize;
        Self {
            base,
            used: vec![false; pages],
            free: pages,
        }
    }

    pub fn free_pages(&self) -> usize {
        self.free
    }

    /// `pages` contiguous pages: their address.
    pub fn alloc(&mut self, pages: usize) -> Option<u64> {
        if pages == 0 || pages > self.free {
            return None;
        }
        let mut run = 0;
        for i in 0..self.used.len() {
            if self.used[i] {
                run = 0;
                continue;
            }
            run += 1;
            if run == pages {
                let first = i + 1 - pages;
                self.used[first..=i].iter_mut().for_each(|u| *u = true);
                self.free -= pages;
                return Some(self.base + first as u64 * PAGE);
            }
        }
        None
    }

    /// Gives back a run [`alloc`](Self::alloc) returned; false (and no
    /// change) for anything else.
    pub fn free(&mut self, addr: u64, pages: usize) -> bool {
        if addr < self.base || !(addr - self.base).is_multiple_of(PAGE) {
            return false;
        }
        let first = ((addr - self.base) / PAGE) as usize;
        let Some(run) = self.used.get_mut(first..first.saturating_add(pages)) else {
            return false;
        };
        if pages == 0 || run.iter().any(|u| !u) {
            return false;
        }
        run.iter_mut().for_each(|u| *u = false);
        self.free += pages;
        true
    }

    /// Whether `[addr, addr+len)` lies inside the pool.
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        let end = self.base + self.used.len() as u64 * PAGE;
        addr >= self.base && addr.checked_add(len).is_some_and(|e| e <= end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn word_parsing() {
        assert_eq!(
            parse_word("a pavise.dma=0x2000000:0x1000000 b"),
            Some((0x200_0000, 0x100_0000))
        );
        assert_eq!(parse_word("pavise.dma=4096:8192"), Some((4096, 8192)));
        assert_eq!(parse_word("pavise.dma=0x1001:0x1000"), None);
        assert_eq!(parse_word("pavise.dma=0x1000:0"), None);
        assert_eq!(parse_word("pavise.dma=0x1000"), None);
        assert_eq!(parse_word("nothing"), None);
    }

    #[test]
    fn first_fit_and_free() {
        let mut p = PagePool::new(0x10_0000, 8 * PAGE);
        let a = p.alloc(3).unwrap();
        let b = p.alloc(3).unwrap();
        assert_eq!(b, a + 3 * PAGE);
        assert_eq!(p.alloc(3), None);
        assert!(p.free(a, 3));
        assert!(!p.free(a, 3), "double free refused");
        assert_eq!(p.alloc(2), Some(a));
        assert!(p.contains(a, 8 * PAGE));
        assert!(!p.contains(a, 8 * PAGE + 1));
        assert!(!p.free(b + 1, 1));
    }

    proptest! {
        #[test]
        fn runs_never_overlap(ops in proptest::collection::vec((1usize..5, any::<bool>()), 1..60)) {
            let mut p = PagePool::new(0, 32 * PAGE);
            let mut live: Vec<(u64, usize)> = Vec::new();
            for (n, free) in ops {
                if free && !live.is_empty() {
                    let (a, n) = live.remove(0);
                    prop_assert!(p.free(a, n));
                } else if let Some(a) = p.alloc(n) {
                    for &(b, m) in &live {
                        prop_assert!(a + n as u64 * PAGE <= b || b + m as u64 * PAGE <= a);
                    }
                    live.push((a, n));
                }
                let used: usize = live.iter().map(|l| l.1).sum();
                prop_assert_eq!(p.free_pages(), 32 - used);
            }
        }
    }
}
