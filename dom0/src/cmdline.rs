//! What Dom0's command line tells it: one `pavise.domu=ID:NAME:MEM_MIB:VCPUS`
//! word per boot-time DomU (the hypervisor built them, so Dom0's toolstack
//! has no other record of their names and sizes); one
//! `pavise.vbd=DOMID:DEV:MODE:SLOT` word per virtual disk (xtask attached
//! the images as virtio-blk PCI devices; this says which DomU gets which);
//! one `pavise.vif=DOMID:HANDLE:MAC` word per DomU network interface
//! (Xen's `vifDOMID.HANDLE`; the MAC is written with `-` between its
//! bytes, `00-16-3e-00-01-00`, because `:` separates the fields); and at
//! most one `pavise.uplink=SLOT`, the PCI slot (hex) of the virtio-net NIC
//! xtask gave the machine for its uplink; one `pavise.disk=NAME:SLOT` word
//! per disk attached for the toolstack (configs created at run time name
//! it by its file name in `disk = [...]`). Other words are not ours and are
//! passed over; a malformed word of ours is skipped with a reason.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use pv_abi::hypercall::DOMID_FIRST_RESERVED;

use crate::store::DomId;

/// The word's prefix.
pub const DOMU_WORD: &str = "pavise.domu=";
/// The prefix of a disk's word.
pub const VBD_WORD: &str = "pavise.vbd=";
/// The prefix of a network interface's word.
pub const VIF_WORD: &str = "pavise.vif=";
/// The prefix of a disk held for the toolstack.
pub const DISK_WORD: &str = "pavise.disk=";
/// The prefix of the uplink NIC's word.
pub const UPLINK_WORD: &str = "pavise.uplink=";
/// The prefix of the control channel's word: the PCI slot (hex) of the
/// virtio console `cargo xtask xl` talks to.
pub const CONTROL_WORD: &str = "pavise.control=";
/// Highest interface handle accepted (xtask gives a DomU at most 16; its
/// default MACs hold the handle in one byte).
pub const VIF_HANDLE_MAX: u32 = 255;
/// Disks one DomU can have: `xvda` to `xvdp`.
pub const VBD_DEVS_MAX: usize = 16;
/// Highest PCI device number on a bus.
pub const PCI_SLOT_MAX: u8 = 0x1f;
/// Longest name accepted (Xen's toolstack has no hard limit; a name is a
/// XenStore value, so this only keeps it printable on one line).
pub const NAME_MAX: usize = 64;
/// Most vCPUs a DomU may have (Xen's `HVM_MAX_VCPUS`).
pub const VCPUS_MAX: u32 = 128;

/// One boot-time DomU, as the hypervisor's manifest described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomuSpec {
    pub domid: DomId,
    pub name: String,
    pub mem_mib: u32,
    pub vcpus: u32,
}

/// One virtual disk: DomU `domid` sees it as `dev` (`xvda`…`xvdp`); it
/// is the virtio-blk device in PCI slot `pci_slot` of bus 0, function 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VbdSpec {
    pub domid: DomId,
    pub dev: String,
    pub readonly: bool,
    pub pci_slot: u8,
}

/// One DomU network interface: interface `handle` of DomU `domid` (the
/// frontend's `device/vif/HANDLE`), whose MAC address is `mac`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VifSpec {
    pub domid: DomId,
    pub handle: u32,
    pub mac: [u8; 6],
}

/// A disk the toolstack may give a domain it creates: the image's file
/// name on the host, and the virtio-blk device's PCI slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedDisk {
    pub name: String,
    pub pci_slot: u8,
}

/// A `pavise.domu=`, `pavise.vbd=`, `pavise.vif=` or `pavise.uplink=`
/// word that was skipped, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadDomuWord {
    pub word: String,
    pub reason: &'static str,
}

impl fmt::Display for BadDomuWord {
    /// One sentence, ready to print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dom0: ignoring '{}' on the command line: {}",
            self.word, self.reason
        )
    }
}

/// Exactly `N` `:`-separated fields, or `None`.
fn fields<const N: usize>(value: &str) -> Option<[&str; N]> {
    let mut parts = value.split(':');
    let mut out = [""; N];
    for slot in &mut out {
        *slot = parts.next()?;
    }
    parts.next().is_none().then_some(out)
}

