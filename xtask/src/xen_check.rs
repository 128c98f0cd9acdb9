//! `cargo xtask xen-check`: runs the test kernels on Pavise and on real
//! Xen 4.17 (the reference set-up in `../shared/xen-reference`, which
//! boots Debian's Xen under this QEMU and runs PVH guests one after the
//! other as DomUs), and says kernel by kernel whether Xen's verdict is
//! Pavise's. Every kernel under `tests/kernels` is in [`PLAN`]: run, or
//! skipped with the reason. Not part of `cargo xtask test` (it downloads
//! Debian's Xen packages).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::domains::{self, DomU};
use crate::error::{Error, Result};
use crate::fuzz::Ticker;
use crate::machine::Machine;
use crate::prereqs::Need;
use crate::progress::{Steps, say};
use crate::{bare_metal, workspace};

/// One kernel's place in the check.
#[derive(Clone, Copy, Debug)]
pub enum Plan {
    /// Run alone as a DomU with this command line and vCPU count on both;
    /// its verdict is its `<kernel>: PASS` or `<kernel>: FAIL` line.
    Run {
        kernel: &'static str,
        cmdline: &'static str,
        vcpus: u32,
    },
    /// Not run on Xen, and why.
    Skip {
        kernel: &'static str,
        reason: &'static str,
    },
}

impl Plan {
    pub fn kernel(&self) -> &'static str {
        match self {
            Plan::Run { kernel, .. } | Plan::Skip { kernel, .. } => kernel,
        }
    }
}

const TOGETHER: &str =
    "needs its peers running at the same time; the reference runs guests one after another";
const BACKENDS: &str = "needs Dom0 disk or network backends set up as Pavise's Dom0 does";
const NO_VERDICT: &str = "prints figures, not a verdict";

/// Every test kernel, sorted by name.
pub const PLAN: &[Plan] = &[
    Plan::Run {
        kernel: "balloon",
        cmdline: "",
        vcpus: 1,
    },
    Plan::Skip {
        kernel: "bench",
        reason: NO_VERDICT,
    },
    Plan::Skip {
        kernel: "blkhostile",
        reason: BACKENDS,
    },
    Plan::Skip {
        kernel: "counter",
        reason: "counts until it is stopped (a toolstack's target)",
    },
    Plan::Skip {
        kernel: "cpuprobe",
        reason: "reports what the CPU offers (for --accel kvm)",
    },
    Plan::Skip {
        kernel: "crasher",
        reason: "its verdict is the hypervisor's crash report, which Xen words its own way",
    },
    Plan::Run {
        kernel: "debugreg",
        cmdline: "rounds=300",
        vcpus: 1,
    },
    Plan::Skip {
        kernel: "disk",
        reason: BACKENDS,
    },
    Plan::Run {
        kernel: "fpu",
        cmdline: "",
        vcpus: 1,
    },
    Plan::Run {
        kernel: "fuzzer",
        cmdline: "seed=42 calls=20000",
        vcpus: 1,
    },
    Plan::Run {
        kernel: "hello",
        cmdline: "",
        vcpus: 1,
    },
    Plan::Run {
        kernel: "hostile",
        cmdline: "",
        vcpus: 1,
    },
    Plan::Skip {
        kernel: "intruder",
        reason: TOGETHER,
    },
    Plan::Skip {
        kernel: "net",
        reason: BACKENDS,
    },
    Plan::Skip {
        kernel: "nethostile",
        reason: BACKENDS,
    },
    Plan::Skip {
        kernel: "pingpong",
        reason: TOGETHER,
    },
    Plan::Run {
        kernel: "ringlog",
        cmdline: "",
        vcpus: 1,
    },
    Plan::Skip {
        kernel: "sleeper",
        reason: "sleeps until it is stopped (a toolstack's target)",
    },
    Plan::Run {
        kernel: "smp",
        cmdline: "",
        vcpus: 2,
    },
    Plan::Skip {
        kernel: "soak",
        reason: TOGETHER,
    },
    Plan::Skip {
        kernel: "spinner",
        reason: "spins until it is stopped (a scheduler's target)",
    },
    Plan::Run {
        kernel: "timer",
        cmdline: "",
        vcpus: 1,
    },
    Plan::Skip {
        kernel: "xstest",
        reason: TOGETHER,
    },
];

/// What a kernel said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Its FAIL line, and the lines before it (what failed).
    Fail(Vec<String>),
    /// No verdict line.
    Silent,
}

