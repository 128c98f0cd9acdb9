//! The pure core of Dom0's block backend (blkback): decoding and
//! validating one blkif ring slot ([`decode`], [`decode_indirect_segments`]),
//! reading the front end's
//! XenStore nodes ([`parse_ring_refs`], [`parse_event_channel`],
//! [`check_protocol`]), the xenbus state machine ([`on_frontend_state`])
//! and the nodes the back end publishes ([`backend_nodes`],
//! [`connect_nodes`], [`frontend_nodes`], [`vdev_number`]). The xenbus
//! state table is documented on [`on_frontend_state`].
//!
//! Nothing here touches shared memory or hardware: the glue copies a
//! request slot (112 bytes) or an indirect page (4 KiB) out of the
//! guest's memory once and hands the copy in, so every field is read
//! from private memory and checked before any I/O is done. Semantics
//! follow Xen's `io/blkif.h` and Linux's `xen-blkback` (`blkback.c`,
//! `xenbus.c`); where this module decides otherwise the item says so.
//!
//! All sector numbers and counts are in 512-byte units
//! ([`SECTOR_SIZE`]), whatever the disk's `sector-size`.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use pv_abi::PAGE_SIZE;
use pv_abi::blkif::{
    BLKIF_DISCARD_SECURE, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, BLKIF_MAX_SEGMENTS_PER_REQUEST,
    BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_INDIRECT, BLKIF_OP_READ, BLKIF_OP_WRITE,
    BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, ENTRY_SIZE, MAX_RING_PAGE_ORDER,
    PROTOCOL_X86_64, Request, RequestDiscard, RequestIndirect, RequestSegment, Response,
    SECTOR_SIZE, SECTORS_PER_PAGE, SEGS_PER_INDIRECT_FRAME, VDISK_READONLY,
};
use pv_abi::xenbus::XenbusState;
use zerocopy::FromBytes;

#[cfg(test)]
mod tests;

/// The `feature-max-indirect-segments` Linux's blkback advertises (and
/// real Xen showed): a good default for [`DiskLimits::max_indirect_segments`].
pub const MAX_INDIRECT_SEGMENTS: u32 = 256;
/// `discard-granularity` advertised when discard is on, in bytes.
pub const DISCARD_GRANULARITY: u32 = 4096;

// Every request layout fits in a slot, so reading one from a slot's
// prefix cannot fail.
const _: () = assert!(size_of::<Request>() == ENTRY_SIZE);
const _: () = assert!(size_of::<RequestIndirect>() <= ENTRY_SIZE);
const _: () = assert!(size_of::<RequestDiscard>() <= ENTRY_SIZE);

/// What the disk behind one vbd allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskLimits {
    /// Size in 512-byte sectors (the `sectors` node).
    pub sectors: u64,
    /// Refuse every write, data-carrying flush and discard.
    pub readonly: bool,
    /// The device can discard; otherwise discards get `EOPNOTSUPP`.
    pub discard: bool,
    /// Most segments one indirect request may carry (the
    /// `feature-max-indirect-segments` node); 0 refuses indirect requests.
    pub max_indirect_segments: u32,
}

/// One validated segment: sectors `first_sect..=last_sect` (both at most
/// 7) of the page the front end granted as `gref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub gref: u32,
    pub first_sect: u8,
    pub last_sect: u8,
}

impl Segment {
    /// Checks a segment as the front end wrote it: `first_sect <=
    /// last_sect < 8` (Linux: `last_sect >= XEN_PAGE_SIZE >> 9 ||
    /// last_sect < first_sect` fails the request).
    pub fn check(raw: &RequestSegment) -> Result<Self, &'static str> {
        if raw.last_sect >= SECTORS_PER_PAGE {
            return Err("segment ends past its page (last_sect > 7)");
        }
        if raw.first_sect > raw.last_sect {
            return Err("segment has first_sect > last_sect");
        }
        Ok(Segment {
            gref: raw.gref,
            first_sect: raw.first_sect,
            last_sect: raw.last_sect,
        })
    }

    /// Sectors covered, 1..=8.
    pub fn sectors(&self) -> u64 {
        u64::from(self.last_sect.saturating_sub(self.first_sect)) + 1
    }

    /// Where the data starts in the granted page.
    pub fn byte_offset(&self) -> usize {
        usize::from(self.first_sect) * SECTOR_SIZE as usize
    }

    /// Bytes covered (`byte_offset() + byte_len() <= 4096`).
    pub fn byte_len(&self) -> usize {
        self.sectors() as usize * SECTOR_SIZE as usize
    }
}

