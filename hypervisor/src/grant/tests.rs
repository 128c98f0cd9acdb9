//! Host tests of the grant-table core, with a property test over random
//! grant/map/unmap/copy sequences.

use super::*;
use core::cell::RefCell;
use proptest::prelude::*;
use std::collections::HashMap;

/// Grant entries in "guest memory".
#[derive(Default)]
struct Tables(RefCell<HashMap<(DomId, GrantRef), GrantEntry>>);

impl Tables {
    fn grant(&self, granter: DomId, gref: GrantRef, to: DomId, frame: u32, readonly: bool) {
        let flags = gtf::PERMIT_ACCESS | if readonly { gtf::READONLY } else { 0 };
        self.0.borrow_mut().insert(
            (granter, gref),
            GrantEntry {
                flags,
                domid: to,
                frame,
            },
        );
    }
    fn flags(&self, granter: DomId, gref: GrantRef) -> u16 {
        self.0.borrow()[&(granter, gref)].flags
    }
}

impl GrantMemory for Tables {
    fn entry(&self, granter: DomId, gref: GrantRef) -> Option<GrantEntry> {
        Some(
            self.0
                .borrow()
                .get(&(granter, gref))
                .copied()
                .unwrap_or(GrantEntry {
                    flags: 0,
                    domid: 0,
                    frame: 0,
                }),
        )
    }
    fn swap_flags(
        &self,
        granter: DomId,
        gref: GrantRef,
        expected: GrantEntry,
        new_flags: u16,
    ) -> bool {
        let mut m = self.0.borrow_mut();
        let e = m.entry((granter, gref)).or_insert(GrantEntry {
            flags: 0,
            domid: 0,
            frame: 0,
        });
        if e.flags != expected.flags || e.domid != expected.domid {
            return false;
        }
        e.flags = new_flags;
        true
    }
}

fn grants() -> Grants {
    let mut g = Grants::new();
    for d in 0..3 {
        g.add_domain(d);
    }
    g
}

#[test]
fn map_read_write_unmap() {
    let (mut g, t) = (grants(), Tables::default());
    t.grant(1, 8, 2, 0x123, false);
    let (h, m) = g.map(2, 1, 8, 0x900, false, &t).unwrap();
    assert_eq!(
        m,
        Mapping {
            granter: 1,
            gref: 8,
            frame: 0x123,
            at: 0x900,
            writable: true
        }
    );
    assert_eq!(
        t.flags(1, 8),
        gtf::PERMIT_ACCESS | gtf::READING | gtf::WRITING
    );
    let (h2, _) = g.map(2, 1, 8, 0x901, true, &t).unwrap();
    assert_eq!(g.pins(1, 8), (2, 1));
    g.unmap(2, h, Some(0x900), &t).unwrap();
    assert_eq!(t.flags(1, 8), gtf::PERMIT_ACCESS | gtf::READING);
    assert_eq!(g.unmap(2, h, None, &t), Err(GrantStatus::BadHandle));
    assert_eq!(
        g.unmap(2, h2, Some(0x555), &t),
        Err(GrantStatus::BadVirtAddr)
    );
    g.unmap(2, h2, None, &t).unwrap();
    assert_eq!(t.flags(1, 8), gtf::PERMIT_ACCESS);
}

#[test]
fn refusals_carry_xen_status_codes() {
    let (mut g, t) = (grants(), Tables::default());
    t.grant(1, 8, 2, 0x123, true);
    assert_eq!(
        g.map(0, 1, 8, 0, true, &t).unwrap_err(),
        GrantStatus::PermissionDenied
    ); // not for dom0
    assert_eq!(
        g.map(2, 1, 8, 0, false, &t).unwrap_err(),
        GrantStatus::PermissionDenied
    ); // read-only
    assert_eq!(
        g.map(2, 1, 9, 0, true, &t).unwrap_err(),
        GrantStatus::PermissionDenied
    ); // never granted
    assert_eq!(
        g.map(2, 1, 512, 0, true, &t).unwrap_err(),
        GrantStatus::BadGntref
    ); // beyond 1 frame
    assert_eq!(
        g.map(2, 7, 8, 0, true, &t).unwrap_err(),
        GrantStatus::BadDomain
    );
    assert_eq!(g.setup_table(1, MAX_FRAMES + 1), GrantStatus::GeneralError);
    assert_eq!(g.setup_table(1, 2), GrantStatus::Okay);
    t.grant(1, 600, 2, 0x5, true);
    assert!(g.map(2, 1, 600, 0, true, &t).is_ok());
}

/// The frame lookup of a copy, as (domain, gfn); gfn 0xdead is unbacked.
fn gfn(d: DomId, g: u64) -> Option<(DomId, u64)> {
    (g != 0xdead).then_some((d, g))
}

#[test]
fn copy_checks_in_xens_order_and_allows_self_grants() {
    let (g, t) = (grants(), Tables::default());
    // Domain 2 grants itself a page and copies through it.
    t.grant(2, 5, 2, 0x50, false);
    t.grant(2, 6, 2, 0xdead, false);
    let own = CopySide::Own { gfn: 0x40 };
    let op = |source, dest, len| CopyOp {
        source,
        source_offset: 0,
        dest,
        dest_offset: 0,
        len,
    };
    let mine = CopySide::Gref { domain: 2, gref: 5 };
    assert_eq!(
        g.copy(2, &op(own, mine, 8), &t, gfn),
        Ok(ResolvedCopy {
            source: (2, 0x40),
            dest: (2, 0x50)
        })
    );
    // A bad ref is found before a bad length; the source before the dest.
    let bad_ref = CopySide::Gref {
        domain: 2,
        gref: 1 << 20,
    };
    assert_eq!(
        g.copy(2, &op(own, bad_ref, 5000), &t, gfn),
        Err(GrantStatus::BadGntref)
    );
    let unbacked = CopySide::Own { gfn: 0xdead };
    assert_eq!(
        g.copy(2, &op(unbacked, bad_ref, 8), &t, gfn),
        Err(GrantStatus::BadPage)
    );
    let unbacked_grant = CopySide::Gref { domain: 2, gref: 6 };
    assert_eq!(
        g.copy(2, &op(own, unbacked_grant, 8), &t, gfn),
        Err(GrantStatus::BadPage)
    );
    assert_eq!(
        g.copy(2, &op(own, mine, 5000), &t, gfn),
        Err(GrantStatus::BadCopyArg)
    );
}

