//! Host tests of the switch: ports, anti-spoofing, learning and its
//! bounds, flooding, queues and counters; property tests over random
//! port sets and traffic.

use super::*;
use alloc::vec;
use alloc::vec::Vec;
use proptest::prelude::*;

const A: Mac = Mac::xen(0, 0, 0xa);
const B: Mac = Mac::xen(0, 0, 0xb);
const C: Mac = Mac::xen(0, 0, 0xc);
/// Hosts behind the uplink.
const X: Mac = Mac([0x52, 0x54, 0, 0, 0, 0x01]);
const Y: Mac = Mac([0x52, 0x54, 0, 0, 0, 0x02]);
const MCAST: Mac = Mac([0x01, 0x00, 0x5e, 0, 0, 0xfb]);

fn eth(dst: Mac, src: Mac, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

fn queued(sw: &Switch, port: PortId) -> usize {
    sw.queued(port).unwrap().0
}

struct Net {
    sw: Switch,
    a: PortId,
    b: PortId,
    c: PortId,
    up: PortId,
}

fn net(config: SwitchConfig) -> Net {
    let mut sw = Switch::new(config);
    let a = sw.add_port(Some(A)).unwrap();
    let b = sw.add_port(Some(B)).unwrap();
    let c = sw.add_port(Some(C)).unwrap();
    let up = sw.add_port(None).unwrap();
    Net { sw, a, b, c, up }
}

fn fwd(queued: usize, full: usize, flooded: bool) -> Verdict {
    Verdict::Forwarded {
        queued,
        full,
        flooded,
    }
}

#[test]
fn ports() {
    let mut sw = Switch::new(SwitchConfig::default());
    assert_eq!(
        sw.add_port(Some(Mac::BROADCAST)),
        Err(SwitchError::BadMac(MacError::Multicast))
    );
    assert_eq!(
        sw.add_port(Some(Mac::default())),
        Err(SwitchError::BadMac(MacError::Zero))
    );
    let a = sw.add_port(Some(A)).unwrap();
    assert_eq!(sw.add_port(Some(A)), Err(SwitchError::DuplicateMac(A)));
    let u1 = sw.add_port(None).unwrap();
    let u2 = sw.add_port(None).unwrap();
    assert_eq!(sw.ports().collect::<Vec<_>>(), [a, u1, u2]);
    assert_eq!(sw.port_mac(a), Ok(Some(A)));
    assert_eq!(sw.port_mac(u1), Ok(None));
    assert_eq!(sw.lookup(&A), Some(a));
    sw.remove_port(a).unwrap();
    assert_eq!(sw.remove_port(a), Err(SwitchError::UnknownPort(a)));
    assert_eq!(sw.lookup(&A), None);
    // The MAC is free again, under a new id.
    let a2 = sw.add_port(Some(A)).unwrap();
    assert_ne!(a2, a);
    assert_eq!(
        sw.ingress(a, &eth(B, A, &[]), false),
        Err(SwitchError::UnknownPort(a))
    );
    assert_eq!(sw.stats(a), Err(SwitchError::UnknownPort(a)));
    assert_eq!(a2.to_string(), "port3");
}

#[test]
fn vif_to_vif_unicast_goes_to_one_port() {
    let mut n = net(SwitchConfig::default());
    let f = eth(B, A, b"hello");
    assert_eq!(n.sw.ingress(n.a, &f, true), Ok(fwd(1, 0, false)));
    assert_eq!(
        (
            queued(&n.sw, n.a),
            queued(&n.sw, n.b),
            queued(&n.sw, n.c),
            queued(&n.sw, n.up)
        ),
        (0, 1, 0, 0)
    );
    let got = n.sw.front(n.b).unwrap().unwrap().clone();
    assert_eq!((&*got.data, got.checksum_ok), (&f[..], true));
    assert_eq!(n.sw.pending().collect::<Vec<_>>(), [n.b]);
    assert_eq!(n.sw.pop(n.b).unwrap(), Some(got));
    assert_eq!(n.sw.pop(n.b).unwrap(), None);
    let (sa, sb) = (n.sw.stats(n.a).unwrap(), n.sw.stats(n.b).unwrap());
    assert_eq!((sa.rx_frames, sa.rx_bytes), (1, f.len() as u64));
    assert_eq!((sb.tx_frames, sb.tx_bytes), (1, f.len() as u64));
    assert_eq!(n.sw.queued(n.b), Ok((0, 0)));
}

#[test]
fn unknown_unicast_broadcast_and_multicast_flood() {
    let mut n = net(SwitchConfig::default());
    assert_eq!(
        n.sw.ingress(n.a, &eth(X, A, &[]), false),
        Ok(fwd(3, 0, true))
    );
    assert_eq!(
        n.sw.ingress(n.b, &eth(Mac::BROADCAST, B, &[]), false),
        Ok(fwd(3, 0, true))
    );
    assert_eq!(
        n.sw.ingress(n.up, &eth(MCAST, X, &[]), false),
        Ok(fwd(3, 0, true))
    );
    // Never back to the ingress port.
    assert_eq!(queued(&n.sw, n.a), 2);
    assert_eq!(queued(&n.sw, n.b), 2);
    assert_eq!(queued(&n.sw, n.c), 3);
    assert_eq!(queued(&n.sw, n.up), 2);
}

#[test]
fn spoofing_and_bad_frames_are_dropped_and_counted() {
    let mut n = net(SwitchConfig::default());
    // A vif claiming another's or any other source.
    for src in [B, X] {
        assert_eq!(
            n.sw.ingress(n.a, &eth(Mac::BROADCAST, src, &[]), false),
            Ok(Verdict::Dropped(IngressDrop::Spoofed))
        );
    }
    // The uplink claiming a vif's address.
    assert_eq!(
        n.sw.ingress(n.up, &eth(Mac::BROADCAST, A, &[]), false),
        Ok(Verdict::Dropped(IngressDrop::Spoofed))
    );
    assert_eq!(
        n.sw.ingress(n.up, &eth(B, MCAST, &[]), false),
        Ok(Verdict::Dropped(IngressDrop::MulticastSource))
    );
    assert_eq!(
        n.sw.ingress(n.a, &eth(B, A, &[])[..13], false),
        Ok(Verdict::Dropped(IngressDrop::Runt))
    );
    let big = eth(B, A, &vec![0; MAX_FRAME_LEN]);
    assert_eq!(
        n.sw.ingress(n.a, &big, false),
        Ok(Verdict::Dropped(IngressDrop::Oversize))
    );
    // A vif sending to itself.
    assert_eq!(
        n.sw.ingress(n.a, &eth(A, A, &[]), false),
        Ok(Verdict::Dropped(IngressDrop::Filtered))
    );
    assert!(n.sw.pending().next().is_none());
    let a = n.sw.stats(n.a).unwrap().drops;
    assert_eq!((a.spoofed, a.runt, a.oversize, a.filtered), (2, 1, 1, 1));
    let up = n.sw.stats(n.up).unwrap().drops;
    assert_eq!((up.spoofed, up.multicast_source, up.total()), (1, 1, 2));
    assert_eq!(n.sw.stats(n.a).unwrap().rx_frames, 0);
    // Nothing was learned from any of it.
    assert_eq!(n.sw.learned_len(), 0);
    assert_eq!(n.sw.lookup(&A), Some(n.a));
}

#[test]
fn learning_from_the_uplink() {
    let mut n = net(SwitchConfig::default());
    n.sw.ingress(n.up, &eth(A, X, &[]), false).unwrap();
    assert_eq!(n.sw.lookup(&X), Some(n.up));
    // Now unicast to X goes to the uplink only.
    assert_eq!(
        n.sw.ingress(n.b, &eth(X, B, &[]), false),
        Ok(fwd(1, 0, false))
    );
    assert_eq!(queued(&n.sw, n.up), 1);
    // Two hosts behind the uplink talking: filtered, not reflected.
    n.sw.ingress(n.up, &eth(X, Y, &[]), false).unwrap();
    assert_eq!(
        n.sw.ingress(n.up, &eth(Y, X, &[]), false),
        Ok(Verdict::Dropped(IngressDrop::Filtered))
    );
    // A second uplink: X moves there.
    let up2 = n.sw.add_port(None).unwrap();
    n.sw.ingress(up2, &eth(Mac::BROADCAST, X, &[]), false)
        .unwrap();
    assert_eq!(n.sw.lookup(&X), Some(up2));
    // Removing it forgets X: unicast to X floods again.
    n.sw.remove_port(up2).unwrap();
    assert_eq!(n.sw.lookup(&X), None);
    assert_eq!(n.sw.lookup(&Y), Some(n.up));
    assert!(matches!(
        n.sw.ingress(n.a, &eth(X, A, &[]), false),
        Ok(Verdict::Forwarded { flooded: true, .. })
    ));
}

#[test]
fn a_vif_mac_is_pinned() {
    let mut sw = Switch::new(SwitchConfig::default());
    let up = sw.add_port(None).unwrap();
    // Learned on the uplink first...
    sw.ingress(up, &eth(Mac::BROADCAST, A, &[]), false).unwrap();
    assert_eq!(sw.lookup(&A), Some(up));
    // ...then a vif gets it: pinned to the vif, and the uplink can no
    // longer use it.
    let a = sw.add_port(Some(A)).unwrap();
    assert_eq!(sw.lookup(&A), Some(a));
    assert_eq!(sw.learned_len(), 0);
    assert_eq!(
        sw.ingress(up, &eth(Mac::BROADCAST, A, &[]), false),
        Ok(Verdict::Dropped(IngressDrop::Spoofed))
    );
    assert_eq!(sw.lookup(&A), Some(a));
}

#[test]
fn table_is_bounded_oldest_evicted() {
    let config = SwitchConfig {
        mac_table_size: 3,
        ..SwitchConfig::default()
    };
    let mut sw = Switch::new(config);
    let a = sw.add_port(Some(A)).unwrap();
    let up = sw.add_port(None).unwrap();
    let host = |i: u8| Mac([0x52, 0x54, 0, 0, 0, i]);
    for i in 1..=3 {
        sw.ingress(up, &eth(A, host(i), &[]), false).unwrap();
    }
    // Refresh host 1: host 2 is now the oldest.
    sw.ingress(up, &eth(A, host(1), &[]), false).unwrap();
    sw.ingress(up, &eth(A, host(4), &[]), false).unwrap();
    assert_eq!(sw.learned_len(), 3);
    assert_eq!(sw.lookup(&host(2)), None);
    for i in [1, 3, 4] {
        assert_eq!(sw.lookup(&host(i)), Some(up), "{i}");
    }
    // The pinned vif address is not part of the bound and stays.
    for i in 10..100 {
        sw.ingress(up, &eth(A, host(i), &[]), false).unwrap();
    }
    assert_eq!(sw.learned_len(), 3);
    assert_eq!(sw.lookup(&A), Some(a));
    // No learning at all.
    let mut sw = Switch::new(SwitchConfig {
        mac_table_size: 0,
        ..config
    });
    let up = sw.add_port(None).unwrap();
    sw.add_port(None).unwrap();
    sw.ingress(up, &eth(Mac::BROADCAST, X, &[]), false).unwrap();
    assert_eq!(sw.learned_len(), 0);
}

#[test]
fn queues_are_bounded_per_port() {
    let config = SwitchConfig {
        queue_frames: 3,
        queue_bytes: 200,
        ..SwitchConfig::default()
    };
    let mut n = net(config);
    // B never takes its frames: its queue fills; C's keeps working.
    for i in 0..3 {
        assert_eq!(
            n.sw.ingress(n.a, &eth(B, A, &[i; 10]), false),
            Ok(fwd(1, 0, false))
        );
    }
    assert_eq!(
        n.sw.ingress(n.a, &eth(B, A, &[9; 10]), false),
        Ok(fwd(0, 1, false))
    );
    assert_eq!(
        n.sw.ingress(n.a, &eth(C, A, &[9; 10]), false),
        Ok(fwd(1, 0, false))
    );
    // A broadcast reaches the others, not the full queue.
    assert_eq!(
        n.sw.ingress(n.a, &eth(Mac::BROADCAST, A, &[]), false),
        Ok(fwd(2, 1, true))
    );
    assert_eq!(n.sw.stats(n.b).unwrap().drops.queue_frames_full, 2);
    assert_eq!(n.sw.queued(n.b), Ok((3, 3 * 24)));
    // Bytes: C holds 24 + 14; a 170-byte frame would pass 200.
    assert_eq!(
        n.sw.ingress(n.a, &eth(C, A, &[0; 156]), false),
        Ok(fwd(0, 1, false))
    );
    assert_eq!(n.sw.stats(n.c).unwrap().drops.queue_bytes_full, 1);
    assert_eq!(
        n.sw.ingress(n.a, &eth(C, A, &[0; 148]), false),
        Ok(fwd(1, 0, false))
    );
    assert_eq!(n.sw.queued(n.c), Ok((3, 200)));
    // Taking frames makes room again, oldest first.
    assert_eq!(n.sw.pop(n.b).unwrap().unwrap().data[14], 0);
    assert_eq!(
        n.sw.ingress(n.a, &eth(B, A, &[7; 10]), false),
        Ok(fwd(1, 0, false))
    );
    // Flushing a stalled guest's queue.
    assert_eq!(n.sw.flush(n.b), Ok(3));
    assert_eq!(n.sw.queued(n.b), Ok((0, 0)));
    assert_eq!(n.sw.stats(n.b).unwrap().drops.flushed, 3);
    // A removed port's queue is counted as flushed in its last stats.
    assert_eq!(n.sw.remove_port(n.c).unwrap().drops.flushed, 3);
}

#[test]
fn a_flooding_port_cannot_crowd_others_out_of_a_queue() {
    let config = SwitchConfig {
        queue_frames: 4,
        queue_bytes: 1000,
        ..SwitchConfig::default()
    };
    let mut n = net(config);
    // A floods broadcasts; nobody takes them: the other queues fill
    // with A's frames, then A's further frames are refused.
    for i in 0..6 {
        let full = if i < 4 { 0 } else { 3 };
        assert_eq!(
            n.sw.ingress(n.a, &eth(Mac::BROADCAST, A, &[i; 10]), false),
            Ok(fwd(3 - full, full, true))
        );
    }
    // C's frame to B still gets in, in place of A's oldest.
    assert_eq!(
        n.sw.ingress(n.c, &eth(B, C, &[0xc0; 10]), false),
        Ok(fwd(1, 0, false))
    );
    assert_eq!(n.sw.stats(n.b).unwrap().drops.queue_frames_full, 3);
    let b: Vec<(PortId, u8)> = snapshot(&n.sw, n.b)
        .iter()
        .map(|f| (f.from, f.data[14]))
        .collect();
    assert_eq!(b, [(n.a, 1), (n.a, 2), (n.a, 3), (n.c, 0xc0)]);
    // And a second (A holds 3, C 1): A's next oldest goes.
    assert_eq!(
        n.sw.ingress(n.c, &eth(B, C, &[0xc1; 10]), false),
        Ok(fwd(1, 0, false))
    );
    // At 2 and 2, C's third is refused: ports at par do not displace
    // each other.
    assert_eq!(
        n.sw.ingress(n.c, &eth(B, C, &[0xc2; 10]), false),
        Ok(fwd(0, 1, false))
    );
    assert_eq!(n.sw.stats(n.b).unwrap().drops.queue_frames_full, 5);
    let b: Vec<u8> = snapshot(&n.sw, n.b).iter().map(|f| f.data[14]).collect();
    assert_eq!(b, [2, 3, 0xc0, 0xc1]);
    assert_eq!(n.sw.queued(n.b), Ok((4, 4 * 24)));
    // By bytes too: B holds 4 frames, 96 of 1000 bytes. A 950-byte
    // frame from the uplink (which holds none) displaces one of C's
    // (for room in frames; A and C are at par), then one of A's (for
    // bytes), and goes in.
    let big = eth(B, X, &[0x55; 936]);
    assert_eq!(n.sw.ingress(n.up, &big, false), Ok(fwd(1, 0, false)));
    let drops = n.sw.stats(n.b).unwrap().drops;
    assert_eq!((drops.queue_frames_full, drops.queue_bytes_full), (6, 1));
    assert_eq!(n.sw.queued(n.b), Ok((3, 998)));
    // Larger than the whole queue: refused, nothing displaced.
    let huge = eth(B, X, &[0; 1000]);
    assert_eq!(n.sw.ingress(n.up, &huge, false), Ok(fwd(0, 1, false)));
    assert_eq!(n.sw.queued(n.b), Ok((3, 998)));
    // Popping keeps the per-port counts right: the queue drains in order.
    let order: Vec<u8> = core::iter::from_fn(|| n.sw.pop(n.b).unwrap())
        .map(|f| f.data[14])
        .collect();
    assert_eq!(order, [3, 0xc1, 0x55]);
    assert_eq!(n.sw.queued(n.b), Ok((0, 0)));
    assert!(n.sw.ports[&n.b].sources.is_empty());
}

/// One step of random traffic.
#[derive(Clone, Debug)]
enum Step {
    /// From port (index into the live ports) with (dst, src) from the pools.
    Send(usize, usize, usize, u16),
    Pop(usize),
    Flush(usize),
    AddVif,
    AddUplink,
    Remove(usize),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (any::<usize>(), any::<usize>(), any::<usize>(), 0u16..300)
            .prop_map(|(p, d, s, len)| Step::Send(p, d, s, len)),
        3 => any::<usize>().prop_map(Step::Pop),
        1 => any::<usize>().prop_map(Step::Flush),
        1 => Just(Step::AddVif),
        1 => Just(Step::AddUplink),
        1 => any::<usize>().prop_map(Step::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(500)))]

    /// Over any traffic and port churn: no frame is queued on the port it
    /// came from, a vif's frames always carry its own source, nobody else's
    /// frames carry a vif's source, and no queue passes its bounds.
    #[test]
    fn switch_invariants(steps in proptest::collection::vec(arb_step(), 1..200)) {
        let config = SwitchConfig {
            mac_table_size: 4,
            queue_frames: 6,
            queue_bytes: 700,
            max_frame_len: 300,
        };
        let mut sw = Switch::new(config);
        let mut vifs = 0u8;
        let mut live: Vec<PortId> = Vec::new();
        // The address pool: every vif MAC ever made, hosts, group addresses.
        let mut pool: Vec<Mac> = vec![X, Y, Mac([0x52, 0x54, 0, 0, 0, 3]), MCAST, Mac::BROADCAST];
        let mut seq = 0u32;
        for step in steps {
            match step {
                Step::AddVif => {
                    vifs = vifs.wrapping_add(1);
                    let mac = Mac::xen(1, 0, vifs);
                    if let Ok(p) = sw.add_port(Some(mac)) {
                        live.push(p);
                        pool.push(mac);
                    }
                }
                Step::AddUplink => live.push(sw.add_port(None).unwrap()),
                _ if live.is_empty() => {}
                Step::Remove(i) => {
                    let p = live.remove(i % live.len());
                    sw.remove_port(p).unwrap();
                }
                Step::Pop(i) => {
                    sw.pop(live[i % live.len()]).unwrap();
                }
                Step::Flush(i) => {
                    sw.flush(live[i % live.len()]).unwrap();
                }
                Step::Send(i, d, s, len) => {
                    let port = live[i % live.len()];
                    let (dst, src) = (pool[d % pool.len()], pool[s % pool.len()]);
                    // Payload: the ingress port and a sequence number.
                    let mut payload = port.raw().to_be_bytes().to_vec();
                    payload.extend_from_slice(&seq.to_be_bytes());
                    payload.resize(usize::from(len).max(payload.len()), 0);
                    seq += 1;
                    let mut f = eth(dst, src, &payload);
                    if usize::from(len) < ETH_HLEN {
                        f.truncate(usize::from(len));
                    }
                    let verdict = sw.ingress(port, &f, false).unwrap();
                    let own = sw.port_mac(port).unwrap();
                    if let Verdict::Forwarded { .. } = verdict {
                        prop_assert!(f.len() >= ETH_HLEN && f.len() <= config.max_frame_len);
                        prop_assert!(!src.is_multicast());
                        prop_assert!(own.is_none_or(|m| m == src));
                    }
                }
            }
            // Check every queue.
            for &p in &live {
                let (frames, bytes) = sw.queued(p).unwrap();
                prop_assert!(frames <= config.queue_frames);
                prop_assert!(bytes <= config.queue_bytes);
                let (mut n, mut total) = (0, 0);
                let mut sources = BTreeMap::new();
                for frame in snapshot(&sw, p) {
                    n += 1;
                    total += frame.len();
                    let from = PortId(u32::from_be_bytes(frame.data[14..18].try_into().unwrap()));
                    prop_assert_eq!(from, frame.from);
                    *sources.entry(from).or_insert(0usize) += 1;
                    prop_assert_ne!(from, p, "frame back to its ingress port");
                    let src = Mac::from_slice(&frame.data[6..]).unwrap();
                    // A vif address as source only from that vif.
                    if let Some(owner) = sw.lookup(&src).filter(|o| sw.port_mac(*o).ok().flatten() == Some(src)) {
                        prop_assert_eq!(owner, from, "spoofed source forwarded");
                    }
                    if let Ok(Some(mac)) = sw.port_mac(from) {
                        prop_assert_eq!(src, mac, "vif frame with a foreign source");
                    }
                }
                prop_assert_eq!((n, total), (frames, bytes));
                prop_assert_eq!(&sources, &sw.ports[&p].sources);
            }
        }
    }
}

/// The frames of a port's queue, oldest first (test-only access).
fn snapshot(sw: &Switch, port: PortId) -> Vec<Frame> {
    sw.ports[&port].queue.iter().cloned().collect()
}