/// Which way the data moves: `Read` fills the guest's pages from the
/// disk, `Write` stores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

/// What one ring slot asks for, after validation. Every variant keeps
/// `id` and the `operation` byte to put in the response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Read or write of `segments`, in order, starting at `sector`
    /// (already checked to lie within the disk). `FLUSH_DISKCACHE` and
    /// `WRITE_BARRIER` with data come here as a write with `flush` set:
    /// flush the disk's cache first, then write (Linux: `REQ_PREFLUSH`
    /// write; for a barrier it also drains in-flight I/O first, which a
    /// back end serving one request at a time does anyway). `operation`
    /// is the request's own byte (2 or 3 for those).
    Io {
        id: u64,
        operation: u8,
        dir: Direction,
        sector: u64,
        segments: Vec<Segment>,
        flush: bool,
    },
    /// Indirect read or write: the segments are in the granted `pages`
    /// (exactly as many as `nr_segments` needs), to be copied once and
    /// decoded with [`decode_indirect_segments`]. `operation` is the
    /// request's `indirect_op` (READ or WRITE), not `BLKIF_OP_INDIRECT`:
    /// Linux's blkback answers with that byte and Linux's blkfront
    /// refuses (and disconnects on) a response carrying anything else.
    /// `sector + nr_segments` is already checked to lie within the disk.
    Indirect {
        id: u64,
        operation: u8,
        dir: Direction,
        sector: u64,
        nr_segments: u16,
        pages: Vec<u32>,
    },
    /// `FLUSH_DISKCACHE` or `WRITE_BARRIER` with no data: flush the
    /// disk's cache. Accepted on a read-only disk too (Linux refuses it
    /// there, because it models a flush as a write; a flush stores no
    /// guest data, and Linux's block layer itself lets empty flushes
    /// through to read-only devices). `sector_number` is ignored.
    Flush { id: u64, operation: u8 },
    /// Discard `nr_sectors` from `sector` (range checked; 0 sectors is a
    /// no-op that still gets `OKAY`). `secure` is the front end's
    /// `BLKIF_DISCARD_SECURE` flag; we advertise `discard-secure` 0, and
    /// Linux's blkback then does a plain discard whatever the flag.
    Discard {
        id: u64,
        operation: u8,
        sector: u64,
        nr_sectors: u64,
        secure: bool,
    },
}

impl Decoded {
    /// The request's id, for the response.
    pub fn id(&self) -> u64 {
        match *self {
            Decoded::Io { id, .. }
            | Decoded::Indirect { id, .. }
            | Decoded::Flush { id, .. }
            | Decoded::Discard { id, .. } => id,
        }
    }

    /// The operation byte for the response.
    pub fn operation(&self) -> u8 {
        match *self {
            Decoded::Io { operation, .. }
            | Decoded::Indirect { operation, .. }
            | Decoded::Flush { operation, .. }
            | Decoded::Discard { operation, .. } => operation,
        }
    }
}

/// A request refused before any I/O: answer `id`/`operation` with
/// `status`. `reason` is for a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub id: u64,
    pub operation: u8,
    pub status: i16,
    pub reason: &'static str,
}

impl Rejected {
    /// The response slot's bytes.
    pub fn response(&self) -> [u8; size_of::<Response>()] {
        response_bytes(self.id, self.operation, self.status)
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "blkif request {:#x} (op {}) refused ({}): {}",
            self.id, self.operation, self.status, self.reason
        )
    }
}

