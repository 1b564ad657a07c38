//! The parser never panics, whatever the input, and what it accepts keeps the documented
//! invariants. Inputs: arbitrary text, TOML-looking text, and the prototype's files (plus a
//! spec using every feature) after random byte edits and truncations.

mod common;

use std::collections::HashSet;
use std::fs;
use std::sync::OnceLock;

use kernelx_spec::{EnvOverrides, TunableSource, parse_str};
use proptest::prelude::*;

/// A spec that reaches every check: both forms, safe spans, `lines`, unknown keys.
const RICH: &str = r##"kernel_dir = "~/linux"
[[tunables]]
name = "pipe"
macro = "PIPE_DEF_BUFFERS"
file = "include/linux/pipe_fs_i.h"
values = [16, 32, 8]
[[tunables.safe_spans]]
function = "alloc_pipe_info"
start_offset = "0x6b"
end_offset = 0x81
[[tunables]]
name = "budget"
extra = 1
[tunables.source]
file = "block/blk-mq-sched.c"
original = "#define BLK_MQ_BUDGET_DELAY\t3"
modified = ["#define BLK_MQ_BUDGET_DELAY\t5", "#define BLK_MQ_BUDGET_DELAY\t7"]
values = [3, 5, 7]
lines = "156,200-248"
"##;

/// The texts that edits start from, read once.
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds: Vec<Vec<u8>> = common::prototype_files()
            .iter()
            .map(|f| fs::read(f).expect("prototype file"))
            .collect();
        seeds.push(RICH.as_bytes().to_vec());
        seeds
    })
}

/// Parses and checks what every result must satisfy.
fn check(text: &str) {
    let env = EnvOverrides {
        kernel_dir: None,
        home: Some("/home/kx".into()),
    };
    match parse_str(text, "fuzz.toml", &env) {
        Ok(parsed) => {
            assert!(!parsed.spec.tunables.is_empty());
            let mut names = HashSet::new();
            for tunable in &parsed.spec.tunables {
                assert!(!tunable.name.is_empty());
                assert!(
                    names.insert(&tunable.name),
                    "duplicate name {}",
                    tunable.name
                );
                if let Some([a, b, c]) = tunable.values() {
                    assert!(a != b && b != c && a != c, "{:?}", tunable.values());
                }
                if let TunableSource::Pattern {
                    original,
                    modified,
                    lines,
                    ..
                } = &tunable.source
                {
                    assert!(!original.is_empty());
                    assert!(
                        modified[0] != *original
                            && modified[1] != *original
                            && modified[0] != modified[1]
                    );
                    for sel in lines.iter().flatten() {
                        assert!(1 <= sel.first && sel.first <= sel.last);
                    }
                }
                for span in &tunable.safe_spans {
                    assert!(span.start_offset < span.end_offset);
                }
            }
            for warning in &parsed.warnings {
                assert!(warning.line >= 1 && warning.col >= 1);
                let _ = warning.to_string();
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.starts_with("fuzz.toml:"), "{message}");
            let (_, line, col) = error.location().expect("parse errors have a position");
            assert!(
                line >= 1 && line <= text.lines().count().max(1) + 1,
                "line {line} of {message}"
            );
            assert!(col >= 1);
        }
    }
}

/// One random edit of a seed.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes that matter to TOML are favoured; others still occur.
    let byte = prop_oneof![
        3 => proptest::sample::select(b"[]{}=\"',.-#\n\\ 0x19abz".to_vec()),
        1 => any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len();
        match *edit {
            Edit::Replace(i, b) if len > 0 => bytes[i % len] = b,
            Edit::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Edit::Delete(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Edit::Truncate(i) => bytes.truncate(i % (len + 1)),
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn toml_like_text_never_panics(text in r#"([a-z_]{1,8} ?= ?("[a-z0-9x ,-]*"|-?[0-9]{1,12}|\[[0-9", ]*\]|\{[a-z =0-9]*\})\n|\[\[?[a-z_.]{1,20}\]\]?\n|#[^\n]*\n){0,20}"#) {
        check(&text);
    }

    #[test]
    fn edited_specs_never_panic(seed in 0usize..64, edits in proptest::collection::vec(edit(), 1..8)) {
        let seeds = seeds();
        let bytes = apply(seeds[seed % seeds.len()].clone(), &edits);
        check(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn rich_seed_is_valid() {
    // Edits of an invalid seed would only ever explore error paths.
    let parsed = parse_str(
        RICH,
        "rich.toml",
        &EnvOverrides {
            kernel_dir: None,
            home: Some("/h".into()),
        },
    )
    .unwrap();
    assert_eq!(parsed.spec.tunables.len(), 2);
    assert_eq!(parsed.warnings.len(), 1);
}

#[test]
fn every_truncation_of_every_seed_is_handled() {
    for seed in seeds() {
        let text = std::str::from_utf8(seed).expect("seeds are UTF-8");
        for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            check(&text[..end]);
        }
    }
}
