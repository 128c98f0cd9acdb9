//! Domain configuration files in Xen's xl.cfg syntax (`xl.cfg(5)`, with
//! disks in `xl-disk-configuration(5)` and network interfaces in
//! `xl-network-configuration(5)`): the text of a file in, a checked
//! [`DomainConfig`] or the first [`ConfigError`] out. Pure; the caller
//! reads the file and builds the domain.
//!
//! The syntax is what xl's libxlu parser accepts (tools/libs/util,
//! `libxlu_cfg_l.l` and `libxlu_cfg_y.y`): one `KEY = VALUE` or
//! `KEY += VALUE` per line (or several, separated by `;`); `#` starts a
//! comment to the end of the line; a value is a string in double or single
//! quotes, a bare number, or a list `[ V, V, ... ]` that may span lines
//! and end with a comma. As in xl, a bare number is only a string written
//! without quotes, so `memory = "512"` and `name = 42` are fine too.
//!
//! Where Pavise is stricter than xl, it says so with an error rather than
//! doing something the file's author did not expect: a key xl knows but
//! Pavise does not read, a key given twice (xl silently takes the last), a
//! number in a form xl reads as octal or hex, Windows line endings.
//!
//! `no_std` with `alloc`, so that Dom0 (`xl create`) and the host
//! (`cargo xtask run --config`) check a file the same way.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

/// Cases for a property test: `default`, or `PROPTEST_CASES` when set
/// (`cargo xtask fuzz --host` raises it; proptest's own default reads it,
/// a fixed `with_cases` would not).
#[cfg(test)]
pub(crate) fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// Longest domain name accepted: Dom0's limit for boot-time DomU names
/// (`dom0::cmdline::NAME_MAX`, which Dom0 checks equal to this).
pub const NAME_MAX: usize = 64;
/// Most vCPUs a domain may have (Xen's `HVM_MAX_VCPUS`; Dom0's
/// `cmdline::VCPUS_MAX`).
pub const VCPUS_MAX: u32 = 128;
/// Disks one domain can have: `xvda` to `xvdp` (Dom0's
/// `cmdline::VBD_DEVS_MAX`).
pub const VBD_DEVS_MAX: usize = 16;
/// Highest network interface handle (Dom0's `cmdline::VIF_HANDLE_MAX`).
pub const VIF_HANDLE_MAX: u32 = 255;

/// Most memory a domain may be given, in MiB.
pub const MEMORY_MAX_MIB: u32 = 65536;
/// Memory of a domain whose config gives neither `memory` nor `maxmem`:
/// libxl's default (`libxl__domain_build_info_setdefault` sets
/// `max_memkb` to 32 MiB and the target to that).
pub const MEMORY_DEFAULT_MIB: u32 = 32;

/// The keys Pavise reads; any other is an error.
const KEYS: [&str; 16] = [
    "name",
    "type",
    "kernel",
    "ramdisk",
    "cmdline",
    "root",
    "extra",
    "memory",
    "maxmem",
    "vcpus",
    "maxvcpus",
    "disk",
    "vif",
    "on_poweroff",
    "on_reboot",
    "on_crash",
];

/// Keys whose value is a number: xl refuses `+=` on them.
const NUMBER_KEYS: [&str; 4] = ["memory", "maxmem", "vcpus", "maxvcpus"];

/// What to do with a domain when it powers off, reboots or crashes
/// (xl.cfg's `on_poweroff`, `on_reboot`, `on_crash`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Destroy the domain.
    Destroy,
    /// Destroy it and create a new one from the same config.
    Restart,
    /// Keep it, for examination, until it is destroyed by hand.
    Preserve,
    /// Rename the dead domain, then create a new one from the same config.
    RenameRestart,
    /// Write a core dump of the domain, then destroy it.
    CoredumpDestroy,
    /// Write a core dump of the domain, then restart it.
    CoredumpRestart,
    /// Reset the domain's Xen interfaces and let it carry on.
    SoftReset,
}

impl Action {
    /// Each action with its name in a config file (xl's
    /// `action_on_shutdown_names`, matched exactly).
    const NAMES: [(&'static str, Action); 7] = [
        ("destroy", Action::Destroy),
        ("restart", Action::Restart),
        ("preserve", Action::Preserve),
        ("rename-restart", Action::RenameRestart),
        ("coredump-destroy", Action::CoredumpDestroy),
        ("coredump-restart", Action::CoredumpRestart),
        ("soft-reset", Action::SoftReset),
    ];

    /// The action a config file names `name`, if any.
    pub fn from_name(name: &str) -> Option<Action> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, action)| *action)
    }

    /// The action's name in a config file.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, action)| *action == self)
            .map_or("destroy", |(n, _)| n)
    }
}

/// Why `name` cannot name one of Dom0's files, if it cannot: Dom0 knows a
/// file (a kernel, ramdisk, config or disk image) by its host file name
/// alone, which must be letters, digits, `.`, `_`, `-` and `+` (and not
/// `.` or `..`), at most [`NAME_MAX`] bytes.
pub fn file_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it has no name")
    } else if name == "." || name == ".." {
        Some("'.' and '..' name no file")
    } else if name.len() > NAME_MAX {
        Some("its name is longer than 64 bytes")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
    {
        Some("its name has a character other than a letter, digit, '.', '_', '-' or '+'")
    } else {
        None
    }
}

/// One virtual disk: the host image `target`, which the guest sees as
/// `vdev` (`xvda`…`xvdp`), read-only or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskCfg {
    /// The image's path as written (xl would prepend `/dev/` to a path
    /// without a leading `/`; Pavise leaves that to whoever opens it).
    pub target: String,
    pub vdev: String,
    pub readonly: bool,
}

/// One network interface; its handle is its index in the `vif` list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VifCfg {
    /// The guest's MAC address; `None` asks for one to be made (xl makes
    /// one in Xen's OUI, 00:16:3e).
    pub mac: Option<[u8; 6]>,
}

/// A checked domain configuration. The guest is PVH: that is the only
/// type Pavise runs, so there is no field for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    pub name: String,
    /// Path of the kernel image.
    pub kernel: String,
    /// Path of the initial ramdisk, if any.
    pub ramdisk: Option<String>,
    /// The kernel command line: `cmdline` if given, else built from `root`
    /// and `extra` as xl does; empty if none of them is given.
    pub cmdline: String,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub disks: Vec<DiskCfg>,
    pub vifs: Vec<VifCfg>,
    pub on_poweroff: Action,
    pub on_reboot: Action,
    pub on_crash: Action,
}

/// Why a config was refused: `message` is one sentence saying what is
/// wrong and what to do; `line` is the line it is about (from 1), or 0 if
/// it is about the file as a whole (a required key missing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub line: usize,
    pub message: String,
}

impl ConfigError {
    fn at(line: usize, message: String) -> ConfigError {
        ConfigError { line, message }
    }
}

