//! physdev_op: Dom0 maps its devices' interrupt lines (GSIs) to pirqs,
//! asks whether a pirq needs an EOI, and EOIs it. A DomU owns no device:
//! every sub-op is -EPERM for it, as Xen's XSM default policy answers.

use pv_abi::DOMID_SELF;
use pv_abi::physdev::{
    MAP_PIRQ_TYPE_GSI, PHYSDEVOP_EOI, PHYSDEVOP_IRQ_STATUS_QUERY, PHYSDEVOP_MAP_PIRQ,
    PHYSDEVOP_SETUP_GSI, PHYSDEVOP_UNMAP_PIRQ, PhysdevEoi, PhysdevIrqStatusQuery, PhysdevMapPirq,
    PhysdevUnmapPirq, XENIRQSTAT_NEEDS_EOI,
};

use super::{Caller, Errno, HcResult};
use crate::domain::devices::{self, PirqError};

impl From<PirqError> for Errno {
    fn from(e: PirqError) -> Self {
        match e {
            PirqError::NotADeviceGsi => Errno::Inval,
            PirqError::NoVector => Errno::NoSpc,
        }
    }
}

pub(super) fn physdev_op(c: &Caller, cmd: u64, arg: u64) -> HcResult {
    // Xen's hvm_physdev_op: a PVH DomU has no pirqs and is no hardware
    // domain, so every sub-op is -ENOSYS to it (measured on Xen 4.17).
    if !c.domain.privileged {
        return Err(Errno::NoSys);
    }
    match cmd {
        PHYSDEVOP_MAP_PIRQ => {
            let mut op: PhysdevMapPirq = c.read(arg)?;
            // Device pass-through to other domains is not supported.
            if op.domid != DOMID_SELF && op.domid != c.domain.id {
                return Err(Errno::Inval);
            }
            if op.r#type != MAP_PIRQ_TYPE_GSI {
                // MSI needs the hypervisor to own the MSI capability.
                return Err(Errno::OpNotSupp);
            }
            let gsi = u32::try_from(op.index).map_err(|_| Errno::Inval)?;
            // The pirq is the GSI; a caller asking for another gets -EINVAL.
            if op.pirq >= 0 && op.pirq as u32 != gsi {
                return Err(Errno::Inval);
            }
            op.pirq = devices::map_gsi(gsi)? as i32;
            c.write(arg, &op)?;
            Ok(0)
        }
        PHYSDEVOP_UNMAP_PIRQ => {
            let op: PhysdevUnmapPirq = c.read(arg)?;
            if op.pirq < 0 || !devices::is_mapped(op.pirq as u32) {
                return Err(Errno::Inval);
            }
            // Kept routed (masked once its port closes): nothing else
            // may take a device's line.
            Ok(0)
        }
        PHYSDEVOP_EOI => {
            let op: PhysdevEoi = c.read(arg)?;
            if devices::eoi(op.irq) {
                Ok(0)
            } else {
                Err(Errno::Inval)
            }
        }
        PHYSDEVOP_IRQ_STATUS_QUERY => {
            let mut op: PhysdevIrqStatusQuery = c.read(arg)?;
            op.flags = if devices::is_mapped(op.irq) {
                XENIRQSTAT_NEEDS_EOI
            } else {
                0
            };
            c.write(arg, &op)?;
            Ok(0)
        }
        // The GSI's trigger and polarity come from the MADT already.
        PHYSDEVOP_SETUP_GSI => Ok(0),
        _ => Err(Errno::NoSys),
    }
}
