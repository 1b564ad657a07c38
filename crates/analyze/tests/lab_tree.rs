//! The whole pipeline on the prepared lab tree (Debian 6.12, `cargo xtask lab setup`), against
//! golden plans in `testdata/golden/`.
//!
//! Ignored by default; CI runs them with `--include-ignored` and `KERNELX_LAB_TREE` (the
//! prepared source tree) and `KERNELX_LAB_VMLINUX` (its debug vmlinux) set. The tree and the
//! vmlinux are pinned, so a plan is compared whole, build-id included: nothing is masked.
//! `KERNELX_BLESS=1` rewrites the golden files; review the diff. CI never blesses.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use kernelx_analyze::{AnalyzeError, AnalyzeOptions, analyze, kernel_identity, render_report};
use kernelx_kbuild::{
    BuiltUnits, Cache, KernelTree, NoProgress, Toolchain, VariantOptions, discover,
};
use kernelx_plan::{Plan, SynthesisKind, TunablePlan, UncoveredKind};
use kernelx_spec::{EnvOverrides, Tunable};
use kernelx_x86::KernelProbeConfig;

#[track_caller]
fn lab_path(var: &str, what: &str) -> PathBuf {
    let value = std::env::var_os(var).unwrap_or_else(|| {
        panic!("{var} is not set: point it at {what} (cargo xtask lab setup prepares it)")
    });
    let path = PathBuf::from(value);
    assert!(
        path.exists(),
        "{var}={} does not exist: point it at {what}",
        path.display()
    );
    path
}

struct Lab {
    tree_path: PathBuf,
    tree: KernelTree,
    vmlinux: PathBuf,
    options: AnalyzeOptions,
}

fn lab() -> Lab {
    let tree_path = lab_path("KERNELX_LAB_TREE", "the prepared 6.12 source tree");
    let vmlinux = lab_path("KERNELX_LAB_VMLINUX", "the lab kernel's debug vmlinux");
    let tree = KernelTree::open(&tree_path)
        .unwrap_or_else(|e| panic!("KERNELX_LAB_TREE={}: {e}", tree_path.display()));
    let options = AnalyzeOptions {
        variants: VariantOptions {
            toolchain: Toolchain::debian_gcc12(),
            jobs: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            cache: Cache::from_env().expect("a cache directory"),
            built: BuiltUnits::from_debug_info(&[&vmlinux]).expect("the debug vmlinux's units"),
        },
        probes: KernelProbeConfig::DEBIAN_6_12,
        exclude_units: Vec::new(),
    };
    Lab {
        tree_path,
        tree,
        vmlinux,
        options,
    }
}

fn run(lab: &Lab, tunable: &Tunable) -> Result<TunablePlan, AnalyzeError> {
    analyze(&lab.tree, tunable, &lab.options, &NoProgress)
}

/// `lab`, with these units left at the compiled value.
fn excluding(mut lab: Lab, units: &[&str]) -> Lab {
    lab.options.exclude_units = units.iter().map(PathBuf::from).collect();
    lab
}

/// A tunable of a prototype spec in `testdata/golden/`, read as the prototype wrote it: its
/// `kernel_dir` (`~/linux-...`) is overridden by the lab tree, as `KERNEL_DIR` does.
fn prototype_tunable(lab: &Lab, file: &str, index: usize) -> Tunable {
    let path = golden_path(file);
    let text = std::fs::read_to_string(&path).expect("the prototype spec");
    let env = EnvOverrides {
        kernel_dir: Some(lab.tree_path.clone()),
        home: None,
    };
    let parsed = kernelx_spec::parse_str(&text, &path, &env)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(parsed.spec.kernel_dir.as_ref(), Some(&lab.tree_path));
    parsed.spec.tunables[index].clone()
}

/// Per site: unit, function, offset, asm, relation, synthesis kind, pre- and post-probe.
type SiteFacts<'p> = (
    &'p str,
    &'p str,
    u32,
    &'p str,
    String,
    SynthesisKind,
    Option<u32>,
    u32,
);

fn site_facts(plan: &TunablePlan) -> Vec<SiteFacts<'_>> {
    plan.sites
        .iter()
        .map(|s| {
            (
                s.unit.as_str(),
                s.function.as_str(),
                s.offset,
                s.asm.as_str(),
                s.recipe.relation.to_string(),
                s.recipe.kind,
                s.probes.pre,
                s.probes.post,
            )
        })
        .collect()
}

fn golden_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/golden")
        .join(file)
}

