//! The pure half of Dom0's xl-like commands: parsing a typed line into an
//! [`XlCommand`] and formatting what `list` and `info` print, in the
//! layouts of Xen's `xl` (tools/xl/xl_info.c). No hardware here; the glue
//! gathers the domain and host facts, resolves domain names and runs the
//! commands.
//!
//! Error strings are one sentence without a `dom0: ` prefix; the caller
//! adds whatever prefix it prints lines with.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use pv_abi::hypercall::{DOMID_FIRST_RESERVED, ShutdownReason};

use crate::store::DomId;

/// The domain a command acts on, as typed: a number is an id, any other
/// word a name (as xl's `find_domain` does). Names are looked up by the
/// caller with [`XlCommand::resolve`], which also applies the command's
/// rules on ids (e.g. not Dom0) to the id a name stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A domain id, already checked against the command's rules.
    Id(DomId),
    /// A domain name (one word, not all digits, not starting with `-`).
    Name(String),
}

/// A Dom0 command line, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XlCommand {
    /// `list [--json]`.
    List {
        json: bool,
    },
    /// `info [--json]`.
    Info {
        json: bool,
    },
    /// `pause DOMAIN`: any domain but Dom0.
    Pause(Target),
    /// `unpause DOMAIN`: any domain but Dom0.
    Unpause(Target),
    /// `destroy DOMAIN`: any domain but Dom0.
    Destroy(Target),
    /// `shutdown DOMAIN`: a DomU.
    Shutdown(Target),
    /// `reboot DOMAIN`: a DomU.
    Reboot(Target),
    /// `console DOMAIN`: any domain, Dom0 included (as `xl console 0`).
    Console(Target),
    /// `create NAME [KEY=VALUE ...]`: the held config file NAME, with
    /// settings replacing its own, as xl's.
    Create {
        config_name: String,
        overrides: Vec<String>,
    },
    /// `bench-create NAME`: Dom0's toolstack benchmark with config NAME
    /// (create to first console line; create and destroy 1, 10, 100).
    BenchCreate {
        config_name: String,
    },
    /// `files`: the files Dom0 holds, with their sizes.
    Files,
    /// `dmesg [-c]`: the hypervisor's console ring, as xl dmesg (`-c`
    /// clears it after reading).
    Dmesg {
        clear: bool,
    },
    /// `have NAME SIZE CRC32`: whether Dom0 holds exactly that file (the
    /// host tool asks before it uploads).
    Have(Announced),
    /// `upload NAME SIZE CRC32`, then SIZE raw bytes (control channel
    /// only): the file NAME, replacing one of that name.
    Upload(Announced),
    Help,
}

/// A file the host announces: its name, size and CRC-32 (IEEE).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    pub name: String,
    pub size: usize,
    pub crc: u32,
}

/// `NAME SIZE CRC32` (CRC in hex), the arguments of `have` and `upload`.
fn announced(
    verb: &str,
    mut words: core::str::SplitAsciiWhitespace<'_>,
) -> Result<Announced, String> {
    let usage = || {
        format!(
            "{verb} takes NAME SIZE CRC32, as in '{verb} vmlinux 4096 1a2b3c4d' (the CRC in hex)"
        )
    };
    let (Some(name), Some(size), Some(crc), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(usage());
    };
    let size: usize = size.parse().map_err(|_| usage())?;
    let crc = u32::from_str_radix(crc, 16).map_err(|_| usage())?;
    if let Some(reason) = crate::files::file_name_problem(name) {
        return Err(format!("{name:?} cannot be one of Dom0's files: {reason}"));
    }
    Ok(Announced {
        name: name.into(),
        size,
        crc,
    })
}

/// What `help` prints: one line per command, joined by `\n`, without a
/// final newline.
pub const HELP: &str = "\
list [--json]     the domains, as xl list shows them
info [--json]     the host and Xen, as xl info shows them
create NAME [K=V] build and start a domain from Dom0's config file NAME
bench-create NAME time creating domains from config NAME (cargo xtask bench)
files             the files Dom0 holds (kernels, ramdisks, configs)
dmesg [-c]        the hypervisor's console ring (-c: then clear it)
console DOMAIN    send serial input to DOMAIN's console (Ctrl-] comes back)
pause DOMAIN      pause DOMAIN (an id or a name; not Dom0)
unpause DOMAIN    let a paused DOMAIN run again (not Dom0)
destroy DOMAIN    kill DOMAIN at once, without asking it (not Dom0)
shutdown DOMAIN   ask DomU DOMAIN to power off
reboot DOMAIN     ask DomU DOMAIN to reboot
help              this list";

