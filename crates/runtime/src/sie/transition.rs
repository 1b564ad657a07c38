//! Moving a loaded tunable from one generation of its value to the next, as its consistency
//! mode says (spec section 1):
//!
//! * immediate: one write of `kx_control.target_gen`; the next trigger anywhere uses it.
//! * per-task: a task moves at a trigger when none of its frames is inside a safe span
//!   (bpf/sie.bpf.c `task_gen`), and a sweep over every task (`kx_sweep`, run by reading its
//!   pinned iterator) moves the tasks that are not inside, so tasks that never come back to the
//!   span converge too. The transition is done when a sweep finds nobody left behind.
//! * global: the kernelx module activates the generation with every CPU stopped, only when no
//!   task is inside a safe span (crate::global); a timeout aborts and the old value stays.
//!
//! Generation `g` uses slot `g % 2` of `kx_probes`. A transition writes the slot of the
//! generation before the current one, which no task uses once that older transition is done;
//! a new transition while one is still pending is accepted only when it goes back to the value
//! the stragglers still use (their slot is then rewritten with what it already holds).

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::SieError;
use super::abi::{self, Control, Inside, ModeCode, ProbeEntry, SlotKind, TransitionCode};
use super::loader::{self, map_error};
use crate::state::Mode;

/// How often a waiting per-task transition sweeps the tasks.
const SWEEP_INTERVAL: Duration = Duration::from_millis(10);

/// A value of a tunable: V', or the one the kernel was compiled with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Setting {
    /// V'.
    Value(i64),
    /// An X-tune policy chooses V' per trigger; its default.
    Policy(i64),
    /// The compiled value: the probes do nothing.
    Compiled,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Setting::Value(v) => write!(f, "{v}"),
            Setting::Policy(default) => write!(f, "the policy's choice (default {default})"),
            Setting::Compiled => f.write_str("the built-in value"),
        }
    }
}

/// A task a transition waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TaskInside {
    /// Its thread id.
    pub pid: u32,
    /// The frame (instruction pointer or return address) inside a safe span; `None` when its
    /// stack could not be read (it was running on another CPU).
    pub address: Option<u64>,
}

/// How a transition ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum Outcome {
    /// Every task uses the new value.
    Done {
        /// From the start of the transition until it was seen done (JSON: seconds).
        #[serde(serialize_with = "seconds")]
        latency: Duration,
    },
    /// Per-task: these tasks still use the old value (they are inside a safe span); they move
    /// when they leave it, and a later sweep (`status`, `set`, `unload`) completes it.
    Pending {
        /// The tasks left behind.
        inside: Vec<TaskInside>,
        /// How long this call waited (JSON: seconds).
        #[serde(serialize_with = "seconds")]
        waited: Duration,
    },
    /// Global: no quiescent moment came before the timeout; nobody switched.
    Aborted {
        /// A task that was inside at the last attempt.
        blocker: Option<TaskInside>,
        /// Attempts made.
        attempts: u64,
        /// How long they took (JSON: seconds).
        #[serde(serialize_with = "seconds")]
        waited: Duration,
    },
}

/// A transition of a loaded tunable.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Transition {
    /// The tunable's mode.
    pub mode: Mode,
    /// The value moved to.
    pub to: Setting,
    /// How it ended.
    pub outcome: Outcome,
}

/// The transition state of a loaded tunable, read from its `kx_control` map.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TransitionState {
    /// The mode.
    pub mode: Mode,
    /// The value of the newest generation.
    pub target: Setting,
    /// The value tasks left behind still use (while a transition is pending).
    pub previous: Setting,
    /// The last transition: done, pending or aborted.
    pub state: TransitionStateCode,
    /// How long the last transition took (done), or ran until aborted; `None` while pending
    /// (JSON: seconds).
    #[serde(serialize_with = "optional_seconds")]
    pub latency: Option<Duration>,
    /// Per-task, pending: the tasks a sweep just found inside.
    pub inside: Vec<TaskInside>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn optional_seconds<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => seconds(d, s),
        None => s.serialize_none(),
    }
}

