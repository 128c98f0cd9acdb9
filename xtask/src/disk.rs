//! Virtual disks: the raw image files `--domu …,disk=IMG[:ro]` attaches,
//! checked before QEMU starts, and the QEMU virtio-blk devices that carry
//! them (Dom0's block backend drives those devices and serves each DomU its
//! `xvdX`); also an ext4 image builder, for guests' root file systems.
//!
//! The k-th disk of the machine (k = 0, 1, …, counting every DomU's disks
//! in domain order) is the virtio-blk PCI device in slot
//! [`FIRST_SLOT`]` + k` of bus 0, function 0; Dom0 learns which slot is
//! whose from `pavise.vbd=` words on its command line (see
//! [`crate::domains::dom0_cmdline`]).

use std::ffi::OsString;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::prereqs::{self, Need};
use crate::workspace;

/// A disk image a DomU gets as a virtual block device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    /// A raw image file on the host; what the guest writes goes into it.
    pub path: PathBuf,
    /// The guest may only read it (`disk=IMG:ro`); QEMU opens it read-only.
    pub readonly: bool,
}

impl Disk {
    /// A read-write disk.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            readonly: false,
        }
    }

    /// A read-only disk.
    pub fn read_only(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            readonly: true,
        }
    }
}

/// The sector size: a disk image is a whole number of them.
pub const SECTOR_BYTES: u64 = 512;
/// The smallest disk image accepted (one page, eight sectors).
pub const MIN_BYTES: u64 = 4096;
/// The PCI device number (bus 0) of the machine's first disk.
pub const FIRST_SLOT: u8 = 0x10;
/// The PCI device number of the last disk that fits: q35's ICH9 functions
/// (LPC, SATA, SMBus) take 0x1f.
pub const LAST_SLOT: u8 = 0x1e;
/// Disks a machine can have, all DomUs together.
pub const MAX_DISKS: usize = (LAST_SLOT - FIRST_SLOT + 1) as usize;
/// Disks one DomU can have: `xvda` to `xvdp`.
pub const MAX_DISKS_PER_DOMAIN: usize = 16;

/// The device name a DomU sees for its `index`-th disk (0-based):
/// `xvda`, `xvdb`, … `xvdp`.
pub fn device_name(index: usize) -> Option<String> {
    (index < MAX_DISKS_PER_DOMAIN).then(|| format!("xvd{}", char::from(b'a' + index as u8)))
}

/// The PCI device number (bus 0, function 0) of the machine's `k`-th disk
/// (0-based, all DomUs together), if it fits.
pub fn pci_slot(k: usize) -> Option<u8> {
    u8::try_from(k)
        .ok()
        .and_then(|k| FIRST_SLOT.checked_add(k))
        .filter(|slot| *slot <= LAST_SLOT)
}

/// What is wrong with the disks given: each prints as one sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The image does not exist.
    Missing { path: PathBuf },
    /// The path names a directory, device or other non-regular file.
    NotAFile { path: PathBuf },
    /// The image is smaller than [`MIN_BYTES`].
    TooSmall { path: PathBuf, bytes: u64 },
    /// The image is not a whole number of sectors.
    NotWholeSectors { path: PathBuf, bytes: u64 },
    /// A read-write disk's image cannot be opened for writing because it
    /// (or its file system) is read-only.
    ReadOnly { path: PathBuf },
    /// The image cannot be read (or looked at).
    Unreadable { path: PathBuf, reason: String },
    /// A read-write disk's image cannot be opened for writing for another
    /// reason.
    Unwritable { path: PathBuf, reason: String },
    /// The same image is attached twice, read-write at least once.
    SharedWrite { path: PathBuf, again: PathBuf },
    /// More disks than PCI slots for them.
    TooMany { count: usize },
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { path } => write!(
                f,
                "disk image {} does not exist; create it first (e.g. `truncate -s 64M {}`) or fix the path",
                path.display(),
                path.display()
            ),
            Self::NotAFile { path } => write!(
                f,
                "disk image {} is not a regular file; disk= takes a raw image file",
                path.display()
            ),
            Self::TooSmall { path, bytes } => write!(
                f,
                "disk image {} is {bytes} bytes but a disk must be at least {MIN_BYTES}; enlarge it (e.g. `truncate -s 64M {}`)",
                path.display(),
                path.display()
            ),
            Self::NotWholeSectors { path, bytes } => write!(
                f,
                "disk image {} is {bytes} bytes, not a multiple of {SECTOR_BYTES}; round it up to whole sectors (e.g. `truncate -s %{SECTOR_BYTES} {}`)",
                path.display(),
                path.display()
            ),
            Self::ReadOnly { path } => write!(
                f,
                "disk image {} is read-only; use disk={}:ro or make it writable",
                path.display(),
                path.display()
            ),
            Self::Unreadable { path, reason } => write!(
                f,
                "disk image {} cannot be read ({reason}); make it readable",
                path.display()
            ),
            Self::Unwritable { path, reason } => write!(
                f,
                "disk image {} cannot be opened for writing ({reason}); use disk={}:ro or make it writable",
                path.display(),
                path.display()
            ),
            Self::SharedWrite { path, again } => {
                write!(f, "disk image {} is attached twice", path.display())?;
                if again != path {
                    write!(f, " (again as {})", again.display())?;
                }
                write!(
                    f,
                    ", read-write at least once; give each read-write disk an image of its own, or attach every use of it with :ro"
                )
            }
            Self::TooMany { count } => write!(
                f,
                "{count} disks are attached but at most {MAX_DISKS} fit (PCI slots {FIRST_SLOT:#x} to {LAST_SLOT:#x}); attach fewer"
            ),
        }
    }
}