fn parse_word(value: &str) -> Result<DomuSpec, &'static str> {
    let Some([id, name, mem, vcpus]) = fields(value) else {
        return Err("it must be ID:NAME:MEM_MIB:VCPUS");
    };
    let domid = parse_domid(id)?;
    if name.is_empty() || name.len() > NAME_MAX || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the name must be 1 to 64 printable characters without spaces");
    }
    let mem_mib: u32 = mem.parse().map_err(|_| "the memory size is not a number")?;
    if mem_mib == 0 {
        return Err("the memory size must be at least 1 MiB");
    }
    let vcpus: u32 = vcpus
        .parse()
        .map_err(|_| "the vCPU count is not a number")?;
    if vcpus == 0 || vcpus > VCPUS_MAX {
        return Err("the vCPU count must be between 1 and 128");
    }
    Ok(DomuSpec {
        domid,
        name: name.to_string(),
        mem_mib,
        vcpus,
    })
}

fn parse_domid(id: &str) -> Result<DomId, &'static str> {
    let domid: DomId = id.parse().map_err(|_| "the domain id is not a number")?;
    if domid == 0 || domid >= DOMID_FIRST_RESERVED {
        return Err("the domain id must be between 1 and 32751");
    }
    Ok(domid)
}

fn parse_vbd(value: &str) -> Result<VbdSpec, &'static str> {
    let Some([id, dev, mode, slot]) = fields(value) else {
        return Err("it must be DOMID:DEV:MODE:SLOT");
    };
    let domid = parse_domid(id)?;
    let valid_dev = match dev.as_bytes() {
        [b'x', b'v', b'd', letter] => (b'a'..b'a' + VBD_DEVS_MAX as u8).contains(letter),
        _ => false,
    };
    if !valid_dev {
        return Err("the device must be xvda to xvdp");
    }
    let readonly = match mode {
        "w" => false,
        "r" => true,
        _ => return Err("the mode must be w (read-write) or r (read-only)"),
    };
    let pci_slot = parse_slot(slot)?;
    Ok(VbdSpec {
        domid,
        dev: dev.to_string(),
        readonly,
        pci_slot,
    })
}

/// A PCI device number: one or two hex digits, at most [`PCI_SLOT_MAX`].
fn parse_slot(slot: &str) -> Result<u8, &'static str> {
    // Hex digits only (from_str_radix would take a sign too).
    (!slot.is_empty() && slot.len() <= 2 && slot.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u8::from_str_radix(slot, 16).ok())
        .flatten()
        .filter(|s| *s <= PCI_SLOT_MAX)
        .ok_or("the PCI slot must be a hex device number from 0 to 1f")
}

/// Six two-digit hex numbers separated by `-`, which an interface can
/// have (not a group address, not all zeros).
fn parse_mac(text: &str) -> Result<[u8; 6], &'static str> {
    let malformed = "the MAC must be six two-digit hex numbers separated by '-'";
    let mut mac = [0u8; 6];
    let mut pairs = text.split('-');
    for byte in &mut mac {
        let pair = pairs.next().ok_or(malformed)?;
        if pair.len() != 2 || !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed);
        }
        *byte = u8::from_str_radix(pair, 16).map_err(|_| malformed)?;
    }
    if pairs.next().is_some() {
        return Err(malformed);
    }
    if mac[0] & 1 != 0 {
        return Err("the MAC is a multicast address, which no interface can have");
    }
    if mac == [0; 6] {
        return Err("the MAC is all zeros");
    }
    Ok(mac)
}

fn parse_vif(value: &str) -> Result<VifSpec, &'static str> {
    let Some([id, handle, mac]) = fields(value) else {
        return Err("it must be DOMID:HANDLE:MAC");
    };
    let domid = parse_domid(id)?;
    let handle = (!handle.is_empty() && handle.bytes().all(|b| b.is_ascii_digit()))
        .then(|| handle.parse::<u32>().ok())
        .flatten()
        .filter(|h| *h <= VIF_HANDLE_MAX)
        .ok_or("the handle must be a number from 0 to 255")?;
    let mac = parse_mac(mac)?;
    Ok(VifSpec { domid, handle, mac })
}

