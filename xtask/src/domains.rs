//! Domains to boot: Dom0 first, then DomUs given as
//! `PATH[,name=NAME,mem=MiB,vcpus=N,ramdisk=PATH,disk=IMG[:ro]...,vif[=MAC]...,cmdline=...]`,
//! turned into the GRUB modules and module strings (the hypervisor's boot
//! manifest) that name them, into the disks the machine attaches with
//! the `pavise.vbd=` words that tell Dom0 whose they are, and into the
//! `pavise.vif=` words that give Dom0 their network interfaces (with
//! `pavise.uplink=` when the machine has an uplink; see [`crate::net`]).

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use crate::bare_metal;
use crate::disk::{self, Disk};
use crate::error::{Error, Result};
use crate::net::{self, Interface, Mac, Uplink, Vif};

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

/// The word on Dom0's command line that gives it one DomU disk:
/// `pavise.vbd=DOMID:DEV:MODE:SLOT` (see [`vbd_words`]).
pub const VBD_WORD: &str = "pavise.vbd=";

/// What `disk=` takes after the image to make the disk read-only.
pub const READ_ONLY_SUFFIX: &str = ":ro";

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
    /// Its virtual disks, in order: `xvda`, `xvdb`, … (see [`crate::disk`]).
    pub disks: Vec<Disk>,
    /// Its network interfaces, in order: handle 0, 1, … (see
    /// [`crate::net`]).
    pub vifs: Vec<Vif>,
}

impl DomU {
    /// `kernel` with the hypervisor's defaults (16 MiB, one vCPU, no
    /// command line, no disks, no network interfaces), named after its
    /// file.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        Self {
            kernel: kernel.into(),
            name: None,
            mem_mib: None,
            vcpus: None,
            cmdline: None,
            ramdisk: None,
            disks: Vec::new(),
            vifs: Vec::new(),
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

/// Parses `PATH[,name=NAME,mem=MiB,vcpus=N,ramdisk=PATH,disk=IMG[:ro],vif[=MAC],cmdline=...]`;
/// `disk=` may be given up to [`disk::MAX_DISKS_PER_DOMAIN`] times (the
/// first is `xvda`, then `xvdb`, …; `:ro` makes it read-only), `vif` or
/// `vif=MAC` up to [`net::MAX_VIFS_PER_DOMAIN`] times (handle 0, 1, …;
/// without a MAC, [`Mac::xen_default`] for its domain and handle), and
/// `cmdline=` takes the rest of the argument, commas included. Values are
/// checked against the hypervisor's limits and MACs as [`Mac`] reads them;
/// the disk images, and whether two interfaces share a MAC, are checked
/// later ([`check`], [`check_vifs`]).
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
        if item == "vif" {
            push_vif(&mut domu, Vif::new(), &bad)?;
            continue;
        }
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
            "disk" => {
                let (image, readonly) = match value.strip_suffix(READ_ONLY_SUFFIX) {
                    Some(image) => (image, true),
                    None => (value, false),
                };
                if image.is_empty() {
                    return Err(bad(
                        "disk= needs an image file, as disk=IMG or disk=IMG:ro".to_owned()
                    ));
                }
                if domu.disks.len() == disk::MAX_DISKS_PER_DOMAIN {
                    return Err(bad(format!(
                        "a DomU can have at most {} disks (xvda to xvdp)",
                        disk::MAX_DISKS_PER_DOMAIN
                    )));
                }
                domu.disks.push(Disk {
                    path: PathBuf::from(image),
                    readonly,
                });
                false
            }
            "vif" => {
                if value.is_empty() {
                    return Err(bad(
                        "vif= needs a MAC address, as vif=00:16:3e:00:01:00, or write vif alone for a default one"
                            .to_owned(),
                    ));
                }
                let mac: Mac = value.parse().map_err(|reason| Error::BadMac {
                    arg: arg.to_owned(),
                    reason,
                })?;
                push_vif(&mut domu, Vif::with_mac(mac), &bad)?;
                false
            }
            other => {
                return Err(bad(format!(
                    "unknown option '{other}' (known: name=, mem=, vcpus=, ramdisk=, disk=, vif, vif=, cmdline=)"
                )));
            }
        };
        if slot_taken {
            return Err(bad(format!("{key}= is given twice")));
        }
    }
    Ok(domu)
}

