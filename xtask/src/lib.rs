//! Pavise's host tool as a library: building the bare-metal crates, making
//! the GRUB image, booting QEMU and decoding how it ended. The `xtask`
//! binary is its command line; the scenario tests (`pavise-tests`) use it to
//! boot machines.

pub mod bare_metal;
pub mod bench;
pub mod bench_chart;
pub mod bochs;
pub mod configs;
pub mod create_bench;
pub mod disk;
pub mod disk_bench;
pub mod domains;
pub mod error;
pub mod exit;
pub mod fuzz;
pub mod grub;
pub mod kvm;
pub mod linux;
pub mod linux_bench;
pub mod linux_disk_bench;
pub mod linux_net;
pub mod linux_net_bench;
pub mod linux_root;
pub mod machine;
pub mod net;
pub mod net_bench;
pub mod prereqs;
pub mod progress;
pub mod soak;
pub mod suite;
pub mod vmx_bench;
pub mod workspace;
pub mod xen_check;
pub mod xl;
pub mod xtf;

pub use bare_metal::{artifact, build_all, check_built};
pub use error::{Error, Result};
pub use exit::{Exit, HvStatus};
pub use machine::{Backend, Boot, Ended, Machine, Prepared, RunOutcome, TypeWhen};
pub use net::{HostFwd, Uplink};