/// The network interfaces named on `cmdline`, in order, and the words
/// that were skipped (malformed, or an interface of a domain, or a MAC,
/// already given).
pub fn vifs(cmdline: &str) -> (Vec<VifSpec>, Vec<BadDomuWord>) {
    let mut good: Vec<VifSpec> = Vec::new();
    let mut bad = Vec::new();
    for word in cmdline.split_ascii_whitespace() {
        let Some(value) = word.strip_prefix(VIF_WORD) else {
            continue;
        };
        let skipped = |reason| BadDomuWord {
            word: word.to_string(),
            reason,
        };
        match parse_vif(value) {
            Ok(spec)
                if good
                    .iter()
                    .any(|g| g.domid == spec.domid && g.handle == spec.handle) =>
            {
                bad.push(skipped("that domain's interface was already given"))
            }
            Ok(spec) if good.iter().any(|g| g.mac == spec.mac) => {
                bad.push(skipped("that MAC was already given"))
            }
            Ok(spec) => good.push(spec),
            Err(reason) => bad.push(skipped(reason)),
        }
    }
    (good, bad)
}

/// The PCI slot of the uplink NIC named on `cmdline` (the first good
/// `pavise.uplink=` word), and the words that were skipped (malformed, or
/// after the first).
pub fn uplink_checked(cmdline: &str) -> (Option<u8>, Vec<BadDomuWord>) {
    slot_checked(cmdline, UPLINK_WORD)
}

/// The held config files to `xl create` once Dom0 is up, in order
/// (`pavise.create=NAME`, written by `cargo xtask run --config`).
pub fn creates(cmdline: &str) -> impl Iterator<Item = &str> {
    cmdline
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("pavise.create="))
        .filter(|name| !name.is_empty())
}

/// The PCI slot of the control channel (`pavise.control=SLOT`), as
/// [`uplink_checked`] reads the uplink's.
pub fn control_checked(cmdline: &str) -> (Option<u8>, Vec<BadDomuWord>) {
    slot_checked(cmdline, CONTROL_WORD)
}

/// The one PCI slot (hex) a `prefix` word names: the last good word wins
/// and every other is reported.
fn slot_checked(cmdline: &str, prefix: &str) -> (Option<u8>, Vec<BadDomuWord>) {
    let mut slot = None;
    let mut bad = Vec::new();
    for word in cmdline.split_ascii_whitespace() {
        let Some(value) = word.strip_prefix(prefix) else {
            continue;
        };
        let skipped = |reason| BadDomuWord {
            word: word.to_string(),
            reason,
        };
        match parse_slot(value) {
            Ok(_) if slot.is_some() => bad.push(skipped("its slot was already given")),
            Ok(s) => slot = Some(s),
            Err(reason) => bad.push(skipped(reason)),
        }
    }
    (slot, bad)
}

/// The PCI slot of the uplink NIC named on `cmdline`, if any: what
/// [`uplink_checked`] finds, without the skipped words (use that to
/// report them).
pub fn uplink(cmdline: &str) -> Option<u8> {
    uplink_checked(cmdline).0
}

/// The virtual disks named on `cmdline`, in order, and the words that were
/// skipped (malformed, or a device of a domain, or a PCI slot, already
/// given).
pub fn vbds(cmdline: &str) -> (Vec<VbdSpec>, Vec<BadDomuWord>) {
    let mut good: Vec<VbdSpec> = Vec::new();
    let mut bad = Vec::new();
    for word in cmdline.split_ascii_whitespace() {
        let Some(value) = word.strip_prefix(VBD_WORD) else {
            continue;
        };
        let skipped = |reason| BadDomuWord {
            word: word.to_string(),
            reason,
        };
        match parse_vbd(value) {
            Ok(spec)
                if good
                    .iter()
                    .any(|g| g.domid == spec.domid && g.dev == spec.dev) =>
            {
                bad.push(skipped("that domain's device was already given"))
            }
            Ok(spec) if good.iter().any(|g| g.pci_slot == spec.pci_slot) => {
                bad.push(skipped("that PCI slot was already given"))
            }
            Ok(spec) => good.push(spec),
            Err(reason) => bad.push(skipped(reason)),
        }
    }
    (good, bad)
}

fn parse_named_disk(value: &str) -> Result<NamedDisk, &'static str> {
    let Some([name, slot]) = fields(value) else {
        return Err("it must be NAME:SLOT");
    };
    if name.is_empty() || name.len() > NAME_MAX || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the name must be 1 to 64 printable characters without spaces");
    }
    Ok(NamedDisk {
        name: name.to_string(),
        pci_slot: parse_slot(slot)?,
    })
}

