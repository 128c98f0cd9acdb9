//! Files Dom0 holds, and the domains it creates from them once it is up:
//! `cargo xtask run --config PATH` (an xl.cfg, checked here with the parser
//! Dom0 uses, [`xlcfg`]) and `--file PATH` (for an `xl create NAME` typed
//! later).
//!
//! Each file is named by its host file name (Dom0 knows no host paths) and
//! goes to the hypervisor as a GRUB module whose string is `file NAME`,
//! after every domain module; the hypervisor hands it to Dom0 as a
//! start-info module whose command line is NAME. Each config Dom0 is to
//! create at boot is a word `pavise.create=NAME` on Dom0's command line, in
//! order. Dom0 finds a config's `kernel` and `ramdisk` by the last
//! component of their paths among the files it holds, so a config is held
//! together with them (two different host files of one name are refused).
//!
//! A config's disks (`disk = ["IMG,raw,xvda,rw"]`) are images the machine
//! attaches as virtio-blk devices after the boot-time DomUs' disks, each
//! named to Dom0 by its file name with a word `pavise.disk=NAME:SLOT`;
//! Dom0's toolstack gives each domain it creates the disks its config
//! names, one domain at a time. `--disk IMG` holds one for a config created
//! later.
//!
//! On the host a config's relative `kernel`, `ramdisk` and disk paths are
//! taken from the current directory, as xl takes them.

use std::path::{Path, PathBuf};

use crate::disk::Disk;
use crate::domains;
use crate::error::{Error, Result};

/// The word on Dom0's command line that names a disk held for its
/// toolstack: `pavise.disk=NAME:SLOT` (SLOT in hex).
pub const DISK_WORD: &str = "pavise.disk=";

/// The module string's first word for a file handed to Dom0:
/// `file NAME`.
pub const FILE_STRING: &str = "file";

/// The word on Dom0's command line that makes it create a domain from a
/// config it holds once it is up: `pavise.create=NAME`.
pub const CREATE_WORD: &str = "pavise.create=";

/// What is wrong with `name` as the name of a file Dom0 holds, if
/// anything: it must be one or more ASCII letters, digits, `.`, `_`, `-`
/// or `+` (so no spaces and no `/`), and not `.` or `..`.
fn name_problem(name: &str) -> Option<&'static str> {
    xlcfg::file_name_problem(name)
}

