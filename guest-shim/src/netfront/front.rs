//! The netfront device: the handshake, the two rings, their grants and
//! event channels, and the buffers (see the parent module for the
//! protocol).
//!
//! Buffers come from a static pool of pages (a full rx ring and a full
//! tx ring's worth, 1.5 MiB: one interface with the default options, or
//! several with fewer buffers), not from the 1 MiB heap; the two ring
//! pages come from the heap. Pool pages are zeroed when taken, so one
//! backend never sees what another wrote. A page a backend still has
//! mapped when we let go of it is never reused.
//!
//! Grants: each ring page for the connection's life; each receive
//! buffer while it is posted; each transmit buffer while its frame is in
//! flight. At most 2 + 256 + 256 at once, more than our one grant frame
//! holds (504): when it is full, posting waits and `send` says
//! `NoGrants`.
//!
//! The caller must have run [`crate::events::init`] (shared info, for
//! time and event bits) and [`crate::grants::init`] first.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use pv_abi::PAGE_SIZE;
use pv_abi::event_channel::EvtchnPort;
use pv_abi::grant_table::GrantRef;
use pv_abi::netif::{XEN_NETIF_RSP_NULL, XEN_NETIF_RSP_OKAY};
use pv_abi::ring::{self, RingIdx, SRING_HEADER_SIZE, SringHeader};
use pv_abi::xenbus::XenbusState;
use zerocopy::{FromBytes, IntoBytes};

use super::{
    Counters, ETH_HLEN, MAX_FRAME, RX_ENTRY_SIZE, RX_RING_SIZE, RxDrop, RxRequest, TX_BUF_SIZE,
    TX_ENTRY_SIZE, TX_RING_SIZE, TxIds, TxRequest, TxResponse, parse_mac, parse_rx,
};
use crate::pages::PageBuf;
use crate::xenbus::{XenbusError, read_flag, read_num, read_opt, read_state, wait_state};
use crate::xenstore::{XenStore, XsError};
use crate::{events, grants, hypercall, shared_info, time};

const MS: u64 = 1_000_000;

/// Why connecting or sending failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetError {
    /// A XenStore request failed.
    Xenstore(XsError),
    /// `device/vif/<handle>` (or its `backend` node) does not exist.
    NoSuchDevice,
    /// A node the protocol requires is missing or malformed.
    BadNode(&'static str),
    /// The backend lacks a feature we need (`feature-rx-copy`).
    NotSupported(&'static str),
    /// The backend went to Closing/Closed (or vanished) instead of
    /// connecting.
    BackendGone,
    /// No state change within the handshake time-out.
    Timeout,
    /// The pool or the heap could not give the pages.
    NoMemory,
    /// No free grant reference.
    NoGrants,
    /// An event-channel operation failed.
    EventChannel(hypercall::Errno),
    /// A frame shorter than an Ethernet header or longer than
    /// [`MAX_FRAME`].
    BadFrame,
    /// No free tx slot right now (the backend has not answered enough
    /// of what was sent): try again after [`Netfront::wait`].
    Busy,
    /// The backend published response indices beyond what was
    /// requested: the rings are unusable (disconnect).
    Broken,
}

impl From<XsError> for NetError {
    fn from(e: XsError) -> Self {
        NetError::Xenstore(e)
    }
}

impl From<XenbusError> for NetError {
    fn from(e: XenbusError) -> Self {
        match e {
            XenbusError::Xenstore(e) => NetError::Xenstore(e),
            XenbusError::BadNode(n) => NetError::BadNode(n),
            XenbusError::Timeout => NetError::Timeout,
            XenbusError::Gone => NetError::BackendGone,
        }
    }
}

/// Connection options.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Use `event-channel-tx`/`-rx` if the backend offers
    /// `feature-split-event-channels`; otherwise (or if not offered) one
    /// `event-channel`.
    pub split_event_channels: bool,
    /// What we write as `feature-sg`: 1 lets the backend split a
    /// received frame over several slots (`NETRXF_more_data`), which
    /// `recv` reassembles. We always send in one slot.
    pub sg: bool,
    /// Receive buffers posted (kept posted as frames are taken): at most
    /// the ring's 256; 0 means 256.
    pub rx_buffers: u32,
    /// Frames in flight on the tx ring at most (1..=256; 0 means 256).
    pub tx_slots: u32,
    /// Time-out of each handshake step (ms): the backend may still be
    /// coming up when we boot.
    pub timeout_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            split_event_channels: true,
            sg: false,
            rx_buffers: 0,
            tx_slots: 0,
            timeout_ms: 30_000,
        }
    }
}

/// What the backend offers (its nodes as read at InitWait).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    pub rx_copy: bool,
    pub split_event_channels: bool,
    pub sg: bool,
    pub gso_tcpv4: bool,
    pub gso_tcpv6: bool,
    pub ipv6_csum_offload: bool,
    /// `multi-queue-max-queues` (`None` when absent); we use one queue.
    pub multi_queue_max_queues: Option<u64>,
}

// ---------------------------------------------------------------------------
// The page pool
// ---------------------------------------------------------------------------

const TX_PAGES: usize = TX_RING_SIZE as usize * TX_BUF_SIZE / PAGE_SIZE;
const POOL_PAGES: usize = RX_RING_SIZE as usize + TX_PAGES;
const POOL_WORDS: usize = POOL_PAGES.div_ceil(64);

