//! What KernelX knows about the tunables loaded in the kernel, and the one thing it keeps
//! beside the kernel.
//!
//! The truth of "loaded" is the pinned objects under the SIE pin root
//! ([`DEFAULT_PIN_ROOT`](crate::sie::DEFAULT_PIN_ROOT)): a tunable is loaded while its pin
//! directory exists, and its probes' counters are read from the pinned maps. What the pins
//! cannot say (the plan, to name sites and check values; the mode; V') is a [`LoadRecord`],
//! written after a load under `<state dir>/tunables/<tunable>.json` (root only: 0700
//! directory, 0600 files), rewritten by `set` and removed by `unload`. A pin directory without
//! a record is the leftover of a load that was interrupted; a record without a pin directory
//! is stale and ignored.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use kernelx_plan::{Plan, TunablePlan};
use serde::{Deserialize, Serialize};

use crate::kprobes::Kprobes;
use crate::lock::{self, LockError};
use crate::policy::{ParamSpec, ParamValue, PolicyError, decode_params};
use crate::sie::{
    PolicyBound, ProbeRole, Setting, SieError, SieProgram, SieRuntime, TransitionState,
};

const RECORDS: &str = "tunables";

/// When tasks switch to a new value (spec section 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The next use of the constant by any task sees the value.
    Immediate,
    /// A task switches once none of its frames is inside a safe span.
    PerTask,
    /// No task switches until no task is inside any safe span; then all at once.
    Global,
}

impl Mode {
    /// The name `--mode` takes.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Immediate => "immediate",
            Mode::PerTask => "per-task",
            Mode::Global => "global",
        }
    }
}

/// What a load leaves beside the pins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRecord {
    /// The plan, holding the one loaded tunable.
    pub plan: Plan,
    /// The mode it was loaded in.
    pub mode: Mode,
    /// The value V' in effect.
    pub value: i64,
    /// The verified address of each probe, in the SIE program's probe order.
    pub addresses: Vec<u64>,
    /// The X-tune policy choosing V' per trigger (`value` is its default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRecord>,
}

/// The X-tune policy a tunable was loaded with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// Its source file, as given to `load --policy`.
    pub source: PathBuf,
    /// sha256 of the source as compiled (hex).
    pub source_hash: String,
    /// What happens to a value outside the range.
    pub out_of_range: PolicyBound,
    /// Its parameters (`KX_PARAM`), for `set --param` and `status`.
    pub params: Vec<ParamSpec>,
}

impl LoadRecord {
    /// The loaded tunable.
    pub fn tunable(&self) -> Option<&TunablePlan> {
        self.plan.tunables.first()
    }
}

