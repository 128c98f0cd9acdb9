//! Linux with its root file system on its own disk (`xvda`): the kernel
//! modules that reach and mount it, taken out of Debian's kernel package
//! (Debian builds `xen-blkfront` and `ext4` as modules); a small initramfs
//! whose /init loads them, waits for the disk, mounts it and hands over to
//! its /sbin/init, as Debian's initramfs-tools does for `root=/dev/xvda`;
//! and the ext4 image of that root file system: busybox, an /sbin/init
//! that gives a shell, or runs a check named on the kernel command line
//! (`pavise.check=NAME[:ARG]`) and powers off.
//!
//! Everything is kept under [`crate::linux::cache_dir`]: the modules in
//! `root-modules/` (with `load`, their load order), the initramfs and the
//! image `root.img` of `cargo xtask linux --disk`.
//!
//! Other sets of modules come out of the package the same way
//! ([`modules_named`], e.g. [`NET_MODULES`], `xen-netfront`, into
//! `net-modules/`), and go into any initramfs ([`module_files`]) whose
//! init loads them with [`LOAD_MODULES`].

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::disk;
use crate::error::{Error, Result};
use crate::linux;
use crate::prereqs::find_program;

/// The modules a root on an ext4 `xvda` needs, as `modprobe` names them;
/// their dependencies come with them.
pub const ROOT_MODULES: &[&str] = &["xen-blkfront", "ext4"];

/// The modules a DomU's network interfaces need, as `modprobe` names
/// them: Xen's netfront (a module in Debian's kernel, needing no other:
/// the xenbus core, `af_packet`, `unix` and `ipv6` are built in).
pub const NET_MODULES: &[&str] = &["xen-netfront"];

/// The directory of [`crate::linux::cache_dir`] with [`NET_MODULES`].
pub const NET_MODULES_DIR: &str = "net-modules";

/// The size of the root file system image.
pub const ROOT_IMAGE_MIB: u32 = 64;

/// The words on the kernel command line that root Linux on its first disk,
/// read by [`ROOT_INITRAMFS_INIT`] (`rw` is its default too).
pub const ROOT_CMDLINE: &str = "root=/dev/xvda rw";

/// The directory of [`crate::linux::cache_dir`] with the root modules.
pub const MODULES_DIR: &str = "root-modules";

/// The file in the modules' directory (and in the initramfs's
/// `/lib/modules/`) that names them in load order: `FILE` or
/// `FILE optional` a line.
pub const LOAD_FILE: &str = "load";

/// What a module's `.modinfo` section says that matters here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=`, when given.
    pub name: Option<String>,
    /// `depends=`: the modules it needs loaded first.
    pub depends: Vec<String>,
    /// `softdep=pre: …`: modules (or aliases) `modprobe` loads first if it
    /// can.
    pub softdep_pre: Vec<String>,
    /// `alias=`: patterns of the names it answers to.
    pub aliases: Vec<String>,
}

/// One module of a kernel's module tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Its name as the kernel knows it (`xen_blkfront`: `-` read as `_`).
    pub name: String,
    /// Its file, relative to the tree (`kernel/drivers/block/xen-blkfront.ko`).
    pub path: String,
    pub info: ModInfo,
}

/// What a kernel's module tree (`lib/modules/VERSION/`) holds: its modules
/// in `modules.order` order, and what is built into the kernel instead.
#[derive(Clone, Debug, Default)]
pub struct ModuleIndex {
    modules: Vec<Module>,
    builtin: BTreeSet<String>,
    builtin_aliases: Vec<String>,
}

/// One module to load, in [`load_order`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Load {
    pub name: String,
    /// Its file in the tree.
    pub path: String,
    /// Only a soft dependency (or needed only by one): its failing to load
    /// is not fatal, as with `modprobe`.
    pub optional: bool,
}

/// The kernel's spelling of a module name: `-` is `_`.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// A module file's name without its directory and its `.ko[.xz|.zst|.gz]`
/// ending, if it is a module file.
fn module_stem(path: &str) -> Option<&str> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let file = [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .unwrap_or(file);
    file.strip_suffix(".ko")
}

/// The module name of a module file (`kernel/fs/ext4/ext4.ko.xz` → `ext4`).
pub fn module_name(path: &str) -> Option<String> {
    module_stem(path).map(normalize)
}

/// Reads a `.modinfo` section: NUL-separated `key=value` strings.
pub fn parse_modinfo(section: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for record in section.split(|b| *b == 0) {
        let record = String::from_utf8_lossy(record);
        let Some((key, value)) = record.split_once('=') else {
            continue;
        };
        match key {
            "name" => info.name = Some(value.to_owned()),
            "depends" => info.depends.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(normalize),
            ),
            "softdep" => {
                // "pre: a b post: c": the names after pre: up to post:.
                let mut pre = false;
                for word in value.split_whitespace() {
                    match word {
                        "pre:" => pre = true,
                        "post:" => pre = false,
                        name if pre => info.softdep_pre.push(name.to_owned()),
                        _ => {}
                    }
                }
            }
            "alias" => info.aliases.push(value.to_owned()),
            _ => {}
        }
    }
    info
}

/// The `.modinfo` section of a module (a little-endian ELF64 relocatable
/// file); the reason when there is none. (Hand-written: xtask has no ELF
/// crate, and only the section headers are needed.)
pub fn modinfo_section(elf: &[u8]) -> std::result::Result<&[u8], &'static str> {
    if !elf.starts_with(b"\x7fELF") {
        return Err("it is not an ELF file");
    }
    if elf.get(4..6) != Some(&[2, 1][..]) {
        return Err("it is not a little-endian 64-bit ELF file");
    }
    let truncated = "its section headers are cut short";
    let u16_at = |at: usize| -> Option<usize> {
        Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?).into())
    };
    let u32_at = |at: usize| -> Option<usize> {
        usize::try_from(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?)).ok()
    };
    let u64_at = |at: usize| -> Option<usize> {
        usize::try_from(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?)).ok()
    };
    let shoff = u64_at(0x28).ok_or(truncated)?;
    let shentsize = u16_at(0x3a).ok_or(truncated)?;
    let shnum = u16_at(0x3c).ok_or(truncated)?;
    let shstrndx = u16_at(0x3e).ok_or(truncated)?;
    if shentsize < 0x40 {
        return Err("its section headers are too small");
    }
    // (offset, size) of section i, within the file.
    let section = |i: usize| -> Option<(usize, usize, usize)> {
        let header = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let (name, offset, size) = (
            u32_at(header)?,
            u64_at(header + 0x18)?,
            u64_at(header + 0x20)?,
        );
        (offset.checked_add(size)? <= elf.len()).then_some((name, offset, size))
    };
    let (_, names_at, names_size) = section(shstrndx).ok_or(truncated)?;
    let names = &elf[names_at..names_at + names_size];
    for i in 0..shnum {
        let (name, offset, size) = section(i).ok_or(truncated)?;
        let name = names.get(name..).unwrap_or(&[]);
        let name = name.split(|b| *b == 0).next().unwrap_or(&[]);
        if name == b".modinfo" {
            return Ok(&elf[offset..offset + size]);
        }
    }
    Err("it has no .modinfo section")
}

/// Whether `name` matches the alias pattern `pattern` (`*` any run, `?`
/// any one character; as `modprobe` matches aliases, less bracket sets).
pub fn alias_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|k| go(rest, &n[k..])),
            Some((b'?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// The dependencies in a `modules.dep` (depmod's output: `PATH: DEP…` a
/// line) by module name.
pub fn parse_modules_dep(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let (module, deps) = line.split_once(':')?;
            let name = module_name(module.trim())?;
            let deps = deps.split_whitespace().filter_map(module_name).collect();
            Some((name, deps))
        })
        .collect()
}

impl ModuleIndex {
    /// An index of `modules` (in load-order preference, as
    /// `modules.order` lists them), with the names of the modules built
    /// into the kernel and their aliases.
    pub fn new(
        modules: Vec<Module>,
        builtin: BTreeSet<String>,
        builtin_aliases: Vec<String>,
    ) -> Self {
        Self {
            modules,
            builtin,
            builtin_aliases,
        }
    }

