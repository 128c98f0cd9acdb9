//! x86_64 hardware glue: descriptor tables and traps, local APIC and time,
//! SMP start-up, per-CPU data, power-off. Pavise runs on x86_64 only, so
//! this folder is that architecture (DESIGN.md's `arch/x86_64/`).

pub mod gdt;
pub mod idt;
pub mod ioapic;
pub mod lapic;
pub mod pci_config;
pub mod percpu;
pub mod power;
pub mod smp;
pub mod time;
