//! `kernelx build --module-dir`: what it refuses before building anything. (The analysis of a
//! real module is `crates/analyze/tests/target_module.rs`.)

use std::path::Path;
use std::process::{Command, Output};

#[track_caller]
fn kernelx(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kernelx"))
        .args(args)
        .env_remove("KERNEL_DIR")
        .env("KERNELX_CACHE", cache)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kernelx {args:?}: {e}"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_module_needs_a_kernel_build_dir_and_its_kbuild_file() {
    let cache = tempfile::tempdir().unwrap();
    let module = tempfile::tempdir().unwrap();
    std::fs::write(module.path().join("m.c"), "#define M_LIMIT 4\n").unwrap();
    let dir = module.path().to_str().unwrap();

    let output = kernelx(&["build", "M_LIMIT", "--module-dir", dir], cache.path());
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "no kernel build directory to build the module in {dir} against: give --kernel-dir"
        )),
        "{err}"
    );

    let kdir = tempfile::tempdir().unwrap();
    let output = kernelx(
        &[
            "build",
            "M_LIMIT",
            "--module-dir",
            dir,
            "--kernel-dir",
            kdir.path().to_str().unwrap(),
        ],
        cache.path(),
    );
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("neither a Kbuild nor a Makefile"), "{err}");
    assert_eq!(
        std::fs::read_dir(module.path()).unwrap().count(),
        1,
        "the module directory was written"
    );
}

#[test]
fn module_ko_needs_module_dir() {
    let cache = tempfile::tempdir().unwrap();
    let output = kernelx(
        &["build", "M_LIMIT", "--module-ko", "/tmp/m.ko"],
        cache.path(),
    );
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert!(
        stderr(&output).contains("--module-dir"),
        "{}",
        stderr(&output)
    );
}
