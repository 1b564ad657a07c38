//! Global consistency: the kernelx module's `/dev/kernelx`, which switches a tunable to a new
//! generation for every task at once, at a moment when no task is inside its safe spans.
//!
//! A tunable in global mode reads its active generation in its probes with the kfunc
//! `kernelx_active_gen(key)` (the key is the id of the tunable's `kx_control` map). A commit
//! ([`GlobalControl::try_commit`]) asks the module to stop every CPU (`stop_machine`), unwind
//! every task's kernel stack and, only if no interrupted instruction pointer or return address
//! lies in the given ranges, write the new generation before the machine resumes: all tasks
//! switch together or none does. When a task is inside, the attempt changes nothing and names
//! the task. [`GlobalControl::commit`] retries until a deadline and, when it passes, gives up
//! with the old generation still active: a timeout never activates.
//!
//! The layouts below mirror `kmod/include/kernelx_abi.h`; the tests pin them against it.
//!
//! # Minimum kernel version
//!
//! 6.12 (the kprobe kfunc hook the module's kfuncs need), with the kernelx module loaded.

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// The module's device.
pub const DEVICE: &str = "/dev/kernelx";

/// `KX_GLOBAL_MAX_TUNABLES`: how many tunables the module tracks at once.
pub const MAX_TUNABLES: usize = 64;

/// `KX_GLOBAL_MAX_RANGES`: how many ranges one commit may name.
pub const MAX_RANGES: usize = 256;

/// The module takes only ranges in the kernel half of the address space, whose addresses have
/// the top bit set (4-level and 5-level paging alike); used only to explain a refusal.
const KERNEL_HALF: u64 = 1 << 63;

/// First pause between attempts of [`GlobalControl::commit`]; it doubles up to
/// [`RETRY_MAX`]. Each attempt stops the whole machine, so retries back off.
const RETRY_FIRST: Duration = Duration::from_millis(1);
/// Longest pause between attempts.
const RETRY_MAX: Duration = Duration::from_millis(10);

/// A half-open range `[start, end)` of kernel text addresses, `struct kx_range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct AddressRange {
    /// The first address in the range.
    pub start: u64,
    /// The first address after it.
    pub end: u64,
}

impl AddressRange {
    /// `[start, end)`.
    pub fn new(start: u64, end: u64) -> AddressRange {
        AddressRange { start, end }
    }
}

/// `struct kx_commit`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct RawCommit {
    key: u64,
    generation: u64,
    ranges: u64,
    count: u32,
    blocker_pid: i32,
    blocker_addr: u64,
    stopped_ns: u64,
    tasks: u64,
}

/// `struct kx_active`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
struct RawActive {
    key: u64,
    generation: u64,
}

/// `_IOC(dir, type, nr, size)` as the kernel encodes it on x86.
const fn ioc(dir: u64, kind: u8, nr: u8, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((kind as u64) << 8) | nr as u64
}

const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
/// `KX_IOC_MAGIC`.
const IOC_MAGIC: u8 = b'x';
/// `KX_IOC_COMMIT`.
const IOC_COMMIT: u64 = ioc(IOC_READ | IOC_WRITE, IOC_MAGIC, 1, size_of::<RawCommit>());
/// `KX_IOC_ACTIVE`.
const IOC_ACTIVE: u64 = ioc(IOC_READ | IOC_WRITE, IOC_MAGIC, 2, size_of::<RawActive>());
/// `KX_IOC_RELEASE`.
const IOC_RELEASE: u64 = ioc(IOC_WRITE, IOC_MAGIC, 3, size_of::<u64>());

/// What one stop of the machine cost and covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stop {
    /// How long every CPU was stopped (the module's callback, measured in the kernel).
    pub stopped: Duration,
    /// How many tasks were unwound (up to the first one found inside, when one was).
    pub tasks: u64,
}

