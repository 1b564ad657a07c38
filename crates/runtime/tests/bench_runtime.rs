//! The measurements of `cargo xtask bench runtime`, made in the lab VM; ignored on the host,
//! and not a `vm_*` binary, so `cargo xtask lab test` leaves it out.
//!
//! * Per-trigger cost: the target module's `loop` file calls `kx_target_imm_reg64` N times in
//!   a kernel loop (no syscall per call) and reports the elapsed time, with no probe, with a
//!   tracefs kprobe event at the SIE probe's address, and with the SIE program loaded from the
//!   golden `KX_TARGET_IMM_REG64` plan, each jump-optimized (checked in the kprobe list), and
//!   the SIE program once more with kprobe optimization off (INT3), and with an X-tune policy
//!   that returns its default (jump-optimized).
//! * Load (verify + fill + attach + pin and arm), `set` and unload times of target-module plans
//!   of 1, 5 (the first five sites of the 15-site plan) and 15 sites, and of the 3-site
//!   PIPE_DEF_BUFFERS plan in each mode.
//! * Transition latency with 0 to 64 threads asleep inside the safe span of `KX_TARGET_BLOCK`,
//!   per-task and global: of another tunable (the stop or sweep passes over the sleepers), and
//!   per-task of `KX_TARGET_BLOCK` itself (one sweep moves every task but the sleepers, which
//!   are left behind).
//!
//! Prints the results as JSON after `kernelx-bench-runtime: `, on one line, for the xtask to
//! read.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::{Duration, Instant};

use kernelx_plan::{Plan, TunablePlan};
use kernelx_runtime::policy::{CompileOptions, compile_policy};
use kernelx_runtime::sie::{
    LoadRequest, Outcome, PolicyBound, PolicyLoad, ProbeTarget, SieProgram, SieRuntime, Transition,
};
use kernelx_runtime::state::Mode;
use serde_json::{Value, json};

use common::{KPROBE_LIST, Module, Parked, kprobe_lines, loop_until, repo_path, spans_of};

const TRACING: &str = "/sys/kernel/tracing";
const LOOP: &str = "/sys/kernel/debug/kx_target/loop";
const OPTIMIZATION: &str = "/proc/sys/debug/kprobes-optimization";
/// One loop run of at least this long is measured; shorter ones are calibration.
const MIN_RUN: Duration = Duration::from_millis(300);
/// Measured runs per probe setting; the median counts.
const RUNS: usize = 5;
/// Loads (and unloads) per plan, and `set`s per load.
const LOADS: usize = 5;
const SETS: usize = 20;
/// A tunable's probes are jump-optimized within this long (the optimizer waits ~1 s).
const OPTIMIZE_WAIT: Duration = Duration::from_secs(20);

const TARGET_PLANS: &str = "../analyze/testdata/golden/target_module";
/// Threads asleep inside a safe span while transitions are timed, and transitions per count.
const PARKED: [usize; 4] = [0, 4, 16, 64];
const TRANSITIONS: usize = 20;

#[track_caller]
fn tunable(path: &str) -> TunablePlan {
    let plan = Plan::read(repo_path(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    plan.tunables
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{path} has no tunable"))
}

#[track_caller]
fn write(path: &str, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("writing {text:?} to {path}: {e}"));
}

#[track_caller]
fn append(path: &str, text: &str) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("appending {text:?} to {path}: {e}"));
}

#[track_caller]
fn read_u64(path: &str) -> u64 {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path} gave {text:?}: {e}"))
}

/// Calls the function behind debugfs file `file` `calls` times in the kernel; the elapsed time.
#[track_caller]
fn kernel_loop(file: &str, calls: u64) -> Duration {
    write(LOOP, &format!("{file} {calls}"));
    Duration::from_nanos(read_u64(LOOP))
}

/// Nanoseconds per call of `file`'s function in [`RUNS`] kernel loops, each at least
/// [`MIN_RUN`] long, sorted; and the calls per loop.
fn ns_per_call(file: &str) -> (Vec<f64>, u64) {
    let mut calls = 1000;
    loop {
        let took = kernel_loop(file, calls);
        if took >= MIN_RUN {
            break;
        }
        let scale = MIN_RUN.as_secs_f64() / took.as_secs_f64().max(1e-6);
        calls = (calls as f64 * scale.clamp(2.0, 100.0)) as u64;
    }
    let mut per_call: Vec<f64> = (0..RUNS)
        .map(|_| kernel_loop(file, calls).as_nanos() as f64 / calls as f64)
        .collect();
    per_call.sort_by(f64::total_cmp);
    (per_call, calls)
}

