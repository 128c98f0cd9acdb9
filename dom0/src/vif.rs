//! netback: serves each DomU's network interfaces (`pavise.vif=` on our
//! command line) over Xen's network protocol, and joins them and the
//! uplink NIC on one learning switch (`dom0::switch`).
//!
//! The toolstack half writes the vif directories as xl does; the back end
//! half follows the front end's `state` with the state machine blkback
//! uses, maps the tx and rx rings, binds the event channel(s) and moves
//! frames. Every ring slot is copied out once and judged by
//! `dom0::netback` (Linux netback's rules) before anything happens; data
//! moves between the front ends' granted pages and Dom0's memory with
//! GNTTABOP_copy, batched (no guest page is ever mapped but the rings).
//!
//! Fairness: each round takes at most [`TX_BUDGET`] packets from each
//! vif, so one flooding front end cannot starve the others; a front end
//! that posts no receive buffers fills only its own egress queue (the
//! switch counts the drops).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use dom0::backring::BackRing;
use dom0::cmdline::VifSpec;
use dom0::netback::{self, EventChannels, FrontendConfig, Mac, RxOutcome, RxSlot, TxOutcome};
use dom0::store::{Access, Perms, Store};
use dom0::switch::{PortId, Switch, SwitchConfig, Verdict};
use guest_shim::grants::{self, CopyOp, CopyPtr};
use guest_shim::{events, println};
use pv_abi::netif::{
    RX_ENTRY_SIZE, TX_ENTRY_SIZE, XEN_NETIF_MAX_TX_SIZE, XEN_NETIF_RSP_ERROR, XEN_NETIF_RSP_OKAY,
};
use pv_abi::xenbus::XenbusState;

use crate::mapped_ring::MappedRing;
use crate::uplink::Uplink;
use crate::xenbus_backend;

const PAGE: usize = 4096;
/// Interfaces served at most (each has two ring pages mapped).
pub const MAX_VIFS: usize = 32;
/// Packets taken from one vif's tx ring per round.
const TX_BUDGET: usize = 64;
/// Bytes of packets copied out of one vif in one batch of grant copies.
const TX_BATCH_BYTES: usize = 256 << 10;
/// Frames taken from the uplink per round.
const UPLINK_BUDGET: usize = 64;
/// What the vif directory's `bridge` node says (there is one switch).
const BRIDGE: &str = "pavbr0";
/// Dom0 memory the switch's queues may hold in all (beyond it frames are
/// dropped as if their queue were full): well inside [`NET_HEAP`].
const QUEUED_BYTES_MAX: usize = 6 << 20;
/// Per egress queue.
const QUEUE_FRAMES: usize = 256;
const QUEUE_BYTES: usize = 512 << 10;

#[repr(C, align(4096))]
struct Page([u8; PAGE]);

/// Where front ends' ring pages are mapped: tx then rx, per vif.
static mut RING_SLOTS: [[Page; 2]; MAX_VIFS] = [const { [const { Page([0; PAGE]) }; 2] }; MAX_VIFS];

fn ring_slot(index: usize, which: usize) -> *mut u8 {
    let slots = &raw mut RING_SLOTS;
    // SAFETY: one pair of pages per vif index, used only for its rings.
    unsafe { (*slots)[index][which].0.as_mut_ptr() }
}

/// Heap for the frames the switch queues (guest-shim's own heap is 1 MiB).
#[repr(C, align(4096))]
struct NetHeap([u8; 8 << 20]);
static mut NET_HEAP: NetHeap = NetHeap([0; 8 << 20]);

struct Connection {
    handles: Vec<(u32, u64)>,
    tx: MappedRing,
    rx: MappedRing,
    config: FrontendConfig,
}

/// Counters per vif, printed when it disconnects (with the switch's
/// drops on its port).
#[derive(Default, Clone, Copy)]
struct Counters {
    tx_packets: u64,
    tx_dropped: u64,
    tx_errors: u64,
    rx_packets: u64,
    rx_dropped: u64,
}

struct Vif {
    spec: VifSpec,
    index: usize,
    front: String,
    back: String,
    state: XenbusState,
    port: PortId,
    conn: Option<Connection>,
    counters: Counters,
    gone: bool,
}

impl Vif {
    fn name(&self) -> String {
        format!("d{} vif{}", self.spec.domid, self.spec.handle)
    }
}

pub struct Netback {
    vifs: Vec<Vif>,
    switch: Switch,
    uplink: Option<(Uplink, PortId)>,
    /// One packet being assembled from a front end's pages.
    scratch: Vec<u8>,
}

