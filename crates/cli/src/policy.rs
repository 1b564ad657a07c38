//! X-tune policies on the command line: `load --policy` compiles and checks the file before
//! anything is loaded, `set --param` rewrites a loaded policy's parameters.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use kernelx_kbuild::Cache;
use kernelx_runtime::policy::{CompileOptions, compile_policy, inspect, parse_assignments};
use kernelx_runtime::sie::{PolicyBound, PolicyLoad, SieProgram, SieRuntime};
use kernelx_runtime::state::PolicyRecord;

use crate::args::{OutOfRangeArg, PolicyArgs};

/// A policy compiled, checked and ready to load.
pub struct PreparedPolicy {
    /// What the loader takes.
    pub load: PolicyLoad,
    /// What the load record keeps.
    pub record: PolicyRecord,
}

/// The policy `--policy` names, with what `--out-of-range` says.
pub fn requested(args: &PolicyArgs) -> Option<(&Path, PolicyBound)> {
    let bound = match args.out_of_range {
        OutOfRangeArg::Reject => PolicyBound::Reject,
        OutOfRangeArg::Clamp => PolicyBound::Clamp,
    };
    args.policy.as_deref().map(|source| (source, bound))
}

/// Compiles the policy at `source` for `program`'s tunable against the running kernel's BTF
/// and checks the object; clang's warnings go to `err`. Refuses a tunable no policy can drive
/// before compiling anything.
pub fn prepare(
    source: &Path,
    bound: PolicyBound,
    program: &SieProgram,
    err: &mut impl Write,
) -> anyhow::Result<PreparedPolicy> {
    program.check_policy()?;
    let cache = Cache::from_env().context("finding the cache for vmlinux.h")?;
    let start = Instant::now();
    let compiled = compile_policy(source, &CompileOptions::new(cache.root()))?;
    if !compiled.warnings.is_empty() {
        write!(err, "{}", compiled.warnings)?;
    }
    if compiled.cached {
        writeln!(
            err,
            "{}: unchanged since its last compile, the cached object is used",
            source.display()
        )?;
    } else {
        writeln!(
            err,
            "compiled {} in {:.1?} (clang, against the running kernel's BTF)",
            source.display(),
            start.elapsed()
        )?;
    }
    let object = inspect(&compiled.object, source)?;
    Ok(PreparedPolicy {
        load: PolicyLoad {
            object: compiled.object,
            source: source.display().to_string(),
            bound,
        },
        record: PolicyRecord {
            source: source.to_owned(),
            source_hash: compiled.source_hash,
            out_of_range: bound,
            params: object.params,
        },
    })
}

/// Writes the `--param` assignments into the parameters of `tunable`'s policy: all of them or,
/// when one is refused, none.
pub fn set_params(
    runtime: &SieRuntime,
    tunable: &str,
    policy: Option<&PolicyRecord>,
    assignments: &[String],
) -> anyhow::Result<()> {
    let policy = policy.with_context(|| {
        format!(
            "tunable `{tunable}` was loaded without a policy, so it has no parameters \
             (`kernelx load {tunable} --policy FILE` loads one); nothing was changed"
        )
    })?;
    let assignments = parse_assignments(&policy.params, assignments)
        .with_context(|| format!("{}: nothing was changed", policy.source.display()))?;
    let mut image = runtime.policy_params(tunable)?;
    for assignment in &assignments {
        assignment.write_into(&mut image)?;
    }
    runtime.set_policy_params(tunable, &image)?;
    Ok(())
}
