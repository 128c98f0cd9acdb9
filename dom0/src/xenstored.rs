//! The XenStore server's plumbing: one connection per DomU over the ring
//! page and event channel its builder gave it, bytes in and out of the
//! pure store core (`dom0::store`). Each DomU is introduced with the nodes
//! Xen's toolstack writes (name, memory and vCPUs from Dom0's command
//! line, store and console rings from the domain's HVM params).

use alloc::collections::VecDeque;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use dom0::cmdline::DomuSpec;
use dom0::store::{self, DomId, DomainInfo, FrameReader, RingInfo, Shutdown, Store, XsError};
use guest_shim::{events, hypercall, println};

use crate::foreign_page::ForeignPage;
use pv_abi::hypercall::{
    HVM_PARAM_CONSOLE_EVTCHN, HVM_PARAM_CONSOLE_PFN, HVM_PARAM_STORE_EVTCHN, HVM_PARAM_STORE_PFN,
};
use pv_abi::ring;
use pv_abi::xenstore::ring::{REQ, REQ_CONS, REQ_PROD, RSP, RSP_CONS, RSP_PROD, SIZE as RING};

/// Domain ids probed for boot-time DomUs.
const MAX_DOMID: u16 = 32;
/// Replies and events waiting for ring space, per connection.
const OUTBOX_MAX: usize = 64 * 1024;

struct Connection {
    domid: DomId,
    /// Our page where the DomU's ring is mapped (held for its mapping).
    _page: ForeignPage,
    ring: *mut u8,
    port: u32,
    reader: FrameReader,
    outbox: VecDeque<u8>,
    broken: bool,
}

fn ring_u32(ring: *mut u8, offset: usize) -> &'static AtomicU32 {
    // SAFETY: `ring` is a mapped ring page; offsets are its aligned
    // cons/prod fields (xenstore_domain_interface).
    unsafe { AtomicU32::from_ptr(ring.add(offset) as *mut u32) }
}

pub struct Xenstored {
    store: Store,
    connections: Vec<Connection>,
}

impl Xenstored {
    /// Connects every DomU that has a store ring and introduces it;
    /// `domus` are the boot-time DomUs named on our command line.
    pub fn start(domus: &[DomuSpec]) -> Self {
        let mut me = Self {
            store: Store::new(),
            connections: Vec::new(),
        };
        me.store.introduce(0);
        for domid in 1..MAX_DOMID {
            let Ok(pfn) = hypercall::hvm_get_param_of(domid, HVM_PARAM_STORE_PFN) else {
                continue;
            };
            let Ok(port) = hypercall::hvm_get_param_of(domid, HVM_PARAM_STORE_EVTCHN) else {
                continue;
            };
            if pfn == 0 {
                continue;
            }
            let store = RingInfo {
                port: port as u32,
                gfn: pfn,
            };
            if let Err(e) = me.connect(&domain_info(domid, store, domus)) {
                println!("dom0: {e}");
            }
        }
        me
    }

    /// Maps the DomU's store ring, binds its channel and introduces it
    /// (its nodes, then `@introduceDomain`).
    pub fn connect(&mut self, info: &DomainInfo) -> Result<(), alloc::string::String> {
        let domid = info.domid;
        let page = ForeignPage::map(domid, info.store.gfn, "store ring")?;
        let ring = page.ptr();
        let local = events::bind_interdomain(domid, info.store.port)
            .map_err(|e| format!("cannot bind d{domid}'s store event channel: {e:?}"))?;
        self.store.introduce_domain(info);
        self.connections.push(Connection {
            domid,
            _page: page,
            ring,
            port: local,
            reader: FrameReader::default(),
            outbox: VecDeque::new(),
            broken: false,
        });
        Ok(())
    }

    /// The DomU is gone: drops its connection, removes its nodes (home,
    /// `/vm/<uuid>`, backend directories), fires `@releaseDomain`, and says
    /// what the store holds now (a soak checks it returns).
    pub fn disconnect(&mut self, domid: DomId) {
        if let Some(i) = self.connections.iter().position(|c| c.domid == domid) {
            let c = self.connections.swap_remove(i);
            let _ = events::close(c.port);
            // Its ring page is unmapped as `c` goes.
        }
        self.store.remove_domain(domid);
        println!(
            "dom0: XenStore after d{domid} left: {}",
            self.store.counts()
        );
    }

    /// Whether `domid` has a store connection.
    pub fn serves(&self, domid: DomId) -> bool {
        self.connections.iter().any(|c| c.domid == domid)
    }

    /// Writes a shutdown request to the DomU's `control/shutdown`; the
    /// watch event goes out at the next `serve`.
    pub fn request_shutdown(&mut self, dom: DomId, kind: Shutdown) -> Result<(), XsError> {
        self.store.request_shutdown(dom, kind)
    }

