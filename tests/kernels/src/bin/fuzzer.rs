//! fuzzer: a DomU that throws seeded random hypercalls (every family and
//! sub-op Pavise knows, and numbers it does not), with arguments drawn
//! from boundary values, pointers into a scratch area, unmapped, foreign
//! and non-canonical addresses, and other domains' ids; and random MSR
//! reads and writes (APIC, MTRR, PAT, EFER, the AMD configuration MSRs,
//! unknown ones) with #GP caught. It checks only that it survives: the
//! hypervisor must answer everything with an errno or a #GP, never end the
//! domain or stall, while the scenario checks that the others carry on.
//! Command line: `seed=N calls=N`.
//!
//! What would only destroy the fuzzer itself is left out: shutting itself
//! down or blocking for ever, and pointing the hypervisor's own writes
//! (vcpu_info, runstate, the hypercall page, physmap moves) at its code —
//! those pointers always go into the scratch area or nowhere.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU32, Ordering};

    use guest_shim::pv_abi::hypercall::{DOMID_SELF, Hypercall};
    use guest_shim::{ShutdownReason, StartInfo, hypercall, println, shutdown};

    /// Four pages the hypervisor may write as told, and a fifth that
    /// takes what a write-back straddling their end spills (as Xen, the
    /// hypervisor writes a whole argument struct back).
    #[repr(C, align(4096))]
    struct Scratch([u8; 5 * 4096]);
    static mut SCRATCH: Scratch = Scratch([0; 5 * 4096]);
    /// The only RAM page a physmap move may take (it may end up a hole:
    /// nothing else here touches it).
    #[repr(C, align(4096))]
    struct Slot([u8; 4096]);
    static mut PHYSMAP_SLOT: Slot = Slot([0; 4096]);

    /// The only list a multicall may be given (or one it must refuse): the
    /// hypervisor writes each entry's result back, so a list over our own
    /// memory would be ours to regret, as on Xen.
    const MULTICALL_MAX: usize = 8;
    #[repr(C, align(64))]
    struct MulticallList([[u64; 8]; MULTICALL_MAX]);
    static mut MULTICALL_LIST: MulticallList = MulticallList([[0; 8]; MULTICALL_MAX]);

    /// xorshift64*: reproducible from the seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len() as u64) as usize]
        }
    }

    fn scratch() -> u64 {
        &raw mut SCRATCH as u64
    }

    /// A value for an argument or a struct word.
    fn value(rng: &mut Rng) -> u64 {
        let s = scratch();
        match rng.below(12) {
            0 => 0,
            1 => rng.below(8),
            2 => u64::MAX,
            // Powers of two, but none inside our own image and heap
            // (4 KiB .. 16 MiB): as a pointer that would be a valid one
            // to our own memory, and the hypervisor would rightly write.
            3 => {
                let bit = rng.below(64);
                if (12..24).contains(&bit) {
                    1 << (bit + 12)
                } else {
                    1 << bit
                }
            }
            4 => s + rng.below(4 * 4096),
            5 => s + 4 * 4096 - rng.below(16), // straddling its end
            6 => 0xf000_0000 + rng.below(0x1000_0000), // unbacked
            7 => 0x8000_0000_0000_0000 | rng.next(), // non-canonical
            8 => 0xffff_8000_0000_0000 + rng.below(1 << 30), // a kernel's half
            9 => rng.pick(&[DOMID_SELF as u64, 0, 1, 2, 3, 0x7ff4, 0xffff]),
            10 => rng.below(4096),
            _ => rng.next(),
        }
    }

    /// A pointer the hypervisor may write through: into the scratch area,
    /// or somewhere it must refuse.
    fn writable_pointer(rng: &mut Rng) -> u64 {
        match rng.below(3) {
            0 => scratch() + rng.below(4 * 4096 - 64) / 8 * 8,
            1 => 0x8000_0000_0000_0000 | rng.next(),
            _ => 0xf000_0000 + rng.below(0x1000_0000) / 8 * 8,
        }
    }

    fn fill_scratch(rng: &mut Rng) {
        for i in 0..(4 * 4096 / 8) {
            let v = value(rng);
            // SAFETY: inside the scratch area, which only this loop and the
            // hypervisor (on our behalf) write.
            unsafe { core::ptr::write_volatile((scratch() as *mut u64).add(i), v) };
        }
    }

    fn put(offset: u64, v: u64) {
        // SAFETY: a word inside the scratch area.
        unsafe { core::ptr::write_volatile((scratch() + offset) as *mut u64, v) };
    }

    /// One hypercall: `None` when the draw is one left out.
    fn hypercall_draw(rng: &mut Rng) -> Option<(u64, [u64; 3])> {
        draw(rng, false)
    }

    /// One hypercall, or (`nested`) one entry of a multicall batch.
    fn draw(rng: &mut Rng, nested: bool) -> Option<(u64, [u64; 3])> {
        const FAMILIES: [u64; 15] = [12, 13, 15, 17, 18, 20, 21, 24, 29, 32, 33, 34, 35, 36, 99];
        let nr = if rng.below(10) == 0 {
            rng.below(128)
        } else {
            rng.pick(&FAMILIES)
        };
        let cmd = if rng.below(8) == 0 {
            value(rng)
        } else {
            rng.below(32)
        };
        let mut args = [cmd, value(rng), value(rng)];
        let memory_op = Hypercall::MemoryOp as u64;
        // What the hypervisor will see: Xen's sub-op arguments are `int`
        // (the low 32 bits), memory_op's the low 6 bits.
        let op = if nr == memory_op {
            cmd & 0x3f
        } else {
            cmd & 0xffff_ffff
        };
        match (nr, op) {
            // console_io write: would print garbage.
            (18, 0) => return None,
            // sched_op block, shutdown, poll: would stop the fuzzer.
            (29, 1..=3) => return None,
            // vcpu_op down on itself.
            (24, 2) => return None,
            // vcpu_op register_runstate_memory_area / register_vcpu_info:
            // the hypervisor writes there from now on.
            (24, 5) => {
                put(0, writable_pointer(rng));
                args = [cmd, 0, scratch()];
            }
            (24, 10) => {
                let gfn = rng.pick(&[scratch() >> 12, 0xf0000, u64::MAX >> 12]);
                put(0, gfn);
                put(8, rng.below(4096));
                args = [cmd, 0, scratch()];
            }
            // add_to_physmap(_batch): only our physmap slot or gfns outside
            // RAM (a shared-info move must not land on our code, and the
            // page it leaves is a hole, as on Xen).
            (n, 7) | (n, 23) if n == memory_op => {
                let slot = &raw mut PHYSMAP_SLOT as u64 >> 12;
                let gpfn = rng.pick(&[slot, 0x10_0000, 0xffff, u64::MAX]);
                put(0, value(rng) & 0xffff); // domid, size, space
                put(8, value(rng));
                put(16, gpfn);
                put(24, writable_pointer(rng));
                put(32, writable_pointer(rng));
                args = [cmd, scratch(), 0];
            }
            // remove_from_physmap: only our physmap slot or outside RAM (as
            // on Xen, a page of ours taken out of the physmap is a hole we
            // would fault on).
            (n, 15) if n == memory_op => {
                let slot = &raw mut PHYSMAP_SLOT as u64 >> 12;
                put(0, value(rng) & 0xffff); // domid, pad
                put(8, rng.pick(&[slot, 0x10_0000, 0xffff_ffff, u64::MAX]));
                args = [cmd, scratch(), 0];
            }
            // The reservation family: pages given back only from our
            // physmap slot or outside RAM (a page of our own code would be
            // ours to regret, as on Xen), in extents that stay there.
            (n, 0 | 1 | 6) if n == memory_op => {
                let slot = &raw mut PHYSMAP_SLOT as u64 >> 12;
                let outside = [0x10_0000, 0xffff_ffff, u64::MAX >> 12, u64::MAX];
                for i in 0..4 {
                    let gfn = if rng.below(2) == 0 {
                        slot
                    } else {
                        rng.pick(&outside)
                    };
                    put(64 + i * 8, gfn);
                }
                let list = rng.pick(&[scratch() + 64, 0xf000_0000, u64::MAX - 8]);
                put(0, list); // extent_start
                put(8, rng.pick(&[0, 1, 4, u64::MAX, 1 << 58])); // nr_extents
                // An order above 0 only over outside-RAM gfns.
                let order = if rng.below(2) == 0 {
                    0
                } else {
                    for i in 0..4 {
                        put(64 + i * 8, rng.pick(&outside));
                    }
                    rng.pick(&[1u64, 9, 10, 18, 31, u32::MAX as u64])
                };
                put(16, order | (value(rng) & 0xffff_ffff) << 32); // order, mem_flags
                put(24, value(rng) & 0xffff); // domid
                args = [cmd, scratch(), 0];
            }
            // A multicall: a batch of drawn calls in our list (a nested one
            // is refused by the hypervisor, so its arguments do not matter).
            (13, _) if nested => args = [0, 0, 0],
            (13, _) => {
                let list = &raw mut MULTICALL_LIST as u64;
                let n = rng.below(MULTICALL_MAX as u64 + 1);
                let mut built = 0;
                while built < n {
                    let Some((op, [a1, a2, a3])) = draw(rng, true) else {
                        continue;
                    };
                    let entry = [op, 0, a1, a2, a3, value(rng), value(rng), 0];
                    // SAFETY: entry `built` of our multicall list, which only
                    // this loop and the hypervisor (the results) write.
                    unsafe {
                        core::ptr::write_volatile(
                            (list as *mut [u64; 8]).add(built as usize),
                            entry,
                        )
                    };
                    built += 1;
                }
                args = match rng.below(4) {
                    0 => [0xf000_0000, value(rng), 0],
                    1 => [0x8000_0000_0000_0000 | rng.next(), value(rng), 0],
                    _ => [list, n, 0],
                };
            }
            // Batched grant ops (map, unmap, unmap_and_replace): the
            // hypervisor writes each element's status back, so the batch
            // must fit the scratch area (or start somewhere refused).
            (20, 0 | 1 | 7) => {
                let inside = scratch() + rng.below(1024);
                let start = rng.pick(&[inside, 0xf000_0000, u64::MAX - 16]);
                args = [cmd, start, rng.below(9)];
            }
            // grant copy: one op, whose destination (if a frame of ours
            // and not a grant) is in the scratch area — a copy over our
            // own code would be ours to regret, as on Xen.
            (20, 5) => {
                put(16, (scratch() >> 12) + rng.below(4));
                args = [cmd, scratch(), 1];
            }
            _ => {}
        }
        Some((nr, args))
    }

    static GP_COUNT: AtomicU32 = AtomicU32::new(0);
    #[unsafe(no_mangle)]
    static FUZZER_GP: AtomicU32 = AtomicU32::new(0);

    core::arch::global_asm!(
        r#"
        .global fuzzer_gp_skip
    fuzzer_gp_skip:
        add rsp, 8
        add qword ptr [rsp], 2
        lock inc dword ptr [rip + FUZZER_GP]
        iretq
        .global fuzzer_ignore_interrupt
    fuzzer_ignore_interrupt:
        iretq
    "#
    );

    unsafe extern "C" {
        static fuzzer_gp_skip: u8;
        static fuzzer_ignore_interrupt: u8;
    }

    /// One MSR access, #GP caught (rdmsr and wrmsr are both 2 bytes).
    fn msr_draw(rng: &mut Rng, trace: bool) {
        const MSRS: [u32; 24] = [
            0x1b,
            0x8b,
            0xce,
            0xfe,
            0x10a,
            0x179,
            0x200,
            0x20f,
            0x250,
            0x26f,
            0x277,
            0x2ff,
            0x802,
            0x808,
            0x80b,
            0x80f,
            0x828,
            0x830,
            0x83f,
            0xc000_0080,
            0xc000_0103,
            0xc001_0004,
            0xc001_0015,
            0xc001_1029,
        ];
        let msr = match rng.below(4) {
            0 => rng.next() as u32,
            1 => 0x800 + rng.below(0x100) as u32,
            _ => rng.pick(&MSRS),
        };
        // Left out: the hypercall page (it rewrites a page of ours) and
        // the MSRs a guest owns outright (FS/GS bases, syscall entry).
        if matches!(msr, 0x4000_0000 | 0x174..=0x176 | 0xc000_0081..=0xc000_0084 | 0xc000_0100..=0xc000_0102)
        {
            return;
        }
        let read = rng.below(2) == 0;
        let mut value = value(rng);
        if msr == 0x830 || msr == 0x83f {
            // IPIs to ourselves: keep their vectors out of the exceptions.
            value = (value & !0xff) | (0x20 + rng.below(0xe0));
        }
        if trace {
            println!(
                "fuzzer: {} msr {msr:#x} {value:#x}",
                if read { "rdmsr" } else { "wrmsr" }
            );
        }
        // SAFETY: #GP is caught by the skip gate; the MSRs that could
        // break this kernel's own state are left out above.
        unsafe {
            if read {
                core::arch::asm!("rdmsr", in("ecx") msr, out("eax") _, out("edx") _);
            } else {
                core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32);
            }
        }
    }

    fn arg(info: &StartInfo, key: &str) -> Option<u64> {
        info.cmdline()
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
    }

    fn main(info: &StartInfo) -> ! {
        let seed = arg(info, "seed").unwrap_or(1);
        let calls = arg(info, "calls").unwrap_or(10_000);
        // `trace=N`: print each draw from the N-th on (to find a bad one).
        let trace = arg(info, "trace").unwrap_or(u64::MAX);
        let mut rng = Rng(seed.max(1) ^ 0x9e37_79b9_7f4a_7c15);
        guest_shim::traps::set_gate(13, &raw const fuzzer_gp_skip as u64);
        for vector in 32..=255u8 {
            guest_shim::traps::set_gate(vector, &raw const fuzzer_ignore_interrupt as u64);
        }
        println!("fuzzer: seed {seed}, {calls} calls");
        let mut refused = 0u64;
        for n in 0..calls {
            fill_scratch(&mut rng);
            if rng.below(8) == 0 {
                msr_draw(&mut rng, n >= trace);
                continue;
            }
            let Some((nr, [a1, a2, a3])) = hypercall_draw(&mut rng) else {
                continue;
            };
            let (a4, a5) = (value(&mut rng), value(&mut rng));
            if n >= trace {
                println!(
                    "fuzzer: #{n} hypercall {nr} ({a1:#x}, {a2:#x}, {a3:#x}, {a4:#x}, {a5:#x})"
                );
            }
            // SAFETY: every pointer the hypervisor may write through points
            // into the scratch area or where it must refuse (above).
            let ret = unsafe { hypercall::raw(nr, a1, a2, a3, a4, a5) };
            if ret < 0 {
                refused += 1;
            }
            if n > 0 && n % 10_000 == 0 {
                println!("fuzzer: {n} calls");
            }
        }
        GP_COUNT.store(FUZZER_GP.load(Ordering::SeqCst), Ordering::SeqCst);
        println!(
            "fuzzer: PASS {calls} calls, {refused} hypercalls refused, {} MSR accesses got #GP",
            GP_COUNT.load(Ordering::SeqCst)
        );
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
