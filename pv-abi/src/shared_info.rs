//! The shared_info page and per-vCPU `vcpu_info` (xen.h,
//! arch-x86/xen.h, arch-x86/xen-x86_64.h): upcall flags, the 2-level event
//! channel bitmaps, wallclock, and the pvclock `vcpu_time_info` with its
//! scaling arithmetic.
//!
//! A PVH guest maps the page with XENMEM_add_to_physmap
//! (XENMAPSPACE_shared_info). [`SharedInfo`] is the C struct (0xC40 bytes);
//! the rest of the page is unused.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `XEN_LEGACY_MAX_VCPUS`: `vcpu_info` slots in the shared_info page.
/// Higher vCPUs must use VCPUOP_register_vcpu_info.
pub const XEN_LEGACY_MAX_VCPUS: usize = 32;

/// `XEN_PVCLOCK_TSC_STABLE_BIT`: the TSC is stable across vCPUs.
pub const XEN_PVCLOCK_TSC_STABLE_BIT: u8 = 1 << 0;
/// `XEN_PVCLOCK_GUEST_STOPPED`: the guest was paused.
pub const XEN_PVCLOCK_GUEST_STOPPED: u8 = 1 << 1;

/// `struct vcpu_time_info` (pvclock). Updated under a version counter:
/// odd while an update is in progress.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuTimeInfo {
    pub version: u32,
    pub pad0: u32,
    /// TSC at the last update.
    pub tsc_timestamp: u64,
    /// System time (ns since boot) at the last update.
    pub system_time: u64,
    /// ns = ((tsc delta << tsc_shift) * tsc_to_system_mul) >> 32.
    pub tsc_to_system_mul: u32,
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*`.
    pub flags: u8,
    pub pad1: [u8; 2],
}

impl VcpuTimeInfo {
    /// System time (ns) at TSC value `tsc`, as a guest computes it.
    pub const fn system_time_at(&self, tsc: u64) -> u64 {
        let delta = tsc.wrapping_sub(self.tsc_timestamp);
        self.system_time
            .wrapping_add(scale_delta(delta, self.tsc_to_system_mul, self.tsc_shift))
    }
}

/// Scales a TSC delta to ns: `((delta << shift) * mul) >> 32`, shifting
/// right for a negative shift, with a 128-bit product.
pub const fn scale_delta(delta: u64, mul: u32, shift: i8) -> u64 {
    let shifted = if shift >= 0 {
        delta << (shift as u32 & 63)
    } else {
        delta >> ((-(shift as i32)) as u32 & 63)
    };
    ((shifted as u128 * mul as u128) >> 32) as u64
}

/// The pvclock scale for a TSC running at `tsc_hz`: `(mul, shift)` such
/// that [`scale_delta`] turns ticks into ns, computed as Xen's
/// `set_time_scale` does. `None` for 0 Hz.
pub const fn time_scale(tsc_hz: u64) -> Option<(u32, i8)> {
    const NS_PER_SEC: u64 = 1_000_000_000;
    if tsc_hz == 0 {
        return None;
    }
    let mut tps = tsc_hz;
    let mut shift: i8 = 0;
    while tps > NS_PER_SEC * 2 {
        tps >>= 1;
        shift -= 1;
    }
    while tps <= NS_PER_SEC {
        tps <<= 1;
        shift += 1;
    }
    // NS_PER_SEC < tps <= 2 * NS_PER_SEC, so the fraction is in [1/2, 1).
    let mul = (NS_PER_SEC << 32) / tps;
    Some((mul as u32, shift))
}

/// `struct arch_vcpu_info` (x86_64).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ArchVcpuInfo {
    pub cr2: u64,
    pub pad: u64,
}

/// `struct vcpu_info` (64 bytes).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct VcpuInfo {
    /// Set by the hypervisor when an unmasked event became pending;
    /// cleared by the guest before it scans.
    pub evtchn_upcall_pending: u8,
    /// Nonzero: no upcall is delivered.
    pub evtchn_upcall_mask: u8,
    pub pad0: [u8; 6],
    /// Bit i: word i of `evtchn_pending` may have pending unmasked ports.
    pub evtchn_pending_sel: u64,
    pub arch: ArchVcpuInfo,
    pub time: VcpuTimeInfo,
}

/// `struct arch_shared_info` (x86_64).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct ArchSharedInfo {
    pub max_pfn: u64,
    pub pfn_to_mfn_frame_list_list: u64,
    pub nmi_reason: u64,
    pub p2m_cr3: u64,
    pub p2m_vaddr: u64,
    pub p2m_generation: u64,
}

/// Words in each 2-level event bitmap (`sizeof(xen_ulong_t) * 8`).
pub const EVTCHN_WORDS: usize = 64;

/// `struct shared_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SharedInfo {
    pub vcpu_info: [VcpuInfo; XEN_LEGACY_MAX_VCPUS],
    /// Port p is pending iff bit p % 64 of word p / 64 is set.
    pub evtchn_pending: [u64; EVTCHN_WORDS],
    /// Port p is masked iff bit p % 64 of word p / 64 is set.
    pub evtchn_mask: [u64; EVTCHN_WORDS],
    /// Wallclock version counter (as [`VcpuTimeInfo::version`]).
    pub wc_version: u32,
    /// Wallclock at system time 0: seconds since the epoch (low 32 bits).
    pub wc_sec: u32,
    pub wc_nsec: u32,
    /// High 32 bits of the wallclock seconds.
    pub wc_sec_hi: u32,
    pub arch: ArchSharedInfo,
}

