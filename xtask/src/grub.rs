//! The GRUB boot image: the grub.cfg text (multiboot2 hypervisor plus
//! module2 modules, serial console), the staging directory layout and
//! `grub-mkrescue` making the ISO from it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::workspace;

/// The hypervisor's path inside the image.
pub const HYPERVISOR_PATH: &str = "/boot/hypervisor";

/// One module as it appears in the image: its file name under `/boot/` and
/// the string GRUB passes with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageModule {
    pub file_name: String,
    pub string: String,
}

/// The grub.cfg that boots the hypervisor with `cmdline` and the modules,
/// with GRUB's console on the first serial port.
pub fn grub_cfg(cmdline: &str, modules: &[ImageModule]) -> Result<String> {
    let mut cfg = String::from(
        "set timeout=0\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial\n\
         terminal_output serial\n\
         menuentry \"Pavise\" {\n",
    );
    cfg.push_str(&format!("  multiboot2 {HYPERVISOR_PATH}"));
    push_argument(&mut cfg, cmdline)?;
    cfg.push('\n');
    for module in modules {
        cfg.push_str(&format!("  module2 /boot/{}", module.file_name));
        push_argument(&mut cfg, &module.string)?;
        cfg.push('\n');
    }
    cfg.push_str("  boot\n}\n");
    Ok(cfg)
}

/// Appends ` <string>` so that GRUB hands the kernel exactly `string`.
fn push_argument(cfg: &mut String, string: &str) -> Result<()> {
    let words = quote(string)?;
    if !words.is_empty() {
        cfg.push(' ');
        cfg.push_str(&words);
    }
    Ok(())
}

