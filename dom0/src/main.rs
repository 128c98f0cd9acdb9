//! Dom0: the privileged domain's kernel, on guest-shim. It learns the
//! boot-time DomUs from its command line (`pavise.domu=` words), runs the
//! PV console backend and serial input router (`console`) and the
//! XenStore server (`xenstored`) for every DomU, then sleeps with
//! SCHEDOP_block (SCHEDOP_yield if blocking fails) and serves whatever
//! woke it.
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

    fn plural(n: usize) -> &'static str {
        if n == 1 { "" } else { "s" }
    }

    fn main(info: &StartInfo) -> ! {
        println!(
            "dom0: up, {} boot modules, privileged={}",
            info.modules().len(),
            info.privileged()
        );
        let (domus, bad) = dom0::cmdline::domus(info.cmdline());
        for b in &bad {
            println!("{b}");
        }
        events::init();
        let mut consoles = console::connect_all();
        let mut store = xenstored::Xenstored::start(&domus);
        let mut input = console::Input::bind(&consoles);
        println!(
            "dom0: serving {} console{}",
            consoles.len(),
            plural(consoles.len())
        );
        println!(
            "dom0: XenStore serving {} domain{}",
            store.connections(),
            plural(store.connections())
        );
        loop {
            events::clear_all();
            let focused = input.focused_domu();
            for c in consoles.iter_mut() {
                c.drain();
                if focused == Some(c.domid()) {
                    c.show_partial_line();
                }
            }
            // Input first: a shutdown command's watch event goes out below.
            input.take(&mut consoles, &mut store);
            while store.serve() {}
            if hypercall::sched_block().is_err() {
                let _ = hypercall::sched_yield();
            }
        }
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
