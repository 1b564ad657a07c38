//! C fixtures compiled at test time with three values of `V`, diffed, and checked against the
//! `// expect:` lines in each fixture (format in `testdata/fixtures/README.md`).

mod common;

use std::path::Path;

#[track_caller]
fn check(name: &str) {
    let fixture = common::load_fixture("fixtures", name);
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let objects = common::compile_fixture(&fixture, dir.path());
    let (parsed, diff) = common::parse_and_diff(name, &fixture, &objects);
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
