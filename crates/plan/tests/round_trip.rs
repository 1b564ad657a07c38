//! Write → read → equal, for a plan that uses every kind of field: both source forms, every
//! update, input and place, both restrictions, every exit kind, optional fields present and
//! absent.

use kernelx_plan::{
    Address, BoundReason, CodeRange, CombineOp, CompareOp, CriticalSpan, ExitKind, FlagSet, Gpr,
    Input, IvDomain, KernelIdentity, LineRange, MagicForm, MagicMismatch, MagicPart,
    ModuleIdentity, Place, Plan, PlanError, ProbePlacement, Recipe, RegOperand, Relation,
    Restriction, SafeSpan, Segment, Site, SpanExit, SpanOrigin, SynthesisKind, TunablePlan,
    TunableRange, TunableSource, UncoveredEffect, UncoveredKind, UndoOp, Update, ValueRange, Width,
};

fn range(min: i64, max: i64, restriction: Option<Restriction>) -> ValueRange {
    ValueRange {
        min,
        max,
        min_reason: BoundReason::IvOverflow {
            width: Width::W32,
            domain: IvDomain::Signed,
        },
        max_reason: BoundReason::ImmediateField { bits: 8 },
        restriction,
    }
}

fn recipe(kind: SynthesisKind, update: Update, save: Option<Place>, r: ValueRange) -> Recipe {
    Recipe {
        kind,
        span: CriticalSpan {
            start: 0x10,
            end: 0x18,
        },
        relation: Relation::Affine { a: 8, b: -1 },
        iv_width: Width::W32,
        save,
        update,
        consumers: FlagSet::of(&[kernelx_plan::Flag::Cf, kernelx_plan::Flag::Zf]),
        range: r,
    }
}

fn site(id: &str, recipe: Recipe, pre: Option<u32>, span: &str) -> Site {
    Site {
        id: id.to_owned(),
        unit: "fs/pipe.c".to_owned(),
        function: "f.isra.0".to_owned(),
        section: ".text.unlikely".to_owned(),
        offset: 0x10,
        len: 7,
        bytes: "488b0500000000".parse().unwrap(),
        mask: "ffffff00000000".parse().unwrap(),
        asm: "mov 0x0(%rip),%rax".to_owned(),
        recipe,
        probes: ProbePlacement {
            pre,
            post: 0x18,
            alternatives: vec![0x1c, 0x20],
            jump_optimizable: pre.is_none(),
            reason: "why".to_owned(),
        },
        safe_span: span.to_owned(),
    }
}

