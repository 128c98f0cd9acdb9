//! The files Dom0 holds for its toolstack: those the hypervisor handed it
//! at boot (`file NAME` modules, in place where the loader put them) and
//! those the host uploads over the control channel (`cargo xtask xl
//! create PATH` sends a config, kernel and ramdisk Dom0 lacks), kept in
//! the free RAM above Dom0's image (the "room").
//!
//! Each upload is announced with its size and CRC-32 (IEEE, as zlib),
//! gets a page-aligned run of the room first-fit, is written as its bytes
//! arrive, and becomes a file only once all of them are in and the CRC
//! matches. An upload replaces a file of the same name (an uploaded one is
//! freed first; a boot one is hidden). Pure logic: the room is any byte
//! slice, so host tests drive it.

use alloc::string::String;
use alloc::vec::Vec;

/// Granularity of the room's runs.
const ALIGN: usize = 4096;

/// Why a file name is not one Dom0 takes, if it is not: the names the host
/// tool gives are file names (letters, digits, `.`, `_`, `-`, `+`).
pub use xlcfg::file_name_problem;

/// What went wrong with an upload: each prints as one sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadError {
    BadName {
        name: String,
        reason: &'static str,
    },
    NoRoom {
        name: String,
        size: usize,
        largest: usize,
    },
    Damaged {
        name: String,
        got: u32,
        want: u32,
    },
}

impl core::fmt::Display for UploadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadName { name, reason } => {
                write!(f, "{name:?} cannot be one of Dom0's files: {reason}")
            }
            Self::NoRoom {
                name,
                size,
                largest,
            } => write!(
                f,
                "there is no room for {name} ({} KiB): Dom0 has {} KiB free for files in one piece; \
                 start Pavise with more Dom0 memory (cargo xtask run --dom0-mem MiB) or upload smaller files",
                size.div_ceil(1024),
                largest / 1024
            ),
            Self::Damaged { name, got, want } => write!(
                f,
                "{name} arrived damaged (CRC-32 {got:08x}, the host said {want:08x}); send it again"
            ),
        }
    }
}

/// A file uploaded into the room.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stored {
    name: String,
    start: usize,
    len: usize,
    crc: u32,
}

/// An upload under way: its run of the room is reserved.
#[derive(Debug)]
pub struct Upload {
    name: String,
    start: usize,
    len: usize,
    crc: u32,
    received: usize,
    hasher: crc32fast::Hasher,
}

impl Upload {
    /// Bytes still to come.
    pub fn remaining(&self) -> usize {
        self.len - self.received
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

pub struct Files<'r> {
    boot: Vec<(&'r str, &'r [u8])>,
    /// CRC-32 of each boot file, computed when first asked.
    boot_crcs: Vec<Option<u32>>,
    room: &'r mut [u8],
    /// By start address.
    stored: Vec<Stored>,
    /// The run an upload under way holds.
    pending: Option<(usize, usize)>,
}

impl<'r> Files<'r> {
    /// `boot`: (name, bytes) of the boot modules; `room`: where uploads go.
    pub fn new(boot: Vec<(&'r str, &'r [u8])>, room: &'r mut [u8]) -> Self {
        let boot_crcs = alloc::vec![None; boot.len()];
        Self {
            boot,
            boot_crcs,
            room,
            stored: Vec::new(),
            pending: None,
        }
    }

