//! `kernelx load`: a plan (file or plan store) into the running kernel, in the order that
//! refuses before anything changes: lock, module, verification, program, range, attach.

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, bail};
use kernelx_plan::{Plan, TunablePlan};
use kernelx_runtime::host::HostView;
use kernelx_runtime::lock::StateLock;
use std::time::Duration;

use kernelx_runtime::sie::{
    LoadRequest as SieLoad, Loaded, PolicyBound, PolicyLoad, ProbeTarget, SieProgram, SieRuntime,
};
use kernelx_runtime::state::{LoadRecord, Mode, StateDir};
use kernelx_runtime::targets::{verified_addresses, verified_spans};
use kernelx_runtime::verify::{LiveKernel, verify};

use crate::args::LoadArgs;
use crate::table::plan_store;
use crate::{module, policy, status, transition};

/// Test-only hook (the lab tests' kill of an interrupted load): when set, `load` stops after
/// the probes are pinned and armed, before it writes its record, and waits to be killed.
const PAUSE_HOOK: &str = "KERNELX_TEST_PAUSE_AFTER_PIN";

/// What to load, with which value.
pub struct LoadRequest<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// The tunable in it.
    pub tunable: &'a str,
    /// V' (`None`: the plan's default).
    pub value: Option<i64>,
    /// The mode.
    pub mode: Mode,
    /// How long a per-task or global transition may take.
    pub timeout: Duration,
    /// The kernelx module to insert when it is missing.
    pub module: Option<&'a Path>,
    /// An X-tune policy's source (`value` is then its default), and its out-of-range action.
    pub policy: Option<(&'a Path, PolicyBound)>,
    /// Print JSON.
    pub json: bool,
}

