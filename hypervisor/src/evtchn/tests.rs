//! Host tests of the event-channel core, with property tests over random
//! operation sequences.

use super::*;
use proptest::prelude::*;

fn system() -> EventChannels {
    let mut e = EventChannels::new();
    e.add_domain(0, 1, true);
    e.add_domain(1, 2, false);
    e.add_domain(2, 1, false);
    e
}

#[test]
fn interdomain_rendezvous_and_send() {
    let mut e = system();
    let p1 = e.alloc_unbound(1, DOMID_SELF, 2).unwrap();
    assert_eq!(e.send(1, p1), Ok(None)); // unbound: nobody to tell
    let p2 = e.bind_interdomain(2, 1, p1).unwrap();
    assert_eq!(
        e.send(2, p2),
        Ok(Some(Delivery {
            domain: 1,
            port: p1,
            vcpu: 0
        }))
    );
    assert_eq!(
        e.send(1, p1),
        Ok(Some(Delivery {
            domain: 2,
            port: p2,
            vcpu: 0
        }))
    );
    e.bind_vcpu(1, p1, 1).unwrap();
    assert_eq!(e.send(2, p2).unwrap().unwrap().vcpu, 1);
    // Closing one end makes the other unbound again, waiting for the closer.
    e.close(2, p2).unwrap();
    assert_eq!(
        e.status(1, DOMID_SELF, p1).unwrap().binding,
        Binding::Unbound { remote: 2 }
    );
    assert_eq!(e.send(2, p2), Err(EvtchnError::Invalid));
}

#[test]
fn reset_closes_every_port_and_frees_the_peers() {
    let mut e = system();
    let offered = e.alloc_unbound(1, DOMID_SELF, 2).unwrap();
    let peer = e.bind_interdomain(2, 1, offered).unwrap();
    let virq = e.bind_virq(1, VIRQ_TIMER, 0).unwrap();
    let ipi = e.bind_ipi(1, 1).unwrap();
    let closed = e.reset(1).unwrap();
    assert_eq!(
        closed.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        vec![offered, virq, ipi]
    );
    assert_eq!(e.bound_ports(1), 0);
    // The peer waits for domain 1 again; its port is still its own.
    assert_eq!(
        e.status(2, DOMID_SELF, peer).unwrap().binding,
        Binding::Unbound { remote: 1 }
    );
    // The virq can be bound again, and ports are reused.
    assert_eq!(e.bind_virq(1, VIRQ_TIMER, 0), Ok(offered));
    assert_eq!(e.reset(1).map(|c| c.len()), Ok(1));
    assert_eq!(e.reset(9), Err(EvtchnError::NoDomain));
}

#[test]
fn binding_a_port_not_offered_to_you_fails() {
    let mut e = system();
    let p = e.alloc_unbound(1, DOMID_SELF, 0).unwrap(); // offered to dom0
    assert_eq!(e.bind_interdomain(2, 1, p), Err(EvtchnError::Invalid));
    assert_eq!(e.bind_interdomain(2, 1, 4095), Err(EvtchnError::Invalid));
    assert_eq!(e.bind_interdomain(2, 9, 1), Err(EvtchnError::NoDomain));
    assert!(e.bind_interdomain(0, 1, p).is_ok());
    // Already connected: a second bind fails.
    assert_eq!(e.bind_interdomain(0, 1, p), Err(EvtchnError::Invalid));
}

#[test]
fn unprivileged_domains_stay_in_their_lane() {
    let mut e = system();
    assert_eq!(e.alloc_unbound(1, 2, 1), Err(EvtchnError::NotPermitted));
    assert_eq!(e.status(1, 2, 1), Err(EvtchnError::NotPermitted));
    assert_eq!(e.alloc_unbound(1, 7, 1), Err(EvtchnError::NoDomain));
    assert!(e.alloc_unbound(0, 1, 0).is_ok()); // dom0 may
}

