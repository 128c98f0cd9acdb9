//! fpu: fills the SSE registers with a pattern of its own, then yields
//! the CPU many times and checks the pattern survived every switch to the
//! other domains' vCPUs. Two of these on one CPU prove the world switch
//! keeps each guest's FPU/SSE state apart (XSAVE/XRSTOR).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::{ShutdownReason, StartInfo, hypercall, println, shutdown};

    const ROUNDS: u32 = 300;

    fn set(seed: u64) {
        // SAFETY: SSE is enabled by guest-shim's entry; only xmm registers
        // (declared clobbered) and a scratch register change.
        unsafe {
            core::arch::asm!(
                "movq xmm0, {s}", "add {s}, 1", "movq xmm1, {s}", "add {s}, 1",
                "movq xmm2, {s}", "add {s}, 1", "movq xmm3, {s}", "add {s}, 1",
                "movq xmm4, {s}", "add {s}, 1", "movq xmm5, {s}", "add {s}, 1",
                "movq xmm6, {s}", "add {s}, 1", "movq xmm7, {s}",
                s = inout(reg) seed => _,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
                out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            )
        }
    }

    /// Sum of xmm0..7 low quadwords (the pattern's fingerprint).
    fn fingerprint() -> u64 {
        let (a, b, c, d, e, f, g, h): (u64, u64, u64, u64, u64, u64, u64, u64);
        // SAFETY: reads the xmm registers only.
        unsafe {
            core::arch::asm!(
                "movq {a}, xmm0", "movq {b}, xmm1", "movq {c}, xmm2", "movq {d}, xmm3",
                "movq {e}, xmm4", "movq {f}, xmm5", "movq {g}, xmm6", "movq {h}, xmm7",
                a = out(reg) a, b = out(reg) b, c = out(reg) c, d = out(reg) d,
                e = out(reg) e, f = out(reg) f, g = out(reg) g, h = out(reg) h,
            )
        }
        a.wrapping_add(b)
            .wrapping_add(c)
            .wrapping_add(d)
            .wrapping_add(e)
            .wrapping_add(f)
            .wrapping_add(g)
            .wrapping_add(h)
    }

    fn main(_: &StartInfo) -> ! {
        let seed = 0x1000_0000_0000 * guest_shim::domid().unwrap_or(0) as u64 + 0xabcd;
        set(seed);
        let expected = (0..8).fold(0u64, |acc, i| acc.wrapping_add(seed + i));
        for round in 0..ROUNDS {
            // The hypercall path itself must not touch guest SSE state.
            let _ = hypercall::sched_yield();
            let got = fingerprint();
            if got != expected {
                println!(
                    "fpu: FAIL SSE registers changed after {round} switches ({got:#x} != {expected:#x})"
                );
                shutdown(ShutdownReason::Poweroff)
            }
        }
        println!("fpu: PASS ({ROUNDS} switches)");
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
