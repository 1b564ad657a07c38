//! Golden test on the real kernel: `PIPE_DEF_BUFFERS` in fs/pipe.c of the prepared Debian 6.12
//! lab tree (`cargo xtask lab setup`), rebuilt with 16, 32 and 64.
//!
//! Run with `KERNELX_LAB_TREE=<tree> cargo test -p kernelx-x86 --test lab_tree -- --ignored`.
//! The objects are built as `common::lab` describes; the tree is only read.

mod common;

use kernelx_x86::{ChangedField, ObjectFile, UncoveredKind, diff_objects};

use common::lab::{VALUES, shell_words};

#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_pipe_def_buffers() {
    let tree = common::lab::lab_tree();
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let objects = common::lab::build_pipe_objects(&tree, &VALUES, dir.path());
    let parsed: Vec<ObjectFile<'_>> = objects
        .iter()
        .zip(VALUES)
        .map(|(b, v)| ObjectFile::parse(format!("fs/pipe.o [{v}]"), b).unwrap())
        .collect();
    let diff = diff_objects([&parsed[0], &parsed[1], &parsed[2]], VALUES).unwrap();
    let report = serde_json::to_string_pretty(&diff).unwrap();

    // Measured on the lab tree: fs/pipe.o has 41 functions, as in the shipped vmlinux.
    assert_eq!(diff.stats.functions, 41, "{report}");
    let seeds: Vec<(&str, u32, &str, &ChangedField, &[u64])> = diff
        .seeds
        .iter()
        .flat_map(|s| {
            s.changes.iter().map(move |c| {
                (
                    s.function.as_str(),
                    s.offset,
                    s.asm.as_str(),
                    &c.field,
                    c.values.as_slice(),
                )
            })
        })
        .collect();
    let imm = &ChangedField::Immediate;
    assert_eq!(
        seeds,
        [
            (
                "alloc_pipe_info",
                0x6b,
                "cmp $0xffff,%ebp",
                imm,
                &[0xffff, 0x1ffff, 0x3ffff][..]
            ),
            (
                "alloc_pipe_info",
                0x77,
                "mov $0x10,%eax",
                imm,
                &[0x10, 0x20, 0x40][..]
            ),
            (
                "alloc_pipe_info",
                0x7c,
                "mov $0x10,%ebp",
                imm,
                &[0x10, 0x20, 0x40][..]
            ),
        ],
        "{report}"
    );
    assert_eq!(diff.uncovered.len(), 1, "{report}");
    let data = &diff.uncovered[0];
    assert_eq!(
        (data.kind, data.symbol.as_str(), data.section.as_str()),
        (UncoveredKind::DataValue, "pipe_user_pages_soft", ".data"),
        "{report}"
    );
    // PIPE_DEF_BUFFERS * INR_OPEN_CUR (1024)
    assert_eq!(data.values, Some(vec![0x4000, 0x8000, 0x10000]), "{report}");
    assert!(diff.unmatched.is_empty(), "{report}");
}

#[test]
fn splits_saved_commands() {
    assert_eq!(
        shell_words(" gcc -DKBUILD_MODFILE='\"scripts/mod/empty\"'  -c x.c "),
        ["gcc", "-DKBUILD_MODFILE=\"scripts/mod/empty\"", "-c", "x.c"]
    );
}
