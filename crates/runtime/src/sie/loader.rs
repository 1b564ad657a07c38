//! Loading the embedded SIE object with libbpf, attaching it at every probe, and the pinned
//! state under `<root>/<tunable>/`:
//!
//! * `program`: the `kx_sie` program;
//! * `probes`: the `kx_probes` map, what each probe does with IV', one slot per generation;
//! * `stats`: the `kx_stats` map, per-probe hit and error counters;
//! * `control`: the `kx_control` map: armed, mode, generations, the transitions' record;
//! * `ranges`: the `kx_ranges` map, the safe spans' addresses;
//! * `sweep`: the task iterator link of `kx_sweep` (reading it runs a per-task sweep);
//! * `events`: the `kx_events` ring buffer, triggers and task moves while a trace runs;
//! * `trace`: the `kx_trace` map, the trace lease and the count of dropped events;
//! * `policy-stats`: the `kx_policy_stats` map, what an X-tune policy chose and what its
//!   range refused;
//! * `link-NNN`: the kprobe link of probe NNN (its index, cookie NNN + 1);
//! * with an X-tune policy, its links and parameters (the `policy` module).
//!
//! The links hold the program and the program holds its maps, so the pins are all that keeps
//! a loaded tunable alive: no process needs to stay.

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::time::{Duration, Instant};

use libbpf_rs::libbpf_sys;
use libbpf_rs::{AsRawLibbpf, Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder, Program};

use super::SieError;
use super::abi::{
    self, Control, PROBE_ENTRY_SIZE, PROBE_STATS_SIZE, PolicyStats, ProbeEntry, ProbeStats,
    SpanRange,
};
use super::policy::PolicyLoad;
use super::program::{PolicyBound, Probe, SieProgram};
use super::transition::{self, Pinned, Setting, Transition, TransitionState};
use crate::state::Mode;

/// `bpf/sie.bpf.c`, compiled by build.rs.
const SIE_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sie.bpf.o"));
pub(super) const PROGRAM: &str = "kx_sie";
pub(super) const PROBES_MAP: &str = "kx_probes";
pub(super) const STATS_MAP: &str = "kx_stats";
pub(super) const CONTROL_MAP: &str = "kx_control";
pub(super) const RANGES_MAP: &str = "kx_ranges";
pub(super) const EVENTS_MAP: &str = "kx_events";
pub(super) const TRACE_MAP: &str = "kx_trace";
pub(super) const EVENTS_PIN: &str = "events";
pub(super) const TRACE_PIN: &str = "trace";
pub(super) const POLICY_STATS_MAP: &str = "kx_policy_stats";
pub(super) const POLICY_STATS_PIN: &str = "policy-stats";
const SWEEP_PROGRAM: &str = "kx_sweep";
pub(super) const SWEEP_PIN: &str = "sweep";

/// Present while the kernelx module (kmod/) is loaded.
const KERNELX_MODULE: &str = "/sys/module/kernelx";

/// Where tunables are pinned unless told otherwise.
pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/kernelx";

/// Where a probe goes in the running kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeTarget {
    /// An address the caller resolved and verified (the function's address plus the probe's
    /// offset).
    Address(u64),
    /// `function+offset`, resolved by the kernel's kprobe code (by name: the first symbol of
    /// that name).
    Symbol {
        /// The function's symbol.
        function: String,
        /// The offset in it.
        offset: u32,
    },
}

impl ProbeTarget {
    /// `function+offset` of `probe`, as the plan names them.
    pub fn symbol_of(probe: &Probe) -> ProbeTarget {
        ProbeTarget::Symbol {
            function: probe.function().to_owned(),
            offset: probe.offset(),
        }
    }
}

impl fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeTarget::Address(addr) => write!(f, "{addr:#x}"),
            ProbeTarget::Symbol { function, offset } => write!(f, "{function}+{offset:#x}"),
        }
    }
}