/// The 16 bytes of a `blkif_response` to copy into the slot
/// [`BackRing::next_response`](crate::backring::BackRing::next_response)
/// names (a ring of [`ENTRY_SIZE`]-byte slots).
pub fn response_bytes(id: u64, operation: u8, status: i16) -> [u8; size_of::<Response>()] {
    zerocopy::transmute!(Response {
        id,
        operation,
        pad1: 0,
        status,
        pad2: 0,
    })
}

/// A layout read from the start of a private copy of a slot or page.
/// Callers only pass buffers at least `size_of::<T>()` long (asserted
/// above for slots); the zeroed fallback is never taken.
fn read_prefix<T: FromBytes>(bytes: &[u8]) -> T {
    match T::read_from_prefix(bytes) {
        Ok((value, _)) => value,
        Err(_) => T::new_zeroed(),
    }
}

/// The range check of Linux's `xen_vbd_translate`: no writes to a
/// read-only disk, `sector + nr_sectors` neither overflows nor passes
/// the end.
fn check_access(
    dir: Direction,
    sector: u64,
    nr_sectors: u64,
    limits: &DiskLimits,
) -> Result<(), &'static str> {
    if dir == Direction::Write && limits.readonly {
        return Err("write to a read-only disk");
    }
    let end = sector
        .checked_add(nr_sectors)
        .ok_or("sector range overflows")?;
    if end > limits.sectors {
        return Err("sector range passes the end of the disk");
    }
    Ok(())
}

/// Indirect pages `nr_segments` segment descriptors fill.
fn indirect_pages(nr_segments: u16) -> usize {
    usize::from(nr_segments).div_ceil(SEGS_PER_INDIRECT_FRAME)
}

/// Decodes and validates one request slot (a private copy: the
/// operation byte is read once, from `slot[0]`, and decides the layout).
///
/// Refusals, checked in this order (status `ERROR` unless noted):
/// - an operation other than READ, WRITE, WRITE_BARRIER,
///   FLUSH_DISKCACHE, DISCARD, INDIRECT: `EOPNOTSUPP` (Linux's
///   `dispatch_other_io`), echoing the unknown byte;
/// - read/write/flush: more than 11 segments; no segments for a read or
///   write (a flush without segments is [`Decoded::Flush`]); a segment
///   with `last_sect > 7` or `first_sect > last_sect`; a write (or
///   flush with data) on a read-only disk; `sector + total sectors`
///   overflowing or past [`DiskLimits::sectors`];
/// - indirect: `indirect_op` not READ or WRITE (echoed as the
///   operation, as Linux does); 0 segments or more than
///   [`DiskLimits::max_indirect_segments`]; more indirect pages needed
///   than a request names (8); a write on a read-only disk;
///   `sector + nr_segments` (the least it can cover) past the end;
/// - discard: the disk cannot discard: `EOPNOTSUPP` (checked first, so
///   a front end that ignored `feature-discard` learns to stop); a
///   read-only disk; the range overflowing or past the end.
///
/// The `handle` field is ignored (one ring serves one disk), as Linux
/// does.
pub fn decode(slot: &[u8; ENTRY_SIZE], limits: &DiskLimits) -> Result<Decoded, Rejected> {
    let operation = slot[0];
    match operation {
        BLKIF_OP_READ | BLKIF_OP_WRITE | BLKIF_OP_WRITE_BARRIER | BLKIF_OP_FLUSH_DISKCACHE => {
            decode_rw(operation, &read_prefix(slot), limits)
        }
        BLKIF_OP_INDIRECT => decode_indirect(&read_prefix(slot), limits),
        BLKIF_OP_DISCARD => decode_discard(operation, &read_prefix(slot), limits),
        _ => Err(Rejected {
            id: read_prefix::<Request>(slot).id,
            operation,
            status: BLKIF_RSP_EOPNOTSUPP,
            reason: "unknown operation",
        }),
    }
}

