//! Event channels, Xen's 2-level ABI: the port tables of every domain and
//! the operations guests drive (alloc_unbound, bind_interdomain, bind_virq,
//! bind_ipi, send, close, status, bind_vcpu).
//!
//! Pure logic, host-tested: an operation names the calling domain and
//! returns where events must be delivered; the hypervisor glue then sets
//! the pending bits in the target's shared-info page and raises the
//! upcall. A port number is only an index into the caller's own table, so
//! it can never reach a channel the caller was not bound to.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

pub type DomId = u16;
pub type PortNo = u32;

/// Ports per domain in the 2-level ABI on 64-bit guests.
pub const NR_PORTS: u32 = 4096;
/// Virtual IRQs Xen defines (VIRQ_TIMER 0 … VIRQ_ENOMEM 12, arch 16-23).
pub const NR_VIRQS: u32 = 24;
pub const VIRQ_TIMER: u32 = 0;
pub const VIRQ_CONSOLE: u32 = 2;
/// Global: a domain ended (Dom0's toolstack and backends clean up).
pub const VIRQ_DOM_EXC: u32 = 3;
const DOMID_SELF: u16 = 0x7ff0;

/// Failures, each one Xen errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvtchnError {
    /// -EINVAL: bad port, virq or state.
    Invalid,
    /// -ESRCH: no such domain.
    NoDomain,
    /// -EPERM: not allowed to name that domain.
    NotPermitted,
    /// -ENOSPC: the domain has no free port.
    NoSpace,
    /// -EEXIST: virq already bound on that vCPU.
    Exists,
    /// -ENOENT: vCPU does not exist.
    NoVcpu,
}

/// What a port is connected to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Free,
    /// Waiting for `remote` to bind to it.
    Unbound {
        remote: DomId,
    },
    Interdomain {
        remote: DomId,
        remote_port: PortNo,
    },
    Virq {
        virq: u32,
    },
    Ipi,
    /// A physical IRQ (a device's interrupt) of the privileged domain.
    Pirq {
        pirq: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Port {
    binding: Binding,
    /// vCPU the event is delivered to.
    vcpu: u32,
}

const FREE: Port = Port {
    binding: Binding::Free,
    vcpu: 0,
};

/// One domain's port table.
#[derive(Clone, Debug)]
pub struct DomainPorts {
    ports: Vec<Port>,
    vcpus: u32,
    privileged: bool,
    /// virq → port, per vCPU.
    virqs: BTreeMap<(u32, u32), PortNo>,
    /// pirq → port.
    pirqs: BTreeMap<u32, PortNo>,
}

impl DomainPorts {
    fn port(&self, port: PortNo) -> Result<&Port, EvtchnError> {
        self.ports.get(port as usize).ok_or(EvtchnError::Invalid)
    }

    fn alloc(&mut self) -> Result<PortNo, EvtchnError> {
        // Port 0 is never used (Xen reserves it).
        if let Some(i) = self
            .ports
            .iter()
            .skip(1)
            .position(|p| p.binding == Binding::Free)
        {
            return Ok(i as PortNo + 1);
        }
        if (self.ports.len() as u32) < NR_PORTS {
            self.ports.push(FREE);
            return Ok(self.ports.len() as PortNo - 1);
        }
        Err(EvtchnError::NoSpace)
    }
}

/// Where an event goes: set `port` pending in `domain`, notify `vcpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub domain: DomId,
    pub port: PortNo,
    pub vcpu: u32,
}

/// `EVTCHNOP_status` answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub binding: Binding,
    pub vcpu: u32,
}

/// The event channels of all domains.
#[derive(Default)]
pub struct EventChannels {
    domains: BTreeMap<DomId, DomainPorts>,
}