/// How long the phases of a load took.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadTimings {
    /// Opening the object and loading it (the verifier's work).
    pub verify: Duration,
    /// Instructions the verifier processed for the programs (`None` if the kernel does not
    /// say).
    pub verified_insns: Option<u64>,
    /// Writing the probe entries.
    pub fill: Duration,
    /// Attaching every probe.
    pub attach: Duration,
    /// Pinning program, maps and links.
    pub pin: Duration,
}

/// An address range of a safe span in the running kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanAddress {
    /// The span's index in [`SieProgram::spans`].
    pub span: usize,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// How to load a tunable.
#[derive(Clone, Debug)]
pub struct LoadRequest {
    /// V'.
    pub value: i64,
    /// When tasks switch to it (and back on unload).
    pub mode: Mode,
    /// The safe spans' addresses (every range of every span; per-task and global modes wait
    /// for tasks inside them).
    pub spans: Vec<SpanAddress>,
    /// How long a per-task or global transition may take.
    pub timeout: Duration,
    /// An X-tune policy choosing V' per trigger (`value` is then its default).
    pub policy: Option<PolicyLoad>,
}

impl LoadRequest {
    /// V' in immediate mode (which waits for nothing and needs no span addresses).
    pub fn immediate(value: i64) -> LoadRequest {
        LoadRequest {
            value,
            mode: Mode::Immediate,
            spans: Vec::new(),
            timeout: Duration::ZERO,
            policy: None,
        }
    }

    fn tuning(&self) -> Tuning {
        match &self.policy {
            Some(policy) => Tuning::Policy {
                default: self.value,
                bound: policy.bound,
            },
            None => Tuning::Value(self.value),
        }
    }
}

/// What a tunable's generation does: one value, or a policy's choice per trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// V'.
    Value(i64),
    /// An X-tune policy (already attached) chooses; `default` is what it is given.
    Policy {
        /// The policy's default (and the value of a rejected choice).
        default: i64,
        /// What happens to a choice outside the range.
        bound: PolicyBound,
    },
}

impl Tuning {
    /// The generation's record and its entries for `program`.
    fn entries(self, program: &SieProgram) -> Result<(Setting, Vec<ProbeEntry>), SieError> {
        Ok(match self {
            Tuning::Value(v) => (Setting::Value(v), program.entries(v)?),
            Tuning::Policy { default, bound } => (
                Setting::Policy(default),
                program.policy_entries(default, bound)?,
            ),
        })
    }
}

/// A tunable just loaded.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Its pin directory.
    pub dir: PathBuf,
    /// Where each probe went, in the program's probe order.
    pub targets: Vec<ProbeTarget>,
    /// How long the load took.
    pub timings: LoadTimings,
    /// The move from the compiled value to V'.
    pub transition: Transition,
}

/// Loads, changes and unloads tunables pinned under one bpffs directory.
#[derive(Clone, Debug)]
pub struct SieRuntime {
    root: PathBuf,
}

impl SieRuntime {
    /// Pins under `root` (a directory on a bpffs; created when missing).
    pub fn new(root: impl Into<PathBuf>) -> SieRuntime {
        SieRuntime { root: root.into() }
    }

    /// Pins under [`DEFAULT_PIN_ROOT`].
    pub fn system() -> SieRuntime {
        SieRuntime::new(DEFAULT_PIN_ROOT)
    }

    /// The directory holding one pin directory per loaded tunable.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The pin directory of `tunable`.
    pub fn dir(&self, tunable: &str) -> Result<PathBuf, SieError> {
        let plain = !tunable.is_empty()
            && tunable != "."
            && tunable != ".."
            && !tunable.contains(['/', '\0']);
        if !plain {
            return Err(SieError::BadName {
                tunable: tunable.to_owned(),
            });
        }
        Ok(self.root.join(tunable))
    }

    /// Whether `tunable` is loaded (its pin directory exists).
    pub fn is_loaded(&self, tunable: &str) -> Result<bool, SieError> {
        Ok(self.dir(tunable)?.is_dir())
    }

