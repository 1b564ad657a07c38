//! Global consistency in the lab VM (`cargo xtask lab test --binary vm_global`; ignored on
//! the host, whose kernel has no modules): `/dev/kernelx` of the kernelx module refuses to
//! switch a tunable's generation while a task sleeps inside its span (the target module's
//! `kx_target_block`), names that task, gives up on timeout with the old generation, switches
//! once the task has left, and refuses malformed commits without changing anything.
//!
//! Needs `$KERNELX_MODULE` (the lab sets it to `kmod/build/kernelx.ko`),
//! `tests/target-module/build/kx_target.ko` (the lab builds both before the boot), root and
//! debugfs.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use kernelx_runtime::global::{
    AddressRange, CommitAttempt, DEVICE, GlobalControl, GlobalError, InvalidCommit, MAX_RANGES,
    MAX_TUNABLES,
};
use kernelx_runtime::host::HostView;
use kernelx_runtime::kallsyms::Kallsyms;
use kernelx_runtime::kmod;

const TARGET: &str = "/sys/kernel/debug/kx_target";
/// `KX_TARGET_BLOCK` in tests/target-module/kx_target.c: `block` returns x + this.
const KX_TARGET_BLOCK: u64 = 0x6b1d;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Polls `check` every 10 ms until it returns true or `limit` passes; returns whether it did.
fn loop_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    check()
}

fn rmmod(name: &str) -> bool {
    Command::new("rmmod")
        .arg(name)
        .status()
        .is_ok_and(|s| s.success())
}

/// The kernelx module, loaded for one test; removed at its end (which must succeed) or, on a
/// failure, by the drop.
struct KernelxModule {
    removed: bool,
}

impl KernelxModule {
    #[track_caller]
    fn insert(kallsyms: &Kallsyms) -> KernelxModule {
        assert!(
            !Path::new(kmod::MODULE_SYSFS).exists(),
            "kernelx is loaded already"
        );
        let ko = PathBuf::from(
            std::env::var_os("KERNELX_MODULE")
                .expect("KERNELX_MODULE names the kernelx.ko to test (the lab sets it)"),
        );
        let addr = kmod::current_kprobe_addr(kallsyms).expect("current_kprobe in kallsyms");
        kmod::insert(&ko, addr).unwrap_or_else(|e| panic!("{e}"));
        KernelxModule { removed: false }
    }

    /// rmmod; the device must go with the module.
    #[track_caller]
    fn remove(mut self) {
        self.removed = rmmod(kmod::MODULE_NAME);
        assert!(self.removed, "rmmod kernelx failed");
        assert!(!Path::new(DEVICE).exists(), "{DEVICE} outlived the module");
    }
}

impl Drop for KernelxModule {
    fn drop(&mut self) {
        if !self.removed {
            rmmod(kmod::MODULE_NAME);
        }
    }
}

/// The target module, loaded for one test; its drop wakes any reader of `block` first (a
/// failed test may leave one asleep, and its open file pins the module).
struct TargetModule;

impl TargetModule {
    #[track_caller]
    fn insert() -> TargetModule {
        let ko = repo_path("../../tests/target-module/build/kx_target.ko");
        let status = Command::new("insmod")
            .arg(&ko)
            .status()
            .expect("running insmod");
        assert!(status.success(), "insmod {} failed: {status}", ko.display());
        TargetModule
    }

    fn waiters(&self) -> String {
        fs::read_to_string(format!("{TARGET}/waiters")).unwrap_or_default()
    }

    fn release(&self) {
        fs::write(format!("{TARGET}/release"), "1").expect("writing release");
    }
}

impl Drop for TargetModule {
    fn drop(&mut self) {
        self.release();
        loop_until(Duration::from_secs(5), || rmmod("kx_target"));
    }
}

/// A thread asleep in kx_target_block (a read of `block`), and its thread id.
struct Sleeper {
    tid: i32,
    reader: JoinHandle<std::io::Result<String>>,
}

