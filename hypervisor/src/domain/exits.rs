//! What happens on each guest exit: hypercalls go to `hypercall`, CPUID
//! and MSRs are emulated, HLT blocks, and anything a guest may not do
//! gets #GP or ends the domain with the cause on the console.

use alloc::format;
use alloc::sync::Arc;

use core::sync::atomic::Ordering;

use super::registry::{Domain, EndReason, VcpuSlot, vcpu_state};
use crate::hypercall;
use crate::mm::IdentityMap;
use crate::mm::frame::FRAME_SIZE;
use crate::mm::guest::{Gfn, Gpa, GuestPaging, PTE_ADDR, PTE_HUGE, PTE_PRESENT};
use crate::virt::{Exit, VirtCpu};

pub enum Next {
    Continue,
    Yield,
    Block,
    Stop,
}

const VECTOR_GP: u8 = 13;
const VECTOR_UD: u8 = 6;
/// VMMCALL and VMCALL alike.
const LEN_HYPERCALL: u64 = 3;
const LEN_CPUID: u64 = 2;
const LEN_MSR: u64 = 2;
const LEN_HLT: u64 = 1;
const LEN_XSETBV: u64 = 3;

const MSR_TSC: u32 = 0x10;
const MSR_EFER: u32 = 0xc000_0080;

use crate::platform::cpuid::MSR_HYPERCALL_PAGE;
pub use crate::platform::cpuid::{XEN_VERSION_MAJOR, XEN_VERSION_MINOR};
use crate::platform::msr::Effect;

/// The guest's page-table entries on the way to `gva`, read through its
/// p2m, for a crash report: a triple fault where every access faults
/// says whether the guest's tables themselves were broken.
fn walk_report(domain: &Domain, paging: GuestPaging, gva: u64) -> alloc::string::String {
    let memory = domain.memory.lock();
    let mut out = format!("walk of {gva:#x}:");
    let mut table = paging.cr3 & PTE_ADDR;
    for level in (0..4).rev() {
        let index = (gva >> (12 + 9 * level)) & 511;
        match memory.p2m.read_u64(&IdentityMap, Gpa(table + index * 8)) {
            Ok(entry) => {
                out.push_str(&format!(" L{}[{index}]={entry:#x}", level + 1));
                let leaf = level == 0 || entry & PTE_HUGE != 0;
                if entry & PTE_PRESENT == 0 || leaf {
                    break;
                }
                table = entry & PTE_ADDR;
            }
            Err(e) => {
                out.push_str(&format!(" L{} unreadable ({e:?})", level + 1));
                break;
            }
        }
    }
    out
}

fn crash(domain: &Domain, cause: alloc::string::String) -> Next {
    domain.end(EndReason::Crash(cause));
    Next::Stop
}