/// [`TransitionState::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransitionStateCode {
    /// Every task is on the target value.
    Done,
    /// Some tasks still use the previous value.
    Pending,
    /// The last (global) transition was aborted; the previous value stays.
    Aborted,
}

/// A loaded tunable's pinned maps, as a transition needs them.
pub(super) struct Pinned {
    tunable: String,
    dir: PathBuf,
    control: MapHandle,
    probes: MapHandle,
}

impl Pinned {
    pub(super) fn open(tunable: &str, dir: &Path) -> Result<Pinned, SieError> {
        Ok(Pinned {
            tunable: tunable.to_owned(),
            dir: dir.to_owned(),
            control: loader::open_pinned(tunable, dir, "control", abi::CONTROL_SIZE)?,
            probes: loader::open_pinned(tunable, dir, "probes", abi::PROBE_ENTRY_SIZE)?,
        })
    }

    pub(super) fn from_maps(
        tunable: &str,
        dir: &Path,
        control: MapHandle,
        probes: MapHandle,
    ) -> Pinned {
        Pinned {
            tunable: tunable.to_owned(),
            dir: dir.to_owned(),
            control,
            probes,
        }
    }

    pub(super) fn tunable(&self) -> &str {
        &self.tunable
    }

    /// The first `count` entries of `kx_ranges`.
    pub(super) fn ranges(&self, count: u64) -> Result<Vec<abi::SpanRange>, SieError> {
        let map = loader::open_pinned(&self.tunable, &self.dir, "ranges", abi::SPAN_RANGE_SIZE)?;
        (0..count.min(abi::MAX_RANGES as u64) as u32)
            .map(|index| {
                let bytes = map
                    .lookup(&index.to_ne_bytes(), MapFlags::ANY)
                    .map_err(|source| {
                        map_error(&self.tunable, "reading", loader::RANGES_MAP, source)
                    })?
                    .unwrap_or_default();
                abi::SpanRange::from_bytes(&bytes).ok_or_else(|| SieError::Layout {
                    map: loader::RANGES_MAP.to_owned(),
                    found: bytes.len() as u32,
                    expected: abi::SPAN_RANGE_SIZE,
                })
            })
            .collect()
    }

    pub(super) fn control(&self) -> Result<Control, SieError> {
        let bytes = self
            .control
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| map_error(&self.tunable, "reading", loader::CONTROL_MAP, source))?
            .unwrap_or_default();
        Control::from_bytes(&bytes).ok_or_else(|| SieError::Layout {
            map: loader::CONTROL_MAP.to_owned(),
            found: bytes.len() as u32,
            expected: abi::CONTROL_SIZE,
        })
    }

    pub(super) fn write_control(&self, control: &Control) -> Result<(), SieError> {
        self.control
            .update(&0u32.to_ne_bytes(), &control.to_bytes(), MapFlags::ANY)
            .map_err(|source| map_error(&self.tunable, "writing", loader::CONTROL_MAP, source))
    }

    /// The id the kernelx module knows the tunable by (global mode): its control map's id.
    pub(super) fn key(&self) -> Result<u64, SieError> {
        let info = self.control.info().map_err(|source| {
            map_error(
                &self.tunable,
                "reading the id of",
                loader::CONTROL_MAP,
                source,
            )
        })?;
        Ok(u64::from(info.info.id))
    }

    /// Writes `entries` into the slot of generation `generation`.
    pub(super) fn write_slot(
        &self,
        generation: u64,
        entries: &[ProbeEntry],
    ) -> Result<(), SieError> {
        let base = (generation % abi::SLOTS) as usize * abi::MAX_PROBES;
        loader::write_entries(&self.tunable, &self.probes, base, entries)
    }

    /// One pass of the per-task sweep: the tasks still inside a safe span.
    pub(super) fn sweep(&self) -> Result<Vec<TaskInside>, SieError> {
        let path = self.dir.join(loader::SWEEP_PIN);
        let bytes = fs::read(&path).map_err(|source| SieError::Io {
            tunable: self.tunable.clone(),
            action: "running the task sweep",
            path: path.clone(),
            source,
        })?;
        let records = Inside::parse_all(&bytes).ok_or_else(|| SieError::Layout {
            map: "kx_sweep output".to_owned(),
            found: bytes.len() as u32,
            expected: abi::INSIDE_SIZE,
        })?;
        Ok(records
            .into_iter()
            .map(|r| TaskInside {
                pid: r.pid as u32,
                address: (r.addr != 0).then_some(r.addr),
            })
            .collect())
    }
}

