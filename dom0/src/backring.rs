//! The back end's private view of one io/ring.h shared ring, for any
//! split driver: the next request to consume, the next response to
//! produce, the slot offsets of a ring of `2^order` pages with entries of
//! a given size (blkif 112 bytes, netif transmit 12, netif receive 8),
//! and the checks that refuse a front end's impossible producer index.
//!
//! Pure index arithmetic on top of [`pv_abi::ring`]: the glue reads and
//! writes the shared page; [`BackRing`] says where and how much.

use core::fmt;

use pv_abi::PAGE_SIZE;
use pv_abi::ring::{self, RingIdx, SRING_HEADER_SIZE};

/// The largest ring a front end may grant, in log2 pages
/// (`XENBUS_MAX_RING_GRANT_ORDER` in Linux).
pub const MAX_RING_ORDER: u32 = 4;

/// The front end's `req_prod` is impossible: it claims more requests
/// than the ring holds, or moved backwards. The glue disconnects (Linux:
/// blkback's "Frontend provided bogus ring requests ... Halting ring
/// processing", netback's "Impossible number of requests").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingOverflow {
    pub req_prod: u32,
    pub req_cons: u32,
    pub rsp_prod_pvt: u32,
}

impl fmt::Display for RingOverflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "front end published bogus req_prod {} (req_cons {}, rsp_prod {})",
            self.req_prod, self.req_cons, self.rsp_prod_pvt
        )
    }
}

/// Free-running ring indices `start`, `start + 1`, ... up to but not
/// including `end`, in wrapping arithmetic. Used like a `Range<u32>`
/// (`for idx in ring.take(p)? { ... }`, `.start`, `.end`, `.len()`,
/// `.is_empty()`), but correct when the indices wrap past `u32::MAX`,
/// which `core::ops::Range` cannot express.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexRange {
    pub start: RingIdx,
    pub end: RingIdx,
}

