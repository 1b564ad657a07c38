//! The half of `cargo xtask eval` that runs inside the lab VM: for each built catalog entry,
//! its setup, the effect at the default, `kernelx load`, the workload, `kernelx status --json`
//! (each probe's hits and whether the kernel optimized it), the effect loaded, `kernelx
//! unload` and the effect again. Each entry's result is printed as one JSON line after
//! [`RESULT_PREFIX`] for the host half to read.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::catalog::{self, Entry};

/// Marks a result line in the VM's output.
pub const RESULT_PREFIX: &str = "kernelx-eval: ";
/// How long a setup, workload or effect command may run under TCG before it counts as failed.
const COMMAND_TIMEOUT_SECONDS: u32 = 180;
/// How long to wait for the kernel to jump-optimize the probes it can.
const OPTIMIZER_WAIT: Duration = Duration::from_secs(15);

#[derive(Args)]
pub struct GuestArgs {
    /// The catalog directory (with lab.toml).
    #[arg(long)]
    pub catalog: PathBuf,
    /// Where the host half wrote `<name>.plan.json` for every entry it built.
    #[arg(long)]
    pub plans: PathBuf,
    /// The kernelx binary.
    #[arg(long)]
    pub kernelx: PathBuf,
    /// Only these entries (default: every entry with a plan).
    #[arg(long = "only")]
    pub only: Vec<String>,
    /// Also load each entry's `kernelx gen` stub as an X-tune policy.
    #[arg(long)]
    pub policies: bool,
}

/// What happened to one entry in the VM.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct LabResult {
    pub name: String,
    /// The first step that failed, and the tool's or command's message.
    pub failure: Option<Failure>,
    /// `kernelx load`, in milliseconds (TCG).
    pub load_ms: Option<u64>,
    /// Every probe after the workload.
    pub probes: Vec<ProbeHits>,
    /// The effect command's output at the default, loaded, and after unload.
    pub effect: Option<EffectValues>,
    /// The `kernelx gen` stub loaded as a policy (with `--policies`).
    pub policy: Option<PolicyResult>,
}

/// The `kernelx gen` stub of a tunable, loaded unchanged as its X-tune policy, its parameter
/// `value` set to the lab value, under the workload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct PolicyResult {
    /// `kernelx gen` refused the tunable (a site divides by the value): its message.
    pub refused: Option<String>,
    pub failure: Option<Failure>,
    /// `kernelx load --policy`, compile included, in milliseconds (TCG).
    pub load_ms: Option<u64>,
    /// Times the policy was asked.
    pub decisions: u64,
    /// Triggers of the tunable's probes under the workload (the policy is asked only at those
    /// where the task is outside every safe span).
    #[serde(default)]
    pub hits: u64,
    /// The effect command's output with the policy choosing the lab value.
    pub effect: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Failure {
    pub step: Step,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Setup,
    Effect,
    Load,
    Workload,
    Status,
    Unload,
    Gen,
    Set,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Setup => "setup",
            Step::Effect => "effect",
            Step::Load => "load",
            Step::Workload => "workload",
            Step::Status => "status",
            Step::Unload => "unload",
            Step::Gen => "gen",
            Step::Set => "set",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct EffectValues {
    pub default: i64,
    pub tuned: Option<i64>,
    pub restored: Option<i64>,
}

/// The part of `kernelx status --json` the evaluation reads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ProbeHits {
    pub site: String,
    pub function: String,
    pub offset: u32,
    pub optimizable: bool,
    pub optimized: Option<bool>,
    pub hits: u64,
    pub errors: u64,
}

#[derive(Deserialize)]
struct Status {
    tunables: Vec<TunableStatus>,
}

#[derive(Deserialize)]
struct TunableStatus {
    name: String,
    probes: Vec<ProbeHits>,
    policy: Option<PolicyStatus>,
}

#[derive(Deserialize)]
struct PolicyStatus {
    decisions: u64,
}

