//! The `kernelx` commands in the lab VM (`cargo xtask lab test`; ignored on the host): load,
//! set, get, status and unload of `PIPE_DEF_BUFFERS` with the golden fs plan, seen through
//! F_GETPIPE_SZ of new pipes; refusals that change nothing; the state lock; the cleanup after
//! a `kernelx load` killed with SIGKILL; `kernelx trace` (events, transitions, its lease) and
//! `kernelx clean`.
//!
//! Needs `kmod/build/kernelx.ko` (the lab builds it before the boot; `KERNELX_MODULE` names
//! it), root, bpffs and debugfs. The tests share the kernel: run them one at a time (the lab
//! does, `--test-threads=1`); each starts and ends with nothing loaded and the module out, as
//! the runtime's lab tests expect.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

use common::*;

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_cli_load_set_status_unload_tune_new_pipes_in_every_mode() {
    for mode in ["immediate", "per-task", "global"] {
        eprintln!("== mode {mode}");
        tune_new_pipes(mode);
    }
}

#[track_caller]
fn tune_new_pipes(mode: &str) {
    let _clean = Clean::start();
    let plan = plan_path();

    let table = ok(&["load", &plan, "--value", "32", "--mode", mode]);
    assert!(
        module_loaded(),
        "load inserted the module from KERNELX_MODULE"
    );
    assert!(table.contains("alloc_pipe_info+0x81"), "{table}");
    assert_eq!(new_pipe_size(), 32 * PAGE, "after load --value 32");
    assert_eq!(ok(&["get", TUNABLE]).trim(), "32");

    ok(&["set", TUNABLE, "64"]);
    assert_eq!(new_pipe_size(), 64 * PAGE, "after set 64");
    assert_eq!(ok(&["get", TUNABLE]).trim(), "64");

    // The kernel optimizes a probe a moment after it is attached.
    let mut last = serde_json::Value::Null;
    let optimized = loop_until(Duration::from_secs(10), || {
        drop(std::io::pipe());
        last = status_json();
        let probes = last["tunables"][0]["probes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        probes
            .iter()
            .filter(|p| p["optimizable"] == true)
            .all(|p| p["optimized"] == true)
    });
    let tunable = &last["tunables"][0];
    assert!(
        optimized,
        "an optimizable probe is not [OPTIMIZED]: {last:#}"
    );
    assert_eq!(
        last["tunables"].as_array().map(Vec::len),
        Some(1),
        "{last:#}"
    );
    assert_eq!(tunable["name"], TUNABLE);
    assert_eq!(tunable["value"], 64);
    assert_eq!(tunable["mode"], mode);
    assert_eq!(
        tunable["transition"]["state"], "done",
        "the set's transition: {last:#}"
    );
    assert!(
        tunable["transition"]["latency"].as_f64() >= Some(0.0),
        "a done transition has its latency: {last:#}"
    );
    assert_eq!(tunable["incomplete"], serde_json::Value::Null);
    let probes = tunable["probes"].as_array().expect("probes");
    assert_eq!(
        probes.len(),
        4,
        "three post-probes and one pre-probe: {last:#}"
    );
    assert!(probes.iter().any(|p| p["optimizable"] == true), "{last:#}");
    for probe in probes {
        assert!(
            probe["hits"].as_u64() > Some(0),
            "a probe never ran: {probe:#}"
        );
        assert_eq!(probe["errors"], 0, "{probe:#}");
    }
    let text = ok(&["status"]);
    assert!(
        text.contains("value 64 (built-in 16)") && text.contains("[OPTIMIZED]"),
        "{text}"
    );

    let unloaded = ok(&["unload", TUNABLE]);
    assert!(
        unloaded.contains(&format!("{mode} transition to the built-in value done"))
            && unloaded.ends_with(&format!("unloaded {TUNABLE}\n")),
        "{unloaded}"
    );
    assert_eq!(new_pipe_size(), 16 * PAGE, "after unload");
    assert!(pinned().is_empty(), "left pinned: {:?}", pinned());
    assert_eq!(status_json()["tunables"], serde_json::json!([]));
    let err = refused(&["get", TUNABLE]);
    assert!(err.contains("is not loaded"), "{err}");
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_cli_bad_input_changes_nothing_and_says_why() {
    let _clean = Clean::start();
    let temp = tempfile::tempdir().unwrap();
    let plan = plan_path();

    // No module loaded and none given: says how to get one.
    let output = command(&["load", &plan, "--value", "32"])
        .env_remove("KERNELX_MODULE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("kernelx module is not loaded") && err.contains("kernelx setup"),
        "{err}"
    );
    assert!(!module_loaded() && pinned().is_empty());

    // Another build of the kernel.
    let other_build = edited_plan(temp.path(), "other-build.json", |p| {
        p["kernel"]["build_id"] = "00112233445566778899aabbccddeeff00112233".into();
    });
    let err = refused(&["load", &other_build, "--value", "32"]);
    assert!(
        err.contains("build-id 00112233445566778899aabbccddeeff00112233"),
        "{err}"
    );
    assert!(pinned().is_empty());
    assert!(
        !module_loaded(),
        "a refused load removes the module it inserted"
    );

    // One byte of a site changed: the site is named, nothing attached.
    let mut changed_site = String::new();
    let changed = edited_plan(temp.path(), "changed-byte.json", |p| {
        let site = &mut p["tunables"][0]["sites"][0];
        changed_site = format!(
            "{}+{:#x}",
            site["function"].as_str().unwrap(),
            site["offset"].as_u64().unwrap()
        );
        let bytes = site["bytes"].as_str().unwrap().to_owned();
        let first = u8::from_str_radix(&bytes[..2], 16).unwrap() ^ 0x01;
        site["bytes"] = format!("{first:02x}{}", &bytes[2..]).into();
    });
    let err = refused(&["load", &changed, "--value", "32"]);
    assert!(
        err.contains("does not fit the running kernel") && err.contains(&changed_site),
        "{changed_site}: {err}"
    );
    assert!(pinned().is_empty());
    assert!(
        !module_loaded(),
        "a refused load removes the module it inserted"
    );
    assert_eq!(new_pipe_size(), 16 * PAGE, "after the refused loads");

    // Out of range, at load and at set; a second load.
    let err = refused(&["load", &plan, "--value", "0"]);
    assert!(
        err.contains("--value 0 is refused") && err.contains("[1, 1048576]"),
        "{err}"
    );
    assert!(pinned().is_empty());
    ok(&["load", &plan, "--value", "32"]);
    let err = refused(&["set", TUNABLE, "0"]);
    assert!(
        err.contains("[1, 1048576]") && err.contains("nothing was changed"),
        "{err}"
    );
    let err = refused(&["load", &plan, "--value", "64"]);
    assert!(err.contains("already loaded"), "{err}");
    assert_eq!(ok(&["get", TUNABLE]).trim(), "32");
    assert_eq!(new_pipe_size(), 32 * PAGE, "after the refusals");
    ok(&["unload", "--all"]);
    assert_eq!(new_pipe_size(), 16 * PAGE);
}

/// Reads `child`'s stderr on a thread until a line contains `needle`.
fn wait_for_line(child: &mut Child, needle: &'static str, limit: Duration) -> Option<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("(paused load) {line}");
            if line.contains(needle) {
                let _ = send.send(line);
            }
        }
    });
    receive.recv_timeout(limit).ok()
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_cli_lock_refuses_concurrent_commands_and_unload_all_cleans_a_killed_load() {
    let _clean = Clean::start();
    let plan = plan_path();
    // The test-only hook stops the load after pinning, holding the lock, until it is killed.
    let mut load = command(&["load", &plan, "--value", "32"])
        .env("KERNELX_TEST_PAUSE_AFTER_PIN", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting kernelx load");
    let paused = wait_for_line(&mut load, "waiting to be killed", Duration::from_secs(120));
    if paused.is_none() {
        let _ = load.kill();
        panic!("the load never reached the pause hook");
    }
    assert_eq!(pinned(), [TUNABLE]);
    assert_eq!(
        new_pipe_size(),
        32 * PAGE,
        "the paused load armed its probes"
    );

    let pid = format!("pid {}", load.id());
    for args in [
        &["unload", "--all"][..],
        &["set", TUNABLE, "64"],
        &["load", plan.as_str(), "--value", "64"],
    ] {
        let err = refused(args);
        assert!(
            err.contains("another kernelx") && err.contains(&pid),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        new_pipe_size(),
        32 * PAGE,
        "the refused commands changed nothing"
    );

    load.kill().expect("SIGKILL");
    load.wait().unwrap();
    let status = status_json();
    let tunable = &status["tunables"][0];
    assert_eq!(tunable["name"], TUNABLE, "{status:#}");
    assert!(
        tunable["incomplete"]
            .as_str()
            .is_some_and(|w| w.contains("unload --all")),
        "{status:#}"
    );
    let err = refused(&["set", TUNABLE, "64"]);
    assert!(err.contains("load was interrupted"), "{err}");

    let out = ok(&["unload", "--all"]);
    assert!(out.contains(&format!("unloaded {TUNABLE}")), "{out}");
    assert!(pinned().is_empty(), "left pinned: {:?}", pinned());
    assert_eq!(new_pipe_size(), 16 * PAGE, "after unload --all");
    assert_eq!(
        ok(&["unload", "--all"]).trim(),
        format!("nothing to unload (nothing pinned under {PIN_ROOT})")
    );
}

const BLOCK_PLAN: &str = "../analyze/testdata/golden/target_module/KX_TARGET_BLOCK.plan.json";
const BLOCK_TUNABLE: &str = "KX_TARGET_BLOCK";
/// KX_TARGET_BLOCK in tests/target-module/kx_target.c: `block` returns x + V.
const BLOCK_V1: u64 = 0x6b1d;
const BLOCK_NEW: u64 = 0x100;

impl TargetModule {
    fn waiters(&self) -> u32 {
        fs::read_to_string(format!("{TARGET}/waiters"))
            .expect("reading waiters")
            .trim()
            .parse()
            .expect("waiters is a number")
    }

    /// Calls `block` on `x` from a new thread, and returns once it sleeps inside
    /// kx_target_block (the span of KX_TARGET_BLOCK); join the thread for x + V.
    #[track_caller]
    fn enter_block(&self, x: u64) -> std::thread::JoinHandle<u64> {
        let before = self.waiters();
        let path = format!("{TARGET}/block");
        fs::write(&path, x.to_string()).expect("writing block");
        let reader = std::thread::spawn(move || {
            let text = fs::read_to_string(&path).expect("reading block");
            text.trim().parse().expect("block prints a number")
        });
        assert!(
            loop_until(Duration::from_secs(10), || self.waiters() == before + 1),
            "the reader of block({x}) did not go to sleep"
        );
        reader
    }
}

fn block_status() -> serde_json::Value {
    status_json()["tunables"][0].clone()
}

/// `kernelx load` of the KX_TARGET_BLOCK golden plan at V' = BLOCK_NEW in `mode`.
fn block_load(mode: &str, timeout_s: u32) -> Command {
    let plan = repo_path(BLOCK_PLAN).display().to_string();
    let (new, timeout) = (BLOCK_NEW.to_string(), timeout_s.to_string());
    command(&[
        "load",
        &plan,
        "--value",
        &new,
        "--mode",
        mode,
        "--timeout",
        &timeout,
    ])
}

/// Runs `command`, printing what it printed.
fn output_of(mut command: Command) -> Output {
    let output = command.output().expect("running kernelx");
    eprintln!(
        "$ {command:?}\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_cli_per_task_mode_waits_for_each_task_inside_the_span() {
    let _clean = Clean::start();
    let target = TargetModule::insert();

    // A sleeps inside the span with the built-in value; the load cannot complete.
    let a = target.enter_block(1);
    let output = output_of(block_load("per-task", 1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{err}");
    assert!(
        err.contains("per-task transition to 256 still waiting") && err.contains("1 task(s)"),
        "{err}"
    );
    let status = block_status();
    assert_eq!(status["transition"]["state"], "pending", "{status:#}");
    assert_eq!(
        status["transition"]["inside"].as_array().map(Vec::len),
        Some(1),
        "{status:#}"
    );
    // B is outside every span: it switches at once, while A keeps the old value.
    let b = target.enter_block(2);
    target.release();
    assert_eq!(a.join().unwrap(), 1 + BLOCK_V1, "A started with V1");
    assert_eq!(
        b.join().unwrap(),
        2 + BLOCK_NEW,
        "B switched at its trigger"
    );
    let status = block_status();
    assert_eq!(status["transition"]["state"], "done", "{status:#}");
    assert!(
        status["transition"]["latency"].as_f64() > Some(0.0),
        "{status:#}"
    );

    // The way back: C sleeps inside with V'; unload waits, keeps the tunable and says why.
    let c = target.enter_block(3);
    let err = refused(&["unload", BLOCK_TUNABLE, "--timeout", "1"]);
    assert!(
        err.contains("stays loaded: 1 task(s) inside a safe span still use its value"),
        "{err}"
    );
    assert_eq!(
        pinned(),
        [BLOCK_TUNABLE],
        "the tunable stays while C is inside"
    );
    let d = target.enter_block(4);
    target.release();
    assert_eq!(
        c.join().unwrap(),
        3 + BLOCK_NEW,
        "C keeps V' until it leaves"
    );
    assert_eq!(
        d.join().unwrap(),
        4 + BLOCK_V1,
        "D moved back at its trigger"
    );
    let unloaded = ok(&["unload", BLOCK_TUNABLE]);
    assert!(unloaded.contains("unloaded KX_TARGET_BLOCK"), "{unloaded}");
    assert!(pinned().is_empty());
    let e = target.enter_block(5);
    target.release();
    assert_eq!(e.join().unwrap(), 5 + BLOCK_V1, "after unload");
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_cli_global_mode_switches_nobody_while_a_task_is_inside() {
    let _clean = Clean::start();
    let target = TargetModule::insert();

    // A timeout shorter than A's sleep: aborted, nothing loaded.
    let a = target.enter_block(1);
    let output = output_of(block_load("global", 1));
    assert_eq!(output.status.code(), Some(1), "the load must fail");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("global transition to 256 aborted") && err.contains("old value stays"),
        "{err}"
    );
    assert!(pinned().is_empty(), "an aborted global load leaves nothing");

    // A longer timeout: the load waits for A; B, entering meanwhile, gets the old value.
    // Generous limits: under TCG on a busy host a load (kallsyms, kcore, the verifier) can
    // take tens of seconds before it starts to wait for A.
    let load = block_load("global", 600)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kernelx load");
    let pinned_in_time = loop_until(Duration::from_secs(300), || pinned().len() == 1);
    if !pinned_in_time {
        target.release();
        let output = load.wait_with_output().expect("waiting for kernelx load");
        panic!(
            "the load never pinned the tunable:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let b = target.enter_block(2);
    target.release();
    assert_eq!(a.join().unwrap(), 1 + BLOCK_V1);
    assert_eq!(
        b.join().unwrap(),
        2 + BLOCK_V1,
        "nobody switches while A is inside"
    );
    let output = load.wait_with_output().expect("waiting for kernelx load");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{err}");
    assert!(err.contains("global transition to 256 done"), "{err}");
    let c = target.enter_block(3);
    target.release();
    assert_eq!(
        c.join().unwrap(),
        3 + BLOCK_NEW,
        "everyone switched once A left"
    );

    // The way back: D inside with V'; a short unload aborts and V' stays, for everyone.
    let d = target.enter_block(4);
    let err = refused(&["unload", BLOCK_TUNABLE, "--timeout", "1"]);
    assert!(
        err.contains("aborted") && err.contains("old value stays"),
        "{err}"
    );
    let status = block_status();
    assert_eq!(status["value"], BLOCK_NEW, "{status:#}");
    assert_eq!(status["transition"]["state"], "aborted", "{status:#}");

    // An unload killed while it waits for D: status (which never takes the lock) shows it
    // pending; the next unload asks the module how it ended (nothing was activated), settles
    // it, and tries again: aborted, V' stays.
    let mut waiting = command(&["unload", BLOCK_TUNABLE, "--timeout", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning kernelx unload");
    assert!(
        loop_until(
            Duration::from_secs(120),
            || block_status()["transition"]["state"] == "pending"
        ),
        "the unload never started its transition"
    );
    waiting.kill().expect("killing kernelx unload");
    waiting.wait().expect("reaping kernelx unload");
    let status = block_status();
    assert_eq!(status["transition"]["state"], "pending", "{status:#}");
    let err = refused(&["unload", BLOCK_TUNABLE, "--timeout", "1"]);
    assert!(err.contains("aborted"), "{err}");
    let status = block_status();
    assert_eq!(status["transition"]["state"], "aborted", "{status:#}");
    assert_eq!(status["value"], BLOCK_NEW, "{status:#}");

    let e = target.enter_block(5);
    target.release();
    assert_eq!(d.join().unwrap(), 4 + BLOCK_NEW);
    assert_eq!(
        e.join().unwrap(),
        5 + BLOCK_NEW,
        "the aborted way back changed nothing"
    );
    let unloaded = ok(&["unload", BLOCK_TUNABLE]);
    assert!(
        unloaded.contains("global transition to the built-in value done"),
        "{unloaded}"
    );
    let f = target.enter_block(6);
    target.release();
    assert_eq!(f.join().unwrap(), 6 + BLOCK_V1, "after unload");
}

/// A running `kernelx trace --json`: its stdout lines, parsed, as they come.
struct Trace {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
}

impl Trace {
    #[track_caller]
    fn start(args: &[&str]) -> Trace {
        let mut child = command(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting kernelx {args:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout piped");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("(trace) {line}");
                let json = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("a trace line is not JSON ({e}): {line}"));
                if send.send(json).is_err() {
                    break;
                }
            }
        });
        Trace { child, lines }
    }

    /// The first line (from now) for which `wanted` holds, calling `tick` between reads;
    /// `None` after `limit`.
    fn wait_for(
        &self,
        limit: Duration,
        mut tick: impl FnMut(),
        wanted: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let start = Instant::now();
        while start.elapsed() < limit {
            tick();
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if wanted(&line) => return Some(line),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
        None
    }

    /// Waits for the process to end by itself; its exit status.
    fn exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        loop_until(limit, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long the probes of the tunable still write events without a renewal.
#[track_caller]
fn trace_lease() -> Option<Duration> {
    kernelx_runtime::sie::SieRuntime::system()
        .trace_lease(TUNABLE)
        .expect("reading the trace lease")
}

fn is_event(line: &serde_json::Value, event: &str) -> bool {
    line["event"] == event
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_cli_trace_streams_triggers_moves_and_transitions() {
    let _clean = Clean::start();
    let plan = plan_path();
    ok(&["load", &plan, "--value", "32"]);
    assert_eq!(trace_lease(), None, "no trace: the probes write no events");

    // --count: the trace ends by itself; its triggers name alloc_pipe_info and the value.
    let mut trace = Trace::start(&["trace", TUNABLE, "--json", "--count", "12"]);
    let state = trace
        .wait_for(Duration::from_secs(60), || {}, |l| is_event(l, "state"))
        .expect("the trace starts with the state");
    assert_eq!(state["tunable"], TUNABLE);
    assert_eq!(state["mode"], "immediate");
    assert_eq!(
        state["target"],
        serde_json::json!({"kind": "value", "value": 32})
    );
    let mut lines = vec![state];
    let ended = loop_until(Duration::from_secs(30), || {
        drop(std::io::pipe());
        trace.child.try_wait().unwrap().is_some()
    });
    assert!(ended, "--count 12 did not stop the trace");
    // The reader thread ends at the end of the output.
    lines.extend(trace.lines.iter());
    assert_eq!(lines.len(), 12, "--count 12: {lines:#?}");
    let ours = std::process::id();
    let triggers: Vec<_> = lines.iter().filter(|l| is_event(l, "trigger")).collect();
    assert!(
        triggers
            .iter()
            .any(|t| t["pid"] == ours && t["role"] == "post" && t["outcome"]["kind"] == "applied"),
        "no update applied in this process: {lines:#?}"
    );
    for t in &triggers {
        assert_eq!(t["function"], "alloc_pipe_info", "{t:#}");
        assert_eq!(t["generation"], 1, "{t:#}");
        assert_eq!(t["setting"]["value"], 32, "{t:#}");
        assert!(
            ["applied", "marked"].contains(&t["outcome"]["kind"].as_str().unwrap_or("")),
            "{t:#}"
        );
    }
    assert_eq!(trace_lease(), None, "a trace that ended cleared its lease");

    // One reader per tunable; a `set` shows as a transition; the new value in the triggers.
    let trace = Trace::start(&["trace", "--json", "--duration", "60"]);
    trace
        .wait_for(Duration::from_secs(60), || {}, |l| is_event(l, "state"))
        .expect("the trace of every tunable starts with the state");
    let err = refused(&["trace", TUNABLE, "--duration", "1"]);
    assert!(err.contains("traced by another `kernelx trace`"), "{err}");
    assert!(trace_lease().is_some(), "a running trace holds the lease");
    ok(&["set", TUNABLE, "64"]);
    let transition = trace
        .wait_for(
            Duration::from_secs(10),
            || {},
            |l| is_event(l, "transition"),
        )
        .expect("the set shows as a transition");
    assert_eq!(transition["target_gen"], 2, "{transition:#}");
    assert_eq!(transition["target"]["value"], 64, "{transition:#}");
    assert_eq!(transition["state"], "done", "{transition:#}");
    trace
        .wait_for(
            Duration::from_secs(10),
            || drop(std::io::pipe()),
            |l| is_event(l, "trigger") && l["setting"]["value"] == 64 && l["generation"] == 2,
        )
        .expect("triggers use the new value");

    // Killed: its lease runs out by itself.
    drop(trace);
    let left = trace_lease().expect("a killed trace's lease runs on for a moment");
    assert!(left <= Duration::from_secs(2), "{left:?}");
    std::thread::sleep(left + Duration::from_millis(100));
    assert_eq!(trace_lease(), None, "the killed trace's lease ran out");

    // Ctrl-C ends a trace cleanly and clears its lease at once; an unload shows.
    let mut trace = Trace::start(&["trace", TUNABLE, "--json"]);
    trace
        .wait_for(Duration::from_secs(60), || {}, |l| is_event(l, "state"))
        .expect("state");
    // SAFETY: signals our own child.
    assert_eq!(
        unsafe { libc::kill(trace.child.id() as i32, libc::SIGINT) },
        0
    );
    let status = trace
        .exit(Duration::from_secs(10))
        .expect("SIGINT ends the trace");
    assert!(status.success(), "{status:?}");
    assert_eq!(trace_lease(), None, "Ctrl-C cleared the lease");
    let trace = Trace::start(&["trace", "--json"]);
    trace
        .wait_for(Duration::from_secs(60), || {}, |l| is_event(l, "state"))
        .expect("state");
    ok(&["unload", TUNABLE]);
    trace
        .wait_for(Duration::from_secs(10), || {}, |l| is_event(l, "unloaded"))
        .expect("the unload shows");
    drop(trace);

    // Per-task mode: tasks move to the new generation, by sweeps or at their triggers.
    ok(&["load", &plan, "--value", "32", "--mode", "per-task"]);
    let trace = Trace::start(&["trace", TUNABLE, "--json", "--duration", "60"]);
    trace
        .wait_for(Duration::from_secs(60), || {}, |l| is_event(l, "state"))
        .expect("state");
    ok(&["set", TUNABLE, "64"]);
    let moved = trace
        .wait_for(
            Duration::from_secs(10),
            || drop(std::io::pipe()),
            |l| is_event(l, "task-move"),
        )
        .expect("a task moved");
    assert_eq!(
        (moved["from"].as_u64(), moved["to"].as_u64()),
        (Some(1), Some(2)),
        "{moved:#}"
    );
    assert_eq!(moved["setting"]["value"], 64, "{moved:#}");
    drop(trace);
    ok(&["unload", TUNABLE]);
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_cli_clean_removes_stale_records_and_leaves_loaded_tunables() {
    let _clean = Clean::start();
    let plan = plan_path();
    ok(&["load", &plan, "--value", "32"]);
    let records = Path::new("/run/kernelx/tunables");
    let record = records.join(format!("{TUNABLE}.json"));
    fs::copy(&record, records.join("STALE.json")).unwrap();

    let dry = ok(&["clean", "--dry-run"]);
    assert_eq!(
        dry,
        "would remove the stale record of STALE (it is not pinned)\n"
    );
    assert!(records.join("STALE.json").exists(), "--dry-run");
    let done = ok(&["clean"]);
    assert_eq!(
        done,
        "removed the stale record of STALE (it is not pinned)\n"
    );
    assert!(!records.join("STALE.json").exists());
    assert!(record.exists(), "the loaded tunable's record stays");
    assert_eq!(ok(&["get", TUNABLE]).trim(), "32");
    assert_eq!(new_pipe_size(), 32 * PAGE);
    assert_eq!(ok(&["clean"]), "nothing to clean\n");
    ok(&["unload", TUNABLE]);
}
