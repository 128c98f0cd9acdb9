//! The generic shared-ring protocol of io/ring.h as pure index logic.
//!
//! A shared ring page starts with a 64-byte header ([`SringHeader`]:
//! `req_prod`, `req_event`, `rsp_prod`, `rsp_event`, private bytes,
//! padding) followed by a power-of-two number of entries, each the union
//! of a request and a response. Indices are free-running `u32`s that wrap;
//! an index names slot `idx & (size - 1)`. After publishing a new
//! producer index the producer notifies the peer only if the peer's event
//! index lies in the range just published ([`need_notify`]).
//!
//! Everything a peer writes is untrusted: [`unconsumed`] and friends
//! return `None` when a producer index claims more entries than the ring
//! holds.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `RING_IDX`.
pub type RingIdx = u32;

/// The header of a `struct <name>_sring`; entries follow at
/// [`SRING_HEADER_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SringHeader {
    /// Requests published by the front end.
    pub req_prod: RingIdx,
    /// The back end wants a notification when `req_prod` passes this.
    pub req_event: RingIdx,
    /// Responses published by the back end.
    pub rsp_prod: RingIdx,
    /// The front end wants a notification when `rsp_prod` passes this.
    pub rsp_event: RingIdx,
    /// `union pvt` (netif `smartpoll_active`, tapif `msg`, `pvt_pad[4]`).
    pub pvt: [u8; 4],
    /// `__pad[44]`.
    pub pad: [u8; 44],
}

/// Offset of the first entry (`offsetof(struct _sring, ring)`).
pub const SRING_HEADER_SIZE: usize = 64;

impl SringHeader {
    /// `SHARED_RING_INIT`: producers at 0, event indices at 1 (notify on
    /// the first entry), private bytes and padding zeroed.
    pub const fn new() -> Self {
        SringHeader {
            req_prod: 0,
            req_event: 1,
            rsp_prod: 0,
            rsp_event: 1,
            pvt: [0; 4],
            pad: [0; 44],
        }
    }
}

impl Default for SringHeader {
    fn default() -> Self {
        Self::new()
    }
}

/// `__RING_SIZE`: entries of `entry_size` bytes that fit in a shared area
/// of `area_size` bytes after the header, rounded down to a power of two
/// (0 if none fit, or more than `u32` can count).
pub const fn ring_size(area_size: usize, entry_size: usize) -> u32 {
    if entry_size == 0 || area_size <= SRING_HEADER_SIZE {
        return 0;
    }
    let fit = (area_size - SRING_HEADER_SIZE) / entry_size;
    if fit == 0 {
        return 0;
    }
    let pow = 1usize << (usize::BITS - 1 - fit.leading_zeros());
    if pow > u32::MAX as usize {
        return 1 << 31;
    }
    pow as u32
}

/// The slot free-running index `idx` names in a ring of `size` entries
/// (a nonzero power of two).
pub const fn ring_index(idx: RingIdx, size: u32) -> usize {
    (idx & size.wrapping_sub(1)) as usize
}

/// Entries published and not yet consumed, `prod - cons` with wraparound;
/// `None` if that is more than the ring holds (the producer index is
/// bogus: a hostile or broken peer).
pub const fn unconsumed(prod: RingIdx, cons: RingIdx, size: u32) -> Option<u32> {
    let n = prod.wrapping_sub(cons);
    if n <= size { Some(n) } else { None }
}

/// Whether a byte-stream reader (XenStore, Linux's `xb_read`) must tell
/// the writer of the room it made: only if the ring was full, judged by
/// the producer index read again after the reader stored its new
/// consumer index (`cons_before` is the consumer index it read from). A
/// writer waits for room only on a full ring, and one that filled it
/// while the reader copied sees the new index or is told.
pub const fn room_news_due(prod_after: RingIdx, cons_before: RingIdx, size: u32) -> bool {
    prod_after.wrapping_sub(cons_before) >= size
}

/// Where `len` bytes from free-running index `idx` lie in a byte ring of
/// `size` (a nonzero power of two; `len <= size`): at most two runs of
/// slots, `(first slot, length)`, the second empty unless the bytes wrap.
/// Copying run by run instead of byte by byte is what makes XenStore's
/// and the console's rings cheap.
pub const fn byte_runs(idx: RingIdx, len: usize, size: u32) -> [(usize, usize); 2] {
    let start = ring_index(idx, size);
    let to_end = size as usize - start;
    if len <= to_end {
        [(start, len), (0, 0)]
    } else {
        [(start, to_end), (0, len - to_end)]
    }
}

/// Slots the producer may still fill (`size - unconsumed`), `None` for
/// impossible indices.
pub const fn free_slots(prod: RingIdx, cons: RingIdx, size: u32) -> Option<u32> {
    match unconsumed(prod, cons, size) {
        Some(n) => Some(size - n),
        None => None,
    }
}

