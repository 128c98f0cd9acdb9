//! What a DomU sees besides hypercalls: the CPUID and MSR policy, the
//! emulated local APIC, its ACPI tables. Pure cores, host-tested; the exit
//! code in `domain/` applies them.

pub mod cpuid;
pub mod msr;
pub mod ports;
pub mod vlapic;

pub use pvh_builder::acpi as acpi_tables;
