//! Dom0: the privileged domain. Today it announces itself and idles; the
//! XenStore server and the console backends will run here.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::{StartInfo, hypercall, println};

    fn main(info: &StartInfo) -> ! {
        println!(
            "dom0: up, {} boot modules, privileged={}",
            info.nr_modules,
            info.privileged()
        );
        loop {
            if hypercall::sched_block().is_err() {
                let _ = hypercall::sched_yield();
            }
        }
    }

    guest_shim::entry!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("dom0 is a guest kernel: build it with `cargo xtask build`");
    std::process::exit(2);
}