impl Verdict {
    fn word(&self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail(_) => "FAIL",
            Verdict::Silent => "no verdict",
        }
    }

    /// The first verdict among `lines` (a kernel's own console lines).
    pub fn of(kernel: &str, lines: &[String]) -> Self {
        let mine: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{kernel}: ")))
            .collect();
        for (i, line) in mine.iter().enumerate() {
            let rest = &line[kernel.len() + 2..];
            if rest.starts_with("PASS") {
                return Verdict::Pass;
            }
            if rest.starts_with("FAIL") {
                return Verdict::Fail(mine[..=i].iter().map(|l| l.to_string()).collect());
            }
        }
        Verdict::Silent
    }
}

/// The console lines of DomU `domid` in a Pavise run, without `(dN) `.
pub fn pavise_lines(console: &str, domid: u32) -> Vec<String> {
    let prefix = format!("(d{domid}) ");
    console
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// The lines of each guest in `run-probe.sh` output: with several
/// guests each line is `NAME: line`; with one, just `line`.
pub fn reference_lines(output: &str, names: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut by: BTreeMap<String, Vec<String>> =
        names.iter().map(|n| (n.to_string(), Vec::new())).collect();
    for line in output.lines() {
        if let [only] = names {
            if let Some(v) = by.get_mut(*only) {
                v.push(line.to_owned());
            }
            continue;
        }
        if let Some((name, rest)) = line.split_once(": ")
            && let Some(v) = by.get_mut(name)
        {
            v.push(rest.to_owned());
        }
    }
    by
}

/// The reference set-up's directory: `--reference` or the shared one
/// beside the workspace.
fn reference_dir(given: Option<&Path>) -> Result<PathBuf> {
    let dir = given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace::root().join("../shared/xen-reference"));
    if dir.join("run-probe.sh").is_file() && dir.join("setup.sh").is_file() {
        Ok(dir)
    } else {
        Err(Error::XenReference { dir })
    }
}

fn script(dir: &Path, name: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(dir.join(name)).stdin(Stdio::null());
    c
}

