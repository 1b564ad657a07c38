//! C fixtures compiled at test time with three values of `V`, diffed, and checked against the
//! `// expect:` lines in each fixture (format in `testdata/fixtures/README.md`).

mod common;

use std::path::{Path, PathBuf};

use kernelx_x86::{ObjectFile, diff_objects};

/// A parsed fixture header.
struct Fixture {
    path: PathBuf,
    values: [i64; 3],
    flags: Vec<String>,
    /// (line number, expectation)
    expect: Vec<(usize, String)>,
}

#[track_caller]
fn load(name: &str) -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/fixtures")
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

#[track_caller]
fn check(name: &str) {
    let fixture = load(name);
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let objects: Vec<Vec<u8>> = fixture
        .values
        .iter()
        .map(|&v| {
            let o = common::compile(&fixture.path, v, &fixture.flags, dir.path());
            std::fs::read(&o).unwrap_or_else(|e| panic!("reading {}: {e}", o.display()))
        })
        .collect();
    let parsed: Vec<ObjectFile<'_>> = objects
        .iter()
        .zip(fixture.values)
        .map(|(bytes, v)| {
            ObjectFile::parse(format!("{name} [V={v}]"), bytes)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect();
    let diff = diff_objects([&parsed[0], &parsed[1], &parsed[2]], fixture.values)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    // The report survives a JSON round trip.
    let json = serde_json::to_string(&diff).expect("serializing the diff");
    let back: kernelx_x86::ObjectDiff = serde_json::from_str(&json).expect("reading it back");
    assert_eq!(back, diff, "{name}: JSON round trip changed the diff");
    // Every seed names V1 code exactly.
    for s in &diff.seeds {
        let f = parsed[0]
            .find_function(&s.function, &s.section)
            .unwrap_or_else(|| {
                panic!("{name}: seed names unknown {} in {}", s.function, s.section)
            });
        let at = s.offset as usize..s.offset as usize + usize::from(s.len);
        assert_eq!(
            f.bytes[at.clone()],
            s.bytes.0[..],
            "{name}: bytes of {}+{:#x}",
            s.function,
            s.offset
        );
        assert_eq!(
            f.reloc_mask()[at],
            s.mask.0[..],
            "{name}: mask of {}+{:#x}",
            s.function,
            s.offset
        );
    }
    let actual = common::render(&diff);
    common::assert_same_lines(
        &fixture.path.display().to_string(),
        &fixture.expect,
        &actual,
        &common::explain(&diff),
    );
}

#[test]
fn alternatives() {
    check("alternatives.c");
}

#[test]
fn imm_loads() {
    check("imm_loads.c");
}

#[test]
fn compares() {
    check("compares.c");
}

#[test]
fn arith() {
    check("arith.c");
}

#[test]
fn division() {
    check("division.c");
}

#[test]
fn shared() {
    check("shared.c");
}

#[test]
fn cold() {
    check("cold.c");
}

#[test]
fn data() {
    check("data.c");
}

#[test]
fn control() {
    check("control.c");
}

#[test]
fn frame() {
    check("frame.c");
}

/// Every fixture has a test above; none is skipped silently.
#[test]
fn every_fixture_is_checked() {
    let listed = [
        "alternatives.c",
        "arith.c",
        "cold.c",
        "compares.c",
        "control.c",
        "data.c",
        "division.c",
        "frame.c",
        "imm_loads.c",
        "shared.c",
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fixtures");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".c"))
        .collect();
    found.sort();
    assert_eq!(
        found,
        listed,
        "add a #[test] for each fixture in {}",
        dir.display()
    );
}
