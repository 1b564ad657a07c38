//! The runtime consumes plans, not the analysis (style B1): its dependency tree holds
//! `kernelx-plan` and no other KernelX crate, and nothing that decodes instructions.

use std::process::Command;

#[test]
fn depends_on_the_plan_and_no_analysis_crate() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "kernelx-runtime",
            "-e",
            "normal,build",
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
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains(&"kernelx-plan"), "{tree}");
    for name in names {
        assert!(
            !(name.starts_with("iced")
                || matches!(
                    name,
                    "kernelx-kbuild" | "kernelx-x86" | "kernelx-analyze" | "kernelx-spec"
                )),
            "kernelx-runtime depends on {name}:\n{tree}"
        );
    }
}