/// Adds `vif` to `domu`'s interfaces, unless it has as many as fit.
fn push_vif(domu: &mut DomU, vif: Vif, bad: &dyn Fn(String) -> Error) -> Result<()> {
    if domu.vifs.len() == net::MAX_VIFS_PER_DOMAIN {
        return Err(bad(format!(
            "a DomU can have at most {} network interfaces",
            net::MAX_VIFS_PER_DOMAIN
        )));
    }
    domu.vifs.push(vif);
    Ok(())
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
/// kernel is an ELF file, its ramdisk a file, its disks usable images
/// ([`disk::check_all`]; whether another DomU's disks clash with them is
/// for [`check_disks`]), its interfaces have MACs of their own (against
/// other DomUs' too: [`check_vifs`]), and GRUB can carry its module
/// string unchanged.
pub fn check(domu: &DomU, index: usize) -> Result<()> {
    check_kernel(&domu.kernel)?;
    if let Some(ramdisk) = &domu.ramdisk {
        check_ramdisk(ramdisk)?;
    }
    disk::check_all(&domu.disks)?;
    let interfaces = domain_interfaces(domu, index).collect::<Result<Vec<_>>>()?;
    net::check_unique(&interfaces, false)?;
    crate::grub::quote(&module_string(domu, index))?;
    Ok(())
}

/// DomU number `index`'s interfaces, their MACs settled.
fn domain_interfaces(domu: &DomU, index: usize) -> impl Iterator<Item = Result<Interface>> + '_ {
    domu.vifs
        .iter()
        .enumerate()
        .map(move |(handle, vif)| Interface::resolve(index, handle, *vif))
}

/// Every DomU's network interfaces, in order: d1's handle 0, 1, …, then
/// d2's, and so on (domain ids as the hypervisor numbers boot-time DomUs:
/// their place in `domus`, from 1), each with its MAC: the one given, or
/// [`Mac::xen_default`]. An error when an interface has neither.
pub fn interfaces(domus: &[DomU]) -> Result<Vec<Interface>> {
    domus
        .iter()
        .enumerate()
        .flat_map(|(i, domu)| domain_interfaces(domu, i + 1))
        .collect()
}

/// Checks all of `domus`' interfaces together, and with the uplink NIC
/// when the machine has one: each has a MAC, and no two the same.
pub fn check_vifs(domus: &[DomU], uplink: Option<&Uplink>) -> Result<()> {
    net::check_unique(&interfaces(domus)?, uplink.is_some())
}

/// The words that give Dom0 the DomUs' network interfaces, one per
/// interface in [`interfaces`] order: `pavise.vif=DOMID:HANDLE:MAC`, the
/// MAC written with `-` (`:` separates the fields), e.g.
/// `pavise.vif=1:0:00-16-3e-00-01-00`. An interface without a MAC
/// (refused by [`check_vifs`]) gets no word.
pub fn vif_words(domus: &[DomU]) -> Vec<String> {
    domus
        .iter()
        .enumerate()
        .flat_map(|(i, domu)| domain_interfaces(domu, i + 1))
        .filter_map(|interface| interface.ok().map(|i| i.dom0_word()))
        .collect()
}

/// Every DomU's disks, in the order the machine attaches them (the k-th is
/// in PCI slot [`disk::pci_slot`]`(k)`): d1's `xvda`, `xvdb`, …, then
/// d2's, and so on. What [`crate::Machine::disks`] must be for `domus`.
pub fn disks(domus: &[DomU]) -> Vec<Disk> {
    domus.iter().flat_map(|d| d.disks.iter().cloned()).collect()
}

