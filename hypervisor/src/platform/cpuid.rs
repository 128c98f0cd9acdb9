//! The CPUID a guest sees: the host's leaves, filtered down to what Pavise
//! really provides to a PVH domain, plus Xen's hypervisor leaves.
//!
//! The rule (as in Xen's CPUID policy for PVH guests) is that a feature is
//! advertised only if it works: Pavise emulates a local APIC (xAPIC and
//! x2APIC), MTRR and PAT MSRs, TSC_AUX; it context-switches only the XSAVE
//! components in `xcr0_supported`; it offers no machine-check architecture,
//! no performance counters beyond the K7 ones that read as zero, no nested
//! virtualization, no MONITOR/MWAIT, no PKU and no speculation-control MSRs.
//! Bits that mirror guest state (OSXSAVE, OSPKE) come from the guest's CR4,
//! not from the host's. Pure logic: the host's leaves come in through a
//! function so that host tests can feed any CPU.

use bitflags::bitflags;

/// Where Xen's leaves start, and the highest one Pavise answers.
pub const XEN_CPUID_BASE: u32 = 0x4000_0000;
pub const XEN_CPUID_MAX: u32 = XEN_CPUID_BASE + 5;
/// "XenVMMXenVMM" in EBX, ECX, EDX.
pub const XEN_SIGNATURE: [u32; 3] = [0x566e_6558, 0x6558_4d4d, 0x4d4d_566e];
/// Xen's hypercall-page MSR, as leaf base+2 names it.
pub const MSR_HYPERCALL_PAGE: u32 = 0x4000_0000;
/// Xen version Pavise presents to guests.
pub const XEN_VERSION_MAJOR: u32 = 4;
pub const XEN_VERSION_MINOR: u32 = 19;
/// Highest standard leaf a guest is offered (0xd: XSAVE), as Xen does for
/// this host; leaves above it read as zero.
pub const MAX_STANDARD_LEAF: u32 = 0xd;

bitflags! {
    /// Leaf 1 ECX.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Leaf1Ecx: u32 {
        const SSE3 = 1 << 0;
        const PCLMULQDQ = 1 << 1;
        const DTES64 = 1 << 2;
        const MONITOR = 1 << 3;
        const DS_CPL = 1 << 4;
        const VMX = 1 << 5;
        const SMX = 1 << 6;
        const EST = 1 << 7;
        const TM2 = 1 << 8;
        const PDCM = 1 << 15;
        const X2APIC = 1 << 21;
        const TSC_DEADLINE = 1 << 24;
        const XSAVE = 1 << 26;
        const OSXSAVE = 1 << 27;
        const AVX = 1 << 28;
        const HYPERVISOR = 1 << 31;
    }

    /// Leaf 1 EDX.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Leaf1Edx: u32 {
        const MCE = 1 << 7;
        const APIC = 1 << 9;
        const MTRR = 1 << 12;
        const MCA = 1 << 14;
        const PAT = 1 << 16;
        const DS = 1 << 21;
        const ACPI = 1 << 22;
        const TM = 1 << 29;
        const PBE = 1 << 31;
    }

    /// Leaf 7 subleaf 0 EBX.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Leaf7Ebx: u32 {
        const TSC_ADJUST = 1 << 1;
        const SGX = 1 << 2;
        const HLE = 1 << 4;
        const RTM = 1 << 11;
        const PQM = 1 << 12;
        const MPX = 1 << 14;
        const PQE = 1 << 15;
        const AVX512F = 1 << 16;
        const AVX512DQ = 1 << 17;
        const AVX512IFMA = 1 << 21;
        const INTEL_PT = 1 << 25;
        const AVX512PF = 1 << 26;
        const AVX512ER = 1 << 27;
        const AVX512CD = 1 << 28;
        const AVX512BW = 1 << 30;
        const AVX512VL = 1 << 31;
    }

    /// Leaf 7 subleaf 0 ECX.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Leaf7Ecx: u32 {
        const AVX512VBMI = 1 << 1;
        const PKU = 1 << 3;
        const OSPKE = 1 << 4;
        const WAITPKG = 1 << 5;
        const AVX512VBMI2 = 1 << 6;
        const AVX512VNNI = 1 << 11;
        const AVX512BITALG = 1 << 12;
        const AVX512VPOPCNTDQ = 1 << 14;
        const LA57 = 1 << 16;
        const RDPID = 1 << 22;
        const SGX_LC = 1 << 30;
        const PKS = 1 << 31;
    }

    /// Leaf 7 subleaf 0 EDX: Pavise keeps only these.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Leaf7Edx: u32 {
        const FSRM = 1 << 4;
        /// IA32_ARCH_CAPABILITIES exists; Pavise answers it with 0, as Xen.
        const ARCH_CAPABILITIES = 1 << 29;
    }

    /// Leaf 0x80000001 ECX.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct ExtLeaf1Ecx: u32 {
        const SVM = 1 << 2;
        const EXTAPIC = 1 << 3;
        const OSVW = 1 << 9;
        const IBS = 1 << 10;
        const SKINIT = 1 << 12;
        const WDT = 1 << 13;
        const LWP = 1 << 15;
        const NODEID = 1 << 19;
        const TOPOEXT = 1 << 22;
        const PERFCTR_CORE = 1 << 23;
        const PERFCTR_NB = 1 << 24;
        const DBX = 1 << 26;
        const PERFTSC = 1 << 27;
        const PERFCTR_LLC = 1 << 28;
        const MONITORX = 1 << 29;
    }

    /// Leaf 0xd subleaf 1 EAX.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct XsaveFeatures: u32 {
        const XSAVEOPT = 1 << 0;
        const XSAVEC = 1 << 1;
        const XGETBV1 = 1 << 2;
        const XSAVES = 1 << 3;
        const XFD = 1 << 4;
    }

    /// Xen's leaf base+4 EAX (arch-x86/cpuid.h).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct XenHvmFeatures: u32 {
        const VCPU_ID_PRESENT = 1 << 3;
        const DOMID_PRESENT = 1 << 4;
        /// HVMOP_set_evtchn_upcall_vector works per vCPU.
        const UPCALL_VECTOR = 1 << 6;
    }
}