    /// The file `name`'s bytes: an uploaded one before a boot one.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        if let Some(s) = self.stored.iter().find(|s| s.name == name) {
            return self.room.get(s.start..s.start + s.len);
        }
        self.boot.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
    }

    /// Every file's name and size, boot ones first (a hidden boot file
    /// is not listed).
    pub fn list(&self) -> Vec<(&str, usize)> {
        let shown = |n: &str| !self.stored.iter().any(|s| s.name == n);
        self.boot
            .iter()
            .filter(|(n, _)| shown(n))
            .map(|(n, b)| (*n, b.len()))
            .chain(self.stored.iter().map(|s| (s.name.as_str(), s.len)))
            .collect()
    }

    /// Whether Dom0 holds `name` with exactly this size and CRC-32 (the
    /// host then need not send it).
    pub fn holds(&mut self, name: &str, size: usize, crc: u32) -> bool {
        if let Some(s) = self.stored.iter().find(|s| s.name == name) {
            return s.len == size && s.crc == crc;
        }
        let Some(i) = self.boot.iter().position(|(n, _)| *n == name) else {
            return false;
        };
        let bytes = self.boot[i].1;
        if bytes.len() != size {
            return false;
        }
        let crc_of = *self.boot_crcs[i].get_or_insert_with(|| crc32fast::hash(bytes));
        crc_of == crc
    }

    /// Bytes free in the room, and the largest run.
    pub fn room_free(&self) -> (usize, usize) {
        let mut free = 0;
        let mut largest = 0;
        for (start, end) in self.gaps() {
            free += end - start;
            largest = largest.max(end - start);
        }
        (free, largest)
    }

    /// The room's free runs (start, end), page-aligned starts.
    fn gaps(&self) -> Vec<(usize, usize)> {
        let mut used: Vec<(usize, usize)> = self
            .stored
            .iter()
            .map(|s| (s.start, s.len))
            .chain(self.pending)
            .collect();
        used.sort_unstable();
        let mut gaps = Vec::new();
        let mut at = 0;
        for (start, len) in used {
            if start > at {
                gaps.push((at, start));
            }
            at = at.max((start + len).next_multiple_of(ALIGN));
        }
        if self.room.len() > at {
            gaps.push((at, self.room.len()));
        }
        gaps
    }

    /// Starts receiving `name` of `size` bytes whose CRC-32 is `crc`: a
    /// file already uploaded under that name is dropped, and a run of the
    /// room reserved. One upload at a time: a new one abandons the last.
    pub fn begin(&mut self, name: &str, size: usize, crc: u32) -> Result<Upload, UploadError> {
        if let Some(reason) = file_name_problem(name) {
            return Err(UploadError::BadName {
                name: name.into(),
                reason,
            });
        }
        self.pending = None;
        self.stored.retain(|s| s.name != name);
        let (_, largest) = self.room_free();
        let Some(&(start, _)) = self.gaps().iter().find(|(s, e)| e - s >= size) else {
            return Err(UploadError::NoRoom {
                name: name.into(),
                size,
                largest,
            });
        };
        self.pending = Some((start, size));
        Ok(Upload {
            name: name.into(),
            start,
            len: size,
            crc,
            received: 0,
            hasher: crc32fast::Hasher::new(),
        })
    }

    /// Takes the next of `upload`'s bytes from `bytes`; returns how many
    /// it took (at most what remains).
    pub fn write(&mut self, upload: &mut Upload, bytes: &[u8]) -> usize {
        let n = bytes.len().min(upload.remaining());
        let at = upload.start + upload.received;
        if self.pending != Some((upload.start, upload.len)) {
            // Abandoned: the bytes are taken and dropped.
            upload.received += n;
            return n;
        }
        self.room[at..at + n].copy_from_slice(&bytes[..n]);
        upload.hasher.update(&bytes[..n]);
        upload.received += n;
        n
    }

    /// Ends a complete `upload`: the file is held if its CRC matches.
    pub fn finish(&mut self, upload: Upload) -> Result<(), UploadError> {
        let current = self.pending == Some((upload.start, upload.len));
        if current {
            self.pending = None;
        }
        let got = upload.hasher.finalize();
        if !current || upload.received != upload.len || got != upload.crc {
            return Err(UploadError::Damaged {
                name: upload.name,
                got,
                want: upload.crc,
            });
        }
        let at = self.stored.partition_point(|s| s.start < upload.start);
        self.stored.insert(
            at,
            Stored {
                name: upload.name,
                start: upload.start,
                len: upload.len,
                crc: upload.crc,
            },
        );
        Ok(())
    }

    /// Forgets an upload that will not complete.
    pub fn abandon(&mut self, upload: Upload) {
        if self.pending == Some((upload.start, upload.len)) {
            self.pending = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn upload(files: &mut Files<'_>, name: &str, bytes: &[u8]) -> Result<(), UploadError> {
        let mut up = files.begin(name, bytes.len(), crc32fast::hash(bytes))?;
        for chunk in bytes.chunks(1000) {
            assert_eq!(files.write(&mut up, chunk), chunk.len());
        }
        files.finish(up)
    }

    #[test]
    fn uploads_are_held_and_replace_files_of_their_name() {
        let boot = b"boot kernel".as_slice();
        let mut room = alloc::vec![0u8; 64 * 1024];
        let mut files = Files::new(alloc::vec![("vmlinux", boot)], &mut room);
        assert!(files.holds("vmlinux", boot.len(), crc32fast::hash(boot)));
        assert!(!files.holds("vmlinux", boot.len(), 0));
        assert!(!files.holds("other", 0, 0));
        let new = alloc::vec![7u8; 10_000];
        upload(&mut files, "vmlinux", &new).unwrap();
        assert_eq!(files.get("vmlinux"), Some(&new[..]));
        assert_eq!(files.list(), [("vmlinux", 10_000)]);
        assert!(files.holds("vmlinux", 10_000, crc32fast::hash(&new)));
        // Again, smaller: the old run is freed first.
        upload(&mut files, "vmlinux", b"v2").unwrap();
        assert_eq!(files.get("vmlinux"), Some(&b"v2"[..]));
        assert_eq!(files.room_free().0, 64 * 1024 - 4096);
    }

    #[test]
    fn a_damaged_or_abandoned_upload_leaves_nothing() {
        let mut room = alloc::vec![0u8; 16 * 1024];
        let mut files = Files::new(Vec::new(), &mut room);
        let mut up = files.begin("a.cfg", 3, 0x1234).unwrap();
        files.write(&mut up, b"abc");
        let e = files.finish(up).unwrap_err();
        assert!(matches!(e, UploadError::Damaged { want: 0x1234, .. }));
        assert_eq!(files.get("a.cfg"), None);
        let up = files.begin("b", 5000, 0).unwrap();
        // A second announcement abandons the first.
        let mut second = files.begin("c", 3, crc32fast::hash(b"xyz")).unwrap();
        files.write(&mut second, b"xyz");
        files.finish(second).unwrap();
        assert!(files.finish(up).is_err());
        assert_eq!(files.list(), [("c", 3)]);
        assert_eq!(files.room_free(), (12 * 1024, 12 * 1024));
    }

    #[test]
    fn refusals_are_one_sentence() {
        let mut room = alloc::vec![0u8; 8192];
        let mut files = Files::new(Vec::new(), &mut room);
        let e = files.begin("big", 9000, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "there is no room for big (9 KiB): Dom0 has 8 KiB free for files in one piece; \
             start Pavise with more Dom0 memory (cargo xtask run --dom0-mem MiB) or upload smaller files"
        );
        let e = files.begin("../x", 1, 0).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("\"../x\" cannot be one of Dom0's files: ")
        );
    }

    proptest! {
        /// Whatever is uploaded and replaced, held files never overlap,
        /// stay in the room, and read back as sent; freeing them all
        /// gives the whole room back.
        #[test]
        fn held_files_never_overlap(ops in proptest::collection::vec((0u8..4, 0usize..20_000), 1..40)) {
            let mut room = alloc::vec![0u8; 96 * 1024];
            let mut files = Files::new(Vec::new(), &mut room);
            let mut want: alloc::collections::BTreeMap<String, Vec<u8>> = Default::default();
            for (i, (name, size)) in ops.iter().enumerate() {
                let name = format!("f{name}");
                let bytes: Vec<u8> = (0..*size).map(|b| (b + i) as u8).collect();
                match upload(&mut files, &name, &bytes) {
                    Ok(()) => { want.insert(name, bytes); }
                    Err(UploadError::NoRoom { .. }) => { want.remove(&name); }
                    Err(e) => panic!("{e}"),
                }
                for (n, b) in &want {
                    prop_assert_eq!(files.get(n), Some(&b[..]));
                }
                let mut runs: Vec<(usize, usize)> =
                    files.stored.iter().map(|s| (s.start, s.start + s.len)).collect();
                runs.sort_unstable();
                for w in runs.windows(2) {
                    prop_assert!(w[0].1 <= w[1].0);
                }
                prop_assert!(runs.iter().all(|&(_, end)| end <= 96 * 1024));
            }
            let names: Vec<String> = want.keys().cloned().collect();
            for n in names {
                let up = files.begin(&n, 0, crc32fast::hash(b"")).unwrap();
                files.finish(up).unwrap();
            }
            prop_assert_eq!(files.room_free().0, 96 * 1024);
        }
    }
}