fn blessing() -> bool {
    std::env::var_os("KERNELX_BLESS").is_some()
}

/// The expected failure: the error's text equals `testdata/golden/<name>.err`.
#[track_caller]
fn check_golden_error(name: &str, outcome: Result<TunablePlan, AnalyzeError>) -> String {
    let err = match outcome {
        Ok(plan) => panic!(
            "{name}: expected a failure, got a plan:\n{}",
            render_report(&plan)
        ),
        Err(e) => e.to_string(),
    };
    let path = golden_path(&format!("{name}.err"));
    if blessing() {
        std::fs::write(&path, format!("{err}\n")).expect("writing the golden error");
        return err;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with KERNELX_BLESS=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        format!("{err}\n"),
        expected,
        "{name}: the error differs from {} (KERNELX_BLESS=1 rewrites it)",
        path.display()
    );
    err
}

/// Compares the plan with `testdata/golden/<name>.plan.json`, or rewrites it under
/// `KERNELX_BLESS=1`.
#[track_caller]
fn check_golden(lab: &Lab, name: &str, tunable: TunablePlan) {
    let (kernel, _) = kernel_identity(&lab.tree, Some(&lab.vmlinux)).expect("the kernel identity");
    let plan = Plan::new(kernel, vec![tunable]);
    let path = golden_path(&format!("{name}.plan.json"));
    if blessing() {
        plan.write(&path).expect("writing the golden plan");
        return;
    }
    let expected = Plan::read(&path)
        .unwrap_or_else(|e| panic!("{e}; run with KERNELX_BLESS=1 to create {}", path.display()));
    if expected != plan {
        let actual = plan.to_json().expect("serializing");
        let wanted = expected.to_json().expect("serializing");
        let first = actual
            .lines()
            .zip(wanted.lines())
            .position(|(a, w)| a != w)
            .unwrap_or(0);
        panic!(
            "{name}: the plan differs from {} from line {} on:\n  got:      {}\n  expected: {}\n\
             (KERNELX_BLESS=1 rewrites it; review the diff)\n{}",
            path.display(),
            first + 1,
            actual.lines().nth(first).unwrap_or(""),
            wanted.lines().nth(first).unwrap_or(""),
            render_report(plan.tunables.first().expect("one tunable")),
        );
    }
}

/// PIPE_DEF_BUFFERS (the macro form) reaches fs/pipe.c, fs/splice.c and kernel/trace/trace.c.
/// In trace.c it sizes on-stack arrays (`struct page *pages_def[PIPE_DEF_BUFFERS]` of
/// `struct splice_pipe_desc`), so the frames of both splice-read functions change: code SIE
/// cannot patch, and the whole tunable fails, naming them.
#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_pipe_def_buffers() {
    let lab = lab();
    let tunable = Tunable::from_macro_name("PIPE_DEF_BUFFERS").expect("a macro name");
    let err = check_golden_error("pipe_def_buffers", run(&lab, &tunable));
    for needle in [
        "kernel/trace/trace.c: tracing_buffers_splice_read+0x23 (.text): frame_layout",
        "kernel/trace/trace.c: tracing_splice_read_pipe+0x23 (.text): frame_layout",
    ] {
        assert!(err.contains(needle), "{needle:?} missing in\n{err}");
    }
    // The way forward names the unit to exclude and the units that stay tunable.
    let hint = err.lines().last().expect("a hint line");
    assert!(
        hint.starts_with("hint: to tune PIPE_DEF_BUFFERS in fs/pipe.c, fs/splice.c only")
            && hint.contains("`--exclude-unit kernel/trace/trace.c`")
            && hint.contains("keeps the compiled value (16)"),
        "{err}"
    );
    let effects: Vec<&str> = err.lines().filter(|l| l.starts_with("  ")).collect();
    assert!(
        effects
            .iter()
            .all(|l| l.starts_with("  kernel/trace/trace.c: ")),
        "{err}"
    );
}

