//! ringlog: writes through the PV console ring only (HVM_PARAM_CONSOLE_PFN
//! and _EVTCHN), twice what the ring holds, waiting for Dom0 to drain it as
//! Xen guests do; its verdict reaches the console only through Dom0.
//! Then, as Xen's test framework does, lines written both with
//! CONSOLEIO_write and to the ring (each to be shown once), and a line
//! written twice to the ring only (to be shown twice). A release build of
//! Xen refuses a DomU's CONSOLEIO_write (-EPERM): there those lines go
//! through the ring only; Pavise takes them, as a debug Xen does.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::console_ring::ConsoleRing;
    use guest_shim::{Errno, ShutdownReason, StartInfo, hypercall, println, shutdown};

    fn main(_: &StartInfo) -> ! {
        let mut ring = match ConsoleRing::connect() {
            Ok(r) => r,
            Err(e) => {
                println!("ringlog: FAIL no console ring: {e:?}");
                shutdown(ShutdownReason::Poweroff)
            }
        };
        // 64 lines of 64 bytes: twice what the ring holds.
        for i in 0..64u8 {
            let mut line = [b'.'; 64];
            line[..8].copy_from_slice(b"ringlog ");
            line[8] = b'0' + i / 10;
            line[9] = b'0' + i % 10;
            line[63] = b'\n';
            if let Err(e) = ring.write(&line) {
                println!("ringlog: FAIL {e:?}");
                shutdown(ShutdownReason::Poweroff)
            }
        }
        let pavise = hypercall::xen_extraversion().is_ok_and(|e| e.as_str().contains("pavise"));
        for line in [&b"ringlog both ways 1\n"[..], b"ringlog both ways 2\n"] {
            match hypercall::console_write(line) {
                Ok(_) => {}
                Err(Errno::EPERM) if !pavise => {} // a release Xen
                Err(e) => println!("ringlog: FAIL CONSOLEIO_write: {e:?}"),
            }
            if let Err(e) = ring.write(line) {
                println!("ringlog: FAIL {e:?}");
                shutdown(ShutdownReason::Poweroff)
            }
        }
        let twice = ring
            .write(b"ringlog ring only\n")
            .and_then(|_| ring.write(b"ringlog ring only\n"));
        if let Err(e) = twice {
            println!("ringlog: FAIL {e:?}");
            shutdown(ShutdownReason::Poweroff)
        }
        let done = ring.write(b"ringlog: PASS\n").and_then(|_| ring.flush());
        if let Err(e) = done {
            println!("ringlog: FAIL {e:?}");
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
