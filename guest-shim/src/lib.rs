//! guest-shim: what every small Pavise (or Xen PVH) guest kernel needs.
//!
//! - the PVH entry (`entry!` names the kernel's `fn main(&StartInfo) -> !`):
//!   the Xen ELF note, the 32-bit start, long mode on identity page tables,
//!   SSE, an IDT whose handlers report a fault and crash the domain
//!   (`traps`), a 1 MiB heap for `alloc`, and the parsed `hvm_start_info`
//!   ([`start_info`]);
//! - hypervisor discovery through CPUID ([`discovery`]), the hypercall page
//!   and typed hypercall wrappers (`hypercall`);
//! - `print!`/`println!` on the hypervisor console (`console`), the panic
//!   handler, `shutdown`, `domid`, `vcpu_id`, `rdtsc`;
//! - secondary vCPUs (`smp`), event channels (`events`) over the
//!   shared_info page (`shared_info`), pvclock time and timers (`time`),
//!   grant tables (`grants`), the XenStore client (`xenstore`) and the PV
//!   console ring writer (`console_ring`);
//! - split-driver front ends: block (`blkfront`) and network
//!   ([`netfront`]), on shared xenbus handshake helpers (`xenbus`) and
//!   heap pages for sharing (`pages`).
//!
//! Booted bare by QEMU (no Xen CPUID leaves), the same kernel prints on
//! COM1 and ends QEMU through `isa-debug-exit`, so one binary can be
//! measured with and without the hypervisor.
//!
//! Only the pure parts ([`start_info`] parsing, [`discovery`]'s CPUID scan,
//! [`netfront`]'s response checks) are built for the host, where
//! `cargo test` runs their tests; the rest exists for
//! `target_os = "none"` only.
#![no_std]

extern crate alloc;

#[cfg(target_os = "none")]
pub mod blkfront;
pub mod byte_ring;
#[cfg(target_os = "none")]
pub mod console;
#[cfg(target_os = "none")]
pub mod console_ring;
pub mod discovery;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
pub mod events;
#[cfg(target_os = "none")]
pub mod grants;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod hypercall;
#[cfg(target_os = "none")]
pub mod lapic;
pub mod netfront;
#[cfg(target_os = "none")]
pub mod pages;
#[cfg(target_os = "none")]
pub mod shared_info;
#[cfg(target_os = "none")]
pub mod smp;
pub mod start_info;
#[cfg(target_os = "none")]
pub mod time;
#[cfg(target_os = "none")]
pub mod traps;
#[cfg(target_os = "none")]
pub mod xenbus;
#[cfg(target_os = "none")]
pub mod xenstore;

pub use pv_abi;
pub use pv_abi::errno::Errno;
pub use pv_abi::hypercall::ShutdownReason;
pub use start_info::StartInfo;

/// Names the kernel's main function: `guest_shim::entry!(main);` with
/// `fn main(info: &StartInfo) -> !`.
///
/// It defines the symbol `__guest_main`, which the shim's start-up code
/// calls on the boot vCPU once long mode, the IDT, the heap, the
/// hypercall page and the start info are ready. A kernel has exactly one.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        pub extern "Rust" fn __guest_main(info: &$crate::StartInfo<'static>) -> ! {
            let main: fn(&$crate::StartInfo<'static>) -> ! = $main;
            main(info)
        }
    };
}

/// The `main` a guest kernel binary gets when built for the host (where
/// it cannot run): one sentence saying how to build it, and exit status 2.
#[macro_export]
macro_rules! host_main {
    () => {
        #[cfg(not(target_os = "none"))]
        fn main() {
            eprintln!(
                "{} is a guest kernel: build it with `cargo xtask build`",
                env!("CARGO_BIN_NAME")
            );
            std::process::exit(2);
        }
    };
}

/// Reads the time-stamp counter.
#[cfg(target_os = "none")]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads a counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Our domain id, from CPUID (`None` when running bare, or when the
/// hypervisor does not advertise it).
#[cfg(target_os = "none")]
pub fn domid() -> Option<u16> {
    hypercall::hypervisor().and_then(|hv| hv.domid)
}

/// The id of the vCPU this runs on, from CPUID (`None` when running bare,
/// or when the hypervisor does not advertise it).
#[cfg(target_os = "none")]
pub fn vcpu_id() -> Option<u32> {
    let hv = hypercall::hypervisor()?;
    hv.vcpu_id(discovery::cpuid)
}

/// Ends the domain with `reason` (SCHEDOP_shutdown); bare, ends QEMU
/// through `isa-debug-exit` with `0x10` (poweroff) or `0x13` (any other
/// reason), the convention the hypervisor uses for its own exit.
#[cfg(target_os = "none")]
pub fn shutdown(reason: ShutdownReason) -> ! {
    if hypercall::available() {
        // What is still in the console ring would go with the domain.
        console::drain();
        let _ = hypercall::sched_shutdown(reason);
    } else {
        console::bare_exit(reason);
    }
    loop {
        // SAFETY: with interrupts off this only stops the vCPU; the
        // hypervisor has ended the domain anyway.
        unsafe { core::arch::asm!("cli", "hlt") };
    }
}
