//! bench: the null hypercall round trip (xen_version), the CPUID exit, a
//! loopback event-channel send, grant copy (one page per call and 32 per
//! call) against memcpy, the XenStore read round trip, and a CPU-bound
//! loop — in TSC cycles (instructions under `-icount shift=0`). Runs bare
//! too (then only the loop).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::grants::{self, CopyPtr};
    use guest_shim::hypercall::DOMID_SELF;
    use guest_shim::xenstore::XenStore;
    use guest_shim::{
        ShutdownReason, StartInfo, discovery, events, hypercall, println, rdtsc, shutdown, time,
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
    /// Copies per GNTTABOP_copy call in the batched figure (what a back
    /// end shares one world switch between).
    const BATCH: usize = 32;
    const READS: u64 = 200;
    const CPUIDS: u64 = 2000;
    const SENDS: u64 = 2000;

    /// Mean cycles of `f` over `n` calls.
    fn cycles_per(n: u64, mut f: impl FnMut()) -> u64 {
        let start = rdtsc();
        for _ in 0..n {
            f();
        }
        (rdtsc() - start) / n
    }

    /// The CPUID exit (a leaf the hypervisor answers, not one it forwards
    /// to an upcall) and a loopback EVTCHNOP_send: our own port bound to
    /// another of ours, masked so the send only sets it pending (cleared
    /// each time, so every send does the whole delivery).
    fn exits() {
        let cpuid = cycles_per(CPUIDS, || {
            core::hint::black_box(discovery::cpuid(core::hint::black_box(0)));
        });
        println!("bench: cpuid_cycles={cpuid}");
        let loopback = events::alloc_unbound(DOMID_SELF)
            .and_then(|a| Ok((a, events::bind_interdomain(DOMID_SELF, a)?)));
        match loopback {
            Ok((a, b)) => {
                events::mask_port(b);
                let send = cycles_per(SENDS, || {
                    events::clear_pending(b);
                    let _ = core::hint::black_box(events::send(a));
                });
                println!("bench: evtchn_send_cycles={send}");
                let _ = events::close(b);
                let _ = events::close(a);
                events::release_port(b);
            }
            Err(e) => println!("bench: no loopback channel ({e:?})"),
        }
    }

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
        let (t0, tsc0) = (time::system_time_ns(), rdtsc());
        for _ in 0..COPIES {
            let _ = core::hint::black_box(grants::copy(own(src), own(dst), 4096));
        }
        let grant_cycles = (rdtsc() - tsc0) / COPIES;
        let grant_ns = (time::system_time_ns() - t0).max(1);
        // The same pages in batches per hypercall: what a back end does.
        let ops = [grants::CopyOp {
            source: own(src),
            dest: own(dst),
            len: 4096,
        }; BATCH];
        let mut results = [Ok(()); BATCH];
        let batches = COPIES / BATCH as u64 + 1;
        let t0 = time::system_time_ns();
        for _ in 0..batches {
            grants::copy_many(core::hint::black_box(&ops), &mut results);
        }
        let batch_ns = (time::system_time_ns() - t0).max(1);
        let (t0, tsc0) = (time::system_time_ns(), rdtsc());
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
        let memcpy_cycles = (rdtsc() - tsc0) / COPIES;
        let memcpy_ns = (time::system_time_ns() - t0).max(1);
        let mibps = |ns: u64| COPIES * 4096 * 1_000_000_000 / ns / (1 << 20);
        let batched = batches * BATCH as u64 * 4096 * 1_000_000_000 / batch_ns / (1 << 20);
        println!(
            "bench: grant_copy_mibps={} grant_copy_batch32_mibps={batched} memcpy_mibps={}",
            mibps(grant_ns),
            mibps(memcpy_ns)
        );
        println!("bench: grant_copy_cycles={grant_cycles} memcpy_cycles={memcpy_cycles}");
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
                exits();
                inter_domain();
            }
            None => println!("bench: hypercall_cycles=none loop_cycles={loop_cycles}"),
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