/// Checks all of `domus`' disks together (see [`disk::check_all`]): each
/// image usable, no more than fit, no image written through two disks.
pub fn check_disks(domus: &[DomU]) -> Result<()> {
    Ok(disk::check_all(&disks(domus))?)
}

/// The words that tell Dom0 which disk is whose, one per disk in
/// [`disks`] order: `pavise.vbd=DOMID:DEV:MODE:SLOT`, DOMID the DomU's
/// domain id (its place in `domus`, from 1, as the hypervisor numbers
/// boot-time DomUs), DEV `xvda`…, MODE `w` or `r`, SLOT the PCI device
/// number (bus 0, function 0) in hex, e.g. `pavise.vbd=1:xvda:w:10`.
/// Disks beyond what fits ([`disk::MAX_DISKS`], refused by [`check_disks`])
/// get no word.
pub fn vbd_words(domus: &[DomU]) -> Vec<String> {
    domus
        .iter()
        .enumerate()
        .flat_map(|(i, domu)| {
            domu.disks
                .iter()
                .enumerate()
                .map(move |(j, d)| (i + 1, j, d))
        })
        .enumerate()
        .map_while(|(k, (domid, j, d))| {
            let slot = disk::pci_slot(k)?;
            let dev = disk::device_name(j)?;
            let mode = if d.readonly { 'r' } else { 'w' };
            Some(format!("{VBD_WORD}{domid}:{dev}:{mode}:{slot:x}"))
        })
        .collect()
}

/// Dom0's command line for `domus` on a machine without an uplink: see
/// [`dom0_cmdline_for`].
pub fn dom0_cmdline(domus: &[DomU]) -> String {
    dom0_cmdline_for(domus, None)
}

/// Dom0's command line for `domus` on a machine with `uplink` (its
/// [`crate::Machine::net`]): their [`vbd_words`], then their
/// [`vif_words`], then the uplink's `pavise.uplink=SLOT` when there is
/// one, space-separated (the hypervisor appends its `pavise.domu=`
/// words).
pub fn dom0_cmdline_for(domus: &[DomU], uplink: Option<&Uplink>) -> String {
    let mut words = vbd_words(domus);
    words.extend(vif_words(domus));
    words.extend(uplink.map(Uplink::dom0_word));
    words.join(" ")
}

/// Dom0's module, when no DomU has a disk or an interface and the machine
/// has no uplink.
pub fn dom0_module() -> (PathBuf, String) {
    dom0_module_for(&[])
}

/// Dom0's module for booting beside `domus` on a machine without an
/// uplink: see [`dom0_module_with`].
pub fn dom0_module_for(domus: &[DomU]) -> (PathBuf, String) {
    dom0_module_with(domus, None)
}

/// Dom0's module for booting beside `domus` on a machine with `uplink`:
/// `name=dom0`, and `cmdline=` with [`dom0_cmdline_for`] when there is
/// something to say.
pub fn dom0_module_with(domus: &[DomU], uplink: Option<&Uplink>) -> (PathBuf, String) {
    let mut string = "name=dom0".to_owned();
    let cmdline = dom0_cmdline_for(domus, uplink);
    if !cmdline.is_empty() {
        string.push_str(" cmdline=");
        string.push_str(&cmdline);
    }
    (bare_metal::artifact("dom0"), string)
}