/// The mode a control map records.
pub(super) fn mode_of(tunable: &str, control: &Control) -> Result<Mode, SieError> {
    match control.mode {
        m if m == ModeCode::Immediate as u64 => Ok(Mode::Immediate),
        m if m == ModeCode::PerTask as u64 => Ok(Mode::PerTask),
        m if m == ModeCode::Global as u64 => Ok(Mode::Global),
        other => Err(SieError::Corrupt {
            tunable: tunable.to_owned(),
            what: format!("kx_control.mode is {other}"),
        }),
    }
}

/// The code `kx_control.mode` stores for `mode`.
pub(super) fn mode_code(mode: Mode) -> u64 {
    (match mode {
        Mode::Immediate => ModeCode::Immediate,
        Mode::PerTask => ModeCode::PerTask,
        Mode::Global => ModeCode::Global,
    }) as u64
}

pub(super) fn slot_setting(control: &Control, generation: u64) -> Setting {
    let slot = (generation % abi::SLOTS) as usize;
    let value = control.slot_value[slot];
    match control.slot_kind[slot] {
        k if k == SlotKind::Compiled as u64 => Setting::Compiled,
        k if k == SlotKind::Policy as u64 => Setting::Policy(value),
        _ => Setting::Value(value),
    }
}

/// CLOCK_MONOTONIC in nanoseconds: `kx_control` keeps times any later process compares with.
pub(super) fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Moves the tunable to `to` (whose entries are `entries`), waiting at most `timeout` for a
/// per-task or global transition.
pub(super) fn move_to(
    pinned: &Pinned,
    to: Setting,
    entries: &[ProbeEntry],
    timeout: Duration,
) -> Result<Transition, SieError> {
    let mut control = pinned.control()?;
    let mode = mode_of(&pinned.tunable, &control)?;
    if control.transition == TransitionCode::Pending as u64 {
        let inside = sweep_pending(pinned, true)?;
        control = pinned.control()?;
        let target = slot_setting(&control, control.target_gen);
        if target == to {
            // The pending transition goes where asked: wait for it (again).
            return await_tasks(pinned, mode, to, timeout);
        }
        if !inside.is_empty() && slot_setting(&control, control.stable_gen) != to {
            return Err(SieError::TransitionInProgress {
                tunable: pinned.tunable.clone(),
                target,
                inside,
            });
        }
    }
    let generation = control.target_gen + 1;
    let slot = (generation % abi::SLOTS) as usize;
    pinned.write_slot(generation, entries)?;
    let (value, kind) = match to {
        Setting::Value(v) => (v, SlotKind::Value),
        Setting::Policy(default) => (default, SlotKind::Policy),
        Setting::Compiled => (0, SlotKind::Compiled),
    };
    control.slot_value[slot] = value;
    control.slot_kind[slot] = kind as u64;
    control.started_ns = monotonic_ns();
    control.target_gen = generation;
    match mode {
        Mode::Immediate => {
            control.stable_gen = generation;
            control.transition = TransitionCode::Done as u64;
            control.latency_ns = monotonic_ns() - control.started_ns;
            pinned.write_control(&control)?;
            Ok(Transition {
                mode,
                to,
                outcome: Outcome::Done {
                    latency: Duration::from_nanos(control.latency_ns),
                },
            })
        }
        Mode::PerTask => {
            control.transition = TransitionCode::Pending as u64;
            control.latency_ns = 0;
            pinned.write_control(&control)?;
            await_tasks(pinned, mode, to, timeout)
        }
        Mode::Global => super::global_mode::commit(pinned, control, to, timeout),
    }
}

