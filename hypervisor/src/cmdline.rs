//! The hypervisor command line: `key=value` and bare-flag options, Xen style.
//!
//! Pure parsing, host-tested. An unknown option or a malformed value is an
//! error the boot path reports in one sentence; `qemu_exit` is looked for
//! separately so that even a bad command line can end a test run cleanly.

use core::fmt;

/// Highest number of physical CPUs Pavise brings up.
pub const MAX_CPUS: usize = 32;

/// Console verbosity, named as Xen's `loglvl=` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    None,
    Error,
    Warning,
    Info,
    Debug,
    All,
}

impl LogLevel {
    const NAMES: &'static str = "one of none, error, warning, info, debug, all";

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Self::None,
            "error" => Self::Error,
            "warning" => Self::Warning,
            "info" => Self::Info,
            "debug" => Self::Debug,
            "all" => Self::All,
            _ => return None,
        })
    }

    pub fn filter(self) -> log::LevelFilter {
        match self {
            Self::None => log::LevelFilter::Off,
            Self::Error => log::LevelFilter::Error,
            Self::Warning => log::LevelFilter::Warn,
            Self::Info => log::LevelFilter::Info,
            Self::Debug => log::LevelFilter::Debug,
            Self::All => log::LevelFilter::Trace,
        }
    }
}

/// A deliberate fault after boot, to prove the trap path (tests use it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selftest {
    PageFault,
    InvalidOpcode,
    StackOverflow,
    Panic,
}

impl Selftest {
    const NAMES: &'static str = "one of page-fault, invalid-opcode, stack-overflow, panic";

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "page-fault" => Self::PageFault,
            "invalid-opcode" => Self::InvalidOpcode,
            "stack-overflow" => Self::StackOverflow,
            "panic" => Self::Panic,
            _ => return None,
        })
    }
}

/// Everything the command line can set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub loglvl: LogLevel,
    /// Power QEMU off through `isa-debug-exit` with a status when nothing is
    /// left to run or boot fails (for tests and `cargo xtask run`).
    pub qemu_exit: bool,
    /// Bring up at most this many CPUs (the boot CPU included).
    pub maxcpus: Option<usize>,
    /// Fault on purpose once the boot CPU is up.
    pub selftest: Option<Selftest>,
    /// Power off once every DomU has ended (status 0 only if all powered
    /// off cleanly).
    pub exit_when_done: bool,
    /// Measure the bare VM exit cost at boot (for `cargo xtask bench`).
    pub bench: bool,
    /// With `exit_when_done`: before stopping, wait until the ended
    /// domains' memory is back and print the free frames against before
    /// the DomUs (for `cargo xtask fuzz`).
    pub memcheck: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            loglvl: LogLevel::Info,
            qemu_exit: false,
            maxcpus: None,
            selftest: None,
            exit_when_done: false,
            bench: false,
            memcheck: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError<'a> {
    UnknownOption(&'a str),
    BadValue {
        option: &'static str,
        value: &'a str,
        expected: &'static str,
    },
    MissingValue {
        option: &'static str,
        expected: &'static str,
    },
    UnexpectedValue {
        option: &'static str,
        value: &'a str,
    },
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownOption(name) => write!(
                f,
                "unknown command-line option '{name}' (known: loglvl=, maxcpus=, qemu_exit, exit_when_done, memcheck, bench, selftest=)"
            ),
            Self::BadValue {
                option,
                value,
                expected,
            } => {
                write!(f, "bad value '{value}' for {option}= (expected {expected})")
            }
            Self::MissingValue { option, expected } => {
                write!(f, "option {option}= needs a value ({expected})")
            }
            Self::UnexpectedValue { option, value } => {
                write!(f, "option {option} takes no value, got '{value}'")
            }
        }
    }
}

/// Splits the command line into options. GRUB may pass the image path as
/// the first word; a leading word starting with '/' is skipped.
fn words(cmdline: &str) -> impl Iterator<Item = &str> {
    let mut words = cmdline.split_ascii_whitespace().peekable();
    if words.peek().is_some_and(|w| w.starts_with('/')) {
        words.next();
    }
    words
}

/// True if `qemu_exit` appears as an option, whatever else is wrong.
pub fn requests_qemu_exit(cmdline: &str) -> bool {
    words(cmdline).any(|w| w == "qemu_exit")
}

pub fn parse(cmdline: &str) -> Result<Options, CmdlineError<'_>> {
    let mut options = Options::default();
    for word in words(cmdline) {
        let (name, value) = match word.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (word, None),
        };
        match name {
            "loglvl" => {
                const EXPECTED: &str = LogLevel::NAMES;
                let value = value
                    .filter(|v| !v.is_empty())
                    .ok_or(CmdlineError::MissingValue {
                        option: "loglvl",
                        expected: EXPECTED,
                    })?;
                // Xen writes `loglvl=<level>/<rate-limited level>`; the first part rules.
                let level = value.split('/').next().unwrap_or(value);
                options.loglvl = LogLevel::from_name(level).ok_or(CmdlineError::BadValue {
                    option: "loglvl",
                    value,
                    expected: EXPECTED,
                })?;
            }
            "maxcpus" => {
                const EXPECTED: &str = "a CPU count from 1 to 32";
                let value = value
                    .filter(|v| !v.is_empty())
                    .ok_or(CmdlineError::MissingValue {
                        option: "maxcpus",
                        expected: EXPECTED,
                    })?;
                let bad = CmdlineError::BadValue {
                    option: "maxcpus",
                    value,
                    expected: EXPECTED,
                };
                let count: usize = value.parse().map_err(|_| bad)?;
                if count == 0 || count > MAX_CPUS {
                    return Err(bad);
                }
                options.maxcpus = Some(count);
            }
            "selftest" => {
                let value = value
                    .filter(|v| !v.is_empty())
                    .ok_or(CmdlineError::MissingValue {
                        option: "selftest",
                        expected: Selftest::NAMES,
                    })?;
                options.selftest =
                    Some(Selftest::from_name(value).ok_or(CmdlineError::BadValue {
                        option: "selftest",
                        value,
                        expected: Selftest::NAMES,
                    })?);
            }
            "bench" => {
                if let Some(value) = value {
                    return Err(CmdlineError::UnexpectedValue {
                        option: "bench",
                        value,
                    });
                }
                options.bench = true;
            }
            "exit_when_done" => {
                if let Some(value) = value {
                    return Err(CmdlineError::UnexpectedValue {
                        option: "exit_when_done",
                        value,
                    });
                }
                options.exit_when_done = true;
            }
            "memcheck" => {
                if let Some(value) = value {
                    return Err(CmdlineError::UnexpectedValue {
                        option: "memcheck",
                        value,
                    });
                }
                options.memcheck = true;
            }
            "qemu_exit" => {
                if let Some(value) = value {
                    return Err(CmdlineError::UnexpectedValue {
                        option: "qemu_exit",
                        value,
                    });
                }
                options.qemu_exit = true;
            }
            _ => return Err(CmdlineError::UnknownOption(name)),
        }
    }
    Ok(options)
}