zeroed_default!(SharedInfo);

/// Offset of `evtchn_pending` in the page.
pub const SHARED_INFO_EVTCHN_PENDING: usize = 0x800;
/// Offset of `evtchn_mask` in the page.
pub const SHARED_INFO_EVTCHN_MASK: usize = 0xa00;
/// Offset of the wallclock fields (`wc_version`) in the page.
pub const SHARED_INFO_WC_VERSION: usize = 0xc00;
/// Offset of `arch` in the page.
pub const SHARED_INFO_ARCH: usize = 0xc10;
/// `sizeof(struct shared_info)` on x86_64.
pub const SHARED_INFO_SIZE: usize = 0xc40;

impl SharedInfo {
    /// The wallclock seconds (`wc_sec_hi:wc_sec`).
    pub const fn wc_seconds(&self) -> u64 {
        (self.wc_sec_hi as u64) << 32 | self.wc_sec as u64
    }

    /// Sets `wc_sec` and `wc_sec_hi` from a 64-bit seconds value.
    pub fn set_wc_seconds(&mut self, sec: u64) {
        self.wc_sec = sec as u32;
        self.wc_sec_hi = (sec >> 32) as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn vcpu_time_info_layout() {
        assert_eq!(size_of::<VcpuTimeInfo>(), 32);
        assert_eq!(offset_of!(VcpuTimeInfo, version), 0);
        assert_eq!(offset_of!(VcpuTimeInfo, pad0), 4);
        assert_eq!(offset_of!(VcpuTimeInfo, tsc_timestamp), 8);
        assert_eq!(offset_of!(VcpuTimeInfo, system_time), 16);
        assert_eq!(offset_of!(VcpuTimeInfo, tsc_to_system_mul), 24);
        assert_eq!(offset_of!(VcpuTimeInfo, tsc_shift), 28);
        assert_eq!(offset_of!(VcpuTimeInfo, flags), 29);
        assert_eq!(offset_of!(VcpuTimeInfo, pad1), 30);
    }

    #[test]
    fn vcpu_info_layout() {
        assert_eq!(size_of::<ArchVcpuInfo>(), 16);
        assert_eq!(offset_of!(ArchVcpuInfo, pad), 8);
        assert_eq!(size_of::<VcpuInfo>(), 64);
        assert_eq!(offset_of!(VcpuInfo, evtchn_upcall_pending), 0);
        assert_eq!(offset_of!(VcpuInfo, evtchn_upcall_mask), 1);
        assert_eq!(offset_of!(VcpuInfo, evtchn_pending_sel), 8);
        assert_eq!(offset_of!(VcpuInfo, arch), 16);
        assert_eq!(offset_of!(VcpuInfo, time), 32);
    }

    #[test]
    fn shared_info_layout() {
        assert_eq!(size_of::<ArchSharedInfo>(), 48);
        assert_eq!(offset_of!(ArchSharedInfo, p2m_generation), 40);
        assert_eq!(offset_of!(SharedInfo, vcpu_info), 0);
        assert_eq!(offset_of!(SharedInfo, evtchn_pending), 0x800);
        assert_eq!(offset_of!(SharedInfo, evtchn_mask), 0xa00);
        assert_eq!(offset_of!(SharedInfo, wc_version), 0xc00);
        assert_eq!(offset_of!(SharedInfo, wc_sec), 0xc04);
        assert_eq!(offset_of!(SharedInfo, wc_nsec), 0xc08);
        assert_eq!(offset_of!(SharedInfo, wc_sec_hi), 0xc0c);
        assert_eq!(offset_of!(SharedInfo, arch), 0xc10);
        assert_eq!(size_of::<SharedInfo>(), 0xc40);
        assert_eq!(
            SHARED_INFO_EVTCHN_PENDING,
            offset_of!(SharedInfo, evtchn_pending)
        );
        assert_eq!(SHARED_INFO_EVTCHN_MASK, offset_of!(SharedInfo, evtchn_mask));
        assert_eq!(SHARED_INFO_WC_VERSION, offset_of!(SharedInfo, wc_version));
        assert_eq!(SHARED_INFO_ARCH, offset_of!(SharedInfo, arch));
        assert_eq!(SHARED_INFO_SIZE, size_of::<SharedInfo>());
        const { assert!(SHARED_INFO_SIZE <= crate::PAGE_SIZE) };
    }

    #[test]
    fn shared_info_from_page() {
        let mut page = [0u8; crate::PAGE_SIZE];
        page[0x800] = 0b101; // ports 0 and 2 pending
        page[0xa00 + 8] = 1; // port 64 masked
        page[0x40] = 1; // vcpu 1 upcall pending
        page[0xc04..0xc08].copy_from_slice(&7u32.to_le_bytes());
        let (si, _) = SharedInfo::read_from_prefix(&page[..]).unwrap();
        assert_eq!(si.evtchn_pending[0], 0b101);
        assert_eq!(si.evtchn_mask[1], 1);
        assert_eq!(si.vcpu_info[1].evtchn_upcall_pending, 1);
        assert_eq!(si.vcpu_info[0].evtchn_upcall_pending, 0);
        assert_eq!(si.wc_seconds(), 7);
        let mut si = SharedInfo::default();
        si.set_wc_seconds(0x1_0000_0002);
        assert_eq!((si.wc_sec, si.wc_sec_hi), (2, 1));
    }

    #[test]
    fn pvclock_scaling() {
        // 1 GHz exactly: 1 tick = 1 ns.
        let (mul, shift) = time_scale(1_000_000_000).unwrap();
        assert_eq!((mul, shift), (0x8000_0000, 1));
        assert_eq!(scale_delta(12345, mul, shift), 12345);
        // 3 GHz: one second of ticks is one second of ns, within 1 ns.
        let (mul, shift) = time_scale(3_000_000_000).unwrap();
        assert_eq!(shift, -1);
        let ns = scale_delta(3_000_000_000, mul, shift);
        assert!(ns.abs_diff(1_000_000_000) <= 1, "{ns}");
        // 100 MHz: shift is positive.
        let (mul, shift) = time_scale(100_000_000).unwrap();
        assert_eq!(shift, 4);
        let ns = scale_delta(100_000_000, mul, shift);
        assert!(ns.abs_diff(1_000_000_000) <= 1, "{ns}");
        assert_eq!(time_scale(0), None);
        let t = VcpuTimeInfo {
            tsc_timestamp: 1000,
            system_time: 5_000,
            tsc_to_system_mul: 0x8000_0000,
            tsc_shift: 1,
            ..Default::default()
        };
        assert_eq!(t.system_time_at(1500), 5_500);
    }
}
