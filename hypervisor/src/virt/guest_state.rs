//! Guest state neither SVM nor VMX switches on a world switch, kept the
//! same way by both backends: the FPU/SSE/AVX image (XSAVE, with the
//! guest's own XCR0) and the breakpoint registers DR0-DR3.

use spin::Once;
use x86_64::registers::control::{Cr4, Cr4Flags};

use super::VirtError;
use crate::mm::frame::{FRAME_SIZE, Frame};
use crate::mm::{self};

/// DR7's L0-L3/G0-G3 bits: a breakpoint is armed.
pub const DR7_ENABLES: u64 = 0xff;
/// DR6 and DR7 as the CPU leaves them at reset.
pub const DR6_INIT: u64 = 0xffff_0ff0;
pub const DR7_INIT: u64 = 0x400;

/// The XSAVE components switched for guests (0: no XSAVE on this CPU).
static SWITCHED: Once<u64> = Once::new();

/// The XSAVE components Pavise saves and restores for guests: x87, SSE,
/// AVX and the AVX-512 trio where the CPU has them, as long as the whole
/// image fits the one-page save area. (PKRU and the supervisor and AMX
/// components are not switched, so CPUID does not offer them.)
fn switched_xsave_components() -> u64 {
    const X87_SSE: u64 = 0b11;
    const AVX: u64 = 1 << 2;
    const AVX512: u64 = 0b111 << 5;
    let cpuid = |leaf, sub| core::arch::x86_64::__cpuid_count(leaf, sub);
    if cpuid(1, 0).ecx & (1 << 26) == 0 {
        return 0;
    }
    let host = cpuid(0xd, 0).eax as u64;
    let end_of = |mask: u64| {
        (2..8)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| {
                let c = cpuid(0xd, i);
                c.ebx.saturating_add(c.eax) as u64
            })
            .max()
            .unwrap_or(512 + 64)
    };
    let mut mask = X87_SSE;
    for extra in [AVX, AVX512] {
        let wanted = mask | extra;
        if host & extra == extra && end_of(wanted) <= FRAME_SIZE {
            mask = wanted;
        } else {
            break;
        }
    }
    mask
}

/// Every XSAVE component the hypervisor switches for guests.
pub fn xcr0_supported() -> u64 {
    *SWITCHED.call_once(switched_xsave_components)
}

/// Enables XSAVE on the calling CPU with every switched component, for
/// the guests' sake (the host itself never uses FPU/SSE state).
pub fn enable_this_cpu() {
    let supported = xcr0_supported();
    if supported != 0 {
        // SAFETY: CPUID reports XSAVE and the set is one it supports.
        unsafe {
            Cr4::update(|f| {
                f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE | Cr4Flags::OSXSAVE)
            });
            xsetbv(supported);
        }
    }
}

/// The calling CPU's XCR0.
pub fn xgetbv() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called where CR4.OSXSAVE is set (XSAVE supported).
    unsafe { core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi) };
    ((hi as u64) << 32) | lo as u64
}

/// # Safety
/// CR4.OSXSAVE must be set and `value` a valid XCR0.
unsafe fn xsetbv(value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe {
        core::arch::asm!("xsetbv", in("ecx") 0, in("eax") value as u32, in("edx") (value >> 32) as u32)
    };
}

/// A vCPU's FPU/SSE/AVX image and XCR0.
pub struct Fpu {
    area: u64,
    xcr0: u64,
}

impl Fpu {
    pub fn new() -> Result<Self, VirtError> {
        let frame = mm::frames().alloc().ok_or(VirtError::OutOfMemory)?;
        mm::zero_frame(frame);
        Ok(Self {
            area: frame.start(),
            xcr0: 1,
        })
    }

    pub fn xcr0(&self) -> u64 {
        self.xcr0
    }

    /// Takes the XCR0 the guest left in the hardware (where XSETBV is not
    /// intercepted, the guest sets it itself).
    pub fn note_hardware_xcr0(&mut self) {
        if xcr0_supported() != 0 {
            self.xcr0 = xgetbv();
        }
    }

