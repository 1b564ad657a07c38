//! Compiles the SIE BPF program (`bpf/sie.bpf.c`) with clang into `OUT_DIR`; the crate embeds
//! the object, so a target host needs no compiler. `CLANG` names another clang.
//!
//! It also copies the headers an X-tune policy is compiled with (libbpf's, from libbpf-sys, and
//! `bpf/kernelx_policy.h`) into `OUT_DIR/policy-include`; `policy::compile` embeds them, so
//! compiling a policy needs clang but no libbpf headers on the host.

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
    copy_policy_headers(&root);
}

/// libbpf's headers a policy may include as `<bpf/...>`; the list `policy::compile` embeds.
const LIBBPF_HEADERS: [&str; 5] = [
    "bpf_helpers.h",
    "bpf_helper_defs.h",
    "bpf_tracing.h",
    "bpf_core_read.h",
    "bpf_endian.h",
];

fn copy_policy_headers(root: &Path) {
    let policy_header = root.join("bpf/kernelx_policy.h");
    println!("cargo:rerun-if-changed={}", policy_header.display());
    // libbpf-sys (`links = "bpf"`) exports its include directory to direct dependents.
    let libbpf = PathBuf::from(
        env::var_os("DEP_BPF_INCLUDE").expect("libbpf-sys is a direct dependency and sets it"),
    );
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it")).join("policy-include");
    let out_bpf = out.join("bpf");
    std::fs::create_dir_all(&out_bpf)
        .unwrap_or_else(|e| panic!("creating {}: {e}", out_bpf.display()));
    let copies = LIBBPF_HEADERS
        .iter()
        .map(|name| (libbpf.join("bpf").join(name), out_bpf.join(name)))
        .chain(std::iter::once((
            policy_header,
            out.join("kernelx_policy.h"),
        )));
    for (from, to) in copies {
        std::fs::copy(&from, &to)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", from.display(), to.display()));
    }
}

fn include_arg(dir: &Path) -> String {
    format!("-I{}", dir.display())
}
