//! Finding the hypervisor (CPUID leaves 0x40000000+), installing the
//! hypercall page, and typed wrappers around Xen's hypercalls.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// A Xen errno (positive number; hypercalls return its negation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i64);

pub const EPERM: Errno = Errno(1);
pub const ENOENT: Errno = Errno(2);
pub const ESRCH: Errno = Errno(3);
pub const E2BIG: Errno = Errno(7);
pub const EFAULT: Errno = Errno(14);
pub const EEXIST: Errno = Errno(17);
pub const EINVAL: Errno = Errno(22);
pub const ENOSYS: Errno = Errno(38);

pub type Result<T> = core::result::Result<T, Errno>;

pub mod nr {
    pub const MEMORY_OP: u64 = 12;
    pub const SET_TIMER_OP: u64 = 15;
    pub const XEN_VERSION: u64 = 17;
    pub const CONSOLE_IO: u64 = 18;
    pub const GRANT_TABLE_OP: u64 = 20;
    pub const VCPU_OP: u64 = 24;
    pub const SCHED_OP: u64 = 29;
    pub const EVENT_CHANNEL_OP: u64 = 32;
    pub const HVM_OP: u64 = 34;
    pub const DOMCTL: u64 = 36;
}

pub use pv_abi::DOMID_SELF;

#[repr(C, align(4096))]
struct Page([u8; 4096]);

static mut HYPERCALL_PAGE: Page = Page([0; 4096]);
static AVAILABLE: AtomicBool = AtomicBool::new(false);
static DOMID: AtomicU32 = AtomicU32::new(u32::MAX);

