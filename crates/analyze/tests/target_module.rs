//! Every constant of the target module (`tests/target-module`), by macro name, analysed like a
//! kernel constant and checked against the module's README, which is the oracle: its
//! "Constants" table says which functions each constant reaches, its "Sites" table at which
//! offsets. The form and relation of each site are listed here (the README says them in
//! prose). Plans are compared whole with `testdata/golden/target_module/<CONSTANT>.plan.json`,
//! and the constants the analysis cannot plan yet with `<CONSTANT>.err`.
//!
//! Ignored by default; CI runs them with `--include-ignored` and `KERNELX_LAB_HEADERS` set
//! to the lab kernel's headers (default `/usr/src/linux-headers-6.12.117+deb12-cloud-amd64`;
//! `cargo xtask lab setup` installs them). `KERNELX_BLESS=1` rewrites the golden files; review
//! the diff. No `.ko` is given, so the plans carry the module's name but no build-id, and
//! nothing in them depends on where the worktree is.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use kernelx_analyze::{AnalyzeError, AnalyzeOptions, analyze, kernel_identity, render_report};
use kernelx_kbuild::{BuiltUnits, Cache, ModuleTree, NoProgress, Toolchain, VariantOptions};
use kernelx_plan::{
    BoundReason, CombineOp, CompareOp, MagicForm, MagicMismatch, MagicPart, ModuleIdentity, Plan,
    Relation, SynthesisKind, TunablePlan, Update, Width,
};
use kernelx_spec::Tunable;

const LAB_RELEASE: &str = "6.12.117+deb12-cloud-amd64";

/// What a site's update does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// An immediate load (`mov $IV` to a register or memory).
    Load,
    /// A combine op with IV.
    Combine(CombineOp),
    /// `cmp`/`test` at this width.
    Compare(CompareOp, Width),
    /// A magic division sequence, recomputed whole.
    Divide(MagicForm),
}

/// The form and relation of a constant's sites, in site order (the README gives where).
type Expected = &'static [(Form, Relation)];

const V: Relation = Relation::Affine { a: 1, b: 0 };
const V_MINUS_1: Relation = Relation::Affine { a: 1, b: -1 };
const U64_MULTIPLIER: Relation = Relation::UnsignedDivision {
    width: Width::W64,
    part: MagicPart::Multiplier,
};
const U64_SHIFT: Relation = Relation::UnsignedDivision {
    width: Width::W64,
    part: MagicPart::Shift,
};
const U32_MULTIPLIER: Relation = Relation::UnsignedDivision {
    width: Width::W32,
    part: MagicPart::Multiplier,
};
const U32_SHIFT: Relation = Relation::UnsignedDivision {
    width: Width::W32,
    part: MagicPart::Shift,
};
const MOD_FORM: MagicForm = MagicForm::ImulImmediateAdd { into_high: false };
const S32_MULTIPLIER: Relation = Relation::SignedDivision {
    width: Width::W32,
    part: MagicPart::Multiplier,
};
const S32_SHIFT: Relation = Relation::SignedDivision {
    width: Width::W32,
    part: MagicPart::Shift,
};

