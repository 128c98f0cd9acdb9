//! The network device protocol of io/netif.h: the transmit and receive
//! ring layouts, their flags and status codes, the extra-info slots
//! (GSO, multicast control, hash, XDP) and the slot limits a back end
//! must honour.
//!
//! A vif has two single-page rings. The transmit ring (front end to
//! back end) carries 12-byte slots, each the union of a [`TxRequest`] (or
//! an [`ExtraInfo`] following one) and a 4-byte [`TxResponse`]; the
//! receive ring carries 8-byte slots, each the union of an [`RxRequest`]
//! and an [`RxResponse`] (or an [`ExtraInfo`]). One page holds
//! [`XEN_NETIF_TX_RING_SIZE`] and [`XEN_NETIF_RX_RING_SIZE`] slots (256
//! each).
//!
//! Names: Xen's header spells the statuses `NETIF_RSP_*`; Linux's copy of
//! the header, which netfront and netback use, spells them
//! `XEN_NETIF_RSP_*`, and so do we. Linux's copy also adds the XDP extra
//! type ([`XEN_NETIF_EXTRA_TYPE_XDP`]) that Xen's header lacks.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::grant_table::GrantRef;

/// Slots a back end must accept for one packet (`XEN_NETIF_NR_SLOTS_MIN`:
/// the MAX_SKB_FRAGS of old Linux).
pub const XEN_NETIF_NR_SLOTS_MIN: usize = 18;
/// Linux netback's name for [`XEN_NETIF_NR_SLOTS_MIN`]: packets using more
/// slots are dropped (up to netback's fatal threshold, beyond which the
/// front end is disconnected).
pub const XEN_NETBK_LEGACY_SLOTS_MAX: usize = XEN_NETIF_NR_SLOTS_MIN;

/// The largest packet a transmit chain may describe (its first slot's
/// `size` is 16 bits).
pub const XEN_NETIF_MAX_TX_SIZE: u16 = 0xFFFF;

/// Bytes of an Ethernet header (destination, source, EtherType), the
/// least a transmitted packet's first slot must hold (Linux `ETH_HLEN`).
pub const ETH_HLEN: usize = 14;
/// Bytes of a MAC address (Linux `ETH_ALEN`).
pub const ETH_ALEN: usize = 6;

// Transmit request flags (`netif_tx_request.flags`).
/// The protocol checksum field is blank (checksum offload): the back end
/// must fill it in.
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// The packet's data has been validated against its protocol checksum.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// The packet continues in the next request slot.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// One or more [`ExtraInfo`] slots follow this request.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

// Receive response flags (`netif_rx_response.flags`).
/// The packet's data has been validated against its protocol checksum.
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// The protocol checksum field is blank (checksum offload).
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// The packet continues in the next response slot.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// One or more [`ExtraInfo`] slots follow this response.
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;
/// The packet has a GSO prefix (deprecated).
pub const NETRXF_GSO_PREFIX: u16 = 1 << 4;

// Response statuses (`netif_tx_response.status`; negative values of
// `netif_rx_response.status`, whose non-negative values are byte counts).
/// The packet was dropped.
pub const XEN_NETIF_RSP_DROPPED: i16 = -2;
/// The request was malformed or could not be served.
pub const XEN_NETIF_RSP_ERROR: i16 = -1;
pub const XEN_NETIF_RSP_OKAY: i16 = 0;
/// No response: the slot answers an auxiliary request (an extra-info
/// slot).
pub const XEN_NETIF_RSP_NULL: i16 = 1;

// Extra-info types (`netif_extra_info.type`).
/// Never used: invalid.
pub const XEN_NETIF_EXTRA_TYPE_NONE: u8 = 0;
/// [`ExtraGso`].
pub const XEN_NETIF_EXTRA_TYPE_GSO: u8 = 1;
/// [`ExtraMcast`]: add a multicast filter address.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_ADD: u8 = 2;
/// [`ExtraMcast`]: remove a multicast filter address.
pub const XEN_NETIF_EXTRA_TYPE_MCAST_DEL: u8 = 3;
/// [`ExtraHash`].
pub const XEN_NETIF_EXTRA_TYPE_HASH: u8 = 4;
/// [`ExtraXdp`] (Linux's header only; Xen's ends at HASH).
pub const XEN_NETIF_EXTRA_TYPE_XDP: u8 = 5;
/// One past the last type of Xen's header (Linux's header, with XDP, has
/// 6).
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;

/// `netif_extra_info.flags`: another extra-info slot follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;

// GSO types (`netif_extra_info.u.gso.type`).
pub const XEN_NETIF_GSO_TYPE_NONE: u8 = 0;
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// `struct netif_tx_request`: `size` bytes at `offset` in the page
/// granted as `gref`. In a packet's first slot `size` is the whole
/// packet's length; in the following slots, that slot's length.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct TxRequest {
    pub gref: GrantRef,
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    pub size: u16,
}

