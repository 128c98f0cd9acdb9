//! The model-specific registers a guest may read and write, as Xen
//! presents them to a PVH guest (measured under Xen 4.17 for Linux; see
//! LINUX-PVH.md §4): MTRRs that hold what is written, PAT, TSC_AUX, the
//! AMD configuration MSRs Linux reads at boot, the K7 performance counters
//! as an absent PMU, ARCH_CAPABILITIES as zero. Every other MSR raises
//! #GP, as on Xen. EFER, the TSC, the APIC and the hypercall page are
//! handled by the exit code (they touch the vCPU or the domain); this file
//! is pure state and rules, host-tested.

/// Raise #GP in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gp;

/// MSR numbers (Intel SDM vol. 4, AMD APM vol. 2 appendix A).
pub mod index {
    pub const PATCH_LEVEL: u32 = 0x8b;
    pub const PLATFORM_INFO: u32 = 0xce;
    pub const MTRR_CAP: u32 = 0xfe;
    pub const ARCH_CAPABILITIES: u32 = 0x10a;
    pub const MTRR_PHYS_FIRST: u32 = 0x200;
    pub const MTRR_PHYS_LAST: u32 = 0x20f;
    pub const MTRR_FIX_64K: u32 = 0x250;
    pub const MTRR_FIX_16K_80000: u32 = 0x258;
    pub const MTRR_FIX_16K_A0000: u32 = 0x259;
    pub const MTRR_FIX_4K_FIRST: u32 = 0x268;
    pub const MTRR_FIX_4K_LAST: u32 = 0x26f;
    pub const DEBUGCTL: u32 = 0x1d9;
    pub const LAST_BRANCH_FROM_IP: u32 = 0x1db;
    pub const LAST_INT_TO_IP: u32 = 0x1de;
    pub const PAT: u32 = 0x277;
    pub const MTRR_DEF_TYPE: u32 = 0x2ff;
    pub const TSC_AUX: u32 = 0xc000_0103;
    pub const K7_EVNTSEL0: u32 = 0xc001_0000;
    pub const K7_PERFCTR3: u32 = 0xc001_0007;
    pub const SYSCFG: u32 = 0xc001_0010;
    pub const HWCR: u32 = 0xc001_0015;
    pub const INT_PENDING_MSG: u32 = 0xc001_0055;
    pub const DE_CFG: u32 = 0xc001_1029;
}

/// MTRRcap as Xen gives it: 8 variable ranges, fixed ranges, WC.
pub const MTRR_CAP_VALUE: u64 = 0x508;
const MTRR_VARIABLE_RANGES: u32 = 8;
/// MTRR_DEF_TYPE at reset, as Xen gives it: MTRRs enabled, fixed ranges
/// off, default type WB.
pub const MTRR_DEF_TYPE_RESET: u64 = 0x806;
const MTRR_DEF_TYPE_VALID: u64 = 0xcff;
/// The architectural PAT reset value.
pub const PAT_RESET: u64 = 0x0007_0406_0007_0406;
/// DE_CFG bit 1: LFENCE is dispatch serialising (Xen reports it set).
const DE_CFG_LFENCE_SERIALISE: u64 = 1 << 1;
const TSC_AUX_VALID: u64 = 0xffff_ffff;
/// Guest physical address width (CPUID 0x80000008): MTRR base/mask bits.
const PHYS_ADDR_MASK: u64 = (1 << 48) - 1;

/// Memory types an MTRR or PAT entry may hold: UC, WC, WT, WP, WB (and
/// UC- for PAT only).
fn valid_mtrr_type(t: u64) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6)
}

/// Every PAT entry is one of UC, WC, WT, WP, WB, UC-.
pub fn valid_pat(value: u64) -> bool {
    (0..8).all(|i| matches!((value >> (i * 8)) & 0xff, 0 | 1 | 4 | 5 | 6 | 7))
}

/// What a successful write changes outside this state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The guest's PAT (the backend loads it for nested paging).
    Pat(u64),
    /// The value RDTSCP and RDPID return.
    TscAux(u64),
}

/// One vCPU's emulated MSRs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsrState {
    pub pat: u64,
    pub tsc_aux: u64,
    mtrr_def_type: u64,
    mtrr_var: [u64; 2 * MTRR_VARIABLE_RANGES as usize],
    /// 64K, 16K×2, 4K×8.
    mtrr_fixed: [u64; 11],
    /// DEBUGCTL, then the four last-branch/interrupt records, as Xen
    /// keeps them in the VMCB: stored, read back, and (no LBR
    /// virtualisation here, as on a host without it) not acted on.
    debug: [u64; 5],
}

impl Default for MsrState {
    fn default() -> Self {
        Self::new()
    }
}

impl MsrState {
    pub const fn new() -> Self {
        Self {
            pat: PAT_RESET,
            tsc_aux: 0,
            mtrr_def_type: MTRR_DEF_TYPE_RESET,
            mtrr_var: [0; 2 * MTRR_VARIABLE_RANGES as usize],
            mtrr_fixed: [0; 11],
            debug: [0; 5],
        }
    }