pub fn run(args: GuestArgs) -> Result<ExitCode> {
    let entries = catalog::read(&args.catalog)?;
    for entry in entries
        .iter()
        .filter(|e| args.only.is_empty() || args.only.contains(&e.name))
    {
        let plan = args.plans.join(format!("{}.plan.json", entry.name));
        if !plan.is_file() {
            continue;
        }
        eprintln!("eval: {}", entry.name);
        let mut result = evaluate(&args.kernelx, entry, &plan);
        if args.policies && result.failure.is_none() {
            result.policy = Some(evaluate_policy(&args.kernelx, entry, &plan));
        }
        println!("{RESULT_PREFIX}{}", serde_json::to_string(&result)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn evaluate(kernelx: &Path, entry: &Entry, plan: &Path) -> LabResult {
    let mut result = LabResult {
        name: entry.name.clone(),
        ..LabResult::default()
    };
    if let Err(failure) = steps(kernelx, entry, plan, &mut result) {
        unload_everything(kernelx);
        result.failure = Some(failure);
    }
    result
}

/// After a failed step: whatever it left loaded must not change the next entry's kernel.
fn unload_everything(kernelx: &Path) {
    let _ = Command::new(kernelx)
        .args(["unload", "--all", "--force"])
        .stdin(Stdio::null())
        .output();
}

fn evaluate_policy(kernelx: &Path, entry: &Entry, plan: &Path) -> PolicyResult {
    let mut result = PolicyResult::default();
    if let Err(failure) = policy_steps(kernelx, entry, plan, &mut result) {
        unload_everything(kernelx);
        result.failure = Some(failure);
    }
    result
}

fn policy_steps(
    kernelx: &Path,
    entry: &Entry,
    plan: &Path,
    result: &mut PolicyResult,
) -> Result<(), Failure> {
    let stub = std::env::temp_dir().join(format!("kernelx-eval-{}.bpf.c", entry.name));
    let (plan, stub_arg) = (plan.display().to_string(), stub.display().to_string());
    if let Err(message) = run_kernelx(kernelx, &["gen", &plan, "-o", &stub_arg, "--force"]) {
        if message.contains("divides by the value") {
            result.refused = Some(message);
            return Ok(());
        }
        return Err(fail(Step::Gen, message));
    }
    let start = Instant::now();
    run_kernelx(kernelx, &["load", &plan, "--policy", &stub_arg])
        .map_err(|m| fail(Step::Load, m))?;
    result.load_ms = Some(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
    let param = format!("value={}", entry.value);
    run_kernelx(kernelx, &["set", &entry.name, "--param", &param])
        .map_err(|m| fail(Step::Set, m))?;
    shell(&entry.workload).map_err(|m| fail(Step::Workload, m))?;
    let status = run_kernelx(kernelx, &["status", &entry.name, "--json"])
        .map_err(|m| fail(Step::Status, m))?;
    let status = tunable_status(&status, &entry.name).map_err(|m| fail(Step::Status, m))?;
    result.hits = status.probes.iter().map(|p| p.hits).sum();
    result.decisions = status.policy.map_or(0, |p| p.decisions);
    result.effect = entry
        .effect
        .as_deref()
        .map(|command| effect_value(command).map_err(|m| fail(Step::Effect, m)))
        .transpose()?;
    run_kernelx(kernelx, &["unload", &entry.name]).map_err(|m| fail(Step::Unload, m))?;
    Ok(())
}

fn steps(
    kernelx: &Path,
    entry: &Entry,
    plan: &Path,
    result: &mut LabResult,
) -> Result<(), Failure> {
    if let Some(setup) = &entry.setup {
        shell(setup).map_err(|m| fail(Step::Setup, m))?;
    }
    let effect = || -> Result<Option<i64>, Failure> {
        entry
            .effect
            .as_deref()
            .map(|command| effect_value(command).map_err(|m| fail(Step::Effect, m)))
            .transpose()
    };
    if let Some(default) = effect()? {
        result.effect = Some(EffectValues {
            default,
            ..EffectValues::default()
        });
    }
    let plan = plan.display().to_string();
    let value = entry.value.to_string();
    let start = Instant::now();
    run_kernelx(kernelx, &["load", &plan, "--value", &value]).map_err(|m| fail(Step::Load, m))?;
    result.load_ms = Some(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
    shell(&entry.workload).map_err(|m| fail(Step::Workload, m))?;
    // The kernel's optimizer replaces INT3 by a jump some ticks after attaching (later under
    // TCG): give it a while before reading which probes ended up [OPTIMIZED].
    let deadline = Instant::now() + OPTIMIZER_WAIT;
    loop {
        let status = run_kernelx(kernelx, &["status", &entry.name, "--json"])
            .map_err(|m| fail(Step::Status, m))?;
        result.probes = probes(&status, &entry.name).map_err(|m| fail(Step::Status, m))?;
        let pending = result
            .probes
            .iter()
            .any(|p| p.optimizable && p.optimized == Some(false));
        if !pending || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let tuned = effect()?;
    if let (Some(values), Some(tuned)) = (&mut result.effect, tuned) {
        values.tuned = Some(tuned);
    }
    run_kernelx(kernelx, &["unload", &entry.name]).map_err(|m| fail(Step::Unload, m))?;
    let restored = effect()?;
    if let (Some(values), Some(restored)) = (&mut result.effect, restored) {
        values.restored = Some(restored);
    }
    Ok(())
}

fn fail(step: Step, message: String) -> Failure {
    Failure { step, message }
}

fn probes(status: &str, name: &str) -> Result<Vec<ProbeHits>, String> {
    tunable_status(status, name).map(|t| t.probes)
}

fn tunable_status(status: &str, name: &str) -> Result<TunableStatus, String> {
    let status: Status = serde_json::from_str(status)
        .map_err(|e| format!("kernelx status --json printed no status: {e}"))?;
    status
        .tunables
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| format!("kernelx status does not list {name}"))
}

/// Runs `kernelx args`; its stdout, or its stderr as the failure.
fn run_kernelx(kernelx: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(kernelx)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("starting {}: {e}", kernelx.display()))?;
    checked(output, &format!("kernelx {}", args.join(" ")))
}

/// Runs `command` with sh under a time limit; its stdout.
fn shell(command: &str) -> Result<String, String> {
    let output = Command::new("timeout")
        .arg(COMMAND_TIMEOUT_SECONDS.to_string())
        .args(["sh", "-c", command])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("starting sh: {e}"))?;
    checked(output, command)
}

fn effect_value(command: &str) -> Result<i64, String> {
    let out = shell(command)?;
    out.trim()
        .parse()
        .map_err(|_| format!("`{command}` printed {:?}, not one integer", out.trim()))
}

fn checked(output: Output, what: &str) -> Result<String, String> {
    if output.status.success() {
        return String::from_utf8(output.stdout).map_err(|_| format!("`{what}` printed non-UTF-8"));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message = stderr.trim();
    Err(if output.status.code() == Some(124) {
        format!("`{what}` ran longer than {COMMAND_TIMEOUT_SECONDS} s")
    } else if message.is_empty() {
        format!("`{what}` failed ({})", output.status)
    } else {
        message.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_probes_of_the_named_tunable() {
        let status = r#"{"tunables": [
            {"name": "A", "mode": "immediate", "probes": []},
            {"name": "B", "links": 1, "probes": [{"site": "s0", "role": "post",
              "function": "f", "offset": 16, "address": "0xffffffff81000010",
              "optimizable": true, "optimized": true, "hits": 7, "errors": 0}]}]}"#;
        let hits = probes(status, "B").unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].hits, hits[0].optimized), (7, Some(true)));
        assert!(probes(status, "C").unwrap_err().contains("does not list C"));
    }

    #[test]
    fn a_failed_command_reports_its_stderr_or_its_time_limit() {
        assert_eq!(shell("echo 4096").unwrap(), "4096\n");
        assert_eq!(shell("echo oops >&2; exit 1").unwrap_err(), "oops");
        assert!(shell("exit 124").unwrap_err().contains("longer than"));
        assert!(
            effect_value("echo many words")
                .unwrap_err()
                .contains("not one integer")
        );
        assert_eq!(effect_value("echo ' 12 '").unwrap(), 12);
    }
}