#[test]
fn copy_checks_both_sides() {
    let (g, t) = (grants(), Tables::default());
    t.grant(1, 8, 2, 0x10, true);
    t.grant(1, 9, 2, 0x11, false);
    let src = CopySide::Gref { domain: 1, gref: 8 };
    let dst = CopySide::Gref { domain: 1, gref: 9 };
    let own = CopySide::Own { gfn: 0x40 };
    assert_eq!(
        g.copy(
            2,
            &CopyOp {
                source: src,
                source_offset: 0,
                dest: own,
                dest_offset: 0,
                len: 4096
            },
            &t,
            gfn
        ),
        Ok(ResolvedCopy {
            source: (1, 0x10),
            dest: (2, 0x40)
        })
    );
    assert_eq!(
        g.copy(
            2,
            &CopyOp {
                source: own,
                source_offset: 0,
                dest: dst,
                dest_offset: 100,
                len: 100
            },
            &t,
            gfn
        ),
        Ok(ResolvedCopy {
            source: (2, 0x40),
            dest: (1, 0x11)
        })
    );
    assert_eq!(
        g.copy(
            2,
            &CopyOp {
                source: own,
                source_offset: 0,
                dest: src,
                dest_offset: 0,
                len: 1
            },
            &t,
            gfn
        ),
        Err(GrantStatus::PermissionDenied)
    ); // read-only dest
    assert_eq!(
        g.copy(
            2,
            &CopyOp {
                source: own,
                source_offset: 4000,
                dest: dst,
                dest_offset: 0,
                len: 200
            },
            &t,
            gfn
        ),
        Err(GrantStatus::BadCopyArg)
    );
    assert_eq!(
        g.copy(
            0,
            &CopyOp {
                source: src,
                source_offset: 0,
                dest: own,
                dest_offset: 0,
                len: 1
            },
            &t,
            gfn
        ),
        Err(GrantStatus::PermissionDenied)
    ); // not dom0's
}

#[test]
fn maptrack_fills_up() {
    let (mut g, t) = (grants(), Tables::default());
    t.grant(1, 8, 2, 0x10, true);
    for i in 0..MAX_MAPTRACK {
        g.map(2, 1, 8, i as u64, true, &t).unwrap();
    }
    assert_eq!(
        g.map(2, 1, 8, 0, true, &t).unwrap_err(),
        GrantStatus::NoDeviceSpace
    );
}

#[test]
fn dying_mapper_releases_its_pins() {
    let (mut g, t) = (grants(), Tables::default());
    t.grant(1, 8, 2, 0x10, false);
    g.map(2, 1, 8, 5, false, &t).unwrap();
    assert_eq!(g.mapped_by_others(1).len(), 1);
    let undone = g.remove_domain(2, &t);
    assert_eq!(undone.len(), 1);
    assert_eq!(t.flags(1, 8), gtf::PERMIT_ACCESS);
    assert!(g.mapped_by_others(1).is_empty());
}

proptest! {
    #[test]
    fn read_only_stays_read_only_and_nothing_leaks(
        ops in proptest::collection::vec((0u8..4, 0u16..3, 0u16..3, 0u32..4, any::<bool>()), 1..60)
    ) {
        let (mut g, t) = (grants(), Tables::default());
        let mut handles: Vec<(DomId, Handle)> = Vec::new();
        for (kind, a, b, gref, flag) in ops {
            match kind {
                0 => t.grant(a, gref, b, gref, flag),
                1 => {
                    let before = t.0.borrow().get(&(b, gref)).copied();
                    if let Ok((h, m)) = g.map(a, b, gref, gref as u64, flag, &t) {
                        let e = before.unwrap();
                        prop_assert_eq!(e.domid, a, "mapped a grant meant for another domain");
                        prop_assert!(flag || e.flags & gtf::READONLY == 0, "writable map of a read-only grant");
                        prop_assert_eq!(m.writable, !flag);
                        handles.push((a, h));
                    }
                }
                2 => {
                    if let Some((d, h)) = handles.pop() {
                        prop_assert!(g.unmap(d, h, None, &t).is_ok());
                    }
                }
                _ => {
                    let op = CopyOp {
                        source: CopySide::Gref { domain: b, gref },
                        source_offset: 0,
                        dest: CopySide::Own { gfn: 1 },
                        dest_offset: 0,
                        len: 8,
                    };
                    let r = g.copy(a, &op, &t, gfn);
                    if r.is_ok() {
                        prop_assert_eq!(t.0.borrow()[&(b, gref)].domid, a);
                    }
                }
            }
        }
        for (d, h) in handles.drain(..) {
            g.unmap(d, h, None, &t).unwrap();
        }
        // All mappings gone: no pins and no reading/writing bits left.
        for (&(gr, r), e) in t.0.borrow().iter() {
            prop_assert_eq!(g.pins(gr, r), (0, 0));
            prop_assert_eq!(e.flags & (gtf::READING | gtf::WRITING), 0);
        }
    }
}
