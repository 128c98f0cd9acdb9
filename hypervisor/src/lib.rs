//! Pavise, a Xen-style paravirtual hypervisor.
//!
//! The crate is a library so that its pure cores (command line, frame
//! allocator, ACPI parsing, and later event channels, grants, scheduler
//! decisions) build and test on the host; everything that touches hardware
//! is compiled only for the bare-metal target.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod acpi;
pub mod cmdline;
pub mod conring;
pub mod console_filter;
pub mod domain;
pub mod evtchn;
pub mod grant;
pub mod hvm_params;
pub mod iommu;
pub mod mm;
pub mod pci;
pub mod platform;
pub mod virt;
pub mod wallclock;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod boot;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod hypercall;
#[cfg(target_os = "none")]
pub mod timeline;