fn run_script(mut command: Command, what: &str) -> Result<String> {
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(Error::io(format!("running {what}")))?;
    // run-probe.sh exits non-zero when a guest gave no verdict: that is a
    // result here, not an error.
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn on_pavise(kernel: &str, cmdline: &str, vcpus: u32) -> Result<Vec<String>> {
    let domu = DomU {
        cmdline: Some(cmdline.to_owned()).filter(|c| !c.is_empty()),
        vcpus: Some(vcpus),
        ..domains::test_kernel(kernel)
    };
    let machine = Machine {
        smp: 2,
        mem_mib: 256,
        cmdline: "exit_when_done".to_owned(),
        modules: domains::modules(&[domu])?,
        timeout: Some(Duration::from_secs(300)),
        ..Machine::default()
    };
    let outcome = machine.run_captured()?;
    Ok(pavise_lines(&outcome.console, 1))
}

/// `cargo xtask xen-check [--reference DIR] [KERNEL…]`.
pub fn run(reference: Option<&Path>, only: &[String]) -> Result<bool> {
    let dir = reference_dir(reference)?;
    let plan: Vec<&Plan> = PLAN
        .iter()
        .filter(|p| only.is_empty() || only.iter().any(|k| k == p.kernel()))
        .collect();
    if let Some(unknown) = only.iter().find(|k| !PLAN.iter().any(|p| p.kernel() == *k)) {
        return Err(Error::UnknownKernel {
            kernel: unknown.clone(),
        });
    }
    let runs: Vec<(&str, &str, u32)> = plan
        .iter()
        .filter_map(|p| match p {
            Plan::Run {
                kernel,
                cmdline,
                vcpus,
            } => Some((*kernel, *cmdline, *vcpus)),
            Plan::Skip { .. } => None,
        })
        .collect();
    // One reference boot per command line and vCPU count.
    let mut groups: BTreeMap<(&str, u32), Vec<&str>> = BTreeMap::new();
    for (kernel, cmdline, vcpus) in &runs {
        groups.entry((cmdline, *vcpus)).or_default().push(kernel);
    }
    crate::prereqs::ensure(&[Need::Qemu, Need::GrubImage, Need::XenReference])?;
    let mut steps = Steps::new(3 + groups.len());
    let step = steps.start("building the bare-metal crates");
    bare_metal::build_all()?;
    step.done("built");

    let step = steps.start("fetching and unpacking Debian's Xen 4.17 (once; cached)");
    let out = script(&dir, "setup.sh")
        .stdout(Stdio::piped())
        .status()
        .map_err(Error::io("running setup.sh".to_owned()))?;
    if !out.success() {
        return Err(Error::XenReferenceSetup { dir });
    }
    step.done("ready");

    let step = steps.start(&format!("{} kernels on Pavise", runs.len()));
    let mut pavise = BTreeMap::new();
    for (kernel, cmdline, vcpus) in &runs {
        pavise.insert(
            *kernel,
            Verdict::of(kernel, &on_pavise(kernel, cmdline, *vcpus)?),
        );
    }
    step.done("ran");

    let elf_dir = workspace::pavise_dir().join("xen-check");
    std::fs::create_dir_all(&elf_dir)
        .map_err(Error::io(format!("creating {}", elf_dir.display())))?;
    let mut xen = BTreeMap::new();
    for ((cmdline, vcpus), kernels) in &groups {
        let step = steps.start(&format!(
            "on Xen 4.17: {} (command line {cmdline:?}, {vcpus} vCPU{})",
            kernels.join(", "),
            if *vcpus == 1 { "" } else { "s" }
        ));
        let mut elfs = Vec::new();
        for kernel in kernels {
            let elf = elf_dir.join(format!("{kernel}.elf"));
            std::fs::copy(bare_metal::artifact(kernel), &elf)
                .map_err(Error::io(format!("copying {kernel} to {}", elf.display())))?;
            elfs.push(elf);
        }
        let mut command = script(&dir, "run-probe.sh");
        command
            .args(&elfs)
            .env("DONE_RE", ": (PASS|FAIL)")
            .env("CMDLINE", cmdline)
            .env("VCPUS", vcpus.to_string())
            .env("GUEST_TIMEOUT", "240");
        let ticker = Ticker::start("Xen");
        let output = run_script(command, "run-probe.sh");
        drop(ticker);
        let lines = reference_lines(&output?, kernels);
        for kernel in kernels {
            xen.insert(*kernel, Verdict::of(kernel, &lines[*kernel]));
        }
        step.done("ran");
    }

    let mut all_match = true;
    say("kernel       Pavise      Xen 4.17    same?");
    for p in &plan {
        match p {
            Plan::Run { kernel, .. } => {
                let (ours, theirs) = (&pavise[kernel], &xen[kernel]);
                let same = ours.word() == theirs.word();
                all_match &= same;
                say(&format!(
                    "{kernel:<12} {:<11} {:<11} {}",
                    ours.word(),
                    theirs.word(),
                    if same { "yes" } else { "NO" }
                ));
                for (who, v) in [("Pavise", ours), ("Xen", theirs)] {
                    if let (false, Verdict::Fail(lines)) = (same, v) {
                        for l in lines {
                            say(&format!("    {who}: {l}"));
                        }
                    }
                }
            }
            Plan::Skip { kernel, reason } => say(&format!("{kernel:<12} skipped: {reason}")),
        }
    }
    Ok(all_match)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_kernel_is_in_the_plan_once() {
        let binaries = bare_metal::binaries().expect("the bare-metal binaries");
        // The hypervisor and Dom0 come first; the test kernels follow.
        let kernels: Vec<&str> = binaries[2..].iter().map(String::as_str).collect();
        let planned: Vec<&str> = PLAN.iter().map(Plan::kernel).collect();
        assert_eq!(planned, kernels, "PLAN must list every kernel, sorted");
    }

    #[test]
    fn verdicts_are_the_first_pass_or_fail() {
        let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Verdict::of("hello", &lines(&["x", "hello: PASS (bare metal)"])),
            Verdict::Pass
        );
        assert_eq!(
            Verdict::of(
                "hostile",
                &lines(&["hostile: a: got 1", "hostile: FAIL 1 of 9 checks"])
            ),
            Verdict::Fail(lines(&["hostile: a: got 1", "hostile: FAIL 1 of 9 checks"]))
        );
        assert_eq!(
            Verdict::of("timer", &lines(&["hello: PASS"])),
            Verdict::Silent
        );
    }

    #[test]
    fn reference_output_is_split_by_guest() {
        let out = "hello: hello: PASS (bare metal)\nfpu: fpu: FAIL x\nnoise\n";
        let by = reference_lines(out, &["hello", "fpu"]);
        assert_eq!(by["hello"], vec!["hello: PASS (bare metal)"]);
        assert_eq!(by["fpu"], vec!["fpu: FAIL x"]);
        let one = reference_lines("timer: PASS\n", &["timer"]);
        assert_eq!(one["timer"], vec!["timer: PASS"]);
        let console = "(d1) hello: PASS\n(d2) other\npavise: x\n";
        assert_eq!(pavise_lines(console, 1), vec!["hello: PASS"]);
    }
}
