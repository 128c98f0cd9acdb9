//! crasher: crashes the way its command line says, after printing
//! `crasher: <mode>`: `triple-fault` (an empty IDT, then int3), `ud` (an
//! undefined instruction, which the shim's exception handler reports as a
//! crash with SCHEDOP_shutdown), `wild-write` (a store to guest-physical
//! 0xf0000000, far beyond its RAM but inside its own identity map). No
//! PASS verdict: the hypervisor reports the crash, and must end only this
//! domain; a `crasher: FAIL` line says the crash did not happen.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::{ShutdownReason, StartInfo, println, shutdown, traps};

    /// Far beyond any domain's memory, still mapped by the shim's page
    /// tables: only the hypervisor's nested paging can stop the store.
    const WILD: u64 = 0xf000_0000;

    fn main(info: &StartInfo) -> ! {
        let mode = info.cmdline().trim();
        println!("crasher: {mode}");
        match mode {
            "triple-fault" => {
                traps::clear_idt();
                // SAFETY: not safe: faulting on purpose.
                unsafe { core::arch::asm!("int3") };
            }
            // SAFETY: not safe: faulting on purpose.
            "ud" => unsafe { core::arch::asm!("ud2") },
            "wild-write" => {
                let target = core::hint::black_box(WILD) as *mut u64;
                // SAFETY: not safe: an out-of-bounds store on purpose.
                unsafe { core::ptr::write_volatile(target, 0xdead) };
            }
            // SCHEDOP_shutdown with a reason Xen gives no name.
            "code-77" => {
                let reason = 77u32;
                // SAFETY: SCHEDOP_shutdown with a live reason word.
                unsafe {
                    guest_shim::hypercall::raw(
                        guest_shim::pv_abi::hypercall::Hypercall::SchedOp.raw() as u64,
                        2,
                        core::ptr::from_ref(&reason) as u64,
                        0,
                        0,
                        0,
                    )
                };
            }
            other => println!("crasher: FAIL unknown mode '{other}'"),
        }
        println!("crasher: FAIL still alive");
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