/// The words of `line`, split at ASCII whitespace outside double quotes
/// (which stay in the word, as xl.cfg values want them), so that
/// `extra="a b"` is one word; `None` if a quote is not closed.
fn quoted_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                word.push(c);
            }
            c if c.is_ascii_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(core::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if quoted {
        return None;
    }
    if !word.is_empty() {
        words.push(word);
    }
    Some(words)
}

/// Parses one line typed to Dom0. Words are separated by ASCII
/// whitespace; verbs and options are case-sensitive, as in xl.
pub fn parse(line: &str) -> Result<XlCommand, String> {
    let mut words = line.split_ascii_whitespace();
    let Some(verb) = words.next() else {
        return Err("empty command: type help for the commands".into());
    };
    let arg = words.next();
    let extra = words.next().is_some();
    let cmd = match verb {
        "help" => {
            return match arg {
                None => Ok(XlCommand::Help),
                Some(_) => Err("help takes no arguments".into()),
            };
        }
        "list" | "info" => {
            let json = match (arg, extra) {
                (None, _) => false,
                (Some("--json"), false) => true,
                _ => return Err(format!("{verb} takes only --json, as in '{verb} --json'")),
            };
            return Ok(if verb == "list" {
                XlCommand::List { json }
            } else {
                XlCommand::Info { json }
            });
        }
        "create" => {
            let Some(overrides) = quoted_words(line) else {
                return Err("a \" in the create line is not closed".into());
            };
            let overrides: Vec<String> = overrides.into_iter().skip(2).collect();
            return match arg {
                Some(name)
                    if !name.starts_with('-') && overrides.iter().all(|o| o.contains('=')) =>
                {
                    Ok(XlCommand::Create {
                        config_name: name.into(),
                        overrides,
                    })
                }
                _ => Err(
                    "create takes a config name and KEY=VALUE settings, as in 'create guest' or 'create guest vcpus=2'"
                        .into(),
                ),
            };
        }
        "dmesg" => {
            return match (arg, extra) {
                (None, _) => Ok(XlCommand::Dmesg { clear: false }),
                (Some("-c"), false) => Ok(XlCommand::Dmesg { clear: true }),
                _ => Err("dmesg takes only -c, as in 'dmesg -c'".into()),
            };
        }
        "files" => {
            return match arg {
                None => Ok(XlCommand::Files),
                Some(_) => Err("files takes no arguments".into()),
            };
        }
        "have" | "upload" => {
            let mut words = line.split_ascii_whitespace();
            words.next();
            let file = announced(verb, words)?;
            return Ok(if verb == "have" {
                XlCommand::Have(file)
            } else {
                XlCommand::Upload(file)
            });
        }
        "bench-create" => {
            return match (arg, extra) {
                (Some(name), false) => Ok(XlCommand::BenchCreate {
                    config_name: name.into(),
                }),
                _ => Err("bench-create takes one config name".into()),
            };
        }
        "pause" => XlCommand::Pause,
        "unpause" => XlCommand::Unpause,
        "destroy" => XlCommand::Destroy,
        "shutdown" => XlCommand::Shutdown,
        "reboot" => XlCommand::Reboot,
        "console" => XlCommand::Console,
        _ => {
            return Err(format!(
                "unknown command '{verb}': type help for the commands"
            ));
        }
    };
    let word = match (arg, extra) {
        (Some(w), false) if !w.starts_with('-') => w,
        _ => {
            return Err(format!(
                "{verb} takes one domain id or name, as in '{verb} 1'"
            ));
        }
    };
    let target = if word.bytes().all(|b| b.is_ascii_digit()) {
        let domid = word
            .parse::<DomId>()
            .ok()
            .filter(|&d| d < DOMID_FIRST_RESERVED)
            .ok_or_else(|| not_a_domid(word))?;
        // The rules only depend on the verb, so any target will do here.
        check_domid(verb, domid)?;
        Target::Id(domid)
    } else {
        Target::Name(word.into())
    };
    Ok(cmd(target))
}

fn not_a_domid(word: &str) -> String {
    format!(
        "{word} is not a domain id: ids run from 0 to {}",
        DOMID_FIRST_RESERVED - 1
    )
}