/// Excluding a unit the constant does not reach is refused, naming the units it reaches.
#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_exclude_unit_not_reached() {
    let lab = excluding(lab(), &["fs/read_write.c"]);
    let tunable = Tunable::from_macro_name("PIPE_DEF_BUFFERS").expect("a macro name");
    let err = run(&lab, &tunable).unwrap_err();
    assert!(
        matches!(err, AnalyzeError::ExcludedUnitNotReached { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "PIPE_DEF_BUFFERS: cannot exclude fs/read_write.c: the constant does not reach it; it \
         reaches fs/pipe.c, fs/splice.c, kernel/trace/trace.c"
    );
}

/// PIPE_DEF_BUFFERS tuned in fs/pipe.c only: exactly the three `alloc_pipe_info` sites of the
/// spec (objdump of fs/pipe.o, V1 = 16):
///
/// * `+0x6b cmp $0xffff,%ebp` (`too_many_pipe_buffers_soft`: `pipe_bufs * PAGE_SIZE` folded
///   into the compare, IV = 4096*V - 1), probe on the `jbe`;
/// * `+0x77 mov $0x10,%eax` and `+0x7c mov $0x10,%ebp` (`pipe_bufs = PIPE_DEF_BUFFERS`), IV = 1*V;
///
/// and the `pipe_user_pages_soft` initial value (`PIPE_DEF_BUFFERS * INR_OPEN_CUR`) as an
/// uncovered data effect. kbuild picks the probe values 32 and 8.
///
/// kernel/trace/trace.c cannot be tuned (its splice-read functions hold
/// `struct page *pages_def[PIPE_DEF_BUFFERS]` on the stack: frame layout). fs/splice.c could
/// (`splice_grow_spd+0xf cmp $0x10,%edi`, `splice_shrink_spd+0x9 cmpl $0x10,0x14(%rdi)`, both
/// IV = 1*V), but must not be: `splice_grow_spd` decides whether the caller's on-stack array of
/// PIPE_DEF_BUFFERS pages suffices, and trace.c's array keeps 16 entries, so raising the check
/// alone would let a trace-pipe splice overflow the stack. Both are excluded; a pipe with more
/// default buffers is a state `fcntl(F_SETPIPE_SZ)` can reach anyway. Each excluded unit is one
/// `excluded_unit` effect naming what the constant does there.
#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_pipe_def_buffers_in_fs() {
    let lab = excluding(lab(), &["fs/splice.c", "kernel/trace/trace.c"]);
    let tunable = Tunable::from_macro_name("PIPE_DEF_BUFFERS").expect("a macro name");
    let plan = run(&lab, &tunable).unwrap_or_else(|e| panic!("{e}"));
    eprint!("{}", render_report(&plan));
    let pipe: Vec<(&str, u32, &str, String)> = plan
        .sites
        .iter()
        .filter(|s| s.unit == "fs/pipe.c")
        .map(|s| {
            (
                s.function.as_str(),
                s.offset,
                s.asm.as_str(),
                s.recipe.relation.to_string(),
            )
        })
        .collect();
    assert_eq!(
        pipe,
        [
            (
                "alloc_pipe_info",
                0x6b,
                "cmp $0xffff,%ebp",
                "IV = 4096*V - 1".to_owned()
            ),
            (
                "alloc_pipe_info",
                0x77,
                "mov $0x10,%eax",
                "IV = 1*V".to_owned()
            ),
            (
                "alloc_pipe_info",
                0x7c,
                "mov $0x10,%ebp",
                "IV = 1*V".to_owned()
            ),
        ]
    );
    assert!(
        plan.sites.iter().all(|s| s.unit == "fs/pipe.c"),
        "only fs/pipe.c is tuned"
    );
    let uncovered: Vec<(UncoveredKind, &str, &str)> = plan
        .uncovered
        .iter()
        .map(|u| (u.kind, u.unit.as_str(), u.symbol.as_str()))
        .collect();
    assert_eq!(
        uncovered,
        [
            (
                UncoveredKind::DataValue,
                "fs/pipe.c",
                "pipe_user_pages_soft"
            ),
            (UncoveredKind::ExcludedUnit, "fs/splice.c", ""),
            (UncoveredKind::ExcludedUnit, "kernel/trace/trace.c", ""),
        ]
    );
    let splice = &plan.uncovered[1].detail;
    for needle in [
        "fs/splice.c keeps the compiled value 16",
        "splice_grow_spd+0xf `cmp $0x10,%edi`",
        "splice_shrink_spd+0x9 `cmpl $0x10,0x14(%rdi)`",
    ] {
        assert!(splice.contains(needle), "{needle:?} missing in {splice}");
    }
    let trace = &plan.uncovered[2].detail;
    for needle in [
        "kernel/trace/trace.c keeps the compiled value 16",
        "tracing_buffers_splice_read+0x23 (.text): frame_layout",
        "tracing_splice_read_pipe+0x23 (.text): frame_layout",
    ] {
        assert!(trace.contains(needle), "{needle:?} missing in {trace}");
    }
    check_golden(&lab, "pipe_def_buffers_fs", plan);
}