    fn fixed_slot(msr: u32) -> Option<usize> {
        use index::*;
        match msr {
            MTRR_FIX_64K => Some(0),
            MTRR_FIX_16K_80000 => Some(1),
            MTRR_FIX_16K_A0000 => Some(2),
            MTRR_FIX_4K_FIRST..=MTRR_FIX_4K_LAST => Some(3 + (msr - MTRR_FIX_4K_FIRST) as usize),
            _ => None,
        }
    }

    /// Reads `msr`, or `Err(Gp)` where Xen would raise #GP.
    pub fn read(&self, msr: u32) -> Result<u64, Gp> {
        use index::*;
        Ok(match msr {
            MTRR_CAP => MTRR_CAP_VALUE,
            MTRR_DEF_TYPE => self.mtrr_def_type,
            MTRR_PHYS_FIRST..=MTRR_PHYS_LAST => self.mtrr_var[(msr - MTRR_PHYS_FIRST) as usize],
            PAT => self.pat,
            TSC_AUX => self.tsc_aux,
            // The microcode level of a virtual CPU: none loaded.
            PATCH_LEVEL => 0,
            // No CPUID faulting offered (Xen offers it; Pavise does not
            // implement MISC_FEATURES_ENABLES).
            PLATFORM_INFO => 0,
            ARCH_CAPABILITIES => 0,
            K7_EVNTSEL0..=K7_PERFCTR3 => 0,
            SYSCFG | HWCR | INT_PENDING_MSG => 0,
            DE_CFG => DE_CFG_LFENCE_SERIALISE,
            DEBUGCTL => self.debug[0],
            LAST_BRANCH_FROM_IP..=LAST_INT_TO_IP => {
                self.debug[1 + (msr - LAST_BRANCH_FROM_IP) as usize]
            }
            _ => match Self::fixed_slot(msr) {
                Some(i) => self.mtrr_fixed[i],
                None => return Err(Gp),
            },
        })
    }

    /// Writes `msr`; `Err(Gp)` for reserved bits, read-only or unknown
    /// MSRs, as Xen answers.
    pub fn write(&mut self, msr: u32, value: u64) -> Result<Effect, Gp> {
        use index::*;
        match msr {
            MTRR_DEF_TYPE => {
                if value & !MTRR_DEF_TYPE_VALID != 0 || !valid_mtrr_type(value & 0xff) {
                    return Err(Gp);
                }
                self.mtrr_def_type = value;
            }
            MTRR_PHYS_FIRST..=MTRR_PHYS_LAST => {
                let i = (msr - MTRR_PHYS_FIRST) as usize;
                let valid = if i.is_multiple_of(2) {
                    // PHYSBASE: type in 7:0, base in 47:12.
                    value & !(PHYS_ADDR_MASK & !0xf00) == 0 && valid_mtrr_type(value & 0xff)
                } else {
                    // PHYSMASK: valid bit 11, mask in 47:12.
                    value & !(PHYS_ADDR_MASK & !0x7ff) == 0
                };
                if !valid {
                    return Err(Gp);
                }
                self.mtrr_var[i] = value;
            }
            PAT => {
                if !valid_pat(value) {
                    return Err(Gp);
                }
                self.pat = value;
                return Ok(Effect::Pat(value));
            }
            TSC_AUX => {
                if value & !TSC_AUX_VALID != 0 {
                    return Err(Gp);
                }
                self.tsc_aux = value;
                return Ok(Effect::TscAux(value));
            }
            // An absent PMU: writes are dropped (Xen without vPMU).
            K7_EVNTSEL0..=K7_PERFCTR3 => {}
            // Intel's BIOS_SIGN_ID shares the number: writing 0 before
            // CPUID is how a kernel asks for the microcode level.
            PATCH_LEVEL if value == 0 => {}
            // Xen ignores writes to DE_CFG (the LFENCE bit is already set).
            DE_CFG => {}
            // Xen 4.17's SVM stores them in the VMCB unchecked.
            DEBUGCTL => self.debug[0] = value,
            LAST_BRANCH_FROM_IP..=LAST_INT_TO_IP => {
                self.debug[1 + (msr - LAST_BRANCH_FROM_IP) as usize] = value;
            }
            _ => match Self::fixed_slot(msr) {
                Some(i) => {
                    if (0..8).any(|b| !valid_mtrr_type((value >> (b * 8)) & 0xff)) {
                        return Err(Gp);
                    }
                    self.mtrr_fixed[i] = value;
                }
                // HWCR, SYSCFG, PLATFORM_INFO, ARCH_CAPABILITIES, MTRRcap
                // are read-only to a guest (Xen raises #GP for Linux's
                // HWCR write of 0x40); the rest do not exist.
                None => return Err(Gp),
            },
        }
        Ok(Effect::None)
    }
}