/// The name Dom0 knows the host file `path` by: its file name.
pub fn file_name(path: &Path) -> Result<String> {
    let bad = |reason: &str| Error::BadFileName {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let name = path
        .file_name()
        .ok_or_else(|| bad("the path names no file"))?
        .to_str()
        .ok_or_else(|| bad("its name is not UTF-8"))?;
    match name_problem(name) {
        Some(reason) => Err(bad(reason)),
        None => Ok(name.to_owned()),
    }
}

/// The GRUB module that hands `path` to Dom0 as its file `name`.
pub fn module(name: &str, path: &Path) -> (PathBuf, String) {
    (path.to_owned(), format!("{FILE_STRING} {name}"))
}

/// The word that names the held disk `name` in PCI slot `slot` to Dom0.
pub fn disk_word(name: &str, slot: u8) -> String {
    format!("{DISK_WORD}{name}:{slot:x}")
}

/// Holds the image `path` for Dom0's toolstack, named by its file name:
/// the same image twice is held once (read-only only if both uses are),
/// two images of one name are refused.
pub fn hold_disk(disks: &mut Vec<(String, Disk)>, path: &Path, readonly: bool) -> Result<()> {
    let name = file_name(path)?;
    match disks.iter_mut().find(|(n, _)| *n == name) {
        Some((_, held)) if same_file(&held.path, path) => {
            held.readonly &= readonly;
            Ok(())
        }
        Some((_, held)) => Err(Error::FileNameClash {
            name,
            first: held.path.clone(),
            second: path.to_owned(),
        }),
        None => {
            disks.push((
                name,
                Disk {
                    path: path.to_owned(),
                    readonly,
                },
            ));
            Ok(())
        }
    }
}

/// The word that makes Dom0 create a domain from its file `name`.
pub fn create_word(name: &str) -> String {
    format!("{CREATE_WORD}{name}")
}

/// Dom0's module string `string` (`[name=…] [mem=…] [vcpus=…]
/// [cmdline=…]`, see [`domains::dom0_module_with`]) with `words` appended
/// to its command line, which is started when it has none.
pub fn dom0_string_with(string: &str, words: &[String]) -> String {
    if words.is_empty() {
        return string.to_owned();
    }
    let string = string.trim();
    // `cmdline=` takes the rest of the string, and no value before it holds
    // a space: a word starting `cmdline=` is the key or follows it.
    let has_cmdline = string
        .split(char::is_whitespace)
        .any(|w| w.starts_with("cmdline="));
    let mut s = string.to_owned();
    if has_cmdline {
        s.push(' ');
    } else {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str("cmdline=");
    }
    s.push_str(&words.join(" "));
    s
}

/// The modules a machine boots: `modules` (Dom0's first, then the domains'
/// and any others), with Dom0's command line given a
/// [`create_word`] for each of `create`, then one [`module`] for each of
/// `files`, and `disk_words` ([`disk_word`]) on Dom0's command line too.
/// Unchanged when there are none; an error when there is no Dom0 module
/// to change.
pub fn boot_modules(
    modules: &[(PathBuf, String)],
    files: &[(String, PathBuf)],
    create: &[String],
    disk_words: &[String],
) -> Result<Vec<(PathBuf, String)>> {
    let mut all = modules.to_vec();
    if files.is_empty() && create.is_empty() && disk_words.is_empty() {
        return Ok(all);
    }
    let Some((_, dom0)) = all.first_mut() else {
        return Err(Error::FilesWithoutDom0);
    };
    let words: Vec<String> = create
        .iter()
        .map(|name| create_word(name))
        .chain(disk_words.iter().cloned())
        .collect();
    *dom0 = dom0_string_with(dom0, &words);
    all.extend(files.iter().map(|(name, path)| module(name, path)));
    Ok(all)
}

/// Whether `a` and `b` are one file: the same path, or the same file once
/// both are resolved.
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Adds `path` to `files` as Dom0's file `name`; holding one file twice is
/// holding it once, two different files of one name are refused.
pub fn hold(files: &mut Vec<(String, PathBuf)>, name: &str, path: &Path) -> Result<()> {
    match files.iter().find(|(n, _)| n == name) {
        Some((_, held)) if same_file(held, path) => Ok(()),
        Some((_, held)) => Err(Error::FileNameClash {
            name: name.to_owned(),
            first: held.clone(),
            second: path.to_owned(),
        }),
        None => {
            files.push((name.to_owned(), path.to_owned()));
            Ok(())
        }
    }
}

/// Adds the host file `path` to `files`, named by its file name (see
/// [`hold`]). Whether it exists is checked by [`check_held`].
pub fn hold_file(files: &mut Vec<(String, PathBuf)>, path: &Path) -> Result<()> {
    let name = file_name(path)?;
    hold(files, &name, path)
}

/// A domain config read on the host, with the files Dom0 needs for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The config file on the host.
    pub path: PathBuf,
    /// Its name among Dom0's files (what `pavise.create=` and `xl create`
    /// take).
    pub name: String,
    pub domain: xlcfg::DomainConfig,
    /// The kernel: its name among Dom0's files, and the host file.
    pub kernel: (String, PathBuf),
    /// The ramdisk, when the config has one, likewise.
    pub ramdisk: Option<(String, PathBuf)>,
    /// Its disks' images (their targets), which the machine attaches.
    pub disks: Vec<PathBuf>,
}

impl Config {
    /// Reads and checks the config file `path` (see [`Config::from_text`]).
    pub fn read(path: &Path) -> Result<Config> {
        if !path.is_file() {
            return Err(Error::FileMissing {
                path: path.to_owned(),
            });
        }
        let text = std::fs::read_to_string(path)
            .map_err(Error::io(format!("reading config {}", path.display())))?;
        Config::from_text(path, &text)
    }