/// MAX_SOFTIRQ_RESTART in the prototype's pattern form (its `original`, `#define
/// MAX_SOFTIRQ_RESTART 10`, matches 6.12's kernel/softirq.c). `__do_softirq` is an alias of
/// `handle_softirqs` there. Read in `objdump -d` of the three kernel/softirq.o builds:
///
/// * the one seed is `handle_softirqs+0x54 mov $0xa,%ebp` (`int max_restart =
///   MAX_SOFTIRQ_RESTART`; `$0x5`, `$0x3` in V2, V3), IV = 1*V, an immediate load; its
///   post-probe is on the next instruction, +0x59, jump-optimized, and its Safe Span runs from
///   +0x54 to the function's end (+0x2b8), with 2 exits;
/// * besides it, gcc orders two out-of-line blocks at the function's end differently: V1 has
///   `mov 0x14(%rsp),%r12d; jmp +0x172` at +0x2a7 and the `WARN` `ud2; jmp +0x18e` at +0x2b1,
///   V2 and V3 the other way round, so the `je` at +0x121 and the `jne` at +0x188 lead to
///   other offsets.
///
/// The stream alignment leaves those blocks unaligned, but every basic block has its
/// counterpart with the same instructions and the branches lead to corresponding blocks, so
/// the diff takes the builds as the same code laid out differently: no effect besides the
/// seed, and the tunable has a plan.
#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_max_softirq_restart() {
    let lab = lab();
    let spec = golden_path("max_softirq_restart.toml");
    let parsed = kernelx_spec::load(&spec, &EnvOverrides::default()).expect("the spec");
    let plan = run(&lab, &parsed.spec.tunables[0]).unwrap_or_else(|e| panic!("{e}"));
    eprint!("{}", render_report(&plan));
    let sites: Vec<(&str, &str, u32, &str, String)> = plan
        .sites
        .iter()
        .map(|s| {
            (
                s.unit.as_str(),
                s.function.as_str(),
                s.offset,
                s.asm.as_str(),
                s.recipe.relation.to_string(),
            )
        })
        .collect();
    assert_eq!(
        sites,
        [(
            "kernel/softirq.c",
            "handle_softirqs",
            0x54,
            "mov $0xa,%ebp",
            "IV = 1*V".to_owned()
        )]
    );
    let probes = &plan.sites[0].probes;
    assert_eq!((probes.post, probes.jump_optimizable), (0x59, true));
    assert!(plan.uncovered.is_empty(), "{:?}", plan.uncovered);
    check_golden(&lab, "max_softirq_restart", plan);
}

