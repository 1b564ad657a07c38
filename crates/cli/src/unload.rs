//! `kernelx unload`: one tunable, or everything pinned under the SIE root (`--all`), complete or
//! left half-loaded by a killed `kernelx`; and the load records that go with them.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::bail;
use kernelx_runtime::lock::StateLock;
use std::time::Duration;

use kernelx_runtime::sie::{SieProgram, SieRuntime};
use kernelx_runtime::state::{self, StateDir};

use crate::args::UnloadArgs;
use crate::transition;

/// Runs `kernelx unload`; one line per tunable removed to `out`.
pub fn run(args: &UnloadArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let timeout = transition::timeout(&args.wait);
    let state = StateDir::system();
    let _lock = StateLock::acquire(state.dir())?;
    let runtime = SieRuntime::system();
    let Some(name) = &args.tunable else {
        return unload_all(&runtime, &state, args.force, timeout, out);
    };
    if !runtime.is_loaded(name)? {
        let stale = state.remove(name)?;
        bail!(
            "tunable `{name}` is not loaded (nothing pinned at {}){}",
            runtime.dir(name)?.display(),
            if stale {
                "; its stale record was removed"
            } else {
                ""
            }
        );
    }
    unload_one(&runtime, &state, name, args.force, timeout, out)
}

/// Unloads `name` the way its mode goes back (or at once when `force`, or when its load was
/// interrupted before it had a record), then removes its record.
fn unload_one(
    runtime: &SieRuntime,
    state: &StateDir,
    name: &str,
    force: bool,
    timeout: Duration,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let record = state.read(name)?;
    match record.as_ref().and_then(|r| r.tunable()) {
        Some(tunable) if !force => {
            let program = SieProgram::from_plan(tunable)?;
            if let Some(back) = runtime.unload(&program, timeout)? {
                transition::report(name, &back, out)?;
            }
        }
        _ => runtime.detach(name)?,
    }
    state.remove(name)?;
    writeln!(out, "unloaded {name}")?;
    Ok(())
}

fn unload_all(
    runtime: &SieRuntime,
    state: &StateDir,
    force: bool,
    timeout: Duration,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let pinned = state::pinned_tunables(runtime)?;
    let recorded: BTreeSet<String> = state.recorded()?.into_iter().collect();
    let mut failed = Vec::new();
    for name in &pinned {
        if let Err(e) = unload_one(runtime, state, name, force, timeout, out) {
            failed.push(format!("{name}: {e:#}"));
        }
    }
    for name in recorded.iter().filter(|n| !pinned.contains(n)) {
        state.remove(name)?;
        writeln!(
            out,
            "removed the stale record of {name} (it was not pinned)"
        )?;
    }
    if pinned.is_empty() && recorded.is_empty() {
        writeln!(
            out,
            "nothing to unload (nothing pinned under {})",
            runtime.root().display()
        )?;
    }
    if !failed.is_empty() {
        bail!("could not unload:\n  {}", failed.join("\n  "));
    }
    Ok(())
}
