//! Every `testdata/malformed/NN-name.toml` must be refused with exactly the message in its
//! `NN-name.err` neighbour.
//!
//! `KERNELX_BLESS=1 cargo test -p kernelx-spec --test malformed` rewrites the `.err` files from
//! the current messages; review the diff before committing. CI never sets it.

use std::fs;
use std::path::{Path, PathBuf};

use kernelx_spec::{EnvOverrides, parse_str};

#[test]
fn malformed_specs_are_refused_with_the_expected_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/malformed");
    let bless = std::env::var_os("KERNELX_BLESS").is_some_and(|v| v == "1");
    // A fixed environment, so messages do not depend on the machine.
    let env = EnvOverrides {
        kernel_dir: None,
        home: Some(PathBuf::from("/home/kx")),
    };

    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    cases.sort();
    let (specs, expected): (Vec<PathBuf>, Vec<PathBuf>) = cases
        .into_iter()
        .partition(|p| p.extension().is_some_and(|e| e == "toml"));
    assert!(
        specs.len() >= 20,
        "only {} malformed specs in {}",
        specs.len(),
        dir.display()
    );

    let mut failures = Vec::new();
    for err_file in &expected {
        if err_file.extension().is_none_or(|e| e != "err")
            || !err_file.with_extension("toml").exists()
        {
            failures.push(format!(
                "{}: stray file (every .err needs its .toml)",
                err_file.display()
            ));
        }
    }
    for spec in &specs {
        let name = spec.file_name().expect("file name");
        let text = fs::read_to_string(spec)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", spec.display()));
        let got = match parse_str(&text, name, &env) {
            Ok(parsed) => {
                failures.push(format!(
                    "{}: accepted ({} tunables), expected an error",
                    spec.display(),
                    parsed.spec.tunables.len()
                ));
                continue;
            }
            Err(error) => error.to_string(),
        };
        let err_file = spec.with_extension("err");
        if bless {
            fs::write(&err_file, format!("{got}\n"))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", err_file.display()));
            continue;
        }
        match fs::read_to_string(&err_file) {
            Err(e) => failures.push(format!(
                "{}: {e}; run with KERNELX_BLESS=1 to create it",
                err_file.display()
            )),
            Ok(want) if want.trim_end() != got => {
                failures.push(format!(
                    "{}:\n  expected: {}\n  got:      {got}",
                    spec.display(),
                    want.trim_end()
                ));
            }
            Ok(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed specs failed:\n{}",
        failures.len(),
        specs.len(),
        failures.join("\n")
    );
}
