//! Tracing a loaded tunable (`kernelx trace`): the triggers and per-task moves `kx_sie` and
//! `kx_sweep` write to the pinned `kx_events` ring buffer, and the transitions, which happen in
//! user space or in the kernelx module and are read from `kx_control`.
//!
//! # The switch
//!
//! Writing an event costs every trigger, so the program writes them only while a lease runs:
//! `kx_trace[KX_TRACE_UNTIL]`, a CLOCK_MONOTONIC time the program compares with
//! `bpf_ktime_get_ns()` (bpf/sie.h). A [`TraceSession`] renews it (every quarter lease) while
//! it polls and clears it when dropped; a session killed without dropping stops the events
//! when its lease runs out, [`LEASE`] later. Nothing else turns it on, and an unload removes
//! it with the tunable.
//!
//! A BPF ring buffer has one reader, so a tunable has at most one session: the session holds
//! an exclusive `flock` on the tunable's pin directory (the kernel releases it when the
//! process dies, however), and a second one is refused ([`SieError::TraceBusy`]). That also
//! makes clearing the lease at the end safe: no other session relies on it.

use std::cell::RefCell;
use std::fs::{self, File, TryLockError};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use libbpf_rs::{MapCore as _, MapFlags, MapHandle, RingBuffer, RingBufferBuilder};

use super::SieError;
use super::abi::{self, Action, Control, EventRecord, TransitionCode};
use super::loader::{self, SieRuntime, map_error};
use super::transition::{self, Pinned, Setting, TransitionStateCode, monotonic_ns};
use crate::state::Mode;

/// How long the program keeps writing events after the last renewal (`KX_TRACE_LEASE_NS`).
pub const LEASE: Duration = Duration::from_nanos(abi::TRACE_LEASE_NS);

/// What happened at a trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "errno")]
pub enum TriggerOutcome {
    /// The update was applied: the instruction's result is the one of V'.
    Applied,
    /// The update failed with this negative errno (counted in the probe's errors too).
    Failed(i64),
    /// A pre-probe noted that the task entered its site's span (and saved what the update
    /// needs).
    Marked,
    /// A post-probe at a join point reached on a path that did not pass its pre-probe: left
    /// alone.
    Skipped,
    /// The generation used is the built-in value: the probe does nothing.
    Idle,
}

/// A probe ran.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Trigger {
    /// When (CLOCK_MONOTONIC, ns).
    pub ktime_ns: u64,
    /// The process (thread group) id.
    pub pid: u32,
    /// The thread id.
    pub tid: u32,
    /// The probe's index in the program's probe order.
    pub probe: usize,
    /// The generation of the value it used.
    pub generation: u64,
    /// That generation's value; `None` when it is no longer one of the two the tunable keeps.
    pub setting: Option<Setting>,
    /// What the probe did.
    pub outcome: TriggerOutcome,
}

/// Per-task mode: a task moved to another generation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TaskMove {
    /// When (CLOCK_MONOTONIC, ns).
    pub ktime_ns: u64,
    /// The task's thread id.
    pub tid: u32,
    /// The generation it left.
    pub from: u64,
    /// The generation it moved to.
    pub to: u64,
    /// The value it moved to (`None` as for [`Trigger::setting`]).
    pub setting: Option<Setting>,
    /// Moved by a sweep of every task (`true`) or at one of its own triggers.
    pub by_sweep: bool,
}

/// The tunable's generations and last transition, as `kx_control` holds them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ControlState {
    /// When it was read, or when the transition began (CLOCK_MONOTONIC, ns).
    pub ktime_ns: u64,
    /// The mode.
    pub mode: Mode,
    /// The newest generation.
    pub target_gen: u64,
    /// Its value.
    pub target: Setting,
    /// The generation every task has reached.
    pub stable_gen: u64,
    /// Its value.
    pub stable: Setting,
    /// The last transition's state.
    pub state: TransitionStateCode,
}

/// What a [`TraceSession`] saw, in time order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
pub enum TraceEvent {
    /// The state when the session started.
    State(ControlState),
    /// A probe ran.
    Trigger(Trigger),
    /// A task moved to another generation.
    TaskMove(TaskMove),
    /// The generations or the transition state changed (`ktime_ns`: when the transition
    /// began, or when the previous poll read `kx_control` if that was later, so that a change
    /// seen late never comes before what was printed already).
    Transition(ControlState),
    /// The ring buffer was full: this many events were lost.
    Dropped {
        /// When it was seen (CLOCK_MONOTONIC, ns).
        ktime_ns: u64,
        /// Events lost since the last poll.
        count: u64,
    },
}