/// A task inside a safe span, which kept a commit from happening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// Its thread id (in the initial pid namespace).
    pub pid: i32,
    /// Its instruction pointer or return address in a range; `None` when its stack could
    /// not be unwound reliably, which the module counts as inside.
    pub addr: Option<u64>,
}

impl std::fmt::Display for Blocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            Some(addr) => write!(f, "task {} is inside a safe span at {addr:#x}", self.pid),
            None => write!(
                f,
                "task {}'s kernel stack cannot be unwound reliably, so it may be inside a safe \
                 span",
                self.pid
            ),
        }
    }
}

/// The outcome of one commit attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitAttempt {
    /// The new generation is active for every task.
    Committed(Stop),
    /// A task was inside; nothing changed.
    Busy {
        /// The task.
        blocker: Blocker,
        /// The stop that found it.
        stop: Stop,
    },
}

/// A successful [`GlobalControl::commit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// Attempts made, the successful one included.
    pub attempts: u32,
    /// From the first attempt to the end of the successful one.
    pub latency: Duration,
    /// The successful attempt's stop.
    pub stop: Stop,
    /// How long the machine was stopped over all attempts.
    pub total_stopped: Duration,
}

/// Why a commit was refused as malformed (the module's `EINVAL`), as far as the wrapper can
/// tell from what it sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidCommit {
    /// Key 0 is no map id.
    #[error("key 0 is not a tunable's map id")]
    ZeroKey,
    /// More ranges than the module takes.
    #[error("{count} ranges, the module takes at most {MAX_RANGES}")]
    TooManyRanges {
        /// How many were given.
        count: usize,
    },
    /// A range whose start is not below its end.
    #[error("range {index} [{start:#x}, {end:#x}) is empty or reversed")]
    EmptyRange {
        /// Its index among the ranges given.
        index: usize,
        /// Its start.
        start: u64,
        /// Its end.
        end: u64,
    },
    /// A range that starts below the kernel half: offsets passed for addresses, most likely.
    #[error("range {index} starts at {start:#x}, outside the kernel half: not kernel text")]
    UserRange {
        /// Its index among the ranges given.
        index: usize,
        /// Its start.
        start: u64,
    },
    /// The module refused something the wrapper cannot see.
    #[error("the module refused it for a reason this kernelx does not know: rebuild both")]
    Unknown,
}

impl InvalidCommit {
    /// Why the module would refuse `key` with `ranges` (it checks the same, in this order).
    fn diagnose(key: u64, ranges: &[AddressRange]) -> InvalidCommit {
        if key == 0 {
            return InvalidCommit::ZeroKey;
        }
        if ranges.len() > MAX_RANGES {
            return InvalidCommit::TooManyRanges {
                count: ranges.len(),
            };
        }
        for (index, r) in ranges.iter().enumerate() {
            if r.start >= r.end {
                return InvalidCommit::EmptyRange {
                    index,
                    start: r.start,
                    end: r.end,
                };
            }
            if r.start < KERNEL_HALF {
                return InvalidCommit::UserRange {
                    index,
                    start: r.start,
                };
            }
        }
        InvalidCommit::Unknown
    }
}

