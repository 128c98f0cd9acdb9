//! debugreg: a guest's debug facilities are its own, as on hardware. INT3
//! raises #BP in the guest with the return address after it; RFLAGS.TF
//! raises #DB after one instruction with DR6.BS; DR0-DR3 and DR7 keep the
//! values this guest wrote across many yields to another domain doing the
//! same on the same CPU (each writes values of its own); DEBUGCTL reads
//! back what was written.
//! Command line: `rounds=N` (yields between checks; default 200).
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::{AtomicU64, Ordering};

    use guest_shim::{ShutdownReason, StartInfo, hypercall, println, shutdown};

    #[unsafe(no_mangle)]
    static DEBUGREG_BP_HITS: AtomicU64 = AtomicU64::new(0);
    #[unsafe(no_mangle)]
    static DEBUGREG_BP_RIP: AtomicU64 = AtomicU64::new(0);
    #[unsafe(no_mangle)]
    static DEBUGREG_DB_HITS: AtomicU64 = AtomicU64::new(0);
    #[unsafe(no_mangle)]
    static DEBUGREG_DB_DR6: AtomicU64 = AtomicU64::new(0);

    core::arch::global_asm!(
        r#"
        .global debugreg_bp
    debugreg_bp:
        push rax
        mov rax, [rsp + 8]
        mov [rip + DEBUGREG_BP_RIP], rax
        lock inc qword ptr [rip + DEBUGREG_BP_HITS]
        pop rax
        iretq
        .global debugreg_db
    debugreg_db:
        push rax
        mov rax, dr6
        mov [rip + DEBUGREG_DB_DR6], rax
        mov rax, 0xffff0ff0
        mov dr6, rax
        // Single-step off again: TF in the saved RFLAGS.
        and qword ptr [rsp + 24], ~0x100
        lock inc qword ptr [rip + DEBUGREG_DB_HITS]
        pop rax
        iretq
        .global debugreg_int3_site
    debugreg_int3:
        int3
    debugreg_int3_site:
        ret
        .global debugreg_step
    debugreg_step:
        pushfq
        or qword ptr [rsp], 0x100
        popfq
        nop
        nop
        ret
    "#
    );
    unsafe extern "C" {
        static debugreg_bp: u8;
        static debugreg_db: u8;
        static debugreg_int3_site: u8;
        safe fn debugreg_int3();
        safe fn debugreg_step();
    }

    fn read_drs() -> [u64; 5] {
        let (a, b, c, d, e): (u64, u64, u64, u64, u64);
        // SAFETY: reading debug registers at CPL 0 has no side effects.
        unsafe {
            core::arch::asm!(
                "mov {}, dr0", "mov {}, dr1", "mov {}, dr2", "mov {}, dr3", "mov {}, dr7",
                out(reg) a, out(reg) b, out(reg) c, out(reg) d, out(reg) e,
                options(nostack, nomem)
            )
        };
        [a, b, c, d, e]
    }

    fn write_drs(v: [u64; 5]) {
        // SAFETY: addresses only (DR7 enables no breakpoint: its enable
        // bits stay clear), so nothing traps.
        unsafe {
            core::arch::asm!(
                "mov dr0, {}", "mov dr1, {}", "mov dr2, {}", "mov dr3, {}", "mov dr7, {}",
                in(reg) v[0], in(reg) v[1], in(reg) v[2], in(reg) v[3], in(reg) v[4],
                options(nostack, nomem)
            )
        };
    }

    fn main(info: &StartInfo) -> ! {
        let rounds: u64 = info
            .cmdline()
            .split_whitespace()
            .find_map(|w| w.strip_prefix("rounds="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        let domid = u64::from(guest_shim::domid().unwrap_or(0));
        let mut failures = 0;
        let mut fail = |what: &str| {
            println!("debugreg: FAIL {what}");
            failures += 1;
        };
        guest_shim::traps::set_gate(3, &raw const debugreg_bp as u64);
        guest_shim::traps::set_gate(1, &raw const debugreg_db as u64);

        debugreg_int3();
        let site = &raw const debugreg_int3_site as u64;
        if DEBUGREG_BP_HITS.load(Ordering::SeqCst) != 1
            || DEBUGREG_BP_RIP.load(Ordering::SeqCst) != site
        {
            fail("INT3 did not raise #BP returning after it");
        }

        debugreg_step();
        const DR6_BS: u64 = 1 << 14;
        if DEBUGREG_DB_HITS.load(Ordering::SeqCst) != 1
            || DEBUGREG_DB_DR6.load(Ordering::SeqCst) & DR6_BS == 0
        {
            fail("TF did not raise one #DB with DR6.BS");
        }

        // Values of our own: addresses per domain, DR7 with only its
        // reserved bit 10 and the LEN/RW fields of DR0-DR3 set.
        let mine = [
            0x1000 * domid + 0x10,
            0x1000 * domid + 0x20,
            0x1000 * domid + 0x30,
            0x1000 * domid + 0x40,
            0x400 | (domid & 0xf) << 16,
        ];
        write_drs(mine);
        for round in 0..rounds {
            let _ = hypercall::sched_yield();
            let seen = read_drs();
            if seen != mine {
                println!("debugreg: round {round}: DR0-3, DR7 {seen:#x?}, wrote {mine:#x?}");
                fail("debug registers changed across a yield");
                break;
            }
        }

        const MSR_DEBUGCTL: u32 = 0x1d9;
        // SAFETY: DEBUGCTL exists on every x86-64 CPU; bit 0 (LBR) only
        // records branches.
        unsafe {
            core::arch::asm!("wrmsr", in("ecx") MSR_DEBUGCTL, in("eax") 1u32, in("edx") 0u32, options(nostack))
        };
        let (lo, hi): (u32, u32);
        // SAFETY: as above.
        unsafe {
            core::arch::asm!("rdmsr", in("ecx") MSR_DEBUGCTL, out("eax") lo, out("edx") hi, options(nostack))
        };
        if (u64::from(hi) << 32 | u64::from(lo)) != 1 {
            fail("DEBUGCTL did not read back");
        }

        if failures == 0 {
            println!("debugreg: PASS ({rounds} yields)");
        }
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