impl EventChannels {
    /// No domains yet (usable in a `static`).
    pub const EMPTY: Self = Self {
        domains: BTreeMap::new(),
    };

    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_domain(&mut self, dom: DomId, vcpus: u32, privileged: bool) {
        self.domains.insert(
            dom,
            DomainPorts {
                ports: alloc::vec![FREE],
                vcpus,
                privileged,
                virqs: BTreeMap::new(),
                pirqs: BTreeMap::new(),
            },
        );
    }

    /// Closes every port of `dom` (its peers' ends fall back to unbound)
    /// and forgets it.
    pub fn remove_domain(&mut self, dom: DomId) {
        let count = self.domains.get(&dom).map_or(0, |d| d.ports.len());
        for port in 1..count as PortNo {
            let _ = self.close(dom, port);
        }
        self.domains.remove(&dom);
    }

    fn resolve(&self, caller: DomId, dom: u16) -> Result<DomId, EvtchnError> {
        let target = if dom == DOMID_SELF { caller } else { dom };
        if !self.domains.contains_key(&target) {
            return Err(EvtchnError::NoDomain);
        }
        if target != caller && !self.domains[&caller].privileged {
            return Err(EvtchnError::NotPermitted);
        }
        Ok(target)
    }

    fn domain(&mut self, dom: DomId) -> Result<&mut DomainPorts, EvtchnError> {
        self.domains.get_mut(&dom).ok_or(EvtchnError::NoDomain)
    }

    /// `EVTCHNOP_alloc_unbound`: a port in `dom` (itself, or any domain
    /// for a privileged caller) that `remote` may bind to.
    pub fn alloc_unbound(
        &mut self,
        caller: DomId,
        dom: u16,
        remote: u16,
    ) -> Result<PortNo, EvtchnError> {
        let dom = self.resolve(caller, dom)?;
        let remote = if remote == DOMID_SELF { caller } else { remote };
        if !self.domains.contains_key(&remote) {
            return Err(EvtchnError::NoDomain);
        }
        let d = self.domain(dom)?;
        let port = d.alloc()?;
        d.ports[port as usize] = Port {
            binding: Binding::Unbound { remote },
            vcpu: 0,
        };
        Ok(port)
    }

    /// `EVTCHNOP_bind_interdomain`: connects a new local port to
    /// `remote_port` of `remote`, which must be unbound for the caller.
    pub fn bind_interdomain(
        &mut self,
        caller: DomId,
        remote: u16,
        remote_port: PortNo,
    ) -> Result<PortNo, EvtchnError> {
        let remote = if remote == DOMID_SELF { caller } else { remote };
        let r = self.domains.get(&remote).ok_or(EvtchnError::NoDomain)?;
        match r.port(remote_port)?.binding {
            Binding::Unbound { remote: allowed } if allowed == caller => {}
            _ => return Err(EvtchnError::Invalid),
        }
        let local = self.domain(caller)?.alloc()?;
        self.domain(caller)?.ports[local as usize] = Port {
            binding: Binding::Interdomain {
                remote,
                remote_port,
            },
            vcpu: 0,
        };
        let r = self.domain(remote)?;
        r.ports[remote_port as usize].binding = Binding::Interdomain {
            remote: caller,
            remote_port: local,
        };
        Ok(local)
    }

    pub fn bind_virq(
        &mut self,
        caller: DomId,
        virq: u32,
        vcpu: u32,
    ) -> Result<PortNo, EvtchnError> {
        if virq >= NR_VIRQS {
            return Err(EvtchnError::Invalid);
        }
        let d = self.domain(caller)?;
        if vcpu >= d.vcpus {
            return Err(EvtchnError::NoVcpu);
        }
        if d.virqs.contains_key(&(virq, vcpu)) {
            return Err(EvtchnError::Exists);
        }
        let port = d.alloc()?;
        d.ports[port as usize] = Port {
            binding: Binding::Virq { virq },
            vcpu,
        };
        d.virqs.insert((virq, vcpu), port);
        Ok(port)
    }