/// The notification rule of `RING_PUSH_*_AND_CHECK_NOTIFY`: having moved
/// a producer index from `old` to `new`, notify the peer iff its `event`
/// index is in `(old, new]`, i.e. `new - event < new - old` in wrapping
/// arithmetic.
pub const fn need_notify(new: RingIdx, old: RingIdx, event: RingIdx) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// `RING_FINAL_CHECK_FOR_*`: the event index a consumer publishes before
/// sleeping, so that the next entry after `cons` notifies it. It must
/// then re-check for entries published meanwhile.
pub const fn final_check_event(cons: RingIdx) -> RingIdx {
    cons.wrapping_add(1)
}

/// `XEN_RING_NR_UNCONSUMED_REQUESTS` for a back end: requests it may take
/// given the shared `req_prod`, its `req_cons` and its private
/// `rsp_prod_pvt`, bounded by the room left for their responses. `None`
/// if `req_prod` is impossible (`RING_REQUEST_PROD_OVERFLOW`) or the back
/// end's own indices are inconsistent.
pub const fn unconsumed_requests(
    req_prod: RingIdx,
    req_cons: RingIdx,
    rsp_prod_pvt: RingIdx,
    size: u32,
) -> Option<u32> {
    if request_prod_overflow(req_prod, rsp_prod_pvt, size) {
        return None;
    }
    let in_flight = req_cons.wrapping_sub(rsp_prod_pvt);
    if in_flight > size {
        return None;
    }
    let req = req_prod.wrapping_sub(req_cons);
    if req > size {
        return None;
    }
    let room = size - in_flight;
    Some(if req < room { req } else { room })
}

/// `RING_REQUEST_PROD_OVERFLOW`: can a front end have published this many
/// requests, given the responses the back end has produced?
pub const fn request_prod_overflow(req_prod: RingIdx, rsp_prod_pvt: RingIdx, size: u32) -> bool {
    req_prod.wrapping_sub(rsp_prod_pvt) > size
}

/// `RING_RESPONSE_PROD_OVERFLOW`: can a back end have published this many
/// responses, given what the front end has consumed?
pub const fn response_prod_overflow(rsp_prod: RingIdx, rsp_cons: RingIdx, size: u32) -> bool {
    rsp_prod.wrapping_sub(rsp_cons) > size
}

/// `RING_REQUEST_CONS_OVERFLOW`: would consuming request `req_cons`
/// overflow the responses the back end can hold?
pub const fn request_cons_overflow(req_cons: RingIdx, rsp_prod_pvt: RingIdx, size: u32) -> bool {
    req_cons.wrapping_sub(rsp_prod_pvt) >= size
}