/// A plan with every variant of every enum somewhere in it.
fn everything() -> Plan {
    let eax = RegOperand::new(Gpr::Rax, Width::W32);
    let ah = RegOperand {
        high8: true,
        ..RegOperand::new(Gpr::Rax, Width::W8)
    };
    let percpu = Address {
        segment: Some(Segment::Gs),
        base: Some(Gpr::Rbx),
        index: Some(Gpr::R13),
        scale: 8,
        disp: -0x40,
        rip_relative: false,
    };
    let rip = Address {
        segment: None,
        base: None,
        index: None,
        scale: 1,
        disp: 0x1234,
        rip_relative: true,
    };
    let reg = Place::Reg { reg: eax };
    let mem = Place::Mem {
        addr: percpu,
        width: Width::W16,
    };
    let magic = Restriction::UnsignedMagic {
        width: Width::W32,
        form: MagicForm::ImulRegister,
    };
    let sites = vec![
        site(
            "load",
            recipe(
                SynthesisKind::ImmediateLoad,
                Update::Load {
                    dest: Place::Mem {
                        addr: rip,
                        width: Width::W64,
                    },
                },
                None,
                range(-5, 100, None),
            ),
            None,
            "span-a",
        ),
        site(
            "combine",
            recipe(
                SynthesisKind::Combine,
                Update::Combine {
                    op: CombineOp::Imul,
                    dest: Place::Reg { reg: ah },
                    input: Input::Undo {
                        place: mem,
                        op: UndoOp::Mul,
                        operand: 0xaaaa_aaab,
                    },
                    flags: FlagSet::ARITHMETIC,
                },
                Some(mem),
                range(0, 50, Some(Restriction::PowerOfTwo)),
            ),
            Some(0x10),
            "span-a",
        ),
        site(
            "compare",
            recipe(
                SynthesisKind::Compare,
                Update::Compare {
                    op: CompareOp::Test,
                    width: Width::W8,
                    input: Input::Address {
                        base: Some(Gpr::Rdi),
                        index: None,
                        scale: 1,
                    },
                    flags: FlagSet::EMPTY,
                },
                None,
                range(1, 60, None),
            ),
            None,
            "span-b",
        ),
        site(
            "divide",
            Recipe {
                relation: Relation::UnsignedDivision {
                    width: Width::W32,
                    part: MagicPart::Multiplier,
                },
                ..recipe(
                    SynthesisKind::Folded,
                    Update::Divide {
                        width: Width::W32,
                        form: MagicForm::ImulImmediateAdd { into_high: true },
                        dividend: Input::Saved,
                        fixup: Some(Input::Read { place: reg }),
                        dest: Gpr::R15,
                        temp: Some(Gpr::Rax),
                        flags: FlagSet::of(&[kernelx_plan::Flag::Of]),
                    },
                    Some(reg),
                    ValueRange {
                        restriction: Some(magic),
                        min_reason: BoundReason::MagicShape {
                            mismatch: MagicMismatch::AddFixup,
                        },
                        max_reason: BoundReason::ShiftCount { width: Width::W64 },
                        ..range(3, 40, None)
                    },
                )
            },
            Some(0x10),
            "span-b",
        ),
        site(
            "read",
            Recipe {
                relation: Relation::Exp2 { k: -4096, b: 0 },
                ..recipe(
                    SynthesisKind::Combine,
                    Update::Combine {
                        op: CombineOp::Lea,
                        dest: reg,
                        input: Input::Read { place: reg },
                        flags: FlagSet::EMPTY,
                    },
                    None,
                    range(2, 30, None),
                )
            },
            None,
            "span-b",
        ),
    ];
    let mut range = TunableRange::of_sites(&sites);
    // Narrower than the sites is allowed.
    range.max = 20;
    let pattern = TunablePlan {
        name: "pattern".to_owned(),
        description: String::new(),
        source: TunableSource::Pattern {
            file: "net/ipv4/tcp_cubic.c".to_owned(),
            original: "ca->delay_min >> 3".to_owned(),
            modified: [
                "ca->delay_min >> 4".to_owned(),
                "ca->delay_min >> 2".to_owned(),
            ],
            values: [3, 4, 2],
            lines: Some(vec![LineRange {
                first: 10,
                last: 12,
            }]),
        },
        default: 3,
        range,
        sites,
        safe_spans: vec![
            SafeSpan {
                id: "span-a".to_owned(),
                function: "f.isra.0".to_owned(),
                ranges: vec![
                    CodeRange { start: 0, end: 8 },
                    CodeRange {
                        start: 0x10,
                        end: 0x40,
                    },
                ],
                exits: [
                    ExitKind::Return,
                    ExitKind::TailCall,
                    ExitKind::Cold,
                    ExitKind::IndirectJump,
                    ExitKind::Trap,
                    ExitKind::FallsOffEnd,
                ]
                .into_iter()
                .enumerate()
                .map(|(i, kind)| SpanExit {
                    offset: 0x20 + i as u32,
                    kind,
                    target: matches!(kind, ExitKind::TailCall | ExitKind::Cold)
                        .then(|| "f.cold".to_owned()),
                })
                .collect(),
                origin: SpanOrigin::Derived,
                conservative: vec!["+0x22: stored off the stack".to_owned()],
            },
            SafeSpan {
                id: "span-b".to_owned(),
                function: "g".to_owned(),
                ranges: vec![CodeRange { start: 4, end: 9 }],
                exits: vec![],
                origin: SpanOrigin::Spec,
                conservative: vec![],
            },
        ],
        uncovered: UncoveredKind::ALL
            .into_iter()
            .enumerate()
            .map(|(i, kind)| UncoveredEffect {
                kind,
                unit: "fs/pipe.c".to_owned(),
                symbol: format!("sym{i}"),
                section: ".data".to_owned(),
                offset: (i % 2 == 0).then_some(i as u32),
                builds: vec![1, 2],
                detail: "what differs".to_owned(),
                values: (i % 3 == 0).then(|| vec![1, 2, u64::MAX]),
            })
            .collect(),
        warnings: vec!["one".to_owned(), "two".to_owned()],
    };
    let empty = TunablePlan {
        name: "macro".to_owned(),
        description: "no sites".to_owned(),
        source: TunableSource::Macro {
            macro_name: "MAX_SOFTIRQ_RESTART".to_owned(),
            file: "kernel/softirq.c".to_owned(),
            values: [10, 20, 5],
        },
        default: 10,
        range: TunableRange::unbounded(),
        sites: vec![],
        safe_spans: vec![],
        uncovered: vec![],
        warnings: vec![],
    };
    Plan::new(
        KernelIdentity {
            release: "6.12.117+deb12-cloud-amd64".to_owned(),
            build_id: None,
            module: None,
        },
        vec![pattern, empty],
    )
}