/// The disks held for the toolstack (`pavise.disk=NAME:SLOT`), in order,
/// and the words that were skipped (malformed, or a name or slot already
/// given).
pub fn named_disks(cmdline: &str) -> (Vec<NamedDisk>, Vec<BadDomuWord>) {
    let mut good: Vec<NamedDisk> = Vec::new();
    let mut bad = Vec::new();
    for word in cmdline.split_ascii_whitespace() {
        let Some(value) = word.strip_prefix(DISK_WORD) else {
            continue;
        };
        let skipped = |reason| BadDomuWord {
            word: word.to_string(),
            reason,
        };
        match parse_named_disk(value) {
            Ok(d) if good.iter().any(|g| g.name == d.name) => {
                bad.push(skipped("a disk of that name was already given"))
            }
            Ok(d) if good.iter().any(|g| g.pci_slot == d.pci_slot) => {
                bad.push(skipped("that PCI slot was already given"))
            }
            Ok(d) => good.push(d),
            Err(reason) => bad.push(skipped(reason)),
        }
    }
    (good, bad)
}

/// The boot-time DomUs named on `cmdline`, in order, and the words that
/// were skipped (malformed, or a domain id already given).
pub fn domus(cmdline: &str) -> (Vec<DomuSpec>, Vec<BadDomuWord>) {
    let mut good: Vec<DomuSpec> = Vec::new();
    let mut bad = Vec::new();
    for word in cmdline.split_ascii_whitespace() {
        let Some(value) = word.strip_prefix(DOMU_WORD) else {
            continue;
        };
        let skipped = |reason| BadDomuWord {
            word: word.to_string(),
            reason,
        };
        match parse_word(value) {
            Ok(spec) if good.iter().any(|g| g.domid == spec.domid) => {
                bad.push(skipped("that domain id was already given"))
            }
            Ok(spec) => good.push(spec),
            Err(reason) => bad.push(skipped(reason)),
        }
    }
    (good, bad)
}

#[cfg(test)]
mod tests {
    #[test]
    fn creates_come_in_order_and_empty_names_are_skipped() {
        let names: Vec<&str> =
            super::creates("console=x pavise.create=a.cfg pavise.create= pavise.create=b.cfg")
                .collect();
        assert_eq!(names, ["a.cfg", "b.cfg"]);
    }

    use super::*;

    #[test]
    fn named_disks_are_read_and_clashes_skipped() {
        let (good, bad) = named_disks(
            "x pavise.disk=root.img:10 pavise.disk=root.img:11 pavise.disk=data:10 \
             pavise.disk=b:1f pavise.disk=c:20 pavise.disk=d pavise.disk=:12",
        );
        let disk = |name: &str, pci_slot| NamedDisk {
            name: name.to_string(),
            pci_slot,
        };
        assert_eq!(good, [disk("root.img", 0x10), disk("b", 0x1f)]);
        let reasons: Vec<&str> = bad.iter().map(|b| b.reason).collect();
        assert_eq!(
            reasons,
            [
                "a disk of that name was already given",
                "that PCI slot was already given",
                "the PCI slot must be a hex device number from 0 to 1f",
                "it must be NAME:SLOT",
                "the name must be 1 to 64 printable characters without spaces",
            ]
        );
    }

    fn spec(domid: DomId, name: &str, mem_mib: u32, vcpus: u32) -> DomuSpec {
        DomuSpec {
            domid,
            name: name.to_string(),
            mem_mib,
            vcpus,
        }
    }

    #[test]
    fn reads_each_domu_word_and_ignores_other_words() {
        let (good, bad) =
            domus("loglvl=all pavise.domu=1:linux:256:4  console=x pavise.domu=2:xtf-ex:16:1");
        assert_eq!(good, [spec(1, "linux", 256, 4), spec(2, "xtf-ex", 16, 1)]);
        assert!(bad.is_empty());
        assert_eq!(domus(""), (Vec::new(), Vec::new()));
    }

    fn vbd(domid: DomId, dev: &str, readonly: bool, pci_slot: u8) -> VbdSpec {
        VbdSpec {
            domid,
            dev: dev.to_string(),
            readonly,
            pci_slot,
        }
    }

