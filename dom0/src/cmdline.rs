//! What Dom0's command line tells it: one `pavise.domu=ID:NAME:MEM_MIB:VCPUS`
//! word per boot-time DomU (the hypervisor built them, so Dom0's toolstack
//! has no other record of their names and sizes). Other words are not ours
//! and are passed over.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use pv_abi::hypercall::DOMID_FIRST_RESERVED;

use crate::store::DomId;

/// The word's prefix.
pub const DOMU_WORD: &str = "pavise.domu=";
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

/// A `pavise.domu=` word that was skipped, and why.
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

fn parse_word(value: &str) -> Result<DomuSpec, &'static str> {
    let mut fields = value.split(':');
    let (Some(id), Some(name), Some(mem), Some(vcpus), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err("it must be ID:NAME:MEM_MIB:VCPUS");
    };
    let domid: DomId = id.parse().map_err(|_| "the domain id is not a number")?;
    if domid == 0 || domid >= DOMID_FIRST_RESERVED {
        return Err("the domain id must be between 1 and 32751");
    }
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
    use super::*;

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
