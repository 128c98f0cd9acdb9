//! blkback: serves each DomU's virtual block devices (`pavise.vbd=` on
//! our command line) from a virtio disk, over Xen's block protocol.
//!
//! The toolstack half writes the frontend and backend directories as
//! xl does; the backend half follows the frontend's `state` through the
//! state machine in `dom0::blkback`, maps its ring, binds its event
//! channel and serves requests. Every request is copied out of the ring
//! once and validated by `dom0::blkback::decode` before anything happens;
//! data moves between the frontend's granted pages and Dom0's DMA pool
//! with GNTTABOP_copy (no mapping of guest data pages), and the device
//! reads or writes the pool directly.
//!
//! Requests are asynchronous: each is queued on its disk's virtio queue
//! and answered when the device completes it, so a slow disk delays only
//! the domains it serves. Flushes and discards wait until their disk has
//! nothing in flight (virtio-drivers does them synchronously). Discard is
//! done by writing zeros: the crate has no VIRTIO_BLK_T_DISCARD.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use dom0::backring::BackRing;
use dom0::blkback::{self, Decoded, Direction, DiskLimits, Segment};
use dom0::cmdline::{NamedDisk, VbdSpec};
use dom0::store::{Access, Perms, Store};
use guest_shim::grants::{self, CopyOp, CopyPtr, GrantError};
use guest_shim::{events, println};
use pv_abi::blkif::{BLKIF_RSP_ERROR, BLKIF_RSP_OKAY, ENTRY_SIZE, MAX_RING_PAGE_ORDER};
use pv_abi::xenbus::XenbusState;
use virtio_drivers::device::blk::{BlkReq, BlkResp, SECTOR_SIZE};

use crate::disks::Disk;
use crate::mapped_ring::MappedRing;
use crate::{virtio, xenbus_backend};

/// Segments an indirect request may carry: Xen's blkback offers 256
/// (LINUX-PVH.md §10), a 1 MiB request. Every request costs world
/// switches, so big ones are what makes a DomU's disk fast; when the DMA
/// pool is busy a request simply waits for room.
pub const MAX_INDIRECT_SEGMENTS: u32 = blkback::MAX_INDIRECT_SEGMENTS;
const PAGE: usize = 4096;
const MAX_VBDS: usize = 16;
const RING_PAGES_MAX: usize = 1 << MAX_RING_PAGE_ORDER;
/// Bytes of zeros a discard writes per device request.
const ZERO_CHUNK: usize = 64 * 1024;

#[repr(C, align(4096))]
struct Page([u8; PAGE]);

/// Where frontends' ring pages are mapped: one run of pages per vbd.
static mut RING_SLOTS: [[Page; RING_PAGES_MAX]; MAX_VBDS] =
    [const { [const { Page([0; PAGE]) }; RING_PAGES_MAX] }; MAX_VBDS];

fn ring_slot(index: usize) -> *mut u8 {
    let slots = &raw mut RING_SLOTS;
    // SAFETY: one run per vbd index, used only for that vbd's ring.
    unsafe { (*slots)[index].as_mut_ptr().cast() }
}

struct Connection {
    /// Bumped at every connect, so completions of an old ring are dropped.
    generation: u64,
    handles: Vec<(u32, u64)>,
    shared: MappedRing,
    /// Requests taken from the ring, not yet given to the disk.
    waiting: VecDeque<Decoded>,
}

impl Connection {
    fn respond(&mut self, id: u64, operation: u8, status: i16) {
        if self.shared.ring.in_flight() == 0 {
            return;
        }
        self.shared
            .respond(&blkback::response_bytes(id, operation, status));
    }
}

pub struct Vbd {
    spec: VbdSpec,
    disk: usize,
    index: usize,
    front: String,
    back: String,
    state: XenbusState,
    limits: DiskLimits,
    conn: Option<Connection>,
    generation: u64,
    /// The frontend's domain ended and the vbd was torn down.
    gone: bool,
}

/// A request the device has.
struct Flight {
    vbd: usize,
    generation: u64,
    id: u64,
    operation: u8,
    dir: Direction,
    segments: Vec<Segment>,
    buf: u64,
    pages: usize,
    len: usize,
    req: Box<BlkReq>,
    resp: Box<BlkResp>,
}

