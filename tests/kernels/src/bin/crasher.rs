//! crasher: crashes the way its command line says — `triple-fault` (no
//! IDT, then int3), `ud` (an undefined instruction, reported by the
//! shim's handler as a crash), `wild-write` (a store far outside its
//! memory). The hypervisor must end only this domain.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::{ShutdownReason, StartInfo, entry::clear_idt, println, shutdown};

    fn main(info: &StartInfo) -> ! {
        let mode = info.cmdline().trim();
        println!("crasher: {mode}");
        match mode {
            "triple-fault" => {
                clear_idt();
                // SAFETY: not safe: faulting on purpose.
                unsafe { core::arch::asm!("int3") };
            }
            // SAFETY: not safe: faulting on purpose.
            "ud" => unsafe { core::arch::asm!("ud2") },
            "wild-write" => {
                // Far beyond any domain's memory, still identity-mapped.
                let target = core::hint::black_box(0xf000_0000u64) as *mut u64;
                // SAFETY: not safe: an out-of-bounds store on purpose.
                unsafe { core::ptr::write_volatile(target, 0xdead) };
            }
            other => println!("crasher: FAIL unknown mode '{other}'"),
        }
        println!("crasher: FAIL still alive");
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