/// `struct netif_tx_response`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct TxResponse {
    pub id: u16,
    /// `XEN_NETIF_RSP_*`.
    pub status: i16,
}

/// `struct netif_rx_request`: a page granted as `gref` for the back end
/// to fill.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RxRequest {
    /// Echoed in the response.
    pub id: u16,
    pub pad: u16,
    pub gref: GrantRef,
}

/// `struct netif_rx_response`. It must sit in the ring slot of the
/// request it answers (Linux's netfront finds the page by slot, not by
/// `id`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct RxResponse {
    pub id: u16,
    /// Where the data starts in the page.
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: u16,
    /// Bytes in this slot if non-negative, else `XEN_NETIF_RSP_*`.
    pub status: i16,
}

/// `struct netif_extra_info`: the general form; `u` is the union, read
/// through [`gso`](Self::gso), [`mcast`](Self::mcast), [`hash`](Self::hash)
/// or [`xdp`](Self::xdp) according to `type`. In a transmit slot the last
/// 4 bytes of the 12 are padding.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ExtraInfo {
    /// `XEN_NETIF_EXTRA_TYPE_*`.
    pub r#type: u8,
    /// `XEN_NETIF_EXTRA_FLAG_*`.
    pub flags: u8,
    pub u: [u8; EXTRA_UNION_SIZE],
}

/// Bytes of `netif_extra_info.u`.
pub const EXTRA_UNION_SIZE: usize = 6;

/// `netif_extra_info.u.gso`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ExtraGso {
    /// Maximum payload of each segment (the TCP MSS).
    pub size: u16,
    /// `XEN_NETIF_GSO_TYPE_*`.
    pub r#type: u8,
    pub pad: u8,
    /// `XEN_NETIF_GSO_FEAT_*` (none defined).
    pub features: u16,
}

/// `netif_extra_info.u.mcast`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ExtraMcast {
    pub addr: [u8; ETH_ALEN],
}

/// `netif_extra_info.u.hash`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ExtraHash {
    /// `_XEN_NETIF_CTRL_HASH_TYPE_*`.
    pub r#type: u8,
    /// `XEN_NETIF_CTRL_HASH_ALGORITHM_*`.
    pub algorithm: u8,
    /// The hash, least significant byte first.
    pub value: [u8; 4],
}

/// `netif_extra_info.u.xdp` (Linux's header).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ExtraXdp {
    pub headroom: u16,
    pub pad: [u16; 2],
}

impl ExtraInfo {
    /// The union read as [`ExtraGso`].
    pub fn gso(&self) -> ExtraGso {
        zerocopy::transmute!(self.u)
    }

    /// The union read as [`ExtraMcast`].
    pub fn mcast(&self) -> ExtraMcast {
        zerocopy::transmute!(self.u)
    }

    /// The union read as [`ExtraHash`].
    pub fn hash(&self) -> ExtraHash {
        zerocopy::transmute!(self.u)
    }

    /// The union read as [`ExtraXdp`].
    pub fn xdp(&self) -> ExtraXdp {
        zerocopy::transmute!(self.u)
    }

    /// Whether another extra-info slot follows.
    pub fn more(&self) -> bool {
        self.flags & XEN_NETIF_EXTRA_FLAG_MORE != 0
    }
}

/// Bytes of one transmit ring slot (`union netif_tx_sring_entry`).
pub const TX_ENTRY_SIZE: usize = max(size_of::<TxRequest>(), size_of::<TxResponse>());
/// Bytes of one receive ring slot (`union netif_rx_sring_entry`).
pub const RX_ENTRY_SIZE: usize = max(size_of::<RxRequest>(), size_of::<RxResponse>());