fn front_perms(domid: u16) -> Perms {
    Perms {
        owner: domid,
        others: Access::None,
        acl: alloc::vec![(0, Access::Read)],
    }
}

/// Copy ops for `len` bytes between page `gref` of `domid` (from byte
/// `offset`, within that page) and our memory at `local`, split where
/// our side crosses a page (no op may cross one).
fn copy_ops(
    domid: u16,
    gref: u32,
    offset: usize,
    local: u64,
    len: usize,
    to_local: bool,
    ops: &mut Vec<CopyOp>,
) {
    let mut done = 0;
    while done < len {
        let here = local + done as u64;
        let room = PAGE - (here as usize % PAGE);
        let n = room.min(len - done);
        let theirs = CopyPtr::Gref {
            domid,
            gref,
            offset: (offset + done) as u16,
        };
        let mine = CopyPtr::Own {
            gfn: here >> 12,
            offset: (here as usize % PAGE) as u16,
        };
        let (source, dest) = if to_local {
            (theirs, mine)
        } else {
            (mine, theirs)
        };
        ops.push(CopyOp {
            source,
            dest,
            len: n as u16,
        });
        done += n;
    }
}

impl Netback {
    /// Creates each vif's XenStore directories (as xl does) and its
    /// switch port, and joins the uplink if there is one.
    pub fn start(specs: &[VifSpec], uplink: Option<Uplink>, store: &mut Store) -> Self {
        let heap = &raw mut NET_HEAP;
        // SAFETY: NET_HEAP is used by nothing else; this runs once.
        guest_shim::heap::add_region(unsafe { &mut (*heap).0 });
        let mut switch = Switch::new(SwitchConfig {
            queue_frames: QUEUE_FRAMES,
            queue_bytes: QUEUE_BYTES,
            ..SwitchConfig::default()
        });
        let uplink = uplink.and_then(|u| match switch.add_port(None) {
            Ok(port) => Some((u, port)),
            Err(e) => {
                println!("dom0: uplink: {e}");
                None
            }
        });
        let mut netback = Self {
            vifs: Vec::new(),
            switch,
            uplink,
            scratch: Vec::with_capacity(XEN_NETIF_MAX_TX_SIZE as usize),
        };
        for spec in specs {
            if let Err(e) = netback.attach(spec, store) {
                println!("dom0: {e}");
            }
        }
        netback
    }

    /// Whether some interface served now has `mac`.
    pub fn mac_in_use(&self, mac: [u8; 6]) -> bool {
        self.vifs.iter().any(|v| !v.gone && v.spec.mac == mac)
    }

    /// Gives DomU `spec.domid` the interface `spec`: a switch port with
    /// its MAC and the vif directories (as xl writes them); the front end
    /// then connects. The ring pages of a removed vif are reused.
    pub fn attach(&mut self, spec: &VifSpec, store: &mut Store) -> Result<(), String> {
        let what = format!("d{} vif{}", spec.domid, spec.handle);
        if self
            .vifs
            .iter()
            .any(|v| !v.gone && v.spec.domid == spec.domid && v.spec.handle == spec.handle)
        {
            return Err(format!("{what}: that domain already has that interface"));
        }
        let index = match self.vifs.iter().position(|v| v.gone) {
            Some(i) => i,
            None if self.vifs.len() < MAX_VIFS => self.vifs.len(),
            None => {
                return Err(format!(
                    "{what}: Dom0 serves {MAX_VIFS} network interfaces already"
                ));
            }
        };
        let mac = Mac(spec.mac);
        let port = self
            .switch
            .add_port(Some(mac))
            .map_err(|e| format!("{what}: {e}"))?;
        let front = netback::frontend_path(spec.domid, spec.handle);
        let back = netback::backend_path(0, spec.domid, spec.handle);
        let back_perms = Perms::dom0_readable_by(spec.domid);
        let mut nodes = alloc::vec![(back.clone(), String::new(), back_perms.clone())];
        for (k, v) in netback::backend_nodes(&front, spec.domid, spec.handle, mac, BRIDGE) {
            nodes.push((format!("{back}/{k}"), v, back_perms.clone()));
        }
        let home = format!("/local/domain/{}/device/vif", spec.domid);
        nodes.push((home, String::new(), Perms::dom0_readable_by(spec.domid)));
        nodes.push((front.clone(), String::new(), front_perms(spec.domid)));
        for (k, v) in netback::frontend_nodes(&back, 0, spec.handle, mac, netback::DEFAULT_MTU) {
            let perms = if netback::FRONTEND_DOM0_OWNED.contains(&k) {
                Perms::dom0_readable_by(spec.domid)
            } else {
                front_perms(spec.domid)
            };
            nodes.push((format!("{front}/{k}"), v, perms));
        }
        store.toolstack_put(&nodes);
        let _ = store.local_write(&format!("{back}/state"), "2");
        println!("dom0: {what} mac {mac} on the switch ({port})");
        let vif = Vif {
            spec: *spec,
            index,
            front,
            back,
            state: XenbusState::InitWait,
            port,
            conn: None,
            counters: Counters::default(),
            gone: false,
        };
        xenbus_backend::place(&mut self.vifs, index, vif);
        Ok(())
    }

