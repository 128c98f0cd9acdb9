//! Domains to boot: Dom0 first, then DomUs given as
//! `PATH[,name=NAME,mem=MiB,vcpus=N,ramdisk=PATH,cmdline=...]`, turned into
//! the GRUB modules and module strings (the hypervisor's boot manifest) that
//! name them.

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use crate::bare_metal;
use crate::error::{Error, Result};

/// The kernel `cargo xtask run` boots beside Dom0 when no DomU is named.
pub const DEMO_DOMU: &str = "hello";

/// Limits the hypervisor puts on a module string (its boot manifest):
/// checked here too, so that a mistake is reported before anything is
/// built or booted.
pub const NAME_MAX: usize = 32;
pub const MEM_MIB: RangeInclusive<u32> = 2..=3072;
pub const VCPUS: RangeInclusive<u32> = 1..=8;

/// The module string that marks a module as the ramdisk of the domain
/// module just before it (xl's `ramdisk=`): the hypervisor hands it to that
/// guest as its hvm_start_info module 0.
pub const RAMDISK_STRING: &str = "ramdisk";

/// A DomU to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomU {
    pub kernel: PathBuf,
    /// The domain's name; `None` names it after the kernel's file.
    pub name: Option<String>,
    pub mem_mib: Option<u32>,
    pub vcpus: Option<u32>,
    pub cmdline: Option<String>,
    /// A file loaded beside the kernel (an initramfs, for Linux).
    pub ramdisk: Option<PathBuf>,
}

impl DomU {
    /// `kernel` with the hypervisor's defaults (16 MiB, one vCPU, no
    /// command line), named after its file.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            name: None,
            mem_mib: None,
            vcpus: None,
            cmdline: None,
            ramdisk: None,
        }
    }
}

/// Whether the hypervisor accepts `name` as a domain name: 1 to
/// [`NAME_MAX`] ASCII letters, digits, `-` or `_`.
pub fn valid_name(name: &str) -> bool {
    (1..=NAME_MAX).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Parses `PATH[,name=NAME,mem=MiB,vcpus=N,ramdisk=PATH,cmdline=...]`; `cmdline=` takes
/// the rest of the argument, commas included. Values are checked against
/// the hypervisor's limits.
pub fn parse_domu(arg: &str) -> Result<DomU> {
    let bad = |reason: String| Error::BadDomu {
        arg: arg.to_owned(),
        reason,
    };
    let (path, mut rest) = match arg.split_once(',') {
        Some((p, r)) => (p, Some(r)),
        None => (arg, None),
    };
    if path.is_empty() {
        return Err(bad("no kernel path".to_owned()));
    }
    let mut domu = DomU::new(path);
    while let Some(r) = rest {
        if let Some(cmdline) = r.strip_prefix("cmdline=") {
            domu.cmdline = Some(cmdline.to_owned());
            break;
        }
        let (item, next) = match r.split_once(',') {
            Some((i, n)) => (i, Some(n)),
            None => (r, None),
        };
        rest = next;
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| bad(format!("'{item}' is not key=value")))?;
        let number = |range: RangeInclusive<u32>, unit: &str| -> Result<u32> {
            value
                .parse()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    bad(format!(
                        "{key} must be {unit} from {} to {}",
                        range.start(),
                        range.end()
                    ))
                })
        };
        let slot_taken = match key {
            "name" => {
                if !valid_name(value) {
                    return Err(bad(format!(
                        "name must be 1 to {NAME_MAX} letters, digits, '-' or '_'"
                    )));
                }
                domu.name.replace(value.to_owned()).is_some()
            }
            "mem" => domu.mem_mib.replace(number(MEM_MIB, "MiB")?).is_some(),
            "vcpus" => domu.vcpus.replace(number(VCPUS, "a count")?).is_some(),
            "ramdisk" => {
                if value.is_empty() {
                    return Err(bad("ramdisk= needs a file".to_owned()));
                }
                domu.ramdisk.replace(PathBuf::from(value)).is_some()
            }
            other => {
                return Err(bad(format!(
                    "unknown option '{other}' (known: name=, mem=, vcpus=, ramdisk=, cmdline=)"
                )));
            }
        };
        if slot_taken {
            return Err(bad(format!("{key}= is given twice")));
        }
    }
    Ok(domu)
}

