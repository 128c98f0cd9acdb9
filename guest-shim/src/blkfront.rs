//! Xen block front end (blkfront): connects to a `vbd` that the toolstack
//! put under `device/vbd/<vdev>`, with the xenbus handshake of
//! io/blkif.h and Linux's xen-blkfront (backend InitWait -> ring, event
//! channel and protocol in one transaction -> Initialised -> backend
//! Connected -> read the disk's properties -> Connected), and does
//! synchronous, pipelined block I/O over the shared ring.
//!
//! Pages are granted per request (no persistent grants) straight from
//! the caller's buffer: this guest is identity-mapped, so a buffer's
//! address shifted by 12 is its frame number. Every wait has a time-out,
//! so a dead or hostile backend ends in an error, never a hang.
//!
//! The caller must have run [`crate::events::init`] (shared info, for
//! time and event bits) and [`crate::grants::init`] first.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU32, Ordering, fence};

use pv_abi::PAGE_SIZE;
use pv_abi::blkif::{
    BLKIF_DISCARD_SECURE, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST,
    BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_OKAY, MAX_RING_PAGE_ORDER, PROTOCOL_X86_64, SECTOR_SIZE,
    SEGS_PER_INDIRECT_FRAME, VDISK_READONLY, ring_entries,
};
use pv_abi::event_channel::EvtchnPort;
use pv_abi::grant_table::GrantRef;
use pv_abi::ring::{self, SRING_HEADER_SIZE, SringHeader};
use pv_abi::xenbus::XenbusState;
use zerocopy::{Immutable, IntoBytes};

use crate::events::{clear_pending, mask_port, release_port};
use crate::grants::revoke;
use crate::xenbus::{
    XenbusError, is_enoent, read_flag, read_num, read_opt, read_state, wait_state,
};
use crate::xenstore::{XenStore, XsError};
use crate::{events, grants, hypercall, shared_info, time};

pub use crate::pages::PageBuf;
pub use crate::time::sleep_ns;

pub use pv_abi::blkif::{
    ENTRY_SIZE, Request, RequestDiscard, RequestIndirect, RequestSegment, Response,
};

/// Indirect requests carry at most this many segments (1 MiB), whatever
/// more the backend allows: one indirect page, and a bound on the grants
/// one request holds (our grant table has about 500 free entries).
pub const MAX_INDIRECT_SEGMENTS: u32 = 256;

const MS: u64 = 1_000_000;

/// Why a block operation or the handshake failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlkError {
    /// A XenStore request failed.
    Xenstore(XsError),
    /// `device/vbd/<vdev>` (or its `backend` node) does not exist.
    NoSuchDevice,
    /// A node the protocol requires is missing or not a number.
    BadNode(&'static str),
    /// The backend went to Closing/Closed (or vanished) instead of
    /// connecting.
    BackendGone,
    /// No answer (state change or response) within the time-out.
    Timeout,
    /// The backend answered with this `BLKIF_RSP_*` status.
    Status(i16),
    /// The backend does not offer the operation (flush, discard,
    /// indirect requests).
    NotSupported,
    /// A buffer not 512-byte aligned, or not a multiple of 512 bytes.
    BadBuffer,
    /// No free grant reference (with nothing in flight to wait for).
    NoGrants,
    /// The heap could not give the pages.
    NoMemory,
    /// An event-channel operation failed.
    EventChannel(hypercall::Errno),
    /// A grant could not be revoked after its request completed: the
    /// backend still maps the page. The page must not be reused.
    GrantInUse,
    /// A response with an id we did not send, or a response index that
    /// claims more responses than the ring holds.
    BadResponse,
    /// An earlier Timeout, BadResponse or GrantInUse left the ring in an
    /// unknown state: only `disconnect`/`reconnect` remain.
    Broken,
}

impl From<XsError> for BlkError {
    fn from(e: XsError) -> Self {
        BlkError::Xenstore(e)
    }
}

impl From<XenbusError> for BlkError {
    fn from(e: XenbusError) -> Self {
        match e {
            XenbusError::Xenstore(e) => BlkError::Xenstore(e),
            XenbusError::BadNode(n) => BlkError::BadNode(n),
            XenbusError::Timeout => BlkError::Timeout,
            XenbusError::Gone => BlkError::BackendGone,
        }
    }
}

/// Connection options.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// log2 of the ring pages wanted: 0 is one page named by `ring-ref`;
    /// more uses `ring-page-order` and `ring-ref0..`, capped by the
    /// backend's `max-ring-page-order` and by the protocol's 4.
    pub ring_order: u32,
    /// Time-out of each handshake step (ms): the backend may still be
    /// coming up when we boot.
    pub timeout_ms: u64,
    /// Time-out of each wait for a response (ms).
    pub io_timeout_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ring_order: 0,
            timeout_ms: 30_000,
            io_timeout_ms: 10_000,
        }
    }
}

/// What the backend said about the disk once connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskInfo {
    /// `sectors`: the size in units of `sector_size`.
    pub sectors: u64,
    /// `sector-size` (512 unless the front end asks for larger ones,
    /// which this one does not).
    pub sector_size: u32,
    /// `info` bits (`VDISK_*`).
    pub info: u32,
    /// `VDISK_READONLY` in `info`, or backend `mode` = "r".
    pub readonly: bool,
    /// `feature-flush-cache`.
    pub flush: bool,
    /// `feature-barrier`.
    pub barrier: bool,
    /// `feature-discard`.
    pub discard: bool,
    /// `discard-secure`.
    pub discard_secure: bool,
    /// `feature-max-indirect-segments` (0: no indirect requests).
    pub max_indirect: u32,
    /// Pages of the ring in use.
    pub ring_pages: u32,
}