/// Waits until every probe at `sites` (`function+0xoff`) is listed `[OPTIMIZED]`, or not,
/// as `optimized` says; returns how long it took.
#[track_caller]
fn wait_for_probes(sites: &[String], optimized: bool) -> Duration {
    let start = Instant::now();
    let done = loop_until(OPTIMIZE_WAIT, || {
        let list = fs::read_to_string(KPROBE_LIST).unwrap_or_default();
        sites.iter().all(|site| {
            list.lines().any(|l| {
                l.split_whitespace().any(|w| w == site) && l.contains("[OPTIMIZED]") == optimized
            })
        })
    });
    assert!(
        done,
        "{sites:?} not all {} after {OPTIMIZE_WAIT:?}:\n{}",
        if optimized { "[OPTIMIZED]" } else { "INT3" },
        fs::read_to_string(KPROBE_LIST).unwrap_or_default()
    );
    start.elapsed()
}

/// The sites (`function+0xoff`) of `program`'s probes the plan says the kernel can optimize.
fn optimizable_sites(program: &SieProgram) -> Vec<String> {
    program
        .probes()
        .iter()
        .filter(|p| p.jump_optimizable())
        .map(|p| format!("{}+{:#x}", p.function(), p.offset()))
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One probe setting's cost per call of the looped function.
fn trigger_row(probe: &str, file: &str) -> Value {
    let (ns, calls) = ns_per_call(file);
    let (min, median, max) = (ns[0], ns[ns.len() / 2], ns[ns.len() - 1]);
    eprintln!("{probe}: {median:.1} ns per call ({min:.1}..{max:.1}, {calls} calls per loop)");
    json!({"probe": probe, "ns_per_call": median, "ns_per_call_min": min,
           "ns_per_call_max": max, "calls_per_loop": calls})
}

/// The per-trigger costs at the SIE probe of `KX_TARGET_IMM_REG64`.
fn trigger_costs(runtime: &SieRuntime) -> Vec<Value> {
    const FILE: &str = "imm_reg64";
    const PROBE: &str = "kxbench";
    let program = SieProgram::from_plan(&tunable(&format!(
        "{TARGET_PLANS}/KX_TARGET_IMM_REG64.plan.json"
    )))
    .expect("the KX_TARGET_IMM_REG64 plan is supported");
    let sites = optimizable_sites(&program);
    let [site] = sites.as_slice() else {
        panic!("KX_TARGET_IMM_REG64: optimizable probes at {sites:?}, expected one");
    };
    write(&format!("/sys/kernel/debug/kx_target/{FILE}"), "1");
    let mut rows = vec![trigger_row("none", FILE)];

    // A bare kprobe: a kprobe event at the same address, enabled.
    append(
        &format!("{TRACING}/kprobe_events"),
        &format!("p:{PROBE} {site}\n"),
    );
    let enable = format!("{TRACING}/events/kprobes/{PROBE}/enable");
    write(&enable, "1");
    wait_for_probes(std::slice::from_ref(site), true);
    write(&format!("{TRACING}/tracing_on"), "0");
    rows.push(trigger_row("kprobe event, tracing off", FILE));
    write(&format!("{TRACING}/tracing_on"), "1");
    rows.push(trigger_row("kprobe event, recording", FILE));
    write(&enable, "0");
    append(&format!("{TRACING}/kprobe_events"), &format!("-:{PROBE}\n"));
    write(&format!("{TRACING}/trace"), "");

    // The SIE program, its update checked before it is timed.
    runtime
        .load(
            &program,
            &LoadRequest::immediate(0x1000),
            ProbeTarget::symbol_of,
        )
        .unwrap_or_else(|e| panic!("loading KX_TARGET_IMM_REG64: {e}"));
    wait_for_probes(&sites, true);
    let path = format!("/sys/kernel/debug/kx_target/{FILE}");
    assert_eq!(read_u64(&path), 0x1001, "{FILE}(1) with V' = 0x1000");
    rows.push(trigger_row("SIE, jump-optimized", FILE));
    write(OPTIMIZATION, "0");
    wait_for_probes(&sites, false);
    assert_eq!(read_u64(&path), 0x1001, "{FILE}(1) with V' = 0x1000, INT3");
    rows.push(trigger_row("SIE, INT3 (optimization off)", FILE));
    write(OPTIMIZATION, "1");
    runtime.detach(program.tunable()).expect("unloading");

    // An X-tune policy that returns its default: what asking a policy adds (the stack check
    // of the task, the freplace call, the range, IV' from V').
    let policy = PolicyLoad {
        object: default_policy(),
        source: "returns-default.bpf.c".to_owned(),
        bound: PolicyBound::Reject,
    };
    let request = LoadRequest {
        policy: Some(policy),
        ..LoadRequest::immediate(0x1000)
    };
    runtime
        .load(&program, &request, ProbeTarget::symbol_of)
        .unwrap_or_else(|e| panic!("loading KX_TARGET_IMM_REG64 with a policy: {e}"));
    wait_for_probes(&sites, true);
    assert_eq!(
        read_u64(&path),
        0x1001,
        "{FILE}(1) with the policy's 0x1000"
    );
    rows.push(trigger_row("SIE with a policy, jump-optimized", FILE));
    runtime.detach(program.tunable()).expect("unloading");
    let function = program.probes()[0].function();
    assert!(
        loop_until(Duration::from_secs(10), || kprobe_lines(function)
            .is_empty()),
        "probes left in {function}"
    );
    rows
}

/// A policy that returns its default, compiled against the running kernel's BTF.
fn default_policy() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("returns-default.bpf.c");
    fs::write(
        &source,
        "#include \"kernelx_policy.h\"\nKX_POLICY(ctx, probe, dflt)\n{\n\treturn dflt;\n}\n",
    )
    .expect("writing the policy");
    let start = Instant::now();
    let compiled = compile_policy(&source, &CompileOptions::new(dir.path().join("cache")))
        .unwrap_or_else(|e| panic!("compiling the benchmark's policy: {e}"));
    eprintln!("policy compiled in {:?}", start.elapsed());
    compiled.object
}

