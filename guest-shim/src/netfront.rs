//! Xen network front end (netfront) for `device/vif/<handle>`, with the
//! protocol of io/netif.h and the handshake of Linux's xen-netfront:
//! backend InitWait -> rings, event channel(s), receive buffers and
//! features in one transaction -> Connected (straight from
//! Initialising) -> backend Connected.
//!
//! One tx ring and one rx ring (one page each, 256 slots), one queue.
//! Frames are sent in one slot each (at most [`MAX_FRAME`] bytes, copied
//! into a 2 KiB half page granted read-only for that frame) and received
//! into whole pages, each granted to the backend while it is posted
//! (rx-copy: the backend copies into them). Like Linux, a grant is
//! revoked as soon as its response is seen, before the data is read, so
//! a backend cannot change a frame while we copy it out.
//!
//! Everything the backend writes is untrusted: response indices, ids,
//! statuses, offsets, lengths and extra-info chains are checked before
//! use; a bad response is counted and the frame dropped. Only indices
//! that claim more responses than there are requests make the rings
//! unusable (`NetError::Broken`).
//!
//! This file holds the pure parts (the checks of a received frame's
//! slots, tx id bookkeeping, the MAC parser; the wire format is
//! `pv_abi::netif`), built and tested on the host; the device itself
//! (`Netfront`) is built for `target_os = "none"` only.

use pv_abi::PAGE_SIZE;
use pv_abi::ring::{self, RingIdx};
use zerocopy::{FromBytes, Immutable, IntoBytes};

#[cfg(target_os = "none")]
mod front;
#[cfg(target_os = "none")]
pub use front::{Features, NetError, Netfront, Options};

// ---------------------------------------------------------------------------
// Wire format (io/netif.h, in pv_abi::netif) and our limits
// ---------------------------------------------------------------------------

pub use pv_abi::netif::{
    ETH_HLEN, ExtraInfo, RX_ENTRY_SIZE, RxRequest, RxResponse, TX_ENTRY_SIZE, TxRequest, TxResponse,
};
use pv_abi::netif::{
    NETRXF_EXTRA_INFO, NETRXF_MORE_DATA, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_NONE,
    XEN_NETIF_EXTRA_TYPE_XDP, XEN_NETIF_NR_SLOTS_MIN, XEN_NETIF_RX_RING_SIZE,
    XEN_NETIF_TX_RING_SIZE,
};

/// Slots of our one-page tx ring.
pub const TX_RING_SIZE: u32 = XEN_NETIF_TX_RING_SIZE;
/// Slots of our one-page rx ring.
pub const RX_RING_SIZE: u32 = XEN_NETIF_RX_RING_SIZE;
/// The largest frame `Netfront::send` takes (and the receive size
/// expected without `feature-sg`): a 1500-byte MTU plus the Ethernet
/// header.
pub const MAX_FRAME: usize = 1514;
/// Bytes of each transmit buffer: two per page.
pub const TX_BUF_SIZE: usize = 2048;
/// Most data slots one received frame may use (Linux's limit:
/// `XEN_NETIF_NR_SLOTS_MIN` plus one).
pub const MAX_RX_FRAGS: usize = XEN_NETIF_NR_SLOTS_MIN + 1;

const _: () = assert!(TX_RING_SIZE == 256 && RX_RING_SIZE == 256);
const _: () = assert!(MAX_FRAME <= TX_BUF_SIZE && PAGE_SIZE.is_multiple_of(TX_BUF_SIZE));

/// A tx ring slot holding `req` (a [`TxRequest`], an [`ExtraInfo`] or
/// any other value of at most [`TX_ENTRY_SIZE`] bytes), the rest zero:
/// for `Netfront::push_raw_tx`.
pub fn to_tx_slot<T: IntoBytes + Immutable>(req: &T) -> [u8; TX_ENTRY_SIZE] {
    let bytes = req.as_bytes();
    let mut slot = [0u8; TX_ENTRY_SIZE];
    let n = bytes.len().min(TX_ENTRY_SIZE);
    slot[..n].copy_from_slice(&bytes[..n]);
    slot
}

// ---------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------

