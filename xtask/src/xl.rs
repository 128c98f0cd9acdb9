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

/// One connection to Dom0's channel: requests go out, answers come back
/// on the same stream.
struct Channel {
    socket: PathBuf,
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Channel {
    fn talking(&self) -> String {
        format!("talking to the machine behind {}", self.socket.display())
    }

    fn open(socket: &Path) -> Result<Self> {
        let talking = || format!("talking to the machine behind {}", socket.display());
        let stream = UnixStream::connect(socket).map_err(Error::io(talking()))?;
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(Error::io(talking()))?;
        stream
            .set_write_timeout(Some(ANSWER_TIMEOUT))
            .map_err(Error::io(talking()))?;
        let reader = BufReader::new(stream.try_clone().map_err(Error::io(talking()))?);
        Ok(Self {
            socket: socket.to_owned(),
            stream,
            reader,
        })
    }

    /// Sends one command line and reads its answer.
    fn ask(&mut self, command: &str) -> Result<Answer> {
        if command.contains('\n') {
            return Err(Error::control("an xl command is one line"));
        }
        (&self.stream)
            .write_all(format!("{command}\n").as_bytes())
            .map_err(Error::io(self.talking()))?;
        self.answer()
    }

    /// Reads lines up to `.end STATUS`.
    fn answer(&mut self) -> Result<Answer> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .map_err(Error::io(self.talking()))?;
            if n == 0 {
                return Err(Error::control(format!(
                    "the machine behind {} closed the channel before answering",
                    self.socket.display()
                )));
            }
            match line.trim_end_matches(['\r', '\n']).strip_prefix(".end ") {
                Some(status) => {
                    return Ok(Answer {
                        text,
                        ok: status.trim() == "0",
                    });
                }
                None => text.push_str(line.trim_end_matches('\r')),
            }
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
    }
}

/// Sends one command line over the channel at `socket` and reads the
/// answer.
pub fn request(socket: &Path, command: &str) -> Result<Answer> {
    Channel::open(socket)?.ask(command)
}

/// Bytes written to the channel at once while uploading.
const UPLOAD_CHUNK: usize = 64 << 10;

/// Gives Dom0 `bytes` as its file `name`, unless it holds that file
/// already (same size and CRC-32). `progress(sent, total)` is called as
/// the bytes go. Returns whether the file was sent.
pub fn send_file(
    socket: &Path,
    name: &str,
    bytes: &[u8],
    mut progress: impl FnMut(usize, usize),
) -> Result<bool> {
    let crc = crc32fast::hash(bytes);
    let mut channel = Channel::open(socket)?;
    let announced = format!("{name} {} {crc:08x}", bytes.len());
    if channel.ask(&format!("have {announced}"))?.ok {
        return Ok(false);
    }
    let ready = channel.ask(&format!("upload {announced}"))?;
    if !ready.ok {
        return Err(Error::control(
            ready.text.trim().trim_start_matches("dom0: "),
        ));
    }
    let mut sent = 0;
    for chunk in bytes.chunks(UPLOAD_CHUNK) {
        (&channel.stream)
            .write_all(chunk)
            .map_err(Error::io(channel.talking()))?;
        sent += chunk.len();
        progress(sent, bytes.len());
    }
    let held = channel.answer()?;
    if !held.ok {
        return Err(Error::control(
            held.text.trim().trim_start_matches("dom0: "),
        ));
    }
    Ok(true)
}

/// `cargo xtask xl create PATH [KEY=VALUE…]` for a config on the host:
/// sends Dom0 the config and the kernel and ramdisk it names that Dom0
/// does not hold yet (each checked as `cargo xtask run --config` checks
/// them; big ones with their progress), then asks it to create the
/// domain. The disks the config names must have been attached when the
/// machine started (`--disk`); Dom0 says so otherwise.
pub fn create_from_host(socket: &Path, path: &Path, overrides: &[String]) -> Result<Answer> {
    let config = crate::configs::Config::read(path)?;
    config.check_files()?;
    for (name, file) in config.files() {
        let bytes =
            std::fs::read(&file).map_err(Error::io(format!("reading {}", file.display())))?;
        let mib = bytes.len() as f64 / f64::from(1u32 << 20);
        let start = std::time::Instant::now();
        let mut shown = 0;
        let big = bytes.len() >= 4 << 20;
        let sent = send_file(socket, &name, &bytes, |done, total| {
            let quarter = done * 4 / total.max(1);
            if big && quarter > shown && quarter < 4 {
                shown = quarter;
                crate::progress::say(&format!("sending {name}: {}%", quarter * 25));
            }
        })?;
        if sent && big {
            let secs = start.elapsed().as_secs_f64();
            crate::progress::say(&format!(
                "sent {name} ({mib:.1} MiB) to Dom0 in {secs:.1} s ({:.1} MiB/s)",
                mib / secs.max(1e-6)
            ));
        } else if sent {
            crate::progress::say(&format!(
                "sent {name} ({} KiB) to Dom0",
                bytes.len().div_ceil(1024)
            ));
        }
    }
    let mut command = format!("create {}", config.name);
    for o in overrides {
        command.push(' ');
        command.push_str(o);
    }
    request(socket, &command)
}