/// Leaf 0x80000008 EBX bits Pavise keeps: CLZERO, XSAVEERPTR, WBNOINVD.
/// The speculation controls (IBPB, IBRS, STIBP, SSBD, …) are MSRs Pavise
/// does not provide.
const EXT8_EBX_KEPT: u32 = (1 << 0) | (1 << 2) | (1 << 9);
/// Leaf 6 (power management) and the topology leaves are not offered.
const CR4_OSXSAVE: u64 = 1 << 18;
const CR4_PKE: u64 = 1 << 22;

/// What the policy needs to know about the asking vCPU.
#[derive(Clone, Copy, Debug)]
pub struct VcpuView {
    pub vcpu: u32,
    pub domid: u16,
    /// The initial APIC id of this vCPU (Xen: 2 × vCPU id).
    pub apic_id: u32,
    pub vcpus: u32,
    /// The guest's CR4 and XCR0 at the CPUID.
    pub cr4: u64,
    pub xcr0: u64,
    /// The XSAVE components the hypervisor context-switches.
    pub xcr0_supported: u64,
}

/// The APIC id Xen gives vCPU `vcpu` (and the MADT of its ACPI tables).
pub const fn apic_id_of(vcpu: u32) -> u32 {
    vcpu * 2
}

/// The leaf a guest sees, given the host's CPUID as `host(leaf, subleaf)`.
pub fn guest_leaf(
    host: impl Fn(u32, u32) -> [u32; 4],
    v: &VcpuView,
    leaf: u32,
    sub: u32,
) -> [u32; 4] {
    let max_ext = host(0x8000_0000, 0)[0];
    match leaf {
        0 => {
            let [_, b, c, d] = host(0, 0);
            [MAX_STANDARD_LEAF, b, c, d]
        }
        1 => leaf1(host(1, 0), v),
        7 if sub == 0 => leaf7(host(7, 0), v),
        0xd => xsave_leaf(&host, v, sub),
        2..=MAX_STANDARD_LEAF => match leaf {
            // Cache descriptors and the brand of leaf 2/4 are harmless;
            // power management (6), topology (0xb), the PMU (0xa), cache
            // allocation (0x10) and the rest are not offered.
            2 => host(2, 0),
            _ => [0; 4],
        },
        XEN_CPUID_BASE..=0x4fff_ffff => xen_leaf(v, leaf),
        0x8000_0000 => {
            let [a, b, c, d] = host(leaf, 0);
            [a.min(0x8000_0021), b, c, d]
        }
        0x8000_0001 => {
            let [a, b, c, d] = host(leaf, sub);
            let hidden = ExtLeaf1Ecx::all().bits();
            [a, b, c & !hidden, d]
        }
        0x8000_0002..=0x8000_0006 if leaf <= max_ext => host(leaf, sub),
        0x8000_0008 if leaf <= max_ext => {
            let [a, b, _, d] = host(leaf, sub);
            // ECX (core counts, APIC id size) would describe the host.
            [a, b & EXT8_EBX_KEPT, 0, d]
        }
        // Advanced power management (invariant TSC): Xen offers none.
        // SVM (0x8000000a), topology (0x8000001e), SEV (0x8000001f):
        // not for guests.
        _ => [0; 4],
    }
}

