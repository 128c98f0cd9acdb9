//! The bare-metal crates (hypervisor, guest kernels, later dom0): which they
//! are, making sure their Rust target is installed, building them in one
//! cargo invocation, and where their ELF files land.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::progress::say;
use crate::workspace;

/// The Rust target every bare-metal crate builds for.
pub const TARGET: &str = "x86_64-unknown-none";

/// The bare-metal packages besides the guest kernels, which are found under
/// [`KERNELS_DIR`] by themselves: the hypervisor, Dom0 and the test-kernel
/// crate (one binary per test kernel).
pub const PACKAGES: &[&str] = &["hypervisor", "dom0", "test-kernels"];

/// The directory whose sub-directories holding a Cargo.toml are guest
/// kernels, relative to the workspace root.
pub const KERNELS_DIR: &str = "tests/kernels";

/// The hypervisor package, whose binary is the image GRUB boots.
pub const HYPERVISOR: &str = "hypervisor";

/// Every bare-metal package: [`PACKAGES`] then the guest kernels.
pub fn packages() -> Result<Vec<String>> {
    let mut all: Vec<String> = PACKAGES.iter().map(|p| (*p).to_owned()).collect();
    all.extend(kernel_packages()?);
    Ok(all)
}

/// The guest-kernel packages under [`KERNELS_DIR`], sorted by name.
pub fn kernel_packages() -> Result<Vec<String>> {
    let dir = workspace::root().join(KERNELS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()))(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("listing {}", dir.display())))?;
        let manifest = entry.path().join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest)
            .map_err(Error::io(format!("reading {}", manifest.display())))?;
        match package_name(&text) {
            Some(name) => names.push(name),
            None => return Err(Error::NoPackageName { manifest }),
        }
    }
    names.sort();
    Ok(names)
}

/// Where the test-kernel crate keeps one source file per kernel binary.
pub const TEST_KERNEL_BINS: &str = "tests/kernels/src/bin";

/// Every bare-metal binary the build produces: the hypervisor, Dom0 and one
/// per file in [`TEST_KERNEL_BINS`].
pub fn binaries() -> Result<Vec<String>> {
    let mut all = vec![HYPERVISOR.to_owned(), "dom0".to_owned()];
    let dir = workspace::root().join(TEST_KERNEL_BINS);
    let entries =
        std::fs::read_dir(&dir).map_err(Error::io(format!("listing {}", dir.display())))?;
    let mut kernels = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(Error::io(format!("listing {}", dir.display())))?
            .path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            kernels.push(stem.to_owned());
        }
    }
    kernels.sort();
    all.extend(kernels);
    Ok(all)
}

/// The `name` in the `[package]` section of a Cargo.toml. Only that one key
/// is needed, so a small line reader does instead of a TOML parser.
pub fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
            continue;
        }
        if !in_package {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "name" {
            continue;
        }
        let value = value.trim();
        let quoted = value
            .strip_prefix('"')
            .and_then(|v| v.split_once('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.split_once('\'')));
        return quoted.map(|(name, _)| name.to_owned());
    }
    None
}

/// Where the release ELF of a bare-metal package's binary lands.
pub fn artifact(package: &str) -> PathBuf {
    workspace::target_dir()
        .join(TARGET)
        .join("release")
        .join(package)
}

/// Makes sure rustup has the bare-metal target, installing it if missing.
pub fn ensure_target() -> Result<()> {
    let output = rustup()
        .args(["target", "list", "--installed"])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NoRustup,
            _ => Error::Spawn {
                program: "rustup".into(),
                source: e,
            },
        })?;
    if !output.status.success() {
        return Err(Error::CommandFailed {
            command: "rustup target list --installed".into(),
            status: output.status.to_string(),
            stderr: String::new(),
        });
    }
    let installed = String::from_utf8_lossy(&output.stdout);
    if installed.lines().any(|line| line.trim() == TARGET) {
        return Ok(());
    }
    say(&format!(
        "the Rust target {TARGET} is missing; installing it with `rustup target add {TARGET}`"
    ));
    let mut add = rustup();
    add.args(["target", "add", TARGET]);
    run_inheriting(add)
}

/// Builds every bare-metal package (release) in one cargo invocation, with
/// cargo's own progress on the terminal. Checks the target first.
pub fn build_all() -> Result<()> {
    ensure_target()?;
    let mut build = workspace::cargo();
    build.args(["build", "--release", "--target", TARGET]);
    for package in packages()? {
        build.args(["--package", &package]);
    }
    run_inheriting(build)
}

/// Checks that every bare-metal package's ELF exists (for runs told that the
/// build already happened).
pub fn check_built() -> Result<()> {
    for binary in binaries()? {
        let path = artifact(&binary);
        if !path.is_file() {
            return Err(Error::ArtifactMissing { path });
        }
    }
    Ok(())
}

fn rustup() -> Command {
    let mut command = Command::new("rustup");
    // Run from the root so rust-toolchain.toml picks the toolchain.
    command.current_dir(workspace::root());
    command
}

/// Runs a command with its output on the terminal; fails on non-zero exit.
pub fn run_inheriting(mut command: Command) -> Result<()> {
    let program = Path::new(command.get_program()).display().to_string();
    let status = command
        .status()
        .map_err(|source| Error::Spawn { program, source })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::CommandFailed {
            command: workspace::describe(&command),
            status: status.to_string(),
            stderr: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_name_reads_the_package_section() {
        let manifest = r#"
[workspace]
name = "not-this"

[package]
description = "a guest"
name = "hello-kernel"   # comment
version.workspace = true

[dependencies]
name = "nor-this"
"#;
        assert_eq!(package_name(manifest).as_deref(), Some("hello-kernel"));
        assert_eq!(
            package_name("[package]\nname='single'\n").as_deref(),
            Some("single")
        );
        assert_eq!(package_name("[dependencies]\nname = \"x\"\n"), None);
        assert_eq!(package_name("[package]\nversion = \"1\"\n"), None);
    }

    #[test]
    fn hypervisor_is_built_and_lands_in_the_release_dir() {
        let all = packages().expect("listing packages");
        assert_eq!(all.first().map(String::as_str), Some(HYPERVISOR));
        let path = artifact(HYPERVISOR);
        assert!(path.ends_with("x86_64-unknown-none/release/hypervisor"));
    }
}
