//! Event channels (event_channel.h, VIRQs from xen.h):
//! event_channel_op(cmd, arg) sub-ops, their argument structs, the
//! `EVTCHNSTAT_*` states, and the 2-level ABI's port arithmetic over the
//! shared_info bitmaps (4096 ports on x86_64).

use crate::hypercall::DomId;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `evtchn_port_t`.
pub type EvtchnPort = u32;

abi_enum! {
    /// `EVTCHNOP_*`.
    pub enum EvtchnOp: u32 {
        /// arg = [`EvtchnBindInterdomain`].
        BindInterdomain = 0,
        /// arg = [`EvtchnBindVirq`].
        BindVirq = 1,
        /// arg = [`EvtchnBindPirq`].
        BindPirq = 2,
        /// arg = [`EvtchnClose`].
        Close = 3,
        /// arg = [`EvtchnSend`].
        Send = 4,
        /// arg = [`EvtchnStatus`].
        Status = 5,
        /// arg = [`EvtchnAllocUnbound`].
        AllocUnbound = 6,
        /// arg = [`EvtchnBindIpi`].
        BindIpi = 7,
        /// arg = [`EvtchnBindVcpu`].
        BindVcpu = 8,
        /// arg = [`EvtchnUnmask`].
        Unmask = 9,
        /// arg = [`EvtchnReset`].
        Reset = 10,
        /// FIFO ABI; arg = [`EvtchnInitControl`].
        InitControl = 11,
        /// FIFO ABI; arg = [`EvtchnExpandArray`].
        ExpandArray = 12,
        /// FIFO ABI; arg = [`EvtchnSetPriority`].
        SetPriority = 13,
    }
}

/// `struct evtchn_alloc_unbound`: allocate a port in `dom` that
/// `remote_dom` may bind.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnAllocUnbound {
    pub dom: DomId,
    pub remote_dom: DomId,
    /// Out.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_interdomain`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindInterdomain {
    pub remote_dom: DomId,
    pub pad: u16,
    pub remote_port: EvtchnPort,
    /// Out.
    pub local_port: EvtchnPort,
}

/// `struct evtchn_bind_virq`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindVirq {
    /// A [`Virq`].
    pub virq: u32,
    pub vcpu: u32,
    /// Out.
    pub port: EvtchnPort,
}

/// `BIND_PIRQ__WILL_SHARE`.
pub const BIND_PIRQ_WILL_SHARE: u32 = 1;

/// `struct evtchn_bind_pirq`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindPirq {
    pub pirq: u32,
    /// `BIND_PIRQ__*`.
    pub flags: u32,
    /// Out.
    pub port: EvtchnPort,
}

/// `struct evtchn_bind_ipi`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindIpi {
    pub vcpu: u32,
    /// Out.
    pub port: EvtchnPort,
}

/// `struct evtchn_close`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnClose {
    pub port: EvtchnPort,
}

/// `struct evtchn_send`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnSend {
    pub port: EvtchnPort,
}

abi_enum! {
    /// `EVTCHNSTAT_*`: [`EvtchnStatus::status`].
    pub enum EvtchnStat: u32 {
        /// Not in use.
        Closed = 0,
        /// Waiting for an interdomain connection.
        Unbound = 1,
        /// Connected to a remote domain.
        Interdomain = 2,
        /// Bound to a physical IRQ.
        Pirq = 3,
        /// Bound to a virtual IRQ.
        Virq = 4,
        /// Bound to a virtual IPI.
        Ipi = 5,
    }
}

/// The C union `u` of `struct evtchn_status`, flattened: `dom` is
/// `unbound.dom` and `interdomain.dom`, `port` is `interdomain.port`,
/// and the `pirq`/`virq` members are the first 32-bit word (`dom` and
/// `pad` together, little-endian) — use [`EvtchnStatus`]'s accessors.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnStatusU {
    pub dom: DomId,
    pub pad: u16,
    pub port: EvtchnPort,
}

/// `struct evtchn_status`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnStatus {
    /// In.
    pub dom: DomId,
    pub pad: u16,
    /// In.
    pub port: EvtchnPort,
    /// Out: an [`EvtchnStat`].
    pub status: u32,
    /// Out: the vCPU the port notifies.
    pub vcpu: u32,
    /// Out: depends on `status`.
    pub u: EvtchnStatusU,
}

impl EvtchnStatus {
    /// `u.unbound.dom`: who may bind (status Unbound).
    pub const fn unbound_dom(&self) -> DomId {
        self.u.dom
    }

    /// `u.interdomain`: the remote end (status Interdomain).
    pub const fn interdomain(&self) -> (DomId, EvtchnPort) {
        (self.u.dom, self.u.port)
    }

