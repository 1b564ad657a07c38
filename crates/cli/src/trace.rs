//! `kernelx trace`: a line per event of the loaded tunables (or of the ones named) until
//! Ctrl-C, `--duration` or `--count`. Reads the pins and the load records only (no state lock:
//! it changes nothing but its own tunables' trace lease); names probes as `function+offset`
//! from the record's plan.
//!
//! JSON (`--json`): one object per line, a `kernelx_runtime::sie::TraceEvent` (`"event"`:
//! `state`, `trigger`, `task-move`, `transition`, `dropped`) or `{"event": "unloaded"}`, with
//! `"time"` (seconds since the trace started), `"tunable"`, and for triggers the probe's
//! `"function"`, `"offset"`, `"site"` and `"role"`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use kernelx_runtime::sie::{
    ControlState, ProbeRole, Setting, SieProgram, SieRuntime, TraceEvent, TraceSession,
    TransitionStateCode, TriggerOutcome,
};
use kernelx_runtime::state::{self, StateDir};

use crate::args::TraceArgs;

/// How often the sessions are polled (and the tunables rescanned).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Set by SIGINT or SIGTERM: stop at the next poll, dropping the sessions (which clears their
/// leases at once).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Where a probe is, as its lines name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeName {
    pub function: String,
    pub offset: u32,
    pub site: String,
    pub role: ProbeRole,
}

/// A traced tunable.
struct Traced {
    session: TraceSession,
    probes: Vec<ProbeName>,
}

