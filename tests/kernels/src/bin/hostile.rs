//! hostile: calls every hypercall Pavise implements with bad pointers
//! (null, non-canonical, outside its page tables, unbacked by RAM,
//! straddling the end of its memory, wrapping the top of the address
//! space), bad lengths, bad sub-ops and indices, and other or nonexistent
//! domains' ids, and checks each answer against Xen's errno. One line per
//! mismatch, then the verdict. The hypervisor and the other domains must
//! be unharmed (the scenario checks that).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use guest_shim::pages::PageBuf;
    use guest_shim::pv_abi::domctl::{self, Domctl};
    use guest_shim::pv_abi::event_channel::{EvtchnAllocUnbound, EvtchnBindInterdomain};
    use guest_shim::pv_abi::grant_table::{
        GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GNTTABOP_COPY, GnttabCopy, GnttabCopyPtr,
    };
    use guest_shim::pv_abi::hypercall::{DOMID_INVALID, DOMID_SELF, HvmParam, Hypercall};
    use guest_shim::pv_abi::memory::AddToPhysmap;
    use guest_shim::pv_abi::sysctl::{self, Sysctl};
    use guest_shim::{Errno, ShutdownReason, StartInfo, hypercall, println, shutdown};

    /// Guest-physical far beyond a 16 MiB domain: in our page tables, not
    /// backed by the hypervisor.
    const UNBACKED: u64 = 0xf000_0000;
    /// Canonical but outside our page tables (they cover the first 4 GiB).
    const UNMAPPED: u64 = 0x1_0000_0000;
    const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;
    /// 16 bytes from here cross into the non-canonical hole.
    const CANONICAL_END: u64 = 0x7fff_ffff_fff8;
    /// 16 bytes from here wrap around the top of the address space.
    const WRAPS: u64 = u64::MAX - 4;

    const CONSOLE_IO: u64 = Hypercall::ConsoleIo as u64;
    const XEN_VERSION: u64 = Hypercall::XenVersion as u64;
    const DOMCTL: u64 = Hypercall::Domctl as u64;
    const SYSCTL: u64 = Hypercall::Sysctl as u64;
    const SCHED_OP: u64 = Hypercall::SchedOp as u64;
    const MEMORY_OP: u64 = Hypercall::MemoryOp as u64;
    const HVM_OP: u64 = Hypercall::HvmOp as u64;
    const VCPU_OP: u64 = Hypercall::VcpuOp as u64;
    const EVENT_CHANNEL_OP: u64 = Hypercall::EventChannelOp as u64;
    const GRANT_TABLE_OP: u64 = Hypercall::GrantTableOp as u64;

    /// One hypercall with bad arguments and the errno Xen answers.
    struct Check {
        what: &'static str,
        nr: u64,
        args: [u64; 3],
        expect: Errno,
    }

    const fn check(what: &'static str, nr: u64, args: [u64; 3], expect: Errno) -> Check {
        Check {
            what,
            nr,
            args,
            expect,
        }
    }

    /// Bus 0 `devfn`'s dword `reg` through ports 0xCF8/0xCFC.
    fn pci_config_read(devfn: u32, reg: u32) -> u32 {
        let address = 1u32 << 31 | devfn << 8 | reg;
        let value: u32;
        // SAFETY: port I/O from a DomU is intercepted; a DomU has no
        // devices, so this only tests what the hypervisor answers.
        unsafe {
            core::arch::asm!("out dx, eax", in("dx") 0xcf8u16, in("eax") address, options(nostack));
            core::arch::asm!("in eax, dx", in("dx") 0xcfcu16, out("eax") value, options(nostack));
        }
        value
    }

    fn p<T>(v: &T) -> u64 {
        core::ptr::from_ref(v) as u64
    }

    fn param(domid: u16, index: u32) -> HvmParam {
        HvmParam {
            domid,
            index,
            ..Default::default()
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

    fn main(info: &StartInfo) -> ! {
        // The end of our memory, from the memory map the builder gave.
        let mem_end = info
            .memmap()
            .iter()
            .map(|r| r.addr + r.size)
            .max()
            .unwrap_or(16 << 20);
        let ok_buf = *b"hostile";
        // Well-formed privileged calls, about Dom0: a DomU is refused. In
        // the interface version of the hypervisor we run on (Pavise
        // reports 4.19; the reference Xen is 4.17).
        let version = hypercall::xen_version()
            .ok()
            .and_then(|(major, minor)| domctl::interface_version_of(major, minor))
            .unwrap_or(domctl::INTERFACE_VERSION);
        let domctl = Domctl {
            cmd: domctl::GETDOMAININFO,
            interface_version: version,
            domain: 0,
            pad: [0; 3],
            u: [0; 128],
        };
        let mut domctl_old = domctl;
        domctl_old.interface_version = if version == 0x15 { 0x17 } else { 0x15 };
        let mut domctl_pause = domctl;
        domctl_pause.cmd = domctl::PAUSEDOMAIN;
        let mut domctl_nodom = domctl;
        domctl_nodom.domain = 500;
        // createdomain names no existing domain: refused for being a DomU.
        let mut domctl_create = domctl;
        domctl_create.cmd = domctl::CREATEDOMAIN;
        // remove_from_physmap of a frame that holds no foreign mapping.
        let remove_own = guest_shim::pv_abi::memory::RemoveFromPhysmap {
            domid: DOMID_SELF,
            pad: [0; 3],
            gpfn: 0xf0000, // a hole: nothing there
        };
        let sysctl = Sysctl {
            cmd: sysctl::PHYSINFO,
            interface_version: sysctl::INTERFACE_VERSION,
            u: [0; 128],
        };
        let mut sysctl_old = sysctl;
        sysctl_old.interface_version = 0;
        // readconsole would show a DomU the other domains' output.
        let sysctl_readconsole = Sysctl {
            cmd: sysctl::READCONSOLE,
            ..sysctl
        };
        let zero = 0u32;
        let p_huge = param(DOMID_SELF, 9999);
        let p_unknown = param(DOMID_SELF, 5);
        let p_dom0 = param(0, 1);
        let p_nested = param(DOMID_SELF, 24);
        let p_fip_bad = HvmParam {
            value: 2,
            ..param(DOMID_SELF, 36)
        };
        // xen_hvm_pagetable_dying: domid, pad[3], gpa.
        let dying_self = [DOMID_SELF as u64, 0];
        let dying_dom0 = [0u64, 0];
        let dying_nodom = [500u64, 0];
        // xen_hvm_xentrace: event 0x1000 (a subclass bit), no extra bytes.
        let trace_bad = [0x1000u16, 0, 0, 0];
        // xen_hvm_get_mem_type: domid 0, pfn 0.
        let mem_type_dom0 = [0u64, 0];
        let p_nodom = param(500, 1);
        let p_invalid = param(DOMID_INVALID, 1);
        let p_store = param(DOMID_SELF, 1);
        let upcall_bad = [0u32, 3u32];
        let space_bad = physmap(DOMID_SELF, 99, 16);
        let gpfn_bad = physmap(DOMID_SELF, 0, 1 << 30);
        let foreign = physmap(0, 0, 16);
        let nodom = physmap(999, 0, 16);
        let vcpu_info_bad = [1u64 << 40, 0];
        let alloc_dom0 = EvtchnAllocUnbound {
            dom: 0,
            remote_dom: 0,
            port: 0,
        };
        let bind_dom0 = EvtchnBindInterdomain {
            remote_dom: 0,
            remote_port: 1,
            ..Default::default()
        };
        let virq_bad = [99u32, 0, 0];
        // A DomU owns no device: no pirq, no physdev_op (Xen: -ENOSYS).
        let map_gsi = guest_shim::pv_abi::physdev::PhysdevMapPirq {
            domid: 0x7ff0,
            r#type: guest_shim::pv_abi::physdev::MAP_PIRQ_TYPE_GSI,
            index: 10,
            pirq: -1,
            ..Default::default()
        };
        let eoi_pirq = guest_shim::pv_abi::physdev::PhysdevEoi { irq: 10 };
        // Far above any domain's nr_pirqs.
        let bind_pirq = guest_shim::pv_abi::event_channel::EvtchnBindPirq {
            pirq: 1 << 20,
            flags: 0,
            port: 0,
        };
        let send_big = 4000u32;
        // struct evtchn_reset { domid_t dom; }; evtchn_set_priority.
        let (reset_dom0, reset_nobody) = (0u16, 777u16);
        let (prio_bad_port, prio_console) = ([4000u32, 0], [1u32, 3]);
        let status_dom0 = [0u32, 1, 0, 0, 0, 0];
        let ctx = [0u64; 16];
        let gnt_version_bad = 7u32;

        let checks = [
            // console_io
            check(
                "console write from null",
                CONSOLE_IO,
                [0, 10, 0],
                Errno::EFAULT,
            ),
            check(
                "console write from unmapped",
                CONSOLE_IO,
                [0, 10, UNMAPPED],
                Errno::EFAULT,
            ),
            check(
                "console write non-canonical",
                CONSOLE_IO,
                [0, 10, NON_CANONICAL],
                Errno::EFAULT,
            ),
            check(
                "console write unbacked",
                CONSOLE_IO,
                [0, 10, UNBACKED],
                Errno::EFAULT,
            ),
            check(
                "console write past the end of memory",
                CONSOLE_IO,
                [0, 64, mem_end - 8],
                Errno::EFAULT,
            ),
            check(
                "console write into the non-canonical hole",
                CONSOLE_IO,
                [0, 16, CANONICAL_END],
                Errno::EFAULT,
            ),
            check(
                "console write wrapping",
                CONSOLE_IO,
                [0, 16, WRAPS],
                Errno::EFAULT,
            ),
            check(
                "console write huge count",
                CONSOLE_IO,
                [0, 1 << 40, p(&ok_buf)],
                Errno::E2BIG,
            ),
            check(
                "console read from a domU",
                CONSOLE_IO,
                [1, 8, p(&ok_buf)],
                Errno::EPERM,
            ),
            check("console unknown op", CONSOLE_IO, [99, 0, 0], Errno::ENOSYS),
            // xen_version
            check(
                "extraversion to null",
                XEN_VERSION,
                [1, 0, 0],
                Errno::EFAULT,
            ),
            check(
                "extraversion to unmapped",
                XEN_VERSION,
                [1, UNMAPPED, 0],
                Errno::EFAULT,
            ),
            check(
                "xen_version unknown op",
                XEN_VERSION,
                [999, 0, 0],
                Errno::ENOSYS,
            ),
            check(
                "compile_info to null",
                XEN_VERSION,
                [2, 0, 0],
                Errno::EFAULT,
            ),
            check(
                "capabilities to unmapped",
                XEN_VERSION,
                [3, UNMAPPED, 0],
                Errno::EFAULT,
            ),
            check(
                "build_id from a domU",
                XEN_VERSION,
                [10, p(&ok_buf), 0],
                Errno::EPERM,
            ),
            // domctl and sysctl: the privileged interface
            check(
                "domctl getdomaininfo from a domU",
                DOMCTL,
                [p(&domctl), 0, 0],
                Errno::EPERM,
            ),
            check(
                "domctl pausedomain from a domU",
                DOMCTL,
                [p(&domctl_pause), 0, 0],
                Errno::EPERM,
            ),
            check(
                "domctl createdomain from a domU",
                DOMCTL,
                [p(&domctl_create), 0, 0],
                Errno::EPERM,
            ),
            // populate_physmap in Dom0 from a DomU: Xen answers 0 extents
            // done, not an errno (the balloon kernel checks it).
            check(
                "remove_from_physmap of a hole",
                MEMORY_OP,
                [15, p(&remove_own), 0],
                Errno::ENOENT,
            ),
            check(
                "domctl of another interface version",
                DOMCTL,
                [p(&domctl_old), 0, 0],
                Errno::EACCES,
            ),
            check(
                "domctl about no domain",
                DOMCTL,
                [p(&domctl_nodom), 0, 0],
                Errno::ESRCH,
            ),
            check(
                "sysctl physinfo from a domU",
                SYSCTL,
                [p(&sysctl), 0, 0],
                Errno::EPERM,
            ),
            check(
                "sysctl readconsole from a domU",
                SYSCTL,
                [p(&sysctl_readconsole), 0, 0],
                Errno::EPERM,
            ),
            check(
                "sysctl of another interface version",
                SYSCTL,
                [p(&sysctl_old), 0, 0],
                Errno::EACCES,
            ),
            check(
                "domctl bad pointer",
                DOMCTL,
                [UNMAPPED, 0, 0],
                Errno::EFAULT,
            ),
            // sched_op
            check(
                "shutdown bad pointer",
                SCHED_OP,
                [2, UNBACKED, 0],
                Errno::EFAULT,
            ),
            // SCHEDOP_shutdown with an unnamed reason ends the domain with
            // that code, as on Xen (the crasher kernel's `code-77` mode).
            check("sched unknown op", SCHED_OP, [99, 0, 0], Errno::ENOSYS),
            // memory_op
            check("memory_map null", MEMORY_OP, [9, 0, 0], Errno::EFAULT),
            check(
                "memory_map bad pointer",
                MEMORY_OP,
                [9, NON_CANONICAL, 0],
                Errno::EFAULT,
            ),
            // memory_map with no room: Xen writes no entry and answers 0.
            check("add_to_physmap null", MEMORY_OP, [7, 0, 0], Errno::EFAULT),
            check(
                "add_to_physmap bad space",
                MEMORY_OP,
                [7, p(&space_bad), 0],
                Errno::EINVAL,
            ),
            check(
                "add_to_physmap bad gpfn",
                MEMORY_OP,
                [7, p(&gpfn_bad), 0],
                Errno::EINVAL,
            ),
            check(
                "add_to_physmap for dom0",
                MEMORY_OP,
                [7, p(&foreign), 0],
                Errno::EPERM,
            ),
            check(
                "add_to_physmap no such domain",
                MEMORY_OP,
                [7, p(&nodom), 0],
                Errno::ESRCH,
            ),
            check("memory_op unknown op", MEMORY_OP, [63, 0, 0], Errno::ENOSYS),
            // hvm_op
            check("get_param null", HVM_OP, [1, 0, 0], Errno::EFAULT),
            check(
                "get_param bad pointer",
                HVM_OP,
                [1, UNBACKED, 0],
                Errno::EFAULT,
            ),
            check(
                "get_param huge index",
                HVM_OP,
                [1, p(&p_huge), 0],
                Errno::EINVAL,
            ),
            // HVM_PARAM_IOREQ_PFN: the toolstack's (Xen's hvm_allow_get_param).
            check(
                "get_param of a toolstack parameter",
                HVM_OP,
                [1, p(&p_unknown), 0],
                Errno::EPERM,
            ),
            check(
                "get_param deprecated NESTEDHVM",
                HVM_OP,
                [1, p(&p_nested), 0],
                Errno::EINVAL,
            ),
            check(
                "set_param X87_FIP_WIDTH 2",
                HVM_OP,
                [0, p(&p_fip_bad), 0],
                Errno::EINVAL,
            ),
            check(
                "flush_tlbs with an argument",
                HVM_OP,
                [5, p(&zero), 0],
                Errno::EINVAL,
            ),
            check("pagetable_dying null", HVM_OP, [9, 0, 0], Errno::EFAULT),
            check(
                "pagetable_dying with nested paging",
                HVM_OP,
                [9, p(&dying_self), 0],
                Errno::EINVAL,
            ),
            check(
                "pagetable_dying of dom0",
                HVM_OP,
                [9, p(&dying_dom0), 0],
                Errno::EOPNOTSUPP,
            ),
            check(
                "pagetable_dying of no domain",
                HVM_OP,
                [9, p(&dying_nodom), 0],
                Errno::ESRCH,
            ),
            check("get_time null", HVM_OP, [10, 0, 0], Errno::EFAULT),
            check(
                "xentrace event above the subclass",
                HVM_OP,
                [11, p(&trace_bad), 0],
                Errno::EINVAL,
            ),
            check(
                "get_mem_type of dom0",
                HVM_OP,
                [15, p(&mem_type_dom0), 0],
                Errno::EPERM,
            ),
            check(
                "guest_request_vm_event with an argument",
                HVM_OP,
                [24, p(&zero), 0],
                Errno::EINVAL,
            ),
            check(
                "altp2m on SVM",
                HVM_OP,
                [25, p(&zero), 0],
                Errno::EOPNOTSUPP,
            ),
            check(
                "get_param of dom0",
                HVM_OP,
                [1, p(&p_dom0), 0],
                Errno::EPERM,
            ),
            check(
                "get_param no such domain",
                HVM_OP,
                [1, p(&p_nodom), 0],
                Errno::ESRCH,
            ),
            check(
                "get_param DOMID_INVALID",
                HVM_OP,
                [1, p(&p_invalid), 0],
                Errno::ESRCH,
            ),
            check(
                "set_param store pfn",
                HVM_OP,
                [0, p(&p_store), 0],
                Errno::EPERM,
            ),
            check(
                "upcall vector below 16",
                HVM_OP,
                [23, p(&upcall_bad), 0],
                Errno::EINVAL,
            ),
            check("hvm_op unknown op", HVM_OP, [999, 0, 0], Errno::ENOSYS),
            // vcpu_op (one vCPU)
            check("is_up of vcpu 7", VCPU_OP, [3, 7, 0], Errno::ENOENT),
            check("up of vcpu 5", VCPU_OP, [1, 5, 0], Errno::ENOENT),
            check("initialise itself", VCPU_OP, [0, 0, p(&ctx)], Errno::EEXIST),
            check(
                "vcpu_info beyond memory",
                VCPU_OP,
                [10, 0, p(&vcpu_info_bad)],
                Errno::EINVAL,
            ),
            check("vcpu_op unknown op", VCPU_OP, [99, 0, 0], Errno::ENOSYS),
            // event_channel_op
            check(
                "evtchn send null",
                EVENT_CHANNEL_OP,
                [4, 0, 0],
                Errno::EFAULT,
            ),
            check(
                "evtchn bad pointer",
                EVENT_CHANNEL_OP,
                [4, UNBACKED, 0],
                Errno::EFAULT,
            ),
            check(
                "evtchn send bad port",
                EVENT_CHANNEL_OP,
                [4, p(&send_big), 0],
                Errno::EINVAL,
            ),
            check(
                "evtchn close port 0",
                EVENT_CHANNEL_OP,
                [3, p(&zero), 0],
                Errno::EINVAL,
            ),
            check(
                "evtchn alloc in dom0",
                EVENT_CHANNEL_OP,
                [6, p(&alloc_dom0), 0],
                Errno::EPERM,
            ),
            check(
                "evtchn bind not offered",
                EVENT_CHANNEL_OP,
                [0, p(&bind_dom0), 0],
                Errno::EINVAL,
            ),
            check(
                "evtchn bind virq 99",
                EVENT_CHANNEL_OP,
                [1, p(&virq_bad), 0],
                Errno::EINVAL,
            ),
            check(
                "evtchn status of dom0",
                EVENT_CHANNEL_OP,
                [5, p(&status_dom0), 0],
                Errno::EPERM,
            ),
            check(
                "evtchn unknown op",
                EVENT_CHANNEL_OP,
                [99, 0, 0],
                Errno::ENOSYS,
            ),
            check(
                "evtchn reset null",
                EVENT_CHANNEL_OP,
                [10, 0, 0],
                Errno::EFAULT,
            ),
            check(
                "evtchn reset of dom0",
                EVENT_CHANNEL_OP,
                [10, p(&reset_dom0), 0],
                Errno::EPERM,
            ),
            check(
                "evtchn reset of no domain",
                EVENT_CHANNEL_OP,
                [10, p(&reset_nobody), 0],
                Errno::ESRCH,
            ),
            check(
                "evtchn set_priority of a bad port",
                EVENT_CHANNEL_OP,
                [13, p(&prio_bad_port), 0],
                Errno::EINVAL,
            ),
            // With the 2-level ABI, which has no priorities.
            check(
                "evtchn set_priority on 2-level",
                EVENT_CHANNEL_OP,
                [13, p(&prio_console), 0],
                Errno::ENOSYS,
            ),
            // Devices are Dom0's.
            check(
                "physdev map_pirq of a GSI",
                guest_shim::pv_abi::physdev::HYPERVISOR_PHYSDEV_OP,
                [
                    guest_shim::pv_abi::physdev::PHYSDEVOP_MAP_PIRQ,
                    p(&map_gsi),
                    0,
                ],
                Errno::ENOSYS,
            ),
            check(
                "physdev eoi",
                guest_shim::pv_abi::physdev::HYPERVISOR_PHYSDEV_OP,
                [guest_shim::pv_abi::physdev::PHYSDEVOP_EOI, p(&eoi_pirq), 0],
                Errno::ENOSYS,
            ),
            check(
                "evtchn bind pirq past nr_pirqs",
                EVENT_CHANNEL_OP,
                [2, p(&bind_pirq), 0],
                Errno::EINVAL,
            ),
            // grant_table_op
            check(
                "grant map bad pointer",
                GRANT_TABLE_OP,
                [0, UNBACKED, 1],
                Errno::EFAULT,
            ),
            check("grant copy null", GRANT_TABLE_OP, [5, 0, 1], Errno::EFAULT),
            check(
                "grant set_version 7",
                GRANT_TABLE_OP,
                [8, p(&gnt_version_bad), 1],
                Errno::EINVAL,
            ),
            check(
                "grant unknown op",
                GRANT_TABLE_OP,
                [99, 0, 0],
                Errno::ENOSYS,
            ),
            // unknown hypercalls
            check("unknown hypercall 99", 99, [0, 0, 0], Errno::ENOSYS),
            check("unknown hypercall 127", 127, [0, 0, 0], Errno::ENOSYS),
        ];

        let mut failures = 0;
        // Pavise takes a DomU's console_io as a debug build of Xen does; a
        // release build refuses it before looking at the arguments.
        let release_xen = !hypercall::xen_extraversion()
            .is_ok_and(|e| e.as_str().contains("pavise"))
            && hypercall::console_write(b"").is_err();
        // `verbose` on the command line names each check before it runs
        // (to find the one a hypervisor ends the domain on).
        let verbose = info.cmdline().split_whitespace().any(|w| w == "verbose");
        for c in &checks {
            if verbose {
                println!("hostile: check {}", c.what);
            }
            let [a1, a2, a3] = c.args;
            let expect = if c.nr == CONSOLE_IO && release_xen {
                Errno::EPERM
            } else {
                c.expect
            };
            // SAFETY: deliberately bad arguments; the hypervisor must
            // refuse them without touching our memory (every pointer that
            // is valid points at a live local of the right layout).
            let ret = unsafe { hypercall::raw(c.nr, a1, a2, a3, 0, 0) };
            if ret != expect.as_ret() {
                println!(
                    "hostile: {}: got {ret} ({:?}), expected {} ({})",
                    c.what,
                    Errno::check_ret(ret),
                    expect.as_ret(),
                    expect
                );
                failures += 1;
            }
        }
        // CPU state a guest may not have: CR4.VMXE on this AMD host (no
        // VMX) is a #GP in the guest, as on hardware — not a state VMRUN
        // refuses, which would end the domain.
        if !cr4_write_faults(CR4_VMXE) {
            println!("hostile: setting CR4.VMXE did not raise #GP");
            failures += 1;
        }
        // No nested virtualization: SVM's and VMX's instructions are #UD
        // in a guest on either backend (intercepted where the hardware
        // would run them, undefined where it has the other extension).
        let ud = virtualization_instructions_ud();
        if ud != VIRT_INSTRUCTIONS {
            println!("hostile: {ud} of {VIRT_INSTRUCTIONS} SVM/VMX instructions raised #UD");
            failures += 1;
        }
        // No PCI bus: configuration space reads all ones (writes are
        // dropped), as for any port without a device.
        if pci_config_read(0, 0) != u32::MAX || pci_config_read(0x10 << 3, 0) != u32::MAX {
            println!("hostile: a DomU reads PCI configuration space");
            failures += 1;
        }
        // GNTTABOP_copy as Xen's gnttab_copy_one: through a grant a
        // domain made to itself (DOMID_SELF or its id), a bad ref is
        // GNTST_bad_gntref even with a bad length, a frame is named only
        // as DOMID_SELF, and an empty copy succeeds before any check.
        if let Err(problem) = ipi_check() {
            println!("hostile: bind_ipi: {problem}");
            failures += 1;
        }
        // The xAPIC page takes writes, and an illegal vector is an error as
        // Xen's vlapic says (XTF's XSA-462 PoC): sent, "send illegal"; with
        // an illegal LVTERR vector, "receive illegal" too.
        let esr = xapic_illegal_vector_esr();
        if esr != 0x60 {
            println!("hostile: xAPIC ESR after an illegal vector is {esr:#x}, not 0x60");
            failures += 1;
        }
        if let Err(problem) = pirq_check() {
            println!("hostile: bind_pirq: {problem}");
            failures += 1;
        }
        if let Err(problem) = interdomain_starts_pending() {
            println!("hostile: bind_interdomain: {problem}");
            failures += 1;
        }
        // XENVER_commandline from a DomU: Xen's "<denied>", NUL included.
        let mut cmdline = [0xffu8; 16];
        // SAFETY: a 16-byte buffer for at most 9 bytes the hypervisor writes.
        let ret = unsafe { hypercall::raw(XEN_VERSION, 9, cmdline.as_mut_ptr() as u64, 0, 0, 0) };
        if ret != 0 || &cmdline[..10] != b"<denied>\0\xff" {
            println!(
                "hostile: commandline from a domU gave {ret}, {:?}",
                &cmdline[..10]
            );
            failures += 1;
        }
        // The hvm_ops that work: a TLB flush of all our vCPUs, the time,
        // our RAM's memory type.
        let hvm = |cmd: u64, arg: u64| {
            // SAFETY: HVMOP_* with a live argument of its layout (or none).
            unsafe { hypercall::raw(HVM_OP, cmd, arg, 0, 0, 0) }
        };
        let mut now = 0u64;
        let mut mem_type = [DOMID_SELF as u64, 0x100];
        let answers = (
            hvm(5, 0),
            hvm(10, core::ptr::from_mut(&mut now) as u64),
            hvm(15, core::ptr::from_mut(&mut mem_type) as u64),
        );
        // HVMMEM_ram_rw is 0, in bits 16-31 of the first word.
        if answers != (0, 0, 0) || now == 0 || mem_type[0] >> 16 & 0xffff != 0 {
            println!(
                "hostile: hvm_op flush/get_time/get_mem_type gave {answers:?}, time {now}, type word {:#x}",
                mem_type[0]
            );
            failures += 1;
        }
        if let Err(problem) = multicall_check() {
            println!("hostile: multicall: {problem}");
            failures += 1;
        }
        for (what, problem) in grant_copy_checks() {
            println!("hostile: grant copy: {what}: {problem}");
            failures += 1;
        }
        // The hypervisor still serves us normally afterwards.
        if hypercall::xen_version().is_err() {
            println!("hostile: xen_version fails after the attack");
            failures += 1;
        }
        // Last, after the verdict: EVTCHNOP_reset closes all our ports, the
        // console's too (on a Xen whose console is the ring, lines after
        // it reach nobody unless the channel is bound again).
        if let Err(problem) = reset_check() {
            println!("hostile: reset: {problem}");
            failures += 1;
        }
        if failures == 0 {
            println!("hostile: PASS ({} checks)", checks.len());
        } else {
            println!("hostile: FAIL {failures} of {} checks", checks.len());
        }
        shutdown(ShutdownReason::Poweroff)
    }

    /// One raw EVTCHNOP_* call on `arg` (a live struct of the sub-op's
    /// layout, which the hypervisor may write).
    fn evtchn_op(cmd: guest_shim::pv_abi::event_channel::EvtchnOp, arg: u64) -> i64 {
        // SAFETY: as the callers promise: `arg` points at a live struct of
        // the sub-op's layout.
        unsafe {
            hypercall::raw(
                Hypercall::EventChannelOp.raw() as u64,
                cmd.raw().into(),
                arg,
                0,
                0,
                0,
            )
        }
    }

    /// XTF's XSA-462 sequence on the xAPIC page: returns the ESR it reads.
    fn xapic_illegal_vector_esr() -> u32 {
        const XAPIC: usize = 0xfee0_0000;
        let reg = |offset: usize| (XAPIC + offset) as *mut u32;
        // SAFETY: the xAPIC page, identity-mapped like all of the low 4 GiB;
        // the hypervisor emulates each aligned 32-bit access. Interrupts
        // are off here: the software-enabled APIC delivers nothing.
        unsafe {
            let svr = reg(0xf0).read_volatile();
            reg(0xf0).write_volatile(0x1ff);
            reg(0x280).write_volatile(0);
            reg(0x370).write_volatile(0xf);
            reg(0x310).write_volatile(0);
            reg(0x300).write_volatile(0xf);
            reg(0x280).write_volatile(0);
            let esr = reg(0x280).read_volatile();
            reg(0x370).write_volatile(0x1_0000);
            reg(0xf0).write_volatile(svr);
            esr
        }
    }

    /// EVTCHNOP_bind_interdomain sets the new local port pending, as Xen's
    /// (a send on the remote end while it was unbound reached nobody),
    /// and leaves the remote end alone.
    fn interdomain_starts_pending() -> Result<(), alloc::string::String> {
        use core::sync::atomic::Ordering::SeqCst;
        use guest_shim::events;
        guest_shim::shared_info::map().map_err(|e| alloc::format!("no shared info: {e:?}"))?;
        let remote =
            events::alloc_unbound(DOMID_SELF).map_err(|e| alloc::format!("alloc: {e:?}"))?;
        // (No upcall vector is set here: nothing takes the bit away.)
        let bound =
            events::bind_interdomain(DOMID_SELF, remote).map_err(|e| alloc::format!("bind: {e:?}"));
        let pending = |port: u32| {
            guest_shim::shared_info::pending(port as usize / 64).load(SeqCst) & (1 << (port % 64))
                != 0
        };
        let local = bound?;
        let verdict = if !pending(local) {
            Err(alloc::format!("port {local} not pending"))
        } else if pending(remote) {
            Err(alloc::format!("the remote port {remote} pending"))
        } else {
            Ok(())
        };
        let _ = events::close(local);
        let _ = events::close(remote);
        events::release_port(local);
        verdict
    }

    /// EVTCHNOP_bind_pirq of a DomU, as Xen's for HVM and PVH domains: a
    /// pirq number of its own binds (no device is behind it), a second
    /// bind of it is -EEXIST, and close frees it.
    fn pirq_check() -> Result<(), alloc::string::String> {
        let mut op = guest_shim::pv_abi::event_channel::EvtchnBindPirq {
            pirq: 10,
            flags: 0,
            port: 0,
        };
        let bind = |op: &mut guest_shim::pv_abi::event_channel::EvtchnBindPirq| {
            // SAFETY: EVTCHNOP_bind_pirq with a live struct it writes.
            unsafe { hypercall::raw(EVENT_CHANNEL_OP, 2, core::ptr::from_mut(op) as u64, 0, 0, 0) }
        };
        let first = bind(&mut op);
        if first != 0 {
            return Err(alloc::format!("binding pirq 10 returned {first}"));
        }
        let port = op.port;
        let again = bind(&mut op);
        let closed = guest_shim::events::close(port);
        if again != Errno::EEXIST.as_ret() {
            return Err(alloc::format!(
                "binding it again returned {again}, not -EEXIST"
            ));
        }
        closed.map_err(|e| alloc::format!("closing its port {port}: {e:?}"))
    }

    /// EVTCHNOP_bind_ipi gives a port that works as Xen's: a send to it
    /// sets its pending bit, status says IPI on the vCPU asked for, close
    /// frees it.
    fn ipi_check() -> Result<(), alloc::string::String> {
        use guest_shim::pv_abi::event_channel::{EvtchnBindIpi, EvtchnOp, EvtchnStatus};
        let op = evtchn_op;
        let mut ipi = EvtchnBindIpi { vcpu: 0, port: 0 };
        let ret = op(EvtchnOp::BindIpi, core::ptr::from_mut(&mut ipi) as u64);
        if ret != 0 || ipi.port == 0 {
            return Err(alloc::format!("bind returned {ret}, port {}", ipi.port));
        }
        let port = ipi.port;
        guest_shim::shared_info::map().map_err(|e| alloc::format!("no shared info: {e:?}"))?;
        guest_shim::events::mask_port(port);
        guest_shim::events::clear_pending(port);
        guest_shim::events::send(port).map_err(|e| alloc::format!("send: {e:?}"))?;
        let word = guest_shim::shared_info::pending(port as usize / 64);
        if word.load(core::sync::atomic::Ordering::SeqCst) & (1 << (port % 64)) == 0 {
            return Err(alloc::format!("a send left port {port} not pending"));
        }
        let mut st = EvtchnStatus {
            dom: DOMID_SELF,
            port,
            ..Default::default()
        };
        let ret = op(EvtchnOp::Status, core::ptr::from_mut(&mut st) as u64);
        if ret != 0 || st.status != 5 || st.vcpu != 0 {
            return Err(alloc::format!(
                "status returned {ret}: status {} vcpu {} (want 5, IPI, on vCPU 0)",
                st.status,
                st.vcpu
            ));
        }
        guest_shim::events::close(port).map_err(|e| alloc::format!("close: {e:?}"))?;
        // As Xen's evtchn_free: a closed port is no longer pending.
        if word.load(core::sync::atomic::Ordering::SeqCst) & (1 << (port % 64)) != 0 {
            return Err(alloc::format!("closed port {port} is still pending"));
        }
        guest_shim::events::release_port(port);
        Ok(())
    }

    /// HYPERVISOR_multicall runs a batch in one call, each result in its
    /// entry: a good call, a bad one, a nested multicall (refused), an
    /// unknown hypercall; a list it cannot read is -EFAULT.
    fn multicall_check() -> Result<(), alloc::string::String> {
        use guest_shim::pv_abi::hypercall::MulticallEntry;
        let send_bad = 5000u32;
        let entry = |op: Hypercall, args: [u64; 2]| MulticallEntry {
            op: op.raw() as u64,
            result: 0x5a5a,
            args: [args[0], args[1], 0, 0, 0, 0],
        };
        let mut batch = [
            entry(Hypercall::XenVersion, [0, 0]),
            entry(Hypercall::EventChannelOp, [4, p(&send_bad)]),
            entry(Hypercall::Multicall, [0, 0]),
            MulticallEntry {
                op: 99,
                ..entry(Hypercall::XenVersion, [0, 0])
            },
        ];
        let multicall = |list: u64, n: u64| {
            // SAFETY: a list of live entries (or one refused), which the
            // hypervisor may write results into.
            unsafe { hypercall::raw(Hypercall::Multicall.raw() as u64, list, n, 0, 0, 0) }
        };
        let ret = multicall(batch.as_mut_ptr() as u64, batch.len() as u64);
        let version = hypercall::xen_version().map_err(|e| alloc::format!("{e:?}"))?;
        let results = batch.map(|e| e.result as i64);
        let want = [
            ((version.0 as i64) << 16) | version.1 as i64,
            Errno::EINVAL.as_ret(),
            Errno::EINVAL.as_ret(),
            Errno::ENOSYS.as_ret(),
        ];
        if ret != 0 || results != want {
            return Err(alloc::format!(
                "returned {ret}, results {results:?} (want 0, {want:?})"
            ));
        }
        let ret = multicall(UNBACKED, 2);
        if ret != Errno::EFAULT.as_ret() {
            return Err(alloc::format!("an unmapped list returned {ret}"));
        }
        Ok(())
    }

    /// EVTCHNOP_reset on ourselves closes every port, clears their pending
    /// bits, and the ports can be bound again.
    fn reset_check() -> Result<(), alloc::string::String> {
        use guest_shim::pv_abi::event_channel::{EvtchnBindIpi, EvtchnOp, EvtchnStatus};
        let op = evtchn_op;
        let mut ipi = EvtchnBindIpi { vcpu: 0, port: 0 };
        if op(EvtchnOp::BindIpi, core::ptr::from_mut(&mut ipi) as u64) != 0 {
            return Err("bind_ipi failed".into());
        }
        let port = ipi.port;
        // Our console channel's far end, to bind again after the reset
        // (a console ring, as on a release Xen, needs it).
        let console =
            hypercall::hvm_get_param(guest_shim::pv_abi::hypercall::HVM_PARAM_CONSOLE_EVTCHN)
                .map_err(|e| alloc::format!("console port: {e:?}"))? as u32;
        let mut st = EvtchnStatus {
            dom: DOMID_SELF,
            port: console,
            ..Default::default()
        };
        op(EvtchnOp::Status, core::ptr::from_mut(&mut st) as u64);
        const INTERDOMAIN: u32 = 2;
        let connected = st.status == INTERDOMAIN;
        let (console_dom, console_remote) = (st.u.dom, st.u.port);
        guest_shim::events::mask_port(port);
        guest_shim::events::send(port).map_err(|e| alloc::format!("send: {e:?}"))?;
        let dom = DOMID_SELF;
        let ret = op(EvtchnOp::Reset, core::ptr::from_ref(&dom) as u64);
        if ret != 0 {
            return Err(alloc::format!("reset of ourselves returned {ret}"));
        }
        let word = guest_shim::shared_info::pending(port as usize / 64);
        if word.load(core::sync::atomic::Ordering::SeqCst) & (1 << (port % 64)) != 0 {
            return Err(alloc::format!(
                "port {port} is still pending after the reset"
            ));
        }
        for p in 1..=port {
            let mut st = EvtchnStatus {
                dom: DOMID_SELF,
                port: p,
                ..Default::default()
            };
            let ret = op(EvtchnOp::Status, core::ptr::from_mut(&mut st) as u64);
            if ret != 0 || st.status != 0 {
                return Err(alloc::format!(
                    "port {p} after the reset: status returned {ret}, status {} (want 0, closed)",
                    st.status
                ));
            }
        }
        // The console's far end (if it had bound) waits for us again:
        // bind it back.
        if connected {
            let back = guest_shim::events::bind_interdomain(console_dom, console_remote)
                .map_err(|e| alloc::format!("console's far end after the reset: {e:?}"))?;
            guest_shim::console::use_ring_port(back);
        }
        let first_free = if connected { 2 } else { 1 };
        let mut again = EvtchnBindIpi { vcpu: 0, port: 0 };
        if op(EvtchnOp::BindIpi, core::ptr::from_mut(&mut again) as u64) != 0
            || again.port != first_free
        {
            return Err(alloc::format!(
                "after the reset bind_ipi gave port {}",
                again.port
            ));
        }
        guest_shim::events::release_port(port);
        Ok(())
    }

    /// One raw GNTTABOP_copy element; its GNTST_* status.
    fn copy_status(source: GnttabCopyPtr, dest: GnttabCopyPtr, len: u16, flags: u16) -> i16 {
        let mut op = GnttabCopy {
            source,
            dest,
            len,
            flags,
            status: 0,
            pad: 0,
        };
        // SAFETY: one live element of the layout, which the hypervisor may write.
        let ret = unsafe {
            hypercall::raw(
                Hypercall::GrantTableOp.raw() as u64,
                GNTTABOP_COPY,
                core::ptr::from_mut(&mut op) as u64,
                1,
                0,
                0,
            )
        };
        if ret != 0 {
            return i16::MIN;
        }
        op.status
    }

    /// The grant-copy checks that failed, as (what, problem).
    fn grant_copy_checks() -> alloc::vec::Vec<(&'static str, alloc::string::String)> {
        use guest_shim::pv_abi::grant_table::status as st;
        let mut failed = alloc::vec::Vec::new();
        let Some(me) = guest_shim::domid() else {
            failed.push(("setup", "CPUID gives no domain id".into()));
            return failed;
        };
        let (Some(src), Some(dst)) = (PageBuf::zeroed(4096), PageBuf::zeroed(4096)) else {
            failed.push(("setup", "no pages".into()));
            return failed;
        };
        // SAFETY: src is a page of ours.
        unsafe { core::ptr::write_bytes(src.addr() as *mut u8, 0x5a, 4096) };
        let (src_gfn, dst_gfn) = (src.addr() >> 12, dst.addr() >> 12);
        if guest_shim::grants::init().is_err() {
            failed.push(("setup", "our grant table cannot be mapped".into()));
            return failed;
        }
        let Some(gref) = guest_shim::grants::grant_access(me, dst_gfn, false) else {
            failed.push(("setup", "no free grant entry".into()));
            return failed;
        };
        let own = GnttabCopyPtr::from_gmfn(src_gfn, DOMID_SELF, 0);
        let cases: [(&'static str, GnttabCopyPtr, GnttabCopyPtr, u16, u16, i16); 7] = [
            (
                "to a self-grant by DOMID_SELF",
                own,
                GnttabCopyPtr::from_gref(gref, DOMID_SELF, 0),
                4096,
                GNTCOPY_DEST_GREF,
                st::OKAY,
            ),
            (
                "to a self-grant by our id",
                own,
                GnttabCopyPtr::from_gref(gref, me, 8),
                8,
                GNTCOPY_DEST_GREF,
                st::OKAY,
            ),
            (
                "to a bad ref, too long",
                own,
                GnttabCopyPtr::from_gref(1 << 20, DOMID_SELF, 0),
                5000,
                GNTCOPY_DEST_GREF,
                st::BAD_GNTREF,
            ),
            (
                "from a frame named by our id",
                GnttabCopyPtr::from_gmfn(src_gfn, me, 0),
                GnttabCopyPtr::from_gref(gref, DOMID_SELF, 0),
                8,
                GNTCOPY_DEST_GREF,
                st::PERMISSION_DENIED,
            ),
            (
                "past the page",
                own,
                GnttabCopyPtr::from_gref(gref, DOMID_SELF, 4000),
                200,
                GNTCOPY_DEST_GREF,
                st::BAD_COPY_ARG,
            ),
            (
                "empty, from a bad domain",
                GnttabCopyPtr::from_gref(0, 0x7fe0, 0),
                own,
                0,
                GNTCOPY_SOURCE_GREF,
                st::BAD_DOMAIN,
            ),
            (
                "empty, with a bad grant ref",
                own,
                GnttabCopyPtr::from_gref(1 << 20, DOMID_SELF, 0),
                0,
                GNTCOPY_DEST_GREF,
                st::BAD_GNTREF,
            ),
        ];
        for (what, source, dest, len, flags, want) in cases {
            let got = copy_status(source, dest, len, flags);
            if got != want {
                failed.push((what, alloc::format!("status {got}, expected {want}")));
            }
        }
        // SAFETY: dst is a page of ours, granted to ourselves above.
        let copied = unsafe { core::slice::from_raw_parts(dst.addr() as *const u8, 4096) };
        if copied.iter().any(|&b| b != 0x5a) {
            failed.push(("to a self-grant", "the bytes did not arrive".into()));
        }
        guest_shim::grants::end_access(gref);
        failed
    }

    const CR4_VMXE: u64 = 1 << 13;
    const VECTOR_GP: u8 = 13;

    /// #GPs taken by `gp_skip_entry` (each skips the 3-byte `mov cr4, rax`).
    #[unsafe(no_mangle)]
    static HOSTILE_GP_COUNT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

    core::arch::global_asm!(
        r#"
        .global hostile_gp_skip_entry
    hostile_gp_skip_entry:
        add rsp, 8
        add qword ptr [rsp], 3
        lock inc dword ptr [rip + HOSTILE_GP_COUNT]
        iretq
    "#
    );

    unsafe extern "C" {
        static hostile_gp_skip_entry: u8;
    }

    /// Sets `bits` in CR4 with #GP caught; true if the write faulted and
    /// CR4 is unchanged.
    fn cr4_write_faults(bits: u64) -> bool {
        use core::sync::atomic::Ordering;
        guest_shim::traps::set_gate(VECTOR_GP, &raw const hostile_gp_skip_entry as u64);
        let before: u64;
        let after: u64;
        // SAFETY: the #GP gate points at the skip stub for the duration;
        // the `mov cr4, rax` is the 3-byte form it skips.
        unsafe {
            core::arch::asm!("mov {}, cr4", out(reg) before);
            core::arch::asm!(".byte 0x0f, 0x22, 0xe0", in("rax") before | bits);
            core::arch::asm!("mov {}, cr4", out(reg) after);
        }
        guest_shim::traps::restore_gate(VECTOR_GP);
        HOSTILE_GP_COUNT.load(Ordering::SeqCst) == 1 && after == before
    }

    const VECTOR_UD: u8 = 6;
    /// VMRUN, VMLOAD, VMSAVE, STGI, CLGI, SKINIT, VMXOFF, VMLAUNCH,
    /// VMRESUME: all 3 bytes long.
    const VIRT_INSTRUCTIONS: u32 = 9;

    /// #UDs taken by `ud_skip_entry` (each skips a 3-byte instruction).
    #[unsafe(no_mangle)]
    static HOSTILE_UD_COUNT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

    core::arch::global_asm!(
        r#"
        .global hostile_ud_skip_entry
    hostile_ud_skip_entry:
        add qword ptr [rsp], 3
        lock inc dword ptr [rip + HOSTILE_UD_COUNT]
        iretq
    "#
    );

    unsafe extern "C" {
        static hostile_ud_skip_entry: u8;
    }

    /// Runs each SVM and VMX instruction with #UD caught; returns how many
    /// raised it.
    fn virtualization_instructions_ud() -> u32 {
        use core::sync::atomic::Ordering;
        guest_shim::traps::set_gate(VECTOR_UD, &raw const hostile_ud_skip_entry as u64);
        // SAFETY: the #UD gate points at the skip stub for the duration;
        // each instruction is 3 bytes, and none of them may do anything
        // in a guest but fault (RAX points at nothing they could use).
        unsafe {
            core::arch::asm!(
                ".byte 0x0f, 0x01, 0xd8", // vmrun
                ".byte 0x0f, 0x01, 0xda", // vmload
                ".byte 0x0f, 0x01, 0xdb", // vmsave
                ".byte 0x0f, 0x01, 0xdc", // stgi
                ".byte 0x0f, 0x01, 0xdd", // clgi
                ".byte 0x0f, 0x01, 0xde", // skinit
                ".byte 0x0f, 0x01, 0xc4", // vmxoff
                ".byte 0x0f, 0x01, 0xc2", // vmlaunch
                ".byte 0x0f, 0x01, 0xc3", // vmresume
                in("rax") 0u64,
            );
        }
        guest_shim::traps::restore_gate(VECTOR_UD);
        HOSTILE_UD_COUNT.load(Ordering::SeqCst)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
