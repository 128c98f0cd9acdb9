//! Per-CPU GDT and TSS: kernel code/data segments and the IST stacks that
//! keep double faults and NMIs off a possibly broken stack.

use alloc::boxed::Box;

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

use crate::mm::paging::CpuStacks;

/// IST slots (1-based in IDT gates, 0-based in the TSS array).
pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_NMI: u8 = 2;
pub const IST_MACHINE_CHECK: u8 = 3;

/// Builds and loads this CPU's GDT and TSS. They live as long as the CPU.
pub fn load(stacks: &CpuStacks) {
    let mut tss = TaskStateSegment::new();
    tss.privilege_stack_table[0] = VirtAddr::new(stacks.main_top);
    tss.interrupt_stack_table[(IST_DOUBLE_FAULT - 1) as usize] =
        VirtAddr::new(stacks.double_fault_top);
    tss.interrupt_stack_table[(IST_NMI - 1) as usize] = VirtAddr::new(stacks.nmi_top);
    tss.interrupt_stack_table[(IST_MACHINE_CHECK - 1) as usize] =
        VirtAddr::new(stacks.machine_check_top);
    let tss: &'static TaskStateSegment = Box::leak(Box::new(tss));

    let gdt: &'static mut GlobalDescriptorTable = Box::leak(Box::new(GlobalDescriptorTable::new()));
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable = gdt;
    gdt.load();
    // SAFETY: the selectors come from the GDT just loaded and describe
    // flat 64-bit kernel segments and a TSS that lives forever.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss_sel);
    }
}
