//! bench: the null hypercall round trip (xen_version) and a CPU-bound
//! loop, in TSC cycles. Runs bare too (then without the hypercall).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::{ShutdownReason, StartInfo, hypercall, println, rdtsc, shutdown};

    const HYPERCALLS: u64 = 2000;
    const LOOP_ITERATIONS: u64 = 10_000_000;

    fn cpu_loop() -> u64 {
        let mut x = core::hint::black_box(0x9e37_79b9_7f4a_7c15u64);
        for _ in 0..LOOP_ITERATIONS {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        core::hint::black_box(x)
    }

    fn main(_: &StartInfo) -> ! {
        let hypercall = if hypercall::available() {
            let _ = hypercall::xen_version();
            let start = rdtsc();
            for _ in 0..HYPERCALLS {
                let _ = core::hint::black_box(hypercall::xen_version());
            }
            Some((rdtsc() - start) / HYPERCALLS)
        } else {
            None
        };
        let start = rdtsc();
        cpu_loop();
        let loop_cycles = rdtsc() - start;
        match hypercall {
            Some(h) => println!("bench: hypercall_cycles={h} loop_cycles={loop_cycles}"),
            None => println!("bench: hypercall_cycles=none loop_cycles={loop_cycles}"),
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("a guest kernel: build it with `cargo xtask build`");
    std::process::exit(2);
}