impl Sleeper {
    #[track_caller]
    fn start(target: &TargetModule, x: u64) -> Sleeper {
        let path = format!("{TARGET}/block");
        fs::write(&path, x.to_string()).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() }).unwrap();
            fs::read_to_string(&path)
        });
        let tid = rx.recv().expect("the reader's thread id");
        let asleep = loop_until(Duration::from_secs(10), || target.waiters().trim() == "1");
        assert!(asleep, "the reader of block never went to sleep");
        Sleeper { tid, reader }
    }

    /// Joins the reader (after a release) and returns what `block` returned.
    #[track_caller]
    fn join(self) -> u64 {
        let text = self
            .reader
            .join()
            .expect("the reader panicked")
            .expect("reading block");
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("block returned {text:?}: {e}"))
    }
}

/// `[start, next symbol)` of the target module's function `name`: the function and at most
/// its alignment padding.
#[track_caller]
fn function_range(kallsyms: &Kallsyms, name: &str) -> AddressRange {
    let symbols: Vec<_> = kallsyms
        .symbols()
        .iter()
        .filter(|s| s.module.as_deref() == Some("kx_target"))
        .collect();
    let start = symbols
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} is not in kallsyms"))
        .address;
    let end = symbols
        .iter()
        .map(|s| s.address)
        .filter(|&a| a > start)
        .min()
        .unwrap_or_else(|| panic!("no kx_target symbol follows {name}"));
    AddressRange::new(start, end)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_global_switches_only_when_no_task_is_inside() {
    let target = TargetModule::insert();
    let kallsyms = Kallsyms::read(&HostView::system()).expect("reading /proc/kallsyms");
    let module = KernelxModule::insert(&kallsyms);
    let block = function_range(&kallsyms, "kx_target_block");
    let add = function_range(&kallsyms, "kx_target_add");
    eprintln!(
        "kx_target_block: [{:#x}, {:#x}) ({:#x} bytes)",
        block.start,
        block.end,
        block.end - block.start
    );
    let control = GlobalControl::open().unwrap_or_else(|e| panic!("{e}"));
    let (key, other) = (41, 42);
    assert_eq!(control.active(key).unwrap(), 0, "a key never committed");

    // Nobody inside: the first attempt commits.
    let attempt = control.try_commit(key, 1, &[block]).unwrap();
    let CommitAttempt::Committed(stop) = attempt else {
        panic!("nobody is in kx_target_block, yet: {attempt:?}");
    };
    eprintln!(
        "commit, nobody inside: stopped {:.3} ms, {} tasks",
        ms(stop.stopped),
        stop.tasks
    );
    assert!(stop.tasks > 10, "only {} tasks were checked", stop.tasks);
    assert_eq!(control.active(key).unwrap(), 1);

    let sleeper = Sleeper::start(&target, 100);

    // Inside: refused, naming the sleeper at its return address in the function.
    let attempt = control.try_commit(key, 2, &[block]).unwrap();
    let CommitAttempt::Busy { blocker, stop } = attempt else {
        panic!(
            "committed while task {} sleeps in kx_target_block",
            sleeper.tid
        );
    };
    eprintln!(
        "commit, one task inside: busy ({blocker}, kx_target_block+{:#x}), stopped {:.3} ms, \
         {} tasks",
        blocker.addr.unwrap_or(0).wrapping_sub(block.start),
        ms(stop.stopped),
        stop.tasks
    );
    assert_eq!(blocker.pid, sleeper.tid, "{blocker}");
    let addr = blocker.addr.expect("the sleeper's stack unwinds reliably");
    assert!(
        (block.start..block.end).contains(&addr),
        "{addr:#x} is outside [{:#x}, {:#x})",
        block.start,
        block.end
    );
    assert_eq!(control.active(key).unwrap(), 1, "after the refusal");

    // Retrying until a deadline gives up with the old generation.
    let start = Instant::now();
    let err = control
        .commit(key, 2, &[block], Duration::from_millis(300))
        .unwrap_err();
    let GlobalError::Timeout {
        blocker,
        attempts,
        waited,
        total_stopped,
        ..
    } = err
    else {
        panic!("expected a timeout, got {err}");
    };
    eprintln!(
        "commit with a 300 ms timeout: {attempts} attempts in {:.1} ms, stopped {:.3} ms in all",
        ms(waited),
        ms(total_stopped)
    );
    assert!(attempts > 1, "{attempts} attempts");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(blocker.pid, sleeper.tid);
    assert_eq!(control.active(key).unwrap(), 1, "after the timeout");

    // Another tunable whose span nobody is in switches at once, sleeper or not.
    let done = control
        .commit(other, 7, &[add], Duration::from_secs(5))
        .unwrap();
    assert_eq!(done.attempts, 1, "{done:?}");
    assert_eq!(control.active(other).unwrap(), 7);
    assert_eq!(control.active(key).unwrap(), 1);

    // Once the sleeper returns, the switch happens.
    target.release();
    let done = control
        .commit(key, 2, &[block], Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "commit after the release: {} attempts, latency {:.3} ms, last stop {:.3} ms ({} \
         tasks), {:.3} ms stopped in all",
        done.attempts,
        ms(done.latency),
        ms(done.stop.stopped),
        done.stop.tasks,
        ms(done.total_stopped)
    );
    assert_eq!(control.active(key).unwrap(), 2);
    assert_eq!(sleeper.join(), 100 + KX_TARGET_BLOCK);

    // Generation 0 (the compiled values) is a generation like any other: the way back.
    assert!(matches!(
        control.try_commit(key, 0, &[block]).unwrap(),
        CommitAttempt::Committed(_)
    ));
    assert_eq!(control.active(key).unwrap(), 0);
    control.try_commit(key, 3, &[block]).unwrap();
    assert_eq!(control.active(key).unwrap(), 3);

    // Release forgets a key, once.
    assert!(control.release(key).unwrap());
    assert_eq!(control.active(key).unwrap(), 0, "after the release");
    assert!(!control.release(key).unwrap(), "a second release");
    assert_eq!(control.active(other).unwrap(), 7, "another key's release");

    // The open device pins the module.
    assert!(
        !rmmod(kmod::MODULE_NAME),
        "rmmod succeeded with {DEVICE} open"
    );
    drop(control);
    module.remove();
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_global_refuses_bad_input_and_changes_nothing() {
    let _target = TargetModule::insert();
    let kallsyms = Kallsyms::read(&HostView::system()).expect("reading /proc/kallsyms");
    let module = KernelxModule::insert(&kallsyms);
    let block = function_range(&kallsyms, "kx_target_block");

    let meta = fs::metadata(DEVICE).unwrap_or_else(|e| panic!("{DEVICE}: {e}"));
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "{DEVICE}'s mode");
    // Root without CAP_SYS_ADMIN is refused by the module itself (the mode lets root in).
    let output = Command::new("setpriv")
        .args(["--bounding-set=-sys_admin", "--inh-caps=-sys_admin", "--"])
        .args(["sh", "-c", &format!("exec 3<>{DEVICE}")])
        .output()
        .expect("running setpriv");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "opened {DEVICE} without CAP_SYS_ADMIN"
    );
    assert!(stderr.contains("not permitted"), "{stderr}");

    let control = GlobalControl::open().unwrap_or_else(|e| panic!("{e}"));
    let key = 77;
    control.try_commit(key, 5, &[block]).unwrap();
    let fresh = 78;

    let bad: [(&[AddressRange], InvalidCommit); 4] = [
        (
            &[block; MAX_RANGES + 1],
            InvalidCommit::TooManyRanges {
                count: MAX_RANGES + 1,
            },
        ),
        (
            &[block, AddressRange::new(block.end, block.start)],
            InvalidCommit::EmptyRange {
                index: 1,
                start: block.end,
                end: block.start,
            },
        ),
        (
            &[AddressRange::new(block.start, block.start)],
            InvalidCommit::EmptyRange {
                index: 0,
                start: block.start,
                end: block.start,
            },
        ),
        (
            &[AddressRange::new(0x29, 0x6c)],
            InvalidCommit::UserRange {
                index: 0,
                start: 0x29,
            },
        ),
    ];
    for (ranges, problem) in bad {
        for k in [key, fresh] {
            let err = control.try_commit(k, 6, ranges).unwrap_err();
            match &err {
                GlobalError::Invalid { problem: p, .. } if *p == problem => {}
                _ => panic!("{} ranges: expected {problem}, got {err}", ranges.len()),
            }
        }
        assert_eq!(control.active(key).unwrap(), 5, "after refusing {problem}");
    }
    let err = control.try_commit(0, 6, &[block]).unwrap_err();
    assert!(
        matches!(
            err,
            GlobalError::Invalid {
                problem: InvalidCommit::ZeroKey,
                ..
            }
        ),
        "{err}"
    );
    eprintln!("refused: {err}");
    // A refused commit takes no slot: the fresh key was never known.
    assert!(
        !control.release(fresh).unwrap(),
        "a refused key took a slot"
    );
    // The full range count is fine.
    assert!(matches!(
        control.try_commit(key, 6, &[block; MAX_RANGES]).unwrap(),
        CommitAttempt::Committed(_)
    ));
    assert_eq!(control.active(key).unwrap(), 6);

    // The table holds MAX_TUNABLES keys; one more is refused, and fits after a release.
    for k in 1000..1000 + MAX_TUNABLES as u64 - 1 {
        control.try_commit(k, k, &[]).unwrap();
    }
    let err = control.try_commit(5000, 1, &[block]).unwrap_err();
    assert!(matches!(err, GlobalError::Full { key: 5000 }), "{err}");
    eprintln!("refused: {err}");
    assert_eq!(
        control.active(1000 + MAX_TUNABLES as u64 - 2).unwrap(),
        1062
    );
    assert!(control.release(1000).unwrap());
    control.try_commit(5000, 1, &[block]).unwrap();
    assert_eq!(control.active(5000).unwrap(), 1);
    assert_eq!(control.active(1000).unwrap(), 0);
    assert_eq!(control.active(key).unwrap(), 6);

    drop(control);
    module.remove();
}