fn decode_rw(operation: u8, req: &Request, limits: &DiskLimits) -> Result<Decoded, Rejected> {
    let id = req.id;
    let reject = |reason| Rejected {
        id,
        operation,
        status: BLKIF_RSP_ERROR,
        reason,
    };
    let flush = operation == BLKIF_OP_WRITE_BARRIER || operation == BLKIF_OP_FLUSH_DISKCACHE;
    let dir = if operation == BLKIF_OP_READ {
        Direction::Read
    } else {
        Direction::Write
    };
    let n = usize::from(req.nr_segments);
    if n > BLKIF_MAX_SEGMENTS_PER_REQUEST {
        return Err(reject("more than 11 segments in a direct request"));
    }
    if n == 0 {
        return if flush {
            Ok(Decoded::Flush { id, operation })
        } else {
            Err(reject("read or write with no segments"))
        };
    }
    let segments = req.seg[..n]
        .iter()
        .map(Segment::check)
        .collect::<Result<Vec<_>, _>>()
        .map_err(reject)?;
    let total = segments.iter().map(Segment::sectors).sum();
    check_access(dir, req.sector_number, total, limits).map_err(reject)?;
    Ok(Decoded::Io {
        id,
        operation,
        dir,
        sector: req.sector_number,
        segments,
        flush,
    })
}

fn decode_indirect(req: &RequestIndirect, limits: &DiskLimits) -> Result<Decoded, Rejected> {
    let id = req.id;
    let operation = req.indirect_op;
    let reject = |reason| Rejected {
        id,
        operation,
        status: BLKIF_RSP_ERROR,
        reason,
    };
    let dir = match operation {
        BLKIF_OP_READ => Direction::Read,
        BLKIF_OP_WRITE => Direction::Write,
        _ => return Err(reject("indirect operation is not read or write")),
    };
    let n = req.nr_segments;
    check_indirect_count(n, BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST, limits).map_err(reject)?;
    check_access(dir, req.sector_number, u64::from(n), limits).map_err(reject)?;
    Ok(Decoded::Indirect {
        id,
        operation,
        dir,
        sector: req.sector_number,
        nr_segments: n,
        pages: req.indirect_grefs[..indirect_pages(n)].to_vec(),
    })
}

fn check_indirect_count(
    nr_segments: u16,
    pages_given: usize,
    limits: &DiskLimits,
) -> Result<(), &'static str> {
    if nr_segments == 0 {
        return Err("indirect request with no segments");
    }
    if u32::from(nr_segments) > limits.max_indirect_segments {
        return Err("more segments than feature-max-indirect-segments");
    }
    let needed = indirect_pages(nr_segments);
    if needed > BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST || needed > pages_given {
        return Err("more indirect pages needed than given");
    }
    Ok(())
}

fn decode_discard(
    operation: u8,
    req: &RequestDiscard,
    limits: &DiskLimits,
) -> Result<Decoded, Rejected> {
    let id = req.id;
    let reject = |status, reason| Rejected {
        id,
        operation,
        status,
        reason,
    };
    if !limits.discard {
        return Err(reject(BLKIF_RSP_EOPNOTSUPP, "discard is not supported"));
    }
    check_access(Direction::Write, req.sector_number, req.nr_sectors, limits)
        .map_err(|r| reject(BLKIF_RSP_ERROR, r))?;
    Ok(Decoded::Discard {
        id,
        operation,
        sector: req.sector_number,
        nr_sectors: req.nr_sectors,
        secure: req.flag & BLKIF_DISCARD_SECURE != 0,
    })
}

/// The segments of a [`Decoded::Indirect`] request from its indirect
/// pages, in order (each page copied once by the caller; 512 descriptors
/// a page, the last page only partly used). Checks again what `decode`
/// checked (count, pages, read-only) and then each segment as for a
/// direct request and the whole `sector + total sectors` range. An `Err`
/// is answered with `BLKIF_RSP_ERROR`.
pub fn decode_indirect_segments(
    pages: &[&[u8; PAGE_SIZE]],
    nr_segments: u16,
    sector: u64,
    dir: Direction,
    limits: &DiskLimits,
) -> Result<Vec<Segment>, &'static str> {
    check_indirect_count(nr_segments, pages.len(), limits)?;
    let segments = pages
        .iter()
        .flat_map(|page| page.chunks_exact(size_of::<RequestSegment>()))
        .take(usize::from(nr_segments))
        .map(|raw| Segment::check(&read_prefix(raw)))
        .collect::<Result<Vec<_>, _>>()?;
    let total = segments.iter().map(Segment::sectors).sum();
    check_access(dir, sector, total, limits)?;
    Ok(segments)
}

