//! The boot manifest: each GRUB module names a domain to build.
//!
//! A module's string is `[name=NAME] [mem=MiB] [vcpus=N] [cmdline=...]`;
//! `cmdline=` takes the rest of the string. The first module is Dom0. Pure
//! parsing, host-tested.

use alloc::string::{String, ToString};
use core::fmt;

pub const DEFAULT_DOM0_MIB: u64 = 32;
pub const DEFAULT_DOMU_MIB: u64 = 16;
/// Smallest domain: room for a tiny kernel, its start info and stacks.
pub const MIN_DOMAIN_MIB: u64 = 2;
pub const MAX_DOMAIN_MIB: u64 = 3072;
pub const MAX_VCPUS: u32 = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    pub name: String,
    pub mem_mib: u64,
    pub vcpus: u32,
    pub cmdline: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestError {
    UnknownKey(String),
    BadValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey(k) => {
                write!(
                    f,
                    "unknown module option '{k}' (known: name=, mem=, vcpus=, cmdline=)"
                )
            }
            Self::BadValue {
                key,
                value,
                expected,
            } => {
                write!(f, "bad value '{value}' for {key}= (expected {expected})")
            }
        }
    }
}

/// A module's string without the path GRUB may put first.
fn without_path(module_string: &str) -> &str {
    let rest = module_string.trim_start();
    if rest.starts_with('/') {
        rest.split_once(char::is_whitespace)
            .map_or("", |(_, r)| r)
            .trim_start()
    } else {
        rest
    }
}

/// True for a module that is the ramdisk of the domain module before it
/// (its string is `ramdisk`), as xl's `ramdisk=`.
pub fn is_ramdisk(module_string: &str) -> bool {
    without_path(module_string).trim_end() == "ramdisk"
}

/// The name of a module that is a file handed to Dom0 (its string is
/// `file NAME`: a kernel, ramdisk or xl.cfg config for Dom0's toolstack),
/// or `None` for any other module. A NAME with '/' or nothing is refused
/// (`Some(Err)`), as Dom0 looks files up by their plain names.
pub fn file_name(module_string: &str) -> Option<Result<&str, String>> {
    let rest = without_path(module_string).trim_end();
    let name = rest.strip_prefix("file")?;
    if !name.is_empty() && !name.starts_with(char::is_whitespace) {
        return None;
    }
    let name = name.trim();
    if name.is_empty() || name.contains('/') || name.contains(char::is_whitespace) {
        return Some(Err(alloc::format!(
            "module string '{module_string}' should be 'file NAME' with one plain file name"
        )));
    }
    Some(Ok(name))
}

/// The word Dom0's command line carries for each boot-time DomU:
/// ` pavise.domu=ID:NAME:MEM_MIB:VCPUS` (names have no ':' or spaces).
pub fn domu_word(id: u16, spec: &DomainSpec) -> String {
    alloc::format!(
        " pavise.domu={id}:{}:{}:{}",
        spec.name,
        spec.mem_mib,
        spec.vcpus
    )
}