    #[test]
    fn reads_each_vbd_word_and_ignores_other_words() {
        let line = "pavise.domu=1:linux:256:4 pavise.vbd=1:xvda:w:10 loglvl=all \
                    pavise.vbd=1:xvdb:r:11  pavise.vbd=3:xvdp:w:1e pavise.vbd=2:xvda:r:0";
        let (good, bad) = vbds(line);
        assert_eq!(
            good,
            [
                vbd(1, "xvda", false, 0x10),
                vbd(1, "xvdb", true, 0x11),
                vbd(3, "xvdp", false, 0x1e),
                vbd(2, "xvda", true, 0),
            ]
        );
        assert!(bad.is_empty());
        // The two kinds of word do not see each other.
        assert_eq!(domus(line).0, [spec(1, "linux", 256, 4)]);
        assert_eq!(vbds(""), (Vec::new(), Vec::new()));
        assert_eq!(vbds("pavise.domu=1:a:1:1"), (Vec::new(), Vec::new()));
    }

    #[test]
    fn bad_vbd_words_are_skipped_with_a_reason() {
        let cases = [
            ("pavise.vbd=", "it must be DOMID:DEV:MODE:SLOT"),
            ("pavise.vbd=1:xvda:w", "it must be DOMID:DEV:MODE:SLOT"),
            ("pavise.vbd=1:xvda:w:10:0", "it must be DOMID:DEV:MODE:SLOT"),
            ("pavise.vbd=x:xvda:w:10", "the domain id is not a number"),
            (
                "pavise.vbd=0:xvda:w:10",
                "the domain id must be between 1 and 32751",
            ),
            (
                "pavise.vbd=32752:xvda:w:10",
                "the domain id must be between 1 and 32751",
            ),
            ("pavise.vbd=1:xvdq:w:10", "the device must be xvda to xvdp"),
            ("pavise.vbd=1:xvd:w:10", "the device must be xvda to xvdp"),
            ("pavise.vbd=1:xvdaa:w:10", "the device must be xvda to xvdp"),
            ("pavise.vbd=1:sda:w:10", "the device must be xvda to xvdp"),
            ("pavise.vbd=1:xvdA:w:10", "the device must be xvda to xvdp"),
            (
                "pavise.vbd=1:xvda:rw:10",
                "the mode must be w (read-write) or r (read-only)",
            ),
            (
                "pavise.vbd=1:xvda::10",
                "the mode must be w (read-write) or r (read-only)",
            ),
            (
                "pavise.vbd=1:xvda:w:",
                "the PCI slot must be a hex device number from 0 to 1f",
            ),
            (
                "pavise.vbd=1:xvda:w:20",
                "the PCI slot must be a hex device number from 0 to 1f",
            ),
            (
                "pavise.vbd=1:xvda:w:010",
                "the PCI slot must be a hex device number from 0 to 1f",
            ),
            (
                "pavise.vbd=1:xvda:w:0x10",
                "the PCI slot must be a hex device number from 0 to 1f",
            ),
            (
                "pavise.vbd=1:xvda:w:+1",
                "the PCI slot must be a hex device number from 0 to 1f",
            ),
            (
                "pavise.vbd=1:xvda:w:g",
                "the PCI slot must be a hex device number from 0 to 1f",
            ),
        ];
        for (word, reason) in cases {
            let (good, bad) = vbds(word);
            assert!(good.is_empty(), "{word}: {good:?}");
            assert_eq!(bad.len(), 1, "{word}");
            assert_eq!(bad[0].reason, reason, "{word}");
            assert_eq!(
                bad[0].to_string(),
                alloc::format!("dom0: ignoring '{word}' on the command line: {reason}")
            );
        }
        // Upper-case hex is hex.
        assert_eq!(
            vbds("pavise.vbd=1:xvda:w:1F").0,
            [vbd(1, "xvda", false, 0x1f)]
        );
    }

    #[test]
    fn a_domain_device_or_slot_is_given_once() {
        let (good, bad) = vbds(
            "pavise.vbd=1:xvda:w:10 pavise.vbd=1:xvda:r:11 pavise.vbd=2:xvda:w:10 \
             pavise.vbd=2:xvda:w:12 pavise.vbd=1:xvdb:w:13",
        );
        assert_eq!(
            good,
            [
                vbd(1, "xvda", false, 0x10),
                vbd(2, "xvda", false, 0x12),
                vbd(1, "xvdb", false, 0x13),
            ]
        );
        let reasons: Vec<&str> = bad.iter().map(|b| b.reason).collect();
        assert_eq!(
            reasons,
            [
                "that domain's device was already given",
                "that PCI slot was already given"
            ]
        );
        assert_eq!(bad[0].word, "pavise.vbd=1:xvda:r:11");
    }

