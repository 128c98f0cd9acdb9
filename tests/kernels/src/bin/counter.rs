//! counter: prints `counter: N` every 100 ms of system time, for ever —
//! a DomU whose progress the toolstack tests watch stop while it is
//! paused and go on after. It sleeps (SCHEDOP_poll with a time-out)
//! between lines, so it leaves the CPU to others.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::{StartInfo, events, println, time};

    const PERIOD_NS: u64 = 100_000_000;

    fn main(_: &StartInfo) -> ! {
        if let Err(e) = events::init() {
            println!("counter: FAIL no shared info: {e:?}");
        }
        println!("counter: counting");
        let mut n = 0u64;
        loop {
            time::sleep_ns(PERIOD_NS);
            n += 1;
            println!("counter: {n}");
        }
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
