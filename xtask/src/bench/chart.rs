//! The bench results drawn as SVG charts in `docs/bench/`, for the README: every bench run
//! redraws its charts and keeps its JSON beside them, and `cargo xtask bench charts` redraws
//! them all from that JSON without running anything.
//!
//! * `trigger.svg`: per-trigger cost of each probe as a multiple of the unprobed call;
//! * `load.svg`: load (and its verify and attach parts) and `set` latency against the sites of
//!   the plan, immediate mode;
//! * `transitions.svg`: per-task and global transition latency against the threads asleep
//!   inside a safe span;
//! * `build.svg`: `kernelx build` cold and warm per constant.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::Timing;
use super::runtime::Results;

/// Where the charts and the JSON they are drawn from live, relative to the repository.
pub const DIR: &str = "docs/bench";
pub const RUNTIME_JSON: &str = "runtime.json";
pub const BUILD_JSON: &str = "build.json";

const FONT: &str = "sans-serif";
const PALETTE: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

#[derive(Args)]
pub struct ChartArgs {
    /// The directory of runtime.json and build.json; the charts are written there too.
    #[arg(long, default_value = DIR)]
    dir: PathBuf,
}

/// `cargo xtask bench charts`: redraws the charts from the JSON in `args.dir` (relative paths
/// from the repository); a missing file is skipped with a note, none at all is an error.
pub fn run(args: ChartArgs) -> Result<ExitCode> {
    let repo = crate::lab::repo_root()?;
    let written = render_dir(&repo.join(&args.dir))?;
    for path in written {
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Draws every chart whose JSON is in `dir`, into `dir`.
fn render_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let runtime = dir.join(RUNTIME_JSON);
    let build = dir.join(BUILD_JSON);
    if runtime.is_file() {
        let results: Results = read_json(&runtime)?;
        written.extend(self::runtime(&results, dir)?);
    } else {
        eprintln!(
            "{} is missing: `cargo xtask bench runtime` writes it",
            runtime.display()
        );
    }
    if build.is_file() {
        let timings: Vec<Timing> = read_json(&build)?;
        written.push(self::build(&timings, dir)?);
    } else {
        eprintln!(
            "{} is missing: `cargo xtask bench build` writes it",
            build.display()
        );
    }
    if written.is_empty() {
        bail!(
            "no results in {} to draw: run `cargo xtask bench runtime` or `cargo xtask bench \
             build` first",
            dir.display()
        );
    }
    Ok(written)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not bench results: rerun the bench that writes it",
            path.display()
        )
    })
}

/// Writes `json` as `dir/name`, beside the charts drawn from it.
pub fn keep_json(dir: &Path, name: &str, json: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))
}

/// Draws one chart of the runtime results into a file.
type Draw = fn(&Results, &Path) -> Result<PathBuf>;

/// The charts of `cargo xtask bench runtime`: trigger.svg, load.svg and (when measured)
/// transitions.svg in `dir`.
pub(super) fn runtime(results: &Results, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut charts: Vec<(&str, Draw)> = vec![("trigger.svg", trigger), ("load.svg", load)];
    if !results.transitions.is_empty() {
        charts.push(("transitions.svg", transitions));
    }
    charts
        .into_iter()
        .map(|(name, draw)| {
            let path = dir.join(name);
            draw(results, &path).with_context(|| format!("drawing {}", path.display()))
        })
        .collect()
}

/// The chart of `cargo xtask bench build`: build.svg in `dir`.
pub(super) fn build(timings: &[Timing], dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("build.svg");
    let mut bars = Vec::new();
    for t in timings {
        let refused = if t.planned { "" } else { " (refused)" };
        bars.push(Bar {
            label: format!("{}, cold", t.constant),
            value: t.cold_seconds,
            note: format!("{:.1} s{refused}", t.cold_seconds),
            color: PALETTE[1],
        });
        if !t.warm_seconds.is_empty() {
            let warm = median(&t.warm_seconds);
            bars.push(Bar {
                label: format!("{}, warm", t.constant),
                value: warm,
                note: format!("{warm:.2} s (median of {})", t.warm_seconds.len()),
                color: PALETTE[0],
            });
        }
    }
    horizontal_bars(
        &path,
        "kernelx build: cold (empty object cache) and warm, per constant",
        "seconds",
        &bars,
    )
    .with_context(|| format!("drawing {}", path.display()))?;
    Ok(path)
}