/// What a `Netfront` has done and refused, since it connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames put on the tx ring.
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Tx responses with an error status (`XEN_NETIF_RSP_ERROR`,
    /// `XEN_NETIF_RSP_DROPPED` or an unknown one).
    pub tx_errors: u64,
    /// Frames `send` refused (ring full, no grant, broken).
    pub tx_dropped: u64,
    /// Frames received and handed to the caller.
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Received frames dropped because a slot of theirs was bad (id,
    /// status, offset + length, extra info, chain), too big for the
    /// caller's buffer or shorter than an Ethernet header.
    pub rx_errors: u64,
    /// Responses that match nothing we sent (a tx id not in flight),
    /// grants the backend would not let go, and response indices
    /// beyond what was requested (these also break the ring).
    pub protocol_errors: u64,
}

// ---------------------------------------------------------------------------
// MAC address
// ---------------------------------------------------------------------------

/// Parses the frontend's `mac` node, `xx:xx:xx:xx:xx:xx` in hex (one or
/// two digits per byte, as Linux's parser takes them); anything else is
/// `None`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim_end_matches('\0').trim().split(':');
    for byte in mac.iter_mut() {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(mac)
}

// ---------------------------------------------------------------------------
// Tx ids
// ---------------------------------------------------------------------------

/// The ids of transmit requests: free, in flight (the backend owes a
/// response), or dead (its buffer's grant could not be revoked, so the
/// buffer is never reused).
#[derive(Clone, Debug)]
pub struct TxIds {
    free: alloc::vec::Vec<u16>,
    state: alloc::vec::Vec<IdState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdState {
    Free,
    InFlight,
    Dead,
}

impl TxIds {
    /// Ids `0..n`, all free; the lowest is handed out first.
    pub fn new(n: u16) -> Self {
        TxIds {
            free: (0..n).rev().collect(),
            state: alloc::vec![IdState::Free; n as usize],
        }
    }

    /// A free id, now in flight.
    pub fn take(&mut self) -> Option<u16> {
        let id = self.free.pop()?;
        self.state[id as usize] = IdState::InFlight;
        Some(id)
    }

    /// Gives back an id taken but never put on the ring.
    pub fn untake(&mut self, id: u16) {
        if self.is_in_flight(id) {
            self.state[id as usize] = IdState::Free;
            self.free.push(id);
        }
    }

    /// Whether the backend owes a response for `id`.
    pub fn is_in_flight(&self, id: u16) -> bool {
        self.state.get(id as usize) == Some(&IdState::InFlight)
    }

    /// A response for `id` came: false (and nothing changes) unless it
    /// was in flight; then it is free again, or dead if `reusable` is
    /// false.
    pub fn complete(&mut self, id: u16, reusable: bool) -> bool {
        if !self.is_in_flight(id) {
            return false;
        }
        if reusable {
            self.state[id as usize] = IdState::Free;
            self.free.push(id);
        } else {
            self.state[id as usize] = IdState::Dead;
        }
        true
    }

    /// Ids in flight, in increasing order.
    pub fn in_flight(&self) -> impl Iterator<Item = u16> + '_ {
        self.state
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == IdState::InFlight)
            .map(|(i, _)| i as u16)
    }

    /// How many are in flight.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight().count()
    }

    /// How many are free.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }
}

// ---------------------------------------------------------------------------
// Received frames
// ---------------------------------------------------------------------------

/// One piece of a received frame: `len` bytes at `offset` in the buffer
/// posted in ring slot `slot`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxFrag {
    pub slot: u16,
    pub offset: u16,
    pub len: u16,
}

/// The pieces of one received frame, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFrags {
    n: usize,
    frags: [RxFrag; MAX_RX_FRAGS],
}

impl RxFrags {
    fn new() -> Self {
        RxFrags {
            n: 0,
            frags: [RxFrag::default(); MAX_RX_FRAGS],
        }
    }

    pub fn as_slice(&self) -> &[RxFrag] {
        &self.frags[..self.n]
    }

    /// The frame's length.
    pub fn total(&self) -> usize {
        self.as_slice().iter().map(|f| f.len as usize).sum()
    }
}

/// Why a received frame was dropped (its slots are consumed all the
/// same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxDrop {
    /// A data response whose id is not the id posted in its slot.
    BadId { slot: u16, id: u16 },
    /// A negative status (`XEN_NETIF_RSP_*`).
    Status(i16),
    /// `offset + status` past the end of the page.
    BadExtent { offset: u16, len: u16 },
    /// An extra-info slot of type NONE or unknown (above XDP).
    BadExtra(u8),
    /// The chain (extra info or more_data) runs past the responses
    /// published; a backend publishes whole packets, so the rest is
    /// taken as missing (as Linux does).
    Truncated,
    /// More than [`MAX_RX_FRAGS`] data slots.
    TooManySlots,
    /// Longer than the caller's buffer.
    TooBig(usize),
    /// Shorter than an Ethernet header.
    Runt(usize),
}

