//! `cargo xtask bench runtime`: what the SIE runtime costs in the lab kernel, measured in one
//! VM boot by `crates/runtime/tests/bench_runtime.rs` (built in release, as `kernelx` ships):
//!
//! * per trigger: a kernel loop calls `kx_target_imm_reg64` with no probe, with a tracefs
//!   kprobe event and with the SIE program at the same address (jump-optimized, then INT3, then
//!   with an X-tune policy that returns its default);
//! * per plan of 1, 5 and 15 sites of the target module, and the 3-site PIPE_DEF_BUFFERS plan in
//!   each mode: load (verify, fill, attach, pin and arm), `set` and unload;
//! * per-task and global transition latency with 0 to 64 threads asleep inside a safe span.
//!
//! Results are printed as tables, written as JSON to `target/bench/runtime.json` and drawn into
//! `docs/bench/` ([`super::chart`]).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use kernelx_kbuild::shell_quote;
use serde::{Deserialize, Serialize};

use super::chart;
use crate::cargo;
use crate::lab::{self, LabKernel};

/// The harness prints its results on one line, after this.
const RESULT_PREFIX: &str = "kernelx-bench-runtime: ";
/// The whole VM run, boot included; the harness takes about ten minutes under TCG.
const TIMEOUT_SECONDS: u64 = 1800;

/// What the harness measured (its JSON line, and `target/bench/runtime.json`).
#[derive(Deserialize, Serialize)]
pub(super) struct Results {
    pub(super) kernel: String,
    pub(super) looped_function: String,
    pub(super) trigger: Vec<Trigger>,
    pub(super) plans: Vec<PlanCosts>,
    /// Absent from results of runs before it was measured.
    #[serde(default)]
    pub(super) transitions: Vec<TransitionCosts>,
}

/// The looped function's cost per call with one kind of probe (or none) on it.
#[derive(Deserialize, Serialize)]
pub(super) struct Trigger {
    pub(super) probe: String,
    /// The median of the harness's loops, and the fastest and slowest.
    pub(super) ns_per_call: f64,
    pub(super) ns_per_call_min: f64,
    pub(super) ns_per_call_max: f64,
    calls_per_loop: u64,
}

/// Medians over the harness's loads of one golden plan.
#[derive(Deserialize, Serialize)]
pub(super) struct PlanCosts {
    pub(super) plan: String,
    /// The consistency mode: a per-task or global `set` is a whole transition.
    pub(super) mode: String,
    pub(super) sites: usize,
    probes: usize,
    pub(super) load_ms: f64,
    pub(super) verify_ms: f64,
    fill_ms: f64,
    pub(super) attach_ms: f64,
    pin_arm_ms: f64,
    pub(super) set_us: f64,
    unload_ms: f64,
    /// From the end of the load until every optimizable probe was `[OPTIMIZED]`.
    optimized_after_s: Option<f64>,
}

/// Medians over the harness's transitions of one tunable with `threads` threads asleep inside
/// the safe span of KX_TARGET_BLOCK.
#[derive(Deserialize, Serialize)]
pub(super) struct TransitionCosts {
    pub(super) mode: String,
    /// The tunable set: KX_TARGET_BLOCK itself (per-task: its sleepers are left behind), or
    /// one whose span nobody is in.
    pub(super) tunable: String,
    pub(super) threads: usize,
    /// Tasks the transition left behind.
    pub(super) left_behind: usize,
    /// Until every task that can take the new value has, as the runtime reports it.
    pub(super) latency_us: f64,
    latency_us_min: f64,
    latency_us_max: f64,
}