/// Parses a front end's decimal `u32` node (`%u`; a trailing NUL is
/// tolerated, as [`XenbusState::parse`] does).
pub(crate) fn parse_u32(text: &str) -> Option<u32> {
    text.trim_end_matches('\0').parse().ok()
}

/// The front end's ring: `ring-page-order` absent means one page named
/// by `ring-ref`; present (even 0) means `2^order` pages named by
/// `ring-ref0` .. `ring-ref{2^order - 1}`, as Linux's blkback reads it.
/// `read` takes a node name relative to the front end's directory.
/// `Err` for an order above `max_order` (or [`MAX_RING_PAGE_ORDER`]),
/// a missing ref, or any value that is not a decimal `u32`. (Linux's
/// blkback treats an unparsable `ring-page-order` as absent; we refuse
/// it.)
pub fn parse_ring_refs(
    read: impl Fn(&str) -> Option<String>,
    max_order: u32,
) -> Result<(u32, Vec<u32>), &'static str> {
    let Some(text) = read("ring-page-order") else {
        let gref = read("ring-ref").ok_or("ring-ref is missing")?;
        return Ok((
            0,
            alloc::vec![parse_u32(&gref).ok_or("ring-ref is not a number")?],
        ));
    };
    let order = parse_u32(&text).ok_or("ring-page-order is not a number")?;
    if order > max_order || order > MAX_RING_PAGE_ORDER {
        return Err("ring-page-order exceeds max-ring-page-order");
    }
    let grefs = (0..1u32 << order)
        .map(|i| {
            let text = read(&format!("ring-ref{i}")).ok_or("a ring-refN node is missing")?;
            parse_u32(&text).ok_or("a ring-refN node is not a number")
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((order, grefs))
}

/// The front end's `event-channel` port.
pub fn parse_event_channel(read: impl Fn(&str) -> Option<String>) -> Result<u32, &'static str> {
    let text = read("event-channel").ok_or("event-channel is missing")?;
    parse_u32(&text).ok_or("event-channel is not a number")
}

/// The front end's `protocol`: absent, empty (Linux: "unspecified,
/// assuming default") or `x86_64-abi` is the only ABI we serve; any
/// other (`x86_32-abi` included) is refused.
pub fn check_protocol(read: impl Fn(&str) -> Option<String>) -> Result<(), &'static str> {
    match read("protocol") {
        None => Ok(()),
        Some(text) => match text.trim_end_matches('\0') {
            "" | PROTOCOL_X86_64 => Ok(()),
            _ => Err("unsupported front end protocol (only x86_64-abi)"),
        },
    }
}

/// The front end's `multi-queue-num-queues`: absent or 1 (we advertise
/// `multi-queue-max-queues` 1; Linux's blkback refuses more than it
/// offers, and 0).
pub fn check_num_queues(read: impl Fn(&str) -> Option<String>) -> Result<(), &'static str> {
    match read("multi-queue-num-queues") {
        None => Ok(()),
        Some(text) if parse_u32(&text) == Some(1) => Ok(()),
        Some(_) => Err("multi-queue-num-queues must be 1"),
    }
}

/// What the back end does next, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendAction {
    /// Nothing (never in [`on_frontend_state`]'s answer: an empty list
    /// means nothing to do).
    None,
    /// Read the front end's nodes (a vbd: [`check_protocol`],
    /// [`parse_ring_refs`], [`parse_event_channel`]; a vif:
    /// [`netback::parse_frontend`](crate::netback::parse_frontend)), map
    /// the ring(s), bind the port(s), start serving. On failure the glue
    /// drops the actions that follow and writes Closing instead (Linux:
    /// `xenbus_dev_fatal`).
    Connect,
    /// Stop serving, unbind, unmap the ring(s).
    Disconnect,
    /// Write this to the back end's `state` node.
    SetState(XenbusState),
}

