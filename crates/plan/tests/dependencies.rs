//! The plan crate stays data (style B1): nothing that decodes instructions, reads objects or
//! loads BPF may enter its dependency tree, not even as a dev-dependency.

use std::process::Command;

#[test]
fn depends_on_no_analysis_or_bpf_crate() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "kernelx-plan",
            "-e",
            "normal,build,dev",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo tree failed:\n{stderr}");
    let tree = String::from_utf8(output.stdout).unwrap();
    assert!(tree.lines().any(|l| l.starts_with("serde ")), "{tree}");
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        assert!(
            !(name.starts_with("iced")
                || name == "object"
                || name.starts_with("libbpf")
                || name.starts_with("kernelx-") && name != "kernelx-plan"),
            "kernelx-plan depends on {name}:\n{tree}"
        );
    }
}
