//! Hypercall dispatch: Xen numbering, arguments in rdi, rsi, rdx, r10, r8,
//! result in rax (negative Xen errno on failure). Every pointer is a
//! guest-virtual address read or written once through the domain's
//! checked view; a bad one is -EFAULT, never a hypervisor fault.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::domain::exits::{Next, XEN_VERSION_MAJOR, XEN_VERSION_MINOR};
use crate::domain::registry::{self, DomId, Domain, EndReason, VcpuSlot, vcpu_state};
use crate::domain::{events, sched};
use crate::evtchn::{self, Binding, EvtchnError};
use crate::mm::guest::{Gfn, GuestFault, Gva};
use crate::virt::{GuestRegs, StartState, VirtCpu};

/// Xen errno values (errno.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum Errno {
    Perm = 1,
    Acces = 13,
    NoEnt = 2,
    NoMem = 12,
    Busy = 16,
    Srch = 3,
    TooBig = 7,
    Fault = 14,
    Exist = 17,
    Inval = 22,
    NoSpc = 28,
    NoData = 61,
    Time = 62,
    NoSys = 38,
    OpNotSupp = 95,
    Overflow = 75,
}

impl From<EvtchnError> for Errno {
    fn from(e: EvtchnError) -> Self {
        match e {
            EvtchnError::Invalid => Errno::Inval,
            EvtchnError::NoDomain => Errno::Srch,
            EvtchnError::NotPermitted => Errno::Perm,
            EvtchnError::NoSpace => Errno::NoSpc,
            EvtchnError::Exists => Errno::Exist,
            EvtchnError::NoVcpu => Errno::NoEnt,
        }
    }
}

impl From<GuestFault> for Errno {
    fn from(_: GuestFault) -> Self {
        Errno::Fault
    }
}

type HcResult = Result<i64, Errno>;

mod domctl;
mod grant_table;
mod hvm;
mod memory;
mod physdev;
mod sysctl;

mod nr {
    pub const MEMORY_OP: u64 = 12;
    pub const MULTICALL: u64 = 13;
    pub const GRANT_TABLE_OP: u64 = 20;
    pub const SET_TIMER_OP: u64 = 15;
    pub const EVENT_CHANNEL_OP: u64 = 32;
    pub const XEN_VERSION: u64 = 17;
    pub const CONSOLE_IO: u64 = 18;
    pub const VCPU_OP: u64 = 24;
    pub const SCHED_OP: u64 = 29;
    pub const HVM_OP: u64 = 34;
    pub const VM_ASSIST: u64 = 21;
    pub const SYSCTL: u64 = 35;
    pub const DOMCTL: u64 = 36;
}

/// vm_assist(cmd, type): a PVH guest may only ask for the runstate
/// update flag (Xen's HVM_VM_ASSIST_MASK); other types are -EINVAL.
fn vm_assist(cmd: u64, kind: u64, domain: &Domain) -> HcResult {
    use pv_abi::hypercall::{
        VMASST_CMD_DISABLE, VMASST_CMD_ENABLE, VMASST_TYPE_RUNSTATE_UPDATE_FLAG,
    };
    // Xen's do_vm_assist takes `unsigned int`s.
    let (cmd, kind) = (cmd as u32, kind as u32);
    if kind != VMASST_TYPE_RUNSTATE_UPDATE_FLAG {
        return Err(Errno::Inval);
    }
    let on = match cmd {
        VMASST_CMD_ENABLE => true,
        VMASST_CMD_DISABLE => false,
        _ => return Err(Errno::NoSys),
    };
    domain.runstate_update_flag.store(on, Ordering::Relaxed);
    Ok(0)
}

use pv_abi::DOMID_SELF;

/// What the dispatcher needs of the calling vCPU.
struct Caller<'a> {
    domain: &'a Arc<Domain>,
    vcpu: usize,
    slot: &'a mut VcpuSlot,
}