/// The rules on ids shared by [`parse`] and [`XlCommand::resolve`].
fn check_domid(verb: &str, domid: DomId) -> Result<(), String> {
    if domid >= DOMID_FIRST_RESERVED {
        return Err(not_a_domid(&format!("{domid}")));
    }
    let what = match verb {
        "pause" => "pause",
        "unpause" => "unpause",
        "destroy" => "destroy",
        "shutdown" => "shut down",
        "reboot" => "reboot",
        _ => return Ok(()),
    };
    if domid == 0 {
        return Err(format!("Dom0 cannot {what} itself"));
    }
    Ok(())
}

impl XlCommand {
    /// The command's word, as typed.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::List { .. } => "list",
            Self::Info { .. } => "info",
            Self::Pause(_) => "pause",
            Self::Unpause(_) => "unpause",
            Self::Destroy(_) => "destroy",
            Self::Shutdown(_) => "shutdown",
            Self::Reboot(_) => "reboot",
            Self::Console(_) => "console",
            Self::Create { .. } => "create",
            Self::BenchCreate { .. } => "bench-create",
            Self::Files => "files",
            Self::Dmesg { .. } => "dmesg",
            Self::Have(_) => "have",
            Self::Upload(_) => "upload",
            Self::Help => "help",
        }
    }

    /// The domain the command acts on, if it acts on one.
    pub fn target(&self) -> Option<&Target> {
        match self {
            Self::Pause(t)
            | Self::Unpause(t)
            | Self::Destroy(t)
            | Self::Shutdown(t)
            | Self::Reboot(t)
            | Self::Console(t) => Some(t),
            _ => None,
        }
    }

    /// The id of the domain the command acts on (`Ok(None)` if it acts on
    /// none). A [`Target::Name`] is looked up with `lookup` (name to id;
    /// Dom0 is called `Domain-0` in xl) and the id it gives is held to the
    /// same rules as a typed id, so `pause Domain-0` fails like `pause 0`.
    pub fn resolve(
        &self,
        lookup: impl FnOnce(&str) -> Option<DomId>,
    ) -> Result<Option<DomId>, String> {
        match self.target() {
            None => Ok(None),
            Some(Target::Id(d)) => Ok(Some(*d)),
            Some(Target::Name(name)) => {
                let d = lookup(name).ok_or_else(|| format!("no domain is named '{name}'"))?;
                check_domid(self.verb(), d)?;
                Ok(Some(d))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Domain state (xen/include/public/domctl.h, xen_domctl_getdomaininfo)
// ---------------------------------------------------------------------------

// getdomaininfo's flags (pv-abi has them, from domctl.h).
pub use pv_abi::domctl::{
    XEN_DOMINF_BLOCKED, XEN_DOMINF_DEBUGGED, XEN_DOMINF_DYING, XEN_DOMINF_HAP,
    XEN_DOMINF_HVM_GUEST, XEN_DOMINF_PAUSED, XEN_DOMINF_RUNNING, XEN_DOMINF_SHUTDOWN,
    XEN_DOMINF_SHUTDOWNMASK, XEN_DOMINF_SHUTDOWNSHIFT, XEN_DOMINF_XS_DOMAIN,
};

/// The fifth state letter for each `SHUTDOWN_*` reason, as xl's
/// `shutdown_reason_letters` (poweroff shows '-', crash 'c').
const SHUTDOWN_REASON_LETTERS: &[u8; 6] = b"-rscwS";

/// A domain's state, as libxl's `libxl_dominfo` has it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainState {
    pub running: bool,
    pub blocked: bool,
    pub paused: bool,
    /// The guest has shut down; [`shutdown_reason`](Self::shutdown_reason)
    /// says why.
    pub shutdown: bool,
    /// The guest's `SHUTDOWN_*` code; meaningful only if `shutdown`.
    pub shutdown_reason: u8,
    pub dying: bool,
}

impl DomainState {
    /// Decodes `xen_domctl_getdomaininfo.flags` as libxl's
    /// `xcinfo2xlinfo` does (the reason is kept only if shut down).
    pub fn from_dominf(flags: u32) -> Self {
        let shutdown = flags & XEN_DOMINF_SHUTDOWN != 0;
        Self {
            running: flags & XEN_DOMINF_RUNNING != 0,
            blocked: flags & XEN_DOMINF_BLOCKED != 0,
            paused: flags & XEN_DOMINF_PAUSED != 0,
            shutdown,
            shutdown_reason: if shutdown {
                ((flags >> XEN_DOMINF_SHUTDOWNSHIFT) & XEN_DOMINF_SHUTDOWNMASK) as u8
            } else {
                0
            },
            dying: flags & XEN_DOMINF_DYING != 0,
        }
    }

    /// Shut down because it crashed (`SHUTDOWN_crash`).
    pub fn crashed(&self) -> bool {
        self.shutdown && u32::from(self.shutdown_reason) == ShutdownReason::Crash.raw()
    }

    /// xl's six-letter state column, `rbpscd` with `-` for unset. As in
    /// xl, the fifth letter is the shutdown reason: `-` for poweroff (or
    /// not shut down), `r` reboot, `s` suspend, `c` crash, `w` watchdog,
    /// `S` soft reset, `?` anything else.
    pub fn letters(&self) -> String {
        let flag = |set: bool, c: char| if set { c } else { '-' };
        let reason = if self.shutdown {
            SHUTDOWN_REASON_LETTERS
                .get(usize::from(self.shutdown_reason))
                .map_or('?', |&b| char::from(b))
        } else {
            '-'
        };
        [
            flag(self.running, 'r'),
            flag(self.blocked, 'b'),
            flag(self.paused, 'p'),
            flag(self.shutdown, 's'),
            reason,
            flag(self.dying, 'd'),
        ]
        .iter()
        .collect()
    }
}

/// One line of `list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainRow {
    pub domid: DomId,
    pub name: String,
    /// Current memory (xl adds outstanding claims; include them here).
    pub memory_kib: u64,
    /// Online vCPUs.
    pub vcpus: u32,
    pub state: DomainState,
    /// CPU time used, in nanoseconds.
    pub cpu_time_ns: u64,
}

/// `n / d` rounded to the nearest, halves up, without overflow.
fn div_round(n: u64, d: u64) -> u64 {
    n / d + u64::from(n % d >= d.div_ceil(2))
}

/// The header `list_table` starts with, as xl prints it.
pub const LIST_HEADER: &str =
    "Name                                        ID   Mem VCPUs\tState\tTime(s)";

/// `xl list`'s table: [`LIST_HEADER`], then one line per row as xl's
/// `"%-40s %5d %5lu %5d     %c%c%c%c%c%c  %8.1f"` (memory in MiB rounded
/// down, time in seconds rounded to a tenth); every line ends in `\n`.
/// Names longer than 40 bytes push the rest right, as in xl.
pub fn list_table(rows: &[DomainRow]) -> String {
    let mut out = String::from(LIST_HEADER);
    out.push('\n');
    for row in rows {
        let tenths = div_round(row.cpu_time_ns, 100_000_000);
        let time = format!("{}.{}", tenths / 10, tenths % 10);
        // printf pads by bytes, not characters.
        out.push_str(&row.name);
        out.extend(core::iter::repeat_n(
            ' ',
            40usize.saturating_sub(row.name.len()),
        ));
        out.push_str(&format!(
            " {:>5} {:>5} {:>5}     {}  {:>8}\n",
            row.domid,
            row.memory_kib / 1024,
            row.vcpus,
            row.state.letters(),
            time
        ));
    }
    out
}

/// Appends `s` to `out` as a JSON string: quotes, with `"` and `\`
/// backslashed and control characters as `\u00XX`.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `list --json`: a JSON array with one object per row,
/// `{"domid":N,"name":"...","memory":MiB,"vcpus":N,"state":"r-----","cpu_time":SECONDS}`,
/// memory rounded down and the time in seconds with three decimals. No
/// whitespace, no final newline.
pub fn list_json(rows: &[DomainRow]) -> String {
    let mut out = String::from("[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{{\"domid\":{},\"name\":", row.domid));
        push_json_str(&mut out, &row.name);
        let ms = div_round(row.cpu_time_ns, 1_000_000);
        out.push_str(&format!(
            ",\"memory\":{},\"vcpus\":{},\"state\":\"{}\",\"cpu_time\":{}.{:03}}}",
            row.memory_kib / 1024,
            row.vcpus,
            row.state.letters(),
            ms / 1000,
            ms % 1000
        ));
    }
    out.push(']');
    out
}

