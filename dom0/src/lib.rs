//! Dom0's pure logic, host-tested: the XenStore core. The bare-metal
//! binary (`main.rs`) wires it to the guests' rings.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod store;
