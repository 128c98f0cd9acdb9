//! The pure core of Dom0's network backend (netback): everything a vif's
//! glue needs besides hypercalls and shared memory.
//!
//! - the handshake: XenStore paths ([`backend_path`], [`frontend_path`]),
//!   the nodes the toolstack and the back end publish ([`backend_nodes`],
//!   [`frontend_nodes`]), the xenbus state machine (blkback's
//!   [`on_frontend_state`], whose table netback shares) and the front
//!   end's connect keys ([`parse_frontend`]);
//! - MAC addresses ([`Mac`]);
//! - the transmit ring (guest to Dom0): [`decode_tx`] takes one packet's
//!   slots off the ring with Linux netback's checks and says what to do;
//! - the receive ring (Dom0 to guest): [`rx_take`] takes the buffers one
//!   frame needs and says which bytes go where and what to answer;
//! - checksum completion for packets sent with `NETTXF_csum_blank`
//!   ([`complete_checksum`]).
//!
//! Nothing here touches shared memory: the glue hands in copies of ring
//! slots (each read once, through a closure) and of frames. Semantics
//! follow Xen's `io/netif.h` and Linux's `xen-netback` (`netback.c`,
//! `rx.c`, `xenbus.c`); where this module decides otherwise the item
//! says so. We serve one queue, copy on receive (no rx-flip), do no GSO
//! and offer no multicast control, control ring or XDP headroom.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use pv_abi::PAGE_SIZE;
use pv_abi::grant_table::GrantRef;
use pv_abi::netif::{
    ETH_ALEN, ETH_HLEN, ExtraInfo, NETRXF_DATA_VALIDATED, NETRXF_MORE_DATA, NETTXF_CSUM_BLANK,
    NETTXF_DATA_VALIDATED, NETTXF_EXTRA_INFO, NETTXF_MORE_DATA, RX_ENTRY_SIZE, RxRequest,
    RxResponse, TX_ENTRY_SIZE, TxRequest, TxResponse, XEN_NETBK_LEGACY_SLOTS_MAX,
    XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_TYPE_MCAST_ADD, XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
    XEN_NETIF_EXTRA_TYPE_NONE, XEN_NETIF_EXTRA_TYPE_XDP, XEN_NETIF_GSO_TYPE_TCPV4,
    XEN_NETIF_GSO_TYPE_TCPV6, XEN_NETIF_MAX_TX_SIZE, XEN_NETIF_RSP_ERROR, XEN_NETIF_RSP_NULL,
    XEN_NETIF_RSP_OKAY,
};
use pv_abi::ring::RingIdx;
use pv_abi::xenbus::XenbusState;
use zerocopy::FromBytes;

use crate::backring::{BackRing, RingOverflow};
use crate::blkback::parse_u32;

/// The xenbus state machine is blkback's (the same table serves a vif):
/// the front end at Initialised or Connected connects (Linux's netfront
/// goes from Initialising straight to Connected; Linux netback waits for
/// Connected, connecting at Initialised as well changes nothing for it
/// since netfront writes its keys before either), Closing and Closed
/// disconnect. Unlike Linux netback, a front end that drops back to
/// Initialising while connected is not cycled through Closing to
/// InitWait (a restarting front end closes first).
pub use crate::blkback::{BackendAction, on_frontend_state};

#[cfg(test)]
mod tests;

/// Slots a packet may use before Linux netback calls its front end
/// malicious and disconnects it (`FATAL_SKB_SLOTS_DEFAULT`); from
/// [`XEN_NETBK_LEGACY_SLOTS_MAX`] up to this, packets are only dropped.
pub const FATAL_SKB_SLOTS: usize = 20;
/// The `mtu` the toolstack writes for the front end (Xen's default).
pub const DEFAULT_MTU: u32 = 1500;
/// Queues we serve (`multi-queue-max-queues`).
pub const MAX_QUEUES: u32 = 1;
/// The largest frame the receive side delivers: what a transmit chain
/// can carry, 16 pages (Linux's netfront accepts up to 18 slots).
pub const RX_MAX_FRAME_LEN: usize = XEN_NETIF_MAX_TX_SIZE as usize;
/// Bytes of a transmit response (the rest of its 12-byte slot is left
/// as it was).
pub const TX_RESPONSE_SIZE: usize = size_of::<TxResponse>();

// ---------------------------------------------------------------------
// XenStore handshake
// ---------------------------------------------------------------------

/// `/local/domain/<backend_id>/backend/vif/<frontend_id>/<handle>`.
pub fn backend_path(backend_id: u16, frontend_id: u16, handle: u32) -> String {
    format!("/local/domain/{backend_id}/backend/vif/{frontend_id}/{handle}")
}

/// `/local/domain/<frontend_id>/device/vif/<handle>`.
pub fn frontend_path(frontend_id: u16, handle: u32) -> String {
    format!("/local/domain/{frontend_id}/device/vif/{handle}")
}

fn flag(on: bool) -> String {
    String::from(if on { "1" } else { "0" })
}

/// The back end directory's nodes, names relative to
/// [`backend_path`]: libxl's (`frontend` .. `type`), the hotplug
/// script's `hotplug-status` (there is no script: the vif is on our
/// switch from the start, so Linux's deferral of Connected until the
/// script ran never applies) and the features netback advertises at
/// probe, in the order of the tree real Xen builds (LINUX-PVH.md §10).
/// `state` is 1 (Initialising); the glue then sets InitWait.
///
/// Left out on purpose: `script`; `feature-gso-tcpv4`/`-tcpv6` (no GSO),
/// `feature-ipv6-csum-offload` (so IPv6 front ends fill their own
/// checksums; [`complete_checksum`] could serve them),
/// `feature-xdp-headroom`, `feature-multicast-control`,
/// `feature-dynamic-multicast-control`, `feature-ctrl-ring`.
pub fn backend_nodes(
    frontend_path: &str,
    frontend_id: u16,
    handle: u32,
    mac: Mac,
    bridge: &str,
) -> Vec<(&'static str, String)> {
    alloc::vec![
        ("frontend", frontend_path.to_string()),
        ("frontend-id", frontend_id.to_string()),
        ("online", flag(true)),
        ("state", XenbusState::Initialising.raw().to_string()),
        ("mac", mac.to_string()),
        ("bridge", bridge.to_string()),
        ("handle", handle.to_string()),
        ("type", String::from("vif")),
        ("hotplug-status", String::from("connected")),
        ("feature-sg", flag(true)),
        ("feature-rx-copy", flag(true)),
        ("feature-rx-flip", flag(false)),
        ("feature-split-event-channels", flag(true)),
        ("multi-queue-max-queues", MAX_QUEUES.to_string()),
    ]
}