/// Parses one module string; `index` 0 is Dom0 (it sets the defaults).
pub fn parse(module_string: &str, index: usize) -> Result<DomainSpec, ManifestError> {
    let mut spec = DomainSpec {
        name: if index == 0 {
            "dom0".to_string()
        } else {
            alloc::format!("domu{index}")
        },
        mem_mib: if index == 0 {
            DEFAULT_DOM0_MIB
        } else {
            DEFAULT_DOMU_MIB
        },
        vcpus: 1,
        cmdline: String::new(),
    };
    let mut rest = without_path(module_string);
    while !rest.is_empty() {
        if let Some(cmdline) = rest.strip_prefix("cmdline=") {
            spec.cmdline = cmdline.trim().to_string();
            break;
        }
        let (word, tail) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        rest = tail.trim_start();
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        match key {
            "name" => {
                let ok = !value.is_empty()
                    && value.len() <= 32
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return Err(ManifestError::BadValue {
                        key: "name",
                        value: value.to_string(),
                        expected: "1-32 letters, digits, '-' or '_'",
                    });
                }
                spec.name = value.to_string();
            }
            "mem" => {
                const EXPECTED: &str = "MiB from 2 to 3072";
                let bad = || ManifestError::BadValue {
                    key: "mem",
                    value: value.to_string(),
                    expected: EXPECTED,
                };
                let mib: u64 = value.parse().map_err(|_| bad())?;
                if !(MIN_DOMAIN_MIB..=MAX_DOMAIN_MIB).contains(&mib) {
                    return Err(bad());
                }
                spec.mem_mib = mib;
            }
            "vcpus" => {
                const EXPECTED: &str = "a count from 1 to 8";
                let bad = || ManifestError::BadValue {
                    key: "vcpus",
                    value: value.to_string(),
                    expected: EXPECTED,
                };
                let n: u32 = value.parse().map_err(|_| bad())?;
                if !(1..=MAX_VCPUS).contains(&n) {
                    return Err(bad());
                }
                spec.vcpus = n;
            }
            _ => return Err(ManifestError::UnknownKey(key.to_string())),
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_modules_are_named_plainly() {
        assert_eq!(file_name("file counter.cfg"), Some(Ok("counter.cfg")));
        assert_eq!(file_name("/boot/x file vmlinuz "), Some(Ok("vmlinuz")));
        assert_eq!(file_name("name=filer mem=4"), None);
        assert_eq!(file_name("filex"), None);
        assert!(matches!(file_name("file a/b"), Some(Err(_))));
        assert!(matches!(file_name("file"), Some(Err(_))));
        assert!(matches!(file_name("file a b"), Some(Err(_))));
    }

    use super::*;

    proptest::proptest! {
        /// Any module string GRUB hands over parses within the limits or
        /// is refused with a typed error; the other readers never panic.
        #[test]
        fn any_module_string_parses_within_limits_or_is_refused(
            s in "([a-z]{0,8}=?[ -~]{0,10} ?){0,6}",
            index in 0usize..10,
        ) {
            if let Ok(spec) = parse(&s, index) {
                proptest::prop_assert!(!spec.name.is_empty() && spec.name.len() <= 32);
                proptest::prop_assert!(spec.vcpus >= 1);
                proptest::prop_assert!(spec.mem_mib >= 1);
            }
            let _ = (file_name(&s), is_ramdisk(&s));
        }
    }

    #[test]
    fn dom0_learns_each_domu_in_one_word() {
        let spec = parse("name=linux mem=256 vcpus=4 cmdline=console=hvc0", 1).unwrap();
        assert_eq!(domu_word(1, &spec), " pavise.domu=1:linux:256:4");
    }

    #[test]
    fn ramdisk_modules_are_recognised_with_or_without_a_path() {
        assert!(is_ramdisk("ramdisk"));
        assert!(is_ramdisk("/boot/initrd.gz ramdisk "));
        assert!(!is_ramdisk("name=ramdisk"));
        assert!(!is_ramdisk("cmdline=ramdisk"));
        assert!(!is_ramdisk(""));
    }

    #[test]
    fn defaults() {
        let d0 = parse("", 0).unwrap();
        assert_eq!(
            (d0.name.as_str(), d0.mem_mib, d0.vcpus),
            ("dom0", DEFAULT_DOM0_MIB, 1)
        );
        let d2 = parse("  ", 2).unwrap();
        assert_eq!((d2.name.as_str(), d2.mem_mib), ("domu2", DEFAULT_DOMU_MIB));
    }

    #[test]
    fn full() {
        let s = parse("/boot/hello name=hello mem=24 vcpus=2 cmdline=a b=c  d", 1).unwrap();
        assert_eq!(
            s,
            DomainSpec {
                name: "hello".into(),
                mem_mib: 24,
                vcpus: 2,
                cmdline: "a b=c  d".into()
            }
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse("colour=red", 1),
            Err(ManifestError::UnknownKey(_))
        ));
        assert!(matches!(
            parse("mem=1", 1),
            Err(ManifestError::BadValue { key: "mem", .. })
        ));
        assert!(matches!(
            parse("mem=lots", 1),
            Err(ManifestError::BadValue { key: "mem", .. })
        ));
        assert!(matches!(
            parse("vcpus=0", 1),
            Err(ManifestError::BadValue { key: "vcpus", .. })
        ));
        assert!(matches!(
            parse("vcpus=99", 1),
            Err(ManifestError::BadValue { key: "vcpus", .. })
        ));
        assert!(matches!(
            parse("name=", 1),
            Err(ManifestError::BadValue { key: "name", .. })
        ));
        assert!(matches!(
            parse("name=a/b", 1),
            Err(ManifestError::BadValue { key: "name", .. })
        ));
    }
}
