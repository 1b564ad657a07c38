//! Helpers shared by the integration tests: reading and compiling C fixtures, rendering
//! findings as expectation lines, building the lab tree's fs/pipe.o (`lab`), rendering probe
//! placements and Safe Spans (`spans`).

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of these helpers"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kernelx_x86::{ChangedField, ObjectDiff, ObjectFile, SymbolKind, diff_objects};

pub mod lab;
pub mod spans;

/// Flags close to the kernel's x86-64 C flags that work without kernel headers.
pub const KERNEL_LIKE_FLAGS: &[&str] = &[
    "-O2",
    "-std=gnu11",
    "-nostdinc",
    "-ffreestanding",
    "-fno-common",
    "-fno-PIE",
    "-fno-pic",
    "-fno-strict-aliasing",
    "-fno-strict-overflow",
    "-fno-delete-null-pointer-checks",
    "-mcmodel=kernel",
    "-mno-red-zone",
    "-mno-sse",
    "-mno-mmx",
    "-mno-sse2",
    "-mno-3dnow",
    "-mno-avx",
    "-mno-80387",
    "-mno-fp-ret-in-387",
    "-mpreferred-stack-boundary=3",
    "-mskip-rax-setup",
    "-mtune=generic",
    "-fcf-protection=branch",
    "-fno-jump-tables",
    "-fno-asynchronous-unwind-tables",
    "-mindirect-branch=thunk-extern",
    "-mindirect-branch-register",
    "-mfunction-return=thunk-extern",
    "-mharden-sls=all",
    "-fpatchable-function-entry=16,16",
    "-fno-stack-protector",
    "-pg",
    "-mrecord-mcount",
    "-mfentry",
    "-falign-functions=16",
    "-fno-stack-check",
    "-fconserve-stack",
];

/// The C compiler for fixtures: `$KERNELX_TEST_CC`, else the kernel's
/// `x86_64-linux-gnu-gcc-12`, else `gcc-12`, else `gcc`.
#[track_caller]
pub fn compiler() -> String {
    if let Ok(cc) = std::env::var("KERNELX_TEST_CC") {
        return cc;
    }
    for cc in ["x86_64-linux-gnu-gcc-12", "gcc-12", "gcc"] {
        if Command::new(cc)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return cc.to_owned();
        }
    }
    panic!("no C compiler found: install gcc-12 (the kernel's compiler) or set KERNELX_TEST_CC");
}

/// Compiles `source` with `-DV=<value>` and the extra flags into `out_dir`, returning the
/// object's path.
#[track_caller]
pub fn compile(source: &Path, value: i64, extra: &[String], out_dir: &Path) -> PathBuf {
    let stem = source.file_stem().unwrap().to_string_lossy();
    let out = out_dir.join(format!("{stem}-{value}.o"));
    let mut cmd = Command::new(compiler());
    cmd.args(KERNEL_LIKE_FLAGS)
        .args(extra)
        .arg(format!("-DV={value}"))
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(&out);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "compiling {} failed: {cmd:?}\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

/// A C fixture: its header lines (format in `testdata/fixtures/README.md`).
pub struct Fixture {
    /// The file.
    pub path: PathBuf,
    /// `// values:`; the first plays the running kernel.
    pub values: [i64; 3],
    /// `// flags:`, extra compiler flags.
    pub flags: Vec<String>,
    /// `// expect:` lines: (line number, expectation with whitespace normalized).
    pub expect: Vec<(usize, String)>,
}

/// Reads `testdata/<dir>/<name>`.
#[track_caller]
pub fn load_fixture(dir: &str, name: &str) -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(dir)
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let origin = path.display().to_string();
    let mut values = None;
    let mut flags = Vec::new();
    let mut expect = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let Some(rest) = line.trim().strip_prefix("//") else {
            continue;
        };
        let rest = rest.trim();
        if let Some(v) = rest.strip_prefix("values:") {
            let parsed: Vec<i64> = v
                .split_whitespace()
                .map(|x| {
                    x.parse()
                        .unwrap_or_else(|_| panic!("{origin}:{n}: bad value {x:?}"))
                })
                .collect();
            values = Some(
                parsed
                    .try_into()
                    .unwrap_or_else(|_| panic!("{origin}:{n}: `values:` needs three values")),
            );
        } else if let Some(f) = rest.strip_prefix("flags:") {
            flags.extend(f.split_whitespace().map(str::to_owned));
        } else if let Some(e) = rest.strip_prefix("expect:") {
            // Anything after `#` is a comment (usually the instruction).
            let e = e.split('#').next().unwrap_or("").trim();
            if e.is_empty() {
                panic!("{origin}:{n}: empty expectation");
            }
            expect.push((n, e.split_whitespace().collect::<Vec<_>>().join(" ")));
        }
    }
    Fixture {
        values: values.unwrap_or_else(|| panic!("{origin}: no `// values:` line")),
        path,
        flags,
        expect,
    }
}