impl IndexRange {
    /// How many indices are left.
    pub fn len(&self) -> usize {
        self.end.wrapping_sub(self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl Iterator for IndexRange {
    type Item = RingIdx;

    fn next(&mut self) -> Option<RingIdx> {
        if self.start == self.end {
            return None;
        }
        let idx = self.start;
        self.start = idx.wrapping_add(1);
        Some(idx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl ExactSizeIterator for IndexRange {}

/// The back end's private view of one ring of `2^order` pages: the next
/// request to consume and the next response to produce. Every request
/// [`take`](Self::take) hands out must be answered (OKAY or not) through
/// [`next_response`](Self::next_response); responses fill slots in
/// order, whatever order the requests are answered in.
///
/// A round of service, as Linux's back ends do it:
/// 1. read the shared `req_prod`, then a read barrier;
///    `for idx in ring.take(req_prod)?`: copy the slot at
///    `slot_offset(idx)` once, decode it, do the work;
/// 2. per answer, write the response bytes at `next_response()`;
/// 3. publish: write barrier, store `rsp_prod_pvt()` to the shared
///    `rsp_prod`, full barrier, read the shared `rsp_event`, then
///    `publish(old_rsp_prod, rsp_event).1` says whether to notify
///    (`old_rsp_prod` is what the glue itself last stored);
/// 4. when `take` comes back empty: store `final_check_req_event()` to
///    the shared `req_event`, full barrier, re-read `req_prod` and
///    `take` again before sleeping.
///
/// A back end that consumes only what it can use now (netif: a packet's
/// slots, the receive buffers one frame needs) calls
/// [`available`](Self::available) and [`take_at_most`](Self::take_at_most)
/// instead, and, to wait for more than is there, stores
/// [`more_req_event`](Self::more_req_event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackRing {
    req_cons: RingIdx,
    rsp_prod_pvt: RingIdx,
    size: u32,
    entry_size: usize,
}

impl BackRing {
    /// A ring of `2^order` pages of `entry_size`-byte slots, indices at 0
    /// as the front end's `SHARED_RING_INIT` left them; `None` if `order`
    /// is above [`MAX_RING_ORDER`] or not one entry fits.
    pub fn new(entry_size: usize, order: u32) -> Option<Self> {
        if order > MAX_RING_ORDER {
            return None;
        }
        let size = ring::ring_size(PAGE_SIZE << order, entry_size);
        if size == 0 {
            return None;
        }
        Some(BackRing {
            req_cons: 0,
            rsp_prod_pvt: 0,
            size,
            entry_size,
        })
    }

    /// `BACK_RING_ATTACH`: continues a ring whose front end may have
    /// been served before (a reconnect) from the shared `rsp_prod`,
    /// forgetting this view's indices. `Err` (and nothing changed) if the
    /// shared `req_prod` is more than a ring ahead of `rsp_prod` or
    /// behind it (Linux netback refuses to connect such a ring).
    pub fn attach(&mut self, req_prod: RingIdx, rsp_prod: RingIdx) -> Result<(), RingOverflow> {
        let attached = BackRing {
            req_cons: rsp_prod,
            rsp_prod_pvt: rsp_prod,
            ..self.clone()
        };
        attached.available(req_prod)?;
        *self = attached;
        Ok(())
    }

    /// Slots in the ring (blkif 32 a page, netif 256).
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Bytes of one slot.
    pub fn entry_size(&self) -> usize {
        self.entry_size
    }

    /// The next request to consume.
    pub fn req_cons(&self) -> RingIdx {
        self.req_cons
    }

    /// The responses produced so far (the value to publish as `rsp_prod`).
    pub fn rsp_prod_pvt(&self) -> RingIdx {
        self.rsp_prod_pvt
    }

    /// Requests taken and not yet answered.
    pub fn in_flight(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod_pvt)
    }

    /// `XEN_RING_NR_UNCONSUMED_REQUESTS`: how many new requests, given
    /// the shared `req_prod`, may be consumed now (at most as many as
    /// there is room for their responses). Consumes nothing. `Err` if
    /// `req_prod` is impossible (`RING_REQUEST_PROD_OVERFLOW`: more than
    /// `size` ahead of our responses, or behind `req_cons`).
    pub fn available(&self, req_prod: RingIdx) -> Result<u32, RingOverflow> {
        ring::unconsumed_requests(req_prod, self.req_cons, self.rsp_prod_pvt, self.size).ok_or(
            RingOverflow {
                req_prod,
                req_cons: self.req_cons,
                rsp_prod_pvt: self.rsp_prod_pvt,
            },
        )
    }

    /// Takes every request [`available`](Self::available) reports and
    /// marks them consumed; nothing is consumed on `Err`.
    pub fn take(&mut self, req_prod: RingIdx) -> Result<IndexRange, RingOverflow> {
        self.take_at_most(req_prod, u32::MAX)
    }

    /// As [`take`](Self::take), but at most `max` requests.
    pub fn take_at_most(
        &mut self,
        req_prod: RingIdx,
        max: u32,
    ) -> Result<IndexRange, RingOverflow> {
        let n = self.available(req_prod)?.min(max);
        let start = self.req_cons;
        self.req_cons = start.wrapping_add(n);
        Ok(IndexRange {
            start,
            end: self.req_cons,
        })
    }

    /// Byte offset of slot `idx` in the ring area (`2^order` contiguous
    /// pages): after the 64-byte header, `entry_size` bytes a slot. Always
    /// inside the area, for any `idx`.
    pub fn slot_offset(&self, idx: RingIdx) -> usize {
        SRING_HEADER_SIZE + ring::ring_index(idx, self.size) * self.entry_size
    }

    /// Byte offset of the slot for the next response; counts it produced.
    /// Only call it for a request taken and not yet answered (with none
    /// in flight the slot may hold a request not yet consumed).
    pub fn next_response(&mut self) -> usize {
        debug_assert!(self.in_flight() > 0, "response without a request");
        let offset = self.slot_offset(self.rsp_prod_pvt);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        offset
    }

    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`: the `rsp_prod` to publish
    /// and whether the front end asked to be notified of it, given the
    /// `rsp_prod` published before and the shared `rsp_event` read after
    /// publishing the new one (see the type's steps).
    pub fn publish(&self, old_rsp_prod: RingIdx, rsp_event: RingIdx) -> (RingIdx, bool) {
        let new = self.rsp_prod_pvt;
        (new, ring::need_notify(new, old_rsp_prod, rsp_event))
    }

    /// `RING_FINAL_CHECK_FOR_REQUESTS`: the `req_event` to store before
    /// sleeping, so that the next request notifies us.
    pub fn final_check_req_event(&self) -> RingIdx {
        ring::final_check_event(self.req_cons)
    }

    /// The `req_event` to store when the requests published so far (up
    /// to `req_prod`) are not enough and the back end waits for more
    /// without consuming them: the front end's next publication then
    /// notifies (Linux netback's receive side stores `req_prod + 1`).
    /// Re-read `req_prod` after storing it, as for
    /// [`final_check_req_event`](Self::final_check_req_event).
    pub fn more_req_event(&self, req_prod: RingIdx) -> RingIdx {
        req_prod.wrapping_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    const BLKIF: usize = pv_abi::blkif::ENTRY_SIZE;
    const NETIF_TX: usize = pv_abi::netif::TX_ENTRY_SIZE;
    const NETIF_RX: usize = pv_abi::netif::RX_ENTRY_SIZE;

    fn blk(order: u32) -> BackRing {
        BackRing::new(BLKIF, order).unwrap()
    }

    #[test]
    fn geometry() {
        assert!(BackRing::new(BLKIF, MAX_RING_ORDER + 1).is_none());
        assert!(BackRing::new(0, 0).is_none());
        assert!(BackRing::new(PAGE_SIZE, 0).is_none());
        assert_eq!(blk(0).size(), pv_abi::blkif::ring_entries(0));
        assert_eq!(blk(4).size(), 512);
        let tx = BackRing::new(NETIF_TX, 0).unwrap();
        let rx = BackRing::new(NETIF_RX, 0).unwrap();
        assert_eq!(tx.size(), pv_abi::netif::XEN_NETIF_TX_RING_SIZE);
        assert_eq!(rx.size(), pv_abi::netif::XEN_NETIF_RX_RING_SIZE);
        assert_eq!((tx.entry_size(), rx.entry_size()), (12, 8));
        assert_eq!(tx.slot_offset(255), 64 + 255 * 12);
        assert_eq!(tx.slot_offset(256), 64);
        assert!(tx.slot_offset(255) + NETIF_TX <= PAGE_SIZE);
        assert_eq!(rx.slot_offset(257), 64 + 8);
        assert!(rx.slot_offset(255) + NETIF_RX <= PAGE_SIZE);
    }

    #[test]
    fn ring_basics() {
        let mut r = blk(0);
        assert_eq!(r.size(), 32);
        assert_eq!(r.slot_offset(0), 64);
        assert_eq!(r.slot_offset(1), 64 + 112);
        assert_eq!(r.slot_offset(33), 64 + 112);
        assert_eq!(r.slot_offset(31), 64 + 31 * 112);
        assert!(r.slot_offset(31) + BLKIF <= PAGE_SIZE);
        assert_eq!(blk(4).slot_offset(511), 64 + 511 * 112);

        assert!(r.take(0).unwrap().is_empty());
        assert_eq!(r.final_check_req_event(), 1);
        let got = r.take(3).unwrap();
        assert_eq!((got.start, got.end, got.len()), (0, 3, 3));
        assert_eq!(got.collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(r.in_flight(), 3);
        assert_eq!(r.final_check_req_event(), 4);
        // Nothing new.
        assert!(r.take(3).unwrap().is_empty());

        assert_eq!(r.next_response(), 64);
        assert_eq!(r.next_response(), 64 + 112);
        assert_eq!(r.in_flight(), 1);
        // Front end wanted a notification at 1: publishing 0 -> 2 covers it.
        assert_eq!(r.publish(0, 1), (2, true));
        // It had asked for 5: no.
        assert_eq!(r.publish(0, 5), (2, false));
        // Nothing new published since 2.
        assert_eq!(r.publish(2, 2), (2, false));
    }

    #[test]
    fn ring_is_bounded_by_response_room() {
        let mut r = blk(0);
        // Front end fills the whole ring.
        assert_eq!(r.take(32).unwrap().len(), 32);
        assert_eq!(r.in_flight(), 32);
        for _ in 0..10 {
            r.next_response();
        }
        // It reuses the 10 answered slots; all may be taken.
        assert_eq!(r.take(42).unwrap(), IndexRange { start: 32, end: 42 });
        assert_eq!(r.in_flight(), 32);
    }

    #[test]
    fn ring_rejects_bogus_req_prod() {
        let mut r = blk(0);
        let e = r.take(33).unwrap_err();
        assert_eq!(
            e,
            RingOverflow {
                req_prod: 33,
                req_cons: 0,
                rsp_prod_pvt: 0
            }
        );
        // Nothing consumed by a refused take.
        assert_eq!(r.in_flight(), 0);
        r.take(5).unwrap();
        // Backwards.
        assert!(r.take(4).is_err());
        assert!(r.take(u32::MAX).is_err());
        for _ in 0..5 {
            r.next_response();
        }
        assert!(r.take(5 + 33).is_err());
        assert_eq!(r.take(5 + 32).unwrap().len(), 32);
    }

    #[test]
    fn ring_wraps() {
        let mut r = BackRing {
            req_cons: u32::MAX - 1,
            rsp_prod_pvt: u32::MAX - 1,
            size: 32,
            entry_size: BLKIF,
        };
        let got = r.take(2).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got.collect::<Vec<_>>(), [u32::MAX - 1, u32::MAX, 0, 1]);
        assert_eq!(r.in_flight(), 4);
        assert_eq!(r.slot_offset(u32::MAX), 64 + 31 * 112);
        assert_eq!(r.slot_offset(0), 64);
        for _ in 0..4 {
            r.next_response();
        }
        assert_eq!(r.publish(u32::MAX - 1, u32::MAX), (2, true));
        assert_eq!(r.final_check_req_event(), 3);
    }

    #[test]
    fn partial_takes_and_waiting() {
        let mut r = BackRing::new(NETIF_RX, 0).unwrap();
        assert_eq!(r.available(10), Ok(10));
        assert_eq!(
            r.take_at_most(10, 3).unwrap(),
            IndexRange { start: 0, end: 3 }
        );
        assert_eq!(r.available(10), Ok(7));
        assert_eq!(r.take_at_most(10, 0).unwrap().len(), 0);
        // Wanting 8 when 7 are there: wait for the next publication.
        assert_eq!(r.more_req_event(10), 11);
        assert_eq!(r.more_req_event(u32::MAX), 0);
        assert!(r.available(3 + 257).is_err());
        assert!(r.take_at_most(2, 1).is_err());
        assert_eq!(r.req_cons(), 3);
    }

    #[test]
    fn attach_continues_from_rsp_prod() {
        let mut r = BackRing::new(NETIF_TX, 0).unwrap();
        r.attach(300, 100).unwrap();
        assert_eq!(
            (r.req_cons(), r.rsp_prod_pvt(), r.in_flight()),
            (100, 100, 0)
        );
        assert_eq!(r.available(300), Ok(200));
        let before = r.clone();
        assert!(r.attach(357, 100).is_err());
        assert!(r.attach(99, 100).is_err());
        assert_eq!(r, before);
        r.attach(0, 0).unwrap();
        assert_eq!(r, BackRing::new(NETIF_TX, 0).unwrap());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(2000)))]

        /// A model front end that publishes any req_prod (honest or not) and
        /// a back end that answers some taken requests each round: the back
        /// end never has more than `size` outstanding, never takes a request
        /// twice and refuses exactly the impossible producer indices.
        #[test]
        fn ring_never_overcommits(
            entry in proptest::sample::select(&[BLKIF, NETIF_TX, NETIF_RX][..]),
            order in 0u32..=MAX_RING_ORDER,
            start in any::<u32>(),
            rounds in proptest::collection::vec(
                (any::<bool>(), 0u32..600, any::<u32>(), 0u32..600, proptest::option::of(0u32..40)),
                1..60,
            ),
        ) {
            let mut r = BackRing::new(entry, order).unwrap();
            r.req_cons = start;
            r.rsp_prod_pvt = start;
            let size = r.size();
            let mut next_expected = start;
            for (honest, ahead, bogus, answer, limit) in rounds {
                let req_prod = if honest {
                    // Anything the front end may legitimately have published.
                    r.rsp_prod_pvt().wrapping_add(r.in_flight() + ahead % (size - r.in_flight() + 1))
                } else {
                    bogus
                };
                let legit = req_prod.wrapping_sub(r.rsp_prod_pvt()) <= size
                    && req_prod.wrapping_sub(r.req_cons()) <= size;
                let before = r.clone();
                let got = match limit {
                    Some(max) => r.take_at_most(req_prod, max),
                    None => r.take(req_prod),
                };
                match got {
                    Ok(got) => {
                        prop_assert!(legit);
                        prop_assert_eq!(got.start, next_expected);
                        let all = req_prod.wrapping_sub(before.req_cons());
                        prop_assert_eq!(got.len() as u32, limit.map_or(all, |m| all.min(m)));
                        for idx in got {
                            prop_assert_eq!(idx, next_expected);
                            let off = r.slot_offset(idx);
                            prop_assert!(off >= 64 && off + entry <= PAGE_SIZE << order);
                            next_expected = next_expected.wrapping_add(1);
                        }
                    }
                    Err(_) => {
                        prop_assert!(!legit);
                        prop_assert_eq!(&r, &before);
                    }
                }
                prop_assert!(r.in_flight() <= size);
                for _ in 0..answer.min(r.in_flight()) {
                    let old = r.rsp_prod_pvt();
                    let off = r.next_response();
                    prop_assert_eq!(off, r.slot_offset(old));
                }
                prop_assert!(r.in_flight() <= size);
            }
        }
    }
}