pub fn run() -> Result<ExitCode> {
    let repo = lab::repo_root()?;
    lab::build_modules(&LabKernel::selected()?)?;
    let harness = cargo::build(&[
        "test",
        "--release",
        "--package",
        "kernelx-runtime",
        "--test",
        "bench_runtime",
        "--no-run",
    ])?
    .into_iter()
    .find(|e| e.is_test && e.name == "bench_runtime")
    .context("cargo did not report the bench_runtime test binary")?;
    let script = format!(
        "{} --ignored --exact vm_bench_runtime --test-threads=1",
        shell_quote(&harness.path)
    );
    // libtest's "test vm_bench_runtime ... " may stand before the line on the same line.
    let result = lab::run_collecting(&script, TIMEOUT_SECONDS, RESULT_PREFIX)
        .context("the benchmark failed in the lab VM")?
        .pop()
        .with_context(|| format!("the harness printed no `{RESULT_PREFIX}` line"))?;
    let results: Results =
        serde_json::from_str(&result).with_context(|| format!("reading the results {result}"))?;
    print_tables(&results, &mut std::io::stdout())?;
    let out = repo.join("target/bench").join(chart::RUNTIME_JSON);
    std::fs::create_dir_all(out.parent().expect("a file in a directory"))
        .with_context(|| format!("creating the directory of {}", out.display()))?;
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(&out, &json).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    let docs = repo.join(chart::DIR);
    chart::keep_json(&docs, chart::RUNTIME_JSON, &json)?;
    for chart in chart::runtime(&results, &docs)? {
        eprintln!("wrote {}", chart.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_tables(results: &Results, out: &mut impl Write) -> Result<()> {
    writeln!(
        out,
        "\nPer trigger: {} called in a kernel loop, lab kernel {} under QEMU TCG\n",
        results.looped_function, results.kernel
    )?;
    writeln!(
        out,
        "| probe | ns per call (median) | min..max | ns per trigger | x unprobed |\n\
         | --- | ---: | ---: | ---: | ---: |"
    )?;
    let bare = results
        .trigger
        .iter()
        .find(|t| t.probe == "none")
        .context("the results have no unprobed row")?
        .ns_per_call;
    for t in &results.trigger {
        writeln!(
            out,
            "| {} | {:.1} | {:.1}..{:.1} | {:.1} | {:.2} |",
            t.probe,
            t.ns_per_call,
            t.ns_per_call_min,
            t.ns_per_call_max,
            t.ns_per_call - bare,
            t.ns_per_call / bare
        )?;
    }
    writeln!(out, "\nLoad, set and unload (medians)\n")?;
    writeln!(
        out,
        "| plan | mode | sites | probes | load ms | verify ms | fill ms | attach ms | pin+arm ms | \
         set us | unload ms | optimized after s |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )?;
    for p in &results.plans {
        writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.0} | {:.1} | {} |",
            p.plan,
            p.mode,
            p.sites,
            p.probes,
            p.load_ms,
            p.verify_ms,
            p.fill_ms,
            p.attach_ms,
            p.pin_arm_ms,
            p.set_us,
            p.unload_ms,
            p.optimized_after_s
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}"))
        )?;
    }
    if results.transitions.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\nTransitions with threads asleep inside KX_TARGET_BLOCK's safe span (medians)\n"
    )?;
    writeln!(
        out,
        "| mode | tunable set | threads inside | left behind | latency us | min..max |\n\
         | --- | --- | ---: | ---: | ---: | ---: |"
    )?;
    for t in &results.transitions {
        writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {:.0}..{:.0} |",
            t.mode,
            t.tunable,
            t.threads,
            t.left_behind,
            t.latency_us,
            t.latency_us_min,
            t.latency_us_max
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_show_costs_relative_to_the_unprobed_loop() {
        let results: Results = serde_json::from_str(
            r#"{"kernel": "6.12", "looped_function": "f",
                "trigger": [{"probe": "none", "ns_per_call": 10.0, "ns_per_call_min": 9.0,
                             "ns_per_call_max": 11.0, "calls_per_loop": 5},
                            {"probe": "SIE", "ns_per_call": 35.0, "ns_per_call_min": 30.0,
                             "ns_per_call_max": 40.0, "calls_per_loop": 5}],
                "plans": [{"plan": "P", "mode": "global", "sites": 1, "probes": 2, "load_ms": 12.5,
                           "verify_ms": 10.0, "fill_ms": 0.1, "attach_ms": 1.5,
                           "pin_arm_ms": 0.9, "set_us": 40.0, "unload_ms": 2.0,
                           "optimized_after_s": null}],
                "transitions": [{"mode": "per-task", "tunable": "B", "threads": 4,
                                 "left_behind": 4, "latency_us": 900.0,
                                 "latency_us_min": 800.4, "latency_us_max": 1200.0}]}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        print_tables(&results, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("| SIE | 35.0 | 30.0..40.0 | 25.0 | 3.50 |"),
            "{text}"
        );
        assert!(
            text.contains("| P | global | 1 | 2 | 12.5 | 10.0 | 0.10 | 1.5 | 0.9 | 40 | 2.0 | - |"),
            "{text}"
        );
        assert!(
            text.contains("| per-task | B | 4 | 4 | 900 | 800..1200 |"),
            "{text}"
        );
    }
}