pub fn handle(domain: &Arc<Domain>, vcpu: usize, slot: &mut VcpuSlot, exit: Exit) -> Next {
    let cpu = &mut slot.cpu;
    match exit {
        Exit::Hypercall => {
            let rip = cpu.rip();
            let next = hypercall::dispatch(domain, vcpu, slot);
            if !matches!(next, Next::Stop) {
                slot.cpu.set_rip(rip + LEN_HYPERCALL);
            }
            next
        }
        Exit::Cpuid => {
            let (leaf, sub) = (cpu.rax() as u32, cpu.regs().rcx as u32);
            let [a, b, c, d] = cpuid(domain, vcpu, cpu, leaf, sub);
            cpu.set_rax(a as u64);
            let r = cpu.regs();
            (r.rbx, r.rcx, r.rdx) = (b as u64, c as u64, d as u64);
            cpu.set_rip(cpu.rip() + LEN_CPUID);
            Next::Continue
        }
        Exit::Msr { write } => {
            let msr = cpu.regs().rcx as u32;
            let value = (cpu.regs().rdx << 32) | (cpu.rax() & 0xffff_ffff);
            let ok = if write {
                write_msr(domain, vcpu, slot, msr, value)
            } else {
                read_msr(domain, vcpu, slot, msr)
            };
            let cpu = &mut slot.cpu;
            if ok {
                cpu.set_rip(cpu.rip() + LEN_MSR);
            } else {
                cpu.inject_exception(VECTOR_GP, Some(0));
            }
            Next::Continue
        }
        Exit::Hlt => {
            cpu.set_rip(cpu.rip() + LEN_HLT);
            if !cpu.interrupts_enabled() {
                // Nothing can wake it: the vCPU is down. Xen powers the
                // domain off when all are (Linux's `poweroff -f` without
                // an ACPI _S5 ends this way).
                domain.halted_for_good[vcpu].store(true, Ordering::SeqCst);
                let all_down = (0..domain.vcpus.len()).all(|v| {
                    v == vcpu
                        || domain.halted_for_good[v].load(Ordering::SeqCst)
                        || domain.vcpu_states[v].load(Ordering::SeqCst) == vcpu_state::DOWN
                });
                if all_down {
                    domain.end(EndReason::Poweroff);
                }
                return Next::Stop;
            }
            if cpu.interrupt_queued() || super::apic::has_pending(domain, vcpu) {
                return Next::Continue;
            }
            Next::Block
        }
        Exit::Xsetbv => {
            let value = (cpu.regs().rdx << 32) | (cpu.rax() & 0xffff_ffff);
            if cpu.regs().rcx as u32 == 0 && cpu.set_xcr0(value) {
                cpu.set_rip(cpu.rip() + LEN_XSETBV);
            } else {
                cpu.inject_exception(VECTOR_GP, Some(0));
            }
            Next::Continue
        }
        Exit::Io {
            port,
            input,
            size,
            string,
            next_rip,
        } => {
            // No emulated devices: what a read gives is `platform::ports`
            // (Xen's all ones, bar the PIT counters); writes are dropped.
            // String I/O would need emulating memory operands: refused.
            // Dom0's ports also reach the PCI bus it owns (`devices`).
            if string {
                cpu.inject_exception(VECTOR_GP, Some(0));
            } else {
                let width = if size >= 4 {
                    0xffff_ffff
                } else {
                    (1u64 << (size * 8)) - 1
                };
                let out = (cpu.rax() & width) as u32;
                let device = if domain.privileged {
                    super::devices::dom0_io(port, input, size, out)
                } else {
                    None
                };
                if input {
                    let value = device.unwrap_or_else(|| crate::platform::ports::read(port, size))
                        as u64
                        & width;
                    cpu.set_rax((cpu.rax() & !width) | value);
                }
                cpu.set_rip(next_rip);
            }
            Next::Continue
        }
        Exit::Cr4Write => {
            match decode_mov_to_cr4(domain, cpu) {
                Some((source, len)) => {
                    let value = read_gpr(cpu, source);
                    match value {
                        Some(v) if cpu.set_cr4(v) => cpu.set_rip(cpu.rip() + len),
                        _ => cpu.inject_exception(VECTOR_GP, Some(0)),
                    }
                }
                None => cpu.inject_exception(VECTOR_UD, None),
            }
            Next::Continue
        }
        Exit::ExternalInterrupt | Exit::InterruptWindow | Exit::Handled => Next::Continue,
        Exit::VirtInstruction => {
            // Pavise offers guests no nested virtualization (CPUID shows
            // neither SVM nor VMX): the instruction does not exist.
            cpu.inject_exception(VECTOR_UD, None);
            Next::Continue
        }
        Exit::NestedPageFault { gpa, error } => {
            if DEVICE_WINDOW.contains(&gpa) && emulate_device_window_access(domain, vcpu, cpu, gpa)
            {
                return Next::Continue;
            }
            let cause = if gpa >= domain.mem_bytes() {
                format!(
                    "access to guest-physical {gpa:#x} outside its {} MiB (error code {error:#x})",
                    domain.mem_bytes() >> 20
                )
            } else {
                format!("access to unbacked guest-physical {gpa:#x} (error code {error:#x})")
            };
            crash(domain, format!("{cause} at rip {:#x}", cpu.rip()))
        }
        Exit::Shutdown => crash(
            domain,
            format!(
                "triple fault on vcpu{vcpu} at rip {:#x} ({}; {}; {})",
                cpu.rip(),
                cpu.fault_report(),
                walk_report(domain, cpu.paging(), cpu.rip()),
                walk_report(domain, cpu.paging(), cpu.cr2())
            ),
        ),
        Exit::InvalidState => crash(
            domain,
            format!(
                "vcpu{vcpu} state refused by the hardware at rip {:#x} ({})",
                cpu.rip(),
                cpu.fault_report()
            ),
        ),
        Exit::Unexpected(code) => {
            let (_, info1, info2) = cpu.exit_info();
            crash(
                domain,
                format!(
                    "unexpected exit {code:#x} (info {info1:#x} {info2:#x}) at rip {:#x}",
                    cpu.rip()
                ),
            )
        }
    }
}

