//! Bochs, the emulator with Intel VT-x: the VMX backend's machines boot
//! there (QEMU's TCG emulates no VMX). Its configuration file, the
//! debugger commands fed on stdin, and how a run's status is read back.
//!
//! Bochs has no `isa-debug-exit`: the hypervisor's exit path writes port
//! 0xf4 (nothing there), then its biased status as text to Bochs's debug
//! port 0xe9 (`pavise-exit-status=016`), then runs the magic breakpoint
//! `xchg bx, bx`. Bochs stops in its debugger, which reads the commands
//! queued on stdin (`c` at the start, `q` at the breakpoint).

use std::fmt::Write as _;
use std::path::Path;

use crate::exit::{DEBUG_EXIT_BIAS, Exit, HvStatus};

/// The program.
pub const PROGRAM: &str = "bochs";

/// The CPU Bochs emulates: Skylake-X has VMX with EPT, VPID and
/// unrestricted guest (TOOLCHAIN.md).
pub const CPU_MODEL: &str = "corei7_skylake_x";

/// Emulated instructions per emulated second. Bochs's clock follows its
/// instruction count, so BIOS and GRUB delays pass in emulated time: a
/// lower rate boots faster but makes each guest tick cost fewer
/// instructions.
pub const IPS: u32 = 50_000_000;

/// What is typed into Bochs's debugger: continue at once; quit at the
/// magic breakpoint.
pub const DEBUGGER_SCRIPT: &[u8] = b"c\nq\n";

/// What the hypervisor's status follows on the debug port.
const STATUS_PREFIX: &str = "pavise-exit-status=";

/// The configuration file for a machine of `cpus` CPUs and `mem_mib` MiB
/// booting `iso`, its serial port on Bochs's stdout and its log in `log`.
pub fn config(cpus: u32, mem_mib: u32, iso: &Path, log: &Path) -> String {
    let mut rc = String::new();
    let _ = writeln!(rc, "megs: {mem_mib}");
    // A triple fault of the hypervisor itself ends the run (not a reboot
    // loop), as QEMU's -no-reboot does.
    let _ = writeln!(
        rc,
        "cpu: model={CPU_MODEL}, count={cpus}, ips={IPS}, reset_on_triple_fault=0"
    );
    rc.push_str("romimage: file=/usr/share/bochs/BIOS-bochs-latest\n");
    rc.push_str("vgaromimage: file=/usr/share/vgabios/vgabios.bin\n");
    let _ = writeln!(
        rc,
        "ata0-master: type=cdrom, path=\"{}\", status=inserted",
        iso.display()
    );
    rc.push_str("boot: cdrom\n");
    rc.push_str("com1: enabled=1, mode=file, dev=/dev/stdout\n");
    // No window: the RFB display with no wait for a viewer.
    rc.push_str("display_library: rfb, options=\"timeout=0\"\n");
    rc.push_str("speaker: enabled=0\n");
    rc.push_str("sound: driver=dummy\n");
    rc.push_str("magic_break: enabled=1\n");
    rc.push_str("port_e9_hack: enabled=1\n");
    rc.push_str("panic: action=fatal\n");
    let _ = writeln!(rc, "log: \"{}\"", log.display());
    rc
}

/// How a Bochs run ended, from what it printed (the debug port's text
/// comes out on its stdout or stderr, `output`): the hypervisor's status
/// if it told one, else None.
pub fn exit_from(output: &str) -> Option<Exit> {
    // The status starts a line, which no guest's text does (each guest
    // line is prefixed with its domain), and only the hypervisor can
    // write the debug port (guests' port I/O exits).
    let digits = output
        .lines()
        .rev()
        .find_map(|line| line.trim_end_matches('\r').strip_prefix(STATUS_PREFIX))?;
    let value: u8 = digits.get(..3)?.parse().ok()?;
    let e = value.checked_sub(u8::try_from(DEBUG_EXIT_BIAS).ok()?)?;
    Some(Exit::Hypervisor(HvStatus::from_code(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_the_image_the_cpus_and_the_serial_port() {
        let rc = config(
            2,
            256,
            Path::new("/tmp/x/pavise.iso"),
            Path::new("/tmp/x/bochs.log"),
        );
        assert!(rc.contains("megs: 256\n"));
        assert!(rc.contains("model=corei7_skylake_x, count=2,"));
        assert!(rc.contains("path=\"/tmp/x/pavise.iso\""));
        assert!(rc.contains("com1: enabled=1, mode=file, dev=/dev/stdout"));
        assert!(rc.contains("magic_break: enabled=1"));
        assert!(rc.contains("log: \"/tmp/x/bochs.log\""));
    }

    #[test]
    fn the_status_comes_from_the_debug_port_line() {
        let output =
            "pavise: all watched domains ended\npavise-exit-status=016\n(1) Magic breakpoint\n";
        assert_eq!(exit_from(output), Some(Exit::Hypervisor(HvStatus::Success)));
        let failed = output.replace("=016", "=019");
        assert_eq!(
            exit_from(&failed),
            Some(Exit::Hypervisor(HvStatus::GuestFailed))
        );
    }

    #[test]
    fn no_status_line_no_hypervisor_status() {
        assert_eq!(exit_from("(0) Magic breakpoint\n"), None);
        assert_eq!(exit_from("pavise-exit-status=01\n"), None);
        // A guest cannot forge it: its lines are prefixed.
        assert_eq!(exit_from("(d1) pavise-exit-status=016\n"), None);
    }
}
