//! Host tests of the netback core: nodes and paths against the tree real
//! Xen builds, the front end's connect keys, MACs, every transmit rule of
//! `decode_tx` (with a model ring that counts slot reads), the receive
//! placement, checksum completion against independently computed values;
//! property tests over arbitrary rings and frames.

use super::*;
use alloc::collections::BTreeMap;
use alloc::vec;
use core::cell::RefCell;
use proptest::prelude::*;
use pv_abi::netif::{
    ExtraGso, XEN_NETIF_EXTRA_FLAG_MORE, XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_TX_RING_SIZE,
};
use zerocopy::IntoBytes;

// ---------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------

fn get<'a>(nodes: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    nodes
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

const GUEST_MAC: Mac = Mac::xen(0x6c, 0x27, 0x42);

#[test]
fn paths() {
    assert_eq!(backend_path(0, 1, 0), "/local/domain/0/backend/vif/1/0");
    assert_eq!(frontend_path(1, 0), "/local/domain/1/device/vif/0");
    assert_eq!(frontend_path(7, 2), "/local/domain/7/device/vif/2");
}

#[test]
fn backend_tree_matches_real_xen() {
    let nodes = backend_nodes(&frontend_path(1, 0), 1, 0, GUEST_MAC, "xenbr0");
    // The values of the case-3 tree (LINUX-PVH.md §10), state aside.
    for (k, v) in [
        ("frontend", "/local/domain/1/device/vif/0"),
        ("frontend-id", "1"),
        ("online", "1"),
        ("mac", "00:16:3e:6c:27:42"),
        ("bridge", "xenbr0"),
        ("handle", "0"),
        ("type", "vif"),
        ("hotplug-status", "connected"),
        ("feature-sg", "1"),
        ("feature-rx-copy", "1"),
        ("feature-rx-flip", "0"),
        ("feature-split-event-channels", "1"),
        ("multi-queue-max-queues", "1"),
    ] {
        assert_eq!(get(&nodes, k), Some(v), "{k}");
    }
    assert_eq!(get(&nodes, "state"), Some("1"));
    // What we do not implement is not advertised.
    for k in [
        "feature-gso-tcpv4",
        "feature-gso-tcpv6",
        "feature-xdp-headroom",
        "feature-ctrl-ring",
        "feature-multicast-control",
        "feature-dynamic-multicast-control",
        "script",
    ] {
        assert_eq!(get(&nodes, k), None, "{k}");
    }
    assert_eq!(nodes.len(), 14);

    let front = frontend_nodes(&backend_path(0, 1, 0), 0, 0, GUEST_MAC, DEFAULT_MTU);
    for (k, v) in [
        ("backend", "/local/domain/0/backend/vif/1/0"),
        ("backend-id", "0"),
        ("state", "1"),
        ("handle", "0"),
        ("mac", "00:16:3e:6c:27:42"),
        ("trusted", "1"),
        ("mtu", "1500"),
    ] {
        assert_eq!(get(&front, k), Some(v), "{k}");
    }
    assert_eq!(front.len(), 7);
    assert!(FRONTEND_DOM0_OWNED.iter().all(|k| get(&front, k).is_some()));
}

fn nodes(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (String::from(*k), String::from(*v)))
        .collect();
    move |k| map.get(k).cloned()
}

/// The keys Linux's netfront wrote in the case-3 run.
const NETFRONT: &[(&str, &str)] = &[
    ("xdp-headroom", "0"),
    ("multi-queue-num-queues", "1"),
    ("tx-ring-ref", "587"),
    ("rx-ring-ref", "588"),
    ("event-channel-tx", "8"),
    ("event-channel-rx", "9"),
    ("request-rx-copy", "1"),
    ("feature-rx-notify", "1"),
    ("feature-sg", "1"),
    ("feature-gso-tcpv4", "1"),
    ("feature-gso-tcpv6", "1"),
    ("feature-ipv6-csum-offload", "1"),
];

fn with(over: &[(&'static str, Option<&'static str>)]) -> Vec<(&'static str, &'static str)> {
    let mut all: Vec<(&str, &str)> = NETFRONT.to_vec();
    for &(k, v) in over {
        all.retain(|(n, _)| *n != k);
        if let Some(v) = v {
            all.push((k, v));
        }
    }
    all
}

#[test]
fn netfront_connect_keys() {
    let cfg = parse_frontend(nodes(NETFRONT)).unwrap();
    assert_eq!(
        cfg,
        FrontendConfig {
            tx_ring_ref: 587,
            rx_ring_ref: 588,
            event_channels: EventChannels::Split { tx: 8, rx: 9 },
            rx_notify: true,
            sg: true,
            ip_csum: true,
            ipv6_csum: true,
        }
    );
    // A minimal, older front end: one event channel, no features.
    let cfg = parse_frontend(nodes(&[
        ("tx-ring-ref", "10"),
        ("rx-ring-ref", "11"),
        ("event-channel", "5"),
        ("request-rx-copy", "1"),
        ("feature-no-csum-offload", "1"),
    ]))
    .unwrap();
    assert_eq!(cfg.event_channels, EventChannels::Shared(5));
    assert!(!cfg.rx_notify && !cfg.sg && !cfg.ip_csum && !cfg.ipv6_csum);
    // Split nodes naming one port: shared.
    let same = with(&[("event-channel-rx", Some("8"))]);
    assert_eq!(
        parse_frontend(nodes(&same)).unwrap().event_channels,
        EventChannels::Shared(8)
    );
    // Only one of the split pair: falls back to event-channel.
    let half = with(&[("event-channel-rx", None), ("event-channel", Some("3"))]);
    assert_eq!(
        parse_frontend(nodes(&half)).unwrap().event_channels,
        EventChannels::Shared(3)
    );
}

