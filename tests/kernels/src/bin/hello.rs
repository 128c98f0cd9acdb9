//! hello: prints who it is and what it runs on, then powers off.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::{ShutdownReason, StartInfo, hypercall, println, shutdown};

    fn main(info: &StartInfo) -> ! {
        let domid = hypercall::domid().map_or(-1, |d| d as i64);
        println!("hello from domain {domid}");
        match hypercall::xen_version() {
            Ok((major, minor)) => {
                let extra = hypercall::xen_extraversion().unwrap_or([0; 16]);
                let len = extra.iter().position(|&b| b == 0).unwrap_or(16);
                let extra = core::str::from_utf8(&extra[..len]).unwrap_or("?");
                println!(
                    "hello: Xen {major}.{minor}{extra}, command line '{}'",
                    info.cmdline()
                );
                println!("hello: PASS");
            }
            Err(e) => println!("hello: FAIL xen_version returned {e:?}"),
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