fn leaf1([a, b, c, d]: [u32; 4], v: &VcpuView) -> [u32; 4] {
    let hide_c = Leaf1Ecx::DTES64
        | Leaf1Ecx::MONITOR
        | Leaf1Ecx::DS_CPL
        | Leaf1Ecx::VMX
        | Leaf1Ecx::SMX
        | Leaf1Ecx::EST
        | Leaf1Ecx::TM2
        | Leaf1Ecx::PDCM
        | Leaf1Ecx::TSC_DEADLINE
        | Leaf1Ecx::OSXSAVE;
    let mut c = (Leaf1Ecx::from_bits_retain(c) - hide_c) | Leaf1Ecx::X2APIC | Leaf1Ecx::HYPERVISOR;
    if v.xcr0_supported == 0 {
        c -= Leaf1Ecx::XSAVE | Leaf1Ecx::AVX;
    } else if v.xcr0_supported & XCR0_AVX == 0 {
        c -= Leaf1Ecx::AVX;
    }
    if c.contains(Leaf1Ecx::XSAVE) && v.cr4 & CR4_OSXSAVE != 0 {
        c |= Leaf1Ecx::OSXSAVE;
    }
    let hide_d = Leaf1Edx::MCE
        | Leaf1Edx::MCA
        | Leaf1Edx::DS
        | Leaf1Edx::ACPI
        | Leaf1Edx::TM
        | Leaf1Edx::PBE;
    let d =
        (Leaf1Edx::from_bits_retain(d) - hide_d) | Leaf1Edx::APIC | Leaf1Edx::MTRR | Leaf1Edx::PAT;
    // EBX: brand index, CLFLUSH size, logical processor count (kept) and
    // the initial APIC id in bits 31:24.
    let b = (b & 0x00ff_ffff) | (v.apic_id << 24);
    [a, b, c.bits(), d.bits()]
}

const XCR0_AVX: u64 = 1 << 2;
const XCR0_AVX512: u64 = 0b111 << 5;

fn leaf7([_, b, c, d]: [u32; 4], v: &VcpuView) -> [u32; 4] {
    let mut hide_b = Leaf7Ebx::TSC_ADJUST
        | Leaf7Ebx::SGX
        | Leaf7Ebx::HLE
        | Leaf7Ebx::RTM
        | Leaf7Ebx::PQM
        | Leaf7Ebx::MPX
        | Leaf7Ebx::PQE
        | Leaf7Ebx::INTEL_PT;
    let mut hide_c = Leaf7Ecx::PKU
        | Leaf7Ecx::OSPKE
        | Leaf7Ecx::WAITPKG
        | Leaf7Ecx::LA57
        | Leaf7Ecx::SGX_LC
        | Leaf7Ecx::PKS;
    if v.xcr0_supported & XCR0_AVX512 != XCR0_AVX512 {
        hide_b |= Leaf7Ebx::AVX512F
            | Leaf7Ebx::AVX512DQ
            | Leaf7Ebx::AVX512IFMA
            | Leaf7Ebx::AVX512PF
            | Leaf7Ebx::AVX512ER
            | Leaf7Ebx::AVX512CD
            | Leaf7Ebx::AVX512BW
            | Leaf7Ebx::AVX512VL;
        hide_c |= Leaf7Ecx::AVX512VBMI
            | Leaf7Ecx::AVX512VBMI2
            | Leaf7Ecx::AVX512VNNI
            | Leaf7Ecx::AVX512BITALG
            | Leaf7Ecx::AVX512VPOPCNTDQ;
    }
    if v.xcr0_supported & XCR0_AVX == 0 {
        // AVX2 and friends need the AVX state.
        hide_b |= Leaf7Ebx::from_bits_retain(1 << 5);
    }
    let b = Leaf7Ebx::from_bits_retain(b) - hide_b;
    let mut c = Leaf7Ecx::from_bits_retain(c) - hide_c;
    if v.cr4 & CR4_PKE != 0 && c.contains(Leaf7Ecx::PKU) {
        c |= Leaf7Ecx::OSPKE;
    }
    let d = (Leaf7Edx::from_bits_truncate(d) & Leaf7Edx::FSRM) | Leaf7Edx::ARCH_CAPABILITIES;
    // EAX: the highest subleaf; only subleaf 0 is offered.
    [0, b.bits(), c.bits(), d.bits()]
}

