//! `kernelx unload`: one tunable, or everything pinned under the SIE root (`--all`), complete or
//! left half-loaded by a killed `kernelx`; and the load records that go with them.

use std::collections::BTreeSet;
use std::io::Write;

use anyhow::bail;
use kernelx_runtime::lock::StateLock;
use kernelx_runtime::sie::SieRuntime;
use kernelx_runtime::state::{self, StateDir};

use crate::args::UnloadArgs;
use crate::transition;

/// Runs `kernelx unload`; one line per tunable removed to `out`.
pub fn run(args: &UnloadArgs, out: &mut impl Write) -> anyhow::Result<()> {
    transition::require_immediate(&args.transition)?;
    let state = StateDir::system();
    let _lock = StateLock::acquire(state.dir())?;
    let runtime = SieRuntime::system();
    let Some(name) = &args.tunable else {
        return unload_all(&runtime, &state, out);
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
    runtime.unload(name)?;
    state.remove(name)?;
    writeln!(out, "unloaded {name}")?;
    Ok(())
}

fn unload_all(runtime: &SieRuntime, state: &StateDir, out: &mut impl Write) -> anyhow::Result<()> {
    let pinned = state::pinned_tunables(runtime)?;
    let recorded: BTreeSet<String> = state.recorded()?.into_iter().collect();
    let mut failed = Vec::new();
    for name in &pinned {
        match runtime.unload(name) {
            Ok(()) => {
                state.remove(name)?;
                writeln!(out, "unloaded {name}")?;
            }
            Err(e) => failed.push(format!("{name}: {e}")),
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