    /// Checks `text`, the config file `path`, as Dom0 will
    /// ([`xlcfg::parse`]), and refuses paths whose last component cannot
    /// name one of Dom0's files or disks. The files named are not looked at
    /// (see [`Config::check_files`]).
    pub fn from_text(path: &Path, text: &str) -> Result<Config> {
        let bad = |line: usize, reason: String| Error::BadConfig {
            path: path.to_owned(),
            line,
            reason,
        };
        let name = file_name(path)?;
        let domain = xlcfg::parse(text).map_err(|e| bad(e.line, e.message))?;
        let held = |key: &str, value: &str| -> Result<(String, PathBuf)> {
            // Dom0 takes the text after the last '/'.
            let last = value.rsplit('/').next().unwrap_or(value);
            match name_problem(last) {
                None => Ok((last.to_owned(), PathBuf::from(value))),
                Some(reason) => Err(bad(
                    0,
                    format!(
                        "{key} = {value:?} cannot be handed to Dom0, which finds it by the \
                         last part of its path, {last:?}: {reason}; name a file whose name has \
                         only letters, digits, '.', '_', '-' and '+'"
                    ),
                )),
            }
        };
        let kernel = held("kernel", &domain.kernel)?;
        let ramdisk = domain
            .ramdisk
            .as_deref()
            .map(|r| held("ramdisk", r))
            .transpose()?;
        let disks = domain
            .disks
            .iter()
            .map(|d| held("disk", &d.target).map(|(_, path)| path))
            .collect::<Result<Vec<_>>>()?;
        Ok(Config {
            path: path.to_owned(),
            name,
            domain,
            kernel,
            ramdisk,
            disks,
        })
    }

    /// The files Dom0 holds for it: the config, its kernel and its ramdisk.
    pub fn files(&self) -> Vec<(String, PathBuf)> {
        let mut files = vec![(self.name.clone(), self.path.clone()), self.kernel.clone()];
        files.extend(self.ramdisk.clone());
        files
    }

    /// Checks that the kernel is an ELF file and the ramdisk a file, each
    /// refusal naming the config.
    pub fn check_files(&self) -> Result<()> {
        check_kernel_of(&self.path, &self.kernel.1)?;
        if let Some((_, ramdisk)) = &self.ramdisk {
            check_ramdisk_of(&self.path, ramdisk)?;
        }
        Ok(())
    }
}

/// [`domains::check_kernel`] for the config `config`'s kernel.
fn check_kernel_of(config: &Path, kernel: &Path) -> Result<()> {
    let bad = |reason: String| Error::BadConfig {
        path: config.to_owned(),
        line: 0,
        reason,
    };
    match domains::check_kernel(kernel) {
        Err(Error::KernelMissing { path }) => Err(bad(format!(
            "its kernel {} does not exist or is not a file",
            path.display()
        ))),
        Err(Error::NotElf { path }) => Err(bad(format!(
            "its kernel {} is not an ELF file; give a Xen PVH kernel (an ELF with the \
             XEN_ELFNOTE_PHYS32_ENTRY note)",
            path.display()
        ))),
        other => other,
    }
}

/// [`domains::check_ramdisk`] for the config `config`'s ramdisk.
fn check_ramdisk_of(config: &Path, ramdisk: &Path) -> Result<()> {
    domains::check_ramdisk(ramdisk).map_err(|_| Error::BadConfig {
        path: config.to_owned(),
        line: 0,
        reason: format!(
            "its ramdisk {} does not exist or is not a file",
            ramdisk.display()
        ),
    })
}

/// Reads the config `path` ([`Config::read`]) and adds it, its kernel and
/// its ramdisk to `files` ([`hold`]), its disks to `disks`
/// ([`hold_disk`]), and its name to `create` (if given), so that Dom0
/// creates the domain once it is up. On an error nothing changes. The
/// kernel and ramdisk are checked by [`check_held`] (they may not be
/// built yet), the disks when the machine is prepared.
pub fn create_config(
    files: &mut Vec<(String, PathBuf)>,
    create: Option<&mut Vec<String>>,
    disks: &mut Vec<(String, Disk)>,
    path: &Path,
) -> Result<()> {
    let config = Config::read(path)?;
    let mut held = files.clone();
    for (name, file) in config.files() {
        hold(&mut held, &name, &file)?;
    }
    let mut held_disks = disks.clone();
    for disk in &config.disks {
        hold_disk(&mut held_disks, disk, false)?;
    }
    *files = held;
    *disks = held_disks;
    if let Some(create) = create {
        create.push(config.name);
    }
    Ok(())
}

/// Whether `path` is missing but may yet be made: it is under
/// `built_later`.
fn made_later(path: &Path, built_later: Option<&Path>) -> bool {
    built_later.is_some_and(|dir| {
        !path.exists() && std::path::absolute(path).is_ok_and(|p| p.starts_with(dir))
    })
}