/// The front end directory's nodes the toolstack writes (libxl), names
/// relative to [`frontend_path`]. In Xen's tree the guest owns all of
/// them but `mtu`, which stays Dom0's and read-only to the guest (see
/// [`FRONTEND_DOM0_OWNED`]).
pub fn frontend_nodes(
    backend_path: &str,
    backend_id: u16,
    handle: u32,
    mac: Mac,
    mtu: u32,
) -> Vec<(&'static str, String)> {
    alloc::vec![
        ("backend", backend_path.to_string()),
        ("backend-id", backend_id.to_string()),
        ("state", XenbusState::Initialising.raw().to_string()),
        ("handle", handle.to_string()),
        ("mac", mac.to_string()),
        ("trusted", flag(true)),
        ("mtu", mtu.to_string()),
    ]
}

/// Front end nodes that Dom0 keeps (owner 0, guest may read), the others
/// of [`frontend_nodes`] being the guest's.
pub const FRONTEND_DOM0_OWNED: &[&str] = &["mtu"];

/// The front end's event channel(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventChannels {
    /// `event-channel-tx` and `event-channel-rx` (two different ports).
    Split { tx: u32, rx: u32 },
    /// `event-channel`, for both rings (also when the split nodes name
    /// one port twice, as Linux netback treats it).
    Shared(u32),
}

/// What the front end asked for, from its connect keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontendConfig {
    /// The transmit ring's page (`tx-ring-ref`).
    pub tx_ring_ref: GrantRef,
    /// The receive ring's page (`rx-ring-ref`).
    pub rx_ring_ref: GrantRef,
    pub event_channels: EventChannels,
    /// `feature-rx-notify`: the front end notifies after posting receive
    /// buffers. Without it the glue must poll the receive ring while it
    /// holds frames for the guest (Linux polls every 30 ms then).
    pub rx_notify: bool,
    /// `feature-sg`: it takes frames spread over several receive slots.
    /// Without it only frames of one page are delivered.
    pub sg: bool,
    /// Not `feature-no-csum-offload`: it accepts IPv4 frames with a
    /// blank checksum (we never send those).
    pub ip_csum: bool,
    /// `feature-ipv6-csum-offload`: the same for IPv6.
    pub ipv6_csum: bool,
}

/// Why the front end's connect keys are refused; the glue writes
/// Closing (Linux: `xenbus_dev_fatal` with this text, where Linux's has
/// the front end's path before a node name, prefix it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// `multi-queue-num-queues` above [`MAX_QUEUES`].
    TooManyQueues(u32),
    /// `multi-queue-num-queues` 0 (Linux goes on with no queue at all,
    /// which serves nothing; we refuse).
    NoQueues,
    /// `request-rx-copy` present but not a number.
    RequestRxCopyUnreadable,
    /// `request-rx-copy` absent or 0: the front end wants page flipping,
    /// which no current netback offers (`feature-rx-flip` 0). Linux's
    /// netback returns `-EOPNOTSUPP` here without a message; the text
    /// is NetBSD's xennetback's.
    RxFlip,
    /// `tx-ring-ref` or `rx-ring-ref` absent or not a number.
    RingRefs,
    /// Neither both of `event-channel-tx`/`-rx` nor `event-channel`.
    EventChannel,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::TooManyQueues(n) => write!(
                f,
                "guest requested {n} queues, exceeding the maximum of {MAX_QUEUES}."
            ),
            ConnectError::NoQueues => f.write_str("guest requested 0 queues"),
            ConnectError::RequestRxCopyUnreadable => f.write_str("reading request-rx-copy"),
            ConnectError::RxFlip => f.write_str("request-rx-copy not supported by frontend"),
            ConnectError::RingRefs => f.write_str("reading ring-ref"),
            ConnectError::EventChannel => f.write_str("reading event-channel(-tx/rx)"),
        }
    }
}

/// A flag node as `xenbus_read_unsigned(.., 0)` reads it: absent or not
/// a number is `default`, otherwise non-zero.
fn read_flag(read: &impl Fn(&str) -> Option<String>, node: &str, default: bool) -> bool {
    read(node)
        .and_then(|text| parse_u32(&text))
        .map_or(default, |n| n != 0)
}

/// Reads the front end's connect keys (`read` takes a node name relative
/// to the front end's directory), checked in Linux netback's order:
/// `multi-queue-num-queues` (absent or unreadable is 1, as Linux reads
/// it; above 1 or 0 refused), `request-rx-copy` (must be non-zero), the
/// feature flags (absent or unreadable: off, but `feature-no-csum-offload`
/// absent means IPv4 offload on), `tx-ring-ref` and `rx-ring-ref`, then
/// `event-channel-tx` with `event-channel-rx`, else `event-channel`.
/// Numbers are strict decimal `u32`s (a trailing NUL tolerated); Linux's
/// `%lu`/`%u` scanning is laxer.
pub fn parse_frontend(
    read: impl Fn(&str) -> Option<String>,
) -> Result<FrontendConfig, ConnectError> {
    let queues = read("multi-queue-num-queues")
        .and_then(|text| parse_u32(&text))
        .unwrap_or(1);
    if queues > MAX_QUEUES {
        return Err(ConnectError::TooManyQueues(queues));
    }
    if queues == 0 {
        return Err(ConnectError::NoQueues);
    }
    match read("request-rx-copy") {
        None => return Err(ConnectError::RxFlip),
        Some(text) => match parse_u32(&text) {
            None => return Err(ConnectError::RequestRxCopyUnreadable),
            Some(0) => return Err(ConnectError::RxFlip),
            Some(_) => {}
        },
    }
    let rx_notify = read_flag(&read, "feature-rx-notify", false);
    let sg = read_flag(&read, "feature-sg", false);
    let ip_csum = !read_flag(&read, "feature-no-csum-offload", false);
    let ipv6_csum = read_flag(&read, "feature-ipv6-csum-offload", false);
    let number = |node: &str| read(node).and_then(|text| parse_u32(&text));
    let (Some(tx_ring_ref), Some(rx_ring_ref)) = (number("tx-ring-ref"), number("rx-ring-ref"))
    else {
        return Err(ConnectError::RingRefs);
    };
    let event_channels = match (number("event-channel-tx"), number("event-channel-rx")) {
        (Some(tx), Some(rx)) if tx != rx => EventChannels::Split { tx, rx },
        (Some(port), Some(_)) => EventChannels::Shared(port),
        _ => EventChannels::Shared(number("event-channel").ok_or(ConnectError::EventChannel)?),
    };
    Ok(FrontendConfig {
        tx_ring_ref,
        rx_ring_ref,
        event_channels,
        rx_notify,
        sg,
        ip_csum,
        ipv6_csum,
    })
}