/// Leaf 0xd: only the components the hypervisor saves and restores.
fn xsave_leaf(host: &impl Fn(u32, u32) -> [u32; 4], v: &VcpuView, sub: u32) -> [u32; 4] {
    if v.xcr0_supported == 0 {
        return [0; 4];
    }
    let size_of = |mask: u64| -> u32 {
        // The legacy area and header (576 bytes), then each enabled
        // component at its standard offset.
        (2..64)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| {
                let [size, offset, _, _] = host(0xd, i);
                offset.saturating_add(size)
            })
            .fold(576, u32::max)
    };
    match sub {
        0 => [
            v.xcr0_supported as u32,
            size_of(v.xcr0 & v.xcr0_supported),
            size_of(v.xcr0_supported),
            (v.xcr0_supported >> 32) as u32,
        ],
        1 => {
            let [a, _, _, _] = host(0xd, 1);
            let kept = XsaveFeatures::from_bits_truncate(a)
                & (XsaveFeatures::XSAVEOPT | XsaveFeatures::XSAVEC | XsaveFeatures::XGETBV1);
            // EBX would be the XSAVES size of XCR0 | XSS; no XSAVES.
            [kept.bits(), 0, 0, 0]
        }
        i if i < 64 && v.xcr0_supported & (1 << i) != 0 && i >= 2 => host(0xd, i),
        _ => [0; 4],
    }
}