#[repr(C, align(4096))]
struct Pool([u8; POOL_PAGES * PAGE_SIZE]);

/// Pages for buffers; accessed only through raw pointers from
/// `pool_addr`, one owner (a `Netfront`) per page.
static mut POOL: Pool = Pool([0; POOL_PAGES * PAGE_SIZE]);
/// Bit i set: page i is taken (or leaked for good).
static POOL_USED: [AtomicU64; POOL_WORDS] = [const { AtomicU64::new(0) }; POOL_WORDS];

/// A zeroed page of the pool (its index), taken.
fn pool_alloc() -> Option<u16> {
    for (w, word) in POOL_USED.iter().enumerate() {
        let mut cur = word.load(Ordering::SeqCst);
        loop {
            let bit = (!cur).trailing_zeros() as usize;
            let idx = w * 64 + bit;
            if bit == 64 || idx >= POOL_PAGES {
                break;
            }
            match word.compare_exchange(cur, cur | 1 << bit, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => {
                    // SAFETY: page `idx` of the pool, just taken by us
                    // and granted to nobody: no one else accesses it.
                    unsafe {
                        core::ptr::write_bytes(pool_addr(idx as u16) as *mut u8, 0, PAGE_SIZE)
                    };
                    return Some(idx as u16);
                }
                Err(now) => cur = now,
            }
        }
    }
    None
}

/// Gives a page back (only once no grant of it is left).
fn pool_free(idx: u16) {
    let idx = idx as usize;
    if idx < POOL_PAGES {
        POOL_USED[idx / 64].fetch_and(!(1 << (idx % 64)), Ordering::SeqCst);
    }
}

/// The address (also the guest-physical address) of pool page `idx`.
fn pool_addr(idx: u16) -> u64 {
    (&raw mut POOL) as u64 + idx as u64 * PAGE_SIZE as u64
}

fn now() -> u64 {
    time::system_time_ns()
}

// ---------------------------------------------------------------------------
// The device
// ---------------------------------------------------------------------------

/// A ring page and its grant.
struct SharedRing {
    page: PageBuf,
    gref: Option<GrantRef>,
}

/// A connected network interface.
pub struct Netfront {
    handle: u32,
    front: String,
    backend: String,
    backend_id: u16,
    mac: [u8; 6],
    features: Features,
    opts: Options,
    split: bool,
    tx_port: EvtchnPort,
    rx_port: EvtchnPort,
    tx_ring: Option<SharedRing>,
    rx_ring: Option<SharedRing>,

    /// Next tx slot to fill; the tx `req_prod` we last published; the
    /// next tx response to read.
    tx_prod_pvt: RingIdx,
    tx_prod_pub: RingIdx,
    tx_cons: RingIdx,
    tx_ids: TxIds,
    /// Pool pages of the tx buffers (id i: page i / 2, half i % 2).
    tx_pages: Vec<u16>,
    /// A page some grant of which could not be revoked: never freed.
    tx_page_leaked: Vec<bool>,
    /// The grant of each id's buffer while it is in flight.
    tx_grefs: Vec<Option<GrantRef>>,

    rx_prod_pvt: RingIdx,
    rx_prod_pub: RingIdx,
    rx_cons: RingIdx,
    /// Pool pages of the rx buffers, by buffer number.
    rx_pages: Vec<u16>,
    /// A buffer whose grant could not be revoked: never reused.
    rx_leaked: Vec<bool>,
    /// By ring slot: the buffer posted there and its grant.
    rx_posted: Vec<Option<(u16, GrantRef)>>,
    /// Buffers not posted.
    rx_spare: Vec<u16>,
    rx_target: u32,
    rx_posting: bool,

    counters: Counters,
    last_rx_drop: Option<RxDrop>,
    broken: bool,
}