fn cpuid(leaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid(leaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Looks for Xen's CPUID signature and installs the hypercall page.
/// Returns false when running without a hypervisor.
pub fn init() -> bool {
    const SIGNATURE: [u32; 3] = [0x566e_6558, 0x6558_4d4d, 0x4d4d_566e];
    let mut base = 0x4000_0000;
    while base < 0x4001_0000 {
        let [max, b, c, d] = cpuid(base);
        if [b, c, d] == SIGNATURE && max >= base + 2 {
            let [_, msr, _, _] = cpuid(base + 2);
            let page = &raw mut HYPERCALL_PAGE as u64;
            // SAFETY: the MSR named by CPUID installs the hypercall page at
            // the given guest-physical address (identity-mapped here).
            unsafe {
                core::arch::asm!("wrmsr", in("ecx") msr, in("eax") page as u32, in("edx") (page >> 32) as u32)
            };
            if max >= base + 4 {
                let [flags, _, domid, _] = cpuid(base + 4);
                if flags & (1 << 4) != 0 {
                    DOMID.store(domid, Ordering::SeqCst);
                }
            }
            AVAILABLE.store(true, Ordering::SeqCst);
            return true;
        }
        base += 0x100;
    }
    false
}

pub fn available() -> bool {
    AVAILABLE.load(Ordering::SeqCst)
}

/// Our domain id, from CPUID leaf base+4 (None when not advertised).
pub fn domid() -> Option<u32> {
    Some(DOMID.load(Ordering::SeqCst)).filter(|&d| d != u32::MAX)
}

/// Raw hypercall through the page: returns rax as the hypervisor set it.
///
/// # Safety
/// Pointer arguments must be what the hypercall expects (or deliberately
/// bad, for hostile tests: the hypervisor must cope).
pub unsafe fn raw(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    if !available() || nr >= 128 {
        return -ENOSYS.0;
    }
    let stub = &raw const HYPERCALL_PAGE as u64 + nr * 32;
    let ret: i64;
    // SAFETY: the stub is `mov eax, nr; vmmcall; ret`, written by the
    // hypervisor; arguments follow Xen's 64-bit convention.
    unsafe {
        core::arch::asm!(
            "call {stub}",
            stub = in(reg) stub,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("rax") ret,
        )
    };
    ret
}

fn result(ret: i64) -> Result<u64> {
    if ret < 0 {
        Err(Errno(-ret))
    } else {
        Ok(ret as u64)
    }
}

fn call(nr: u64, a1: u64, a2: u64, a3: u64) -> Result<u64> {
    // SAFETY: the wrappers below pass pointers to live local values.
    result(unsafe { raw(nr, a1, a2, a3, 0, 0) })
}

fn ptr<T>(v: &T) -> u64 {
    v as *const T as u64
}

pub fn xen_version() -> Result<(u32, u32)> {
    let v = call(nr::XEN_VERSION, 0, 0, 0)?;
    Ok(((v >> 16) as u32, (v & 0xffff) as u32))
}

pub fn xen_extraversion() -> Result<[u8; 16]> {
    let buf = [0u8; 16];
    call(nr::XEN_VERSION, 1, ptr(&buf), 0)?;
    Ok(buf)
}

/// XENVER_get_features submap `index`.
pub fn xen_features(index: u32) -> Result<u32> {
    let info = [index, 0u32];
    call(nr::XEN_VERSION, 6, ptr(&info), 0)?;
    Ok(info[1])
}

pub fn console_write(bytes: &[u8]) -> Result<u64> {
    call(nr::CONSOLE_IO, 0, bytes.len() as u64, bytes.as_ptr() as u64)
}

/// CONSOLEIO_read (privileged domains): serial input waiting, if any.
pub fn console_read(buf: &mut [u8]) -> Result<usize> {
    call(nr::CONSOLE_IO, 1, buf.len() as u64, buf.as_mut_ptr() as u64).map(|n| n as usize)
}

pub fn sched_yield() -> Result<u64> {
    call(nr::SCHED_OP, 0, 0, 0)
}

pub fn sched_block() -> Result<u64> {
    call(nr::SCHED_OP, 1, 0, 0)
}

pub fn sched_shutdown(reason: u32) -> Result<u64> {
    call(nr::SCHED_OP, 2, ptr(&reason), 0)
}

/// HVMOP_get_param for our own domain.
pub fn hvm_get_param(index: u32) -> Result<u64> {
    hvm_get_param_of(DOMID_SELF, index)
}

/// HVMOP_get_param for domain `domid` (another domain: privileged only).
pub fn hvm_get_param_of(domid: u16, index: u32) -> Result<u64> {
    #[repr(C)]
    struct Param {
        domid: u16,
        pad: u16,
        index: u32,
        value: u64,
    }
    let p = Param {
        domid,
        pad: 0,
        index,
        value: 0,
    };
    call(nr::HVM_OP, 1, ptr(&p), 0)?;
    // SAFETY: the hypervisor wrote `value` through the pointer.
    Ok(unsafe { core::ptr::read_volatile(&p.value) })
}

/// The 64-bit register state for VCPUOP_initialise (`vcpu_hvm_context`).
#[repr(C)]
#[derive(Default)]
pub struct VcpuContext64 {
    pub mode: u32,
    pub pad: u32,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbx: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rip: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

pub fn vcpu_initialise(vcpu: u32, ctx: &VcpuContext64) -> Result<u64> {
    call(nr::VCPU_OP, 0, vcpu as u64, ptr(ctx))
}

pub fn vcpu_up(vcpu: u32) -> Result<u64> {
    call(nr::VCPU_OP, 1, vcpu as u64, 0)
}

pub fn vcpu_is_up(vcpu: u32) -> Result<u64> {
    call(nr::VCPU_OP, 3, vcpu as u64, 0)
}

/// Starts secondary vCPU `vcpu` in 64-bit mode on our page tables, running
/// `entry` on the stack that ends at `stack_top`.
pub fn start_secondary_vcpu(vcpu: u32, entry: extern "C" fn() -> !, stack_top: u64) -> Result<()> {
    let (cr0, cr3, cr4): (u64, u64, u64);
    // SAFETY: reading control registers in ring 0 has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr0", out(reg) cr0);
        core::arch::asm!("mov {}, cr3", out(reg) cr3);
        core::arch::asm!("mov {}, cr4", out(reg) cr4);
    }
    let (lo, hi): (u32, u32);
    // SAFETY: EFER is readable (the hypervisor emulates it).
    unsafe { core::arch::asm!("rdmsr", in("ecx") 0xc000_0080u32, out("eax") lo, out("edx") hi) };
    let ctx = VcpuContext64 {
        mode: 1,
        rip: entry as *const () as u64,
        // As if called: the return-address slot is below the top.
        rsp: (stack_top & !0xf) - 8,
        rflags: 0x2,
        cr0,
        cr3,
        cr4,
        efer: (hi as u64) << 32 | lo as u64,
        ..Default::default()
    };
    vcpu_initialise(vcpu, &ctx)?;
    vcpu_up(vcpu)?;
    Ok(())
}

pub mod hvm_param {
    pub const CALLBACK_IRQ: u32 = 0;
    pub const STORE_PFN: u32 = 1;
    pub const STORE_EVTCHN: u32 = 2;
    pub const CONSOLE_PFN: u32 = 17;
    pub const CONSOLE_EVTCHN: u32 = 18;
}

/// XENMEM_add_to_physmap(XENMAPSPACE_shared_info) at `gpfn`.
pub fn map_shared_info(gpfn: u64) -> Result<u64> {
    use pv_abi::memory::{AddToPhysmap, XENMAPSPACE_SHARED_INFO, XENMEM_ADD_TO_PHYSMAP};
    let req = AddToPhysmap {
        domid: DOMID_SELF,
        space: XENMAPSPACE_SHARED_INFO,
        gpfn,
        ..Default::default()
    };
    call(nr::MEMORY_OP, XENMEM_ADD_TO_PHYSMAP, ptr(&req), 0)
}

/// Maps `foreign_domid`'s page `gfn` at our `gpfn` (privileged domains):
/// XENMEM_add_to_physmap_batch with XENMAPSPACE_gmfn_foreign.
pub fn map_foreign_page(foreign_domid: u16, gfn: u64, gpfn: u64) -> Result<()> {
    use pv_abi::memory::{
        AddToPhysmapBatch, XENMAPSPACE_GMFN_FOREIGN, XENMEM_ADD_TO_PHYSMAP_BATCH,
    };
    let (idx, target, err) = (gfn, gpfn, 0i32);
    let req = AddToPhysmapBatch {
        domid: DOMID_SELF,
        space: XENMAPSPACE_GMFN_FOREIGN,
        size: 1,
        foreign_domid,
        idxs: ptr(&idx),
        gpfns: ptr(&target),
        errs: ptr(&err),
    };
    call(nr::MEMORY_OP, XENMEM_ADD_TO_PHYSMAP_BATCH, ptr(&req), 0)?;
    // SAFETY: the hypervisor wrote the per-page status through the pointer.
    let err = unsafe { core::ptr::read_volatile(&err) };
    if err < 0 {
        Err(Errno(-err as i64))
    } else {
        Ok(())
    }
}

/// EVTCHNOP_bind_interdomain: our new port connected to `remote_port`.
pub fn evtchn_bind_interdomain(remote_dom: u16, remote_port: u32) -> Result<u32> {
    let op = [remote_dom as u32, remote_port, 0];
    call(nr::EVENT_CHANNEL_OP, 0, ptr(&op), 0)?;
    // SAFETY: the hypervisor wrote the local port through the pointer.
    Ok(unsafe { core::ptr::read_volatile(&op[2]) })
}

/// EVTCHNOP_send.
pub fn evtchn_send(port: u32) -> Result<u64> {
    call(nr::EVENT_CHANNEL_OP, 4, ptr(&port), 0)
}
