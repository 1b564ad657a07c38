//! What the `kernelx` lab tests share: running the binary, the golden PIPE_DEF_BUFFERS plan,
//! new pipes' sizes, a clean start and end, the target module.

#![allow(
    dead_code,
    reason = "each test binary that includes this module uses a part of it"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const PLAN: &str = "../analyze/testdata/golden/pipe_def_buffers_fs.plan.json";
pub const TUNABLE: &str = "PIPE_DEF_BUFFERS";
pub const PIN_ROOT: &str = "/sys/fs/bpf/kernelx";
pub const PAGE: i64 = 4096;

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn module_path() -> PathBuf {
    std::env::var_os("KERNELX_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path("../../kmod/build/kernelx.ko"))
}

pub fn plan_path() -> String {
    repo_path(PLAN).display().to_string()
}

/// `kernelx args`, with the module file given through `KERNELX_MODULE`.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kernelx"));
    command.args(args).env("KERNELX_MODULE", module_path());
    command
}

#[track_caller]
pub fn kernelx(args: &[&str]) -> Output {
    let output = command(args)
        .output()
        .unwrap_or_else(|e| panic!("running kernelx {args:?}: {e}"));
    eprintln!(
        "$ kernelx {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `kernelx args`, which must succeed; its stdout.
#[track_caller]
pub fn ok(args: &[&str]) -> String {
    let output = kernelx(args);
    assert!(output.status.success(), "kernelx {args:?} failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `kernelx args`, which must fail; its stderr.
#[track_caller]
pub fn refused(args: &[&str]) -> String {
    let output = kernelx(args);
    assert_eq!(
        output.status.code(),
        Some(1),
        "kernelx {args:?} did not fail"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// F_GETPIPE_SZ of a new pipe.
#[track_caller]
pub fn new_pipe_size() -> i64 {
    kernelx_runtime::testing::new_pipe_size().expect("F_GETPIPE_SZ of a new pipe")
}

pub fn pinned() -> Vec<String> {
    fs::read_dir(PIN_ROOT)
        .map(|dir| {
            dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[track_caller]
pub fn status_json() -> serde_json::Value {
    serde_json::from_str(&ok(&["status", "--json"])).expect("status --json is JSON")
}

/// Polls `check` until it returns true or `limit` passes; returns whether it did.
pub fn loop_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}

pub fn module_loaded() -> bool {
    Path::new("/sys/module/kernelx").exists()
}

/// Starts from nothing loaded and no module; leaves the same when dropped, even after a failed
/// assertion, so the next test (of this binary or another) starts clean.
pub struct Clean;

impl Clean {
    #[track_caller]
    pub fn start() -> Clean {
        assert!(
            module_path().is_file(),
            "{} missing: build kmod/ first",
            module_path().display()
        );
        Clean::reset();
        assert!(pinned().is_empty(), "left pinned: {:?}", pinned());
        assert!(!module_loaded(), "the kernelx module could not be removed");
        assert_eq!(new_pipe_size(), 16 * PAGE, "the built-in pipe size");
        Clean
    }

    pub fn reset() {
        let _ = command(&["unload", "--all"]).output();
        // The module goes once the last program reference is released (an RCU callback).
        loop_until(Duration::from_secs(5), || {
            !module_loaded()
                || Command::new("rmmod")
                    .arg("kernelx")
                    .status()
                    .is_ok_and(|s| s.success())
        });
    }
}

impl Drop for Clean {
    fn drop(&mut self) {
        Clean::reset();
    }
}

/// The golden plan with `edit` applied, written to a temporary file.
pub fn edited_plan(dir: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut plan: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(repo_path(PLAN)).unwrap()).unwrap();
    edit(&mut plan);
    let path = dir.join(name);
    fs::write(&path, serde_json::to_string_pretty(&plan).unwrap()).unwrap();
    path.display().to_string()
}

pub const TARGET: &str = "/sys/kernel/debug/kx_target";

/// The target module (tests/target-module), loaded for one test (removed when dropped).
pub struct TargetModule;

impl TargetModule {
    #[track_caller]
    pub fn insert() -> TargetModule {
        let ko = repo_path("../../tests/target-module/build/kx_target.ko");
        let status = Command::new("insmod").arg(&ko).status().expect("insmod");
        assert!(status.success(), "insmod {} failed: {status}", ko.display());
        TargetModule
    }

    /// Wakes every task asleep in kx_target_block.
    pub fn release(&self) {
        fs::write(format!("{TARGET}/release"), "1").expect("writing release");
    }

    /// Writes `x` to the case file `case` and reads the function's result.
    #[track_caller]
    pub fn call(&self, case: &str, x: u64) -> u64 {
        let path = format!("{TARGET}/{case}");
        fs::write(&path, x.to_string()).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        text.trim().parse().expect("a case prints a number")
    }
}

impl Drop for TargetModule {
    fn drop(&mut self) {
        self.release();
        loop_until(Duration::from_secs(5), || {
            Command::new("rmmod")
                .arg("kx_target")
                .status()
                .is_ok_and(|s| s.success())
        });
    }
}
