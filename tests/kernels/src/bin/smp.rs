//! smp: brings up vCPU 1 (VCPUOP_initialise + VCPUOP_up through the
//! shim); each vCPU reports with its id from CPUID, vCPU 1 sets a flag,
//! and vCPU 0 waits for it (bounded, yielding) before the verdict.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicBool, Ordering};

    use guest_shim::{ShutdownReason, StartInfo, hypercall, println, shutdown, smp};

    static SECOND_UP: AtomicBool = AtomicBool::new(false);
    const STACK: usize = 16 * 1024;
    const WAIT_ROUNDS: u32 = 200_000;

    extern "C" fn secondary() -> ! {
        match guest_shim::vcpu_id() {
            Some(1) => {
                println!("smp: vcpu 1 up");
                SECOND_UP.store(true, Ordering::SeqCst);
            }
            other => println!("smp: FAIL the second vCPU says it is {other:?}"),
        }
        loop {
            let _ = hypercall::sched_block();
        }
    }

    fn main(_: &StartInfo) -> ! {
        match guest_shim::vcpu_id() {
            Some(0) => println!("smp: vcpu 0 up"),
            other => {
                println!("smp: FAIL the boot vCPU says it is {other:?}");
                shutdown(ShutdownReason::Poweroff)
            }
        }
        if let Err(e) = smp::start_secondary_vcpu(1, secondary, smp::alloc_stack(STACK)) {
            println!("smp: FAIL bringing up vcpu 1: {e}");
            shutdown(ShutdownReason::Poweroff)
        }
        if hypercall::vcpu_is_up(1) != Ok(true) {
            println!("smp: FAIL vcpu 1 not reported up");
            shutdown(ShutdownReason::Poweroff)
        }
        for _ in 0..WAIT_ROUNDS {
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
