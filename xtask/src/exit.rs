//! How a QEMU run ended: decoding QEMU's exit status into the hypervisor's
//! `isa-debug-exit` status (the hypervisor writes `E + 0x10` to port 0xf4, so
//! QEMU exits with `((E + 0x10) << 1) | 1`) or QEMU's own status.

use std::fmt;
use std::process::ExitStatus;

/// The offset the hypervisor adds to its status before writing it to port
/// 0xf4, so that a debug-exit status can never be confused with QEMU's own
/// small exit codes.
pub const DEBUG_EXIT_BIAS: i32 = 0x10;

/// The status `cargo xtask run` exits with when the run timed out (the same
/// number `timeout(1)` uses).
pub const TIMED_OUT_CODE: u8 = 124;

/// The status the hypervisor reported through `isa-debug-exit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvStatus {
    /// E = 0: nothing left to run, everything succeeded.
    Success,
    /// E = 1: a fatal boot error (bad command line, too little memory, …).
    FatalBoot,
    /// E = 2: a hypervisor panic or CPU exception.
    Panic,
    /// E = 3: a guest failed.
    GuestFailed,
    /// Any other status the hypervisor may define later.
    Other(u8),
}

impl HvStatus {
    /// The status for the number E the hypervisor wrote (before the bias).
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Self::Success,
            1 => Self::FatalBoot,
            2 => Self::Panic,
            3 => Self::GuestFailed,
            other => Self::Other(other),
        }
    }

    /// The number E the hypervisor wrote (before the bias).
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::FatalBoot => 1,
            Self::Panic => 2,
            Self::GuestFailed => 3,
            Self::Other(code) => code,
        }
    }

    fn meaning(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::FatalBoot => "fatal boot error",
            Self::Panic => "hypervisor panic or exception",
            Self::GuestFailed => "a guest failed",
            Self::Other(_) => "unknown status",
        }
    }
}

/// How a QEMU run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The hypervisor ended the run through `isa-debug-exit`.
    Hypervisor(HvStatus),
    /// QEMU exited on its own with this status (0: normal quit without
    /// debug-exit, 1: QEMU error, …).
    Qemu(i32),
    /// The run hit its time-out and xtask stopped QEMU.
    TimedOut,
    /// xtask stopped QEMU because the console showed the text the run was
    /// waiting for (`Machine::stop_at`).
    Seen,
    /// QEMU was killed by this signal (not by xtask's time-out).
    Signal(i32),
}

impl Exit {
    /// Decodes a QEMU exit code: an odd code of at least
    /// `(DEBUG_EXIT_BIAS << 1) | 1` came from `isa-debug-exit`.
    pub fn from_code(code: i32) -> Self {
        let lowest_debug_exit = (DEBUG_EXIT_BIAS << 1) | 1;
        if code % 2 == 1 && code >= lowest_debug_exit {
            let e = (code >> 1) - DEBUG_EXIT_BIAS;
            match u8::try_from(e) {
                Ok(e) => Self::Hypervisor(HvStatus::from_code(e)),
                Err(_) => Self::Qemu(code),
            }
        } else {
            Self::Qemu(code)
        }
    }

    /// Decodes the exit status of a finished QEMU process.
    pub fn from_status(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::from_code(code),
            (None, Some(signal)) => Self::Signal(signal),
            // Neither a code nor a signal cannot happen on Unix; report it
            // as QEMU's own failure rather than inventing a status.
            (None, None) => Self::Qemu(-1),
        }
    }

    /// The status `cargo xtask run` exits with for this ending: E for a
    /// debug-exit, QEMU's code otherwise, 124 on time-out, 0 when the awaited
    /// console text came, 128 + signal.
    pub fn process_code(self) -> u8 {
        match self {
            Self::Hypervisor(status) => status.code(),
            Self::Qemu(code) => u8::try_from(code).unwrap_or(1),
            Self::TimedOut => TIMED_OUT_CODE,
            Self::Seen => 0,
            Self::Signal(signal) => u8::try_from(128 + signal).unwrap_or(255),
        }
    }
}

impl fmt::Display for HvStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.meaning())
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hypervisor(status) => write!(f, "hypervisor exit status {status}"),
            Self::Qemu(0) => write!(
                f,
                "QEMU quit with status 0 without a hypervisor exit status"
            ),
            Self::Qemu(1) => write!(f, "QEMU failed with status 1 (QEMU error)"),
            Self::Qemu(code) => write!(f, "QEMU exited with status {code}"),
            Self::TimedOut => write!(f, "timed out"),
            Self::Seen => write!(f, "stopped once the console showed the awaited text"),
            Self::Signal(signal) => write!(f, "QEMU was killed by signal {signal}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code QEMU exits with when the hypervisor writes `e + 0x10`.
    fn qemu_code(e: i32) -> i32 {
        ((e + DEBUG_EXIT_BIAS) << 1) | 1
    }

    #[test]
    fn debug_exit_codes_decode_to_hypervisor_status() {
        assert_eq!(qemu_code(0), 33);
        assert_eq!(Exit::from_code(33), Exit::Hypervisor(HvStatus::Success));
        assert_eq!(Exit::from_code(35), Exit::Hypervisor(HvStatus::FatalBoot));
        assert_eq!(Exit::from_code(37), Exit::Hypervisor(HvStatus::Panic));
        assert_eq!(Exit::from_code(39), Exit::Hypervisor(HvStatus::GuestFailed));
        assert_eq!(
            Exit::from_code(qemu_code(50)),
            Exit::Hypervisor(HvStatus::Other(50))
        );
        assert_eq!(Exit::from_code(255), Exit::Hypervisor(HvStatus::Other(111)));
    }

    #[test]
    fn other_codes_are_qemus_own() {
        for code in [0, 1, 2, 3, 31, 32, 34, 124, 254] {
            assert_eq!(Exit::from_code(code), Exit::Qemu(code), "code {code}");
        }
    }

    #[test]
    fn status_codes_round_trip() {
        for e in 0..=111u8 {
            let code = qemu_code(i32::from(e));
            let exit = Exit::from_code(code);
            assert_eq!(exit, Exit::Hypervisor(HvStatus::from_code(e)));
            assert_eq!(exit.process_code(), e);
        }
    }

    #[test]
    fn process_codes() {
        assert_eq!(Exit::Qemu(1).process_code(), 1);
        assert_eq!(Exit::Qemu(0).process_code(), 0);
        assert_eq!(Exit::TimedOut.process_code(), 124);
        assert_eq!(Exit::Seen.process_code(), 0);
        assert_eq!(Exit::Signal(9).process_code(), 137);
    }

    #[test]
    fn from_real_process_status() {
        use std::os::unix::process::ExitStatusExt;
        // A raw wait status holds the exit code in bits 8..16.
        assert_eq!(
            Exit::from_status(ExitStatus::from_raw(35 << 8)),
            Exit::Hypervisor(HvStatus::FatalBoot)
        );
        assert_eq!(
            Exit::from_status(ExitStatus::from_raw(1 << 8)),
            Exit::Qemu(1)
        );
        assert_eq!(Exit::from_status(ExitStatus::from_raw(9)), Exit::Signal(9));
    }
}