/// Checks what Dom0 is given: each of `files` is a file, each of `create`
/// names one of them, and each of those is a config ([`Config::read`])
/// whose kernel and ramdisk Dom0 holds and whose kernel is an ELF file
/// and ramdisk a file ([`Config::check_files`]), no two configs naming
/// one domain. A file that does not exist yet under `built_later` (the
/// build's target directory, before the build) is let be.
pub fn check_held(
    files: &[(String, PathBuf)],
    create: &[String],
    built_later: Option<&Path>,
) -> Result<()> {
    for (_, path) in files {
        if !path.is_file() && !made_later(path, built_later) {
            return Err(Error::FileMissing { path: path.clone() });
        }
    }
    let held = |name: &str| files.iter().find(|(n, _)| n == name).map(|(_, p)| p);
    let mut domains: Vec<(String, PathBuf)> = Vec::new();
    for name in create {
        let path = held(name).ok_or_else(|| Error::CreateNotHeld { name: name.clone() })?;
        if made_later(path, built_later) {
            continue;
        }
        let config = Config::read(path)?;
        for (what, name) in std::iter::once(("kernel", &config.kernel.0))
            .chain(config.ramdisk.as_ref().map(|(n, _)| ("ramdisk", n)))
        {
            let Some(file) = held(name) else {
                return Err(Error::BadConfig {
                    path: path.clone(),
                    line: 0,
                    reason: format!(
                        "Dom0 holds no file {name} for its {what}; hold the config with \
                         Machine::create_config or --config, which holds its files too"
                    ),
                });
            };
            if made_later(file, built_later) {
                continue;
            }
            if what == "kernel" {
                check_kernel_of(path, file)?;
            } else {
                check_ramdisk_of(path, file)?;
            }
        }
        let domain = config.domain.name;
        if let Some((_, first)) = domains.iter().find(|(d, _)| *d == domain) {
            return Err(Error::ConfigNameTwice {
                domain,
                first: first.clone(),
                second: path.clone(),
            });
        }
        domains.push((domain, path.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(files: &[(String, PathBuf)]) -> Vec<&str> {
        files.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn files_are_named_by_their_file_name() {
        assert_eq!(file_name(Path::new("/x/y/web.cfg")).unwrap(), "web.cfg");
        assert_eq!(
            file_name(Path::new("vmlinuz-6.1.0+1_amd64")).unwrap(),
            "vmlinuz-6.1.0+1_amd64"
        );
        for bad in ["/x/a b.cfg", "/x/naïve", "/", "/x/..", "a:b", "x'y"] {
            let e = file_name(Path::new(bad)).unwrap_err();
            assert!(matches!(e, Error::BadFileName { .. }), "{bad}: {e:?}");
            let message = e.to_string();
            assert!(message.starts_with(&format!("{bad} cannot be handed to Dom0")));
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn one_name_is_one_file() {
        let mut files = Vec::new();
        hold_file(&mut files, Path::new("/a/counter")).unwrap();
        hold_file(&mut files, Path::new("/a/web.cfg")).unwrap();
        // The same file twice is held once.
        hold_file(&mut files, Path::new("/a/counter")).unwrap();
        assert_eq!(names(&files), ["counter", "web.cfg"]);
        let e = hold_file(&mut files, Path::new("/b/counter")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/a/counter and /b/counter would both be Dom0's file counter (Dom0 knows a file \
             by its name alone); rename one of them"
        );
        assert_eq!(names(&files), ["counter", "web.cfg"]);
        // One file by two paths is one file.
        let dir = scratch_dir("same");
        std::fs::write(dir.join("k"), b"x").unwrap();
        let mut files = Vec::new();
        hold_file(&mut files, &dir.join("k")).unwrap();
        hold_file(&mut files, &dir.join(".").join("k")).unwrap();
        hold_file(
            &mut files,
            &dir.join("..").join(dir.file_name().unwrap()).join("k"),
        )
        .unwrap();
        assert_eq!(files.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_config_names_its_files() {
        let c = Config::from_text(
            Path::new("/c/web.cfg"),
            "name = \"web\"\nkernel = \"/k/counter\"\nramdisk = \"initrd.gz\"\nmemory = 16\n",
        )
        .unwrap();
        assert_eq!(c.name, "web.cfg");
        assert_eq!(c.domain.name, "web");
        assert_eq!(
            c.kernel,
            ("counter".to_owned(), PathBuf::from("/k/counter"))
        );
        assert_eq!(
            c.ramdisk,
            Some(("initrd.gz".to_owned(), PathBuf::from("initrd.gz")))
        );
        assert_eq!(names(&c.files()), ["web.cfg", "counter", "initrd.gz"]);
    }

    #[test]
    fn a_bad_config_is_one_sentence_naming_file_and_line() {
        let path = Path::new("/c/web.cfg");
        let message = Config::from_text(path, "name = \"web\"\nkernel = \"/k/x\"\nmemory = 0x10\n")
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("bad config /c/web.cfg, line 3: "),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
        // A key missing is about the whole file.
        let message = Config::from_text(path, "name = \"web\"\n")
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("bad config /c/web.cfg: "), "{message}");
        assert!(!message.contains("line"), "{message}");
        // Disks are held by their images' names; interfaces need nothing.
        let text = "name = \"web\"\nkernel = \"/k/x\"\n\
                    disk = [ \"/i/root.img,raw,xvda,rw\", \"vdev=xvdb,target=/j/data.img\" ]\n\
                    vif = [ \"\" ]\n";
        let c = Config::from_text(path, text).unwrap();
        assert_eq!(
            c.disks,
            [PathBuf::from("/i/root.img"), PathBuf::from("/j/data.img")]
        );
        let text = "name = \"web\"\nkernel = \"/k/x\"\ndisk = [ \"/i/a b,raw,xvda,rw\" ]\n";
        let message = Config::from_text(path, text).unwrap_err().to_string();
        assert!(
            message
                .starts_with("bad config /c/web.cfg: disk = \"/i/a b\" cannot be handed to Dom0"),
            "{message}"
        );
        // A kernel Dom0 could not find by its last component.
        for kernel in ["/k/dir/", "/k/a b", "/k/.."] {
            let text = format!("name = \"web\"\nkernel = \"{kernel}\"\n");
            let message = Config::from_text(path, &text).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!(
                    "bad config /c/web.cfg: kernel = \"{kernel}\" cannot be handed to Dom0"
                )),
                "{message}"
            );
        }
    }

    #[test]
    fn dom0_is_told_what_to_create() {
        let create = ["web.cfg".to_owned(), "db.cfg".to_owned()];
        let words: Vec<String> = create.iter().map(|n| create_word(n)).collect();
        assert_eq!(
            dom0_string_with("name=dom0", &words),
            "name=dom0 cmdline=pavise.create=web.cfg pavise.create=db.cfg"
        );
        assert_eq!(
            dom0_string_with("name=dom0 cmdline=pavise.vbd=1:xvda:w:10 ", &words[..1]),
            "name=dom0 cmdline=pavise.vbd=1:xvda:w:10 pavise.create=web.cfg"
        );
        assert_eq!(
            dom0_string_with("", &words[..1]),
            "cmdline=pavise.create=web.cfg"
        );
        assert_eq!(
            dom0_string_with("cmdline=", &words[..1]),
            "cmdline= pavise.create=web.cfg"
        );
        assert_eq!(dom0_string_with("name=dom0", &[]), "name=dom0");

        let modules = vec![
            (PathBuf::from("/t/dom0"), "name=dom0".to_owned()),
            (PathBuf::from("/t/linux"), "name=linux".to_owned()),
            (PathBuf::from("/t/initrd"), "ramdisk".to_owned()),
        ];
        let files = vec![
            ("web.cfg".to_owned(), PathBuf::from("/c/web.cfg")),
            ("counter".to_owned(), PathBuf::from("/t/counter")),
        ];
        let all = boot_modules(&modules, &files, &create[..1], &[]).unwrap();
        let strings: Vec<&str> = all.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            strings,
            [
                "name=dom0 cmdline=pavise.create=web.cfg",
                "name=linux",
                "ramdisk",
                "file web.cfg",
                "file counter"
            ]
        );
        assert_eq!(all[3].0, PathBuf::from("/c/web.cfg"));
        for s in strings {
            assert_eq!(crate::grub::quote(s).unwrap(), s);
        }
        // Files alone leave Dom0's string be.
        let all = boot_modules(&modules, &files, &[], &[]).unwrap();
        assert_eq!(all[0].1, "name=dom0");
        assert_eq!(boot_modules(&modules, &[], &[], &[]).unwrap(), modules);
        assert!(matches!(
            boot_modules(&[], &files, &[], &[]),
            Err(Error::FilesWithoutDom0)
        ));
    }

    #[test]
    fn configs_are_held_with_their_files_and_checked() {
        let dir = scratch_dir("held");
        let kernel = dir.join("counter");
        std::fs::write(&kernel, b"\x7fELF\x02\x01").unwrap();
        let ramdisk = dir.join("initrd.gz");
        std::fs::write(&ramdisk, b"gz").unwrap();
        let web = dir.join("web.cfg");
        std::fs::write(
            &web,
            format!(
                "name = \"web\"\nkernel = \"{}\"\nramdisk = \"{}\"\n",
                kernel.display(),
                ramdisk.display()
            ),
        )
        .unwrap();
        let db = dir.join("db.cfg");
        std::fs::write(
            &db,
            format!("name = \"db\"\nkernel = \"{}\"\n", kernel.display()),
        )
        .unwrap();
        let (mut files, mut create) = (Vec::new(), Vec::new());
        create_config(&mut files, Some(&mut create), &mut Vec::new(), &web).unwrap();
        create_config(&mut files, Some(&mut create), &mut Vec::new(), &db).unwrap();
        assert_eq!(names(&files), ["web.cfg", "counter", "initrd.gz", "db.cfg"]);
        assert_eq!(create, ["web.cfg", "db.cfg"]);
        check_held(&files, &create, None).unwrap();

        // One domain name in two configs.
        let again = dir.join("again.cfg");
        std::fs::copy(&db, &again).unwrap();
        let (mut f, mut c) = (files.clone(), create.clone());
        create_config(&mut f, Some(&mut c), &mut Vec::new(), &again).unwrap();
        let message = check_held(&f, &c, None).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "configs {} and {} both name the domain \"db\"; a name is one domain's, so give \
                 each config a name = of its own",
                db.display(),
                again.display()
            )
        );

        // A kernel of another file's name leaves what is held as it was.
        let other = dir.join("other");
        std::fs::create_dir_all(&other).unwrap();
        let clash = other.join("clash.cfg");
        std::fs::write(
            &clash,
            format!(
                "name = \"clash\"\nkernel = \"{}\"\n",
                other.join("counter").display()
            ),
        )
        .unwrap();
        let (mut f, mut c) = (files.clone(), create.clone());
        let e = create_config(&mut f, Some(&mut c), &mut Vec::new(), &clash).unwrap_err();
        assert!(matches!(e, Error::FileNameClash { .. }), "{e:?}");
        assert_eq!((f, c), (files.clone(), create.clone()));

        // A bad config is refused when it is given.
        let bad = dir.join("bad.cfg");
        std::fs::write(&bad, "name = \"bad\"\nkernel = \"/k\"\nvcpus = 0\n").unwrap();
        let message = create_config(
            &mut files.clone(),
            Some(&mut create.clone()),
            &mut Vec::new(),
            &bad,
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.starts_with(&format!("bad config {}, line 3: ", bad.display())),
            "{message}"
        );
        let gone = dir.join("gone.cfg");
        let message = create_config(
            &mut files.clone(),
            Some(&mut create.clone()),
            &mut Vec::new(),
            &gone,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            message,
            format!(
                "file {} for Dom0 does not exist or is not a file",
                gone.display()
            )
        );

        // The kernel must be an ELF file, the ramdisk a file.
        std::fs::write(&kernel, b"#!/bin/sh\n").unwrap();
        let message = check_held(&files, &create, None).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!(
                "bad config {}: its kernel {} is not an ELF file",
                web.display(),
                kernel.display()
            )),
            "{message}"
        );
        std::fs::remove_file(&kernel).unwrap();
        let message = check_held(&files, &create, None).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "file {} for Dom0 does not exist or is not a file",
                kernel.display()
            )
        );
        // ... unless the build is still to make it.
        check_held(&files, &create, Some(&dir)).unwrap();
        std::fs::write(&kernel, b"\x7fELF\x02\x01").unwrap();
        std::fs::remove_file(&ramdisk).unwrap();
        assert!(matches!(
            check_held(&files, &create, None),
            Err(Error::FileMissing { .. })
        ));
        let no_ramdisk: Vec<_> = files
            .iter()
            .filter(|(n, _)| n != "initrd.gz")
            .cloned()
            .collect();
        let message = check_held(&no_ramdisk, &create, None)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!(
                "bad config {}: Dom0 holds no file initrd.gz for its ramdisk",
                web.display()
            )),
            "{message}"
        );
        // What is created must be held.
        assert_eq!(
            check_held(&[], &["web.cfg".to_owned()], None)
                .unwrap_err()
                .to_string(),
            "Dom0 is to create a domain from web.cfg at boot but is not given a file of that \
             name; hold the config with Machine::create_config or --config"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn scratch_dir(what: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-configs-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