#[test]
fn connect_key_refusals() {
    let err = |over: &[(&'static str, Option<&'static str>)]| {
        parse_frontend(nodes(&with(over))).unwrap_err()
    };
    assert_eq!(
        err(&[("multi-queue-num-queues", Some("2"))]),
        ConnectError::TooManyQueues(2)
    );
    assert_eq!(
        err(&[("multi-queue-num-queues", Some("2"))]).to_string(),
        "guest requested 2 queues, exceeding the maximum of 1."
    );
    assert_eq!(
        err(&[("multi-queue-num-queues", Some("0"))]),
        ConnectError::NoQueues
    );
    // Absent or unreadable: one queue, as xenbus_read_unsigned reads it.
    for q in [None, Some("x")] {
        assert!(parse_frontend(nodes(&with(&[("multi-queue-num-queues", q)]))).is_ok());
    }
    assert_eq!(err(&[("request-rx-copy", None)]), ConnectError::RxFlip);
    assert_eq!(err(&[("request-rx-copy", Some("0"))]), ConnectError::RxFlip);
    assert_eq!(
        err(&[("request-rx-copy", Some("yes"))]),
        ConnectError::RequestRxCopyUnreadable
    );
    assert_eq!(
        ConnectError::RxFlip.to_string(),
        "request-rx-copy not supported by frontend"
    );
    assert_eq!(err(&[("tx-ring-ref", None)]), ConnectError::RingRefs);
    assert_eq!(err(&[("rx-ring-ref", Some("-1"))]), ConnectError::RingRefs);
    assert_eq!(
        err(&[("tx-ring-ref", Some("4294967296"))]),
        ConnectError::RingRefs
    );
    assert_eq!(ConnectError::RingRefs.to_string(), "reading ring-ref");
    assert_eq!(
        err(&[("event-channel-tx", None)]),
        ConnectError::EventChannel
    );
    assert_eq!(
        err(&[("event-channel-tx", None), ("event-channel", Some("z"))]),
        ConnectError::EventChannel
    );
    assert_eq!(
        ConnectError::EventChannel.to_string(),
        "reading event-channel(-tx/rx)"
    );
    // Queues are checked before anything else, as Linux does.
    assert_eq!(
        err(&[
            ("multi-queue-num-queues", Some("4")),
            ("tx-ring-ref", None),
            ("request-rx-copy", None)
        ]),
        ConnectError::TooManyQueues(4)
    );
    // A trailing NUL is tolerated.
    assert!(parse_frontend(nodes(&with(&[("tx-ring-ref", Some("587\0"))]))).is_ok());
}

#[test]
fn netfront_handshake_through_the_shared_state_machine() {
    use BackendAction::{Connect, Disconnect, SetState};
    use XenbusState as S;
    // Netfront goes Initialising -> Connected directly.
    assert_eq!(
        on_frontend_state(S::InitWait, Some(S::Initialising), false),
        []
    );
    assert_eq!(
        on_frontend_state(S::InitWait, Some(S::Connected), false),
        [Connect, SetState(S::Connected)]
    );
    // A front end that stops at Initialised is connected too.
    assert_eq!(
        on_frontend_state(S::InitWait, Some(S::Initialised), false),
        [Connect, SetState(S::Connected)]
    );
    // Poweroff: front 5, back 5, front 6, back 6.
    assert_eq!(
        on_frontend_state(S::Connected, Some(S::Closing), true),
        [Disconnect, SetState(S::Closing)]
    );
    assert_eq!(
        on_frontend_state(S::Closing, Some(S::Closed), false),
        [SetState(S::Closed)]
    );
}

// ---------------------------------------------------------------------
// MAC
// ---------------------------------------------------------------------

#[test]
fn mac_parse_format_validate() {
    assert_eq!(Mac::parse("00:16:3e:6c:27:42"), Ok(GUEST_MAC));
    assert_eq!(Mac::parse("00:16:3E:6C:27:42\0"), Ok(GUEST_MAC));
    assert_eq!(Mac::parse("0:16:3e:6c:27:42"), Ok(GUEST_MAC));
    assert_eq!("00:16:3e:6c:27:42".parse::<Mac>(), Ok(GUEST_MAC));
    assert_eq!(GUEST_MAC.to_string(), "00:16:3e:6c:27:42");
    assert_eq!(format_mac(&GUEST_MAC.0), "00:16:3e:6c:27:42");
    assert_eq!(
        Mac([0xa, 0xb, 0xc, 0xd, 0xe, 0xf]).to_string(),
        "0a:0b:0c:0d:0e:0f"
    );
    assert_eq!(format!("{GUEST_MAC:?}"), "Mac(00:16:3e:6c:27:42)");
    for bad in [
        "",
        "00:16:3e:6c:27",
        "00:16:3e:6c:27:42:00",
        "00:16:3e:6c:27:",
        "000:16:3e:6c:27:42",
        "00-16-3e-6c-27-42",
        "00:16:3e:6c:27:4g",
        "+0:16:3e:6c:27:42",
        " 00:16:3e:6c:27:42",
    ] {
        assert_eq!(Mac::parse(bad), Err(MacError::Syntax), "{bad:?}");
    }
    assert_eq!(GUEST_MAC.check_unicast(), Ok(GUEST_MAC));
    assert_eq!(Mac::BROADCAST.check_unicast(), Err(MacError::Multicast));
    assert_eq!(
        Mac([0x01, 0, 0x5e, 0, 0, 1]).check_unicast(),
        Err(MacError::Multicast)
    );
    assert_eq!(Mac::default().check_unicast(), Err(MacError::Zero));
    assert!(Mac::BROADCAST.is_broadcast() && Mac::BROADCAST.is_multicast());
    assert!(Mac([0x33, 0x33, 0, 0, 0, 1]).is_multicast());
    assert!(!Mac([0x02, 0, 0, 0, 0, 1]).is_multicast());
    assert_eq!(
        Mac::from_slice(&[1, 2, 3, 4, 5, 6, 7]),
        Some(Mac([1, 2, 3, 4, 5, 6]))
    );
    assert_eq!(Mac::from_slice(&[1, 2, 3]), None);
}

// ---------------------------------------------------------------------
// Transmit
// ---------------------------------------------------------------------

/// A transmit ring the front end fills, counting the back end's reads.
struct TxRing {
    slots: Vec<[u8; TX_ENTRY_SIZE]>,
    reads: RefCell<BTreeMap<RingIdx, usize>>,
    req_prod: RingIdx,
}