/// Load, `set` and unload times of `tunable` in `mode`, loaded at `value` and set to
/// `value + 1`; `check` says whether the tuned code computes what V' = `value` gives. In the
/// per-task and global modes `set` is a transition (its latency is the set's time). `label`
/// names the row.
fn plan_costs(
    runtime: &SieRuntime,
    label: &str,
    tunable: TunablePlan,
    mode: Mode,
    value: i64,
    check: impl Fn() -> bool,
) -> Value {
    let program =
        SieProgram::from_plan(&tunable).unwrap_or_else(|e| panic!("{}: {e}", tunable.name));
    let request = LoadRequest {
        value,
        mode,
        spans: spans_of(&program),
        timeout: Duration::from_secs(10),
        policy: None,
    };
    let sites = optimizable_sites(&program);
    let functions: Vec<&str> = program.probes().iter().map(|p| p.function()).collect();
    let (mut total, mut verify, mut fill, mut attach, mut pin) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut set, mut unload, mut optimized) = (vec![], vec![], vec![]);
    for _ in 0..LOADS {
        let start = Instant::now();
        let loaded = runtime
            .load(&program, &request, ProbeTarget::symbol_of)
            .unwrap_or_else(|e| panic!("loading {}: {e}", tunable.name));
        total.push(ms(start.elapsed()));
        verify.push(ms(loaded.timings.verify));
        fill.push(ms(loaded.timings.fill));
        attach.push(ms(loaded.timings.attach));
        pin.push(ms(loaded.timings.pin));
        assert!(
            check(),
            "{} = {value}: the tuned code disagrees",
            tunable.name
        );
        if !sites.is_empty() {
            optimized.push(wait_for_probes(&sites, true).as_secs_f64());
        }
        for i in 0..SETS {
            let start = Instant::now();
            let change = runtime
                .set(&program, value + (i as i64 % 2), request.timeout)
                .unwrap_or_else(|e| panic!("setting {}: {e}", tunable.name));
            assert!(
                matches!(change.outcome, Outcome::Done { .. }),
                "{}: {change:?}",
                tunable.name
            );
            set.push(start.elapsed().as_secs_f64() * 1e6);
        }
        let start = Instant::now();
        runtime
            .unload(&program, request.timeout)
            .expect("unloading");
        unload.push(ms(start.elapsed()));
        // The links go from a workqueue: start the next load from a kernel without them.
        assert!(
            loop_until(Duration::from_secs(10), || functions
                .iter()
                .all(|f| kprobe_lines(f).is_empty())),
            "{}: probes left after the unload",
            tunable.name
        );
    }
    let row = json!({
        "plan": label,
        "mode": mode.name(),
        "sites": tunable.sites.len(),
        "probes": program.probes().len(),
        "load_ms": median(total),
        "verify_ms": median(verify),
        "fill_ms": median(fill),
        "attach_ms": median(attach),
        "pin_arm_ms": median(pin),
        "set_us": median(set),
        "unload_ms": median(unload),
        "optimized_after_s": if optimized.is_empty() { Value::Null } else { median(optimized).into() },
    });
    eprintln!("{row}");
    row
}

