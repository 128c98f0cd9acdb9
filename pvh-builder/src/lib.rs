//! Building a PVH domain's initial memory, as plain data: which bytes go
//! at which guest-physical address. The hypervisor's boot-time builder and
//! Dom0's run-time builder both call [`layout::load`] and differ only in how
//! they reach guest memory.
//!
//! Modules:
//! - [`elf`]: the PVH kernel image (ELF32/ELF64, `XEN_ELFNOTE_PHYS32_ENTRY`);
//! - [`acpi`]: the ACPI tables a DomU is given (RSDP, XSDT, FADT, MADT, ...);
//! - [`layout`]: where the kernel, `hvm_start_info`, modules, ACPI tables
//!   and the console/XenStore pages go, and the memory map.
//!
//! Pure and total: no `unsafe`, no hardware, `alloc` only. Every input,
//! the kernel image above all, is treated as hostile: a malformed one gives
//! an error, never a panic. `cargo test -p pvh-builder` runs on the host.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod acpi;
pub mod elf;
pub mod layout;

/// The hypervisor's parser of the machine's own ACPI tables, compiled into
/// the tests as an independent reader of what [`acpi::build`] writes.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../hypervisor/src/acpi.rs"]
mod firmware_acpi;
