//! disk: the block front end (`guest_shim::blkfront`) against Dom0's
//! blkback. Lists `device/vbd`, connects to each disk, prints what the
//! backend offers, then, by `mode=`:
//!
//! - `verify` (default): writes seeded patterns at sector 0 (one
//!   segment), mid-disk (11 segments), the last 8 sectors (one segment)
//!   and, if offered, a quarter in (one indirect request); flushes; reads
//!   each back and compares; reads past the end must fail; discards a
//!   range. A read-only disk must refuse the write with BLKIF_RSP_ERROR.
//! - `write`: the pattern of `seed=` over the first 1 MiB, flushed;
//!   `check`: reads it back (persistence across two boots).
//! - `bench`: 16 MiB written then read sequentially in 1 MiB calls (as
//!   many requests in flight as the ring holds), then 4 KiB random reads
//!   for about 2 s, ring-full batches (first writable disk only).
//!
//! Command line: `mode=verify|write|check|bench seed=N ring_order=N
//! segs=N vdev=51712|xvda wait=S` (`segs`: cap on the segments of an
//! indirect request, 0 for none; `wait`: seconds to wait for
//! `device/vbd` to appear, default 30), `again_after=S` (reconnect after
//! S seconds and run the pass again). Ends with `disk: PASS` or
//! `disk: FAIL ...`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    extern crate alloc;
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    use guest_shim::blkfront::{self, BlkError, Blkfront, Io, Options};
    use guest_shim::pv_abi::blkif::BLKIF_RSP_ERROR;
    use guest_shim::xenstore::XenStore;
    use guest_shim::{ShutdownReason, StartInfo, events, grants, println, shutdown, time};

    const MIB: usize = 1 << 20;
    const PAGE: usize = 4096;

    #[repr(C, align(4096))]
    struct Big([u8; MIB]);
    static mut BUF_A: Big = Big([0; MIB]);
    static mut BUF_B: Big = Big([0; MIB]);

    fn fail(why: &str) -> ! {
        println!("disk: FAIL {why}");
        shutdown(ShutdownReason::Poweroff)
    }

    fn arg<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
        cmdline
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    /// splitmix64: the pattern word `word` of sector `sector` for `seed`.
    fn pattern_word(seed: u64, sector: u64, word: u64) -> u64 {
        let mut z = seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(sector.wrapping_mul(0xd1b5_4a32_d192_ed03))
            .wrapping_add(word.wrapping_mul(0x8cb9_2ba7_2f3d_8dd7))
            .wrapping_add(0x632b_e59b_d9b4_e019);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fills `buf` with the pattern of the sectors from `sector` on.
    fn fill(buf: &mut [u8], sector: u64, seed: u64) {
        for (i, w) in buf.chunks_exact_mut(8).enumerate() {
            let (s, word) = (sector + (i / 64) as u64, (i % 64) as u64);
            w.copy_from_slice(&pattern_word(seed, s, word).to_le_bytes());
        }
    }

    /// The first byte of `buf` that is not the pattern: (sector, byte
    /// in sector, got, wanted).
    fn first_mismatch(buf: &[u8], sector: u64, seed: u64) -> Option<(u64, usize, u8, u8)> {
        for (i, w) in buf.chunks_exact(8).enumerate() {
            let (s, word) = (sector + (i / 64) as u64, (i % 64) as u64);
            let want = pattern_word(seed, s, word).to_le_bytes();
            if w != want {
                let k = (0..8).find(|&k| w[k] != want[k]).unwrap_or(0);
                return Some((s, (i % 64) * 8 + k, w[k], want[k]));
            }
        }
        None
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Direct,
        Indirect,
    }

    struct Region {
        what: &'static str,
        sector: u64,
        bytes: usize,
        kind: Kind,
    }

    fn write_kind(blk: &mut Blkfront, kind: Kind, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        match kind {
            Kind::Direct => blk.write(sector, buf),
            Kind::Indirect => blk.write_indirect(sector, buf),
        }
    }

    fn read_kind(
        blk: &mut Blkfront,
        kind: Kind,
        sector: u64,
        buf: &mut [u8],
    ) -> Result<(), BlkError> {
        match kind {
            Kind::Direct => blk.read(sector, buf),
            Kind::Indirect => blk.read_indirect(sector, buf),
        }
    }

    /// Counts failures and prints each precisely.
    struct Verdict<'n> {
        name: &'n str,
        failures: u32,
    }

    impl Verdict<'_> {
        fn fail(&mut self, why: &str) {
            println!("disk: {} verify FAIL {why}", self.name);
            self.failures += 1;
        }
        fn expect_ok(&mut self, what: &str, r: Result<(), BlkError>) -> bool {
            match r {
                Ok(()) => true,
                Err(e) => {
                    self.fail(&format!("{what}: {e:?}"));
                    false
                }
            }
        }
        fn expect_error(&mut self, what: &str, r: Result<(), BlkError>) {
            match r {
                Err(BlkError::Status(BLKIF_RSP_ERROR)) => {}
                Ok(()) => self.fail(&format!("{what}: succeeded, expected BLKIF_RSP_ERROR")),
                Err(e) => self.fail(&format!("{what}: {e:?}, expected BLKIF_RSP_ERROR")),
            }
        }
    }

    fn verify(blk: &mut Blkfront, name: &str, seed: u64, a: &mut [u8], b: &mut [u8]) -> bool {
        let info = blk.info();
        let total = info.sectors_512();
        let mut v = Verdict { name, failures: 0 };
        if total < 8 {
            v.fail(&format!("disk too small ({total} sectors)"));
            return false;
        }
        let mut regions = alloc::vec![
            Region {
                what: "sector 0 (1 segment)",
                sector: 0,
                bytes: PAGE,
                kind: Kind::Direct,
            },
            Region {
                what: "middle (11 segments)",
                sector: (total / 2) & !7,
                bytes: 11 * PAGE,
                kind: Kind::Direct,
            },
            Region {
                what: "last 8 sectors (1 segment)",
                sector: total - 8,
                bytes: PAGE,
                kind: Kind::Direct,
            },
        ];
        let segs = blk.indirect_segments() as usize;
        if segs > 0 {
            regions.push(Region {
                what: "quarter (indirect)",
                sector: (total / 4) & !7,
                bytes: (segs * PAGE).min(MIB),
                kind: Kind::Indirect,
            });
        }
        // Regions that do not fit a small disk are left out; overlapping
        // ones are harmless: the pattern depends on the sector only.
        regions.retain(|r| r.sector + (r.bytes / 512) as u64 <= total);

        if info.readonly {
            let r = &regions[0];
            fill(&mut a[..r.bytes], r.sector, seed);
            v.expect_error(
                "write to a read-only disk",
                write_kind(blk, r.kind, r.sector, &a[..r.bytes]),
            );
            for r in &regions {
                v.expect_ok(
                    &format!("read {}", r.what),
                    read_kind(blk, r.kind, r.sector, &mut b[..r.bytes]),
                );
            }
        } else {
            for r in &regions {
                fill(&mut a[..r.bytes], r.sector, seed);
                v.expect_ok(
                    &format!("write {}", r.what),
                    write_kind(blk, r.kind, r.sector, &a[..r.bytes]),
                );
            }
            if info.flush || info.barrier {
                v.expect_ok("flush", blk.flush());
            } else {
                println!("disk: {name} flush not offered");
            }
            for r in &regions {
                b[..r.bytes].fill(0);
                if v.expect_ok(
                    &format!("read {}", r.what),
                    read_kind(blk, r.kind, r.sector, &mut b[..r.bytes]),
                ) && let Some((s, at, got, want)) = first_mismatch(&b[..r.bytes], r.sector, seed)
                {
                    v.fail(&format!(
                        "{}: mismatch at sector {s} byte {at}: got {got:#04x} want {want:#04x}",
                        r.what
                    ));
                }
            }
            // The middle once more, the other way round (indirect if
            // offered), so both request kinds read what the other wrote.
            if segs > 0 {
                let r = &regions[1];
                b[..r.bytes].fill(0);
                if v.expect_ok(
                    "read middle (indirect)",
                    blk.read_indirect(r.sector, &mut b[..r.bytes]),
                ) && let Some((s, at, got, want)) = first_mismatch(&b[..r.bytes], r.sector, seed)
                {
                    v.fail(&format!(
                        "middle (indirect): mismatch at sector {s} byte {at}: got {got:#04x} want {want:#04x}"
                    ));
                }
            }
        }

        // Past the end, and straddling it.
        v.expect_error("read past the end", blk.read(total, &mut b[..PAGE]));
        v.expect_error("read across the end", blk.read(total - 4, &mut b[..PAGE]));

        if info.discard && !info.readonly {
            let r = regions.get(1).unwrap_or(&regions[0]);
            v.expect_ok("discard", blk.discard(r.sector, (r.bytes / 512) as u64));
        } else {
            println!("disk: {name} discard not offered");
        }

        if v.failures == 0 {
            println!("disk: {name} verify ok");
        }
        v.failures == 0
    }

    /// The span `write`/`check` cover: the first 1 MiB (or the disk).
    fn persist_span(blk: &Blkfront) -> usize {
        let total = blk.info().sectors_512();
        (total.min((MIB / 512) as u64) as usize) * 512
    }

    fn io_kind(blk: &Blkfront) -> Kind {
        if blk.indirect_segments() > 0 {
            Kind::Indirect
        } else {
            Kind::Direct
        }
    }

    fn write_mode(blk: &mut Blkfront, name: &str, seed: u64, a: &mut [u8]) -> bool {
        let len = persist_span(blk);
        fill(&mut a[..len], 0, seed);
        let kind = io_kind(blk);
        let mut r = write_kind(blk, kind, 0, &a[..len]);
        if r.is_ok() && (blk.info().flush || blk.info().barrier) {
            r = blk.flush();
        }
        match r {
            Ok(()) => {
                println!("disk: {name} wrote seed={seed} sectors={}", len / 512);
                true
            }
            Err(e) => {
                println!("disk: {name} write FAIL {e:?}");
                false
            }
        }
    }

    fn check_mode(blk: &mut Blkfront, name: &str, seed: u64, b: &mut [u8]) -> bool {
        let len = persist_span(blk);
        b[..len].fill(0);
        let kind = io_kind(blk);
        if let Err(e) = read_kind(blk, kind, 0, &mut b[..len]) {
            println!("disk: {name} persisted FAIL read: {e:?}");
            return false;
        }
        match first_mismatch(&b[..len], 0, seed) {
            None => {
                println!("disk: {name} persisted ok");
                true
            }
            Some((s, at, got, want)) => {
                println!(
                    "disk: {name} persisted MISMATCH at sector {s} byte {at}: got {got:#04x} want {want:#04x}"
                );
                false
            }
        }
    }

    fn secs_since(t0: u64) -> f64 {
        (time::system_time_ns().saturating_sub(t0)).max(1) as f64 / 1e9
    }

    fn bench(blk: &mut Blkfront, name: &str, a: &mut [u8], b: &mut [u8]) -> bool {
        const TOTAL: usize = 16 * MIB;
        let info = blk.info();
        let disk_bytes = info.sectors_512() as usize * 512;
        let span = disk_bytes.min(TOTAL) / MIB * MIB;
        if info.readonly || span == 0 {
            println!("disk: {name} bench FAIL needs a writable disk of at least 1 MiB");
            return false;
        }
        let kind = io_kind(blk);
        fill(a, 0, 0xbe9c);
        let sector_of = |i: usize| ((i * MIB) % span / 512) as u64;

        let t0 = time::system_time_ns();
        for i in 0..TOTAL / MIB {
            if let Err(e) = write_kind(blk, kind, sector_of(i), a) {
                println!("disk: {name} bench FAIL write: {e:?}");
                return false;
            }
        }
        if info.flush || info.barrier {
            let _ = blk.flush();
        }
        let write_mib_s = (TOTAL / MIB) as f64 / secs_since(t0);

        let t0 = time::system_time_ns();
        for i in 0..TOTAL / MIB {
            if let Err(e) = read_kind(blk, kind, sector_of(i), b) {
                println!("disk: {name} bench FAIL read: {e:?}");
                return false;
            }
        }
        let read_mib_s = (TOTAL / MIB) as f64 / secs_since(t0);

        // Random 4 KiB reads, a ring-full at a time.
        let qd = (blk.ring_size() as usize).min(MIB / PAGE);
        let pages = (info.sectors_512() / 8).max(1);
        let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
        let mut reads = 0u64;
        let t0 = time::system_time_ns();
        while time::system_time_ns() - t0 < 2_000_000_000 {
            let mut ios: Vec<Io<'_>> = b
                .chunks_exact_mut(PAGE)
                .take(qd)
                .map(|buf| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    Io::Read {
                        sector: (rng % pages) * 8,
                        buf,
                    }
                })
                .collect();
            if let Err(e) = blk.batch(&mut ios, false) {
                println!("disk: {name} bench FAIL random read: {e:?}");
                return false;
            }
            reads += qd as u64;
        }
        let iops = reads as f64 / secs_since(t0);
        println!(
            "disk: {name} bench requests={kind} qd={qd}",
            kind = if kind == Kind::Indirect {
                format!("indirect/{}", blk.indirect_segments())
            } else {
                String::from("direct/11")
            }
        );
        println!(
            "bench: disk seq_write_mib_s={write_mib_s:.1} seq_read_mib_s={read_mib_s:.1} rand_read_iops={iops:.1}"
        );
        true
    }

    fn main(info: &StartInfo) -> ! {
        let cmdline = info.cmdline();
        let mode = arg(cmdline, "mode").unwrap_or("verify");
        let seed: u64 = arg(cmdline, "seed")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let ring_order: u32 = arg(cmdline, "ring_order")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let wait_s: u64 = arg(cmdline, "wait")
            .and_then(|s| s.parse().ok())
            .unwrap_or(30);
        let only = arg(cmdline, "vdev");
        let segs: Option<u32> = arg(cmdline, "segs").and_then(|s| s.parse().ok());
        // `again_after=S`: S seconds after the pass, connect again (a
        // frontend restart) and run the pass once more.
        let again_after: Option<u64> = arg(cmdline, "again_after").and_then(|s| s.parse().ok());
        if !matches!(mode, "verify" | "write" | "check" | "bench") {
            fail(&format!(
                "unknown mode '{mode}' (verify, write, check, bench)"
            ));
        }
        if let Err(e) = events::init() {
            fail(&format!("events init {e:?}"));
        }
        if let Err(e) = grants::init() {
            fail(&format!("grant table {e:?}"));
        }
        let mut xs = XenStore::connect().unwrap_or_else(|e| fail(&format!("xenstore {e:?}")));

        // The toolstack may still be writing our devices.
        let deadline = time::system_time_ns() + wait_s * 1_000_000_000;
        let mut vdevs = loop {
            match blkfront::devices(&mut xs) {
                Ok(v) if !v.is_empty() => break v,
                Ok(_) if time::system_time_ns() < deadline => blkfront::sleep_ns(100_000_000),
                Ok(_) => fail("no disks under device/vbd"),
                Err(e) => fail(&format!("listing device/vbd: {e:?}")),
            }
        };
        if let Some(only) = only {
            vdevs.retain(|v| v == only || blkfront::vdev_name(v) == only);
            if vdevs.is_empty() {
                fail(&format!("no disk {only} under device/vbd"));
            }
        }

        // The only references to the two buffers, taken once.
        let (pa, pb) = (&raw mut BUF_A, &raw mut BUF_B);
        // SAFETY: as above.
        let (a, b) = unsafe { (&mut (*pa).0, &mut (*pb).0) };
        let opts = Options {
            ring_order,
            ..Options::default()
        };
        let mut failures = 0u32;
        let mut benched = false;
        let passes = if again_after.is_some() { 2 } else { 1 };
        for pass in 0..passes {
            if pass > 0 {
                let s = again_after.unwrap_or(0);
                println!("disk: again in {s} s");
                blkfront::sleep_ns(s * 1_000_000_000);
            }
            for vdev in &vdevs {
                let name = blkfront::vdev_name(vdev);
                let mut blk = match Blkfront::connect(&mut xs, vdev, opts) {
                    Ok(b) => b,
                    Err(e) => {
                        println!("disk: {name} {vdev} connect FAIL {e:?}");
                        failures += 1;
                        continue;
                    }
                };
                if let Some(n) = segs {
                    blk.set_indirect_segments(n);
                }
                let i = blk.info();
                println!(
                    "disk: {name} {vdev} sectors={} ro={} flush={} discard={} indirect={} ring={} pages",
                    i.sectors,
                    i.readonly as u8,
                    i.flush as u8,
                    i.discard as u8,
                    i.max_indirect,
                    i.ring_pages
                );
                let ok = match mode {
                    "write" => write_mode(&mut blk, &name, seed, a),
                    "check" => check_mode(&mut blk, &name, seed, b),
                    "bench" if !benched && !i.readonly => {
                        benched = true;
                        bench(&mut blk, &name, a, b)
                    }
                    "bench" => true,
                    _ => verify(&mut blk, &name, seed, a, b),
                };
                if !ok {
                    failures += 1;
                }
                if let Err(e) = blk.disconnect(&mut xs) {
                    println!("disk: {name} disconnect FAIL {e:?}");
                    failures += 1;
                }
            }
        }
        if mode == "bench" && !benched && failures == 0 {
            fail("bench: no writable disk");
        }
        if failures == 0 {
            println!("disk: PASS");
        } else {
            println!("disk: FAIL {failures} errors");
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
