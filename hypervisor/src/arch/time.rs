//! Time: the TSC, calibrated once against the PIT, gives delays and the
//! boot clock.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

const PIT_HZ: u64 = 1_193_182;
const PIT_CHANNEL2_DATA: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
/// Channel 2, lobyte/hibyte access, mode 0 (interrupt on terminal count).
const PIT_CHANNEL2_ONESHOT: u8 = 0b1011_0000;
const PORT_B: u16 = 0x61;
const PORT_B_GATE2: u8 = 1 << 0;
const PORT_B_SPEAKER: u8 = 1 << 1;
const PORT_B_OUT2: u8 = 1 << 5;

static TSC_PER_MS: AtomicU64 = AtomicU64::new(0);
/// Scheduler time slice (and the longest an idle CPU sleeps).
pub const TICK_MS: u32 = 10;

/// This CPU's time-stamp counter as it reads.
pub fn raw_rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Per CPU: what to add to its TSC to read the boot CPU's. CPUs need not
/// agree (QEMU starts an AP's TSC at its INIT), and the hypervisor's
/// clock and every guest's must not jump when a vCPU changes CPU.
static TSC_OFFSET: [AtomicU64; crate::cmdline::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::cmdline::MAX_CPUS];
/// The boot CPU's TSC, published while it waits for APs to start.
static BSP_TSC: AtomicU64 = AtomicU64::new(0);

/// The TSC on the boot CPU's time line (the one clock of the system).
pub fn rdtsc() -> u64 {
    raw_rdtsc().wrapping_add(tsc_offset(super::percpu::current_index()))
}

/// What CPU `cpu` adds to its TSC (the guest TSC offset too).
pub fn tsc_offset(cpu: usize) -> u64 {
    TSC_OFFSET[cpu].load(Ordering::Relaxed)
}

/// Boot CPU: publishes its TSC for the APs measuring against it.
pub fn publish_bsp_tsc() {
    BSP_TSC.store(raw_rdtsc(), Ordering::SeqCst);
}

/// An AP measures its TSC against the boot CPU's (which is spinning in
/// [`publish_bsp_tsc`]): each sample's published value was read before
/// the AP's TSC, so `bsp - ap` never overestimates; the largest sample is
/// the tightest. Under emulation the boot CPU's thread can be off its host
/// CPU for milliseconds (a loaded host; with `-icount` the CPUs even take
/// turns), and samples taken then see only a stale value — an AP clock
/// hundreds of microseconds behind, timers that look early to a guest
/// moved between CPUs (seen on a host running two QEMUs). A sample whose
/// value differs from the previous sample's was published since that
/// look, a moment ago: it is fresh. Sampling goes on for at least
/// `SYNC_WINDOW_MS` and until `FRESH` such samples (at most `MAX_WINDOWS`
/// of the window: a boot CPU that never publishes gives offset 0).
pub fn sync_with_bsp(cpu: usize) {
    const FRESH: usize = 2;
    const SYNC_WINDOW_MS: u64 = 5;
    const MAX_WINDOWS: u64 = 40;
    let window = tsc_per_ms() * SYNC_WINDOW_MS;
    let start = raw_rdtsc();
    let mut best: Option<i64> = None;
    let (mut last, mut fresh) = (0, 0);
    loop {
        let elapsed = raw_rdtsc().wrapping_sub(start);
        if elapsed >= window && (fresh >= FRESH || elapsed >= MAX_WINDOWS * window) {
            break;
        }
        let bsp = BSP_TSC.load(Ordering::SeqCst);
        let ap = raw_rdtsc();
        if bsp == 0 {
            continue;
        }
        let offset = bsp.wrapping_sub(ap) as i64;
        best = Some(best.map_or(offset, |b| b.max(offset)));
        if last != 0 && bsp != last {
            fresh += 1;
        }
        last = bsp;
        core::hint::spin_loop();
    }
    TSC_OFFSET[cpu].store(best.unwrap_or(0) as u64, Ordering::Relaxed);
}