/// A name for the domain: the kernel's file name, reduced to the characters
/// the hypervisor accepts.
fn domain_name(kernel: &Path, index: usize) -> String {
    let stem = kernel.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(NAME_MAX)
        .collect();
    if name.is_empty() {
        format!("domu{index}")
    } else {
        name
    }
}

/// The module string for DomU number `index` (1-based).
pub fn module_string(domu: &DomU, index: usize) -> String {
    let name = match &domu.name {
        Some(name) => name.clone(),
        None => domain_name(&domu.kernel, index),
    };
    let mut s = format!("name={name}");
    if let Some(mem) = domu.mem_mib {
        s.push_str(&format!(" mem={mem}"));
    }
    if let Some(vcpus) = domu.vcpus {
        s.push_str(&format!(" vcpus={vcpus}"));
    }
    // The hypervisor trims the command line; trimmed here, its ends cannot
    // trip GRUB's quoting.
    if let Some(cmdline) = domu
        .cmdline
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        s.push_str(&format!(" cmdline={cmdline}"));
    }
    s
}

/// Checks that the kernel is a readable file that starts with the ELF
/// magic (whether it is a PVH kernel is the hypervisor's to say).
pub fn check_kernel(path: &Path) -> Result<()> {
    use std::io::Read;
    let missing = || Error::KernelMissing {
        path: path.to_owned(),
    };
    if !path.is_file() {
        return Err(missing());
    }
    let mut magic = [0u8; 4];
    let read = std::fs::File::open(path)
        .and_then(|mut file| file.read(&mut magic))
        .map_err(Error::io(format!("reading {}", path.display())))?;
    if read < magic.len() || magic != *b"\x7fELF" {
        return Err(Error::NotElf {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Checks that a DomU's ramdisk is a file (what it holds is the guest's
/// business).
pub fn check_ramdisk(path: &Path) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(Error::RamdiskMissing {
            path: path.to_owned(),
        })
    }
}

/// Checks DomU number `index` (1-based) before anything is built: its
/// kernel is an ELF file, its ramdisk a file, and GRUB can carry its module
/// string unchanged.
pub fn check(domu: &DomU, index: usize) -> Result<()> {
    check_kernel(&domu.kernel)?;
    if let Some(ramdisk) = &domu.ramdisk {
        check_ramdisk(ramdisk)?;
    }
    crate::grub::quote(&module_string(domu, index))?;
    Ok(())
}

/// Dom0's module.
pub fn dom0_module() -> (PathBuf, String) {
    (bare_metal::artifact("dom0"), "name=dom0".to_owned())
}

/// The GRUB module for DomU number `index` (1-based), unchecked.
pub fn module(domu: &DomU, index: usize) -> (PathBuf, String) {
    (domu.kernel.clone(), module_string(domu, index))
}

/// The GRUB modules of DomU number `index` (1-based), unchecked: its
/// kernel ([`module`]) and, when it has one, its ramdisk right after it with
/// the module string [`RAMDISK_STRING`].
pub fn domain_modules(domu: &DomU, index: usize) -> Vec<(PathBuf, String)> {
    let mut modules = vec![module(domu, index)];
    if let Some(ramdisk) = &domu.ramdisk {
        modules.push((ramdisk.clone(), RAMDISK_STRING.to_owned()));
    }
    modules
}

/// GRUB modules for Dom0 and `domus`, in domain-id order (see
/// [`domain_modules`]); each DomU's kernel and ramdisk are checked first.
pub fn modules(domus: &[DomU]) -> Result<Vec<(PathBuf, String)>> {
    let mut modules = vec![dom0_module()];
    for (i, domu) in domus.iter().enumerate() {
        check_kernel(&domu.kernel)?;
        if let Some(ramdisk) = &domu.ramdisk {
            check_ramdisk(ramdisk)?;
        }
        modules.extend(domain_modules(domu, i + 1));
    }
    Ok(modules)
}

/// A test kernel built by this project, as a DomU.
pub fn test_kernel(name: &str) -> DomU {
    DomU::new(bare_metal::artifact(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_path_takes_the_defaults() {
        assert_eq!(parse_domu("k.elf").unwrap(), DomU::new("k.elf"));
        assert_eq!(
            parse_domu("/x/dir,with,commas").map_err(|e| e.to_string()),
            Err("bad --domu '/x/dir,with,commas': 'with' is not key=value \
                 (expected PATH[,name=NAME,mem=MiB,vcpus=N,ramdisk=PATH,cmdline=...])"
                .to_owned())
        );
    }

    #[test]
    fn options_are_read() {
        let d = parse_domu("/x/k,name=web-1,mem=24,vcpus=2,cmdline=a b,c=d").unwrap();
        assert_eq!(d.kernel, PathBuf::from("/x/k"));
        assert_eq!(
            (d.name.as_deref(), d.mem_mib, d.vcpus, d.cmdline.as_deref()),
            (Some("web-1"), Some(24), Some(2), Some("a b,c=d"))
        );
        // Order does not matter, and cmdline= may be empty or come first.
        let d = parse_domu("k,vcpus=8,mem=3072").unwrap();
        assert_eq!((d.mem_mib, d.vcpus), (Some(3072), Some(8)));
        assert_eq!(
            parse_domu("k,cmdline=").unwrap().cmdline.as_deref(),
            Some("")
        );
        let d = parse_domu("k,cmdline=mem=4,vcpus=2").unwrap();
        assert_eq!(
            (d.mem_mib, d.cmdline.as_deref()),
            (None, Some("mem=4,vcpus=2"))
        );
        let d = parse_domu("vmlinux,ramdisk=/t/initrd.gz,mem=256,cmdline=console=hvc0").unwrap();
        assert_eq!(
            (d.ramdisk.as_deref(), d.mem_mib, d.cmdline.as_deref()),
            (
                Some(Path::new("/t/initrd.gz")),
                Some(256),
                Some("console=hvc0")
            )
        );
        // The ramdisk stays out of the module string: it is a module of its own.
        assert_eq!(
            module_string(&d, 1),
            "name=vmlinux mem=256 cmdline=console=hvc0"
        );
        // After cmdline=, ramdisk= is part of the command line.
        let d = parse_domu("k,cmdline=ramdisk=x").unwrap();
        assert_eq!((d.ramdisk, d.cmdline.as_deref()), (None, Some("ramdisk=x")));
    }

    #[test]
    fn bad_options_are_refused_with_the_reason() {
        for (arg, reason) in [
            ("", "no kernel path"),
            (",mem=4", "no kernel path"),
            ("k,mem=lots", "mem must be MiB from 2 to 3072"),
            ("k,mem=1", "mem must be MiB from 2 to 3072"),
            ("k,mem=3073", "mem must be MiB from 2 to 3072"),
            ("k,mem=-4", "mem must be MiB from 2 to 3072"),
            ("k,vcpus=0", "vcpus must be a count from 1 to 8"),
            ("k,vcpus=9", "vcpus must be a count from 1 to 8"),
            ("k,name=", "name must be 1 to 32"),
            ("k,name=a b", "name must be 1 to 32"),
            ("k,name=a.b", "name must be 1 to 32"),
            (
                "k,name=abcdefghijabcdefghijabcdefghijabc",
                "name must be 1 to 32",
            ),
            (
                "k,colour=red",
                "unknown option 'colour' (known: name=, mem=, vcpus=, ramdisk=, cmdline=)",
            ),
            ("k,ramdisk=", "ramdisk= needs a file"),
            ("k,ramdisk=a,ramdisk=b", "ramdisk= is given twice"),
            ("k,mem", "'mem' is not key=value"),
            ("k,mem=4,", "'' is not key=value"),
            ("k,mem=4,mem=8", "mem= is given twice"),
            ("k,name=a,name=b", "name= is given twice"),
        ] {
            match parse_domu(arg) {
                Err(e @ Error::BadDomu { .. }) => {
                    let message = e.to_string();
                    assert!(message.contains(reason), "{arg:?}: {message}");
                    assert!(!message.contains('\n'), "{arg:?}: {message}");
                }
                other => panic!("{arg:?} gave {other:?}"),
            }
        }
        assert!(parse_domu("k,name=abcdefghijabcdefghijabcdefghijab").is_ok());
    }

    #[test]
    fn module_strings() {
        let d = parse_domu("/t/test-hvm64-example,mem=8,cmdline=x y").unwrap();
        assert_eq!(
            module_string(&d, 1),
            "name=test-hvm64-example mem=8 cmdline=x y"
        );
        let d = parse_domu("/t/weird.name+1").unwrap();
        assert_eq!(module_string(&d, 2), "name=weird-name-1");
        let d = parse_domu("/t/hello,name=b,vcpus=2,cmdline=").unwrap();
        assert_eq!(module_string(&d, 2), "name=b vcpus=2");
        let d = parse_domu("/t/hello,cmdline= x y ").unwrap();
        assert_eq!(module_string(&d, 2), "name=hello cmdline=x y");
        let d = DomU::new("/");
        assert_eq!(module_string(&d, 3), "name=domu3");
    }

    #[test]
    fn module_strings_pass_through_grub_unchanged() {
        let d = parse_domu("/t/k,name=x,cmdline=a b,c=d e;f").unwrap();
        let (_, string) = module(&d, 1);
        assert_eq!(
            crate::grub::quote(&string).ok().as_deref(),
            Some("name=x cmdline=a b,c=d 'e;f'")
        );
        // GRUB would change these, so they are refused before booting.
        for cmdline in ["a  b", "say \"hi\"", "back\\slash"] {
            let d = parse_domu(&format!("/t/k,cmdline={cmdline}")).unwrap();
            assert!(crate::grub::quote(&module(&d, 1).1).is_err(), "{cmdline:?}");
        }
    }

    #[test]
    fn dom0_comes_first() {
        let dir = scratch_dir("order");
        let k = dir.join("k");
        std::fs::write(&k, b"\x7fELF\x02\x01").unwrap();
        let domus = [
            parse_domu(&format!("{},name=a", k.display())).unwrap(),
            parse_domu(&format!("{},name=b,mem=8", k.display())).unwrap(),
        ];
        let modules = modules(&domus).unwrap();
        let strings: Vec<&str> = modules.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(strings, ["name=dom0", "name=a", "name=b mem=8"]);
        assert!(modules[0].0.ends_with("release/dom0"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_ramdisk_follows_its_domain() {
        let dir = scratch_dir("ramdisk");
        let k = dir.join("vmlinux");
        std::fs::write(&k, b"\x7fELF\x02\x01").unwrap();
        let initrd = dir.join("initrd.cpio.gz");
        std::fs::write(&initrd, b"\x1f\x8b").unwrap();
        let domus = [
            parse_domu(&format!(
                "{},name=linux,ramdisk={},cmdline=console=hvc0",
                k.display(),
                initrd.display()
            ))
            .unwrap(),
            parse_domu(&format!("{},name=b", k.display())).unwrap(),
        ];
        let modules = modules(&domus).unwrap();
        let strings: Vec<&str> = modules.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            strings,
            [
                "name=dom0",
                "name=linux cmdline=console=hvc0",
                "ramdisk",
                "name=b"
            ]
        );
        assert_eq!(modules[1].0, k);
        assert_eq!(modules[2].0, initrd);
        assert_eq!(modules[3].0, k);
        assert!(check(&domus[0], 1).is_ok());

        // A missing ramdisk is one sentence, found before anything boots.
        let gone = parse_domu(&format!(
            "{},ramdisk={}",
            k.display(),
            dir.join("gone").display()
        ))
        .unwrap();
        for result in [
            check(&gone, 1),
            super::modules(std::slice::from_ref(&gone)).map(drop),
        ] {
            match result {
                Err(e @ Error::RamdiskMissing { .. }) => {
                    let message = e.to_string();
                    assert!(message.contains("gone"), "{message}");
                    assert!(!message.contains('\n'), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        let dir_as_ramdisk =
            parse_domu(&format!("{},ramdisk={}", k.display(), dir.display())).unwrap();
        assert!(matches!(
            check(&dir_as_ramdisk, 1),
            Err(Error::RamdiskMissing { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kernels_must_be_elf_files() {
        let dir = scratch_dir("elf");
        let text = dir.join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let short = dir.join("short");
        std::fs::write(&short, b"\x7fEL").unwrap();
        let elf = dir.join("kernel");
        std::fs::write(&elf, b"\x7fELF\x02\x01\x01").unwrap();
        assert!(matches!(check_kernel(&text), Err(Error::NotElf { .. })));
        assert!(matches!(check_kernel(&short), Err(Error::NotElf { .. })));
        assert!(check_kernel(&elf).is_ok());
        assert!(matches!(
            check_kernel(&dir.join("missing")),
            Err(Error::KernelMissing { .. })
        ));
        assert!(matches!(
            check_kernel(&dir),
            Err(Error::KernelMissing { .. })
        ));
        assert!(matches!(
            modules(&[DomU::new(&text)]),
            Err(Error::NotElf { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn scratch_dir(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-domains-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