    /// Loads `program` with `request.value`: all probes attached and pinned, or none, then
    /// moves the tasks to the value as `request.mode` says. `locate` says where each probe
    /// goes (verified addresses, or `function+offset`).
    ///
    /// Every check that does not need the kernel (the value's range, the tunable's name, the
    /// spans, an earlier load) runs before anything is loaded. The probes are attached
    /// disarmed and armed at once when every one of them is attached and pinned (pairs with
    /// the `kx_control` check in `kx_sie`, bpf/sie.bpf.c), at a generation that does nothing;
    /// the value then arrives by a transition. A global transition that aborts unloads the
    /// tunable again: nothing was ever tuned. With `request.policy`, the policy's programs are
    /// loaded against the tunable's program and attached before anything is armed, and pinned
    /// with the rest; the transition then goes to a policy generation.
    pub fn load(
        &self,
        program: &SieProgram,
        request: &LoadRequest,
        locate: impl Fn(&Probe) -> ProbeTarget,
    ) -> Result<Loaded, SieError> {
        let tunable = program.tunable();
        let dir = self.dir(tunable)?;
        if dir.exists() {
            return Err(SieError::AlreadyLoaded {
                tunable: tunable.to_owned(),
                dir,
            });
        }
        let (setting, entries) = request.tuning().entries(program)?;
        let ranges = span_ranges(program, &request.spans)?;
        if !Path::new(KERNELX_MODULE).is_dir() {
            return Err(SieError::ModuleMissing {
                tunable: tunable.to_owned(),
            });
        }
        let mut timings = LoadTimings::default();

        let start = Instant::now();
        let object = open_and_load(tunable)?;
        timings.verify = start.elapsed();
        timings.verified_insns = object
            .progs()
            .map(|p| verified_insns(&p))
            .sum::<Option<u64>>();

        let start = Instant::now();
        let probes = map_of(tunable, &object, PROBES_MAP, PROBE_ENTRY_SIZE)?;
        map_of(tunable, &object, STATS_MAP, PROBE_STATS_SIZE)?;
        let control = map_of(tunable, &object, CONTROL_MAP, abi::CONTROL_SIZE)?;
        let ranges_map = map_of(tunable, &object, RANGES_MAP, abi::SPAN_RANGE_SIZE)?;
        map_of(tunable, &object, TRACE_MAP, abi::TRACE_VALUE_SIZE)?;
        write_entries(tunable, &probes, 0, &program.compiled_entries())?;
        for (index, range) in ranges.iter().enumerate() {
            ranges_map
                .update(
                    &(index as u32).to_ne_bytes(),
                    &range.to_bytes(),
                    MapFlags::ANY,
                )
                .map_err(|source| map_error(tunable, "writing", RANGES_MAP, source))?;
        }
        timings.fill = start.elapsed();

        let start = Instant::now();
        let prog = program_of(&object, PROGRAM);
        let mut links = Vec::with_capacity(program.probes().len());
        let mut targets = Vec::with_capacity(program.probes().len());
        for (index, probe) in program.probes().iter().enumerate() {
            let target = locate(probe);
            // An early return drops `links`: the probes attached so far, never armed, detach.
            let link =
                attach(&prog, &target, abi::COOKIE_BASE + index as u64).map_err(|source| {
                    SieError::Attach {
                        tunable: tunable.to_owned(),
                        site: probe.site().to_owned(),
                        role: probe.role(),
                        target: target.clone(),
                        source,
                    }
                })?;
            links.push(link);
            targets.push(target);
        }
        let policy = request
            .policy
            .as_ref()
            .map(|policy| super::policy::load(tunable, policy, &prog))
            .transpose()?;
        let sweep = object
            .progs_mut()
            .find(|p| p.name() == SWEEP_PROGRAM)
            .expect("bpf/sie.bpf.c defines kx_sweep")
            .attach()
            .map_err(|source| SieError::Load {
                tunable: tunable.to_owned(),
                source,
            })?;
        timings.attach = start.elapsed();

        let start = Instant::now();
        let pinned = Pinned::from_maps(tunable, &dir, control, probes);
        let armed = pin_all(tunable, &self.root, &dir, object, &mut links, sweep)
            .and_then(|()| policy.map_or(Ok(()), |p| p.pin(tunable, &dir)))
            .and_then(|()| {
                let key = pinned.key()?;
                pinned.write_control(&Control {
                    armed: 1,
                    mode: transition::mode_code(request.mode),
                    key,
                    ranges: ranges.len() as u64,
                    slot_kind: [abi::SlotKind::Compiled as u64; 2],
                    ..Control::default()
                })
            });
        if let Err(e) = armed {
            // The pins made so far would keep the (disarmed) probes alive.
            let _ = remove_pins(tunable, &dir);
            return Err(e);
        }
        timings.pin = start.elapsed();

        let transition = match transition::move_to(&pinned, setting, &entries, request.timeout) {
            Ok(t) => t,
            Err(e) => {
                // Aborted or failed before any task switched: take the tunable back out.
                let _ = self.detach(tunable);
                return Err(e);
            }
        };
        Ok(Loaded {
            dir,
            targets,
            timings,
            transition,
        })
    }

