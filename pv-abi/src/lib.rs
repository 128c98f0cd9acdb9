//! The guest ABI: Xen's public PVH interface as Rust types and constants,
//! shared by the hypervisor, guest-shim and Dom0 so that each number and
//! layout is written once. The reference is Xen's `xen/include/public/`;
//! every `#[repr(C)]` type has a test of its size and field offsets.
#![no_std]

pub mod console;
pub mod grant_table;
pub mod memory;
pub mod xenstore;

/// `DOMID_SELF` (xen.h).
pub const DOMID_SELF: u16 = 0x7ff0;