    /// The store itself, for Dom0's own toolstack and backends.
    pub fn store(&mut self) -> &mut Store {
        &mut self.store
    }

    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    /// Serves whatever arrived; true if anything moved.
    pub fn serve(&mut self) -> bool {
        let mut moved = false;
        for i in 0..self.connections.len() {
            moved |= self.take_requests(i);
        }
        while let Some((to, reply)) = self.store.events.pop_front() {
            if let Some(c) = self.connections.iter_mut().find(|c| c.domid == to) {
                queue(c, &store::encode(&reply));
            }
        }
        for c in self.connections.iter_mut() {
            moved |= flush(c);
        }
        moved
    }

    fn take_requests(&mut self, index: usize) -> bool {
        let c = &mut self.connections[index];
        if c.broken {
            return false;
        }
        let cons = ring_u32(c.ring, REQ_CONS).load(Ordering::Acquire);
        let prod = ring_u32(c.ring, REQ_PROD).load(Ordering::Acquire);
        let Some(available) = ring::unconsumed(prod, cons, RING) else {
            // A producer more than a ring ahead: the guest broke the protocol.
            println!(
                "dom0: d{} wrote a bad store ring index; closing its store connection",
                c.domid
            );
            c.broken = true;
            return false;
        };
        if available == 0 {
            return false;
        }
        let mut bytes = alloc::vec![0u8; available as usize];
        // SAFETY: req[] of the mapped ring page; `available` <= its size.
        unsafe { guest_shim::byte_ring::take(c.ring, REQ, RING, cons, &mut bytes) };
        ring_u32(c.ring, REQ_CONS).store(prod, Ordering::SeqCst);
        // The guest may be waiting for room to finish a message (a long
        // one, or many while we were busy): without word of room a
        // half-written request gets no reply, so no event, and both sides
        // wait: it is told when it can be waiting (`room_news_due`).
        let prod_now = ring_u32(c.ring, REQ_PROD).load(Ordering::SeqCst);
        if ring::room_news_due(prod_now, cons, RING) {
            let _ = events::send(c.port);
        }
        c.reader.push(&bytes);
        let domid = c.domid;
        loop {
            let frame = match self.connections[index].reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => {
                    println!(
                        "dom0: d{domid} sent an oversized store message; closing its store connection"
                    );
                    self.connections[index].broken = true;
                    break;
                }
            };
            let (kind, req_id, tx, payload) = frame;
            let reply = self.store.handle(domid, kind, req_id, tx, &payload);
            queue(&mut self.connections[index], &store::encode(&reply));
        }
        true
    }
}

/// What we know of a DomU: its command-line entry if there is one (else a
/// made-up name, one vCPU and no memory size), its rings.
fn domain_info(domid: DomId, store: RingInfo, domus: &[DomuSpec]) -> DomainInfo {
    let spec = domus.iter().find(|d| d.domid == domid);
    if spec.is_none() {
        println!("dom0: d{domid} is not on the command line; calling it d{domid}");
    }
    let console = match (
        hypercall::hvm_get_param_of(domid, HVM_PARAM_CONSOLE_PFN),
        hypercall::hvm_get_param_of(domid, HVM_PARAM_CONSOLE_EVTCHN),
    ) {
        (Ok(gfn), Ok(port)) if gfn != 0 => Some(RingInfo {
            port: port as u32,
            gfn,
        }),
        _ => None,
    };
    DomainInfo {
        domid,
        name: spec.map_or_else(|| format!("d{domid}"), |s| s.name.clone()),
        vcpus: spec.map_or(1, |s| s.vcpus),
        mem_kib: spec.map(|s| u64::from(s.mem_mib) * 1024),
        store,
        console,
    }
}

fn queue(c: &mut Connection, bytes: &[u8]) {
    if c.outbox.len() + bytes.len() > OUTBOX_MAX {
        // A guest that never reads its replies loses them, not our memory.
        return;
    }
    c.outbox.extend(bytes.iter().copied());
}

fn flush(c: &mut Connection) -> bool {
    if c.outbox.is_empty() || c.broken {
        return false;
    }
    let cons = ring_u32(c.ring, RSP_CONS).load(Ordering::Acquire);
    let prod = ring_u32(c.ring, RSP_PROD).load(Ordering::Acquire);
    let Some(space) = ring::free_slots(prod, cons, RING) else {
        c.broken = true;
        return false;
    };
    let space = space as usize;
    let n = space.min(c.outbox.len());
    c.outbox.make_contiguous();
    let (pending, _) = c.outbox.as_slices();
    // SAFETY: rsp[] of the mapped ring page; n <= the free slots <= its size.
    unsafe { guest_shim::byte_ring::put(c.ring, RSP, RING, prod, &pending[..n]) };
    c.outbox.drain(..n);
    ring_u32(c.ring, RSP_PROD).store(prod.wrapping_add(n as u32), Ordering::Release);
    let _ = events::send(c.port);
    n > 0
}