impl TraceEvent {
    /// When it happened (CLOCK_MONOTONIC, ns).
    pub fn ktime_ns(&self) -> u64 {
        match self {
            TraceEvent::State(s) | TraceEvent::Transition(s) => s.ktime_ns,
            TraceEvent::Trigger(t) => t.ktime_ns,
            TraceEvent::TaskMove(m) => m.ktime_ns,
            TraceEvent::Dropped { ktime_ns, .. } => *ktime_ns,
        }
    }
}

/// The one reader of a loaded tunable's events; the program writes them while it lives.
pub struct TraceSession {
    tunable: String,
    dir: PathBuf,
    dir_ino: u64,
    // Held for its flock on the pin directory.
    _lock: File,
    pinned: Pinned,
    trace: MapHandle,
    // Held: the ring buffer reads the map's memory.
    _events: MapHandle,
    ring: RingBuffer<'static>,
    records: Rc<RefCell<Vec<Result<EventRecord, usize>>>>,
    last: Option<Control>,
    // When `last` was read (CLOCK_MONOTONIC, ns).
    last_ns: u64,
    dropped: u64,
    renewed: Option<Instant>,
}

impl std::fmt::Debug for TraceSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSession")
            .field("tunable", &self.tunable)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SieRuntime {
    /// Starts tracing `tunable`: the program writes its triggers and task moves from the first
    /// [`TraceSession::poll`] on, until the session is dropped.
    pub fn trace(&self, tunable: &str) -> Result<TraceSession, SieError> {
        let dir = self.dir(tunable)?;
        if !dir.is_dir() {
            return Err(SieError::NotLoaded {
                tunable: tunable.to_owned(),
                dir,
            });
        }
        let io_error = |action: &'static str| {
            let (tunable, path) = (tunable.to_owned(), dir.clone());
            move |source| SieError::Io {
                tunable,
                action,
                path,
                source,
            }
        };
        let lock = File::open(&dir).map_err(io_error("opening"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(SieError::TraceBusy {
                    tunable: tunable.to_owned(),
                });
            }
            Err(TryLockError::Error(source)) => return Err(io_error("locking")(source)),
        }
        let dir_ino = lock.metadata().map_err(io_error("reading"))?.ino();
        let events_path = dir.join(loader::EVENTS_PIN);
        if !events_path.exists() {
            return Err(SieError::NotTraceable {
                tunable: tunable.to_owned(),
            });
        }
        let pinned = Pinned::open(tunable, &dir)?;
        let trace = loader::open_pinned(tunable, &dir, loader::TRACE_PIN, abi::TRACE_VALUE_SIZE)?;
        let events = MapHandle::from_pinned_path(&events_path).map_err(|source| {
            map_error(
                tunable,
                "opening",
                &events_path.display().to_string(),
                source,
            )
        })?;
        let records = Rc::new(RefCell::new(Vec::new()));
        let sink = Rc::clone(&records);
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&events, move |bytes: &[u8]| {
                sink.borrow_mut()
                    .push(EventRecord::parse(bytes).ok_or(bytes.len()));
                0
            })
            .map_err(|source| map_error(tunable, "reading", loader::EVENTS_MAP, source))?;
        let ring = builder
            .build()
            .map_err(|source| map_error(tunable, "reading", loader::EVENTS_MAP, source))?;
        let mut session = TraceSession {
            tunable: tunable.to_owned(),
            dir,
            dir_ino,
            _lock: lock,
            pinned,
            trace,
            _events: events,
            ring,
            records,
            last: None,
            last_ns: 0,
            dropped: 0,
            renewed: None,
        };
        session.dropped = session.read_trace(abi::TRACE_DROPPED)?;
        Ok(session)
    }

    /// How long the program still writes `tunable`'s events without a renewal of the lease;
    /// `None` when it writes none.
    pub fn trace_lease(&self, tunable: &str) -> Result<Option<Duration>, SieError> {
        let dir = self.dir(tunable)?;
        let map = loader::open_pinned(tunable, &dir, loader::TRACE_PIN, abi::TRACE_VALUE_SIZE)?;
        let until = read_u64(tunable, &map, abi::TRACE_UNTIL)?;
        Ok(until
            .checked_sub(monotonic_ns())
            .filter(|&left| left > 0)
            .map(Duration::from_nanos))
    }
}

impl TraceSession {
    /// The traced tunable.
    pub fn tunable(&self) -> &str {
        &self.tunable
    }

    /// Whether the tunable is still the one this session opened (not unloaded, nor unloaded
    /// and loaded again).
    pub fn is_current(&self) -> bool {
        fs::metadata(&self.dir).is_ok_and(|m| m.ino() == self.dir_ino)
    }