/// Why a record or the status could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The state directory is not private, or cannot be created.
    #[error(transparent)]
    Dir(#[from] LockError),
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A record is not what a load writes.
    #[error("{} is not a KernelX load record ({source}); `kernelx unload --all` removes it", path.display())]
    Corrupt {
        /// The record.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A record holds a plan this runtime cannot turn into probes any more.
    #[error(transparent)]
    Sie(#[from] SieError),
    /// A policy's parameters do not match its record.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateError {
    let path = path.to_owned();
    move |source| StateError::Io {
        action,
        path,
        source,
    }
}

/// The load records under a state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Records under `dir/tunables`.
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    /// Records under [`DEFAULT_STATE_DIR`](lock::DEFAULT_STATE_DIR).
    pub fn system() -> StateDir {
        StateDir::new(lock::DEFAULT_STATE_DIR)
    }

    /// The state directory (the lock lives there too).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, tunable: &str) -> PathBuf {
        self.dir.join(RECORDS).join(format!("{tunable}.json"))
    }

    /// Writes (or replaces, atomically) the record of its tunable, as a 0600 file.
    pub fn write(&self, record: &LoadRecord) -> Result<PathBuf, StateError> {
        let name = record.tunable().map_or("", |t| t.name.as_str());
        let records = self.dir.join(RECORDS);
        lock::create_private_dir(&records)?;
        let path = self.path_of(name);
        let temp = records.join(format!(".{name}.json.new"));
        let json = serde_json::to_vec_pretty(record).expect("a record serializes");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .map_err(io_error("creating", &temp))?;
        file.write_all(&json).map_err(io_error("writing", &temp))?;
        fs::rename(&temp, &path).map_err(io_error("renaming", &temp))?;
        Ok(path)
    }

    /// The record of `tunable`; `None` when there is none.
    pub fn read(&self, tunable: &str) -> Result<Option<LoadRecord>, StateError> {
        let path = self.path_of(tunable);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(io_error("reading", &path)(source)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Corrupt { path, source })
    }

    /// Removes the record of `tunable`; whether there was one.
    pub fn remove(&self, tunable: &str) -> Result<bool, StateError> {
        let path = self.path_of(tunable);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(io_error("removing", &path)(source)),
        }
    }

    /// Record writes a killed kernelx left half done (the temporary files [`StateDir::write`]
    /// renames into place), sorted.
    pub fn interrupted_writes(&self) -> Result<Vec<PathBuf>, StateError> {
        let records = self.dir.join(RECORDS);
        Ok(list_names(&records, |name| {
            (name.starts_with('.') && name.ends_with(".json.new")).then(|| name.to_owned())
        })?
        .into_iter()
        .map(|name| records.join(name))
        .collect())
    }

    /// The tunables that have a record, sorted.
    pub fn recorded(&self) -> Result<Vec<String>, StateError> {
        list_names(&self.dir.join(RECORDS), |name| {
            name.strip_suffix(".json")
                .filter(|n| !n.starts_with('.'))
                .map(str::to_owned)
        })
    }
}

/// The tunables pinned under `runtime`'s root, sorted: every directory, complete or not.
pub fn pinned_tunables(runtime: &SieRuntime) -> Result<Vec<String>, StateError> {
    list_names(runtime.root(), |name| Some(name.to_owned()))
}

fn list_names(
    dir: &Path,
    name_of: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, StateError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io_error("listing", dir)(source)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("listing", dir))?;
        if let Some(name) = entry.file_name().to_str().and_then(&name_of) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// One loaded (or half-loaded) tunable, as the kernel and its record show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TunableStatus {
    /// The tunable (its pin directory's name).
    pub name: String,
    /// Its pin directory.
    pub pin_dir: PathBuf,
    /// Pinned links (one per attached probe).
    pub links: usize,
    /// `None` when the load completed; otherwise why the tunable is not fully loaded.
    pub incomplete: Option<String>,
    /// The mode, from the kernel.
    pub mode: Option<Mode>,
    /// V' of the newest transition, from the kernel (`None` while moving back to the built-in
    /// value); with a policy, its default.
    pub value: Option<i64>,
    /// The transition state, from the kernel (a pending per-task transition was swept once).
    pub transition: Option<TransitionState>,
    /// The kernel's built-in value, from the plan.
    pub default: Option<i64>,
    /// Every probe, in program order (empty without a record).
    pub probes: Vec<ProbeStatus>,
    /// The X-tune policy, when one chooses the value.
    pub policy: Option<PolicyStatus>,
}

/// The X-tune policy of a loaded tunable: which one, what it chose, its parameters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyStatus {
    /// Its source file.
    pub source: PathBuf,
    /// sha256 of the source as compiled (hex).
    pub source_hash: String,
    /// What happens to a value outside the range.
    pub out_of_range: PolicyBound,
    /// Times the policy was asked.
    pub decisions: u64,
    /// Values outside the range replaced by the default.
    pub rejected: u64,
    /// Values outside the range clamped.
    pub clamped: u64,
    /// The last value rejected or clamped, and where (`function+offset`).
    pub last_out_of_range: Option<(i64, String)>,
    /// The last value applied (after the range), `None` before the first decision.
    pub last_value: Option<i64>,
    /// The parameters' current values.
    pub params: Vec<ParamValue>,
}

