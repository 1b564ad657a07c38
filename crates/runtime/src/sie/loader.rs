//! Loading the embedded SIE object with libbpf, attaching it at every probe, and the pinned
//! state under `<root>/<tunable>/`:
//!
//! * `program`: the `kx_sie` program;
//! * `probes`: the `kx_probes` map, what each probe does with IV' for the current V';
//! * `stats`: the `kx_stats` map, per-probe hit and error counters;
//! * `control`: the `kx_control` map, whether the probes act at all;
//! * `link-NNN`: the kprobe link of probe NNN (its index, cookie NNN + 1).
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
use super::abi::{self, PROBE_ENTRY_SIZE, PROBE_STATS_SIZE, ProbeEntry, ProbeStats};
use super::program::{Probe, SieProgram};

/// `bpf/sie.bpf.c`, compiled by build.rs.
const SIE_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/sie.bpf.o"));
pub(super) const PROGRAM: &str = "kx_sie";
pub(super) const PROBES_MAP: &str = "kx_probes";
pub(super) const STATS_MAP: &str = "kx_stats";
pub(super) const CONTROL_MAP: &str = "kx_control";

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
    /// Writing the probe entries.
    pub fill: Duration,
    /// Attaching every probe.
    pub attach: Duration,
    /// Pinning program, maps and links.
    pub pin: Duration,
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

    /// Loads `program` with V' = `value`: all probes attached and pinned, or none. `locate`
    /// says where each probe goes (verified addresses, or `function+offset`).
    ///
    /// Every check that does not need the kernel (the value's range, the tunable's name, an
    /// earlier load) runs before anything is loaded. The probes are attached disarmed and
    /// armed at once when every one of them is attached and pinned (pairs with the
    /// `kx_control` check in `kx_sie`, bpf/sie.bpf.c), so a failed load never tuned anything.
    pub fn load(
        &self,
        program: &SieProgram,
        value: i64,
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
        let entries = program.entries(value)?;
        if !Path::new(KERNELX_MODULE).is_dir() {
            return Err(SieError::ModuleMissing {
                tunable: tunable.to_owned(),
            });
        }
        let mut timings = LoadTimings::default();

        let start = Instant::now();
        let object = open_and_load(tunable)?;
        timings.verify = start.elapsed();

        let start = Instant::now();
        let probes = map_of(tunable, &object, PROBES_MAP, PROBE_ENTRY_SIZE)?;
        map_of(tunable, &object, STATS_MAP, PROBE_STATS_SIZE)?;
        let control = map_of(tunable, &object, CONTROL_MAP, abi::CONTROL_SIZE)?;
        write_entries(tunable, &probes, &entries)?;
        timings.fill = start.elapsed();

        let start = Instant::now();
        let prog = object
            .progs()
            .find(|p| p.name() == PROGRAM)
            .expect("bpf/sie.bpf.c defines kx_sie");
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
        timings.attach = start.elapsed();

        let start = Instant::now();
        let armed = pin_all(tunable, &self.root, &dir, object, &mut links)
            .and_then(|()| set_armed(tunable, &control, true));
        if let Err(e) = armed {
            // The pins made so far would keep the (disarmed) probes alive.
            let _ = remove_pins(tunable, &dir);
            return Err(e);
        }
        timings.pin = start.elapsed();
        Ok(Loaded {
            dir,
            targets,
            timings,
        })
    }

    /// Changes a loaded tunable's value to `value`: the pinned entries are rewritten, one map
    /// update each (pairs with the lookup in `kx_sie`, bpf/sie.bpf.c; see "Races accepted" in
    /// the module docs).
    pub fn set(&self, program: &SieProgram, value: i64) -> Result<(), SieError> {
        let tunable = program.tunable();
        let entries = program.entries(value)?;
        let map = self.pinned_map(tunable, "probes", PROBE_ENTRY_SIZE)?;
        write_entries(tunable, &map, &entries)
    }

    /// The hit and error counters of each probe of a loaded tunable, in probe order.
    pub fn stats(&self, program: &SieProgram) -> Result<Vec<ProbeStats>, SieError> {
        let tunable = program.tunable();
        let map = self.pinned_map(tunable, "stats", PROBE_STATS_SIZE)?;
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

    /// Unloads `tunable`. Its probes stop acting at once: they are disarmed first (pairs with
    /// the `kx_control` check in `kx_sie`, bpf/sie.bpf.c), because the kernel releases a link
    /// whose last pin goes away later, from a workqueue. A probe that saw the program armed
    /// finishes with its unchanged entry, as if it had run just before. Then the links go
    /// (each probe detaches as its last reference goes), then program, maps and directory.
    pub fn unload(&self, tunable: &str) -> Result<(), SieError> {
        let dir = self.dir(tunable)?;
        if !dir.is_dir() {
            return Err(SieError::NotLoaded {
                tunable: tunable.to_owned(),
                dir,
            });
        }
        // A load interrupted before pinning `control` never armed its probes.
        if dir.join("control").exists() {
            let control = self.pinned_map(tunable, "control", abi::CONTROL_SIZE)?;
            set_armed(tunable, &control, false)?;
        }
        remove_pins(tunable, &dir)
    }

    fn pinned_map(
        &self,
        tunable: &str,
        pin: &str,
        value_size: usize,
    ) -> Result<MapHandle, SieError> {
        let dir = self.dir(tunable)?;
        if !dir.is_dir() {
            return Err(SieError::NotLoaded {
                tunable: tunable.to_owned(),
                dir,
            });
        }
        let path = dir.join(pin);
        let map = MapHandle::from_pinned_path(&path)
            .map_err(|source| map_error(tunable, "opening", &path.display().to_string(), source))?;
        check_value_size(&map, value_size)?;
        Ok(map)
    }
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

pub(super) fn write_entries(
    tunable: &str,
    map: &MapHandle,
    entries: &[ProbeEntry],
) -> Result<(), SieError> {
    for (index, entry) in entries.iter().enumerate() {
        map.update(
            &(index as u32).to_ne_bytes(),
            &entry.to_bytes(),
            MapFlags::ANY,
        )
        .map_err(|source| map_error(tunable, "writing", PROBES_MAP, source))?;
    }
    Ok(())
}

/// Arms or disarms every probe of the program `control` belongs to.
pub(super) fn set_armed(tunable: &str, control: &MapHandle, armed: bool) -> Result<(), SieError> {
    control
        .update(
            &0u32.to_ne_bytes(),
            &abi::control_bytes(armed),
            MapFlags::ANY,
        )
        .map_err(|source| map_error(tunable, "writing", CONTROL_MAP, source))
}

fn map_error(tunable: &str, action: &'static str, map: &str, source: libbpf_rs::Error) -> SieError {
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
    let pin_error = |path: &Path| {
        let tunable = tunable.to_owned();
        let path = path.to_owned();
        move |source| SieError::Pin {
            tunable,
            path,
            source,
        }
    };
    for (name, pin) in [
        (PROBES_MAP, "probes"),
        (STATS_MAP, "stats"),
        (CONTROL_MAP, "control"),
    ] {
        let path = dir.join(pin);
        let mut map = object
            .maps_mut()
            .find(|m| m.name() == name)
            .expect("the maps were found before");
        map.pin(&path).map_err(pin_error(&path))?;
    }
    let path = dir.join("program");
    let mut prog = object
        .progs_mut()
        .find(|p| p.name() == PROGRAM)
        .expect("the program was found before");
    prog.pin(&path).map_err(pin_error(&path))?;
    for (index, link) in links.iter_mut().enumerate() {
        let path = dir.join(format!("link-{index:03}"));
        link.pin(&path).map_err(pin_error(&path))?;
    }
    Ok(())
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