    /// XSETBV for the guest: a valid set of switched components becomes
    /// its XCR0 (loaded at once: this runs between its exits).
    pub fn set_xcr0(&mut self, value: u64) -> bool {
        let supported = xcr0_supported();
        let valid =
            value & 1 != 0 && value & !supported == 0 && (value & 0b100 == 0 || value & 0b10 != 0);
        if valid {
            self.xcr0 = value;
            // SAFETY: a validated, supported XCR0; the guest's FPU state is
            // loaded (this runs between its exits).
            unsafe { xsetbv(value) };
        }
        valid
    }

    /// Loads this image onto the CPU, then the guest's own XCR0.
    ///
    /// XSAVE/XRSTOR move only the components XCR0 enables, but a guest
    /// uses SSE registers without ever enabling them in XCR0 (CR4.OSFXSR
    /// is enough): the hypervisor therefore moves state with every
    /// component it supports enabled, and gives the guest its XCR0 only
    /// for running.
    pub fn load(&mut self) {
        let all = xcr0_supported();
        if all == 0 {
            return;
        }
        // SAFETY: the area is this vCPU's page-aligned XSAVE image (zeroed
        // = init state); both XCR0 values are validated supported sets.
        unsafe {
            xsetbv(all);
            core::arch::asm!("xrstor64 [{}]", in(reg) self.area, in("eax") u32::MAX, in("edx") u32::MAX);
            xsetbv(self.xcr0);
        }
    }

    /// Saves the CPU's FPU/SSE/AVX state into this image (every component,
    /// whatever the guest's XCR0; see [`load`](Self::load)).
    pub fn save(&mut self) {
        let all = xcr0_supported();
        if all == 0 {
            return;
        }
        // SAFETY: as in `load`.
        unsafe {
            xsetbv(all);
            core::arch::asm!("xsave64 [{}]", in(reg) self.area, in("eax") u32::MAX, in("edx") u32::MAX);
        }
    }
}

impl Drop for Fpu {
    fn drop(&mut self) {
        mm::scrub_and_free(Frame::containing(self.area));
    }
}

/// A vCPU's DR0-DR3, loaded into the hardware lazily: at the guest's
/// first touch of them, or when its DR7 arms a breakpoint, as Xen does;
/// taken back when its slice ends, so the next vCPU on the CPU sees its
/// own. (DR6 is not lazy: the CPU writes it on every #DB the guest takes.)
#[derive(Default)]
pub struct DebugRegs {
    dr0_3: [u64; 4],
    loaded: bool,
}

impl DebugRegs {
    pub fn loaded(&self) -> bool {
        self.loaded
    }

    /// The values a reset leaves (also in the hardware, if it holds them).
    pub fn reset(&mut self) {
        self.dr0_3 = [0; 4];
        if self.loaded {
            self.load();
        }
    }

    /// Puts the registers in the hardware.
    pub fn load(&mut self) {
        let [dr0, dr1, dr2, dr3] = self.dr0_3;
        // SAFETY: the host never uses DR0-DR3 (it sets no breakpoints),
        // so they are the guest's to hold while it runs here.
        unsafe {
            core::arch::asm!(
                "mov dr0, {}", "mov dr1, {}", "mov dr2, {}", "mov dr3, {}",
                in(reg) dr0, in(reg) dr1, in(reg) dr2, in(reg) dr3,
                options(nostack)
            );
        }
        self.loaded = true;
    }

    /// Takes the registers back from the hardware, if they are there.
    /// Returns whether they were.
    pub fn save(&mut self) -> bool {
        if !self.loaded {
            return false;
        }
        let (dr0, dr1, dr2, dr3): (u64, u64, u64, u64);
        // SAFETY: reading debug registers has no side effects.
        unsafe {
            core::arch::asm!(
                "mov {}, dr0", "mov {}, dr1", "mov {}, dr2", "mov {}, dr3",
                out(reg) dr0, out(reg) dr1, out(reg) dr2, out(reg) dr3,
                options(nostack, nomem)
            );
        }
        self.dr0_3 = [dr0, dr1, dr2, dr3];
        self.loaded = false;
        true
    }
}
