//! Dom0: the privileged domain. It runs the PV console backend and the
//! XenStore server for every DomU.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod events;
#[cfg(target_os = "none")]
mod xenstored;

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::{StartInfo, hypercall, println};

    use crate::{console, events, xenstored};

    fn main(info: &StartInfo) -> ! {
        println!(
            "dom0: up, {} boot modules, privileged={}",
            info.nr_modules,
            info.privileged()
        );
        events::init();
        let mut consoles = console::connect_all();
        let mut store = xenstored::Xenstored::start();
        let mut input = console::Input::bind();
        println!(
            "dom0: serving {} console{}",
            consoles.len(),
            if consoles.len() == 1 { "" } else { "s" }
        );
        println!(
            "dom0: XenStore serving {} domain{}",
            store.connections(),
            if store.connections() == 1 { "" } else { "s" }
        );
        loop {
            events::clear_all();
            for c in consoles.iter_mut() {
                c.drain();
            }
            while store.serve() {}
            input.take();
            if hypercall::sched_block().is_err() {
                let _ = hypercall::sched_yield();
            }
        }
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
