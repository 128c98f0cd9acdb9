//! intruder: attacks the inter-domain machinery of its neighbours. It
//! reads what a `pong` domain published (readable on purpose), then tries
//! to bind the port meant for another domain, map and copy the grant meant
//! for another domain, write through a read-only grant given to it, read
//! another DomU's XenStore home, and floods events and XenStore requests.
//! Each attempt must get Xen's error; the neighbours must carry on.
//! Once the attacks on them are over it writes `done` (readable by all)
//! in its XenStore home: the pair, started with `linger=<our domid>`,
//! stays up until then. Command line: `pong=<domid> ping=<domid>`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use alloc::format;

    use guest_shim::grants::{self, CopyPtr, GrantError, GrantStatus};
    use guest_shim::pv_abi::event_channel::{EvtchnBindIpi, EvtchnOp, EvtchnStatus};
    use guest_shim::pv_abi::hypercall::Hypercall;
    use guest_shim::xenstore::{XenStore, XsError};
    use guest_shim::{Errno, ShutdownReason, StartInfo, events, hypercall, println, shutdown};

    const EVENT_CHANNEL_OP: u64 = Hypercall::EventChannelOp as u64;

    fn refused<T>(r: Result<T, GrantError>, status: GrantStatus) -> bool {
        matches!(r, Err(GrantError::Status(s)) if s == status)
    }

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    static mut SLOT: Page = Page([0; 4096]);
    static mut OWN: Page = Page([0; 4096]);

    fn check(failures: &mut u32, what: &str, ok: bool) {
        if !ok {
            println!("intruder: {what}: not refused as it should be");
            *failures += 1;
        }
    }

    fn arg(info: &StartInfo, key: &str) -> u16 {
        info.cmdline()
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn main(info: &StartInfo) -> ! {
        let (pong, ping) = (arg(info, "pong="), arg(info, "ping="));
        let mut f = 0u32;
        if events::init().is_err() || grants::init().is_err() {
            println!("intruder: FAIL setup");
            shutdown(ShutdownReason::Poweroff)
        }
        let Ok(mut xs) = XenStore::connect() else {
            println!("intruder: FAIL no store");
            shutdown(ShutdownReason::Poweroff)
        };
        let home = format!("/local/domain/{pong}/pingpong");
        let mut tries = 0;
        while xs.read(&format!("{home}/ready")).is_err() && tries < 100_000 {
            tries += 1;
            let _ = hypercall::sched_yield();
        }
        let num = |xs: &mut XenStore, k: &str| {
            xs.read(&format!("{home}/{k}"))
                .ok()
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(u32::MAX)
        };
        let (port, gref, rogref) = (
            num(&mut xs, "port"),
            num(&mut xs, "gref"),
            num(&mut xs, "rogref"),
        );

        // Event channels.
        check(
            &mut f,
            "binding a port offered to another domain",
            events::bind_interdomain(pong, port) == Err(Errno::EINVAL),
        );
        check(
            &mut f,
            "sending on a port we do not have",
            events::send(3999) == Err(Errno::EINVAL),
        );
        check(
            &mut f,
            "closing a port we do not have",
            events::close(4000) == Err(Errno::EINVAL),
        );
        let mut status = EvtchnStatus {
            dom: pong,
            port,
            ..Default::default()
        };
        // SAFETY: EVTCHNOP_status with a live struct the hypervisor may write.
        let r = unsafe {
            hypercall::raw(
                EVENT_CHANNEL_OP,
                EvtchnOp::Status.raw().into(),
                core::ptr::from_mut(&mut status) as u64,
                0,
                0,
                0,
            )
        };
        check(
            &mut f,
            "status of another domain's port",
            r == Errno::EPERM.as_ret(),
        );

        // Grants.
        let slot = (&raw mut SLOT) as u64;
        check(
            &mut f,
            "mapping a grant meant for another domain",
            refused(
                grants::map(pong, gref, slot, true),
                GrantStatus::PermissionDenied,
            ),
        );
        let own = CopyPtr::Own {
            gfn: (&raw mut OWN) as u64 >> 12,
            offset: 0,
        };
        check(
            &mut f,
            "copying from a grant meant for another domain",
            refused(
                grants::copy(
                    CopyPtr::Gref {
                        domid: pong,
                        gref,
                        offset: 0,
                    },
                    own,
                    16,
                ),
                GrantStatus::PermissionDenied,
            ),
        );
        check(
            &mut f,
            "mapping a bad grant ref",
            refused(
                grants::map(pong, 100_000, slot, true),
                GrantStatus::BadGntref,
            ),
        );
        check(
            &mut f,
            "mapping from a missing domain",
            refused(grants::map(99, 8, slot, true), GrantStatus::BadDomain),
        );
        check(
            &mut f,
            "unmapping a bad handle",
            refused(grants::unmap(1234, slot), GrantStatus::BadHandle),
        );
        if rogref != u32::MAX {
            check(
                &mut f,
                "writable map of a read-only grant",
                refused(
                    grants::map(pong, rogref, slot, false),
                    GrantStatus::PermissionDenied,
                ),
            );
            check(
                &mut f,
                "copy into a read-only grant",
                refused(
                    grants::copy(
                        own,
                        CopyPtr::Gref {
                            domid: pong,
                            gref: rogref,
                            offset: 0,
                        },
                        16,
                    ),
                    GrantStatus::PermissionDenied,
                ),
            );
            match grants::map(pong, rogref, slot, true) {
                Ok(h) => {
                    // SAFETY: the read-only grant is mapped at SLOT; reading is allowed.
                    let first = unsafe { core::ptr::read_volatile(slot as *const u8) };
                    check(&mut f, "reading through a read-only grant", first == b'p');
                    check(&mut f, "unmapping it", grants::unmap(h, slot).is_ok());
                }
                Err(s) => {
                    println!("intruder: read-only map of a grant given to us failed: {s:?}");
                    f += 1;
                }
            }
        }

        // XenStore.
        check(
            &mut f,
            "reading another DomU's home",
            matches!(xs.read(&format!("/local/domain/{ping}")), Err(XsError::Server(ref s)) if s == "EACCES"),
        );
        check(
            &mut f,
            "writing into another DomU's home",
            xs.write(&format!("/local/domain/{pong}/pingpong/port"), "0")
                .is_err(),
        );

        // The neighbours may go now.
        let me = guest_shim::domid().unwrap_or(0);
        let done = format!("/local/domain/{me}/done");
        if xs.publish(&done, "1").is_err() {
            println!("intruder: could not write {done} for the neighbours");
            f += 1;
        }

        // Floods: thousands of events to ourselves, XenStore until the quota.
        let mut ipi = EvtchnBindIpi::default();
        // SAFETY: EVTCHNOP_bind_ipi with a live struct the hypervisor writes.
        let _ = unsafe {
            hypercall::raw(
                EVENT_CHANNEL_OP,
                EvtchnOp::BindIpi.raw().into(),
                core::ptr::from_mut(&mut ipi) as u64,
                0,
                0,
                0,
            )
        };
        let ipi_port = ipi.port;
        for _ in 0..5000 {
            let _ = events::send(ipi_port);
        }
        let mut quota_hit = false;
        for i in 0..1200 {
            if let Err(XsError::Server(s)) = xs.write(&format!("flood/{i}"), "x") {
                quota_hit = s == "EQUOTA";
                break;
            }
        }
        check(&mut f, "XenStore flood meets the node quota", quota_hit);

        if f == 0 {
            println!("intruder: PASS");
        } else {
            println!("intruder: FAIL {f} checks");
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