    /// Reads the module tree `dir` (`lib/modules/VERSION/`): every module
    /// file under it with its `.modinfo`, ordered as `modules.order` lists
    /// them; `modules.builtin` and `modules.builtin.modinfo`; and, when
    /// depmod has made one, `modules.dep`, whose dependencies are then
    /// used instead of each module's `depends=` (they are the same, from
    /// the modules' symbols).
    pub fn read(dir: &Path) -> Result<Self> {
        let read_text = |name: &str| fs::read_to_string(dir.join(name)).ok();
        let order = read_text("modules.order").unwrap_or_default();
        let mut ranks = std::collections::HashMap::new();
        for (at, line) in order.lines().enumerate() {
            ranks.entry(line.trim().to_owned()).or_insert(at);
        }
        // modules.order names plain .ko files, whatever the files' endings.
        let rank = |path: &str| {
            let plain = module_stem(path).map_or(path.to_owned(), |stem| {
                let dir = path.rfind('/').map_or("", |at| &path[..=at]);
                format!("{dir}{stem}.ko")
            });
            ranks.get(&plain).copied().unwrap_or(usize::MAX)
        };
        let mut files = Vec::new();
        walk(dir, dir, &mut files)?;
        let mut ranked: Vec<(usize, String)> = files.into_iter().map(|p| (rank(&p), p)).collect();
        ranked.sort();
        let mut modules = Vec::with_capacity(ranked.len());
        for (_, path) in ranked {
            let Some(name) = module_name(&path) else {
                continue;
            };
            let bytes = module_bytes(&dir.join(&path))?;
            let section = modinfo_section(&bytes).map_err(|reason| Error::LinuxPackage {
                path: dir.join(&path),
                reason: reason.to_owned(),
            })?;
            let info = parse_modinfo(section);
            let name = info.name.as_deref().map(normalize).unwrap_or(name);
            modules.push(Module { name, path, info });
        }
        if let Some(dep) = read_text("modules.dep") {
            for (name, deps) in parse_modules_dep(&dep) {
                if let Some(module) = modules.iter_mut().find(|m| m.name == name) {
                    module.info.depends = deps;
                }
            }
        }
        let builtin = read_text("modules.builtin")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| module_name(l.trim()))
            .collect();
        // modules.builtin.modinfo: "module.key=value" records, NUL-separated.
        let builtin_aliases = fs::read(dir.join("modules.builtin.modinfo"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter_map(|record| {
                let record = String::from_utf8_lossy(record);
                let (_, alias) = record.split_once(".alias=")?;
                Some(alias.to_owned())
            })
            .collect();
        Ok(Self::new(modules, builtin, builtin_aliases))
    }

    fn module(&self, name: &str) -> Option<&Module> {
        self.modules.iter().find(|m| m.name == name)
    }

    fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(name)
    }

    /// What a soft dependency `wanted` (a module name or an alias) is:
    /// nothing to load when the kernel has it built in; else the module of
    /// that name, or every module with a matching alias (as `modprobe`
    /// loads them all).
    fn soft(&self, wanted: &str) -> Vec<String> {
        let name = normalize(wanted);
        if self.is_builtin(&name)
            || self
                .builtin_aliases
                .iter()
                .any(|a| alias_matches(a, wanted))
        {
            return Vec::new();
        }
        if self.module(&name).is_some() {
            return vec![name];
        }
        self.modules
            .iter()
            .filter(|m| m.info.aliases.iter().any(|a| alias_matches(a, wanted)))
            .map(|m| m.name.clone())
            .collect()
    }
}

/// Collects the module files under `dir` (paths relative to `root`).
fn walk(root: &Path, dir: &Path, files: &mut Vec<String>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(Error::io(format!("listing {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("listing {}", dir.display())))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(Error::io(format!("looking at {}", path.display())))?;
        if kind.is_dir() {
            walk(root, &path, files)?;
        } else if kind.is_file() {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let relative = relative.to_string_lossy().into_owned();
            if module_stem(&relative).is_some() {
                files.push(relative);
            }
        }
    }
    Ok(())
}

/// The modules to load for `wanted` (module names), dependencies first:
/// for each module its soft `pre:` dependencies (optional), then its
/// `depends=` (depth first, each once), then itself; what the kernel has
/// built in is left out. The reason when a module (or a dependency of a
/// required one) is neither there nor built in, or the dependencies loop.
pub fn load_order(index: &ModuleIndex, wanted: &[&str]) -> std::result::Result<Vec<Load>, String> {
    struct Walk<'a> {
        index: &'a ModuleIndex,
        order: Vec<Load>,
        path: Vec<String>,
    }
    impl Walk<'_> {
        fn visit(
            &mut self,
            name: &str,
            optional: bool,
            needed_by: Option<&str>,
        ) -> Result<(), String> {
            if self.index.is_builtin(name) {
                return Ok(());
            }
            let Some(module) = self.index.module(name) else {
                return if optional {
                    Ok(())
                } else {
                    Err(match needed_by {
                        Some(by) => format!("it has no module {name}, which {by} depends on"),
                        None => format!("it has no module {name} and does not build it in"),
                    })
                };
            };
            if let Some(at) = self.order.iter().position(|l| l.name == name) {
                // Loaded already; needed for sure now, with what it needs.
                if self.order[at].optional && !optional {
                    self.order[at].optional = false;
                    for dep in &module.info.depends {
                        self.visit(dep, false, Some(name))?;
                    }
                }
                return Ok(());
            }
            if self.path.iter().any(|p| p == name) {
                return Err(format!(
                    "its modules depend on each other in a loop ({} → {name})",
                    self.path.join(" → ")
                ));
            }
            self.path.push(name.to_owned());
            for soft in &module.info.softdep_pre {
                for candidate in self.index.soft(soft) {
                    if candidate != name && !self.path.contains(&candidate) {
                        self.visit(&candidate, true, Some(name))?;
                    }
                }
            }
            for dep in &module.info.depends {
                self.visit(dep, optional, Some(name))?;
            }
            self.path.pop();
            self.order.push(Load {
                name: name.to_owned(),
                path: module.path.clone(),
                optional,
            });
            Ok(())
        }
    }
    let mut walk = Walk {
        index,
        order: Vec::new(),
        path: Vec::new(),
    };
    for name in wanted {
        walk.visit(&normalize(name), false, None)?;
    }
    Ok(walk.order)
}

/// A module file's contents, uncompressed (`.ko`, or `.ko.xz` / `.ko.gz`
/// read here, `.ko.zst` through the `zstd` program): busybox's insmod
/// takes them plain.
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let bytes = fs::read(path).map_err(Error::io(format!("reading {}", path.display())))?;
    let unreadable = |what: &str, e: std::io::Error| Error::LinuxPackage {
        path: path.to_owned(),
        reason: format!("its {what} stream cannot be decompressed ({e})"),
    };
    let mut plain = Vec::new();
    if name.ends_with(".xz") {
        lzma_rust2::XzReader::new(&bytes[..], false)
            .read_to_end(&mut plain)
            .map_err(|e| unreadable("xz", e))?;
        Ok(plain)
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut plain)
            .map_err(|e| unreadable("gzip", e))?;
        Ok(plain)
    } else if name.ends_with(".zst") {
        let zstd = find_program("zstd").ok_or_else(|| Error::LinuxPackage {
            path: path.to_owned(),
            reason: "it is zstd-compressed and `zstd` is not on PATH; install zstd".to_owned(),
        })?;
        let mut command = Command::new(zstd);
        command.args(["-dc", "--"]).arg(path).stdin(Stdio::null());
        Ok(crate::workspace::output_checked(&mut command)?.stdout)
    } else {
        Ok(bytes)
    }
}

/// A set of modules as cached (the root modules, or any set
/// [`modules_named`] takes): their directory and, in load order, each
/// file's name there and whether it is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootModules {
    pub dir: PathBuf,
    pub files: Vec<(String, bool)>,
}

impl RootModules {
    /// No modules: for a kernel of the user's own, which must have
    /// `xen-blkfront` and `ext4` built in.
    pub fn none() -> Self {
        Self::default()
    }

    /// The [`LOAD_FILE`] text: `FILE` or `FILE optional` a line.
    pub fn load_text(&self) -> String {
        self.files
            .iter()
            .map(|(file, optional)| {
                if *optional {
                    format!("{file} optional\n")
                } else {
                    format!("{file}\n")
                }
            })
            .collect()
    }

