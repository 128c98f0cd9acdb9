//! What happens on each guest exit: hypercalls go to `hypercall`, CPUID
//! and MSRs are emulated, HLT blocks, and anything a guest may not do
//! gets #GP or ends the domain with the cause on the console.

use alloc::format;
use alloc::sync::Arc;

use super::registry::{Domain, EndReason, VcpuSlot};
use crate::hypercall;
use crate::mm::IdentityMap;
use crate::mm::frame::FRAME_SIZE;
use crate::mm::guest::{Gfn, Gpa};
use crate::virt::{Exit, VirtCpu};

pub enum Next {
    Continue,
    Yield,
    Block,
    Stop,
}

const VECTOR_GP: u8 = 13;
const LEN_VMMCALL: u64 = 3;
const LEN_CPUID: u64 = 2;
const LEN_MSR: u64 = 2;
const LEN_HLT: u64 = 1;
const LEN_XSETBV: u64 = 3;

/// Xen's hypercall-page MSR, as CPUID 0x40000002 advertises.
pub const MSR_HYPERCALL_PAGE: u32 = 0x4000_0000;
const MSR_TSC: u32 = 0x10;
const MSR_PAT: u32 = 0x277;
const MSR_EFER: u32 = 0xc000_0080;
const PAT_DEFAULT: u64 = 0x0007_0406_0007_0406;

pub const XEN_CPUID_BASE: u32 = 0x4000_0000;
/// Xen version Pavise presents to guests.
pub const XEN_VERSION_MAJOR: u32 = 4;
pub const XEN_VERSION_MINOR: u32 = 19;

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
                slot.cpu.set_rip(rip + LEN_VMMCALL);
            }
            next
        }
        Exit::Cpuid => {
            let (leaf, sub) = (cpu.rax() as u32, cpu.regs().rcx as u32);
            let [a, b, c, d] = cpuid(domain, vcpu, leaf, sub);
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
                write_msr(domain, cpu, msr, value)
            } else {
                read_msr(cpu, msr)
            };
            if ok {
                cpu.set_rip(cpu.rip() + LEN_MSR);
            } else {
                cpu.inject_exception(VECTOR_GP, Some(0));
            }
            Next::Continue
        }
        Exit::Hlt => {
            cpu.set_rip(cpu.rip() + LEN_HLT);
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
            input,
            size,
            string,
            next_rip,
            ..
        } => {
            // No emulated devices. As Xen does for PVH guests, a port with
            // nothing behind it reads as all ones and ignores writes (Xen
            // guests probe such ports, e.g. QEMU's debug console at 0x12).
            // String I/O would need emulating memory operands: refused.
            if string {
                cpu.inject_exception(VECTOR_GP, Some(0));
            } else {
                if input {
                    let ones = if size == 4 {
                        0xffff_ffff
                    } else {
                        (1u64 << (size * 8)) - 1
                    };
                    cpu.set_rax((cpu.rax() & !ones) | ones);
                }
                cpu.set_rip(next_rip);
            }
            Next::Continue
        }
        Exit::ExternalInterrupt | Exit::InterruptWindow => Next::Continue,
        Exit::NestedPageFault { gpa, error } => {
            if DEVICE_WINDOW.contains(&gpa) && emulate_device_window_access(domain, cpu) {
                return Next::Continue;
            }
            let cause = if gpa >= domain.mem_bytes {
                format!(
                    "access to guest-physical {gpa:#x} outside its {} MiB (error code {error:#x})",
                    domain.mem_bytes >> 20
                )
            } else {
                format!("access to unbacked guest-physical {gpa:#x} (error code {error:#x})")
            };
            crash(domain, format!("{cause} at rip {:#x}", cpu.rip()))
        }
        Exit::Shutdown => crash(
            domain,
            format!("triple fault on vcpu{vcpu} at rip {:#x}", cpu.rip()),
        ),
        Exit::InvalidState => crash(domain, format!("vcpu{vcpu} state refused by VMRUN")),
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