/// Sweeps until no task is left behind (then records the transition done) or `timeout`.
fn await_tasks(
    pinned: &Pinned,
    mode: Mode,
    to: Setting,
    timeout: Duration,
) -> Result<Transition, SieError> {
    let start = Instant::now();
    loop {
        let inside = sweep_pending(pinned, true)?;
        if inside.is_empty() {
            let control = pinned.control()?;
            return Ok(Transition {
                mode,
                to,
                outcome: Outcome::Done {
                    latency: Duration::from_nanos(control.latency_ns),
                },
            });
        }
        if start.elapsed() >= timeout {
            return Ok(Transition {
                mode,
                to,
                outcome: Outcome::Pending {
                    inside,
                    waited: start.elapsed(),
                },
            });
        }
        thread::sleep(SWEEP_INTERVAL);
    }
}

/// One sweep of a pending per-task transition; records it done when nobody is left behind
/// (only a caller holding the state lock may: `record`). The tasks still inside (none when no
/// transition is pending).
pub(super) fn sweep_pending(pinned: &Pinned, record: bool) -> Result<Vec<TaskInside>, SieError> {
    let control = pinned.control()?;
    if control.transition != TransitionCode::Pending as u64 {
        return Ok(Vec::new());
    }
    match mode_of(&pinned.tunable, &control)? {
        Mode::PerTask => {}
        // A global transition is pending only while a commit runs under the lock; found so by
        // a lock holder, the kernelx that ran it was killed: the module knows how it ended.
        Mode::Global if record => {
            super::global_mode::recover(pinned, control)?;
            return Ok(Vec::new());
        }
        Mode::Global | Mode::Immediate => return Ok(Vec::new()),
    }
    let inside = pinned.sweep()?;
    if inside.is_empty() && record {
        // Re-read: only this process changes control (under the state lock), but the sweep
        // took a while and the record should carry the moment it was seen done.
        let mut control = pinned.control()?;
        control.stable_gen = control.target_gen;
        control.transition = TransitionCode::Done as u64;
        control.latency_ns = monotonic_ns().saturating_sub(control.started_ns);
        pinned.write_control(&control)?;
    }
    Ok(inside)
}

/// The tunable's transition state. A pending per-task transition is swept once; with `record`
/// (the caller holds the state lock) a finished transition is recorded done (or a global one
/// whose kernelx was killed settled from the module). Without, nothing is written: a per-task
/// transition whose sweep finds nobody behind, or a global one the module has activated,
/// reads as done, its latency measured now.
pub(super) fn state(pinned: &Pinned, record: bool) -> Result<TransitionState, SieError> {
    let inside = sweep_pending(pinned, record)?;
    let mut control = pinned.control()?;
    let mode = mode_of(&pinned.tunable, &control)?;
    if !record && control.transition == TransitionCode::Pending as u64 {
        let finished = match mode {
            Mode::PerTask => inside.is_empty(),
            Mode::Global => super::global_mode::active(pinned, &control)? == control.target_gen,
            Mode::Immediate => true,
        };
        if finished {
            control.stable_gen = control.target_gen;
            control.transition = TransitionCode::Done as u64;
            control.latency_ns = monotonic_ns().saturating_sub(control.started_ns);
        }
    }
    let state = match control.transition {
        t if t == TransitionCode::Pending as u64 => TransitionStateCode::Pending,
        t if t == TransitionCode::Aborted as u64 => TransitionStateCode::Aborted,
        _ => TransitionStateCode::Done,
    };
    Ok(TransitionState {
        mode,
        target: slot_setting(&control, control.target_gen),
        previous: slot_setting(&control, control.stable_gen),
        state,
        latency: (state != TransitionStateCode::Pending)
            .then(|| Duration::from_nanos(control.latency_ns)),
        inside,
    })
}