    /// Removes every interface of `domid`: disconnected, its switch port
    /// (queue, learned addresses, MAC) dropped, both directories removed.
    pub fn detach(&mut self, domid: u16, store: &mut Store) {
        for i in 0..self.vifs.len() {
            if self.vifs[i].gone || self.vifs[i].spec.domid != domid {
                continue;
            }
            self.disconnect_vif(i);
            let v = &mut self.vifs[i];
            v.gone = true;
            let _ = self.switch.remove_port(v.port);
            let _ = store.local_rm(&v.back);
            let _ = store.local_rm(&v.front);
            println!("dom0: {} removed (its domain ended)", v.name());
        }
    }

    /// Interfaces served now.
    pub fn vifs(&self) -> usize {
        self.vifs.iter().filter(|v| !v.gone).count()
    }

    pub fn has_uplink(&self) -> bool {
        self.uplink.is_some()
    }

    /// The uplink NIC's interrupt port and pirq.
    pub fn uplink_interrupt(&self) -> Option<(u32, Option<u32>)> {
        let (u, _) = self.uplink.as_ref()?;
        Some((u.port?, u.pirq))
    }

    /// After the NIC's interrupt: acknowledge it, let the line fire again.
    pub fn ack_uplink(&mut self) {
        self.ack_uplink_only();
        if let Some(pirq) = self.uplink.as_ref().and_then(|(u, _)| u.pirq) {
            let _ = guest_shim::hypercall::physdev_eoi(pirq);
        }
    }

    /// Acknowledges the NIC only (a disk on the same line sends the EOI).
    pub fn ack_uplink_only(&mut self) {
        if let Some((u, _)) = self.uplink.as_mut() {
            u.ack();
        }
    }

    /// Whether something must be polled (no interrupt for the uplink, or
    /// a front end without `feature-rx-notify` with frames waiting).
    pub fn needs_polling(&self) -> bool {
        let uplink = self.uplink.as_ref().is_some_and(|(u, _)| u.port.is_none());
        uplink
            || self.vifs.iter().any(|v| {
                v.conn.as_ref().is_some_and(|c| !c.config.rx_notify)
                    && self.switch.queued(v.port).is_ok_and(|(n, _)| n > 0)
            })
    }

    /// After VIRQ_DOM_EXC: every vif whose domain no longer exists is
    /// removed ([`Netback::detach`]).
    pub fn reap_dead(&mut self, store: &mut Store) {
        let live = self.vifs.iter().filter(|v| !v.gone).map(|v| v.spec.domid);
        for domid in xenbus_backend::gone_domains(live) {
            self.detach(domid, store);
        }
    }

    /// One round: follow front end states, take packets from every vif
    /// and the uplink into the switch, deliver what the switch queued.
    /// True if anything moved.
    pub fn serve(&mut self, store: &mut Store) -> bool {
        let mut moved = false;
        for i in 0..self.vifs.len() {
            moved |= xenbus_backend::follow_frontend(self, i, store);
        }
        for i in 0..self.vifs.len() {
            moved |= self.take_tx(i, store);
        }
        moved |= self.take_uplink();
        for i in 0..self.vifs.len() {
            moved |= self.deliver_rx(i, store);
        }
        moved |= self.deliver_uplink();
        moved
    }