    /// Changes a loaded tunable's value to `value`: the new entries go into the slot no task
    /// uses, then the tasks move to it as the tunable's mode says (waiting at most `timeout`).
    pub fn set(
        &self,
        program: &SieProgram,
        value: i64,
        timeout: Duration,
    ) -> Result<Transition, SieError> {
        self.retune(program, Tuning::Value(value), timeout)
    }

    /// As [`SieRuntime::set`], for either kind of generation: a tunable loaded with a policy
    /// changes its default with [`Tuning::Policy`].
    pub fn retune(
        &self,
        program: &SieProgram,
        tuning: Tuning,
        timeout: Duration,
    ) -> Result<Transition, SieError> {
        let (setting, entries) = tuning.entries(program)?;
        let pinned = self.pinned(program.tunable())?;
        transition::move_to(&pinned, setting, &entries, timeout)
    }

    /// The transition state of a loaded tunable. A pending per-task transition is swept once
    /// and, when nobody is left behind and `record` (the caller holds the state lock, so no
    /// other change of the tunable is under way), recorded done.
    pub fn transition_state(
        &self,
        tunable: &str,
        record: bool,
    ) -> Result<TransitionState, SieError> {
        transition::state(&self.pinned(tunable)?, record)
    }

    /// The hit and error counters of each probe of a loaded tunable, in probe order.
    pub fn stats(&self, program: &SieProgram) -> Result<Vec<ProbeStats>, SieError> {
        let tunable = program.tunable();
        let map = open_pinned(tunable, &self.dir(tunable)?, "stats", PROBE_STATS_SIZE)?;
        (0..program.probes().len() as u32)
            .map(|index| {
                let value = map
                    .lookup(&index.to_ne_bytes(), MapFlags::ANY)
                    .map_err(|source| map_error(tunable, "reading", STATS_MAP, source))?
                    .unwrap_or_default();
                ProbeStats::from_bytes(&value).ok_or_else(|| SieError::Layout {
                    map: STATS_MAP.to_owned(),
                    found: value.len() as u32,
                    expected: PROBE_STATS_SIZE,
                })
            })
            .collect()
    }

    /// What the X-tune policy of a loaded tunable chose and what its range refused (all
    /// zero without a policy).
    pub fn policy_stats(&self, tunable: &str) -> Result<PolicyStats, SieError> {
        let map = open_pinned(
            tunable,
            &self.dir(tunable)?,
            POLICY_STATS_PIN,
            abi::POLICY_STATS_SIZE,
        )?;
        let value = map
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(|source| map_error(tunable, "reading", POLICY_STATS_MAP, source))?
            .unwrap_or_default();
        PolicyStats::from_bytes(&value).ok_or_else(|| SieError::Layout {
            map: POLICY_STATS_MAP.to_owned(),
            found: value.len() as u32,
            expected: abi::POLICY_STATS_SIZE,
        })
    }