    /// Renews the lease when due, and returns what happened since the last call, in time
    /// order: the state at the first call, then triggers, task moves, transitions and lost
    /// events.
    pub fn poll(&mut self) -> Result<Vec<TraceEvent>, SieError> {
        // Before the lease starts: the first state comes before every event.
        let started = monotonic_ns();
        if self.renewed.is_none_or(|t| t.elapsed() >= LEASE / 4) {
            self.write_trace(abi::TRACE_UNTIL, monotonic_ns() + abi::TRACE_LEASE_NS)?;
            self.renewed = Some(Instant::now());
        }
        self.ring
            .consume()
            .map_err(|source| map_error(&self.tunable, "reading", loader::EVENTS_MAP, source))?;
        let records = std::mem::take(&mut *self.records.borrow_mut());
        // Read after the events: every generation they used is at most its target.
        let control = self.pinned.control()?;
        let read_ns = monotonic_ns();
        let mut events = Vec::with_capacity(records.len() + 2);
        for record in records {
            let record = record.map_err(|found| SieError::Layout {
                map: loader::EVENTS_MAP.to_owned(),
                found: found as u32,
                expected: abi::TRIGGER_EVENT_SIZE,
            })?;
            events.push(event_of(&record, &control));
        }
        match &self.last {
            None => events.push(TraceEvent::State(self.control_state(&control, started)?)),
            Some(last) if changed(last, &control) => {
                let state = self.control_state(&control, control.started_ns.max(self.last_ns))?;
                events.push(TraceEvent::Transition(state));
            }
            Some(_) => {}
        }
        self.last = Some(control);
        self.last_ns = read_ns;
        let dropped = self.read_trace(abi::TRACE_DROPPED)?;
        if dropped > self.dropped {
            events.push(TraceEvent::Dropped {
                ktime_ns: monotonic_ns(),
                count: dropped - self.dropped,
            });
            self.dropped = dropped;
        }
        events.sort_by_key(TraceEvent::ktime_ns);
        Ok(events)
    }

    fn control_state(&self, control: &Control, ktime_ns: u64) -> Result<ControlState, SieError> {
        Ok(ControlState {
            ktime_ns,
            mode: transition::mode_of(&self.tunable, control)?,
            target_gen: control.target_gen,
            target: transition::slot_setting(control, control.target_gen),
            stable_gen: control.stable_gen,
            stable: transition::slot_setting(control, control.stable_gen),
            state: match control.transition {
                t if t == TransitionCode::Pending as u64 => TransitionStateCode::Pending,
                t if t == TransitionCode::Aborted as u64 => TransitionStateCode::Aborted,
                _ => TransitionStateCode::Done,
            },
        })
    }

    fn read_trace(&self, index: u32) -> Result<u64, SieError> {
        read_u64(&self.tunable, &self.trace, index)
    }

    fn write_trace(&self, index: u32, value: u64) -> Result<(), SieError> {
        self.trace
            .update(&index.to_ne_bytes(), &value.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| map_error(&self.tunable, "writing", loader::TRACE_MAP, source))
    }
}

impl Drop for TraceSession {
    fn drop(&mut self) {
        // The only session (the flock): nobody else needs the events. Should this fail, the
        // lease runs out on its own.
        let _ = self.write_trace(abi::TRACE_UNTIL, 0);
    }
}

/// Entry `index` of `tunable`'s `kx_trace` map.
fn read_u64(tunable: &str, map: &MapHandle, index: u32) -> Result<u64, SieError> {
    let bytes = map
        .lookup(&index.to_ne_bytes(), MapFlags::ANY)
        .map_err(|source| map_error(tunable, "reading", loader::TRACE_MAP, source))?
        .unwrap_or_default();
    let bytes: [u8; 8] = bytes.try_into().map_err(|b: Vec<u8>| SieError::Layout {
        map: loader::TRACE_MAP.to_owned(),
        found: b.len() as u32,
        expected: abi::TRACE_VALUE_SIZE,
    })?;
    Ok(u64::from_ne_bytes(bytes))
}

/// Whether a transition happened between two reads of `kx_control`.
fn changed(before: &Control, after: &Control) -> bool {
    (
        before.target_gen,
        before.stable_gen,
        before.transition,
        before.started_ns,
    ) != (
        after.target_gen,
        after.stable_gen,
        after.transition,
        after.started_ns,
    )
}

/// The value of `generation`, if `control` (read after it was used) still holds it: a slot is
/// reused two generations later.
fn setting_of(control: &Control, generation: u64) -> Option<Setting> {
    (generation <= control.target_gen && generation + 1 >= control.target_gen)
        .then(|| transition::slot_setting(control, generation))
}