impl Caller<'_> {
    fn read<T: FromBytes + IntoBytes>(&self, gva: u64) -> Result<T, Errno> {
        let paging = self.slot.cpu.paging();
        Ok(self
            .domain
            .with_guest(paging, |g| g.read_obj::<T>(Gva(gva)))?)
    }

    fn write<T: IntoBytes + Immutable + ?Sized>(&self, gva: u64, value: &T) -> Result<(), Errno> {
        let paging = self.slot.cpu.paging();
        Ok(self
            .domain
            .with_guest(paging, |g| g.write_obj(Gva(gva), value))?)
    }

    fn read_bytes(&self, gva: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let paging = self.slot.cpu.paging();
        Ok(self.domain.with_guest(paging, |g| g.read(Gva(gva), buf))?)
    }

    /// The domain a `domid` argument names, with Xen's permission rule: a
    /// domain may name itself; only a privileged domain may name others.
    fn target(&self, domid: u16) -> Result<Arc<Domain>, Errno> {
        if domid == DOMID_SELF || domid == self.domain.id {
            return Ok(self.domain.clone());
        }
        let other = registry::lookup(domid as DomId).ok_or(Errno::Srch)?;
        if !self.domain.privileged {
            return Err(Errno::Perm);
        }
        Ok(other)
    }
}

pub fn dispatch(domain: &Arc<Domain>, vcpu: usize, slot: &mut VcpuSlot) -> Next {
    let nr = slot.cpu.rax();
    let r: GuestRegs = *slot.cpu.regs();
    // 64-bit guests pass arguments in rdi, rsi, rdx, r10, r8; 32-bit ones
    // in ebx, ecx, edx, esi, edi (and read a 32-bit result).
    const EFER_LMA: u64 = 1 << 10;
    let long_mode = slot.cpu.paging().efer & EFER_LMA != 0;
    let args = if long_mode {
        [r.rdi, r.rsi, r.rdx, r.r10, r.r8]
    } else {
        [r.rbx, r.rcx, r.rdx, r.rsi, r.rdi].map(|a| a & 0xffff_ffff)
    };
    let nr = if long_mode { nr } else { nr & 0xffff_ffff };
    if slot.cpu.cpl() != 0 {
        slot.cpu.set_rax(-(Errno::Perm as i64) as u64);
        return Next::Continue;
    }
    let mut caller = Caller { domain, vcpu, slot };
    let mut next = Next::Continue;
    let value = call(&mut caller, nr, args, &mut next, long_mode);
    caller.slot.cpu.set_rax(value as u64);
    next
}

/// Runs hypercall `nr` with `args` for the caller; its return value.
fn call(caller: &mut Caller, nr: u64, args: [u64; 5], next: &mut Next, long_mode: bool) -> i64 {
    call_in(caller, nr, args, next, Some(long_mode))
}

/// [`call`], with `multicall_layout` `Some(long_mode)` outside a
/// multicall (where one may run) and `None` inside one.
fn call_in(
    caller: &mut Caller,
    nr: u64,
    args: [u64; 5],
    next: &mut Next,
    multicall_layout: Option<bool>,
) -> i64 {
    let (domain, vcpu) = (caller.domain, caller.vcpu);
    let result = match nr {
        nr::MULTICALL => match multicall_layout {
            Some(long_mode) => multicall(caller, args[0], args[1], next, long_mode),
            // Xen: "Multicall reentry is disallowed".
            None => Err(Errno::Inval),
        },
        nr::XEN_VERSION => xen_version(caller, args[0], args[1]),
        nr::CONSOLE_IO => console_io(caller, args[0], args[1], args[2]),
        nr::SCHED_OP => sched_op(caller, args[0], args[1], next),
        nr::MEMORY_OP => memory::memory_op(caller, args[0], args[1]),
        nr::HVM_OP => hvm::hvm_op(caller, args[0], args[1]),
        nr::VCPU_OP => vcpu_op(caller, args[0], args[1], args[2]),
        nr::EVENT_CHANNEL_OP => event_channel_op(caller, args[0], args[1]),
        nr::GRANT_TABLE_OP => grant_table::grant_table_op(caller, args[0], args[1], args[2]),
        pv_abi::physdev::HYPERVISOR_PHYSDEV_OP => physdev::physdev_op(caller, args[0], args[1]),
        nr::VM_ASSIST => vm_assist(args[0], args[1], domain),
        nr::SYSCTL => sysctl::sysctl_op(caller, args[0]),
        nr::DOMCTL => domctl::domctl_op(caller, args[0]),
        nr::SET_TIMER_OP => {
            events::set_timer(domain, vcpu, args[0]);
            Ok(0)
        }
        _ => Err(Errno::NoSys),
    };
    match result {
        Ok(v) => v,
        Err(e) => -(e as i64),
    }
}