/// Reads and checks the slots of the frame whose first response is at
/// `cons`, with `available` responses published from there (at least
/// one; the caller has checked that they are all for requests it
/// posted) in a ring of `size` slots, for a caller buffer of `max_len`
/// bytes. `read(idx)` returns slot `idx`'s 8 bytes and is called once
/// per slot, in order.
///
/// Returns the number of slots the frame used (all of them are
/// consumed, even when it is dropped; at least 1, at most `available`)
/// and its pieces, or why it is dropped. Data slots must carry the id
/// posted in them (the slot index, as Linux posts); extra-info slots
/// (which overlay the id) follow the first response, as io/netif.h
/// lays them out.
pub fn parse_rx(
    cons: RingIdx,
    available: u32,
    size: u32,
    max_len: usize,
    mut read: impl FnMut(RingIdx) -> [u8; 8],
) -> (u32, Result<RxFrags, RxDrop>) {
    let mut frags = RxFrags::new();
    let mut err: Option<RxDrop> = None;
    let mut used: u32 = 0;
    let mut next = |used: &mut u32| -> Option<(RingIdx, [u8; 8])> {
        if *used >= available {
            return None;
        }
        let idx = cons.wrapping_add(*used);
        *used += 1;
        Some((idx, read(idx)))
    };

    let Some((mut idx, raw)) = next(&mut used) else {
        return (0, Err(RxDrop::Truncated));
    };
    let mut rsp = RxResponse::read_from_bytes(&raw).unwrap_or_default();

    // Extra-info slots, right after the first response.
    if rsp.flags & NETRXF_EXTRA_INFO != 0 {
        loop {
            let Some((_, raw)) = next(&mut used) else {
                return (used, Err(err.unwrap_or(RxDrop::Truncated)));
            };
            let extra = ExtraInfo::read_from_bytes(&raw).unwrap_or_default();
            // Types GSO..=XDP (Linux's header has XDP, Xen's stops at
            // HASH); their contents are not used (nothing was negotiated
            // that needs them).
            if extra.r#type == XEN_NETIF_EXTRA_TYPE_NONE || extra.r#type > XEN_NETIF_EXTRA_TYPE_XDP
            {
                err.get_or_insert(RxDrop::BadExtra(extra.r#type));
            }
            if extra.flags & XEN_NETIF_EXTRA_FLAG_MORE == 0 {
                break;
            }
        }
    }

    // Data slots: the first response, then one more per more_data.
    loop {
        let slot = ring::ring_index(idx, size) as u16;
        if rsp.id != slot {
            err.get_or_insert(RxDrop::BadId { slot, id: rsp.id });
        } else if rsp.status < 0 {
            err.get_or_insert(RxDrop::Status(rsp.status));
        } else if rsp.offset as usize + rsp.status as usize > PAGE_SIZE {
            err.get_or_insert(RxDrop::BadExtent {
                offset: rsp.offset,
                len: rsp.status as u16,
            });
        } else if frags.n == MAX_RX_FRAGS {
            err.get_or_insert(RxDrop::TooManySlots);
        } else {
            frags.frags[frags.n] = RxFrag {
                slot,
                offset: rsp.offset,
                len: rsp.status as u16,
            };
            frags.n += 1;
        }
        if rsp.flags & NETRXF_MORE_DATA == 0 {
            break;
        }
        let Some((i, raw)) = next(&mut used) else {
            err.get_or_insert(RxDrop::Truncated);
            break;
        };
        idx = i;
        rsp = RxResponse::read_from_bytes(&raw).unwrap_or_default();
    }

    if let Some(e) = err {
        return (used, Err(e));
    }
    let total = frags.total();
    if total > max_len {
        return (used, Err(RxDrop::TooBig(total)));
    }
    if total < ETH_HLEN {
        return (used, Err(RxDrop::Runt(total)));
    }
    (used, Ok(frags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use pv_abi::netif::{XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_RSP_ERROR};

    #[test]
    fn raw_tx_slots() {
        let req = TxRequest {
            gref: 0x0102_0304,
            offset: 0x0506,
            flags: 0x0708,
            id: 0x090a,
            size: 0x0b0c,
        };
        assert_eq!(to_tx_slot(&req), [4, 3, 2, 1, 6, 5, 8, 7, 0xa, 9, 0xc, 0xb]);
        let extra = ExtraInfo {
            r#type: 1,
            flags: 1,
            u: [1, 2, 3, 4, 5, 6],
        };
        assert_eq!(to_tx_slot(&extra), [1, 1, 1, 2, 3, 4, 5, 6, 0, 0, 0, 0]);
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("00:16:3e:0a:Bc:ff"),
            Some([0x00, 0x16, 0x3e, 0x0a, 0xbc, 0xff])
        );
        assert_eq!(
            parse_mac("0:16:3e:a:b:c\0"),
            Some([0, 0x16, 0x3e, 0xa, 0xb, 0xc])
        );
        for bad in [
            "",
            "00:16:3e:0a:bc",
            "00:16:3e:0a:bc:ff:00",
            "00:16:3e:0a:bc:fff",
            "00:16:3e:0a:bc:",
            "00-16-3e-0a-bc-ff",
            "00:16:3e:0a:bc:+f",
            "zz:16:3e:0a:bc:ff",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tx_ids() {
        let mut ids = TxIds::new(3);
        assert_eq!((ids.take(), ids.take()), (Some(0), Some(1)));
        assert!(ids.is_in_flight(0) && !ids.is_in_flight(2) && !ids.is_in_flight(9));
        // A response for an id not in flight (or out of range) is refused.
        assert!(!ids.complete(2, true));
        assert!(!ids.complete(300, true));
        assert!(ids.complete(0, true));
        assert!(!ids.complete(0, true), "a second response for one request");
        assert!(ids.complete(1, false));
        assert_eq!(ids.free_count(), 2);
        assert_eq!(
            (ids.take(), ids.take(), ids.take()),
            (Some(0), Some(2), None)
        );
        ids.untake(2);
        assert_eq!(ids.in_flight().collect::<Vec<_>>(), [0]);
        assert_eq!(ids.take(), Some(2));
        assert_eq!(ids.in_flight_count(), 2);
    }

    fn rsp(id: u16, offset: u16, flags: u16, status: i16) -> [u8; 8] {
        let mut b = [0u8; 8];
        b.copy_from_slice(
            RxResponse {
                id,
                offset,
                flags,
                status,
            }
            .as_bytes(),
        );
        b
    }

    fn extra(kind: u8, flags: u8) -> [u8; 8] {
        let mut b = [0u8; 8];
        b.copy_from_slice(
            ExtraInfo {
                r#type: kind,
                flags,
                u: [0xee; 6],
            }
            .as_bytes(),
        );
        b
    }

    /// Runs parse_rx over `slots` laid out from `cons`, checking that
    /// each slot is read once, in order.
    fn parse(cons: u32, slots: &[[u8; 8]], max_len: usize) -> (u32, Result<RxFrags, RxDrop>) {
        let mut reads = Vec::new();
        let r = parse_rx(cons, slots.len() as u32, 256, max_len, |i| {
            reads.push(i);
            slots[i.wrapping_sub(cons) as usize]
        });
        let expect: Vec<u32> = (0..r.0).map(|k| cons.wrapping_add(k)).collect();
        assert_eq!(reads, expect);
        r
    }

    fn frags(r: &Result<RxFrags, RxDrop>) -> Vec<(u16, u16, u16)> {
        r.as_ref()
            .unwrap()
            .as_slice()
            .iter()
            .map(|f| (f.slot, f.offset, f.len))
            .collect()
    }

    #[test]
    fn rx_single_slot() {
        let r = parse(5, &[rsp(5, 0, 0, 60), rsp(6, 0, 0, 60)], 1514);
        assert_eq!(r.0, 1);
        assert_eq!(frags(&r.1), [(5, 0, 60)]);
        // Slot ids wrap with the ring.
        let r = parse(511, &[rsp(255, 10, 0, 1514)], 1514);
        assert_eq!(frags(&r.1), [(255, 10, 1514)]);
    }

    #[test]
    fn rx_chains_and_extras() {
        let slots = [
            rsp(254, 0, NETRXF_MORE_DATA | NETRXF_EXTRA_INFO, 4000),
            extra(XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_FLAG_MORE),
            extra(XEN_NETIF_EXTRA_TYPE_XDP, 0),
            rsp(1, 0, NETRXF_MORE_DATA, 4096),
            rsp(2, 100, 0, 20),
            rsp(3, 0, 0, 60),
        ];
        let r = parse(254, &slots, 10_000);
        assert_eq!(r.0, 5);
        assert_eq!(frags(&r.1), [(254, 0, 4000), (1, 0, 4096), (2, 100, 20)]);
        assert_eq!(r.1.unwrap().total(), 8116);
        // The same frame into a smaller buffer: all five slots consumed.
        assert_eq!(parse(254, &slots, 1514), (5, Err(RxDrop::TooBig(8116))));
    }

    #[test]
    fn rx_bad_slots_are_consumed_and_reported() {
        // Wrong id in the second slot of a chain: the chain is still
        // followed to its end.
        let slots = [
            rsp(0, 0, NETRXF_MORE_DATA, 100),
            rsp(7, 0, NETRXF_MORE_DATA, 100),
            rsp(2, 0, 0, 100),
            rsp(3, 0, 0, 60),
        ];
        assert_eq!(
            parse(0, &slots, 1514),
            (3, Err(RxDrop::BadId { slot: 1, id: 7 }))
        );
        assert_eq!(
            parse(0, &[rsp(0, 0, 0, XEN_NETIF_RSP_ERROR)], 1514),
            (1, Err(RxDrop::Status(-1)))
        );
        assert_eq!(
            parse(0, &[rsp(0, 4000, 0, 97)], 1514),
            (
                1,
                Err(RxDrop::BadExtent {
                    offset: 4000,
                    len: 97
                })
            )
        );
        assert_eq!(
            parse(0, &[rsp(0, 0xffff, 0, i16::MAX)], 1514).1,
            Err(RxDrop::BadExtent {
                offset: 0xffff,
                len: i16::MAX as u16
            })
        );
        assert!(parse(0, &[rsp(0, 4036, 0, 60)], 1514).1.is_ok());
        assert_eq!(
            parse(0, &[rsp(0, 0, NETRXF_EXTRA_INFO, 60), extra(0, 0)], 1514),
            (2, Err(RxDrop::BadExtra(0)))
        );
        assert_eq!(
            parse(0, &[rsp(0, 0, NETRXF_EXTRA_INFO, 60), extra(6, 0)], 1514),
            (2, Err(RxDrop::BadExtra(6)))
        );
        assert_eq!(
            parse(0, &[rsp(0, 0, 0, 13)], 1514),
            (1, Err(RxDrop::Runt(13)))
        );
        assert_eq!(
            parse(0, &[rsp(0, 0, 0, 0)], 1514),
            (1, Err(RxDrop::Runt(0)))
        );
    }

    #[test]
    fn rx_truncated_chains() {
        assert_eq!(
            parse(0, &[rsp(0, 0, NETRXF_MORE_DATA, 100)], 1514),
            (1, Err(RxDrop::Truncated))
        );
        assert_eq!(
            parse(0, &[rsp(0, 0, NETRXF_EXTRA_INFO, 100)], 1514),
            (1, Err(RxDrop::Truncated))
        );
        assert_eq!(
            parse(
                0,
                &[
                    rsp(0, 0, NETRXF_EXTRA_INFO, 100),
                    extra(1, XEN_NETIF_EXTRA_FLAG_MORE)
                ],
                1514
            ),
            (2, Err(RxDrop::Truncated))
        );
        // Nothing available at all (the caller never asks, but must not
        // be told a slot was used).
        assert_eq!(
            parse_rx(0, 0, 256, 1514, |_| unreachable!()),
            (0, Err(RxDrop::Truncated))
        );
    }

    #[test]
    fn rx_too_many_slots() {
        let n = MAX_RX_FRAGS + 1;
        let slots: Vec<[u8; 8]> = (0..n)
            .map(|i| {
                let more = if i + 1 < n { NETRXF_MORE_DATA } else { 0 };
                rsp(i as u16, 0, more, 100)
            })
            .collect();
        assert_eq!(
            parse(0, &slots, 65536),
            (n as u32, Err(RxDrop::TooManySlots))
        );
        let ok = &slots[1..];
        let r = parse(1, ok, 65536);
        assert_eq!(r.0, MAX_RX_FRAGS as u32);
        assert_eq!(r.1.unwrap().total(), 100 * MAX_RX_FRAGS);
    }

    #[test]
    fn rx_never_reads_past_available() {
        // A chain of more_data that never ends, over a ring's worth of
        // slots: stops at `available`.
        let r = parse_rx(0, 256, 256, 1 << 20, |i| {
            assert!(i < 256);
            rsp(i as u16, 0, NETRXF_MORE_DATA, 1)
        });
        assert_eq!(r.0, 256);
        assert!(r.1.is_err());
    }
}