/// Compiles a fixture once per value into `out_dir`; the objects' bytes, in value order.
#[track_caller]
pub fn compile_fixture(fixture: &Fixture, out_dir: &Path) -> Vec<Vec<u8>> {
    fixture
        .values
        .iter()
        .map(|&v| {
            let o = compile(&fixture.path, v, &fixture.flags, out_dir);
            std::fs::read(&o).unwrap_or_else(|e| panic!("reading {}: {e}", o.display()))
        })
        .collect()
}

/// Parses a fixture's objects (from [`compile_fixture`]) and diffs them; the V1..V3 objects
/// and the diff.
#[track_caller]
pub fn parse_and_diff<'a>(
    name: &str,
    fixture: &Fixture,
    objects: &'a [Vec<u8>],
) -> (Vec<ObjectFile<'a>>, ObjectDiff) {
    let parsed: Vec<ObjectFile<'a>> = objects
        .iter()
        .zip(fixture.values)
        .map(|(bytes, v)| {
            ObjectFile::parse(format!("{name} [V={v}]"), bytes)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect();
    let diff = diff_objects([&parsed[0], &parsed[1], &parsed[2]], fixture.values)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (parsed, diff)
}

/// The findings of a diff as expectation lines (see `testdata/fixtures/README.md`), sorted.
pub fn render(diff: &ObjectDiff) -> Vec<String> {
    let mut lines = Vec::new();
    for s in &diff.seeds {
        for c in &s.changes {
            let field = match &c.field {
                ChangedField::Immediate => "imm".to_owned(),
                ChangedField::Addend => "addend".to_owned(),
                ChangedField::Displacement => "disp".to_owned(),
                ChangedField::SymbolOffset { symbol } => format!("sym:{symbol}"),
            };
            let values: Vec<String> = c.values.iter().map(|v| format!("{v:#x}")).collect();
            let frame = if s.frame_layout { " frame" } else { "" };
            lines.push(format!(
                "seed {}+{:#x} op{}:{field} {}{frame}",
                s.function,
                s.offset,
                c.operand,
                values.join(",")
            ));
        }
    }
    for u in &diff.uncovered {
        let at = u.offset.map(|o| format!("+{o:#x}")).unwrap_or_default();
        lines.push(format!("uncovered {} {}{at}", u.kind, u.symbol));
    }
    for m in &diff.unmatched {
        let kind = match m.kind {
            SymbolKind::Function => "function",
            SymbolKind::Data => "data",
        };
        let present: Vec<String> = m.present_in.iter().map(|v| v.to_string()).collect();
        lines.push(format!(
            "unmatched {kind} {} in {}",
            m.name,
            present.join(",")
        ));
    }
    lines.sort();
    lines
}

/// Compares expected and actual lines as sets; on a difference, panics with both sides and
/// `context` (the fixture, and what the diff found in detail).
#[track_caller]
pub fn assert_same_lines(
    origin: &str,
    expected: &[(usize, String)],
    actual: &[String],
    context: &str,
) {
    let missing: Vec<String> = expected
        .iter()
        .filter(|(_, e)| !actual.contains(e))
        .map(|(line, e)| format!("  {origin}:{line}: {e}"))
        .collect();
    let unexpected: Vec<String> = actual
        .iter()
        .filter(|a| !expected.iter().any(|(_, e)| e == *a))
        .map(|a| format!("  {a}"))
        .collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "{origin}: findings differ from the expectations\nexpected but not found:\n{}\nfound but not expected:\n{}\n{context}",
        missing.join("\n"),
        unexpected.join("\n"),
    );
}

/// A human-readable account of a diff, for failure messages.
pub fn explain(diff: &ObjectDiff) -> String {
    let mut out = String::from("what the diff found:\n");
    for s in &diff.seeds {
        let asm: Vec<&str> = s.instances.iter().map(|i| i.asm.as_str()).collect();
        out.push_str(&format!(
            "  seed {}+{:#x}: {}\n",
            s.function,
            s.offset,
            asm.join(" | ")
        ));
    }
    for u in &diff.uncovered {
        out.push_str(&format!(
            "  uncovered {} {}: {}\n",
            u.kind, u.symbol, u.detail
        ));
    }
    out
}
