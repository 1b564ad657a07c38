//! X-tune policies in the lab VM (`cargo xtask lab test`; ignored on the host): the example
//! policies of `examples/policies/` change what they say they change, a policy that returns an
//! out-of-range value or does not compile changes nothing, and `kernelx gen` output loads
//! unchanged for every tunable of the golden plans.
//!
//! Each `load --policy` compiles the policy with clang inside the VM (about 7 s under TCG once
//! the precompiled header exists; the first one of a boot builds it and `vmlinux.h`).

use std::ffi::CString;
use std::fs;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd, FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};

mod common;

use common::*;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn example(name: &str) -> String {
    repo_path(&format!("../../examples/policies/{name}"))
        .display()
        .to_string()
}

fn policy_status() -> serde_json::Value {
    status_json()["tunables"][0]["policy"].clone()
}

fn param(policy: &serde_json::Value, name: &str) -> u64 {
    policy["params"]
        .as_array()
        .and_then(|params| params.iter().find(|p| p["name"] == name))
        .and_then(|p| p["bits"].as_u64())
        .unwrap_or_else(|| panic!("no parameter {name} in {policy}"))
}

/// cgroup2 at /sys/fs/cgroup (the lab's init does not mount it) and a new group `name` in it:
/// its directory and its id (the directory's inode number).
fn cgroup(name: &str) -> (PathBuf, u64) {
    use std::os::unix::fs::MetadataExt as _;

    let root = Path::new(CGROUP_ROOT);
    if !root.join("cgroup.procs").exists() {
        let status = std::process::Command::new("mount")
            .args(["-t", "cgroup2", "none", CGROUP_ROOT])
            .status()
            .expect("mount");
        assert!(status.success(), "mounting cgroup2: {status}");
    }
    let dir = root.join(name);
    if !dir.exists() {
        fs::create_dir(&dir).expect("creating the cgroup");
    }
    let id = fs::metadata(&dir).expect("the cgroup's inode").ino();
    (dir, id)
}

/// F_GETPIPE_SZ of a new pipe made by a child process that first moved itself into `cgroup`.
fn child_pipe_size_in(cgroup: &Path) -> i64 {
    let procs = CString::new(cgroup.join("cgroup.procs").display().to_string()).unwrap();
    let (mut reader, writer) = std::io::pipe().expect("pipe()");
    // SAFETY: the child only makes system calls (no allocation, no locks) and leaves with
    // _exit; the parent waits for it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: raw system calls on descriptors and buffers this process owns.
        unsafe {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            // "0" moves the writing process.
            let moved = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            let mut fds = [0; 2];
            let size = if moved && libc::pipe(fds.as_mut_ptr()) == 0 {
                libc::fcntl(fds[0], libc::F_GETPIPE_SZ)
            } else {
                -1
            };
            libc::write(writer.as_raw_fd(), (&raw const size).cast(), 4);
            libc::_exit(0);
        }
    }
    drop(writer);
    let mut bytes = [0u8; 4];
    reader.read_exact(&mut bytes).expect("the child's answer");
    // SAFETY: waiting for the child forked above.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    let size = i32::from_ne_bytes(bytes);
    assert!(size > 0, "the child could not join {}", cgroup.display());
    i64::from(size)
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_policy_cgroup_hint_gives_one_cgroup_big_pipes_and_everyone_else_the_default() {
    let _clean = Clean::start();
    let (group, id) = cgroup("kx-big-pipes");
    // Per-task: the policy generation is reached by a transition like a value.
    ok(&[
        "load",
        &plan_path(),
        "--policy",
        &example("cgroup_hint.bpf.c"),
        "--mode",
        "per-task",
    ]);
    // No cgroup chosen yet: everyone keeps the default.
    assert_eq!(child_pipe_size_in(&group), 16 * PAGE);
    ok(&["set", TUNABLE, "--param", &format!("cgroup={id}")]);
    // At the same time: the group's processes get 64 pages, this one (outside) 16.
    for _ in 0..3 {
        assert_eq!(child_pipe_size_in(&group), 64 * PAGE);
        assert_eq!(new_pipe_size(), 16 * PAGE);
    }
    let policy = policy_status();
    assert_eq!(param(&policy, "cgroup"), id);
    assert!(policy["decisions"].as_u64().unwrap() >= 7, "{policy}");
    assert_eq!(policy["rejected"], 0, "{policy}");
    assert!(
        policy["source"]
            .as_str()
            .unwrap()
            .ends_with("cgroup_hint.bpf.c"),
        "{policy}"
    );
    // The default moves with `set`, the hint stays.
    ok(&["set", TUNABLE, "32"]);
    assert_eq!(new_pipe_size(), 32 * PAGE);
    assert_eq!(child_pipe_size_in(&group), 64 * PAGE);
    ok(&["unload", TUNABLE]);
    assert_eq!(child_pipe_size_in(&group), 16 * PAGE);
    assert_eq!(new_pipe_size(), 16 * PAGE);
    assert!(pinned().is_empty(), "{:?}", pinned());
}

