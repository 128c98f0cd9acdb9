//! The guest ABI: Xen's public PVH interface as Rust types and constants.
#![no_std]
