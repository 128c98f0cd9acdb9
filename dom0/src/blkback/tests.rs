//! Host tests of the blkback core: every refusal rule and good case of
//! `decode`, indirect segments, front end nodes, the state machine,
//! published nodes; property tests over arbitrary slots. (The ring
//! indices' tests are in `backring`.)

use super::*;
use alloc::collections::BTreeMap;
use alloc::vec;
use proptest::prelude::*;
use zerocopy::IntoBytes;

const LIMITS: DiskLimits = DiskLimits {
    sectors: 1000,
    readonly: false,
    discard: true,
    max_indirect_segments: MAX_INDIRECT_SEGMENTS,
};

fn ro() -> DiskLimits {
    DiskLimits {
        readonly: true,
        ..LIMITS
    }
}

fn slot_of(bytes: &[u8]) -> [u8; ENTRY_SIZE] {
    let mut slot = [0u8; ENTRY_SIZE];
    slot[..bytes.len()].copy_from_slice(bytes);
    slot
}

fn seg(gref: u32, first_sect: u8, last_sect: u8) -> RequestSegment {
    RequestSegment {
        gref,
        first_sect,
        last_sect,
        pad: [0; 2],
    }
}

fn rw(operation: u8, sector: u64, segs: &[RequestSegment]) -> [u8; ENTRY_SIZE] {
    let mut req = Request {
        operation,
        nr_segments: segs.len() as u8,
        handle: 51712,
        id: 0xdead_beef_0000_0001,
        sector_number: sector,
        ..Default::default()
    };
    req.seg[..segs.len()].copy_from_slice(segs);
    slot_of(req.as_bytes())
}

fn indirect(indirect_op: u8, nr_segments: u16, sector: u64) -> [u8; ENTRY_SIZE] {
    let req = RequestIndirect {
        operation: BLKIF_OP_INDIRECT,
        indirect_op,
        nr_segments,
        id: 77,
        sector_number: sector,
        indirect_grefs: [10, 11, 12, 13, 14, 15, 16, 17],
        ..Default::default()
    };
    slot_of(req.as_bytes())
}

fn discard(sector: u64, nr_sectors: u64, flag: u8) -> [u8; ENTRY_SIZE] {
    let req = RequestDiscard {
        operation: BLKIF_OP_DISCARD,
        flag,
        id: 5,
        sector_number: sector,
        nr_sectors,
        ..Default::default()
    };
    slot_of(req.as_bytes())
}

fn rejected(slot: &[u8; ENTRY_SIZE], limits: &DiskLimits) -> (u64, u8, i16) {
    let r = decode(slot, limits).expect_err("must be refused");
    (r.id, r.operation, r.status)
}

const ID: u64 = 0xdead_beef_0000_0001;

#[test]
fn read_and_write() {
    let slot = rw(BLKIF_OP_READ, 8, &[seg(100, 0, 7), seg(101, 2, 3)]);
    assert_eq!(
        decode(&slot, &LIMITS),
        Ok(Decoded::Io {
            id: ID,
            operation: BLKIF_OP_READ,
            dir: Direction::Read,
            sector: 8,
            segments: vec![
                Segment {
                    gref: 100,
                    first_sect: 0,
                    last_sect: 7
                },
                Segment {
                    gref: 101,
                    first_sect: 2,
                    last_sect: 3
                },
            ],
            flush: false,
        })
    );
    let slot = rw(BLKIF_OP_WRITE, 990, &[seg(1, 0, 7), seg(2, 6, 7)]);
    let d = decode(&slot, &LIMITS).unwrap();
    assert!(matches!(
        d,
        Decoded::Io {
            dir: Direction::Write,
            flush: false,
            sector: 990,
            ..
        }
    ));
    assert_eq!((d.id(), d.operation()), (ID, BLKIF_OP_WRITE));
    // Eleven segments, exactly to the end of the disk (11 * 8 = 88).
    let slot = rw(BLKIF_OP_READ, 912, &[seg(3, 0, 7); 11]);
    assert!(decode(&slot, &LIMITS).is_ok());
    // Reads are fine on a read-only disk.
    assert!(decode(&rw(BLKIF_OP_READ, 0, &[seg(3, 0, 0)]), &ro()).is_ok());
}

#[test]
fn segment_geometry() {
    let s = Segment::check(&seg(9, 2, 5)).unwrap();
    assert_eq!(
        (s.sectors(), s.byte_offset(), s.byte_len()),
        (4, 1024, 2048)
    );
    let s = Segment::check(&seg(9, 0, 7)).unwrap();
    assert_eq!((s.sectors(), s.byte_offset(), s.byte_len()), (8, 0, 4096));
    let s = Segment::check(&seg(9, 7, 7)).unwrap();
    assert_eq!((s.sectors(), s.byte_offset(), s.byte_len()), (1, 3584, 512));
    assert!(Segment::check(&seg(9, 0, 8)).is_err());
    assert!(Segment::check(&seg(9, 4, 3)).is_err());
}