fn trigger(results: &Results, path: &Path) -> Result<PathBuf> {
    let bare = results
        .trigger
        .iter()
        .find(|t| t.probe == "none")
        .with_context(|| format!("{RUNTIME_JSON} has no unprobed (`none`) trigger row"))?
        .ns_per_call;
    let bars: Vec<Bar> = results
        .trigger
        .iter()
        .filter(|t| t.probe != "none")
        .enumerate()
        .map(|(i, t)| Bar {
            label: t.probe.clone(),
            value: t.ns_per_call / bare,
            note: format!(
                "{:.0}x: {:.0} ns per call ({:.0}..{:.0})",
                t.ns_per_call / bare,
                t.ns_per_call,
                t.ns_per_call_min,
                t.ns_per_call_max
            ),
            color: PALETTE[i % PALETTE.len()],
        })
        .collect();
    horizontal_bars(
        path,
        &format!(
            "Per-trigger cost, QEMU TCG, kernel {}: multiple of the unprobed call",
            results.kernel
        ),
        &format!(
            "x the unprobed call of {} ({bare:.1} ns under QEMU TCG)",
            results.looped_function
        ),
        &bars,
    )?;
    Ok(path.to_owned())
}

fn load(results: &Results, path: &Path) -> Result<PathBuf> {
    let mut plans: Vec<_> = results
        .plans
        .iter()
        .filter(|p| p.mode == "immediate")
        .collect();
    plans.sort_by_key(|p| p.sites);
    if plans.is_empty() {
        bail!("{RUNTIME_JSON} has no plan loaded in immediate mode to draw");
    }
    let by_sites = |f: fn(&super::runtime::PlanCosts) -> f64| {
        plans
            .iter()
            .map(|p| (p.sites as f64, f(p)))
            .collect::<Vec<_>>()
    };
    let root = SVGBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Load and set latency against the plan's sites (immediate mode, medians, QEMU TCG)",
        (FONT, 18),
    )?;
    let (left, right) = root.split_horizontally(600);
    lines(
        &left,
        "load",
        "sites",
        "ms",
        &[
            Series::new("load (all)", by_sites(|p| p.load_ms)),
            Series::new("verify", by_sites(|p| p.verify_ms)),
            Series::new("attach", by_sites(|p| p.attach_ms)),
        ],
    )?;
    lines(
        &right,
        "set",
        "sites",
        "µs",
        &[Series::new("set", by_sites(|p| p.set_us))],
    )?;
    root.present()?;
    Ok(path.to_owned())
}

fn transitions(results: &Results, path: &Path) -> Result<PathBuf> {
    let mut series: Vec<Series> = Vec::new();
    for t in &results.transitions {
        let label = format!("{}, set {}", t.mode, t.tunable);
        let index = match series.iter().position(|s| s.key == label) {
            Some(index) => index,
            None => {
                series.push(Series::new(&label, Vec::new()));
                series.len() - 1
            }
        };
        let s = &mut series[index];
        s.points.push((t.threads as f64, t.latency_us));
        if t.left_behind > 0 {
            s.label = format!("{label} (the sleepers are left behind)");
        }
    }
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    lines(
        &root,
        "Transition latency against threads asleep inside a safe span (medians, QEMU TCG)",
        "threads inside the safe span of KX_TARGET_BLOCK",
        "µs until every task that can move has",
        &series,
    )?;
    root.present()?;
    Ok(path.to_owned())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// One bar: its label on the axis, its length, and the text at its end.
struct Bar {
    label: String,
    value: f64,
    note: String,
    color: RGBColor,
}

/// Horizontal bars, the first at the top: their labels are long, so they go on the left.
fn horizontal_bars(path: &Path, caption: &str, x_desc: &str, bars: &[Bar]) -> Result<()> {
    let rows = bars.len() as i32;
    let root = SVGBackend::new(path, (1000, 110 + 40 * bars.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max);
    // A segmented 0..n has n + 1 rows; 0..0 has none, so one bar gets an empty row above.
    let top = (rows - 1).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 18))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(280)
        // Room at the right for the notes.
        .build_cartesian_2d(0.0..(max * 1.6).max(1e-9), (0..top).into_segmented())?;
    // Plotters counts rows from the bottom.
    let row = |i: usize| rows - 1 - i as i32;
    let label_of = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(r) if (0..rows).contains(r) => {
            bars[(rows - 1 - r) as usize].label.clone()
        }
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .y_labels(bars.len())
        .y_label_formatter(&label_of)
        .x_label_formatter(&|v| tick(*v))
        .x_desc(x_desc)
        .label_style((FONT, 13))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(row(i))),
                (b.value, SegmentValue::Exact(row(i) + 1)),
            ],
            b.color.filled(),
        );
        bar.set_margin(6, 6, 0, 0);
        bar
    }))?;
    let note_style =
        TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        EmptyElement::at((b.value, SegmentValue::CenterOf(row(i))))
            + Text::new(b.note.clone(), (6, 0), note_style.clone())
    }))?;
    root.present()?;
    Ok(())
}

