//! Dom0's pure logic, host-tested: the XenStore core, the boot-time DomU
//! list from the command line and the serial input router. The
//! bare-metal binary (`main.rs`) wires them to the guests' rings.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod blkback;
pub mod cmdline;
pub mod dma;
pub mod input;
pub mod store;