impl fmt::Display for ConfigError {
    /// `line N: MESSAGE`, or just the message when it has no line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

/// Reads a domain configuration file, stopping at its first error.
///
/// Defaults, as xl's: `type` — Pavise runs PVH guests only, so a missing
/// `type` means `"pvh"`; note that xl itself defaults to `"pv"` on x86
/// (and to `"pvh"` on Arm), so a config written for xl on x86 without a
/// `type` line was meant for a PV guest and needs a PVH-capable kernel
/// here. `memory` — `maxmem` if that is given (libxl's target defaults to
/// the maximum), else [`MEMORY_DEFAULT_MIB`]. `vcpus` — 1. `on_poweroff`
/// destroy, `on_reboot` restart, `on_crash` destroy.
///
/// Pavise neither balloons nor hot-plugs vCPUs, so `maxmem` must equal
/// `memory` and `maxvcpus` must equal `vcpus` when they are given (xl
/// would start the guest with memory or vCPUs held back for later).
pub fn parse(text: &str) -> Result<DomainConfig, ConfigError> {
    let settings = read_settings(text)?;
    build(&settings)
}

/// Reads a config as [`parse`] does, with `overrides` (`KEY=VALUE` each,
/// as given after the file name to `xl create`) replacing the file's
/// settings of the same key or adding to them, as xl does (strings
/// quoted, as in the file: `name="web-2"`). An error in
/// an override names it and has no line.
pub fn parse_with(text: &str, overrides: &[&str]) -> Result<DomainConfig, ConfigError> {
    let mut settings = read_settings(text)?;
    for setting in overrides {
        let given = read_settings(setting).map_err(|e| {
            ConfigError::at(
                0,
                format!("the setting '{setting}' after the config: {}", e.message),
            )
        })?;
        if given.is_empty() {
            return Err(ConfigError::at(
                0,
                format!("the setting '{setting}' after the config is empty: give KEY=VALUE"),
            ));
        }
        for new in given {
            match settings.iter_mut().find(|s| s.key == new.key) {
                Some(old) => *old = new,
                None => settings.push(new),
            }
        }
    }
    build(&settings)
}

// ---------------------------------------------------------------------
// The lexer: xl's tokens, each with the line it starts on.

/// A string or bare number, with the line it is on. `quoted` only
/// decides how it is shown in messages: xl treats both alike.
#[derive(Clone, Debug)]
struct Atom {
    text: String,
    quoted: bool,
    line: usize,
}

impl Atom {
    /// The atom as it would be written in the file (near enough: escapes
    /// are shown Rust's way).
    fn shown(&self) -> String {
        if self.quoted {
            format!("{:?}", self.text)
        } else {
            self.text.clone()
        }
    }
}

#[derive(Debug)]
enum Token {
    Key(String),
    Atom(Atom),
    Open,
    Close,
    Comma,
    Assign,
    Append,
    Semicolon,
    Newline,
    End,
}

impl Token {
    /// The token as a message names it.
    fn describe(&self) -> String {
        match self {
            Token::Key(k) => format!("'{k}'"),
            Token::Atom(a) => a.shown(),
            Token::Open => "'['".to_string(),
            Token::Close => "']'".to_string(),
            Token::Comma => "','".to_string(),
            Token::Assign => "'='".to_string(),
            Token::Append => "'+='".to_string(),
            Token::Semicolon => "';'".to_string(),
            Token::Newline => "the end of the line".to_string(),
            Token::End => "the end of the file".to_string(),
        }
    }
}

struct Lexer<'a> {
    rest: &'a str,
    line: usize,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Lexer<'a> {
        Lexer {
            rest: text,
            line: 1,
        }
    }

    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.rest = &self.rest[c.len_utf8()..];
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// The next token and the line it starts on.
    fn next(&mut self) -> Result<(Token, usize), ConfigError> {
        loop {
            match self.peek() {
                Some(' ' | '\t') => {
                    self.bump();
                }
                // A comment runs to the end of the line, which stays a
                // newline token (xl lexes `#...\n` as one).
                Some('#') => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
        let line = self.line;
        let Some(c) = self.bump() else {
            return Ok((Token::End, line));
        };
        let token = match c {
            '\n' => Token::Newline,
            '[' => Token::Open,
            ']' => Token::Close,
            ',' => Token::Comma,
            '=' => Token::Assign,
            ';' => Token::Semicolon,
            '+' if self.peek() == Some('=') => {
                self.bump();
                Token::Append
            }
            '"' | '\'' => Token::Atom(Atom {
                text: self.string(c, line)?,
                quoted: true,
                line,
            }),
            'a'..='z' | 'A'..='Z' => Token::Key(self.word(c)),
            '0'..='9' => {
                let word = self.word(c);
                // xl's bare number is [0-9][0-9a-fx]*; anything else
                // unquoted is a lexical error there too.
                if !word
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'x'))
                {
                    return Err(ConfigError::at(
                        line,
                        format!(
                            "'{word}' is neither a number nor a quoted string: \
                             put strings in quotes and write numbers as plain digits"
                        ),
                    ));
                }
                Token::Atom(Atom {
                    text: word,
                    quoted: false,
                    line,
                })
            }
            '\r' => {
                return Err(ConfigError::at(
                    line,
                    "the line ends with a carriage return, which xl does not accept: \
                     convert the file to Unix line endings"
                        .to_string(),
                ));
            }
            other => {
                return Err(ConfigError::at(
                    line,
                    format!(
                        "unexpected {other:?}: a setting is KEY = VALUE, with strings \
                         in quotes (xl config files are not Python)"
                    ),
                ));
            }
        };
        Ok((token, line))
    }

    /// The rest of a key or bare number whose first character was
    /// `first`. It takes more characters than xl's identifiers do (capitals,
    /// `-`), so that `Memory` or `on-crash` is named in an "unknown key"
    /// error rather than as a stray character.
    fn word(&mut self, first: char) -> String {
        let mut word = String::from(first);
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            word.push(c);
            self.bump();
        }
        word
    }

    /// The rest of a string opened with `quote` on `line`, unescaped as
    /// xl's `xlu__cfgl_dequote` does. A string cannot span lines.
    fn string(&mut self, quote: char, line: usize) -> Result<String, ConfigError> {
        let unclosed = || {
            ConfigError::at(
                line,
                format!(
                    "the string that starts here has no closing {quote}: close it on the same line"
                ),
            )
        };
        let mut text = String::new();
        loop {
            let c = match self.peek() {
                None | Some('\n') => return Err(unclosed()),
                Some(c) => c,
            };
            self.bump();
            if c == quote {
                return Ok(text);
            }
            if c != '\\' {
                text.push(c);
                continue;
            }
            let escaped = match self.peek() {
                None | Some('\n') => return Err(unclosed()),
                Some(e) => e,
            };
            self.bump();
            text.push(match escaped {
                '"' | '\'' | '\\' => escaped,
                'a' => '\x07',
                'b' => '\x08',
                'f' => '\x0c',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'v' => '\x0b',
                // xl's dequote takes these but always fails on `\x` and
                // drops `\NNN` without writing a character, so no working
                // config has them.
                'x' | '0'..='7' => {
                    return Err(ConfigError::at(
                        line,
                        format!(
                            "'\\{escaped}' starts a numeric escape, which xl does not \
                             handle: write the character itself"
                        ),
                    ));
                }
                other => {
                    return Err(ConfigError::at(
                        line,
                        format!(
                            "'\\{other}' is not an escape xl knows: write '\\\\' for a \
                             backslash, or one of \\\" \\' \\a \\b \\f \\n \\r \\t \\v"
                        ),
                    ));
                }
            });
        }
    }
}

// ---------------------------------------------------------------------
// The parser: statements into settings, as libxlu's grammar has them.

#[derive(Clone, Debug)]
enum Value {
    Atom(Atom),
    /// The items, and the line of the `[`.
    List(Vec<Atom>, usize),
}

impl Value {
    fn line(&self) -> usize {
        match self {
            Value::Atom(a) => a.line,
            Value::List(_, line) => *line,
        }
    }
}

struct Setting {
    key: String,
    value: Value,
    /// The line of the value (of its last part, after a `+=`).
    line: usize,
}

/// The file's settings, in the order of their first appearance, with
/// every `+=` applied; the first syntax error, unknown key or key given
/// twice stops it.
fn read_settings(text: &str) -> Result<Vec<Setting>, ConfigError> {
    let mut lexer = Lexer::new(text);
    let mut settings: Vec<Setting> = Vec::new();
    loop {
        let (token, line) = lexer.next()?;
        let key = match token {
            Token::Newline | Token::Semicolon => continue,
            Token::End => return Ok(settings),
            Token::Key(key) => key,
            other => {
                return Err(ConfigError::at(
                    line,
                    format!(
                        "expected a key at the start of a setting but found {}: \
                         write KEY = VALUE",
                        other.describe()
                    ),
                ));
            }
        };
        if !KEYS.contains(&key.as_str()) {
            return Err(unknown_key(line, &key));
        }
        let append = match lexer.next()? {
            (Token::Assign, _) => false,
            (Token::Append, _) if NUMBER_KEYS.contains(&key.as_str()) => {
                return Err(ConfigError::at(
                    line,
                    format!("'{key} +=' cannot add to a number: give {key} = N once"),
                ));
            }
            (Token::Append, _) => true,
            (other, at) => {
                return Err(ConfigError::at(
                    at,
                    format!(
                        "expected '=' after '{key}' but found {}: write {key} = VALUE",
                        other.describe()
                    ),
                ));
            }
        };
        let value = read_value(&mut lexer)?;
        store(&mut settings, key, value, append)?;
        match lexer.next()? {
            (Token::Newline | Token::Semicolon, _) => {}
            (Token::End, _) => return Ok(settings),
            (other, at) => {
                return Err(ConfigError::at(
                    at,
                    format!(
                        "expected the end of the setting but found {}: put each \
                         setting on its own line or end it with ';'",
                        other.describe()
                    ),
                ));
            }
        }
    }
}