    /// Reads a [`LOAD_FILE`] text.
    pub fn parse_load(dir: &Path, text: &str) -> Self {
        let files = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let file = words.next()?;
                Some((file.to_owned(), words.next() == Some("optional")))
            })
            .collect();
        Self {
            dir: dir.to_owned(),
            files,
        }
    }

    /// The modules' names, in load order, for messages.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self
            .files
            .iter()
            .map(|(f, _)| f.strip_suffix(".ko").unwrap_or(f))
            .collect();
        names.join(" ")
    }
}

/// The modules [`ROOT_MODULES`] need from the kernel package of release
/// `version` (`linux-image-VERSION_*.deb` in `cache`), cached in
/// `cache/root-modules/`: taken out of the package (unpacked into a
/// scratch directory beside it, which is then removed) unless what is
/// there came from that package; plain `.ko` files (decompressed here if
/// the package compresses them) and their [`LOAD_FILE`]. Returns whether
/// they were taken out now.
pub fn modules(cache: &Path, version: &str) -> Result<(RootModules, bool)> {
    modules_named(cache, version, ROOT_MODULES, MODULES_DIR)
}

/// The modules `wanted` (as `modprobe` names them, e.g. [`NET_MODULES`])
/// and what they need ([`load_order`]) from the kernel package of release
/// `version` in `cache`, cached in `cache/DIR_NAME/` as [`modules`] caches
/// the root modules: plain `.ko` files and their [`LOAD_FILE`], taken out
/// of the package again only when it or `wanted` changed. Returns whether
/// they were taken out now. Several sets can go into one initramfs only
/// as one set: ask for all their names together.
pub fn modules_named(
    cache: &Path,
    version: &str,
    wanted: &[&str],
    dir_name: &str,
) -> Result<(RootModules, bool)> {
    let package = format!("linux-image-{version}");
    let deb = linux::find_deb(cache, &package)?.ok_or_else(|| Error::LinuxPackage {
        path: cache.to_owned(),
        reason: format!(
            "it holds no {package}_*.deb to take the modules {} from; `cargo xtask linux` downloads it",
            wanted.join(", ")
        ),
    })?;
    let dir = cache.join(dir_name);
    let load = dir.join(LOAD_FILE);
    let stamp = dir.join(".from");
    let wanted_file = dir.join(".wanted");
    let wanted_text = format!("{}\n", wanted.join(" "));
    if linux::up_to_date(&load, &stamp, &deb)
        && fs::read_to_string(&wanted_file).ok().as_deref() == Some(&*wanted_text)
    {
        let text =
            fs::read_to_string(&load).map_err(Error::io(format!("reading {}", load.display())))?;
        let modules = RootModules::parse_load(&dir, &text);
        if modules.files.iter().all(|(f, _)| dir.join(f).is_file()) {
            return Ok((modules, false));
        }
    }

    let scratch = cache.join(format!("{dir_name}.unpack"));
    linux::unpack(&deb, &scratch)?;
    let result = take_modules(&scratch, version, &deb, wanted, &dir);
    let removed =
        fs::remove_dir_all(&scratch).map_err(Error::io(format!("removing {}", scratch.display())));
    let modules = result?;
    removed?;
    fs::write(&load, modules.load_text())
        .map_err(Error::io(format!("writing {}", load.display())))?;
    fs::write(&wanted_file, wanted_text)
        .map_err(Error::io(format!("writing {}", wanted_file.display())))?;
    linux::stamp(&stamp, &deb)?;
    Ok((modules, true))
}

/// Resolves `wanted` in the unpacked package `unpacked` and copies the
/// modules to load, plain, into `dir` (emptied first).
fn take_modules(
    unpacked: &Path,
    version: &str,
    deb: &Path,
    wanted: &[&str],
    dir: &Path,
) -> Result<RootModules> {
    let base = unpacked.join("lib/modules");
    let mut tree = base.join(version);
    if !tree.is_dir() {
        // The release may be spelt otherwise; take the one tree there is.
        let trees: Vec<PathBuf> = fs::read_dir(&base)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        match trees.as_slice() {
            [one] => tree = one.clone(),
            _ => {
                return Err(Error::LinuxPackage {
                    path: deb.to_owned(),
                    reason: format!("it has no lib/modules/{version}/ with the kernel's modules"),
                });
            }
        }
    }
    let index = ModuleIndex::read(&tree)?;
    let order = load_order(&index, wanted).map_err(|reason| Error::LinuxPackage {
        path: deb.to_owned(),
        reason,
    })?;
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(Error::io(format!("removing {}", dir.display())))?;
    }
    fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let mut files = Vec::new();
    for load in order {
        let stem = module_stem(&load.path).unwrap_or(&load.name);
        let file = format!("{stem}.ko");
        let bytes = module_bytes(&tree.join(&load.path))?;
        let out = dir.join(&file);
        fs::write(&out, bytes).map_err(Error::io(format!("writing {}", out.display())))?;
        files.push((file, load.optional));
    }
    Ok(RootModules {
        dir: dir.to_owned(),
        files,
    })
}

/// Writes the root initramfs to `out`: busybox, [`ROOT_INITRAMFS_INIT`]
/// as /init, and `modules` with their load order in `/lib/modules/`.
pub fn initramfs(busybox: &Path, modules: &RootModules, out: &Path) -> Result<()> {
    linux::initramfs_with(busybox, ROOT_INITRAMFS_INIT, &module_files(modules)?, out)
}

/// `modules` as files of an initramfs (for [`linux::initramfs_with`]):
/// each `.ko` as `lib/modules/FILE`, and their load order as
/// `lib/modules/load` ([`LOAD_FILE`]), which [`LOAD_MODULES`] reads.
pub fn module_files(modules: &RootModules) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::with_capacity(modules.files.len() + 1);
    for (file, _) in &modules.files {
        let path = modules.dir.join(file);
        let bytes = fs::read(&path).map_err(Error::io(format!("reading {}", path.display())))?;
        files.push((format!("lib/modules/{file}"), bytes));
    }
    files.push((
        format!("lib/modules/{LOAD_FILE}"),
        modules.load_text().into_bytes(),
    ));
    Ok(files)
}

/// The part of an initramfs's `/init` (busybox sh) that loads the modules
/// [`module_files`] put in `/lib/modules/`, in order, with busybox's
/// `insmod`: a module marked optional may fail (its error is printed),
/// any other failing calls the script's own `fail MESSAGE` function,
/// which must be defined before. Afterwards `$loaded` lists what was
/// loaded (` xen-netfront`…). [`ROOT_INITRAMFS_INIT`] has it verbatim.
pub const LOAD_MODULES: &str = r#"loaded=""
while read -r file flag; do
    [ -n "$file" ] || continue
    if out=$(insmod "/lib/modules/$file" 2>&1); then
        loaded="$loaded ${file%.ko}"
    elif [ "$flag" = optional ]; then
        echo "pavise-initramfs: optional module $file not loaded: $out"
    else
        fail "cannot load module $file: $out"
    fi
done < /lib/modules/load
"#;

/// The root initramfs's `/init`: loads the modules `/lib/modules/load`
/// names, waits for the root device (`root=`, default `/dev/xvda`;
/// `LABEL=`/`UUID=` through findfs; `rootdelay=` seconds, default 30),
/// mounts it (`rootfstype=`, default ext4; `ro` or `rw`, default rw) on
/// /newroot, moves /dev, /proc and /sys there and `switch_root`s to its
/// init (`init=`, default /sbin/init). A failed step prints one
/// `pavise-initramfs: …; powering off` line and powers off.
pub const ROOT_INITRAMFS_INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
set -f
fail() {
    echo "pavise-initramfs: $*; powering off"
    poweroff -f
    exit 1
}
mount -t proc proc /proc || fail "cannot mount /proc"
mount -t sysfs sysfs /sys || fail "cannot mount /sys"
mount -t devtmpfs devtmpfs /dev || fail "cannot mount devtmpfs on /dev"

root=/dev/xvda
fstype=ext4
mode=rw
init=/sbin/init
delay=30
for word in $(cat /proc/cmdline); do
    case "$word" in
    root=*) root=${word#root=} ;;
    rootfstype=*) fstype=${word#rootfstype=} ;;
    rootdelay=*) delay=${word#rootdelay=} ;;
    init=*) init=${word#init=} ;;
    ro) mode=ro ;;
    rw) mode=rw ;;
    esac
done
case "$delay" in
''|*[!0-9]*) fail "rootdelay=$delay is not a whole number of seconds" ;;
esac