/// BLK_MAX_REQUEST_COUNT by its macro name (block/blk.h: `#define BLK_MAX_REQUEST_COUNT 32`).
/// About 36 units of block/ include blk.h, but only block/blk-core.c and block/blk-mq.c use
/// the macro (grep; no header uses it), so only their preprocessed text changes: discovery
/// finds exactly those two and kbuild builds them.
///
/// KernelX first picks 64 and 16. With 64, gcc changes an instruction's form in
/// `blk_add_rq_to_plug`: `add $0x40,%eax` (V1) becomes `sub $0xff80,%ax` (0x80 does not fit
/// a sign-extended imm8, so it subtracts -0x80 in 16 bits instead), which SIE cannot patch.
/// The analysis drops V2 = 64 for 48 (closer to V1; V3 = 16 stays) and says so in a warning;
/// the plan is built with 32, 48 and 16. objdump -d -r of the V1 objects:
///
/// * block/blk-core.c `blk_start_plug_nr_ios+0x20 mov $0x20,%edx` (`plug->nr_ios =
///   min_t(unsigned short, nr_ios, BLK_MAX_REQUEST_COUNT)`): then `cmp %dx,%si; cmova
///   %edx,%esi; mov %si,0x28(%rdi)`. IV = 1*V, an immediate load; post-probe on the next
///   instruction (+0x25, jump-optimized).
/// * block/blk-mq.c `blk_add_rq_to_plug`, `plug->rq_count >= blk_plug_max_rq_count(plug)`,
///   where that is `multiple_queues ? 2*V : V` as an `unsigned short`: `movzwl 0x2a(%rdi),%edx`
///   (rq_count), `cmp $0x1,%cl; sbb %eax,%eax` (-1 when multiple_queues is 0, else 0), then
///   `+0x28 and $0xffffffe0,%eax` (IV = -1*V: 0 or -V) and `+0x2b add $0x40,%eax` (IV = 2*V:
///   2V or V), compared by `cmp %ax,%dx`. Both are `combine` updates: the `and` site saves
///   %eax at its pre-probe (+0x28) and applies `saved & -V'` at its post-probe (+0x2b); the
///   `add` site undoes `+0x40` and adds 2V' at +0x2e (int3: the `jae` after it cannot be
///   copied into an optprobe).
///
/// The range is 1..=2^30-1: `-V` needs V >= 1, `2*V` must not overflow 32 bits. rq_count,
/// nr_ios and the helper's result are `unsigned short`, and every consumer reads 16 bits
/// (`cmp %dx,%si`, `mov %si,..`, `cmp %ax,%dx`), so a V' above 65535 (or 2V' above it)
/// behaves as the C conversion to `unsigned short` makes a kernel compiled with V' behave:
/// truncated. The relation holds modulo 2^16 and the 32-bit range is what the updates need.
#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_blk_max_request_count() {
    let lab = lab();
    let tunable = Tunable::from_macro_name("BLK_MAX_REQUEST_COUNT").expect("a macro name");
    let discovery = discover(&lab.tree, &tunable, &lab.options.variants, &NoProgress)
        .unwrap_or_else(|e| panic!("{e}"));
    let report = discovery.report();
    let both = [
        PathBuf::from("block/blk-core.c"),
        PathBuf::from("block/blk-mq.c"),
    ];
    // blk.h only defines the macro: the units that include it without using it are no
    // candidates, and both users' preprocessed text changes.
    assert_eq!(
        (&report.mentions, &report.candidates, &report.affected),
        (&both.to_vec(), &both.to_vec(), &both.to_vec()),
        "{report}"
    );
    let plan = run(&lab, &tunable).unwrap_or_else(|e| panic!("{e}"));
    eprint!("{}", render_report(&plan));
    assert_eq!(plan.source.values(), [32, 48, 16]);
    assert_eq!(plan.source.file(), "block/blk.h");
    assert_eq!(
        site_facts(&plan),
        [
            (
                "block/blk-core.c",
                "blk_start_plug_nr_ios",
                0x20,
                "mov $0x20,%edx",
                "IV = 1*V".to_owned(),
                SynthesisKind::ImmediateLoad,
                None,
                0x25
            ),
            (
                "block/blk-mq.c",
                "blk_add_rq_to_plug",
                0x28,
                "and $0xffffffe0,%eax",
                "IV = -1*V".to_owned(),
                SynthesisKind::Combine,
                Some(0x28),
                0x2b
            ),
            (
                "block/blk-mq.c",
                "blk_add_rq_to_plug",
                0x2b,
                "add $0x40,%eax",
                "IV = 2*V".to_owned(),
                SynthesisKind::Combine,
                None,
                0x2e
            ),
        ]
    );
    assert_eq!((plan.range.min, plan.range.max), (1, (1 << 30) - 1));
    assert!(plan.uncovered.is_empty(), "{:?}", plan.uncovered);
    let [dropped] = plan.warnings.as_slice() else {
        panic!("one warning expected: {:?}", plan.warnings);
    };
    for needle in [
        "the probe values [32, 64, 16] KernelX picked were dropped",
        "block/blk-mq.c: blk_add_rq_to_plug+0x2b (.text): instructions_changed",
        "V2 +0x2b..+0x2f: sub $0xff80,%ax",
        "built with [32, 48, 16] instead (V2 = V1 + |V1|/2 = 48",
    ] {
        assert!(dropped.contains(needle), "{needle:?} missing in {dropped}");
    }
    check_golden(&lab, "blk_max_request_count", plan);
}

/// Given values are never replaced: the same macro with the values 32, 64, 16 fails on the
/// form change KernelX would otherwise have avoided.
#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_blk_max_request_count_given_values_stay() {
    let lab = lab();
    let text = "macro = \"BLK_MAX_REQUEST_COUNT\"\nvalues = [32, 64, 16]\n";
    let parsed =
        kernelx_spec::parse_str(text, "blk.toml", &EnvOverrides::default()).expect("the spec");
    let err = run(&lab, &parsed.spec.tunables[0]).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "BLK_MAX_REQUEST_COUNT changes code that KernelX cannot patch at run time (built \
             with [32, 64, 16])"
        ) && err.contains("blk_add_rq_to_plug+0x2b (.text): instructions_changed"),
        "{err}"
    );
    assert!(!err.contains("picked"), "{err}");
}