// ---------------------------------------------------------------------
// MAC addresses
// ---------------------------------------------------------------------

/// A 48-bit MAC address, in transmission order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; ETH_ALEN]);

/// The group bit (I/G) of a MAC's first octet: multicast or broadcast.
const MAC_GROUP_BIT: u8 = 0x01;

/// Why a text or address is not a usable MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacError {
    /// Not six `:`-separated groups of one or two hex digits.
    Syntax,
    /// A group (multicast or broadcast) address: no interface may own it.
    Multicast,
    /// 00:00:00:00:00:00.
    Zero,
}

impl fmt::Display for MacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MacError::Syntax => "not a MAC address (xx:xx:xx:xx:xx:xx)",
            MacError::Multicast => "a multicast MAC address",
            MacError::Zero => "the all-zero MAC address",
        })
    }
}

impl Mac {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: Mac = Mac([0xff; ETH_ALEN]);
    /// The OUI Xen's toolstack gives vifs, 00:16:3e.
    pub const XEN_OUI: [u8; 3] = [0x00, 0x16, 0x3e];

    /// `00:16:3e:a:b:c`, as libxl makes them.
    pub const fn xen(a: u8, b: u8, c: u8) -> Mac {
        let [o0, o1, o2] = Self::XEN_OUI;
        Mac([o0, o1, o2, a, b, c])
    }

    /// Parses `00:16:3e:6c:27:42` (either case, one or two hex digits a
    /// group; a trailing NUL tolerated). Any address, group ones
    /// included: [`check_unicast`](Self::check_unicast) says if an
    /// interface may own it.
    pub fn parse(text: &str) -> Result<Mac, MacError> {
        let mut mac = [0u8; ETH_ALEN];
        let mut groups = text.trim_end_matches('\0').split(':');
        for byte in &mut mac {
            let group = groups.next().ok_or(MacError::Syntax)?;
            if group.is_empty() || group.len() > 2 || !group.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(MacError::Syntax);
            }
            *byte = u8::from_str_radix(group, 16).map_err(|_| MacError::Syntax)?;
        }
        if groups.next().is_some() {
            return Err(MacError::Syntax);
        }
        Ok(Mac(mac))
    }

    /// The first six bytes of `bytes`, if there are six.
    pub fn from_slice(bytes: &[u8]) -> Option<Mac> {
        bytes.get(..ETH_ALEN)?.try_into().ok().map(Mac)
    }

    /// A group address (multicast, broadcast included).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & MAC_GROUP_BIT != 0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; ETH_ALEN]
    }

    /// Whether an interface may own this address: not a group address,
    /// not all zero (Linux's `is_valid_ether_addr`).
    pub fn check_unicast(self) -> Result<Mac, MacError> {
        if self.is_multicast() {
            Err(MacError::Multicast)
        } else if self.is_zero() {
            Err(MacError::Zero)
        } else {
            Ok(self)
        }
    }
}

/// A raw address (a NIC's, a command line's) as [`Mac`]'s `Display`
/// writes it.
pub fn format_mac(mac: &[u8; ETH_ALEN]) -> String {
    Mac(*mac).to_string()
}

impl FromStr for Mac {
    type Err = MacError;

    fn from_str(text: &str) -> Result<Mac, MacError> {
        Mac::parse(text)
    }
}

/// `00:16:3e:6c:27:42`: lower case, two digits a group, as libxl writes.
impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

// ---------------------------------------------------------------------
// Transmit ring (guest -> Dom0)
// ---------------------------------------------------------------------

/// How one consumed transmit slot is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxAnswer {
    /// A request slot: its `id` with the packet's status.
    Request(u16),
    /// An extra-info slot: `XEN_NETIF_RSP_NULL` (Linux writes only the
    /// status there; we write id 0 with it).
    Extra,
}

impl TxAnswer {
    /// The response bytes for this slot, `status` for a request.
    pub fn response(self, status: i16) -> [u8; TX_RESPONSE_SIZE] {
        match self {
            TxAnswer::Request(id) => tx_response_bytes(id, status),
            TxAnswer::Extra => tx_response_bytes(0, XEN_NETIF_RSP_NULL),
        }
    }
}

/// The 4 bytes of a `netif_tx_response` to copy to the start of the slot
/// [`BackRing::next_response`] names.
pub fn tx_response_bytes(id: u16, status: i16) -> [u8; TX_RESPONSE_SIZE] {
    zerocopy::transmute!(TxResponse { id, status })
}

/// One piece of a transmitted packet: `len` bytes at `offset` in the page
/// granted as `gref` (`offset + len <= 4096`, `len > 0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxSegment {
    pub gref: GrantRef,
    pub offset: u16,
    pub len: u16,
}

/// A valid packet to copy out of the guest's pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxPacket {
    /// The pieces in order (slots of length 0 contribute none, as in
    /// Linux since XSA-448).
    pub segments: Vec<TxSegment>,
    /// Total bytes, the sum of the segments' (at least [`ETH_HLEN`], at
    /// most [`XEN_NETIF_MAX_TX_SIZE`]).
    pub len: usize,
    /// `NETTXF_csum_blank`: fill in the TCP/UDP checksum
    /// ([`complete_checksum`]) before forwarding.
    pub csum_blank: bool,
    /// `NETTXF_data_validated`.
    pub data_validated: bool,
    /// One answer per consumed slot, in ring order: the first request,
    /// its extra-info slots, the continuation requests. After the copy,
    /// answer every request `XEN_NETIF_RSP_OKAY` (or `_ERROR` where a
    /// grant copy failed).
    pub answers: Vec<TxAnswer>,
}