/// Measures TSC ticks per millisecond over a 10 ms PIT one-shot. Returns
/// `None` when the PIT never fires (no PIT, or a broken one).
pub fn calibrate() -> Option<u64> {
    const WINDOW_MS: u64 = 10;
    let count = (PIT_HZ * WINDOW_MS / 1000) as u16;
    let mut port_b = Port::<u8>::new(PORT_B);
    let mut command = Port::<u8>::new(PIT_COMMAND);
    let mut data = Port::<u8>::new(PIT_CHANNEL2_DATA);
    // SAFETY: PIT channel 2 and port B are the legacy PC timer, used by
    // nothing else in Pavise; the speaker stays off.
    let elapsed = unsafe {
        let b = port_b.read() & !(PORT_B_SPEAKER | PORT_B_GATE2);
        port_b.write(b);
        command.write(PIT_CHANNEL2_ONESHOT);
        data.write(count as u8);
        data.write((count >> 8) as u8);
        port_b.write(b | PORT_B_GATE2);
        let start = rdtsc();
        let mut spins = 0u64;
        while port_b.read() & PORT_B_OUT2 == 0 {
            spins += 1;
            if spins > 100_000_000 {
                return None;
            }
        }
        rdtsc() - start
    };
    let per_ms = (elapsed / WINDOW_MS).max(1);
    TSC_PER_MS.store(per_ms, Ordering::SeqCst);
    Some(per_ms)
}

/// Uses an assumed rate when calibration failed, so delays still end.
pub fn assume_rate(per_ms: u64) {
    TSC_PER_MS.store(per_ms, Ordering::SeqCst);
}

pub fn tsc_per_ms() -> u64 {
    TSC_PER_MS.load(Ordering::Relaxed).max(1)
}

pub fn delay_us(us: u64) {
    let bsp = super::percpu::current_index() == 0;
    let end = rdtsc() + tsc_per_ms() * us / 1000;
    while rdtsc() < end {
        if bsp {
            publish_bsp_tsc(); // an AP may be measuring against it
        }
        core::hint::spin_loop();
    }
}

/// Milliseconds since the TSC read `since`.
pub fn ms_since(since: u64) -> u64 {
    rdtsc().saturating_sub(since) / tsc_per_ms()
}

static BOOT_TSC: AtomicU64 = AtomicU64::new(0);

/// Sets the zero of system time (Xen's "system time": ns since boot).
pub fn set_system_time_zero(tsc: u64) {
    BOOT_TSC.store(tsc, Ordering::SeqCst);
}

pub fn boot_tsc() -> u64 {
    BOOT_TSC.load(Ordering::Relaxed)
}

/// System time in ns at TSC value `tsc`.
pub fn system_time_at(tsc: u64) -> u64 {
    let delta = tsc.saturating_sub(boot_tsc()) as u128;
    (delta * 1_000_000 / tsc_per_ms() as u128) as u64
}

pub fn system_time_ns() -> u64 {
    system_time_at(rdtsc())
}

/// Reads the CMOS real-time clock as seconds since the epoch.
pub fn read_rtc() -> Option<u64> {
    const INDEX: u16 = 0x70;
    const DATA: u16 = 0x71;
    const STATUS_A_UPDATING: u8 = 1 << 7;
    const STATUS_B_BINARY: u8 = 1 << 2;
    const STATUS_B_24H: u8 = 1 << 1;
    let mut index = Port::<u8>::new(INDEX);
    let mut data = Port::<u8>::new(DATA);
    let mut read = |reg: u8| {
        // SAFETY: CMOS index/data ports; reading RTC registers has no side
        // effects and nothing else in Pavise uses the CMOS.
        unsafe {
            index.write(reg);
            data.read()
        }
    };
    for _ in 0..1_000_000 {
        if read(0x0a) & STATUS_A_UPDATING == 0 {
            break;
        }
    }
    let regs = [
        read(0x00),
        read(0x02),
        read(0x04),
        read(0x07),
        read(0x08),
        read(0x09),
        read(0x32),
    ];
    let status_b = read(0x0b);
    let conv = |v: u8| {
        if status_b & STATUS_B_BINARY != 0 {
            v
        } else {
            crate::wallclock::from_bcd(v)
        }
    };
    let mut hour = conv(regs[2] & 0x7f);
    if status_b & STATUS_B_24H == 0 && regs[2] & 0x80 != 0 {
        hour = (hour % 12) + 12;
    }
    let century = match conv(regs[6]) {
        c @ 19..=21 => c as i64,
        _ => 20,
    };
    let year = century * 100 + conv(regs[5]) as i64;
    crate::wallclock::unix_seconds(
        year,
        conv(regs[4]) as u32,
        conv(regs[3]) as u32,
        hour as u32,
        conv(regs[1]) as u32,
        conv(regs[0]) as u32,
    )
}