loaded=""
while read -r file flag; do
    [ -n "$file" ] || continue
    if out=$(insmod "/lib/modules/$file" 2>&1); then
        loaded="$loaded ${file%.ko}"
    elif [ "$flag" = optional ]; then
        echo "pavise-initramfs: optional module $file not loaded: $out"
    else
        fail "cannot load module $file: $out"
    fi
done < /lib/modules/load
echo "pavise-initramfs: loaded${loaded:- no modules}; waiting up to $delay s for $root"

tries=$((delay * 10))
while :; do
    case "$root" in
    LABEL=*|UUID=*) dev=$(findfs "$root" 2>/dev/null) ;;
    *) dev=$root ;;
    esac
    if [ -n "$dev" ] && [ -b "$dev" ]; then
        break
    fi
    [ "$tries" -gt 0 ] || fail "no block device $root after $delay s (is xen-blkfront loaded and a disk attached?)"
    tries=$((tries - 1))
    sleep 0.1
done

mkdir -p /newroot
out=$(mount -t "$fstype" -o "$mode" "$dev" /newroot 2>&1) \
    || fail "cannot mount $dev ($fstype, $mode) on /newroot: $out"
[ -x "/newroot$init" ] || fail "$dev has no executable $init"
for dir in dev proc sys; do
    [ -d "/newroot/$dir" ] || fail "$dev has no /$dir to move /$dir to"
    mount -o move "/$dir" "/newroot/$dir" || fail "cannot move /$dir onto $dev's /$dir"
done
echo "pavise-initramfs: mounted $dev ($fstype, $mode) on /; starting its $init"
exec switch_root /newroot "$init"
"#;

/// The root file system's `/sbin/init`: mounts what the initramfs did not
/// move over, prints `pavise-root: mounted DEV rw|ro TYPE, …` (read from
/// /proc/mounts), then runs the check `pavise.check=NAME[:ARG]` names
/// (`/etc/pavise/check-NAME ARG`) or, without one, a shell on the
/// console; afterwards it syncs, remounts / read-only (so that the image
/// is clean for the next boot and for the host's tools) and powers off.
pub const ROOT_SBIN_INIT: &str = r#"#!/bin/busybox sh
[ -e /bin/mount ] || /bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
set -f
[ -e /proc/self ] || mount -t proc proc /proc
[ -e /sys/kernel ] || mount -t sysfs sysfs /sys
[ -e /dev/console ] || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts 2>/dev/null
root="unknown"
while read -r dev dir type opts rest; do
    if [ "$dir" = / ]; then
        root="$dev ${opts%%,*} $type"
    fi
done < /proc/mounts
read up rest < /proc/uptime
echo "pavise-root: mounted $root, Linux $(uname -r) up $up s"

finish() {
    sync
    mount -o remount,ro / || echo "pavise-root: cannot remount / read-only"
    poweroff -f
}
check=""
for word in $(cat /proc/cmdline); do
    case "$word" in
    pavise.check=*) check=${word#pavise.check=} ;;
    esac
done
if [ -n "$check" ]; then
    name=${check%%:*}
    arg=""
    case "$check" in
    *:*) arg=${check#*:} ;;
    esac
    if [ -x "/etc/pavise/check-$name" ]; then
        "/etc/pavise/check-$name" "$arg" || echo "pavise-root: check $name failed"
    else
        echo "pavise-root: no check named '$name' (no /etc/pavise/check-$name)"
    fi
    finish
fi
echo "pavise-root: exit the shell to power the domain off"
setsid cttyhack sh -l
echo "pavise-root: shell ended; powering off"
finish
"#;

/// `/etc/pavise/persist-content SEED`: what `check-write` puts in
/// /persist: [`PERSIST_LINES`] lines `pavise-persist SEED N` (see
/// [`persist_content`]).
pub const PERSIST_CONTENT: &str = r#"#!/bin/busybox sh
awk -v s="$1" 'BEGIN { for (i = 1; i <= 2048; i++) printf "pavise-persist %s %d\n", s, i }'
"#;

/// How many lines /persist has: about 50 KB, a dozen 4 KiB blocks.
pub const PERSIST_LINES: u32 = 2048;

/// What `pavise.check=write:SEED` writes to /persist, as the host can
/// compare it.
pub fn persist_content(seed: &str) -> String {
    (1..=PERSIST_LINES)
        .map(|i| format!("pavise-persist {seed} {i}\n"))
        .collect()
}

/// `pavise.check=write:SEED`: writes /persist, syncs and says
/// `pavise-root: wrote SEED (…)`.
pub const CHECK_WRITE: &str = r#"#!/bin/busybox sh
seed=$1
case "$seed" in
''|*[!A-Za-z0-9_-]*)
    echo "pavise-root: write needs a seed of letters, digits, - and _ (pavise.check=write:SEED), not '$seed'"
    exit 1 ;;
esac
/etc/pavise/persist-content "$seed" > /persist || { echo "pavise-root: cannot write /persist"; exit 1; }
sync
echo "pavise-root: wrote $seed ($(wc -c < /persist) bytes, md5 $(md5sum < /persist | cut -d' ' -f1))"
"#;

/// `pavise.check=read:SEED`: compares /persist with what `write:SEED`
/// wrote and says `pavise-root: read SEED ok (…)` or what differs.
pub const CHECK_READ: &str = r#"#!/bin/busybox sh
seed=$1
case "$seed" in
''|*[!A-Za-z0-9_-]*)
    echo "pavise-root: read needs a seed of letters, digits, - and _ (pavise.check=read:SEED), not '$seed'"
    exit 1 ;;
esac
if [ ! -f /persist ]; then
    echo "pavise-root: read $seed failed: there is no /persist"
    exit 1
fi
want=$(/etc/pavise/persist-content "$seed" | md5sum | cut -d' ' -f1)
got=$(md5sum < /persist | cut -d' ' -f1)
bytes=$(wc -c < /persist)
if [ "$want" = "$got" ]; then
    echo "pavise-root: read $seed ok ($bytes bytes, md5 $got)"
else
    echo "pavise-root: read $seed mismatch: /persist has $bytes bytes, md5 $got, first line '$(head -n 1 /persist)'; expected md5 $want"
    exit 1
fi
"#;

/// `pavise.check=info`: the disk's size and read-only flag as Linux sees
/// them, then 1 MiB written, dropped from the page cache and read back.
pub const CHECK_INFO: &str = r#"#!/bin/busybox sh
echo "pavise-root: info xvda sectors=$(cat /sys/block/xvda/size) ro=$(cat /sys/block/xvda/ro)"
dd if=/dev/urandom of=/scratch bs=64k count=16 2>/dev/null
wrote=$(md5sum < /scratch | cut -d' ' -f1)
sync
echo 3 > /proc/sys/vm/drop_caches
read=$(md5sum < /scratch | cut -d' ' -f1)
rm -f /scratch
if [ "$wrote" = "$read" ]; then
    echo "pavise-root: info io=ok (1 MiB written, synced, read back)"
else
    echo "pavise-root: info io=mismatch: wrote md5 $wrote, read back $read"
    exit 1
fi
"#;

/// `pavise.check=dd`: busybox `dd` on raw disks with O_DIRECT (busybox
/// 1.35 has `iflag=direct` and `oflag=direct`): [`DD_MIB`] MiB of zeros
/// written to the scratch disk `/dev/xvdb` in 1 MiB blocks (with
/// `conv=fsync`, so that the disk's cache is flushed as Dom0's own bench
/// flushes, then `sync`; both timed) and read back, the first [`DD_MIB`]
/// MiB of the root disk `/dev/xvda` read, then 4 KiB reads at random
/// blocks of xvdb for 2 s, one `dd` process each (so one in flight, and
/// what a process start costs is in the figure). 4 MiB of each are read
/// and written first, untimed (under TCG the first pass through Linux's
/// I/O paths also pays for translating their code). Each is timed by
/// /proc/uptime (10 ms steps; busybox's dd prints no times). One line:
/// `linux-dd: write_mib_s=X read_mib_s=Y root_read_mib_s=Z
/// rand_read_iops=W` (MiB/s, 1 decimal). Everything on xvdb is
/// overwritten.
pub const CHECK_DD: &str = r#"#!/bin/busybox sh
scratch=/dev/xvdb
root=/dev/xvda
mib=32
tries=100
while [ ! -b "$scratch" ]; do
    if [ "$tries" -le 0 ]; then
        echo "linux-dd: no $scratch after 10 s (the check needs a scratch disk as the second disk)"
        exit 1
    fi
    tries=$((tries - 1))
    sleep 0.1
