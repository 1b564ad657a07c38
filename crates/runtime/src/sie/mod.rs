//! Scoped Indirect Execution: the BPF program that applies a tunable's updates at its probe
//! sites, and its loader.
//!
//! # Overview
//!
//! * [`SieProgram`]: a tunable's plan turned into [`Probe`]s (a post-probe per site, and a
//!   pre-probe where the post-probe sits at a join point or the update needs a register the
//!   span destroys), refused as a whole when any site needs an update this runtime cannot
//!   apply yet.
//!
//! A saving pre-probe keeps the register per task, in task storage by site, with the stack
//! pointer it ran at; its post-probe uses the value only at that same stack pointer and does
//! nothing otherwise, so an interrupt passing the same site cannot hand over its value.
//! * [`SieRuntime`]: loads the embedded program for a [`SieProgram`] at a value V' in a
//!   consistency mode ([`SieRuntime::load`]), changes V' ([`SieRuntime::set`]), reads per-probe
//!   counters ([`SieRuntime::stats`]) and the transition state, and unloads
//!   ([`SieRuntime::unload`], or [`SieRuntime::detach`] at once); the state lives in pinned
//!   objects under `/sys/fs/bpf/kernelx/<tunable>/`, so any later process finds it.
//! * [`TraceSession`] ([`SieRuntime::trace`]): a loaded tunable's triggers and per-task moves
//!   from a ring buffer the program writes only while a session's lease runs, and its
//!   transitions from `kx_control`.
//!
//! # Design
//!
//! ```text
//! plan ──SieProgram::from_plan──► probes ──entries(V')──► kx_probes map (IV' per probe)
//!                                    │                          ▲
//!                                    └──attach(cookie = 1 + i)──┘ one program, every site
//! ```
//!
//! `bpf/sie.bpf.c` (compiled by build.rs, embedded here) is attached once per probe with the
//! probe's index in its attach cookie; it looks up what to do in the `kx_probes` array map and
//! calls the kernelx module's kfuncs (`kmod/kernelx.c`), which write only the probed context's
//! registers, arithmetic flags or just-stored memory. IV' is computed here from V' and the
//! plan's relation, so a value change is a map write.
//!
//! `kx_probes` has two slots of entries; generation `g` of the value uses slot `g % 2`. A new
//! value is written into the slot no task uses, then tasks move to its generation as the mode
//! says (the `transition` module): immediate (a write of the target generation), per-task
//! (each task at a trigger outside every safe span, plus sweeps of all task stacks), global
//! (the kernelx module activates it with every CPU stopped when no task is inside a safe span).
//!
//! # Example
//!
//! ```no_run
//! use kernelx_plan::Plan;
//! use std::time::Duration;
//!
//! use kernelx_runtime::sie::{LoadRequest, ProbeTarget, SieProgram, SieRuntime};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let plan = Plan::read("pipe_def_buffers.plan.json")?;
//! let program = SieProgram::from_plan(&plan.tunables[0])?;
//! let runtime = SieRuntime::system();
//! // Needs root and the kernelx module; real callers pass verified addresses (and, for the
//! // per-task and global modes, the safe spans' addresses: targets::verified_spans).
//! let loaded = runtime.load(&program, &LoadRequest::immediate(32), ProbeTarget::symbol_of)?;
//! println!("pinned under {}", loaded.dir.display());
//! runtime.set(&program, 64, Duration::ZERO)?; // a map write: no reload
//! runtime.unload(&program, Duration::ZERO)?;
//! # Ok(())
//! # }
//! ```
//!
//! # Races accepted
//!
//! * A trigger that read the generation just before a switch finishes with the old slot. Two
//!   value changes in immediate mode within that moment rewrite the slot it reads; a per-task
//!   or global change waits for its transition to finish first.
//! * Per-task: a task's frames are read with the kernel's unwinder (`bpf_get_stack` at a
//!   trigger, `bpf_get_task_stack` in a sweep); a task running on another CPU cannot be read
//!   and counts as inside until a later sweep or its own trigger. A probe's own safe span does
//!   not count at its own instruction pointer (a site re-entered from a loop whose span still
//!   holds the previous iteration's value would switch there). A value returned to a caller
//!   leaves the span (the spans are per function).
//! * Pre-probe marks live in task storage. A site reached in interrupt context marks (and
//!   checks) the interrupted task; pre- and post-probe sit a few instructions apart in the
//!   same function, so an interrupt between them reaching the same site is not a case the
//!   plans have. When the kernel cannot hand out the task's storage (recursion guard, no
//!   memory), the pre-probe cannot mark and that one execution keeps the old value; a policy
//!   trigger without its task's storage uses the generation's default (in range, but not the
//!   value the policy may have chosen earlier in the same span).
//! * Policies: a task's choice is checked with one stack walk per trigger of a policy
//!   generation (the same check a per-task move makes), also at the probes that then reuse
//!   the choice.
//! * The kernel copies a map value with memcpy, so a probe may read an entry while `set`
//!   rewrites it. Only `value` differs between the two entries, and x86 writes an aligned
//!   u64 at once in practice, but nothing promises it: an mmapped map written with one
//!   atomic store would.
//! * The kernel detaches a link whose last reference went away from a workqueue, a moment
//!   after `unload` returns; the probes are disarmed before that (`kx_control`), so they do
//!   nothing meanwhile.