    fn vif(domid: DomId, handle: u32, mac: [u8; 6]) -> VifSpec {
        VifSpec { domid, handle, mac }
    }

    #[test]
    fn reads_each_vif_word_and_ignores_other_words() {
        let line = "pavise.domu=1:a:16:1 pavise.vbd=1:xvda:w:10 pavise.vif=1:0:00-16-3e-00-01-00 \
                    loglvl=all  pavise.vif=2:0:00-16-3E-AA-bb-cc pavise.vif=2:1:00-16-3e-00-02-01 \
                    pavise.uplink=8 pavise.vif=32751:255:52-54-00-12-34-57";
        let (good, bad) = vifs(line);
        assert_eq!(
            good,
            [
                vif(1, 0, [0x00, 0x16, 0x3e, 0x00, 0x01, 0x00]),
                vif(2, 0, [0x00, 0x16, 0x3e, 0xaa, 0xbb, 0xcc]),
                vif(2, 1, [0x00, 0x16, 0x3e, 0x00, 0x02, 0x01]),
                vif(32751, 255, [0x52, 0x54, 0x00, 0x12, 0x34, 0x57]),
            ]
        );
        assert!(bad.is_empty());
        // The kinds of word do not see each other.
        assert_eq!(vbds(line).0, [vbd(1, "xvda", false, 0x10)]);
        assert_eq!(domus(line).0, [spec(1, "a", 16, 1)]);
        assert_eq!(uplink(line), Some(8));
        assert_eq!(vifs(""), (Vec::new(), Vec::new()));
        assert_eq!(vifs("pavise.vbd=1:xvda:w:10"), (Vec::new(), Vec::new()));
    }

    #[test]
    fn bad_vif_words_are_skipped_with_a_reason() {
        let malformed_mac = "the MAC must be six two-digit hex numbers separated by '-'";
        let cases = [
            ("pavise.vif=", "it must be DOMID:HANDLE:MAC"),
            ("pavise.vif=1:0", "it must be DOMID:HANDLE:MAC"),
            (
                "pavise.vif=1:0:00:16:3e:00:01:00",
                "it must be DOMID:HANDLE:MAC",
            ),
            (
                "pavise.vif=x:0:00-16-3e-00-01-00",
                "the domain id is not a number",
            ),
            (
                "pavise.vif=0:0:00-16-3e-00-01-00",
                "the domain id must be between 1 and 32751",
            ),
            (
                "pavise.vif=32752:0:00-16-3e-00-01-00",
                "the domain id must be between 1 and 32751",
            ),
            (
                "pavise.vif=1::00-16-3e-00-01-00",
                "the handle must be a number from 0 to 255",
            ),
            (
                "pavise.vif=1:256:00-16-3e-00-01-00",
                "the handle must be a number from 0 to 255",
            ),
            (
                "pavise.vif=1:+1:00-16-3e-00-01-00",
                "the handle must be a number from 0 to 255",
            ),
            (
                "pavise.vif=1:a:00-16-3e-00-01-00",
                "the handle must be a number from 0 to 255",
            ),
            ("pavise.vif=1:0:", malformed_mac),
            ("pavise.vif=1:0:00-16-3e-00-01", malformed_mac),
            ("pavise.vif=1:0:00-16-3e-00-01-00-02", malformed_mac),
            ("pavise.vif=1:0:0-16-3e-0-1-0", malformed_mac),
            ("pavise.vif=1:0:00-16-3e-00-01-0g", malformed_mac),
            ("pavise.vif=1:0:00-16-3e-00-01-+1", malformed_mac),
            ("pavise.vif=1:0:001122334455", malformed_mac),
            (
                "pavise.vif=1:0:01-00-5e-00-00-01",
                "the MAC is a multicast address, which no interface can have",
            ),
            (
                "pavise.vif=1:0:ff-ff-ff-ff-ff-ff",
                "the MAC is a multicast address, which no interface can have",
            ),
            ("pavise.vif=1:0:00-00-00-00-00-00", "the MAC is all zeros"),
        ];
        for (word, reason) in cases {
            let (good, bad) = vifs(word);
            assert!(good.is_empty(), "{word}: {good:?}");
            assert_eq!(bad.len(), 1, "{word}");
            assert_eq!(bad[0].reason, reason, "{word}");
            assert_eq!(
                bad[0].to_string(),
                alloc::format!("dom0: ignoring '{word}' on the command line: {reason}")
            );
        }
    }