impl Netfront {
    /// Connects to `device/vif/<handle>` as Linux's netfront does: reads
    /// `backend`, `backend-id` and `mac`; waits for the backend's
    /// InitWait; reads its features (`feature-rx-copy` is required);
    /// sets up both rings, their grants and the event channel(s); writes
    /// `tx-ring-ref`, `rx-ring-ref`, `event-channel` (or
    /// `event-channel-tx`/`-rx`), `request-rx-copy`, `feature-rx-notify`,
    /// `feature-sg`, `feature-no-csum-offload` (and
    /// `multi-queue-num-queues` = 1 if the backend offers queues) in one
    /// transaction; posts the receive buffers; says Connected; and waits
    /// for the backend's Connected.
    pub fn connect(xs: &mut XenStore, handle: u32, opts: Options) -> Result<Netfront, NetError> {
        shared_info::map().map_err(NetError::EventChannel)?;
        let front = format!("device/vif/{handle}");
        let backend = read_opt(xs, &format!("{front}/backend"))?
            .filter(|b| !b.is_empty())
            .ok_or(NetError::NoSuchDevice)?;
        let backend_id = read_num(xs, &format!("{front}/backend-id"), "backend-id")?
            .and_then(|d| u16::try_from(d).ok())
            .ok_or(NetError::BadNode("backend-id"))?;
        let mac = read_opt(xs, &format!("{front}/mac"))?
            .and_then(|m| parse_mac(&m))
            .ok_or(NetError::BadNode("mac"))?;
        let timeout = opts.timeout_ms.saturating_mul(MS);
        let state_path = format!("{front}/state");

        // 1. Initialising (as Linux's probe says), then the backend's
        // InitWait. One left Closed by an earlier front end is nudged
        // once more, as a restarted front end would.
        if read_state(xs, &state_path)? != Some(XenbusState::Initialising) {
            xs.write(&state_path, "1")?;
        }
        let mut nudged = false;
        wait_state(
            xs,
            &backend,
            now().saturating_add(timeout),
            |xs: &mut XenStore, st| -> Result<bool, NetError> {
                match st {
                    Some(XenbusState::InitWait) => Ok(true),
                    Some(XenbusState::Closed) if !nudged => {
                        nudged = true;
                        xs.write(&state_path, "1")?;
                        Ok(false)
                    }
                    _ => Ok(false),
                }
            },
        )?;

        // 2. What the backend offers.
        let features = read_features(xs, &backend)?;
        if !features.rx_copy {
            return Err(NetError::NotSupported("feature-rx-copy"));
        }
        let split = opts.split_event_channels && features.split_event_channels;
        let n_tx = match opts.tx_slots {
            0 => TX_RING_SIZE,
            n => n.min(TX_RING_SIZE),
        };
        let n_rx = match opts.rx_buffers {
            0 => RX_RING_SIZE,
            n => n.min(RX_RING_SIZE),
        };
        let mut me = Netfront {
            handle,
            front,
            backend,
            backend_id,
            mac,
            features,
            opts,
            split,
            tx_port: 0,
            rx_port: 0,
            tx_ring: None,
            rx_ring: None,
            tx_prod_pvt: 0,
            tx_prod_pub: 0,
            tx_cons: 0,
            tx_ids: TxIds::new(n_tx as u16),
            tx_pages: Vec::new(),
            tx_page_leaked: Vec::new(),
            tx_grefs: alloc::vec![None; n_tx as usize],
            rx_prod_pvt: 0,
            rx_prod_pub: 0,
            rx_cons: 0,
            rx_pages: Vec::new(),
            rx_leaked: Vec::new(),
            rx_posted: alloc::vec![None; RX_RING_SIZE as usize],
            rx_spare: Vec::new(),
            rx_target: n_rx,
            rx_posting: true,
            counters: Counters::default(),
            last_rx_drop: None,
            broken: false,
        };
        // From here on, dropping `me` revokes what was granted.

        // 3. Rings (SHARED_RING_INIT), granted read-write.
        me.tx_ring = Some(me.new_ring()?);
        me.rx_ring = Some(me.new_ring()?);

        // 4. Event channel(s), masked: we poll them.
        me.tx_port = events::alloc_unbound(backend_id).map_err(NetError::EventChannel)?;
        events::mask_port(me.tx_port);
        me.rx_port = if split {
            let p = events::alloc_unbound(backend_id).map_err(NetError::EventChannel)?;
            events::mask_port(p);
            p
        } else {
            me.tx_port
        };

        // 5. Buffers.
        for _ in 0..(n_tx as usize).div_ceil(2) {
            me.tx_pages.push(pool_alloc().ok_or(NetError::NoMemory)?);
            me.tx_page_leaked.push(false);
        }
        for b in 0..n_rx as u16 {
            me.rx_pages.push(pool_alloc().ok_or(NetError::NoMemory)?);
            me.rx_leaked.push(false);
            me.rx_spare.push(b);
        }
        me.rx_spare.reverse();

        // 6. One transaction for everything the backend reads at connect.
        me.publish(xs)?;

        // 7. Receive buffers, and a kick on each channel (Linux's
        // xennet_connect), then Connected straight from Initialising.
        me.refill_rx();
        let _ = events::send(me.tx_port);
        if me.split {
            let _ = events::send(me.rx_port);
        }
        xs.write(&me.state_path(), "4")?;

        // 8. The backend's Connected.
        let connected = wait_state(
            xs,
            &me.backend,
            now().saturating_add(timeout),
            |_: &mut XenStore, st| -> Result<bool, NetError> {
                match st {
                    Some(XenbusState::Connected) => Ok(true),
                    Some(XenbusState::Closing | XenbusState::Closed) => Err(NetError::BackendGone),
                    _ => Ok(false),
                }
            },
        );
        if let Err(e) = connected {
            // Say we gave up, so that the backend does not wait for us.
            let _ = xs.write(&me.state_path(), "6");
            return Err(e);
        }
        Ok(me)
    }

    fn new_ring(&self) -> Result<SharedRing, NetError> {
        let page = PageBuf::zeroed(PAGE_SIZE).ok_or(NetError::NoMemory)?;
        // SAFETY: the start of our zeroed, page-aligned, not yet shared
        // ring page (SHARED_RING_INIT; the entries stay zero).
        unsafe { core::ptr::write(page.addr() as *mut SringHeader, SringHeader::new()) };
        let gref = grants::grant_access(self.backend_id, page.addr() >> 12, false);
        let ring = SharedRing { page, gref };
        if ring.gref.is_none() {
            return Err(NetError::NoGrants);
        }
        Ok(ring)
    }

