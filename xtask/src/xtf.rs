//! `cargo xtask xtf DIR`: the Xen Test Framework's hvm64 tests, from an
//! XTF tree built by hand (CI cannot fetch XTF), each booted as a DomU of
//! Pavise as XTF's own configs ask (128 MiB, one vCPU), one QEMU at a
//! time. Prints each test's verdict (its `Test result:` line, or how its
//! domain ended without one) and the count of each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bare_metal;
use crate::domains::{self, DomU};
use crate::error::{Error, Result};
use crate::machine::Machine;
use crate::progress::{Steps, say};

/// XTF's test images for one environment start with this.
const PREFIX: &str = "test-hvm64-";

/// The hvm64 test images under `dir/tests/*/`, by name.
pub fn tests_in(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let tests = dir.join("tests");
    let entries = std::fs::read_dir(&tests).map_err(|_| Error::XtfTree {
        dir: dir.to_path_buf(),
    })?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Ok(files) = std::fs::read_dir(entry.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if let Some(test) = name.strip_prefix(PREFIX)
                && !test.contains('.')
            {
                found.push((test.to_owned(), file.path()));
            }
        }
    }
    if found.is_empty() {
        return Err(Error::XtfTree {
            dir: dir.to_path_buf(),
        });
    }
    found.sort();
    Ok(found)
}

/// A test's verdict from its console: XTF's `Test result: WORD`, or how
/// its domain ended without one.
pub fn verdict(console: &str) -> String {
    if let Some(word) = console
        .lines()
        .find_map(|l| l.split("Test result: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
    {
        return word.to_owned();
    }
    let end = console
        .lines()
        .rfind(|l| l.starts_with("pavise: d1 "))
        .and_then(|l| l.split_once(") ").map(|(_, end)| end))
        .unwrap_or("no end reported");
    format!("no verdict ({})", end.trim_end())
}

/// The machine for one test image.
fn machine(image: &Path) -> Result<Machine> {
    let domu = DomU {
        mem_mib: Some(128),
        vcpus: Some(1),
        ..DomU::new(image)
    };
    Ok(Machine {
        smp: 2,
        cmdline: "exit_when_done".to_owned(),
        modules: domains::modules(&[domu])?,
        timeout: Some(Duration::from_secs(60)),
        ..Machine::default()
    })
}

/// `cargo xtask xtf DIR`.
pub fn run(dir: &Path) -> Result<()> {
    let tests = tests_in(dir)?;
    let mut steps = Steps::new(tests.len() + 1);
    let step = steps.start("building the bare-metal crates");
    bare_metal::build_all()?;
    step.done("built");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut table = String::new();
    for (name, image) in &tests {
        let step = steps.start(name);
        let run = machine(image)?.run_captured()?;
        let verdict = verdict(&run.console);
        step.done(&verdict);
        table.push_str(&format!("{name:<28} {verdict}\n"));
        let key = if verdict.starts_with("no verdict") {
            "without a verdict".to_owned()
        } else {
            verdict.clone()
        };
        *counts.entry(key).or_default() += 1;
    }
    print!("{table}");
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    say(&format!(
        "xtf: {} hvm64 tests from {}: {}",
        tests.len(),
        dir.display(),
        summary.join(", ")
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_read() {
        assert_eq!(verdict("(d1) Test result: SUCCESS\n"), "SUCCESS");
        assert_eq!(verdict("x\n(d1) Test result: SKIP\r\n"), "SKIP");
        let crashed = "pavise: d1 (test-hvm64-xsa-195) built: 128 MiB\n\
                       pavise: d1 (test-hvm64-xsa-195) crash: at 0xff8 (error code 4) at rip 0x10\n";
        assert_eq!(
            verdict(crashed),
            "no verdict (crash: at 0xff8 (error code 4) at rip 0x10)"
        );
        assert_eq!(verdict(""), "no verdict (no end reported)");
    }

    #[test]
    fn a_tree_without_tests_is_refused() {
        let dir = std::env::temp_dir().join(format!("xtf-empty-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tests/example")).unwrap();
        std::fs::write(dir.join("tests/example/test-hvm64-example.cfg"), "").unwrap();
        assert!(matches!(tests_in(&dir), Err(Error::XtfTree { .. })));
        std::fs::write(dir.join("tests/example/test-hvm64-example"), "").unwrap();
        let found = tests_in(&dir).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "example");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(tests_in(&dir), Err(Error::XtfTree { .. })));
    }
}