/// The back end's reaction to the front end's `state` (`None`: the node
/// is gone or unreadable, the front end vanished), given the back end's
/// own state and whether it is connected (ring mapped). Follows Linux's
/// `frontend_changed()`:
///
/// | front end                   | back end            | actions                                  |
/// |-----------------------------|---------------------|------------------------------------------|
/// | Initialising                | Closed              | Disconnect*, SetState(InitWait) (reconnect after a front end restart) |
/// | Initialising                | any other           | —                                        |
/// | Initialised, Connected      | Closing, Closed     | — (see below)                            |
/// | Initialised, Connected      | any other           | Connect (if not connected), SetState(Connected)* |
/// | Closing                     | any                 | Disconnect*, SetState(Closing)*          |
/// | Closed, Unknown, None       | any                 | Disconnect*, SetState(Closed)*           |
/// | InitWait, Reconfiguring, Reconfigured | any       | Disconnect*, SetState(Closing)* (Linux: `xenbus_dev_fatal`) |
///
/// `*`: only if it changes something (Disconnect only when connected,
/// SetState only to a new state), so a watch that fires again with
/// nothing new gives no actions.
///
/// Decided differently from Linux: (1) a front end at Initialised or
/// Connected does not (re)connect a back end that is Closing or Closed:
/// the back end got there because the toolstack or a fatal error is
/// tearing the device down, and a front end that restarts passes
/// through Initialising (Linux's `xenbus_reset_state` does), which
/// brings the back end to InitWait first. (2) Closing disconnects at
/// once (current Linux only switches to Closing and disconnects at
/// Closed; older blkback disconnected here too): a closing front end
/// issues no more I/O.
pub fn on_frontend_state(
    backend: XenbusState,
    frontend: Option<XenbusState>,
    connected: bool,
) -> Vec<BackendAction> {
    use XenbusState as S;
    let mut actions = Vec::new();
    let close = |target: XenbusState, actions: &mut Vec<BackendAction>| {
        if connected {
            actions.push(BackendAction::Disconnect);
        }
        if backend != target {
            actions.push(BackendAction::SetState(target));
        }
    };
    match frontend {
        Some(S::Initialising) => {
            if backend == S::Closed {
                close(S::InitWait, &mut actions);
            }
        }
        Some(S::Initialised | S::Connected) => {
            if !matches!(backend, S::Closing | S::Closed) {
                if !connected {
                    actions.push(BackendAction::Connect);
                }
                if backend != S::Connected {
                    actions.push(BackendAction::SetState(S::Connected));
                }
            }
        }
        Some(S::Closing) => close(S::Closing, &mut actions),
        Some(S::Closed | S::Unknown) | None => close(S::Closed, &mut actions),
        Some(S::InitWait | S::Reconfiguring | S::Reconfigured) => close(S::Closing, &mut actions),
    }
    actions
}

fn flag(on: bool) -> String {
    String::from(if on { "1" } else { "0" })
}

/// The back end directory's nodes, written before the back end goes to
/// InitWait (libxl's and blkback's share of the tree real Xen builds,
/// see LINUX-PVH.md §10), names relative to
/// `/local/domain/0/backend/vbd/<frontend_id>/<vdev>`. `state` is 1
/// (Initialising); the glue then sets InitWait. Left out: `params`,
/// `script`, `physical-device(-path)`, `hotplug-status` (the hotplug
/// script's, read by no front end). `discard-enable` is libxl's default
/// (on unless read-only).
pub fn backend_nodes(
    frontend_path: &str,
    frontend_id: u16,
    dev_name: &str,
    readonly: bool,
    max_indirect: u32,
    max_ring_order: u32,
) -> Vec<(&'static str, String)> {
    alloc::vec![
        ("frontend", frontend_path.to_string()),
        ("frontend-id", frontend_id.to_string()),
        ("online", flag(true)),
        ("removable", flag(false)),
        ("bootable", flag(true)),
        ("state", XenbusState::Initialising.raw().to_string()),
        ("dev", dev_name.to_string()),
        ("type", String::from("phy")),
        ("mode", String::from(if readonly { "r" } else { "w" })),
        ("device-type", String::from("disk")),
        ("discard-enable", flag(!readonly)),
        ("specification", String::from("xen")),
        ("feature-max-indirect-segments", max_indirect.to_string()),
        ("multi-queue-max-queues", String::from("1")),
        ("max-ring-page-order", max_ring_order.to_string()),
    ]
}

