//! Compiling X-tune policies against the lab kernel's BTF (`KERNELX_LAB_VMLINUX`, the debug
//! vmlinux of `cargo xtask lab setup`, which has a `.BTF` section).
//!
//! Ignored by default; run with `--include-ignored` and `KERNELX_LAB_VMLINUX` set. They need
//! clang, as the crate's build does. The tests share one cache under the target directory,
//! emptied once per run, so `vmlinux.h` is generated once (its time is printed).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use kernelx_runtime::policy::{
    BtfSource, CompileOptions, PolicyError, compile_policy, decode_params, inspect, vmlinux_header,
};

fn lab_vmlinux() -> PathBuf {
    let value = std::env::var_os("KERNELX_LAB_VMLINUX").unwrap_or_else(|| {
        panic!(
            "KERNELX_LAB_VMLINUX is not set: point it at the lab kernel's debug vmlinux \
             (cargo xtask lab setup prepares it)"
        )
    });
    let path = PathBuf::from(value);
    assert!(
        path.is_file(),
        "KERNELX_LAB_VMLINUX={} does not exist",
        path.display()
    );
    path
}

/// The shared cache, with `vmlinux.h` generated (timed) on first use.
fn options() -> &'static CompileOptions {
    static OPTIONS: OnceLock<CompileOptions> = OnceLock::new();
    OPTIONS.get_or_init(|| {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lab_policy-cache");
        let _ = std::fs::remove_dir_all(&cache);
        let mut options = CompileOptions::new(&cache);
        options.btf = BtfSource::Elf(lab_vmlinux());
        let start = Instant::now();
        vmlinux_header(&options.btf, &cache).expect("vmlinux.h from the lab vmlinux");
        eprintln!("vmlinux.h generated in {:?}", start.elapsed());
        options
    })
}

fn policy_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies")
}

#[test]
#[ignore = "needs KERNELX_LAB_VMLINUX"]
fn lab_tree_vmlinux_header_has_the_kernel_types_and_is_cached() {
    let options = options();
    let start = Instant::now();
    let header = vmlinux_header(&options.btf, &options.cache).unwrap();
    let cached = start.elapsed();
    eprintln!("vmlinux.h from the cache in {cached:?}");
    let text = std::fs::read_to_string(&header).unwrap();
    assert!(
        text.starts_with("#ifndef __VMLINUX_H__\n"),
        "{}",
        &text[..200]
    );
    assert!(text.contains("struct task_struct {"));
    assert!(text.contains("apply_to = record"));
    assert!(text.trim_end().ends_with("#endif /* __VMLINUX_H__ */"));
    let btf_dir = header.parent().unwrap();
    assert_eq!(btf_dir.parent().unwrap(), options.cache.join("btf"));
    assert_eq!(btf_dir.file_name().unwrap().len(), 16);
    // Besides vmlinux.h only precompiled headers (another test may have compiled a policy),
    // and no temporary file.
    for entry in std::fs::read_dir(btf_dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name == "vmlinux.h" || (name.starts_with("kernelx_policy-") && name.ends_with(".pch")),
            "{name} in {}",
            btf_dir.display()
        );
    }
}

#[test]
#[ignore = "needs KERNELX_LAB_VMLINUX"]
fn lab_tree_the_cgroup_hint_example_compiles_with_its_params() {
    let source = examples().join("cgroup_hint.bpf.c");
    let options = options();
    let start = Instant::now();
    let compiled = compile_policy(&source, options).unwrap();
    eprintln!("cgroup_hint.bpf.c compiled in {:?}", start.elapsed());
    assert_eq!(
        compiled.warnings, "",
        "cgroup_hint.bpf.c compiles without warnings"
    );
    assert_eq!(compiled.source_hash.len(), 64);
    let policy = inspect(&compiled.object, &source).unwrap();
    assert_eq!(policy.policy, "kx_policy");
    assert!(policy.observers.is_empty(), "{:?}", policy.observers);
    let params: Vec<(&str, u32, u8)> = policy
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.offset, p.size))
        .collect();
    assert_eq!(params, [("cgroup", 0, 8), ("hinted", 8, 8)]);
    let values = decode_params(&policy.params, &policy.params_image).unwrap();
    let shown: Vec<String> = values.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["cgroup=0", "hinted=64"]);
}