fn unknown_key(line: usize, key: &str) -> ConfigError {
    ConfigError::at(
        line,
        format!(
            "unknown key '{key}': Pavise reads only {} (keys are lower case)",
            KEYS.join(", ")
        ),
    )
}

/// Adds a setting: `key = value` for a new key, or `key += value`, which
/// joins value to an earlier one of the same kind (strings end to end,
/// lists one after the other) or is a plain `=` when there is none.
fn store(
    settings: &mut Vec<Setting>,
    key: String,
    value: Value,
    append: bool,
) -> Result<(), ConfigError> {
    let line = value.line();
    let Some(earlier) = settings.iter_mut().find(|s| s.key == key) else {
        settings.push(Setting { key, value, line });
        return Ok(());
    };
    if !append {
        return Err(ConfigError::at(
            line,
            format!(
                "'{key}' is given twice (first on line {}): remove one, or use \
                 {key} += to add to it",
                earlier.line
            ),
        ));
    }
    match (&mut earlier.value, value) {
        (Value::Atom(old), Value::Atom(new)) => {
            old.text.push_str(&new.text);
            old.quoted |= new.quoted;
        }
        (Value::List(old, _), Value::List(new, _)) => old.extend(new),
        _ => {
            return Err(ConfigError::at(
                line,
                format!(
                    "'{key} +=' cannot add a list to a string or a string to a list: \
                     add the same kind as on line {}",
                    earlier.line
                ),
            ));
        }
    }
    earlier.line = line;
    Ok(())
}

/// A string, a number or a list of them. xl's grammar allows lists in
/// lists, but no key takes one, so they are refused here.
fn read_value(lexer: &mut Lexer<'_>) -> Result<Value, ConfigError> {
    let (token, line) = lexer.next()?;
    match token {
        Token::Atom(atom) => Ok(Value::Atom(atom)),
        Token::Open => read_list(lexer, line),
        other => Err(ConfigError::at(
            line,
            format!(
                "expected a value after '=' but found {}: give a quoted string, \
                 a number or a [ list ]",
                other.describe()
            ),
        )),
    }
}

/// The items of a list whose `[` was on line `open`: newlines may come
/// anywhere between items, and a comma may follow the last.
fn read_list(lexer: &mut Lexer<'_>, open: usize) -> Result<Value, ConfigError> {
    let mut items = Vec::new();
    loop {
        // An item, or the end of the list (right after `[` or a comma).
        match next_in_list(lexer, open)? {
            (Token::Close, _) => return Ok(Value::List(items, open)),
            (Token::Atom(atom), _) => items.push(atom),
            (other, at) => return Err(bad_in_list(at, &other)),
        }
        match next_in_list(lexer, open)? {
            (Token::Close, _) => return Ok(Value::List(items, open)),
            (Token::Comma, _) => {}
            (other, at) => {
                return Err(ConfigError::at(
                    at,
                    format!(
                        "expected ',' or ']' after a list item but found {}: \
                         separate the items with commas",
                        other.describe()
                    ),
                ));
            }
        }
    }
}

/// The next token in a list other than a newline.
fn next_in_list(lexer: &mut Lexer<'_>, open: usize) -> Result<(Token, usize), ConfigError> {
    loop {
        match lexer.next()? {
            (Token::Newline, _) => {}
            (Token::End, _) => {
                return Err(ConfigError::at(
                    open,
                    "the list that starts here has no closing ']': close it".to_string(),
                ));
            }
            lexed => return Ok(lexed),
        }
    }
}

fn bad_in_list(line: usize, token: &Token) -> ConfigError {
    let message = match token {
        Token::Open => "a list inside a list is not something any key takes: \
                        give a list of strings"
            .to_string(),
        other => format!(
            "expected a list item but found {}: give quoted strings separated by commas",
            other.describe()
        ),
    };
    ConfigError::at(line, message)
}

// ---------------------------------------------------------------------
// The settings into a DomainConfig.

fn build(settings: &[Setting]) -> Result<DomainConfig, ConfigError> {
    let mut name = None;
    let mut kernel = None;
    let mut ramdisk = None;
    let mut cmdline = None;
    let mut root = None;
    let mut extra = None;
    let mut memory = None;
    let mut maxmem = None;
    let mut vcpus = None;
    let mut maxvcpus = None;
    let mut disks = Vec::new();
    let mut vifs = Vec::new();
    let mut on_poweroff = Action::Destroy;
    let mut on_reboot = Action::Restart;
    let mut on_crash = Action::Destroy;
    // In file order, so the first error reported is the first in the file.
    for setting in settings {
        match setting.key.as_str() {
            "name" => name = Some(domain_name(setting)?),
            "type" => guest_type(setting)?,
            "kernel" => kernel = Some(path(setting)?),
            "ramdisk" => ramdisk = Some(path(setting)?),
            "cmdline" => cmdline = Some(string(setting)?.text.clone()),
            "root" => root = Some(string(setting)?.text.clone()),
            "extra" => extra = Some(string(setting)?.text.clone()),
            "memory" => memory = Some(number(setting, 1, MEMORY_MAX_MIB, " MiB")?),
            "maxmem" => maxmem = Some((number(setting, 1, MEMORY_MAX_MIB, " MiB")?, setting)),
            "vcpus" => vcpus = Some(number(setting, 1, VCPUS_MAX, "")?),
            "maxvcpus" => maxvcpus = Some((number(setting, 1, VCPUS_MAX, "")?, setting)),
            "disk" => disks = disk_list(setting)?,
            "vif" => vifs = vif_list(setting)?,
            "on_poweroff" => on_poweroff = action(setting)?,
            "on_reboot" => on_reboot = action(setting)?,
            "on_crash" => on_crash = action(setting)?,
            other => return Err(unknown_key(setting.line, other)),
        }
    }
    let name = name.ok_or_else(|| missing("name", "NAME"))?;
    let kernel = kernel.ok_or_else(|| missing("kernel", "PATH"))?;
    let memory_mib = memory
        .or(maxmem.map(|(max, _)| max))
        .unwrap_or(MEMORY_DEFAULT_MIB);
    if let Some((max, setting)) = maxmem.filter(|(max, _)| *max != memory_mib) {
        return Err(ConfigError::at(
            setting.line,
            format!(
                "maxmem = {max} differs from memory = {memory_mib}, but Pavise does not \
                 balloon guests: remove maxmem or make it equal to memory"
            ),
        ));
    }
    let vcpus = vcpus.unwrap_or(1);
    if let Some((max, setting)) = maxvcpus.filter(|(max, _)| *max != vcpus) {
        return Err(ConfigError::at(
            setting.line,
            format!(
                "maxvcpus = {max} differs from vcpus = {vcpus}, but Pavise does not \
                 hot-plug vCPUs: remove maxvcpus or make it equal to vcpus"
            ),
        ));
    }
    Ok(DomainConfig {
        name,
        kernel,
        ramdisk,
        cmdline: kernel_cmdline(cmdline, root, extra),
        memory_mib,
        vcpus,
        disks,
        vifs,
        on_poweroff,
        on_reboot,
        on_crash,
    })
}

fn missing(key: &str, placeholder: &str) -> ConfigError {
    ConfigError::at(
        0,
        format!("the config has no '{key}': add {key} = \"{placeholder}\""),
    )
}

/// xl's `parse_cmdline`: `cmdline` wins and `root` and `extra` are then
/// ignored (xl.cfg: "When cmdline is set, root and extra will be
/// ignored"); otherwise `root=ROOT EXTRA`, `root=ROOT` or `EXTRA`.
fn kernel_cmdline(cmdline: Option<String>, root: Option<String>, extra: Option<String>) -> String {
    match (cmdline, root, extra) {
        (Some(cmdline), _, _) => cmdline,
        (None, Some(root), Some(extra)) => format!("root={root} {extra}"),
        (None, Some(root), None) => format!("root={root}"),
        (None, None, extra) => extra.unwrap_or_default(),
    }
}

/// The setting's value as a string (a bare number is one too, as in xl).
fn string(setting: &Setting) -> Result<&Atom, ConfigError> {
    match &setting.value {
        Value::Atom(atom) => Ok(atom),
        Value::List(..) => Err(ConfigError::at(
            setting.line,
            format!(
                "'{}' takes a string, not a list: write {} = \"...\"",
                setting.key, setting.key
            ),
        )),
    }
}

