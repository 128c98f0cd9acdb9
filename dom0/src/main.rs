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
mod builder;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod control;
#[cfg(target_os = "none")]
mod create_bench;
#[cfg(target_os = "none")]
mod diskbench;
#[cfg(target_os = "none")]
mod disks;
#[cfg(target_os = "none")]
mod events;
#[cfg(target_os = "none")]
mod foreign_page;
#[cfg(target_os = "none")]
mod mapped_ring;
#[cfg(target_os = "none")]
mod toolstack;
#[cfg(target_os = "none")]
mod uplink;
#[cfg(target_os = "none")]
mod vbd;
#[cfg(target_os = "none")]
mod vif;
#[cfg(target_os = "none")]
mod virtio;
#[cfg(target_os = "none")]
mod xenbus_backend;
#[cfg(target_os = "none")]
mod xenstored;

#[cfg(target_os = "none")]
mod kernel {
    use guest_shim::{StartInfo, hypercall, println};

    use crate::{
        console, control, diskbench, disks, events, toolstack, uplink, vbd, vif, virtio, xenstored,
    };

    /// How often a device or ring without events is polled.
    const POLL_NS: u64 = 1_000_000;
    /// The longest the control channel goes unpolled while it is quiet
    /// (the first answer after a quiet spell waits up to this long).
    const CONTROL_POLL_MAX_NS: u64 = 64_000_000;

