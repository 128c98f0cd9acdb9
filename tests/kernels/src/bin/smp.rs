//! smp: brings up vCPU 1 (VCPUOP_initialise + VCPUOP_up); both report.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicBool, Ordering};

    use guest_shim::{ShutdownReason, StartInfo, hypercall, println, shutdown};

    static SECOND_UP: AtomicBool = AtomicBool::new(false);
    #[repr(C, align(16))]
    struct Stack([u8; 16384]);
    static mut STACK: Stack = Stack([0; 16384]);

    extern "C" fn secondary() -> ! {
        println!("smp: vcpu 1 up");
        SECOND_UP.store(true, Ordering::SeqCst);
        loop {
            let _ = hypercall::sched_block();
        }
    }

    fn main(_: &StartInfo) -> ! {
        println!("smp: vcpu 0 up");
        let top = &raw mut STACK as u64 + 16384;
        if let Err(e) = hypercall::start_secondary_vcpu(1, secondary, top) {
            println!("smp: FAIL bringing up vcpu 1: {e:?}");
            shutdown(ShutdownReason::Poweroff)
        }
        if hypercall::vcpu_is_up(1) != Ok(1) {
            println!("smp: FAIL vcpu 1 not reported up");
        }
        for _ in 0..200_000 {
            if SECOND_UP.load(Ordering::SeqCst) {
                println!("smp: PASS");
                shutdown(ShutdownReason::Poweroff)
            }
            let _ = hypercall::sched_yield();
        }
        println!("smp: FAIL vcpu 1 never ran");
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
