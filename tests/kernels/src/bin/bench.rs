//! bench: the null hypercall round trip (xen_version) and a CPU-bound
//! loop, in TSC cycles. Runs bare too (then without the hypercall).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::grants::{self, CopyPtr};
    use guest_shim::xenstore::XenStore;
    use guest_shim::{
        ShutdownReason, StartInfo, events, hypercall, println, rdtsc, shutdown, time,
    };

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

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    static mut SOURCE: Page = Page([7; 4096]);
    static mut DEST: Page = Page([0; 4096]);
    const COPIES: u64 = 200;
    const READS: u64 = 200;

    /// Grant-copy throughput against an in-guest memcpy of the same size,
    /// and the XenStore read round trip.
    fn inter_domain() {
        if events::init().is_err() || grants::init().is_err() {
            println!("bench: no events or grants");
            return;
        }
        let (src, dst) = (&raw mut SOURCE, &raw mut DEST);
        let own = |p: *mut Page| CopyPtr::Own {
            gfn: p as u64 >> 12,
            offset: 0,
        };
        let t0 = time::system_time_ns();
        for _ in 0..COPIES {
            let _ = core::hint::black_box(grants::copy(own(src), own(dst), 4096));
        }
        let grant_ns = (time::system_time_ns() - t0).max(1);
        // The same pages in batches of 64 per hypercall: what a back end
        // does (one world switch shared by 64 copies).
        let ops = [grants::CopyOp {
            source: own(src),
            dest: own(dst),
            len: 4096,
        }; 64];
        let mut results = [Ok(()); 64];
        let t0 = time::system_time_ns();
        for _ in 0..COPIES / 64 + 1 {
            grants::copy_many(core::hint::black_box(&ops), &mut results);
        }
        let batch_ns = (time::system_time_ns() - t0).max(1);
        let t0 = time::system_time_ns();
        for _ in 0..COPIES {
            // SAFETY: two distinct static pages of ours.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    core::hint::black_box(src as *const u8),
                    dst as *mut u8,
                    4096,
                )
            };
        }
        let memcpy_ns = (time::system_time_ns() - t0).max(1);
        let mibps = |ns: u64| COPIES * 4096 * 1_000_000_000 / ns / (1 << 20);
        let batched = (COPIES / 64 + 1) * 64 * 4096 * 1_000_000_000 / batch_ns / (1 << 20);
        println!(
            "bench: grant_copy_mibps={} grant_copy_batch64_mibps={batched} memcpy_mibps={}",
            mibps(grant_ns),
            mibps(memcpy_ns)
        );
        match XenStore::connect() {
            Ok(mut xs) => {
                let _ = xs.write("bench/x", "1");
                let start = rdtsc();
                for _ in 0..READS {
                    let _ = core::hint::black_box(xs.read("bench/x"));
                }
                println!("bench: xenstore_read_cycles={}", (rdtsc() - start) / READS);
            }
            Err(e) => println!("bench: no XenStore ({e:?})"),
        }
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
            Some(h) => {
                println!("bench: hypercall_cycles={h} loop_cycles={loop_cycles}");
                inter_domain();
            }
            None => println!("bench: hypercall_cycles=none loop_cycles={loop_cycles}"),
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