    fn plural(n: usize) -> &'static str {
        if n == 1 { "" } else { "s" }
    }

    fn main(info: &StartInfo<'static>) -> ! {
        println!(
            "dom0: up, {} boot modules, privileged={}",
            info.modules().len(),
            info.privileged()
        );
        let (domus, bad) = dom0::cmdline::domus(info.cmdline());
        for b in &bad {
            println!("{b}");
        }
        let (vbd_specs, bad) = dom0::cmdline::vbds(info.cmdline());
        for b in &bad {
            println!("{b}");
        }
        let (vif_specs, bad) = dom0::cmdline::vifs(info.cmdline());
        for b in &bad {
            println!("{b}");
        }
        let (uplink_slot, bad) = dom0::cmdline::uplink_checked(info.cmdline());
        for b in &bad {
            println!("{b}");
        }
        let (control_slot, bad) = dom0::cmdline::control_checked(info.cmdline());
        for b in &bad {
            println!("{b}");
        }
        events::init();
        // Files the hypervisor handed us (`file NAME` boot modules).
        let files: alloc::vec::Vec<(&'static str, &'static [u8])> = info
            .modules()
            .iter()
            .filter(|m| !m.cmdline.is_empty())
            .map(|m| (m.cmdline, m.bytes))
            .collect();
        let (named_disks, bad) = dom0::cmdline::named_disks(info.cmdline());
        for b in &bad {
            println!("{b}");
        }
        let mut store = xenstored::Xenstored::start(&domus);
        // Where files the host uploads go: the RAM above everything loaded.
        let room = guest_shim::pages::take_free_ram(info).unwrap_or_default();
        println!("dom0: {} KiB free for uploaded files", room.len() / 1024);
        let disks = if virtio::init(info.cmdline()) {
            let mut disks = disks::probe();
            if info
                .cmdline()
                .split_whitespace()
                .any(|w| w == diskbench::DMA_TEST_WORD)
                && let Some(disk) = disks.first_mut()
            {
                diskbench::dma_test(disk);
            }
            if let Some(slot) = diskbench::requested(info.cmdline())
                && let Some(disk) = disks.iter_mut().find(|d| d.slot == slot)
            {
                diskbench::run(disk);
            }
            disks
        } else {
            println!("dom0: no DMA pool on the command line: no disks");
            alloc::vec::Vec::new()
        };
        // The NIC may share an interrupt line with a disk: then it uses
        // the disk's port, and that port's event acknowledges both.
        let disk_pirqs: alloc::vec::Vec<(u32, u32)> = disks
            .iter()
            .filter_map(|d| Some((d.pirq?, d.port?)))
            .collect();
        let nic = uplink_slot
            .filter(|_| virtio::free_pages() > 0)
            .and_then(|slot| {
                uplink::probe(slot, |pirq| {
                    disk_pirqs
                        .iter()
                        .find(|(p, _)| *p == pirq)
                        .map(|&(_, port)| port)
                })
            });
        // The control channel takes its own line's event; if a disk
        // shares the line, both are acknowledged on it.
        let mut control = control::probe(control_slot, |pirq| {
            disk_pirqs
                .iter()
                .find(|(p, _)| *p == pirq)
                .map(|&(_, port)| port)
        });
        if uplink_slot.is_some() && nic.is_none() {
            println!("dom0: uplink asked for but not started: DomUs reach only each other");
        }
        let blkback = vbd::Blkback::start(&vbd_specs, disks, named_disks, store.store());
        let netback = vif::Netback::start(&vif_specs, nic, store.store());
        let mut host = console::Host {
            store,
            consoles: console::connect_all(),
            toolstack: toolstack::Toolstack::new(files, room),
            blkback,
            netback,
            consoles_changed: false,
            attach: None,
        };
        // Domains that end: their backends are torn down.
        let dom_exc = events::bind_dom_exc();
        let timer = events::bind_timer();
        if host.blkback.vbds() > 0 {
            println!(
                "dom0: blkback serving {} virtual disk{}, DMA pool {} KiB free",
                host.blkback.vbds(),
                plural(host.blkback.vbds()),
                virtio::free_pages() * 4
            );
        }
        if host.netback.vifs() > 0 || host.netback.has_uplink() {
            println!(
                "dom0: netback serving {} interface{}{}",
                host.netback.vifs(),
                plural(host.netback.vifs()),
                if host.netback.has_uplink() {
                    " and the uplink"
                } else {
                    ""
                }
            );
        }
        // Configs to start come first: the serial input then starts at
        // the one DomU console only if there is one in all.
        let disk_names: alloc::vec::Vec<&str> = host.blkback.names().collect();
        if !disk_names.is_empty() {
            println!("dom0: holding disks {}", disk_names.join(", "));
        }
        let held = host.toolstack.files().count();
        if held > 0 {
            println!("dom0: holding {held} file{}", plural(held));
        }
        for name in dom0::cmdline::creates(info.cmdline()) {
            match toolstack::create(&mut host, name, &[]) {
                Ok(d) => println!("dom0: created d{d} from {name}"),
                Err(sentence) => println!("dom0: {sentence}"),
            }
        }
        let mut input = console::Input::bind(&host.consoles);
        println!(
            "dom0: serving {} console{}",
            host.consoles.len(),
            plural(host.consoles.len())
        );
        println!(
            "dom0: XenStore serving {} domain{}",
            host.store.connections(),
            plural(host.store.connections())
        );
        let mut first = true;
        let mut control_poll = dom0::backoff::Backoff::new(POLL_NS, CONTROL_POLL_MAX_NS);
        loop {
            let pending = events::take_all();
            let mut control_active = false;
            let mut disk_events: alloc::vec::Vec<u32> = host
                .blkback
                .disk_ports()
                .filter(|&p| pending.has(p))
                .collect();
            disk_events.sort_unstable();
            disk_events.dedup();
            let uplink = host.netback.uplink_interrupt();
            for &port in &disk_events {
                host.blkback.ack_disks(port);
            }
            if let Some((port, _)) = uplink
                && pending.has(port)
            {
                if disk_events.contains(&port) {
                    // The disks' EOI already let the line fire again.
                    host.netback.ack_uplink_only();
                } else {
                    host.netback.ack_uplink();
                }
            }
            if dom_exc.is_some_and(|p| pending.has(p)) {
                for said in toolstack::reap(&mut host) {
                    println!("{said}");
                }
                input.update(&mut host);
                host.blkback.reap_dead(host.store.store());
                host.netback.reap_dead(host.store.store());
            }
            if let Some(c) = control.as_mut()
                && c.port.is_some_and(|p| pending.has(p))
            {
                c.ack();
                control_active = true;
                if let Some(pirq) = c.pirq
                    && !disk_events.contains(&c.port.unwrap_or(0))
                {
                    let _ = hypercall::physdev_eoi(pirq);
                }
            }
            let typed = first || input.port().is_some_and(|p| pending.has(p));
            first = false;
            let focused = input.focused_domu();
            for c in host.consoles.iter_mut() {
                c.drain();
                if focused == Some(c.domid()) {
                    c.show_partial_line();
                }
            }
            // Input first: a shutdown command's watch event goes out below.
            if typed {
                input.take(&mut host);
            }
            loop {
                let mut moved = host.store.serve();
                moved |= host.blkback.serve(host.store.store());
                moved |= host.netback.serve(host.store.store());
                if let Some(c) = control.as_mut()
                    && c.serve(&mut host)
                {
                    moved = true;
                    control_active = true;
                }
                input.update(&mut host);
                if !moved {
                    break;
                }
            }
            // A disk without an interrupt, or a front end that does not
            // notify after posting receive buffers, is polled: a
            // singleshot timer wakes us (Linux netback polls such a front
            // end every 30 ms), or without one we yield. The control
            // channel is polled less often while it is quiet.
            let devices_poll = host.blkback.needs_polling() || host.netback.needs_polling();
            let control_interval = control.is_some().then(|| control_poll.next(control_active));
            let interval = if devices_poll {
                Some(POLL_NS)
            } else {
                control_interval
            };
            let poll = interval.is_some();
            let armed = interval.is_some_and(|ns| {
                timer.is_some()
                    && guest_shim::time::set_timer(guest_shim::time::system_time_ns() + ns).is_ok()
            });
            // A file coming in: its next bytes are a QEMU refill away.
            let receiving = control.as_ref().is_some_and(|c| c.receiving());
            if receiving || (poll && !armed) || hypercall::sched_block().is_err() {
                let _ = hypercall::sched_yield();
            }
        }
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