    fn connect_vif(&mut self, i: usize, store: &mut Store) -> Result<(), String> {
        let v = &mut self.vifs[i];
        let front = v.front.clone();
        let read = |node: &str| store.local_read(&format!("{front}/{node}"));
        let config = netback::parse_frontend(read).map_err(|e| format!("{e}"))?;
        let domid = v.spec.domid;
        let (tx_va, rx_va) = (ring_slot(v.index, 0), ring_slot(v.index, 1));
        let mut handles = Vec::new();
        let unmap_all = |handles: &[(u32, u64)]| {
            for &(h, at) in handles {
                let _ = grants::unmap(h, at);
            }
        };
        for (gref, va) in [(config.tx_ring_ref, tx_va), (config.rx_ring_ref, rx_va)] {
            match grants::map(domid, gref, va as u64, false) {
                Ok(h) => handles.push((h, va as u64)),
                Err(_) => {
                    unmap_all(&handles);
                    return Err(format!("ring-ref {gref} is not a grant we may map"));
                }
            }
        }
        let bind = |remote: u32| events::bind_interdomain(domid, remote);
        let ports = match config.event_channels {
            EventChannels::Shared(p) => bind(p).map(|l| (l, l)),
            EventChannels::Split { tx, rx } => bind(tx).and_then(|t| match bind(rx) {
                Ok(r) => Ok((t, r)),
                Err(e) => {
                    let _ = events::close(t);
                    Err(e)
                }
            }),
        };
        let Ok((tx_port, rx_port)) = ports else {
            unmap_all(&handles);
            return Err(String::from(
                "event-channel is not an unbound port offered to us",
            ));
        };
        // A front end may have published before we attach (Linux posts
        // its rx buffers before Connected).
        let new_ring = |va: *mut u8, entry: usize, port: u32| {
            MappedRing::attach(va, BackRing::new(entry, 0)?, port)
        };
        let (Some(tx), Some(rx)) = (
            new_ring(tx_va, TX_ENTRY_SIZE, tx_port),
            new_ring(rx_va, RX_ENTRY_SIZE, rx_port),
        ) else {
            unmap_all(&handles);
            let _ = events::close(tx_port);
            if rx_port != tx_port {
                let _ = events::close(rx_port);
            }
            return Err(String::from("the rings' indices are impossible"));
        };
        println!(
            "dom0: {} connected: {} event channel{}, sg={} rx-notify={}",
            v.name(),
            if tx_port == rx_port { "one" } else { "split" },
            if tx_port == rx_port { "" } else { "s" },
            config.sg as u8,
            config.rx_notify as u8,
        );
        v.conn = Some(Connection {
            handles,
            tx,
            rx,
            config,
        });
        Ok(())
    }

    fn disconnect_vif(&mut self, i: usize) {
        let v = &mut self.vifs[i];
        let Some(c) = v.conn.take() else {
            return;
        };
        for &(h, at) in &c.handles {
            if grants::unmap(h, at).is_err() {
                println!("dom0: {}: ring unmap failed", v.name());
            }
        }
        let _ = events::close(c.tx.port);
        if c.rx.port != c.tx.port {
            let _ = events::close(c.rx.port);
        }
        let _ = self.switch.flush(v.port);
        let k = v.counters;
        // The switch's drops on this port: ingress ones (what it sent),
        // then its egress queue's (what was sent to it).
        let d = self.switch.stats(v.port).unwrap_or_default().drops;
        println!(
            "dom0: {} disconnected: tx {} packets ({} dropped, {} errors), rx {} ({} dropped); \
             switch drops: spoofed {}, group source {}, runt {}, oversize {}, \
             queue full {}, flushed {}",
            v.name(),
            k.tx_packets,
            k.tx_dropped,
            k.tx_errors,
            k.rx_packets,
            k.rx_dropped,
            d.spoofed,
            d.multicast_source,
            d.runt,
            d.oversize,
            d.queue_frames_full + d.queue_bytes_full,
            d.flushed
        );
    }

    /// The front end broke the protocol: stop serving it until it
    /// reconnects (Linux netback disables the vif: `xenvif_fatal_tx_err`).
    fn halt(&mut self, i: usize, why: &str, store: &mut Store) {
        println!(
            "dom0: {}: fatal error ({why}); disabling the interface",
            self.vifs[i].name()
        );
        self.disconnect_vif(i);
        let v = &mut self.vifs[i];
        v.state = XenbusState::Closing;
        let _ = store.local_write(&format!("{}/state", v.back), "5");
    }

