//! Domains to boot: Dom0 first, then DomUs given as
//! `PATH[,mem=MiB,vcpus=N,cmdline=...]`, turned into the GRUB modules and
//! module strings (the hypervisor's boot manifest) that name them.

use std::path::{Path, PathBuf};

use crate::bare_metal;
use crate::error::{Error, Result};

/// The kernel `cargo xtask run` boots beside Dom0 when no DomU is named.
pub const DEMO_DOMU: &str = "hello";

/// A DomU to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomU {
    pub kernel: PathBuf,
    pub mem_mib: Option<u32>,
    pub vcpus: Option<u32>,
    pub cmdline: Option<String>,
}

/// Parses `PATH[,mem=MiB,vcpus=N,cmdline=...]`; `cmdline=` takes the rest
/// of the argument, commas included.
pub fn parse_domu(arg: &str) -> Result<DomU> {
    let bad = |reason: &str| Error::BadDomu {
        arg: arg.to_owned(),
        reason: reason.to_owned(),
    };
    let (path, mut rest) = match arg.split_once(',') {
        Some((p, r)) => (p, Some(r)),
        None => (arg, None),
    };
    if path.is_empty() {
        return Err(bad("no kernel path"));
    }
    let mut domu = DomU {
        kernel: PathBuf::from(path),
        mem_mib: None,
        vcpus: None,
        cmdline: None,
    };
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
            .ok_or_else(|| bad(&format!("'{item}' is not key=value")))?;
        let number = |what: &str| -> Result<u32> {
            value
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| bad(&format!("{what} must be a positive number")))
        };
        match key {
            "mem" => domu.mem_mib = Some(number("mem")?),
            "vcpus" => domu.vcpus = Some(number("vcpus")?),
            other => return Err(bad(&format!("unknown option '{other}'"))),
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
        .take(32)
        .collect();
    if name.is_empty() {
        format!("domu{index}")
    } else {
        name
    }
}

/// The module string for DomU number `index` (1-based).
pub fn module_string(domu: &DomU, index: usize) -> String {
    let mut s = format!("name={}", domain_name(&domu.kernel, index));
    if let Some(mem) = domu.mem_mib {
        s.push_str(&format!(" mem={mem}"));
    }
    if let Some(vcpus) = domu.vcpus {
        s.push_str(&format!(" vcpus={vcpus}"));
    }
    if let Some(cmdline) = domu.cmdline.as_deref().filter(|c| !c.is_empty()) {
        s.push_str(&format!(" cmdline={cmdline}"));
    }
    s
}

/// Checks that the kernel exists and is an ELF file.
pub fn check_kernel(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|_| Error::ModuleMissing {
        path: path.to_owned(),
    })?;
    if !bytes.starts_with(b"\x7fELF") {
        return Err(Error::NotElf {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Dom0's module.
pub fn dom0_module() -> (PathBuf, String) {
    (bare_metal::artifact("dom0"), "name=dom0".to_owned())
}

/// GRUB modules for Dom0 and `domus`, in domain-id order.
pub fn modules(domus: &[DomU]) -> Result<Vec<(PathBuf, String)>> {
    let mut modules = vec![dom0_module()];
    for (i, domu) in domus.iter().enumerate() {
        check_kernel(&domu.kernel)?;
        modules.push((domu.kernel.clone(), module_string(domu, i + 1)));
    }
    Ok(modules)
}

/// A test kernel built by this project, as a DomU.
pub fn test_kernel(name: &str) -> DomU {
    DomU {
        kernel: bare_metal::artifact(name),
        mem_mib: None,
        vcpus: None,
        cmdline: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domu_arguments() {
        assert_eq!(
            parse_domu("k.elf").unwrap(),
            DomU {
                kernel: "k.elf".into(),
                mem_mib: None,
                vcpus: None,
                cmdline: None
            }
        );
        let d = parse_domu("/x/k,mem=24,vcpus=2,cmdline=a b,c=d").unwrap();
        assert_eq!(
            (d.mem_mib, d.vcpus, d.cmdline.as_deref()),
            (Some(24), Some(2), Some("a b,c=d"))
        );
        assert!(parse_domu("").is_err());
        assert!(parse_domu("k,mem=lots").is_err());
        assert!(parse_domu("k,mem=0").is_err());
        assert!(parse_domu("k,colour=red").is_err());
        assert!(parse_domu("k,mem").is_err());
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
    }

    #[test]
    fn kernels_must_be_elf() {
        let dir = std::env::temp_dir().join(format!("xtask-domains-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        assert!(matches!(check_kernel(&text), Err(Error::NotElf { .. })));
        assert!(matches!(
            check_kernel(&dir.join("missing")),
            Err(Error::ModuleMissing { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
