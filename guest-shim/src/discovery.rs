//! Finding the hypervisor: Xen's CPUID leaves, scanned at `0x40000000`
//! and every `0x100` above it for the "XenVMMXenVMM" signature; what they
//! say (version, the hypercall-page MSR, HVM features, our domain id), and
//! the calling vCPU's id.
//!
//! The scan is pure over a CPUID function, so host tests feed it made-up
//! leaves; `cpuid` is the instruction, on bare metal.

use pv_abi::cpuid::{
    HvmCpuidFeatures, LEAF_HVM, LEAF_HYPERCALL, LEAF_VERSION, XEN_CPUID_BASE_STRIDE,
    XEN_CPUID_FIRST_LEAF, XEN_CPUID_SCAN_END, XEN_CPUID_SIGNATURE_EBX, XEN_CPUID_SIGNATURE_ECX,
    XEN_CPUID_SIGNATURE_EDX,
};

/// What a CPUID leaf returns: EAX, EBX, ECX, EDX.
pub type Leaf = [u32; 4];

/// A Xen-compatible hypervisor, as its CPUID leaves describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hypervisor {
    /// The leaf holding the signature (`0x40000000 + k * 0x100`).
    pub base: u32,
    /// The highest leaf it answers.
    pub max_leaf: u32,
    /// Its version, major and minor (leaf base+1).
    pub version: (u16, u16),
    /// How many hypercall pages it offers (leaf base+2 EAX).
    pub hypercall_pages: u32,
    /// The MSR that installs the hypercall page (leaf base+2 EBX).
    pub hypercall_msr: u32,
    /// HVM features (leaf base+4 EAX; empty when that leaf is absent).
    pub hvm_features: HvmCpuidFeatures,
    /// Our domain id (leaf base+4 ECX), when advertised.
    pub domid: Option<u16>,
}

impl Hypervisor {
    /// Scans the hypervisor leaves; `None` without a Xen signature whose
    /// leaves reach the hypercall-page leaf (bare metal, or another
    /// hypervisor).
    pub fn find(cpuid: impl Fn(u32) -> Leaf) -> Option<Self> {
        (XEN_CPUID_FIRST_LEAF..XEN_CPUID_SCAN_END)
            .step_by(XEN_CPUID_BASE_STRIDE as usize)
            .find_map(|base| Self::at(base, &cpuid))
    }

    fn at(base: u32, cpuid: &impl Fn(u32) -> Leaf) -> Option<Self> {
        let [max_leaf, b, c, d] = cpuid(base);
        let signature = [
            XEN_CPUID_SIGNATURE_EBX,
            XEN_CPUID_SIGNATURE_ECX,
            XEN_CPUID_SIGNATURE_EDX,
        ];
        if [b, c, d] != signature || max_leaf < base + LEAF_HYPERCALL {
            return None;
        }
        let [version, ..] = cpuid(base + LEAF_VERSION);
        let [hypercall_pages, hypercall_msr, ..] = cpuid(base + LEAF_HYPERCALL);
        let (hvm_features, domid) = if max_leaf >= base + LEAF_HVM {
            let [flags, _, domid, _] = cpuid(base + LEAF_HVM);
            let features = HvmCpuidFeatures::from_bits_retain(flags);
            let domid = features
                .contains(HvmCpuidFeatures::DOMID_PRESENT)
                .then_some(domid as u16);
            (features, domid)
        } else {
            (HvmCpuidFeatures::empty(), None)
        };
        Some(Self {
            base,
            max_leaf,
            version: ((version >> 16) as u16, version as u16),
            hypercall_pages,
            hypercall_msr,
            hvm_features,
            domid,
        })
    }

    /// The id of the vCPU `cpuid` runs on (leaf base+4 EBX), when
    /// advertised. CPUID answers for the calling vCPU, so this must run on
    /// the vCPU in question.
    pub fn vcpu_id(&self, cpuid: impl Fn(u32) -> Leaf) -> Option<u32> {
        if !self
            .hvm_features
            .contains(HvmCpuidFeatures::VCPU_ID_PRESENT)
        {
            return None;
        }
        let [_, vcpu, ..] = cpuid(self.base + LEAF_HVM);
        Some(vcpu)
    }
}

/// The CPUID instruction for `leaf` (sub-leaf 0).
#[cfg(target_os = "none")]
pub fn cpuid(leaf: u32) -> Leaf {
    let r = core::arch::x86_64::__cpuid(leaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: [u32; 3] = [0x566e_6558, 0x6558_4d4d, 0x4d4d_566e];

    /// Xen's leaves at `base` (up to base+`max`), vCPU 3 of domain 7;
    /// everything else answers zeroes.
    fn xen_at(base: u32, max: u32, hvm_flags: u32) -> impl Fn(u32) -> Leaf {
        move |leaf| match leaf.checked_sub(base) {
            Some(0) => [base + max, SIG[0], SIG[1], SIG[2]],
            Some(1) => [4 << 16 | 19, 0, 0, 0],
            Some(2) if max >= 2 => [1, 0x4000_0000, 0, 0],
            Some(4) if max >= 4 => [hvm_flags, 3, 7, 0],
            _ => [0; 4],
        }
    }

    #[test]
    fn finds_xen_at_the_first_base() {
        let hv = Hypervisor::find(xen_at(0x4000_0000, 5, 0b1_1000)).unwrap();
        assert_eq!(hv.base, 0x4000_0000);
        assert_eq!(hv.max_leaf, 0x4000_0005);
        assert_eq!(hv.version, (4, 19));
        assert_eq!(hv.hypercall_pages, 1);
        assert_eq!(hv.hypercall_msr, 0x4000_0000);
        assert_eq!(hv.domid, Some(7));
        assert_eq!(hv.vcpu_id(xen_at(0x4000_0000, 5, 0b1_1000)), Some(3));
    }

    #[test]
    fn finds_xen_moved_up_by_viridian() {
        let leaves = |leaf: u32| match leaf {
            // Another hypervisor's signature at the first base.
            0x4000_0000 => [0x4000_0005, 0x7263_694d, 0x666f_736f, 0x7648_2074],
            other => xen_at(0x4000_0100, 4, 0)(other),
        };
        let hv = Hypervisor::find(leaves).unwrap();
        assert_eq!(hv.base, 0x4000_0100);
        // Leaf 4 present but neither id advertised.
        assert_eq!(hv.domid, None);
        assert_eq!(hv.vcpu_id(leaves), None);
    }

    #[test]
    fn no_hypervisor_or_too_few_leaves() {
        assert_eq!(Hypervisor::find(|_| [0; 4]), None);
        // Signature, but no hypercall leaf: unusable.
        assert_eq!(Hypervisor::find(xen_at(0x4000_0000, 1, 0)), None);
        // Leaves up to base+2 only: usable, without HVM features.
        let hv = Hypervisor::find(xen_at(0x4000_0000, 2, 0b1_1000)).unwrap();
        assert_eq!(hv.hvm_features, HvmCpuidFeatures::empty());
        assert_eq!(hv.domid, None);
    }
}