    /// Writes the connection's nodes in one transaction. A node of the
    /// other event-channel scheme left by an earlier connection is
    /// removed first (a backend looks for the split nodes first).
    fn publish(&self, xs: &mut XenStore) -> Result<(), NetError> {
        let f = &self.front;
        let stale: &[&str] = if self.split {
            &["event-channel"]
        } else {
            &["event-channel-tx", "event-channel-rx"]
        };
        for name in stale {
            let path = format!("{f}/{name}");
            if read_opt(xs, &path)?.is_some() {
                xs.rm(&path)?;
            }
        }
        let gref = |r: &Option<SharedRing>| r.as_ref().and_then(|r| r.gref).unwrap_or(0);
        let mut nodes: Vec<(String, String)> = alloc::vec![
            (
                format!("{f}/tx-ring-ref"),
                format!("{}", gref(&self.tx_ring))
            ),
            (
                format!("{f}/rx-ring-ref"),
                format!("{}", gref(&self.rx_ring))
            ),
        ];
        if self.split {
            nodes.push((format!("{f}/event-channel-tx"), format!("{}", self.tx_port)));
            nodes.push((format!("{f}/event-channel-rx"), format!("{}", self.rx_port)));
        } else {
            nodes.push((format!("{f}/event-channel"), format!("{}", self.tx_port)));
        }
        if self.features.multi_queue_max_queues.is_some() {
            nodes.push((format!("{f}/multi-queue-num-queues"), String::from("1")));
        }
        nodes.push((format!("{f}/request-rx-copy"), String::from("1")));
        nodes.push((format!("{f}/feature-rx-notify"), String::from("1")));
        nodes.push((
            format!("{f}/feature-sg"),
            String::from(if self.opts.sg { "1" } else { "0" }),
        ));
        nodes.push((format!("{f}/feature-no-csum-offload"), String::from("1")));
        crate::xenbus::write_all(xs, &nodes).map_err(Into::into)
    }

    fn state_path(&self) -> String {
        format!("{}/state", self.front)
    }

    /// Our MAC address (the `mac` node).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The `device/vif` handle this is connected to.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The backend's XenStore directory.
    pub fn backend_path(&self) -> &str {
        &self.backend
    }

    /// The backend's domain.
    pub fn backend_id(&self) -> u16 {
        self.backend_id
    }

    /// What the backend offered.
    pub fn features(&self) -> Features {
        self.features
    }

    /// Whether split event channels are in use.
    pub fn split_event_channels(&self) -> bool {
        self.split
    }

    /// Our ports: (tx, rx); the same port twice without split channels.
    pub fn ports(&self) -> (EvtchnPort, EvtchnPort) {
        (self.tx_port, self.rx_port)
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Why the last dropped received frame was dropped.
    pub fn last_rx_drop(&self) -> Option<RxDrop> {
        self.last_rx_drop
    }

    /// Whether the rings are unusable (see [`NetError::Broken`]).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The backend's current state (`None`: absent or unreadable).
    pub fn backend_state(&self, xs: &mut XenStore) -> Option<XenbusState> {
        read_state(xs, &format!("{}/state", self.backend))
            .ok()
            .flatten()
    }

    /// Receive requests posted and not yet answered.
    pub fn rx_posted(&self) -> u32 {
        self.rx_prod_pvt.wrapping_sub(self.rx_cons)
    }

    /// Frames [`Netfront::send`] would take right now (after taking the
    /// backend's tx responses).
    pub fn tx_room(&mut self) -> usize {
        self.reclaim_tx();
        if self.broken {
            return 0;
        }
        let ring_room = TX_RING_SIZE - self.tx_prod_pvt.wrapping_sub(self.tx_cons);
        (ring_room as usize).min(self.tx_ids.free_count())
    }
}

fn read_features(xs: &mut XenStore, b: &str) -> Result<Features, NetError> {
    let flag = |xs: &mut XenStore, name: &'static str| read_flag(xs, &format!("{b}/{name}"), name);
    Ok(Features {
        rx_copy: flag(xs, "feature-rx-copy")?,
        split_event_channels: flag(xs, "feature-split-event-channels")?,
        sg: flag(xs, "feature-sg")?,
        gso_tcpv4: flag(xs, "feature-gso-tcpv4")?,
        gso_tcpv6: flag(xs, "feature-gso-tcpv6")?,
        ipv6_csum_offload: flag(xs, "feature-ipv6-csum-offload")?,
        multi_queue_max_queues: read_num(
            xs,
            &format!("{b}/multi-queue-max-queues"),
            "multi-queue-max-queues",
        )?,
    })
}

// ---------------------------------------------------------------------------
// Ring access
// ---------------------------------------------------------------------------

/// The header field at `offset` of the ring page at `base`.
fn header(base: u64, offset: usize) -> &'static AtomicU32 {
    assert!(offset + 4 <= SRING_HEADER_SIZE && offset.is_multiple_of(4));
    // SAFETY: an aligned u32 of the header of a ring page we hold for as
    // long as the reference is used (callers hold `&self` with the ring
    // in it); the backend accesses it concurrently, so only atomically.
    unsafe { AtomicU32::from_ptr((base as usize + offset) as *mut u32) }
}

fn sh_req_prod(base: u64) -> &'static AtomicU32 {
    header(base, offset_of!(SringHeader, req_prod))
}
fn sh_req_event(base: u64) -> &'static AtomicU32 {
    header(base, offset_of!(SringHeader, req_event))
}
fn sh_rsp_prod(base: u64) -> &'static AtomicU32 {
    header(base, offset_of!(SringHeader, rsp_prod))
}
fn sh_rsp_event(base: u64) -> &'static AtomicU32 {
    header(base, offset_of!(SringHeader, rsp_event))
}

