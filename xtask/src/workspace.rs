//! Where things are: the workspace root, cargo's target directory and the
//! directory xtask keeps its images in.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (the directory holding the workspace Cargo.toml).
pub fn root() -> &'static Path {
    // xtask/ sits directly under the workspace root.
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative paths taken from
/// the workspace root, where xtask runs cargo) or `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// Where xtask keeps its own files (staging directories, images).
pub fn pavise_dir() -> PathBuf {
    target_dir().join("pavise")
}

/// A `cargo` command run from the workspace root, using the same cargo that
/// started xtask when there is one.
pub fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(program);
    command.current_dir(root());
    command
}

/// A command line as one string, for messages (the program by its file
/// name only: `cargo test …`, not the toolchain path).
pub fn describe(command: &Command) -> String {
    let program = Path::new(command.get_program());
    let name = program.file_name().unwrap_or(program.as_os_str());
    let mut words = vec![name.to_string_lossy().into_owned()];
    words.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    words.join(" ")
}

/// Runs `command` to completion with its output captured; failing to
/// start it, or a non-zero exit, is an error naming the command (with
/// its stderr).
pub fn output_checked(command: &mut Command) -> crate::Result<Output> {
    let program = Path::new(command.get_program()).display().to_string();
    let output = command
        .output()
        .map_err(|source| crate::Error::Spawn { program, source })?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(crate::Error::CommandFailed {
            command: describe(command),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