/// `KX_TARGET_FAN` in tests/target-module/kx_target.c: `fan<n>(x)` returns (x ^ n) + this.
const FAN_COMPILED: u64 = 501;

/// The golden KX_TARGET_FAN plan cut to the sites (and their spans) in `fan1`..`fan<count>`.
fn fan_sites(count: u64) -> TunablePlan {
    let mut plan = tunable(&format!("{TARGET_PLANS}/KX_TARGET_FAN.plan.json"));
    let kept = |function: &str| {
        function
            .strip_prefix("kx_target_fan")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n <= count)
    };
    plan.sites.retain(|s| kept(&s.function));
    plan.safe_spans.retain(|s| kept(&s.function));
    assert_eq!(plan.sites.len() as u64, count, "KX_TARGET_FAN sites");
    plan
}

/// Loads `path`'s tunable in `mode` at its default; its program and that default.
#[track_caller]
fn load_at_default(runtime: &SieRuntime, path: &str, mode: Mode) -> (SieProgram, i64) {
    let tunable = tunable(path);
    let program =
        SieProgram::from_plan(&tunable).unwrap_or_else(|e| panic!("{}: {e}", tunable.name));
    let request = LoadRequest {
        value: tunable.default,
        mode,
        spans: spans_of(&program),
        timeout: Duration::from_secs(10),
        policy: None,
    };
    runtime
        .load(&program, &request, ProbeTarget::symbol_of)
        .unwrap_or_else(|e| panic!("loading {}: {e}", tunable.name));
    (program, tunable.default)
}

/// The latency of a transition as the runtime reports it: until every task that can move has
/// (a per-task transition that leaves tasks behind reports how long its call waited); and how
/// many tasks were left behind.
fn latency_us(change: &Transition) -> (f64, usize) {
    match &change.outcome {
        Outcome::Done { latency } => (latency.as_secs_f64() * 1e6, 0),
        Outcome::Pending { inside, waited } => (waited.as_secs_f64() * 1e6, inside.len()),
        Outcome::Aborted { .. } => panic!("aborted: {change:?}"),
    }
}

/// Transition latencies in `mode` with [`PARKED`] threads asleep inside the safe span of
/// `KX_TARGET_BLOCK` (loaded in the same mode): of `KX_TARGET_IMM_REG64`, whose span nobody
/// is in, and (per-task only: a global one cannot happen while they are inside) of
/// `KX_TARGET_BLOCK`, which leaves them behind.
fn transition_costs(runtime: &SieRuntime, mode: Mode) -> Vec<Value> {
    let (block, block_default) = load_at_default(
        runtime,
        &format!("{TARGET_PLANS}/KX_TARGET_BLOCK.plan.json"),
        mode,
    );
    let (other, other_default) = load_at_default(
        runtime,
        &format!("{TARGET_PLANS}/KX_TARGET_IMM_REG64.plan.json"),
        mode,
    );
    let mut rows = Vec::new();
    let mut row = |tunable: &str, threads: usize, samples: Vec<(f64, usize)>| {
        let behind = samples.iter().map(|&(_, n)| n).max().unwrap_or(0);
        let mut us: Vec<f64> = samples.into_iter().map(|(us, _)| us).collect();
        us.sort_by(f64::total_cmp);
        let value = json!({
            "mode": mode.name(), "tunable": tunable, "threads": threads, "left_behind": behind,
            "latency_us": us[us.len() / 2], "latency_us_min": us[0],
            "latency_us_max": us[us.len() - 1],
        });
        eprintln!("{value}");
        rows.push(value);
    };
    let timeout = Duration::from_secs(10);
    for threads in PARKED {
        let parked = Parked::start(threads, 1);
        let samples = (0..TRANSITIONS)
            .map(|i| {
                let change = runtime
                    .set(&other, other_default + 1 - (i as i64 % 2), timeout)
                    .unwrap_or_else(|e| panic!("setting {}: {e}", other.tunable()));
                latency_us(&change)
            })
            .collect::<Vec<_>>();
        row(other.tunable(), threads, samples);
        parked.release();
        if mode == Mode::PerTask {
            // While tasks are left behind the only other transition allowed goes back to their
            // value: each sample parks them afresh and settles after their release.
            let samples = (0..TRANSITIONS)
                .map(|_| {
                    let parked = Parked::start(threads, 1);
                    // No wait: one sweep moves every task that is not inside.
                    let change = runtime
                        .set(&block, block_default + 1, Duration::ZERO)
                        .unwrap_or_else(|e| panic!("setting {}: {e}", block.tunable()));
                    let sample = latency_us(&change);
                    // A task running on another CPU during the sweep may count as inside too.
                    assert!(sample.1 >= threads, "{threads} threads inside: {change:?}");
                    parked.release();
                    for value in [block_default + 1, block_default] {
                        let change = runtime
                            .set(&block, value, timeout)
                            .unwrap_or_else(|e| panic!("setting {}: {e}", block.tunable()));
                        assert!(
                            matches!(change.outcome, Outcome::Done { .. }),
                            "the sleepers left, yet {change:?}"
                        );
                    }
                    sample
                })
                .collect::<Vec<_>>();
            row(block.tunable(), threads, samples);
        }
    }
    for program in [&block, &other] {
        runtime
            .unload(program, timeout)
            .unwrap_or_else(|e| panic!("unloading {}: {e}", program.tunable()));
    }
    rows
}