/// The address of slot `idx` of a ring of `size` slots of `slot_size`
/// bytes at `base`.
fn slot_addr(base: u64, idx: RingIdx, size: u32, slot_size: usize) -> usize {
    base as usize + SRING_HEADER_SIZE + ring::ring_index(idx, size) * slot_size
}

/// Writes `bytes` at the start of slot `idx` of a ring of `size` slots of
/// `entry` bytes (a request fills its slot; a slot is the union of a
/// request and a response, so the stride is `entry`, not the length).
fn write_slot(base: u64, idx: RingIdx, size: u32, entry: usize, bytes: &[u8]) {
    debug_assert!(bytes.len() <= entry);
    let at = slot_addr(base, idx, size, entry) as *mut u8;
    // SAFETY: one whole slot inside our ring page (the index is taken
    // modulo the ring size; size * slot size + header <= one page); the
    // backend reads it only once req_prod covers it.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), at, bytes.len()) };
}

/// Reads the first `N` bytes of slot `idx` (slots of `entry` bytes).
fn read_slot<const N: usize>(base: u64, idx: RingIdx, size: u32, entry: usize) -> [u8; N] {
    debug_assert!(N <= entry);
    let at = slot_addr(base, idx, size, entry) as *const [u8; N];
    // SAFETY: one whole slot inside our ring page; a volatile copy, read
    // once, as the backend may write it concurrently.
    unsafe { core::ptr::read_volatile(at) }
}

/// RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: publishes `new` as `req_prod`
/// (our last published value was `old`) and says whether the peer asked
/// to be told (its `req_event` in `(old, new]`).
fn push_requests(base: u64, old: RingIdx, new: RingIdx) -> bool {
    // The slots before the index that covers them, and the index before
    // we read req_event.
    fence(Ordering::Release);
    sh_req_prod(base).store(new, Ordering::Release);
    fence(Ordering::SeqCst);
    ring::need_notify(new, old, sh_req_event(base).load(Ordering::Acquire))
}

impl Netfront {
    fn tx_base(&self) -> Option<u64> {
        self.tx_ring.as_ref().map(|r| r.page.addr())
    }

    fn rx_base(&self) -> Option<u64> {
        self.rx_ring.as_ref().map(|r| r.page.addr())
    }

    /// The rings cannot be trusted any more.
    fn break_rings(&mut self) {
        if !self.broken {
            self.counters.protocol_errors += 1;
        }
        self.broken = true;
    }

    /// Whether the backend has published responses we have not read.
    fn has_work(&self) -> bool {
        let rx = self
            .rx_base()
            .is_some_and(|b| sh_rsp_prod(b).load(Ordering::Acquire) != self.rx_cons);
        let tx = self
            .tx_base()
            .is_some_and(|b| sh_rsp_prod(b).load(Ordering::Acquire) != self.tx_cons);
        rx || tx
    }
}

// ---------------------------------------------------------------------------
// Transmit
// ---------------------------------------------------------------------------

impl Netfront {
    /// The pool page and offset of tx id `id`'s buffer.
    fn tx_buf(&self, id: u16) -> (u16, u16) {
        let per_page = (PAGE_SIZE / TX_BUF_SIZE) as u16;
        (
            self.tx_pages[(id / per_page) as usize],
            (id % per_page) * TX_BUF_SIZE as u16,
        )
    }

