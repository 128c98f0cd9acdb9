//! What `cargo xtask bench` draws and compares: its figures against the
//! targets of the fast-path work (a table and `bench.svg`, with the boot
//! timeline below), and with `--compare OLD.json` the change against an
//! earlier run's JSON.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use serde_json::Value;

use crate::error::{Error, Result};

/// Which way a target points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    AtMost,
    AtLeast,
}

/// A figure of the JSON (dotted path) and what it should be.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub path: &'static str,
    pub label: &'static str,
    pub limit: f64,
    pub bound: Bound,
}

const fn at_most(path: &'static str, label: &'static str, limit: f64) -> Target {
    Target {
        path,
        label,
        limit,
        bound: Bound::AtMost,
    }
}

/// The fast-path targets. Instruction counts are `-icount shift=0`
/// figures (deterministic); throughput, timer and idle figures are plain
/// TCG, where time is the host's.
pub const TARGETS: [Target; 14] = [
    at_most(
        "tcg_icount_shift0.hypercall_cycles",
        "null hypercall (instructions)",
        245.0,
    ),
    at_most(
        "tcg_icount_shift0.cpuid_cycles",
        "CPUID exit (instructions)",
        245.0,
    ),
    at_most(
        "tcg.hypercall_over_bare_exit",
        "hypercall / bare exit (TCG time)",
        1.05,
    ),
    at_most(
        "tcg_icount_shift0.evtchn_send_cycles",
        "loopback event send (instructions)",
        1070.0,
    ),
    at_most(
        "tcg_icount_shift0.evtchn_roundtrip_cycles",
        "DomU-DomU round trip, 2 CPUs (instr.)",
        2500.0,
    ),
    at_most(
        "tcg_icount_shift0.evtchn_roundtrip_one_cpu_cycles",
        "DomU-DomU round trip, 1 CPU (instr.)",
        2500.0,
    ),
    at_most(
        "tcg_icount_shift0.grant_copy_cycles",
        "grant copy of a 4 KiB page (instr.)",
        5000.0,
    ),
    Target {
        path: "tcg.grant_copy_batch32_over_memcpy",
        label: "32 grant copies a call / memcpy (TCG)",
        limit: 0.6,
        bound: Bound::AtLeast,
    },
    at_most(
        "tcg.timer_error_median_us",
        "singleshot timer error, median (us)",
        100.0,
    ),
    at_most(
        "tcg.timer_error_max_us",
        "singleshot timer error, max (us)",
        100.0,
    ),
    at_most(
        "tcg_icount_shift0.xenstore_read_cycles",
        "XenStore read round trip (instr.)",
        26_052.0 / 4.0,
    ),
    at_most(
        "tcg.idle_qemu_cpu_percent",
        "QEMU while idle (% of a host CPU)",
        2.0,
    ),
    at_most(
        "tcg_icount_shift0.boot_done_us",
        "power-on to 2 DomUs done (us, icount)",
        500_000.0,
    ),
    at_most(
        "hypervisor_stripped_bytes",
        "hypervisor image, stripped (bytes)",
        300_000.0,
    ),
];

impl Target {
    /// How far `value` is from the target: at most 1 when it is met.
    pub fn score(&self, value: f64) -> f64 {
        match self.bound {
            Bound::AtMost => value / self.limit,
            Bound::AtLeast => self.limit / value.max(f64::MIN_POSITIVE),
        }
    }

    pub fn met(&self, value: f64) -> bool {
        self.score(value) <= 1.0
    }
}

/// Reads an earlier run's JSON (`--compare`).
pub fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::BenchCompare {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    parse_json(&text, path)
}

/// Parses a run's JSON, `path` naming it in the error.
pub fn parse_json(text: &str, path: &Path) -> Result<Value> {
    let value: Value = serde_json::from_str(text).map_err(|e| Error::BenchCompare {
        path: path.to_path_buf(),
        reason: format!("not JSON ({e})"),
    })?;
    if !value.is_object() || value.get("tcg").is_none() {
        return Err(Error::BenchCompare {
            path: path.to_path_buf(),
            reason: "no \"tcg\" figures in it".to_owned(),
        });
    }
    Ok(value)
}