/// SHRINK_BATCH from the prototype's shrink_batch.toml (pattern form, `#define SHRINK_BATCH
/// 128` in mm/shrinker.c, values 128, 32, 64; its `kernel_dir` replaced by the lab tree).
/// objdump of mm/shrinker.o: `long batch_size = shrinker->batch ? shrinker->batch :
/// SHRINK_BATCH;` is `do_shrink_slab+0x7 mov $0x80,%eax` then `+0x28 cmove %rax,%r12`
/// (`shrinker->batch` in %r12). One site: IV = 1*V, an immediate load into %eax (zero-extended
/// into %rax, which the `cmove` reads); post-probe on the next instruction (+0xc,
/// jump-optimized). %r12 stays batch_size through the whole scan loop, so the safe span runs
/// to +0x34b. The range 0..=2^31-1 is `int`'s (the macro's type) from 0: with 0, the loop
/// scans with batch size 0, as a kernel compiled with 0 would.
#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_shrink_batch() {
    let lab = lab();
    let tunable = prototype_tunable(&lab, "shrink_batch.toml", 0);
    let plan = run(&lab, &tunable).unwrap_or_else(|e| panic!("{e}"));
    eprint!("{}", render_report(&plan));
    assert_eq!(plan.source.values(), [128, 32, 64]);
    assert_eq!(
        site_facts(&plan),
        [(
            "mm/shrinker.c",
            "do_shrink_slab",
            0x7,
            "mov $0x80,%eax",
            "IV = 1*V".to_owned(),
            SynthesisKind::ImmediateLoad,
            None,
            0xc
        )]
    );
    assert!(plan.sites[0].probes.jump_optimizable);
    assert_eq!((plan.range.min, plan.range.max), (0, i64::from(i32::MAX)));
    let span = plan.safe_span(&plan.sites[0].safe_span).expect("its span");
    assert_eq!(
        (span.ranges[0].start, span.ranges.last().map(|r| r.end)),
        (0x7, Some(0x34b))
    );
    assert!(
        plan.uncovered.is_empty() && plan.warnings.is_empty(),
        "{plan:?}"
    );
    check_golden(&lab, "shrink_batch", plan);
}

/// tcp_cubic, the first tunable of the prototype's fig12_hystart.toml: `ca->delay_min >> 3`
/// in `hystart_update` (inlined into `cubictcp_acked`), values 3, 2, 1. objdump of
/// net/ipv4/tcp_cubic.o: `+0x1db mov 0x558(%rbx),%edx` (delay_min), `+0x1e6 mov %edx,%eax`,
/// `+0x1e8 shr $0x3,%eax`, then the clamp to [4000, 16000] (`cmp; cmovb; mov $0x3e80,%ecx;
/// cmp; cmova`), `add %edx,%eax` and the compare with curr_rtt. One site: IV = 1*V, the shift
/// count; a `combine` that recomputes `%eax = %edx >> V'` from the unshifted copy still in
/// %edx, at the post-probe +0x1eb (jump-optimized). The range 0..=31 is the shift count's (a
/// 32-bit shift uses 5 bits; C leaves larger counts undefined). The safe span covers the
/// comparison up to +0x248 and the epilogue at +0x19a the `jae` leads to.
#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_tcp_cubic_delay_min_shift() {
    let lab = lab();
    let tunable = prototype_tunable(&lab, "fig12_hystart.toml", 0);
    assert_eq!(tunable.name, "tcp_cubic");
    let plan = run(&lab, &tunable).unwrap_or_else(|e| panic!("{e}"));
    eprint!("{}", render_report(&plan));
    assert_eq!(plan.source.values(), [3, 2, 1]);
    assert_eq!(
        site_facts(&plan),
        [(
            "net/ipv4/tcp_cubic.c",
            "cubictcp_acked",
            0x1e8,
            "shr $0x3,%eax",
            "IV = 1*V".to_owned(),
            SynthesisKind::Combine,
            None,
            0x1eb
        )]
    );
    assert!(plan.sites[0].probes.jump_optimizable);
    assert_eq!((plan.range.min, plan.range.max), (0, 31));
    let span = plan.safe_span(&plan.sites[0].safe_span).expect("its span");
    let ranges: Vec<(u32, u32)> = span.ranges.iter().map(|r| (r.start, r.end)).collect();
    assert_eq!(ranges, [(0x19a, 0x1a1), (0x1e8, 0x248)]);
    assert!(
        plan.uncovered.is_empty() && plan.warnings.is_empty(),
        "{plan:?}"
    );
    check_golden(&lab, "tcp_cubic", plan);
}