    /// Sends one Ethernet frame (`ETH_HLEN..=MAX_FRAME` bytes, without
    /// FCS; checksums computed by the caller) in one tx slot: copied
    /// into the buffer of a free id, granted read-only, published, the
    /// backend notified if it asked. Answered requests are reclaimed
    /// first and after. `Busy` when the ring or the ids are all in
    /// flight.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if !(ETH_HLEN..=MAX_FRAME).contains(&frame.len()) {
            return Err(NetError::BadFrame);
        }
        let r = self.try_send(frame);
        if r.is_err() {
            self.counters.tx_dropped += 1;
        }
        self.reclaim_tx();
        r
    }

    fn try_send(&mut self, frame: &[u8]) -> Result<(), NetError> {
        self.reclaim_tx();
        let Some(base) = self.tx_base().filter(|_| !self.broken) else {
            return Err(NetError::Broken);
        };
        if self.tx_prod_pvt.wrapping_sub(self.tx_cons) >= TX_RING_SIZE {
            return Err(NetError::Busy);
        }
        let id = self.tx_ids.take().ok_or(NetError::Busy)?;
        let (page, offset) = self.tx_buf(id);
        let Some(gref) = grants::grant_access(self.backend_id, pool_addr(page) >> 12, true) else {
            self.tx_ids.untake(id);
            return Err(NetError::NoGrants);
        };
        let at = (pool_addr(page) + offset as u64) as *mut u8;
        // SAFETY: the half page of id `id`, which is not in flight (it
        // was free), inside our pool page; at most 1514 <= 2048 bytes.
        unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), at, frame.len()) };
        self.tx_grefs[id as usize] = Some(gref);
        let req = TxRequest {
            gref,
            offset,
            flags: 0,
            id,
            size: frame.len() as u16,
        };
        write_slot(
            base,
            self.tx_prod_pvt,
            TX_RING_SIZE,
            TX_ENTRY_SIZE,
            req.as_bytes(),
        );
        self.tx_prod_pvt = self.tx_prod_pvt.wrapping_add(1);
        self.push_tx();
        self.counters.tx_frames += 1;
        self.counters.tx_bytes += frame.len() as u64;
        Ok(())
    }

    fn push_tx(&mut self) {
        let Some(base) = self.tx_base() else { return };
        let (old, new) = (self.tx_prod_pub, self.tx_prod_pvt);
        if old == new {
            return;
        }
        self.tx_prod_pub = new;
        if push_requests(base, old, new) {
            let _ = events::send(self.tx_port);
        }
    }

    /// Takes the backend's tx responses (xennet_tx_buf_gc): each frees
    /// its id once the buffer's grant is revoked; an error status is
    /// counted; a response for an id not in flight is counted and
    /// ignored; indices beyond what was sent break the rings. Ends with
    /// RING_FINAL_CHECK_FOR_RESPONSES, so the backend notifies us of
    /// the next one.
    fn reclaim_tx(&mut self) {
        let Some(base) = self.tx_base().filter(|_| !self.broken) else {
            return;
        };
        loop {
            let prod = sh_rsp_prod(base).load(Ordering::Acquire);
            let outstanding = self.tx_prod_pvt.wrapping_sub(self.tx_cons);
            if prod.wrapping_sub(self.tx_cons) > outstanding {
                self.break_rings();
                return;
            }
            while self.tx_cons != prod {
                let raw: [u8; 4] = read_slot(base, self.tx_cons, TX_RING_SIZE, TX_ENTRY_SIZE);
                self.tx_cons = self.tx_cons.wrapping_add(1);
                let rsp = TxResponse::read_from_bytes(&raw).unwrap_or_default();
                if rsp.status == XEN_NETIF_RSP_NULL {
                    continue;
                }
                if !self.tx_ids.is_in_flight(rsp.id) {
                    self.counters.protocol_errors += 1;
                    continue;
                }
                let revoked = self.tx_grefs[rsp.id as usize]
                    .take()
                    .is_none_or(grants::revoke);
                if !revoked {
                    // The backend still maps the buffer: never reuse it.
                    self.counters.protocol_errors += 1;
                    let page = rsp.id as usize / (PAGE_SIZE / TX_BUF_SIZE);
                    self.tx_page_leaked[page] = true;
                }
                self.tx_ids.complete(rsp.id, revoked);
                if rsp.status != XEN_NETIF_RSP_OKAY {
                    self.counters.tx_errors += 1;
                }
            }
            sh_rsp_event(base).store(ring::final_check_event(self.tx_cons), Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if sh_rsp_prod(base).load(Ordering::Acquire) == self.tx_cons {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Receive
// ---------------------------------------------------------------------------

impl Netfront {
    /// Posts spare buffers (each granted to the backend for as long as
    /// it is posted) until `rx_target` are posted or the ring is full,
    /// publishes them and notifies the backend if it asked
    /// (xennet_alloc_rx_buffers). Slot i carries id i, as Linux posts.
    fn refill_rx(&mut self) {
        let Some(base) = self.rx_base().filter(|_| !self.broken) else {
            return;
        };
        if !self.rx_posting {
            return;
        }
        while self.rx_posted() < self.rx_target.min(RX_RING_SIZE) {
            let Some(buf) = self.rx_spare.pop() else {
                break;
            };
            let page = self.rx_pages[buf as usize];
            let Some(gref) = grants::grant_access(self.backend_id, pool_addr(page) >> 12, false)
            else {
                self.rx_spare.push(buf);
                break;
            };
            let slot = ring::ring_index(self.rx_prod_pvt, RX_RING_SIZE);
            self.rx_posted[slot] = Some((buf, gref));
            let req = RxRequest {
                id: slot as u16,
                pad: 0,
                gref,
            };
            write_slot(
                base,
                self.rx_prod_pvt,
                RX_RING_SIZE,
                RX_ENTRY_SIZE,
                req.as_bytes(),
            );
            self.rx_prod_pvt = self.rx_prod_pvt.wrapping_add(1);
        }
        let (old, new) = (self.rx_prod_pub, self.rx_prod_pvt);
        if old != new {
            self.rx_prod_pub = new;
            if push_requests(base, old, new) {
                let _ = events::send(self.rx_port);
            }
        }
    }

    /// Receives one frame into `buf`: its length, or `None` when none is
    /// waiting (then RING_FINAL_CHECK_FOR_RESPONSES has set `rsp_event`,
    /// so the backend notifies us of the next one). A frame over several
    /// slots (`NETRXF_more_data`, with `feature-sg`) is reassembled;
    /// extra-info slots are skipped. A frame with a bad slot, or longer
    /// than `buf`, is counted in `rx_errors` and dropped (at most a
    /// ring's worth per call: then `None`, with responses still waiting,
    /// which [`Netfront::wait`] reports at once). The buffers used are
    /// posted again.
    pub fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        let base = self.rx_base()?;
        // A backend that answers every repost with another bad frame
        // gets a ring's worth of drops per call, then the caller's turn.
        for _ in 0..=RX_RING_SIZE {
            if self.broken {
                return None;
            }
            let prod = sh_rsp_prod(base).load(Ordering::Acquire);
            let available = prod.wrapping_sub(self.rx_cons);
            if available > self.rx_posted() {
                self.break_rings();
                return None;
            }
            if available == 0 {
                sh_rsp_event(base).store(ring::final_check_event(self.rx_cons), Ordering::SeqCst);
                fence(Ordering::SeqCst);
                if sh_rsp_prod(base).load(Ordering::Acquire) == self.rx_cons {
                    self.refill_rx();
                    return None;
                }
                continue;
            }
            let cons = self.rx_cons;
            let (used, parsed) = parse_rx(cons, available, RX_RING_SIZE, buf.len(), |i| {
                read_slot::<RX_ENTRY_SIZE>(base, i, RX_RING_SIZE, RX_ENTRY_SIZE)
            });
            // Every slot used: revoke its grant (the backend has written
            // what it will write) before reading its data.
            let mut all_revoked = true;
            for k in 0..used {
                let slot = ring::ring_index(cons.wrapping_add(k), RX_RING_SIZE);
                if let Some((_, gref)) = self.rx_posted[slot]
                    && !grants::revoke(gref)
                {
                    // Still mapped: never reuse (nor read) this buffer.
                    if let Some((b, _)) = self.rx_posted[slot].take() {
                        self.rx_leaked[b as usize] = true;
                    }
                    self.counters.protocol_errors += 1;
                    all_revoked = false;
                }
            }
            let result = match parsed {
                Ok(frags) if all_revoked => {
                    let mut len = 0;
                    for f in frags.as_slice() {
                        let Some((b, _)) = self.rx_posted[f.slot as usize] else {
                            continue;
                        };
                        let from =
                            (pool_addr(self.rx_pages[b as usize]) + f.offset as u64) as *const u8;
                        let n = f.len as usize;
                        // SAFETY: offset + len <= PAGE_SIZE (parse_rx
                        // checked) inside our pool page, whose grant is
                        // revoked; `len + n <= buf.len()` as parse_rx
                        // checked the total against it.
                        unsafe {
                            core::ptr::copy_nonoverlapping(from, buf[len..len + n].as_mut_ptr(), n)
                        };
                        len += n;
                    }
                    Ok(len)
                }
                Ok(_) => Err(None),
                Err(e) => Err(Some(e)),
            };
            // The buffers go back to the spares, to be posted again.
            for k in 0..used {
                let slot = ring::ring_index(cons.wrapping_add(k), RX_RING_SIZE);
                if let Some((b, _)) = self.rx_posted[slot].take() {
                    self.rx_spare.push(b);
                }
            }
            self.rx_cons = cons.wrapping_add(used);
            self.refill_rx();
            match result {
                Ok(len) => {
                    self.counters.rx_frames += 1;
                    self.counters.rx_bytes += len as u64;
                    return Some(len);
                }
                Err(why) => {
                    self.counters.rx_errors += 1;
                    if let Some(e) = why {
                        self.last_rx_drop = Some(e);
                    }
                }
            }
        }
        None
    }

    /// Sleeps until the backend has published a response (a received
    /// frame for [`Netfront::recv`], or a transmit answered, which is
    /// reclaimed here) or `timeout_ns` of system time pass; true if
    /// something came. Before sleeping it sets both rings' `rsp_event`
    /// (RING_FINAL_CHECK_FOR_RESPONSES) and looks once more, so that a
    /// response published meanwhile is not slept through. The ports are
    /// masked, so SCHEDOP_poll sees their pending bits; they are cleared
    /// before each look. A broken device just sleeps.
    pub fn wait(&mut self, timeout_ns: u64) -> bool {
        let deadline = now().saturating_add(timeout_ns);
        let (Some(tx), Some(rx)) = (self.tx_base(), self.rx_base()) else {
            time::sleep_ns(timeout_ns);
            return false;
        };
        if self.broken {
            time::sleep_ns(timeout_ns);
            return false;
        }
        let ports = [self.tx_port, self.rx_port];
        let ports = if self.split { &ports[..] } else { &ports[..1] };
        loop {
            for &p in ports {
                events::clear_pending(p);
            }
            if !self.has_work() {
                sh_rsp_event(rx).store(ring::final_check_event(self.rx_cons), Ordering::SeqCst);
                sh_rsp_event(tx).store(ring::final_check_event(self.tx_cons), Ordering::SeqCst);
                fence(Ordering::SeqCst);
            }
            if self.has_work() {
                let tx_work = sh_rsp_prod(tx).load(Ordering::Acquire) != self.tx_cons;
                if tx_work {
                    self.reclaim_tx();
                }
                return true;
            }
            if now() >= deadline {
                return false;
            }
            if hypercall::sched_poll(ports, deadline).is_err() {
                let _ = hypercall::sched_yield();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Raw access for hostile tests
// ---------------------------------------------------------------------------

impl Netfront {
    /// Puts `slots` (raw tx requests: any grant, offset, flags, id, size)
    /// on the tx ring after what is there, as far as it has room,
    /// publishes them and notifies the backend as ring.h says; returns
    /// how many went on. Their responses are for
    /// [`Netfront::poll_raw_tx_response`]: mixed with [`Netfront::send`],
    /// a response whose id is not one of send's in flight is counted in
    /// `protocol_errors` and ignored.
    pub fn push_raw_tx(&mut self, slots: &[[u8; TX_ENTRY_SIZE]]) -> usize {
        let Some(base) = self.tx_base() else { return 0 };
        let mut n = 0;
        for slot in slots {
            if self.tx_prod_pvt.wrapping_sub(self.tx_cons) >= TX_RING_SIZE {
                break;
            }
            write_slot(base, self.tx_prod_pvt, TX_RING_SIZE, TX_ENTRY_SIZE, slot);
            self.tx_prod_pvt = self.tx_prod_pvt.wrapping_add(1);
            n += 1;
        }
        self.push_tx();
        n
    }

    /// Stores `value` as the shared tx `req_prod`, whatever it claims
    /// (the private index is not moved).
    pub fn set_tx_req_prod(&mut self, value: RingIdx) {
        if let Some(base) = self.tx_base() {
            fence(Ordering::Release);
            sh_req_prod(base).store(value, Ordering::Release);
            self.tx_prod_pub = value;
        }
    }

    /// The next tx response as the backend wrote it, not matched to a
    /// request (`None`: none, or `rsp_prod` claims more than was sent).
    pub fn poll_raw_tx_response(&mut self) -> Option<TxResponse> {
        let base = self.tx_base()?;
        let prod = sh_rsp_prod(base).load(Ordering::Acquire);
        let avail = prod.wrapping_sub(self.tx_cons);
        if avail == 0 || avail > self.tx_prod_pvt.wrapping_sub(self.tx_cons) {
            return None;
        }
        let raw: [u8; 4] = read_slot(base, self.tx_cons, TX_RING_SIZE, TX_ENTRY_SIZE);
        self.tx_cons = self.tx_cons.wrapping_add(1);
        TxResponse::read_from_bytes(&raw).ok()
    }

    /// Notifies the backend on every channel, unconditionally.
    pub fn notify(&self) {
        let _ = events::send(self.tx_port);
        if self.split {
            let _ = events::send(self.rx_port);
        }
    }

    /// Stops (false) or resumes (true) posting receive buffers: stopped,
    /// the buffers of frames taken are kept back, so the backend runs
    /// out of them.
    pub fn set_rx_posting(&mut self, on: bool) {
        self.rx_posting = on;
        if on {
            self.refill_rx();
        }
    }

    /// Changes how many receive buffers are kept posted (at most those
    /// allocated at connect); more are posted now, fewer as frames come.
    pub fn set_rx_target(&mut self, n: u32) {
        self.rx_target = n.min(self.rx_pages.len() as u32);
        self.refill_rx();
    }
}

// ---------------------------------------------------------------------------
// Disconnection
// ---------------------------------------------------------------------------

impl Netfront {
    /// Closes the connection: our state Closing, wait (with the handshake
    /// time-out, at most 5 s) for the backend's Closing or Closed, our
    /// state Closed, wait for its Closed; then the rings, buffers and
    /// channels are released. A backend that does not follow gives
    /// Timeout, after the release all the same (pages it may still map
    /// are never reused).
    pub fn disconnect(mut self, xs: &mut XenStore) -> Result<(), NetError> {
        let r = self.close_handshake(xs);
        self.teardown();
        r
    }

    fn close_handshake(&mut self, xs: &mut XenStore) -> Result<(), NetError> {
        let timeout = self.opts.timeout_ms.min(5_000) * MS;
        let state = self.state_path();
        let backend = self.backend.clone();
        xs.write(&state, "5")?;
        let closing = wait_state(
            xs,
            &backend,
            now().saturating_add(timeout),
            |_: &mut XenStore, st| -> Result<bool, NetError> {
                Ok(matches!(
                    st,
                    None | Some(XenbusState::Closing | XenbusState::Closed)
                ))
            },
        );
        xs.write(&state, "6")?;
        let closed = wait_state(
            xs,
            &backend,
            now().saturating_add(timeout),
            |_: &mut XenStore, st| -> Result<bool, NetError> {
                Ok(matches!(st, None | Some(XenbusState::Closed)))
            },
        );
        closing.and(closed).map(|_| ())
    }

    /// Revokes every grant (rings, posted buffers, frames in flight),
    /// closes the channels, and gives back what no backend maps any
    /// more.
    fn teardown(&mut self) {
        self.broken = true;
        for id in self.tx_ids.in_flight().collect::<Vec<_>>() {
            if let Some(g) = self.tx_grefs[id as usize].take()
                && !grants::revoke(g)
            {
                self.tx_page_leaked[id as usize / (PAGE_SIZE / TX_BUF_SIZE)] = true;
            }
        }
        for (page, leaked) in self.tx_pages.drain(..).zip(self.tx_page_leaked.drain(..)) {
            if !leaked {
                pool_free(page);
            }
        }
        for posted in self.rx_posted.iter_mut() {
            if let Some((b, g)) = posted.take()
                && !grants::revoke(g)
            {
                self.rx_leaked[b as usize] = true;
            }
        }
        for (page, leaked) in self.rx_pages.drain(..).zip(self.rx_leaked.drain(..)) {
            if !leaked {
                pool_free(page);
            }
        }
        self.rx_spare.clear();
        for ring in [self.tx_ring.take(), self.rx_ring.take()]
            .into_iter()
            .flatten()
        {
            if ring.gref.is_none_or(grants::revoke) {
                drop(ring.page);
            } else {
                ring.page.leak();
            }
        }
        let mut ports = [self.tx_port, self.rx_port];
        if ports[0] == ports[1] {
            ports[1] = 0;
        }
        for p in ports.into_iter().filter(|&p| p != 0) {
            let _ = events::close(p);
            events::release_port(p);
        }
        self.tx_port = 0;
        self.rx_port = 0;
    }
}

impl Drop for Netfront {
    /// Dropped without `disconnect`: the backend is not told, so it most
    /// likely still maps the rings, whose pages are then leaked rather
    /// than freed.
    fn drop(&mut self) {
        if self.tx_ring.is_some() || self.rx_ring.is_some() || self.tx_port != 0 {
            self.teardown();
        }
    }
}
