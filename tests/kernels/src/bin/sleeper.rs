//! sleeper: says it is asleep, sleeps `ms=N` milliseconds (default 3000)
//! without spinning (SCHEDOP_poll with a deadline), says it is awake and
//! powers off — the idle window in which `cargo xtask bench` measures
//! what an idle system costs its host.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::{ShutdownReason, StartInfo, events, println, shutdown, time};

    const DEFAULT_MS: u64 = 3000;

    fn main(info: &StartInfo) -> ! {
        let ms = info
            .cmdline()
            .split_whitespace()
            .find_map(|w| w.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MS);
        if let Err(e) = events::init() {
            println!("sleeper: FAIL events init: {e:?}");
            shutdown(ShutdownReason::Poweroff)
        }
        println!("sleeper: asleep for {ms} ms");
        let t0 = time::system_time_ns();
        time::sleep_ns(ms * 1_000_000);
        println!(
            "sleeper: awake after {} ms",
            (time::system_time_ns() - t0) / 1_000_000
        );
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