fn path(setting: &Setting) -> Result<String, ConfigError> {
    let atom = string(setting)?;
    if atom.text.is_empty() {
        return Err(ConfigError::at(
            atom.line,
            format!("{} = \"\" is empty: give the file's path", setting.key),
        ));
    }
    Ok(atom.text.clone())
}

/// A name of 1 to [`NAME_MAX`] printable ASCII characters without spaces:
/// the same rule as Dom0's for boot-time DomU names (`dom0::cmdline`), so
/// a name reads the same wherever Dom0 prints it.
fn domain_name(setting: &Setting) -> Result<String, ConfigError> {
    let atom = string(setting)?;
    let name = &atom.text;
    let problem = if name.is_empty() {
        "is empty: give the domain a name".to_string()
    } else if name.len() > NAME_MAX {
        format!(
            "is {} bytes long: give a name of at most {NAME_MAX}",
            name.len()
        )
    } else if !name.bytes().all(|b| b.is_ascii_graphic()) {
        "has a space or a character that is not printable ASCII: use letters, \
         digits and punctuation"
            .to_string()
    } else {
        return Ok(name.clone());
    };
    Err(ConfigError::at(
        atom.line,
        format!("name = {} {problem}", atom.shown()),
    ))
}

/// `type`: PVH only. (xl matches a prefix of "hvm", "pv" or "pvh"; Pavise
/// wants the word.)
fn guest_type(setting: &Setting) -> Result<(), ConfigError> {
    let atom = string(setting)?;
    let problem = match atom.text.as_str() {
        "pvh" => return Ok(()),
        "pv" | "hvm" => {
            "is not supported: Pavise runs PVH guests only, so give type = \"pvh\" \
                         (with a PVH-capable kernel) or leave type out"
        }
        _ => "is not a guest type: give type = \"pvh\"",
    };
    Err(ConfigError::at(
        atom.line,
        format!("type = {} {problem}", atom.shown()),
    ))
}

/// A decimal number from `min` to `max`. xl reads numbers with
/// `strtol(.., 0)`, so `010` would be 8 and `0x10` 16 there; rather than
/// differ silently, both are refused.
fn number(setting: &Setting, min: u32, max: u32, unit: &str) -> Result<u32, ConfigError> {
    let key = &setting.key;
    let Value::Atom(atom) = &setting.value else {
        return Err(ConfigError::at(
            setting.line,
            format!("'{key}' takes a number, not a list: write {key} = N"),
        ));
    };
    let text = &atom.text;
    let shown = atom.shown();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::at(
            atom.line,
            format!("{key} = {shown} is not a number: give a whole number in decimal{unit}"),
        ));
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(ConfigError::at(
            atom.line,
            format!(
                "{key} = {shown} has a leading zero, which xl reads as octal: write it \
                 without the zero"
            ),
        ));
    }
    text.parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ConfigError::at(
                atom.line,
                format!("{key} = {shown} is out of range: give between {min} and {max}{unit}"),
            )
        })
}

fn action(setting: &Setting) -> Result<Action, ConfigError> {
    let atom = string(setting)?;
    Action::from_name(&atom.text).ok_or_else(|| {
        let names: Vec<&str> = Action::NAMES.iter().map(|(n, _)| *n).collect();
        ConfigError::at(
            atom.line,
            format!(
                "{} = {} is not an action: give one of {}",
                setting.key,
                atom.shown(),
                names.join(", ")
            ),
        )
    })
}

/// The setting's value as a list of strings.
fn list<'s>(setting: &'s Setting, what: &str) -> Result<&'s [Atom], ConfigError> {
    match &setting.value {
        Value::List(items, _) => Ok(items),
        Value::Atom(_) => Err(ConfigError::at(
            setting.line,
            format!(
                "'{}' takes a list: write {} = [ \"{what}\", ... ]",
                setting.key, setting.key
            ),
        )),
    }
}

fn disk_list(setting: &Setting) -> Result<Vec<DiskCfg>, ConfigError> {
    let mut disks: Vec<(DiskCfg, usize)> = Vec::new();
    for item in list(setting, "PATH,raw,xvda,rw")? {
        let disk = disk_spec(&item.text).map_err(|problem| {
            ConfigError::at(item.line, format!("disk {} {problem}", item.shown()))
        })?;
        if let Some((_, first)) = disks.iter().find(|(d, _)| d.vdev == disk.vdev) {
            return Err(ConfigError::at(
                item.line,
                format!(
                    "disk {} uses vdev {}, which the disk on line {first} already has: \
                     give each disk its own vdev",
                    item.shown(),
                    disk.vdev
                ),
            ));
        }
        disks.push((disk, item.line));
    }
    Ok(disks.into_iter().map(|(disk, _)| disk).collect())
}

/// Disk parameters xl knows that Pavise does not support, given as
/// `KEY=VALUE`.
const DISK_KEYS_UNSUPPORTED: [&str; 11] = [
    "devtype",
    "backend",
    "backendtype",
    "specification",
    "script",
    "colo-host",
    "colo-port",
    "colo-export",
    "active-disk",
    "hidden-disk",
    "grant_usage",
];

/// Disk flags xl knows that Pavise does not support.
const DISK_FLAGS_UNSUPPORTED: [&str; 8] = [
    "cdrom",
    "direct-io-safe",
    "discard",
    "no-discard",
    "colo",
    "no-colo",
    "trusted",
    "untrusted",
];

/// One disk spec (xl-disk-configuration(5)): comma-separated parameters,
/// each `KEY=VALUE`, a flag, or positional (filling the first of target,
/// format, vdev, access not yet given); `target=` takes the whole rest of
/// the spec, commas and all, so it comes last. Each parameter is given at
/// most once; an empty one means its default. Whitespace before a
/// parameter is skipped. The problem is returned as the end of a sentence
/// that starts with the spec.
fn disk_spec(spec: &str) -> Result<DiskCfg, String> {
    const POSITIONAL: [&str; 4] = ["target", "format", "vdev", "access"];
    let mut given: [Option<&str>; 4] = [None; 4];
    let mut rest = spec;
    loop {
        rest = rest.trim_start_matches([' ', '\t', '\n']);
        if rest.is_empty() {
            break;
        }
        if let Some(target) = rest.strip_prefix("target=") {
            // Permitted even after an empty positional target.
            if given[0].is_some_and(|t| !t.is_empty()) {
                return Err("gives the target twice: give each parameter once".to_string());
            }
            given[0] = Some(target);
            break;
        }
        let (param, after) = rest.split_once(',').unwrap_or((rest, ""));
        rest = after;
        if let Some((key, value)) = param.split_once('=') {
            let Some(slot) = POSITIONAL.iter().position(|p| *p == key) else {
                return Err(if DISK_KEYS_UNSUPPORTED.contains(&key) {
                    format!(
                        "sets '{key}', which Pavise does not support: use only target, \
                         format, vdev and access"
                    )
                } else {
                    format!(
                        "has an unknown parameter '{key}': use target, format, vdev and \
                         access (a target with '=' or ',' in it goes last, as target=PATH)"
                    )
                });
            };
            if given[slot].is_some() {
                return Err(format!("gives the {key} twice: give each parameter once"));
            }
            given[slot] = Some(value);
        } else if DISK_FLAGS_UNSUPPORTED.contains(&param) {
            return Err(format!(
                "uses '{param}', which Pavise does not support: remove it"
            ));
        } else if let Some(prefix) = deprecated_prefix(param) {
            return Err(format!(
                "uses xl's deprecated '{prefix}:' prefix: write it as PATH,raw,VDEV,ACCESS"
            ));
        } else {
            let Some(slot) = given.iter().position(Option::is_none) else {
                return Err("has more than four positional parameters: write \
                            TARGET,FORMAT,VDEV,ACCESS"
                    .to_string());
            };
            given[slot] = Some(param);
        }
    }
    let [target, format, vdev, access] = given.map(Option::unwrap_or_default);
    if target.is_empty() {
        return Err(
            "has no target: give the image's path first, or as target=PATH at the end".to_string(),
        );
    }
    match format {
        "" | "raw" => {}
        "qcow" | "qcow2" | "vhd" | "qed" => {
            return Err(format!(
                "has format {format}, but Pavise reads only raw images: convert the image \
                 to raw"
            ));
        }
        other => return Err(format!("has an unknown format '{other}': give raw")),
    }
    if vdev.is_empty() {
        return Err("has no vdev: name the guest's device, xvda to xvdp".to_string());
    }
    let vdev_ok = match vdev.as_bytes() {
        [b'x', b'v', b'd', letter] => (b'a'..b'a' + VBD_DEVS_MAX as u8).contains(letter),
        _ => false,
    };
    if !vdev_ok {
        return Err(format!(
            "has vdev '{vdev}', but Pavise's guests have only xvda to xvdp: use one of those"
        ));
    }
    let readonly = match access {
        "" | "rw" | "w" => false,
        "ro" | "r" => true,
        other => return Err(format!("has access '{other}': give ro, r, rw or w")),
    };
    Ok(DiskCfg {
        target: target.to_string(),
        vdev: vdev.to_string(),
        readonly,
    })
}