    /// The image of the `.data.kx_params` section of a loaded tunable's policy.
    pub fn policy_params(&self, tunable: &str) -> Result<Vec<u8>, SieError> {
        super::policy::read_params(tunable, &self.dir(tunable)?)
    }

    /// Replaces the image of the policy's `.data.kx_params` section (the policy reads the new
    /// values at its next decision).
    pub fn set_policy_params(&self, tunable: &str, image: &[u8]) -> Result<(), SieError> {
        super::policy::write_params(tunable, &self.dir(tunable)?, image)
    }

    /// Unloads `tunable`: moves it back to the compiled value as its mode says (waiting at
    /// most `timeout`), then detaches it. A per-task transition still waiting, or an aborted
    /// global one, leaves it loaded and says so; [`SieRuntime::detach`] does not wait. `None`:
    /// the load had been interrupted before it armed anything, so it was just detached.
    pub fn unload(
        &self,
        program: &SieProgram,
        timeout: Duration,
    ) -> Result<Option<Transition>, SieError> {
        let tunable = program.tunable();
        if !self.dir(tunable)?.join("control").exists() {
            self.detach(tunable)?;
            return Ok(None);
        }
        let pinned = self.pinned(tunable)?;
        let transition = transition::move_to(
            &pinned,
            Setting::Compiled,
            &program.compiled_entries(),
            timeout,
        )?;
        if let transition::Outcome::Pending { inside, .. } = &transition.outcome {
            return Err(SieError::UnloadPending {
                tunable: tunable.to_owned(),
                inside: inside.clone(),
            });
        }
        self.detach(tunable)?;
        Ok(Some(transition))
    }

    /// Detaches `tunable` at once, whatever its mode (immediate semantics). Its probes stop
    /// acting at once: they are disarmed first (pairs with the `kx_control` check in
    /// `kx_sie`, bpf/sie.bpf.c), because the kernel releases a link whose last pin goes away
    /// later, from a workqueue. A probe that saw the program armed finishes with its
    /// unchanged entry, as if it had run just before. Then the links go (each probe detaches
    /// as its last reference goes), then program, maps and directory. Also clears what a load
    /// killed part-way left.
    pub fn detach(&self, tunable: &str) -> Result<(), SieError> {
        let dir = self.dir(tunable)?;
        if !dir.is_dir() {
            return Err(SieError::NotLoaded {
                tunable: tunable.to_owned(),
                dir,
            });
        }
        // A load interrupted before pinning `control` never armed its probes.
        let mut global = None;
        if dir.join("control").exists() {
            let pinned = self.pinned(tunable)?;
            let mut control = pinned.control()?;
            control.armed = 0;
            pinned.write_control(&control)?;
            if control.mode == abi::ModeCode::Global as u64 {
                global = Some((pinned, control));
            }
        }
        remove_pins(tunable, &dir)?;
        // The module's record of a global tunable goes last: failing to drop it must not
        // keep the probes attached.
        match global {
            Some((pinned, control)) => super::global_mode::forget(&pinned, &control),
            None => Ok(()),
        }
    }

    fn pinned(&self, tunable: &str) -> Result<Pinned, SieError> {
        let dir = self.dir(tunable)?;
        if !dir.is_dir() {
            return Err(SieError::NotLoaded {
                tunable: tunable.to_owned(),
                dir,
            });
        }
        Pinned::open(tunable, &dir)
    }
}

/// The map pinned as `pin` in `dir`, checked to have `value_size`-byte values.
pub(super) fn open_pinned(
    tunable: &str,
    dir: &Path,
    pin: &str,
    value_size: usize,
) -> Result<MapHandle, SieError> {
    let path = dir.join(pin);
    let map = MapHandle::from_pinned_path(&path)
        .map_err(|source| map_error(tunable, "opening", &path.display().to_string(), source))?;
    check_value_size(&map, value_size)?;
    Ok(map)
}

pub(super) fn open_and_load(tunable: &str) -> Result<Object, SieError> {
    let load_error = |source| SieError::Load {
        tunable: tunable.to_owned(),
        source,
    };
    ObjectBuilder::default()
        .open_memory(SIE_OBJECT)
        .map_err(load_error)?
        .load()
        .map_err(load_error)
}