/// One probe of a loaded tunable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProbeStatus {
    /// The site's id.
    pub site: String,
    /// Pre- or post-probe.
    pub role: ProbeRole,
    /// The function, as the plan names it.
    pub function: String,
    /// The offset in the function.
    pub offset: u32,
    /// The verified address it was attached at (JSON: a `0x` hex string, since JSON numbers
    /// lose kernel addresses' low bits in most readers).
    #[serde(serialize_with = "hex_address")]
    pub address: u64,
    /// Whether the plan expects the kernel to jump-optimize it.
    pub optimizable: bool,
    /// Whether the kernel lists it `[OPTIMIZED]` (`None`: the kprobe list is not readable).
    pub optimized: Option<bool>,
    /// Times it ran.
    pub hits: u64,
    /// Times it could not apply its update.
    pub errors: u64,
}

fn hex_address<S: serde::Serializer>(address: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{address:#x}"))
}

/// The status of every pinned tunable (or of `only`), from the pins, the records and the
/// kernel's kprobe list (`None` when debugfs does not show it). `locked`: the caller holds the
/// state lock, so a per-task transition found complete may be recorded done.
pub fn status(
    runtime: &SieRuntime,
    state: &StateDir,
    kprobes: Option<&Kprobes>,
    only: Option<&str>,
    locked: bool,
) -> Result<Vec<TunableStatus>, StateError> {
    let names = match only {
        Some(name) if runtime.is_loaded(name)? => vec![name.to_owned()],
        Some(name) => {
            return Err(SieError::NotLoaded {
                tunable: name.to_owned(),
                dir: runtime.dir(name)?,
            }
            .into());
        }
        None => pinned_tunables(runtime)?,
    };
    names
        .into_iter()
        .map(|name| tunable_status(runtime, state, kprobes, name, locked))
        .collect()
}

fn tunable_status(
    runtime: &SieRuntime,
    state: &StateDir,
    kprobes: Option<&Kprobes>,
    name: String,
    locked: bool,
) -> Result<TunableStatus, StateError> {
    let pin_dir = runtime.dir(&name)?;
    let pins = list_names(&pin_dir, |n| Some(n.to_owned()))?;
    let links = pins.iter().filter(|p| p.starts_with("link-")).count();
    let record = state.read(&name)?;
    let mut status = TunableStatus {
        name,
        pin_dir,
        links,
        incomplete: None,
        mode: None,
        value: None,
        transition: None,
        default: None,
        probes: Vec::new(),
        policy: None,
    };
    let tunable = record.as_ref().and_then(LoadRecord::tunable);
    let (Some(record), Some(tunable)) = (&record, tunable) else {
        status.incomplete = Some(
            "no load record: a load was interrupted; `kernelx unload --all` removes it".to_owned(),
        );
        return Ok(status);
    };
    if !pins.iter().any(|p| p == "control") {
        status.incomplete = Some("pins missing: a load was interrupted".to_owned());
        return Ok(status);
    }
    let transition = runtime.transition_state(&status.name, locked)?;
    status.mode = Some(transition.mode);
    status.value = match transition.target {
        Setting::Value(v) | Setting::Policy(v) => Some(v),
        Setting::Compiled => None,
    };
    status.transition = Some(transition);
    status.default = Some(tunable.default);
    let program = SieProgram::from_plan(tunable)?;
    let stats = runtime.stats(&program)?;
    for ((probe, stats), &address) in program.probes().iter().zip(stats).zip(&record.addresses) {
        let optimized = kprobes.map(|k| {
            k.within(address..address + 1)
                .any(|p| p.flags.contains("[OPTIMIZED]"))
        });
        status.probes.push(ProbeStatus {
            site: probe.site().to_owned(),
            role: probe.role(),
            function: probe.function().to_owned(),
            offset: probe.offset(),
            address,
            optimizable: probe.jump_optimizable(),
            optimized,
            hits: stats.hits,
            errors: stats.errors,
        });
    }
    if let Some(policy) = &record.policy {
        status.policy = Some(policy_status(runtime, &program, &status.name, policy)?);
    }
    Ok(status)
}

fn policy_status(
    runtime: &SieRuntime,
    program: &SieProgram,
    name: &str,
    policy: &PolicyRecord,
) -> Result<PolicyStatus, StateError> {
    let stats = runtime.policy_stats(name)?;
    let params = if policy.params.is_empty() {
        Vec::new()
    } else {
        decode_params(&policy.params, &runtime.policy_params(name)?)?
    };
    let probe_name = |index: u64| {
        program.probes().get(index as usize).map_or_else(
            || format!("probe {index}"),
            |p| format!("{}+{:#x}", p.function(), p.offset()),
        )
    };
    Ok(PolicyStatus {
        source: policy.source.clone(),
        source_hash: policy.source_hash.clone(),
        out_of_range: policy.out_of_range,
        decisions: stats.decisions,
        rejected: stats.rejected,
        clamped: stats.clamped,
        last_out_of_range: (stats.rejected + stats.clamped > 0)
            .then(|| (stats.last_bad, probe_name(stats.last_bad_probe))),
        last_value: (stats.decisions > 0).then_some(stats.last_value),
        params,
    })
}

/// Test support (feature `test-util`).
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use super::*;

    /// A load record of the golden `PIPE_DEF_BUFFERS` plan, renamed `name`, at `value`.
    pub fn pipe_record(name: &str, value: i64) -> LoadRecord {
        let text = include_str!("../../analyze/testdata/golden/pipe_def_buffers_fs.plan.json");
        let mut plan: Plan = serde_json::from_str(text).expect("the golden plan parses");
        plan.tunables[0].name = name.to_owned();
        LoadRecord {
            plan,
            mode: Mode::Immediate,
            value,
            addresses: vec![0xffff_ffff_8100_0000],
            policy: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    fn record(name: &str, value: i64) -> LoadRecord {
        testing::pipe_record(name, value)
    }

    #[test]
    fn records_are_private_replaced_and_removed() {
        let temp = tempfile::tempdir().unwrap();
        let state = StateDir::new(temp.path().join("kernelx"));
        assert_eq!(state.read("T").unwrap(), None);
        let path = state.write(&record("T", 32)).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(path.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        state.write(&record("T", 64)).unwrap();
        assert_eq!(state.read("T").unwrap().unwrap().value, 64);
        assert_eq!(state.recorded().unwrap(), ["T"]);
        assert!(state.remove("T").unwrap());
        assert!(!state.remove("T").unwrap());
        assert_eq!(state.recorded().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn interrupted_writes_are_the_temporary_files_only() {
        let temp = tempfile::tempdir().unwrap();
        let state = StateDir::new(temp.path());
        assert!(
            state.interrupted_writes().unwrap().is_empty(),
            "no directory yet"
        );
        state.write(&record("T", 32)).unwrap();
        let records = temp.path().join(RECORDS);
        fs::write(records.join(".U.json.new"), "{").unwrap();
        assert_eq!(
            state.interrupted_writes().unwrap(),
            [records.join(".U.json.new")]
        );
        assert_eq!(state.recorded().unwrap(), ["T"]);
    }

    #[test]
    fn a_corrupt_record_is_named() {
        let temp = tempfile::tempdir().unwrap();
        let state = StateDir::new(temp.path());
        fs::create_dir_all(temp.path().join(RECORDS)).unwrap();
        fs::write(temp.path().join(RECORDS).join("T.json"), "{").unwrap();
        let err = state.read("T").unwrap_err().to_string();
        assert!(err.contains("T.json is not a KernelX load record"), "{err}");
    }

    #[test]
    fn a_pin_directory_without_a_record_is_reported_incomplete() {
        let temp = tempfile::tempdir().unwrap();
        let runtime = SieRuntime::new(temp.path().join("bpf"));
        let state = StateDir::new(temp.path().join("run"));
        fs::create_dir_all(runtime.dir("T").unwrap()).unwrap();
        fs::write(runtime.dir("T").unwrap().join("link-000"), "").unwrap();
        let all = status(&runtime, &state, None, None, false).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].name, "T");
        assert_eq!(all[0].links, 1);
        assert!(
            all[0]
                .incomplete
                .as_deref()
                .is_some_and(|why| why.contains("interrupted")),
            "{all:?}"
        );
        assert!(all[0].probes.is_empty());
        let err = status(&runtime, &state, None, Some("U"), false).unwrap_err();
        assert!(err.to_string().contains("'U' is not loaded"), "{err}");
    }
}