impl DiskInfo {
    /// The size in 512-byte sectors, the unit of every request.
    pub fn sectors_512(&self) -> u64 {
        self.sectors
            .saturating_mul(self.sector_size as u64)
            .checked_div(SECTOR_SIZE)
            .unwrap_or(0)
    }
}

/// One I/O of a batch.
pub enum Io<'a> {
    Read { sector: u64, buf: &'a mut [u8] },
    Write { sector: u64, buf: &'a [u8] },
}

/// What the ring engine turns into requests.
#[derive(Clone, Copy)]
enum Op {
    Rw {
        write: bool,
        sector: u64,
        addr: usize,
        len: usize,
    },
    /// A request without segments: FLUSH_DISKCACHE or WRITE_BARRIER.
    Empty(u8),
    Discard {
        sector: u64,
        nr_sectors: u64,
        secure: bool,
    },
}

/// A request the backend has and has not answered: what to revoke.
struct Pending {
    grefs: Vec<GrantRef>,
    indirect: Option<(PageBuf, Vec<GrantRef>)>,
}

/// A connected block device.
pub struct Blkfront {
    vdev: String,
    front: String,
    backend: String,
    backend_id: u16,
    handle: u16,
    port: EvtchnPort,
    ring: Option<PageBuf>,
    ring_grefs: Vec<GrantRef>,
    size: u32,
    req_prod_pvt: u32,
    rsp_cons: u32,
    inflight: Vec<Option<Pending>>,
    free_ids: Vec<u16>,
    /// One-page indirect pages whose grants were revoked: reused.
    indirect_pool: Vec<PageBuf>,
    info: DiskInfo,
    /// [`Blkfront::set_indirect_segments`].
    indirect_cap: u32,
    opts: Options,
    broken: bool,
}

// ---------------------------------------------------------------------------
// Small helpers: time, sleeping, XenStore nodes, event bits
// ---------------------------------------------------------------------------

fn now() -> u64 {
    time::system_time_ns()
}

/// The `device/vbd` node names (virtual-device numbers) of our disks.
pub fn devices(xs: &mut XenStore) -> Result<Vec<String>, BlkError> {
    match xs.directory("device/vbd") {
        Ok(v) => Ok(v),
        Err(e) if is_enoent(&e) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// The Linux name of a virtual-device number (docs/misc/vbd-interface):
/// 51712 = 202 << 8 is `xvda`, 51728 `xvdb`, 51713 `xvda1`; the
/// extended form (1 << 28) counts disks in bits 8..28; IDE and SCSI
/// numbers map to `xvd*` too; anything else is `vbd<N>`.
pub fn vdev_name(vdev: &str) -> String {
    let Ok(n) = vdev.parse::<u32>() else {
        return format!("vbd{vdev}");
    };
    let (major, minor) = (n >> 8, n & 0xff);
    let (disk, part) = if n & (1 << 28) != 0 {
        ((n >> 8) & 0xf_ffff, n & 0xff)
    } else {
        match major {
            202 | 8 => (minor >> 4, minor & 0xf),
            3 => (minor >> 6, minor & 0x3f),
            22 => (2 + (minor >> 6), minor & 0x3f),
            _ => return format!("vbd{vdev}"),
        }
    };
    // Bijective base 26: a..z, aa..zz, ...
    let mut letters = Vec::new();
    let mut d = disk + 1;
    while d > 0 {
        d -= 1;
        letters.push(b'a' + (d % 26) as u8);
        d /= 26;
    }
    letters.reverse();
    let mut name = String::from("xvd");
    name.push_str(core::str::from_utf8(&letters).unwrap_or("?"));
    if part != 0 {
        name.push_str(&format!("{part}"));
    }
    name
}

// ---------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------

impl Blkfront {
    /// Connects to `device/vbd/<vdev>`: waits for the backend's InitWait,
    /// sets up the ring (`opts.ring_order`, capped by the backend) and an
    /// event channel, publishes them, waits for the backend to connect,
    /// reads the disk's properties and says Connected.
    pub fn connect(xs: &mut XenStore, vdev: &str, opts: Options) -> Result<Blkfront, BlkError> {
        // Time and event bits need shared info (mapped once, by whoever
        // comes first).
        shared_info::map().map_err(BlkError::EventChannel)?;
        let front = format!("device/vbd/{vdev}");
        let backend = read_opt(xs, &format!("{front}/backend"))?
            .filter(|b| !b.is_empty())
            .ok_or(BlkError::NoSuchDevice)?;
        let backend_id = read_num(xs, &format!("{front}/backend-id"), "backend-id")?
            .and_then(|d| u16::try_from(d).ok())
            .ok_or(BlkError::BadNode("backend-id"))?;
        // The request `handle` is the virtual-device number (Linux keeps
        // its low 16 bits too).
        let handle = read_num(xs, &format!("{front}/virtual-device"), "virtual-device")?
            .or_else(|| vdev.parse().ok())
            .unwrap_or(0) as u16;
        let timeout = opts.timeout_ms.saturating_mul(MS);

        // 1. The backend has published its features (InitWait). One left
        // Closed by an earlier front end is nudged as a restarted front
        // end would: our state back to Initialising.
        let mut nudged = false;
        let front_state = format!("{front}/state");
        wait_state::<BlkError>(xs, &backend, now() + timeout, |xs, st| match st {
            Some(XenbusState::InitWait | XenbusState::Initialised) => Ok(true),
            Some(XenbusState::Closed) if !nudged => {
                nudged = true;
                xs.write(&front_state, "1")?;
                Ok(false)
            }
            _ => Ok(false),
        })?;

        // 2. The ring: as many pages as wanted and allowed.
        let max_order = read_num(
            xs,
            &format!("{backend}/max-ring-page-order"),
            "max-ring-page-order",
        )?
        .unwrap_or(0);
        let order = (opts.ring_order as u64)
            .min(max_order)
            .min(MAX_RING_PAGE_ORDER as u64) as u32;
        let pages = 1usize << order;
        let ring_buf = PageBuf::zeroed(PAGE_SIZE * pages).ok_or(BlkError::NoMemory)?;
        // SAFETY: the start of our zeroed, page-aligned ring pages
        // (SHARED_RING_INIT; the entries stay zero).
        unsafe { core::ptr::write(ring_buf.addr() as *mut SringHeader, SringHeader::new()) };
        let size = ring_entries(order);
        let port = events::alloc_unbound(backend_id).map_err(BlkError::EventChannel)?;
        mask_port(port);
        let mut me = Blkfront {
            vdev: String::from(vdev),
            front,
            backend,
            backend_id,
            handle,
            port,
            ring: Some(ring_buf),
            ring_grefs: Vec::new(),
            size,
            req_prod_pvt: 0,
            rsp_cons: 0,
            inflight: (0..size).map(|_| None).collect(),
            free_ids: (0..size as u16).rev().collect(),
            indirect_pool: Vec::new(),
            info: DiskInfo::default(),
            indirect_cap: MAX_INDIRECT_SEGMENTS,
            opts,
            broken: false,
        };
        // From here on, dropping `me` revokes what was granted.
        let base = me.ring_addr();
        for i in 0..pages as u64 {
            let gref = grants::grant_access(backend_id, (base >> 12) + i, false)
                .ok_or(BlkError::NoGrants)?;
            me.ring_grefs.push(gref);
        }

        // 3. Publish ring, port and protocol in one transaction.
        me.publish(xs, order)?;
        xs.write(&me.state_path(), "3")?;

        // 4. Wait for the backend to connect; then read the disk.
        let connected = wait_state(xs, &me.backend, now() + timeout, |_, st| match st {
            Some(XenbusState::Connected) => Ok(true),
            Some(XenbusState::Closing | XenbusState::Closed) => Err(BlkError::BackendGone),
            _ => Ok(false),
        });
        if let Err(e) = connected {
            // Say we gave up, so that the backend does not wait for us.
            let _ = xs.write(&me.state_path(), "6");
            return Err(e);
        }
        me.info = me.read_info(xs, pages as u32)?;
        xs.write(&me.state_path(), "4")?;
        Ok(me)
    }

    fn state_path(&self) -> String {
        format!("{}/state", self.front)
    }

    fn ring_addr(&self) -> u64 {
        self.ring.as_ref().map_or(0, |r| r.addr())
    }

    /// Writes ring-ref (or ring-page-order and ring-ref0..), event-channel
    /// and protocol in one transaction, retried on EAGAIN. A node of the
    /// other ring scheme left by an earlier connection is removed first.
    fn publish(&self, xs: &mut XenStore, order: u32) -> Result<(), BlkError> {
        let f = &self.front;
        let stale = if order == 0 {
            format!("{f}/ring-page-order")
        } else {
            format!("{f}/ring-ref")
        };
        if read_opt(xs, &stale)?.is_some() {
            xs.rm(&stale)?;
        }
        let mut nodes: Vec<(String, String)> = Vec::new();
        if order == 0 {
            nodes.push((format!("{f}/ring-ref"), format!("{}", self.ring_grefs[0])));
        } else {
            nodes.push((format!("{f}/ring-page-order"), format!("{order}")));
            for (i, g) in self.ring_grefs.iter().enumerate() {
                nodes.push((format!("{f}/ring-ref{i}"), format!("{g}")));
            }
        }
        nodes.push((format!("{f}/event-channel"), format!("{}", self.port)));
        nodes.push((format!("{f}/protocol"), String::from(PROTOCOL_X86_64)));
        crate::xenbus::write_all(xs, &nodes).map_err(Into::into)
    }

    /// The backend's device properties, published before it connected.
    fn read_info(&self, xs: &mut XenStore, ring_pages: u32) -> Result<DiskInfo, BlkError> {
        let b = &self.backend;
        let sectors = read_num(xs, &format!("{b}/sectors"), "sectors")?
            .ok_or(BlkError::BadNode("sectors"))?;
        let sector_size =
            read_num(xs, &format!("{b}/sector-size"), "sector-size")?.unwrap_or(SECTOR_SIZE);
        let sector_size = u32::try_from(sector_size)
            .ok()
            .filter(|s| s.is_power_of_two() && *s >= 512)
            .ok_or(BlkError::BadNode("sector-size"))?;
        let info = read_num(xs, &format!("{b}/info"), "info")?.unwrap_or(0) as u32;
        let mode_ro = read_opt(xs, &format!("{b}/mode"))?.is_some_and(|m| m == "r");
        let max_indirect = read_num(
            xs,
            &format!("{b}/feature-max-indirect-segments"),
            "feature-max-indirect-segments",
        )?
        .unwrap_or(0)
        .min(u32::MAX as u64) as u32;
        Ok(DiskInfo {
            sectors,
            sector_size,
            info,
            readonly: info & VDISK_READONLY != 0 || mode_ro,
            flush: read_flag(
                xs,
                &format!("{b}/feature-flush-cache"),
                "feature-flush-cache",
            )?,
            barrier: read_flag(xs, &format!("{b}/feature-barrier"), "feature-barrier")?,
            discard: read_flag(xs, &format!("{b}/feature-discard"), "feature-discard")?,
            discard_secure: read_flag(xs, &format!("{b}/discard-secure"), "discard-secure")?,
            max_indirect,
            ring_pages,
        })
    }

    /// What the backend said about the disk.
    pub fn info(&self) -> DiskInfo {
        self.info
    }

    /// The `device/vbd` node name this is connected to.
    pub fn vdev(&self) -> &str {
        &self.vdev
    }

    /// The backend's XenStore directory.
    pub fn backend_path(&self) -> &str {
        &self.backend
    }

    /// The backend's domain.
    pub fn backend_id(&self) -> u16 {
        self.backend_id
    }

    /// The `handle` requests carry (the virtual-device number).
    pub fn handle(&self) -> u16 {
        self.handle
    }

    /// Our end of the event channel.
    pub fn port(&self) -> EvtchnPort {
        self.port
    }

    /// Slots of the ring.
    pub fn ring_size(&self) -> u32 {
        self.size
    }

    /// Segments an indirect request carries here: the backend's
    /// maximum, at most [`MAX_INDIRECT_SEGMENTS`] and at most what
    /// [`Blkfront::set_indirect_segments`] asked (0: none).
    pub fn indirect_segments(&self) -> u32 {
        self.info
            .max_indirect
            .min(MAX_INDIRECT_SEGMENTS)
            .min(self.indirect_cap)
    }

    /// Caps the segments of each indirect request (smaller requests,
    /// more of them in flight); 0 turns indirect requests off.
    pub fn set_indirect_segments(&mut self, max: u32) {
        self.indirect_cap = max;
    }

    /// Changes the time-out of each wait for a response.
    pub fn set_io_timeout_ms(&mut self, ms: u64) {
        self.opts.io_timeout_ms = ms;
    }

    /// The backend's current state (`None`: absent or unreadable).
    pub fn backend_state(&self, xs: &mut XenStore) -> Option<XenbusState> {
        read_state(xs, &format!("{}/state", self.backend))
            .ok()
            .flatten()
    }

    /// Closes the connection: our state Closing, wait (with the handshake
    /// time-out, at most 5 s) for the backend's Closing or Closed, our
    /// state Closed, wait for its Closed; then the ring and the event
    /// channel are released. A backend that does not follow gives
    /// Timeout, after the release all the same (pages it may still map
    /// are never freed).
    pub fn disconnect(mut self, xs: &mut XenStore) -> Result<(), BlkError> {
        let r = self.close_handshake(xs);
        self.teardown();
        r
    }

    /// Drops this connection and connects again as a restarted front end
    /// would: Closing, Closed (each waited for with a time-out), the
    /// ring released, Initialising, then [`Blkfront::connect`] with
    /// `opts` (a backend that was Closed answers Initialising with
    /// InitWait).
    pub fn reconnect(mut self, xs: &mut XenStore, opts: Options) -> Result<Blkfront, BlkError> {
        let _ = self.close_handshake(xs);
        self.teardown();
        let vdev = self.vdev.clone();
        let state = self.state_path();
        drop(self);
        xs.write(&state, "1")?;
        Blkfront::connect(xs, &vdev, opts)
    }

    fn close_handshake(&mut self, xs: &mut XenStore) -> Result<(), BlkError> {
        let timeout = self.opts.timeout_ms.min(5_000) * MS;
        let state = self.state_path();
        let backend = self.backend.clone();
        xs.write(&state, "5")?;
        let closing = wait_state(xs, &backend, now() + timeout, |_, st| {
            Ok(matches!(
                st,
                None | Some(XenbusState::Closing | XenbusState::Closed)
            ))
        });
        xs.write(&state, "6")?;
        let closed = wait_state(xs, &backend, now() + timeout, |_, st| {
            Ok(matches!(st, None | Some(XenbusState::Closed)))
        });
        closing.and(closed).map(|_| ())
    }

    /// Revokes every grant (the ring, requests still in flight), closes
    /// the event channel, and frees what no backend maps any more.
    fn teardown(&mut self) {
        for p in self.inflight.iter_mut().filter_map(Option::take) {
            let _ = Self::release(p, &mut self.indirect_pool);
        }
        let mut all_revoked = true;
        for g in self.ring_grefs.drain(..) {
            all_revoked &= revoke(g);
        }
        if let Some(ring) = self.ring.take() {
            if all_revoked {
                drop(ring);
            } else {
                ring.leak();
            }
        }
        if self.port != 0 {
            let _ = events::close(self.port);
            release_port(self.port);
            self.port = 0;
        }
        self.broken = true;
    }
}

impl Drop for Blkfront {
    /// Dropped without `disconnect`: the backend is not told, so it most
    /// likely still maps the ring, whose pages are then leaked rather
    /// than freed.
    fn drop(&mut self) {
        if self.ring.is_some() || self.port != 0 {
            self.teardown();
        }
    }
}

// ---------------------------------------------------------------------------
// The ring
// ---------------------------------------------------------------------------

impl Blkfront {
    fn header(&self, offset: usize) -> &AtomicU32 {
        assert!(self.ring.is_some() && offset + 4 <= SRING_HEADER_SIZE);
        // SAFETY: an aligned u32 of the ring header in our ring pages,
        // which live as long as self holds them; the backend accesses it
        // concurrently, so only atomically.
        unsafe { AtomicU32::from_ptr((self.ring_addr() as usize + offset) as *mut u32) }
    }

    fn sh_req_prod(&self) -> &AtomicU32 {
        self.header(offset_of!(SringHeader, req_prod))
    }
    fn sh_req_event(&self) -> &AtomicU32 {
        self.header(offset_of!(SringHeader, req_event))
    }
    fn sh_rsp_prod(&self) -> &AtomicU32 {
        self.header(offset_of!(SringHeader, rsp_prod))
    }
    fn sh_rsp_event(&self) -> &AtomicU32 {
        self.header(offset_of!(SringHeader, rsp_event))
    }

    fn slot_addr(&self, idx: u32) -> usize {
        self.ring_addr() as usize
            + SRING_HEADER_SIZE
            + ring::ring_index(idx, self.size) * ENTRY_SIZE
    }

    /// Writes slot `idx` (its index is taken modulo the ring size).
    pub fn write_slot(&mut self, idx: u32, slot: &[u8; ENTRY_SIZE]) {
        if self.ring.is_none() {
            return;
        }
        let at = self.slot_addr(idx) as *mut u8;
        // SAFETY: one whole entry inside our ring pages; the backend
        // reads it only once req_prod covers it (hostile tests rewrite
        // it afterwards on purpose: the bytes are plain data).
        unsafe { core::ptr::copy_nonoverlapping(slot.as_ptr(), at, ENTRY_SIZE) };
    }

    /// Puts a request in the next private slot (published by
    /// [`Blkfront::push`] or [`Blkfront::set_req_prod`]).
    fn put_request(&mut self, bytes: &[u8]) {
        let mut slot = [0u8; ENTRY_SIZE];
        slot[..bytes.len()].copy_from_slice(bytes);
        self.write_slot(self.req_prod_pvt, &slot);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
    }

    /// RING_PUSH_REQUESTS_AND_CHECK_NOTIFY: publishes the private
    /// requests and notifies the backend if it asked (req_event).
    fn push(&mut self) {
        let old = self.sh_req_prod().load(Ordering::Relaxed);
        let new = self.req_prod_pvt;
        // The slots must be visible before the index that covers them,
        // and the index before we read req_event.
        fence(Ordering::Release);
        self.sh_req_prod().store(new, Ordering::Release);
        fence(Ordering::SeqCst);
        if ring::need_notify(new, old, self.sh_req_event().load(Ordering::Acquire)) {
            let _ = events::send(self.port);
        }
    }

    /// The next response, read once (the backend may rewrite the slot).
    fn take_response(&mut self) -> Result<Option<Response>, BlkError> {
        if self.ring.is_none() {
            return Ok(None);
        }
        let prod = self.sh_rsp_prod().load(Ordering::Acquire);
        if prod == self.rsp_cons {
            return Ok(None);
        }
        if ring::response_prod_overflow(prod, self.rsp_cons, self.size) {
            self.broken = true;
            return Err(BlkError::BadResponse);
        }
        let at = self.slot_addr(self.rsp_cons) as *const Response;
        // SAFETY: an entry inside our ring pages (8-aligned: 64 + n *
        // 112); a volatile copy, as the backend may write concurrently.
        let rsp = unsafe { core::ptr::read_volatile(at) };
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(rsp))
    }

    /// Sleeps until a response is there or `deadline` passes (Timeout).
    /// RING_FINAL_CHECK_FOR_RESPONSES sets rsp_event so the backend
    /// notifies; our port is masked, so its pending bit stays for
    /// SCHEDOP_poll to see and is cleared here before each look.
    fn wait_response(&mut self, deadline: u64) -> Result<(), BlkError> {
        if self.ring.is_none() {
            return Err(BlkError::Broken);
        }
        loop {
            clear_pending(self.port);
            if self.sh_rsp_prod().load(Ordering::Acquire) != self.rsp_cons {
                return Ok(());
            }
            self.sh_rsp_event()
                .store(ring::final_check_event(self.rsp_cons), Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if self.sh_rsp_prod().load(Ordering::Acquire) != self.rsp_cons {
                return Ok(());
            }
            if now() >= deadline {
                return Err(BlkError::Timeout);
            }
            if hypercall::sched_poll(&[self.port], deadline).is_err() {
                let _ = hypercall::sched_yield();
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.size as usize - self.free_ids.len()
    }

    /// Revokes a finished request's grants; the indirect pages go back
    /// to the pool only if no backend maps them any more.
    fn release(p: Pending, pool: &mut Vec<PageBuf>) -> Result<(), BlkError> {
        let mut ok = true;
        for g in p.grefs {
            ok &= revoke(g);
        }
        if let Some((page, grefs)) = p.indirect {
            let mut page_ok = true;
            for g in grefs {
                page_ok &= revoke(g);
            }
            if page_ok && page.len() == PAGE_SIZE {
                pool.push(page);
            } else if page_ok {
                drop(page);
            } else {
                page.leak();
            }
            ok &= page_ok;
        }
        if ok {
            Ok(())
        } else {
            Err(BlkError::GrantInUse)
        }
    }

    /// Matches a response to its request, releases the request and
    /// reports its status.
    fn complete(&mut self, rsp: Response) -> Result<(), BlkError> {
        let id = rsp.id;
        let pending = usize::try_from(id)
            .ok()
            .and_then(|i| self.inflight.get_mut(i))
            .and_then(Option::take);
        let Some(p) = pending else {
            self.broken = true;
            return Err(BlkError::BadResponse);
        };
        self.free_ids.push(id as u16);
        if let Err(e) = Self::release(p, &mut self.indirect_pool) {
            self.broken = true;
            return Err(e);
        }
        match rsp.status {
            BLKIF_RSP_OKAY => Ok(()),
            s => Err(BlkError::Status(s)),
        }
    }

    /// Gives up on the requests in flight (after a time-out): revokes
    /// their grants; their ids stay used, the ring is broken.
    fn abandon(&mut self) -> Result<(), BlkError> {
        self.broken = true;
        let mut r = Ok(());
        for p in self.inflight.iter_mut().filter_map(Option::take) {
            if let Err(e) = Self::release(p, &mut self.indirect_pool) {
                r = Err(e);
            }
        }
        r
    }

    /// Puts the next request of `op` (from byte `done` on) in the ring
    /// (the caller has checked there is a free id). Returns whether `op`
    /// is finished; Err(NoGrants) if the grant table is full right now.
    fn submit(
        &mut self,
        op: Op,
        done: &mut usize,
        max_segs: usize,
        indirect: bool,
    ) -> Result<bool, BlkError> {
        let Some(id) = self.free_ids.pop() else {
            return Err(BlkError::Broken);
        };
        match self.build(op, done, max_segs, indirect, id) {
            Ok(finished) => Ok(finished),
            Err(e) => {
                self.free_ids.push(id);
                Err(e)
            }
        }
    }

    fn build(
        &mut self,
        op: Op,
        done: &mut usize,
        max_segs: usize,
        indirect: bool,
        id: u16,
    ) -> Result<bool, BlkError> {
        let handle = self.handle;
        match op {
            Op::Empty(operation) => {
                let req = Request {
                    operation,
                    handle,
                    id: id as u64,
                    ..Default::default()
                };
                self.put_request(req.as_bytes());
                self.inflight[id as usize] = Some(Pending {
                    grefs: Vec::new(),
                    indirect: None,
                });
                Ok(true)
            }
            Op::Discard {
                sector,
                nr_sectors,
                secure,
            } => {
                let req = RequestDiscard {
                    operation: BLKIF_OP_DISCARD,
                    flag: if secure { BLKIF_DISCARD_SECURE } else { 0 },
                    handle,
                    id: id as u64,
                    sector_number: sector,
                    nr_sectors,
                    ..Default::default()
                };
                self.put_request(req.as_bytes());
                self.inflight[id as usize] = Some(Pending {
                    grefs: Vec::new(),
                    indirect: None,
                });
                Ok(true)
            }
            Op::Rw {
                write,
                sector,
                addr,
                len,
            } => {
                // Segments: one page each, sectors first..=last of it.
                let mut segs: Vec<RequestSegment> = Vec::with_capacity(max_segs);
                let mut grefs: Vec<GrantRef> = Vec::with_capacity(max_segs);
                let mut covered = 0usize;
                while segs.len() < max_segs && *done + covered < len {
                    let at = addr + *done + covered;
                    let offset = at % PAGE_SIZE;
                    let n = (PAGE_SIZE - offset).min(len - *done - covered);
                    let Some(gref) =
                        grants::grant_access(self.backend_id, (at >> 12) as u64, write)
                    else {
                        for g in grefs {
                            grants::end_access(g);
                        }
                        return Err(BlkError::NoGrants);
                    };
                    grefs.push(gref);
                    segs.push(RequestSegment {
                        gref,
                        first_sect: (offset / 512) as u8,
                        last_sect: ((offset + n) / 512 - 1) as u8,
                        pad: [0; 2],
                    });
                    covered += n;
                }
                let operation = if write { BLKIF_OP_WRITE } else { BLKIF_OP_READ };
                let sector_number = sector + (*done / 512) as u64;
                let pending = if indirect {
                    let (page, igrefs) = match self.indirect_pages(&segs) {
                        Ok(v) => v,
                        Err(e) => {
                            for g in grefs {
                                grants::end_access(g);
                            }
                            return Err(e);
                        }
                    };
                    let mut indirect_grefs = [0; BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
                    indirect_grefs[..igrefs.len()].copy_from_slice(&igrefs);
                    let req = RequestIndirect {
                        operation: BLKIF_OP_INDIRECT,
                        indirect_op: operation,
                        nr_segments: segs.len() as u16,
                        id: id as u64,
                        sector_number,
                        handle,
                        indirect_grefs,
                        ..Default::default()
                    };
                    self.put_request(req.as_bytes());
                    Pending {
                        grefs,
                        indirect: Some((page, igrefs)),
                    }
                } else {
                    let mut seg = [RequestSegment::default(); BLKIF_MAX_SEGMENTS_PER_REQUEST];
                    seg[..segs.len()].copy_from_slice(&segs);
                    let req = Request {
                        operation,
                        nr_segments: segs.len() as u8,
                        handle,
                        id: id as u64,
                        sector_number,
                        seg,
                        ..Default::default()
                    };
                    self.put_request(req.as_bytes());
                    Pending {
                        grefs,
                        indirect: None,
                    }
                };
                self.inflight[id as usize] = Some(pending);
                *done += covered;
                Ok(*done >= len)
            }
        }
    }

    /// Indirect pages holding `segs`, granted read-only to the backend.
    fn indirect_pages(
        &mut self,
        segs: &[RequestSegment],
    ) -> Result<(PageBuf, Vec<GrantRef>), BlkError> {
        let pages = segs.len().div_ceil(SEGS_PER_INDIRECT_FRAME).max(1);
        let mut page = if pages == 1 {
            self.indirect_pool.pop()
        } else {
            None
        }
        .or_else(|| PageBuf::zeroed(pages * PAGE_SIZE))
        .ok_or(BlkError::NoMemory)?;
        let bytes = segs.as_bytes();
        page[..bytes.len()].copy_from_slice(bytes);
        page[bytes.len()..].fill(0);
        let mut grefs = Vec::with_capacity(pages);
        for i in 0..pages as u64 {
            match grants::grant_access(self.backend_id, (page.addr() >> 12) + i, true) {
                Some(g) => grefs.push(g),
                None => {
                    for g in grefs {
                        grants::end_access(g);
                    }
                    if pages == 1 {
                        self.indirect_pool.push(page);
                    }
                    return Err(BlkError::NoGrants);
                }
            }
        }
        Ok((page, grefs))
    }

    /// The engine: turns `ops` into requests, keeps the ring as full as
    /// free slots and grants allow, collects responses, and returns once
    /// every request sent has been answered (so no grant of the caller's
    /// memory outlives the call), with the first error met.
    fn run(&mut self, ops: &[Op], indirect: bool) -> Result<(), BlkError> {
        if self.broken || self.ring.is_none() {
            return Err(BlkError::Broken);
        }
        let max_segs = if indirect {
            let n = self.indirect_segments() as usize;
            if n == 0 {
                return Err(BlkError::NotSupported);
            }
            n
        } else {
            BLKIF_MAX_SEGMENTS_PER_REQUEST
        };
        let mut first_err: Option<BlkError> = None;
        let (mut next, mut done) = (0usize, 0usize);
        loop {
            let mut pushed = false;
            while next < ops.len() && first_err.is_none() && !self.broken {
                if matches!(ops[next], Op::Rw { len: 0, .. }) {
                    next += 1;
                    continue;
                }
                if self.free_ids.is_empty() {
                    break;
                }
                match self.submit(ops[next], &mut done, max_segs, indirect) {
                    Ok(true) => {
                        pushed = true;
                        next += 1;
                        done = 0;
                    }
                    Ok(false) => pushed = true,
                    Err(BlkError::NoGrants) if self.in_flight() > 0 => break,
                    Err(e) => first_err = Some(e),
                }
            }
            if pushed {
                self.push();
            }
            if self.in_flight() == 0 {
                break;
            }
            let deadline = now().saturating_add(self.opts.io_timeout_ms.saturating_mul(MS));
            if let Err(e) = self.wait_response(deadline) {
                return Err(self.abandon().err().unwrap_or(e));
            }
            loop {
                match self.take_response() {
                    Ok(Some(rsp)) => {
                        if let Err(e) = self.complete(rsp) {
                            first_err.get_or_insert(e);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = self.abandon();
                        return Err(e);
                    }
                }
            }
            // A response we did not ask for (or a grant still mapped):
            // the backend cannot be trusted to answer the rest.
            if self.broken {
                let r = self.abandon();
                return Err(first_err.or(r.err()).unwrap_or(BlkError::Broken));
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

fn rw_op(write: bool, sector: u64, addr: usize, len: usize) -> Result<Op, BlkError> {
    if !addr.is_multiple_of(512) || !len.is_multiple_of(512) {
        return Err(BlkError::BadBuffer);
    }
    Ok(Op::Rw {
        write,
        sector,
        addr,
        len,
    })
}

// ---------------------------------------------------------------------------
// Synchronous I/O
// ---------------------------------------------------------------------------

impl Blkfront {
    /// Reads `buf.len()` bytes from 512-byte sector `sector` into `buf`
    /// (512-byte aligned, a multiple of 512 long), in direct requests of
    /// up to 11 one-page segments, as many in flight as the ring holds.
    /// The range is not checked here: the backend decides (and the tests
    /// check that it refuses what lies past the end).
    ///
    /// Whole pages are granted: a backend could write all of a page that
    /// `buf` shares with other data, so give untrusted backends
    /// page-aligned buffers.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        let op = rw_op(false, sector, buf.as_mut_ptr() as usize, buf.len())?;
        self.run(&[op], false)
    }

    /// Writes `buf` at `sector` (as [`Blkfront::read`]; pages granted
    /// read-only).
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        let op = rw_op(true, sector, buf.as_ptr() as usize, buf.len())?;
        self.run(&[op], false)
    }

    /// [`Blkfront::read`] with indirect requests of up to
    /// [`Blkfront::indirect_segments`] segments (NotSupported if the
    /// backend offers none).
    pub fn read_indirect(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        let op = rw_op(false, sector, buf.as_mut_ptr() as usize, buf.len())?;
        self.run(&[op], true)
    }

    /// [`Blkfront::write`] with indirect requests.
    pub fn write_indirect(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        let op = rw_op(true, sector, buf.as_ptr() as usize, buf.len())?;
        self.run(&[op], true)
    }

    /// Several reads and writes at once, all in flight together as far as
    /// the ring allows (indirect requests if `indirect`); returns when all
    /// are done, with the first error.
    pub fn batch(&mut self, ios: &mut [Io<'_>], indirect: bool) -> Result<(), BlkError> {
        let mut ops = Vec::with_capacity(ios.len());
        for io in ios.iter_mut() {
            ops.push(match io {
                Io::Read { sector, buf } => {
                    rw_op(false, *sector, buf.as_mut_ptr() as usize, buf.len())?
                }
                Io::Write { sector, buf } => {
                    rw_op(true, *sector, buf.as_ptr() as usize, buf.len())?
                }
            });
        }
        self.run(&ops, indirect)
    }

    /// Commits the backend's write cache: FLUSH_DISKCACHE if offered,
    /// else a WRITE_BARRIER without data, else NotSupported.
    pub fn flush(&mut self) -> Result<(), BlkError> {
        let op = if self.info.flush {
            BLKIF_OP_FLUSH_DISKCACHE
        } else if self.info.barrier {
            BLKIF_OP_WRITE_BARRIER
        } else {
            return Err(BlkError::NotSupported);
        };
        self.run(&[Op::Empty(op)], false)
    }

    /// Discards `nr_sectors` 512-byte sectors from `sector` (NotSupported
    /// unless the backend offers `feature-discard`); the contents read
    /// afterwards are unspecified.
    pub fn discard(&mut self, sector: u64, nr_sectors: u64) -> Result<(), BlkError> {
        if !self.info.discard {
            return Err(BlkError::NotSupported);
        }
        let op = Op::Discard {
            sector,
            nr_sectors,
            secure: false,
        };
        self.run(&[op], false)
    }
}

// ---------------------------------------------------------------------------
// Raw access for hostile tests
// ---------------------------------------------------------------------------

impl Blkfront {
    /// Copies `slot` into the next private slot and advances the private
    /// producer index; nothing is published yet (see
    /// [`Blkfront::set_req_prod`], [`Blkfront::publish_raw`]). No grant,
    /// id or field is checked: hostile tests build what they like.
    pub fn push_raw(&mut self, slot: &[u8; ENTRY_SIZE]) {
        self.write_slot(self.req_prod_pvt, slot);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
    }

    /// The private producer index (the next slot [`Blkfront::push_raw`]
    /// fills).
    pub fn req_prod_pvt(&self) -> u32 {
        self.req_prod_pvt
    }

    /// Stores `value` as the shared `req_prod`, whatever it claims.
    pub fn set_req_prod(&mut self, value: u32) {
        if self.ring.is_none() {
            return;
        }
        fence(Ordering::Release);
        self.sh_req_prod().store(value, Ordering::Release);
    }

    /// The shared `rsp_prod` as the backend left it.
    pub fn rsp_prod(&self) -> u32 {
        if self.ring.is_none() {
            return 0;
        }
        self.sh_rsp_prod().load(Ordering::Acquire)
    }

    /// Publishes the private requests and notifies the backend as the
    /// ring protocol says (the normal path, for raw slots).
    pub fn publish_raw(&mut self) {
        if self.ring.is_some() {
            self.push();
        }
    }

    /// Notifies the backend unconditionally.
    pub fn notify(&self) {
        let _ = events::send(self.port);
    }

    /// The next response if one is there (read once, not matched to a
    /// request); `None` also when `rsp_prod` is impossible.
    pub fn poll_response(&mut self) -> Option<Response> {
        self.take_response().ok().flatten()
    }

    /// Waits up to `timeout_ms` for the next response.
    pub fn wait_raw_response(&mut self, timeout_ms: u64) -> Option<Response> {
        let deadline = now().saturating_add(timeout_ms.saturating_mul(MS));
        self.wait_response(deadline).ok()?;
        self.poll_response()
    }
}

/// A ring slot holding `req` (a [`Request`], [`RequestDiscard`],
/// [`RequestIndirect`] or anything else of at most [`ENTRY_SIZE`]
/// bytes), the rest zero: for [`Blkfront::push_raw`].
pub fn to_slot<T: IntoBytes + Immutable>(req: &T) -> [u8; ENTRY_SIZE] {
    let bytes = req.as_bytes();
    let mut slot = [0u8; ENTRY_SIZE];
    let n = bytes.len().min(ENTRY_SIZE);
    slot[..n].copy_from_slice(&bytes[..n]);
    slot
}

/// Writes one of our `state` nodes (for tests that drive the handshake
/// by hand).
pub fn write_state(xs: &mut XenStore, vdev: &str, state: XenbusState) -> Result<(), BlkError> {
    xs.write(
        &format!("device/vbd/{vdev}/state"),
        &format!("{}", state.raw()),
    )
    .map_err(Into::into)
}