impl TxPacket {
    /// The response bytes of every consumed slot, requests answered with
    /// `status`.
    pub fn responses(&self, status: i16) -> impl Iterator<Item = [u8; TX_RESPONSE_SIZE]> + '_ {
        self.answers.iter().map(move |a| a.response(status))
    }
}

/// Why a packet is dropped (its slots consumed and answered, the front
/// end kept). Texts are Linux netback's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxDropReason {
    /// More than [`XEN_NETBK_LEGACY_SLOTS_MAX`] continuation slots but
    /// fewer than [`FATAL_SKB_SLOTS`].
    TooManySlots,
    /// A continuation slot holds more than what is left of the first
    /// slot's total (a buggy front end that sent 64 KiB or more).
    SlotTooBig { size: u16, remaining: u16 },
    /// The first slot's own data is shorter than an Ethernet header.
    TooShort { size: u16 },
    /// A valid GSO extra-info slot: we did not offer GSO and cannot
    /// segment (our decision; Linux netback offers and accepts GSO).
    GsoNotOffered,
    /// A multicast filter request (MCAST_ADD/MCAST_DEL extra slot on a
    /// dummy request): answered `OKAY` and ignored, as we did not offer
    /// multicast control and flood multicast anyway (Linux answers
    /// the same, ERROR only when its 64-address list is full).
    MulticastControl,
}

impl fmt::Display for TxDropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TxDropReason::TooManySlots => write!(
                f,
                "Too many slots exceeding limit ({XEN_NETBK_LEGACY_SLOTS_MAX}), dropping packet"
            ),
            TxDropReason::SlotTooBig { size, remaining } => write!(
                f,
                "Invalid tx request, slot size {size} > remaining size {remaining}"
            ),
            TxDropReason::TooShort { size } => write!(f, "Bad packet size: {size}"),
            TxDropReason::GsoNotOffered => f.write_str("GSO packet, but GSO was not offered"),
            TxDropReason::MulticastControl => f.write_str("multicast control request ignored"),
        }
    }
}

/// A packet that is not forwarded: answer every slot with `status`
/// (`XEN_NETIF_RSP_ERROR`, or `_OKAY` for [`TxDropReason::MulticastControl`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxDrop {
    pub reason: TxDropReason,
    pub status: i16,
    /// One per consumed slot, in ring order.
    pub answers: Vec<TxAnswer>,
}

impl TxDrop {
    /// The response bytes of every consumed slot.
    pub fn responses(&self) -> impl Iterator<Item = [u8; TX_RESPONSE_SIZE]> + '_ {
        self.answers.iter().map(|a| a.response(self.status))
    }
}

/// A front end error after which Linux netback disables the vif ("fatal
/// error; disabling device"): the glue stops serving it and disconnects
/// (writes Closing). Texts are Linux netback's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxFatal {
    /// `req_prod` more than a ring ahead, or behind.
    ImpossibleRequests(RingOverflow),
    /// An extra-info slot of type 0 or unknown.
    InvalidExtraType(u8),
    /// [`FATAL_SKB_SLOTS`] continuation slots and more still.
    Malicious { slots: usize },
    /// A continuation slot's data crosses the end of its page.
    CrossPageBoundary { offset: u16, size: u16 },
    /// The first slot's data crosses the end of its page.
    FirstCrossesPage { offset: u16, size: u16 },
    /// A GSO extra with MSS 0.
    GsoSizeZero,
    /// A GSO extra of unknown type.
    BadGsoType(u8),
}

impl fmt::Display for TxFatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TxFatal::ImpossibleRequests(o) => write!(
                f,
                "Impossible number of requests. req_prod {}, req_cons {}, rsp_prod {}",
                o.req_prod, o.req_cons, o.rsp_prod_pvt
            ),
            TxFatal::InvalidExtraType(t) => write!(f, "Invalid extra type: {t}"),
            TxFatal::Malicious { slots } => write!(
                f,
                "Malicious frontend using {slots} slots, threshold {FATAL_SKB_SLOTS}"
            ),
            TxFatal::CrossPageBoundary { offset, size } => write!(
                f,
                "Cross page boundary, txp->offset: {offset}, size: {size}"
            ),
            TxFatal::FirstCrossesPage { offset, size } => write!(
                f,
                "txreq.offset: {offset}, size: {size}, end: {}",
                usize::from(offset) + usize::from(size)
            ),
            TxFatal::GsoSizeZero => f.write_str("GSO size must not be zero."),
            TxFatal::BadGsoType(t) => write!(f, "Bad GSO type {t}."),
        }
    }
}

/// What [`decode_tx`] made of the slots at `req_cons`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    /// No request, or a packet whose chain (continuation or extra-info
    /// slots) runs past `req_prod`. Nothing is consumed. Store
    /// [`BackRing::more_req_event`]`(req_prod)` as `req_event` (or, with
    /// nothing pending, `final_check_req_event()`), re-read `req_prod`
    /// and try again. Linux netback treats an incomplete chain as fatal
    /// ("Asked for %d slots but exceeds this limit", "Missing extra
    /// info"); every front end publishes whole packets, so waiting
    /// changes nothing for them and a broken one stalls only its own ring.
    NeedMore,
    /// A packet to forward (its slots consumed).
    Packet(TxPacket),
    /// A packet dropped (its slots consumed).
    Dropped(TxDrop),
    /// Disconnect the front end (nothing consumed).
    Fatal(TxFatal),
}

/// Where the extra-info slots of one request go, indexed by type - 1
/// (Linux keeps the last of each type).
const EXTRA_SLOTS: usize = XEN_NETIF_EXTRA_TYPE_XDP as usize;

