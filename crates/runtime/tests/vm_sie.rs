//! SIE in the lab VM (`cargo xtask lab test`; ignored on the host, whose kernel has no kprobes
//! and no modules): the kernelx module, the BPF program and the loader tune
//! `PIPE_DEF_BUFFERS` with the golden fs plan, rewrite stored memory, recompute the flags of
//! 8/16/32/64-bit compares, the combines and the magic divisions of the golden plans in the
//! target module (`tests/target-module`), and the kfuncs refuse outside a kprobe.
//!
//! Needs `kmod/build/kernelx.ko` and `tests/target-module/build/kx_target.ko` (the lab builds
//! both before the boot), root, bpffs and debugfs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kernelx_plan::{Plan, TunablePlan};
use kernelx_runtime::sie::testing::Detached;
use kernelx_runtime::sie::{
    LoadRequest, Outcome, ProbeRole, ProbeTarget, SieError, SieProgram, SieRuntime,
};
use libbpf_rs::{KprobeOpts, UprobeOpts};

const PIPE_PLAN: &str = "../analyze/testdata/golden/pipe_def_buffers_fs.plan.json";
const KPROBE_LIST: &str = "/sys/kernel/debug/kprobes/list";
const PAGE: i64 = 4096;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

#[track_caller]
fn pipe_tunable() -> TunablePlan {
    let plan = Plan::read(repo_path(PIPE_PLAN)).unwrap_or_else(|e| panic!("{PIPE_PLAN}: {e}"));
    plan.tunables
        .into_iter()
        .next()
        .expect("the plan has a tunable")
}

/// F_GETPIPE_SZ of a new pipe.
#[track_caller]
fn new_pipe_size() -> i64 {
    kernelx_runtime::testing::new_pipe_size().expect("F_GETPIPE_SZ of a new pipe")
}

/// Mean time to create and close one pipe, over `n`.
fn pipe_cost(n: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        drop(std::io::pipe().expect("pipe()"));
    }
    start.elapsed() / n
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

/// The kernelx module, loaded for one test and removed (which must succeed) at its end; a
/// failed test removes it too, so the next test starts clean.
struct KernelxModule {
    removed: bool,
}

impl KernelxModule {
    #[track_caller]
    fn insert() -> KernelxModule {
        assert!(
            !Path::new("/sys/module/kernelx").exists(),
            "kernelx is loaded already"
        );
        let ko = repo_path("../../kmod/build/kernelx.ko");
        assert!(ko.is_file(), "{} missing: build kmod/ first", ko.display());
        let [addr] = kallsyms(["current_kprobe"]);
        let status = Command::new("insmod")
            .arg(&ko)
            .arg(format!("current_kprobe_addr={addr:#x}"))
            .status()
            .expect("running insmod");
        assert!(status.success(), "insmod {} failed: {status}", ko.display());
        KernelxModule { removed: false }
    }

    /// rmmod, retried briefly: a program's last reference (and with it the module's) goes
    /// away in an RCU callback after its last fd and pin.
    #[track_caller]
    fn remove(mut self) {
        self.removed = loop_until(Duration::from_secs(5), rmmod);
        assert!(
            self.removed,
            "rmmod kernelx kept failing after the tunable was unloaded"
        );
        assert!(!Path::new("/sys/module/kernelx").exists());
    }
}

impl Drop for KernelxModule {
    fn drop(&mut self) {
        if !self.removed {
            let _ = SieRuntime::system().detach("PIPE_DEF_BUFFERS");
            loop_until(Duration::from_secs(5), rmmod);
        }
    }
}

fn rmmod() -> bool {
    Command::new("rmmod")
        .arg("kernelx")
        .status()
        .is_ok_and(|s| s.success())
}

/// Run count and total run time (ns) of every loaded `kx_sie` program, as the kernel counts
/// them while `kernel.bpf_stats_enabled` is set.
fn kx_sie_runs() -> (u64, u64) {
    libbpf_rs::query::ProgInfoIter::default()
        .filter(|p| p.name == "kx_sie")
        .fold((0, 0), |(n, t), p| (n + p.run_cnt, t + p.run_time_ns))
}

