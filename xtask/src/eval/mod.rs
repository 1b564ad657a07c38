//! `cargo xtask eval`: the catalog's coverage report. On the host, `kernelx build` makes each
//! catalog entry's plan from the prepared lab tree (timed); in one lab VM boot, the guest half
//! ([`guest`]) loads each plan, runs its workload and reads the probes' hits and the effect.
//! The report ([`report`]) is printed as markdown and written to `target/eval/`.

pub mod catalog;
pub mod guest;
mod report;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use kernelx_kbuild::shell_quote;
use kernelx_plan::Plan;

use crate::cargo;
use crate::lab::{self, Cache, LabKernel, SetupParts};
use catalog::Entry;
use guest::{LabResult, RESULT_PREFIX};
use report::{EntryReport, PlanFacts, Summary};

/// The whole VM run, boot included: about 30 entries of a load, a workload and an unload
/// each under TCG.
const VM_TIMEOUT_SECONDS: u64 = 3000;
/// With `--policies`: about a minute per entry for a compile, a load and the workload.
const POLICY_SECONDS: u64 = 2400;
const DOCS_REPORT: &str = "docs/eval.md";
const DEFAULT_CATALOG: &str = "tunables/linux-6.12";
/// The share of catalog entries that must be tuned end to end (the bar).
const DEFAULT_REQUIRE: u32 = 90;

#[derive(Args)]
pub struct EvalArgs {
    /// The catalog directory, holding the spec files and lab.toml.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CATALOG)]
    catalog: PathBuf,
    /// Evaluate only these entries (repeatable).
    #[arg(long = "only", value_name = "NAME")]
    only: Vec<String>,
    /// Build the plans and report them without booting the lab VM.
    #[arg(long)]
    no_vm: bool,
    /// Also load each entry's `kernelx gen` stub unchanged as an X-tune policy (compiled in
    /// the VM: about half a minute per entry under TCG).
    #[arg(long)]
    policies: bool,
    /// Also write the report to docs/eval.md (the one the README links).
    #[arg(long)]
    docs: bool,
    /// Fail when fewer entries than this percentage are tuned end to end (with the VM).
    #[arg(long, value_name = "PERCENT", default_value_t = DEFAULT_REQUIRE)]
    require: u32,
}

impl EvalArgs {
    /// What CI runs: the whole catalog, in the VM, at the default bar.
    pub fn whole_catalog() -> Self {
        EvalArgs {
            catalog: PathBuf::from(DEFAULT_CATALOG),
            only: Vec::new(),
            no_vm: false,
            policies: false,
            docs: false,
            require: DEFAULT_REQUIRE,
        }
    }
}

pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let repo = lab::repo_root()?;
    let catalog_dir = repo.join(&args.catalog);
    let all = catalog::read(&catalog_dir)?;
    if let Some(unknown) = args
        .only
        .iter()
        .find(|n| !all.iter().any(|e| &e.name == *n))
    {
        anyhow::bail!(
            "--only {unknown}: {} has no such entry; it has {}",
            catalog_dir.join(catalog::LAB_FILE).display(),
            all.iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let entries: Vec<Entry> = all
        .into_iter()
        .filter(|e| args.only.is_empty() || args.only.contains(&e.name))
        .collect();
    let cache = Cache::from_env()?;
    let kernel = LabKernel::selected()?;
    lab::setup_all(&cache, &kernel, SetupParts::ALL)?;
    let kernelx = cargo::kernelx(true)?;
    let out_dir = repo.join("target/eval");
    let plans = out_dir.join("plans");
    let _ = std::fs::remove_dir_all(&plans);
    std::fs::create_dir_all(&plans).with_context(|| format!("creating {}", plans.display()))?;

    let files = cache.kernel(&kernel);
    let mut reports: Vec<EntryReport> = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        eprint!(
            "eval: build {}/{} {} ... ",
            n + 1,
            entries.len(),
            entry.name
        );
        let report = build(
            &kernelx,
            &catalog_dir,
            entry,
            &files.source(),
            &files.vmlinux(),
            &plans,
        )?;
        eprintln!(
            "{} in {:.1} s",
            report
                .plan
                .as_ref()
                .map_or("refused".to_owned(), |p| format!("{} site(s)", p.sites)),
            report.build_seconds
        );
        reports.push(report);
    }

    let ran_vm = !args.no_vm && reports.iter().any(|r| r.plan.is_some());
    if ran_vm {
        lab::build_modules(&kernel)?;
        let mut script = format!(
            "KERNELX_MODULE={} {} eval-guest --catalog {} --plans {} --kernelx {}",
            shell_quote(&lab::kernelx_module()?),
            shell_quote(&std::env::current_exe().context("finding the xtask binary")?),
            shell_quote(&catalog_dir),
            shell_quote(&plans),
            shell_quote(&kernelx),
        );
        if args.policies {
            script.push_str(" --policies");
        }
        for name in &args.only {
            script.push_str(&format!(" --only {}", shell_quote(Path::new(name))));
        }
        let mut results: HashMap<String, LabResult> = HashMap::new();
        let timeout = VM_TIMEOUT_SECONDS + if args.policies { POLICY_SECONDS } else { 0 };
        for line in lab::run_collecting(&script, timeout, RESULT_PREFIX)? {
            let result: LabResult = serde_json::from_str(&line)
                .with_context(|| format!("reading the guest's result {line}"))?;
            results.insert(result.name.clone(), result);
        }
        for report in &mut reports {
            report.lab = results.remove(&report.name);
        }
    }

    let markdown = report::markdown(&kernel.release(), &reports);
    println!("\n{markdown}");
    let json = out_dir.join("report.json");
    std::fs::write(&json, serde_json::to_string_pretty(&reports)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let md = out_dir.join("report.md");
    std::fs::write(&md, &markdown).with_context(|| format!("writing {}", md.display()))?;
    eprintln!("wrote {} and {}", json.display(), md.display());
    if args.docs {
        let docs = repo.join(DOCS_REPORT);
        std::fs::write(&docs, &markdown).with_context(|| format!("writing {}", docs.display()))?;
        eprintln!("wrote {}", docs.display());
    }

    let summary = Summary::of(&reports);
    if ran_vm && summary.tuned * 100 < summary.entries * args.require as usize {
        eprintln!(
            "eval: {} of {} entries tuned end to end, below the required {}%",
            summary.tuned, summary.entries, args.require
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `kernelx build` of one entry into `plans/<name>.plan.json`, timed; a refusal is recorded
/// with the tool's message.
fn build(
    kernelx: &Path,
    catalog_dir: &Path,
    entry: &Entry,
    source: &Path,
    vmlinux: &Path,
    plans: &Path,
) -> Result<EntryReport> {
    let plan_path = plans.join(format!("{}.plan.json", entry.name));
    let mut command = Command::new(kernelx);
    command
        .arg("build")
        .arg(catalog_dir.join(&entry.spec))
        .args(["--tunable", &entry.name])
        .arg("--kernel-dir")
        .arg(source)
        .arg("--vmlinux")
        .arg(vmlinux)
        .arg("-o")
        .arg(&plan_path)
        .stdin(Stdio::null());
    let start = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("running {}", kernelx.display()))?;
    let build_seconds = start.elapsed().as_secs_f64();
    let (plan, build_error) = if output.status.success() {
        let plan = Plan::read(&plan_path)
            .with_context(|| format!("reading the plan {}", plan_path.display()))?;
        let tunable = plan.tunable(&entry.name).with_context(|| {
            format!(
                "the plan {} has no tunable {}",
                plan_path.display(),
                entry.name
            )
        })?;
        (Some(PlanFacts::of(tunable)), None)
    } else {
        (
            None,
            Some(build_error(&String::from_utf8_lossy(&output.stderr))),
        )
    };
    Ok(EntryReport {
        name: entry.name.clone(),
        subsystem: entry.subsystem(),
        value: entry.value,
        build_seconds,
        build_error,
        plan,
        lab: None,
    })
}

/// The error part of `kernelx build`'s stderr (it prints progress and warnings before).
fn build_error(stderr: &str) -> String {
    let error = stderr
        .find("error: ")
        .map_or(stderr, |at| &stderr[at + "error: ".len()..]);
    error.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_the_error_text_after_progress_and_warnings() {
        let stderr = "spec.toml: valid spec\nwarning: odd\nerror: NAME reaches an array size\n  \
                      caused by: x\n";
        assert_eq!(
            build_error(stderr),
            "NAME reaches an array size\n  caused by: x"
        );
        assert_eq!(build_error("  killed\n"), "killed");
    }
}
