//! Dom0's pure logic, host-tested: the XenStore core, the boot-time DomU
//! list from the command line, the serial input router, the split-driver
//! back ends' cores (shared-ring indices, blkback, netback) and the
//! Ethernet switch between vifs and the uplink. The bare-metal binary
//! (`main.rs`) wires them to the guests' rings.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod backring;
pub mod blkback;
pub mod cmdline;
pub mod dma;
pub mod input;
pub mod netback;
pub mod store;
pub mod switch;
pub mod xl;
pub mod xlcfg;