/// Why a global-mode operation failed. None of them changed the active generation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GlobalError {
    /// The device does not exist.
    #[error(
        "{} is missing: load the kernelx module (`kernelx setup` builds and loads it); a \
         kernelx module loaded before global mode existed has no device: unload it and load \
         the new one",
        path.display()
    )]
    Missing {
        /// The device's path.
        path: PathBuf,
    },
    /// The caller may not use the device.
    #[error("{} is root-only (CAP_SYS_ADMIN): run kernelx as root", path.display())]
    PermissionDenied {
        /// The device's path.
        path: PathBuf,
    },
    /// The device could not be opened for another reason.
    #[error("opening {}: {source}", path.display())]
    Open {
        /// The device's path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The module refused a commit as malformed; nothing changed.
    #[error("{DEVICE} refused the commit for key {key}: {problem}")]
    Invalid {
        /// The tunable's key.
        key: u64,
        /// What is wrong.
        problem: InvalidCommit,
    },
    /// Every slot of the module's table is taken.
    #[error(
        "{DEVICE} tracks at most {MAX_TUNABLES} tunables in global mode and has no room for \
         key {key}: unload a tunable in global mode first"
    )]
    Full {
        /// The tunable's key.
        key: u64,
    },
    /// [`GlobalControl::commit`] found a task inside at every attempt until its deadline.
    #[error(
        "global switch of key {key} to generation {generation} timed out after {waited:?} and \
         {attempts} attempts: {blocker}; the old generation stays active (retry later, or \
         with a longer timeout)"
    )]
    Timeout {
        /// The tunable's key.
        key: u64,
        /// The generation that was not activated.
        generation: u64,
        /// The task found inside at the last attempt.
        blocker: Blocker,
        /// Attempts made.
        attempts: u32,
        /// From the first attempt to the end of the last.
        waited: Duration,
        /// How long the machine was stopped over all attempts.
        total_stopped: Duration,
    },
    /// An ioctl failed otherwise.
    #[error("{request} on {DEVICE} for key {key}: {source}")]
    Ioctl {
        /// The request's name.
        request: &'static str,
        /// The tunable's key.
        key: u64,
        /// The error.
        source: io::Error,
    },
}

/// An open `/dev/kernelx`.
#[derive(Debug)]
pub struct GlobalControl {
    file: File,
}

impl GlobalControl {
    /// Opens [`DEVICE`] (root only).
    pub fn open() -> Result<GlobalControl, GlobalError> {
        GlobalControl::open_at(Path::new(DEVICE))
    }