    /// Takes up to [`TX_BUDGET`] packets from vif `i`: decodes them,
    /// copies all their bytes out with one batch of grant copies, then
    /// answers them in ring order and hands the good ones to the switch.
    fn take_tx(&mut self, i: usize, store: &mut Store) -> bool {
        enum Taken {
            Packet(netback::TxPacket, usize, core::ops::Range<usize>),
            Dropped(netback::TxDrop),
        }
        let v = &mut self.vifs[i];
        let Some(c) = v.conn.as_mut() else {
            return false;
        };
        let domid = v.spec.domid;
        let tx = &mut c.tx;
        let slots = tx.slots();
        // Reserved once: the copies' addresses must not move.
        self.scratch.clear();
        self.scratch
            .reserve(TX_BATCH_BYTES + XEN_NETIF_MAX_TX_SIZE as usize);
        let base = self.scratch.as_ptr() as u64;
        let mut taken = Vec::new();
        let mut ops = Vec::new();
        let mut fatal = None;
        while taken.len() < TX_BUDGET && self.scratch.len() < TX_BATCH_BYTES {
            let req_prod = tx.req_prod();
            let outcome = netback::decode_tx(&mut tx.ring, req_prod, |idx| {
                slots.read::<TX_ENTRY_SIZE>(idx)
            });
            match outcome {
                TxOutcome::NeedMore => {
                    let event = match tx.ring.available(req_prod) {
                        Ok(0) => tx.ring.final_check_req_event(),
                        _ => tx.ring.more_req_event(req_prod),
                    };
                    if !tx.rearm(event, req_prod) {
                        break;
                    }
                }
                TxOutcome::Dropped(drop) => taken.push(Taken::Dropped(drop)),
                TxOutcome::Fatal(why) => {
                    fatal = Some(format!("{why}"));
                    break;
                }
                TxOutcome::Packet(packet) => {
                    let at = self.scratch.len();
                    self.scratch.resize(at + packet.len, 0);
                    let first = ops.len();
                    let mut offset = at;
                    for seg in &packet.segments {
                        let (gref, from, len) = (seg.gref, seg.offset as usize, seg.len as usize);
                        copy_ops(domid, gref, from, base + offset as u64, len, true, &mut ops);
                        offset += len;
                    }
                    taken.push(Taken::Packet(packet, at, first..ops.len()));
                }
            }
        }
        let mut results = alloc::vec![Ok(()); ops.len()];
        grants::copy_many(&ops, &mut results);
        let moved = !taken.is_empty() || fatal.is_some();
        for t in taken {
            let v = &mut self.vifs[i];
            let c = v.conn.as_mut().expect("connected");
            match t {
                Taken::Dropped(drop) => {
                    for r in drop.responses() {
                        c.tx.respond(&r);
                    }
                    v.counters.tx_dropped += 1;
                }
                Taken::Packet(packet, at, span) => {
                    let ok = results[span].iter().all(|r| r.is_ok());
                    let status = if ok {
                        XEN_NETIF_RSP_OKAY
                    } else {
                        XEN_NETIF_RSP_ERROR
                    };
                    for r in packet.responses(status) {
                        c.tx.respond(&r);
                    }
                    if !ok {
                        v.counters.tx_errors += 1;
                        continue;
                    }
                    let frame = &mut self.scratch[at..at + packet.len];
                    let mut checksum_ok = packet.data_validated;
                    if packet.csum_blank {
                        if netback::complete_checksum(frame).is_err() {
                            // Linux netback drops a frame whose checksum
                            // it cannot set up.
                            v.counters.tx_dropped += 1;
                            continue;
                        }
                        checksum_ok = true;
                    }
                    if ingress(&mut self.switch, v.port, frame, checksum_ok) {
                        v.counters.tx_packets += 1;
                    } else {
                        v.counters.tx_dropped += 1;
                    }
                }
            }
        }
        if let Some(c) = self.vifs[i].conn.as_mut() {
            c.tx.push();
        }
        if let Some(why) = fatal {
            self.halt(i, &why, store);
        }
        moved
    }

    fn take_uplink(&mut self) -> bool {
        let Some((mut uplink, port)) = self.uplink.take() else {
            return false;
        };
        let mut moved = false;
        let switch = &mut self.switch;
        uplink.receive(UPLINK_BUDGET, |frame| {
            moved = true;
            ingress(switch, port, frame, false);
        });
        self.uplink = Some((uplink, port));
        moved
    }

    fn deliver_uplink(&mut self) -> bool {
        let Some((uplink, port)) = self.uplink.as_mut() else {
            return false;
        };
        let mut moved = false;
        while let Ok(Some(frame)) = self.switch.pop(*port) {
            uplink.send(&frame.data);
            moved = true;
        }
        moved
    }

