//! What this crate produces, as the plan (`kernelx-plan`) holds it.
//!
//! * The recipes of the plan crate's golden example (`crates/plan/testdata/example.plan.json`,
//!   PIPE_DEF_BUFFERS in `alloc_pipe_info`) are exactly what synthesis gives for those
//!   instructions, decoded at their function offsets.

use iced_x86::{Decoder, DecoderOptions, Instruction};
use kernelx_plan::Plan;
use kernelx_x86::symex::{SeedContext, SeedVersion, synthesize};

const EXAMPLE: &str = "../plan/testdata/example.plan.json";

fn decode(ip: u64, bytes: &[u8]) -> Vec<Instruction> {
    Decoder::with_ip(64, bytes, ip, DecoderOptions::NONE)
        .into_iter()
        .collect()
}

#[test]
fn synthesis_gives_the_example_plans_recipes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(EXAMPLE);
    let plan = Plan::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let pipe = plan.tunable("PIPE_DEF_BUFFERS").unwrap();
    let values = pipe.source.values();
    // fs/pipe.o of the lab tree built with 16, 32 and 64 (objdump): the seed's block.
    let cmp = |iv_hi: u8| {
        [
            0x81, 0xfd, 0xff, 0xff, iv_hi, 0x00, 0x0f, 0x86, 0x2f, 0x01, 0x00, 0x00,
        ]
    };
    let movs = |v: u8| [0xb8, v, 0x00, 0x00, 0x00, 0xbd, v, 0x00, 0x00, 0x00];
    let cases: [(u64, [Vec<u8>; 3], usize); 3] = [
        (0x6b, [cmp(0).to_vec(), cmp(1).to_vec(), cmp(3).to_vec()], 0),
        (
            0x77,
            [movs(16).to_vec(), movs(32).to_vec(), movs(64).to_vec()],
            0,
        ),
        (
            0x77,
            [movs(16).to_vec(), movs(32).to_vec(), movs(64).to_vec()],
            1,
        ),
    ];
    assert_eq!(pipe.sites.len(), cases.len());
    for (site, (ip, bytes, seed)) in pipe.sites.iter().zip(cases) {
        let blocks = bytes.map(|b| decode(ip, &b));
        assert_eq!(blocks[0][seed].ip(), u64::from(site.offset), "{}", site.id);
        let ctx = SeedContext {
            versions: [0, 1, 2].map(|k| SeedVersion {
                value: values[k],
                block: &blocks[k],
                seed,
            }),
        };
        let recipe = synthesize(&ctx).unwrap_or_else(|e| panic!("{}: {e}", site.id));
        assert_eq!(recipe, site.recipe, "{}", site.id);
    }
}