pub struct Blkback {
    vbds: Vec<Vbd>,
    disks: Vec<Disk>,
    /// Disks held for the toolstack, by name.
    named: Vec<NamedDisk>,
    /// Per disk: token → request.
    flights: Vec<BTreeMap<u16, Flight>>,
}

fn front_perms(domid: u16) -> Perms {
    Perms {
        owner: domid,
        others: Access::None,
        acl: alloc::vec![(0, Access::Read)],
    }
}

impl Blkback {
    /// Creates each vbd's XenStore directories (as xl does) on a disk we
    /// drive; a vbd naming no disk is reported and skipped. `named` are
    /// the disks held for domains the toolstack creates later.
    pub fn start(
        specs: &[VbdSpec],
        disks: Vec<Disk>,
        named: Vec<NamedDisk>,
        store: &mut Store,
    ) -> Self {
        let flights = disks.iter().map(|_| BTreeMap::new()).collect();
        let mut blkback = Self {
            vbds: Vec::new(),
            disks,
            named,
            flights,
        };
        for spec in specs {
            if let Err(e) = blkback.attach(spec, store) {
                println!("dom0: {e}");
            }
        }
        blkback
    }

    /// The PCI slot of the held disk `name` (`pavise.disk=`), if we drive
    /// it.
    pub fn named_slot(&self, name: &str) -> Option<u8> {
        let slot = self.named.iter().find(|d| d.name == name)?.pci_slot;
        self.disks.iter().any(|d| d.slot == slot).then_some(slot)
    }

