//! `hvm_op` (`xen/include/public/hvm/hvm_op.h`, `params.h`) as Xen 4.17's
//! `do_hvm_op` answers a PVH guest: HVM parameters with Xen's rules of who
//! may read and set which (`hvm_allow_get_param`/`_set_param`), the event
//! upcall vector, a TLB flush of all the domain's vCPUs, memory types,
//! `pagetable_dying` (only shadow paging has a use for it), the time, and
//! the sub-ops that only record or trace.

use core::sync::atomic::Ordering;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{Caller, Errno, HcResult};
use crate::domain::events;
use crate::domain::registry::Domain;
use crate::hvm_params::{Access, NR_PARAMS, access, param, value_ok};

const SET_PARAM: u64 = 0;
const GET_PARAM: u64 = 1;
const FLUSH_TLBS: u64 = 5;
const PAGETABLE_DYING: u64 = 9;
const GET_TIME: u64 = 10;
const XENTRACE: u64 = 11;
const GET_MEM_TYPE: u64 = 15;
const SET_EVTCHN_UPCALL_VECTOR: u64 = 23;
const GUEST_REQUEST_VM_EVENT: u64 = 24;
const ALTP2M: u64 = 25;

#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
struct HvmParam {
    domid: u16,
    pad: u16,
    index: u32,
    value: u64,
}

pub(super) fn hvm_op(c: &Caller, cmd: u64, arg: u64) -> HcResult {
    match cmd {
        SET_PARAM | GET_PARAM => {
            let mut p: HvmParam = c.read(arg)?;
            if p.index >= NR_PARAMS {
                return Err(Errno::Inval);
            }
            let target = c.target(p.domid)?;
            let own = core::ptr::eq(&**c.domain, &*target);
            match access(p.index, cmd == SET_PARAM) {
                Access::Guest => {}
                Access::Deprecated => return Err(Errno::Inval),
                Access::Toolstack if own => return Err(Errno::Perm),
                Access::Toolstack => {}
            }
            let index = p.index as usize;
            if cmd == GET_PARAM {
                p.value = match p.index {
                    param::ACPI_S_STATE => 0, // never suspended to S3
                    param::VM86_TSS => {
                        target.hvm_params.lock()[param::VM86_TSS_SIZED as usize] & 0xffff_ffff
                    }
                    _ => target.hvm_params.lock()[index],
                };
                c.write(arg, &p)?;
            } else {
                if !value_ok(p.index, p.value) {
                    return Err(Errno::Inval);
                }
                if p.index == param::DM_DOMAIN && p.value != pv_abi::DOMID_SELF as u64 {
                    return Err(Errno::Inval);
                }
                let stored = match p.index {
                    // Xen keeps the legacy TSS parameter in the sized one.
                    param::VM86_TSS => param::VM86_TSS_SIZED as usize,
                    _ => index,
                };
                target.hvm_params.lock()[stored] = p.value;
                if p.index == param::CALLBACK_IRQ {
                    // As Xen's hvm_set_callback_via, for every vCPU.
                    for vcpu in 0..target.vcpus.len() {
                        events::reassert_upcall(&target, vcpu);
                    }
                }
            }
            Ok(0)
        }
        SET_EVTCHN_UPCALL_VECTOR => {
            #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
            #[repr(C)]
            struct UpcallVector {
                vcpu: u32,
                vector: u8,
                pad: [u8; 3],
            }
            let u: UpcallVector = c.read(arg)?;
            // Vectors below 0x10 are exceptions, not interrupts.
            if u.vector < 0x10 || u.vcpu as usize >= c.domain.vcpus.len() {
                return Err(Errno::Inval);
            }
            c.domain.upcall_vector[u.vcpu as usize].store(u.vector, Ordering::SeqCst);
            events::reassert_upcall(c.domain, u.vcpu as usize);
            Ok(0)
        }
        // `arg` must be NULL.
        FLUSH_TLBS if arg != 0 => Err(Errno::Inval),
        FLUSH_TLBS => {
            flush_all_tlbs(c.domain, c.vcpu);
            Ok(0)
        }
        GET_MEM_TYPE => {
            #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
            #[repr(C)]
            struct MemType {
                domid: u16,
                mem_type: u16,
                pad: [u16; 2],
                pfn: u64,
            }
            const HVMMEM_RAM_RW: u16 = 0;
            const HVMMEM_MMIO_DM: u16 = 2;
            let mut m: MemType = c.read(arg)?;
            let target = c.target(m.domid)?;
            // RAM, a grant or a foreign page is RAM; anything else (holes
            // included) would go to a device model.
            let backed = target
                .memory
                .lock()
                .p2m
                .get(crate::mm::guest::Gfn(m.pfn))
                .is_some();
            m.mem_type = if backed {
                HVMMEM_RAM_RW
            } else {
                HVMMEM_MMIO_DM
            };
            c.write(arg, &m)?;
            Ok(0)
        }
        PAGETABLE_DYING => {
            #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
            #[repr(C)]
            struct PagetableDying {
                domid: u16,
                pad: [u16; 3],
                gpa: u64,
            }
            let p: PagetableDying = c.read(arg)?;
            let target = c.target(p.domid).map_err(|e| match e {
                // Xen looks the domain up before any permission check.
                Errno::Perm => Errno::OpNotSupp,
                other => other,
            })?;
            if !core::ptr::eq(&**c.domain, &*target) {
                return Err(Errno::OpNotSupp);
            }
            // A hint for shadow paging; with nested paging Xen has no use
            // for it and says so.
            Err(Errno::Inval)
        }
        GET_TIME => {
            c.write(arg, &crate::arch::time::system_time_ns())?;
            Ok(0)
        }
        XENTRACE => {
            /// `TRACE_EXTRA_MAX` words; `TRC_SUBCLS_SHIFT`.
            const EXTRA_BYTES: u16 = 7 * 4;
            const SUBCLASS_SHIFT: u32 = 12;
            #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
            #[repr(C)]
            struct Xentrace {
                event: u16,
                extra_bytes: u16,
                extra: [u8; EXTRA_BYTES as usize],
            }
            let t: Xentrace = c.read(arg)?;
            if t.extra_bytes > EXTRA_BYTES || u32::from(t.event) >> SUBCLASS_SHIFT != 0 {
                return Err(Errno::Inval);
            }
            Ok(0) // no trace buffers: nothing records it, as a Xen without xentrace
        }
        // No monitor listens: the request is dropped, as on Xen.
        GUEST_REQUEST_VM_EVENT if arg == 0 => Ok(0),
        GUEST_REQUEST_VM_EVENT => Err(Errno::Inval),
        // Alternate p2m views need VMX (Xen's hvm_altp2m_supported).
        ALTP2M => Err(Errno::OpNotSupp),
        _ => Err(Errno::NoSys),
    }
}

/// HVMOP_flush_tlbs: every vCPU of the domain flushes before it runs
/// guest code again. One in guest mode now is waited for until it has
/// left it (at the latest at its next timer interrupt); one outside it
/// flushes at its next entry.
fn flush_all_tlbs(domain: &Domain, caller_vcpu: usize) {
    domain.mapping_generation.fetch_add(1, Ordering::SeqCst);
    for (vcpu, epoch) in domain.guest_epoch.iter().enumerate() {
        let seen = epoch.load(Ordering::SeqCst);
        if vcpu == caller_vcpu || !crate::domain::registry::in_guest(seen) {
            continue;
        }
        while epoch.load(Ordering::SeqCst) == seen && !domain.is_dead() {
            core::hint::spin_loop();
        }
    }
}
