//! `kernelx set` and `kernelx get`: the value of a loaded tunable. `set` is a map write checked
//! against the plan's range, activated as the tunable's mode says; `get` reads the load record. JSON of `get`: `{"tunable", "value",
//! "default", "mode"}`.

use std::io::Write;

use anyhow::{Context as _, bail};
use kernelx_runtime::lock::StateLock;
use kernelx_runtime::sie::{SieProgram, SieRuntime, Tuning};
use kernelx_runtime::state::{LoadRecord, StateDir};

use crate::args::{GetArgs, SetArgs};
use crate::{policy, transition};

/// Runs `kernelx set`; the change to `out`. The value is checked against the range and the
/// parameters against the policy's before anything is written, so a refused one changes
/// nothing; parameters are then written before the value's transition.
pub fn set(args: &SetArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let state = StateDir::system();
    let _lock = StateLock::acquire(state.dir())?;
    let runtime = SieRuntime::system();
    let mut record = loaded_record(&runtime, &state, &args.tunable)?;
    let tunable = record
        .tunable()
        .expect("loaded_record checks the tunable")
        .clone();
    if let Some(value) = args.value {
        tunable.range.check(value).with_context(|| {
            format!(
                "`kernelx set {} {value}` is refused; nothing was changed",
                args.tunable
            )
        })?;
    }
    if !args.params.is_empty() {
        policy::set_params(
            &runtime,
            &args.tunable,
            record.policy.as_ref(),
            &args.params,
        )?;
        writeln!(out, "{}: {}", args.tunable, args.params.join(" "))?;
    }
    let Some(value) = args.value else {
        return Ok(());
    };
    let old = record.value;
    let program = SieProgram::from_plan(&tunable)?;
    let tuning = match &record.policy {
        Some(policy) => Tuning::Policy {
            default: value,
            bound: policy.out_of_range,
        },
        None => Tuning::Value(value),
    };
    let change = runtime
        .retune(&program, tuning, transition::timeout(&args.wait))
        .with_context(|| {
            format!(
                "`kernelx set {} {value}` failed in the kernel",
                args.tunable
            )
        })?;
    record.value = value;
    state.write(&record).with_context(|| {
        format!(
            "{} is set to {value} in the kernel, but its record was not updated",
            args.tunable
        )
    })?;
    let what = if record.policy.is_some() {
        "policy default "
    } else {
        ""
    };
    writeln!(out, "{}: {what}{old} -> {value}", args.tunable)?;
    transition::report(&args.tunable, &change, out)
}

/// Runs `kernelx get`.
pub fn get(args: &GetArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let record = loaded_record(&SieRuntime::system(), &StateDir::system(), &args.tunable)?;
    if args.json {
        let json = serde_json::json!({
            "tunable": args.tunable,
            "value": record.value,
            "default": record.tunable().map(|t| t.default),
            "mode": record.mode,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
    } else {
        writeln!(out, "{}", record.value)?;
    }
    Ok(())
}

/// The record of a tunable whose pins exist.
fn loaded_record(runtime: &SieRuntime, state: &StateDir, name: &str) -> anyhow::Result<LoadRecord> {
    if !runtime.is_loaded(name)? {
        bail!(
            "tunable `{name}` is not loaded (nothing pinned at {}); `kernelx status` lists the \
             loaded ones",
            runtime.dir(name)?.display()
        );
    }
    match state.read(name)? {
        Some(record) if record.tunable().is_some_and(|t| t.name == name) => Ok(record),
        Some(_) | None => bail!(
            "tunable `{name}` is pinned at {} but has no load record: its load was interrupted; \
             `kernelx unload {name}` (or `--all`) removes it",
            runtime.dir(name)?.display()
        ),
    }
}
