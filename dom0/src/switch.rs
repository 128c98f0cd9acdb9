//! Dom0's learning Ethernet switch: the vifs of all DomUs and the uplink
//! (the machine's NIC) as ports, frames in from one port, out to the
//! queues of others.
//!
//! - A vif port is added with its MAC ([`Switch::add_port`]`(Some(mac))`):
//!   frames it sends with any other source are dropped and counted (no
//!   spoofing), its MAC is pinned to it and never learned elsewhere. The
//!   uplink is added with `None`: any unicast source.
//! - Sources are learned (a bounded table, oldest entry evicted); unicast
//!   goes to the learned port, or floods (every port but the ingress)
//!   when unknown; broadcast and multicast flood. No frame ever goes back
//!   out of the port it came in by.
//! - Each port has a bounded egress queue (frames and bytes); a full one
//!   drops what would not fit and counts it on that port, so a guest
//!   that posts no receive buffers fills only its own queue. Which frame
//!   a full queue drops is fair between the ports that feed it: the
//!   oldest frame of the port holding most of the queue, unless the
//!   frame's own port holds about as much (then the frame itself), so
//!   one flooding port cannot crowd the others out of a queue. The glue
//!   moves frames from a queue to its port ([`Switch::front`],
//!   [`Switch::pop`]) when the port can take them, and shares the
//!   transmit work fairly between ports (a bounded number of packets per
//!   vif per round); [`Switch::pending`] tells it which queues hold frames.
//!
//! Pure logic: no hardware, no shared memory, no time (entries age by
//! use, not by clock).

use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use core::fmt;

use pv_abi::netif::{ETH_ALEN, ETH_HLEN, XEN_NETIF_MAX_TX_SIZE};

use crate::netback::{Mac, MacError};

#[cfg(test)]
mod tests;

/// Default bound of the learning table.
pub const MAC_TABLE_SIZE: usize = 1024;
/// Default bound of one egress queue, in frames.
pub const QUEUE_FRAMES: usize = 256;
/// Default bound of one egress queue, in bytes (1 MiB).
pub const QUEUE_BYTES: usize = 1 << 20;
/// Default largest frame accepted: the most a netif transmit chain
/// carries.
pub const MAX_FRAME_LEN: usize = XEN_NETIF_MAX_TX_SIZE as usize;

/// Where the source address starts in an Ethernet header.
const SRC_OFFSET: usize = ETH_ALEN;

/// The switch's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwitchConfig {
    /// Learned addresses kept (pinned vif addresses come on top); 0
    /// learns nothing, so every unicast to a non-vif address floods.
    pub mac_table_size: usize,
    /// Frames one egress queue holds.
    pub queue_frames: usize,
    /// Bytes one egress queue holds.
    pub queue_bytes: usize,
    /// Longer frames are dropped on ingress.
    pub max_frame_len: usize,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            mac_table_size: MAC_TABLE_SIZE,
            queue_frames: QUEUE_FRAMES,
            queue_bytes: QUEUE_BYTES,
            max_frame_len: MAX_FRAME_LEN,
        }
    }
}

/// A port's name. Never reused, so a stale id of a removed port names
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(u32);

impl PortId {
    /// The number, for log lines.
    pub fn raw(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port{}", self.0)
    }
}

/// A queued frame. Flooding shares one copy of the bytes between queues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub data: Arc<[u8]>,
    /// Its TCP/UDP checksum is known good (the sender's netback completed
    /// it, or the sender said `NETTXF_data_validated`): deliver with
    /// `NETRXF_data_validated`.
    pub checksum_ok: bool,
    /// The port it came in by.
    pub from: PortId,
}

impl Frame {
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Why a frame was not taken in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngressDrop {
    /// Shorter than an Ethernet header.
    Runt,
    /// Longer than [`SwitchConfig::max_frame_len`].
    Oversize,
    /// A group address as source.
    MulticastSource,
    /// A vif sent with a source that is not its MAC, or the uplink with
    /// a source that is a vif's.
    Spoofed,
    /// Unicast to an address learned on the ingress port itself.
    Filtered,
}

impl fmt::Display for IngressDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IngressDrop::Runt => "runt frame",
            IngressDrop::Oversize => "oversize frame",
            IngressDrop::MulticastSource => "multicast source address",
            IngressDrop::Spoofed => "spoofed source address",
            IngressDrop::Filtered => "destination is on the ingress port",
        })
    }
}

/// What happened to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Taken in: queued on `queued` ports; `full` more ports had no room
    /// (counted on them). Older frames a full queue dropped to make room
    /// for this one are counted on that port only. `flooded`: sent to
    /// every other port (unknown unicast, broadcast, multicast) rather
    /// than to a learned one.
    Forwarded {
        queued: usize,
        full: usize,
        flooded: bool,
    },
    /// Dropped on ingress (counted on the ingress port).
    Dropped(IngressDrop),
}