/// What `info` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    pub nr_cpus: u32,
    pub total_memory_kib: u64,
    pub free_memory_kib: u64,
    pub xen_major: u16,
    pub xen_minor: u16,
    /// As Xen's `XENVER_extraversion`, usually starting with a dot
    /// (`".0"`).
    pub xen_extra: String,
    pub cpu_khz: u32,
}

impl HostInfo {
    /// `major.minor` then the extra version, as xl's `xen_version`.
    pub fn xen_version(&self) -> String {
        format!("{}.{}{}", self.xen_major, self.xen_minor, self.xen_extra)
    }
}

/// What `info` gives as `host` (xl prints Dom0's uname node name).
pub const HOST: &str = "pavise";

/// `xl info`'s layout for the keys Pavise has, in xl's order: each line
/// `key` padded to 23 columns, `: `, the value, `\n`. Memory in MiB
/// rounded down; `cpu_mhz` as xl's `%d.%03d` of the kHz.
pub fn info_text(info: &HostInfo) -> String {
    let lines: [(&str, String); 9] = [
        ("host", HOST.into()),
        ("nr_cpus", format!("{}", info.nr_cpus)),
        (
            "cpu_mhz",
            format!("{}.{:03}", info.cpu_khz / 1000, info.cpu_khz % 1000),
        ),
        ("total_memory", format!("{}", info.total_memory_kib / 1024)),
        ("free_memory", format!("{}", info.free_memory_kib / 1024)),
        ("xen_major", format!("{}", info.xen_major)),
        ("xen_minor", format!("{}", info.xen_minor)),
        ("xen_extra", info.xen_extra.clone()),
        ("xen_version", info.xen_version()),
    ];
    let mut out = String::new();
    for (key, value) in lines {
        out.push_str(&format!("{key:<23}: {value}\n"));
    }
    out
}