/// The lines of the kprobe list for `function`.
fn kprobe_lines(function: &str) -> Vec<String> {
    let list = fs::read_to_string(KPROBE_LIST).unwrap_or_else(|e| panic!("{KPROBE_LIST}: {e}"));
    list.lines()
        .filter(|l| l.contains(&format!(" {function}+")))
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_sie_tunes_pipe_def_buffers() {
    let module = KernelxModule::insert();
    let program = SieProgram::from_plan(&pipe_tunable()).expect("the fs plan is supported");
    let runtime = SieRuntime::system();
    let _ = runtime.detach(program.tunable()); // a leftover of an aborted run

    assert_eq!(new_pipe_size(), 16 * PAGE, "before loading");
    let before = pipe_cost(2000);

    let loaded = runtime
        .load(
            &program,
            &LoadRequest::immediate(32),
            ProbeTarget::symbol_of,
        )
        .unwrap_or_else(|e| panic!("loading V' = 32: {e}"));
    eprintln!(
        "load: verify {:?}, fill {:?}, attach {:?} ({} probes), pin {:?}",
        loaded.timings.verify,
        loaded.timings.fill,
        loaded.timings.attach,
        loaded.targets.len(),
        loaded.timings.pin
    );
    assert_eq!(new_pipe_size(), 32 * PAGE, "after loading V' = 32");

    // Probes the plan says the kernel can optimize must end up jump-optimized.
    for probe in program.probes() {
        if !probe.jump_optimizable() {
            continue;
        }
        let at = format!("{}+{:#x}", probe.function(), probe.offset());
        let optimized = loop_until(Duration::from_secs(10), || {
            kprobe_lines(probe.function())
                .iter()
                .any(|l| l.contains(&format!(" {at} ")) && l.contains("[OPTIMIZED]"))
        });
        assert!(
            optimized,
            "{at} is not [OPTIMIZED]: {:?}",
            kprobe_lines(probe.function())
        );
    }
    eprintln!("kprobes: {:#?}", kprobe_lines("alloc_pipe_info"));
    // Jump-optimized now: the update still applies.
    assert_eq!(new_pipe_size(), 32 * PAGE, "V' = 32, optimized probes");
    fs::write("/proc/sys/kernel/bpf_stats_enabled", "1").expect("enabling BPF run stats");
    let runs_before = kx_sie_runs();
    let tuned = pipe_cost(2000);
    let runs = kx_sie_runs();
    fs::write("/proc/sys/kernel/bpf_stats_enabled", "0").expect("disabling BPF run stats");
    eprintln!("pipe()+close: {before:?} without probes, {tuned:?} with them");
    let (count, ns) = (runs.0 - runs_before.0, runs.1 - runs_before.1);
    eprintln!(
        "kx_sie: {count} runs for 2000 pipes, {} ns per run",
        ns.checked_div(count).unwrap_or(0)
    );

    let stats = runtime.stats(&program).expect("reading the counters");
    for (probe, stats) in program.probes().iter().zip(&stats) {
        assert_eq!(
            stats.errors,
            0,
            "{:?}-probe of {}: last error {}",
            probe.role(),
            probe.site(),
            stats.last_error
        );
        if probe.function() == "alloc_pipe_info" {
            assert!(
                stats.hits > 0,
                "{:?}-probe of {} never ran",
                probe.role(),
                probe.site()
            );
        }
    }

    let start = Instant::now();
    runtime
        .set(&program, 64, Duration::ZERO)
        .expect("setting V' = 64");
    eprintln!("set: {:?}", start.elapsed());
    assert_eq!(new_pipe_size(), 64 * PAGE, "after setting V' = 64");

    // Refusals change nothing.
    let err = runtime.set(&program, 0, Duration::ZERO).unwrap_err();
    assert!(matches!(err, SieError::OutOfRange { .. }), "{err}");
    assert!(err.to_string().contains("[1, 1048576]"), "{err}");
    let err = runtime
        .load(
            &program,
            &LoadRequest::immediate(32),
            ProbeTarget::symbol_of,
        )
        .unwrap_err();
    assert!(matches!(err, SieError::AlreadyLoaded { .. }), "{err}");
    assert_eq!(new_pipe_size(), 64 * PAGE, "after the refusals");

    let start = Instant::now();
    let back = runtime
        .unload(&program, Duration::ZERO)
        .expect("unloading")
        .expect("a complete load goes back through a transition");
    eprintln!("unload: {:?}", start.elapsed());
    assert!(matches!(back.outcome, Outcome::Done { .. }), "{back:?}");
    assert_eq!(new_pipe_size(), 16 * PAGE, "after unloading");
    assert!(
        !loaded.dir.exists(),
        "{} survived the unload",
        loaded.dir.display()
    );
    // The kernel detaches a link whose last pin went away from a workqueue, a moment later.
    assert!(
        loop_until(Duration::from_secs(5), || kprobe_lines("alloc_pipe_info")
            .is_empty()),
        "probes left after the unload: {:?}",
        kprobe_lines("alloc_pipe_info")
    );
    module.remove();
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_sie_load_is_all_or_nothing() {
    let program = SieProgram::from_plan(&pipe_tunable()).expect("the fs plan is supported");
    let runtime = SieRuntime::system();
    let err = runtime
        .load(
            &program,
            &LoadRequest::immediate(32),
            ProbeTarget::symbol_of,
        )
        .unwrap_err();
    assert!(matches!(err, SieError::ModuleMissing { .. }), "{err}");
    assert!(!runtime.is_loaded(program.tunable()).unwrap());

    let module = KernelxModule::insert();
    // The last probe goes to a function that does not exist: the whole load fails.
    let last = program.probes().len() - 1;
    let err = runtime
        .load(&program, &LoadRequest::immediate(32), |probe| {
            if std::ptr::eq(probe, &program.probes()[last]) {
                ProbeTarget::Symbol {
                    function: "kernelx_no_such_function".to_owned(),
                    offset: 0,
                }
            } else {
                ProbeTarget::symbol_of(probe)
            }
        })
        .unwrap_err();
    assert!(matches!(err, SieError::Attach { .. }), "{err}");
    assert!(
        err.to_string().contains("kernelx_no_such_function"),
        "{err}"
    );
    assert!(!runtime.is_loaded(program.tunable()).unwrap());
    assert_eq!(new_pipe_size(), 16 * PAGE, "after the failed load");
    assert!(
        loop_until(Duration::from_secs(5), || kprobe_lines("alloc_pipe_info")
            .is_empty()),
        "probes left after the failed load: {:?}",
        kprobe_lines("alloc_pipe_info")
    );
    module.remove();
}

/// A user-space function for a uprobe: the kfuncs must refuse in its handler.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn kernelx_vm_sie_uprobe_target(x: u64) -> u64 {
    std::hint::black_box(x) + 1
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_sie_kfuncs_refuse_outside_a_kprobe() {
    let module = KernelxModule::insert();
    let program = SieProgram::from_plan(&pipe_tunable()).expect("the fs plan is supported");
    let post = program
        .probes()
        .iter()
        .position(|p| p.role() == ProbeRole::Post && p.offset() == 0x81)
        .expect("a post-probe at alloc_pipe_info+0x81");
    let compare = program
        .probes()
        .iter()
        .position(|p| p.offset() == 0x71)
        .expect("the compare's post-probe at alloc_pipe_info+0x71");
    {
        let detached = Detached::load(&program, 32).expect("loading the program");
        let prog = detached.program();

        // Attached without a cookie, at a real site: the program does nothing.
        let link = prog
            .attach_kprobe_with_opts(false, "alloc_pipe_info", KprobeOpts::default())
            .expect("attaching at alloc_pipe_info");
        assert_eq!(
            new_pipe_size(),
            16 * PAGE,
            "cookie 0 must not tune anything"
        );
        drop(link);

        // As a uprobe, with the cookie of the compare: the kfunc is called outside a kprobe.
        let exe = fs::read_link("/proc/self/exe").expect("reading /proc/self/exe");
        let link = prog
            .attach_uprobe_with_opts(
                -1,
                &exe,
                0,
                UprobeOpts {
                    cookie: Detached::cookie(compare),
                    func_name: Some("kernelx_vm_sie_uprobe_target".to_owned()),
                    ..UprobeOpts::default()
                },
            )
            .expect("attaching as a uprobe");
        assert_eq!(kernelx_vm_sie_uprobe_target(41), 42);
        drop(link);
        let stats = detached.stats(compare);
        assert_eq!(stats.hits, 1, "the uprobe ran once");
        assert_eq!(
            (stats.errors, stats.last_error),
            (1, -1),
            "kernelx_set_flags must refuse with -EPERM in a uprobe"
        );
        assert_eq!(detached.stats(post).hits, 0);
    }
    module.remove();
}

/// The target module, loaded for one test.
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

    /// Calls the function behind debugfs file `name` and returns its result.
    #[track_caller]
    fn call(&self, name: &str) -> i64 {
        self.call_with(name, 0)
    }

    /// Calls the function behind debugfs file `name` on `x` and returns its result.
    #[track_caller]
    fn call_with(&self, name: &str, x: u64) -> i64 {
        let text = self.result_text(name, x);
        text.parse()
            .unwrap_or_else(|e| panic!("{name}({x:#x}) returned {text:?}: {e}"))
    }

    /// The line the debugfs file `name` returns for `x`, as printed (signed or not).
    #[track_caller]
    fn result_text(&self, name: &str, x: u64) -> String {
        let path = format!("/sys/kernel/debug/kx_target/{name}");
        fs::write(&path, x.to_string()).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        if name == "block" {
            return released_block_read(&path);
        }
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        text.trim().to_owned()
    }
}

/// Reads `block` (which sleeps in kx_target_block) on another thread, releases it once it
/// sleeps, and returns what it read.
#[track_caller]
fn released_block_read(path: &str) -> String {
    let reader = {
        let path = path.to_owned();
        std::thread::spawn(move || fs::read_to_string(&path))
    };
    let waiters = "/sys/kernel/debug/kx_target/waiters";
    let asleep = loop_until(Duration::from_secs(10), || {
        fs::read_to_string(waiters).is_ok_and(|n| n.trim() == "1")
    });
    assert!(asleep, "no reader of {path} went to sleep");
    fs::write("/sys/kernel/debug/kx_target/release", "1").expect("writing release");
    let text = reader
        .join()
        .expect("the reader of block panicked")
        .unwrap_or_else(|e| panic!("reading {path}: {e}"));
    text.trim().to_owned()
}

impl Drop for TargetModule {
    fn drop(&mut self) {
        loop_until(Duration::from_secs(5), || {
            Command::new("rmmod")
                .arg("kx_target")
                .status()
                .is_ok_and(|s| s.success())
        });
    }
}

/// The addresses of `symbols`, each unique in /proc/kallsyms (read once: under TCG a read of
/// the whole file takes seconds).
#[track_caller]
fn kallsyms<const N: usize>(symbols: [&str; N]) -> [u64; N] {
    let text = fs::read_to_string("/proc/kallsyms").expect("reading /proc/kallsyms");
    let mut found: [Vec<u64>; N] = std::array::from_fn(|_| Vec::new());
    for line in text.lines() {
        let mut fields = line.split(' ');
        let (Some(addr), Some(_), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // Module symbols end with a tab and the module's name.
        let name = name.split('\t').next().unwrap_or(name);
        if let Some(i) = symbols.iter().position(|s| *s == name) {
            found[i].push(u64::from_str_radix(addr, 16).expect("kallsyms addresses are hex"));
        }
    }
    std::array::from_fn(|i| {
        assert_eq!(
            found[i].len(),
            1,
            "{} in kallsyms: {:x?}",
            symbols[i],
            found[i]
        );
        found[i][0]
    })
}

/// A one-site tunable whose seed `mov $IV, <dest>` at `function+seed` stores to memory, as
/// the analysis would describe it (IV = V, span `seed..post`).
#[track_caller]
fn store_tunable(name: &str, function: &str, seed: u32, post: u32, dest: &str) -> TunablePlan {
    let seed = TargetSeed {
        function,
        seed,
        post,
        kind: "immediate_load",
        iv_minus_v: 0,
        iv_width: 64,
    };
    seed.tunable(name, &format!(r#"{{"update": "load", "dest": {dest}}}"#))
}

/// The seed instruction of a one-site tunable in the target module.
struct TargetSeed<'a> {
    function: &'a str,
    /// Its offset; the span ends at `post`, where the post-probe goes.
    seed: u32,
    post: u32,
    /// The recipe's kind.
    kind: &'a str,
    /// IV = V + `iv_minus_v`.
    iv_minus_v: i64,
    iv_width: u8,
}

impl TargetSeed<'_> {
    /// The tunable, as the analysis would describe it, whose site applies `update` (JSON).
    #[track_caller]
    fn tunable(&self, name: &str, update: &str) -> TunablePlan {
        let TargetSeed {
            function,
            seed,
            post,
            kind,
            iv_minus_v,
            iv_width,
        } = self;
        let reason = r#"{"reason": "iv_overflow", "width": 32, "domain": "signed"}"#;
        let text = format!(
            r#"{{
          "name": "{name}", "description": "", "default": 0,
          "source": {{"form": "macro", "macro_name": "{name}", "file": "kx_target.c",
                      "values": [0, 1, 2]}},
          "range": {{"min": -2147483648, "max": 2147483647,
                     "min_reason": {reason}, "max_reason": {reason}}},
          "sites": [{{
            "id": "kx_target.c:{function}+{seed:#x}", "unit": "kx_target.c",
            "function": "{function}", "section": ".text", "offset": {seed},
            "len": {len}, "bytes": "{zeros}", "mask": "{zeros}", "asm": "mov $IV, mem",
            "recipe": {{
              "kind": "{kind}", "span": {{"start": {seed}, "end": {post}}},
              "relation": {{"form": "affine", "a": 1, "b": {iv_minus_v}}},
              "iv_width": {iv_width}, "save": null, "update": {update}, "consumers": 0,
              "range": {{"min": -2147483648, "max": 2147483647,
                         "min_reason": {reason}, "max_reason": {reason}}}
            }},
            "probes": {{"pre": null, "post": {post}, "alternatives": [],
                        "jump_optimizable": false, "reason": ""}},
            "safe_span": "none"
          }}],
          "safe_spans": [], "uncovered": [], "warnings": []
        }}"#,
            len = post - seed,
            zeros = "00".repeat((post - seed) as usize),
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"))
    }
}

/// One tunable of the target module and what its debugfs file returns for input `x` at V
/// and at V'.
struct TargetCase {
    file: &'static str,
    tunable: TunablePlan,
    x: u64,
    at_v: i64,
    v_new: i64,
    at_v_new: i64,
}

impl TargetModule {
    /// Loads `case` at V', checks the result, unloads and checks it is back.
    #[track_caller]
    fn check(&self, runtime: &SieRuntime, case: &TargetCase) {
        let TargetCase {
            file,
            tunable,
            x,
            at_v,
            v_new,
            at_v_new,
        } = case;
        let program =
            SieProgram::from_plan(tunable).unwrap_or_else(|e| panic!("{}: {e}", tunable.name));
        assert_eq!(
            self.call_with(file, *x),
            *at_v,
            "{file}({x:#x}) before loading"
        );
        let start = Instant::now();
        let loaded = runtime
            .load(
                &program,
                &LoadRequest::immediate(*v_new),
                ProbeTarget::symbol_of,
            )
            .unwrap_or_else(|e| panic!("loading {}: {e}", tunable.name));
        eprintln!(
            "{file}: load {:?} (verify {:?}, attach {:?})",
            start.elapsed(),
            loaded.timings.verify,
            loaded.timings.attach
        );
        let tuned = self.call_with(file, *x);
        let stats = runtime.stats(&program).expect("reading the counters");
        runtime.detach(&tunable.name).expect("unloading");
        assert_eq!(
            tuned, *at_v_new,
            "{file}({x:#x}) with V' = {v_new:#x}: {stats:?}"
        );
        assert_eq!(
            self.call_with(file, *x),
            *at_v,
            "{file}({x:#x}) after unloading"
        );
    }
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_sie_loads_registers_and_stored_memory() {
    let module = KernelxModule::insert();
    let target = TargetModule::insert();
    let runtime = SieRuntime::system();
    // Offsets of tests/target-module/kx_target.c as gcc-12 builds it for the lab kernel (each
    // function starts with endbr64 and the __fentry__ call).
    let [store32, pcpu, global32, recs, pcpu_val] = kallsyms([
        "kx_target_store32",
        "kx_target_pcpu",
        "kx_target_global32",
        "kx_target_recs",
        "kx_target_pcpu_val",
    ])
    .map(|a| a as i64);
    let cases = [
        // mov $0x5eed1,%eax at +0xc (a 32-bit write zeroes the upper half), then x + V.
        TargetCase {
            file: "imm_reg",
            tunable: store_tunable(
                "KX_TARGET_IMM_REG",
                "kx_target_imm_reg",
                0xc,
                0x11,
                &reg("rax", 32),
            ),
            x: 1,
            at_v: 0x5eed2,
            v_new: 0x100,
            at_v_new: 0x101,
        },
        // movabs $0x1badcafe5eedf00d,%rax at +0x9, then x + V.
        TargetCase {
            file: "imm_reg64",
            tunable: store_tunable(
                "KX_TARGET_IMM_REG64",
                "kx_target_imm_reg64",
                0x9,
                0x13,
                &reg("rax", 64),
            ),
            x: 1,
            at_v: 0x1badcafe5eedf00e,
            v_new: -1,
            at_v_new: 0,
        },
        // movl $0xc0ffee,kx_target_global32(%rip) at +0x9; RIP-relative from the span start.
        TargetCase {
            file: "store32",
            tunable: store_tunable(
                "KX_TARGET_STORE32",
                "kx_target_store32",
                0x9,
                0x13,
                &format!(
                    r#"{{"place": "mem", "width": 32, "addr": {{"scale": 1, "disp": {},
                        "rip_relative": true}}}}"#,
                    global32 - (store32 + 0x9)
                ),
            ),
            x: 0,
            at_v: 0xc0ffee,
            v_new: 0x1234,
            at_v_new: 0x1234,
        },
        // movq $-0x1234567,kx_target_recs+8(%rax) at +0x13 (field q of the record).
        TargetCase {
            file: "store64",
            tunable: store_tunable(
                "KX_TARGET_STORE64",
                "kx_target_store64",
                0x13,
                0x1e,
                &format!(
                    r#"{{"place": "mem", "width": 64, "addr": {{"base": "rax", "scale": 1,
                        "disp": {}}}}}"#,
                    recs + 8
                ),
            ),
            x: 0,
            at_v: -0x1234567,
            v_new: -5,
            at_v_new: -5,
        },
        // movl $0x7e57,%gs:kx_target_pcpu_val(%rip) at +0x10: this CPU's copy.
        TargetCase {
            file: "pcpu",
            tunable: store_tunable(
                "KX_TARGET_PCPU",
                "kx_target_pcpu",
                0x10,
                0x1b,
                &format!(
                    r#"{{"place": "mem", "width": 32, "addr": {{"segment": "gs", "scale": 1,
                        "disp": {}, "rip_relative": true}}}}"#,
                    pcpu_val - (pcpu + 0x10)
                ),
            ),
            x: 0,
            at_v: 0x7e57,
            v_new: 0x600d,
            at_v_new: 0x600d,
        },
    ];
    for case in &cases {
        target.check(&runtime, case);
    }

    // The same store aimed at the function's own code: the kfunc refuses kernel text.
    let program = SieProgram::from_plan(&store_tunable(
        "KX_TARGET_STORE32",
        "kx_target_store32",
        0x9,
        0x13,
        r#"{"place": "mem", "width": 32, "addr": {"scale": 1, "disp": 0, "rip_relative": true}}"#,
    ))
    .expect("a store is supported");
    runtime
        .load(
            &program,
            &LoadRequest::immediate(0x1234),
            ProbeTarget::symbol_of,
        )
        .expect("loading a store into text (the kfunc, not the loader, refuses)");
    let result = target.call("store32");
    let stats = runtime.stats(&program).expect("reading the counters");
    runtime.detach(program.tunable()).expect("unloading");
    assert_eq!(
        result, 0xc0ffee,
        "the refused update must leave the stored value"
    );
    assert_eq!(
        (stats[0].hits, stats[0].errors, stats[0].last_error),
        (1, 1, -14),
        "kernelx_set_stored must refuse text with -EFAULT"
    );
    assert_eq!(
        target.call("store32"),
        0xc0ffee,
        "store32 still runs after the refusal"
    );
    drop(target);
    module.remove();
}

