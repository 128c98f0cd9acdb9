//! `cargo xtask xl`: the host end of Dom0's control channel. A running
//! Pavise has a virtio console (QEMU's virtio-serial in PCI slot
//! [`CONTROL_SLOT`]) whose other end is a Unix socket under
//! `target/pavise-control/`; a request is one xl command line, the answer
//! its output and a line `.end STATUS` (0 done, 1 refused).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

impl Error {
    fn control(reason: impl Into<String>) -> Self {
        Self::Control {
            reason: reason.into(),
        }
    }
}

/// The PCI slot of the channel's virtio-serial device (Dom0 looks there).
pub const CONTROL_SLOT: u8 = 0x09;
const _: () = assert!(CONTROL_SLOT != crate::net::UPLINK_SLOT);
const _: () = assert!(CONTROL_SLOT < crate::disk::FIRST_SLOT);

/// How long an answer may take (a create builds a whole domain).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Where running machines' control sockets are.
pub fn socket_dir() -> PathBuf {
    crate::workspace::root()
        .join("target")
        .join("pavise-control")
}

/// A fresh socket path for a machine this process starts.
pub fn new_socket() -> Result<PathBuf> {
    let dir = socket_dir();
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    Ok(dir.join(format!("{}.sock", std::process::id())))
}

/// QEMU's arguments for the channel on `socket`.
pub fn qemu_args(socket: &Path, iommu: bool) -> Vec<std::ffi::OsString> {
    let mut device = format!("virtio-serial-pci,addr={CONTROL_SLOT:#x}");
    if iommu {
        device.push_str(",disable-legacy=on,iommu_platform=on");
    }
    let chardev = format!(
        "socket,id=control,path={},server=on,wait=off",
        socket.display()
    );
    [
        "-device",
        &device,
        "-chardev",
        &chardev,
        "-device",
        "virtconsole,chardev=control",
    ]
    .into_iter()
    .map(Into::into)
    .collect()
}

/// The socket of the one running Pavise (sockets nobody listens on are
/// stale and removed).
pub fn find_socket() -> Result<PathBuf> {
    let dir = socket_dir();
    let mut live = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "sock") {
                if UnixStream::connect(&path).is_ok() {
                    live.push(path);
                } else {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
    match live.len() {
        1 => Ok(live.remove(0)),
        0 => Err(Error::control(
            "no Pavise is running: start one with `cargo xtask run`",
        )),
        n => Err(Error::control(format!(
            "{n} Pavise machines are running: choose one with --socket PATH (they are in {})",
            dir.display()
        ))),
    }
}

/// What Dom0 answered: its output and whether the command was done.
#[derive(Debug)]
pub struct Answer {
    pub text: String,
    pub ok: bool,
}

/// Sends one command line over the channel at `socket` and reads the
/// answer.
pub fn request(socket: &Path, command: &str) -> Result<Answer> {
    if command.contains('\n') {
        return Err(Error::control("an xl command is one line"));
    }
    let talking = || format!("talking to the machine behind {}", socket.display());
    let stream = UnixStream::connect(socket).map_err(Error::io(talking()))?;
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(Error::io(talking()))?;
    (&stream)
        .write_all(format!("{command}\n").as_bytes())
        .map_err(Error::io(talking()))?;
    let mut text = String::new();
    for line in BufReader::new(&stream).lines() {
        let line = line.map_err(Error::io(talking()))?;
        match line.strip_prefix(".end ") {
            Some(status) => {
                return Ok(Answer {
                    text,
                    ok: status.trim() == "0",
                });
            }
            None => {
                text.push_str(&line);
                text.push('\n');
            }
        }
    }
    Err(Error::control(format!(
        "the machine behind {} closed the channel before answering",
        socket.display()
    )))
}