impl std::error::Error for DiskError {}

impl From<DiskError> for Error {
    fn from(e: DiskError) -> Self {
        let kind = match &e {
            DiskError::Missing { .. } => io::ErrorKind::NotFound,
            DiskError::ReadOnly { .. } => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::InvalidInput,
        };
        Error::Io {
            doing: "checking the disk images".to_owned(),
            source: io::Error::new(kind, e),
        }
    }
}

/// Which file an image is, however its path is spelt (device and inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

/// Checks one disk: its image exists, is a regular file of at least
/// [`MIN_BYTES`] and whole sectors, can be read, and (unless read-only) can
/// be opened for writing (without truncating it).
pub fn check(disk: &Disk) -> Result<FileId, DiskError> {
    use std::os::unix::fs::MetadataExt;
    let path = &disk.path;
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
            DiskError::Missing { path: path.clone() }
        }
        _ => DiskError::Unreadable {
            path: path.clone(),
            reason: e.to_string(),
        },
    })?;
    if !metadata.is_file() {
        return Err(DiskError::NotAFile { path: path.clone() });
    }
    check_size(path, metadata.len())?;
    std::fs::File::open(path).map_err(|e| DiskError::Unreadable {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if !disk.readonly {
        OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| write_error(path, &e))?;
    }
    Ok(FileId {
        dev: metadata.dev(),
        ino: metadata.ino(),
    })
}

/// Checks an image's size: at least [`MIN_BYTES`], whole sectors.
pub fn check_size(path: &Path, bytes: u64) -> Result<(), DiskError> {
    let path = path.to_owned();
    if bytes < MIN_BYTES {
        Err(DiskError::TooSmall { path, bytes })
    } else if !bytes.is_multiple_of(SECTOR_BYTES) {
        Err(DiskError::NotWholeSectors { path, bytes })
    } else {
        Ok(())
    }
}

/// What failing to open `path` for writing means for a read-write disk.
fn write_error(path: &Path, e: &io::Error) -> DiskError {
    match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            DiskError::ReadOnly {
                path: path.to_owned(),
            }
        }
        _ => DiskError::Unwritable {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    }
}

/// Checks a machine's disks, in attachment order: each one ([`check`]),
/// that they fit ([`MAX_DISKS`]), and that no image is attached twice with
/// a writer among its uses (two writers would corrupt it, and QEMU's image
/// locking refuses a writer beside any other user). Read-only uses of one
/// image may be shared.
pub fn check_all(disks: &[Disk]) -> Result<(), DiskError> {
    if disks.len() > MAX_DISKS {
        return Err(DiskError::TooMany { count: disks.len() });
    }
    let ids = disks.iter().map(check).collect::<Result<Vec<_>, _>>()?;
    shared_write(disks, &ids)
}

/// The first image among `disks` (whose files are `ids`) attached twice
/// with a writer among its uses.
fn shared_write(disks: &[Disk], ids: &[FileId]) -> Result<(), DiskError> {
    for (j, (later, later_id)) in disks.iter().zip(ids).enumerate() {
        for (earlier, earlier_id) in disks[..j].iter().zip(ids) {
            if earlier_id == later_id && !(earlier.readonly && later.readonly) {
                return Err(DiskError::SharedWrite {
                    path: earlier.path.clone(),
                    again: later.path.clone(),
                });
            }
        }
    }
    Ok(())
}