/// Decodes ONE packet from the transmit ring at `ring.req_cons()`, given
/// the front end's `req_prod` (read once by the glue, before a read
/// barrier) and `read`, which returns a private copy of the 12 bytes of
/// the slot for a free-running index; each slot is read at most once per
/// call (a later call, after `NeedMore`, reads afresh). On
/// [`TxOutcome::Packet`] and [`TxOutcome::Dropped`] the packet's slots
/// are consumed from `ring` (answer each with
/// [`BackRing::next_response`]); on `NeedMore` and `Fatal`, none.
///
/// The checks are Linux netback's (`xenvif_tx_build_gops`,
/// `xenvif_get_extras`, `xenvif_count_requests`), in its order:
/// 1. `req_prod` impossible: fatal;
/// 2. the first request; with `NETTXF_extra_info`, its extra-info slots
///    while `XEN_NETIF_EXTRA_FLAG_MORE`: type 0 or unknown (above XDP,
///    Linux's last) is fatal;
/// 3. an MCAST_ADD or MCAST_DEL extra: the request is a filter update,
///    answered OKAY with its extras, nothing more consumed (its
///    continuation slots, if any, are read as the next packet, as Linux
///    does);
/// 4. with `NETTXF_more_data`, the continuation slots while
///    `NETTXF_more_data`: the [`FATAL_SKB_SLOTS`]th is fatal; from the
///    [`XEN_NETBK_LEGACY_SLOTS_MAX`]th the packet is dropped (but the
///    slots still read and checked); a slot larger than what is left of
///    the first slot's total drops the packet; a slot crossing its page
///    is fatal;
/// 5. a dropped packet is answered ERROR here;
/// 6. the first slot's own data (total minus the continuations) shorter
///    than [`ETH_HLEN`]: dropped; crossing its page: fatal;
/// 7. a GSO extra with size 0 or an unknown type: fatal; a valid one:
///    dropped ([`TxDropReason::GsoNotOffered`]).
///
/// Linux's grant-copy and skb-allocation failures are the glue's (answer
/// ERROR), as is its credit-based rate limiting (none here).
pub fn decode_tx(
    ring: &mut BackRing,
    req_prod: RingIdx,
    mut read: impl FnMut(RingIdx) -> [u8; TX_ENTRY_SIZE],
) -> TxOutcome {
    let avail = match ring.available(req_prod) {
        Ok(n) => n as usize,
        Err(overflow) => return TxOutcome::Fatal(TxFatal::ImpossibleRequests(overflow)),
    };
    let cons = ring.req_cons();
    // The ring index of this packet's n-th slot.
    let at = |n: usize| cons.wrapping_add(n as u32);
    if avail == 0 {
        return TxOutcome::NeedMore;
    }
    let first = tx_request(&read(at(0)));
    let mut used = 1;
    let mut answers = alloc::vec![TxAnswer::Request(first.id)];

    let mut extras: [Option<ExtraInfo>; EXTRA_SLOTS] = [None; EXTRA_SLOTS];
    if first.flags & NETTXF_EXTRA_INFO != 0 {
        loop {
            if used >= avail {
                return TxOutcome::NeedMore;
            }
            let extra = extra_info(&read(at(used)));
            used += 1;
            answers.push(TxAnswer::Extra);
            if extra.r#type == XEN_NETIF_EXTRA_TYPE_NONE || extra.r#type > XEN_NETIF_EXTRA_TYPE_XDP
            {
                return TxOutcome::Fatal(TxFatal::InvalidExtraType(extra.r#type));
            }
            extras[usize::from(extra.r#type) - 1] = Some(extra);
            if !extra.more() {
                break;
            }
        }
    }
    let has = |t: u8| extras[usize::from(t) - 1];

    if has(XEN_NETIF_EXTRA_TYPE_MCAST_ADD).is_some()
        || has(XEN_NETIF_EXTRA_TYPE_MCAST_DEL).is_some()
    {
        return consume_drop(
            ring,
            req_prod,
            used,
            TxDrop {
                reason: TxDropReason::MulticastControl,
                status: XEN_NETIF_RSP_OKAY,
                answers,
            },
        );
    }

    // Continuation slots (xenvif_count_requests).
    let mut remaining = first.size;
    let mut segments = Vec::new();
    let mut drop = None;
    if first.flags & NETTXF_MORE_DATA != 0 {
        let mut slots = 0;
        loop {
            if used + slots >= avail {
                return TxOutcome::NeedMore;
            }
            if slots >= FATAL_SKB_SLOTS {
                return TxOutcome::Fatal(TxFatal::Malicious { slots });
            }
            if drop.is_none() && slots >= XEN_NETBK_LEGACY_SLOTS_MAX {
                drop = Some(TxDropReason::TooManySlots);
            }
            let txp = tx_request(&read(at(used + slots)));
            if drop.is_none() && txp.size > remaining {
                drop = Some(TxDropReason::SlotTooBig {
                    size: txp.size,
                    remaining,
                });
            }
            remaining = remaining.wrapping_sub(txp.size);
            slots += 1;
            answers.push(TxAnswer::Request(txp.id));
            if usize::from(txp.offset) + usize::from(txp.size) > PAGE_SIZE {
                return TxOutcome::Fatal(TxFatal::CrossPageBoundary {
                    offset: txp.offset,
                    size: txp.size,
                });
            }
            if drop.is_none() && txp.size > 0 {
                segments.push(TxSegment {
                    gref: txp.gref,
                    offset: txp.offset,
                    len: txp.size,
                });
            }
            if txp.flags & NETTXF_MORE_DATA == 0 {
                break;
            }
        }
        used += slots;
    }
    let error = |reason, answers| TxDrop {
        reason,
        status: XEN_NETIF_RSP_ERROR,
        answers,
    };
    if let Some(reason) = drop {
        return consume_drop(ring, req_prod, used, error(reason, answers));
    }
    if usize::from(remaining) < ETH_HLEN {
        let reason = TxDropReason::TooShort { size: remaining };
        return consume_drop(ring, req_prod, used, error(reason, answers));
    }
    if usize::from(first.offset) + usize::from(remaining) > PAGE_SIZE {
        return TxOutcome::Fatal(TxFatal::FirstCrossesPage {
            offset: first.offset,
            size: remaining,
        });
    }
    if let Some(gso) = has(XEN_NETIF_EXTRA_TYPE_GSO) {
        let gso = gso.gso();
        if gso.size == 0 {
            return TxOutcome::Fatal(TxFatal::GsoSizeZero);
        }
        if gso.r#type != XEN_NETIF_GSO_TYPE_TCPV4 && gso.r#type != XEN_NETIF_GSO_TYPE_TCPV6 {
            return TxOutcome::Fatal(TxFatal::BadGsoType(gso.r#type));
        }
        return consume_drop(
            ring,
            req_prod,
            used,
            error(TxDropReason::GsoNotOffered, answers),
        );
    }
    segments.insert(
        0,
        TxSegment {
            gref: first.gref,
            offset: first.offset,
            len: remaining,
        },
    );
    consume(ring, req_prod, used);
    TxOutcome::Packet(TxPacket {
        segments,
        len: usize::from(first.size),
        csum_blank: first.flags & NETTXF_CSUM_BLANK != 0,
        data_validated: first.flags & NETTXF_DATA_VALIDATED != 0,
        answers,
    })
}

/// Marks `slots` requests consumed; `available` said they are there.
fn consume(ring: &mut BackRing, req_prod: RingIdx, slots: usize) {
    let taken = ring.take_at_most(req_prod, slots as u32);
    debug_assert_eq!(taken.map(|r| r.len()), Ok(slots));
}

fn consume_drop(ring: &mut BackRing, req_prod: RingIdx, slots: usize, drop: TxDrop) -> TxOutcome {
    consume(ring, req_prod, slots);
    TxOutcome::Dropped(drop)
}

fn tx_request(slot: &[u8; TX_ENTRY_SIZE]) -> TxRequest {
    zerocopy::transmute!(*slot)
}

fn extra_info(slot: &[u8; TX_ENTRY_SIZE]) -> ExtraInfo {
    // An extra-info overlays the first 8 of the 12 bytes; always fits.
    ExtraInfo::read_from_prefix(slot).map_or_else(|_| ExtraInfo::default(), |(e, _)| e)
}

// ---------------------------------------------------------------------
// Receive ring (Dom0 -> guest)
// ---------------------------------------------------------------------

/// Why a frame cannot be delivered to this front end at all (drop it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxDropReason {
    /// Shorter than an Ethernet header.
    TooShort { len: usize },
    /// Longer than [`RX_MAX_FRAME_LEN`].
    TooBig { len: usize },
    /// Needs several receive slots and the front end lacks `feature-sg`.
    NeedsSg { len: usize },
}

impl fmt::Display for RxDropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RxDropReason::TooShort { len } => write!(f, "frame of {len} bytes is a runt"),
            RxDropReason::TooBig { len } => {
                write!(f, "frame of {len} bytes exceeds {RX_MAX_FRAME_LEN}")
            }
            RxDropReason::NeedsSg { len } => {
                write!(f, "frame of {len} bytes needs feature-sg")
            }
        }
    }
}

/// Receive slots a frame of `frame_len` bytes needs: one full page each,
/// copied from offset 0 (rx-copy, no GSO, no XDP headroom; Linux's
/// `DIV_ROUND_UP(len, XEN_PAGE_SIZE)`). `sg` is the front end's
/// `feature-sg`.
pub fn rx_slots_needed(frame_len: usize, sg: bool) -> Result<u32, RxDropReason> {
    if frame_len < ETH_HLEN {
        return Err(RxDropReason::TooShort { len: frame_len });
    }
    if frame_len > RX_MAX_FRAME_LEN {
        return Err(RxDropReason::TooBig { len: frame_len });
    }
    let slots = frame_len.div_ceil(PAGE_SIZE);
    if slots > 1 && !sg {
        return Err(RxDropReason::NeedsSg { len: frame_len });
    }
    Ok(slots as u32)
}

/// One receive buffer to fill: copy `len` bytes of the frame from
/// `frame_offset` to offset 0 of the page granted as `gref`, then write
/// [`response`](Self::response) in the same ring slot (the glue's
/// [`BackRing::next_response`], called once per slot in order, gives
/// exactly that slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxSlot {
    /// The request's `id`, echoed.
    pub id: u16,
    pub gref: GrantRef,
    pub frame_offset: usize,
    /// 1..=4096.
    pub len: u16,
    /// `NETRXF_more_data` on all but the last slot, `NETRXF_data_validated`
    /// on the first when the frame's checksum is known good.
    pub flags: u16,
}

