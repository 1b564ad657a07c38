//! Synthesis on real compiler output: `testdata/symex/gcc-vectors.txt` holds, per line, one
//! function of `gcc-vectors.c` compiled by gcc-12 with the kernel's code generation flags for
//! three values of V, and the expected synthesis kind and relation (or the expected error).
//! The seed is the first instruction that differs between the V1 and V2 builds, as the
//! per-function diff would report it. Regenerate the file with `gen-gcc-vectors.py`.
//!
//! The recipes synthesized for the supported lines are also golden data:
//! `testdata/symex/gcc-vectors.recipes.json` pins the serialized format the runtime reads.
//! After an intended format change, rewrite it with `KERNELX_BLESS=1 cargo test -p
//! kernelx-x86 --test symex_vectors` and review the diff.

use iced_x86::{Decoder, DecoderOptions, Instruction};
use kernelx_x86::symex::{SeedContext, SeedVersion, derive_relation, synthesize};

const FILE: &str = "testdata/symex/gcc-vectors.txt";
const GOLDEN: &str = "testdata/symex/gcc-vectors.recipes.json";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex byte"))
        .collect()
}

#[test]
fn gcc_vectors() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FILE);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut ok, mut rejected) = (0, 0);
    let mut golden: Vec<serde_json::Value> = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
    {
        let at = format!("{FILE}:{}", n + 1);
        let fields: Vec<&str> = line.split(" | ").collect();
        assert_eq!(fields.len(), 6, "{at}: expected 6 fields");
        let values: Vec<i64> = fields[1]
            .split(',')
            .map(|v| v.parse().expect("value"))
            .collect();
        let blocks: Vec<Vec<Instruction>> = fields[2..5]
            .iter()
            .map(|h| {
                Decoder::with_ip(64, &hex(h), 0, DecoderOptions::NONE)
                    .into_iter()
                    .collect()
            })
            .collect();
        let seed = (0..blocks[0].len())
            .find(|&i| blocks[1].get(i) != Some(&blocks[0][i]))
            .unwrap_or_else(|| panic!("{at}: V1 and V2 are identical"));
        let ctx = SeedContext {
            versions: [0, 1, 2].map(|k| SeedVersion {
                value: values[k],
                block: &blocks[k],
                seed,
            }),
        };
        let expect = fields[5];
        match (synthesize(&ctx), expect.strip_prefix("error: ")) {
            (Ok(recipe), None) => {
                let kind = serde_json::to_value(recipe.kind).unwrap();
                let got = format!("{} {}", kind.as_str().unwrap(), recipe.relation);
                assert_eq!(got, expect, "{at}: {}", fields[0]);
                for v in &values {
                    assert!(
                        recipe.valid_range().contains(*v),
                        "{at}: V={v} outside {}",
                        recipe.range
                    );
                }
                derive_relation(&ctx.versions)
                    .unwrap_or_else(|e| panic!("{at}: derive_relation: {e}"));
                let back: kernelx_x86::symex::Recipe =
                    serde_json::from_value(serde_json::to_value(&recipe).unwrap()).unwrap();
                assert_eq!(back, recipe, "{at}: serde round trip");
                golden.push(serde_json::json!({
                    "function": fields[0], "values": values, "recipe": recipe
                }));
                ok += 1;
            }
            (Err(e), Some(wanted)) => {
                assert!(
                    e.to_string().contains(wanted),
                    "{at}: error `{e}` does not contain `{wanted}`"
                );
                // The error names the seed instruction in AT&T syntax.
                assert!(
                    e.to_string().contains('`'),
                    "{at}: error `{e}` does not quote an instruction"
                );
                rejected += 1;
            }
            (Ok(recipe), Some(_)) => panic!("{at}: expected an error, synthesized {recipe:?}"),
            (Err(e), None) => panic!("{at}: {}: {e}", fields[0]),
        }
    }
    assert!(
        ok >= 15 && rejected >= 4,
        "{ok} synthesized, {rejected} rejected"
    );
    let got = serde_json::to_string_pretty(&golden).unwrap() + "\n";
    let golden_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN);
    if std::env::var_os("KERNELX_BLESS").is_some() {
        std::fs::write(&golden_path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&golden_path).unwrap_or_default();
    assert!(
        want == got,
        "{GOLDEN} differs from the synthesized recipes (rerun with KERNELX_BLESS=1 to accept):\n{got}"
    );
}