/// Every number in `value`, by dotted path.
pub fn numbers(value: &Value) -> BTreeMap<String, f64> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, f64>) {
        match value {
            Value::Number(n) => {
                if let Some(f) = n.as_f64() {
                    out.insert(prefix.to_owned(), f);
                }
            }
            Value::Object(map) => {
                for (key, v) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

fn get(figures: &BTreeMap<String, f64>, path: &str) -> Option<f64> {
    figures.get(path).copied()
}

/// The targets table: each figure, its target, met or how far off.
pub fn targets_table(run: &Value) -> String {
    let figures = numbers(run);
    let mut t =
        String::from("target                                      figure       target   verdict\n");
    for target in TARGETS {
        let sign = match target.bound {
            Bound::AtMost => "<=",
            Bound::AtLeast => ">=",
        };
        match get(&figures, target.path) {
            Some(v) => t.push_str(&format!(
                "{:<40}{:>12} {sign}{:>10}   {}\n",
                target.label,
                short(v),
                short(target.limit),
                if target.met(v) {
                    "met".to_owned()
                } else {
                    format!("{:.2}x the target", target.score(v))
                }
            )),
            None => t.push_str(&format!(
                "{:<40}{:>12} {sign}{:>10}   not measured\n",
                target.label,
                "-",
                short(target.limit)
            )),
        }
    }
    t
}

fn short(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Every figure the two runs share, old and new and the change.
pub fn compare_table(old: &Value, new: &Value, old_path: &Path) -> String {
    let (old, new) = (numbers(old), numbers(new));
    let mut t = format!(
        "change against {}\nfigure                                                          old          new   change\n",
        old_path.display()
    );
    for (path, &after) in &new {
        let Some(&before) = old.get(path) else {
            continue;
        };
        let change = if before == 0.0 {
            if after == 0.0 {
                "=".to_owned()
            } else {
                "new".to_owned()
            }
        } else {
            format!("{:+.1}%", 100.0 * (after - before) / before)
        };
        t.push_str(&format!(
            "{path:<56}{:>12} {:>12}   {change}\n",
            short(before),
            short(after)
        ));
    }
    t
}

/// One mode's boot timeline from a run's JSON: (moment, µs), in order.
pub fn timeline(run: &Value, mode: &str) -> Vec<(String, f64)> {
    let mut moments: Vec<(String, f64)> = run
        .get(mode)
        .and_then(|m| m.get("boot_timeline_us"))
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    moments.sort_by(|a, b| a.1.total_cmp(&b.1));
    moments
}

/// What the span that ends at `moment` was.
fn phase_name(moment: &str) -> String {
    match moment {
        "hypervisor_entry" => "firmware and GRUB".to_owned(),
        "hypervisor_ready" => "hypervisor start (CPUs, memory)".to_owned(),
        "bare_exits_measured" => "bench: bare exit loop".to_owned(),
        "domains_built" => "building Dom0 and the DomUs".to_owned(),
        "all_ended" => "last DomU's end".to_owned(),
        other => match other.strip_suffix("_ended") {
            Some(domain) => format!("until {domain} ended"),
            None => other.replace('_', " "),
        },
    }
}

fn chart_error(e: impl std::fmt::Display) -> Error {
    Error::Chart(e.to_string())
}

/// Draws `bench.svg`: the targets (figure / target on a log scale, the
/// earlier run's beside it when comparing) and the boot timelines.
pub fn draw(new: &Value, old: Option<&Value>, path: &Path) -> Result<()> {
    let rows = TARGETS.len();
    let root = SVGBackend::new(path, (1100, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(chart_error)?;
    let (top, bottom) = root.split_vertically(560);
    draw_targets(&top, new, old, rows)?;
    draw_timelines(&bottom, new, old)?;
    root.present().map_err(chart_error)?;
    Ok(())
}

fn draw_targets<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    new: &Value,
    old: Option<&Value>,
    rows: usize,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let (new_figures, old_figures) = (numbers(new), old.map(numbers));
    let scores: Vec<Option<f64>> = TARGETS
        .iter()
        .map(|t| get(&new_figures, t.path).map(|v| t.score(v)))
        .collect();
    let highest = scores.iter().flatten().fold(2.0f64, |a, &b| a.max(b));
    let (low, high) = (0.05, highest * 1.5);
    let mut chart = ChartBuilder::on(area)
        .caption(
            if old.is_some() {
                "figure / target (log scale; left of 1 meets it) — grey: the earlier run"
            } else {
                "figure / target (log scale; left of 1 meets it)"
            },
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(300)
        .build_cartesian_2d((low..high).log_scale(), (0..rows).into_segmented())
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => (rows - 1)
                .checked_sub(*i)
                .and_then(|row| TARGETS.get(row))
                .map_or(String::new(), |t| t.label.to_owned()),
            _ => String::new(),
        })
        .x_desc("figure / target")
        .draw()
        .map_err(chart_error)?;
    let clamp = |s: f64| s.clamp(low, high);
    // Row i from the top is segment rows - 1 - i.
    let bar = |i: usize, score: f64, upper: bool, style: ShapeStyle| {
        let segment = rows - 1 - i;
        let (from, to) = if upper {
            (
                SegmentValue::Exact(segment),
                SegmentValue::CenterOf(segment),
            )
        } else {
            (
                SegmentValue::CenterOf(segment),
                SegmentValue::Exact(segment + 1),
            )
        };
        Rectangle::new([(low, from), (clamp(score), to)], style)
    };
    chart
        .draw_series(scores.iter().enumerate().filter_map(|(i, s)| {
            let s = (*s)?;
            let color = if s <= 1.0 {
                GREEN.mix(0.8)
            } else {
                RED.mix(0.8)
            };
            Some(bar(i, s, true, color.filled()))
        }))
        .map_err(chart_error)?;
    if let Some(old) = &old_figures {
        chart
            .draw_series(TARGETS.iter().enumerate().filter_map(|(i, t)| {
                let s = t.score(get(old, t.path)?);
                Some(bar(i, s, false, BLACK.mix(0.3).filled()))
            }))
            .map_err(chart_error)?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Last)],
            BLACK.stroke_width(2),
        )))
        .map_err(chart_error)?;
    Ok(())
}