/// The prefix of xl's deprecated `PREFIX:TARGET` disk syntax that `param`
/// starts with, if any (xl's lexer: letters and digits, then `:`, then
/// nothing or something other than a letter or digit).
fn deprecated_prefix(param: &str) -> Option<&str> {
    let (prefix, after) = param.split_once(':')?;
    let mut chars = prefix.chars();
    let looks_like_prefix = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && !after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    looks_like_prefix.then_some(prefix)
}

fn vif_list(setting: &Setting) -> Result<Vec<VifCfg>, ConfigError> {
    let items = list(setting, "mac=00:16:3e:00:00:01,bridge=xenbr0")?;
    if items.len() > VIF_HANDLE_MAX as usize + 1 {
        return Err(ConfigError::at(
            setting.line,
            format!(
                "'vif' lists {} interfaces: give at most {}",
                items.len(),
                VIF_HANDLE_MAX + 1
            ),
        ));
    }
    let mut vifs: Vec<(VifCfg, usize)> = Vec::new();
    for item in items {
        let vif = vif_spec(&item.text).map_err(|problem| {
            ConfigError::at(item.line, format!("vif {} {problem}", item.shown()))
        })?;
        if let Some((_, first)) = vifs
            .iter()
            .find(|(v, _)| v.mac.is_some() && v.mac == vif.mac)
        {
            return Err(ConfigError::at(
                item.line,
                format!(
                    "vif {} has the same mac as the vif on line {first}: give each \
                     interface its own",
                    item.shown()
                ),
            ));
        }
        vifs.push((vif, item.line));
    }
    Ok(vifs.into_iter().map(|(vif, _)| vif).collect())
}

/// One vif spec (xl-network-configuration(5)): comma-separated
/// `KEY=VALUE`s, all optional, spaces before each skipped and empty ones
/// passed over (as xl's `strtok` does). `bridge` and `script` are accepted
/// and ignored (Dom0's switch connects every vif), as is `type=vif`; any
/// other key is an error (xl only warns). The problem is returned as the
/// end of a sentence that starts with the spec.
fn vif_spec(spec: &str) -> Result<VifCfg, String> {
    let mut mac = None;
    for param in spec.split(',') {
        let param = param.trim_start_matches(' ');
        if param.is_empty() {
            continue;
        }
        match param.split_once('=') {
            Some(("mac", value)) => {
                if mac.is_some() {
                    return Err("gives mac twice: give it once".to_string());
                }
                mac = Some(parse_mac(value)?);
            }
            Some(("bridge" | "script", _)) | Some(("type", "vif")) => {}
            Some(("type", "ioemu")) => {
                return Err("has type=ioemu, an emulated NIC, which PVH guests do not \
                            have: use type=vif or leave type out"
                    .to_string());
            }
            Some(("type", other)) => {
                return Err(format!("has type={other}: use type=vif or leave type out"));
            }
            Some((key, _)) => {
                return Err(format!(
                    "sets '{key}', which Pavise does not support: use only mac, bridge, \
                     script and type=vif"
                ));
            }
            None => {
                return Err(format!(
                    "has '{param}', which is not a KEY=VALUE setting: use only mac, \
                     bridge, script and type=vif"
                ));
            }
        }
    }
    Ok(VifCfg { mac })
}