/// The PC's fixed-device window (I/O APIC, HPET, local APIC). Pavise has
/// no devices there: as Xen does for a PVH guest, reads give all ones and
/// writes are dropped, so guests probing for these devices find none.
/// Any other access outside the domain's memory ends the domain.
const DEVICE_WINDOW: core::ops::Range<u64> = 0xfe00_0000..0x1_0000_0000;
const EFER_LMA: u64 = 1 << 10;

fn emulate_device_window_access(
    domain: &Arc<Domain>,
    vcpu: usize,
    cpu: &mut impl VirtCpu,
    gpa: u64,
) -> bool {
    use crate::domain::mmio::{self, Access};
    use crate::mm::guest::Gva;
    let paging = cpu.paging();
    let rip = cpu.rip();
    let mut bytes = [0u8; 15];
    // The instruction may end near an unmapped page: take what is there.
    let fetched = domain.with_guest(paging, |g| {
        (1..=15usize)
            .rev()
            .find(|&n| g.read(Gva(rip), &mut bytes[..n]).is_ok())
            .unwrap_or(0)
    });
    let Some(decoded) = mmio::decode(&bytes[..fetched], paging.efer & EFER_LMA != 0) else {
        return false;
    };
    if let Access::Store { size, source } = decoded.access
        && super::apic::is_xapic_access(gpa)
    {
        // The local APIC takes aligned 32-bit writes to its registers
        // (Xen's vlapic_mmio_write); other sizes and an `rsp` source (no
        // guest writes its stack pointer to a device) are dropped.
        let register = match source {
            mmio::Source::Reg { reg, .. } => read_gpr(cpu, reg),
            mmio::Source::Imm(_) => Some(0),
        };
        if let Some(register) = register
            && size == 4
            && gpa & 0xf == 0
        {
            let value = source.value(size, register) as u32;
            super::apic::write_mmio(domain, vcpu, (gpa & 0xfff) as u32, value);
        }
    }
    if let Access::Load {
        reg,
        size,
        dest_size,
        high_byte,
    } = decoded.access
    {
        // The local APIC page answers from the vCPU's APIC (Linux reads
        // its ID and version there before switching to x2APIC); the rest
        // of the window reads as all ones.
        let apic = super::apic::is_xapic_access(gpa)
            .then(|| super::apic::read_mmio(domain, vcpu, (gpa & 0xfff) as u32));
        let value = |old: u64| match apic {
            Some(word) => {
                let shifted = (word as u64) >> ((gpa & 0x3) * 8);
                mmio::load_value(old, shifted, size, dest_size, high_byte)
            }
            None => mmio::load_all_ones(old, size, dest_size, high_byte),
        };
        match reg {
            0 => {
                let v = value(cpu.rax());
                cpu.set_rax(v);
            }
            _ => match gpr_slot(cpu.regs(), reg) {
                Some(slot) => *slot = value(*slot),
                None => return false, // rsp lives in the VMCB; no device read targets it
            },
        }
    }
    cpu.set_rip(rip + decoded.len as u64);
    true
}

/// General-purpose register `n` (1 = rcx … 15 = r15; not rax or rsp,
/// which the backend keeps in its control structure).
fn gpr_slot(r: &mut crate::virt::GuestRegs, n: u8) -> Option<&mut u64> {
    Some(match n {
        1 => &mut r.rcx,
        2 => &mut r.rdx,
        3 => &mut r.rbx,
        5 => &mut r.rbp,
        6 => &mut r.rsi,
        7 => &mut r.rdi,
        8 => &mut r.r8,
        9 => &mut r.r9,
        10 => &mut r.r10,
        11 => &mut r.r11,
        12 => &mut r.r12,
        13 => &mut r.r13,
        14 => &mut r.r14,
        15 => &mut r.r15,
        _ => return None,
    })
}

/// The value of register `n` (0 = rax … 15 = r15); `None` for rsp.
fn read_gpr(cpu: &mut impl VirtCpu, n: u8) -> Option<u64> {
    if n == 0 {
        return Some(cpu.rax());
    }
    gpr_slot(cpu.regs(), n).map(|r| *r)
}

