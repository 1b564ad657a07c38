//! Hand-assembled diff vectors from `testdata/diff-vectors.txt` (format in that file).

mod common;

use std::path::Path;

use kernelx_x86::{HexBytes, ObjectFile, diff_builds};

/// One vector: where it is, its description, the bytes per version, the findings.
struct Vector {
    line: usize,
    name: String,
    versions: Vec<Vec<u8>>,
    expect: Vec<String>,
}

/// Parses the vector file, naming file and line on any error.
fn parse(origin: &str, text: &str) -> Result<Vec<Vector>, String> {
    let mut vectors = Vec::new();
    let mut name = String::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let line = line.trim();
        // The comment block directly above a vector names it.
        if line.is_empty() {
            name.clear();
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if !name.is_empty() {
                name.push(' ');
            }
            name.push_str(comment.trim());
            continue;
        }
        let (bytes, findings) = line
            .split_once("=>")
            .ok_or_else(|| format!("{origin}:{n}: missing `=>`"))?;
        let versions = bytes
            .split('|')
            .map(|b| b.trim().parse::<HexBytes>().map(|h| h.0))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{origin}:{n}: {e}"))?;
        if !(2..=3).contains(&versions.len()) {
            return Err(format!(
                "{origin}:{n}: need 2 or 3 versions, found {}",
                versions.len()
            ));
        }
        let findings = findings.trim();
        let expect: Vec<String> = if findings == "none" {
            Vec::new()
        } else {
            findings
                .split(';')
                .map(|f| {
                    let words: Vec<&str> = f.split_whitespace().collect();
                    match words.as_slice() {
                        ["seed", at, ..] | ["uncovered", _, at, ..] if at.starts_with("+0x") => {
                            Ok(insert_function(&words))
                        }
                        _ => Err(format!("{origin}:{n}: cannot read finding {:?}", f.trim())),
                    }
                })
                .collect::<Result<_, _>>()?
        };
        vectors.push(Vector {
            line: n,
            name: std::mem::take(&mut name),
            versions,
            expect,
        });
    }
    Ok(vectors)
}

/// `seed +0x0 ...` -> `seed f+0x0 ...`, the way `common::render` names the function.
fn insert_function(words: &[&str]) -> String {
    let mut out: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    let at = if words[0] == "seed" { 1 } else { 2 };
    out[at] = format!("f{}", words[at]);
    out.join(" ")
}

#[test]
fn diff_vectors() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/diff-vectors.txt");
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {origin}: {e}"));
    let vectors = parse(&origin, &text).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        vectors.len() >= 20,
        "{origin}: expected the full set of vectors"
    );
    for v in &vectors {
        let objects: Vec<ObjectFile<'_>> = v
            .versions
            .iter()
            .enumerate()
            .map(|(k, bytes)| ObjectFile::from_code(format!("V{}", k + 1), &[("f", bytes)]))
            .collect();
        let refs: Vec<&ObjectFile<'_>> = objects.iter().collect();
        let values: Vec<i64> = (1..=objects.len() as i64).collect();
        let diff =
            diff_builds(&refs, &values).unwrap_or_else(|e| panic!("{origin}:{}: {e}", v.line));
        let actual = common::render(&diff);
        let expect: Vec<(usize, String)> = v.expect.iter().map(|e| (v.line, e.clone())).collect();
        common::assert_same_lines(
            &origin,
            &expect,
            &actual,
            &format!("vector: {}\n{}", v.name, common::explain(&diff)),
        );
    }
}

#[test]
fn parse_errors_name_file_and_line() {
    let err = parse("t.txt", "# ok\n00 | 00 => none\n\n0g | 00 => none\n")
        .err()
        .unwrap();
    assert!(err.starts_with("t.txt:4: "), "{err}");
    let err = parse("t.txt", "00 => none\n").err().unwrap();
    assert!(err.starts_with("t.txt:1: need 2 or 3 versions"), "{err}");
    let err = parse("t.txt", "00 | 00\n").err().unwrap();
    assert_eq!(err, "t.txt:1: missing `=>`");
    let err = parse("t.txt", "00 | 00 => seed 0x0\n").err().unwrap();
    assert!(err.starts_with("t.txt:1: cannot read finding"), "{err}");
}

/// Two out-of-line blocks swap places between builds (the vector "V2 and V3 place B before
/// A"): the seed in the moved block is reported at its V1 offset, with each build's instance
/// where that build placed it, and nothing is uncovered.
#[test]
fn seeds_in_permuted_blocks_keep_their_instances() {
    let v1 = "85ff740883fe05750931c0c3b810000000c389f0c3".parse::<HexBytes>();
    let v2 = "85ff740b83fe05750331c0c389f0c3b820000000c3".parse::<HexBytes>();
    let v3 = "85ff740b83fe05750331c0c389f0c3b840000000c3".parse::<HexBytes>();
    let bytes: Vec<Vec<u8>> = [v1, v2, v3].into_iter().map(|b| b.unwrap().0).collect();
    let objects: Vec<ObjectFile<'_>> = bytes
        .iter()
        .enumerate()
        .map(|(k, b)| ObjectFile::from_code(format!("V{}", k + 1), &[("f", b)]))
        .collect();
    let refs: Vec<&ObjectFile<'_>> = objects.iter().collect();
    let diff = diff_builds(&refs, &[16, 32, 64]).unwrap();
    assert!(diff.uncovered.is_empty(), "{:?}", diff.uncovered);
    assert_eq!(diff.seeds.len(), 1);
    let seed = &diff.seeds[0];
    assert_eq!((seed.offset, seed.asm.as_str()), (0xc, "mov $0x10,%eax"));
    let instances: Vec<(u32, &str)> = seed
        .instances
        .iter()
        .map(|i| (i.offset, i.asm.as_str()))
        .collect();
    assert_eq!(
        instances,
        [
            (0xc, "mov $0x10,%eax"),
            (0xf, "mov $0x20,%eax"),
            (0xf, "mov $0x40,%eax")
        ]
    );
    assert_eq!(seed.instances[1].bytes.0, [0xb8, 0x20, 0, 0, 0]);
}