/// Misuse of the switch by the glue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchError {
    /// No such port (never added, or removed).
    UnknownPort(PortId),
    /// A vif MAC that no interface may own.
    BadMac(MacError),
    /// Another vif port already owns this MAC.
    DuplicateMac(Mac),
    /// Port ids exhausted.
    TooManyPorts,
}

impl fmt::Display for SwitchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwitchError::UnknownPort(p) => write!(f, "no switch port {p}"),
            SwitchError::BadMac(e) => write!(f, "vif MAC refused: {e}"),
            SwitchError::DuplicateMac(m) => write!(f, "MAC {m} is already on another port"),
            SwitchError::TooManyPorts => f.write_str("switch port ids exhausted"),
        }
    }
}

/// Frames dropped, by reason. Ingress reasons count on the port the
/// frame came from; queue reasons on the port it was going to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drops {
    pub runt: u64,
    pub oversize: u64,
    pub multicast_source: u64,
    pub spoofed: u64,
    pub filtered: u64,
    /// The egress queue held [`SwitchConfig::queue_frames`] frames.
    pub queue_frames_full: u64,
    /// The frame would have passed [`SwitchConfig::queue_bytes`].
    pub queue_bytes_full: u64,
    /// Thrown away by [`Switch::flush`] (or with a removed port).
    pub flushed: u64,
}

impl Drops {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.runt
            + self.oversize
            + self.multicast_source
            + self.spoofed
            + self.filtered
            + self.queue_frames_full
            + self.queue_bytes_full
            + self.flushed
    }
}

/// One port's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames and bytes taken in from the port.
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames and bytes handed to the port's glue ([`Switch::pop`]).
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub drops: Drops,
}

struct Port {
    /// A vif's own address; `None` for the uplink.
    mac: Option<Mac>,
    queue: VecDeque<Frame>,
    queued_bytes: usize,
    /// Frames of `queue` by the port they came from (no zero entries).
    sources: BTreeMap<PortId, usize>,
    stats: PortStats,
}

impl Port {
    fn push(&mut self, frame: Frame) {
        self.queued_bytes += frame.len();
        *self.sources.entry(frame.from).or_default() += 1;
        self.queue.push_back(frame);
    }

    /// Takes the frame at `index` of the queue.
    fn take(&mut self, index: usize) -> Option<Frame> {
        let frame = self.queue.remove(index)?;
        self.queued_bytes -= frame.len();
        if let Some(n) = self.sources.get_mut(&frame.from) {
            *n -= 1;
            if *n == 0 {
                self.sources.remove(&frame.from);
            }
        }
        Some(frame)
    }

    /// Makes room for a frame of `len` bytes from port `from` within the
    /// bounds: while the queue is full, the oldest frame of the port
    /// holding most of it is dropped, as long as that port holds more
    /// than `from` does (by more than one frame, so that two ports at
    /// par do not displace each other). False (the frame does not go
    /// in) otherwise, or if it is larger than the queue. Each frame
    /// dropped, the refused one included, counts as a queue-full drop.
    fn make_room(&mut self, from: PortId, len: usize, config: &SwitchConfig) -> bool {
        loop {
            let frames_full = self.queue.len() >= config.queue_frames;
            if !frames_full && self.queued_bytes + len <= config.queue_bytes {
                return true;
            }
            let d = &mut self.stats.drops;
            let counter = if frames_full {
                &mut d.queue_frames_full
            } else {
                &mut d.queue_bytes_full
            };
            *counter += 1;
            let mine = self.sources.get(&from).copied().unwrap_or(0);
            let hog = self
                .sources
                .iter()
                .filter(|(p, _)| **p != from)
                .max_by_key(|(_, n)| **n)
                .filter(|(_, n)| **n > mine + 1)
                .map(|(p, _)| *p);
            let oldest = hog.and_then(|h| self.queue.iter().position(|f| f.from == h));
            match oldest {
                Some(i) if len <= config.queue_bytes => {
                    self.take(i);
                }
                _ => return false,
            }
        }
    }
}

struct Learned {
    port: PortId,
    /// When it was last learned or refreshed ([`Switch::clock`]).
    stamp: u64,
}

/// The switch. See the module documentation.
pub struct Switch {
    config: SwitchConfig,
    ports: BTreeMap<PortId, Port>,
    /// Vif addresses, each pinned to its port.
    pinned: BTreeMap<Mac, PortId>,
    learned: BTreeMap<Mac, Learned>,
    /// `learned` by age: stamp -> address, oldest first.
    by_age: BTreeMap<u64, Mac>,
    clock: u64,
    next_port: u32,
}

