//! `testdata/example.plan.json` (described in `testdata/README.md`) reads and writes back byte
//! for byte, and means what the spec's worked example says.
//!
//! After an intended format change, rewrite it with `KERNELX_BLESS=1 cargo test -p
//! kernelx-plan --test golden` and review the diff.

use std::path::Path;

use kernelx_plan::{
    CompareOp, Gpr, Input, Place, Plan, RegOperand, Relation, SynthesisKind, UncoveredKind, Update,
    Width,
};

const EXAMPLE: &str = "testdata/example.plan.json";

#[test]
fn example_round_trips_byte_for_byte() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE);
    let text = std::fs::read_to_string(&path).unwrap();
    let plan = Plan::from_json(&text).unwrap();
    let again = plan.to_json().unwrap();
    if std::env::var_os("KERNELX_BLESS").is_some() {
        plan.write(&path).unwrap();
        return;
    }
    assert!(
        again == text,
        "{EXAMPLE} changes when read and written again (rerun with KERNELX_BLESS=1 to accept):\n{again}"
    );
}

#[test]
fn example_is_the_pipe_def_buffers_worked_example() {
    let plan = Plan::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE)).unwrap();
    assert_eq!(plan.kernel.release, "6.12.117+deb12-cloud-amd64");
    assert_eq!(
        plan.kernel
            .build_id
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("7f76f39faf07f34cfa9fadd801e131bfa8cb6dc3")
    );
    let pipe = plan.tunable("PIPE_DEF_BUFFERS").unwrap();
    assert_eq!((pipe.default, pipe.source.values()), (16, [16, 32, 64]));
    let sites: Vec<(&str, u32, &str, String)> = pipe
        .sites
        .iter()
        .map(|s| {
            (
                s.function.as_str(),
                s.offset,
                s.asm.as_str(),
                s.recipe.relation.to_string(),
            )
        })
        .collect();
    assert_eq!(
        sites,
        [
            (
                "alloc_pipe_info",
                0x6b,
                "cmp $0xffff,%ebp",
                "IV = 4096*V - 1".to_owned()
            ),
            (
                "alloc_pipe_info",
                0x77,
                "mov $0x10,%eax",
                "IV = 1*V".to_owned()
            ),
            (
                "alloc_pipe_info",
                0x7c,
                "mov $0x10,%ebp",
                "IV = 1*V".to_owned()
            ),
        ]
    );

    // The cmp: flags of `cmp $IV',%ebp` for the `jbe` after it.
    let cmp = &pipe.sites[0];
    assert_eq!(cmp.recipe.kind, SynthesisKind::Compare);
    let ebp = Place::Reg {
        reg: RegOperand::new(Gpr::Rbp, Width::W32),
    };
    assert!(matches!(
        cmp.recipe.update,
        Update::Compare { op: CompareOp::Cmp, width: Width::W32, input: Input::Read { place }, .. }
            if place == ebp
    ));
    assert_eq!(cmp.recipe.consumers.to_string(), "CF|ZF");
    assert_eq!(cmp.recipe.iv(32).unwrap(), 0x1ffff);
    assert!(cmp.matches(&[0x81, 0xfd, 0xff, 0xff, 0x00, 0x00, 0x0f]));
    assert!(!cmp.matches(&[0x81, 0xfd, 0xff, 0xff, 0x01, 0x00]));
    assert_eq!(cmp.recipe.relation, Relation::Affine { a: 4096, b: -1 });

    // The movs: load IV' = V' into %eax, %ebp; the second one's post-probe is at a join.
    for (site, gpr) in [(&pipe.sites[1], Gpr::Rax), (&pipe.sites[2], Gpr::Rbp)] {
        assert_eq!(
            site.recipe.update,
            Update::Load {
                dest: Place::Reg {
                    reg: RegOperand::new(gpr, Width::W32)
                }
            }
        );
        assert_eq!(site.recipe.iv(32).unwrap(), 0x20);
    }
    assert_eq!(
        (pipe.sites[2].probes.pre, pipe.sites[2].probes.post),
        (Some(0x77), 0x81)
    );
    assert!(pipe.sites[2].probes.jump_optimizable);

    // V' must keep 4096*V' - 1 a 32-bit unsigned value.
    assert_eq!((pipe.range.min, pipe.range.max), (1, 1 << 20));
    assert!(pipe.check(32).is_ok());
    let err = pipe.check(0).unwrap_err();
    assert_eq!(err.site.as_deref(), Some("fs/pipe.c:alloc_pipe_info+0x6b"));

    // Every span holds the sites that refer to it.
    for site in &pipe.sites {
        let span = pipe.safe_span(&site.safe_span).unwrap();
        assert!(span.contains(site.offset), "{}", site.id);
    }

    // pipe_user_pages_soft = PIPE_DEF_BUFFERS * INR_OPEN_CUR is data, reported, not tuned.
    let data = &pipe.uncovered[..];
    assert_eq!(data.len(), 1);
    assert_eq!(
        (
            data[0].kind,
            data[0].symbol.as_str(),
            data[0].section.as_str()
        ),
        (UncoveredKind::DataValue, "pipe_user_pages_soft", ".data")
    );
    assert_eq!(data[0].values, Some(vec![16 * 1024, 32 * 1024, 64 * 1024]));
}