/// Runs `kernelx load`.
pub fn run(args: &LoadArgs, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<()> {
    let (mode, timeout) = transition::load_mode(&args.transition)?;
    let plan = read_plan(&args.target)?;
    let tunable = pick_tunable(&plan, &args.target, args.tunable.as_deref())?;
    load(
        &LoadRequest {
            plan: &plan,
            tunable: &tunable,
            value: args.value,
            mode,
            timeout,
            module: args.module.module.as_deref(),
            policy: policy::requested(&args.policy),
            json: args.json,
        },
        out,
        err,
    )
}

/// Loads one tunable of a plan, then prints its status.
pub fn load(
    request: &LoadRequest<'_>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<()> {
    let name = request.tunable;
    let tunable = request
        .plan
        .tunable(name)
        .with_context(|| format!("the plan has no tunable named `{name}`"))?;
    // Compiled before the lock: clang may take a while, and a broken policy changes nothing.
    let policy = request
        .policy
        .map(|(source, bound)| {
            policy::prepare(source, bound, &SieProgram::from_plan(tunable)?, err)
        })
        .transpose()?;
    let runtime = SieRuntime::system();
    let state = StateDir::system();
    let _lock = StateLock::acquire(state.dir())?;
    if runtime.is_loaded(name)? {
        bail!(
            "tunable `{name}` is already loaded ({}): `kernelx set {name} V` changes its value, \
             `kernelx unload {name}` removes it; nothing was changed",
            runtime.dir(name)?.display()
        );
    }
    let host = HostView::system();
    let inserted = module::ensure_loaded(&host, request.module, err)?;
    let (loaded, addresses, value) = match attach(
        request,
        tunable,
        policy.as_ref().map(|p| p.load.clone()),
        host,
        &runtime,
    ) {
        Ok(attached) => attached,
        Err(e) => {
            // A refused load leaves the kernel as it found it, module included.
            if inserted {
                module::remove_after_failure(err)?;
            }
            return Err(e);
        }
    };
    if std::env::var_os(PAUSE_HOOK).is_some() {
        writeln!(
            err,
            "{PAUSE_HOOK}: {name} pinned, waiting to be killed (pid {})",
            std::process::id()
        )?;
        loop {
            std::thread::park();
        }
    }
    let record = LoadRecord {
        plan: Plan::new(request.plan.kernel.clone(), vec![tunable.clone()]),
        mode: request.mode,
        value,
        addresses,
        policy: policy.map(|p| p.record),
    };
    if let Err(e) = state.write(&record) {
        // Without its record the tunable could not be changed or shown: take it back out.
        let undo = runtime.detach(name);
        return Err(anyhow::Error::new(e).context(match undo {
            Ok(()) => format!("recording the load of `{name}`; it was unloaded again"),
            Err(u) => format!("recording the load of `{name}`; unloading it again failed too: {u}"),
        }));
    }
    let what = match &record.policy {
        Some(p) => format!("the policy {} (default {value})", p.source.display()),
        None => value.to_string(),
    };
    writeln!(
        err,
        "loaded {name} = {what} ({} mode): {} probes at verified addresses (BPF program load \
         {:?}{}, attach {:?})",
        request.mode.name(),
        loaded.targets.len(),
        loaded.timings.verify,
        loaded
            .timings
            .verified_insns
            .map_or(String::new(), |n| format!(", {n} instructions verified")),
        loaded.timings.attach
    )?;
    transition::report(name, &loaded.transition, err)?;
    let statuses = status::read(Some(name), true)?;
    if request.json {
        status::write_json(&statuses, out)
    } else {
        statuses.iter().try_for_each(|s| status::render(s, out))
    }
}

/// Verifies the tunable against the running kernel, checks program and value, and attaches
/// every probe at its verified address: the loaded tunable, its addresses and V'.
fn attach(
    request: &LoadRequest<'_>,
    tunable: &TunablePlan,
    policy: Option<PolicyLoad>,
    host: HostView,
    runtime: &SieRuntime,
) -> anyhow::Result<(Loaded, Vec<u64>, i64)> {
    let name = request.tunable;
    // Opened after the module is in: its symbols are then in kallsyms too.
    let live = LiveKernel::open(host).context("reading the running kernel (needs root)")?;
    let verified = verify(&live, request.plan, name)?;
    let program = SieProgram::from_plan(tunable)?;
    let value = request.value.unwrap_or(tunable.default);
    tunable.range.check(value).with_context(|| {
        format!("tunable `{name}`: --value {value} is refused; nothing was loaded")
    })?;
    let addresses = verified_addresses(&program, &verified)?;
    let spans = verified_spans(&program, &verified)?;
    let sie_load = SieLoad {
        value,
        mode: request.mode,
        spans,
        timeout: request.timeout,
        policy,
    };
    let loaded = runtime.load(&program, &sie_load, |probe| {
        let index = program
            .probes()
            .iter()
            .position(|p| std::ptr::eq(p, probe))
            .expect("the loader asks for the program's own probes");
        ProbeTarget::Address(addresses[index])
    })?;
    Ok((loaded, addresses, value))
}

/// The plan `target` names: a file when it exists or ends in `.json`, else a tunable of the
/// plan store.
pub(crate) fn read_plan(target: &str) -> anyhow::Result<Plan> {
    let path = Path::new(target);
    if path.exists() || target.ends_with(".json") {
        return Plan::read(path).with_context(|| format!("reading the plan {target}"));
    }
    let store = plan_store()?;
    store.load(target).with_context(|| {
        format!(
            "`{target}` is neither a plan file nor a tunable in the plan store {} (`kernelx \
             table list` shows the stored ones, `kernelx build` adds them)",
            store.dir().display()
        )
    })
}

/// The tunable to load: `--tunable`, else the plan's only one (a store name is the tunable).
pub(crate) fn pick_tunable(
    plan: &Plan,
    target: &str,
    wanted: Option<&str>,
) -> anyhow::Result<String> {
    let names: Vec<&str> = plan.tunables.iter().map(|t| t.name.as_str()).collect();
    match (wanted, &names[..]) {
        (Some(w), _) if names.contains(&w) => Ok(w.to_owned()),
        (Some(w), _) => bail!(
            "--tunable {w}: {target} has no such tunable; it has {}",
            names.join(", ")
        ),
        (None, [only]) => Ok((*only).to_owned()),
        (None, []) => bail!("{target} holds no tunable"),
        (None, _) if names.contains(&target) => Ok(target.to_owned()),
        (None, _) => bail!(
            "{target} holds several tunables ({}): choose one with --tunable NAME",
            names.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(names: &[&str]) -> Plan {
        let text = include_str!("../../analyze/testdata/golden/pipe_def_buffers_fs.plan.json");
        let mut plan: Plan = serde_json::from_str(text).unwrap();
        let tunable = plan.tunables.pop().unwrap();
        plan.tunables = names
            .iter()
            .map(|n| kernelx_plan::TunablePlan {
                name: (*n).to_owned(),
                ..tunable.clone()
            })
            .collect();
        plan
    }

    #[test]
    fn the_only_tunable_is_taken_and_several_need_a_choice() {
        assert_eq!(pick_tunable(&plan(&["A"]), "p.json", None).unwrap(), "A");
        assert_eq!(
            pick_tunable(&plan(&["A", "B"]), "p.json", Some("B")).unwrap(),
            "B"
        );
        let err = pick_tunable(&plan(&["A", "B"]), "p.json", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("several tunables (A, B): choose one with --tunable"),
            "{err}"
        );
        let err = pick_tunable(&plan(&["A"]), "p.json", Some("C"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--tunable C: p.json has no such tunable; it has A");
    }

    #[test]
    fn a_missing_json_file_is_read_as_a_file_not_looked_up() {
        let err = read_plan("/nonexistent/p.plan.json").unwrap_err();
        assert!(
            err.to_string()
                .contains("reading the plan /nonexistent/p.plan.json"),
            "{err}"
        );
    }
}