/// A register place (JSON).
fn reg(gpr: &str, width: u8) -> String {
    format!(r#"{{"place": "reg", "reg": {{"gpr": "{gpr}", "width": {width}}}}}"#)
}

/// A compare update (JSON) of `op` at `width` bits reading `input` (a place, JSON).
fn compare_update(op: &str, width: u8, input: &str) -> String {
    format!(
        r#"{{"update": "compare", "op": "{op}", "width": {width},
            "input": {{"input": "read", "place": {input}}}, "flags": 2261}}"#
    )
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_sie_recomputes_compare_flags() {
    let module = KernelxModule::insert();
    let target = TargetModule::insert();
    let runtime = SieRuntime::system();
    let seed = |function, seed, post, iv_minus_v, iv_width| TargetSeed {
        function,
        seed,
        post,
        kind: "compare",
        iv_minus_v,
        iv_width,
    };
    // Offsets of tests/target-module/kx_target.c as gcc-12 builds it for the lab kernel.
    let case = |file: &'static str, seed: TargetSeed, update: String, x, at_v, v_new, at_v_new| {
        TargetCase {
            file,
            tunable: seed.tunable(&format!("KX_TARGET_{}", file.to_uppercase()), &update),
            x,
            at_v,
            v_new,
            at_v_new,
        }
    };
    let cases = [
        // cmpb $0x9c,(%rdi) then seta: (u8)x > V.
        case(
            "cmp8",
            seed("kx_target_cmp8", 0xb, 0xe, 0, 8),
            compare_update(
                "cmp",
                8,
                r#"{"place": "mem", "addr": {"base": "rdi", "scale": 1, "disp": 0}, "width": 8}"#,
            ),
            0x80,
            0,
            0x10,
            1,
        ),
        // cmp $0x7abc,%dx then ja (a branch kprobes emulate with the rewritten flags).
        case(
            "cmp16",
            seed("kx_target_cmp16", 0xe, 0x13, 0, 16),
            compare_update("cmp", 16, &reg("rdx", 16)),
            0x1000,
            0,
            0x800,
            1,
        ),
        // x < V is cmp $(V-1),%eax then setbe.
        case(
            "cmp32",
            seed("kx_target_cmp32", 0xc, 0x11, -1, 32),
            compare_update("cmp", 32, &reg("rax", 32)),
            0x100,
            1,
            0x80,
            0,
        ),
        // x >= V is cmp $(V-1),%rdx (sign-extended imm32) then ja.
        case(
            "cmp64",
            seed("kx_target_cmp64", 0xe, 0x15, -1, 64),
            compare_update("cmp", 64, &reg("rdx", 64)),
            0x3000_0000,
            1,
            0x4000_0000,
            0,
        ),
        // test $0xf0f000,%eax then setne.
        case(
            "test",
            seed("kx_target_test", 0xc, 0x11, 0, 32),
            compare_update("test", 32, &reg("rax", 32)),
            0x1000,
            1,
            0x0f0f,
            0,
        ),
    ];
    for case in &cases {
        target.check(&runtime, case);
    }
    drop(target);
    module.remove();
}