/// Xen's `multicall_entry_t` sizes: 64-bit (op, result, six args, each 8
/// bytes) and the 32-bit compat one (each 4 bytes).
const MULTICALL_ENTRY_64: u64 = 64;
const MULTICALL_ENTRY_32: u64 = 32;

/// `HYPERVISOR_multicall(call_list, nr_calls)`: the calls of a batch one
/// after another in one exit, each entry read once and its result
/// written back into it, as Xen's `do_multicall`. A multicall inside is
/// refused (-EINVAL in its result); an entry that cannot be read or
/// written back ends the batch with -EFAULT.
fn multicall(c: &mut Caller, list: u64, count: u64, next: &mut Next, long_mode: bool) -> HcResult {
    // `unsigned int nr_calls`.
    let count = count & 0xffff_ffff;
    let size = if long_mode {
        MULTICALL_ENTRY_64
    } else {
        MULTICALL_ENTRY_32
    };
    for i in 0..count {
        let at = list.wrapping_add(i.wrapping_mul(size));
        let (op, args) = if long_mode {
            let e: pv_abi::hypercall::MulticallEntry = c.read(at)?;
            (
                e.op,
                [e.args[0], e.args[1], e.args[2], e.args[3], e.args[4]],
            )
        } else {
            let e: [u32; 8] = c.read(at)?;
            (e[0] as u64, [e[2], e[3], e[4], e[5], e[6]].map(u64::from))
        };
        let result = call_in(c, op, args, next, None);
        if long_mode {
            c.write(at.wrapping_add(8), &result)?;
        } else {
            c.write(at.wrapping_add(4), &(result as i32))?;
        }
        // A yield or block takes effect after the batch (Xen preempts
        // the multicall there and runs the rest when the vCPU is back);
        // one that stops the vCPU ends it.
        if matches!(next, Next::Stop) {
            break;
        }
    }
    Ok(0)
}

/// `xen_version`, every subop of Xen's public/version.h, with Xen's
/// default XSM rules: the command line and the build id are the
/// privileged domain's (-EPERM for others); an unknown subop is -ENOSYS.
fn xen_version(c: &Caller, cmd: u64, arg: u64) -> HcResult {
    const VERSION: u64 = 0;
    const EXTRAVERSION: u64 = 1;
    const COMPILE_INFO: u64 = 2;
    const CAPABILITIES: u64 = 3;
    const CHANGESET: u64 = 4;
    const PLATFORM_PARAMETERS: u64 = 5;
    const GET_FEATURES: u64 = 6;
    const PAGESIZE: u64 = 7;
    const GUEST_HANDLE: u64 = 8;
    const COMMANDLINE: u64 = 9;
    const BUILD_ID: u64 = 10;
    const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 1 << 2;
    const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 1 << 8;
    const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 1 << 9;
    /// `xen_capabilities_info_t`, `xen_commandline_t`.
    const LONG_TEXT: usize = 1024;
    /// What a 64-bit PVH guest can be here (Xen lists every guest type it
    /// can run; Pavise runs 64-bit PVH only).
    const CAPABILITIES_TEXT: &[u8] = b"hvm-3.0-x86_64";
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct FeatureInfo {
        submap_idx: u32,
        submap: u32,
    }
    /// `xen_compile_info_t`.
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct CompileInfo {
        compiler: [u8; 64],
        compile_by: [u8; 16],
        compile_domain: [u8; 32],
        compile_date: [u8; 32],
    }
    fn text<const N: usize>(s: &[u8]) -> [u8; N] {
        let mut out = [0u8; N];
        let n = s.len().min(N - 1);
        out[..n].copy_from_slice(&s[..n]);
        out
    }
    match cmd {
        VERSION => Ok(((XEN_VERSION_MAJOR << 16) | XEN_VERSION_MINOR) as i64),
        EXTRAVERSION => {
            c.write(arg, &text::<16>(b"-pavise"))?;
            Ok(0)
        }
        COMPILE_INFO => {
            let info = CompileInfo {
                compiler: text(b"rustc"),
                compile_by: text(b"pavise"),
                compile_domain: [0; 32],
                compile_date: [0; 32],
            };
            c.write(arg, &info)?;
            Ok(0)
        }
        CAPABILITIES => {
            c.write(arg, &text::<LONG_TEXT>(CAPABILITIES_TEXT))?;
            Ok(0)
        }
        CHANGESET => {
            c.write(arg, &text::<64>(b"unavailable"))?;
            Ok(0)
        }
        PLATFORM_PARAMETERS => {
            // `virt_start`: where a PV guest's hypervisor hole begins; 0
            // for HVM and PVH guests (Xen 4.17).
            c.write(arg, &0u64)?;
            Ok(0)
        }
        GET_FEATURES => {
            let mut info: FeatureInfo = c.read(arg)?;
            info.submap = if info.submap_idx == 0 {
                XENFEAT_AUTO_TRANSLATED_PHYSMAP
                    | XENFEAT_HVM_CALLBACK_VECTOR
                    | XENFEAT_HVM_SAFE_PVCLOCK
            } else {
                0
            };
            c.write(arg, &info)?;
            Ok(0)
        }
        PAGESIZE => Ok(4096),
        GUEST_HANDLE => {
            // The domain's handle (UUID) as the toolstack set it: no
            // toolstack here sets one, so it is all zeros, as Xen's is then.
            c.write(arg, &[0u8; 16])?;
            Ok(0)
        }
        // Xen's dummy XSM denies a DomU both: the command line then reads
        // "<denied>" (Xen's xen_deny(), with its NUL: 9 bytes are written),
        // the build id is -EPERM.
        COMMANDLINE if !c.domain.privileged => {
            c.write(arg, b"<denied>\0")?;
            Ok(0)
        }
        BUILD_ID if !c.domain.privileged => Err(Errno::Perm),
        COMMANDLINE => {
            c.write(arg, &text::<LONG_TEXT>(crate::cmdline::saved().as_bytes()))?;
            Ok(0)
        }
        // The image carries no build-id note (Xen's answer then).
        BUILD_ID => Err(Errno::NoData),
        _ => Err(Errno::NoSys),
    }
}