/// The form of every constant's sites, from the README's "form" column.
fn expectations() -> Vec<(&'static str, Expected)> {
    use CombineOp::*;
    vec![
        ("KX_TARGET_IMM_REG", &[(Form::Load, V)]),
        ("KX_TARGET_IMM_REG64", &[(Form::Load, V)]),
        ("KX_TARGET_IMM_ARG", &[(Form::Load, V)]),
        // `movb $0xa7,kx_target_bytes(%rax)`. kbuild's probe value V2 = 2 * 0xa7 = 334 does
        // not fit the byte: gcc stores its low byte, 0x4e, and no relation fits. The analysis
        // drops it for V1 + V1/2 = 250 (a warning in the plan says so): IV = V, unsigned.
        ("KX_TARGET_STORE8", &[(Form::Load, V)]),
        // `mov $0xffffbeef,%ecx`, then `mov %cx,(%rdx,%rax,2)`, then the return: the immediate
        // is V sign-extended from 16 bits, and only %cx is read before %rcx dies. The relation
        // is fitted to the low 16 bits (IV = V) and the update writes %cx. V2 = 97758 does not
        // fit them: dropped for 73318, which does not either, then for 61098.
        ("KX_TARGET_STORE16", &[(Form::Load, V)]),
        ("KX_TARGET_STORE32", &[(Form::Load, V)]),
        ("KX_TARGET_STORE64", &[(Form::Load, V)]),
        ("KX_TARGET_PCPU", &[(Form::Load, V)]),
        ("KX_TARGET_ADD", &[(Form::Combine(Add), V)]),
        ("KX_TARGET_SUB", &[(Form::Combine(Sub), V)]),
        ("KX_TARGET_LEA", &[(Form::Combine(Lea), V)]),
        ("KX_TARGET_IMUL", &[(Form::Combine(Imul), V)]),
        ("KX_TARGET_SHL", &[(Form::Combine(Shl), V)]),
        ("KX_TARGET_SHR", &[(Form::Combine(Shr), V)]),
        ("KX_TARGET_SAR", &[(Form::Combine(Sar), V)]),
        ("KX_TARGET_AND", &[(Form::Combine(And), V)]),
        ("KX_TARGET_OR", &[(Form::Combine(Or), V)]),
        ("KX_TARGET_XOR", &[(Form::Combine(Xor), V)]),
        // KernelX's first probe value V2 = 2 * 0x9c = 312 is above any u8, so gcc folds
        // `(u8)x > 312` to 0 and the compare vanishes; the analysis drops it for 234 (a
        // warning in the plan says so) and the 8-bit compare remains.
        (
            "KX_TARGET_CMP8",
            &[(Form::Compare(CompareOp::Cmp, Width::W8), V)],
        ),
        (
            "KX_TARGET_CMP16",
            &[(Form::Compare(CompareOp::Cmp, Width::W16), V)],
        ),
        (
            "KX_TARGET_CMP32",
            &[(Form::Compare(CompareOp::Cmp, Width::W32), V_MINUS_1)],
        ),
        (
            "KX_TARGET_CMP64",
            &[(Form::Compare(CompareOp::Cmp, Width::W64), V_MINUS_1)],
        ),
        (
            "KX_TARGET_TEST",
            &[(Form::Compare(CompareOp::Test, Width::W32), V)],
        ),
        // `movabs $M,%rax; mov (%rdi),%rdx; mul %rdx; mov %rdx,%rax; shr $2,%rax`: the
        // dividend is loaded between the multiplier and the `mul`, which destroys it; the
        // update reads it from `(%rdi)` again. The multiplier (+0x9) and the shift (+0x1c)
        // are two seeds of the one sequence.
        (
            "KX_TARGET_DIV",
            &[
                (
                    Form::Divide(MagicForm::Mul { shifted: true }),
                    U64_MULTIPLIER,
                ),
                (Form::Divide(MagicForm::Mul { shifted: true }), U64_SHIFT),
            ],
        ),
        // `imul $0x3ce4585,%rcx,%rcx; shr $0x20,%rcx; sub %ecx,%edx; shr %edx; add %ecx,%edx;
        // shr $0x9,%edx`, then `imul $0x3f1,%edx,%edx; sub %edx,%eax`: the 33-bit magic's
        // add fix-up, which only odd divisors whose multiplier needs 33 bits have. KernelX's
        // first probe values (2018, 504) are even and lose it; the retry picks values of the
        // same shape, and `set` refuses V' of another.
        (
            "KX_TARGET_MOD",
            &[
                (Form::Divide(MOD_FORM), U32_MULTIPLIER),
                (Form::Divide(MOD_FORM), U32_SHIFT),
                (Form::Combine(Imul), V),
            ],
        ),
        // `movslq %edx,%rax; imul $-0x6db6db6d,%rax,%rax; shr $0x20,%rax; add %edx,%eax;
        // sar $0x1f,%edx; sar $0x2,%eax; sub %edx,%eax`: signed division whose multiplier
        // (0x92492493) is negative as an imm32, hence the `add` of the dividend. V3 = 3 has a
        // multiplier below 2^31 and no `add`; the retry picks 31, which keeps the sequence.
        // `sar $0x2` is the second seed; `sar $0x1f` (the sign) does not depend on V.
        (
            "KX_TARGET_SDIV",
            &[
                (Form::Divide(MagicForm::SignedImulAdd), S32_MULTIPLIER),
                (Form::Divide(MagicForm::SignedImulAdd), S32_SHIFT),
            ],
        ),
        (
            "KX_TARGET_SHARED",
            &[(Form::Load, V), (Form::Load, V), (Form::Combine(Add), V)],
        ),
        ("KX_TARGET_BLOCK", &[(Form::Combine(Add), V)]),
        // `add $IV,%rax` in each of kx_target_fan1 ... kx_target_fan15.
        ("KX_TARGET_FAN", &[(Form::Combine(Add), V); 15]),
    ]
}