impl TxRing {
    fn new(start: RingIdx) -> Self {
        TxRing {
            slots: vec![[0xee; TX_ENTRY_SIZE]; XEN_NETIF_TX_RING_SIZE as usize],
            reads: RefCell::new(BTreeMap::new()),
            req_prod: start,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let mut slot = [0u8; TX_ENTRY_SIZE];
        slot[..bytes.len()].copy_from_slice(bytes);
        let i = (self.req_prod % XEN_NETIF_TX_RING_SIZE) as usize;
        self.slots[i] = slot;
        self.req_prod = self.req_prod.wrapping_add(1);
    }

    fn req(&mut self, gref: u32, offset: u16, flags: u16, id: u16, size: u16) {
        let r = TxRequest {
            gref,
            offset,
            flags,
            id,
            size,
        };
        self.push(r.as_bytes());
    }

    fn extra(&mut self, r#type: u8, flags: u8, u: [u8; 6]) {
        self.push(ExtraInfo { r#type, flags, u }.as_bytes());
    }

    fn read(&self) -> impl FnMut(RingIdx) -> [u8; TX_ENTRY_SIZE] + '_ {
        |idx| {
            *self.reads.borrow_mut().entry(idx).or_default() += 1;
            self.slots[(idx % XEN_NETIF_TX_RING_SIZE) as usize]
        }
    }

    fn max_reads(&self) -> usize {
        self.reads.borrow().values().copied().max().unwrap_or(0)
    }
}

fn tx_ring_at(start: RingIdx) -> BackRing {
    let mut r = BackRing::new(TX_ENTRY_SIZE, 0).unwrap();
    r.attach(start, start).unwrap();
    r
}

fn decode(ring: &mut BackRing, tx: &TxRing) -> TxOutcome {
    tx.reads.borrow_mut().clear();
    let out = decode_tx(ring, tx.req_prod, tx.read());
    assert!(tx.max_reads() <= 1, "a slot was read twice");
    out
}

fn packet(out: TxOutcome) -> TxPacket {
    match out {
        TxOutcome::Packet(p) => p,
        other => panic!("expected a packet, got {other:?}"),
    }
}

fn dropped(out: TxOutcome) -> TxDrop {
    match out {
        TxOutcome::Dropped(d) => d,
        other => panic!("expected a drop, got {other:?}"),
    }
}

fn fatal(out: TxOutcome) -> TxFatal {
    match out {
        TxOutcome::Fatal(f) => f,
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

use TxAnswer::{Extra, Request};

#[test]
fn single_slot_packet() {
    let mut tx = TxRing::new(0);
    tx.req(7, 64, NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED, 3, 60);
    let mut ring = tx_ring_at(0);
    assert_eq!(
        packet(decode(&mut ring, &tx)),
        TxPacket {
            segments: vec![TxSegment {
                gref: 7,
                offset: 64,
                len: 60
            }],
            len: 60,
            csum_blank: true,
            data_validated: true,
            answers: vec![Request(3)],
        }
    );
    assert_eq!((ring.req_cons(), ring.in_flight()), (1, 1));
    // Nothing more.
    assert_eq!(decode(&mut ring, &tx), TxOutcome::NeedMore);
    assert_eq!(ring.req_cons(), 1);
}

#[test]
fn multi_slot_packet_sizes_add_up() {
    let mut tx = TxRing::new(0);
    // 3000 bytes: 1000 in the first slot, 1500 + 0 + 500 in the others.
    tx.req(1, 3096, NETTXF_MORE_DATA, 10, 3000);
    tx.req(2, 0, NETTXF_MORE_DATA, 11, 1500);
    tx.req(3, 0, NETTXF_MORE_DATA, 12, 0);
    tx.req(4, 3596, 0, 13, 500);
    let mut ring = tx_ring_at(0);
    let p = packet(decode(&mut ring, &tx));
    assert_eq!(
        p.segments,
        [
            TxSegment {
                gref: 1,
                offset: 3096,
                len: 1000
            },
            TxSegment {
                gref: 2,
                offset: 0,
                len: 1500
            },
            TxSegment {
                gref: 4,
                offset: 3596,
                len: 500
            },
        ]
    );
    assert_eq!(p.len, 3000);
    assert_eq!(
        p.segments.iter().map(|s| usize::from(s.len)).sum::<usize>(),
        p.len
    );
    assert_eq!(
        p.answers,
        [Request(10), Request(11), Request(12), Request(13)]
    );
    assert!(!p.csum_blank && !p.data_validated);
    assert_eq!(ring.req_cons(), 4);
    let rsp: Vec<_> = p.responses(XEN_NETIF_RSP_OKAY).collect();
    assert_eq!(rsp[1], tx_response_bytes(11, 0));
}

#[test]
fn extra_info_slots() {
    // Hash extra, then XDP (Linux's type 5) with MORE chaining: ignored.
    let mut tx = TxRing::new(0);
    tx.req(1, 0, NETTXF_EXTRA_INFO | NETTXF_MORE_DATA, 1, 100);
    tx.extra(XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_EXTRA_FLAG_MORE, [0; 6]);
    tx.extra(XEN_NETIF_EXTRA_TYPE_XDP, 0, [0; 6]);
    tx.req(2, 0, 0, 2, 40);
    let mut ring = tx_ring_at(0);
    let p = packet(decode(&mut ring, &tx));
    assert_eq!(p.answers, [Request(1), Extra, Extra, Request(2)]);
    assert_eq!(p.len, 100);
    assert_eq!(p.segments[0].len, 60);
    let rsp: Vec<_> = p.responses(XEN_NETIF_RSP_OKAY).collect();
    assert_eq!(rsp.len(), 4);
    assert_eq!(rsp[1], tx_response_bytes(0, XEN_NETIF_RSP_NULL));
    assert_eq!(rsp[3], tx_response_bytes(2, XEN_NETIF_RSP_OKAY));
    assert_eq!(ring.req_cons(), 4);
}

#[test]
fn bad_extra_types_are_fatal() {
    for t in [
        XEN_NETIF_EXTRA_TYPE_NONE,
        XEN_NETIF_EXTRA_TYPE_XDP + 1,
        0xff,
    ] {
        let mut tx = TxRing::new(0);
        tx.req(1, 0, NETTXF_EXTRA_INFO, 1, 100);
        tx.extra(t, 0, [0; 6]);
        let mut ring = tx_ring_at(0);
        assert_eq!(fatal(decode(&mut ring, &tx)), TxFatal::InvalidExtraType(t));
        assert_eq!(ring.req_cons(), 0, "nothing consumed");
    }
    assert_eq!(
        TxFatal::InvalidExtraType(0).to_string(),
        "Invalid extra type: 0"
    );
}

fn gso(size: u16, r#type: u8) -> [u8; 6] {
    zerocopy::transmute!(ExtraGso {
        size,
        r#type,
        pad: 0,
        features: 0
    })
}

#[test]
fn gso_extras() {
    let run = |u: [u8; 6]| {
        let mut tx = TxRing::new(0);
        tx.req(1, 0, NETTXF_EXTRA_INFO | NETTXF_CSUM_BLANK, 1, 1514);
        tx.extra(XEN_NETIF_EXTRA_TYPE_GSO, 0, u);
        let mut ring = tx_ring_at(0);
        let out = decode(&mut ring, &tx);
        (out, ring.req_cons())
    };
    let (out, used) = run(gso(1448, XEN_NETIF_GSO_TYPE_TCPV4));
    let d = dropped(out);
    assert_eq!(
        (d.reason, d.status, d.answers.as_slice(), used),
        (
            TxDropReason::GsoNotOffered,
            XEN_NETIF_RSP_ERROR,
            &[Request(1), Extra][..],
            2
        )
    );
    assert_eq!(
        d.responses().collect::<Vec<_>>(),
        [
            tx_response_bytes(1, XEN_NETIF_RSP_ERROR),
            tx_response_bytes(0, XEN_NETIF_RSP_NULL)
        ]
    );
    let (out, used) = run(gso(0, XEN_NETIF_GSO_TYPE_TCPV6));
    assert_eq!((fatal(out), used), (TxFatal::GsoSizeZero, 0));
    let (out, _) = run(gso(1448, 3));
    assert_eq!(fatal(out), TxFatal::BadGsoType(3));
    assert_eq!(TxFatal::BadGsoType(3).to_string(), "Bad GSO type 3.");
}

#[test]
fn multicast_control_requests() {
    for t in [
        XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
        XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
    ] {
        let mut tx = TxRing::new(0);
        // A dummy request; its more_data slot is read as the next packet.
        tx.req(0, 0, NETTXF_EXTRA_INFO | NETTXF_MORE_DATA, 9, 0);
        tx.extra(t, 0, [0x01, 0, 0x5e, 0, 0, 1]);
        tx.req(5, 0, 0, 10, 60);
        let mut ring = tx_ring_at(0);
        let d = dropped(decode(&mut ring, &tx));
        assert_eq!(d.reason, TxDropReason::MulticastControl);
        assert_eq!(d.status, XEN_NETIF_RSP_OKAY);
        assert_eq!(d.answers, [Request(9), Extra]);
        assert_eq!(ring.req_cons(), 2);
        let p = packet(decode(&mut ring, &tx));
        assert_eq!(p.answers, [Request(10)]);
    }
}

#[test]
fn incomplete_chains_wait() {
    let mut ring = tx_ring_at(0);
    let mut tx = TxRing::new(0);
    assert_eq!(decode(&mut ring, &tx), TxOutcome::NeedMore);
    tx.req(1, 0, NETTXF_EXTRA_INFO | NETTXF_MORE_DATA, 1, 100);
    assert_eq!(decode(&mut ring, &tx), TxOutcome::NeedMore);
    tx.extra(XEN_NETIF_EXTRA_TYPE_HASH, XEN_NETIF_EXTRA_FLAG_MORE, [0; 6]);
    assert_eq!(decode(&mut ring, &tx), TxOutcome::NeedMore);
    tx.extra(XEN_NETIF_EXTRA_TYPE_HASH, 0, [0; 6]);
    assert_eq!(decode(&mut ring, &tx), TxOutcome::NeedMore);
    tx.req(2, 0, NETTXF_MORE_DATA, 2, 20);
    assert_eq!(decode(&mut ring, &tx), TxOutcome::NeedMore);
    assert_eq!(ring.req_cons(), 0, "nothing consumed while waiting");
    assert_eq!(ring.more_req_event(tx.req_prod), 5);
    tx.req(3, 0, 0, 3, 20);
    let p = packet(decode(&mut ring, &tx));
    assert_eq!(
        p.answers,
        [Request(1), Extra, Extra, Request(2), Request(3)]
    );
    assert_eq!(p.segments[0].len, 60);
}

fn chain(continuations: usize) -> TxRing {
    let mut tx = TxRing::new(0);
    tx.req(100, 0, NETTXF_MORE_DATA, 100, 1000);
    for i in 0..continuations {
        let last = i + 1 == continuations;
        let flags = if last { 0 } else { NETTXF_MORE_DATA };
        tx.req(i as u32, 0, flags, i as u16, 10);
    }
    tx
}

#[test]
fn slot_limits() {
    // 18 continuation slots (19 in all): fine.
    let tx = chain(XEN_NETBK_LEGACY_SLOTS_MAX);
    let mut ring = tx_ring_at(0);
    let p = packet(decode(&mut ring, &tx));
    assert_eq!(p.answers.len(), 19);
    assert_eq!(p.segments.len(), 19);
    // 19 or 20: dropped, every slot consumed and answered ERROR.
    for n in [XEN_NETBK_LEGACY_SLOTS_MAX + 1, FATAL_SKB_SLOTS] {
        let tx = chain(n);
        let mut ring = tx_ring_at(0);
        let d = dropped(decode(&mut ring, &tx));
        assert_eq!(d.reason, TxDropReason::TooManySlots);
        assert_eq!(d.status, XEN_NETIF_RSP_ERROR);
        assert_eq!(d.answers.len(), n + 1);
        assert_eq!(d.answers[n], Request(n as u16 - 1));
        assert_eq!(ring.req_cons() as usize, n + 1);
    }
    // 21: malicious.
    let tx = chain(FATAL_SKB_SLOTS + 1);
    let mut ring = tx_ring_at(0);
    assert_eq!(
        fatal(decode(&mut ring, &tx)),
        TxFatal::Malicious { slots: 20 }
    );
    assert_eq!(
        TxFatal::Malicious { slots: 20 }.to_string(),
        "Malicious frontend using 20 slots, threshold 20"
    );
    assert_eq!(ring.req_cons(), 0);
}

#[test]
fn size_checks() {
    // A continuation larger than what is left: dropped, all answered.
    let mut tx = TxRing::new(0);
    tx.req(1, 0, NETTXF_MORE_DATA, 1, 100);
    tx.req(2, 0, NETTXF_MORE_DATA, 2, 60);
    tx.req(3, 0, 0, 3, 60);
    let mut ring = tx_ring_at(0);
    let d = dropped(decode(&mut ring, &tx));
    assert_eq!(
        d.reason,
        TxDropReason::SlotTooBig {
            size: 60,
            remaining: 40
        }
    );
    assert_eq!(d.answers, [Request(1), Request(2), Request(3)]);
    assert_eq!(
        d.reason.to_string(),
        "Invalid tx request, slot size 60 > remaining size 40"
    );
    // ...but a page crossing in a later slot is still fatal.
    let mut tx = TxRing::new(0);
    tx.req(1, 0, NETTXF_MORE_DATA, 1, 100);
    tx.req(2, 0, NETTXF_MORE_DATA, 2, 200);
    tx.req(3, 4000, 0, 3, 100);
    let mut ring = tx_ring_at(0);
    assert_eq!(
        fatal(decode(&mut ring, &tx)),
        TxFatal::CrossPageBoundary {
            offset: 4000,
            size: 100
        }
    );
    // First slot's own data shorter than an Ethernet header.
    for (first, rest, own) in [(13u16, None, 13u16), (100, Some(90u16), 10)] {
        let mut tx = TxRing::new(0);
        let flags = if rest.is_some() { NETTXF_MORE_DATA } else { 0 };
        tx.req(1, 0, flags, 1, first);
        if let Some(r) = rest {
            tx.req(2, 0, 0, 2, r);
        }
        let mut ring = tx_ring_at(0);
        let d = dropped(decode(&mut ring, &tx));
        assert_eq!(d.reason, TxDropReason::TooShort { size: own });
        assert_eq!(d.status, XEN_NETIF_RSP_ERROR);
        assert_eq!(ring.req_cons() as usize, d.answers.len());
    }
    // First slot crossing its page.
    let mut tx = TxRing::new(0);
    tx.req(1, 4000, 0, 1, 200);
    let mut ring = tx_ring_at(0);
    assert_eq!(
        fatal(decode(&mut ring, &tx)),
        TxFatal::FirstCrossesPage {
            offset: 4000,
            size: 200
        }
    );
    // Exactly to the end of the page is fine.
    let mut tx = TxRing::new(0);
    tx.req(1, 4096 - 60, 0, 1, 60);
    assert!(matches!(
        decode(&mut tx_ring_at(0), &tx),
        TxOutcome::Packet(_)
    ));
    // The largest packet the wire format allows.
    let mut tx = TxRing::new(0);
    tx.req(1, 0, NETTXF_MORE_DATA, 1, XEN_NETIF_MAX_TX_SIZE);
    for i in 0..14 {
        tx.req(2 + i, 0, NETTXF_MORE_DATA, 2 + i as u16, 4096);
    }
    tx.req(20, 0, 0, 20, 4095);
    let p = packet(decode(&mut tx_ring_at(0), &tx));
    assert_eq!(p.len, 65535);
    assert_eq!(p.segments[0].len, 4096);
}

#[test]
fn impossible_req_prod_is_fatal() {
    let mut ring = tx_ring_at(0);
    let mut tx = TxRing::new(0);
    tx.req_prod = XEN_NETIF_TX_RING_SIZE + 1;
    assert!(matches!(
        fatal(decode(&mut ring, &tx)),
        TxFatal::ImpossibleRequests(_)
    ));
    // Behind req_cons.
    let mut ring = tx_ring_at(10);
    tx.req_prod = 9;
    assert!(matches!(
        fatal(decode(&mut ring, &tx)),
        TxFatal::ImpossibleRequests(_)
    ));
    assert!(
        TxFatal::ImpossibleRequests(ring.available(9).unwrap_err())
            .to_string()
            .starts_with("Impossible number of requests. req_prod 9, req_cons 10")
    );
}

#[test]
fn indices_wrap() {
    let start = u32::MAX - 1;
    let mut tx = TxRing::new(start);
    tx.req(1, 0, NETTXF_MORE_DATA, 1, 100);
    tx.req(2, 0, NETTXF_MORE_DATA, 2, 20);
    tx.req(3, 0, 0, 3, 20);
    let mut ring = tx_ring_at(start);
    let p = packet(decode(&mut ring, &tx));
    assert_eq!(p.answers, [Request(1), Request(2), Request(3)]);
    assert_eq!(ring.req_cons(), 1);
    // Responses go to the consumed slots, in order.
    let offsets: Vec<_> = (0..3).map(|_| ring.next_response()).collect();
    assert_eq!(offsets, [64 + 254 * 12, 64 + 255 * 12, 64]);
}

#[test]
fn responses_bytes() {
    assert_eq!(
        tx_response_bytes(0x1234, XEN_NETIF_RSP_ERROR),
        [0x34, 0x12, 0xff, 0xff]
    );
    assert_eq!(Request(5).response(XEN_NETIF_RSP_OKAY), [5, 0, 0, 0]);
    assert_eq!(Extra.response(XEN_NETIF_RSP_ERROR), [0, 0, 1, 0]);
}

// ---------------------------------------------------------------------
// Receive
// ---------------------------------------------------------------------

fn rx_ring_with(posted: &[(u16, u32)]) -> (BackRing, Vec<[u8; RX_ENTRY_SIZE]>, RingIdx) {
    let ring = BackRing::new(RX_ENTRY_SIZE, 0).unwrap();
    let mut slots = vec![[0u8; RX_ENTRY_SIZE]; 256];
    for (i, &(id, gref)) in posted.iter().enumerate() {
        slots[i] = zerocopy::transmute!(RxRequest { id, pad: 0, gref });
    }
    (ring, slots, posted.len() as u32)
}

#[test]
fn rx_slot_counts() {
    assert_eq!(rx_slots_needed(60, false), Ok(1));
    assert_eq!(rx_slots_needed(4096, false), Ok(1));
    assert_eq!(rx_slots_needed(4097, true), Ok(2));
    assert_eq!(rx_slots_needed(65535, true), Ok(16));
    assert_eq!(
        rx_slots_needed(4097, false),
        Err(RxDropReason::NeedsSg { len: 4097 })
    );
    assert_eq!(
        rx_slots_needed(13, true),
        Err(RxDropReason::TooShort { len: 13 })
    );
    assert_eq!(
        rx_slots_needed(65536, true),
        Err(RxDropReason::TooBig { len: 65536 })
    );
}

#[test]
fn rx_placement() {
    let (mut ring, slots, req_prod) = rx_ring_with(&[(7, 70), (8, 80), (9, 90), (10, 100)]);
    let read = |idx: RingIdx| slots[(idx % 256) as usize];
    // 9000 bytes: 4096 + 4096 + 808.
    let out = rx_take(&mut ring, req_prod, 9000, true, true, read).unwrap();
    let RxOutcome::Deliver(got) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        got,
        [
            RxSlot {
                id: 7,
                gref: 70,
                frame_offset: 0,
                len: 4096,
                flags: NETRXF_MORE_DATA | NETRXF_DATA_VALIDATED
            },
            RxSlot {
                id: 8,
                gref: 80,
                frame_offset: 4096,
                len: 4096,
                flags: NETRXF_MORE_DATA
            },
            RxSlot {
                id: 9,
                gref: 90,
                frame_offset: 8192,
                len: 808,
                flags: 0
            },
        ]
    );
    // Each response lands in its request's slot.
    for (n, s) in got.iter().enumerate() {
        assert_eq!(ring.next_response(), ring.slot_offset(n as u32));
        let rsp = s.response();
        assert_eq!(rsp, rx_response_bytes(s.id, 0, s.flags, s.len as i16));
    }
    assert_eq!(
        got[2].response(),
        [9, 0, 0, 0, 0, 0, 0x28, 0x03] // id 9, offset 0, flags 0, 808
    );
    assert_eq!(got[1].error_response()[6..], (-1i16).to_ne_bytes());
    // One buffer left: a 5000-byte frame waits, a 60-byte one goes.
    assert_eq!(
        rx_take(&mut ring, req_prod, 5000, true, false, read),
        Ok(RxOutcome::Wait {
            needed: 2,
            posted: 1
        })
    );
    assert_eq!(ring.req_cons(), 3);
    let Ok(RxOutcome::Deliver(small)) = rx_take(&mut ring, req_prod, 60, true, false, read) else {
        panic!()
    };
    assert_eq!(small[0].flags, 0);
    assert_eq!((small[0].id, small[0].len), (10, 60));
}

#[test]
fn rx_refusals() {
    let (mut ring, slots, _) = rx_ring_with(&[(1, 1)]);
    let read = |idx: RingIdx| slots[(idx % 256) as usize];
    // Without feature-sg a two-page frame can never go.
    assert_eq!(
        rx_take(&mut ring, 1, 5000, false, false, read),
        Ok(RxOutcome::Drop(RxDropReason::NeedsSg { len: 5000 }))
    );
    // A front end claiming more posted buffers than the ring holds.
    assert!(rx_take(&mut ring, 257, 60, true, false, read).is_err());
    assert_eq!(ring.req_cons(), 0);
}

// ---------------------------------------------------------------------
// Checksums
// ---------------------------------------------------------------------

fn eth(ethertype: u16, vlan: bool) -> Vec<u8> {
    let mut f = vec![0x00, 0x16, 0x3e, 0, 0, 1, 0x00, 0x16, 0x3e, 0, 0, 2];
    if vlan {
        f.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        f.extend_from_slice(&[0x00, 0x05]);
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn ipv4(proto: u8, options: usize, l4: &[u8]) -> Vec<u8> {
    let ihl = 5 + options / 4;
    let total = ihl * 4 + l4.len();
    let mut h = vec![
        0x40 | ihl as u8,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0x40, // DF
        0,
        64,
        proto,
        0,
        0,
        10,
        0,
        0,
        2,
        10,
        0,
        0,
        1,
    ];
    h.extend(core::iter::repeat_n(1u8, options)); // NOPs
    h.extend_from_slice(l4);
    h
}

fn ipv6(next: u8, exts: &[(u8, usize)], l4: &[u8]) -> Vec<u8> {
    // exts: (header type, length in 8-byte units less one), chained to `next`.
    let mut body = Vec::new();
    for (i, &(_, units)) in exts.iter().enumerate() {
        let nh = exts.get(i + 1).map_or(next, |e| e.0);
        let mut e = vec![nh, units as u8];
        e.resize((units + 1) * 8, 0);
        body.extend(e);
    }
    body.extend_from_slice(l4);
    let first = exts.first().map_or(next, |e| e.0);
    let mut h = vec![
        0x60,
        0,
        0,
        0,
        (body.len() >> 8) as u8,
        body.len() as u8,
        first,
        64,
    ];
    h.extend_from_slice(&[
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x16, 0x3e, 0xff, 0xfe, 0x6c, 0x27, 0x42,
    ]);
    h.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h.extend(body);
    h
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (UDP_HEADER + payload.len()) as u16;
    let mut u = Vec::new();
    for w in [sport, dport, len, 0x1234] {
        u.extend_from_slice(&w.to_be_bytes());
    }
    u.extend_from_slice(payload);
    u
}

fn tcp_syn() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&40000u16.to_be_bytes());
    t.extend_from_slice(&80u16.to_be_bytes());
    t.extend_from_slice(&1u32.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(&[5 << 4, 0x02, 0xff, 0xff, 0xab, 0xcd, 0, 0]);
    t
}

fn frame(mut l2: Vec<u8>, l3: Vec<u8>) -> Vec<u8> {
    l2.extend(l3);
    l2
}

/// An independent check: the ones'-complement sum over the pseudo-header
/// and the transport segment, with the checksum in it, is 0xffff.
fn verifies(src: &[u8], dst: &[u8], proto: u8, segment: &[u8]) -> bool {
    let mut words: Vec<u32> = Vec::new();
    let mut push = |b: &[u8]| {
        for c in b.chunks(2) {
            words.push(u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0)));
        }
    };
    push(src);
    push(dst);
    push(&[0, proto]);
    push(&(segment.len() as u32).to_be_bytes());
    push(segment);
    let mut s: u32 = words.iter().sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s == 0xffff
}

#[test]
fn known_checksums() {
    // Values computed independently (Python, RFC 1071).
    let mut f = frame(
        eth(ETHERTYPE_IPV4, false),
        ipv4(17, 0, &udp(5353, 53, b"hello pavise")),
    );
    let done = complete_checksum(&mut f).unwrap();
    assert_eq!(done.proto, L4Proto::Udp);
    assert_eq!((done.l4_offset, done.l4_len), (34, 20));
    assert_eq!(done.checksum, 0x3883);
    assert_eq!(f[40..42], [0x38, 0x83]);

    let mut f = frame(eth(ETHERTYPE_IPV4, true), ipv4(6, 0, &tcp_syn()));
    let done = complete_checksum(&mut f).unwrap();
    assert_eq!(
        (done.proto, done.checksum, done.l4_offset),
        (L4Proto::Tcp, 0xff4e, 38)
    );

    let mut f = frame(
        eth(ETHERTYPE_IPV6, false),
        ipv6(17, &[], &udp(546, 547, b"hello pavise")),
    );
    assert_eq!(complete_checksum(&mut f).unwrap().checksum, 0xf915);
    // The same with hop-by-hop and destination options before UDP.
    let mut f = frame(
        eth(ETHERTYPE_IPV6, false),
        ipv6(
            17,
            &[(IPV6_HOP_BY_HOP, 0), (IPV6_DEST_OPTS, 1)],
            &udp(546, 547, b"hello pavise"),
        ),
    );
    let done = complete_checksum(&mut f).unwrap();
    assert_eq!((done.checksum, done.l4_offset), (0xf915, 14 + 40 + 8 + 16));
}

#[test]
fn udp_zero_checksum_is_sent_as_ffff() {
    let mut payload = vec![0u8; 8];
    let mut f = frame(
        eth(ETHERTYPE_IPV4, false),
        ipv4(17, 0, &udp(1, 2, &payload)),
    );
    // Pick the last payload word so that the sum comes to 0xffff.
    let s = !complete_checksum(&mut f).unwrap().checksum;
    let w = 0xffff - s;
    payload[6..].copy_from_slice(&w.to_be_bytes());
    let mut f = frame(
        eth(ETHERTYPE_IPV4, false),
        ipv4(17, 0, &udp(1, 2, &payload)),
    );
    assert_eq!(complete_checksum(&mut f).unwrap().checksum, 0xffff);
    assert!(verifies(&f[26..30], &f[30..34], 17, &f[34..]));
}

#[test]
fn checksum_refusals() {
    let good = frame(eth(ETHERTYPE_IPV4, false), ipv4(17, 0, &udp(1, 2, b"x")));
    let refuse = |mut f: Vec<u8>| {
        let before = f.clone();
        let e = complete_checksum(&mut f).unwrap_err();
        assert_eq!(f, before, "refused frames are left alone");
        e
    };
    assert_eq!(
        refuse(frame(eth(0x0806, false), vec![0; 28])),
        ChecksumError::NotIp { ethertype: 0x0806 }
    );
    assert_eq!(refuse(good[..20].to_vec()), ChecksumError::Truncated);
    assert_eq!(
        refuse(good[..good.len() - 1].to_vec()),
        ChecksumError::Truncated
    );
    let mut frag = good.clone();
    frag[20] = 0x20; // MF
    assert_eq!(refuse(frag), ChecksumError::Fragment);
    let mut frag = good.clone();
    frag[21] = 1; // offset 8
    frag[20] = 0;
    assert_eq!(refuse(frag), ChecksumError::Fragment);
    assert_eq!(
        refuse(frame(
            eth(ETHERTYPE_IPV4, false),
            ipv4(1, 0, &[8, 0, 0, 0, 0, 0, 0, 0])
        )),
        ChecksumError::UnsupportedProtocol(1)
    );
    let mut v = good.clone();
    v[14] = 0x65;
    assert_eq!(refuse(v), ChecksumError::BadIpHeader);
    let mut ihl = good.clone();
    ihl[14] = 0x44;
    assert_eq!(refuse(ihl), ChecksumError::BadIpHeader);
    let mut ulen = good.clone();
    ulen[39] += 1;
    assert_eq!(refuse(ulen), ChecksumError::BadLength);
    assert_eq!(
        refuse(frame(eth(ETHERTYPE_IPV4, false), ipv4(6, 0, &[0; 12]))),
        ChecksumError::BadLength
    );
    let v6 =
        |exts: &[(u8, usize)]| frame(eth(ETHERTYPE_IPV6, false), ipv6(17, exts, &udp(1, 2, b"x")));
    assert_eq!(refuse(v6(&[(IPV6_FRAGMENT, 0)])), ChecksumError::Fragment);
    assert_eq!(
        refuse(v6(&[(IPV6_ROUTING, 0)])),
        ChecksumError::UnsupportedIpv6
    );
    assert_eq!(
        refuse(v6(&[(51, 0)])),
        ChecksumError::UnsupportedProtocol(51)
    );
    let mut jumbo = v6(&[]);
    jumbo[18..20].fill(0);
    assert_eq!(refuse(jumbo), ChecksumError::UnsupportedIpv6);
    // Ethernet padding after the IP datagram is not covered.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0xaa; 10]);
    let mut plain = good.clone();
    assert_eq!(
        complete_checksum(&mut padded).unwrap().checksum,
        complete_checksum(&mut plain).unwrap().checksum
    );
}

// ---------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------

/// A packet an honest front end sends: per slot (gref, offset, len),
/// the total, the first slot's checksum flags.
fn arb_honest_packet() -> impl Strategy<Value = (Vec<(u32, u16, u16)>, u16, u16)> {
    let page = PAGE_SIZE as u16;
    let min = ETH_HLEN as u16;
    let first = (any::<u32>(), 0..=page - min)
        .prop_flat_map(move |(g, off)| (Just(g), Just(off), min..=page - off));
    let slot = (any::<u32>(), 0..=page)
        .prop_flat_map(move |(g, off)| (Just(g), Just(off), 0..=page - off));
    (
        first,
        proptest::collection::vec(slot, 0..=XEN_NETBK_LEGACY_SLOTS_MAX),
        any::<u16>(),
    )
        .prop_filter_map("fits in 64 KiB", |(first, rest, flags)| {
            let total = u32::from(first.2) + rest.iter().map(|s| u32::from(s.2)).sum::<u32>();
            let total = u16::try_from(total).ok()?;
            let mut slots = vec![first];
            slots.extend(rest);
            Some((
                slots,
                total,
                flags & (NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED),
            ))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(2000)))]

    /// Whatever the front end wrote: no panic, each slot read at most
    /// once, consumption matches the answers, and a packet's segments are
    /// inside their pages and add up to its length.
    #[test]
    fn decode_tx_never_misbehaves(
        start in any::<u32>(),
        raw in proptest::collection::vec(any::<[u8; TX_ENTRY_SIZE]>(), 0..40),
        // Bias the flags towards chains.
        flags in proptest::collection::vec(0u16..16, 40),
        bogus in proptest::option::of(any::<u32>()),
    ) {
        let mut tx = TxRing::new(start);
        for (i, mut slot) in raw.into_iter().enumerate() {
            slot[6..8].copy_from_slice(&flags[i].to_ne_bytes());
            tx.push(&slot);
        }
        if let Some(p) = bogus {
            tx.req_prod = p;
        }
        let mut ring = tx_ring_at(start);
        let before = ring.clone();
        let out = decode(&mut ring, &tx);
        let consumed = ring.req_cons().wrapping_sub(before.req_cons()) as usize;
        match out {
            TxOutcome::NeedMore | TxOutcome::Fatal(_) => prop_assert_eq!(&ring, &before),
            TxOutcome::Dropped(d) => {
                prop_assert_eq!(consumed, d.answers.len());
                prop_assert!(consumed >= 1);
            }
            TxOutcome::Packet(p) => {
                prop_assert_eq!(consumed, p.answers.len());
                prop_assert!(p.len >= ETH_HLEN && p.len <= usize::from(XEN_NETIF_MAX_TX_SIZE));
                let mut sum = 0;
                for s in &p.segments {
                    prop_assert!(s.len > 0);
                    prop_assert!(usize::from(s.offset) + usize::from(s.len) <= PAGE_SIZE);
                    sum += usize::from(s.len);
                }
                prop_assert_eq!(sum, p.len);
            }
        }
        prop_assert!(ring.in_flight() <= ring.size());
    }

    /// What an honest front end sends comes out as sent.
    #[test]
    fn honest_packets_round_trip(
        (slots, total, flags) in arb_honest_packet(),
        start in any::<u32>(),
    ) {
        let mut tx = TxRing::new(start);
        let n = slots.len();
        for (i, &(gref, offset, len)) in slots.iter().enumerate() {
            let more = if i + 1 < n { NETTXF_MORE_DATA } else { 0 };
            let (size, f) = if i == 0 { (total, flags | more) } else { (len, more) };
            tx.req(gref, offset, f, i as u16, size);
        }
        let mut ring = tx_ring_at(start);
        let p = packet(decode(&mut ring, &tx));
        prop_assert_eq!(p.len, usize::from(total));
        let expect: Vec<_> = slots
            .iter()
            .enumerate()
            .filter(|(i, s)| *i == 0 || s.2 > 0)
            .map(|(_, &(gref, offset, len))| TxSegment { gref, offset, len })
            .collect();
        prop_assert_eq!(p.segments, expect);
        prop_assert_eq!(p.answers, (0..n).map(|i| Request(i as u16)).collect::<Vec<_>>());
        prop_assert_eq!(p.csum_blank, flags & NETTXF_CSUM_BLANK != 0);
        prop_assert_eq!(ring.req_cons(), start.wrapping_add(n as u32));
    }

    /// Frames are cut into whole pages from offset 0, in order, flagged
    /// right, each answer in its request's slot.
    #[test]
    fn rx_chunks_cover_the_frame(
        len in 0usize..70_000,
        posted in 0u32..20,
        sg in any::<bool>(),
        validated in any::<bool>(),
        start in any::<u32>(),
    ) {
        let mut ring = BackRing::new(RX_ENTRY_SIZE, 0).unwrap();
        ring.attach(start, start).unwrap();
        let req_prod = start.wrapping_add(posted);
        let read = |idx: RingIdx| -> [u8; RX_ENTRY_SIZE] {
            zerocopy::transmute!(RxRequest { id: idx as u16, pad: 0, gref: idx })
        };
        match rx_take(&mut ring, req_prod, len, sg, validated, read).unwrap() {
            RxOutcome::Drop(_) => {
                prop_assert!(!(ETH_HLEN..=RX_MAX_FRAME_LEN).contains(&len) || (!sg && len > PAGE_SIZE));
                prop_assert_eq!(ring.req_cons(), start);
            }
            RxOutcome::Wait { needed, posted: p } => {
                prop_assert_eq!(p, posted);
                prop_assert!(needed > posted);
                prop_assert_eq!(ring.req_cons(), start);
            }
            RxOutcome::Deliver(slots) => {
                prop_assert_eq!(slots.len(), len.div_ceil(PAGE_SIZE));
                let mut at = 0;
                for (n, s) in slots.iter().enumerate() {
                    let idx = start.wrapping_add(n as u32);
                    prop_assert_eq!((s.id, s.gref), (idx as u16, idx));
                    prop_assert_eq!(s.frame_offset, at);
                    prop_assert!(s.len > 0 && usize::from(s.len) <= PAGE_SIZE);
                    at += usize::from(s.len);
                    let last = n + 1 == slots.len();
                    prop_assert_eq!(s.flags & NETRXF_MORE_DATA != 0, !last);
                    prop_assert_eq!(s.flags & NETRXF_DATA_VALIDATED != 0, n == 0 && validated);
                    prop_assert_eq!(ring.next_response(), ring.slot_offset(idx));
                }
                prop_assert_eq!(at, len);
            }
        }
    }

    /// A checksum we compute verifies, for any payload, either transport,
    /// either IP version, with or without a VLAN tag and IP options.
    #[test]
    fn computed_checksums_verify(
        payload in proptest::collection::vec(any::<u8>(), 0..1500),
        is_tcp in any::<bool>(),
        is_v6 in any::<bool>(),
        vlan in any::<bool>(),
        options in 0usize..=10,
        garbage in any::<u16>(),
    ) {
        let (proto, mut l4) = if is_tcp {
            let mut t = tcp_syn();
            t.extend_from_slice(&payload);
            (6, t)
        } else {
            (17, udp(1000, 2000, &payload))
        };
        // Whatever the field held before (a partial sum, junk).
        let at = if is_tcp { TCP_CSUM_OFFSET } else { UDP_CSUM_OFFSET };
        l4[at..at + 2].copy_from_slice(&garbage.to_be_bytes());
        let (l3, src, dst) = if is_v6 {
            let exts: &[(u8, usize)] = if options > 5 { &[(IPV6_HOP_BY_HOP, 0)] } else { &[] };
            let h = ipv6(proto, exts, &l4);
            let (s, d) = (h[8..24].to_vec(), h[24..40].to_vec());
            (h, s, d)
        } else {
            let h = ipv4(proto, options * 4, &l4);
            let (s, d) = (h[12..16].to_vec(), h[16..20].to_vec());
            (h, s, d)
        };
        let ethertype = if is_v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
        let mut f = frame(eth(ethertype, vlan), l3);
        let done = complete_checksum(&mut f).unwrap();
        prop_assert_eq!(done.l4_len, l4.len());
        let segment = &f[done.l4_offset..done.l4_offset + done.l4_len];
        prop_assert!(verifies(&src, &dst, proto, segment));
        prop_assert_eq!(segment[at..at + 2].to_vec(), done.checksum.to_be_bytes().to_vec());
        if !is_tcp {
            prop_assert_ne!(done.checksum, 0);
        }
    }

    /// Truncated or mangled frames never panic, and a refused frame is
    /// left as it was.
    #[test]
    fn checksum_never_panics(
        payload in proptest::collection::vec(any::<u8>(), 0..200),
        cut in any::<proptest::sample::Index>(),
        flip in proptest::option::of((any::<proptest::sample::Index>(), any::<u8>())),
        random in proptest::collection::vec(any::<u8>(), 0..120),
        is_v6 in any::<bool>(),
    ) {
        let l3 = if is_v6 { ipv6(17, &[(IPV6_DEST_OPTS, 0)], &udp(1, 2, &payload)) }
            else { ipv4(6, 8, &{ let mut t = tcp_syn(); t.extend(&payload); t }) };
        let ethertype = if is_v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
        let mut f = frame(eth(ethertype, true), l3);
        if let Some((i, b)) = flip {
            let i = i.index(f.len());
            f[i] ^= b;
        }
        let n = cut.index(f.len() + 1);
        let mut short = f[..n].to_vec();
        let before = short.clone();
        if complete_checksum(&mut short).is_err() {
            prop_assert_eq!(short, before);
        }
        let mut r = random.clone();
        let _ = complete_checksum(&mut r);
    }
}