fn draw_timelines<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    new: &Value,
    old: Option<&Value>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let mut rows: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    for (mode, name) in [("tcg", "TCG"), ("tcg_icount_shift0", "TCG -icount shift=0")] {
        if let Some(old) = old {
            rows.push((format!("{name}, earlier"), timeline(old, mode)));
        }
        rows.push((name.to_owned(), timeline(new, mode)));
    }
    let end_ms = rows
        .iter()
        .flat_map(|(_, t)| t.last().map(|m| m.1 / 1000.0))
        .fold(1.0f64, f64::max);
    let n = rows.len();
    let labels: Vec<String> = rows.iter().map(|(name, _)| name.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(
            "boot timeline: machine time since power-on (ms)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(180)
        .build_cartesian_2d(0.0..end_ms * 1.05, (0..n).into_segmented())
        .map_err(chart_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => (n - 1)
                .checked_sub(*i)
                .and_then(|row| labels.get(row))
                .cloned()
                .unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("ms")
        .draw()
        .map_err(chart_error)?;
    // One series per phase, so each has its colour in the legend.
    let mut phases: Vec<String> = Vec::new();
    for (_, t) in &rows {
        for (moment, _) in t {
            let p = phase_name(moment);
            if !phases.contains(&p) {
                phases.push(p);
            }
        }
    }
    for (k, phase) in phases.iter().enumerate() {
        let color = Palette99::pick(k).mix(0.9);
        let mut spans = Vec::new();
        for (row, (_, t)) in rows.iter().enumerate() {
            let segment = n - 1 - row;
            let mut from = 0.0;
            for (moment, us) in t {
                let to = us / 1000.0;
                if phase_name(moment) == *phase && to > from {
                    spans.push(Rectangle::new(
                        [
                            (from, SegmentValue::Exact(segment)),
                            (to, SegmentValue::Exact(segment + 1)),
                        ],
                        color.filled(),
                    ));
                }
                from = to;
            }
        }
        chart
            .draw_series(spans)
            .map_err(chart_error)?
            .label(phase.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(chart_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> Value {
        serde_json::json!({
            "tcg": {
                "hypercall_over_bare_exit": 1.2,
                "grant_copy_batch32_over_memcpy": 0.9,
                "boot_timeline_us": {"hypervisor_entry": 900_000, "all_ended": 1_800_000, "domains_built": 1_700_000},
            },
            "tcg_icount_shift0": {
                "hypercall_cycles": 200,
                "boot_timeline_us": {"hypervisor_entry": 300_000, "all_ended": 460_000},
            },
            "hypervisor_stripped_bytes": 350_000,
        })
    }

    #[test]
    fn targets_are_met_or_measured_against() {
        let hypercall = TARGETS[0];
        assert!(hypercall.met(245.0) && !hypercall.met(246.0));
        let batch = TARGETS
            .iter()
            .find(|t| t.bound == Bound::AtLeast)
            .expect("an at-least target");
        assert!(batch.met(0.6) && !batch.met(0.3));
        assert!((batch.score(0.3) - 2.0).abs() < 1e-9);
        let table = targets_table(&run());
        assert!(table.contains("null hypercall (instructions)"), "{table}");
        let line = |label: &str| {
            table
                .lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no {label} in {table}"))
                .to_owned()
        };
        assert!(line("null hypercall").ends_with("met"));
        assert!(line("hypercall / bare exit").ends_with("1.14x the target"));
        assert!(line("hypervisor image").ends_with("1.17x the target"));
        assert!(line("CPUID exit").ends_with("not measured"));
    }

    #[test]
    fn every_target_names_a_figure_the_bench_writes() {
        let f = crate::bench::tests::figures();
        let json = crate::bench::json_full(&f, &f, ["", ""], None, Some(1));
        let figures = numbers(&parse_json(&json, Path::new("x.json")).expect("bench JSON parses"));
        for t in TARGETS {
            assert!(figures.contains_key(t.path), "{} is not in {json}", t.path);
        }
    }

    #[test]
    fn timelines_come_in_time_order() {
        let t = timeline(&run(), "tcg");
        let moments: Vec<&str> = t.iter().map(|(m, _)| m.as_str()).collect();
        assert_eq!(moments, ["hypervisor_entry", "domains_built", "all_ended"]);
        assert!(timeline(&run(), "nonexistent").is_empty());
    }

    #[test]
    fn comparison_shows_the_change() {
        let old = run();
        let mut new = run();
        new["tcg_icount_shift0"]["hypercall_cycles"] = serde_json::json!(150);
        let table = compare_table(&old, &new, Path::new("old.json"));
        assert!(
            table.contains("tcg_icount_shift0.hypercall_cycles"),
            "{table}"
        );
        assert!(table.contains("-25.0%"), "{table}");
    }

    #[test]
    fn bad_earlier_runs_are_said_plainly() {
        let dir = std::env::temp_dir().join(format!("pavise-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let missing = read_json(&dir.join("none.json")).expect_err("missing");
        assert!(missing.to_string().contains("none.json"), "{missing}");
        let corrupt = dir.join("corrupt.json");
        std::fs::write(&corrupt, "{\"tcg\": ").expect("write");
        assert!(
            read_json(&corrupt)
                .expect_err("corrupt")
                .to_string()
                .contains("not JSON")
        );
        std::fs::write(&corrupt, "[1, 2]").expect("write");
        assert!(read_json(&corrupt).is_err());
        let svg = dir.join("bench.svg");
        draw(&run(), Some(&run()), &svg).expect("drawn");
        let text = std::fs::read_to_string(&svg).expect("svg");
        assert!(text.contains("<svg") && text.contains("firmware and GRUB"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