/// The kfunc the BPF side calls is in the module's BTF once it is loaded.
#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_global_kfunc_is_in_the_module_btf() {
    let kallsyms = Kallsyms::read(&HostView::system()).expect("reading /proc/kallsyms");
    let module = KernelxModule::insert(&kallsyms);
    let btf = fs::read("/sys/kernel/btf/kernelx").expect("reading the module's BTF");
    let name = b"kernelx_active_gen\0";
    assert!(
        btf.windows(name.len()).any(|w| w == name),
        "kernelx_active_gen is not in /sys/kernel/btf/kernelx"
    );
    module.remove();
}

/// Tasks busy in and out of the kernel unwind reliably: with four threads copying from
/// `/dev/zero`, a span nobody is in commits at every first attempt.
#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_global_commits_under_load() {
    let _target = TargetModule::insert();
    let kallsyms = Kallsyms::read(&HostView::system()).expect("reading /proc/kallsyms");
    let module = KernelxModule::insert(&kallsyms);
    let add = function_range(&kallsyms, "kx_target_add");
    let control = GlobalControl::open().unwrap_or_else(|e| panic!("{e}"));

    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut zero = fs::File::open("/dev/zero").expect("opening /dev/zero");
                let mut buf = vec![0u8; 1 << 20];
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    zero.read_exact(&mut buf).expect("reading /dev/zero");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let mut stops = Vec::new();
    for generation in 1..=20 {
        match control.try_commit(9, generation, &[add]).unwrap() {
            CommitAttempt::Committed(s) => stops.push(s.stopped),
            busy => panic!("generation {generation}: {busy:?}"),
        }
        assert_eq!(control.active(9).unwrap(), generation);
    }
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = hogs.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(reads > 0, "the hogs never ran");
    stops.sort();
    eprintln!(
        "20 commits under load ({reads} MiB read meanwhile): stopped median {:.3} ms, max {:.3} ms",
        ms(stops[stops.len() / 2]),
        ms(stops[stops.len() - 1])
    );
    drop(control);
    module.remove();
}
