//! `bench-create NAME`: how fast Dom0's toolstack makes and removes
//! domains, timed in system time (so that under `-icount shift=0` the
//! figures count instructions): `xl create` of config NAME until the new
//! domain's first console line, then 1, 10 and 100 create→destroy cycles
//! one after another, checking after each batch that free memory is back
//! where it started. The config's kernel should write a line to its PV
//! console ring at once and need nothing else of Dom0 (the `ringlog`
//! test kernel; guest-shim's `println!` goes to the hypervisor's console,
//! which Dom0 does not see): while the bench runs Dom0 serves only the
//! console it waits on.

use alloc::format;
use alloc::string::String;

use guest_shim::{hypercall, time};

use crate::console::Host;
use crate::toolstack;

/// How long a new domain may take to print its first line.
const FIRST_LINE_TIMEOUT_NS: u64 = 10_000_000_000;
/// How long freed memory may take to come back (quarantined frames wait
/// two hypervisor ticks).
const FREE_TIMEOUT_NS: u64 = 1_000_000_000;
/// The batches of create→destroy cycles.
const CYCLES: [u32; 3] = [1, 10, 100];

fn free_pages() -> Result<u64, String> {
    toolstack::physinfo()
        .map(|p| p.free_pages)
        .map_err(|e| format!("cannot read free memory: {}", toolstack::why(e)))
}

/// Creates a copy of config `name` called `as_name`; its domain id.
fn create(host: &mut Host, name: &str, as_name: &str) -> Result<u16, String> {
    toolstack::create(host, name, &[format!("name=\"{as_name}\"")])
}

/// Destroys `domid` and lets the toolstack drop what it held for it.
fn destroy(host: &mut Host, domid: u16) -> Result<(), String> {
    toolstack::destroy(domid)
        .map_err(|e| format!("cannot destroy d{domid}: {}", toolstack::why(e)))?;
    let _ = toolstack::reap(host);
    Ok(())
}

/// Waits until free memory is `pages` again; false on time-out.
fn free_back_to(pages: u64) -> Result<bool, String> {
    let give_up = time::system_time_ns() + FREE_TIMEOUT_NS;
    loop {
        if free_pages()? == pages {
            return Ok(true);
        }
        if time::system_time_ns() > give_up {
            return Ok(false);
        }
        let _ = hypercall::sched_yield();
    }
}

/// Runs the benchmark; the text is its `bench:` lines.
pub fn run(host: &mut Host, name: &str) -> Result<String, String> {
    let start_free = free_pages()?;
    let mut out = String::new();

    let t0 = time::system_time_ns();
    let domid = create(host, name, "bench-first")?;
    let built = time::system_time_ns();
    let give_up = built + FIRST_LINE_TIMEOUT_NS;
    let first_line = loop {
        let console = host
            .consoles
            .iter_mut()
            .find(|c| c.domid() == domid)
            .ok_or_else(|| format!("d{domid} has no console"))?;
        console.drain();
        if console.lines() > 0 {
            break time::system_time_ns();
        }
        if time::system_time_ns() > give_up {
            let _ = destroy(host, domid);
            return Err(format!("d{domid} printed no line within 10 s"));
        }
        let _ = hypercall::sched_yield();
    };
    destroy(host, domid)?;
    out.push_str(&format!(
        "bench: create_build_us={} create_first_line_us={}\n",
        (built - t0) / 1000,
        (first_line - t0) / 1000
    ));

    for n in CYCLES {
        let t0 = time::system_time_ns();
        for i in 0..n {
            let domid = create(host, name, &format!("bench-{n}-{i}"))?;
            destroy(host, domid)?;
        }
        let elapsed = time::system_time_ns() - t0;
        let back = free_back_to(start_free)?;
        out.push_str(&format!(
            "bench: create_destroy_{n}_us={} per_cycle_us={} free_memory_back={}\n",
            elapsed / 1000,
            elapsed / 1000 / u64::from(n),
            if back { "yes" } else { "no" }
        ));
    }
    Ok(out)
}
