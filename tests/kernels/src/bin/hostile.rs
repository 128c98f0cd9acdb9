//! hostile: calls every hypercall Pavise implements with bad pointers,
//! lengths, indices and domain ids, and checks each Xen errno. One line
//! per mismatch, then the verdict. The hypervisor and the other domains
//! must be unharmed (the scenario checks that).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::hypercall::{self, nr};
    use guest_shim::hypercall::{
        E2BIG, EEXIST, EFAULT, EINVAL, ENOENT, ENOSYS, EPERM, ESRCH, Errno,
    };
    use guest_shim::pv_abi::memory::AddToPhysmap;
    use guest_shim::{ShutdownReason, StartInfo, println, shutdown};

    /// Guest-physical far beyond a 16 MiB domain (identity-mapped in our
    /// page tables, not backed by the hypervisor).
    const UNBACKED: u64 = 0xf000_0000;
    /// Not mapped by our own page tables (they cover the first 4 GiB).
    const UNMAPPED: u64 = 0x1_0000_0000;
    const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;
    const WRAPS: u64 = u64::MAX - 4;

    #[repr(C)]
    struct HvmParam {
        domid: u16,
        pad: u16,
        index: u32,
        value: u64,
    }

    fn p<T>(v: &T) -> u64 {
        v as *const T as u64
    }

    fn param(domid: u16, index: u32) -> HvmParam {
        HvmParam {
            domid,
            pad: 0,
            index,
            value: 0,
        }
    }

    fn physmap(domid: u16, space: u32, gpfn: u64) -> AddToPhysmap {
        AddToPhysmap {
            domid,
            space,
            gpfn,
            ..Default::default()
        }
    }

    fn main(_: &StartInfo) -> ! {
        let ok_buf = *b"hostile";
        let zero = 0u32;
        let reason_bad = 77u32;
        let map_empty = [0u32, 0, 0, 0]; // nr_entries 0
        let p_huge = param(hypercall::DOMID_SELF, 9999);
        let p_unknown = param(hypercall::DOMID_SELF, 5);
        let p_dom0 = param(0, 1);
        let p_nodom = param(500, 1);
        let p_store = param(hypercall::DOMID_SELF, 1);
        let upcall_bad = [0u32, 3u32];
        let space_bad = physmap(hypercall::DOMID_SELF, 99, 16);
        let gpfn_bad = physmap(hypercall::DOMID_SELF, 0, 1 << 30);
        let foreign = physmap(0, 0, 16);
        let nodom = physmap(999, 0, 16);
        let vcpu_info_bad = [1u64 << 40, 0];
        let alloc_dom0 = [0u16, 0, 0, 0]; // dom 0, remote 0, port
        let bind_dom0 = [0u32, 1, 0]; // remote dom 0, port 1
        let virq_bad = [99u32, 0, 0];
        let send_big = 4000u32;
        let status_dom0 = [0u32, 1, 0, 0, 0, 0];
        let ctx = [0u64; 16];

        // (what, hypercall, args, expected errno)
        let checks: &[(&str, u64, [u64; 3], Errno)] = &[
            (
                "console write from unmapped",
                nr::CONSOLE_IO,
                [0, 10, UNMAPPED],
                EFAULT,
            ),
            (
                "console write non-canonical",
                nr::CONSOLE_IO,
                [0, 10, NON_CANONICAL],
                EFAULT,
            ),
            (
                "console write unbacked",
                nr::CONSOLE_IO,
                [0, 10, UNBACKED],
                EFAULT,
            ),
            (
                "console write wrapping",
                nr::CONSOLE_IO,
                [0, 16, WRAPS],
                EFAULT,
            ),
            (
                "console write huge count",
                nr::CONSOLE_IO,
                [0, 1 << 40, p(&ok_buf)],
                E2BIG,
            ),
            (
                "console read from a domU",
                nr::CONSOLE_IO,
                [1, 8, p(&ok_buf)],
                EPERM,
            ),
            ("console unknown op", nr::CONSOLE_IO, [99, 0, 0], ENOSYS),
            (
                "extraversion to unmapped",
                nr::XEN_VERSION,
                [1, UNMAPPED, 0],
                EFAULT,
            ),
            (
                "xen_version unknown op",
                nr::XEN_VERSION,
                [999, 0, 0],
                ENOSYS,
            ),
            (
                "shutdown bad pointer",
                nr::SCHED_OP,
                [2, UNBACKED, 0],
                EFAULT,
            ),
            (
                "shutdown bad reason",
                nr::SCHED_OP,
                [2, p(&reason_bad), 0],
                EINVAL,
            ),
            ("sched unknown op", nr::SCHED_OP, [99, 0, 0], ENOSYS),
            (
                "memory_map bad pointer",
                nr::MEMORY_OP,
                [9, NON_CANONICAL, 0],
                EFAULT,
            ),
            (
                "memory_map no room",
                nr::MEMORY_OP,
                [9, p(&map_empty), 0],
                EINVAL,
            ),
            (
                "add_to_physmap bad space",
                nr::MEMORY_OP,
                [7, p(&space_bad), 0],
                EINVAL,
            ),
            (
                "add_to_physmap bad gpfn",
                nr::MEMORY_OP,
                [7, p(&gpfn_bad), 0],
                EINVAL,
            ),
            (
                "add_to_physmap for dom0",
                nr::MEMORY_OP,
                [7, p(&foreign), 0],
                EPERM,
            ),
            (
                "add_to_physmap no such domain",
                nr::MEMORY_OP,
                [7, p(&nodom), 0],
                ESRCH,
            ),
            ("memory_op unknown op", nr::MEMORY_OP, [63, 0, 0], ENOSYS),
            (
                "get_param huge index",
                nr::HVM_OP,
                [1, p(&p_huge), 0],
                EINVAL,
            ),
            (
                "get_param unknown index",
                nr::HVM_OP,
                [1, p(&p_unknown), 0],
                EINVAL,
            ),
            ("get_param of dom0", nr::HVM_OP, [1, p(&p_dom0), 0], EPERM),
            (
                "get_param no such domain",
                nr::HVM_OP,
                [1, p(&p_nodom), 0],
                ESRCH,
            ),
            (
                "set_param store pfn",
                nr::HVM_OP,
                [0, p(&p_store), 0],
                EPERM,
            ),
            (
                "get_param bad pointer",
                nr::HVM_OP,
                [1, UNBACKED, 0],
                EFAULT,
            ),
            (
                "upcall vector below 16",
                nr::HVM_OP,
                [23, p(&upcall_bad), 0],
                EINVAL,
            ),
            ("hvm_op unknown op", nr::HVM_OP, [999, 0, 0], ENOSYS),
            ("is_up of vcpu 7", nr::VCPU_OP, [3, 7, 0], ENOENT),
            ("up of vcpu 5", nr::VCPU_OP, [1, 5, 0], ENOENT),
            ("initialise itself", nr::VCPU_OP, [0, 0, p(&ctx)], EEXIST),
            (
                "vcpu_info beyond memory",
                nr::VCPU_OP,
                [10, 0, p(&vcpu_info_bad)],
                EINVAL,
            ),
            ("vcpu_op unknown op", nr::VCPU_OP, [99, 0, 0], ENOSYS),
            (
                "evtchn send bad port",
                nr::EVENT_CHANNEL_OP,
                [4, p(&send_big), 0],
                EINVAL,
            ),
            (
                "evtchn close port 0",
                nr::EVENT_CHANNEL_OP,
                [3, p(&zero), 0],
                EINVAL,
            ),
            (
                "evtchn alloc in dom0",
                nr::EVENT_CHANNEL_OP,
                [6, p(&alloc_dom0), 0],
                EPERM,
            ),
            (
                "evtchn bind not offered",
                nr::EVENT_CHANNEL_OP,
                [0, p(&bind_dom0), 0],
                EINVAL,
            ),
            (
                "evtchn bind virq 99",
                nr::EVENT_CHANNEL_OP,
                [1, p(&virq_bad), 0],
                EINVAL,
            ),
            (
                "evtchn status of dom0",
                nr::EVENT_CHANNEL_OP,
                [5, p(&status_dom0), 0],
                EPERM,
            ),
            (
                "evtchn bad pointer",
                nr::EVENT_CHANNEL_OP,
                [4, UNBACKED, 0],
                EFAULT,
            ),
            (
                "evtchn unknown op",
                nr::EVENT_CHANNEL_OP,
                [99, 0, 0],
                ENOSYS,
            ),
            ("unknown hypercall 99", 99, [0, 0, 0], ENOSYS),
            ("unknown hypercall 127", 127, [0, 0, 0], ENOSYS),
        ];
        let mut failures = 0;
        for &(what, nr, [a1, a2, a3], expected) in checks {
            // SAFETY: deliberately bad arguments; the hypervisor must cope.
            let ret = unsafe { hypercall::raw(nr, a1, a2, a3, 0, 0) };
            if ret != -expected.0 {
                println!("hostile: {what}: got {ret}, expected -{}", expected.0);
                failures += 1;
            }
        }
        // The hypervisor still serves us normally afterwards.
        if hypercall::xen_version().is_err() {
            println!("hostile: xen_version fails after the attack");
            failures += 1;
        }
        if failures == 0 {
            println!("hostile: PASS ({} checks)", checks.len());
        } else {
            println!("hostile: FAIL {failures} of {} checks", checks.len());
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