fn console_io(c: &Caller, cmd: u64, count: u64, buf: u64) -> HcResult {
    const WRITE: u64 = 0;
    const READ: u64 = 1;
    const CHUNK: usize = 256;
    /// One call prints at most this much: a guest cannot hold a CPU with
    /// megabytes of console output.
    const MAX_WRITE: u64 = 64 << 10;
    match cmd {
        WRITE => {
            if count > MAX_WRITE {
                return Err(Errno::TooBig);
            }
            let mut done = 0u64;
            let mut chunk = [0u8; CHUNK];
            while done < count {
                let n = (count - done).min(CHUNK as u64) as usize;
                c.read_bytes(buf.wrapping_add(done), &mut chunk[..n])?;
                c.domain.console_write(&chunk[..n]);
                done += n as u64;
            }
            Ok(0)
        }
        READ => {
            if !c.domain.privileged {
                return Err(Errno::Perm);
            }
            let mut chunk = [0u8; CHUNK];
            let n = crate::console::read_available(&mut chunk[..count.min(CHUNK as u64) as usize]);
            events::console_input_taken();
            c.write(buf, &chunk[..n])?;
            Ok(n as i64)
        }
        _ => Err(Errno::NoSys),
    }
}

fn sched_op(c: &Caller, cmd: u64, arg: u64, next: &mut Next) -> HcResult {
    const YIELD: u64 = 0;
    const BLOCK: u64 = 1;
    const SHUTDOWN: u64 = 2;
    const POLL: u64 = 3;
    match cmd {
        YIELD => {
            *next = Next::Yield;
            Ok(0)
        }
        BLOCK => {
            // Like Xen: blocking with an event already pending returns at once.
            if !events::upcall_pending(c.domain, c.vcpu) {
                *next = Next::Block;
            }
            Ok(0)
        }
        POLL => {
            #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
            #[repr(C)]
            struct SchedPoll {
                ports: u64,
                nr_ports: u32,
                pad: u32,
                timeout: u64,
            }
            const MAX_POLL_PORTS: u32 = 128;
            let poll: SchedPoll = c.read(arg)?;
            if poll.nr_ports > MAX_POLL_PORTS {
                return Err(Errno::Inval);
            }
            let mut ports = alloc::vec![0u32; poll.nr_ports as usize];
            c.read_bytes(poll.ports, ports.as_mut_bytes())?;
            if poll.nr_ports == 0 || events::any_pending(c.domain, &ports) {
                return Ok(0);
            }
            if poll.timeout != 0 && poll.timeout <= crate::arch::time::system_time_ns() {
                return Ok(0);
            }
            // Say which ports wake us, then look again: an event that came
            // in between must not be slept through.
            *c.domain.poll_ports[c.vcpu].lock() = ports;
            if events::poll_satisfied(c.domain, c.vcpu) {
                c.domain.poll_ports[c.vcpu].lock().clear();
                return Ok(0);
            }
            events::set_poll_deadline(c.domain, c.vcpu, poll.timeout);
            *next = Next::Block;
            Ok(0)
        }
        SHUTDOWN => {
            // Xen's domain_shutdown takes the reason as a u8 and ends the
            // domain whatever it is.
            let reason: u32 = c.read(arg)?;
            let reason = match reason as u8 {
                0 => EndReason::Poweroff,
                1 => EndReason::Reboot,
                2 => EndReason::Suspend,
                3 => EndReason::Crash(alloc::string::String::from("the guest reported a crash")),
                4 => EndReason::Watchdog,
                code => EndReason::Code(code),
            };
            c.domain.end(reason);
            *next = Next::Stop;
            Ok(0)
        }
        _ => Err(Errno::NoSys),
    }
}