/// `RING_FREE_REQUESTS` for a front end: request slots it may still fill,
/// `None` if its indices are inconsistent or the peer's responses are
/// bogus.
pub const fn free_requests(req_prod_pvt: RingIdx, rsp_cons: RingIdx, size: u32) -> Option<u32> {
    free_slots(req_prod_pvt, rsp_cons, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_runs_cover_the_bytes_in_ring_order() {
        assert_eq!(byte_runs(5, 10, 1024), [(5, 10), (0, 0)]);
        assert_eq!(byte_runs(1020, 10, 1024), [(1020, 4), (0, 6)]);
        assert_eq!(byte_runs(2048, 1024, 1024), [(0, 1024), (0, 0)]);
        assert_eq!(byte_runs(u32::MAX, 2, 1024), [(1023, 1), (0, 1)]);
        for idx in [0u32, 1, 511, 1023, 1024, u32::MAX - 3] {
            for len in [0usize, 1, 100, 1023, 1024] {
                let runs = byte_runs(idx, len, 1024);
                let slots = runs.iter().flat_map(|&(at, n)| at..at + n);
                let expected = (0..len).map(|i| ring_index(idx.wrapping_add(i as u32), 1024));
                assert!(slots.eq(expected), "idx {idx} len {len}");
            }
        }
    }
    use core::mem::{offset_of, size_of};

    #[test]
    fn room_news_only_for_a_full_ring() {
        // Read 10 of 10 from a 1024-byte ring: the writer was not waiting.
        assert!(!room_news_due(10, 0, 1024));
        // The ring was full when read (or filled meanwhile): tell it.
        assert!(room_news_due(1024, 0, 1024));
        assert!(room_news_due(5, 5u32.wrapping_sub(1024), 1024));
        // A bogus producer (more than a ring ahead) is told too: harmless.
        assert!(room_news_due(5000, 0, 1024));
    }

    #[test]
    fn header_layout() {
        assert_eq!(size_of::<SringHeader>(), 64);
        assert_eq!(SRING_HEADER_SIZE, size_of::<SringHeader>());
        assert_eq!(offset_of!(SringHeader, req_prod), 0);
        assert_eq!(offset_of!(SringHeader, req_event), 4);
        assert_eq!(offset_of!(SringHeader, rsp_prod), 8);
        assert_eq!(offset_of!(SringHeader, rsp_event), 12);
        assert_eq!(offset_of!(SringHeader, pvt), 16);
        assert_eq!(offset_of!(SringHeader, pad), 20);
        let h = SringHeader::new();
        assert_eq!(
            (h.req_prod, h.req_event, h.rsp_prod, h.rsp_event),
            (0, 1, 0, 1)
        );
    }

    #[test]
    fn sizes() {
        // blkif: 112-byte entries in a 4 KiB page -> 32.
        assert_eq!(ring_size(4096, 112), 32);
        // netif tx/rx: 12- and 8-byte entries -> 256 and 256.
        assert_eq!(ring_size(4096, 12), 256);
        assert_eq!(ring_size(4096, 8), 256);
        // 64-byte entries: (4096 - 64) / 64 = 63 -> 32.
        assert_eq!(ring_size(4096, 64), 32);
        // Multi-page rings.
        assert_eq!(ring_size(4 * 4096, 112), 128);
        assert_eq!(ring_size(64, 8), 0);
        assert_eq!(ring_size(4096, 0), 0);
        assert_eq!(ring_size(4096, 5000), 0);
        assert_eq!(ring_size(72, 8), 1);
    }

    #[test]
    fn slots_wrap() {
        assert_eq!(ring_index(0, 32), 0);
        assert_eq!(ring_index(33, 32), 1);
        assert_eq!(ring_index(u32::MAX, 32), 31);
        assert_eq!(ring_index(u32::MAX.wrapping_add(1), 32), 0);
    }

    #[test]
    fn counts_with_wraparound() {
        assert_eq!(unconsumed(5, 3, 8), Some(2));
        assert_eq!(unconsumed(3, 3, 8), Some(0));
        assert_eq!(unconsumed(11, 3, 8), Some(8));
        assert_eq!(unconsumed(12, 3, 8), None);
        // Producer wrapped past 0, consumer not yet.
        assert_eq!(unconsumed(2, u32::MAX - 1, 8), Some(4));
        // Producer "behind" the consumer: a huge wrapped difference.
        assert_eq!(unconsumed(2, 3, 8), None);
        assert_eq!(free_slots(5, 3, 8), Some(6));
        assert_eq!(free_slots(11, 3, 8), Some(0));
        assert_eq!(free_slots(1, u32::MAX - 6, 8), Some(0));
        assert_eq!(free_slots(12, 3, 8), None);
        assert_eq!(free_requests(4, 4, 32), Some(32));
    }

    #[test]
    fn notification_rule() {
        // Peer asked to be woken at 5: publishing 3 -> 6 covers it.
        assert!(need_notify(6, 3, 5));
        assert!(need_notify(5, 4, 5));
        // Publishing 6 -> 8 does not: 5 was passed before.
        assert!(!need_notify(8, 6, 5));
        // Event beyond what was published.
        assert!(!need_notify(6, 3, 7));
        // Nothing published: never notify.
        assert!(!need_notify(6, 6, 6));
        // Across the wrap.
        assert!(need_notify(2, u32::MAX - 1, 0));
        assert!(need_notify(2, u32::MAX - 1, u32::MAX));
        assert!(!need_notify(2, u32::MAX - 1, 3));
        assert!(!need_notify(2, u32::MAX - 1, u32::MAX - 1));
        // Freshly initialised ring: event 1, first request notifies.
        assert!(need_notify(1, 0, SringHeader::new().req_event));
        assert_eq!(final_check_event(7), 8);
        assert_eq!(final_check_event(u32::MAX), 0);
        assert!(need_notify(1, u32::MAX, final_check_event(u32::MAX)));
    }

    #[test]
    fn back_end_validation() {
        // 4 requests waiting, none in flight.
        assert_eq!(unconsumed_requests(14, 10, 10, 32), Some(4));
        // 30 in flight (consumed, no response yet) and 2 more waiting.
        assert_eq!(unconsumed_requests(42, 40, 10, 32), Some(2));
        // 30 in flight and 10 more claimed: more than the ring holds.
        assert_eq!(unconsumed_requests(50, 40, 10, 32), None);
        // Front end claims 33 outstanding requests: hostile.
        assert_eq!(unconsumed_requests(43, 10, 10, 32), None);
        assert!(request_prod_overflow(43, 10, 32));
        assert!(!request_prod_overflow(42, 10, 32));
        // Producer behind the consumer.
        assert_eq!(unconsumed_requests(9, 10, 10, 32), None);
        // Across the wrap.
        assert_eq!(
            unconsumed_requests(3, u32::MAX - 2, u32::MAX - 2, 32),
            Some(6)
        );
        assert!(request_cons_overflow(42, 10, 32));
        assert!(!request_cons_overflow(41, 10, 32));
        assert!(response_prod_overflow(100, 60, 32));
        assert!(!response_prod_overflow(92, 60, 32));
        assert!(!response_prod_overflow(1, u32::MAX, 32));
    }
}
