//! Hypervisor discovery (arch-x86/cpuid.h): the Xen CPUID leaves at
//! 0x40000000 (+0x100 steps), their bits, the MSR that installs the
//! hypercall page, and the hypercall page's contents — 128 stubs of 32
//! bytes, `mov eax, N; vmmcall|vmcall; ret`, as Xen writes them.

use bitflags::bitflags;

/// `XEN_CPUID_FIRST_LEAF`: where Xen's leaves start.
pub const XEN_CPUID_FIRST_LEAF: u32 = 0x4000_0000;
/// Guests scan for the signature at `0x40000000 + k * 0x100` (Xen moves
/// its leaves up when it also offers Viridian ones).
pub const XEN_CPUID_BASE_STRIDE: u32 = 0x100;
/// End of the range guests scan (exclusive).
pub const XEN_CPUID_SCAN_END: u32 = 0x4001_0000;

/// `XEN_CPUID_LEAF(i)` for the default base.
pub const fn xen_cpuid_leaf(i: u32) -> u32 {
    XEN_CPUID_FIRST_LEAF + i
}

/// Leaf offset 0: EAX = highest Xen leaf, EBX:ECX:EDX = signature.
pub const LEAF_SIGNATURE: u32 = 0;
/// Leaf offset 1: EAX = major << 16 | minor.
pub const LEAF_VERSION: u32 = 1;
/// Leaf offset 2: EAX = hypercall pages, EBX = MSR base, ECX/EDX =
/// features 1/2.
pub const LEAF_HYPERCALL: u32 = 2;
/// Leaf offset 3: TSC information (sub-leaves 0..2).
pub const LEAF_TIME: u32 = 3;
/// Leaf offset 4: HVM features (EAX = [`HvmCpuidFeatures`], EBX = vCPU id,
/// ECX = domain id).
pub const LEAF_HVM: u32 = 4;
/// Leaf offset 5: PV features (`EBX[7:0]` = max machine address width).
pub const LEAF_PV: u32 = 5;
/// `XEN_CPUID_MAX_NUM_LEAVES`: the highest leaf offset Xen defines.
pub const XEN_CPUID_MAX_NUM_LEAVES: u32 = 5;

/// `XEN_CPUID_SIGNATURE_EBX` ("XenV").
pub const XEN_CPUID_SIGNATURE_EBX: u32 = 0x566e_6558;
/// `XEN_CPUID_SIGNATURE_ECX` ("MMXe").
pub const XEN_CPUID_SIGNATURE_ECX: u32 = 0x6558_4d4d;
/// `XEN_CPUID_SIGNATURE_EDX` ("nVMM").
pub const XEN_CPUID_SIGNATURE_EDX: u32 = 0x4d4d_566e;
/// The signature as EBX, ECX, EDX spell it.
pub const XEN_CPUID_SIGNATURE: &[u8; 12] = b"XenVMMXenVMM";

/// The MSR a guest writes a page's guest-physical address to, to have the
/// hypercall page written there (leaf 2 EBX). Bits 11:0 of the written
/// value select the page index (always 0: one page).
pub const HYPERCALL_PAGE_MSR: u32 = 0x4000_0000;
/// Hypercall pages offered (leaf 2 EAX).
pub const HYPERCALL_PAGES: u32 = 1;

/// Leaf 2 ECX: `XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD`.
pub const XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD: u32 = 1 << 0;

/// Leaf 3 sub-leaf 0 EAX: `XEN_CPUID_TSC_EMULATED`.
pub const XEN_CPUID_TSC_EMULATED: u32 = 1 << 0;
/// Leaf 3 sub-leaf 0 EAX: `XEN_CPUID_HOST_TSC_RELIABLE`.
pub const XEN_CPUID_HOST_TSC_RELIABLE: u32 = 1 << 1;
/// Leaf 3 sub-leaf 0 EAX: `XEN_CPUID_RDTSCP_INSTR_AVAIL`.
pub const XEN_CPUID_RDTSCP_INSTR_AVAIL: u32 = 1 << 2;
/// Leaf 3 sub-leaf 0 EBX: `XEN_CPUID_TSC_MODE_DEFAULT`.
pub const XEN_CPUID_TSC_MODE_DEFAULT: u32 = 0;
/// Leaf 3 sub-leaf 0 EBX: `XEN_CPUID_TSC_MODE_ALWAYS_EMULATE`.
pub const XEN_CPUID_TSC_MODE_ALWAYS_EMULATE: u32 = 1;
/// Leaf 3 sub-leaf 0 EBX: `XEN_CPUID_TSC_MODE_NEVER_EMULATE`.
pub const XEN_CPUID_TSC_MODE_NEVER_EMULATE: u32 = 2;
/// Leaf 3 sub-leaf 0 EBX: `XEN_CPUID_TSC_MODE_PVRDTSCP`.
pub const XEN_CPUID_TSC_MODE_PVRDTSCP: u32 = 3;