fn vcpu_op(c: &mut Caller, cmd: u64, vcpuid: u64, arg: u64) -> HcResult {
    const INITIALISE: u64 = 0;
    const UP: u64 = 1;
    const IS_UP: u64 = 3;
    const SET_SINGLESHOT_TIMER: u64 = 8;
    const STOP_SINGLESHOT_TIMER: u64 = 9;
    const REGISTER_VCPU_INFO: u64 = 10;
    const GET_RUNSTATE_INFO: u64 = 4;
    const REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
    const VCPU_HVM_MODE_64B: u32 = 1;
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct HvmContext64 {
        mode: u32,
        pad: u32,
        rax: u64,
        rcx: u64,
        rdx: u64,
        rbx: u64,
        rsp: u64,
        rbp: u64,
        rsi: u64,
        rdi: u64,
        rip: u64,
        rflags: u64,
        cr0: u64,
        cr3: u64,
        cr4: u64,
        efer: u64,
    }
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct RegisterVcpuInfo {
        mfn: u64,
        offset: u32,
        rsvd: u32,
    }
    let count = c.domain.vcpus.len() as u64;
    if vcpuid >= count {
        return Err(Errno::NoEnt);
    }
    let id = vcpuid as usize;
    let state = c.domain.vcpu_states[id].load(Ordering::SeqCst);
    match cmd {
        IS_UP => Ok((state != vcpu_state::DOWN) as i64),
        UP => {
            if id == c.vcpu || state != vcpu_state::DOWN {
                return Ok(0);
            }
            if !c.domain.vcpus[id].lock().initialised {
                return Err(Errno::Inval);
            }
            sched::start(c.domain, id);
            Ok(0)
        }
        INITIALISE => {
            if id == c.vcpu || state != vcpu_state::DOWN {
                return Err(Errno::Exist);
            }
            let ctx: HvmContext64 = c.read(arg)?;
            if ctx.mode != VCPU_HVM_MODE_64B {
                return Err(Errno::Inval);
            }
            let regs = GuestRegs {
                rbx: ctx.rbx,
                rcx: ctx.rcx,
                rdx: ctx.rdx,
                rsi: ctx.rsi,
                rdi: ctx.rdi,
                rbp: ctx.rbp,
                ..Default::default()
            };
            let mut target = c.domain.vcpus[id].lock();
            if target.initialised {
                return Err(Errno::Exist);
            }
            target.cpu.reset(StartState::Long64 {
                rip: ctx.rip,
                rsp: ctx.rsp,
                cr0: ctx.cr0,
                cr3: ctx.cr3,
                cr4: ctx.cr4,
                efer: ctx.efer,
                regs,
                rax: ctx.rax,
                rflags: ctx.rflags,
            });
            target.initialised = true;
            Ok(0)
        }
        REGISTER_VCPU_INFO => {
            let info: RegisterVcpuInfo = c.read(arg)?;
            let backed = c.domain.memory.lock().p2m.get(Gfn(info.mfn)).is_some();
            if !backed || info.offset as u64 + 64 > 4096 || !info.offset.is_multiple_of(8) {
                return Err(Errno::Inval);
            }
            // Once registered it stays (as in Xen).
            let at = &c.domain.vcpu_info_at[id];
            if at.load(Ordering::SeqCst) != registry::VCPU_INFO_DEFAULT {
                return Err(Errno::Inval);
            }
            at.store((info.mfn << 12) | info.offset as u64, Ordering::SeqCst);
            events::refresh_time(c.domain, id);
            Ok(0)
        }
        SET_SINGLESHOT_TIMER => {
            #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
            #[repr(C)]
            struct SingleshotTimer {
                timeout_abs_ns: u64,
                flags: u32,
                pad: u32,
            }
            const VCPU_SSHOTTMR_FUTURE: u32 = 1;
            let t: SingleshotTimer = c.read(arg)?;
            if id != c.vcpu {
                return Err(Errno::Inval);
            }
            if t.flags & VCPU_SSHOTTMR_FUTURE != 0
                && t.timeout_abs_ns < crate::arch::time::system_time_ns()
            {
                return Err(Errno::Time);
            }
            events::set_timer(c.domain, id, t.timeout_abs_ns.max(1));
            Ok(0)
        }
        STOP_SINGLESHOT_TIMER => {
            events::set_timer(c.domain, id, 0);
            Ok(0)
        }
        GET_RUNSTATE_INFO => {
            let info = c.domain.runstates[id].lock().info;
            c.write(arg, &info)?;
            Ok(0)
        }
        REGISTER_RUNSTATE_MEMORY_AREA => {
            use pv_abi::hypercall::{VcpuRegisterRunstateMemoryArea, VcpuRunstateInfo};
            let area: VcpuRegisterRunstateMemoryArea = c.read(arg)?;
            // Xen checks the handle is a valid guest address once, here.
            if area.addr != 0 {
                let _: VcpuRunstateInfo = c.read(area.addr).map_err(|_| Errno::Fault)?;
            }
            c.domain.runstates[id].lock().area = area.addr;
            if id == c.vcpu {
                crate::domain::runstate::switch(
                    c.domain,
                    id,
                    c.slot.cpu.paging(),
                    crate::domain::runstate::State::Running,
                );
            }
            Ok(0)
        }
        _ => Err(Errno::NoSys),
    }
}