impl Switch {
    pub fn new(config: SwitchConfig) -> Self {
        Switch {
            config,
            ports: BTreeMap::new(),
            pinned: BTreeMap::new(),
            learned: BTreeMap::new(),
            by_age: BTreeMap::new(),
            clock: 0,
            next_port: 0,
        }
    }

    pub fn config(&self) -> &SwitchConfig {
        &self.config
    }

    /// Adds a port: a vif with its MAC (which must be unicast, non-zero
    /// and not another vif's; an address learned elsewhere before is
    /// forgotten), or the uplink with `None`.
    pub fn add_port(&mut self, mac: Option<Mac>) -> Result<PortId, SwitchError> {
        if let Some(mac) = mac {
            mac.check_unicast().map_err(SwitchError::BadMac)?;
            if self.pinned.contains_key(&mac) {
                return Err(SwitchError::DuplicateMac(mac));
            }
        }
        let id = PortId(self.next_port);
        self.next_port = self
            .next_port
            .checked_add(1)
            .ok_or(SwitchError::TooManyPorts)?;
        if let Some(mac) = mac {
            self.forget(&mac);
            self.pinned.insert(mac, id);
        }
        self.ports.insert(
            id,
            Port {
                mac,
                queue: VecDeque::new(),
                queued_bytes: 0,
                sources: BTreeMap::new(),
                stats: PortStats::default(),
            },
        );
        Ok(id)
    }

    /// Removes a port: its queue is dropped (counted as flushed in the
    /// returned final counters), everything learned on it forgotten, its
    /// MAC unpinned.
    pub fn remove_port(&mut self, port: PortId) -> Result<PortStats, SwitchError> {
        let mut gone = self
            .ports
            .remove(&port)
            .ok_or(SwitchError::UnknownPort(port))?;
        gone.stats.drops.flushed += gone.queue.len() as u64;
        if let Some(mac) = gone.mac {
            self.pinned.remove(&mac);
        }
        let stale: alloc::vec::Vec<Mac> = self
            .learned
            .iter()
            .filter(|(_, l)| l.port == port)
            .map(|(m, _)| *m)
            .collect();
        for mac in stale {
            self.forget(&mac);
        }
        Ok(gone.stats)
    }

    /// The ports, in the order they were added.
    pub fn ports(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports.keys().copied()
    }

    /// The ports whose egress queue holds frames.
    pub fn pending(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports
            .iter()
            .filter(|(_, p)| !p.queue.is_empty())
            .map(|(id, _)| *id)
    }

    /// A port's MAC (`None` for the uplink).
    pub fn port_mac(&self, port: PortId) -> Result<Option<Mac>, SwitchError> {
        Ok(self.port(port)?.mac)
    }

    /// A port's counters.
    pub fn stats(&self, port: PortId) -> Result<PortStats, SwitchError> {
        Ok(self.port(port)?.stats)
    }

    /// Frames and bytes in a port's egress queue.
    pub fn queued(&self, port: PortId) -> Result<(usize, usize), SwitchError> {
        let p = self.port(port)?;
        Ok((p.queue.len(), p.queued_bytes))
    }

    /// The port an address would be sent to: a vif's pinned address, or
    /// a learned one.
    pub fn lookup(&self, mac: &Mac) -> Option<PortId> {
        self.pinned
            .get(mac)
            .copied()
            .or_else(|| self.learned.get(mac).map(|l| l.port))
    }

    /// Learned (not pinned) addresses held.
    pub fn learned_len(&self) -> usize {
        self.learned.len()
    }

    /// The oldest frame of a port's egress queue, left in place (the
    /// glue looks at its length before taking receive buffers for it).
    pub fn front(&self, port: PortId) -> Result<Option<&Frame>, SwitchError> {
        Ok(self.port(port)?.queue.front())
    }

    /// Takes the oldest frame of a port's egress queue, for the glue to
    /// send out of that port.
    pub fn pop(&mut self, port: PortId) -> Result<Option<Frame>, SwitchError> {
        let p = self.port_mut(port)?;
        let frame = p.take(0);
        if let Some(f) = &frame {
            p.stats.tx_frames += 1;
            p.stats.tx_bytes += f.len() as u64;
        }
        Ok(frame)
    }

    /// Throws away a port's queued frames (a guest that stopped taking
    /// them; Linux drops a vif's queued frames after 10 s), counting them
    /// as flushed. Returns how many.
    pub fn flush(&mut self, port: PortId) -> Result<usize, SwitchError> {
        let p = self.port_mut(port)?;
        let n = p.queue.len();
        p.queue.clear();
        p.queued_bytes = 0;
        p.sources.clear();
        p.stats.drops.flushed += n as u64;
        Ok(n)
    }