/// Six groups of two hex digits separated by `:`, which an interface can
/// have (not a group address, not all zeros).
fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let malformed = || {
        format!(
            "has mac '{text}', which is not six two-digit hex numbers separated by ':': \
             write it like 00:16:3e:00:00:01"
        )
    };
    let mut mac = [0u8; 6];
    let mut groups = text.split(':');
    for byte in &mut mac {
        let group = groups.next().ok_or_else(malformed)?;
        if group.len() != 2 || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        *byte = u8::from_str_radix(group, 16).map_err(|_| malformed())?;
    }
    if groups.next().is_some() {
        return Err(malformed());
    }
    if mac[0] & 1 != 0 {
        return Err(format!(
            "has mac {text}, a multicast address, which no interface can have: clear the \
             lowest bit of the first byte"
        ));
    }
    if mac == [0; 6] {
        return Err(format!(
            "has mac {text}, which no interface can have: give another, or leave mac out \
             to have one made"
        ));
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_after_the_file_replace_or_add_as_xl_does() {
        let text = "name = \"web\"\nkernel = \"/k\"\nmemory = 64\n";
        let cfg = parse_with(text, &["name=\"web-2\"", "vcpus=2"]).unwrap();
        assert_eq!(
            (cfg.name.as_str(), cfg.memory_mib, cfg.vcpus),
            ("web-2", 64, 2)
        );
        let e = parse_with(text, &["colour=blue"]).unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
        let e = parse_with(text, &["memory"]).unwrap_err();
        assert!(e.message.contains("'memory' after the config"), "{e}");
        assert_eq!(parse_with(text, &[]).unwrap(), parse(text).unwrap());
    }

    use super::*;
    use proptest::prelude::*;

    const MINIMAL: &str = "name = \"guest\"\nkernel = \"/boot/vmlinuz\"\n";

    /// The minimal config with `extra` appended.
    fn with(extra: &str) -> Result<DomainConfig, ConfigError> {
        parse(&format!("{MINIMAL}{extra}"))
    }

    /// The error `extra` (appended to the minimal config) gives, shown.
    fn error(extra: &str) -> String {
        with(extra).unwrap_err().to_string()
    }

    fn disk(target: &str, vdev: &str, readonly: bool) -> DiskCfg {
        DiskCfg {
            target: target.to_string(),
            vdev: vdev.to_string(),
            readonly,
        }
    }

    #[test]
    fn reads_a_full_config() {
        let text = r#"# A Pavise guest.
name = "web-1"
type = "pvh"
kernel = "/guests/vmlinuz"
ramdisk = "/guests/initrd.img"
cmdline = "console=hvc0 quiet"
memory = 512
maxmem = 512
vcpus = 4
maxvcpus = 4
disk = [ "/images/root.raw,raw,xvda,rw",
         'format=raw, vdev=xvdb, access=ro, target=/images/data,v2.raw' ]
vif = [ "mac=00:16:3e:00:01:00,bridge=xenbr0", "" ]
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "preserve"
"#;
        let config = parse(text).unwrap();
        assert_eq!(
            config,
            DomainConfig {
                name: "web-1".to_string(),
                kernel: "/guests/vmlinuz".to_string(),
                ramdisk: Some("/guests/initrd.img".to_string()),
                cmdline: "console=hvc0 quiet".to_string(),
                memory_mib: 512,
                vcpus: 4,
                disks: alloc::vec![
                    disk("/images/root.raw", "xvda", false),
                    disk("/images/data,v2.raw", "xvdb", true),
                ],
                vifs: alloc::vec![
                    VifCfg {
                        mac: Some([0x00, 0x16, 0x3e, 0x00, 0x01, 0x00])
                    },
                    VifCfg { mac: None },
                ],
                on_poweroff: Action::Destroy,
                on_reboot: Action::Restart,
                on_crash: Action::Preserve,
            }
        );
    }

    #[test]
    fn defaults_are_xls() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.ramdisk, None);
        assert_eq!(config.cmdline, "");
        assert_eq!(config.memory_mib, MEMORY_DEFAULT_MIB);
        assert_eq!(config.vcpus, 1);
        assert!(config.disks.is_empty());
        assert!(config.vifs.is_empty());
        assert_eq!(
            (config.on_poweroff, config.on_reboot, config.on_crash),
            (Action::Destroy, Action::Restart, Action::Destroy)
        );
        // libxl's target memory defaults to the maximum.
        assert_eq!(with("maxmem = 256").unwrap().memory_mib, 256);
        assert_eq!(with("maxvcpus = 1").unwrap().vcpus, 1);
    }

    #[test]
    fn comments_quotes_separators_and_multiline_lists() {
        let text = "  # leading comment\n\
                    \n\
                    name='a\\'b\\\\c\\\"d' ; kernel = \"k # not a comment\" # a comment\n\
                    memory=\"64\";\n\
                    vcpus = 2;;\n\
                    extra = \"tab\\there\"\n\
                    disk = [\n\
                    \x20   # the root disk\n\
                    \x20   '/r.raw,,xvda',\n\
                    \n\
                    \x20   \"/s.raw,,xvdc,r\" ,\n\
                    ]\n\
                    vif = []\n\
                    on_crash = 'coredump-restart' # last line, no newline";
        let config = parse(text).unwrap();
        assert_eq!(config.name, "a'b\\c\"d");
        assert_eq!(config.kernel, "k # not a comment");
        assert_eq!((config.memory_mib, config.vcpus), (64, 2));
        assert_eq!(config.cmdline, "tab\there");
        assert_eq!(
            config.disks,
            [disk("/r.raw", "xvda", false), disk("/s.raw", "xvdc", true)]
        );
        assert!(config.vifs.is_empty());
        assert_eq!(config.on_crash, Action::CoredumpRestart);
        // Every escape xl takes.
        let config = with("extra = \"\\a\\b\\f\\n\\r\\t\\v\\'\"").unwrap();
        assert_eq!(config.cmdline, "\x07\x08\x0c\n\r\t\x0b'");
        // A bare number is a string too, and the last setting may end the file.
        assert_eq!(parse("kernel='k'\nname = 42").unwrap().name, "42");
    }

    #[test]
    fn plus_equals_adds_to_strings_and_lists() {
        let config = with(
            "extra = \"console=hvc0\"\nextra += \" quiet\"\n\
             disk = ['/a,,xvda']\ndisk += ['/b,,xvdb']\nroot += \"/dev/xvda1\"",
        )
        .unwrap();
        assert_eq!(config.cmdline, "root=/dev/xvda1 console=hvc0 quiet");
        assert_eq!(config.disks.len(), 2);
        assert_eq!(
            error("memory = 64\nmemory += 64"),
            "line 4: 'memory +=' cannot add to a number: give memory = N once"
        );
        assert_eq!(
            error("extra = \"x\"\nextra += [\"y\"]"),
            "line 4: 'extra +=' cannot add a list to a string or a string to a list: \
             add the same kind as on line 3"
        );
    }

    #[test]
    fn cmdline_root_and_extra_as_xl_combines_them() {
        assert_eq!(
            with("root = \"/dev/xvda1\"").unwrap().cmdline,
            "root=/dev/xvda1"
        );
        assert_eq!(with("extra = \"ro\"").unwrap().cmdline, "ro");
        assert_eq!(
            with("extra = \"ro\"\nroot = \"/dev/xvda1\"")
                .unwrap()
                .cmdline,
            "root=/dev/xvda1 ro"
        );
        // cmdline wins; root and extra are ignored.
        assert_eq!(
            with("root = \"/dev/xvda1\"\ncmdline = \"quiet\"\nextra = \"ro\"")
                .unwrap()
                .cmdline,
            "quiet"
        );
    }

    #[test]
    fn actions_by_name() {
        for (name, action) in Action::NAMES {
            assert_eq!(Action::from_name(name), Some(action));
            assert_eq!(action.name(), name);
            let config = with(&format!("on_reboot = \"{name}\"")).unwrap();
            assert_eq!(config.on_reboot, action);
        }
        assert_eq!(Action::from_name("Destroy"), None);
        assert_eq!(Action::from_name("rename_restart"), None);
        assert_eq!(
            error("on_poweroff = \"halt\""),
            "line 3: on_poweroff = \"halt\" is not an action: give one of destroy, restart, \
             preserve, rename-restart, coredump-destroy, coredump-restart, soft-reset"
        );
    }

    #[test]
    fn required_keys() {
        assert_eq!(
            parse("kernel = \"k\"").unwrap_err(),
            ConfigError {
                line: 0,
                message: "the config has no 'name': add name = \"NAME\"".to_string()
            }
        );
        assert_eq!(
            parse("name = \"n\"").unwrap_err().to_string(),
            "the config has no 'kernel': add kernel = \"PATH\""
        );
        assert_eq!(
            parse("").unwrap_err().to_string(),
            "the config has no 'name': add name = \"NAME\""
        );
        assert_eq!(
            parse("name = \"n\"\nkernel = \"\"")
                .unwrap_err()
                .to_string(),
            "line 2: kernel = \"\" is empty: give the file's path"
        );
    }

    #[test]
    fn names() {
        let name_ok = |name: &str| parse(&format!("name = \"{name}\"\nkernel = \"k\"")).is_ok();
        assert!(name_ok(&"x".repeat(NAME_MAX)));
        let long = "x".repeat(65);
        assert_eq!(
            parse(&format!("name = \"{long}\"\nkernel = \"k\""))
                .unwrap_err()
                .to_string(),
            format!("line 1: name = \"{long}\" is 65 bytes long: give a name of at most 64")
        );
        assert!(name_ok("Web_1.example-x"));
        assert!(!name_ok(""));
        assert!(!name_ok("a b"));
        assert!(!name_ok("a\\tb"));
        assert!(!name_ok("café"));
        assert_eq!(
            parse("name = \"\"").unwrap_err().to_string(),
            "line 1: name = \"\" is empty: give the domain a name"
        );
    }

    #[test]
    fn only_pvh_guests() {
        assert!(with("type = \"pvh\"").is_ok());
        assert!(with("type = 'pvh'").is_ok());
        for other in ["pv", "hvm"] {
            assert_eq!(
                error(&format!("type = \"{other}\"")),
                format!(
                    "line 3: type = \"{other}\" is not supported: Pavise runs PVH guests only, \
                     so give type = \"pvh\" (with a PVH-capable kernel) or leave type out"
                )
            );
        }
        assert_eq!(
            error("type = \"p\""),
            "line 3: type = \"p\" is not a guest type: give type = \"pvh\""
        );
    }

    #[test]
    fn numbers_and_their_ranges() {
        assert_eq!(
            error("memory = 0"),
            "line 3: memory = 0 is out of range: give between 1 and 65536 MiB"
        );
        assert_eq!(with("memory = 65536").unwrap().memory_mib, 65536);
        assert_eq!(
            error("memory = 65537"),
            "line 3: memory = 65537 is out of range: give between 1 and 65536 MiB"
        );
        assert_eq!(
            error("memory = 99999999999999999999"),
            "line 3: memory = 99999999999999999999 is out of range: give between 1 and 65536 MiB"
        );
        assert_eq!(
            error("memory = \"abc\""),
            "line 3: memory = \"abc\" is not a number: give a whole number in decimal MiB"
        );
        assert_eq!(
            error("memory = \"\""),
            "line 3: memory = \"\" is not a number: give a whole number in decimal MiB"
        );
        assert_eq!(
            error("memory = 0x100"),
            "line 3: memory = 0x100 is not a number: give a whole number in decimal MiB"
        );
        assert_eq!(
            error("memory = 010"),
            "line 3: memory = 010 has a leading zero, which xl reads as octal: write it \
             without the zero"
        );
        assert_eq!(
            error("memory = [1]"),
            "line 3: 'memory' takes a number, not a list: write memory = N"
        );
        assert_eq!(
            error("memory = 512M"),
            "line 3: '512M' is neither a number nor a quoted string: put strings in quotes \
             and write numbers as plain digits"
        );
        assert_eq!(with("vcpus = 128").unwrap().vcpus, 128);
        assert_eq!(
            error("vcpus = 129"),
            "line 3: vcpus = 129 is out of range: give between 1 and 128"
        );
        assert_eq!(
            error("vcpus = 0"),
            "line 3: vcpus = 0 is out of range: give between 1 and 128"
        );
    }

    #[test]
    fn no_ballooning_and_no_vcpu_hotplug() {
        assert_eq!(with("memory = 256\nmaxmem = 256").unwrap().memory_mib, 256);
        assert_eq!(
            error("memory = 256\nmaxmem = 512"),
            "line 4: maxmem = 512 differs from memory = 256, but Pavise does not balloon \
             guests: remove maxmem or make it equal to memory"
        );
        assert_eq!(
            error("maxmem = 128\nmemory = 256"),
            "line 3: maxmem = 128 differs from memory = 256, but Pavise does not balloon \
             guests: remove maxmem or make it equal to memory"
        );
        assert_eq!(with("vcpus = 2\nmaxvcpus = 2").unwrap().vcpus, 2);
        assert_eq!(
            error("vcpus = 2\nmaxvcpus = 4"),
            "line 4: maxvcpus = 4 differs from vcpus = 2, but Pavise does not hot-plug vCPUs: \
             remove maxvcpus or make it equal to vcpus"
        );
        assert_eq!(
            error("maxvcpus = 2"),
            "line 3: maxvcpus = 2 differs from vcpus = 1, but Pavise does not hot-plug vCPUs: \
             remove maxvcpus or make it equal to vcpus"
        );
    }

    #[test]
    fn unknown_and_repeated_keys() {
        let unknown = |key: &str| {
            format!(
                "line 3: unknown key '{key}': Pavise reads only name, type, kernel, ramdisk, \
                 cmdline, root, extra, memory, maxmem, vcpus, maxvcpus, disk, vif, \
                 on_poweroff, on_reboot, on_crash (keys are lower case)"
            )
        };
        assert_eq!(error("foo = 1"), unknown("foo"));
        assert_eq!(error("Memory = 1"), unknown("Memory"));
        assert_eq!(error("on-crash = \"destroy\""), unknown("on-crash"));
        assert_eq!(error("builder = \"generic\""), unknown("builder"));
        assert_eq!(
            error("memory = 64\n\nmemory = 64"),
            "line 5: 'memory' is given twice (first on line 3): remove one, or use \
             memory += to add to it"
        );
        assert_eq!(
            parse("name = \"a\"\nname = \"b\"\nkernel = \"k\"")
                .unwrap_err()
                .line,
            2
        );
    }

    #[test]
    fn wrong_value_kinds() {
        assert_eq!(
            error("ramdisk = [\"/i\"]"),
            "line 3: 'ramdisk' takes a string, not a list: write ramdisk = \"...\""
        );
        assert_eq!(
            error("disk = \"/a,,xvda\""),
            "line 3: 'disk' takes a list: write disk = [ \"PATH,raw,xvda,rw\", ... ]"
        );
        assert_eq!(
            error("vif = \"\""),
            "line 3: 'vif' takes a list: write vif = [ \"mac=00:16:3e:00:00:01,bridge=xenbr0\", ... ]"
        );
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            (
                "memory 64",
                "line 3: expected '=' after 'memory' but found 64: write memory = VALUE",
            ),
            (
                "memory =",
                "line 3: expected a value after '=' but found the end of the file: give a quoted string, a number or a [ list ]",
            ),
            (
                "memory = \n64",
                "line 3: expected a value after '=' but found the end of the line: give a quoted string, a number or a [ list ]",
            ),
            (
                "memory = 64 vcpus = 2",
                "line 3: expected the end of the setting but found 'vcpus': put each setting on its own line or end it with ';'",
            ),
            (
                "= 64",
                "line 3: expected a key at the start of a setting but found '=': write KEY = VALUE",
            ),
            (
                "64",
                "line 3: expected a key at the start of a setting but found 64: write KEY = VALUE",
            ),
            (
                "extra = \"open",
                "line 3: the string that starts here has no closing \": close it on the same line",
            ),
            (
                "extra = 'a\nb'",
                "line 3: the string that starts here has no closing ': close it on the same line",
            ),
            (
                "extra = \"a\\\nb\"",
                "line 3: the string that starts here has no closing \": close it on the same line",
            ),
            (
                "extra = \"\\x41\"",
                "line 3: '\\x' starts a numeric escape, which xl does not handle: write the character itself",
            ),
            (
                "extra = \"\\101\"",
                "line 3: '\\1' starts a numeric escape, which xl does not handle: write the character itself",
            ),
            (
                "extra = \"\\q\"",
                "line 3: '\\q' is not an escape xl knows: write '\\\\' for a backslash, or one of \\\" \\' \\a \\b \\f \\n \\r \\t \\v",
            ),
            (
                "disk = [\n'/a,,xvda'\n",
                "line 3: the list that starts here has no closing ']': close it",
            ),
            (
                "disk = [ , ]",
                "line 3: expected a list item but found ',': give quoted strings separated by commas",
            ),
            (
                "disk = [ 'a' 'b' ]",
                "line 3: expected ',' or ']' after a list item but found \"b\": separate the items with commas",
            ),
            (
                "disk = [ ['a'] ]",
                "line 3: a list inside a list is not something any key takes: give a list of strings",
            ),
            (
                "memory = 64\r\n",
                "line 3: the line ends with a carriage return, which xl does not accept: convert the file to Unix line endings",
            ),
            (
                "memory = (64)",
                "line 3: unexpected '(': a setting is KEY = VALUE, with strings in quotes (xl config files are not Python)",
            ),
            (
                "memory = -1",
                "line 3: unexpected '-': a setting is KEY = VALUE, with strings in quotes (xl config files are not Python)",
            ),
        ];
        for (extra, message) in cases {
            assert_eq!(error(extra), message, "{extra:?}");
        }
        // The line is where the problem is, also inside a list.
        assert_eq!(
            error("disk = [\n'/a,,xvda',\n\n  'oops' ]").lines().count(),
            1
        );
        assert_eq!(
            with("disk = [\n'/a,,xvda',\n\n  'oops' ]")
                .unwrap_err()
                .line,
            6
        );
    }

    #[test]
    fn disk_forms() {
        let one = |spec: &str| disk_spec(spec);
        let expected = Ok(disk("/dev/vg/guest-volume", "xvda", false));
        // The equivalent forms of xl-disk-configuration(5), with xvda.
        assert_eq!(one("/dev/vg/guest-volume,,xvda"), expected);
        assert_eq!(one("/dev/vg/guest-volume,raw,xvda,rw"), expected);
        assert_eq!(
            one("format=raw, vdev=xvda, access=rw, target=/dev/vg/guest-volume"),
            expected
        );
        assert_eq!(one("vdev=xvda,target=/dev/vg/guest-volume"), expected);
        assert_eq!(one(" /dev/vg/guest-volume, raw, xvda, w"), expected);
        // Keyed parameters leave their place in the positional order.
        assert_eq!(one("format=raw,/dev/vg/guest-volume,xvda"), expected);
        assert_eq!(one("access=ro,/i,,xvdb"), Ok(disk("/i", "xvdb", true)));
        assert_eq!(one("/i,raw,xvdp,r"), Ok(disk("/i", "xvdp", true)));
        assert_eq!(one("/i,raw,xvdp,ro"), Ok(disk("/i", "xvdp", true)));
        // target= takes the rest, commas, '=' and trailing spaces too, even
        // after an empty positional target.
        assert_eq!(
            one("vdev=xvda, target=/a,b=c "),
            Ok(disk("/a,b=c ", "xvda", false))
        );
        assert_eq!(one(",raw,xvda,target=/t"), Ok(disk("/t", "xvda", false)));

        let cases = [
            (
                "/i,raw,xvda,rw,extra",
                "has more than four positional parameters: write TARGET,FORMAT,VDEV,ACCESS",
            ),
            (
                "/i,qcow2,xvda",
                "has format qcow2, but Pavise reads only raw images: convert the image to raw",
            ),
            ("/i,tar,xvda", "has an unknown format 'tar': give raw"),
            (
                "/i,raw,hda",
                "has vdev 'hda', but Pavise's guests have only xvda to xvdp: use one of those",
            ),
            (
                "/i,raw,xvdq",
                "has vdev 'xvdq', but Pavise's guests have only xvda to xvdp: use one of those",
            ),
            (
                "/i,raw,xvda:cdrom",
                "has vdev 'xvda:cdrom', but Pavise's guests have only xvda to xvdp: use one of those",
            ),
            (
                "/i,raw",
                "has no vdev: name the guest's device, xvda to xvdp",
            ),
            (
                "/i,raw,,rw",
                "has no vdev: name the guest's device, xvda to xvdp",
            ),
            (
                ",raw,xvda",
                "has no target: give the image's path first, or as target=PATH at the end",
            ),
            (
                "",
                "has no target: give the image's path first, or as target=PATH at the end",
            ),
            ("/i,raw,xvda,rx", "has access 'rx': give ro, r, rw or w"),
            (
                "/i,,xvda,cdrom",
                "uses 'cdrom', which Pavise does not support: remove it",
            ),
            (
                "/i,,xvda,devtype=cdrom",
                "sets 'devtype', which Pavise does not support: use only target, format, vdev and access",
            ),
            (
                "/i,,xvda,backend=d1",
                "sets 'backend', which Pavise does not support: use only target, format, vdev and access",
            ),
            (
                "/i,,xvda,size=1",
                "has an unknown parameter 'size': use target, format, vdev and access (a target with '=' or ',' in it goes last, as target=PATH)",
            ),
            (
                "target=/a=b,xvda",
                "has no vdev: name the guest's device, xvda to xvdp",
            ),
            (
                "/i,,xvda,vdev=xvdb",
                "gives the vdev twice: give each parameter once",
            ),
            (
                "/i,,xvda,target=/j",
                "gives the target twice: give each parameter once",
            ),
            (
                "phy:/dev/sda,xvda,w",
                "uses xl's deprecated 'phy:' prefix: write it as PATH,raw,VDEV,ACCESS",
            ),
            (
                "raw:/i,xvda,w",
                "uses xl's deprecated 'raw:' prefix: write it as PATH,raw,VDEV,ACCESS",
            ),
        ];
        for (spec, problem) in cases {
            assert_eq!(one(spec), Err(problem.to_string()), "{spec:?}");
        }
        // A colon elsewhere is part of the path.
        assert_eq!(one("/a:b,,xvda"), Ok(disk("/a:b", "xvda", false)));
        // In a config, the message names the spec and its line.
        assert_eq!(
            error("disk = [ '/i,raw,hda' ]"),
            "line 3: disk \"/i,raw,hda\" has vdev 'hda', but Pavise's guests have only xvda \
             to xvdp: use one of those"
        );
        assert_eq!(
            error("disk = [ '/a,,xvda',\n '/b,,xvda' ]"),
            "line 4: disk \"/b,,xvda\" uses vdev xvda, which the disk on line 3 already has: \
             give each disk its own vdev"
        );
    }

    #[test]
    fn vif_forms() {
        let one = |spec: &str| vif_spec(spec);
        let mac = [0x00, 0x16, 0x3e, 0x74, 0x3d, 0x76];
        assert_eq!(one(""), Ok(VifCfg { mac: None }));
        assert_eq!(one("bridge=xenbr0"), Ok(VifCfg { mac: None }));
        assert_eq!(one("mac=00:16:3E:74:3d:76"), Ok(VifCfg { mac: Some(mac) }));
        assert_eq!(
            one("mac=00:16:3e:74:3d:76, bridge=xenbr1,type=vif,script=vif-bridge,"),
            Ok(VifCfg { mac: Some(mac) })
        );
        let malformed = |m: &str| {
            format!(
                "has mac '{m}', which is not six two-digit hex numbers separated by ':': \
                 write it like 00:16:3e:00:00:01"
            )
        };
        let cases = [
            (
                "mac=00:16:3e:74:3d".to_string(),
                malformed("00:16:3e:74:3d"),
            ),
            (
                "mac=00:16:3e:74:3d:76:01".to_string(),
                malformed("00:16:3e:74:3d:76:01"),
            ),
            (
                "mac=0:16:3e:74:3d:76".to_string(),
                malformed("0:16:3e:74:3d:76"),
            ),
            (
                "mac=00-16-3e-74-3d-76".to_string(),
                malformed("00-16-3e-74-3d-76"),
            ),
            (
                "mac=00:16:3e:74:3d:+7".to_string(),
                malformed("00:16:3e:74:3d:+7"),
            ),
            ("mac=".to_string(), malformed("")),
            (
                "mac=01:00:5e:00:00:01".to_string(),
                "has mac 01:00:5e:00:00:01, a multicast address, which no interface can have: \
                 clear the lowest bit of the first byte"
                    .to_string(),
            ),
            (
                "mac=00:00:00:00:00:00".to_string(),
                "has mac 00:00:00:00:00:00, which no interface can have: give another, or \
                 leave mac out to have one made"
                    .to_string(),
            ),
            (
                "mac=00:16:3e:00:00:01,mac=00:16:3e:00:00:02".to_string(),
                "gives mac twice: give it once".to_string(),
            ),
            (
                "model=e1000".to_string(),
                "sets 'model', which Pavise does not support: use only mac, bridge, script and \
                 type=vif"
                    .to_string(),
            ),
            (
                "rate=10Mb/s".to_string(),
                "sets 'rate', which Pavise does not support: use only mac, bridge, script and \
                 type=vif"
                    .to_string(),
            ),
            (
                "xenbr0".to_string(),
                "has 'xenbr0', which is not a KEY=VALUE setting: use only mac, bridge, script \
                 and type=vif"
                    .to_string(),
            ),
            (
                "type=ioemu".to_string(),
                "has type=ioemu, an emulated NIC, which PVH guests do not have: use type=vif or \
                 leave type out"
                    .to_string(),
            ),
            (
                "type=x".to_string(),
                "has type=x: use type=vif or leave type out".to_string(),
            ),
        ];
        for (spec, problem) in cases {
            assert_eq!(one(&spec), Err(problem), "{spec:?}");
        }
        assert_eq!(
            error("vif = [ 'mac=00:16:3e:00:00:01',\n'mac=00:16:3E:00:00:01' ]"),
            "line 4: vif \"mac=00:16:3E:00:00:01\" has the same mac as the vif on line 3: give \
             each interface its own"
        );
        assert_eq!(
            error("vif = [ 'model=e1000' ]"),
            "line 3: vif \"model=e1000\" sets 'model', which Pavise does not support: use only \
             mac, bridge, script and type=vif"
        );
        let many = alloc::vec!["''"; 257].join(",");
        assert_eq!(
            error(&format!("vif = [{many}]")),
            "line 3: 'vif' lists 257 interfaces: give at most 256"
        );
        assert_eq!(
            with(&format!("vif = [{}]", alloc::vec!["''"; 256].join(",")))
                .unwrap()
                .vifs
                .len(),
            256
        );
    }

    #[test]
    fn every_error_is_one_line() {
        let bad = [
            "",
            "name = \"\"",
            "kernel = \"k\"\nname = \"a\tb\"",
            "disk = [ '/i,raw,hda' ]",
            "vif = [ 'mac=01:00:00:00:00:00' ]",
            "x = 1",
        ];
        for text in bad {
            let shown = parse(text).unwrap_err().to_string();
            assert!(!shown.contains('\n'), "{shown}");
            assert!(!shown.ends_with('.'), "{shown}");
        }
    }

    /// Bits of config text, for building inputs that get past the lexer.
    fn fragment() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(
            &[
                "name",
                "kernel",
                "memory",
                "vcpus",
                "maxmem",
                "maxvcpus",
                "disk",
                "vif",
                "type",
                "extra",
                "root",
                "cmdline",
                "on_crash",
                "foo",
                " = ",
                " += ",
                "=",
                "[",
                "]",
                ",",
                ";",
                "\n",
                "# c\n",
                "\"pvh\"",
                "'k'",
                "\"\"",
                "64",
                "0",
                "010",
                "99999999999",
                "0x1",
                "\"/i,raw,xvda\"",
                "'target=/a,b'",
                "\"mac=00:16:3e:00:00:01\"",
                "'mac=01:00:00:00:00:00'",
                "\"a\\\"b\"",
                "\\",
                "\"",
                "'",
                "\r",
                " ",
                "\t",
                "é",
                "\"phy:/x,xvda,w\"",
                "'vdev=xvdb,/j'",
            ][..],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(2000)))]

        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC*") {
            let _ = parse(&text);
        }

        #[test]
        fn never_panics_on_config_like_text(parts in proptest::collection::vec(fragment(), 0..40)) {
            let text = parts.concat();
            if let Err(e) = parse(&text) {
                let shown = e.to_string();
                prop_assert!(!shown.contains('\n'));
                prop_assert!(e.line <= text.matches('\n').count() + 1);
            }
        }

        #[test]
        fn disk_and_vif_specs_never_panic(spec in "[a-z0-9=,:/ \\t.-]{0,40}") {
            let _ = disk_spec(&spec);
            let _ = vif_spec(&spec);
        }
    }
}
