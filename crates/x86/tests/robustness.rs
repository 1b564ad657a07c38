//! Properties over arbitrary input: decoding, CFGs and diffs of random bytes, and parsing and
//! diffing of corrupted objects, never panic.

mod common;

use std::sync::OnceLock;

use kernelx_x86::{Cfg, Disassembler, ObjectFile, diff_builds, diff_objects};
use proptest::prelude::*;

/// A real object (the `imm_loads` fixture at V=16), compiled once.
fn real_object() -> &'static [u8] {
    static OBJECT: OnceLock<Vec<u8>> = OnceLock::new();
    OBJECT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let source =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/fixtures/imm_loads.c");
        let out = common::compile(&source, 16, &[], dir.path());
        std::fs::read(out).expect("reading the compiled fixture")
    })
}

fn code() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..256)
}

proptest! {
    #[test]
    fn decoding_and_diffing_random_bytes_never_panics(a in code(), b in code(), c in code()) {
        let objects = [
            ObjectFile::from_code("a", &[("f", &a)]),
            ObjectFile::from_code("b", &[("f", &b)]),
            ObjectFile::from_code("c", &[("f", &c)]),
        ];
        let mut disassembler = Disassembler::new();
        for o in &objects {
            let f = &o.functions()[0];
            let insns = disassembler.decode(f);
            // Decoding covers every byte exactly once.
            prop_assert_eq!(insns.iter().map(|i| i.len()).sum::<usize>(), f.len());
            let cfg = Cfg::build(o, f, &insns);
            let covered: usize = cfg.blocks().iter().map(|b| b.insns.len()).sum();
            prop_assert_eq!(covered, insns.len());
            for i in &insns {
                let _ = disassembler.def_use(&i.instruction);
            }
        }
        let diff = diff_objects([&objects[0], &objects[1], &objects[2]], [1, 2, 3]).unwrap();
        // A function diffed against itself has no findings.
        if a == b && b == c {
            prop_assert!(diff.seeds.is_empty() && diff.uncovered.is_empty());
        }
    }

    #[test]
    fn diffing_code_with_itself_finds_nothing(a in code()) {
        let x = ObjectFile::from_code("x", &[("f", &a)]);
        let y = ObjectFile::from_code("y", &[("f", &a)]);
        let diff = diff_builds(&[&x, &y], &[1, 2]).unwrap();
        prop_assert!(diff.seeds.is_empty() && diff.uncovered.is_empty(), "{:?}", diff);
    }

    #[test]
    fn corrupted_objects_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)
    ) {
        let original = real_object();
        let mut bytes = original.to_vec();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(corrupt) = ObjectFile::parse("corrupt.o", &bytes) {
            let good = ObjectFile::parse("good.o", original).unwrap();
            let _ = diff_builds(&[&good, &corrupt], &[1, 2]);
        }
    }
}

#[test]
fn a_real_object_diffed_with_itself_finds_nothing() {
    let a = ObjectFile::parse("a.o", real_object()).unwrap();
    let b = ObjectFile::parse("b.o", real_object()).unwrap();
    let diff = diff_builds(&[&a, &b], &[1, 2]).unwrap();
    assert!(diff.seeds.is_empty() && diff.uncovered.is_empty() && diff.unmatched.is_empty());
    assert_eq!(diff.stats.functions, a.functions().len());
}

#[test]
fn rejects_repeated_values_and_mismatched_lengths() {
    let a = ObjectFile::from_code("a", &[("f", &[0xc3])]);
    let err = diff_builds(&[&a, &a], &[1, 1]).unwrap_err();
    assert!(err.to_string().contains("value 1 is given twice"), "{err}");
    let err = diff_builds(&[&a, &a], &[1]).unwrap_err();
    assert!(err.to_string().contains("2 objects but 1 values"), "{err}");
}