    /// The names of the held disks we drive.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.named
            .iter()
            .filter(|n| self.disks.iter().any(|d| d.slot == n.pci_slot))
            .map(|n| n.name.as_str())
    }

    /// Who uses the disk in `pci_slot` now: the domain and its device.
    pub fn user_of(&self, pci_slot: u8) -> Option<(u16, &str)> {
        self.vbds
            .iter()
            .find(|v| !v.gone && v.spec.pci_slot == pci_slot)
            .map(|v| (v.spec.domid, v.spec.dev.as_str()))
    }

    /// Gives DomU `spec.domid` the virtual disk `spec`: writes its
    /// frontend and backend directories (as xl does) and waits for the
    /// frontend. A disk serves one vbd at a time; the slot of a removed
    /// vbd is reused.
    pub fn attach(&mut self, spec: &VbdSpec, store: &mut Store) -> Result<(), String> {
        let what = format!("d{} {}", spec.domid, spec.dev);
        let Some(disk) = self.disks.iter().position(|d| d.slot == spec.pci_slot) else {
            return Err(format!("{what}: no disk at PCI slot {:#x}", spec.pci_slot));
        };
        if let Some((domid, dev)) = self.user_of(spec.pci_slot) {
            return Err(format!(
                "{what}: the disk at slot {:#x} already serves d{domid} {dev}",
                spec.pci_slot
            ));
        }
        if self
            .vbds
            .iter()
            .any(|v| !v.gone && v.spec.domid == spec.domid && v.spec.dev == spec.dev)
        {
            return Err(format!("{what}: that domain already has that device"));
        }
        let Some(vdev) = blkback::vdev_number(&spec.dev) else {
            return Err(format!("{what}: bad device name"));
        };
        // The ring pages of a removed vbd are free again; its generation
        // goes on counting, so its late completions are still dropped.
        let (index, generation) = match self.vbds.iter().position(|v| v.gone) {
            Some(i) => (i, self.vbds[i].generation),
            None if self.vbds.len() < MAX_VBDS => (self.vbds.len(), 0),
            None => {
                return Err(format!(
                    "{what}: Dom0 serves {MAX_VBDS} virtual disks already"
                ));
            }
        };
        let readonly = spec.readonly || self.disks[disk].readonly;
        let front = blkback::frontend_path(spec.domid, vdev);
        let back = blkback::backend_path(0, spec.domid, vdev);
        let mut nodes = Vec::new();
        let back_perms = Perms::dom0_readable_by(spec.domid);
        nodes.push((back.clone(), String::new(), back_perms.clone()));
        for (k, v) in blkback::backend_nodes(
            &front,
            spec.domid,
            &spec.dev,
            readonly,
            MAX_INDIRECT_SEGMENTS,
            MAX_RING_PAGE_ORDER,
        ) {
            nodes.push((format!("{back}/{k}"), v, back_perms.clone()));
        }
        let home = format!("/local/domain/{}/device/vbd", spec.domid);
        nodes.push((home, String::new(), Perms::dom0_readable_by(spec.domid)));
        nodes.push((front.clone(), String::new(), front_perms(spec.domid)));
        for (k, v) in blkback::frontend_nodes(&back, 0, vdev) {
            nodes.push((format!("{front}/{k}"), v, front_perms(spec.domid)));
        }
        store.toolstack_put(&nodes);
        let _ = store.local_write(&format!("{back}/state"), "2");
        println!(
            "dom0: {what} ({vdev}) served from the disk at slot {:#x}{}",
            spec.pci_slot,
            if readonly { ", read-only" } else { "" }
        );
        let vbd = Vbd {
            spec: spec.clone(),
            disk,
            index,
            front,
            back,
            state: XenbusState::InitWait,
            limits: DiskLimits {
                sectors: self.disks[disk].sectors,
                readonly,
                discard: !readonly,
                max_indirect_segments: MAX_INDIRECT_SEGMENTS,
            },
            conn: None,
            generation,
            gone: false,
        };
        xenbus_backend::place(&mut self.vbds, index, vbd);
        Ok(())
    }

    /// Removes every vbd of `domid`, as `xl destroy` does: disconnected
    /// (its ring grants unmapped; requests still on the disk finish
    /// unanswered) and both directories removed. The disks are free for
    /// another domain.
    pub fn detach(&mut self, domid: u16, store: &mut Store) {
        for i in 0..self.vbds.len() {
            if self.vbds[i].gone || self.vbds[i].spec.domid != domid {
                continue;
            }
            self.disconnect_vbd(i);
            let v = &mut self.vbds[i];
            v.gone = true;
            let _ = store.local_rm(&v.back);
            let _ = store.local_rm(&v.front);
            println!("dom0: d{} {} removed (its domain ended)", domid, v.spec.dev);
        }
    }

    /// Virtual disks served now.
    pub fn vbds(&self) -> usize {
        self.vbds.iter().filter(|v| !v.gone).count()
    }

    /// Event-channel ports of the disks' interrupts.
    pub fn disk_ports(&self) -> impl Iterator<Item = u32> + '_ {
        self.disks.iter().filter_map(|d| d.port)
    }

    /// Whether some request waits on a disk that has no interrupt (then
    /// Dom0 must poll instead of sleeping).
    pub fn needs_polling(&self) -> bool {
        self.disks
            .iter()
            .zip(&self.flights)
            .any(|(d, f)| d.port.is_none() && !f.is_empty())
    }

    /// After the event on `port`: acknowledges every disk on that line,
    /// then lets the line fire again.
    pub fn ack_disks(&mut self, port: u32) {
        let mut pirq = None;
        for d in self.disks.iter_mut().filter(|d| d.port == Some(port)) {
            d.blk.ack_interrupt();
            pirq = d.pirq;
        }
        if let Some(pirq) = pirq {
            let _ = guest_shim::hypercall::physdev_eoi(pirq);
        }
    }

    /// After VIRQ_DOM_EXC: every vbd whose domain no longer exists is
    /// removed ([`Blkback::detach`]).
    pub fn reap_dead(&mut self, store: &mut Store) {
        let live = self.vbds.iter().filter(|v| !v.gone).map(|v| v.spec.domid);
        for domid in xenbus_backend::gone_domains(live) {
            self.detach(domid, store);
        }
    }

    /// One round: follow frontend states, collect completions, take new
    /// requests, start what can start. True if anything moved.
    pub fn serve(&mut self, store: &mut Store) -> bool {
        let mut moved = false;
        for i in 0..self.vbds.len() {
            moved |= xenbus_backend::follow_frontend(self, i, store);
        }
        for d in 0..self.disks.len() {
            moved |= self.complete(d);
        }
        for i in 0..self.vbds.len() {
            moved |= self.take_requests(i, store);
            moved |= self.start_waiting(i);
        }
        for d in 0..self.disks.len() {
            moved |= self.complete(d);
        }
        for v in self.vbds.iter_mut() {
            if let Some(c) = v.conn.as_mut() {
                c.shared.push();
            }
        }
        moved
    }

    fn connect_vbd(&mut self, i: usize, store: &mut Store) -> Result<(), &'static str> {
        let v = &mut self.vbds[i];
        let front = v.front.clone();
        let read = |node: &str| store.local_read(&format!("{front}/{node}"));
        blkback::check_protocol(read)?;
        blkback::check_num_queues(read)?;
        let (order, grefs) = blkback::parse_ring_refs(read, MAX_RING_PAGE_ORDER)?;
        let remote_port = blkback::parse_event_channel(read)?;
        let ring = BackRing::new(ENTRY_SIZE, order).ok_or("bad ring order")?;
        let base = ring_slot(v.index);
        let domid = v.spec.domid;
        let mut handles = Vec::new();
        for (n, &gref) in grefs.iter().enumerate() {
            let at = base as u64 + (n * PAGE) as u64;
            match grants::map(domid, gref, at, false) {
                Ok(h) => handles.push((h, at)),
                Err(_) => {
                    for &(h, at) in &handles {
                        let _ = grants::unmap(h, at);
                    }
                    return Err("a ring-ref is not a grant we may map");
                }
            }
        }
        let port = match events::bind_interdomain(domid, remote_port) {
            Ok(p) => p,
            Err(_) => {
                for &(h, at) in &handles {
                    let _ = grants::unmap(h, at);
                }
                return Err("event-channel is not an unbound port offered to us");
            }
        };
        v.generation += 1;
        v.conn = Some(Connection {
            generation: v.generation,
            handles,
            shared: MappedRing::new(base, ring, port),
            waiting: VecDeque::new(),
        });
        let disk = &self.disks[v.disk];
        let mut nodes = Vec::new();
        for (k, value) in blkback::connect_nodes(
            disk.sectors,
            SECTOR_SIZE as u32,
            v.limits.readonly,
            v.limits.discard,
        ) {
            nodes.push((format!("{}/{k}", v.back), value));
        }
        for (path, value) in nodes {
            let _ = store.local_write(&path, &value);
        }
        println!(
            "dom0: d{} {} connected: ring of {} page{}, port {port}",
            domid,
            v.spec.dev,
            1 << order,
            if order == 0 { "" } else { "s" }
        );
        Ok(())
    }

    fn disconnect_vbd(&mut self, i: usize) {
        let v = &mut self.vbds[i];
        let Some(c) = v.conn.take() else {
            return;
        };
        for &(h, at) in &c.handles {
            if grants::unmap(h, at).is_err() {
                println!("dom0: d{} {}: ring unmap failed", v.spec.domid, v.spec.dev);
            }
        }
        let _ = events::close(c.shared.port);
        println!("dom0: d{} {} disconnected", v.spec.domid, v.spec.dev);
    }

    /// A frontend broke the ring protocol: stop serving it (Linux blkback
    /// halts the ring the same way) until it reconnects.
    fn halt(&mut self, i: usize, why: &str, store: &mut Store) {
        let v = &self.vbds[i];
        println!("dom0: d{} {}: {why}; ring halted", v.spec.domid, v.spec.dev);
        self.disconnect_vbd(i);
        let v = &mut self.vbds[i];
        v.state = XenbusState::Closing;
        let _ = store.local_write(&format!("{}/state", v.back), "5");
    }

    fn take_requests(&mut self, i: usize, store: &mut Store) -> bool {
        let mut moved = false;
        loop {
            let v = &mut self.vbds[i];
            let Some(c) = v.conn.as_mut() else {
                return moved;
            };
            let req_prod = c.shared.req_prod();
            let range = match c.shared.ring.take(req_prod) {
                Ok(r) => r,
                Err(e) => {
                    let why = format!("{e}");
                    self.halt(i, &why, store);
                    return true;
                }
            };
            if range.is_empty() {
                let event = c.shared.ring.final_check_req_event();
                if !c.shared.rearm(event, req_prod) {
                    return moved;
                }
                continue;
            }
            moved = true;
            for idx in range {
                let slot = c.shared.read::<ENTRY_SIZE>(idx);
                match blkback::decode(&slot, &v.limits) {
                    Ok(d) => c.waiting.push_back(d),
                    Err(r) => c.respond(r.id, r.operation, r.status),
                }
            }
        }
    }

    /// Gives the disk what it can take now, in ring order.
    fn start_waiting(&mut self, i: usize) -> bool {
        let mut moved = false;
        loop {
            let disk = self.vbds[i].disk;
            let disk_idle = self.flights[disk].is_empty();
            let v = &mut self.vbds[i];
            let Some(c) = v.conn.as_mut() else {
                return moved;
            };
            let Some(next) = c.waiting.pop_front() else {
                return moved;
            };
            let exclusive = matches!(
                next,
                Decoded::Flush { .. } | Decoded::Discard { .. } | Decoded::Io { flush: true, .. }
            );
            if exclusive && !disk_idle {
                c.waiting.push_front(next);
                return moved;
            }
            match self.begin(i, next) {
                Started::Yes => moved = true,
                Started::Later(d) => {
                    if let Some(c) = self.vbds[i].conn.as_mut() {
                        c.waiting.push_front(d);
                    }
                    return moved;
                }
            }
        }
    }

    fn begin(&mut self, i: usize, request: Decoded) -> Started {
        let (id, operation) = (request.id(), request.operation());
        let v = &self.vbds[i];
        let domid = v.spec.domid;
        let limits = v.limits;
        let (dir, sector, segments, flush) = match request {
            Decoded::Flush { .. } => {
                let status = self.disks[v.disk]
                    .blk
                    .flush()
                    .map_or(BLKIF_RSP_ERROR, |_| BLKIF_RSP_OKAY);
                self.respond(i, id, operation, status);
                return Started::Yes;
            }
            Decoded::Discard {
                sector, nr_sectors, ..
            } => {
                let status = self.zero(v.disk, sector, nr_sectors);
                self.respond(i, id, operation, status);
                return Started::Yes;
            }
            Decoded::Io {
                dir,
                sector,
                segments,
                flush,
                ..
            } => (dir, sector, segments, flush),
            Decoded::Indirect {
                dir,
                sector,
                nr_segments,
                ref pages,
                ..
            } => match self.indirect_segments(domid, pages, nr_segments, sector, dir, &limits) {
                Ok(segments) => (dir, sector, segments, false),
                Err(status) => {
                    self.respond(i, id, operation, status);
                    return Started::Yes;
                }
            },
        };
        if flush && self.disks[v.disk].blk.flush().is_err() {
            self.respond(i, id, operation, BLKIF_RSP_ERROR);
            return Started::Yes;
        }
        let len: usize = segments.iter().map(|s| s.byte_len()).sum();
        let pages = len.div_ceil(PAGE);
        let Some((buf, _)) = virtio::alloc(pages) else {
            // The pool is busy with other requests: retry when they end.
            return Started::Later(Decoded::Io {
                id,
                operation,
                dir,
                sector,
                segments,
                flush: false,
            });
        };
        if dir == Direction::Write && !copy_segments(domid, &segments, buf, Direction::Write) {
            virtio::free(buf, pages);
            self.respond(i, id, operation, BLKIF_RSP_ERROR);
            return Started::Yes;
        }
        let mut flight = Flight {
            vbd: i,
            generation: self.vbds[i].generation,
            id,
            operation,
            dir,
            segments,
            buf,
            pages,
            len,
            req: Box::default(),
            resp: Box::default(),
        };
        let disk = &mut self.disks[self.vbds[i].disk];
        // SAFETY: `buf` is `len` bytes of our DMA pool, allocated for this
        // request alone; it, `req` and `resp` (boxed, so they do not move)
        // stay untouched until `complete` pops the token.
        let token = unsafe {
            let data = core::slice::from_raw_parts_mut(buf as *mut u8, len);
            match dir {
                Direction::Read => disk.blk.read_blocks_nb(
                    sector as usize,
                    &mut flight.req,
                    data,
                    &mut flight.resp,
                ),
                Direction::Write => disk.blk.write_blocks_nb(
                    sector as usize,
                    &mut flight.req,
                    data,
                    &mut flight.resp,
                ),
            }
        };
        match token {
            Ok(token) => {
                let disk_index = self.vbds[i].disk;
                self.flights[disk_index].insert(token, flight);
                Started::Yes
            }
            Err(virtio_drivers::Error::QueueFull) => {
                virtio::free(buf, pages);
                Started::Later(Decoded::Io {
                    id,
                    operation,
                    dir,
                    sector,
                    segments: flight.segments,
                    flush: false,
                })
            }
            Err(e) => {
                virtio::free(buf, pages);
                println!("dom0: disk request failed to queue: {e:?}");
                self.respond(i, id, operation, BLKIF_RSP_ERROR);
                Started::Yes
            }
        }
    }

    /// Copies an indirect request's descriptor pages once and decodes them.
    fn indirect_segments(
        &self,
        domid: u16,
        grefs: &[u32],
        nr_segments: u16,
        sector: u64,
        dir: Direction,
        limits: &DiskLimits,
    ) -> Result<Vec<Segment>, i16> {
        let n = grefs.len();
        let (buf, _) = virtio::alloc(n).ok_or(BLKIF_RSP_ERROR)?;
        let ops: Vec<CopyOp> = grefs
            .iter()
            .enumerate()
            .map(|(k, &gref)| CopyOp {
                source: CopyPtr::Gref {
                    domid,
                    gref,
                    offset: 0,
                },
                dest: CopyPtr::Own {
                    gfn: (buf >> 12) + k as u64,
                    offset: 0,
                },
                len: PAGE as u16,
            })
            .collect();
        let mut results = alloc::vec![Err(GrantError::UnknownStatus(0)); ops.len()];
        grants::copy_many(&ops, &mut results);
        let result = if results.iter().all(Result::is_ok) {
            // SAFETY: `n` pool pages we own, just filled by the copies.
            let pages: Vec<&[u8; PAGE]> = (0..n)
                .map(|k| unsafe { &*((buf as usize + k * PAGE) as *const [u8; PAGE]) })
                .collect();
            blkback::decode_indirect_segments(&pages, nr_segments, sector, dir, limits)
                .map_err(|_| BLKIF_RSP_ERROR)
        } else {
            Err(BLKIF_RSP_ERROR)
        };
        virtio::free(buf, n);
        result
    }

    /// Writes zeros over a range (our discard), a chunk at a time.
    fn zero(&mut self, disk: usize, sector: u64, nr_sectors: u64) -> i16 {
        if nr_sectors == 0 {
            return BLKIF_RSP_OKAY;
        }
        let pages = ZERO_CHUNK / PAGE;
        let Some((buf, _)) = virtio::alloc(pages) else {
            return BLKIF_RSP_ERROR;
        };
        // SAFETY: `pages` zeroed pool pages we own until freed below.
        let zeros = unsafe { core::slice::from_raw_parts(buf as *const u8, ZERO_CHUNK) };
        let per_chunk = (ZERO_CHUNK / SECTOR_SIZE) as u64;
        let mut at = sector;
        let end = sector + nr_sectors;
        let mut status = BLKIF_RSP_OKAY;
        while at < end {
            let n = per_chunk.min(end - at);
            let bytes = &zeros[..(n as usize) * SECTOR_SIZE];
            if self.disks[disk]
                .blk
                .write_blocks(at as usize, bytes)
                .is_err()
            {
                status = BLKIF_RSP_ERROR;
                break;
            }
            at += n;
        }
        virtio::free(buf, pages);
        status
    }

    fn respond(&mut self, i: usize, id: u64, operation: u8, status: i16) {
        if let Some(c) = self.vbds[i].conn.as_mut() {
            c.respond(id, operation, status);
        }
    }

    /// Answers every request the disk finished. The data of all finished
    /// reads goes back to their frontends in one batch of grant copies
    /// (a hypercall is a world switch: one per round, not per request).
    fn complete(&mut self, d: usize) -> bool {
        let mut finished: Vec<(Flight, i16)> = Vec::new();
        while let Some(token) = self.disks[d].blk.peek_used() {
            let Some(mut f) = self.flights[d].remove(&token) else {
                println!(
                    "dom0: disk at slot {:#x} completed an unknown request",
                    self.disks[d].slot
                );
                break;
            };
            // SAFETY: the same buffers the request was queued with.
            let result = unsafe {
                let data = core::slice::from_raw_parts_mut(f.buf as *mut u8, f.len);
                match f.dir {
                    Direction::Read => {
                        self.disks[d]
                            .blk
                            .complete_read_blocks(token, &f.req, data, &mut f.resp)
                    }
                    Direction::Write => {
                        self.disks[d]
                            .blk
                            .complete_write_blocks(token, &f.req, data, &mut f.resp)
                    }
                }
            };
            let status = if result.is_ok() {
                BLKIF_RSP_OKAY
            } else {
                BLKIF_RSP_ERROR
            };
            finished.push((f, status));
        }
        if finished.is_empty() {
            return false;
        }
        let current = |vbds: &[Vbd], f: &Flight| {
            vbds[f.vbd]
                .conn
                .as_ref()
                .is_some_and(|c| c.generation == f.generation)
        };
        // Reads still owed to a connected frontend: copy them all out.
        let mut ops = Vec::new();
        let mut spans = Vec::with_capacity(finished.len());
        for (f, status) in &finished {
            let start = ops.len();
            if *status == BLKIF_RSP_OKAY && f.dir == Direction::Read && current(&self.vbds, f) {
                copy_ops(
                    self.vbds[f.vbd].spec.domid,
                    &f.segments,
                    f.buf,
                    Direction::Read,
                    &mut ops,
                );
            }
            spans.push(start..ops.len());
        }
        let mut results = alloc::vec![Err(GrantError::UnknownStatus(0)); ops.len()];
        grants::copy_many(&ops, &mut results);
        for ((f, mut status), span) in finished.into_iter().zip(spans) {
            if results[span].iter().any(Result::is_err) {
                status = BLKIF_RSP_ERROR;
            }
            virtio::free(f.buf, f.pages);
            let is_current = current(&self.vbds, &f);
            if is_current && let Some(c) = self.vbds[f.vbd].conn.as_mut() {
                c.respond(f.id, f.operation, status);
            }
        }
        true
    }
}