#[cfg(test)]
mod tests {
    use super::index::*;
    use super::*;

    #[test]
    fn linux_boot_reads_answer_as_on_xen() {
        let s = MsrState::new();
        assert_eq!(s.read(MTRR_CAP), Ok(0x508));
        assert_eq!(s.read(MTRR_DEF_TYPE), Ok(MTRR_DEF_TYPE_RESET));
        assert_eq!(s.read(SYSCFG), Ok(0));
        assert_eq!(s.read(HWCR), Ok(0));
        assert_eq!(s.read(DE_CFG), Ok(2));
        assert_eq!(s.read(ARCH_CAPABILITIES), Ok(0));
        for msr in K7_EVNTSEL0..=K7_PERFCTR3 {
            assert_eq!(s.read(msr), Ok(0));
        }
        for msr in (MTRR_PHYS_FIRST..=MTRR_PHYS_LAST).chain([MTRR_FIX_64K, MTRR_FIX_4K_LAST]) {
            assert_eq!(s.read(msr), Ok(0));
        }
        // DEBUGCTL and the LBR records read as Xen's VMCB starts them.
        for msr in [DEBUGCTL, LAST_BRANCH_FROM_IP, LAST_INT_TO_IP] {
            assert_eq!(s.read(msr), Ok(0));
        }
        assert_eq!(s.read(0x1da), Err(Gp));
        // Machine check is not offered (hidden in CPUID), so its MSRs are absent.
        assert_eq!(s.read(0x179), Err(Gp));
        assert_eq!(s.read(0x17a), Err(Gp));
    }

    #[test]
    fn linux_boot_writes_answer_as_on_xen() {
        let mut s = MsrState::new();
        assert_eq!(
            s.write(HWCR, 0x40),
            Err(Gp),
            "Xen's #GP for the TLB flush filter"
        );
        assert_eq!(s.write(MTRR_DEF_TYPE, 0), Ok(Effect::None));
        assert_eq!(s.write(MTRR_DEF_TYPE, 0x806), Ok(Effect::None));
        assert_eq!(s.read(MTRR_DEF_TYPE), Ok(0x806));
        assert_eq!(s.write(K7_PERFCTR3, 0xffff), Ok(Effect::None));
        assert_eq!(s.read(K7_PERFCTR3), Ok(0));
        assert_eq!(s.write(TSC_AUX, 1), Ok(Effect::TscAux(1)));
        assert_eq!(s.read(TSC_AUX), Ok(1));
        let linux_pat = 0x0007_0106_0007_0106;
        assert_eq!(s.write(PAT, linux_pat), Ok(Effect::Pat(linux_pat)));
        assert_eq!(s.read(PAT), Ok(linux_pat));
    }

    #[test]
    fn reserved_bits_and_read_only_msrs_raise_gp() {
        let mut s = MsrState::new();
        let before = s.clone();
        assert_eq!(
            s.write(PAT, 0x0007_0406_0007_0402),
            Err(Gp),
            "type 2 is reserved"
        );
        assert_eq!(s.write(TSC_AUX, 1 << 32), Err(Gp));
        assert_eq!(s.write(MTRR_DEF_TYPE, 0x1000), Err(Gp));
        assert_eq!(s.write(MTRR_DEF_TYPE, 0x2), Err(Gp));
        assert_eq!(s.write(MTRR_PHYS_FIRST, 0x3), Err(Gp));
        assert_eq!(s.write(MTRR_PHYS_FIRST + 1, 1 << 60), Err(Gp));
        assert_eq!(s.write(MTRR_FIX_64K, 0x0202_0202_0202_0202), Err(Gp));
        for msr in [
            MTRR_CAP,
            ARCH_CAPABILITIES,
            PLATFORM_INFO,
            SYSCFG,
            0x1a0,
            0xdead,
        ] {
            assert_eq!(s.write(msr, 0), Err(Gp), "msr {msr:#x}");
        }
        assert_eq!(s.write(PATCH_LEVEL, 5), Err(Gp));
        assert_eq!(s, before, "a refused write changes nothing");
    }

    proptest::proptest! {
        #[test]
        fn what_is_written_reads_back_or_is_refused(msr in proptest::sample::select(vec![
            MTRR_DEF_TYPE, MTRR_PHYS_FIRST, MTRR_PHYS_FIRST + 1, MTRR_FIX_16K_A0000, MTRR_FIX_4K_FIRST, PAT, TSC_AUX,
            DEBUGCTL, LAST_BRANCH_FROM_IP, LAST_INT_TO_IP,
        ]), value: u64) {
            let mut s = MsrState::new();
            let before = s.read(msr).unwrap();
            match s.write(msr, value) {
                Ok(_) => proptest::prop_assert_eq!(s.read(msr), Ok(value)),
                Err(Gp) => proptest::prop_assert_eq!(s.read(msr), Ok(before)),
            }
        }
    }
}