#[test]
fn virqs_and_ipis() {
    let mut e = system();
    let t = e.bind_virq(1, VIRQ_TIMER, 1).unwrap();
    assert_eq!(e.bind_virq(1, VIRQ_TIMER, 1), Err(EvtchnError::Exists));
    assert_eq!(e.bind_virq(1, VIRQ_TIMER, 2), Err(EvtchnError::NoVcpu));
    assert_eq!(e.bind_virq(1, NR_VIRQS, 0), Err(EvtchnError::Invalid));
    assert_eq!(
        e.virq_target(1, VIRQ_TIMER, 1),
        Some(Delivery {
            domain: 1,
            port: t,
            vcpu: 1
        })
    );
    assert_eq!(e.send(1, t), Err(EvtchnError::Invalid));
    e.close(1, t).unwrap();
    assert_eq!(e.virq_target(1, VIRQ_TIMER, 1), None);
    let i = e.bind_ipi(1, 1).unwrap();
    assert_eq!(
        e.send(1, i),
        Ok(Some(Delivery {
            domain: 1,
            port: i,
            vcpu: 1
        }))
    );
    assert_eq!(e.close(1, 0), Err(EvtchnError::Invalid));
    assert_eq!(e.close(1, 999), Err(EvtchnError::Invalid));
}

#[test]
fn ports_run_out_at_4096() {
    let mut e = system();
    for _ in 1..NR_PORTS {
        e.bind_ipi(2, 0).unwrap();
    }
    assert_eq!(e.bind_ipi(2, 0), Err(EvtchnError::NoSpace));
    e.close(2, 17).unwrap();
    assert_eq!(e.bind_ipi(2, 0), Ok(17));
}

