//! Domains: the manifest that names them, the PVH image loader, and (on
//! bare metal) the domain objects, builder and scheduler.

#[cfg(target_os = "none")]
pub mod apic;
#[cfg(target_os = "none")]
pub mod builder;
#[cfg(target_os = "none")]
pub mod devices;
#[cfg(target_os = "none")]
pub mod events;
#[cfg(target_os = "none")]
pub mod exits;
#[cfg(target_os = "none")]
pub mod foreign;
#[cfg(target_os = "none")]
pub mod grants;
pub mod manifest;
pub mod mmio;
#[cfg(target_os = "none")]
pub mod registry;
pub mod runstate;
#[cfg(target_os = "none")]
pub mod sched;

pub use pvh_builder::elf;