//! # Minimum kernel version
//!
//! Kprobe programs calling module kfuncs (`BTF_KFUNC_HOOK_KPROBE`, see the crate docs), attach
//! cookies for kprobes (Linux 5.15) and BPF links for perf-event kprobes (5.15), which is what
//! makes a probe pinnable.

mod abi;
mod global_mode;
mod loader;
mod policy;
mod program;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
mod trace;
mod transition;

use std::io;
use std::path::PathBuf;

use kernelx_plan::{OutOfRange, TunableOutOfRange};

pub use abi::{PolicyStats, ProbeStats};
pub use loader::{
    DEFAULT_PIN_ROOT, LoadRequest, LoadTimings, Loaded, ProbeTarget, SieRuntime, SpanAddress,
    Tuning,
};
pub use policy::PolicyLoad;
pub use program::{PolicyBound, Probe, ProbeRole, ProgramSpan, SieProgram};
pub use trace::{
    ControlState, LEASE as TRACE_LEASE, TaskMove, TraceEvent, TraceSession, Trigger, TriggerOutcome,
};
pub use transition::{
    Outcome, Setting, TaskInside, Transition, TransitionState, TransitionStateCode,
};

/// Why a tunable could not be loaded, changed or unloaded. Each names the tunable and, where
/// there is one, the site or file at fault. A failed operation leaves nothing attached that
/// was not attached before.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SieError {
    /// The plan lists no site for the tunable.
    #[error("tunable '{tunable}' has no sites in its plan: there is nothing to load")]
    NoSites {
        /// The tunable.
        tunable: String,
    },
    /// A site needs an update this runtime does not apply yet.
    #[error(
        "tunable '{tunable}' cannot be loaded: site {site}: {what}; nothing was loaded (all \
         sites or none)"
    )]
    Unsupported {
        /// The tunable.
        tunable: String,
        /// The site's id.
        site: String,
        /// What it needs.
        what: String,
    },
    /// A site an X-tune policy cannot drive.
    #[error(
        "tunable '{tunable}' cannot take a policy: site {site}: {what}; nothing was loaded \
         (`--value V` loads one fixed value)"
    )]
    PolicyUnsupported {
        /// The tunable.
        tunable: String,
        /// The site's id.
        site: String,
        /// Why.
        what: String,
    },
    /// A policy object the kernel or libbpf refused, or one without a policy in it.
    #[error(
        "tunable '{tunable}': the policy {source_file} cannot be loaded: {what}; nothing was \
         loaded"
    )]
    Policy {
        /// The tunable.
        tunable: String,
        /// The policy's source file.
        source_file: String,
        /// What went wrong.
        what: String,
    },
    /// `set --param` on a tunable whose policy has no parameters (or that has no policy).
    #[error(
        "tunable '{tunable}' has no policy parameters: only a policy loaded with `--policy` \
         that declares KX_PARAM(...) has them"
    )]
    NoPolicyParams {
        /// The tunable.
        tunable: String,
    },
    /// More probes than the program's map holds.
    #[error("tunable '{tunable}' needs {probes} probes; the SIE program holds at most {max}")]
    TooManyProbes {
        /// The tunable.
        tunable: String,
        /// Probes needed.
        probes: usize,
        /// The map's size.
        max: usize,
    },
    /// The safe spans have more address ranges than the program's map holds.
    #[error(
        "tunable '{tunable}': its safe spans have {ranges} address ranges; the SIE program \
         holds at most {max}"
    )]
    TooManySpanRanges {
        /// The tunable.
        tunable: String,
        /// Ranges needed.
        ranges: usize,
        /// The map's size.
        max: usize,
    },
    /// V' is outside the tunable's valid range. (The reason is in the message, not chained as
    /// a source: a report that prints causes would say it twice.)
    #[error("tunable '{tunable}': {reason}")]
    OutOfRange {
        /// The tunable.
        tunable: String,
        /// The range and the bound that rejects the value.
        reason: TunableOutOfRange,
    },
    /// A site's relation cannot produce IV' for V' (inside the tunable's range: a plan bug).
    #[error("tunable '{tunable}', site {site}: {reason}")]
    SiteOutOfRange {
        /// The tunable.
        tunable: String,
        /// The site.
        site: String,
        /// Why.
        reason: OutOfRange,
    },
    /// The tunable's name cannot be a directory name.
    #[error("tunable name '{tunable}' cannot name a pin directory (it must be a plain file name)")]
    BadName {
        /// The name.
        tunable: String,
    },
    /// The tunable is loaded already.
    #[error("tunable '{tunable}' is already loaded ({}): unload it first", dir.display())]
    AlreadyLoaded {
        /// The tunable.
        tunable: String,
        /// Its pin directory.
        dir: PathBuf,
    },
    /// The tunable is not loaded.
    #[error("tunable '{tunable}' is not loaded (no {})", dir.display())]
    NotLoaded {
        /// The tunable.
        tunable: String,
        /// Where its pins would be.
        dir: PathBuf,
    },
    /// The kernelx module, whose kfuncs the program calls, is not loaded.
    #[error(
        "tunable '{tunable}' cannot be loaded: the kernelx module is not loaded (build kmod/ \
         and `insmod kmod/build/kernelx.ko current_kprobe_addr=0x<current_kprobe in \
         /proc/kallsyms>`)"
    )]
    ModuleMissing {
        /// The tunable.
        tunable: String,
    },
    /// libbpf could not open or load the program (the verifier's log went to stderr).
    #[error("loading the SIE program for tunable '{tunable}' failed: {source}")]
    Load {
        /// The tunable.
        tunable: String,
        /// libbpf's error.
        source: libbpf_rs::Error,
    },
    /// The embedded object does not match the loader's layout (a build problem).
    #[error(
        "the embedded SIE object's map {map} has {found}-byte values, the loader writes \
         {expected}: bpf/sie.h and crates/runtime/src/sie/abi.rs disagree"
    )]
    Layout {
        /// The map.
        map: String,
        /// Its value size.
        found: u32,
        /// What the loader expects.
        expected: usize,
    },
    /// A probe could not be attached; everything attached before it was detached.
    #[error(
        "tunable '{tunable}': attaching the {role:?}-probe of site {site} at {target} failed: \
         {source}; nothing of the tunable stays attached"
    )]
    Attach {
        /// The tunable.
        tunable: String,
        /// The site.
        site: String,
        /// Pre or post.
        role: ProbeRole,
        /// Where.
        target: ProbeTarget,
        /// The kernel's error.
        source: io::Error,
    },
    /// A map operation failed.
    #[error("tunable '{tunable}': {action} map {map}: {source}")]
    Map {
        /// The tunable.
        tunable: String,
        /// What was done.
        action: &'static str,
        /// The map (or its pin).
        map: String,
        /// libbpf's error.
        source: libbpf_rs::Error,
    },
    /// Pinning an object failed; the tunable was unloaded again.
    #[error(
        "tunable '{tunable}': pinning {}: {source}; the tunable was unloaded again",
        path.display()
    )]
    Pin {
        /// The tunable.
        tunable: String,
        /// The pin's path.
        path: PathBuf,
        /// libbpf's error.
        source: libbpf_rs::Error,
    },
    /// A pinned map holds what no loader writes.
    #[error(
        "tunable '{tunable}': its pinned state is not what kernelx wrote ({what}); \
         `kernelx unload --force {tunable}` detaches it"
    )]
    Corrupt {
        /// The tunable.
        tunable: String,
        /// What is wrong.
        what: String,
    },
    /// A per-task transition is still waiting for tasks inside a safe span, and the request
    /// would need a third generation.
    #[error(
        "tunable '{tunable}': the transition to {target} is still waiting for {} task(s) \
         inside a safe span (first: pid {}); nothing was changed: wait for them to leave \
         (`kernelx status` shows them), or unload",
        inside.len(),
        inside.first().map_or(0, |t| t.pid)
    )]
    TransitionInProgress {
        /// The tunable.
        tunable: String,
        /// Where the pending transition goes.
        target: Setting,
        /// The tasks it waits for.
        inside: Vec<TaskInside>,
    },
    /// The way back of a per-task unload still waits for tasks inside a safe span: the
    /// tunable stays loaded, moving back as they leave.
    #[error(
        "tunable '{tunable}' stays loaded: {} task(s) inside a safe span still use its value \
         (first: pid {}); the others already use the built-in value, and these move back as \
         they leave. Run `kernelx unload {tunable}` again later, or `kernelx unload --force \
         {tunable}` to detach at once",
        inside.len(),
        inside.first().map_or(0, |t| t.pid)
    )]
    UnloadPending {
        /// The tunable.
        tunable: String,
        /// The tasks it waits for.
        inside: Vec<TaskInside>,
    },
    /// A global transition found no moment with no task inside a safe span before its
    /// timeout: nobody switched.
    #[error(
        "tunable '{tunable}': global transition to {to} aborted after {attempts} attempts in \
         {waited:?}: a task stayed inside a safe span{}; the old value stays",
        blocker.map_or(String::new(), |b| format!(" (pid {}{})", b.pid,
            b.address.map_or(String::new(), |a| format!(" at {a:#x}"))))
    )]
    Aborted {
        /// The tunable.
        tunable: String,
        /// Where it was going.
        to: Setting,
        /// A task inside at the last attempt.
        blocker: Option<TaskInside>,
        /// Attempts made.
        attempts: u64,
        /// Time spent.
        waited: std::time::Duration,
    },
    /// The kernelx module's global-consistency interface failed.
    #[error("tunable '{tunable}': global mode: {source}")]
    Global {
        /// The tunable.
        tunable: String,
        /// The module interface's error.
        source: crate::global::GlobalError,
    },
    /// The safe span addresses given to a load do not fit the program.
    #[error("tunable '{tunable}': {what}; nothing was loaded")]
    SpanAddresses {
        /// The tunable.
        tunable: String,
        /// What is wrong.
        what: String,
    },
    /// Another trace session reads the tunable's events.
    #[error(
        "tunable '{tunable}' is traced by another `kernelx trace` already (its events have one \
         reader): stop that one, or trace other tunables"
    )]
    TraceBusy {
        /// The tunable.
        tunable: String,
    },
    /// The tunable was loaded without the trace ring buffer.
    #[error(
        "tunable '{tunable}' was loaded by a kernelx without tracing (no events pinned): \
         `kernelx unload {tunable}` and load it again to trace it"
    )]
    NotTraceable {
        /// The tunable.
        tunable: String,
    },
    /// A file operation on the pin directory failed.
    #[error("tunable '{tunable}': {action} {}: {source}", path.display())]
    Io {
        /// The tunable.
        tunable: String,
        /// What was done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}