    fn deliver_rx(&mut self, i: usize, store: &mut Store) -> bool {
        let v = &mut self.vifs[i];
        let Some(c) = v.conn.as_mut() else {
            return false;
        };
        let domid = v.spec.domid;
        let mut moved = false;
        // Frames placed this round: their copies go in one batch, then
        // their responses in ring order.
        let mut placed: Vec<(alloc::sync::Arc<[u8]>, Vec<RxSlot>)> = Vec::new();
        while let Ok(Some(frame)) = self.switch.front(v.port) {
            let (len, checksum_ok) = (frame.len(), frame.checksum_ok);
            let req_prod = c.rx.req_prod();
            let slots = c.rx.slots();
            let outcome = netback::rx_take(
                &mut c.rx.ring,
                req_prod,
                len,
                c.config.sg,
                checksum_ok,
                |idx| slots.read::<RX_ENTRY_SIZE>(idx),
            );
            match outcome {
                Err(overflow) => {
                    let why = format!("{overflow}");
                    self.finish_rx(i, placed, domid);
                    self.halt(i, &why, store);
                    return true;
                }
                Ok(RxOutcome::Wait { .. }) => {
                    let event = c.rx.ring.more_req_event(req_prod);
                    if c.rx.rearm(event, req_prod) {
                        continue;
                    }
                    break;
                }
                Ok(RxOutcome::Drop(_)) => {
                    let _ = self.switch.pop(v.port);
                    v.counters.rx_dropped += 1;
                }
                Ok(RxOutcome::Deliver(slots)) => {
                    let frame = self.switch.pop(v.port).ok().flatten().expect("front frame");
                    placed.push((frame.data, slots));
                    moved = true;
                }
            }
        }
        self.finish_rx(i, placed, domid);
        moved
    }

    /// Copies the placed frames into the front end's buffers, answers
    /// each slot and publishes.
    fn finish_rx(
        &mut self,
        i: usize,
        placed: Vec<(alloc::sync::Arc<[u8]>, Vec<RxSlot>)>,
        domid: u16,
    ) {
        let mut ops = Vec::new();
        let mut spans = Vec::new();
        for (data, slots) in &placed {
            for s in slots {
                let first = ops.len();
                let local = data.as_ptr() as u64 + s.frame_offset as u64;
                copy_ops(domid, s.gref, 0, local, s.len as usize, false, &mut ops);
                spans.push(first..ops.len());
            }
        }
        let mut results = alloc::vec![Ok(()); ops.len()];
        grants::copy_many(&ops, &mut results);
        let v = &mut self.vifs[i];
        let Some(c) = v.conn.as_mut() else {
            return;
        };
        let mut span = spans.into_iter();
        for (_, slots) in &placed {
            let mut frame_ok = true;
            for s in slots {
                let ok = span
                    .next()
                    .is_some_and(|r| results[r].iter().all(|x| x.is_ok()));
                frame_ok &= ok;
                c.rx.respond(&if ok { s.response() } else { s.error_response() });
            }
            if frame_ok {
                v.counters.rx_packets += 1;
            } else {
                v.counters.rx_dropped += 1;
            }
        }
        c.rx.push();
    }
}

/// Hands one frame to the switch unless Dom0's memory for queues is used
/// up (then it is dropped, as if its queue were full).
fn ingress(switch: &mut Switch, port: PortId, frame: &[u8], checksum_ok: bool) -> bool {
    let queued: usize = switch
        .ports()
        .filter_map(|p| switch.queued(p).ok())
        .map(|(_, bytes)| bytes)
        .sum();
    if queued + frame.len() > QUEUED_BYTES_MAX {
        return false;
    }
    matches!(
        switch.ingress(port, frame, checksum_ok),
        Ok(Verdict::Forwarded { .. })
    )
}

impl xenbus_backend::Devices for Netback {
    fn xenbus(&self, i: usize) -> Option<(String, String, XenbusState, bool)> {
        let v = &self.vifs[i];
        (!v.gone).then(|| (v.front.clone(), v.back.clone(), v.state, v.conn.is_some()))
    }
    fn set_state(&mut self, i: usize, state: XenbusState) {
        self.vifs[i].state = state;
    }
    fn connect(&mut self, i: usize, store: &mut Store) -> Result<(), String> {
        self.connect_vif(i, store)
    }
    fn disconnect(&mut self, i: usize) {
        self.disconnect_vif(i);
    }
    fn name(&self, i: usize) -> String {
        self.vifs[i].name()
    }
}