fn event_of(record: &EventRecord, control: &Control) -> TraceEvent {
    match *record {
        EventRecord::Trigger(t) => TraceEvent::Trigger(Trigger {
            ktime_ns: t.ktime_ns,
            pid: (t.pid_tgid >> 32) as u32,
            tid: t.pid_tgid as u32,
            probe: t.probe as usize,
            generation: t.generation,
            setting: setting_of(control, t.generation),
            outcome: match t.action {
                0 => TriggerOutcome::Idle,
                a if a == Action::Mark as u64 || a == Action::SaveReg as u64 => {
                    TriggerOutcome::Marked
                }
                _ if t.skipped != 0 => TriggerOutcome::Skipped,
                _ if t.result != 0 => TriggerOutcome::Failed(t.result),
                _ => TriggerOutcome::Applied,
            },
        }),
        EventRecord::Move(m) => TraceEvent::TaskMove(TaskMove {
            ktime_ns: m.ktime_ns,
            tid: m.pid as u32,
            from: m.from_gen,
            to: m.to_gen,
            setting: setting_of(control, m.to_gen),
            by_sweep: m.sweep != 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sie::abi::{MoveRecord, TriggerRecord};

    fn control(target_gen: u64, stable_gen: u64) -> Control {
        // Generation 3 (slot 1) is 64, generation 2 (slot 0) is the built-in value.
        Control {
            armed: 1,
            target_gen,
            stable_gen,
            slot_value: [0, 64],
            slot_kind: [1, 0],
            ..Control::default()
        }
    }

    fn trigger(generation: u64, action: Action, skipped: u64, result: i64) -> EventRecord {
        EventRecord::Trigger(TriggerRecord {
            ktime_ns: 10,
            pid_tgid: 100 << 32 | 101,
            probe: 2,
            generation,
            action: action as u64,
            skipped,
            result,
        })
    }

    #[test]
    fn generations_resolve_while_their_slot_holds_them() {
        let c = control(3, 2);
        assert_eq!(setting_of(&c, 3), Some(Setting::Value(64)));
        assert_eq!(setting_of(&c, 2), Some(Setting::Compiled));
        assert_eq!(setting_of(&c, 1), None, "slot 1 was reused by generation 3");
        assert_eq!(setting_of(&c, 4), None, "not written yet");
    }

    #[test]
    fn triggers_say_what_the_probe_did() {
        let c = control(3, 3);
        let outcome = |record| match event_of(&record, &c) {
            TraceEvent::Trigger(t) => {
                assert_eq!((t.pid, t.tid, t.probe), (100, 101, 2));
                (t.setting, t.outcome)
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            outcome(trigger(3, Action::LoadReg, 0, 0)),
            (Some(Setting::Value(64)), TriggerOutcome::Applied)
        );
        assert_eq!(
            outcome(trigger(3, Action::CompareMem, 0, -14)).1,
            TriggerOutcome::Failed(-14)
        );
        assert_eq!(
            outcome(trigger(3, Action::CombineReg, 1, 0)).1,
            TriggerOutcome::Skipped
        );
        assert_eq!(
            outcome(trigger(3, Action::SaveReg, 0, 0)).1,
            TriggerOutcome::Marked
        );
        let idle = EventRecord::Trigger(TriggerRecord {
            action: 0,
            ..match trigger(2, Action::Mark, 0, 0) {
                EventRecord::Trigger(t) => t,
                EventRecord::Move(_) => unreachable!(),
            }
        });
        assert_eq!(
            outcome(idle),
            (Some(Setting::Compiled), TriggerOutcome::Idle)
        );
    }

    #[test]
    fn moves_name_the_value_moved_to() {
        let record = EventRecord::Move(MoveRecord {
            ktime_ns: 5,
            pid: 7,
            from_gen: 2,
            to_gen: 3,
            sweep: 1,
        });
        assert_eq!(
            event_of(&record, &control(3, 2)),
            TraceEvent::TaskMove(TaskMove {
                ktime_ns: 5,
                tid: 7,
                from: 2,
                to: 3,
                setting: Some(Setting::Value(64)),
                by_sweep: true,
            })
        );
    }

    #[test]
    fn a_transition_is_a_change_of_generations_or_state() {
        let before = control(3, 3);
        assert!(!changed(&before, &before.clone()));
        assert!(changed(&before, &control(4, 3)));
        let aborted = Control {
            transition: TransitionCode::Aborted as u64,
            ..before
        };
        assert!(changed(&before, &aborted));
        // An aborted global transition retried to the same generation numbers.
        let retried = Control {
            started_ns: 99,
            ..aborted
        };
        assert!(changed(&aborted, &retried));
    }

    #[test]
    fn events_serialize_with_their_kind() {
        let json =
            serde_json::to_value(event_of(&trigger(3, Action::LoadReg, 0, 0), &control(3, 3)))
                .unwrap();
        assert_eq!(json["event"], "trigger");
        assert_eq!(
            json["setting"],
            serde_json::json!({"kind": "value", "value": 64})
        );
        assert_eq!(json["outcome"], serde_json::json!({"kind": "applied"}));
        let failed = serde_json::to_value(TriggerOutcome::Failed(-22)).unwrap();
        assert_eq!(failed, serde_json::json!({"kind": "failed", "errno": -22}));
    }
}