    /// `u.pirq` / `u.virq`: the union's first word (status Pirq, Virq).
    pub const fn irq(&self) -> u32 {
        self.u.dom as u32 | (self.u.pad as u32) << 16
    }

    /// Fills the output for a closed port.
    pub fn set_closed(&mut self, vcpu: u32) {
        self.set(EvtchnStat::Closed, vcpu, EvtchnStatusU::default());
    }

    /// Fills the output for an unbound port `remote_dom` may bind.
    pub fn set_unbound(&mut self, vcpu: u32, remote_dom: DomId) {
        let u = EvtchnStatusU {
            dom: remote_dom,
            ..Default::default()
        };
        self.set(EvtchnStat::Unbound, vcpu, u);
    }

    /// Fills the output for a port connected to `remote_dom:remote_port`.
    pub fn set_interdomain(&mut self, vcpu: u32, remote_dom: DomId, remote_port: EvtchnPort) {
        let u = EvtchnStatusU {
            dom: remote_dom,
            pad: 0,
            port: remote_port,
        };
        self.set(EvtchnStat::Interdomain, vcpu, u);
    }

    /// Fills the output for a port bound to `virq`.
    pub fn set_virq(&mut self, vcpu: u32, virq: u32) {
        self.set(EvtchnStat::Virq, vcpu, irq_union(virq));
    }

    /// Fills the output for a port bound to `pirq`.
    pub fn set_pirq(&mut self, vcpu: u32, pirq: u32) {
        self.set(EvtchnStat::Pirq, vcpu, irq_union(pirq));
    }

    /// Fills the output for an IPI port.
    pub fn set_ipi(&mut self, vcpu: u32) {
        self.set(EvtchnStat::Ipi, vcpu, EvtchnStatusU::default());
    }

    fn set(&mut self, status: EvtchnStat, vcpu: u32, u: EvtchnStatusU) {
        self.status = status.raw();
        self.vcpu = vcpu;
        self.u = u;
    }
}

/// The union holding a 32-bit pirq/virq in its first word.
const fn irq_union(irq: u32) -> EvtchnStatusU {
    EvtchnStatusU {
        dom: irq as u16,
        pad: (irq >> 16) as u16,
        port: 0,
    }
}

/// `struct evtchn_bind_vcpu`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnBindVcpu {
    pub port: EvtchnPort,
    pub vcpu: u32,
}

/// `struct evtchn_unmask`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnUnmask {
    pub port: EvtchnPort,
}

/// `struct evtchn_reset`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnReset {
    pub dom: DomId,
}

/// `struct evtchn_init_control` (FIFO ABI).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnInitControl {
    pub control_gfn: u64,
    pub offset: u32,
    pub vcpu: u32,
    /// Out.
    pub link_bits: u8,
    pub pad: [u8; 7],
}

/// `struct evtchn_expand_array` (FIFO ABI).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnExpandArray {
    pub array_gfn: u64,
}

/// `struct evtchn_set_priority` (FIFO ABI).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct EvtchnSetPriority {
    pub port: EvtchnPort,
    pub priority: u32,
}

abi_enum! {
    /// `VIRQ_*` (xen.h).
    pub enum Virq: u32 {
        /// Per-vCPU: timebase update and/or requested timeout.
        Timer = 0,
        /// Per-vCPU: dump debug info.
        Debug = 1,
        /// Global: bytes received on the emergency (hypervisor) console.
        Console = 2,
        /// Global: exceptional event for some domain.
        DomExc = 3,
        /// Global: trace buffer has records.
        Tbuf = 4,
        /// Global: a domain paused for debugging.
        Debugger = 6,
        /// Per-vCPU: XenOprofile sample.
        Xenoprof = 7,
        /// Global: bytes received on the console.
        ConRing = 8,
        /// Global: a physical CPU changed state.
        PcpuState = 9,
        /// Global: a memory event.
        MemEvent = 10,
        /// Per-domain: Argo message notification.
        Argo = 11,
        /// Global: low on heap memory.
        Enomem = 12,
        /// Per-vCPU: PMC interrupt.
        Xenpmu = 13,
        Arch0 = 16,
        Arch1 = 17,
        Arch2 = 18,
        Arch3 = 19,
        Arch4 = 20,
        Arch5 = 21,
        Arch6 = 22,
        Arch7 = 23,
    }
}