    pub fn bind_ipi(&mut self, caller: DomId, vcpu: u32) -> Result<PortNo, EvtchnError> {
        let d = self.domain(caller)?;
        if vcpu >= d.vcpus {
            return Err(EvtchnError::NoVcpu);
        }
        let port = d.alloc()?;
        d.ports[port as usize] = Port {
            binding: Binding::Ipi,
            vcpu,
        };
        Ok(port)
    }

    /// `EVTCHNOP_close`: frees the port; an interdomain peer goes back to
    /// unbound (waiting for the caller again), as in Xen.
    pub fn close(&mut self, caller: DomId, port: PortNo) -> Result<(), EvtchnError> {
        let d = self.domain(caller)?;
        if port == 0 {
            return Err(EvtchnError::Invalid);
        }
        let p = *d.port(port)?;
        match p.binding {
            Binding::Free => return Err(EvtchnError::Invalid),
            Binding::Virq { virq } => {
                d.virqs.remove(&(virq, p.vcpu));
            }
            Binding::Interdomain {
                remote,
                remote_port,
            } => {
                if let Some(r) = self.domains.get_mut(&remote)
                    && let Some(rp) = r.ports.get_mut(remote_port as usize)
                {
                    rp.binding = Binding::Unbound { remote: caller };
                }
            }
            Binding::Pirq { pirq } => {
                d.pirqs.remove(&pirq);
            }
            Binding::Unbound { .. } | Binding::Ipi => {}
        }
        self.domain(caller)?.ports[port as usize] = FREE;
        Ok(())
    }

    /// `EVTCHNOP_send`: where the event goes (nowhere for an unbound port).
    pub fn send(&self, caller: DomId, port: PortNo) -> Result<Option<Delivery>, EvtchnError> {
        let d = self.domains.get(&caller).ok_or(EvtchnError::NoDomain)?;
        let p = d.port(port)?;
        match p.binding {
            Binding::Interdomain {
                remote,
                remote_port,
            } => {
                let r = self.domains.get(&remote).ok_or(EvtchnError::Invalid)?;
                let vcpu = r.port(remote_port)?.vcpu;
                Ok(Some(Delivery {
                    domain: remote,
                    port: remote_port,
                    vcpu,
                }))
            }
            Binding::Ipi => Ok(Some(Delivery {
                domain: caller,
                port,
                vcpu: p.vcpu,
            })),
            Binding::Unbound { .. } => Ok(None),
            Binding::Free | Binding::Virq { .. } | Binding::Pirq { .. } => {
                Err(EvtchnError::Invalid)
            }
        }
    }

    /// `EVTCHNOP_bind_pirq`: a port for IRQ `pirq`, delivered to vCPU 0.
    /// As Xen's for HVM and PVH domains: any `pirq` below the domain's
    /// `nr_pirqs` binds (-EINVAL above, -EEXIST twice) without a
    /// permission check — a DomU's pirq has no device behind it and its
    /// port never fires; which physical IRQs reach the privileged domain
    /// is the caller's business.
    pub fn bind_pirq(
        &mut self,
        caller: DomId,
        pirq: u32,
        nr_pirqs: u32,
    ) -> Result<PortNo, EvtchnError> {
        let d = self.domain(caller)?;
        if pirq >= nr_pirqs {
            return Err(EvtchnError::Invalid);
        }
        if d.pirqs.contains_key(&pirq) {
            return Err(EvtchnError::Exists);
        }
        let port = d.alloc()?;
        d.ports[port as usize] = Port {
            binding: Binding::Pirq { pirq },
            vcpu: 0,
        };
        d.pirqs.insert(pirq, port);
        Ok(port)
    }

    /// Where physical IRQ `pirq` of `dom` goes, if bound.
    pub fn pirq_target(&self, dom: DomId, pirq: u32) -> Option<Delivery> {
        let d = self.domains.get(&dom)?;
        let port = *d.pirqs.get(&pirq)?;
        Some(Delivery {
            domain: dom,
            port,
            vcpu: d.port(port).ok()?.vcpu,
        })
    }