/// The nodes of the connect transaction, in the order Linux's blkback
/// writes them (the glue writes `state` 4 after): flush and barrier on,
/// no persistent grants, discard details if the disk can discard,
/// `sectors` in 512-byte units, `info` (`VDISK_READONLY` if read-only),
/// `sector-size` and `physical-sector-size` both `sector_size`. A
/// read-only disk gets no discard nodes at all (libxl sets
/// `discard-enable` 0 for it, and Linux's blkback then writes none);
/// otherwise `feature-discard` is always written, 0 or 1.
pub fn connect_nodes(
    sectors: u64,
    sector_size: u32,
    readonly: bool,
    discard: bool,
) -> Vec<(&'static str, String)> {
    let mut nodes = alloc::vec![("feature-flush-cache", flag(true))];
    if !readonly {
        if discard {
            nodes.push(("discard-granularity", DISCARD_GRANULARITY.to_string()));
            nodes.push(("discard-alignment", flag(false)));
            nodes.push(("discard-secure", flag(false)));
        }
        nodes.push(("feature-discard", flag(discard)));
    }
    let info = if readonly { VDISK_READONLY } else { 0 };
    nodes.extend([
        ("feature-barrier", flag(true)),
        ("feature-persistent", flag(false)),
        ("sectors", sectors.to_string()),
        ("info", info.to_string()),
        ("sector-size", sector_size.to_string()),
        ("physical-sector-size", sector_size.to_string()),
    ]);
    nodes
}

/// The front end directory's nodes the toolstack writes (libxl, see
/// LINUX-PVH.md §10), names relative to
/// `/local/domain/<frontend_id>/device/vbd/<vdev>`.
pub fn frontend_nodes(
    backend_path: &str,
    backend_id: u16,
    vdev: u32,
) -> Vec<(&'static str, String)> {
    alloc::vec![
        ("backend", backend_path.to_string()),
        ("backend-id", backend_id.to_string()),
        ("state", XenbusState::Initialising.raw().to_string()),
        ("virtual-device", vdev.to_string()),
        ("device-type", String::from("disk")),
        ("trusted", flag(true)),
    ]
}

/// `/local/domain/<backend_id>/backend/vbd/<frontend_id>/<vdev>`.
pub fn backend_path(backend_id: u16, frontend_id: u16, vdev: u32) -> String {
    format!("/local/domain/{backend_id}/backend/vbd/{frontend_id}/{vdev}")
}

/// `/local/domain/<frontend_id>/device/vbd/<vdev>`.
pub fn frontend_path(frontend_id: u16, vdev: u32) -> String {
    format!("/local/domain/{frontend_id}/device/vbd/{vdev}")
}

/// The `virtual-device` number of a whole Xen disk named `xvd<letters>`
/// (Xen's docs/misc/vbd-interface): disk `a` = 0 … `z` = 25, `aa` = 26 …;
/// disks 0–15 (`xvda`–`xvdp`) in the legacy form `202 << 8 | disk << 4`
/// (xvda = 51712), later ones extended, `1 << 28 | disk << 8`. `None`
/// for anything else (partitions included).
pub fn vdev_number(name: &str) -> Option<u32> {
    let letters = name.strip_prefix("xvd")?;
    if letters.is_empty() || letters.len() > 3 || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    // Bijective base 26: "a" = 1 … "z" = 26, "aa" = 27 …, minus one.
    let disk = letters
        .bytes()
        .fold(0u32, |n, b| n * 26 + u32::from(b - b'a') + 1)
        - 1;
    Some(if disk < 16 {
        202 << 8 | disk << 4
    } else {
        1 << 28 | disk << 8
    })
}