pub(super) fn map_of(
    tunable: &str,
    object: &Object,
    name: &str,
    value_size: usize,
) -> Result<MapHandle, SieError> {
    let map = object
        .maps()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("bpf/sie.bpf.c defines the map {name}"));
    check_value_size(&map, value_size)?;
    MapHandle::try_from(&map)
        .map_err(|source| map_error(tunable, "duplicating the descriptor of", name, source))
}

fn check_value_size(map: &impl MapCore, expected: usize) -> Result<(), SieError> {
    if map.value_size() as usize != expected {
        return Err(SieError::Layout {
            map: map.name().to_string_lossy().into_owned(),
            found: map.value_size(),
            expected,
        });
    }
    Ok(())
}

/// Writes `entries` at `base` onwards in `kx_probes`.
pub(super) fn write_entries(
    tunable: &str,
    map: &MapHandle,
    base: usize,
    entries: &[ProbeEntry],
) -> Result<(), SieError> {
    for (index, entry) in entries.iter().enumerate() {
        map.update(
            &((base + index) as u32).to_ne_bytes(),
            &entry.to_bytes(),
            MapFlags::ANY,
        )
        .map_err(|source| map_error(tunable, "writing", PROBES_MAP, source))?;
    }
    Ok(())
}

pub(super) fn map_error(
    tunable: &str,
    action: &'static str,
    map: &str,
    source: libbpf_rs::Error,
) -> SieError {
    SieError::Map {
        tunable: tunable.to_owned(),
        action,
        map: map.to_owned(),
        source,
    }
}

/// Attaches `prog` as a kprobe at `target` through a BPF link (pinnable), with `cookie`.
fn attach(prog: &Program<'_>, target: &ProbeTarget, cookie: u64) -> io::Result<Link> {
    // libbpf: a NULL name makes `offset` the absolute address.
    let (name, offset) = match target {
        ProbeTarget::Address(addr) => (None, *addr),
        ProbeTarget::Symbol { function, offset } => (
            Some(CString::new(function.as_str()).map_err(io::Error::other)?),
            u64::from(*offset),
        ),
    };
    let opts = libbpf_sys::bpf_kprobe_opts {
        sz: size_of::<libbpf_sys::bpf_kprobe_opts>() as _,
        bpf_cookie: cookie,
        offset,
        retprobe: false,
        attach_mode: libbpf_sys::PROBE_ATTACH_MODE_LINK,
        ..Default::default()
    };
    // SAFETY: the program pointer is live for the call (borrowed from `prog`), the name is a
    // NUL-terminated string or NULL, and the options are a fully initialized struct of the
    // size they claim.
    let link = unsafe {
        libbpf_sys::bpf_program__attach_kprobe_opts(
            prog.as_libbpf_object().as_ptr(),
            name.as_ref().map_or(ptr::null(), |n| n.as_ptr()),
            &opts,
        )
    };
    let link = NonNull::new(link).ok_or_else(io::Error::last_os_error)?;
    // SAFETY: libbpf returned a valid link that nothing else owns.
    Ok(unsafe { Link::from_ptr(link) })
}

