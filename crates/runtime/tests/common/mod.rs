//! What the stress run and the runtime benchmark share in the lab VM: the repository's paths,
//! bounded waits and the kernel modules.

#![allow(
    dead_code,
    reason = "each test binary that includes this module uses a part of it"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use kernelx_runtime::sie::{SieProgram, SieRuntime, SpanAddress};

pub const KPROBE_LIST: &str = "/sys/kernel/debug/kprobes/list";

/// A path relative to this crate's directory.
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Polls `check` until it returns true or `limit` passes; returns whether it did.
pub fn loop_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// The safe spans of `program` at the addresses of their functions, each unique in
/// /proc/kallsyms (read once: under TCG a read takes seconds).
#[track_caller]
pub fn spans_of(program: &SieProgram) -> Vec<SpanAddress> {
    let text = fs::read_to_string("/proc/kallsyms").expect("reading /proc/kallsyms");
    let address = |function: &str| {
        let found: Vec<u64> = text
            .lines()
            .filter_map(|l| {
                let mut fields = l.split([' ', '\t']);
                let (addr, _, name) = (fields.next()?, fields.next()?, fields.next()?);
                (name == function).then(|| u64::from_str_radix(addr, 16).expect("hex address"))
            })
            .collect();
        assert_eq!(found.len(), 1, "{function} in kallsyms: {found:x?}");
        found[0]
    };
    program
        .spans()
        .iter()
        .enumerate()
        .flat_map(|(span, s)| {
            let base = address(&s.function);
            s.ranges.iter().map(move |r| SpanAddress {
                span,
                start: base + u64::from(r.start),
                end: base + u64::from(r.end),
            })
        })
        .collect()
}

/// The lines of the kprobe list for probes in `function`.
pub fn kprobe_lines(function: &str) -> Vec<String> {
    fs::read_to_string(KPROBE_LIST)
        .unwrap_or_else(|e| panic!("{KPROBE_LIST}: {e}"))
        .lines()
        .filter(|l| l.contains(&format!(" {function}+")))
        .map(str::to_owned)
        .collect()
}

fn rmmod(module: &str) -> bool {
    Command::new("rmmod")
        .arg(module)
        .status()
        .is_ok_and(|s| s.success())
}

/// A kernel module inserted for one test and removed when it is dropped (a failed test
/// removes it too). Removing the kernelx module first unloads `tunables` that are still
/// loaded, and waits: a program's last reference (and with it the module's) goes in an RCU
/// callback after its last pin.
pub struct Module {
    name: &'static str,
    tunables: &'static [&'static str],
}

impl Module {
    /// kmod/build/kernelx.ko, given the address of `current_kprobe` as it requires.
    #[track_caller]
    pub fn kernelx(tunables: &'static [&'static str]) -> Module {
        let kallsyms = fs::read_to_string("/proc/kallsyms").expect("reading /proc/kallsyms");
        let addr = kallsyms
            .lines()
            .find_map(|l| l.strip_suffix(" current_kprobe")?.split(' ').next())
            .expect("current_kprobe in /proc/kallsyms");
        Module::insert(
            "kernelx",
            "../../kmod/build/kernelx.ko",
            &[&format!("current_kprobe_addr=0x{addr}")],
            tunables,
        )
    }

    /// tests/target-module/build/kx_target.ko.
    #[track_caller]
    pub fn target() -> Module {
        Module::insert(
            "kx_target",
            "../../tests/target-module/build/kx_target.ko",
            &[],
            &[],
        )
    }

    #[track_caller]
    fn insert(
        name: &'static str,
        ko: &str,
        args: &[&str],
        tunables: &'static [&'static str],
    ) -> Module {
        assert!(
            !Path::new("/sys/module").join(name).exists(),
            "{name} is loaded already"
        );
        let ko = repo_path(ko);
        assert!(
            ko.is_file(),
            "{} missing: `cargo xtask lab` builds it",
            ko.display()
        );
        let status = Command::new("insmod")
            .arg(&ko)
            .args(args)
            .status()
            .expect("running insmod");
        assert!(status.success(), "insmod {} failed: {status}", ko.display());
        Module { name, tunables }
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        for tunable in self.tunables {
            let _ = SieRuntime::system().detach(tunable);
        }
        let removed = loop_until(Duration::from_secs(10), || rmmod(self.name));
        if !removed && !thread::panicking() {
            panic!("rmmod {} kept failing", self.name);
        }
    }
}

/// Threads of this process asleep in the target module's `kx_target_block` (each in a read of
/// its `block` file), so inside the safe span of `KX_TARGET_BLOCK` until [`Parked::release`].
pub struct Parked {
    readers: Vec<thread::JoinHandle<std::io::Result<String>>>,
}

const TARGET_DIR: &str = "/sys/kernel/debug/kx_target";

impl Parked {
    /// Starts `count` readers of `block` with input `x` and waits until all of them sleep.
    #[track_caller]
    pub fn start(count: usize, x: u64) -> Parked {
        let block = format!("{TARGET_DIR}/block");
        fs::write(&block, x.to_string()).unwrap_or_else(|e| panic!("writing {block}: {e}"));
        let readers = (0..count)
            .map(|_| {
                let block = block.clone();
                thread::spawn(move || fs::read_to_string(block))
            })
            .collect();
        let waiters = format!("{TARGET_DIR}/waiters");
        let asleep = loop_until(Duration::from_secs(30), || {
            fs::read_to_string(&waiters).is_ok_and(|n| n.trim() == count.to_string())
        });
        assert!(asleep, "not all {count} readers of {block} went to sleep");
        Parked { readers }
    }

    /// Wakes the readers and returns what each read (`x` plus the value they computed with).
    #[track_caller]
    pub fn release(self) -> Vec<u64> {
        fs::write(format!("{TARGET_DIR}/release"), "1").expect("writing release");
        self.readers
            .into_iter()
            .map(|reader| {
                let text = reader
                    .join()
                    .expect("a reader of block panicked")
                    .expect("reading block");
                text.trim()
                    .parse()
                    .unwrap_or_else(|e| panic!("block returned {text:?}: {e}"))
            })
            .collect()
    }
}