/// A combine constant of the target module, tuned with its golden plan: the debugfs file, the
/// README's result formula of (x, V), whether the file prints signed numbers, and V'.
struct CombineCase {
    constant: &'static str,
    file: &'static str,
    formula: fn(u64, u64) -> u64,
    signed: bool,
    v_new: i64,
}

const TARGET_PLANS: &str = "../analyze/testdata/golden/target_module";

#[track_caller]
fn golden_target_tunable(constant: &str) -> TunablePlan {
    let path = repo_path(&format!("{TARGET_PLANS}/{constant}.plan.json"));
    let plan = Plan::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    plan.tunables
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{} has no tunable", path.display()))
}

impl TargetModule {
    /// What `case.file` must print for `x` at V = `v`.
    fn expected(case: &CombineCase, x: u64, v: i64) -> String {
        let result = (case.formula)(x, v as u64);
        if case.signed {
            (result as i64).to_string()
        } else {
            result.to_string()
        }
    }

    /// Loads `case`'s golden plan at V', checks the file for every x, unloads, and checks
    /// it is back at V1.
    #[track_caller]
    fn check_combine(&self, runtime: &SieRuntime, case: &CombineCase, xs: &[u64]) {
        let tunable = golden_target_tunable(case.constant);
        let v1 = tunable.default;
        assert_ne!(case.v_new, v1, "{}: V' must differ from V1", case.constant);
        let program =
            SieProgram::from_plan(&tunable).unwrap_or_else(|e| panic!("{}: {e}", case.constant));
        for &x in xs {
            assert_eq!(
                self.result_text(case.file, x),
                Self::expected(case, x, v1),
                "{}({x:#x}) before loading",
                case.file
            );
        }
        runtime
            .load(
                &program,
                &LoadRequest::immediate(case.v_new),
                ProbeTarget::symbol_of,
            )
            .unwrap_or_else(|e| panic!("loading {} = {:#x}: {e}", case.constant, case.v_new));
        let tuned: Vec<_> = xs.iter().map(|&x| self.result_text(case.file, x)).collect();
        let stats = runtime.stats(&program).expect("reading the counters");
        runtime.detach(&tunable.name).expect("unloading");
        for (&x, tuned) in xs.iter().zip(&tuned) {
            assert_eq!(
                *tuned,
                Self::expected(case, x, case.v_new),
                "{}({x:#x}) with {} = {:#x}: {stats:?}",
                case.file,
                case.constant,
                case.v_new
            );
        }
        assert!(
            stats.iter().all(|s| s.errors == 0),
            "{}: {stats:?}",
            case.constant
        );
        for &x in xs {
            assert_eq!(
                self.result_text(case.file, x),
                Self::expected(case, x, v1),
                "{}({x:#x}) after unloading",
                case.file
            );
        }
    }
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_sie_recomputes_combines_from_golden_plans() {
    let module = KernelxModule::insert();
    let target = TargetModule::insert();
    let runtime = SieRuntime::system();
    let case = |constant, file, formula, signed, v_new| CombineCase {
        constant,
        file,
        formula,
        signed,
        v_new,
    };
    // The result column of tests/target-module/README.md, modulo 2^64.
    let cases = [
        case(
            "KX_TARGET_ADD",
            "add",
            |x, v| x.wrapping_add(v),
            false,
            0x1000,
        ),
        case(
            "KX_TARGET_SUB",
            "sub",
            |x, v| x.wrapping_sub(v),
            false,
            0x10,
        ),
        case(
            "KX_TARGET_LEA",
            "lea",
            |x, v| (4 * x).wrapping_add(v),
            false,
            0x77,
        ),
        case("KX_TARGET_IMUL", "imul", |x, v| x.wrapping_mul(v), false, 3),
        case("KX_TARGET_SHL", "shl", |x, v| x << v, false, 9),
        case("KX_TARGET_SHR", "shr", |x, v| x >> v, false, 2),
        case(
            "KX_TARGET_SAR",
            "sar",
            |x, v| ((x as u32 as i32) >> v) as i64 as u64,
            true,
            6,
        ),
        case("KX_TARGET_AND", "and", |x, v| x & v, false, 0x3c3c),
        case("KX_TARGET_OR", "or", |x, v| x | v, false, 0x101),
        case("KX_TARGET_XOR", "xor", |x, v| x ^ v, false, 0x1234),
        case(
            "KX_TARGET_BLOCK",
            "block",
            |x, v| x.wrapping_add(v),
            false,
            0x99,
        ),
        case(
            "KX_TARGET_SHARED",
            "shared_a",
            |x, v| x.min(v),
            false,
            0x100,
        ),
        case(
            "KX_TARGET_SHARED",
            "shared_b",
            |x, v| x.min(v) + v,
            false,
            0x100,
        ),
    ];
    // Small and large, with bit 31 set (negative as s32) and carries across 32 bits.
    let xs = [0x40, 0x1234, 0xdead_beef, 0x1_ffff_fff0];
    for case in &cases {
        target.check_combine(&runtime, case, &xs);
    }
    drop(target);
    module.remove();
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_sie_a_value_saved_at_another_stack_pointer_is_not_used() {
    let module = KernelxModule::insert();
    let target = TargetModule::insert();
    let runtime = SieRuntime::system();
    let program = SieProgram::from_plan(&golden_target_tunable("KX_TARGET_SHL"))
        .expect("the KX_TARGET_SHL plan is supported");
    let [pre, post] = program.probes() else {
        panic!("KX_TARGET_SHL: {:?} probes", program.probes().len());
    };
    assert_eq!((pre.role(), post.role()), (ProbeRole::Pre, ProbeRole::Post));
    // The pre-probe runs in the debugfs read handler, which calls kx_target_shl deeper
    // down the same task's stack: it saves a value and marks the site, but at another
    // stack pointer than the post-probe's.
    runtime
        .load(&program, &LoadRequest::immediate(9), |probe| {
            if std::ptr::eq(probe, pre) {
                ProbeTarget::Symbol {
                    function: "kx_target_case_read".to_owned(),
                    offset: 0,
                }
            } else {
                ProbeTarget::symbol_of(probe)
            }
        })
        .unwrap_or_else(|e| panic!("loading KX_TARGET_SHL = 9: {e}"));
    let results: Vec<_> = [3u64, 0x1234]
        .iter()
        .map(|&x| (x, target.call_with("shl", x)))
        .collect();
    let stats = runtime.stats(&program).expect("reading the counters");
    runtime.detach(program.tunable()).expect("unloading");
    for (x, result) in results {
        assert_eq!(result, (x << 7) as i64, "shl({x:#x}) kept V1: {stats:?}");
    }
    assert!(
        stats[0].hits >= 2 && stats[1].hits >= 2,
        "both probes ran: {stats:?}"
    );
    assert!(stats.iter().all(|s| s.errors == 0), "{stats:?}");
    drop(target);
    module.remove();
}

/// A division constant of the target module: its debugfs file, the README's result formula
/// of (x, V), whether the file prints signed numbers, two V' of the site's magic shape, one
/// the shape rule refuses, and a word of the reason the refusal names.
struct DivisionCase {
    constant: &'static str,
    file: &'static str,
    formula: fn(u64, u64) -> u64,
    signed: bool,
    values: [i64; 2],
    refused: i64,
    reason: &'static str,
}

#[test]
#[ignore = "needs the lab VM: cargo xtask lab test"]
fn vm_sie_recomputes_divisions_from_golden_plans() {
    let module = KernelxModule::insert();
    let target = TargetModule::insert();
    let runtime = SieRuntime::system();
    let cases = [
        DivisionCase {
            constant: "KX_TARGET_DIV",
            file: "div",
            formula: |x, v| x / v,
            signed: false,
            values: [10, 3],
            refused: 1000,
            reason: "pre-shift",
        },
        DivisionCase {
            constant: "KX_TARGET_MOD",
            file: "mod",
            formula: |x, v| u64::from(x as u32) % v,
            signed: false,
            values: [7, 1503],
            refused: 10,
            reason: "no add-fixup",
        },
        DivisionCase {
            constant: "KX_TARGET_SDIV",
            file: "sdiv",
            formula: |x, v| i64::from(x as u32 as i32 / v as i32) as u64,
            signed: true,
            values: [31, 14],
            refused: 13,
            reason: "no add-fixup",
        },
    ];
    // Zero, small, around 2^31 (negative as s32), 32-bit carries, and the top of 64 bits.
    let xs = [
        0,
        0x40,
        0x1234,
        0x7fff_ffff,
        0x8000_0000,
        0xdead_beef,
        0x1_ffff_fff0,
        0xffff_ffff_ffff_fff0,
        u64::MAX,
    ];
    for case in &cases {
        target.check_division(&runtime, case, &xs);
    }
    drop(target);
    module.remove();
}

impl TargetModule {
    /// What `case.file` prints for every x at V = `v`.
    fn division_results(&self, case: &DivisionCase, xs: &[u64]) -> Vec<String> {
        xs.iter().map(|&x| self.result_text(case.file, x)).collect()
    }

    #[track_caller]
    fn assert_division(&self, case: &DivisionCase, xs: &[u64], got: &[String], v: i64, when: &str) {
        for (&x, got) in xs.iter().zip(got) {
            let result = (case.formula)(x, v as u64);
            let expected = if case.signed {
                (result as i64).to_string()
            } else {
                result.to_string()
            };
            assert_eq!(*got, expected, "{}({x:#x}) at V = {v} {when}", case.file);
        }
    }

    /// Refuses `case.refused` at load, loads `case`'s golden plan at its first V', sets the
    /// second, refuses `case.refused` again (keeping the second), unloads, and checks the
    /// file at each step.
    #[track_caller]
    fn check_division(&self, runtime: &SieRuntime, case: &DivisionCase, xs: &[u64]) {
        let tunable = golden_target_tunable(case.constant);
        let v1 = tunable.default;
        let program =
            SieProgram::from_plan(&tunable).unwrap_or_else(|e| panic!("{}: {e}", case.constant));
        self.assert_division(case, xs, &self.division_results(case, xs), v1, "before");

        let refused = runtime
            .load(
                &program,
                &LoadRequest::immediate(case.refused),
                ProbeTarget::symbol_of,
            )
            .map(|_| ())
            .expect_err("the shape rule refuses the value");
        let text = refused.to_string();
        assert!(
            text.contains(case.constant) && text.contains(case.reason),
            "loading {} = {}: {text}",
            case.constant,
            case.refused
        );
        assert!(
            !runtime
                .is_loaded(&tunable.name)
                .expect("reading the pin directory")
        );

        let [first, second] = case.values;
        let loaded = runtime
            .load(
                &program,
                &LoadRequest::immediate(first),
                ProbeTarget::symbol_of,
            )
            .unwrap_or_else(|e| panic!("loading {} = {first}: {e}", case.constant));
        eprintln!(
            "{} = {first}: {:?} instructions verified",
            case.constant, loaded.timings.verified_insns
        );
        let at_first = self.division_results(case, xs);
        runtime
            .set(&program, second, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("setting {} = {second}: {e}", case.constant));
        let at_second = self.division_results(case, xs);
        let refused = runtime
            .set(&program, case.refused, Duration::from_secs(5))
            .map(|_| ())
            .expect_err("the shape rule refuses the value");
        let after_refusal = self.division_results(case, xs);
        let stats = runtime.stats(&program).expect("reading the counters");
        runtime.detach(&tunable.name).expect("unloading");

        let when = format!("(loaded; {stats:?})");
        self.assert_division(case, xs, &at_first, first, &when);
        self.assert_division(case, xs, &at_second, second, &when);
        let text = refused.to_string();
        assert!(
            text.contains(case.reason),
            "setting {} = {}: {text}",
            case.constant,
            case.refused
        );
        self.assert_division(case, xs, &after_refusal, second, "after a refused set");
        assert!(
            stats.iter().all(|s| s.errors == 0) && stats.iter().all(|s| s.hits > 0),
            "{}: {stats:?}",
            case.constant
        );
        self.assert_division(
            case,
            xs,
            &self.division_results(case, xs),
            v1,
            "after unloading",
        );
    }
}