impl Virq {
    /// Whether the VIRQ is per-vCPU ("V." in xen.h): bindable once per
    /// vCPU and never re-bound. Global ones bind once per domain, to vCPU
    /// 0 first.
    pub const fn is_per_vcpu(self) -> bool {
        matches!(
            self,
            Virq::Timer | Virq::Debug | Virq::Xenoprof | Virq::Xenpmu
        )
    }
}

/// `NR_VIRQS`: VIRQ numbers are below this.
pub const NR_VIRQS: u32 = 24;

/// `EVTCHN_2L_NR_CHANNELS` on x86_64 (`NR_EVENT_CHANNELS`): 64 words of
/// 64 bits.
pub const EVTCHN_2L_NR_CHANNELS: u32 = 64 * 64;
/// Alias of [`EVTCHN_2L_NR_CHANNELS`] (`NR_EVENT_CHANNELS`).
pub const NR_EVENT_CHANNELS: u32 = EVTCHN_2L_NR_CHANNELS;
/// Bits per word of the 2-level bitmaps and of `evtchn_pending_sel`.
pub const EVTCHN_BITS_PER_WORD: u32 = 64;

/// Where port `port` lives in the 2-level bitmaps: (word index — also the
/// bit index in `evtchn_pending_sel` — and bit mask within the word).
/// `None` for a port outside the 2-level ABI.
pub const fn port_word_bit(port: EvtchnPort) -> Option<(usize, u64)> {
    if port >= EVTCHN_2L_NR_CHANNELS {
        return None;
    }
    Some((
        (port / EVTCHN_BITS_PER_WORD) as usize,
        1 << (port % EVTCHN_BITS_PER_WORD),
    ))
}

/// `EVTCHN_FIFO_PRIORITY_MAX` (highest).
pub const EVTCHN_FIFO_PRIORITY_MAX: u32 = 0;
/// `EVTCHN_FIFO_PRIORITY_DEFAULT`.
pub const EVTCHN_FIFO_PRIORITY_DEFAULT: u32 = 7;
/// `EVTCHN_FIFO_PRIORITY_MIN` (lowest).
pub const EVTCHN_FIFO_PRIORITY_MIN: u32 = 15;
/// `EVTCHN_FIFO_NR_CHANNELS`.
pub const EVTCHN_FIFO_NR_CHANNELS: u32 = 1 << 17;