/// A line through points, labelled in the legend; `key` groups points into it.
struct Series {
    key: String,
    label: String,
    points: Vec<(f64, f64)>,
}

impl Series {
    fn new(label: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            key: label.to_owned(),
            label: label.to_owned(),
            points,
        }
    }
}

/// Lines with their points marked and valued, from 0 on both axes.
fn lines(
    area: &DrawingArea<SVGBackend, Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<()> {
    let points = || series.iter().flat_map(|s| s.points.iter().copied());
    let max_x = points().map(|(x, _)| x).fold(0.0, f64::max);
    let max_y = points().map(|(_, y)| y).fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 16))
        .margin(14)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..(max_x * 1.08).max(1.0), 0.0..(max_y * 1.35).max(1e-9))?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style((FONT, 13))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        // Values of alternate series above and below their points, so close points of two
        // series keep their values apart.
        let above = if i % 2 == 0 { -16 } else { 6 };
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(s.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(PointSeries::of_element(
            s.points.iter().copied(),
            4,
            color.filled(),
            &|point, size, style| {
                EmptyElement::at(point)
                    + Circle::new((0, 0), size, style)
                    + Text::new(value_text(point.1), (4, above), (FONT, 11))
            },
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// An axis tick: whole numbers without a fraction.
fn tick(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// A point's value, to three significant digits at most for small ones.
fn value_text(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNTIME: &str = r#"{"kernel": "6.12-test", "looped_function": "f",
        "trigger": [
            {"probe": "none", "ns_per_call": 10.0, "ns_per_call_min": 9.0,
             "ns_per_call_max": 11.0, "calls_per_loop": 5},
            {"probe": "bare kprobe", "ns_per_call": 800.0, "ns_per_call_min": 700.0,
             "ns_per_call_max": 900.0, "calls_per_loop": 5},
            {"probe": "SIE, INT3", "ns_per_call": 1200.0, "ns_per_call_min": 1100.0,
             "ns_per_call_max": 1300.0, "calls_per_loop": 5}],
        "plans": [
            {"plan": "FIFTEEN", "mode": "immediate", "sites": 15, "probes": 15,
             "load_ms": 550.0, "verify_ms": 320.0, "fill_ms": 0.5, "attach_ms": 220.0,
             "pin_arm_ms": 4.0, "set_us": 470.0, "unload_ms": 4.0, "optimized_after_s": null},
            {"plan": "ONE", "mode": "immediate", "sites": 1, "probes": 1, "load_ms": 417.0,
             "verify_ms": 385.0, "fill_ms": 0.3, "attach_ms": 29.0, "pin_arm_ms": 2.4,
             "set_us": 198.0, "unload_ms": 2.2, "optimized_after_s": 0.0003},
            {"plan": "ONE", "mode": "global", "sites": 1, "probes": 1, "load_ms": 9999.0,
             "verify_ms": 385.0, "fill_ms": 0.3, "attach_ms": 29.0, "pin_arm_ms": 2.4,
             "set_us": 1398.0, "unload_ms": 2.2, "optimized_after_s": 0.0003}],
        "transitions": [
            {"mode": "per-task", "tunable": "OTHER", "threads": 0, "left_behind": 0,
             "latency_us": 900.0, "latency_us_min": 800.0, "latency_us_max": 1000.0},
            {"mode": "per-task", "tunable": "OTHER", "threads": 16, "left_behind": 0,
             "latency_us": 1900.0, "latency_us_min": 1800.0, "latency_us_max": 2000.0},
            {"mode": "per-task", "tunable": "BLOCK", "threads": 16, "left_behind": 16,
             "latency_us": 2100.0, "latency_us_min": 2000.0, "latency_us_max": 2200.0},
            {"mode": "global", "tunable": "OTHER", "threads": 16, "left_behind": 0,
             "latency_us": 3456.0, "latency_us_min": 3000.0, "latency_us_max": 4000.0}]}"#;

    const BUILD: &str = r#"[
        {"constant": "MAX_SOFTIRQ_RESTART", "planned": true, "cold_seconds": 5.67,
         "warm_seconds": [0.44, 0.46, 0.47]},
        {"constant": "PIPE_DEF_BUFFERS", "planned": false, "cold_seconds": 13.0,
         "warm_seconds": [0.48]}]"#;

    fn svg(dir: &Path, name: &str) -> String {
        let path = dir.join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn runtime_charts_show_each_series() {
        let dir = tempfile::tempdir().unwrap();
        let results: Results = serde_json::from_str(RUNTIME).unwrap();
        let written = runtime(&results, dir.path()).unwrap();
        assert_eq!(written.len(), 3, "{written:?}");

        let trigger = svg(dir.path(), "trigger.svg");
        assert!(trigger.starts_with("<svg"), "{trigger}");
        for text in [
            "bare kprobe",
            "SIE, INT3",
            "80x: 800 ns per call (700..900)",
            "120x: 1200 ns per call",
            "QEMU TCG",
        ] {
            assert!(trigger.contains(text), "{text:?} not in {trigger}");
        }
        assert!(
            !trigger.contains(">none<"),
            "the unprobed row is the unit, not a bar"
        );

        let load = svg(dir.path(), "load.svg");
        for text in ["load (all)", "verify", "attach", "550", "470", "198"] {
            assert!(load.contains(text), "{text:?} not in {load}");
        }
        assert!(!load.contains("9999"), "a global load is not drawn: {load}");

        let transitions = svg(dir.path(), "transitions.svg");
        for text in [
            "per-task, set OTHER",
            "per-task, set BLOCK (the sleepers are left behind)",
            "global, set OTHER",
            "3456",
        ] {
            assert!(transitions.contains(text), "{text:?} not in {transitions}");
        }
    }

    #[test]
    fn results_without_transitions_draw_no_transition_chart() {
        let dir = tempfile::tempdir().unwrap();
        let mut results: Results = serde_json::from_str(RUNTIME).unwrap();
        results.transitions.clear();
        runtime(&results, dir.path()).unwrap();
        assert!(dir.path().join("load.svg").is_file());
        assert!(!dir.path().join("transitions.svg").exists());
    }

    #[test]
    fn build_chart_shows_cold_and_warm_per_constant() {
        let dir = tempfile::tempdir().unwrap();
        let timings: Vec<Timing> = serde_json::from_str(BUILD).unwrap();
        build(&timings, dir.path()).unwrap();
        let chart = svg(dir.path(), "build.svg");
        for text in [
            "MAX_SOFTIRQ_RESTART, cold",
            "MAX_SOFTIRQ_RESTART, warm",
            "5.7 s",
            "0.46 s (median of 3)",
            "13.0 s (refused)",
        ] {
            assert!(chart.contains(text), "{text:?} not in {chart}");
        }

        // One bar alone: a range of one row.
        let one: Vec<Timing> = serde_json::from_str(
            r#"[{"constant": "ALONE", "planned": true, "cold_seconds": 2.0, "warm_seconds": []}]"#,
        )
        .unwrap();
        build(&one, dir.path()).unwrap();
        let chart = svg(dir.path(), "build.svg");
        assert!(chart.contains("ALONE, cold"), "{chart}");
        assert!(!chart.contains("ALONE, warm"), "{chart}");
    }

    #[test]
    fn charts_command_redraws_from_the_json_in_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let err = render_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no results in"), "{err}");

        std::fs::write(dir.path().join(BUILD_JSON), BUILD).unwrap();
        let written = render_dir(dir.path()).unwrap();
        assert_eq!(written, vec![dir.path().join("build.svg")]);

        std::fs::write(dir.path().join(RUNTIME_JSON), "{}").unwrap();
        let err = format!("{:#}", render_dir(dir.path()).unwrap_err());
        assert!(err.contains("runtime.json is not bench results"), "{err}");

        std::fs::write(dir.path().join(RUNTIME_JSON), RUNTIME).unwrap();
        assert_eq!(render_dir(dir.path()).unwrap().len(), 4);
    }
}