fn emulate_device_window_access(domain: &Domain, cpu: &mut crate::virt::svm::SvmVcpu) -> bool {
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
    if let Access::Load {
        reg,
        size,
        dest_size,
        high_byte,
    } = decoded.access
    {
        let value = |old| mmio::load_all_ones(old, size, dest_size, high_byte);
        match reg {
            0 => {
                let v = value(cpu.rax());
                cpu.set_rax(v);
            }
            4 => return false, // rsp lives in the VMCB; no device read targets it
            _ => {
                let r = cpu.regs();
                let slot = match reg {
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
                    _ => &mut r.r15,
                };
                *slot = value(*slot);
            }
        }
    }
    cpu.set_rip(rip + decoded.len as u64);
    true
}

fn host_cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// The CPUID a guest sees: the host's, minus what Pavise does not
/// virtualize, plus Xen's leaves.
fn cpuid(domain: &Domain, vcpu: usize, leaf: u32, sub: u32) -> [u32; 4] {
    const XEN_SIGNATURE: [u32; 3] = [0x566e_6558, 0x6558_4d4d, 0x4d4d_566e];
    const HVM_VCPU_ID_PRESENT: u32 = 1 << 3;
    const HVM_DOMID_PRESENT: u32 = 1 << 4;
    match leaf {
        0x4000_0000 => [
            XEN_CPUID_BASE + 4,
            XEN_SIGNATURE[0],
            XEN_SIGNATURE[1],
            XEN_SIGNATURE[2],
        ],
        0x4000_0001 => [(XEN_VERSION_MAJOR << 16) | XEN_VERSION_MINOR, 0, 0, 0],
        0x4000_0002 => [1, MSR_HYPERCALL_PAGE, 0, 0],
        0x4000_0003 => [0; 4],
        0x4000_0004 => [
            HVM_VCPU_ID_PRESENT | HVM_DOMID_PRESENT,
            vcpu as u32,
            domain.id as u32,
            0,
        ],
        0x4000_0005..=0x4fff_ffff => [0; 4],
        1 => {
            let [a, b, c, d] = host_cpuid(1, 0);
            // Hide VMX, MONITOR, x2APIC and the APIC (not emulated); set
            // the hypervisor bit; the initial APIC id is the vCPU id.
            let c = (c & !((1 << 5) | (1 << 3) | (1 << 21))) | (1 << 31);
            let d = d & !(1 << 9);
            let b = (b & 0x00ff_ffff) | ((vcpu as u32) << 24);
            [a, b, c, d]
        }
        0x8000_0001 => {
            let [a, b, c, d] = host_cpuid(leaf, sub);
            [a, b, c & !(1 << 2), d] // no SVM inside
        }
        0x8000_000a => [0; 4],
        _ => host_cpuid(leaf, sub),
    }
}

fn read_msr(cpu: &mut crate::virt::svm::SvmVcpu, msr: u32) -> bool {
    let value = match msr {
        MSR_EFER => cpu.efer(),
        MSR_TSC => crate::arch::time::rdtsc(),
        MSR_PAT => PAT_DEFAULT,
        _ => return false,
    };
    cpu.set_rax(value & 0xffff_ffff);
    cpu.regs().rdx = value >> 32;
    true
}

fn write_msr(domain: &Domain, cpu: &mut crate::virt::svm::SvmVcpu, msr: u32, value: u64) -> bool {
    match msr {
        MSR_EFER => cpu.set_efer(value),
        MSR_PAT => value == PAT_DEFAULT,
        MSR_HYPERCALL_PAGE => install_hypercall_page(domain, value),
        _ => false,
    }
}

/// Fills the guest page named by the MSR value with 32-byte stubs
/// `mov eax, N; vmmcall; ret`. Only page index 0 exists.
fn install_hypercall_page(domain: &Domain, value: u64) -> bool {
    if value & 0xfff != 0 {
        return false;
    }
    let gfn = Gfn(value / FRAME_SIZE);
    let mut page = [0xccu8; FRAME_SIZE as usize];
    for (nr, stub) in page.chunks_exact_mut(32).enumerate() {
        stub[0] = 0xb8;
        stub[1..5].copy_from_slice(&(nr as u32).to_le_bytes());
        stub[5..8].copy_from_slice(&[0x0f, 0x01, 0xd9]);
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
