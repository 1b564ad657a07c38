//! Safe Spans on C fixtures compiled at test time (`testdata/spans/`), and on the lab tree's
//! `alloc_pipe_info` (`KERNELX_LAB_TREE=<tree> cargo test -p kernelx-x86 --test slice --
//! --ignored`).

mod common;

use kernelx_x86::{
    ExitKind, ExtensionReason, ObjectFile, SliceOptions, slice_span, slice_span_with_arity,
};

use common::lab::{VALUES, build_pipe_objects, lab_tree};
use common::spans::{Lines, check, with_code};

#[test]
fn spans_fixture_slices() {
    check("spans.c", Lines::Span);
}

#[test]
fn tables_fixture_slices() {
    check("tables.c", Lines::Span);
}

/// The Safe Spans of `alloc_pipe_info`'s three seeds in the lab tree's fs/pipe.o
/// (`PIPE_DEF_BUFFERS` 16). Read from the disassembly: the cmp's flags decide the `jbe` at
/// +0x71, whose paths join at +0x81 with `pipe_bufs` in %rax/%rbp; the movs' values go to
/// `user->pipe_bufs` (`lock xadd` at +0x84) and into the pipe (`mov %ebp,0x60(%rbx)`), heap
/// memory: every span is extended to every exit reachable from there.
#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_alloc_pipe_info_spans() {
    let tree = lab_tree();
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let objects = build_pipe_objects(&tree, &VALUES, dir.path());
    let parsed: Vec<ObjectFile<'_>> = objects
        .iter()
        .zip(VALUES)
        .map(|(b, v)| ObjectFile::parse(format!("fs/pipe.o [{v}]"), b).unwrap())
        .collect();
    // The callees' register arguments, from their prototypes in the lab tree's headers (the
    // analysis gets them from BTF).
    let arity = |callee: &str| match callee {
        "capable" | "kfree" | "free_uid" => Some(1),
        "__kmalloc_noprof" | "refcount_warn_saturate" => Some(2),
        "__kmalloc_cache_noprof" | "__init_waitqueue_head" | "__mutex_init" => Some(3),
        _ => None,
    };
    with_code(&parsed[0], "alloc_pipe_info", |code, _| {
        let mut report = String::new();
        for cs in [0x6b..0x71, 0x77..0x81] {
            let s =
                slice_span_with_arity(code, cs.clone(), SliceOptions::default(), &arity).unwrap();
            report.push_str(&format!("{cs:#x?}: {s}\n"));
            assert!(s.contains(0x81), "{report}");
            assert!(
                s.conservative
                    .iter()
                    .any(|e| e.at == 0x84 && matches!(e.reason, ExtensionReason::Stored { .. })),
                "{report}"
            );
            // Every return of the function is reachable from the lock xadd.
            let returns: Vec<u32> = s
                .exits
                .iter()
                .filter(|(_, k)| *k == ExitKind::Return)
                .map(|(at, _)| *at)
                .collect();
            assert_eq!(returns, [0x15d], "{report}");
        }
        let data = slice_span(
            code,
            0x6b..0x71,
            SliceOptions {
                control_dependence: false,
                ..SliceOptions::default()
            },
        )
        .unwrap();
        report.push_str(&format!("data only, cmp: {data}\n"));
        assert_eq!(data.ranges, vec![0x6b..0x77], "{report}");
        eprintln!("{report}");
    });
}
