//! A front end's shared ring (io/ring.h) as a back end sees it once its
//! pages are mapped: the header's producer and event words, slots copied
//! out once, responses written in place and published with
//! RING_PUSH_RESPONSES_AND_CHECK_NOTIFY. The index logic is the pure
//! `dom0::backring::BackRing`; blkback and netback both use this.

use core::mem::offset_of;
use core::sync::atomic::{AtomicU32, Ordering, fence};

use dom0::backring::BackRing;
use guest_shim::events;
use pv_abi::ring::SringHeader;

const REQ_PROD: usize = offset_of!(SringHeader, req_prod);
const REQ_EVENT: usize = offset_of!(SringHeader, req_event);
const RSP_PROD: usize = offset_of!(SringHeader, rsp_prod);
const RSP_EVENT: usize = offset_of!(SringHeader, rsp_event);

pub struct MappedRing {
    /// Where the ring's pages are mapped (`2^order` of them, contiguous).
    va: *mut u8,
    pub ring: BackRing,
    /// `rsp_prod` as last published.
    published: u32,
    /// Our port for the front end's notifications.
    pub port: u32,
}

impl MappedRing {
    /// The ring mapped at `va`, indices at 0 as the front end's
    /// `SHARED_RING_INIT` left them.
    pub fn new(va: *mut u8, ring: BackRing, port: u32) -> Self {
        MappedRing {
            va,
            ring,
            published: 0,
            port,
        }
    }

    /// The ring mapped at `va`, its indices where the front end left them
    /// (`BACK_RING_ATTACH`: a front end may publish before we connect, as
    /// Linux's netfront posts its rx buffers); `None` if they are
    /// impossible.
    pub fn attach(va: *mut u8, ring: BackRing, port: u32) -> Option<Self> {
        let mut r = Self::new(va, ring, port);
        let req_prod = r.word(REQ_PROD).load(Ordering::Acquire);
        let rsp_prod = r.word(RSP_PROD).load(Ordering::Acquire);
        r.ring.attach(req_prod, rsp_prod).ok()?;
        r.published = rsp_prod;
        Some(r)
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: the mapped ring's header: aligned u32s shared with the
        // front end, accessed atomically.
        unsafe { AtomicU32::from_ptr(self.va.add(offset).cast()) }
    }

    /// The front end's `req_prod`, read once, before the slots it covers.
    pub fn req_prod(&self) -> u32 {
        let prod = self.word(REQ_PROD).load(Ordering::Acquire);
        fence(Ordering::Acquire);
        prod
    }

    /// Copies the first `N` bytes of slot `idx` out of the ring (the only
    /// read of it).
    pub fn read<const N: usize>(&self, idx: u32) -> [u8; N] {
        read_at(self.va, self.ring.slot_offset(idx))
    }

    /// Writes `bytes` as the next response.
    pub fn respond(&mut self, bytes: &[u8]) {
        let at = self.ring.next_response();
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: a response slot inside the mapped pages.
            unsafe { core::ptr::write_volatile(self.va.add(at + i), *b) };
        }
    }

    /// RING_PUSH_RESPONSES_AND_CHECK_NOTIFY.
    pub fn push(&mut self) {
        let new = self.ring.rsp_prod_pvt();
        if new == self.published {
            return;
        }
        let old = self.published;
        self.word(RSP_PROD).store(new, Ordering::Release);
        fence(Ordering::SeqCst);
        self.published = new;
        let event = self.word(RSP_EVENT).load(Ordering::Acquire);
        if pv_abi::ring::need_notify(new, old, event) {
            let _ = events::send(self.port);
        }
    }

    /// Asks for a notification at `event` and tells whether requests came
    /// past `seen` meanwhile (RING_FINAL_CHECK_FOR_REQUESTS).
    pub fn rearm(&self, event: u32, seen: u32) -> bool {
        self.word(REQ_EVENT).store(event, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        self.req_prod() != seen
    }

    /// A copy of the ring's geometry, for reading slots while the
    /// `BackRing` itself is borrowed (by `netback::decode_tx`).
    pub fn slots(&self) -> Slots {
        Slots {
            va: self.va,
            geometry: self.ring.clone(),
        }
    }
}

/// Reads slots of a [`MappedRing`] by index.
pub struct Slots {
    va: *mut u8,
    geometry: BackRing,
}

impl Slots {
    pub fn read<const N: usize>(&self, idx: u32) -> [u8; N] {
        read_at(self.va, self.geometry.slot_offset(idx))
    }
}

/// Copies the `N` bytes at `at` in the mapped ring at `va`.
fn read_at<const N: usize>(va: *mut u8, at: usize) -> [u8; N] {
    let mut slot = [0u8; N];
    for (i, b) in slot.iter_mut().enumerate() {
        // SAFETY: `at + N` stays inside the mapped ring: `slot_offset` is
        // within the ring's pages for any index, and callers read at most
        // one entry.
        *b = unsafe { core::ptr::read_volatile(va.add(at + i)) };
    }
    slot
}
