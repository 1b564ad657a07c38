//! Reading real gcc objects: symbols, relocations through section symbols, AT&T rendering and
//! CFGs of kernel-style code.

mod common;

use std::path::Path;

use kernelx_x86::{
    AttFormatter, Cfg, Disassembler, Exit, ObjectFile, ReferentKind, SectionKind, Successor, Target,
};

#[track_caller]
fn compiled(fixture: &str, extra: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/fixtures")
        .join(fixture);
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    let out = common::compile(&source, 16, &extra, dir.path());
    std::fs::read(out).expect("reading the object")
}

#[track_caller]
fn listing(object: &ObjectFile<'_>, name: &str) -> Vec<String> {
    let f = object
        .function(name)
        .unwrap_or_else(|| panic!("no function {name} in {}", object.label()));
    let mut fmt = AttFormatter::new();
    Disassembler::new()
        .decode(f)
        .iter()
        .map(|i| format!("{:#x}: {}", i.offset, fmt.format(object, f, i)))
        .collect()
}

#[test]
fn reads_functions_data_and_sections() {
    let bytes = compiled("data.c", &[]);
    let object = ObjectFile::parse("data.o", &bytes).unwrap();
    let names: Vec<&str> = object.functions().iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        ["get_soft", "set_soft", "buf_end", "count_a", "count_b"]
    );
    let soft = object
        .data_symbols()
        .iter()
        .find(|d| d.name == "soft_limit")
        .expect("soft_limit");
    assert!(!soft.global);
    assert_eq!(soft.bytes, Some(&0x4000u64.to_le_bytes()[..]));
    let buf = object
        .data_symbols()
        .iter()
        .find(|d| d.name == "buf")
        .expect("buf");
    assert_eq!((buf.size, buf.bytes), (128, None));
    assert_eq!(object.section(buf.section).kind, SectionKind::Bss);
    // `banner` points at a string literal: a relocation against .rodata.str1.1.
    let banner = object
        .data_symbols()
        .iter()
        .find(|d| d.name == "banner")
        .expect("banner");
    assert_eq!(banner.relocs.len(), 1);
    let r = object.resolve(banner.relocs[0].target, banner.relocs[0].addend);
    assert_eq!(
        (r.name, r.kind),
        (".rodata.str1.1", ReferentKind::Anonymous)
    );
}

#[test]
fn resolves_local_symbols_behind_section_relocations() {
    let bytes = compiled("data.c", &[]);
    let object = ObjectFile::parse("data.o", &bytes).unwrap();
    // Static variables are referenced as .data+off / .bss+off in the object.
    let get = listing(&object, "get_soft");
    assert!(get.contains(&"0x4: call __fentry__".to_owned()), "{get:#?}");
    assert!(
        get.contains(&"0x9: mov soft_limit(%rip),%rax".to_owned()),
        "{get:#?}"
    );
    let end = listing(&object, "buf_end");
    assert!(
        end.contains(&"0x9: mov $buf+0x80,%rax".to_owned()),
        "{end:#?}"
    );
    let f = object.function("get_soft").unwrap();
    let insns = Disassembler::new().decode(f);
    let load = insns.iter().find(|i| i.offset == 9).unwrap();
    match load.rip_target(&object, f) {
        Some(Target::External(r)) => {
            assert_eq!(
                (r.name, r.offset, r.kind),
                ("soft_limit", 0, ReferentKind::Data)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn builds_cfgs_with_cold_parts_and_thunks() {
    let bytes = compiled("cold.c", &[]);
    let object = ObjectFile::parse("cold.o", &bytes).unwrap();
    let handle = object.function("handle").unwrap();
    let cold = object.function("handle.cold").unwrap();
    assert_eq!(cold.section_name, ".text.unlikely");
    let insns = Disassembler::new().decode(handle);
    let cfg = Cfg::build(&object, handle, &insns);
    let exits: Vec<Exit> = cfg.exits().map(|(_, x)| x).collect();
    // jg handle.cold (the unlikely block), then jmp __x86_return_thunk.
    assert!(
        matches!(exits[..], [Exit::Jump { .. }, Exit::Return]),
        "{exits:?}"
    );
    let Exit::Jump { insn } = exits[0] else {
        unreachable!()
    };
    match insns[insn as usize].branch_target(&object, handle) {
        Some(Target::External(r)) => assert_eq!((r.name, r.offset), ("handle.cold", 0)),
        other => panic!("{other:?}"),
    }
    // The jcc's fall-through continues in the function.
    let jcc_block = cfg.block_of(insn as usize);
    assert!(
        cfg.blocks()[jcc_block as usize]
            .succs
            .iter()
            .any(|s| matches!(s, Successor::FallThrough(_)))
    );
}

#[test]
fn decodes_the_kernel_prologue() {
    let bytes = compiled("imm_loads.c", &[]);
    let object = ObjectFile::parse("imm_loads.o", &bytes).unwrap();
    let lines = listing(&object, "store8");
    assert_eq!(
        lines,
        [
            "0x0: endbr64",
            "0x4: call __fentry__",
            "0x9: movb $0x11,g8(%rip)",
            "0x10: jmp __x86_return_thunk",
        ]
    );
}