done
# now: the uptime in hundredths of a second, in $t (no process started).
now() {
    read u rest < /proc/uptime
    t=$(( ${u%.*} * 100 + 1${u#*.} - 100 ))
}
# timed WHAT COMMAND...: runs it, its time in $cs; says what failed.
timed() {
    what=$1
    shift
    now
    t0=$t
    if ! err=$("$@" 2>&1 >/dev/null); then
        echo "linux-dd: $what failed: $(echo $err)"
        exit 1
    fi
    now
    cs=$((t - t0))
}
rate() {
    awk -v cs="$1" -v n="$2" 'BEGIN { if (cs < 1) cs = 1; printf "%.1f", n * 100 / cs }'
}
write_scratch() {
    dd if=/dev/zero of="$scratch" bs=1M count=$mib oflag=direct conv=fsync && sync
}
# Untimed, 4 MiB of each first: TCG translates the I/O paths' code once.
for dev in "$scratch" "$root"; do
    timed "reading $dev" dd if="$dev" of=/dev/null bs=1M count=4 iflag=direct
done
timed "writing $scratch" dd if=/dev/zero of="$scratch" bs=1M count=4 oflag=direct conv=fsync
timed "writing $scratch" write_scratch
write=$(rate $cs $mib)
timed "reading $scratch" dd if="$scratch" of=/dev/null bs=1M count=$mib iflag=direct
read=$(rate $cs $mib)
timed "reading $root" dd if="$root" of=/dev/null bs=1M count=$mib iflag=direct
root_read=$(rate $cs $mib)
blocks=$(( $(cat /sys/block/${scratch#/dev/}/size) / 8 ))
n=0
bad=0
now
t0=$t
end=$((t0 + 200))
while [ "$t" -lt "$end" ]; do
    skip=$(( (RANDOM * 32768 + RANDOM) % blocks ))
    dd if="$scratch" of=/dev/null bs=4k count=1 skip=$skip iflag=direct 2>/dev/null || bad=$((bad + 1))
    n=$((n + 1))
    now
done
if [ "$bad" -gt 0 ]; then
    echo "linux-dd: $bad of $n random 4 KiB reads of $scratch failed"
    exit 1
fi
iops=$(rate $((t - t0)) $n)
echo "linux-dd: write_mib_s=$write read_mib_s=$read root_read_mib_s=$root_read rand_read_iops=$iops"
"#;

/// How many MiB [`CHECK_DD`] writes and reads.
pub const DD_MIB: u32 = 32;

/// The root file system's files besides busybox and its applet links:
/// path, mode, contents.
pub const ROOT_FILES: &[(&str, u32, &str)] = &[
    ("sbin/init", 0o755, ROOT_SBIN_INIT),
    ("etc/pavise/persist-content", 0o755, PERSIST_CONTENT),
    ("etc/pavise/check-write", 0o755, CHECK_WRITE),
    ("etc/pavise/check-read", 0o755, CHECK_READ),
    ("etc/pavise/check-info", 0o755, CHECK_INFO),
    ("etc/pavise/check-dd", 0o755, CHECK_DD),
    ("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"),
    ("etc/group", 0o644, "root:x:0:\n"),
    ("etc/hostname", 0o644, "pavise-domu\n"),
    (
        "etc/profile",
        0o644,
        "export PATH=/bin:/sbin:/usr/bin:/usr/sbin\nPS1='xvda:\\w# '\n",
    ),
];

/// The root file system's directories (mode), before its files.
const ROOT_DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("dev", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("run", 0o755),
    ("mnt", 0o755),
    ("root", 0o700),
    ("etc", 0o755),
    ("etc/pavise", 0o755),
];

/// busybox's applets as `busybox --list-full` names them (`bin/ls`,
/// `usr/bin/awk`, …), when the host can run it; `None` otherwise (then
/// /sbin/init installs them at its first boot).
fn applets(busybox: &Path) -> Option<Vec<String>> {
    let output = Command::new(busybox)
        .arg("--list-full")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let list: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| l.contains('/') && !l.starts_with('/') && !l.contains(".."))
        .map(str::to_owned)
        .collect();
    (!list.is_empty()).then_some(list)
}

/// Makes the root file system's tree in `dir` (which must not exist):
/// [`ROOT_DIRS`], `/bin/busybox` and a link to it for each applet (except
/// where [`ROOT_FILES`] puts a file), and [`ROOT_FILES`].
pub fn root_tree(busybox: &Path, dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set_mode = |path: &Path, mode: u32| {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(Error::io(format!("setting the mode of {}", path.display())))
    };
    fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    for (sub, mode) in ROOT_DIRS {
        let path = dir.join(sub);
        fs::create_dir_all(&path).map_err(Error::io(format!("creating {}", path.display())))?;
        set_mode(&path, *mode)?;
    }
    let target = dir.join("bin/busybox");
    fs::copy(busybox, &target).map_err(Error::io(format!(
        "copying {} to {}",
        busybox.display(),
        target.display()
    )))?;
    set_mode(&target, 0o755)?;
    let mut links = applets(busybox).unwrap_or_else(|| vec!["bin/sh".to_owned()]);
    links.retain(|l| l != "bin/busybox" && !ROOT_FILES.iter().any(|(f, _, _)| f == l));
    for link in links {
        let path = dir.join(&link);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(Error::io(format!("creating {}", parent.display())))?;
        }
        if path.symlink_metadata().is_ok() {
            continue;
        }
        std::os::unix::fs::symlink("/bin/busybox", &path)
            .map_err(Error::io(format!("linking {}", path.display())))?;
    }
    for (file, mode, text) in ROOT_FILES {
        let path = dir.join(file);
        fs::write(&path, text).map_err(Error::io(format!("writing {}", path.display())))?;
        set_mode(&path, *mode)?;
    }
    Ok(())
}

/// Makes `image` a fresh [`ROOT_IMAGE_MIB`] MiB ext4 root file system
/// ([`root_tree`] with `busybox`, through [`disk::build_ext4`]; the tree is
/// made beside the image and removed).
pub fn build_root_image(busybox: &Path, image: &Path) -> Result<()> {
    let mut tree = image.as_os_str().to_owned();
    tree.push(".tree");
    let tree = PathBuf::from(tree);
    if tree.exists() {
        fs::remove_dir_all(&tree).map_err(Error::io(format!("removing {}", tree.display())))?;
    }
    if let Some(parent) = image.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(Error::io(format!("creating {}", parent.display())))?;
    }
    let made =
        root_tree(busybox, &tree).and_then(|()| disk::build_ext4(&tree, image, ROOT_IMAGE_MIB));
    let removed =
        fs::remove_dir_all(&tree).map_err(Error::io(format!("removing {}", tree.display())));
    made?;
    removed
}

/// What a root image is made from, as its stamp records it: busybox's
/// path and size, and a digest of [`ROOT_FILES`].
fn fingerprint(busybox: &Path) -> Result<String> {
    let size = fs::metadata(busybox)
        .map_err(Error::io(format!("reading {}", busybox.display())))?
        .len();
    // FNV-1a over the files: a stable digest without another crate.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (file, mode, text) in ROOT_FILES {
        for byte in file.bytes().chain(mode.to_le_bytes()).chain(text.bytes()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(format!(
        "busybox {} ({size} bytes)\nfiles {hash:016x} ({ROOT_IMAGE_MIB} MiB)\n",
        busybox.display()
    ))
}

/// `image` made with [`build_root_image`] unless it is there already,
/// newer than `busybox` and made from the same inputs (its stamp,
/// `IMAGE.from`, says): what the guest wrote to it stays. Returns whether
/// it was made now.
pub fn ensure_root_image(busybox: &Path, image: &Path) -> Result<bool> {
    let mut stamp = image.as_os_str().to_owned();
    stamp.push(".from");
    let stamp = PathBuf::from(stamp);
    let wanted = fingerprint(busybox)?;
    let modified = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    let newer = match (modified(image), modified(busybox)) {
        (Some(i), Some(b)) => i >= b,
        _ => false,
    };
    if newer && image.is_file() && fs::read_to_string(&stamp).ok() == Some(wanted.clone()) {
        return Ok(false);
    }
    let _ = fs::remove_file(&stamp);
    build_root_image(busybox, image)?;
    fs::write(&stamp, wanted).map_err(Error::io(format!("writing {}", stamp.display())))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, depends: &[&str], softdep: &[&str], aliases: &[&str]) -> Module {
        Module {
            name: normalize(name),
            path: format!("kernel/{name}.ko"),
            info: ModInfo {
                name: Some(normalize(name)),
                depends: depends.iter().map(|d| normalize(d)).collect(),
                softdep_pre: softdep.iter().map(|s| (*s).to_owned()).collect(),
                aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            },
        }
    }

    /// Debian 6.1's modules for a root on ext4 xvda, as its package has
    /// them.
    fn debian_like() -> ModuleIndex {
        ModuleIndex::new(
            vec![
                module("crc32c-intel", &[], &[], &["crypto-crc32c", "crc32c"]),
                module("mbcache", &[], &[], &[]),
                module(
                    "ext4",
                    &["jbd2", "mbcache", "crc16"],
                    &["crypto-crc32c"],
                    &["fs-ext4"],
                ),
                module("jbd2", &[], &["crypto-crc32c"], &[]),
                module("crc32c_generic", &[], &[], &["crypto-crc32c", "crc32c"]),
                module("crc16", &[], &[], &[]),
                module("xen-blkfront", &[], &[], &["xen:vbd", "block-major-202-*"]),
            ],
            ["crc32".to_owned()].into(),
            vec!["crc-ccitt".to_owned()],
        )
    }

    fn names(order: &[Load]) -> Vec<(&str, bool)> {
        order
            .iter()
            .map(|l| (l.name.as_str(), l.optional))
            .collect()
    }

    #[test]
    fn root_modules_come_in_load_order() {
        let order = load_order(&debian_like(), ROOT_MODULES).unwrap();
        assert_eq!(
            names(&order),
            [
                ("xen_blkfront", false),
                // ext4's soft dependency: every crc32c module, optional.
                ("crc32c_intel", true),
                ("crc32c_generic", true),
                ("jbd2", false),
                ("mbcache", false),
                ("crc16", false),
                ("ext4", false),
            ]
        );
        assert_eq!(order[0].path, "kernel/xen-blkfront.ko");
    }

    #[test]
    fn what_is_built_in_is_not_loaded() {
        let mut index = debian_like();
        index.builtin.insert("ext4".to_owned());
        let order = load_order(&index, ROOT_MODULES).unwrap();
        assert_eq!(names(&order), [("xen_blkfront", false)]);
        // A soft dependency a built-in alias answers needs nothing.
        let mut index = debian_like();
        index.builtin_aliases.push("crypto-crc32c".to_owned());
        let order = load_order(&index, &["jbd2"]).unwrap();
        assert_eq!(names(&order), [("jbd2", false)]);
    }

    #[test]
    fn missing_modules_and_loops_are_reasons() {
        let index = debian_like();
        assert_eq!(
            load_order(&index, &["btrfs"]).unwrap_err(),
            "it has no module btrfs and does not build it in"
        );
        let index = ModuleIndex::new(vec![module("a", &["b"], &[], &[])], BTreeSet::new(), vec![]);
        assert_eq!(
            load_order(&index, &["a"]).unwrap_err(),
            "it has no module b, which a depends on"
        );
        let index = ModuleIndex::new(
            vec![module("a", &["b"], &[], &[]), module("b", &["a"], &[], &[])],
            BTreeSet::new(),
            vec![],
        );
        let e = load_order(&index, &["a"]).unwrap_err();
        assert!(e.contains("loop (a → b → a)"), "{e}");
        // A soft dependency that is nowhere is only skipped.
        let index = ModuleIndex::new(
            vec![module("a", &[], &["nowhere"], &[])],
            BTreeSet::new(),
            vec![],
        );
        assert_eq!(names(&load_order(&index, &["a"]).unwrap()), [("a", false)]);
    }

    #[test]
    fn a_soft_dependency_needed_for_sure_later_is_required() {
        let index = ModuleIndex::new(
            vec![
                module("a", &[], &["s"], &[]),
                module("s", &["t"], &[], &[]),
                module("t", &[], &[], &[]),
                module("b", &["s"], &[], &[]),
            ],
            BTreeSet::new(),
            vec![],
        );
        let order = load_order(&index, &["a", "b"]).unwrap();
        assert_eq!(
            names(&order),
            [("t", false), ("s", false), ("a", false), ("b", false)]
        );
    }

    #[test]
    fn modinfo_records_are_read() {
        let section = b"license=GPL\0softdep=pre: crypto-crc32c post: foo\0alias=fs-ext4\0\
            alias=ext3\0depends=jbd2,mbcache,crc16\0name=ext4\0vermagic=6.1.0 SMP\0";
        let info = parse_modinfo(section);
        assert_eq!(info.name.as_deref(), Some("ext4"));
        assert_eq!(info.depends, ["jbd2", "mbcache", "crc16"]);
        assert_eq!(info.softdep_pre, ["crypto-crc32c"]);
        assert_eq!(info.aliases, ["fs-ext4", "ext3"]);
        assert_eq!(parse_modinfo(b"depends=\0").depends, Vec::<String>::new());
        assert_eq!(parse_modinfo(b"depends=xen-a,b\0").depends, ["xen_a", "b"]);
    }

    /// A minimal ELF64 relocatable file with a .modinfo section.
    fn elf_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.modinfo\0.shstrtab\0";
        let mut elf = vec![0u8; 0x40];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let modinfo_at = elf.len();
        elf.extend_from_slice(modinfo);
        let names_at = elf.len();
        elf.extend_from_slice(names);
        let shoff = elf.len();
        let header = |name: u32, offset: usize, size: usize| {
            let mut h = vec![0u8; 0x40];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            h
        };
        elf.extend(header(0, 0, 0));
        elf.extend(header(1, modinfo_at, modinfo.len()));
        elf.extend(header(10, names_at, names.len()));
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&0x40u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        elf
    }

    #[test]
    fn the_modinfo_section_is_found() {
        let elf = elf_with_modinfo(b"name=x\0depends=y\0");
        assert_eq!(modinfo_section(&elf), Ok(&b"name=x\0depends=y\0"[..]));
        assert_eq!(modinfo_section(b"not elf"), Err("it is not an ELF file"));
        let mut cut = elf.clone();
        // Into the last header's offset and size.
        cut.truncate(elf.len() - 0x30);
        assert_eq!(
            modinfo_section(&cut),
            Err("its section headers are cut short")
        );
        let mut no_modinfo = elf.clone();
        // Rename the section.
        let at = no_modinfo
            .windows(8)
            .position(|w| w == b".modinfo")
            .unwrap();
        no_modinfo[at + 1] = b'x';
        assert_eq!(
            modinfo_section(&no_modinfo),
            Err("it has no .modinfo section")
        );
    }

    #[test]
    fn module_names_and_aliases() {
        assert_eq!(
            module_name("kernel/drivers/block/xen-blkfront.ko").as_deref(),
            Some("xen_blkfront")
        );
        assert_eq!(
            module_name("kernel/fs/ext4/ext4.ko.xz").as_deref(),
            Some("ext4")
        );
        assert_eq!(
            module_name("kernel/lib/crc16.ko.zst").as_deref(),
            Some("crc16")
        );
        assert_eq!(module_name("modules.order"), None);
        assert!(alias_matches("block-major-202-*", "block-major-202-0"));
        assert!(alias_matches("crypto-crc32c", "crypto-crc32c"));
        assert!(!alias_matches("crypto-crc32c", "crypto-crc32c-intel"));
        assert!(alias_matches("a?c*", "abcdef"));
        assert!(!alias_matches("a?c", "ac"));
    }

    #[test]
    fn modules_dep_is_read() {
        let dep = "kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/fs/mbcache.ko.xz kernel/lib/crc16.ko.xz\n\
                   kernel/drivers/block/xen-blkfront.ko.xz:\n";
        assert_eq!(
            parse_modules_dep(dep),
            [
                (
                    "ext4".to_owned(),
                    vec!["jbd2".to_owned(), "mbcache".to_owned(), "crc16".to_owned()]
                ),
                ("xen_blkfront".to_owned(), vec![]),
            ]
        );
    }

    /// A module tree on disk: modules.order, xz-compressed and plain
    /// modules, a modules.dep that overrides depends=.
    #[test]
    fn a_module_tree_is_read_and_compressed_modules_come_out_plain() {
        let dir = std::env::temp_dir().join(format!("xtask-root-modules-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("kernel/fs")).unwrap();
        let a = elf_with_modinfo(b"name=a_mod\0depends=\0softdep=pre: b-alias\0");
        let b = elf_with_modinfo(b"name=b\0depends=\0alias=b-alias\0");
        let mut options = lzma_rust2::XzOptions::with_preset(1);
        options.set_check_sum_type(lzma_rust2::CheckType::Crc32);
        let mut writer = lzma_rust2::XzWriter::new(Vec::new(), options).unwrap();
        std::io::Write::write_all(&mut writer, &a).unwrap();
        fs::write(dir.join("kernel/fs/a-mod.ko.xz"), writer.finish().unwrap()).unwrap();
        fs::write(dir.join("kernel/b.ko"), &b).unwrap();
        fs::write(
            dir.join("modules.order"),
            "kernel/b.ko\nkernel/fs/a-mod.ko\n",
        )
        .unwrap();
        fs::write(dir.join("modules.builtin"), "kernel/lib/crc32.ko\n").unwrap();
        let index = ModuleIndex::read(&dir).unwrap();
        assert_eq!(
            index
                .modules
                .iter()
                .map(|m| m.path.as_str())
                .collect::<Vec<_>>(),
            ["kernel/b.ko", "kernel/fs/a-mod.ko.xz"]
        );
        assert!(index.is_builtin("crc32"));
        let order = load_order(&index, &["a-mod"]).unwrap();
        assert_eq!(names(&order), [("b", true), ("a_mod", false)]);
        assert_eq!(module_bytes(&dir.join("kernel/fs/a-mod.ko.xz")).unwrap(), a);
        // modules.dep, when there, says what each needs.
        fs::write(
            dir.join("modules.dep"),
            "kernel/fs/a-mod.ko.xz: kernel/b.ko\nkernel/b.ko:\n",
        )
        .unwrap();
        let index = ModuleIndex::read(&dir).unwrap();
        assert_eq!(
            names(&load_order(&index, &["a_mod"]).unwrap()),
            [("b", false), ("a_mod", false)]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_load_file_round_trips() {
        let modules = RootModules {
            dir: PathBuf::from("/m"),
            files: vec![
                ("xen-blkfront.ko".into(), false),
                ("crc32c-intel.ko".into(), true),
            ],
        };
        assert_eq!(
            modules.load_text(),
            "xen-blkfront.ko\ncrc32c-intel.ko optional\n"
        );
        assert_eq!(
            RootModules::parse_load(Path::new("/m"), &modules.load_text()),
            modules
        );
        assert_eq!(modules.names(), "xen-blkfront crc32c-intel");
        assert_eq!(RootModules::none().load_text(), "");
    }

    /// Debian 6.1's netfront: no dependencies, one alias per name.
    #[test]
    fn net_modules_come_in_load_order() {
        let mut modules = debian_like().modules;
        modules.push(module("xen-netfront", &[], &[], &["xennet", "xen:vif"]));
        let index = ModuleIndex::new(modules, ["crc32".to_owned()].into(), vec![]);
        let order = load_order(&index, NET_MODULES).unwrap();
        assert_eq!(names(&order), [("xen_netfront", false)]);
        assert_eq!(order[0].path, "kernel/xen-netfront.ko");
        // With the root's, one set in one order.
        let both: Vec<&str> = ROOT_MODULES.iter().chain(NET_MODULES).copied().collect();
        let order = load_order(&index, &both).unwrap();
        assert_eq!(order.first().unwrap().name, "xen_blkfront");
        assert_eq!(order.last().unwrap().name, "xen_netfront");
        // A kernel with netfront built in needs nothing.
        let builtin = ModuleIndex::new(vec![], ["xen_netfront".to_owned()].into(), vec![]);
        assert!(load_order(&builtin, NET_MODULES).unwrap().is_empty());
    }

    #[test]
    fn the_module_loop_is_the_root_initramfs_own() {
        assert!(ROOT_INITRAMFS_INIT.contains(LOAD_MODULES));
        assert!(LOAD_MODULES.contains("done < /lib/modules/load"));
        assert!(LOAD_MODULES.contains(&format!("/lib/modules/{LOAD_FILE}")));
    }

    #[test]
    fn module_files_go_under_lib_modules_with_their_order() {
        let scratch = Scratch::new("module-files");
        fs::write(scratch.0.join("xen-netfront.ko"), b"netfront").unwrap();
        let modules = RootModules {
            dir: scratch.0.clone(),
            files: vec![("xen-netfront.ko".into(), false)],
        };
        assert_eq!(
            module_files(&modules).unwrap(),
            [
                (
                    "lib/modules/xen-netfront.ko".to_owned(),
                    b"netfront".to_vec()
                ),
                ("lib/modules/load".to_owned(), b"xen-netfront.ko\n".to_vec()),
            ]
        );
        assert_eq!(
            module_files(&RootModules::none()).unwrap(),
            [("lib/modules/load".to_owned(), Vec::new())]
        );
        let gone = RootModules {
            dir: scratch.0.join("gone"),
            ..modules
        };
        let e = module_files(&gone).unwrap_err().to_string();
        assert!(e.contains("xen-netfront.ko"), "{e}");
    }

    /// A stand-in kernel package: xen-netfront and a dependency in
    /// lib/modules/VERSION/, built with dpkg-deb.
    #[test]
    fn a_set_of_modules_is_taken_out_of_the_package_once() {
        if find_program("dpkg-deb").is_none() {
            eprintln!("note: dpkg-deb not found; taking modules out of a package is not tested");
            return;
        }
        let scratch = Scratch::new("named");
        let tree = scratch
            .0
            .join("pkg/lib/modules/6.1.0-test-amd64/kernel/drivers/net");
        fs::create_dir_all(&tree).unwrap();
        fs::create_dir_all(scratch.0.join("pkg/DEBIAN")).unwrap();
        fs::write(
            scratch.0.join("pkg/DEBIAN/control"),
            "Package: linux-image-6.1.0-test-amd64\nVersion: 1\nArchitecture: amd64\n\
             Maintainer: x <x@example.org>\nDescription: test\n",
        )
        .unwrap();
        let netfront = elf_with_modinfo(b"name=xen_netfront\0depends=helper\0alias=xen:vif\0");
        let helper = elf_with_modinfo(b"name=helper\0depends=\0");
        fs::write(tree.join("xen-netfront.ko"), &netfront).unwrap();
        fs::write(tree.join("helper.ko"), &helper).unwrap();
        let cache = scratch.0.join("cache");
        fs::create_dir_all(&cache).unwrap();
        let deb = cache.join("linux-image-6.1.0-test-amd64_1_amd64.deb");
        let built = Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group", "-Zgzip"])
            .arg(scratch.0.join("pkg"))
            .arg(&deb)
            .output()
            .unwrap();
        assert!(built.status.success(), "{built:?}");

        let (modules, taken) =
            modules_named(&cache, "6.1.0-test-amd64", NET_MODULES, NET_MODULES_DIR).unwrap();
        assert!(taken);
        assert_eq!(modules.dir, cache.join(NET_MODULES_DIR));
        assert_eq!(modules.names(), "helper xen-netfront");
        assert_eq!(
            fs::read(modules.dir.join("xen-netfront.ko")).unwrap(),
            netfront
        );
        assert!(!cache.join("net-modules.unpack").exists());
        // Cached: not taken again, unless the names asked for change.
        let (again, taken) =
            modules_named(&cache, "6.1.0-test-amd64", NET_MODULES, NET_MODULES_DIR).unwrap();
        assert!(!taken);
        assert_eq!(again, modules);
        let (helper_only, taken) =
            modules_named(&cache, "6.1.0-test-amd64", &["helper"], NET_MODULES_DIR).unwrap();
        assert!(taken);
        assert_eq!(helper_only.names(), "helper");
        // A module the package lacks is one sentence.
        let e = modules_named(&cache, "6.1.0-test-amd64", &["e1000"], "other")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("it has no module e1000 and does not build it in"),
            "{e}"
        );
        let e = modules_named(&cache, "6.1.0-gone", NET_MODULES, NET_MODULES_DIR)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "it holds no linux-image-6.1.0-gone_*.deb to take the modules xen-netfront from"
            ),
            "{e}"
        );
    }

    #[test]
    fn persist_content_matches_the_guests() {
        let content = persist_content("s1");
        assert!(content.starts_with("pavise-persist s1 1\npavise-persist s1 2\n"));
        assert!(content.ends_with(&format!("pavise-persist s1 {PERSIST_LINES}\n")));
        assert!(PERSIST_CONTENT.contains(&format!("i <= {PERSIST_LINES}")));
        // With awk on the host, the script itself says the same.
        if find_program("awk").is_some() {
            let script = PERSIST_CONTENT.lines().nth(1).unwrap();
            let out = Command::new("sh")
                .args(["-c", script, "sh", "s1"])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), content);
        }
    }

    #[test]
    fn scripts_are_busybox_sh_and_parse() {
        let scripts = [
            ROOT_INITRAMFS_INIT,
            ROOT_SBIN_INIT,
            PERSIST_CONTENT,
            CHECK_WRITE,
            CHECK_READ,
            CHECK_INFO,
            CHECK_DD,
        ];
        for script in scripts {
            assert!(script.starts_with("#!/bin/busybox sh\n"), "{script}");
        }
        assert!(ROOT_INITRAMFS_INIT.contains("exec switch_root /newroot"));
        assert!(ROOT_SBIN_INIT.contains("echo \"pavise-root: mounted $root"));
        for script in [ROOT_INITRAMFS_INIT, ROOT_SBIN_INIT] {
            assert!(script.contains("poweroff -f"));
        }
        if find_program("sh").is_none() {
            return;
        }
        for script in scripts {
            let status = Command::new("sh")
                .args(["-n", "-c", script])
                .status()
                .unwrap();
            assert!(status.success(), "{script}");
        }
    }

    /// A fresh directory of this test's own, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(what: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("xtask-root-{what}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A stand-in busybox: a script that lists two applets.
    fn fake_busybox(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("busybox");
        fs::write(
            &path,
            "#!/bin/sh\necho bin/ls; echo usr/bin/awk; echo sbin/init; echo linuxrc\n",
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn the_root_tree_has_busybox_its_links_and_the_scripts() {
        let scratch = Scratch::new("tree");
        let busybox = fake_busybox(&scratch.0);
        let tree = scratch.0.join("tree");
        root_tree(&busybox, &tree).unwrap();
        assert_eq!(
            fs::read(tree.join("bin/busybox")).unwrap(),
            fs::read(&busybox).unwrap()
        );
        for link in ["bin/ls", "usr/bin/awk"] {
            assert_eq!(
                fs::read_link(tree.join(link)).unwrap(),
                Path::new("/bin/busybox")
            );
        }
        // sbin/init is the script, not busybox's applet; linuxrc is left out.
        assert_eq!(
            fs::read_to_string(tree.join("sbin/init")).unwrap(),
            ROOT_SBIN_INIT
        );
        assert!(!tree.join("linuxrc").exists());
        for (file, mode, text) in ROOT_FILES {
            use std::os::unix::fs::PermissionsExt;
            let meta = fs::metadata(tree.join(file)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, *mode, "{file}");
            assert_eq!(fs::read_to_string(tree.join(file)).unwrap(), *text);
        }
        for dir in ["dev", "proc", "sys", "tmp", "root", "mnt"] {
            assert!(tree.join(dir).is_dir(), "{dir}");
        }
        // A busybox the host cannot run gets only /bin/sh.
        let other = scratch.0.join("tree2");
        let not_runnable = scratch.0.join("not-runnable");
        fs::write(&not_runnable, b"\x7fELF nothing").unwrap();
        root_tree(&not_runnable, &other).unwrap();
        assert_eq!(
            fs::read_link(other.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        assert!(!other.join("bin/ls").exists());
    }

    #[test]
    fn the_root_image_is_made_once_and_remade_when_stale() {
        if disk::find_mkfs_ext4().is_none() {
            eprintln!("note: mkfs.ext4 not found (e2fsprogs); the root image is not tested");
            return;
        }
        let scratch = Scratch::new("image");
        let busybox = fake_busybox(&scratch.0);
        let image = scratch.0.join("root.img");
        assert!(ensure_root_image(&busybox, &image).unwrap());
        assert_eq!(
            fs::metadata(&image).unwrap().len(),
            u64::from(ROOT_IMAGE_MIB) << 20
        );
        assert!(!scratch.0.join("root.img.tree").exists());
        assert!(disk::check(&disk::Disk::new(&image)).is_ok());
        if let Some(debugfs) = crate::prereqs::find_system_program("debugfs") {
            let out = Command::new(debugfs)
                .args(["-R", "cat /sbin/init"])
                .arg(&image)
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), ROOT_SBIN_INIT);
        }
        // Up to date: kept, with what was written to it.
        fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .and_then(|f| std::os::unix::fs::FileExt::write_at(&f, b"guest", 8 << 20))
            .unwrap();
        assert!(!ensure_root_image(&busybox, &image).unwrap());
        // A different busybox: made again.
        fs::write(&busybox, "#!/bin/sh\necho bin/ls\n").unwrap();
        assert!(ensure_root_image(&busybox, &image).unwrap());
        assert!(!ensure_root_image(&busybox, &image).unwrap());
    }

    #[test]
    fn the_root_initramfs_holds_the_modules_and_their_order() {
        let scratch = Scratch::new("initramfs");
        let busybox = fake_busybox(&scratch.0);
        let dir = scratch.0.join("modules");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("xen-blkfront.ko"), b"blkfront").unwrap();
        fs::write(dir.join("ext4.ko"), b"ext4").unwrap();
        let modules = RootModules {
            dir: dir.clone(),
            files: vec![("xen-blkfront.ko".into(), false), ("ext4.ko".into(), false)],
        };
        let out = scratch.0.join("root.cpio.gz");
        initramfs(&busybox, &modules, &out).unwrap();
        let mut input = flate2::read::GzDecoder::new(fs::File::open(&out).unwrap());
        let mut entries = Vec::new();
        loop {
            let mut reader = cpio::NewcReader::new(input).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let name = reader.entry().name().to_owned();
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            entries.push((name, data));
            input = reader.finish().unwrap();
        }
        let find = |name: &str| {
            entries
                .iter()
                .position(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{name}"))
        };
        assert_eq!(entries[find("init")].1, ROOT_INITRAMFS_INIT.as_bytes());
        assert_eq!(entries[find("lib/modules/ext4.ko")].1, b"ext4");
        assert_eq!(
            entries[find("lib/modules/load")].1,
            b"xen-blkfront.ko\next4.ko\n"
        );
        // Directories before what is in them.
        assert!(find("lib") < find("lib/modules"));
        assert!(find("lib/modules") < find("lib/modules/xen-blkfront.ko"));
    }

    /// The real thing: the root modules out of Debian's kernel package in
    /// target/linux/ (run with `cargo test -p xtask -- --ignored`).
    /// The real thing: netfront out of Debian's kernel package (run with
    /// `cargo test -p xtask -- --ignored`).
    #[test]
    #[ignore = "downloads Debian packages"]
    fn debians_net_modules() {
        let kit = linux::prepare(&linux::cache_dir()).unwrap();
        let (modules, _) = modules_named(
            &linux::cache_dir(),
            &kit.version,
            NET_MODULES,
            NET_MODULES_DIR,
        )
        .unwrap();
        assert_eq!(modules.names(), "xen-netfront");
        for (file, _) in &modules.files {
            let bytes = fs::read(modules.dir.join(file)).unwrap();
            assert!(modinfo_section(&bytes).is_ok(), "{file}");
        }
    }

    #[test]
    #[ignore = "downloads Debian packages"]
    fn debians_root_modules() {
        let kit = linux::prepare(&linux::cache_dir()).unwrap();
        let (modules, _) = modules(&linux::cache_dir(), &kit.version).unwrap();
        let names = modules.names();
        assert!(names.starts_with("xen-blkfront"), "{names}");
        assert!(names.ends_with("ext4"), "{names}");
        for (file, _) in &modules.files {
            let bytes = fs::read(modules.dir.join(file)).unwrap();
            assert!(modinfo_section(&bytes).is_ok(), "{file}");
        }
    }
}