/// Decodes the `mov cr4, reg` at the guest's RIP (no decode assists under
/// emulation): returns the source register and the instruction length.
fn decode_mov_to_cr4(domain: &Domain, cpu: &impl VirtCpu) -> Option<(u8, u64)> {
    use crate::mm::guest::Gva;
    let mut bytes = [0u8; 4];
    let rip = cpu.rip();
    domain
        .with_guest(cpu.paging(), |g| g.read(Gva(rip), &mut bytes))
        .ok()?;
    let long = cpu.paging().efer & EFER_LMA != 0;
    crate::domain::mmio::decode_mov_to_cr(&bytes, long)
        .filter(|m| m.cr == 4)
        .map(|m| (m.source, m.len as u64))
}

fn host_cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// The CPUID a guest sees: Pavise's policy (`platform::cpuid`) over the
/// host's leaves.
fn cpuid(domain: &Domain, vcpu: usize, cpu: &impl VirtCpu, leaf: u32, sub: u32) -> [u32; 4] {
    use crate::platform::cpuid::{VcpuView, apic_id_of, guest_leaf};
    let view = VcpuView {
        vcpu: vcpu as u32,
        domid: domain.id,
        apic_id: apic_id_of(vcpu as u32),
        vcpus: domain.vcpus.len() as u32,
        cr4: cpu.paging().cr4,
        xcr0: cpu.xcr0(),
        xcr0_supported: cpu.xcr0_supported(),
    };
    guest_leaf(host_cpuid, &view, leaf, sub)
}

fn read_msr(domain: &Domain, vcpu: usize, slot: &mut VcpuSlot, msr: u32) -> bool {
    let value = match msr {
        MSR_EFER => Ok(slot.cpu.efer()),
        MSR_TSC => Ok(crate::arch::time::rdtsc()),
        _ if super::apic::is_apic_msr(msr) => {
            super::apic::read_msr(domain, vcpu, msr).map_err(|_| ())
        }
        _ => slot.msrs.read(msr).map_err(|_| ()),
    };
    let Ok(value) = value else {
        log::debug!("rdmsr {msr:#x}: #GP");
        return false;
    };
    slot.cpu.set_rax(value & 0xffff_ffff);
    slot.cpu.regs().rdx = value >> 32;
    true
}

fn write_msr(domain: &Arc<Domain>, vcpu: usize, slot: &mut VcpuSlot, msr: u32, value: u64) -> bool {
    match msr {
        MSR_EFER => slot.cpu.set_efer(value),
        MSR_HYPERCALL_PAGE => install_hypercall_page(domain, value),
        _ if super::apic::is_apic_msr(msr) => {
            super::apic::write_msr(domain, vcpu, msr, value).is_ok()
        }
        _ => match slot.msrs.write(msr, value) {
            Ok(Effect::None) => true,
            Ok(Effect::Pat(pat)) => {
                slot.cpu.set_pat(pat);
                true
            }
            Ok(Effect::TscAux(aux)) => {
                slot.cpu.set_tsc_aux(aux);
                true
            }
            Err(_) => {
                log::debug!("wrmsr {msr:#x} <- {value:#x}: #GP");
                false
            }
        },
    }
}

/// Fills the guest page named by the MSR value with 32-byte stubs
/// `mov eax, N; vmmcall; ret` (`vmcall` on VT-x). Only page index 0 exists.
fn install_hypercall_page(domain: &Domain, value: u64) -> bool {
    if value & 0xfff != 0 {
        return false;
    }
    let gfn = Gfn(value / FRAME_SIZE);
    let mut page = [0xccu8; FRAME_SIZE as usize];
    let hypercall = crate::virt::hypercall_instruction();
    for (nr, stub) in page.chunks_exact_mut(32).enumerate() {
        stub[0] = 0xb8;
        stub[1..5].copy_from_slice(&(nr as u32).to_le_bytes());
        stub[5..8].copy_from_slice(&hypercall);
        stub[8] = 0xc3;
    }
    let memory = domain.memory.lock();
    if memory.p2m.get(gfn).is_none() {
        return false;
    }
    memory
        .p2m
        .write(&IdentityMap, Gpa(gfn.0 * FRAME_SIZE), &page)
        .is_ok()
}
