//! The HVM parameters' rules (`xen/include/public/hvm/params.h`), as Xen
//! 4.17's `hvm_allow_get_param`, `hvm_allow_set_param` and `hvm_set_param`
//! have them: which a guest may read or set itself, which are the
//! toolstack's, which are deprecated, and which values are refused. Pure:
//! `hypercall::hvm` applies them.

/// Xen's `HVM_NR_PARAMS`: indices from here on are -EINVAL.
pub const NR_PARAMS: u32 = 39;

/// `HVM_PARAM_*` whose rules differ from the default.
pub mod param {
    pub const CALLBACK_IRQ: u32 = 0;
    pub const STORE_PFN: u32 = 1;
    pub const STORE_EVTCHN: u32 = 2;
    pub const PAE_ENABLED: u32 = 4;
    pub const TIMER_MODE: u32 = 10;
    pub const DM_DOMAIN: u32 = 13;
    pub const ACPI_S_STATE: u32 = 14;
    pub const VM86_TSS: u32 = 15;
    pub const CONSOLE_PFN: u32 = 17;
    pub const CONSOLE_EVTCHN: u32 = 18;
    pub const ACPI_IOPORTS_LOCATION: u32 = 19;
    pub const MEMORY_EVENT_CR0: u32 = 20;
    pub const MEMORY_EVENT_CR3: u32 = 21;
    pub const MEMORY_EVENT_CR4: u32 = 22;
    pub const MEMORY_EVENT_INT3: u32 = 23;
    pub const NESTEDHVM: u32 = 24;
    pub const MEMORY_EVENT_SINGLE_STEP: u32 = 25;
    pub const BUFIOREQ_EVTCHN: u32 = 26;
    pub const MEMORY_EVENT_MSR: u32 = 30;
    pub const TRIPLE_FAULT_REASON: u32 = 31;
    pub const VM_GENERATION_ID_ADDR: u32 = 34;
    pub const ALTP2M: u32 = 35;
    pub const X87_FIP_WIDTH: u32 = 36;
    pub const VM86_TSS_SIZED: u32 = 37;
}

/// What a parameter is to its own domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The guest may (read or set it).
    Guest,
    /// Deprecated: -EINVAL for everyone.
    Deprecated,
    /// The toolstack's: -EPERM for the domain itself.
    Toolstack,
}

/// Xen's `hvm_allow_get_param` / `hvm_allow_set_param` lists.
pub fn access(index: u32, set: bool) -> Access {
    use param::*;
    match index {
        CALLBACK_IRQ
        | VM86_TSS
        | VM86_TSS_SIZED
        | ACPI_IOPORTS_LOCATION
        | VM_GENERATION_ID_ADDR
        | STORE_EVTCHN
        | CONSOLE_EVTCHN
        | X87_FIP_WIDTH => Access::Guest,
        // Readable by the guest, set by the toolstack.
        STORE_PFN | CONSOLE_PFN | ALTP2M if !set => Access::Guest,
        PAE_ENABLED
        | DM_DOMAIN
        | MEMORY_EVENT_CR0
        | MEMORY_EVENT_CR3
        | MEMORY_EVENT_CR4
        | MEMORY_EVENT_INT3
        | NESTEDHVM
        | MEMORY_EVENT_SINGLE_STEP
        | BUFIOREQ_EVTCHN
        | MEMORY_EVENT_MSR => Access::Deprecated,
        _ => Access::Toolstack,
    }
}

/// Xen's `hvm_set_param` checks of a value (false: -EINVAL).
pub fn value_ok(index: u32, value: u64) -> bool {
    use param::*;
    /// `HVMPTM_one_missed_tick_pending`, `SHUTDOWN_MAX`, `sizeof(struct tss32)`.
    const TIMER_MODE_MAX: u64 = 3;
    const SHUTDOWN_MAX: u64 = 5;
    const TSS32_SIZE: u64 = 104;
    match index {
        TIMER_MODE => value <= TIMER_MODE_MAX,
        TRIPLE_FAULT_REASON => value <= SHUTDOWN_MAX,
        X87_FIP_WIDTH => matches!(value, 0 | 4 | 8),
        VM86_TSS => value == value as u32 as u64,
        VM86_TSS_SIZED => value >> 32 >= TSS32_SIZE,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_read_and_set_parameters_is_xens_list() {
        use param::*;
        assert_eq!(access(CALLBACK_IRQ, true), Access::Guest);
        assert_eq!(access(STORE_PFN, false), Access::Guest);
        assert_eq!(access(STORE_PFN, true), Access::Toolstack);
        assert_eq!(access(STORE_EVTCHN, true), Access::Guest);
        assert_eq!(access(CONSOLE_PFN, true), Access::Toolstack);
        assert_eq!(access(NESTEDHVM, false), Access::Deprecated);
        assert_eq!(access(TIMER_MODE, false), Access::Toolstack);
        assert_eq!(access(ALTP2M, false), Access::Guest);
        assert_eq!(access(ALTP2M, true), Access::Toolstack);
    }

    #[test]
    fn values_are_checked_as_hvm_set_param_does() {
        use param::*;
        assert!(value_ok(X87_FIP_WIDTH, 4));
        assert!(!value_ok(X87_FIP_WIDTH, 2));
        assert!(!value_ok(TIMER_MODE, 4));
        assert!(!value_ok(VM86_TSS, 1 << 32));
        assert!(value_ok(VM86_TSS_SIZED, 104 << 32));
        assert!(!value_ok(VM86_TSS_SIZED, 103 << 32));
        assert!(value_ok(CALLBACK_IRQ, u64::MAX));
    }
}
