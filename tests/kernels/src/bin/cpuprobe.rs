//! cpuprobe: booted bare (no hypervisor) by `cargo xtask run --accel kvm`,
//! says which virtualization extension the CPU it finds offers: AMD-V
//! with nested paging, or VT-x. KVM without nested virtualization (or a
//! paravirtual KVM) shows neither, and Pavise could start no guest there.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod kernel {
    use core::arch::x86_64::__cpuid_count;

    use guest_shim::{ShutdownReason, StartInfo, println, shutdown};

    fn main(_info: &StartInfo) -> ! {
        let leaf = |leaf, sub| __cpuid_count(leaf, sub);
        let max_extended = leaf(0x8000_0000, 0).eax;
        let svm = max_extended >= 0x8000_0001 && leaf(0x8000_0001, 0).ecx & (1 << 2) != 0;
        let npt = svm && max_extended >= 0x8000_000a && leaf(0x8000_000a, 0).edx & 1 != 0;
        let vmx = leaf(1, 0).ecx & (1 << 5) != 0;
        println!(
            "cpuprobe: svm={} npt={} vmx={}",
            u8::from(svm),
            u8::from(npt),
            u8::from(vmx)
        );
        shutdown(ShutdownReason::Poweroff)
    }

    guest_shim::entry!(main);
}

guest_shim::host_main!();