    /// Takes in one frame that port `ingress` sent and queues it on the
    /// ports it goes to. `checksum_ok` travels with it (see
    /// [`Frame::checksum_ok`]). Checked in this order, each a drop counted
    /// on the ingress port: shorter than 14 bytes; longer than
    /// `max_frame_len`; a group source address; a vif's frame whose source
    /// is not its MAC, or the uplink's whose source is a vif's; then the
    /// source is learned (vif addresses are pinned, never learned); then
    /// unicast to an address on the ingress port itself is dropped too.
    pub fn ingress(
        &mut self,
        ingress: PortId,
        data: &[u8],
        checksum_ok: bool,
    ) -> Result<Verdict, SwitchError> {
        let own = self.port(ingress)?.mac;
        let verdict = self.check(ingress, own, data);
        let stats = &mut self.port_mut(ingress)?.stats;
        let drop = match verdict {
            Err(reason) => reason,
            Ok(out) => {
                stats.rx_frames += 1;
                stats.rx_bytes += data.len() as u64;
                return Ok(self.forward(ingress, out, data, checksum_ok));
            }
        };
        let d = &mut stats.drops;
        *match drop {
            IngressDrop::Runt => &mut d.runt,
            IngressDrop::Oversize => &mut d.oversize,
            IngressDrop::MulticastSource => &mut d.multicast_source,
            IngressDrop::Spoofed => &mut d.spoofed,
            IngressDrop::Filtered => &mut d.filtered,
        } += 1;
        Ok(Verdict::Dropped(drop))
    }

    /// The ingress checks and learning; the destination port, or `None`
    /// to flood.
    fn check(
        &mut self,
        ingress: PortId,
        own: Option<Mac>,
        data: &[u8],
    ) -> Result<Option<PortId>, IngressDrop> {
        if data.len() < ETH_HLEN {
            return Err(IngressDrop::Runt);
        }
        if data.len() > self.config.max_frame_len {
            return Err(IngressDrop::Oversize);
        }
        let (Some(dst), Some(src)) = (Mac::from_slice(data), Mac::from_slice(&data[SRC_OFFSET..]))
        else {
            return Err(IngressDrop::Runt);
        };
        if src.is_multicast() {
            return Err(IngressDrop::MulticastSource);
        }
        match own {
            Some(mac) if src != mac => return Err(IngressDrop::Spoofed),
            Some(_) => {}
            None if self.pinned.contains_key(&src) => return Err(IngressDrop::Spoofed),
            None => {}
        }
        if own.is_none() {
            self.learn(src, ingress);
        }
        if dst.is_multicast() {
            return Ok(None);
        }
        match self.lookup(&dst) {
            Some(port) if port == ingress => Err(IngressDrop::Filtered),
            known => Ok(known),
        }
    }

    fn forward(
        &mut self,
        ingress: PortId,
        out: Option<PortId>,
        data: &[u8],
        checksum_ok: bool,
    ) -> Verdict {
        let frame = Frame {
            data: Arc::from(data),
            checksum_ok,
            from: ingress,
        };
        let config = self.config;
        let (mut queued, mut full) = (0, 0);
        let targets = self
            .ports
            .iter_mut()
            .filter(|(id, _)| **id != ingress && out.is_none_or(|o| o == **id));
        for (_, port) in targets {
            if port.make_room(ingress, frame.len(), &config) {
                port.push(frame.clone());
                queued += 1;
            } else {
                full += 1;
            }
        }
        Verdict::Forwarded {
            queued,
            full,
            flooded: out.is_none(),
        }
    }

    /// Learns (or refreshes) `mac` on `port`, evicting the oldest entry
    /// when the table is full. Never called for pinned addresses.
    fn learn(&mut self, mac: Mac, port: PortId) {
        if self.config.mac_table_size == 0 {
            return;
        }
        self.forget(&mac);
        if self.learned.len() >= self.config.mac_table_size
            && let Some((_, oldest)) = self.by_age.pop_first()
        {
            self.learned.remove(&oldest);
        }
        self.clock += 1;
        self.by_age.insert(self.clock, mac);
        self.learned.insert(
            mac,
            Learned {
                port,
                stamp: self.clock,
            },
        );
    }

    fn forget(&mut self, mac: &Mac) {
        if let Some(old) = self.learned.remove(mac) {
            self.by_age.remove(&old.stamp);
        }
    }

    fn port(&self, port: PortId) -> Result<&Port, SwitchError> {
        self.ports.get(&port).ok_or(SwitchError::UnknownPort(port))
    }

    fn port_mut(&mut self, port: PortId) -> Result<&mut Port, SwitchError> {
        self.ports
            .get_mut(&port)
            .ok_or(SwitchError::UnknownPort(port))
    }
}