/// A pipe with a non-blocking writer, filled until a write finds it full.
fn full_pipe() -> (std::io::PipeReader, std::fs::File) {
    let (reader, writer) = std::io::pipe().expect("pipe()");
    let fd: OwnedFd = writer.into();
    // SAFETY: fcntl on a descriptor this test owns.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    // SAFETY: the descriptor moves into the File, which owns it from here.
    let mut writer = unsafe { std::fs::File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(fd)) };
    loop {
        match writer.write(&[0u8; 4096]) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("writing the pipe: {e}"),
        }
    }
    (reader, writer)
}

/// `n` more writes that find `writer`'s pipe full.
fn full_writes(writer: &mut std::fs::File, n: u32) {
    for _ in 0..n {
        let err = writer.write(&[0u8; 4096]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock, "{err}");
    }
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_policy_feedback_switches_after_the_configured_full_writes_in_a_row() {
    let _clean = Clean::start();
    ok(&[
        "load",
        &plan_path(),
        "--policy",
        &example("feedback.bpf.c"),
        "--mode",
        "global",
    ]);
    ok(&["set", TUNABLE, "--param", "threshold=4"]);
    // The first full write counts 1, two more make 3: not yet.
    let (mut reader, mut writer) = full_pipe();
    full_writes(&mut writer, 2);
    assert_eq!(param(&policy_status(), "switched"), 0);
    assert_eq!(new_pipe_size(), 16 * PAGE);
    // A write that goes through ends the run.
    let mut page = [0u8; 4096];
    reader.read_exact(&mut page).expect("reading a page");
    writer
        .write_all(&page)
        .expect("a write into the freed page");
    full_writes(&mut writer, 3);
    assert_eq!(
        param(&policy_status(), "switched"),
        0,
        "3 in a row is not 4"
    );
    assert_eq!(new_pipe_size(), 16 * PAGE);
    // The fourth in a row switches.
    full_writes(&mut writer, 1);
    assert_eq!(param(&policy_status(), "switched"), 1);
    assert_eq!(new_pipe_size(), 64 * PAGE);
    // The latch is a parameter: resetting it goes back.
    ok(&["set", TUNABLE, "--param", "switched=0"]);
    assert_eq!(new_pipe_size(), 16 * PAGE);
    ok(&["unload", TUNABLE]);
    assert_eq!(new_pipe_size(), 16 * PAGE);
}

const ADD_PLAN: &str = "../analyze/testdata/golden/target_module/KX_TARGET_ADD.plan.json";
/// KX_TARGET_ADD in tests/target-module/kx_target.c.
const ADD_V1: u64 = 0x2a5;

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_policy_per_object_chooses_by_the_functions_argument() {
    let _clean = Clean::start();
    let target = TargetModule::insert();
    assert_eq!(target.call("add", 5), 5 + ADD_V1);
    let plan = repo_path(ADD_PLAN).display().to_string();
    ok(&["load", &plan, "--policy", &example("per_object.bpf.c")]);
    // Small inputs keep the default, from `large` (1000) up the large value.
    assert_eq!(target.call("add", 5), 5 + ADD_V1);
    assert_eq!(target.call("add", 999), 999 + ADD_V1);
    assert_eq!(target.call("add", 5000), 5000 + 0x1000);
    ok(&["set", "KX_TARGET_ADD", "--param", "large=10"]);
    assert_eq!(target.call("add", 50), 50 + 0x1000);
    ok(&["unload", "KX_TARGET_ADD"]);
    assert_eq!(target.call("add", 5000), 5000 + ADD_V1);
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_policy_out_of_range_values_and_broken_files_change_nothing() {
    let _clean = Clean::start();
    let temp = tempfile::tempdir().unwrap();
    let returns = temp.path().join("returns.bpf.c");
    fs::write(
        &returns,
        "#include \"kernelx_policy.h\"\n\
         KX_PARAM(__s64, v, 0);\n\
         KX_POLICY(ctx, probe, dflt)\n{\n\treturn v;\n}\n",
    )
    .unwrap();
    let returns = returns.display().to_string();

    // Reject (the default): 0 pages is outside 1..=1048576; the trigger keeps 16.
    ok(&["load", &plan_path(), "--policy", &returns]);
    assert_eq!(new_pipe_size(), 16 * PAGE);
    let policy = policy_status();
    assert!(policy["rejected"].as_u64().unwrap() >= 1, "{policy}");
    assert_eq!(policy["last_out_of_range"][0], 0, "{policy}");
    assert_eq!(
        policy["last_out_of_range"][1], "alloc_pipe_info+0x71",
        "{policy}"
    );
    let text = ok(&["status", TUNABLE]);
    assert!(
        text.contains("out of range (reject): ") && text.contains("last 0 at alloc_pipe_info+0x71"),
        "{text}"
    );
    ok(&["unload", TUNABLE]);

    // Clamp: 0 becomes the smallest valid value, 1 page.
    ok(&[
        "load",
        &plan_path(),
        "--policy",
        &returns,
        "--out-of-range",
        "clamp",
    ]);
    assert_eq!(new_pipe_size(), PAGE);
    assert!(policy_status()["clamped"].as_u64().unwrap() >= 1);
    ok(&["unload", TUNABLE]);

    // A file that does not compile: clang's file:line, nothing pinned, no module left.
    let broken = temp.path().join("broken.bpf.c");
    fs::write(
        &broken,
        "#include \"kernelx_policy.h\"\nKX_POLICY(ctx, probe, dflt)\n{\n\treturn dflt +;\n}\n",
    )
    .unwrap();
    let err = refused(&["load", &plan_path(), "--policy", broken.to_str().unwrap()]);
    assert!(
        err.contains(&format!("{}:4:", broken.display())) && err.contains("nothing was loaded"),
        "{err}"
    );
    // Unknown parameters are refused with the known ones, and change nothing.
    ok(&["load", &plan_path(), "--policy", &returns]);
    let err = refused(&["set", TUNABLE, "--param", "w=3", "--param", "v=64"]);
    assert!(
        err.contains("no parameter \"w\"") && err.contains('v'),
        "{err}"
    );
    assert_eq!(param(&policy_status(), "v"), 0);
    ok(&["unload", TUNABLE]);
    assert!(pinned().is_empty(), "{:?}", pinned());
    assert_eq!(new_pipe_size(), 16 * PAGE);
}

/// `kernelx gen` output loads unchanged: PIPE_DEF_BUFFERS and a target-module tunable of each
/// kind of update (immediate into a register and into memory, a compare, a combine, a
/// per-CPU store, fifteen functions). Every golden plan's stub compiles on the host
/// (`lab_tree_gen_output_compiles_for_every_golden_plan` in cli.rs); under TCG each load here
/// compiles for about 12 s.
#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_policy_gen_output_loads_unchanged() {
    let _clean = Clean::start();
    let _target = TargetModule::insert();
    let temp = tempfile::tempdir().unwrap();
    let mut plans = vec![plan_path()];
    for constant in [
        "KX_TARGET_IMM_REG",
        "KX_TARGET_STORE32",
        "KX_TARGET_CMP8",
        "KX_TARGET_ADD",
        "KX_TARGET_PCPU",
        "KX_TARGET_FAN",
    ] {
        let plan = format!("../analyze/testdata/golden/target_module/{constant}.plan.json");
        plans.push(repo_path(&plan).display().to_string());
    }
    for plan in &plans {
        let stub = temp.path().join("stub.bpf.c");
        let _ = fs::remove_file(&stub);
        ok(&["gen", plan, "-o", stub.to_str().unwrap()]);
        let json = ok(&["load", plan, "--policy", stub.to_str().unwrap(), "--json"]);
        let status: serde_json::Value = serde_json::from_str(&json).unwrap();
        let tunable = &status["tunables"][0];
        assert!(tunable["policy"].is_object(), "{status}");
        ok(&["unload", tunable["name"].as_str().unwrap()]);
    }
}