fn event_channel_op(c: &Caller, cmd: u64, arg: u64) -> HcResult {
    const BIND_INTERDOMAIN: u64 = 0;
    const BIND_VIRQ: u64 = 1;
    const BIND_PIRQ: u64 = 2;
    const CLOSE: u64 = 3;
    const SEND: u64 = 4;
    const STATUS: u64 = 5;
    const ALLOC_UNBOUND: u64 = 6;
    const BIND_IPI: u64 = 7;
    const BIND_VCPU: u64 = 8;
    const UNMASK: u64 = 9;
    const RESET: u64 = 10;
    const SET_PRIORITY: u64 = 13;
    const RESET_CONT: u64 = 14;
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct AllocUnbound {
        dom: u16,
        remote_dom: u16,
        port: u32,
    }
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct BindInterdomain {
        remote_dom: u16,
        pad: u16,
        remote_port: u32,
        local_port: u32,
    }
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct BindVirq {
        virq: u32,
        vcpu: u32,
        port: u32,
    }
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct PortAndVcpu {
        port: u32,
        vcpu: u32,
    }
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct Status {
        dom: u16,
        pad: u16,
        port: u32,
        status: u32,
        vcpu: u32,
        u0: u32,
        u1: u32,
    }
    let me = c.domain.id;
    match cmd {
        ALLOC_UNBOUND => {
            let mut op: AllocUnbound = c.read(arg)?;
            op.port = events::CHANNELS
                .lock()
                .alloc_unbound(me, op.dom, op.remote_dom)?;
            c.write(arg, &op).inspect_err(|_| {
                let _ = events::CHANNELS.lock().close(me, op.port);
            })?;
            Ok(0)
        }
        BIND_INTERDOMAIN => {
            let mut op: BindInterdomain = c.read(arg)?;
            let (port, vcpu) = {
                let mut channels = events::CHANNELS.lock();
                let port = channels.bind_interdomain(me, op.remote_dom, op.remote_port)?;
                (port, channels.status(me, me, port)?.vcpu)
            };
            // As Xen: the remote end may have sent on its unbound port,
            // and nobody heard it — the new local port starts pending.
            events::deliver_from(
                c.domain,
                evtchn::Delivery {
                    domain: me,
                    port,
                    vcpu,
                },
            );
            op.local_port = port;
            c.write(arg, &op)?;
            Ok(0)
        }
        BIND_VIRQ => {
            let mut op: BindVirq = c.read(arg)?;
            op.port = events::CHANNELS.lock().bind_virq(me, op.virq, op.vcpu)?;
            c.write(arg, &op)?;
            Ok(0)
        }
        BIND_IPI => {
            // evtchn_bind_ipi puts the vCPU first (unlike evtchn_bind_vcpu).
            let mut op: pv_abi::event_channel::EvtchnBindIpi = c.read(arg)?;
            op.port = events::CHANNELS.lock().bind_ipi(me, op.vcpu)?;
            c.write(arg, &op)?;
            Ok(0)
        }
        BIND_PIRQ => {
            let mut op: pv_abi::event_channel::EvtchnBindPirq = c.read(arg)?;
            let nr_pirqs = if c.domain.privileged {
                if !crate::domain::devices::is_mapped(op.pirq) {
                    return Err(Errno::Inval);
                }
                u32::MAX
            } else {
                // Xen's `nr_pirqs` of a DomU: the GSIs plus
                // `extra_domU_pirqs` (32).
                crate::arch::ioapic::gsi_count() + 32
            };
            op.port = events::CHANNELS.lock().bind_pirq(me, op.pirq, nr_pirqs)?;
            c.write(arg, &op)?;
            if c.domain.privileged {
                crate::domain::devices::bound(op.pirq);
            }
            Ok(0)
        }
        CLOSE => {
            let port: u32 = c.read(arg)?;
            let mut channels = events::CHANNELS.lock();
            let pirq = match channels.status(me, DOMID_SELF, port).map(|s| s.binding) {
                Ok(Binding::Pirq { pirq }) => Some(pirq),
                _ => None,
            };
            channels.close(me, port)?;
            drop(channels);
            events::clear_pending(c.domain, port);
            if let Some(pirq) = pirq {
                crate::domain::devices::unbound(pirq);
            }
            Ok(0)
        }
        RESET | RESET_CONT => {
            // struct evtchn_reset { domid_t dom; }: the caller itself, or
            // (the toolstack) a domain it has paused.
            let dom: u16 = c.read(arg)?;
            let target = c.target(dom)?;
            if !Arc::ptr_eq(&target, c.domain) && !target.is_paused() {
                return Err(Errno::Inval);
            }
            let closed = events::CHANNELS.lock().reset(target.id)?;
            for (port, binding) in closed {
                events::clear_pending(&target, port);
                if let Binding::Pirq { pirq } = binding {
                    crate::domain::devices::unbound(pirq);
                }
            }
            Ok(0)
        }
        SET_PRIORITY => {
            // struct evtchn_set_priority { uint32_t port, priority; }:
            // priorities are the FIFO ABI's; with the 2-level ABI (the
            // only one here: EVTCHNOP_init_control is not offered) Xen
            // answers -ENOSYS for a valid port, -EINVAL for another.
            let op: PortAndVcpu = c.read(arg)?;
            events::CHANNELS.lock().status(me, DOMID_SELF, op.port)?;
            Err(Errno::NoSys)
        }
        SEND => {
            let port: u32 = c.read(arg)?;
            let delivery = events::CHANNELS.lock().send(me, port)?;
            if let Some(d) = delivery {
                events::deliver_from(c.domain, d);
            }
            Ok(0)
        }
        STATUS => {
            let mut op: Status = c.read(arg)?;
            let st = events::CHANNELS.lock().status(me, op.dom, op.port)?;
            op.vcpu = st.vcpu;
            (op.status, op.u0, op.u1) = match st.binding {
                Binding::Free => (0, 0, 0),
                Binding::Unbound { remote } => (1, remote as u32, 0),
                Binding::Interdomain {
                    remote,
                    remote_port,
                } => (2, remote as u32, remote_port),
                Binding::Virq { virq } => (4, virq, 0),
                Binding::Pirq { pirq } => (3, pirq, 0),
                Binding::Ipi => (5, 0, 0),
            };
            c.write(arg, &op)?;
            Ok(0)
        }
        BIND_VCPU => {
            let op: PortAndVcpu = c.read(arg)?;
            events::CHANNELS.lock().bind_vcpu(me, op.port, op.vcpu)?;
            Ok(0)
        }
        UNMASK => {
            let port: u32 = c.read(arg)?;
            events::unmask(c.domain, port)?;
            Ok(0)
        }
        _ => Err(Errno::NoSys),
    }
}