#[test]
#[ignore = "needs KERNELX_LAB_VMLINUX"]
fn lab_tree_an_unchanged_policy_is_not_compiled_again_unless_it_includes_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let body = "#include \"kernelx_policy.h\"\nKX_PARAM(__s64, v, 3);\nKX_POLICY(ctx, probe, dflt)\n{\n\treturn v;\n}\n";
    let source = policy_file(dir.path(), "cached.bpf.c", body);
    let first = compile_policy(&source, options()).unwrap();
    let again = compile_policy(&source, options()).unwrap();
    assert!(again.cached, "the second compile of the same file");
    assert_eq!(again.object, first.object);
    assert_eq!(again.source_hash, first.source_hash);
    // Another source is compiled.
    let changed = policy_file(dir.path(), "cached.bpf.c", &body.replace("3", "4"));
    assert!(!compile_policy(&changed, options()).unwrap().cached);
    // A file of its own could change unseen: never cached.
    std::fs::write(dir.path().join("mine.h"), "#define V 5\n").unwrap();
    let own = policy_file(
        dir.path(),
        "own.bpf.c",
        "#include \"kernelx_policy.h\"\n#include \"mine.h\"\nKX_POLICY(ctx, probe, dflt)\n{\n\treturn V;\n}\n",
    );
    compile_policy(&own, options()).unwrap();
    assert!(!compile_policy(&own, options()).unwrap().cached);
}

#[test]
#[ignore = "needs KERNELX_LAB_VMLINUX"]
fn lab_tree_observer_programs_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let source = policy_file(
        dir.path(),
        "observe.bpf.c",
        r#"#include "kernelx_policy.h"

KX_SAVE_ARGS(tcp_sendmsg);

__u64 exits;

SEC("kretprobe/tcp_sendmsg")
int count_exits(struct pt_regs *ctx)
{
	__sync_fetch_and_add(&exits, 1);
	return 0;
}

KX_POLICY(ctx, probe, dflt)
{
	struct task_struct *task = kx_task();

	if (BPF_CORE_READ(task, flags) & 0x00200000 /* PF_KTHREAD */)
		return dflt;
	return kx_arg(2) > 4096 ? 2 * dflt : dflt;
}
"#,
    );
    let compiled = compile_policy(&source, options()).unwrap();
    let policy = inspect(&compiled.object, &source).unwrap();
    let observers: Vec<(&str, &str)> = policy
        .observers
        .iter()
        .map(|o| (o.name.as_str(), o.section.as_str()))
        .collect();
    assert_eq!(
        observers,
        [
            ("kx_save_args_tcp_sendmsg", "kprobe/tcp_sendmsg"),
            ("count_exits", "kretprobe/tcp_sendmsg")
        ]
    );
    assert!(policy.params.is_empty());
}

#[test]
#[ignore = "needs KERNELX_LAB_VMLINUX"]
fn lab_tree_a_syntax_error_is_reported_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let source = policy_file(
        dir.path(),
        "broken.bpf.c",
        "#include \"kernelx_policy.h\"\n\nKX_POLICY(ctx, probe, dflt)\n{\n\treturn dflt +;\n}\n",
    );
    let error = compile_policy(&source, options()).unwrap_err();
    let PolicyError::Compile { file, diagnostics } = &error else {
        panic!("not a compile error: {error}");
    };
    assert_eq!(file, &source);
    let text = error.to_string();
    let at = format!("{}:5:", source.display());
    assert!(diagnostics.contains(&at), "{diagnostics}");
    assert!(text.contains(&at), "{text}");
    assert!(text.contains("nothing was loaded"), "{text}");
}

#[test]
#[ignore = "needs KERNELX_LAB_VMLINUX"]
fn lab_tree_kernelx_kfuncs_and_other_freplace_programs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let kfunc = policy_file(
        dir.path(),
        "kfunc.bpf.c",
        r#"#include "kernelx_policy.h"

extern __u64 kernelx_active_gen(__u64 key) __ksym;

KX_POLICY(ctx, probe, dflt)
{
	return kernelx_active_gen(probe);
}
"#,
    );
    let compiled = compile_policy(&kfunc, options()).unwrap();
    let error = inspect(&compiled.object, &kfunc).unwrap_err();
    assert!(
        matches!(&error, PolicyError::KernelxKfunc { symbol, .. } if symbol == "kernelx_active_gen"),
        "{error}"
    );

    let freplace = policy_file(
        dir.path(),
        "freplace.bpf.c",
        r#"#include "kernelx_policy.h"

SEC("freplace/kx_other")
__s64 other(struct pt_regs *ctx)
{
	return 0;
}

KX_POLICY(ctx, probe, dflt)
{
	return dflt;
}
"#,
    );
    let compiled = compile_policy(&freplace, options()).unwrap();
    let error = inspect(&compiled.object, &freplace).unwrap_err();
    assert!(
        matches!(&error, PolicyError::ProgramSection { program, section, .. }
            if program == "other" && section == "freplace/kx_other"),
        "{error}"
    );
}

#[test]
#[ignore = "needs KERNELX_LAB_VMLINUX"]
fn lab_tree_a_missing_clang_says_to_install_it() {
    let mut options = options().clone();
    options.clang = "/nonexistent/clang".into();
    let error = compile_policy(&examples().join("cgroup_hint.bpf.c"), &options).unwrap_err();
    assert!(matches!(error, PolicyError::ClangMissing { .. }), "{error}");
    assert!(error.to_string().contains("install it"), "{error}");
}