/// Leaf 4 EAX: `XEN_HVM_CPUID_APIC_ACCESS_VIRT`.
pub const XEN_HVM_CPUID_APIC_ACCESS_VIRT: u32 = 1 << 0;
/// Leaf 4 EAX: `XEN_HVM_CPUID_X2APIC_VIRT`.
pub const XEN_HVM_CPUID_X2APIC_VIRT: u32 = 1 << 1;
/// Leaf 4 EAX: `XEN_HVM_CPUID_IOMMU_MAPPINGS`.
pub const XEN_HVM_CPUID_IOMMU_MAPPINGS: u32 = 1 << 2;
/// Leaf 4 EAX: `XEN_HVM_CPUID_VCPU_ID_PRESENT` (vCPU id in EBX).
pub const XEN_HVM_CPUID_VCPU_ID_PRESENT: u32 = 1 << 3;
/// Leaf 4 EAX: `XEN_HVM_CPUID_DOMID_PRESENT` (domain id in ECX).
pub const XEN_HVM_CPUID_DOMID_PRESENT: u32 = 1 << 4;
/// Leaf 4 EAX: `XEN_HVM_CPUID_EXT_DEST_ID`.
pub const XEN_HVM_CPUID_EXT_DEST_ID: u32 = 1 << 5;
/// Leaf 4 EAX: `XEN_HVM_CPUID_UPCALL_VECTOR` (per-vCPU upcall vector
/// via HVMOP_set_evtchn_upcall_vector).
pub const XEN_HVM_CPUID_UPCALL_VECTOR: u32 = 1 << 6;

bitflags! {
    /// Leaf 4 (HVM features) EAX.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct HvmCpuidFeatures: u32 {
        const APIC_ACCESS_VIRT = XEN_HVM_CPUID_APIC_ACCESS_VIRT;
        const X2APIC_VIRT = XEN_HVM_CPUID_X2APIC_VIRT;
        const IOMMU_MAPPINGS = XEN_HVM_CPUID_IOMMU_MAPPINGS;
        const VCPU_ID_PRESENT = XEN_HVM_CPUID_VCPU_ID_PRESENT;
        const DOMID_PRESENT = XEN_HVM_CPUID_DOMID_PRESENT;
        const EXT_DEST_ID = XEN_HVM_CPUID_EXT_DEST_ID;
        const UPCALL_VECTOR = XEN_HVM_CPUID_UPCALL_VECTOR;
    }
}

/// Leaf 5 EBX: `XEN_CPUID_MACHINE_ADDRESS_WIDTH_MASK`.
pub const XEN_CPUID_MACHINE_ADDRESS_WIDTH_MASK: u32 = 0xff;

// ---------------------------------------------------------------------------
// Hypercall page
// ---------------------------------------------------------------------------

/// Bytes per stub: hypercall N is called at `page + N * 32`.
pub const HYPERCALL_STUB_SIZE: usize = 32;
/// Stubs in the page (`4096 / 32`).
pub const HYPERCALL_STUBS: usize = crate::PAGE_SIZE / HYPERCALL_STUB_SIZE;

/// `mov eax, imm32` opcode (followed by the little-endian immediate).
pub const OPCODE_MOV_EAX_IMM32: u8 = 0xb8;
/// `vmmcall` (AMD SVM).
pub const OPCODE_VMMCALL: [u8; 3] = [0x0f, 0x01, 0xd9];
/// `vmcall` (Intel VMX).
pub const OPCODE_VMCALL: [u8; 3] = [0x0f, 0x01, 0xc1];
/// `ret`.
pub const OPCODE_RET: u8 = 0xc3;
/// `int3`: fills the rest of each stub.
pub const OPCODE_INT3: u8 = 0xcc;
/// `ud2`: the whole stub of hypercalls HVM guests may not make (iret).
pub const OPCODE_UD2: [u8; 2] = [0x0f, 0x0b];

/// The instruction that traps to the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HypercallInsn {
    /// AMD SVM.
    Vmmcall,
    /// Intel VMX.
    Vmcall,
}

impl HypercallInsn {
    /// The instruction's encoding.
    pub const fn bytes(self) -> [u8; 3] {
        match self {
            HypercallInsn::Vmmcall => OPCODE_VMMCALL,
            HypercallInsn::Vmcall => OPCODE_VMCALL,
        }
    }
}