/// QEMU's arguments for the disks, in order: for the k-th,
/// `-drive file=IMG,format=raw,if=none,id=vdK[,readonly=on],cache=writeback
/// -device virtio-blk-pci,drive=vdK,addr=0xSLOT` (slot [`pci_slot`]`(k)`
/// on q35's root bus). Relative image paths are made absolute (QEMU runs
/// in the workspace root) and commas in them doubled, as QEMU's option
/// syntax wants.
/// `iommu`: the machine has an IOMMU, so each device is told to go
/// through it (`iommu_platform=on`, VIRTIO_F_ACCESS_PLATFORM, which QEMU
/// offers on modern-only devices: `disable-legacy=on`).
pub fn qemu_args(disks: &[Disk], iommu: bool) -> Result<Vec<OsString>> {
    if disks.len() > MAX_DISKS {
        return Err(DiskError::TooMany { count: disks.len() }.into());
    }
    let mut args = Vec::with_capacity(disks.len() * 4);
    for (k, disk) in disks.iter().enumerate() {
        let slot = pci_slot(k).ok_or(DiskError::TooMany { count: disks.len() })?;
        let path = std::path::absolute(&disk.path).map_err(Error::io(format!(
            "finding the absolute path of {}",
            disk.path.display()
        )))?;
        let mut drive = OsString::from("file=");
        drive.push(escape_commas(path.as_os_str()));
        drive.push(format!(",format=raw,if=none,id=vd{k}"));
        if disk.readonly {
            drive.push(",readonly=on");
        }
        drive.push(",cache=writeback");
        args.push("-drive".into());
        args.push(drive);
        args.push("-device".into());
        let platform = if iommu {
            ",disable-legacy=on,iommu_platform=on"
        } else {
            ""
        };
        args.push(format!("virtio-blk-pci,drive=vd{k},addr={slot:#x}{platform}").into());
    }
    Ok(args)
}

/// `value` with each `,` doubled, so that QEMU reads it as one option value.
fn escape_commas(value: &std::ffi::OsStr) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut bytes = Vec::with_capacity(value.len());
    for &b in value.as_bytes() {
        bytes.push(b);
        if b == b',' {
            bytes.push(b',');
        }
    }
    OsString::from_vec(bytes)
}

/// Where `mkfs.ext4` is (on PATH, or in `/usr/sbin` or `/sbin`).
pub fn find_mkfs_ext4() -> Option<PathBuf> {
    prereqs::find_system_program("mkfs.ext4")
}