/// The indices of the set bits of a 2-level bitmap word (a pending or
/// selector word), lowest first: an upcall visits only the ports that are
/// pending, not all 64 × 64.
pub fn set_bits(mut bits: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        (bits != 0).then(|| {
            let bit = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            bit
        })
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn set_bits_visits_each_set_bit_in_order() {
        let mut bits = super::set_bits(0x8000_0000_0000_0005);
        assert_eq!(
            (bits.next(), bits.next(), bits.next()),
            (Some(0), Some(2), Some(63))
        );
        assert_eq!(bits.next(), None);
        assert_eq!(super::set_bits(0).count(), 0);
        assert_eq!(super::set_bits(u64::MAX).count(), 64);
    }

    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn op_numbers() {
        assert_eq!(EvtchnOp::BindInterdomain.raw(), 0);
        assert_eq!(EvtchnOp::BindVirq.raw(), 1);
        assert_eq!(EvtchnOp::Close.raw(), 3);
        assert_eq!(EvtchnOp::Send.raw(), 4);
        assert_eq!(EvtchnOp::Status.raw(), 5);
        assert_eq!(EvtchnOp::AllocUnbound.raw(), 6);
        assert_eq!(EvtchnOp::BindIpi.raw(), 7);
        assert_eq!(EvtchnOp::BindVcpu.raw(), 8);
        assert_eq!(EvtchnOp::Unmask.raw(), 9);
        assert_eq!(EvtchnOp::SetPriority.raw(), 13);
        assert_eq!(EvtchnOp::try_from(14), Err(14));
        assert_eq!(EvtchnOp::from_reg(6), Some(EvtchnOp::AllocUnbound));
        assert_eq!(EvtchnOp::from_reg(1 << 32 | 6), None);
        assert_eq!(EvtchnStat::Closed.raw(), 0);
        assert_eq!(EvtchnStat::Unbound.raw(), 1);
        assert_eq!(EvtchnStat::Interdomain.raw(), 2);
        assert_eq!(EvtchnStat::Ipi.raw(), 5);
    }

    #[test]
    fn virqs() {
        assert_eq!(Virq::Timer.raw(), 0);
        assert_eq!(Virq::Debug.raw(), 1);
        assert_eq!(Virq::Console.raw(), 2);
        assert_eq!(Virq::Debugger.raw(), 6);
        assert_eq!(Virq::Xenpmu.raw(), 13);
        assert_eq!(Virq::Arch7.raw(), 23);
        assert_eq!(Virq::try_from(5), Err(5));
        assert_eq!(Virq::try_from(14), Err(14));
        assert!(Virq::ALL.iter().all(|v| v.raw() < NR_VIRQS));
        assert!(Virq::Timer.is_per_vcpu());
        assert!(!Virq::Console.is_per_vcpu());
    }

    #[test]
    fn two_level_ports() {
        assert_eq!(NR_EVENT_CHANNELS, 4096);
        assert_eq!(port_word_bit(0), Some((0, 1)));
        assert_eq!(port_word_bit(65), Some((1, 2)));
        assert_eq!(port_word_bit(4095), Some((63, 1 << 63)));
        assert_eq!(port_word_bit(4096), None);
        assert_eq!(port_word_bit(u32::MAX), None);
    }

    #[test]
    fn layouts() {
        assert_eq!(size_of::<EvtchnAllocUnbound>(), 8);
        assert_eq!(offset_of!(EvtchnAllocUnbound, dom), 0);
        assert_eq!(offset_of!(EvtchnAllocUnbound, remote_dom), 2);
        assert_eq!(offset_of!(EvtchnAllocUnbound, port), 4);
        assert_eq!(size_of::<EvtchnBindInterdomain>(), 12);
        assert_eq!(offset_of!(EvtchnBindInterdomain, remote_dom), 0);
        assert_eq!(offset_of!(EvtchnBindInterdomain, remote_port), 4);
        assert_eq!(offset_of!(EvtchnBindInterdomain, local_port), 8);
        assert_eq!(size_of::<EvtchnBindVirq>(), 12);
        assert_eq!(offset_of!(EvtchnBindVirq, vcpu), 4);
        assert_eq!(offset_of!(EvtchnBindVirq, port), 8);
        assert_eq!(size_of::<EvtchnBindPirq>(), 12);
        assert_eq!(offset_of!(EvtchnBindPirq, port), 8);
        assert_eq!(size_of::<EvtchnBindIpi>(), 8);
        assert_eq!(offset_of!(EvtchnBindIpi, port), 4);
        assert_eq!(size_of::<EvtchnClose>(), 4);
        assert_eq!(size_of::<EvtchnSend>(), 4);
        assert_eq!(size_of::<EvtchnStatusU>(), 8);
        assert_eq!(offset_of!(EvtchnStatusU, port), 4);
        assert_eq!(size_of::<EvtchnStatus>(), 24);
        assert_eq!(offset_of!(EvtchnStatus, dom), 0);
        assert_eq!(offset_of!(EvtchnStatus, port), 4);
        assert_eq!(offset_of!(EvtchnStatus, status), 8);
        assert_eq!(offset_of!(EvtchnStatus, vcpu), 12);
        assert_eq!(offset_of!(EvtchnStatus, u), 16);
        assert_eq!(size_of::<EvtchnBindVcpu>(), 8);
        assert_eq!(offset_of!(EvtchnBindVcpu, vcpu), 4);
        assert_eq!(size_of::<EvtchnUnmask>(), 4);
        assert_eq!(size_of::<EvtchnReset>(), 2);
        assert_eq!(size_of::<EvtchnInitControl>(), 24);
        assert_eq!(offset_of!(EvtchnInitControl, offset), 8);
        assert_eq!(offset_of!(EvtchnInitControl, vcpu), 12);
        assert_eq!(offset_of!(EvtchnInitControl, link_bits), 16);
        assert_eq!(size_of::<EvtchnExpandArray>(), 8);
        assert_eq!(size_of::<EvtchnSetPriority>(), 8);
    }

    #[test]
    fn status_union_bytes() {
        let mut st = EvtchnStatus::default();
        st.set_interdomain(1, 7, 42);
        let b = st.as_bytes();
        assert_eq!(&b[8..12], &2u32.to_le_bytes());
        assert_eq!(&b[12..16], &1u32.to_le_bytes());
        assert_eq!(&b[16..18], &7u16.to_le_bytes());
        assert_eq!(&b[20..24], &42u32.to_le_bytes());
        assert_eq!(st.interdomain(), (7, 42));
        st.set_virq(0, 0x0001_0002);
        // u.virq is the u32 at offset 16.
        assert_eq!(&st.as_bytes()[16..20], &0x0001_0002u32.to_le_bytes());
        assert_eq!(st.irq(), 0x0001_0002);
        assert_eq!(st.status, EvtchnStat::Virq.raw());
        st.set_unbound(0, 3);
        assert_eq!(st.unbound_dom(), 3);
        assert_eq!(st.u.port, 0);
    }
}