/// The command line as booted, for XENVER_commandline (Dom0 only). Set
/// once at boot, after the heap exists.
static SAVED: spin::Once<alloc::string::String> = spin::Once::new();

pub fn save(cmdline: &str) {
    SAVED.call_once(|| alloc::string::String::from(cmdline));
}

pub fn saved() -> &'static str {
    SAVED.get().map_or("", |s| s.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_gives_defaults() {
        assert_eq!(parse(""), Ok(Options::default()));
        assert_eq!(parse("   "), Ok(Options::default()));
    }

    #[test]
    fn all_options() {
        let o = parse("loglvl=debug maxcpus=4 qemu_exit").unwrap();
        assert_eq!(o.loglvl, LogLevel::Debug);
        assert_eq!(o.maxcpus, Some(4));
        assert!(o.qemu_exit);
    }

    #[test]
    fn xen_style_rate_limited_level() {
        assert_eq!(parse("loglvl=all/warning").unwrap().loglvl, LogLevel::All);
    }

    #[test]
    fn grub_image_path_is_skipped() {
        assert!(parse("/boot/hypervisor qemu_exit").unwrap().qemu_exit);
        assert!(requests_qemu_exit("/boot/hypervisor qemu_exit"));
    }

    #[test]
    fn unknown_option() {
        let err = parse("qemu_exit frobnicate=1").unwrap_err();
        assert_eq!(err, CmdlineError::UnknownOption("frobnicate"));
        let text = format!("{err}");
        assert!(
            text.contains("unknown command-line option 'frobnicate'"),
            "{text}"
        );
    }

    #[test]
    fn malformed_values() {
        let err = parse("loglvl=loud").unwrap_err();
        assert!(format!("{err}").contains("bad value 'loud' for loglvl="));
        assert!(matches!(
            parse("loglvl="),
            Err(CmdlineError::MissingValue { .. })
        ));
        assert!(matches!(
            parse("loglvl"),
            Err(CmdlineError::MissingValue { .. })
        ));
        assert!(matches!(
            parse("maxcpus=0"),
            Err(CmdlineError::BadValue { .. })
        ));
        assert!(matches!(
            parse("maxcpus=33"),
            Err(CmdlineError::BadValue { .. })
        ));
        assert!(matches!(
            parse("maxcpus=two"),
            Err(CmdlineError::BadValue { .. })
        ));
        assert!(matches!(
            parse("maxcpus=-1"),
            Err(CmdlineError::BadValue { .. })
        ));
        assert!(matches!(
            parse("qemu_exit=yes"),
            Err(CmdlineError::UnexpectedValue { .. })
        ));
    }

    #[test]
    fn selftests() {
        assert_eq!(
            parse("selftest=stack-overflow").unwrap().selftest,
            Some(Selftest::StackOverflow)
        );
        assert_eq!(
            parse("selftest=panic").unwrap().selftest,
            Some(Selftest::Panic)
        );
        assert!(matches!(
            parse("selftest=boom"),
            Err(CmdlineError::BadValue { .. })
        ));
        assert!(matches!(
            parse("selftest"),
            Err(CmdlineError::MissingValue { .. })
        ));
    }

    #[test]
    fn memcheck_is_a_flag() {
        assert!(parse("exit_when_done memcheck").unwrap().memcheck);
        assert!(!parse("exit_when_done").unwrap().memcheck);
        assert!(matches!(
            parse("memcheck=1"),
            Err(CmdlineError::UnexpectedValue { .. })
        ));
    }

    proptest::proptest! {
        /// Any command line parses or gets a typed error, and an error
        /// names a word of the line.
        #[test]
        fn any_command_line_parses_or_is_refused(line in "(\\PC{0,12}[ =]?){0,8}") {
            match parse(&line) {
                Ok(_) => {}
                Err(CmdlineError::UnknownOption(w)) => proptest::prop_assert!(line.contains(w)),
                Err(CmdlineError::BadValue { value, .. })
                | Err(CmdlineError::UnexpectedValue { value, .. }) => {
                    proptest::prop_assert!(line.contains(value))
                }
                Err(CmdlineError::MissingValue { .. }) => {}
            }
            let _ = requests_qemu_exit(&line);
        }
    }

    #[test]
    fn qemu_exit_found_despite_errors() {
        assert!(requests_qemu_exit("frobnicate qemu_exit loglvl=loud"));
        assert!(!requests_qemu_exit("qemu_exit=1 qemu_exits"));
    }
}
