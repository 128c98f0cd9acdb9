//! guest-shim: what every small Pavise (or Xen PVH) guest kernel needs.
//!
//! The PVH entry (Xen ELF note, 32-bit start, switch to long mode on
//! identity page tables), hypervisor discovery through CPUID, the hypercall
//! page, typed hypercall wrappers, console output with `print!`/`println!`,
//! a panic handler that reports and shuts the domain down as crashed, an
//! exception handler doing the same, and a heap. A kernel provides
//! `fn main(&StartInfo) -> !` and names it with [`entry!`].
//!
//! Booted bare by QEMU (no Xen CPUID leaves), the same kernel prints on
//! COM1 and powers QEMU off through `isa-debug-exit`, so one binary can be
//! measured with and without the hypervisor.
#![no_std]

extern crate alloc;

pub mod console;
#[cfg(target_os = "none")]
pub mod console_ring;
#[cfg(target_os = "none")]
pub mod entry;
#[cfg(target_os = "none")]
pub mod events;
#[cfg(target_os = "none")]
pub mod grants;
pub mod hypercall;
pub mod ring;
pub mod start_info;
#[cfg(target_os = "none")]
pub mod xenstore;

pub use pv_abi;
pub use start_info::StartInfo;

/// Names the kernel's main function: `guest_shim::entry!(main);` with
/// `fn main(info: &StartInfo) -> !`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        pub extern "Rust" fn __guest_main(info: &$crate::StartInfo) -> ! {
            let main: fn(&$crate::StartInfo) -> ! = $main;
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
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads a counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Xen's shutdown reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ShutdownReason {
    Poweroff = 0,
    Reboot = 1,
    Crash = 3,
}

/// Ends the domain (or, bare, QEMU) with `reason`.
pub fn shutdown(reason: ShutdownReason) -> ! {
    if hypercall::available() {
        let _ = hypercall::sched_shutdown(reason as u32);
    } else {
        console::bare_exit(reason);
    }
    loop {
        // SAFETY: halting is harmless; the hypervisor has ended us anyway.
        unsafe { core::arch::asm!("cli", "hlt") };
    }
}