impl RxSlot {
    /// The response when the copy succeeded: offset 0, `status` = bytes.
    pub fn response(&self) -> [u8; RX_ENTRY_SIZE] {
        rx_response_bytes(self.id, 0, self.flags, self.len as i16)
    }

    /// The response when the copy failed: `XEN_NETIF_RSP_ERROR`, flags
    /// kept so that the front end still sees where the frame ends (Linux
    /// overwrites just the status, with the grant-copy error).
    pub fn error_response(&self) -> [u8; RX_ENTRY_SIZE] {
        rx_response_bytes(self.id, 0, self.flags, XEN_NETIF_RSP_ERROR)
    }
}

/// The 8 bytes of a `netif_rx_response`.
pub fn rx_response_bytes(id: u16, offset: u16, flags: u16, status: i16) -> [u8; RX_ENTRY_SIZE] {
    zerocopy::transmute!(RxResponse {
        id,
        offset,
        flags,
        status,
    })
}

/// What [`rx_take`] decided for one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RxOutcome {
    /// The front end has posted fewer buffers than the frame needs.
    /// Nothing consumed; keep the frame, store
    /// [`BackRing::more_req_event`]`(req_prod)` as `req_event`, re-read
    /// `req_prod` and try again.
    Wait { needed: u32, posted: u32 },
    /// The buffers to fill, in order (consumed from the ring).
    Deliver(Vec<RxSlot>),
    /// This front end can never take the frame: drop it.
    Drop(RxDropReason),
}

/// Places one frame of `frame_len` bytes on the receive ring: checks the
/// front end's `req_prod` (posted-but-unused buffers above the ring's
/// size, or a `req_prod` behind us: `Err`, disconnect), then takes the
/// buffers the frame needs, reading each request slot once through
/// `read` (private copies of 8 bytes). `sg` is the front end's
/// `feature-sg`; `data_validated` marks the frame's checksum as known
/// good. Answer every slot of a `Deliver` before taking the next frame.
pub fn rx_take(
    ring: &mut BackRing,
    req_prod: RingIdx,
    frame_len: usize,
    sg: bool,
    data_validated: bool,
    mut read: impl FnMut(RingIdx) -> [u8; RX_ENTRY_SIZE],
) -> Result<RxOutcome, RingOverflow> {
    let posted = ring.available(req_prod)?;
    let needed = match rx_slots_needed(frame_len, sg) {
        Ok(n) => n,
        Err(reason) => return Ok(RxOutcome::Drop(reason)),
    };
    if posted < needed {
        return Ok(RxOutcome::Wait { needed, posted });
    }
    let range = ring.take_at_most(req_prod, needed)?;
    let count = range.len();
    let slots = range
        .enumerate()
        .map(|(n, idx)| {
            let req: RxRequest = zerocopy::transmute!(read(idx));
            let frame_offset = n * PAGE_SIZE;
            let len = (frame_len - frame_offset).min(PAGE_SIZE) as u16;
            let mut flags = 0;
            if n + 1 < count {
                flags |= NETRXF_MORE_DATA;
            }
            if n == 0 && data_validated {
                flags |= NETRXF_DATA_VALIDATED;
            }
            RxSlot {
                id: req.id,
                gref: req.gref,
                frame_offset,
                len,
                flags,
            }
        })
        .collect();
    Ok(RxOutcome::Deliver(slots))
}