/// Makes `image` an ext4 file system of `size_mib` MiB labelled `root`
/// holding a copy of `dir` (e2fsprogs' `mkfs.ext4 -q -F -d DIR -L root IMG
/// SIZEm`; no root privileges or loop devices needed). The image is
/// created, or overwritten, with that size first. Without `mkfs.ext4` this
/// installs e2fsprogs when running as root with apt-get, and otherwise
/// fails saying to install it.
pub fn build_ext4(dir: &Path, image: &Path, size_mib: u32) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::Io {
            doing: format!("making the ext4 image {}", image.display()),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a directory", dir.display()),
            ),
        });
    }
    prereqs::ensure(&[Need::Ext4Image])?;
    let mkfs = find_mkfs_ext4().ok_or(Error::StillMissing {
        tools: vec!["mkfs.ext4"],
    })?;
    let file =
        std::fs::File::create(image).map_err(Error::io(format!("creating {}", image.display())))?;
    file.set_len(u64::from(size_mib) << 20)
        .map_err(Error::io(format!(
            "making {} {size_mib} MiB long",
            image.display()
        )))?;
    drop(file);
    let mut command = Command::new(&mkfs);
    command
        .args(["-q", "-F", "-d"])
        .arg(dir)
        .args(["-L", "root"])
        .arg(image)
        .arg(format!("{size_mib}m"))
        .stdin(Stdio::null());
    workspace::output_checked(&mut command).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory of this test's own, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(what: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "xtask-disk-{what}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn file(&self, name: &str, bytes: u64) -> PathBuf {
            let path = self.0.join(name);
            std::fs::File::create(&path)
                .unwrap()
                .set_len(bytes)
                .unwrap();
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    fn one_sentence(e: &DiskError) -> String {
        let message = e.to_string();
        assert!(!message.contains('\n'), "{message}");
        message
    }

    #[test]
    fn names_and_slots() {
        assert_eq!(device_name(0).as_deref(), Some("xvda"));
        assert_eq!(device_name(1).as_deref(), Some("xvdb"));
        assert_eq!(device_name(15).as_deref(), Some("xvdp"));
        assert_eq!(device_name(16), None);
        assert_eq!(pci_slot(0), Some(0x10));
        assert_eq!(pci_slot(14), Some(0x1e));
        assert_eq!(pci_slot(15), None);
        assert_eq!(pci_slot(300), None);
        assert_eq!(MAX_DISKS, 15);
    }

    #[test]
    fn good_images_pass() {
        let dir = Scratch::new("good");
        let small = dir.file("small.img", 4096);
        let big = dir.file("big.img", 64 << 20);
        assert!(check(&Disk::new(&small)).is_ok());
        assert!(check(&Disk::read_only(&big)).is_ok());
        assert!(check_all(&[Disk::new(&small), Disk::new(&big)]).is_ok());
        // Checking does not truncate or grow the image.
        assert_eq!(std::fs::metadata(&big).unwrap().len(), 64 << 20);
    }

    #[test]
    fn bad_images_are_refused_with_the_reason() {
        let dir = Scratch::new("bad");
        let gone = dir.0.join("gone.img");
        let tiny = dir.file("tiny.img", 4095);
        let empty = dir.file("empty.img", 0);
        let odd = dir.file("odd.img", 4096 + 100);
        let sub = dir.0.join("subdir");
        std::fs::create_dir(&sub).unwrap();
        let cases = [
            (Disk::new(&gone), "does not exist"),
            (Disk::read_only(&gone), "does not exist"),
            (Disk::new(gone.join("below")), "does not exist"),
            (Disk::new(&sub), "is not a regular file"),
            (Disk::new("/dev/null"), "is not a regular file"),
            (
                Disk::new(&tiny),
                "is 4095 bytes but a disk must be at least 4096",
            ),
            (
                Disk::read_only(&empty),
                "is 0 bytes but a disk must be at least 4096",
            ),
            (Disk::new(&odd), "is 4196 bytes, not a multiple of 512"),
        ];
        for (disk, reason) in cases {
            match check(&disk) {
                Err(e) => {
                    let message = one_sentence(&e);
                    assert!(message.contains(reason), "{disk:?}: {message}");
                    assert!(
                        message.starts_with(&format!("disk image {}", disk.path.display())),
                        "{message}"
                    );
                }
                Ok(_) => panic!("{disk:?} passed"),
            }
            // The same through check_all, after a good disk.
            let good = dir.file("ok.img", 8192);
            assert!(check_all(&[Disk::new(good), disk]).is_err());
        }
        assert_eq!(
            DiskError::NotWholeSectors {
                path: odd.clone(),
                bytes: 4196
            }
            .to_string(),
            format!(
                "disk image {0} is 4196 bytes, not a multiple of 512; round it up to whole sectors (e.g. `truncate -s %512 {0}`)",
                odd.display()
            )
        );
    }

    #[test]
    fn read_only_images_need_ro() {
        let dir = Scratch::new("ro");
        let image = dir.file("ro.img", 8192);
        let mut permissions = std::fs::metadata(&image).unwrap().permissions();
        permissions.set_readonly(true);
        std::fs::set_permissions(&image, permissions).unwrap();
        assert!(check(&Disk::read_only(&image)).is_ok());
        if is_root() {
            eprintln!("note: running as root, which may write a read-only file: not checked");
        } else {
            assert_eq!(
                check(&Disk::new(&image)),
                Err(DiskError::ReadOnly {
                    path: image.clone()
                })
            );
        }
        // How the failed open is read, whoever runs this.
        for kind in [
            io::ErrorKind::PermissionDenied,
            io::ErrorKind::ReadOnlyFilesystem,
        ] {
            let e = write_error(&image, &io::Error::from(kind));
            assert_eq!(
                one_sentence(&e),
                format!(
                    "disk image {0} is read-only; use disk={0}:ro or make it writable",
                    image.display()
                )
            );
        }
        let busy = write_error(&image, &io::Error::from(io::ErrorKind::ExecutableFileBusy));
        assert!(matches!(busy, DiskError::Unwritable { .. }), "{busy:?}");
        assert!(one_sentence(&busy).contains("cannot be opened for writing"));
    }

    #[test]
    fn an_image_is_written_by_one_disk_only() {
        let dir = Scratch::new("shared");
        let a = dir.file("a.img", 8192);
        let b = dir.file("b.img", 8192);
        let link = dir.0.join("link.img");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let spelt_otherwise = dir.0.join(".").join("a.img");
        for disks in [
            vec![Disk::new(&a), Disk::new(&a)],
            vec![Disk::new(&b), Disk::new(&a), Disk::read_only(&a)],
            vec![Disk::read_only(&a), Disk::new(&a)],
            vec![Disk::new(&a), Disk::new(&link)],
            vec![Disk::new(&a), Disk::read_only(&spelt_otherwise)],
        ] {
            match check_all(&disks) {
                Err(e @ DiskError::SharedWrite { .. }) => {
                    let message = one_sentence(&e);
                    assert!(message.contains("is attached twice"), "{message}");
                }
                other => panic!("{disks:?} gave {other:?}"),
            }
        }
        assert_eq!(
            check_all(&[Disk::new(&a), Disk::new(&link)])
                .unwrap_err()
                .to_string(),
            format!(
                "disk image {} is attached twice (again as {}), read-write at least once; \
                 give each read-write disk an image of its own, or attach every use of it with :ro",
                a.display(),
                link.display()
            )
        );
        // Readers may share an image.
        assert!(check_all(&[Disk::read_only(&a), Disk::read_only(&link), Disk::new(&b)]).is_ok());
    }

    #[test]
    fn at_most_fifteen_disks() {
        let dir = Scratch::new("many");
        let image = dir.file("shared.img", 8192);
        let disks = vec![Disk::read_only(&image); MAX_DISKS + 1];
        assert_eq!(check_all(&disks), Err(DiskError::TooMany { count: 16 }));
        assert_eq!(
            DiskError::TooMany { count: 16 }.to_string(),
            "16 disks are attached but at most 15 fit (PCI slots 0x10 to 0x1e); attach fewer"
        );
        assert!(check_all(&disks[..MAX_DISKS]).is_ok());
        assert!(qemu_args(&disks, false).is_err());
        assert_eq!(
            qemu_args(&disks[..MAX_DISKS], false).unwrap().len(),
            4 * MAX_DISKS
        );
    }

    #[test]
    fn qemu_arguments() {
        let args = qemu_args(
            &[Disk::new("/srv/a.img"), Disk::read_only("/srv/b,c.img")],
            false,
        )
        .unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-drive",
                "file=/srv/a.img,format=raw,if=none,id=vd0,cache=writeback",
                "-device",
                "virtio-blk-pci,drive=vd0,addr=0x10",
                "-drive",
                "file=/srv/b,,c.img,format=raw,if=none,id=vd1,readonly=on,cache=writeback",
                "-device",
                "virtio-blk-pci,drive=vd1,addr=0x11",
            ]
        );
        assert!(qemu_args(&[], false).unwrap().is_empty());
        // A relative path is made absolute: QEMU runs elsewhere.
        let args = qemu_args(&[Disk::new("rel.img")], false).unwrap();
        let expected = std::env::current_dir().unwrap().join("rel.img");
        assert_eq!(
            args[1].to_string_lossy(),
            format!(
                "file={},format=raw,if=none,id=vd0,cache=writeback",
                expected.display()
            )
        );
    }

    #[test]
    fn disk_errors_become_xtask_errors() {
        let e: Error = DiskError::ReadOnly {
            path: "/x/a.img".into(),
        }
        .into();
        assert_eq!(
            e.to_string(),
            "failed while checking the disk images: disk image /x/a.img is read-only; \
             use disk=/x/a.img:ro or make it writable"
        );
    }

    #[test]
    fn ext4_images() {
        let Some(mkfs) = find_mkfs_ext4() else {
            eprintln!(
                "note: mkfs.ext4 not found (e2fsprogs); the ext4 image builder is not tested"
            );
            return;
        };
        let dir = Scratch::new("ext4");
        let tree = dir.0.join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hostname"), "pavise\n").unwrap();
        let image = dir.0.join("root.img");
        // An existing, longer file is replaced.
        std::fs::write(&image, vec![0xffu8; 20 << 20]).unwrap();
        build_ext4(&tree, &image, 8).unwrap_or_else(|e| panic!("{}: {e}", mkfs.display()));
        let bytes = std::fs::read(&image).unwrap();
        assert_eq!(bytes.len(), 8 << 20);
        // The superblock at 1024: magic 0xef53 at offset 56, the volume
        // label at offset 120.
        let superblock = &bytes[1024..2048];
        assert_eq!(&superblock[56..58], &[0x53, 0xef]);
        assert_eq!(&superblock[120..125], b"root\0");
        // The image is a good disk.
        assert!(check(&Disk::new(&image)).is_ok());
        // What went in is in there (debugfs comes with mkfs.ext4).
        if let Some(debugfs) = prereqs::find_system_program("debugfs") {
            let out = Command::new(debugfs)
                .args(["-R", "cat /etc/hostname"])
                .arg(&image)
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "pavise\n");
        }
        // Not a directory: refused before anything is made.
        let gone = dir.0.join("gone");
        let other = dir.0.join("other.img");
        let e = build_ext4(&gone, &other, 8).unwrap_err().to_string();
        assert!(e.contains("is not a directory"), "{e}");
        assert!(!other.exists());
    }
}
