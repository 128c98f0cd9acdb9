//! ringlog: writes through the PV console ring only (HVM_PARAM_CONSOLE_PFN
//! and _EVTCHN), more than the ring holds, waiting for Dom0 to drain it as
//! Xen guests do; its verdict reaches the console only through Dom0.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU32, Ordering};

    use guest_shim::hypercall::{self, hvm_param};
    use guest_shim::{ShutdownReason, StartInfo, println, shutdown};

    const OUT: usize = 1024;
    const OUT_SIZE: u32 = 2048;
    const OUT_CONS: usize = 3072 + 8;
    const OUT_PROD: usize = 3072 + 12;

    fn field(ring: *mut u8, offset: usize) -> &'static AtomicU32 {
        // SAFETY: the console ring page is in our identity-mapped RAM; the
        // offsets are its aligned out_cons/out_prod fields.
        unsafe { AtomicU32::from_ptr(ring.add(offset) as *mut u32) }
    }

    fn ring_write(ring: *mut u8, port: u32, text: &[u8]) {
        for &b in text {
            // Wait for room, as xencons clients do: Dom0 drains and notifies.
            let mut spins = 0u64;
            while field(ring, OUT_PROD)
                .load(Ordering::Acquire)
                .wrapping_sub(field(ring, OUT_CONS).load(Ordering::Acquire))
                >= OUT_SIZE
            {
                let _ = hypercall::sched_yield();
                spins += 1;
                if spins > 1_000_000 {
                    println!("ringlog: FAIL the ring never drained");
                    shutdown(ShutdownReason::Poweroff)
                }
            }
            let prod = field(ring, OUT_PROD).load(Ordering::Acquire);
            // SAFETY: inside out[] of the ring page.
            unsafe { core::ptr::write_volatile(ring.add(OUT + (prod % OUT_SIZE) as usize), b) };
            field(ring, OUT_PROD).store(prod.wrapping_add(1), Ordering::Release);
        }
        let _ = hypercall::evtchn_send(port);
    }

    fn main(_: &StartInfo) -> ! {
        let (Ok(pfn), Ok(port)) = (
            hypercall::hvm_get_param(hvm_param::CONSOLE_PFN),
            hypercall::hvm_get_param(hvm_param::CONSOLE_EVTCHN),
        ) else {
            println!("ringlog: FAIL no console ring");
            shutdown(ShutdownReason::Poweroff)
        };
        let ring = (pfn << 12) as *mut u8;
        // 64 lines of 64 bytes: twice what the ring holds.
        for i in 0..64 {
            let mut line = [b'.'; 64];
            line[..8].copy_from_slice(b"ringlog ");
            line[8] = b'0' + (i / 10) as u8;
            line[9] = b'0' + (i % 10) as u8;
            line[63] = b'\n';
            ring_write(ring, port as u32, &line);
        }
        ring_write(ring, port as u32, b"ringlog: PASS\n");
        // Wait until Dom0 has taken everything before going away.
        while field(ring, OUT_CONS).load(Ordering::Acquire)
            != field(ring, OUT_PROD).load(Ordering::Acquire)
        {
            let _ = hypercall::sched_yield();
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
