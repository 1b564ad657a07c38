//! Compiles the SIE BPF program (`bpf/sie.bpf.c`) with clang into `OUT_DIR`; the crate embeds
//! the object, so a target host needs no compiler. `CLANG` names another clang.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest.join("../..");
    let source = root.join("bpf/sie.bpf.c");
    let headers = [
        root.join("bpf/sie.h"),
        root.join("kmod/include/kernelx_abi.h"),
    ];
    for path in std::iter::once(&source).chain(&headers) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=CLANG");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it")).join("sie.bpf.o");
    let clang = env::var_os("CLANG").unwrap_or_else(|| "clang".into());
    let mut command = Command::new(&clang);
    command
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg(include_arg(&root.join("kmod/include")))
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&out);
    let rendered = format!("{command:?}");
    match command.output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "compiling the SIE BPF program failed ({}):\n  {rendered}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(e) => panic!(
            "cannot run {} to compile bpf/sie.bpf.c: {e}\n  {rendered}\n\
             install clang (Debian: `apt-get install clang`, or `cargo xtask lab setup`) or set \
             CLANG to a clang that targets bpf",
            Path::new(&clang).display()
        ),
    }
}

fn include_arg(dir: &Path) -> String {
    format!("-I{}", dir.display())
}