/// Dom0's module string `string` (as [`dom0_module_with`] makes it) with
/// `mem=MIB`, which the hypervisor gives Dom0 instead of its default.
pub fn with_dom0_mem(string: &str, mib: u32) -> String {
    match string.strip_prefix("name=dom0") {
        Some(rest) => format!("name=dom0 mem={mib}{rest}"),
        None => format!("mem={mib} {string}"),
    }
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

/// GRUB modules for Dom0 and `domus` on a machine without an uplink: see
/// [`modules_with`].
pub fn modules(domus: &[DomU]) -> Result<Vec<(PathBuf, String)>> {
    modules_with(domus, None)
}

/// GRUB modules for Dom0 ([`dom0_module_with`]) and `domus`, in domain-id
/// order (see [`domain_modules`]), for a machine with `uplink`; each
/// DomU's kernel and ramdisk are checked first, then all their disks
/// ([`check_disks`]) and interfaces ([`check_vifs`]). The machine must
/// attach [`disks`]`(domus)` for Dom0's `pavise.vbd=` words to hold, and
/// have `uplink` as its [`crate::Machine::net`] for `pavise.uplink=`.
pub fn modules_with(domus: &[DomU], uplink: Option<&Uplink>) -> Result<Vec<(PathBuf, String)>> {
    let mut modules = vec![dom0_module_with(domus, uplink)];
    for (i, domu) in domus.iter().enumerate() {
        check_kernel(&domu.kernel)?;
        if let Some(ramdisk) = &domu.ramdisk {
            check_ramdisk(ramdisk)?;
        }
        modules.extend(domain_modules(domu, i + 1));
    }
    check_disks(domus)?;
    check_vifs(domus, uplink)?;
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
    fn dom0_mem_goes_before_the_command_line() {
        assert_eq!(
            with_dom0_mem("name=dom0 cmdline=a mem=3", 64),
            "name=dom0 mem=64 cmdline=a mem=3"
        );
        assert_eq!(with_dom0_mem("name=dom0", 64), "name=dom0 mem=64");
    }

    #[test]
    fn a_bare_path_takes_the_defaults() {
        assert_eq!(parse_domu("k.elf").unwrap(), DomU::new("k.elf"));
        assert_eq!(
            parse_domu("/x/dir,with,commas").map_err(|e| e.to_string()),
            Err("bad --domu '/x/dir,with,commas': 'with' is not key=value \
                 (expected PATH[,name=NAME,mem=MiB,vcpus=N,ramdisk=PATH,disk=IMG[:ro],vif[=MAC],cmdline=...])"
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
                "unknown option 'colour' (known: name=, mem=, vcpus=, ramdisk=, disk=, vif, vif=, cmdline=)",
            ),
            ("k,ramdisk=", "ramdisk= needs a file"),
            ("k,ramdisk=a,ramdisk=b", "ramdisk= is given twice"),
            ("k,mem", "'mem' is not key=value"),
            ("k,mem=4,", "'' is not key=value"),
            ("k,mem=4,mem=8", "mem= is given twice"),
            ("k,name=a,name=b", "name= is given twice"),
            ("k,disk=", "disk= needs an image file"),
            ("k,disk=:ro", "disk= needs an image file"),
            ("k,disk=a.img,disk=,name=x", "disk= needs an image file"),
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

    #[test]
    fn disks_are_read_in_order() {
        let d = parse_domu("/x/k,disk=/d/root.img,name=web,disk=data.img:ro,disk=a:b.img,mem=32")
            .unwrap();
        assert_eq!(
            d.disks,
            [
                Disk::new("/d/root.img"),
                Disk::read_only("data.img"),
                Disk::new("a:b.img"),
            ]
        );
        assert_eq!((d.name.as_deref(), d.mem_mib), (Some("web"), Some(32)));
        // The disks stay out of the module string: Dom0, not the
        // hypervisor, serves them.
        assert_eq!(module_string(&d, 1), "name=web mem=32");
        // After cmdline=, disk= is part of the command line.
        let d = parse_domu("k,disk=a.img,cmdline=root=/dev/xvda disk=b.img").unwrap();
        assert_eq!(
            (d.disks, d.cmdline.as_deref()),
            (vec![Disk::new("a.img")], Some("root=/dev/xvda disk=b.img"))
        );
        assert!(parse_domu("k").unwrap().disks.is_empty());
        // Sixteen fit (xvda to xvdp), a seventeenth does not.
        let sixteen: String = (0..16).map(|i| format!(",disk=d{i}.img")).collect();
        assert_eq!(parse_domu(&format!("k{sixteen}")).unwrap().disks.len(), 16);
        match parse_domu(&format!("k{sixteen},disk=more.img")) {
            Err(e @ Error::BadDomu { .. }) => {
                let message = e.to_string();
                assert!(
                    message.contains("a DomU can have at most 16 disks (xvda to xvdp)"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dom0_learns_whose_disks_are_where() {
        let domus = [
            parse_domu("/t/linux,disk=/d/root.img,disk=/d/data.img:ro").unwrap(),
            parse_domu("/t/plain").unwrap(),
            parse_domu("/t/other,disk=/d/other.img").unwrap(),
        ];
        assert_eq!(
            vbd_words(&domus),
            [
                "pavise.vbd=1:xvda:w:10",
                "pavise.vbd=1:xvdb:r:11",
                "pavise.vbd=3:xvda:w:12"
            ]
        );
        assert_eq!(
            disks(&domus),
            [
                Disk::new("/d/root.img"),
                Disk::read_only("/d/data.img"),
                Disk::new("/d/other.img"),
            ]
        );
        let (path, string) = dom0_module_for(&domus);
        assert!(path.ends_with("release/dom0"));
        assert_eq!(
            string,
            "name=dom0 cmdline=pavise.vbd=1:xvda:w:10 pavise.vbd=1:xvdb:r:11 pavise.vbd=3:xvda:w:12"
        );
        assert_eq!(crate::grub::quote(&string).unwrap(), string);
        // Without disks Dom0's module is as before.
        assert_eq!(dom0_module_for(&domus[1..2]), dom0_module());
        assert_eq!(dom0_module().1, "name=dom0");
        // The slots are those of the machine's QEMU devices.
        let args: Vec<String> = disk::qemu_args(&disks(&domus), false)
            .unwrap()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for (k, word) in vbd_words(&domus).iter().enumerate() {
            let slot = word.rsplit(':').next().unwrap();
            assert_eq!(
                args[4 * k + 3],
                format!("virtio-blk-pci,drive=vd{k},addr=0x{slot}")
            );
        }
        // Slots run out after fifteen disks (refused by check_disks).
        let many = vec![
            parse_domu(&format!(
                "/t/k{}",
                (0..16)
                    .map(|i| format!(",disk=d{i}.img"))
                    .collect::<String>()
            ))
            .unwrap(),
        ];
        let words = vbd_words(&many);
        assert_eq!(words.len(), 15);
        assert_eq!(words[14], "pavise.vbd=1:xvdo:w:1e");
    }

    #[test]
    fn disks_are_checked_with_their_domains() {
        let dir = scratch_dir("disks");
        let k = dir.join("k");
        std::fs::write(&k, b"\x7fELF\x02\x01").unwrap();
        let image = dir.join("root.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let domus = [
            parse_domu(&format!("{},name=a,disk={}", k.display(), image.display())).unwrap(),
            parse_domu(&format!("{},name=b", k.display())).unwrap(),
        ];
        assert!(check(&domus[0], 1).is_ok());
        let modules = modules(&domus).unwrap();
        let strings: Vec<&str> = modules.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            strings,
            [
                "name=dom0 cmdline=pavise.vbd=1:xvda:w:10",
                "name=a",
                "name=b"
            ]
        );

        // A bad image is one sentence, found before anything boots.
        let gone = dir.join("gone.img");
        let bad = parse_domu(&format!("{},disk={}", k.display(), gone.display())).unwrap();
        for result in [
            check(&bad, 1),
            super::modules(std::slice::from_ref(&bad)).map(drop),
        ] {
            let message = result.unwrap_err().to_string();
            assert!(
                message.contains(&format!("disk image {} does not exist", gone.display())),
                "{message}"
            );
            assert!(!message.contains('\n'), "{message}");
        }

        // Two DomUs writing one image are refused; reading it is fine.
        let twice = [
            domus[0].clone(),
            parse_domu(&format!("{},name=c,disk={}", k.display(), image.display())).unwrap(),
        ];
        assert!(check(&twice[1], 2).is_ok());
        let message = check_disks(&twice).unwrap_err().to_string();
        assert!(message.contains("is attached twice"), "{message}");
        assert!(super::modules(&twice).is_err());
        let readers = [
            parse_domu(&format!("{},disk={}:ro", k.display(), image.display())).unwrap(),
            parse_domu(&format!("{},disk={}:ro", k.display(), image.display())).unwrap(),
        ];
        assert!(check_disks(&readers).is_ok());
        assert_eq!(
            dom0_cmdline(&readers),
            "pavise.vbd=1:xvda:r:10 pavise.vbd=2:xvda:r:11"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn interfaces_are_read_in_order() {
        let d = parse_domu("/x/k,vif,name=web,vif=00:16:3E:AA:BB:CC,disk=a.img,vif").unwrap();
        assert_eq!(
            d.vifs,
            [
                Vif::new(),
                Vif::with_mac(Mac([0x00, 0x16, 0x3e, 0xaa, 0xbb, 0xcc])),
                Vif::new(),
            ]
        );
        assert_eq!((d.name.as_deref(), d.disks.len()), (Some("web"), 1));
        // The interfaces stay out of the module string: Dom0 serves them.
        assert_eq!(module_string(&d, 1), "name=web");
        // After cmdline=, vif is part of the command line.
        let d = parse_domu("k,vif,cmdline=ip=dhcp vif").unwrap();
        assert_eq!(
            (d.vifs, d.cmdline.as_deref()),
            (vec![Vif::new()], Some("ip=dhcp vif"))
        );
        assert!(parse_domu("k").unwrap().vifs.is_empty());
        // Sixteen fit (handles 0 to 15), a seventeenth does not.
        let sixteen = ",vif".repeat(16);
        assert_eq!(parse_domu(&format!("k{sixteen}")).unwrap().vifs.len(), 16);
        let message = parse_domu(&format!("k{sixteen},vif=00:16:3e:00:00:01"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("a DomU can have at most 16 network interfaces"),
            "{message}"
        );
    }

    #[test]
    fn bad_macs_are_refused_with_the_reason() {
        for (arg, message) in [
            (
                "k,vif=00:16:3e:00:01",
                "bad --domu 'k,vif=00:16:3e:00:01': '00:16:3e:00:01' is not a MAC address; \
                 write six two-digit hex numbers separated by ':', e.g. 00:16:3e:00:01:00 \
                 (or write vif alone for a default MAC)",
            ),
            (
                "k,vif=01:16:3e:00:01:00",
                "bad --domu 'k,vif=01:16:3e:00:01:00': 01:16:3e:00:01:00 is a multicast address \
                 (the lowest bit of its first byte is set), which no interface can have; \
                 use a unicast one such as 00:16:3e:00:01:00 (or write vif alone for a default MAC)",
            ),
            (
                "k,vif=00:00:00:00:00:00",
                "bad --domu 'k,vif=00:00:00:00:00:00': 00:00:00:00:00:00 is not an interface's address; \
                 use a real one, e.g. 00:16:3e:00:01:00 (or write vif alone for a default MAC)",
            ),
            (
                "k,vif=00-16-3e-00-01-00",
                "'00-16-3e-00-01-00' is not a MAC address",
            ),
        ] {
            let e = parse_domu(arg).unwrap_err();
            assert!(matches!(e, Error::BadMac { .. }), "{arg}: {e:?}");
            let got = e.to_string();
            assert!(got.contains(message), "{arg}: {got}");
            assert!(!got.contains('\n'));
        }
        let e = parse_domu("k,vif=").unwrap_err().to_string();
        assert!(
            e.contains(
                "vif= needs a MAC address, as vif=00:16:3e:00:01:00, or write vif alone for a default one"
            ),
            "{e}"
        );
    }

    #[test]
    fn dom0_learns_the_interfaces_and_the_uplink() {
        let domus = [
            parse_domu("/t/hello,vif,disk=/d/a.img").unwrap(),
            parse_domu("/t/hello,vif=00:16:3e:aa:bb:cc,vif").unwrap(),
            parse_domu("/t/plain").unwrap(),
        ];
        assert_eq!(
            vif_words(&domus),
            [
                "pavise.vif=1:0:00-16-3e-00-01-00",
                "pavise.vif=2:0:00-16-3e-aa-bb-cc",
                "pavise.vif=2:1:00-16-3e-00-02-01",
            ]
        );
        let interfaces = interfaces(&domus).unwrap();
        assert_eq!(
            interfaces
                .iter()
                .map(|i| (i.domid, i.handle, i.given))
                .collect::<Vec<_>>(),
            [(1, 0, false), (2, 0, true), (2, 1, false)]
        );
        assert_eq!(
            dom0_cmdline(&domus),
            "pavise.vbd=1:xvda:w:10 pavise.vif=1:0:00-16-3e-00-01-00 \
             pavise.vif=2:0:00-16-3e-aa-bb-cc pavise.vif=2:1:00-16-3e-00-02-01"
        );
        let uplink = Uplink::default();
        let (path, string) = dom0_module_with(&domus, Some(&uplink));
        assert!(path.ends_with("release/dom0"));
        assert_eq!(
            string,
            "name=dom0 cmdline=pavise.vbd=1:xvda:w:10 pavise.vif=1:0:00-16-3e-00-01-00 \
             pavise.vif=2:0:00-16-3e-aa-bb-cc pavise.vif=2:1:00-16-3e-00-02-01 pavise.uplink=8"
        );
        assert_eq!(crate::grub::quote(&string).unwrap(), string);
        assert_eq!(dom0_module_for(&domus), dom0_module_with(&domus, None));
        // An uplink alone is worth a command line.
        assert_eq!(
            dom0_module_with(&domus[2..], Some(&uplink)).1,
            "name=dom0 cmdline=pavise.uplink=8"
        );
        assert_eq!(dom0_module_with(&domus[2..], None), dom0_module());
        assert!(check_vifs(&domus, Some(&uplink)).is_ok());
    }

    #[test]
    fn a_mac_is_given_to_one_interface() {
        // d2's given MAC is d1's default.
        let domus = [
            parse_domu("/t/a,vif").unwrap(),
            parse_domu("/t/b,vif=00:16:3e:00:01:00").unwrap(),
        ];
        let message = check_vifs(&domus, None).unwrap_err().to_string();
        assert_eq!(
            message,
            "two interfaces have the MAC 00:16:3e:00:01:00: vif1.0 (d1's interface 0, default MAC) \
             and vif2.0 (d2's interface 0); give each interface a MAC of its own with vif=MAC \
             (or write vif alone for the default, 00:16:3e:00:DOMID:HANDLE)"
        );
        // Within one DomU, found by its own check.
        let twice = parse_domu("/t/a,vif=00:16:3e:aa:bb:cc,vif=00:16:3E:AA:BB:CC").unwrap();
        assert!(matches!(
            check_vifs(std::slice::from_ref(&twice), None),
            Err(Error::DuplicateMac { .. })
        ));
        let dir = scratch_dir("vifs");
        let k = dir.join("k");
        std::fs::write(&k, b"\x7fELF\x02\x01").unwrap();
        let mut own = twice.clone();
        own.kernel = k.clone();
        let message = check(&own, 1).unwrap_err().to_string();
        assert!(
            message.contains("vif1.0 (d1's interface 0) and vif1.1"),
            "{message}"
        );
        // And when the modules are made, against the uplink NIC too.
        let domus = [parse_domu(&format!("{},vif=52:54:00:12:34:56", k.display())).unwrap()];
        assert!(modules(&domus).is_ok());
        let message = modules_with(&domus, Some(&Uplink::default()))
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("two interfaces have the MAC 52:54:00:12:34:56: the uplink NIC"),
            "{message}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn scratch_dir(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-domains-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