/// The tunable ranges that follow from the instruction alone.
fn obvious_ranges() -> BTreeMap<&'static str, (i64, i64)> {
    const IMM32: (i64, i64) = (0, i32::MAX as i64);
    BTreeMap::from([
        // A sign-extended imm32 in a 64-bit add/sub: the non-negative part of an imm32.
        ("KX_TARGET_ADD", IMM32),
        ("KX_TARGET_SUB", IMM32),
        // `movq $imm32` sign-extended: any imm32, negative V1 included.
        ("KX_TARGET_STORE64", (i32::MIN as i64, i32::MAX as i64)),
        // Shift counts: a count of 0 is no shift (gcc drops it), 64-bit and 32-bit masks.
        ("KX_TARGET_SHL", (1, 63)),
        ("KX_TARGET_SHR", (1, 63)),
        ("KX_TARGET_SAR", (1, 31)),
        // `movb $IV,mem`: a u8.
        ("KX_TARGET_STORE8", (0, 0xff)),
        // `mov %cx,mem` of the low 16 bits of the immediate: a u16.
        ("KX_TARGET_STORE16", (0, 0xffff)),
        // `cmpb $IV,(%rdi)`: a u8.
        ("KX_TARGET_CMP8", (0, 0xff)),
        // `cmp $IV,%dx`: a u16.
        ("KX_TARGET_CMP16", (0, 0xffff)),
        // `cmp $(V-1),%eax; setbe`: V - 1 a u32, so V up to 2^32 (x < 2^32 always holds).
        ("KX_TARGET_CMP32", (1, 1 << 32)),
        // `cmp $(V-1),%rdx` with a sign-extended imm32: V - 1 in [0, 2^31).
        ("KX_TARGET_CMP64", (1, 1 << 31)),
        // `test $IV,%eax`: a u32 mask.
        ("KX_TARGET_TEST", (0, u32::MAX as i64)),
        // Divisors: not 0; the shape restriction below does the rest.
        ("KX_TARGET_DIV", (1, i64::MAX)),
        // The 32-bit division's divisors below 2^31 (larger ones compile to a compare).
        ("KX_TARGET_MOD", (1, i32::MAX as i64)),
        ("KX_TARGET_SDIV", (1, i32::MAX as i64)),
    ])
}

/// V' that compile to a division site's sequence, and V' of another shape with the reason.
type DivisionShapes = (&'static [i64], &'static [(i64, MagicMismatch)]);

/// Divisions: V' that compile to the site's sequence (accepted) and V' of another shape,
/// refused with the reason, by the plan's range.
fn division_shapes() -> BTreeMap<&'static str, DivisionShapes> {
    use MagicMismatch::*;
    BTreeMap::from([
        (
            "KX_TARGET_DIV",
            (
                &[3, 10, 12, 13, 26][..],
                &[(7, AddFixup), (1000, PreShift), (16, PowerOfTwo)][..],
            ),
        ),
        (
            "KX_TARGET_MOD",
            (
                &[7, 1009][..],
                &[(2018, PreShift), (10, NoAddFixup), (19, MultiplierTooWide)][..],
            ),
        ),
        (
            "KX_TARGET_SDIV",
            (
                &[7, 14, 31][..],
                &[(3, NoAddFixup), (8, PowerOfTwo), (33, NoAddFixup)][..],
            ),
        ),
    ])
}

fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/target-module")
}

fn readme() -> String {
    std::fs::read_to_string(module_dir().join("README.md")).expect("the target module's README")
}

fn headers() -> PathBuf {
    let path = std::env::var_os("KERNELX_LAB_HEADERS").map_or_else(
        || PathBuf::from(format!("/usr/src/linux-headers-{LAB_RELEASE}")),
        PathBuf::from,
    );
    assert!(
        path.join(".config").is_file(),
        "{}: no kernel headers; run `cargo xtask lab setup` (it installs \
         linux-headers-{LAB_RELEASE}) or set KERNELX_LAB_HEADERS to a kernel build directory",
        path.display()
    );
    path
}

struct Lab {
    module: ModuleTree,
    options: AnalyzeOptions,
}

fn lab() -> Lab {
    let cache = Cache::from_env().expect("a cache directory");
    let toolchain = Toolchain::debian_gcc12();
    let module = ModuleTree::open(&module_dir(), &headers(), None, &toolchain, &cache)
        .unwrap_or_else(|e| panic!("opening the target module: {e}"));
    let options = AnalyzeOptions::new(VariantOptions {
        toolchain,
        jobs: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
        cache,
        built: BuiltUnits::Unrestricted,
    });
    Lab { module, options }
}

/// The cells of the rows of the markdown table that follows `heading`.
fn table(text: &str, heading: &str) -> Vec<Vec<String>> {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("README: no {heading:?}"));
    text[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.replace("\\|", "/")
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}

/// README "Constants": constant → the functions it reaches (continuation rows, with an empty
/// first cell, add functions to the constant above).
fn readme_functions(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for row in table(text, "## Constants") {
        if !row[0].is_empty() {
            current = row[0].clone();
        }
        let function = row[3]
            .split('/')
            .next()
            .expect("a function cell")
            .trim()
            .trim_matches('`')
            .to_owned();
        out.entry(current.clone()).or_default().push(function);
    }
    out
}

/// README "Sites": function → the offsets of its seeds.
fn readme_offsets(text: &str) -> BTreeMap<String, Vec<u32>> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut current = String::new();
    for row in table(text, "## Sites in the built module") {
        if !row[0].is_empty() {
            current = row[0]
                .split_whitespace()
                .next()
                .expect("a function")
                .trim_matches('`')
                .to_owned();
        }
        let offset = row[1].trim_start_matches('+');
        let first = offset.split("..").next().expect("an offset");
        let offset = u32::from_str_radix(first.trim_start_matches("0x"), 16)
            .unwrap_or_else(|e| panic!("README offset {:?}: {e}", row[1]));
        out.entry(current.clone()).or_default().push(offset);
    }
    out
}

fn golden_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/golden/target_module")
        .join(file)
}

fn blessing() -> bool {
    std::env::var_os("KERNELX_BLESS").is_some()
}

/// `actual` vs the golden file, or rewrites it under `KERNELX_BLESS=1`. Returns the
/// mismatch, if any.
fn check_golden_text(file: &str, actual: &str) -> Option<String> {
    let path = golden_path(file);
    if blessing() {
        std::fs::create_dir_all(path.parent().expect("a directory")).expect("golden dir");
        std::fs::write(&path, actual).expect("writing a golden file");
        return None;
    }
    let expected = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            return Some(format!(
                "{}: {e}; run with KERNELX_BLESS=1 to create it",
                path.display()
            ));
        }
    };
    if expected == actual {
        return None;
    }
    let first = actual
        .lines()
        .zip(expected.lines())
        .position(|(a, w)| a != w)
        .unwrap_or(0);
    Some(format!(
        "differs from {} from line {} on:\n  got:      {}\n  expected: {}\n\
         (KERNELX_BLESS=1 rewrites it; review the diff)",
        path.display(),
        first + 1,
        actual.lines().nth(first).unwrap_or(""),
        expected.lines().nth(first).unwrap_or("")
    ))
}

