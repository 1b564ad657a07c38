//! Probe placement on C fixtures compiled at test time (`testdata/spans/`), and on the lab
//! tree's `alloc_pipe_info` (`KERNELX_LAB_TREE=<tree> cargo test -p kernelx-x86 --test
//! placement -- --ignored`).

mod common;

use std::path::Path;

use kernelx_x86::{
    Disassembler, JoinFrom, Locations, ObjectFile, ProbeBlocker, ProbeKind, ScanStop, diff_objects,
    place_post_probe,
};

use common::lab::{VALUES, build_pipe_objects, lab_tree};
use common::spans::{Lines, check, with_code};

#[test]
fn spans_fixture_placements() {
    check("spans.c", Lines::Placement);
}

#[test]
fn tables_fixture_placements() {
    check("tables.c", Lines::Placement);
}

/// Every fixture has a test in this file (and so in `tests/slice.rs`); none is skipped.
#[test]
fn every_spans_fixture_is_checked() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/spans");
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".c"))
        .collect();
    found.sort();
    assert_eq!(
        found,
        ["spans.c", "tables.c"],
        "add a #[test] for each fixture in {}",
        dir.display()
    );
}

/// `alloc_pipe_info` of the lab tree's fs/pipe.o (`PIPE_DEF_BUFFERS` 16): the lab notes saw a
/// probe at +0x81 (`mov %rax,%rdx`, after the two `mov $0x10`) jump-optimized in the running
/// kernel; the rules must agree. The `cmp $0xffff,%ebp` at +0x6b is consumed by the `jbe` at
/// +0x71, its only candidate, which no kernel optimizes.
#[test]
#[ignore = "needs the prepared lab tree (cargo xtask lab setup)"]
fn lab_tree_alloc_pipe_info_placement() {
    let tree = lab_tree();
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let objects = build_pipe_objects(&tree, &VALUES, dir.path());
    let parsed: Vec<ObjectFile<'_>> = objects
        .iter()
        .zip(VALUES)
        .map(|(b, v)| ObjectFile::parse(format!("fs/pipe.o [{v}]"), b).unwrap())
        .collect();
    let diff = diff_objects([&parsed[0], &parsed[1], &parsed[2]], VALUES).unwrap();
    let seeds: Vec<(u32, u32)> = diff
        .seeds
        .iter()
        .filter(|s| s.function == "alloc_pipe_info")
        .map(|s| (s.offset, s.offset + u32::from(s.len)))
        .collect();
    assert_eq!(seeds, [(0x6b, 0x71), (0x77, 0x7c), (0x7c, 0x81)]);

    with_code(&parsed[0], "alloc_pipe_info", |code, sites| {
        let mut dis = Disassembler::new();
        let mut recipe = |start: u32| {
            let du = dis.def_use(&code.insns[code.index_at(start).unwrap()].instruction);
            (Locations::written_by(&du), Locations::read_by(&du))
        };
        let mut report = String::new();

        // +0x81: what the lab notes measured.
        let at_81 = sites.check(0x81, &[]).unwrap();
        report.push_str(&format!("check {at_81}\n"));
        assert_eq!(at_81.kind, ProbeKind::JumpOptimized, "{at_81}");
        // mov %rax,%rdx (3) + lock xadd %rdx,0x38(%r12) (7)
        assert_eq!(at_81.region, Some(0x81..0x8b));

        // The cmp: its flags are read by the jbe right after it.
        let (writes, reads) = recipe(0x6b);
        let cmp = place_post_probe(sites, 0x71, &writes, &reads, &[]).unwrap();
        report.push_str(&format!("cmp {cmp}\n"));
        assert_eq!(cmp.stop, ScanStop::Consumer { at: 0x71 }, "{report}");
        assert_eq!(cmp.candidates.len(), 1, "{report}");
        let jbe = &cmp.candidates[0];
        assert_eq!((jbe.offset, jbe.kind), (0x71, ProbeKind::Int3), "{report}");
        assert!(
            matches!(&jbe.blockers[..], [ProbeBlocker::NotBoostable { at: 0x71, insn }] if insn == "jbe"),
            "{report}"
        );

        // Both movs as one span: its post-probe is +0x81, where the max_size path joins.
        let (mut writes, _) = recipe(0x77);
        writes.regs.push(iced_x86::Register::RBP);
        let movs = place_post_probe(sites, 0x81, &writes, &Locations::none(), &[]).unwrap();
        report.push_str(&format!("movs {movs}\n"));
        assert_eq!(movs.offset(), Some(0x81), "{report}");
        assert_eq!(
            movs.chosen().unwrap().kind,
            ProbeKind::JumpOptimized,
            "{report}"
        );
        assert_eq!(movs.stop, ScanStop::Consumer { at: 0x81 }, "{report}");
        assert!(
            matches!(&movs.also_reached_from[..], [JoinFrom::Local { .. }]),
            "{report}"
        );

        // The first mov alone: its post-probe +0x7c sits 5 bytes before that join, and
        // insn_jump_into_range's bound is inclusive, so the jump to +0x81 keeps it INT3.
        let (writes, reads) = recipe(0x77);
        let first = place_post_probe(sites, 0x7c, &writes, &reads, &[]).unwrap();
        report.push_str(&format!("first mov {first}\n"));
        assert_eq!(first.stop, ScanStop::BranchTarget { at: 0x81 }, "{report}");
        assert!(
            matches!(
                &first.candidates[0].blockers[..],
                [ProbeBlocker::JumpIntoRegion { target: 0x81, .. }]
            ),
            "{report}"
        );
        // The second mov alone: nothing reads %rbp until the block ends.
        let (writes, reads) = recipe(0x7c);
        let second = place_post_probe(sites, 0x81, &writes, &reads, &[]).unwrap();
        report.push_str(&format!("second mov {second}\n"));
        assert_eq!(second.offset(), Some(0x81), "{report}");
        eprintln!("{report}");
    });
}