    /// Where a virtual IRQ of `dom` on `vcpu` goes, if bound.
    pub fn virq_target(&self, dom: DomId, virq: u32, vcpu: u32) -> Option<Delivery> {
        let d = self.domains.get(&dom)?;
        let port = *d.virqs.get(&(virq, vcpu))?;
        Some(Delivery {
            domain: dom,
            port,
            vcpu,
        })
    }

    pub fn status(&self, caller: DomId, dom: u16, port: PortNo) -> Result<Status, EvtchnError> {
        let dom = self.resolve(caller, dom)?;
        let p = self.domains[&dom].port(port)?;
        Ok(Status {
            binding: p.binding,
            vcpu: p.vcpu,
        })
    }

    /// `EVTCHNOP_bind_vcpu`: interdomain and unbound ports (and virqs that
    /// are not per-vCPU, here none) may move.
    pub fn bind_vcpu(&mut self, caller: DomId, port: PortNo, vcpu: u32) -> Result<(), EvtchnError> {
        let d = self.domain(caller)?;
        if vcpu >= d.vcpus {
            return Err(EvtchnError::NoVcpu);
        }
        let p = d.ports.get_mut(port as usize).ok_or(EvtchnError::Invalid)?;
        match p.binding {
            Binding::Interdomain { .. } | Binding::Unbound { .. } | Binding::Pirq { .. } => {
                p.vcpu = vcpu;
                Ok(())
            }
            _ => Err(EvtchnError::Invalid),
        }
    }

    /// `EVTCHNOP_reset`: closes every port of `dom` but port 0, as Xen's
    /// `evtchn_reset` (interdomain peers go back to unbound). Returns the
    /// ports closed and what they were bound to, so the caller can clear
    /// their pending bits and undo PIRQ bindings.
    pub fn reset(&mut self, dom: DomId) -> Result<Vec<(PortNo, Binding)>, EvtchnError> {
        let bound: Vec<(PortNo, Binding)> = self
            .domain(dom)?
            .ports
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, p)| p.binding != Binding::Free)
            .map(|(i, p)| (i as PortNo, p.binding))
            .collect();
        for &(port, _) in &bound {
            self.close(dom, port)?;
        }
        Ok(bound)
    }

    /// Number of bound (non-free) ports of `dom`, for leak checks.
    pub fn bound_ports(&self, dom: DomId) -> usize {
        self.domains.get(&dom).map_or(0, |d| {
            d.ports
                .iter()
                .filter(|p| p.binding != Binding::Free)
                .count()
        })
    }
}

#[cfg(test)]
mod tests;

/// `vcpu_time_info` scale: system time (ns) = ((tsc delta << shift) *
/// mul) >> 32, with `shift` negative meaning a right shift. Pure.
pub fn pvclock_scale(tsc_per_ms: u64) -> (u32, i8) {
    // ns per tick as a 32.32 fixed-point value: 1e6 / tsc_per_ms.
    let mut shift: i8 = 0;
    let mut tps = tsc_per_ms.max(1) * 1000; // ticks per second
    let ns_per_s: u64 = 1_000_000_000;
    // Normalise so that ns/tick is in [0.5, 1): mul = ns_per_s<<32 / tps.
    while tps > ns_per_s * 2 {
        tps >>= 1;
        shift -= 1;
    }
    while tps <= ns_per_s {
        tps <<= 1;
        shift += 1;
    }
    let mul = ((ns_per_s as u128) << 32) / tps as u128;
    (mul.min(u32::MAX as u128) as u32, shift)
}

/// Applies a pvclock scale to a TSC delta, exactly as guests do.
pub fn pvclock_delta_ns(delta: u64, mul: u32, shift: i8) -> u64 {
    let d = if shift >= 0 {
        delta << shift
    } else {
        delta >> (-shift)
    };
    ((d as u128 * mul as u128) >> 32) as u64
}