/// The mismatches between a plan and the README and expectations.
fn check_plan(
    constant: &str,
    plan: &TunablePlan,
    forms: &[(Form, Relation)],
    functions: &[String],
    offsets: &BTreeMap<String, Vec<u32>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut wanted: Vec<(String, u32)> = functions
        .iter()
        .flat_map(|f| {
            offsets
                .get(f)
                .unwrap_or_else(|| panic!("README: no sites of {f}"))
                .iter()
                .map(move |&o| (f.clone(), o))
        })
        .collect();
    wanted.sort();
    let got: Vec<(String, u32)> = plan
        .sites
        .iter()
        .map(|s| (s.function.clone(), s.offset))
        .collect();
    if got != wanted {
        problems.push(format!(
            "{constant}: sites {got:x?}, the README says {wanted:x?}"
        ));
        return problems;
    }
    for (site, &(form, relation)) in plan.sites.iter().zip(forms) {
        let got_form = match site.recipe.update {
            Update::Load { .. } => Some(Form::Load),
            Update::Combine { op, .. } => Some(Form::Combine(op)),
            Update::Compare { op, width, .. } => Some(Form::Compare(op, width)),
            Update::Divide { form, .. } => Some(Form::Divide(form)),
        };
        let kind = match form {
            Form::Load => SynthesisKind::ImmediateLoad,
            Form::Combine(_) => SynthesisKind::Combine,
            Form::Compare(..) => SynthesisKind::Compare,
            Form::Divide(_) => SynthesisKind::Folded,
        };
        if got_form != Some(form) || site.recipe.kind != kind {
            problems.push(format!(
                "{constant}: {} is {:?} {:?}, expected {form:?}",
                site.id, site.recipe.kind, site.recipe.update
            ));
        }
        if site.recipe.relation != relation {
            problems.push(format!(
                "{constant}: {} relation {}, expected {relation}",
                site.id, site.recipe.relation
            ));
        }
        if !site.recipe.range.contains(plan.default) {
            problems.push(format!(
                "{constant}: {} range {:?} excludes the default {}",
                site.id, site.recipe.range, plan.default
            ));
        }
    }
    if forms.len() != plan.sites.len() {
        problems.push(format!(
            "{constant}: {} sites, {} forms listed in the test",
            plan.sites.len(),
            forms.len()
        ));
    }
    problems
}

/// The mismatches between a division plan's range and the shapes it must accept and refuse.
fn check_shapes(
    constant: &str,
    plan: &TunablePlan,
    accepted: &[i64],
    refused: &[(i64, MagicMismatch)],
) -> Vec<String> {
    let mut problems = Vec::new();
    for &v in accepted {
        if let Err(e) = plan.range.check(v) {
            problems.push(format!("{constant}: V' = {v} must be accepted: {e}"));
        }
    }
    for &(v, mismatch) in refused {
        match plan.range.check(v) {
            Err(e) if e.reason == BoundReason::MagicShape { mismatch } => {}
            other => problems.push(format!(
                "{constant}: V' = {v} must be refused ({mismatch}), got {other:?}"
            )),
        }
    }
    problems
}

