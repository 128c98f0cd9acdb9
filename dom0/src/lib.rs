//! Dom0's pure logic, host-tested: the XenStore core, the boot-time DomU
//! list from the command line, the serial input router, the split-driver
//! back ends' cores (shared-ring indices, blkback, netback) and the
//! Ethernet switch between vifs and the uplink. The bare-metal binary
//! (`main.rs`) wires them to the guests' rings.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

/// Cases for a property test: `default`, or `PROPTEST_CASES` when set
/// (`cargo xtask fuzz --host` raises it; proptest's own default reads it,
/// a fixed `with_cases` would not).
#[cfg(test)]
pub(crate) fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub mod backoff;
pub mod backring;
pub mod blkback;
pub mod cmdline;
pub mod dma;
pub mod echoes;
pub mod files;
pub mod input;
pub mod netback;
pub mod store;
pub mod switch;
pub mod xl;
/// The xl.cfg parser, a crate of its own so that xtask checks configs on
/// the host the same way.
pub use xlcfg;

// xlcfg's limits are Dom0's.
const _: () = assert!(xlcfg::NAME_MAX == cmdline::NAME_MAX);
const _: () = assert!(xlcfg::VCPUS_MAX == cmdline::VCPUS_MAX);
const _: () = assert!(xlcfg::VBD_DEVS_MAX == cmdline::VBD_DEVS_MAX);
const _: () = assert!(xlcfg::VIF_HANDLE_MAX == cmdline::VIF_HANDLE_MAX);