fn pin_all(
    tunable: &str,
    root: &Path,
    dir: &Path,
    mut object: Object,
    links: &mut [Link],
    mut sweep: Link,
) -> Result<(), SieError> {
    fs::create_dir_all(root).map_err(io_error(tunable, "creating", root))?;
    // create_dir, not create_dir_all: a concurrent load of the same tunable fails here.
    fs::create_dir(dir).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            SieError::AlreadyLoaded {
                tunable: tunable.to_owned(),
                dir: dir.to_owned(),
            }
        } else {
            io_error(tunable, "creating", dir)(source)
        }
    })?;
    for (name, pin) in [
        (POLICY_STATS_MAP, POLICY_STATS_PIN),
        (PROBES_MAP, "probes"),
        (STATS_MAP, "stats"),
        (CONTROL_MAP, "control"),
        (RANGES_MAP, "ranges"),
        (EVENTS_MAP, EVENTS_PIN),
        (TRACE_MAP, TRACE_PIN),
    ] {
        let path = dir.join(pin);
        let mut map = object
            .maps_mut()
            .find(|m| m.name() == name)
            .expect("the maps were found before");
        map.pin(&path).map_err(pin_error(tunable, &path))?;
    }
    let path = dir.join("program");
    let mut prog = object
        .progs_mut()
        .find(|p| p.name() == PROGRAM)
        .expect("the program was found before");
    prog.pin(&path).map_err(pin_error(tunable, &path))?;
    for (index, link) in links.iter_mut().enumerate() {
        let path = dir.join(format!("link-{index:03}"));
        link.pin(&path).map_err(pin_error(tunable, &path))?;
    }
    let path = dir.join(SWEEP_PIN);
    sweep.pin(&path).map_err(pin_error(tunable, &path))
}

/// The error of pinning `path` of `tunable`.
pub(super) fn pin_error(tunable: &str, path: &Path) -> impl FnOnce(libbpf_rs::Error) -> SieError {
    let tunable = tunable.to_owned();
    let path = path.to_owned();
    move |source| SieError::Pin {
        tunable,
        path,
        source,
    }
}

/// What the kernel reports as the verifier's instruction count for `prog`.
fn verified_insns(prog: &Program<'_>) -> Option<u64> {
    use std::os::fd::{AsFd, AsRawFd};

    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` is a writable bpf_prog_info of the size passed, the fd is the program's.
    let ret = unsafe {
        libbpf_sys::bpf_prog_get_info_by_fd(prog.as_fd().as_raw_fd(), &mut info, &mut len)
    };
    (ret == 0 && info.verified_insns > 0).then_some(u64::from(info.verified_insns))
}

fn program_of<'o>(object: &'o Object, name: &str) -> Program<'o> {
    object
        .progs()
        .find(|p| p.name() == name)
        .unwrap_or_else(|| panic!("bpf/sie.bpf.c defines the program {name}"))
}

/// The `kx_ranges` entries for `spans`, checked against the program's spans.
fn span_ranges(program: &SieProgram, spans: &[SpanAddress]) -> Result<Vec<SpanRange>, SieError> {
    if spans.len() > abi::MAX_RANGES {
        return Err(SieError::TooManySpanRanges {
            tunable: program.tunable().to_owned(),
            ranges: spans.len(),
            max: abi::MAX_RANGES,
        });
    }
    spans
        .iter()
        .map(|s| {
            if s.span >= program.spans().len() || s.start >= s.end {
                return Err(SieError::SpanAddresses {
                    tunable: program.tunable().to_owned(),
                    what: format!(
                        "safe span range {:#x}..{:#x} of span #{} is not a range of the plan's \
                         spans",
                        s.start, s.end, s.span
                    ),
                });
            }
            Ok(SpanRange {
                start: s.start,
                end: s.end,
                span: s.span as u64,
            })
        })
        .collect()
}

/// The error of a file-system `action` on `path` of `tunable`'s pins.
fn io_error(
    tunable: &str,
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> SieError {
    let tunable = tunable.to_owned();
    let path = path.to_owned();
    move |source| SieError::Io {
        tunable,
        action,
        path,
        source,
    }
}

/// Removes the pins in `dir` (links first) and `dir` itself.
fn remove_pins(tunable: &str, dir: &Path) -> Result<(), SieError> {
    let mut pins: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_error(tunable, "listing", dir))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_error(tunable, "listing", dir))?;
    // Links before the program and maps they hold.
    pins.sort_by_key(|p| {
        let is_link = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("link-"));
        (!is_link, p.clone())
    });
    for pin in &pins {
        fs::remove_file(pin).map_err(io_error(tunable, "removing", pin))?;
    }
    fs::remove_dir(dir).map_err(io_error(tunable, "removing", dir))
}