// Named `vm_*` so that CI's host run (`--include-ignored --skip vm_`) leaves it out too.
#[test]
#[ignore = "run by `cargo xtask bench runtime` in the lab VM"]
fn vm_bench_runtime() {
    let kernelx = Module::kernelx(&[
        "KX_TARGET_IMM_REG64",
        "KX_TARGET_FAN",
        "KX_TARGET_BLOCK",
        "PIPE_DEF_BUFFERS",
    ]);
    let target = Module::target();
    let runtime = SieRuntime::system();
    let trigger = trigger_costs(&runtime);

    let file = |name: &str, x: u64| {
        let path = format!("/sys/kernel/debug/kx_target/{name}");
        write(&path, &x.to_string());
        read_u64(&path)
    };
    let pipe_is_32_pages =
        || kernelx_runtime::testing::new_pipe_size().is_ok_and(|size| size == 32 * 4096);
    let fan = |x: u64, n: u64| file(&format!("fan{n}"), x);
    let mut plans = vec![plan_costs(
        &runtime,
        "KX_TARGET_IMM_REG64",
        tunable(&format!("{TARGET_PLANS}/KX_TARGET_IMM_REG64.plan.json")),
        Mode::Immediate,
        0x1000,
        || file("imm_reg64", 1) == 0x1001,
    )];
    // The transitions of the three modes on the same plan.
    for mode in [Mode::Immediate, Mode::PerTask, Mode::Global] {
        plans.push(plan_costs(
            &runtime,
            "PIPE_DEF_BUFFERS",
            tunable("../analyze/testdata/golden/pipe_def_buffers_fs.plan.json"),
            mode,
            32,
            pipe_is_32_pages,
        ));
    }
    // 5 sites: no golden plan has five, so the first five of KX_TARGET_FAN's fifteen, whose
    // other functions keep the compiled value.
    plans.push(plan_costs(
        &runtime,
        "KX_TARGET_FAN (fan1..fan5)",
        fan_sites(5),
        Mode::Immediate,
        0x77,
        || {
            (1..=5).all(|n| fan(0x100, n) == (0x100 ^ n) + 0x77)
                && (6..=15).all(|n| fan(0x100, n) == (0x100 ^ n) + FAN_COMPILED)
        },
    ));
    plans.push(plan_costs(
        &runtime,
        "KX_TARGET_FAN",
        fan_sites(15),
        Mode::Immediate,
        0x77,
        || (1..=15).all(|n| fan(0x100, n) == (0x100 ^ n) + 0x77),
    ));
    let transitions = [Mode::PerTask, Mode::Global]
        .into_iter()
        .flat_map(|mode| transition_costs(&runtime, mode))
        .collect::<Vec<_>>();
    drop(target);
    drop(kernelx);
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let result = json!({
        "kernel": release.trim(),
        "looped_function": "kx_target_imm_reg64",
        "trigger": trigger,
        "plans": plans,
        "transitions": transitions,
    });
    // Straight to stdout: libtest captures `println!`.
    writeln!(std::io::stdout(), "kernelx-bench-runtime: {result}").expect("writing the result");
}