/// Runs `kernelx trace`; the events to `out`, notes (tunables that cannot be traced) to `err`.
pub fn run(args: &TraceArgs, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<()> {
    let runtime = SieRuntime::system();
    let state = StateDir::system();
    for name in &args.tunables {
        if !runtime.is_loaded(name)? {
            bail!(
                "tunable `{name}` is not loaded (nothing pinned at {}): `kernelx status` lists \
                 the loaded ones",
                runtime.dir(name)?.display()
            );
        }
    }
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(
            libc::SIGINT,
            request_stop as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            request_stop as *const () as libc::sighandler_t,
        );
    }
    let start = Instant::now();
    let start_ns = monotonic_ns();
    let mut traced: BTreeMap<String, Traced> = BTreeMap::new();
    let mut noted = BTreeSet::new();
    let mut printed = 0u64;
    let mut emit = |line: String, out: &mut dyn Write| -> anyhow::Result<bool> {
        writeln!(out, "{line}")?;
        printed += 1;
        Ok(args.count.is_some_and(|n| printed >= n))
    };
    loop {
        let gone: Vec<String> = traced
            .iter()
            .filter(|(_, t)| !t.session.is_current())
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            traced.remove(&name);
            if emit(
                unloaded_line(&name, monotonic_ns(), start_ns, args.json),
                out,
            )? {
                return Ok(());
            }
        }
        let wanted = if args.tunables.is_empty() {
            state::pinned_tunables(&runtime)?
        } else {
            args.tunables.clone()
        };
        for name in wanted {
            if traced.contains_key(&name) || !runtime.is_loaded(&name)? {
                continue;
            }
            match open(&runtime, &state, &name)? {
                Some(t) => {
                    traced.insert(name, t);
                }
                None => {
                    if noted.insert(name.clone()) {
                        writeln!(
                            err,
                            "{name}: not traced: it has no load record (a load was \
                             interrupted; `kernelx unload --all` removes it)"
                        )?;
                    }
                }
            }
        }
        for (name, t) in &mut traced {
            let events = t
                .session
                .poll()
                .with_context(|| format!("tracing {name}"))?;
            for event in &events {
                if emit(line(name, &t.probes, event, start_ns, args.json), out)? {
                    return Ok(());
                }
            }
        }
        out.flush()?;
        if STOP.load(Ordering::Relaxed) || args.duration.is_some_and(|d| start.elapsed() >= d) {
            return Ok(());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A session on `name`, with its probes named from its load record; `None` without a record.
fn open(runtime: &SieRuntime, state: &StateDir, name: &str) -> anyhow::Result<Option<Traced>> {
    let record = state.read(name)?;
    let Some(tunable) = record.as_ref().and_then(|r| r.tunable()) else {
        return Ok(None);
    };
    let program = SieProgram::from_plan(tunable)?;
    let probes = program
        .probes()
        .iter()
        .map(|p| ProbeName {
            function: p.function().to_owned(),
            offset: p.offset(),
            site: p.site().to_owned(),
            role: p.role(),
        })
        .collect();
    let session = runtime.trace(name)?;
    Ok(Some(Traced { session, probes }))
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Seconds from `start_ns` to `ktime_ns` (negative for a transition begun before the trace).
fn seconds(ktime_ns: u64, start_ns: u64) -> f64 {
    (i128::from(ktime_ns) - i128::from(start_ns)) as f64 / 1e9
}

fn unloaded_line(tunable: &str, now_ns: u64, start_ns: u64, json: bool) -> String {
    let time = seconds(now_ns, start_ns);
    if json {
        serde_json::json!({"time": time, "tunable": tunable, "event": "unloaded"}).to_string()
    } else {
        format!("{time:>11.6} {tunable}: unloaded")
    }
}

/// The line of `event` of `tunable`, whose probes are `probes`.
pub fn line(
    tunable: &str,
    probes: &[ProbeName],
    event: &TraceEvent,
    start_ns: u64,
    json: bool,
) -> String {
    let time = seconds(event.ktime_ns(), start_ns);
    if json {
        let mut value = serde_json::to_value(event).expect("trace events serialize");
        let object = value.as_object_mut().expect("trace events are objects");
        object.insert("time".to_owned(), time.into());
        object.insert("tunable".to_owned(), tunable.into());
        if let TraceEvent::Trigger(t) = event
            && let Some(p) = probes.get(t.probe)
        {
            object.insert("function".to_owned(), p.function.clone().into());
            object.insert("offset".to_owned(), p.offset.into());
            object.insert("site".to_owned(), p.site.clone().into());
            object.insert("role".to_owned(), role(p.role).into());
        }
        return value.to_string();
    }
    let what = match event {
        TraceEvent::State(s) => format!("state: {}", control(s)),
        TraceEvent::Transition(s) => format!("transition: {}", control(s)),
        TraceEvent::Trigger(t) => {
            let at = probes.get(t.probe).map_or_else(
                || format!("probe #{}", t.probe),
                |p| format!("{}+{:#x} ({})", p.function, p.offset, role(p.role)),
            );
            let outcome = match t.outcome {
                TriggerOutcome::Applied => "applied".to_owned(),
                TriggerOutcome::Failed(errno) => format!("FAILED (errno {errno})"),
                TriggerOutcome::Marked => "marked (entered the span)".to_owned(),
                TriggerOutcome::Skipped => "skipped (path without the pre-probe)".to_owned(),
                TriggerOutcome::Idle => "idle (built-in value)".to_owned(),
            };
            format!(
                "{at} pid {}/{} gen {} {}: {outcome}",
                t.pid,
                t.tid,
                t.generation,
                value(t.setting)
            )
        }
        TraceEvent::TaskMove(m) => format!(
            "task {} moved gen {} -> {} ({}) {}",
            m.tid,
            m.from,
            m.to,
            value(m.setting),
            if m.by_sweep {
                "by a sweep"
            } else {
                "at a trigger"
            }
        ),
        TraceEvent::Dropped { count, .. } => {
            format!("{count} event(s) lost: the ring buffer was full")
        }
    };
    format!("{time:>11.6} {tunable}: {what}")
}

fn role(role: ProbeRole) -> &'static str {
    match role {
        ProbeRole::Pre => "pre",
        ProbeRole::Post => "post",
    }
}

fn value(setting: Option<Setting>) -> String {
    match setting {
        Some(Setting::Value(v)) => format!("value {v}"),
        Some(Setting::Policy(default)) => format!("policy, default {default}"),
        Some(Setting::Compiled) => "built-in value".to_owned(),
        None => "value ? (an older generation)".to_owned(),
    }
}

fn control(s: &ControlState) -> String {
    let state = match s.state {
        TransitionStateCode::Done => "done",
        TransitionStateCode::Pending => "pending",
        TransitionStateCode::Aborted => "aborted",
    };
    let mut text = format!(
        "{} mode, gen {} {}, {state}",
        s.mode.name(),
        s.target_gen,
        value(Some(s.target)),
    );
    if s.stable_gen != s.target_gen {
        text.push_str(&format!(
            "; tasks not moved yet use gen {} {}",
            s.stable_gen,
            value(Some(s.stable))
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use kernelx_runtime::sie::{TaskMove, Trigger};
    use kernelx_runtime::state::Mode;

    use super::*;

    const START: u64 = 1_000_000_000;

    fn probes() -> Vec<ProbeName> {
        vec![ProbeName {
            function: "alloc_pipe_info".to_owned(),
            offset: 0x81,
            site: "fs/pipe.c:alloc_pipe_info+0x7c".to_owned(),
            role: ProbeRole::Post,
        }]
    }

    fn trigger(outcome: TriggerOutcome) -> TraceEvent {
        TraceEvent::Trigger(Trigger {
            ktime_ns: START + 1_500_000_000,
            pid: 40,
            tid: 41,
            probe: 0,
            generation: 1,
            setting: Some(Setting::Value(32)),
            outcome,
        })
    }

    #[test]
    fn a_trigger_line_names_time_probe_task_and_value() {
        let text = line(
            "PIPE_DEF_BUFFERS",
            &probes(),
            &trigger(TriggerOutcome::Applied),
            START,
            false,
        );
        assert_eq!(
            text,
            "   1.500000 PIPE_DEF_BUFFERS: alloc_pipe_info+0x81 (post) pid 40/41 gen 1 value 32: \
             applied"
        );
        let failed = line(
            "T",
            &[],
            &trigger(TriggerOutcome::Failed(-14)),
            START,
            false,
        );
        assert!(
            failed.ends_with("T: probe #0 pid 40/41 gen 1 value 32: FAILED (errno -14)"),
            "{failed}"
        );
    }

    #[test]
    fn json_lines_carry_the_event_and_the_probe() {
        let text = line(
            "PIPE_DEF_BUFFERS",
            &probes(),
            &trigger(TriggerOutcome::Applied),
            START,
            true,
        );
        assert!(!text.contains('\n'), "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["event"], "trigger");
        assert_eq!(json["time"], 1.5);
        assert_eq!(json["tunable"], "PIPE_DEF_BUFFERS");
        assert_eq!(json["function"], "alloc_pipe_info");
        assert_eq!(json["offset"], 0x81);
        assert_eq!(json["role"], "post");
        assert_eq!(json["pid"], 40);
        assert_eq!(json["tid"], 41);
        assert_eq!(json["setting"]["value"], 32);
        assert_eq!(json["outcome"]["kind"], "applied");
        let unloaded: serde_json::Value =
            serde_json::from_str(&unloaded_line("T", START, START, true)).unwrap();
        assert_eq!(unloaded["event"], "unloaded");
    }

    #[test]
    fn transitions_moves_and_losses_read_as_sentences() {
        let state = ControlState {
            ktime_ns: START,
            mode: Mode::PerTask,
            target_gen: 2,
            target: Setting::Value(64),
            stable_gen: 1,
            stable: Setting::Compiled,
            state: TransitionStateCode::Pending,
        };
        assert_eq!(
            line("T", &[], &TraceEvent::Transition(state), START, false),
            "   0.000000 T: transition: per-task mode, gen 2 value 64, pending; tasks not moved \
             yet use gen 1 built-in value"
        );
        let moved = TraceEvent::TaskMove(TaskMove {
            ktime_ns: START + 2_000,
            tid: 7,
            from: 1,
            to: 2,
            setting: None,
            by_sweep: true,
        });
        assert_eq!(
            line("T", &[], &moved, START, false),
            "   0.000002 T: task 7 moved gen 1 -> 2 (value ? (an older generation)) by a sweep"
        );
        let lost = TraceEvent::Dropped {
            ktime_ns: START,
            count: 3,
        };
        assert!(
            line("T", &[], &lost, START, false)
                .ends_with("T: 3 event(s) lost: the ring buffer was full")
        );
    }
}