/// Every `KX_TARGET_*` constant, by macro name, gives the plan the README describes (or the
/// failure listed in `expectations`), equal to its golden file.
#[test]
#[ignore = "needs the lab kernel's headers (cargo xtask lab setup)"]
fn lab_tree_target_module_constants_match_the_readme() {
    let lab = lab();
    let text = readme();
    let functions = readme_functions(&text);
    let offsets = readme_offsets(&text);
    let expectations = expectations();

    // The README, the source and this test name the same 29 constants.
    let source = std::fs::read_to_string(module_dir().join("kx_target.c")).expect("kx_target.c");
    let defined: BTreeSet<&str> = source
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with("KX_TARGET_"))
        .collect();
    let listed: BTreeSet<&str> = expectations.iter().map(|(c, _)| *c).collect();
    let documented: BTreeSet<&str> = functions.keys().map(String::as_str).collect();
    assert_eq!(defined.len(), 29, "{defined:?}");
    assert_eq!(defined, documented, "kx_target.c and the README disagree");
    assert_eq!(defined, listed, "the test's list and kx_target.c disagree");

    let (kernel, warnings) = kernel_identity(&lab.module, None).expect("the identity");
    assert_eq!(kernel.release, LAB_RELEASE);
    assert_eq!(
        kernel.module,
        Some(ModuleIdentity {
            name: "kx_target".to_owned(),
            build_id: None
        })
    );
    assert!(
        warnings.iter().any(|w| w.contains("--module-ko")),
        "{warnings:?}"
    );

    let mut problems = Vec::new();
    for (constant, expected) in &expectations {
        let tunable = Tunable::from_macro_name(constant).expect("a macro name");
        let outcome: Result<TunablePlan, AnalyzeError> =
            analyze(&lab.module, &tunable, &lab.options, &NoProgress);
        match outcome {
            Ok(plan) => {
                eprint!("{}", render_report(&plan));
                if let Some(&(min, max)) = obvious_ranges().get(constant)
                    && (plan.range.min, plan.range.max) != (min, max)
                {
                    problems.push(format!(
                        "{constant}: range {}..={}, expected {min}..={max}",
                        plan.range.min, plan.range.max
                    ));
                }
                problems.extend(check_plan(
                    constant,
                    &plan,
                    expected,
                    &functions[*constant],
                    &offsets,
                ));
                if let Some((accepted, refused)) = division_shapes().get(constant) {
                    problems.extend(check_shapes(constant, &plan, accepted, refused));
                }
                let json = Plan::new(kernel.clone(), vec![plan])
                    .to_json()
                    .expect("a valid plan");
                problems.extend(check_golden_text(&format!("{constant}.plan.json"), &json));
            }
            Err(e) => problems.push(format!("{constant}: no plan: {e}")),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// `KX_TARGET_SHARED` reaches both functions through the inlined `kx_target_shared_cap()`,
/// and `KX_TARGET_BLOCK`'s safe span covers the sleep: the `schedule` call and its return
/// address, so a task asleep in `block` counts as inside the span.
#[test]
#[ignore = "needs the lab kernel's headers (cargo xtask lab setup)"]
fn lab_tree_target_module_shared_and_block() {
    let lab = lab();
    let shared = analyze(
        &lab.module,
        &Tunable::from_macro_name("KX_TARGET_SHARED").expect("a macro name"),
        &lab.options,
        &NoProgress,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let functions: BTreeSet<&str> = shared.sites.iter().map(|s| s.function.as_str()).collect();
    assert_eq!(
        functions,
        BTreeSet::from(["kx_target_shared_a", "kx_target_shared_b"])
    );
    for site in &shared.sites {
        assert!(
            shared
                .safe_spans
                .iter()
                .any(|span| span.id == site.safe_span && span.function == site.function),
            "{}: its safe span is not in its function",
            site.id
        );
    }

    let block = analyze(
        &lab.module,
        &Tunable::from_macro_name("KX_TARGET_BLOCK").expect("a macro name"),
        &lab.options,
        &NoProgress,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let [site] = &block.sites[..] else {
        panic!("one site expected:\n{}", render_report(&block));
    };
    let span = block
        .safe_spans
        .iter()
        .find(|s| s.id == site.safe_span)
        .expect("the site's safe span");
    // README: `call schedule` at +0xae, return address +0xb3; the result is moved out of
    // %rbx at +0x67 and returned at +0x6c.
    for offset in [0xae, 0xb3, 0x67] {
        assert!(
            span.contains(offset),
            "KX_TARGET_BLOCK's safe span {:x?} misses +{offset:#x}",
            span.ranges
        );
    }
}
