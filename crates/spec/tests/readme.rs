//! The README's TOML examples are real: each block parses without errors or warnings.

use std::path::{Path, PathBuf};

use kernelx_spec::{EnvOverrides, parse_str};

#[test]
fn readme_toml_examples_parse() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let env = EnvOverrides {
        kernel_dir: None,
        home: Some(PathBuf::from("/home/kx")),
    };
    let mut blocks = 0;
    for (i, block) in readme.split("```toml\n").skip(1).enumerate() {
        let text = block.split("```").next().expect("closed block");
        let parsed = parse_str(text, format!("README.md toml block {}", i + 1), &env)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed.warnings, [], "README.md toml block {}", i + 1);
        blocks += 1;
    }
    assert!(
        blocks >= 4,
        "found only {blocks} toml blocks in {}",
        path.display()
    );
}