#[derive(Clone, Debug)]
enum Op {
    AllocUnbound { caller: u16, dom: u16, remote: u16 },
    BindInterdomain { caller: u16, remote: u16, port: u32 },
    BindVirq { caller: u16, virq: u32, vcpu: u32 },
    BindIpi { caller: u16, vcpu: u32 },
    Close { caller: u16, port: u32 },
    Send { caller: u16, port: u32 },
    BindVcpu { caller: u16, port: u32, vcpu: u32 },
    Remove { dom: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    let dom = prop_oneof![0u16..4, Just(DOMID_SELF)];
    let port = 0u32..12;
    prop_oneof![
        (0u16..3, dom.clone(), dom.clone()).prop_map(|(caller, dom, remote)| Op::AllocUnbound {
            caller,
            dom,
            remote
        }),
        (0u16..3, dom, port.clone()).prop_map(|(caller, remote, port)| Op::BindInterdomain {
            caller,
            remote,
            port
        }),
        (0u16..3, 0u32..3, 0u32..3).prop_map(|(caller, virq, vcpu)| Op::BindVirq {
            caller,
            virq,
            vcpu
        }),
        (0u16..3, 0u32..3).prop_map(|(caller, vcpu)| Op::BindIpi { caller, vcpu }),
        (0u16..3, port.clone()).prop_map(|(caller, port)| Op::Close { caller, port }),
        (0u16..3, port.clone()).prop_map(|(caller, port)| Op::Send { caller, port }),
        (0u16..3, port, 0u32..3).prop_map(|(caller, port, vcpu)| Op::BindVcpu {
            caller,
            port,
            vcpu
        }),
        (1u16..3).prop_map(|dom| Op::Remove { dom }),
    ]
}

/// Every interdomain binding is mutual.
fn check_symmetry(e: &EventChannels) -> Result<(), TestCaseError> {
    for (&d, ports) in &e.domains {
        for (p, port) in ports.ports.iter().enumerate() {
            if let Binding::Interdomain {
                remote,
                remote_port,
            } = port.binding
            {
                let back = e
                    .domains
                    .get(&remote)
                    .and_then(|r| r.ports.get(remote_port as usize));
                prop_assert_eq!(
                    back.map(|b| b.binding),
                    Some(Binding::Interdomain {
                        remote: d,
                        remote_port: p as u32
                    }),
                    "d{}:{} → d{}:{} not mutual",
                    d,
                    p,
                    remote,
                    remote_port
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn no_event_reaches_a_domain_it_was_not_bound_to(ops in proptest::collection::vec(op(), 1..80)) {
        let mut e = system();
        for op in ops {
            match op {
                Op::AllocUnbound { caller, dom, remote } => {
                    if e.domains.contains_key(&caller) {
                        let r = e.alloc_unbound(caller, dom, remote);
                        let target = if dom == DOMID_SELF { caller } else { dom };
                        if target != caller && caller != 0 {
                            prop_assert!(r.is_err(), "unprivileged alloc in another domain");
                        }
                    }
                }
                Op::BindInterdomain { caller, remote, port } => {
                    if e.domains.contains_key(&caller) {
                        let remote_dom = if remote == DOMID_SELF { caller } else { remote };
                        let offered = e.domains.get(&remote_dom)
                            .and_then(|r| r.ports.get(port as usize))
                            .map(|p| p.binding == Binding::Unbound { remote: caller })
                            .unwrap_or(false);
                        let r = e.bind_interdomain(caller, remote, port);
                        prop_assert_eq!(r.is_ok(), offered);
                    }
                }
                Op::BindVirq { caller, virq, vcpu } => { let _ = e.bind_virq(caller, virq, vcpu); }
                Op::BindIpi { caller, vcpu } => { let _ = e.bind_ipi(caller, vcpu); }
                Op::Close { caller, port } => { let _ = e.close(caller, port); }
                Op::BindVcpu { caller, port, vcpu } => { let _ = e.bind_vcpu(caller, port, vcpu); }
                Op::Send { caller, port } => {
                    if let Ok(Some(d)) = e.send(caller, port) {
                        // The delivery goes to the caller's own peer, or to itself for an IPI.
                        let binding = e.domains[&caller].ports[port as usize].binding;
                        match binding {
                            Binding::Interdomain { remote, remote_port } => {
                                prop_assert_eq!((d.domain, d.port), (remote, remote_port));
                            }
                            Binding::Ipi => prop_assert_eq!((d.domain, d.port), (caller, port)),
                            other => prop_assert!(false, "delivery from a {:?} port", other),
                        }
                        prop_assert!(d.vcpu < e.domains[&d.domain].vcpus);
                    }
                }
                Op::Remove { dom } => {
                    e.remove_domain(dom);
                    for ports in e.domains.values() {
                        for p in &ports.ports {
                            if let Binding::Interdomain { remote, .. } = p.binding {
                                prop_assert_ne!(remote, dom, "a port still connected to a removed domain");
                            }
                        }
                    }
                    prop_assert_eq!(e.bound_ports(dom), 0);
                }
            }
            check_symmetry(&e)?;
        }
    }
}

#[test]
fn pvclock_scale_is_accurate() {
    for tsc_per_ms in [1_000u64, 62_500, 1_000_000, 2_400_000, 3_700_000, 6_000_000] {
        let (mul, shift) = pvclock_scale(tsc_per_ms);
        let one_second = tsc_per_ms * 1000;
        let ns = pvclock_delta_ns(one_second, mul, shift);
        let error = ns.abs_diff(1_000_000_000);
        assert!(
            error < 1_000,
            "{tsc_per_ms} ticks/ms: 1 s came out as {ns} ns"
        );
    }
}

#[test]
fn pirqs_bind_below_nr_pirqs_as_on_xen() {
    let mut e = EventChannels::new();
    e.add_domain(0, 1, true);
    e.add_domain(1, 1, false);
    // A DomU binds its own pirq numbers (Xen's HVM rule), which nothing
    // raises; above its nr_pirqs it gets -EINVAL.
    assert_eq!(e.bind_pirq(1, 56, 56), Err(EvtchnError::Invalid));
    let theirs = e.bind_pirq(1, 11, 56).unwrap();
    assert_eq!(e.bind_pirq(1, 11, 56), Err(EvtchnError::Exists));
    let port = e.bind_pirq(0, 11, u32::MAX).unwrap();
    assert_eq!(e.bind_pirq(0, 11, u32::MAX), Err(EvtchnError::Exists));
    assert_eq!(e.pirq_target(1, 11).map(|d| d.port), Some(theirs));
    assert_eq!(
        e.pirq_target(0, 11),
        Some(Delivery {
            domain: 0,
            port,
            vcpu: 0
        })
    );
    assert_eq!(e.pirq_target(0, 10), None);
    // A pirq port cannot be sent on; closing it frees the pirq.
    assert_eq!(e.send(0, port), Err(EvtchnError::Invalid));
    e.close(0, port).unwrap();
    assert_eq!(e.pirq_target(0, 11), None);
    assert!(e.bind_pirq(0, 11, u32::MAX).is_ok());
}
