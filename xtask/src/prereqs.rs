//! Host tools xtask needs (QEMU, GRUB with its helpers for the image, and
//! e2fsprogs for ext4 disk images): checking for them and, when running as
//! root with apt-get, installing the Debian packages that provide them.

use std::path::Path;
use std::process::Command;

use crate::bare_metal::run_inheriting;
use crate::error::{Error, Result};
use crate::progress::say;

/// What a run needs from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// QEMU itself.
    Qemu,
    /// Everything `grub-mkrescue` needs to make a BIOS-bootable ISO.
    GrubImage,
    /// `mkfs.ext4`, to make ext4 disk images (see [`crate::disk::build_ext4`]).
    Ext4Image,
    /// Bochs with its BIOS images, for the VMX backend.
    Bochs,
    /// What the Xen reference set-up packs Dom0's root file system with
    /// (`cargo xtask xen-check`).
    XenReference,
}

/// Something on the host that must exist, and the Debian package with it.
struct Requirement {
    /// A program looked up on PATH (and, with `sbin`, in the system
    /// directories [`SBIN_DIRS`]), or an absolute path that must exist.
    thing: &'static str,
    /// The program may live in an `sbin` directory, which is not on every
    /// user's PATH.
    sbin: bool,
    package: &'static str,
    need: Need,
}

const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        thing: "cpio",
        sbin: false,
        package: "cpio",
        need: Need::XenReference,
    },
    Requirement {
        thing: "qemu-system-x86_64",
        sbin: false,
        package: "qemu-system-x86",
        need: Need::Qemu,
    },
    Requirement {
        thing: "grub-mkrescue",
        sbin: false,
        package: "grub-common",
        need: Need::GrubImage,
    },
    Requirement {
        thing: "/usr/lib/grub/i386-pc",
        sbin: false,
        package: "grub-pc-bin",
        need: Need::GrubImage,
    },
    Requirement {
        thing: "xorriso",
        sbin: false,
        package: "xorriso",
        need: Need::GrubImage,
    },
    Requirement {
        thing: "mformat",
        sbin: false,
        package: "mtools",
        need: Need::GrubImage,
    },
    Requirement {
        thing: "bochs",
        sbin: false,
        package: "bochs",
        need: Need::Bochs,
    },
    Requirement {
        thing: "/usr/share/bochs/BIOS-bochs-latest",
        sbin: false,
        package: "bochsbios",
        need: Need::Bochs,
    },
    Requirement {
        thing: "/usr/share/vgabios/vgabios.bin",
        sbin: false,
        package: "vgabios",
        need: Need::Bochs,
    },
    Requirement {
        thing: "mkfs.ext4",
        sbin: true,
        package: "e2fsprogs",
        need: Need::Ext4Image,
    },
];

/// Where system programs such as `mkfs.ext4` live when they are not on
/// PATH (Debian puts them in `/usr/sbin`, which a user's PATH may lack).
pub const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/local/sbin"];

/// Makes sure every host tool for `needs` is there. Missing ones are
/// installed with apt-get when running as root; otherwise this fails with
/// the packages to install.
pub fn ensure(needs: &[Need]) -> Result<()> {
    let missing = missing(needs);
    if missing.is_empty() {
        return Ok(());
    }
    let tools: Vec<&'static str> = missing.iter().map(|r| r.thing).collect();
    let mut packages: Vec<&'static str> = missing.iter().map(|r| r.package).collect();
    packages.dedup();
    if !is_root() || find_program("apt-get").is_none() {
        return Err(Error::MissingPrerequisites { tools, packages });
    }
    say(&format!(
        "missing {}; installing the Debian packages {} with apt-get",
        tools.join(", "),
        packages.join(" ")
    ));
    let mut update = apt_get();
    update.arg("update");
    run_inheriting(update)?;
    let mut install = apt_get();
    install
        .args(["install", "-y", "--no-install-recommends"])
        .args(&packages);
    run_inheriting(install)?;
    let still: Vec<&'static str> = self::missing(needs).iter().map(|r| r.thing).collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(Error::StillMissing { tools: still })
    }
}

fn missing(needs: &[Need]) -> Vec<&'static Requirement> {
    REQUIREMENTS
        .iter()
        .filter(|r| needs.contains(&r.need))
        .filter(|r| {
            if r.thing.starts_with('/') {
                !Path::new(r.thing).exists()
            } else if r.sbin {
                find_system_program(r.thing).is_none()
            } else {
                find_program(r.thing).is_none()
            }
        })
        .collect()
}

fn apt_get() -> Command {
    let mut command = Command::new("apt-get");
    command.env("DEBIAN_FRONTEND", "noninteractive");
    command
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The path of an executable program on PATH, if there is one.
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// The path of a system program: on PATH, or else in one of [`SBIN_DIRS`].
pub fn find_system_program(name: &str) -> Option<std::path::PathBuf> {
    find_program(name).or_else(|| {
        SBIN_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|candidate| is_executable(candidate))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_need_has_its_packages() {
        let grub: Vec<_> = REQUIREMENTS
            .iter()
            .filter(|r| r.need == Need::GrubImage)
            .map(|r| r.package)
            .collect();
        assert_eq!(grub, ["grub-common", "grub-pc-bin", "xorriso", "mtools"]);
        assert!(
            REQUIREMENTS
                .iter()
                .any(|r| r.need == Need::Qemu && r.package == "qemu-system-x86")
        );
        let ext4: Vec<_> = REQUIREMENTS
            .iter()
            .filter(|r| r.need == Need::Ext4Image)
            .map(|r| (r.thing, r.sbin, r.package))
            .collect();
        assert_eq!(ext4, [("mkfs.ext4", true, "e2fsprogs")]);
    }

    #[test]
    fn finds_programs_on_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-pavise").is_none());
        assert!(find_system_program("sh").is_some());
        assert!(find_system_program("no-such-program-pavise").is_none());
    }
}