// ---------------------------------------------------------------------
// Checksum completion
// ---------------------------------------------------------------------

/// EtherTypes and protocol numbers the checksum code reads.
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const VLAN_TAG_LEN: usize = 4;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DEST_OPTS: u8 = 60;
/// The IP version is the high nibble of an IP header's first byte.
const IP_VERSION_SHIFT: u32 = 4;
const IPV4_VERSION: u8 = 4;
const IPV6_VERSION: u8 = 6;
const IPV4_MIN_HEADER: usize = 20;
/// IPv4 header length: the low nibble of the first byte, in 4-byte words.
const IPV4_IHL_MASK: u8 = 0x0f;
const IPV4_IHL_UNIT: usize = 4;
// IPv4 header field offsets.
const IPV4_TOTAL_LEN_AT: usize = 2;
const IPV4_FRAG_AT: usize = 6;
const IPV4_PROTO_AT: usize = 9;
const IPV4_SRC_AT: usize = 12;
const IPV4_DST_AT: usize = 16;
const IPV4_ADDR_LEN: usize = 4;
const IPV4_MF: u16 = 0x2000;
const IPV4_FRAG_OFFSET: u16 = 0x1fff;
const IPV6_HEADER: usize = 40;
// IPv6 header field offsets.
const IPV6_PAYLOAD_LEN_AT: usize = 4;
const IPV6_NEXT_AT: usize = 6;
const IPV6_SRC_AT: usize = 8;
const IPV6_DST_AT: usize = 24;
const IPV6_ADDR_LEN: usize = 16;
/// Extension headers: next header, then their length in 8-byte units
/// less the first.
const IPV6_EXT_NEXT_AT: usize = 0;
const IPV6_EXT_LEN_AT: usize = 1;
const IPV6_EXT_UNIT: usize = 8;
const TCP_MIN_HEADER: usize = 20;
const TCP_CSUM_OFFSET: usize = 16;
const UDP_HEADER: usize = 8;
const UDP_CSUM_OFFSET: usize = 6;
const UDP_LEN_AT: usize = 4;
/// Bytes of a TCP/UDP checksum field.
const CSUM_LEN: usize = size_of::<u16>();

/// The transport protocol whose checksum was filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Proto {
    Tcp,
    Udp,
}

/// Where and what [`complete_checksum`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChecksumDone {
    pub proto: L4Proto,
    /// Offset of the TCP/UDP header in the frame.
    pub l4_offset: usize,
    /// Bytes of TCP/UDP header and payload the checksum covers.
    pub l4_len: usize,
    /// The value written (network order in the frame).
    pub checksum: u16,
}

/// Why a frame's checksum cannot be completed; the glue drops the frame
/// (Linux netback: "Can't setup checksum in net_tx_action"), the
/// transmit slots having been answered OKAY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumError {
    /// The frame ends before a header or the IP length says it should.
    Truncated,
    /// Not IPv4 or IPv6 (after at most one 802.1Q tag).
    NotIp { ethertype: u16 },
    /// Wrong IP version or header length.
    BadIpHeader,
    /// An IP fragment: the checksum covers the whole datagram.
    Fragment,
    /// Neither TCP nor UDP.
    UnsupportedProtocol(u8),
    /// An IPv6 routing header (it changes the pseudo-header's
    /// destination), or the 0 payload length of a jumbogram.
    UnsupportedIpv6,
    /// A transport length shorter than its header, or a UDP length that
    /// disagrees with the IP length.
    BadLength,
}

impl fmt::Display for ChecksumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ChecksumError::Truncated => f.write_str("truncated frame"),
            ChecksumError::NotIp { ethertype } => write!(f, "not IP (EtherType {ethertype:#06x})"),
            ChecksumError::BadIpHeader => f.write_str("bad IP header"),
            ChecksumError::Fragment => f.write_str("IP fragment"),
            ChecksumError::UnsupportedProtocol(p) => write!(f, "protocol {p} is not TCP or UDP"),
            ChecksumError::UnsupportedIpv6 => f.write_str("IPv6 routing header or jumbogram"),
            ChecksumError::BadLength => f.write_str("inconsistent transport length"),
        }
    }
}

fn be16(bytes: &[u8], at: usize) -> Result<u16, ChecksumError> {
    match bytes.get(at..at + size_of::<u16>()) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(ChecksumError::Truncated),
    }
}

/// The ones'-complement sum (RFC 1071) of `bytes` as big-endian 16-bit
/// words, an odd last byte padded with zero, added to `sum`, unfolded.
pub fn ones_sum(bytes: &[u8], sum: u64) -> u64 {
    let mut chunks = bytes.chunks_exact(2);
    let mut sum = chunks
        .by_ref()
        .fold(sum, |s, w| s + u64::from(u16::from_be_bytes([w[0], w[1]])));
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a [`ones_sum`] into 16 bits (end-around carry).
pub fn fold(mut sum: u64) -> u16 {
    while sum > u64::from(u16::MAX) {
        sum = (sum & u64::from(u16::MAX)) + (sum >> u16::BITS);
    }
    sum as u16
}

/// The L3 facts the transport checksum needs.
struct Ip<'a> {
    src: &'a [u8],
    dst: &'a [u8],
    proto: u8,
    l4_offset: usize,
    l4_len: usize,
}