    fn open_at(path: &Path) -> Result<GlobalControl, GlobalError> {
        let path = path.to_owned();
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => Ok(GlobalControl { file }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(GlobalError::Missing { path }),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                Err(GlobalError::PermissionDenied { path })
            }
            Err(source) => Err(GlobalError::Open { path, source }),
        }
    }

    /// Makes `generation` the active generation of `key` if, with the machine stopped, no task is
    /// inside any of `ranges`; otherwise names one task inside and changes nothing. A key
    /// the module did not know gets a slot at generation 0 either way.
    pub fn try_commit(
        &self,
        key: u64,
        generation: u64,
        ranges: &[AddressRange],
    ) -> Result<CommitAttempt, GlobalError> {
        let mut raw = RawCommit {
            key,
            generation,
            ranges: ranges.as_ptr() as u64,
            // The module refuses a count above MAX_RANGES; saturating keeps it refused.
            count: u32::try_from(ranges.len()).unwrap_or(u32::MAX),
            ..RawCommit::default()
        };
        let result = self.ioctl(IOC_COMMIT, &mut raw);
        let stop = Stop {
            stopped: Duration::from_nanos(raw.stopped_ns),
            tasks: raw.tasks,
        };
        match result {
            Ok(()) => Ok(CommitAttempt::Committed(stop)),
            Err(e) => match e.raw_os_error() {
                Some(libc::EBUSY) => Ok(CommitAttempt::Busy {
                    blocker: Blocker {
                        pid: raw.blocker_pid,
                        addr: (raw.blocker_addr != 0).then_some(raw.blocker_addr),
                    },
                    stop,
                }),
                Some(libc::EINVAL) => Err(GlobalError::Invalid {
                    key,
                    problem: InvalidCommit::diagnose(key, ranges),
                }),
                Some(libc::ENOSPC) => Err(GlobalError::Full { key }),
                _ => Err(self.ioctl_error("KX_IOC_COMMIT", key, e)),
            },
        }
    }

    /// Tries [`try_commit`](Self::try_commit) until it succeeds or `timeout` has passed since
    /// the first attempt (which is always made), pausing between attempts (1 ms, doubling up
    /// to 10 ms). On timeout the old generation stays active: no attempt ever activates
    /// unless it found nobody inside.
    pub fn commit(
        &self,
        key: u64,
        generation: u64,
        ranges: &[AddressRange],
        timeout: Duration,
    ) -> Result<Committed, GlobalError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut pause = RETRY_FIRST;
        let mut attempts = 0;
        let mut total_stopped = Duration::ZERO;
        loop {
            attempts += 1;
            let (blocker, stop) = match self.try_commit(key, generation, ranges)? {
                CommitAttempt::Committed(stop) => {
                    return Ok(Committed {
                        attempts,
                        latency: start.elapsed(),
                        stop,
                        total_stopped: total_stopped + stop.stopped,
                    });
                }
                CommitAttempt::Busy { blocker, stop } => (blocker, stop),
            };
            total_stopped += stop.stopped;
            let now = Instant::now();
            if now >= deadline {
                return Err(GlobalError::Timeout {
                    key,
                    generation,
                    blocker,
                    attempts,
                    waited: now - start,
                    total_stopped,
                });
            }
            thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// The active generation of `key`, 0 if it was never committed (or was released).
    pub fn active(&self, key: u64) -> Result<u64, GlobalError> {
        let mut raw = RawActive { key, generation: 0 };
        self.ioctl(IOC_ACTIVE, &mut raw)
            .map_err(|e| self.ioctl_error("KX_IOC_ACTIVE", key, e))?;
        Ok(raw.generation)
    }

    /// Forgets `key`: its generation reads 0 again (a later tunable given the same map id
    /// starts from there). For a tunable whose probes are gone: nothing is checked against
    /// spans. Returns whether the module knew the key.
    pub fn release(&self, key: u64) -> Result<bool, GlobalError> {
        let mut raw = key;
        match self.ioctl(IOC_RELEASE, &mut raw) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(self.ioctl_error("KX_IOC_RELEASE", key, e)),
        }
    }

    /// The request `request` on the device with `arg`, whose layout the request encodes.
    fn ioctl<T>(&self, request: u64, arg: &mut T) -> io::Result<()> {
        // SAFETY: `request` encodes size_of::<T>() (the IOC_* constants are built from the
        // same types), so the kernel reads and writes only within `*arg`; a commit's `ranges`
        // points at a live slice of `count` #[repr(C)] ranges.
        let ret = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                request as libc::Ioctl,
                std::ptr::from_mut(arg),
            )
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn ioctl_error(&self, request: &'static str, key: u64, source: io::Error) -> GlobalError {
        if source.raw_os_error() == Some(libc::EPERM) {
            return GlobalError::PermissionDenied {
                path: PathBuf::from(DEVICE),
            };
        }
        GlobalError::Ioctl {
            request,
            key,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::offset_of;

    use super::*;

    const ABI_H: &str = include_str!("../../../kmod/include/kernelx_abi.h");

    /// The value of `#define name <decimal>` in the header.
    #[track_caller]
    fn define(name: &str) -> u64 {
        ABI_H
            .lines()
            .find_map(|l| {
                l.strip_prefix("#define ")?
                    .strip_prefix(name)?
                    .strip_prefix(' ')
            })
            .unwrap_or_else(|| panic!("{name} is not defined in kernelx_abi.h"))
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The field names of `struct name` in the header, in order.
    #[track_caller]
    fn fields(name: &str) -> Vec<String> {
        let body = ABI_H
            .split_once(&format!("struct {name} {{"))
            .and_then(|(_, rest)| rest.split_once("};"))
            .unwrap_or_else(|| panic!("struct {name} is not in kernelx_abi.h"))
            .0;
        body.lines()
            .filter_map(|l| l.split_once(';'))
            .map(|(decl, _)| decl.split_whitespace().last().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn limits_match_the_header() {
        assert_eq!(define("KX_GLOBAL_MAX_TUNABLES"), MAX_TUNABLES as u64);
        assert_eq!(define("KX_GLOBAL_MAX_RANGES"), MAX_RANGES as u64);
        assert!(ABI_H.contains("#define KX_IOC_MAGIC 'x'"));
    }

    #[test]
    fn layouts_match_the_header() {
        assert_eq!(fields("kx_range"), ["start", "end"]);
        assert_eq!(size_of::<AddressRange>(), 16);
        assert_eq!(offset_of!(AddressRange, end), 8);

        assert_eq!(
            fields("kx_commit"),
            [
                "key",
                "gen",
                "ranges",
                "count",
                "blocker_pid",
                "blocker_addr",
                "stopped_ns",
                "tasks"
            ]
        );
        let offsets = [
            offset_of!(RawCommit, key),
            offset_of!(RawCommit, generation),
            offset_of!(RawCommit, ranges),
            offset_of!(RawCommit, count),
            offset_of!(RawCommit, blocker_pid),
            offset_of!(RawCommit, blocker_addr),
            offset_of!(RawCommit, stopped_ns),
            offset_of!(RawCommit, tasks),
        ];
        assert_eq!(offsets, [0, 8, 16, 24, 28, 32, 40, 48]);
        assert_eq!(size_of::<RawCommit>(), 56);

        assert_eq!(fields("kx_active"), ["key", "gen"]);
        assert_eq!(offset_of!(RawActive, generation), 8);
        assert_eq!(size_of::<RawActive>(), 16);
    }

    #[test]
    fn ioctl_numbers_are_the_kernels() {
        // _IOWR('x', 1, 56 bytes), _IOWR('x', 2, 16 bytes), _IOW('x', 3, 8 bytes), as
        // `printf("%#x", KX_IOC_...)` prints them in C.
        assert_eq!(IOC_COMMIT, 0xc038_7801);
        assert_eq!(IOC_ACTIVE, 0xc010_7802);
        assert_eq!(IOC_RELEASE, 0x4008_7803);
        for (name, nr, kind) in [
            ("KX_IOC_COMMIT", 1, "_IOWR"),
            ("KX_IOC_ACTIVE", 2, "_IOWR"),
            ("KX_IOC_RELEASE", 3, "_IOW"),
        ] {
            let line = format!("#define {name} {kind}(KX_IOC_MAGIC, {nr}, ");
            assert!(ABI_H.contains(&line), "kernelx_abi.h lacks `{line}`");
        }
    }

    #[test]
    fn a_refusal_is_explained_by_what_was_sent() {
        let text = 0xffff_ffff_8100_0000;
        let ok = AddressRange::new(text, text + 0x10);
        assert_eq!(InvalidCommit::diagnose(0, &[ok]), InvalidCommit::ZeroKey);
        assert_eq!(
            InvalidCommit::diagnose(7, &[ok; MAX_RANGES + 1]),
            InvalidCommit::TooManyRanges {
                count: MAX_RANGES + 1
            }
        );
        assert_eq!(
            InvalidCommit::diagnose(7, &[ok, AddressRange::new(text, text)]),
            InvalidCommit::EmptyRange {
                index: 1,
                start: text,
                end: text
            }
        );
        assert_eq!(
            InvalidCommit::diagnose(7, &[AddressRange::new(0x29, 0x6c)]),
            InvalidCommit::UserRange {
                index: 0,
                start: 0x29
            }
        );
        assert_eq!(
            InvalidCommit::diagnose(7, &[ok; MAX_RANGES]),
            InvalidCommit::Unknown
        );
    }

    #[test]
    fn a_missing_device_says_to_load_the_module() {
        let dir = tempfile::tempdir().unwrap();
        let err = GlobalControl::open_at(&dir.path().join("kernelx")).unwrap_err();
        assert!(matches!(err, GlobalError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("load the kernelx module"), "{err}");
    }

    #[test]
    fn a_device_that_is_not_kernelx_fails_the_ioctl_by_name() {
        // /dev/null takes no ioctl: ENOTTY, reported with the request and key.
        let control = GlobalControl::open_at(Path::new("/dev/null")).unwrap();
        let err = control.active(5).unwrap_err();
        assert!(
            matches!(
                err,
                GlobalError::Ioctl {
                    request: "KX_IOC_ACTIVE",
                    key: 5,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
