//! timer: VIRQ_TIMER with VCPUOP_set_singleshot_timer ticks at the asked
//! rate (20 Hz for one second), and system time from vcpu_time_info moves
//! with the TSC.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU32, Ordering};

    use guest_shim::events::{self, Virq};
    use guest_shim::{ShutdownReason, StartInfo, println, shutdown, time};

    const PERIOD_NS: u64 = 50_000_000;
    const TICKS: u32 = 20;
    static COUNT: AtomicU32 = AtomicU32::new(0);

    fn tick(_port: u32) {
        let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
        if n < TICKS {
            let _ = time::set_timer(time::system_time_ns() + PERIOD_NS);
        }
    }

    fn main(_: &StartInfo) -> ! {
        if let Err(e) = events::init() {
            println!("timer: FAIL events init: {e:?}");
            shutdown(ShutdownReason::Poweroff)
        }
        let port = match events::bind_virq(Virq::Timer, 0) {
            Ok(p) => p,
            Err(e) => {
                println!("timer: FAIL bind_virq: {e:?}");
                shutdown(ShutdownReason::Poweroff)
            }
        };
        events::on(port, tick);
        let (t0, tsc0) = (time::system_time_ns(), guest_shim::rdtsc());
        if let Err(e) = time::set_timer(t0 + PERIOD_NS) {
            println!("timer: FAIL set_singleshot_timer: {e:?}");
            shutdown(ShutdownReason::Poweroff)
        }
        while COUNT.load(Ordering::SeqCst) < TICKS {
            events::wait_for_event();
        }
        let elapsed_ms = (time::system_time_ns() - t0) / 1_000_000;
        let tsc = guest_shim::rdtsc() - tsc0;
        println!(
            "timer: {TICKS} ticks at {} ms period took {elapsed_ms} ms ({tsc} TSC cycles, port {port})",
            PERIOD_NS / 1_000_000
        );
        let expected = TICKS as u64 * PERIOD_NS / 1_000_000;
        // Ticks come on the hypervisor's 10 ms scheduler tick: allow for
        // that, and for emulation noise, but not for a wrong rate.
        if elapsed_ms >= expected && elapsed_ms <= expected * 3 / 2 {
            println!("timer: PASS");
        } else {
            println!("timer: FAIL expected about {expected} ms");
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
