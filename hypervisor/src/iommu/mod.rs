//! DMA containment with an Intel VT-d IOMMU (QEMU's `intel-iommu`): every
//! PCI function Dom0 owns is put in one remapping domain whose
//! second-level page tables map Dom0's guest-physical pages — its RAM and
//! its DMA pool — to their host frames, and nothing else. A device Dom0
//! programs can then reach Dom0's memory only: a DMA address outside it
//! faults in the IOMMU instead of landing in the hypervisor or a DomU.
//!
//! Dom0's pages never change frames while it lives (no ballooning; a
//! page displaced by a grant or foreign mapping stays Dom0's), so the
//! tables are built once, before Dom0 runs.

pub mod tables;
#[cfg(target_os = "none")]
mod vtd;

#[cfg(target_os = "none")]
pub use vtd::{Fault, IommuError, Protected, protect, take_fault};