enum Started {
    Yes,
    Later(Decoded),
}

/// Moves a request's data between the frontend's granted pages and our
/// buffer at `buf` (`Write`: into the buffer; `Read`: out of it), with
/// every copy split at our page boundaries. False if any copy failed (a
/// bad grant: the request gets BLKIF_RSP_ERROR).
fn copy_segments(domid: u16, segments: &[Segment], buf: u64, dir: Direction) -> bool {
    let mut ops = Vec::with_capacity(segments.len() * 2);
    copy_ops(domid, segments, buf, dir, &mut ops);
    let mut results = alloc::vec![Err(GrantError::UnknownStatus(0)); ops.len()];
    grants::copy_many(&ops, &mut results);
    results.iter().all(Result::is_ok)
}

/// The grant copies that move `segments` between the frontend and our
/// buffer at `buf`, each split at our page boundaries, appended to `ops`.
fn copy_ops(domid: u16, segments: &[Segment], buf: u64, dir: Direction, ops: &mut Vec<CopyOp>) {
    let mut at = buf;
    for s in segments {
        let mut done = 0;
        while done < s.byte_len() {
            let ours = at + done as u64;
            let room = PAGE - (ours as usize % PAGE);
            let len = room.min(s.byte_len() - done);
            let theirs = CopyPtr::Gref {
                domid,
                gref: s.gref,
                offset: (s.byte_offset() + done) as u16,
            };
            let mine = CopyPtr::Own {
                gfn: ours >> 12,
                offset: (ours as usize % PAGE) as u16,
            };
            let (source, dest) = match dir {
                Direction::Write => (theirs, mine),
                Direction::Read => (mine, theirs),
            };
            ops.push(CopyOp {
                source,
                dest,
                len: len as u16,
            });
            done += len;
        }
        at += s.byte_len() as u64;
    }
}

impl xenbus_backend::Devices for Blkback {
    fn xenbus(&self, i: usize) -> Option<(String, String, XenbusState, bool)> {
        let v = &self.vbds[i];
        (!v.gone).then(|| (v.front.clone(), v.back.clone(), v.state, v.conn.is_some()))
    }
    fn set_state(&mut self, i: usize, state: XenbusState) {
        self.vbds[i].state = state;
    }
    fn connect(&mut self, i: usize, store: &mut Store) -> Result<(), String> {
        self.connect_vbd(i, store).map_err(String::from)
    }
    fn disconnect(&mut self, i: usize) {
        self.disconnect_vbd(i);
    }
    fn name(&self, i: usize) -> String {
        let v = &self.vbds[i];
        format!("d{} {}", v.spec.domid, v.spec.dev)
    }
}