/// `string` written for a `multiboot2`/`module2` line so that the kernel
/// gets exactly `string`.
///
/// GRUB's script lexer splits the line into words (undoing quotes), then
/// builds the kernel's command line by joining the words with single spaces,
/// wrapping a word that contains a space in double quotes and putting a
/// backslash before every `"`, `'` and `\`. So the string goes word by word,
/// each word in single quotes when it holds a character the lexer would
/// interpret, and strings GRUB cannot hand over unchanged are refused:
/// runs of spaces, leading or trailing spaces, quotes, backslashes and
/// control characters.
pub fn quote(string: &str) -> Result<String> {
    let refuse = |reason| {
        Err(Error::BadBootString {
            string: string.to_owned(),
            reason,
        })
    };
    if string.contains('\n') {
        return refuse("it contains a line break");
    }
    if string.chars().any(char::is_control) {
        return refuse("it contains a control character");
    }
    if string.contains(['"', '\'', '\\']) {
        return refuse("GRUB would put a backslash before its quotes and backslashes");
    }
    if string.is_empty() {
        return Ok(String::new());
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_.,:=/+@%^~".contains(c);
    let mut quoted = Vec::new();
    for word in string.split(' ') {
        if word.is_empty() {
            return refuse("GRUB would join its words with single spaces");
        }
        if word.chars().all(plain) {
            quoted.push(word.to_owned());
        } else {
            quoted.push(format!("'{word}'"));
        }
    }
    Ok(quoted.join(" "))
}

/// The file names the modules get under `/boot/` in the image: their host
/// file name with anything but `[A-Za-z0-9._-]` replaced, made unique.
pub fn image_file_names(modules: &[(PathBuf, String)]) -> Result<Vec<String>> {
    let mut taken: Vec<String> = vec!["hypervisor".into(), "grub".into()];
    let mut names = Vec::with_capacity(modules.len());
    for (index, (path, _)) in modules.iter().enumerate() {
        let base: String = path
            .file_name()
            .ok_or_else(|| Error::ModuleMissing { path: path.clone() })?
            .to_string_lossy()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = base.clone();
        if taken.contains(&name) {
            name = format!("{index}-{base}");
        }
        taken.push(name.clone());
        names.push(name);
    }
    Ok(names)
}

/// Fills `staging` with the hypervisor, the modules and grub.cfg, then makes
/// the ISO `iso` from it with `grub-mkrescue` (its chatter is kept quiet and
/// shown only when it fails).
pub fn make_image(
    staging: &Path,
    iso: &Path,
    hypervisor: &Path,
    cmdline: &str,
    modules: &[(PathBuf, String)],
) -> Result<()> {
    let boot = staging.join("boot");
    let grub_dir = boot.join("grub");
    std::fs::create_dir_all(&grub_dir)
        .map_err(Error::io(format!("creating {}", grub_dir.display())))?;
    copy(hypervisor, &boot.join("hypervisor"))?;
    let names = image_file_names(modules)?;
    let mut image_modules = Vec::with_capacity(modules.len());
    for ((path, string), file_name) in modules.iter().zip(names) {
        copy(path, &boot.join(&file_name))?;
        image_modules.push(ImageModule {
            file_name,
            string: string.clone(),
        });
    }
    let cfg = grub_cfg(cmdline, &image_modules)?;
    let cfg_path = grub_dir.join("grub.cfg");
    std::fs::write(&cfg_path, cfg).map_err(Error::io(format!("writing {}", cfg_path.display())))?;

    let mut mkrescue = Command::new("grub-mkrescue");
    mkrescue.arg("-o").arg(iso).arg(staging);
    let output = mkrescue.output().map_err(|source| Error::Spawn {
        program: "grub-mkrescue".into(),
        source,
    })?;
    if output.status.success() && iso.is_file() {
        Ok(())
    } else {
        Err(Error::CommandFailed {
            command: workspace::describe(&mkrescue),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).map(drop).map_err(Error::io(format!(
        "copying {} to {}",
        from.display(),
        to.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(file_name: &str, string: &str) -> ImageModule {
        ImageModule {
            file_name: file_name.into(),
            string: string.into(),
        }
    }

    #[test]
    fn cfg_boots_hypervisor_with_modules_on_serial() {
        let cfg = grub_cfg(
            "qemu_exit loglvl=info",
            &[module("dom0", "dom0 role=control"), module("manifest", "")],
        )
        .expect("valid cfg");
        assert_eq!(
            cfg,
            "set timeout=0\n\
             serial --unit=0 --speed=115200\n\
             terminal_input serial\n\
             terminal_output serial\n\
             menuentry \"Pavise\" {\n\
             \x20 multiboot2 /boot/hypervisor qemu_exit loglvl=info\n\
             \x20 module2 /boot/dom0 dom0 role=control\n\
             \x20 module2 /boot/manifest\n\
             \x20 boot\n\
             }\n"
        );
    }

    #[test]
    fn a_ramdisk_module_follows_its_kernel() {
        let dir = std::env::temp_dir().join(format!("xtask-grub-ramdisk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vmlinux = dir.join("vmlinux");
        std::fs::write(&vmlinux, b"\x7fELF").unwrap();
        let initrd = dir.join("initramfs.cpio.gz");
        std::fs::write(&initrd, b"\x1f\x8b").unwrap();
        let domu = crate::domains::parse_domu(&format!(
            "{},name=linux,ramdisk={},cmdline=console=hvc0",
            vmlinux.display(),
            initrd.display()
        ))
        .unwrap();
        let modules = crate::domains::modules(&[domu]).unwrap();
        let names = image_file_names(&modules).unwrap();
        let image_modules: Vec<ImageModule> = names
            .iter()
            .zip(&modules)
            .map(|(name, (_, string))| module(name, string))
            .collect();
        let cfg = grub_cfg("qemu_exit", &image_modules).unwrap();
        assert!(
            cfg.contains(
                "  module2 /boot/dom0 name=dom0\n\
                 \x20 module2 /boot/vmlinux name=linux cmdline=console=hvc0\n\
                 \x20 module2 /boot/initramfs.cpio.gz ramdisk\n\
                 \x20 boot\n"
            ),
            "{cfg}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cfg_without_cmdline_or_modules() {
        let cfg = grub_cfg("", &[]).expect("valid cfg");
        assert!(cfg.contains("  multiboot2 /boot/hypervisor\n  boot\n"));
    }

    #[test]
    fn plain_strings_stay_as_they_are() {
        assert_eq!(
            quote("qemu_exit maxcpus=2").ok().as_deref(),
            Some("qemu_exit maxcpus=2")
        );
        assert_eq!(quote("a/b.c,d:e").ok().as_deref(), Some("a/b.c,d:e"));
        assert_eq!(quote("").ok().as_deref(), Some(""));
    }

    #[test]
    fn special_words_are_single_quoted() {
        assert_eq!(
            quote("qemu_exit a$b").ok().as_deref(),
            Some("qemu_exit 'a$b'")
        );
        assert_eq!(quote("x;y #z").ok().as_deref(), Some("'x;y' '#z'"));
        assert_eq!(quote("{a} b").ok().as_deref(), Some("'{a}' b"));
    }

    #[test]
    fn strings_grub_would_change_are_refused() {
        for bad in [
            "a  b",
            " lead",
            "trail ",
            "say \"hi\"",
            "it's",
            "back\\slash",
        ] {
            assert!(
                matches!(quote(bad), Err(Error::BadBootString { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn line_breaks_are_refused() {
        assert!(matches!(
            quote("a\nb"),
            Err(Error::BadBootString { reason, .. }) if reason.contains("line break")
        ));
        assert!(quote("a\tb").is_err());
        assert!(grub_cfg("x", &[module("m", "bad\nstring")]).is_err());
    }

    #[test]
    fn image_file_names_are_safe_and_unique() {
        let modules = vec![
            (PathBuf::from("/a/kernel"), String::new()),
            (PathBuf::from("/b/kernel"), String::new()),
            (PathBuf::from("/c/my kernel.elf"), String::new()),
            (PathBuf::from("/d/hypervisor"), String::new()),
        ];
        assert_eq!(
            image_file_names(&modules).expect("names"),
            ["kernel", "1-kernel", "my_kernel.elf", "3-hypervisor"]
        );
    }
}