    #[test]
    fn a_domain_interface_or_mac_is_given_once() {
        let (good, bad) = vifs(
            "pavise.vif=1:0:00-16-3e-00-01-00 pavise.vif=1:0:00-16-3e-00-01-01 \
             pavise.vif=2:0:00-16-3e-00-01-00 pavise.vif=2:0:00-16-3e-00-02-00 \
             pavise.vif=1:1:00-16-3e-00-01-01",
        );
        assert_eq!(
            good,
            [
                vif(1, 0, [0x00, 0x16, 0x3e, 0x00, 0x01, 0x00]),
                vif(2, 0, [0x00, 0x16, 0x3e, 0x00, 0x02, 0x00]),
                vif(1, 1, [0x00, 0x16, 0x3e, 0x00, 0x01, 0x01]),
            ]
        );
        let reasons: Vec<&str> = bad.iter().map(|b| b.reason).collect();
        assert_eq!(
            reasons,
            [
                "that domain's interface was already given",
                "that MAC was already given"
            ]
        );
        assert_eq!(bad[0].word, "pavise.vif=1:0:00-16-3e-00-01-01");
    }

    #[test]
    fn the_uplink_slot_is_read_once() {
        assert_eq!(uplink(""), None);
        assert_eq!(uplink("loglvl=all pavise.vbd=1:xvda:w:10"), None);
        assert_eq!(uplink("pavise.uplink=8"), Some(8));
        assert_eq!(uplink("pavise.uplink=1F"), Some(0x1f));
        assert_eq!(
            uplink_checked("x pavise.uplink=0a y"),
            (Some(0x0a), Vec::new())
        );
        let (slot, bad) = uplink_checked(
            "pavise.uplink=20 pavise.uplink= pavise.uplink=0x8 pavise.uplink=9 \
             pavise.uplink=8 pavise.uplink=-1",
        );
        assert_eq!(slot, Some(9));
        let reasons: Vec<&str> = bad.iter().map(|b| b.reason).collect();
        let bad_slot = "the PCI slot must be a hex device number from 0 to 1f";
        assert_eq!(
            reasons,
            [
                bad_slot,
                bad_slot,
                bad_slot,
                "its slot was already given",
                bad_slot
            ]
        );
        assert_eq!(
            bad[3].to_string(),
            "dom0: ignoring 'pavise.uplink=8' on the command line: its slot was already given"
        );
        // Only a bad word: no uplink.
        assert_eq!(uplink("pavise.uplink=zz"), None);
    }

    #[test]
    fn bad_words_are_skipped_with_a_reason() {
        let line = "pavise.domu=1:a:1:1 pavise.domu= pavise.domu=x:a:1:1 pavise.domu=0:a:1:1 \
                    pavise.domu=32752:a:1:1 pavise.domu=3::1:1 pavise.domu=4:a:0:1 \
                    pavise.domu=5:a:1:0 pavise.domu=6:a:1:129 pavise.domu=7:a:b:1:1 \
                    pavise.domu=8:a:1 pavise.domu=1:again:1:1 pavise.domu=9:a:-1:1 \
                    pavise.domu=10:a:1:1";
        let (good, bad) = domus(line);
        assert_eq!(good, [spec(1, "a", 1, 1), spec(10, "a", 1, 1)]);
        assert_eq!(bad.len(), 12);
        assert_eq!(
            bad[0].to_string(),
            "dom0: ignoring 'pavise.domu=' on the command line: it must be ID:NAME:MEM_MIB:VCPUS"
        );
        assert_eq!(bad[10].reason, "that domain id was already given");
        for b in &bad {
            let sentence = b.to_string();
            assert!(sentence.starts_with("dom0: ignoring 'pavise.domu="));
            assert!(!sentence.contains('\n'));
        }
    }
}