fn parse_ipv4(frame: &[u8], l3: usize) -> Result<Ip<'_>, ChecksumError> {
    let header = frame
        .get(l3..l3 + IPV4_MIN_HEADER)
        .ok_or(ChecksumError::Truncated)?;
    if header[0] >> IP_VERSION_SHIFT != IPV4_VERSION {
        return Err(ChecksumError::BadIpHeader);
    }
    let ihl = usize::from(header[0] & IPV4_IHL_MASK) * IPV4_IHL_UNIT;
    let total = usize::from(be16(header, IPV4_TOTAL_LEN_AT)?);
    if ihl < IPV4_MIN_HEADER || total < ihl {
        return Err(ChecksumError::BadIpHeader);
    }
    if l3 + total > frame.len() {
        return Err(ChecksumError::Truncated);
    }
    if be16(header, IPV4_FRAG_AT)? & (IPV4_MF | IPV4_FRAG_OFFSET) != 0 {
        return Err(ChecksumError::Fragment);
    }
    Ok(Ip {
        src: &header[IPV4_SRC_AT..IPV4_SRC_AT + IPV4_ADDR_LEN],
        dst: &header[IPV4_DST_AT..IPV4_DST_AT + IPV4_ADDR_LEN],
        proto: header[IPV4_PROTO_AT],
        l4_offset: l3 + ihl,
        l4_len: total - ihl,
    })
}

fn parse_ipv6(frame: &[u8], l3: usize) -> Result<Ip<'_>, ChecksumError> {
    let header = frame
        .get(l3..l3 + IPV6_HEADER)
        .ok_or(ChecksumError::Truncated)?;
    if header[0] >> IP_VERSION_SHIFT != IPV6_VERSION {
        return Err(ChecksumError::BadIpHeader);
    }
    let payload = usize::from(be16(header, IPV6_PAYLOAD_LEN_AT)?);
    if payload == 0 {
        return Err(ChecksumError::UnsupportedIpv6);
    }
    let end = l3 + IPV6_HEADER + payload;
    if end > frame.len() {
        return Err(ChecksumError::Truncated);
    }
    let mut next = header[IPV6_NEXT_AT];
    let mut at = l3 + IPV6_HEADER;
    // Each extension header is at least 8 bytes, so this ends.
    loop {
        match next {
            IPPROTO_TCP | IPPROTO_UDP => break,
            IPV6_HOP_BY_HOP | IPV6_DEST_OPTS => {
                let ext = frame
                    .get(at..at + IPV6_EXT_UNIT)
                    .ok_or(ChecksumError::Truncated)?;
                let len = (usize::from(ext[IPV6_EXT_LEN_AT]) + 1) * IPV6_EXT_UNIT;
                if at + len > end {
                    return Err(ChecksumError::Truncated);
                }
                next = ext[IPV6_EXT_NEXT_AT];
                at += len;
            }
            IPV6_FRAGMENT => return Err(ChecksumError::Fragment),
            IPV6_ROUTING => return Err(ChecksumError::UnsupportedIpv6),
            other => return Err(ChecksumError::UnsupportedProtocol(other)),
        }
    }
    Ok(Ip {
        src: &header[IPV6_SRC_AT..IPV6_SRC_AT + IPV6_ADDR_LEN],
        dst: &header[IPV6_DST_AT..IPV6_DST_AT + IPV6_ADDR_LEN],
        proto: next,
        l4_offset: at,
        l4_len: end - at,
    })
}

/// Fills in from scratch the TCP or UDP checksum of an Ethernet frame
/// (optionally with one 802.1Q tag) carrying IPv4 (options allowed) or
/// IPv6 (hop-by-hop and destination-options headers allowed): the field
/// is zeroed, the ones'-complement sum taken over the pseudo-header and
/// the transport header and payload (the IP length's worth; Ethernet
/// padding after it is not covered), complemented and stored; a UDP
/// result of 0 is sent as 0xffff. Whatever the field held before (a
/// partial pseudo-header sum, for a `NETTXF_csum_blank` packet) is
/// ignored. The IPv4 header checksum is not checked. Frames it cannot
/// parse are refused without being changed.
pub fn complete_checksum(frame: &mut [u8]) -> Result<ChecksumDone, ChecksumError> {
    const ETHERTYPE_AT: usize = 2 * ETH_ALEN;
    let mut ethertype = be16(frame, ETHERTYPE_AT)?;
    let mut l3 = ETH_HLEN;
    if ethertype == ETHERTYPE_VLAN {
        ethertype = be16(frame, ETHERTYPE_AT + VLAN_TAG_LEN)?;
        l3 += VLAN_TAG_LEN;
    }
    let ip = match ethertype {
        ETHERTYPE_IPV4 => parse_ipv4(frame, l3)?,
        ETHERTYPE_IPV6 => parse_ipv6(frame, l3)?,
        _ => return Err(ChecksumError::NotIp { ethertype }),
    };
    let (proto, min_header, csum_at) = match ip.proto {
        IPPROTO_TCP => (L4Proto::Tcp, TCP_MIN_HEADER, TCP_CSUM_OFFSET),
        IPPROTO_UDP => (L4Proto::Udp, UDP_HEADER, UDP_CSUM_OFFSET),
        other => return Err(ChecksumError::UnsupportedProtocol(other)),
    };
    if ip.l4_len < min_header {
        return Err(ChecksumError::BadLength);
    }
    if proto == L4Proto::Udp && usize::from(be16(frame, ip.l4_offset + UDP_LEN_AT)?) != ip.l4_len {
        return Err(ChecksumError::BadLength);
    }
    // Pseudo-header: addresses, then (IPv4) zero, protocol, length as 16
    // bits, or (IPv6) length as 32 bits, three zeros, next header; as
    // 16-bit words both come to length + protocol.
    let mut sum = ones_sum(ip.src, 0);
    sum = ones_sum(ip.dst, sum);
    sum += u64::from(ip.proto);
    sum = ones_sum(&(ip.l4_len as u32).to_be_bytes(), sum);
    let (l4_offset, l4_len) = (ip.l4_offset, ip.l4_len);
    let segment = &mut frame[l4_offset..l4_offset + l4_len];
    segment[csum_at..csum_at + CSUM_LEN].fill(0);
    let mut checksum = !fold(ones_sum(segment, sum));
    if proto == L4Proto::Udp && checksum == 0 {
        checksum = u16::MAX;
    }
    segment[csum_at..csum_at + CSUM_LEN].copy_from_slice(&checksum.to_be_bytes());
    Ok(ChecksumDone {
        proto,
        l4_offset,
        l4_len,
        checksum,
    })
}
