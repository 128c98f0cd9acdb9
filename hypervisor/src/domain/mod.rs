//! Domains: the manifest that names them, the PVH image loader, and (on
//! bare metal) the domain objects, builder and scheduler.

pub mod elf;
pub mod manifest;
