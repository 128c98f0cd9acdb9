//! spinner: announces itself and spins for ever, never yielding — the
//! scheduler must preempt it for anything else to run.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::{StartInfo, println};

    fn main(_: &StartInfo) -> ! {
        println!("spinner: spinning");
        let mut x = 1u64;
        loop {
            x = core::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