/// `info --json`:
/// `{"nr_cpus":N,"total_memory":MiB,"free_memory":MiB,"xen_version":"4.17.0"}`,
/// no whitespace, no final newline.
pub fn info_json(info: &HostInfo) -> String {
    let mut out = format!(
        "{{\"nr_cpus\":{},\"total_memory\":{},\"free_memory\":{},\"xen_version\":",
        info.nr_cpus,
        info.total_memory_kib / 1024,
        info.free_memory_kib / 1024
    );
    push_json_str(&mut out, &info.xen_version());
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn id(d: DomId) -> Target {
        Target::Id(d)
    }

    fn name(n: &str) -> Target {
        Target::Name(n.into())
    }

    #[test]
    fn parses_every_command() {
        use XlCommand::*;
        let cases = [
            ("list", List { json: false }),
            ("  list   --json ", List { json: true }),
            ("info", Info { json: false }),
            ("info --json", Info { json: true }),
            ("dmesg", Dmesg { clear: false }),
            ("dmesg -c", Dmesg { clear: true }),
            ("pause 3", Pause(id(3))),
            ("unpause 32751", Unpause(id(32751))),
            ("destroy 007", Destroy(id(7))),
            ("shutdown 1", Shutdown(id(1))),
            ("reboot\t2", Reboot(id(2))),
            ("console 3", Console(id(3))),
            ("console 0", Console(id(0))),
            ("console Domain-0", Console(name("Domain-0"))),
            ("pause web", Pause(name("web"))),
            ("destroy d1", Destroy(name("d1"))),
            ("shutdown 1a", Shutdown(name("1a"))),
            (
                "create guest.cfg",
                Create {
                    config_name: "guest.cfg".into(),
                    overrides: vec![],
                },
            ),
            (
                "create guest.cfg vcpus=2 name=\"b\" extra=\"x  y\"",
                Create {
                    config_name: "guest.cfg".into(),
                    overrides: vec![
                        "vcpus=2".into(),
                        "name=\"b\"".into(),
                        "extra=\"x  y\"".into(),
                    ],
                },
            ),
            (
                "bench-create b.cfg",
                BenchCreate {
                    config_name: "b.cfg".into(),
                },
            ),
            ("files", Files),
            (
                "upload vmlinux 4096 1a2b3C4d",
                Upload(Announced {
                    name: "vmlinux".into(),
                    size: 4096,
                    crc: 0x1a2b_3c4d,
                }),
            ),
            (
                "have a.cfg 0 0",
                Have(Announced {
                    name: "a.cfg".into(),
                    size: 0,
                    crc: 0,
                }),
            ),
            ("help", Help),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Ok(want), "{line}");
        }
    }

    #[test]
    fn each_error_is_one_sentence() {
        let cases = [
            ("", "empty command: type help for the commands"),
            ("   ", "empty command: type help for the commands"),
            (
                "frob 1",
                "unknown command 'frob': type help for the commands",
            ),
            ("LIST", "unknown command 'LIST': type help for the commands"),
            ("help me", "help takes no arguments"),
            ("list -l", "list takes only --json, as in 'list --json'"),
            (
                "list --json 1",
                "list takes only --json, as in 'list --json'",
            ),
            ("info --xml", "info takes only --json, as in 'info --json'"),
            (
                "create",
                "create takes a config name and KEY=VALUE settings, as in 'create guest' or 'create guest vcpus=2'",
            ),
            (
                "create a b",
                "create takes a config name and KEY=VALUE settings, as in 'create guest' or 'create guest vcpus=2'",
            ),
            ("files x", "files takes no arguments"),
            ("dmesg -x", "dmesg takes only -c, as in 'dmesg -c'"),
            ("dmesg -c more", "dmesg takes only -c, as in 'dmesg -c'"),
            (
                "upload k 10",
                "upload takes NAME SIZE CRC32, as in 'upload vmlinux 4096 1a2b3c4d' (the CRC in hex)",
            ),
            (
                "have k x ff",
                "have takes NAME SIZE CRC32, as in 'have vmlinux 4096 1a2b3c4d' (the CRC in hex)",
            ),
            (
                "upload k 10 zz",
                "upload takes NAME SIZE CRC32, as in 'upload vmlinux 4096 1a2b3c4d' (the CRC in hex)",
            ),
            (
                "upload k 10 ff more",
                "upload takes NAME SIZE CRC32, as in 'upload vmlinux 4096 1a2b3c4d' (the CRC in hex)",
            ),
            (
                "upload a/b 10 ff",
                "\"a/b\" cannot be one of Dom0's files: its name has a character other than a letter, digit, '.', '_', '-' or '+'",
            ),
            (
                "create a extra=\"b",
                "a \" in the create line is not closed",
            ),
            (
                "create -p",
                "create takes a config name and KEY=VALUE settings, as in 'create guest' or 'create guest vcpus=2'",
            ),
            (
                "destroy",
                "destroy takes one domain id or name, as in 'destroy 1'",
            ),
            (
                "destroy 1 2",
                "destroy takes one domain id or name, as in 'destroy 1'",
            ),
            (
                "pause -1",
                "pause takes one domain id or name, as in 'pause 1'",
            ),
            (
                "console",
                "console takes one domain id or name, as in 'console 1'",
            ),
            ("pause 0", "Dom0 cannot pause itself"),
            ("unpause 00", "Dom0 cannot unpause itself"),
            ("destroy 0", "Dom0 cannot destroy itself"),
            ("shutdown 0", "Dom0 cannot shut down itself"),
            ("reboot 0", "Dom0 cannot reboot itself"),
            (
                "pause 32752",
                "32752 is not a domain id: ids run from 0 to 32751",
            ),
            (
                "console 99999999999999999999",
                "99999999999999999999 is not a domain id: ids run from 0 to 32751",
            ),
            (
                "reboot 65535",
                "65535 is not a domain id: ids run from 0 to 32751",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Err(want.into()), "{line:?}");
        }
    }

    #[test]
    fn names_resolve_under_the_same_rules() {
        let lookup = |n: &str| match n {
            "Domain-0" => Some(0),
            "web" => Some(4),
            _ => None,
        };
        let ok = |l: &str| parse(l).unwrap().resolve(lookup);
        assert_eq!(ok("pause web"), Ok(Some(4)));
        assert_eq!(ok("pause 5"), Ok(Some(5)));
        assert_eq!(ok("list"), Ok(None));
        assert_eq!(ok("console Domain-0"), Ok(Some(0)));
        assert_eq!(
            ok("destroy Domain-0"),
            Err("Dom0 cannot destroy itself".into())
        );
        assert_eq!(
            ok("shutdown Domain-0"),
            Err("Dom0 cannot shut down itself".into())
        );
        assert_eq!(ok("reboot db"), Err("no domain is named 'db'".into()));
        let far = parse("unpause x").unwrap().resolve(|_| Some(0x7ff0));
        assert_eq!(
            far,
            Err("32752 is not a domain id: ids run from 0 to 32751".into())
        );
        assert_eq!(parse("pause web").unwrap().target(), Some(&name("web")));
        assert_eq!(parse("help").unwrap().target(), None);
    }

    #[test]
    fn help_has_a_line_per_command() {
        let verbs: Vec<&str> = HELP
            .lines()
            .map(|l| l.split_whitespace().next().unwrap())
            .collect();
        assert_eq!(
            verbs,
            [
                "list",
                "info",
                "create",
                "bench-create",
                "files",
                "dmesg",
                "console",
                "pause",
                "unpause",
                "destroy",
                "shutdown",
                "reboot",
                "help"
            ]
        );
        for verb in verbs {
            assert!(
                !parse(verb).is_err_and(|e| e.starts_with("unknown")),
                "{verb}"
            );
        }
        assert!(!HELP.ends_with('\n'));
    }

    #[test]
    fn dominf_bits_match_domctl_h() {
        assert_eq!(
            [
                XEN_DOMINF_DYING,
                XEN_DOMINF_HVM_GUEST,
                XEN_DOMINF_SHUTDOWN,
                XEN_DOMINF_PAUSED,
                XEN_DOMINF_BLOCKED,
                XEN_DOMINF_RUNNING,
                XEN_DOMINF_DEBUGGED,
                XEN_DOMINF_XS_DOMAIN,
                XEN_DOMINF_HAP,
            ],
            [1, 2, 4, 8, 16, 32, 64, 128, 256]
        );
    }

    #[test]
    fn letters_for_each_flag() {
        let l = |flags: u32| DomainState::from_dominf(flags).letters();
        assert_eq!(l(0), "------");
        assert_eq!(l(XEN_DOMINF_RUNNING), "r-----");
        assert_eq!(l(XEN_DOMINF_BLOCKED), "-b----");
        assert_eq!(l(XEN_DOMINF_PAUSED), "--p---");
        assert_eq!(l(XEN_DOMINF_SHUTDOWN), "---s--"); // poweroff
        assert_eq!(l(XEN_DOMINF_SHUTDOWN | 3 << 16), "---sc-");
        assert_eq!(l(XEN_DOMINF_DYING), "-----d");
        // The other reasons, as xl's "-rscwS", and an unknown one.
        assert_eq!(l(XEN_DOMINF_SHUTDOWN | 1 << 16), "---sr-");
        assert_eq!(l(XEN_DOMINF_SHUTDOWN | 2 << 16), "---ss-");
        assert_eq!(l(XEN_DOMINF_SHUTDOWN | 4 << 16), "---sw-");
        assert_eq!(l(XEN_DOMINF_SHUTDOWN | 5 << 16), "---sS-");
        assert_eq!(l(XEN_DOMINF_SHUTDOWN | 200 << 16), "---s?-");
        // A reason without the shutdown bit is ignored, as in libxl.
        assert_eq!(l(3 << 16), "------");
        // Bits xl does not show.
        let hidden = XEN_DOMINF_HVM_GUEST
            | XEN_DOMINF_DEBUGGED
            | XEN_DOMINF_XS_DOMAIN
            | XEN_DOMINF_HAP
            | 0xff00_0200;
        assert_eq!(l(hidden), "------");
        assert_eq!(l(0xffff_ffff), "rbps?d");
        assert_eq!(
            l(XEN_DOMINF_DYING | XEN_DOMINF_SHUTDOWN | 3 << 16),
            "---scd"
        );

        let crashed = DomainState::from_dominf(XEN_DOMINF_SHUTDOWN | 3 << 16);
        assert!(crashed.crashed());
        assert_eq!(crashed.shutdown_reason, 3);
        assert!(!DomainState::from_dominf(XEN_DOMINF_SHUTDOWN | 1 << 16).crashed());
        assert!(!DomainState::from_dominf(3 << 16).crashed());
        assert_eq!(
            DomainState::from_dominf(XEN_DOMINF_PAUSED | XEN_DOMINF_BLOCKED),
            DomainState {
                paused: true,
                blocked: true,
                ..DomainState::default()
            }
        );
    }

    fn rows() -> [DomainRow; 2] {
        [
            DomainRow {
                domid: 0,
                name: "Domain-0".into(),
                memory_kib: 512 * 1024 + 1023,
                vcpus: 1,
                state: DomainState::from_dominf(XEN_DOMINF_RUNNING),
                cpu_time_ns: 12_345_678_901,
            },
            DomainRow {
                domid: 12,
                name: "we\"b\\1\n\u{1}é".into(),
                memory_kib: 256 * 1024,
                vcpus: 2,
                state: DomainState::from_dominf(XEN_DOMINF_BLOCKED | XEN_DOMINF_PAUSED),
                cpu_time_ns: 49_999_999,
            },
        ]
    }

    #[test]
    fn list_table_like_xl() {
        // The second name is 10 bytes (é is two), so 30 spaces pad it.
        let want = format!(
            "Name                                        ID   Mem VCPUs\tState\tTime(s)\n\
             Domain-0                                     0   512     1     r-----      12.3\n\
             we\"b\\1\n\u{1}é{}    12   256     2     -bp---       0.0\n",
            " ".repeat(30)
        );
        assert_eq!(list_table(&rows()), want);
        assert_eq!(list_table(&[]), format!("{LIST_HEADER}\n"));
        // The column under "ID" ends where the header's does.
        let table = list_table(&rows()[..1]);
        let mut lines = table.lines();
        let header = lines.next().unwrap();
        let row = lines.next().unwrap();
        assert_eq!(header.find("ID").unwrap() + 1, row.find(" 0 ").unwrap() + 1);

        let mut big = rows()[0].clone();
        big.name = "x".repeat(45);
        big.cpu_time_ns = u64::MAX;
        big.domid = 32751;
        let line = list_table(&[big]);
        let row = line.lines().nth(1).unwrap();
        assert_eq!(
            row,
            format!(
                "{} 32751   512     1     r-----  18446744073.7",
                "x".repeat(45)
            )
        );
    }

    #[test]
    fn time_rounds_to_a_tenth() {
        let mut row = rows()[0].clone();
        let t = |row: &mut DomainRow, ns| {
            row.cpu_time_ns = ns;
            let table = list_table(core::slice::from_ref(row));
            table
                .lines()
                .nth(1)
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .into()
        };
        let got: Vec<String> = [0, 49_999_999, 50_000_000, 999_999_999, 1_000_000_000]
            .into_iter()
            .map(|ns| t(&mut row, ns))
            .collect();
        assert_eq!(got, ["0.0", "0.0", "0.1", "1.0", "1.0"]);
    }

    #[test]
    fn list_json_escapes_names() {
        assert_eq!(
            list_json(&rows()),
            "[{\"domid\":0,\"name\":\"Domain-0\",\"memory\":512,\"vcpus\":1,\
             \"state\":\"r-----\",\"cpu_time\":12.346},\
             {\"domid\":12,\"name\":\"we\\\"b\\\\1\\u000a\\u0001é\",\"memory\":256,\
             \"vcpus\":2,\"state\":\"-bp---\",\"cpu_time\":0.050}]"
        );
        assert_eq!(list_json(&[]), "[]");
    }

    fn host() -> HostInfo {
        HostInfo {
            nr_cpus: 4,
            total_memory_kib: 4 * 1024 * 1024 - 1,
            free_memory_kib: 1024 * 1024,
            xen_major: 4,
            xen_minor: 17,
            xen_extra: ".0".into(),
            cpu_khz: 2_999_998,
        }
    }

    #[test]
    fn info_both_forms() {
        assert_eq!(
            info_text(&host()),
            "\
host                   : pavise
nr_cpus                : 4
cpu_mhz                : 2999.998
total_memory           : 4095
free_memory            : 1024
xen_major              : 4
xen_minor              : 17
xen_extra              : .0
xen_version            : 4.17.0
"
        );
        assert_eq!(
            info_json(&host()),
            "{\"nr_cpus\":4,\"total_memory\":4095,\"free_memory\":1024,\"xen_version\":\"4.17.0\"}"
        );
        let odd = HostInfo {
            cpu_khz: 1_000_005,
            xen_extra: "-\"pavise\"".into(),
            ..host()
        };
        assert!(info_text(&odd).contains("cpu_mhz                : 1000.005\n"));
        assert!(info_json(&odd).ends_with(",\"xen_version\":\"4.17-\\\"pavise\\\"\"}"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(line in ".{0,64}") {
            let _ = parse(&line);
        }

        #[test]
        fn parse_never_panics_on_commandish_lines(
            words in proptest::collection::vec(
                prop_oneof![
                    Just("list".to_string()), Just("info".to_string()),
                    Just("pause".to_string()), Just("unpause".to_string()),
                    Just("destroy".to_string()), Just("shutdown".to_string()),
                    Just("reboot".to_string()), Just("console".to_string()),
                    Just("create".to_string()), Just("help".to_string()),
                    Just("--json".to_string()), "[0-9]{1,7}", "[ -~]{1,8}",
                ],
                0..4,
            )
        ) {
            let line = words.join(" ");
            if let Ok(cmd) = parse(&line) {
                // A parsed id obeys the rules a resolved name does.
                let again = cmd.resolve(|_| Some(1));
                prop_assert!(again.is_ok(), "{line}: {again:?}");
            }
        }
    }
}