fn xen_leaf(v: &VcpuView, leaf: u32) -> [u32; 4] {
    match leaf - XEN_CPUID_BASE {
        0 => [
            XEN_CPUID_MAX,
            XEN_SIGNATURE[0],
            XEN_SIGNATURE[1],
            XEN_SIGNATURE[2],
        ],
        1 => [(XEN_VERSION_MAJOR << 16) | XEN_VERSION_MINOR, 0, 0, 0],
        2 => [1, MSR_HYPERCALL_PAGE, 0, 0],
        4 => [
            (XenHvmFeatures::VCPU_ID_PRESENT
                | XenHvmFeatures::DOMID_PRESENT
                | XenHvmFeatures::UPCALL_VECTOR)
                .bits(),
            v.vcpu,
            v.domid as u32,
            0,
        ],
        // 3: TSC mode and frequency (Xen's "native" mode: zeros where a
        // guest reads no promise); 5 and the +0x100 copies Linux scans for:
        // nothing.
        _ => [0; 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host like QEMU's `-cpu max` on TCG: everything set.
    fn everything(leaf: u32, sub: u32) -> [u32; 4] {
        match (leaf, sub) {
            (0, _) => [0x1f, 0x6874_7541, 0x444d_4163, 0x6974_6e65],
            (0x8000_0000, _) => [0x8000_0023, 0, 0, 0],
            (0xd, 2) => [256, 576, 0, 0],
            (0xd, 9) => [8, 2688, 0, 0],
            (0xd, i) if i > 2 => [64, 832 + 64 * i, 0, 0],
            _ => [u32::MAX; 4],
        }
    }

    fn view(vcpu: u32) -> VcpuView {
        VcpuView {
            vcpu,
            domid: 3,
            apic_id: apic_id_of(vcpu),
            vcpus: 4,
            cr4: 0,
            xcr0: 1,
            xcr0_supported: 0b111,
        }
    }

    #[test]
    fn machine_check_monitor_vmx_and_svm_are_hidden_apic_and_x2apic_shown() {
        let [_, b, c, d] = guest_leaf(everything, &view(3), 1, 0);
        let (c, d) = (Leaf1Ecx::from_bits_retain(c), Leaf1Edx::from_bits_retain(d));
        assert!(!d.intersects(Leaf1Edx::MCE | Leaf1Edx::MCA));
        assert!(d.contains(Leaf1Edx::APIC | Leaf1Edx::MTRR | Leaf1Edx::PAT));
        assert!(!c.intersects(Leaf1Ecx::VMX | Leaf1Ecx::MONITOR | Leaf1Ecx::TSC_DEADLINE));
        assert!(c.contains(Leaf1Ecx::X2APIC | Leaf1Ecx::HYPERVISOR));
        assert_eq!(b >> 24, 6, "APIC id is 2 x vCPU id");
        let ext = guest_leaf(everything, &view(0), 0x8000_0001, 0)[2];
        assert_eq!(ext & ExtLeaf1Ecx::SVM.bits(), 0);
        assert_eq!(guest_leaf(everything, &view(0), 0x8000_000a, 0), [0; 4]);
    }

    #[test]
    fn osxsave_and_ospke_follow_the_guest_cr4() {
        let mut v = view(0);
        assert_eq!(
            guest_leaf(everything, &v, 1, 0)[2] & Leaf1Ecx::OSXSAVE.bits(),
            0
        );
        v.cr4 = CR4_OSXSAVE | CR4_PKE;
        assert_ne!(
            guest_leaf(everything, &v, 1, 0)[2] & Leaf1Ecx::OSXSAVE.bits(),
            0
        );
        // PKU itself is not offered, so neither is OSPKE.
        assert_eq!(
            guest_leaf(everything, &v, 7, 0)[2] & (Leaf7Ecx::PKU | Leaf7Ecx::OSPKE).bits(),
            0
        );
    }

    #[test]
    fn xsave_offers_only_what_is_switched() {
        let mut v = view(0);
        let [a, b, c, d] = guest_leaf(everything, &v, 0xd, 0);
        assert_eq!((a, d), (0b111, 0));
        assert_eq!(b, 576, "XCR0 = x87 only");
        assert_eq!(c, 832, "x87 | SSE | AVX");
        v.xcr0 = 0b111;
        assert_eq!(guest_leaf(everything, &v, 0xd, 0)[1], 832);
        assert_eq!(guest_leaf(everything, &v, 0xd, 9), [0; 4], "no PKRU");
        assert_eq!(
            guest_leaf(everything, &v, 0xd, 1)[0] & XsaveFeatures::XSAVES.bits(),
            0
        );
        let leaf7 = guest_leaf(everything, &v, 7, 0);
        assert_eq!(leaf7[1] & Leaf7Ebx::AVX512F.bits(), 0);
        v.xcr0_supported = 0b11;
        assert_eq!(
            guest_leaf(everything, &v, 1, 0)[2] & Leaf1Ecx::AVX.bits(),
            0
        );
    }

    #[test]
    fn xen_leaves_match_xen() {
        let v = view(2);
        assert_eq!(
            guest_leaf(everything, &v, XEN_CPUID_BASE, 0),
            [XEN_CPUID_MAX, 0x566e_6558, 0x6558_4d4d, 0x4d4d_566e]
        );
        assert_eq!(
            guest_leaf(everything, &v, XEN_CPUID_BASE + 2, 0),
            [1, 0x4000_0000, 0, 0]
        );
        assert_eq!(
            guest_leaf(everything, &v, XEN_CPUID_BASE + 4, 0),
            [0x58, 2, 3, 0]
        );
        // Linux scans base + 0x100 steps for another signature: none.
        assert_eq!(
            guest_leaf(everything, &v, XEN_CPUID_BASE + 0x100, 0),
            [0; 4]
        );
    }

    #[test]
    fn unoffered_leaves_read_as_zero() {
        let v = view(0);
        assert_eq!(guest_leaf(everything, &v, 0, 0)[0], MAX_STANDARD_LEAF);
        for leaf in [6, 0xa, 0xb, 0x1f, 0x8000_0007, 0x8000_001e, 0x8000_001f] {
            assert_eq!(
                guest_leaf(everything, &v, leaf, 0),
                [0; 4],
                "leaf {leaf:#x}"
            );
        }
        assert_eq!(guest_leaf(everything, &v, 7, 1), [0; 4]);
        let d = guest_leaf(everything, &v, 7, 0)[3];
        assert_eq!(d, (Leaf7Edx::FSRM | Leaf7Edx::ARCH_CAPABILITIES).bits());
    }

    proptest::proptest! {
        #[test]
        fn hidden_features_stay_hidden_on_any_host(seed: [u32; 4], leaf in 0u32..0x20, sub in 0u32..4, vcpu in 0u32..8) {
            let host = |_: u32, _: u32| seed;
            let v = view(vcpu);
            let r = guest_leaf(host, &v, leaf, sub);
            if leaf == 1 {
                proptest::prop_assert_eq!(r[3] & (Leaf1Edx::MCE | Leaf1Edx::MCA).bits(), 0);
                proptest::prop_assert_eq!(r[2] & Leaf1Ecx::VMX.bits(), 0);
                proptest::prop_assert_eq!(r[1] >> 24, apic_id_of(vcpu));
            }
            if leaf > MAX_STANDARD_LEAF {
                proptest::prop_assert_eq!(r, [0; 4]);
            }
        }
    }
}