// An extra-info slot overlays both a transmit request and a receive
// response.
const _: () = assert!(size_of::<ExtraInfo>() <= TX_ENTRY_SIZE);
const _: () = assert!(size_of::<ExtraInfo>() <= RX_ENTRY_SIZE);

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Slots of the one-page transmit ring (`XEN_NETIF_TX_RING_SIZE`, 256).
pub const XEN_NETIF_TX_RING_SIZE: u32 = crate::ring::ring_size(crate::PAGE_SIZE, TX_ENTRY_SIZE);
/// Slots of the one-page receive ring (`XEN_NETIF_RX_RING_SIZE`, 256).
pub const XEN_NETIF_RX_RING_SIZE: u32 = crate::ring::ring_size(crate::PAGE_SIZE, RX_ENTRY_SIZE);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};
    use zerocopy::IntoBytes;

    #[test]
    fn layouts_match_netif_h() {
        assert_eq!(size_of::<TxRequest>(), 12);
        assert_eq!(offset_of!(TxRequest, gref), 0);
        assert_eq!(offset_of!(TxRequest, offset), 4);
        assert_eq!(offset_of!(TxRequest, flags), 6);
        assert_eq!(offset_of!(TxRequest, id), 8);
        assert_eq!(offset_of!(TxRequest, size), 10);

        assert_eq!(size_of::<TxResponse>(), 4);
        assert_eq!(offset_of!(TxResponse, status), 2);

        assert_eq!(size_of::<RxRequest>(), 8);
        assert_eq!(offset_of!(RxRequest, pad), 2);
        assert_eq!(offset_of!(RxRequest, gref), 4);

        assert_eq!(size_of::<RxResponse>(), 8);
        assert_eq!(offset_of!(RxResponse, offset), 2);
        assert_eq!(offset_of!(RxResponse, flags), 4);
        assert_eq!(offset_of!(RxResponse, status), 6);

        assert_eq!(size_of::<ExtraInfo>(), 8);
        assert_eq!(offset_of!(ExtraInfo, flags), 1);
        assert_eq!(offset_of!(ExtraInfo, u), 2);
        assert_eq!(size_of::<ExtraGso>(), EXTRA_UNION_SIZE);
        assert_eq!(offset_of!(ExtraGso, r#type), 2);
        assert_eq!(offset_of!(ExtraGso, pad), 3);
        assert_eq!(offset_of!(ExtraGso, features), 4);
        assert_eq!(size_of::<ExtraMcast>(), EXTRA_UNION_SIZE);
        assert_eq!(size_of::<ExtraHash>(), EXTRA_UNION_SIZE);
        assert_eq!(offset_of!(ExtraHash, algorithm), 1);
        assert_eq!(offset_of!(ExtraHash, value), 2);
        assert_eq!(size_of::<ExtraXdp>(), EXTRA_UNION_SIZE);
    }

    #[test]
    fn numbers_match_netif_h() {
        assert_eq!(TX_ENTRY_SIZE, 12);
        assert_eq!(RX_ENTRY_SIZE, 8);
        assert_eq!(XEN_NETIF_TX_RING_SIZE, 256);
        assert_eq!(XEN_NETIF_RX_RING_SIZE, 256);
        assert_eq!(
            (
                NETTXF_CSUM_BLANK,
                NETTXF_DATA_VALIDATED,
                NETTXF_MORE_DATA,
                NETTXF_EXTRA_INFO
            ),
            (1, 2, 4, 8)
        );
        assert_eq!(
            (
                NETRXF_DATA_VALIDATED,
                NETRXF_CSUM_BLANK,
                NETRXF_MORE_DATA,
                NETRXF_EXTRA_INFO,
                NETRXF_GSO_PREFIX
            ),
            (1, 2, 4, 8, 16)
        );
        assert_eq!(
            (
                XEN_NETIF_RSP_DROPPED,
                XEN_NETIF_RSP_ERROR,
                XEN_NETIF_RSP_OKAY,
                XEN_NETIF_RSP_NULL
            ),
            (-2, -1, 0, 1)
        );
        assert_eq!(XEN_NETIF_MAX_TX_SIZE, 65535);
        assert_eq!(XEN_NETIF_NR_SLOTS_MIN, 18);
        assert_eq!(ETH_HLEN, 14);
    }

    #[test]
    fn extra_info_views() {
        // A GSO extra as netfront writes it: type 1, no more, MSS 1448, TCPv4.
        let bytes = [1u8, 0, 0xa8, 0x05, 1, 0, 0, 0];
        let extra = ExtraInfo::read_from_bytes(&bytes).unwrap();
        assert_eq!(extra.r#type, XEN_NETIF_EXTRA_TYPE_GSO);
        assert!(!extra.more());
        let gso = extra.gso();
        assert_eq!((gso.size, gso.r#type), (1448, XEN_NETIF_GSO_TYPE_TCPV4));
        let mcast = ExtraInfo {
            r#type: XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
            flags: XEN_NETIF_EXTRA_FLAG_MORE,
            u: [1, 0, 0x5e, 0, 0, 1],
        };
        assert!(mcast.more());
        assert_eq!(mcast.mcast().addr, [1, 0, 0x5e, 0, 0, 1]);
        assert_eq!(mcast.as_bytes()[..2], [2, 1]);
        let hash = ExtraInfo {
            r#type: XEN_NETIF_EXTRA_TYPE_HASH,
            flags: 0,
            u: [3, 1, 0x78, 0x56, 0x34, 0x12],
        }
        .hash();
        assert_eq!(
            (hash.r#type, hash.algorithm, u32::from_le_bytes(hash.value)),
            (3, 1, 0x1234_5678)
        );
        let xdp = ExtraInfo {
            r#type: XEN_NETIF_EXTRA_TYPE_XDP,
            flags: 0,
            u: [0, 1, 0, 0, 0, 0],
        }
        .xdp();
        assert_eq!(xdp.headroom, 256);
    }
}
