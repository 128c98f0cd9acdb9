//! hello: says who it is (domain id from CPUID) and what it runs on (the
//! hypervisor's version, its own command line), then powers off. Booted
//! bare (no hypervisor), it says so and passes on the boot path alone.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::{ShutdownReason, StartInfo, hypercall, println, shutdown};

    fn main(info: &StartInfo) -> ! {
        if !hypercall::available() {
            println!("hello from bare metal (no hypervisor)");
            println!("hello: command line '{}'", info.cmdline());
            println!("hello: PASS (bare metal)");
            shutdown(ShutdownReason::Poweroff)
        }
        let Some(domid) = guest_shim::domid() else {
            println!("hello: FAIL no domain id in CPUID");
            shutdown(ShutdownReason::Poweroff)
        };
        println!("hello from domain {domid}");
        match hypercall::xen_version() {
            Ok((major, minor)) => {
                let extra = hypercall::xen_extraversion();
                let extra = extra.as_ref().map_or("?", |e| e.as_str());
                println!(
                    "hello: Xen {major}.{minor}{extra}, command line '{}'",
                    info.cmdline()
                );
                println!("hello: PASS");
            }
            Err(e) => println!("hello: FAIL xen_version returned {e}"),
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
