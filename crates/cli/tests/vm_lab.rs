//! Lab smoke tests: they run inside the lab VM (`cargo xtask lab test`), against Debian's 6.12
//! cloud kernel, and are ignored on the host, whose kernel has no kprobes.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// An instruction boundary in `alloc_pipe_info` of 6.12.117+deb12-cloud-amd64 (lab-notes.md:
/// `mov %rax,%rdx` right after the two `mov $PIPE_DEF_BUFFERS` sites).
const PIPE_PROBE_OFFSET: u32 = 0x81;
/// Inside the 6-byte `cmp $0xffff,%ebp` at +0x6b of the same function.
const MID_INSTRUCTION_OFFSET: u32 = 0x6c;

const TRACING: &str = "/sys/kernel/tracing";

#[track_caller]
fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

#[track_caller]
fn write(path: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Polls `check` until it returns true or `limit` passes; returns whether it did.
fn loop_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

/// A tracefs kprobe event, removed when dropped so tests do not leak probes into each other.
struct KprobeEvent {
    group: &'static str,
    name: &'static str,
}

impl KprobeEvent {
    fn add(group: &'static str, name: &'static str, place: &str) -> std::io::Result<Self> {
        write(
            &format!("{TRACING}/kprobe_events"),
            &format!("p:{group}/{name} {place}\n"),
        )?;
        Ok(Self { group, name })
    }

    fn set_enabled(&self, on: bool) {
        let path = format!("{TRACING}/events/{}/{}/enable", self.group, self.name);
        write(&path, if on { "1" } else { "0" }).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }

    /// Hit count from kprobe_profile (`<event> <hits> <misses>`).
    fn hits(&self) -> u64 {
        let profile = read(&format!("{TRACING}/kprobe_profile"));
        let line = profile
            .lines()
            .find(|l| l.split_whitespace().next() == Some(self.name))
            .unwrap_or_else(|| panic!("{} not in kprobe_profile:\n{profile}", self.name));
        line.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad line {line:?}"))
    }
}

impl Drop for KprobeEvent {
    fn drop(&mut self) {
        self.set_enabled(false);
        let _ = write(
            &format!("{TRACING}/kprobe_events"),
            &format!("-:{}/{}\n", self.group, self.name),
        );
    }
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_boots_the_debian_6_12_cloud_kernel() {
    let release = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let expected = std::env::var("KERNELX_LAB_RELEASE")
        .expect("cargo xtask lab test sets KERNELX_LAB_RELEASE");
    assert_eq!(release, expected);
    assert!(
        release.starts_with("6.12.") && release.ends_with("-cloud-amd64"),
        "{release}"
    );
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_kprobe_in_alloc_pipe_info_registers_and_fires() {
    let place = format!("alloc_pipe_info+{PIPE_PROBE_OFFSET:#x}");
    let probe = KprobeEvent::add("kx_smoke", "pipe", &place)
        .unwrap_or_else(|e| panic!("registering {place}: {e}"));
    probe.set_enabled(true);
    let before = probe.hits();
    const PIPES: u64 = 5;
    for _ in 0..PIPES {
        let (reader, writer) = std::io::pipe().expect("pipe(2)");
        drop((reader, writer));
    }
    let after = probe.hits();
    assert!(
        after >= before + PIPES,
        "{place}: {PIPES} new pipes moved the hit count only from {before} to {after}"
    );
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_kprobe_in_alloc_pipe_info_gets_jump_optimized() {
    let place = format!("alloc_pipe_info+{PIPE_PROBE_OFFSET:#x}");
    let probe = KprobeEvent::add("kx_smoke", "pipe_opt", &place)
        .unwrap_or_else(|e| panic!("registering {place}: {e}"));
    probe.set_enabled(true);
    assert_eq!(read("/proc/sys/debug/kprobes-optimization").trim(), "1");
    let listed = |l: &&str| l.contains(&place) && l.contains("[OPTIMIZED]");
    // The optimizer runs from a delayed work item (about a second after registration).
    let optimized = loop_until(Duration::from_secs(20), || {
        read("/sys/kernel/debug/kprobes/list")
            .lines()
            .any(|l| listed(&l))
    });
    assert!(
        optimized,
        "{place} never showed [OPTIMIZED]:\n{}",
        read("/sys/kernel/debug/kprobes/list")
    );
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_kprobe_rejects_a_mid_instruction_offset() {
    let place = format!("alloc_pipe_info+{MID_INSTRUCTION_OFFSET:#x}");
    let err = KprobeEvent::add("kx_smoke", "mid", &place)
        .err()
        .unwrap_or_else(|| panic!("{place} was accepted"));
    assert_eq!(
        err.raw_os_error(),
        Some(84),
        "{place}: expected EILSEQ, got {err}"
    );
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_bpffs_tracefs_and_debugfs_are_mounted() {
    let mounts = read("/proc/self/mounts");
    for (dir, fstype) in [
        ("/sys/fs/bpf", "bpf"),
        (TRACING, "tracefs"),
        ("/sys/kernel/debug", "debugfs"),
    ] {
        let found = mounts.lines().any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(1) == Some(&dir) && fields.get(2) == Some(&fstype)
        });
        assert!(found, "{fstype} is not mounted at {dir}:\n{mounts}");
    }
    assert!(Path::new("/proc/kcore").exists(), "/proc/kcore is missing");
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_doctor_passes_every_check() {
    let source =
        std::env::var("KERNELX_LAB_SOURCE").expect("cargo xtask lab test sets KERNELX_LAB_SOURCE");
    let out = Command::new(env!("CARGO_BIN_EXE_kernelx"))
        .args(["doctor", "--json", "--kernel-dir", &source])
        .output()
        .expect("running kernelx doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("doctor --json: {e}\n{stdout}"));
    let checks = report["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no checks in {report}"));
    let not_passed: Vec<String> = checks
        .iter()
        .filter(|c| c["status"] != "pass")
        .map(|c| format!("{}: {} ({})", c["id"], c["status"], c["detail"]))
        .collect();
    assert!(
        not_passed.is_empty(),
        "doctor checks that did not pass in the lab:\n{}",
        not_passed.join("\n")
    );
    assert!(
        checks.iter().any(|c| c["id"] == "kfunc-hook"),
        "no kfunc-hook check in {report}"
    );
    assert!(
        out.status.success(),
        "doctor exited {} with every check passing",
        out.status
    );
}

#[test]
#[ignore = "lab VM test: run with `cargo xtask lab test`"]
fn vm_sees_the_host_tree_and_writes_only_to_ram() {
    // The checkout may live anywhere on the host, /tmp included; the guest must see it.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    assert!(
        manifest.is_file(),
        "{} is not visible in the VM",
        manifest.display()
    );
    let scratch = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm-write-test");
    fs::write(&scratch, "guest").unwrap_or_else(|e| panic!("writing {}: {e}", scratch.display()));
    let mounts = read("/proc/self/mounts");
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/"));
    assert!(
        root.is_some_and(|l| l.starts_with("overlay / overlay ") && l.contains("upperdir=")),
        "the guest root is not the RAM overlay over the host:\n{mounts}"
    );
}