#[test]
fn flush_and_barrier() {
    for op in [BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_WRITE_BARRIER] {
        // No data: a bare flush, sector ignored, fine even read-only.
        let slot = rw(op, u64::MAX, &[]);
        let want = Ok(Decoded::Flush {
            id: ID,
            operation: op,
        });
        assert_eq!(decode(&slot, &LIMITS), want);
        assert_eq!(decode(&slot, &ro()), want);
        // With data: a write after a flush, echoing the op.
        let slot = rw(op, 4, &[seg(1, 0, 3)]);
        match decode(&slot, &LIMITS).unwrap() {
            Decoded::Io {
                operation,
                dir,
                flush,
                segments,
                ..
            } => {
                assert_eq!((operation, dir, flush), (op, Direction::Write, true));
                assert_eq!(segments.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rejected(&slot, &ro()), (ID, op, BLKIF_RSP_ERROR));
        // Too many segments.
        let slot = rw(op, 0, &[seg(1, 0, 0); 11]);
        assert!(decode(&slot, &LIMITS).is_ok());
        let mut slot = slot;
        slot[1] = 12;
        assert_eq!(rejected(&slot, &LIMITS), (ID, op, BLKIF_RSP_ERROR));
    }
}

#[test]
fn unknown_operations() {
    for op in [pv_abi::blkif::BLKIF_OP_RESERVED_1, 7, 8, 0x80, 0xff] {
        let mut slot = rw(BLKIF_OP_READ, 0, &[seg(1, 0, 0)]);
        slot[0] = op;
        assert_eq!(rejected(&slot, &LIMITS), (ID, op, BLKIF_RSP_EOPNOTSUPP));
    }
}

#[test]
fn bad_segment_counts() {
    for op in [BLKIF_OP_READ, BLKIF_OP_WRITE] {
        assert_eq!(
            rejected(&rw(op, 0, &[]), &LIMITS),
            (ID, op, BLKIF_RSP_ERROR)
        );
        for n in [12u8, 100, 255] {
            let mut slot = rw(op, 0, &[seg(1, 0, 0); 11]);
            slot[1] = n;
            assert_eq!(rejected(&slot, &LIMITS), (ID, op, BLKIF_RSP_ERROR));
        }
    }
}

#[test]
fn bad_segments() {
    for bad in [seg(1, 0, 8), seg(1, 5, 4), seg(1, 8, 8), seg(1, 0xff, 0xff)] {
        let slot = rw(BLKIF_OP_READ, 0, &[seg(2, 0, 7), bad]);
        assert_eq!(
            rejected(&slot, &LIMITS),
            (ID, BLKIF_OP_READ, BLKIF_RSP_ERROR)
        );
    }
    // Only the first nr_segments descriptors count: garbage after is fine.
    let mut slot = rw(BLKIF_OP_READ, 0, &[seg(2, 0, 7), seg(1, 9, 2)]);
    slot[1] = 1;
    assert!(decode(&slot, &LIMITS).is_ok());
}

#[test]
fn ranges() {
    // One sector past the end.
    let slot = rw(BLKIF_OP_READ, 993, &[seg(1, 0, 7)]);
    assert_eq!(
        rejected(&slot, &LIMITS),
        (ID, BLKIF_OP_READ, BLKIF_RSP_ERROR)
    );
    let slot = rw(BLKIF_OP_READ, 992, &[seg(1, 0, 7)]);
    assert!(decode(&slot, &LIMITS).is_ok());
    // Start past the end, and sector + count overflowing u64.
    for sector in [1000, u64::MAX - 3, u64::MAX] {
        let slot = rw(BLKIF_OP_WRITE, sector, &[seg(1, 0, 7)]);
        assert_eq!(
            rejected(&slot, &LIMITS),
            (ID, BLKIF_OP_WRITE, BLKIF_RSP_ERROR)
        );
    }
    let huge = DiskLimits {
        sectors: u64::MAX,
        ..LIMITS
    };
    let slot = rw(BLKIF_OP_WRITE, u64::MAX - 8, &[seg(1, 0, 7)]);
    assert!(decode(&slot, &huge).is_ok());
    let slot = rw(BLKIF_OP_WRITE, u64::MAX - 7, &[seg(1, 0, 7)]);
    assert!(decode(&slot, &huge).is_err());
}

#[test]
fn writes_on_readonly_disk() {
    let slot = rw(BLKIF_OP_WRITE, 0, &[seg(1, 0, 7)]);
    let r = decode(&slot, &ro()).unwrap_err();
    assert_eq!(
        (r.status, r.reason),
        (BLKIF_RSP_ERROR, "write to a read-only disk")
    );
}

#[test]
fn indirect_requests() {
    let slot = indirect(BLKIF_OP_WRITE, 513, 100);
    assert_eq!(
        decode(
            &slot,
            &DiskLimits {
                max_indirect_segments: 4096,
                sectors: 10_000,
                ..LIMITS
            }
        ),
        Ok(Decoded::Indirect {
            id: 77,
            operation: BLKIF_OP_WRITE,
            dir: Direction::Write,
            sector: 100,
            nr_segments: 513,
            pages: vec![10, 11],
        })
    );
    let d = decode(&indirect(BLKIF_OP_READ, 256, 0), &LIMITS).unwrap();
    assert_eq!(d.operation(), BLKIF_OP_READ);
    assert!(matches!(d, Decoded::Indirect { ref pages, .. } if pages == &[10]));
}

#[test]
fn indirect_refusals() {
    // indirect_op must be read or write; the bad byte is echoed.
    for op in [
        BLKIF_OP_WRITE_BARRIER,
        BLKIF_OP_FLUSH_DISKCACHE,
        BLKIF_OP_DISCARD,
        BLKIF_OP_INDIRECT,
        0x42,
    ] {
        assert_eq!(
            rejected(&indirect(op, 8, 0), &LIMITS),
            (77, op, BLKIF_RSP_ERROR)
        );
    }
    let err = (77, BLKIF_OP_READ, BLKIF_RSP_ERROR);
    assert_eq!(rejected(&indirect(BLKIF_OP_READ, 0, 0), &LIMITS), err);
    assert_eq!(rejected(&indirect(BLKIF_OP_READ, 257, 0), &LIMITS), err);
    let none = DiskLimits {
        max_indirect_segments: 0,
        ..LIMITS
    };
    assert_eq!(rejected(&indirect(BLKIF_OP_READ, 1, 0), &none), err);
    // More than 8 pages' worth (4096 descriptors) even if allowed.
    let lots = DiskLimits {
        max_indirect_segments: u32::MAX,
        sectors: u64::MAX,
        ..LIMITS
    };
    assert!(decode(&indirect(BLKIF_OP_READ, 4096, 0), &lots).is_ok());
    assert_eq!(rejected(&indirect(BLKIF_OP_READ, 4097, 0), &lots), err);
    // Read-only, and a start that cannot fit even 1 sector a segment.
    assert_eq!(
        rejected(&indirect(BLKIF_OP_WRITE, 1, 0), &ro()),
        (77, BLKIF_OP_WRITE, BLKIF_RSP_ERROR)
    );
    assert!(decode(&indirect(BLKIF_OP_READ, 1, 0), &ro()).is_ok());
    assert_eq!(rejected(&indirect(BLKIF_OP_READ, 10, 991), &LIMITS), err);
    assert!(decode(&indirect(BLKIF_OP_READ, 10, 990), &LIMITS).is_ok());
    assert_eq!(
        rejected(&indirect(BLKIF_OP_READ, 2, u64::MAX), &LIMITS),
        err
    );
}

fn page_with(segs: &[RequestSegment]) -> [u8; PAGE_SIZE] {
    let mut page = [0xffu8; PAGE_SIZE];
    page[..segs.len() * 8].copy_from_slice(segs.as_bytes());
    page
}

#[test]
fn indirect_segments() {
    let limits = DiskLimits {
        max_indirect_segments: 1024,
        sectors: 100_000,
        ..LIMITS
    };
    let first: Vec<_> = (0..512).map(|i| seg(i, 0, 7)).collect();
    let p0 = page_with(&first);
    let p1 = page_with(&[seg(1000, 1, 2), seg(1001, 3, 3)]);
    let segs = decode_indirect_segments(&[&p0, &p1], 514, 8, Direction::Read, &limits).unwrap();
    assert_eq!(segs.len(), 514);
    assert_eq!(segs[0].gref, 0);
    assert_eq!(segs[511].gref, 511);
    assert_eq!(
        segs[512],
        Segment {
            gref: 1000,
            first_sect: 1,
            last_sect: 2
        }
    );
    assert_eq!(segs.iter().map(Segment::sectors).sum::<u64>(), 512 * 8 + 3);
    // The garbage after the last used descriptor is not read.
    assert!(decode_indirect_segments(&[&p0, &p1], 2, 0, Direction::Write, &limits).is_ok());
    // Too few pages given for the count.
    assert!(decode_indirect_segments(&[&p0], 513, 0, Direction::Read, &limits).is_err());
    // Count rules again.
    assert!(decode_indirect_segments(&[&p0], 0, 0, Direction::Read, &limits).is_err());
    assert!(decode_indirect_segments(&[&p0, &p1], 1025, 0, Direction::Read, &limits).is_err());
    // A bad descriptor.
    assert!(decode_indirect_segments(&[&p0, &p1], 515, 0, Direction::Read, &limits).is_err());
    let bad = page_with(&[seg(1, 0, 7), seg(2, 6, 5)]);
    assert!(decode_indirect_segments(&[&bad], 2, 0, Direction::Read, &limits).is_err());
    // Whole range: 514 segments cover 4099 sectors.
    assert!(decode_indirect_segments(&[&p0, &p1], 514, 95_901, Direction::Read, &limits).is_ok());
    assert!(decode_indirect_segments(&[&p0, &p1], 514, 95_902, Direction::Read, &limits).is_err());
    assert!(
        decode_indirect_segments(&[&p0, &p1], 514, u64::MAX - 10, Direction::Read, &limits)
            .is_err()
    );
    // Read-only.
    let ro_limits = DiskLimits {
        readonly: true,
        ..limits
    };
    assert!(decode_indirect_segments(&[&p0], 4, 0, Direction::Read, &ro_limits).is_ok());
    assert!(decode_indirect_segments(&[&p0], 4, 0, Direction::Write, &ro_limits).is_err());
}

#[test]
fn discards() {
    assert_eq!(
        decode(&discard(10, 990, 0), &LIMITS),
        Ok(Decoded::Discard {
            id: 5,
            operation: BLKIF_OP_DISCARD,
            sector: 10,
            nr_sectors: 990,
            secure: false
        })
    );
    assert!(matches!(
        decode(&discard(0, 0, BLKIF_DISCARD_SECURE), &LIMITS),
        Ok(Decoded::Discard {
            secure: true,
            nr_sectors: 0,
            ..
        })
    ));
    let err = (5, BLKIF_OP_DISCARD, BLKIF_RSP_ERROR);
    assert_eq!(rejected(&discard(10, 991, 0), &LIMITS), err);
    assert_eq!(rejected(&discard(1001, 0, 0), &LIMITS), err);
    assert_eq!(rejected(&discard(1, u64::MAX, 0), &LIMITS), err);
    assert_eq!(rejected(&discard(0, 1, 0), &ro()), err);
    let no = DiskLimits {
        discard: false,
        ..LIMITS
    };
    assert_eq!(
        rejected(&discard(0, 1, 0), &no),
        (5, BLKIF_OP_DISCARD, BLKIF_RSP_EOPNOTSUPP)
    );
    // Unsupported wins over a bad range.
    assert_eq!(
        rejected(&discard(0, u64::MAX, 0), &no),
        (5, BLKIF_OP_DISCARD, BLKIF_RSP_EOPNOTSUPP)
    );
}

#[test]
fn responses() {
    let bytes = response_bytes(0x0102_0304_0506_0708, BLKIF_OP_WRITE, BLKIF_RSP_ERROR);
    assert_eq!(&bytes[..8], &0x0102_0304_0506_0708u64.to_ne_bytes());
    assert_eq!(bytes[8], BLKIF_OP_WRITE);
    assert_eq!(bytes[9], 0);
    assert_eq!(&bytes[10..12], &(-1i16).to_ne_bytes());
    assert_eq!(&bytes[12..], &[0; 4]);
    let r = decode(&rw(9, 0, &[]), &LIMITS).unwrap_err();
    assert_eq!(r.response(), response_bytes(ID, 9, BLKIF_RSP_EOPNOTSUPP));
}

fn nodes(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn ring_refs() {
    assert_eq!(
        parse_ring_refs(nodes(&[("ring-ref", "8")]), 4),
        Ok((0, vec![8]))
    );
    assert_eq!(
        parse_ring_refs(nodes(&[("ring-ref", "8\0")]), 0),
        Ok((0, vec![8]))
    );
    assert_eq!(
        parse_ring_refs(nodes(&[("ring-page-order", "0"), ("ring-ref0", "9")]), 4),
        Ok((0, vec![9]))
    );
    assert_eq!(
        parse_ring_refs(
            nodes(&[
                ("ring-page-order", "2"),
                ("ring-ref0", "1"),
                ("ring-ref1", "2"),
                ("ring-ref2", "3"),
                ("ring-ref3", "4294967295"),
                ("ring-ref", "99"),
            ]),
            4
        ),
        Ok((2, vec![1, 2, 3, u32::MAX]))
    );
    // Missing, unparsable, too big an order, a missing ref.
    assert!(parse_ring_refs(nodes(&[]), 4).is_err());
    assert!(parse_ring_refs(nodes(&[("ring-ref", "x")]), 4).is_err());
    assert!(parse_ring_refs(nodes(&[("ring-ref", "-1")]), 4).is_err());
    assert!(parse_ring_refs(nodes(&[("ring-ref", "4294967296")]), 4).is_err());
    assert!(parse_ring_refs(nodes(&[("ring-ref", "")]), 4).is_err());
    assert!(parse_ring_refs(nodes(&[("ring-page-order", "1"), ("ring-ref0", "1")]), 4).is_err());
    assert!(parse_ring_refs(nodes(&[("ring-page-order", "0"), ("ring-ref", "1")]), 4).is_err());
    assert!(
        parse_ring_refs(
            nodes(&[
                ("ring-page-order", "1"),
                ("ring-ref0", "1"),
                ("ring-ref1", "2")
            ]),
            0
        )
        .is_err()
    );
    assert!(parse_ring_refs(nodes(&[("ring-page-order", "5")]), 9).is_err());
    assert!(parse_ring_refs(nodes(&[("ring-page-order", "x"), ("ring-ref", "1")]), 4).is_err());
}

#[test]
fn event_channel_protocol_queues() {
    assert_eq!(parse_event_channel(nodes(&[("event-channel", "7")])), Ok(7));
    assert!(parse_event_channel(nodes(&[])).is_err());
    assert!(parse_event_channel(nodes(&[("event-channel", "seven")])).is_err());

    assert!(check_protocol(nodes(&[])).is_ok());
    assert!(check_protocol(nodes(&[("protocol", "x86_64-abi")])).is_ok());
    assert!(check_protocol(nodes(&[("protocol", "")])).is_ok());
    assert!(check_protocol(nodes(&[("protocol", "x86_32-abi")])).is_err());
    assert!(check_protocol(nodes(&[("protocol", "x86_64-abi ")])).is_err());

    assert!(check_num_queues(nodes(&[])).is_ok());
    assert!(check_num_queues(nodes(&[("multi-queue-num-queues", "1")])).is_ok());
    assert!(check_num_queues(nodes(&[("multi-queue-num-queues", "0")])).is_err());
    assert!(check_num_queues(nodes(&[("multi-queue-num-queues", "2")])).is_err());
}

use BackendAction::{Connect, Disconnect, SetState};
use XenbusState as S;

#[test]
fn state_machine_table() {
    let f = on_frontend_state;
    // Normal bring-up: back end at InitWait, front end publishes.
    assert_eq!(f(S::InitWait, Some(S::Initialising), false), []);
    assert_eq!(
        f(S::InitWait, Some(S::Initialised), false),
        [Connect, SetState(S::Connected)]
    );
    // Missed the Initialised value: Connected connects too.
    assert_eq!(
        f(S::InitWait, Some(S::Connected), false),
        [Connect, SetState(S::Connected)]
    );
    // Already connected: nothing; connected but state not written yet.
    assert_eq!(f(S::Connected, Some(S::Connected), true), []);
    assert_eq!(f(S::Connected, Some(S::Initialised), true), []);
    assert_eq!(
        f(S::InitWait, Some(S::Connected), true),
        [SetState(S::Connected)]
    );
    // Back end state Connected but not connected (a glue hiccup): connect.
    assert_eq!(f(S::Connected, Some(S::Connected), false), [Connect]);
    // Closing.
    assert_eq!(
        f(S::Connected, Some(S::Closing), true),
        [Disconnect, SetState(S::Closing)]
    );
    assert_eq!(f(S::Closing, Some(S::Closing), false), []);
    // Closed.
    assert_eq!(
        f(S::Connected, Some(S::Closed), true),
        [Disconnect, SetState(S::Closed)]
    );
    assert_eq!(f(S::Closing, Some(S::Closed), false), [SetState(S::Closed)]);
    assert_eq!(f(S::Closed, Some(S::Closed), false), []);
    // Front end vanished or Unknown.
    for fe in [None, Some(S::Unknown)] {
        assert_eq!(f(S::Connected, fe, true), [Disconnect, SetState(S::Closed)]);
        assert_eq!(f(S::InitWait, fe, false), [SetState(S::Closed)]);
        assert_eq!(f(S::Closed, fe, false), []);
    }
    // States a front end never uses: treated as fatal.
    for fe in [S::InitWait, S::Reconfiguring, S::Reconfigured] {
        assert_eq!(
            f(S::Connected, Some(fe), true),
            [Disconnect, SetState(S::Closing)]
        );
    }
    // No reconnect while tearing down.
    for be in [S::Closing, S::Closed] {
        assert_eq!(f(be, Some(S::Connected), false), []);
        assert_eq!(f(be, Some(S::Initialised), false), []);
    }
    // Initialising only matters to a Closed back end.
    assert_eq!(f(S::Connected, Some(S::Initialising), true), []);
    assert_eq!(f(S::Closing, Some(S::Initialising), false), []);
}

#[test]
fn reconnect_after_frontend_restart() {
    let mut backend = S::Connected;
    let mut connected = true;
    let mut step = |fe: XenbusState| {
        let actions = on_frontend_state(backend, Some(fe), connected);
        for a in &actions {
            match *a {
                Connect => connected = true,
                Disconnect => connected = false,
                SetState(s) => backend = s,
                BackendAction::None => {}
            }
        }
        (actions, backend, connected)
    };
    assert_eq!(
        step(S::Closing),
        (vec![Disconnect, SetState(S::Closing)], S::Closing, false)
    );
    assert_eq!(
        step(S::Closed),
        (vec![SetState(S::Closed)], S::Closed, false)
    );
    assert_eq!(
        step(S::Initialising),
        (vec![SetState(S::InitWait)], S::InitWait, false)
    );
    assert_eq!(
        step(S::Initialised),
        (vec![Connect, SetState(S::Connected)], S::Connected, true)
    );
    assert_eq!(step(S::Connected), (vec![], S::Connected, true));
}

#[test]
fn vdev_numbers() {
    assert_eq!(vdev_number("xvda"), Some(51712));
    assert_eq!(vdev_number("xvdb"), Some(51728));
    assert_eq!(vdev_number("xvdp"), Some(202 << 8 | 15 << 4));
    assert_eq!(vdev_number("xvdq"), Some(1 << 28 | 16 << 8));
    assert_eq!(vdev_number("xvdz"), Some(1 << 28 | 25 << 8));
    assert_eq!(vdev_number("xvdaa"), Some(1 << 28 | 26 << 8));
    assert_eq!(vdev_number("xvdzzz"), Some(1 << 28 | 18277 << 8));
    for bad in [
        "", "xvd", "xvda1", "xvdA", "sda", "hda", "xvdaaaa", "xvd-", "xvdé",
    ] {
        assert_eq!(vdev_number(bad), None, "{bad}");
    }
}

fn get<'a>(nodes: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    nodes
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn backend_tree_matches_real_xen() {
    let vdev = vdev_number("xvda").unwrap();
    let fe = frontend_path(1, vdev);
    assert_eq!(fe, "/local/domain/1/device/vbd/51712");
    assert_eq!(
        backend_path(0, 1, vdev),
        "/local/domain/0/backend/vbd/1/51712"
    );
    let n = backend_nodes(&fe, 1, "xvda", false, 256, 4);
    let want = [
        ("frontend", "/local/domain/1/device/vbd/51712"),
        ("frontend-id", "1"),
        ("online", "1"),
        ("removable", "0"),
        ("bootable", "1"),
        ("state", "1"),
        ("dev", "xvda"),
        ("type", "phy"),
        ("mode", "w"),
        ("device-type", "disk"),
        ("discard-enable", "1"),
        ("specification", "xen"),
        ("feature-max-indirect-segments", "256"),
        ("multi-queue-max-queues", "1"),
        ("max-ring-page-order", "4"),
    ];
    let got: Vec<(&str, &str)> = n.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(got, want);
    let n = backend_nodes(&fe, 1, "xvda", true, 256, 4);
    assert_eq!(get(&n, "mode"), Some("r"));
    assert_eq!(get(&n, "discard-enable"), Some("0"));

    let c = connect_nodes(32768, 512, false, true);
    let want = [
        ("feature-flush-cache", "1"),
        ("discard-granularity", "4096"),
        ("discard-alignment", "0"),
        ("discard-secure", "0"),
        ("feature-discard", "1"),
        ("feature-barrier", "1"),
        ("feature-persistent", "0"),
        ("sectors", "32768"),
        ("info", "0"),
        ("sector-size", "512"),
        ("physical-sector-size", "512"),
    ];
    let got: Vec<(&str, &str)> = c.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(got, want);
    let c = connect_nodes(8, 4096, false, false);
    assert_eq!(get(&c, "feature-discard"), Some("0"));
    assert_eq!(get(&c, "discard-granularity"), None);
    assert_eq!(get(&c, "sector-size"), Some("4096"));
    let c = connect_nodes(8, 512, true, true);
    assert_eq!(get(&c, "info"), Some("4"));
    assert_eq!(get(&c, "feature-discard"), None);

    let f = frontend_nodes(&backend_path(0, 1, vdev), 0, vdev);
    let got: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        got,
        [
            ("backend", "/local/domain/0/backend/vbd/1/51712"),
            ("backend-id", "0"),
            ("state", "1"),
            ("virtual-device", "51712"),
            ("device-type", "disk"),
            ("trusted", "1"),
        ]
    );
}

fn arb_limits() -> impl Strategy<Value = DiskLimits> {
    (
        prop_oneof![0u64..2000, Just(u64::MAX), any::<u64>()],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(256u32), 0u32..5000, any::<u32>()],
    )
        .prop_map(
            |(sectors, readonly, discard, max_indirect_segments)| DiskLimits {
                sectors,
                readonly,
                discard,
                max_indirect_segments,
            },
        )
}

/// Slots that are mostly well formed in shape (known op, small sector,
/// small counts, sane-ish segments) so that acceptance is exercised, mixed
/// with arbitrary bytes.
fn arb_slot() -> impl Strategy<Value = [u8; ENTRY_SIZE]> {
    let raw = proptest::collection::vec(any::<u8>(), ENTRY_SIZE);
    (
        raw,
        0u8..8,
        prop_oneof![0u64..2100, any::<u64>()],
        0u8..14,
        0u8..4,
    )
        .prop_map(|(bytes, op, sector, count, shape)| {
            let shape = shape != 0;
            let mut slot = slot_of(&bytes);
            if shape {
                slot[0] = op;
                slot[16..24].copy_from_slice(&sector.to_ne_bytes());
                match op {
                    BLKIF_OP_INDIRECT => {
                        slot[1] %= 3;
                        slot[2..4].copy_from_slice(&(u16::from(count) * 300).to_ne_bytes());
                    }
                    BLKIF_OP_DISCARD => {
                        slot[24..32].copy_from_slice(&(u64::from(count) * 40).to_ne_bytes());
                    }
                    _ => {
                        slot[1] = count;
                        // Mostly valid segments, sometimes slightly off.
                        let valid = !slot[2].is_multiple_of(4);
                        for i in 0..BLKIF_MAX_SEGMENTS_PER_REQUEST {
                            let at = 24 + i * 8;
                            if valid {
                                let first = slot[at + 4] % 8;
                                slot[at + 4] = first;
                                slot[at + 5] = first + slot[at + 5] % (8 - first);
                            } else {
                                slot[at + 4] %= 9;
                                slot[at + 5] %= 9;
                            }
                        }
                    }
                }
            }
            slot
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(2000)))]

    #[test]
    fn decode_never_panics_and_stays_on_the_disk(
        slot in arb_slot(),
        limits in arb_limits(),
        pages in proptest::collection::vec(any::<[u8; 32]>(), 8),
    ) {
        let op = slot[0];
        let id = u64::from_ne_bytes(slot[8..16].try_into().unwrap());
        match decode(&slot, &limits) {
            Err(r) => {
                prop_assert_eq!(r.id, id);
                if op == BLKIF_OP_INDIRECT {
                    prop_assert_eq!(r.operation, slot[1]);
                } else {
                    prop_assert_eq!(r.operation, op);
                }
                prop_assert!(r.status == BLKIF_RSP_ERROR || r.status == BLKIF_RSP_EOPNOTSUPP);
            }
            Ok(d) => {
                prop_assert_eq!(d.id(), id);
                match d {
                    Decoded::Io { operation, dir, sector, segments, flush, .. } => {
                        prop_assert_eq!(operation, op);
                        prop_assert!(!segments.is_empty() && segments.len() <= 11);
                        let total: u64 = segments.iter().map(Segment::sectors).sum();
                        prop_assert!(sector.checked_add(total).is_some_and(|e| e <= limits.sectors));
                        for s in &segments {
                            prop_assert!(s.first_sect <= s.last_sect && s.last_sect <= 7);
                            prop_assert!(s.byte_offset() + s.byte_len() <= PAGE_SIZE);
                        }
                        prop_assert!(!(limits.readonly && dir == Direction::Write));
                        prop_assert_eq!(flush, op == BLKIF_OP_WRITE_BARRIER || op == BLKIF_OP_FLUSH_DISKCACHE);
                    }
                    Decoded::Indirect { operation, dir, sector, nr_segments, pages: grefs, .. } => {
                        prop_assert_eq!(op, BLKIF_OP_INDIRECT);
                        prop_assert!(operation == BLKIF_OP_READ || operation == BLKIF_OP_WRITE);
                        prop_assert!(nr_segments > 0 && u32::from(nr_segments) <= limits.max_indirect_segments);
                        prop_assert_eq!(grefs.len(), usize::from(nr_segments).div_ceil(512));
                        prop_assert!(grefs.len() <= 8);
                        prop_assert!(sector.checked_add(u64::from(nr_segments)).is_some_and(|e| e <= limits.sectors));
                        prop_assert!(!(limits.readonly && dir == Direction::Write));
                        // Fill the pages from random descriptors and decode them.
                        let filled: Vec<[u8; PAGE_SIZE]> = (0..grefs.len())
                            .map(|i| {
                                let mut p = [0u8; PAGE_SIZE];
                                for (k, chunk) in p.chunks_exact_mut(32).enumerate() {
                                    chunk.copy_from_slice(&pages[(i + k) % 8]);
                                    for d in chunk.chunks_exact_mut(8) {
                                        d[4] %= 9;
                                        d[5] %= 9;
                                    }
                                }
                                p
                            })
                            .collect();
                        let refs: Vec<&[u8; PAGE_SIZE]> = filled.iter().collect();
                        if let Ok(segs) = decode_indirect_segments(&refs, nr_segments, sector, dir, &limits) {
                            prop_assert_eq!(segs.len(), usize::from(nr_segments));
                            let total: u64 = segs.iter().map(Segment::sectors).sum();
                            prop_assert!(sector.checked_add(total).is_some_and(|e| e <= limits.sectors));
                        }
                    }
                    Decoded::Flush { operation, .. } => {
                        prop_assert!(operation == BLKIF_OP_FLUSH_DISKCACHE || operation == BLKIF_OP_WRITE_BARRIER);
                        prop_assert_eq!(slot[1], 0);
                    }
                    Decoded::Discard { sector, nr_sectors, .. } => {
                        prop_assert_eq!(op, BLKIF_OP_DISCARD);
                        prop_assert!(limits.discard && !limits.readonly);
                        prop_assert!(sector.checked_add(nr_sectors).is_some_and(|e| e <= limits.sectors));
                    }
                }
            }
        }
    }

    #[test]
    fn decode_indirect_segments_never_panics(
        page in proptest::collection::vec(any::<u8>(), PAGE_SIZE),
        npages in 0usize..10,
        nr_segments in any::<u16>(),
        sector in prop_oneof![0u64..3000, any::<u64>()],
        write in any::<bool>(),
        limits in arb_limits(),
    ) {
        let page: [u8; PAGE_SIZE] = page.try_into().unwrap();
        let refs = vec![&page; npages];
        let dir = if write { Direction::Write } else { Direction::Read };
        if let Ok(segs) = decode_indirect_segments(&refs, nr_segments, sector, dir, &limits) {
            prop_assert_eq!(segs.len(), usize::from(nr_segments));
            prop_assert!(usize::from(nr_segments).div_ceil(512) <= npages.min(8));
            let total: u64 = segs.iter().map(Segment::sectors).sum();
            prop_assert!(sector.checked_add(total).is_some_and(|e| e <= limits.sectors));
        }
    }

    #[test]
    fn parsers_never_panic(
        order in proptest::option::of(".{0,4}"),
        refs in proptest::collection::vec(proptest::option::of("[0-9]{0,11}"), 17),
        max_order in 0u32..8,
    ) {
        let read = |name: &str| -> Option<String> {
            if name == "ring-page-order" {
                return order.clone();
            }
            if name == "ring-ref" {
                return refs[16].clone();
            }
            let i: usize = name.strip_prefix("ring-ref")?.parse().ok()?;
            refs.get(i).cloned().flatten()
        };
        if let Ok((o, grefs)) = parse_ring_refs(read, max_order) {
            prop_assert!(o <= max_order.min(MAX_RING_PAGE_ORDER));
            prop_assert_eq!(grefs.len(), 1usize << o);
        }
    }

    #[test]
    fn state_machine_is_idempotent(
        be in proptest::sample::select(XenbusState::ALL),
        fe in proptest::option::of(proptest::sample::select(XenbusState::ALL)),
        connected in any::<bool>(),
    ) {
        // Applying the actions and asking again gives nothing more to do.
        let mut backend = be;
        let mut conn = connected;
        for a in on_frontend_state(be, fe, connected) {
            match a {
                Connect => { prop_assert!(!conn); conn = true }
                Disconnect => { prop_assert!(conn); conn = false }
                SetState(s) => { prop_assert_ne!(s, backend); backend = s }
                BackendAction::None => {}
            }
        }
        prop_assert_eq!(on_frontend_state(backend, fe, conn), vec![]);
    }
}