/// One stub: `mov eax, nr` (b8 imm32), the trapping instruction, `ret`,
/// padded with `int3`.
pub const fn hypercall_stub(nr: u32, insn: HypercallInsn) -> [u8; HYPERCALL_STUB_SIZE] {
    let mut stub = [OPCODE_INT3; HYPERCALL_STUB_SIZE];
    let imm = nr.to_le_bytes();
    let trap = insn.bytes();
    stub[0] = OPCODE_MOV_EAX_IMM32;
    stub[1] = imm[0];
    stub[2] = imm[1];
    stub[3] = imm[2];
    stub[4] = imm[3];
    stub[5] = trap[0];
    stub[6] = trap[1];
    stub[7] = trap[2];
    stub[8] = OPCODE_RET;
    stub
}

/// Fills a hypercall page as Xen does for HVM/PVH guests: `int3`
/// everywhere, then stub N at `N * 32` for every N, except that the slot
/// of `__HYPERVISOR_iret` (23) holds `ud2` (PV-only hypercall).
pub fn fill_hypercall_page(page: &mut [u8; crate::PAGE_SIZE], insn: HypercallInsn) {
    let iret = crate::hypercall::Hypercall::Iret.raw() as usize;
    for (nr, slot) in page.chunks_exact_mut(HYPERCALL_STUB_SIZE).enumerate() {
        if nr == iret {
            slot.fill(OPCODE_INT3);
            slot[..OPCODE_UD2.len()].copy_from_slice(&OPCODE_UD2);
        } else {
            slot.copy_from_slice(&hypercall_stub(nr as u32, insn));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_words_spell_xenvmm() {
        let mut sig = [0u8; 12];
        sig[0..4].copy_from_slice(&XEN_CPUID_SIGNATURE_EBX.to_le_bytes());
        sig[4..8].copy_from_slice(&XEN_CPUID_SIGNATURE_ECX.to_le_bytes());
        sig[8..12].copy_from_slice(&XEN_CPUID_SIGNATURE_EDX.to_le_bytes());
        assert_eq!(&sig, XEN_CPUID_SIGNATURE);
        assert_eq!(XEN_CPUID_SIGNATURE_EBX, 0x566e6558);
        assert_eq!(XEN_CPUID_SIGNATURE_ECX, 0x65584d4d);
        assert_eq!(XEN_CPUID_SIGNATURE_EDX, 0x4d4d566e);
    }

    #[test]
    fn leaves_and_bits() {
        assert_eq!(xen_cpuid_leaf(LEAF_HYPERCALL), 0x4000_0002);
        assert_eq!(xen_cpuid_leaf(LEAF_HVM), 0x4000_0004);
        assert_eq!(HYPERCALL_PAGE_MSR, 0x4000_0000);
        assert_eq!(HvmCpuidFeatures::VCPU_ID_PRESENT.bits(), 8);
        assert_eq!(HvmCpuidFeatures::DOMID_PRESENT.bits(), 16);
        assert_eq!(HvmCpuidFeatures::UPCALL_VECTOR.bits(), 64);
        assert_eq!(HvmCpuidFeatures::all().bits(), 0x7f);
    }

    #[test]
    fn stub_bytes() {
        let stub = hypercall_stub(29, HypercallInsn::Vmmcall);
        assert_eq!(&stub[..9], &[0xb8, 29, 0, 0, 0, 0x0f, 0x01, 0xd9, 0xc3]);
        assert!(stub[9..].iter().all(|&b| b == 0xcc));
        let stub = hypercall_stub(0x1234_5678, HypercallInsn::Vmcall);
        assert_eq!(
            &stub[..9],
            &[0xb8, 0x78, 0x56, 0x34, 0x12, 0x0f, 0x01, 0xc1, 0xc3]
        );
        assert_eq!(stub.len(), 32);
    }

    #[test]
    fn page_layout() {
        assert_eq!(HYPERCALL_STUBS, 128);
        let mut page = [0u8; 4096];
        fill_hypercall_page(&mut page, HypercallInsn::Vmcall);
        for nr in 0..128usize {
            let slot = &page[nr * 32..nr * 32 + 32];
            if nr == 23 {
                assert_eq!(&slot[..2], &[0x0f, 0x0b]);
                assert!(slot[2..].iter().all(|&b| b == 0xcc));
            } else {
                assert_eq!(slot, &hypercall_stub(nr as u32, HypercallInsn::Vmcall));
            }
        }
        // sched_op (29) at 29 * 32.
        assert_eq!(
            &page[928..937],
            &[0xb8, 29, 0, 0, 0, 0x0f, 0x01, 0xc1, 0xc3]
        );
    }
}