#[test]
fn write_then_read_gives_the_same_plan() {
    let plan = everything();
    plan.validate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.plan.json");
    plan.write(&path).unwrap();
    assert_eq!(Plan::read(&path).unwrap(), plan);

    // Overwriting keeps no temporary file behind.
    let mut other = plan.clone();
    other.kernel.build_id = Some("7f76f39f".parse().unwrap());
    other.write(&path).unwrap();
    assert_eq!(Plan::read(&path).unwrap(), other);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["all.plan.json"]);
}

#[test]
fn every_variant_survives_json() {
    let plan = everything();
    let text = plan.to_json().unwrap();
    assert_eq!(Plan::from_json(&text).unwrap(), plan);
    for needle in [
        "\"form\": \"pattern\"",
        "\"form\": \"macro\"",
        "\"high8\": true",
        "\"segment\": \"gs\"",
        "\"rip_relative\": true",
        "\"input\": \"undo\"",
        "\"input\": \"saved\"",
        "\"input\": \"address\"",
        "\"update\": \"divide\"",
        "\"shape\": \"imul_immediate_add\"",
        "\"fixup\": {",
        "\"only\": \"power_of_two\"",
        "\"only\": \"unsigned_magic\"",
        "\"kind\": \"cold\"",
        "\"origin\": \"spec\"",
        "\"kind\": \"unattributed_code\"",
        "\"kind\": \"excluded_unit\"",
        "\"build_id\": null",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

/// An excluded unit is one effect about the whole unit: no symbol, section or offset, and it
/// reads back as it was written.
#[test]
fn an_excluded_unit_survives_json() {
    let mut plan = everything();
    let excluded = UncoveredEffect {
        kind: UncoveredKind::ExcludedUnit,
        unit: "kernel/trace/trace.c".to_owned(),
        symbol: String::new(),
        section: String::new(),
        offset: None,
        builds: vec![1, 2],
        detail: "keeps the compiled value 16".to_owned(),
        values: None,
    };
    plan.tunables[0].uncovered = vec![excluded.clone()];
    let text = plan.to_json().unwrap();
    assert!(
        text.contains("\"kind\": \"excluded_unit\",\n") && text.contains("\"symbol\": \"\""),
        "{text}"
    );
    let back = Plan::from_json(&text).unwrap();
    assert_eq!(back.tunables[0].uncovered, [excluded]);
    assert_eq!(UncoveredKind::ExcludedUnit.to_string(), "excluded_unit");
}

#[test]
fn writing_an_invalid_plan_fails_and_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    let plan = everything();
    plan.write(&path).unwrap();
    let mut bad = plan.clone();
    bad.tunables[0].sites[0].safe_span = "nowhere".to_owned();
    let err = bad.write(&path).unwrap_err();
    assert!(
        matches!(&err, PlanError::UnknownSpan { site, span, .. } if site == "load" && span == "nowhere"),
        "{err}"
    );
    assert_eq!(Plan::read(&path).unwrap(), plan);
}

#[test]
fn rejects_inconsistent_plans() {
    let check = |edit: &dyn Fn(&mut Plan), want: &str| {
        let mut plan = everything();
        edit(&mut plan);
        let text = serde_json::to_string(&plan).unwrap();
        let err = Plan::from_json(&text).unwrap_err().to_string();
        assert!(err.contains(want), "`{err}` does not contain `{want}`");
    };
    check(
        &|p| p.tunables[1].name = "pattern".to_owned(),
        "two tunables named `pattern`",
    );
    check(
        &|p| p.tunables[0].sites[1].id = "load".to_owned(),
        "id `load` is used twice",
    );
    check(
        &|p| p.tunables[0].safe_spans[1].id = "span-a".to_owned(),
        "id `span-a` is used twice",
    );
    check(
        &|p| p.tunables[0].sites[2].len = 6,
        "is 6 bytes long but has 7",
    );
    check(&|p| p.tunables[0].default = 4, "default 4 is not V1 = 3");
    check(
        &|p| p.tunables[0].range.max = 1000,
        "admits values that site `load` rejects",
    );
    check(
        &|p| p.tunables[0].range.restrictions.clear(),
        "admits values that site `combine` rejects",
    );
}

#[test]
fn checks_values_against_sites() {
    let plan = everything();
    let t = &plan.tunables[0];
    // Sites: [-5,100], [0,50] powers of two, [1,60], [3,40] magic (imul reg), [2,30];
    // tunable narrowed to max 20.
    assert_eq!((t.range.min, t.range.max), (3, 20));
    assert_eq!(t.range.min_reason.site.as_deref(), Some("divide"));
    let err = t.check(2).unwrap_err();
    assert_eq!(err.site.as_deref(), Some("divide"));
    assert!(err.to_string().contains("of site divide"), "{err}");
    let err = t.check(6).unwrap_err();
    assert_eq!(
        (err.site.as_deref(), err.reason),
        (Some("combine"), BoundReason::NotPowerOfTwo)
    );
    // 16 is a power of two, but `x / 16` is a shift, not a magic multiply.
    let err = t.check(16).unwrap_err();
    assert_eq!(err.site.as_deref(), Some("divide"));
    assert!(t.check(21).is_err());
    assert!(plan.tunables[1].check(i64::MIN).is_ok());
}

/// A module plan names its module and the `.ko`'s build-id, and reads back equal; a vmlinux
/// plan has no `module` key at all.
#[test]
fn a_module_identity_round_trips() {
    let mut plan = everything();
    let vmlinux_json = plan.to_json().unwrap();
    assert!(!vmlinux_json.contains("\"module\""), "{vmlinux_json}");

    plan.kernel.module = Some(ModuleIdentity {
        name: "kx_target".to_owned(),
        build_id: Some("2b0c5e1f".parse().unwrap()),
    });
    let json = plan.to_json().unwrap();
    assert!(
        json.contains(
            "\"module\": {\n      \"name\": \"kx_target\",\n      \"build_id\": \"2b0c5e1f\"\n    }"
        ),
        "{json}"
    );
    assert_eq!(Plan::from_json(&json).unwrap(), plan);

    plan.kernel.module.as_mut().unwrap().build_id = None;
    let json = plan.to_json().unwrap();
    assert!(json.contains("\"build_id\": null\n    }"), "{json}");
    assert_eq!(Plan::from_json(&json).unwrap(), plan);
}
