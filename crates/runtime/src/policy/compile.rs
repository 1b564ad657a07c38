//! Compiling a policy with clang, against the kernel's `vmlinux.h` and the headers embedded in
//! this crate.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest as _, Sha256};

use super::PolicyError;
use super::vmlinux::{BtfSource, vmlinux_header};

/// The headers a policy is compiled with, as build.rs copied them: (path under the include
/// directory, contents).
const HEADERS: [(&str, &[u8]); 6] = [
    (
        "kernelx_policy.h",
        include_bytes!(concat!(env!("OUT_DIR"), "/policy-include/kernelx_policy.h")),
    ),
    (
        "bpf/bpf_helpers.h",
        include_bytes!(concat!(
            env!("OUT_DIR"),
            "/policy-include/bpf/bpf_helpers.h"
        )),
    ),
    (
        "bpf/bpf_helper_defs.h",
        include_bytes!(concat!(
            env!("OUT_DIR"),
            "/policy-include/bpf/bpf_helper_defs.h"
        )),
    ),
    (
        "bpf/bpf_tracing.h",
        include_bytes!(concat!(
            env!("OUT_DIR"),
            "/policy-include/bpf/bpf_tracing.h"
        )),
    ),
    (
        "bpf/bpf_core_read.h",
        include_bytes!(concat!(
            env!("OUT_DIR"),
            "/policy-include/bpf/bpf_core_read.h"
        )),
    ),
    (
        "bpf/bpf_endian.h",
        include_bytes!(concat!(env!("OUT_DIR"), "/policy-include/bpf/bpf_endian.h")),
    ),
];

/// How to compile a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// The KernelX cache directory, for `vmlinux.h` and the headers.
    pub cache: PathBuf,
    /// The kernel whose types the policy sees.
    pub btf: BtfSource,
    /// The compiler.
    pub clang: PathBuf,
}

impl CompileOptions {
    /// The running kernel's BTF, and clang from `$CLANG`, else `clang` on `PATH`.
    pub fn new(cache: impl Into<PathBuf>) -> CompileOptions {
        CompileOptions {
            cache: cache.into(),
            btf: BtfSource::Running,
            clang: std::env::var_os("CLANG")
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| OsString::from("clang"))
                .into(),
        }
    }
}

/// A compiled policy: the object, not yet checked (see [`inspect`](super::inspect)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledPolicy {
    /// The BPF ELF object.
    pub object: Vec<u8>,
    /// The source file, as given.
    pub source: PathBuf,
    /// sha256 of the source file's contents, hex: which version of the file was loaded.
    pub source_hash: String,
    /// clang's warnings (empty when there were none).
    pub warnings: String,
    /// The object of an earlier compile of the same source, headers and clang (clang did not
    /// run).
    pub cached: bool,
}

/// Compiles `source` with `clang -target bpf -O2 -g -Wall` against the kernel's `vmlinux.h`
/// (generated and cached on first use) and the embedded headers.
///
/// # Errors
///
/// [`PolicyError::Compile`] with clang's diagnostics when clang fails,
/// [`PolicyError::ClangMissing`] when it cannot be run, the errors of
/// [`vmlinux_header`], [`PolicyError::Source`] when the source cannot be read and
/// [`PolicyError::Io`] for the cache and the temporary object.
pub fn compile_policy(
    source: &Path,
    options: &CompileOptions,
) -> Result<CompiledPolicy, PolicyError> {
    let text = std::fs::read(source).map_err(|error| PolicyError::Source {
        file: source.to_owned(),
        error,
    })?;
    let include = include_dir(&options.cache)?;
    let vmlinux = vmlinux_header(&options.btf, &options.cache)?;
    let vmlinux_dir = vmlinux.parent().expect("vmlinux.h is in a directory");
    let source_hash = hex(&Sha256::digest(&text));
    // The clang binary's identity keys the cached object and the precompiled header: an
    // upgraded clang gets neither of the old one's. None: neither is used.
    let clang = clang_identity(&options.clang);
    let cached = clang
        .as_deref()
        .and_then(|clang| cached_object_path(options, &text, &include, vmlinux_dir, clang));
    if let Some(object) = cached.as_ref().and_then(|path| std::fs::read(path).ok()) {
        return Ok(CompiledPolicy {
            object,
            source: source.to_owned(),
            source_hash,
            warnings: String::new(),
            cached: true,
        });
    }
    let temp = tempfile::Builder::new()
        .prefix("kernelx-policy-")
        .tempdir()
        .map_err(|e| PolicyError::io(std::env::temp_dir(), e))?;
    let object = temp.path().join("policy.bpf.o");
    let compile = |pch: Option<&Path>| {
        let mut command = clang_command(options, &include, vmlinux_dir);
        if let Some(pch) = pch {
            command.arg("-include-pch").arg(pch);
        }
        command.arg("-c").arg(source).arg("-o").arg(&object);
        command.output().map_err(|error| PolicyError::ClangMissing {
            clang: options.clang.clone(),
            error,
        })
    };
    let pch = match clang.as_deref() {
        Some(clang) if includes_the_api_first(&text) => {
            precompiled_header(options, &include, vmlinux_dir, clang)?
        }
        _ => None,
    };
    let mut output = compile(pch.as_deref())?;
    // A header precompiled by another clang is refused: the plain compile decides.
    if pch.is_some()
        && !output.status.success()
        && String::from_utf8_lossy(&output.stderr).contains("precompiled header")
    {
        output = compile(None)?;
    }
    let diagnostics = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(PolicyError::Compile {
            file: source.to_owned(),
            diagnostics: if diagnostics.trim().is_empty() {
                format!("(no diagnostics; clang exited with {})", output.status)
            } else {
                diagnostics
            },
        });
    }
    let bytes = std::fs::read(&object).map_err(|e| PolicyError::io(&object, e))?;
    // Only a clean compile is kept: warnings are shown again on every load.
    if let Some(path) = cached.filter(|_| diagnostics.trim().is_empty()) {
        keep_object(&path, &bytes)?;
    }
    Ok(CompiledPolicy {
        object: bytes,
        source: source.to_owned(),
        source_hash,
        warnings: diagnostics,
        cached: false,
    })
}

/// Where the object of `text` compiled against these headers by this clang is kept
/// (`<cache>/policies/<hash>.o`): reloading an unchanged policy does not run clang again.
/// `None` (never cached) for a source that includes files of its own, which the hash would
/// not see change. `clang`: [`clang_identity`].
fn cached_object_path(
    options: &CompileOptions,
    text: &[u8],
    include: &Path,
    vmlinux_dir: &Path,
    clang: &str,
) -> Option<PathBuf> {
    let own_includes = String::from_utf8_lossy(text).lines().any(|line| {
        let Some(target) = line.trim_start().strip_prefix("#include") else {
            return false;
        };
        let target = target.trim().trim_matches(['"', '<', '>']);
        !(target == "kernelx_policy.h" || target == "vmlinux.h" || target.starts_with("bpf/"))
    });
    if own_includes {
        return None;
    }
    let mut hasher = Sha256::new();
    for part in [
        text,
        include.as_os_str().as_encoded_bytes(),
        vmlinux_dir.as_os_str().as_encoded_bytes(),
        clang.as_bytes(),
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let key = &hex(&hasher.finalize())[..32];
    Some(options.cache.join("policies").join(format!("{key}.o")))
}

/// Writes `object` to `path` (aside, then renamed: a reader never sees half an object).
fn keep_object(path: &Path, object: &[u8]) -> Result<(), PolicyError> {
    let dir = path.parent().expect("a cached object has a directory");
    std::fs::create_dir_all(dir).map_err(|e| PolicyError::io(dir, e))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".policy-")
        .tempfile_in(dir)
        .map_err(|e| PolicyError::io(dir, e))?;
    std::io::Write::write_all(&mut temp, object).map_err(|e| PolicyError::io(temp.path(), e))?;
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644))
        .map_err(|e| PolicyError::io(temp.path(), e))?;
    temp.persist(path)
        .map_err(|e| PolicyError::io(path, e.error))?;
    Ok(())
}

/// clang with the flags every policy compile and the precompiled header share (a precompiled
/// header serves only compiles with the same flags).
fn clang_command(options: &CompileOptions, include: &Path, vmlinux_dir: &Path) -> Command {
    let mut command = Command::new(&options.clang);
    // KernelX patches x86-64 kernels only; bpf_tracing.h needs the arch for PT_REGS_*.
    command
        .args([
            "-target",
            "bpf",
            "-O2",
            "-g",
            "-D__TARGET_ARCH_x86",
            "-Wall",
        ])
        .arg(format!("-I{}", include.display()))
        .arg(format!("-I{}", vmlinux_dir.display()));
    command
}

/// Whether the first thing `text` does is `#include "kernelx_policy.h"`: only then does the
/// precompiled header (which clang reads before the file) mean the same as the file. A
/// `#define` before the include (`BPF_NO_PRESERVE_ACCESS_INDEX`, say) must reach the headers.
fn includes_the_api_first(text: &[u8]) -> bool {
    let text = String::from_utf8_lossy(text);
    let mut in_comment = false;
    for line in text.lines() {
        let mut line = line.trim();
        if in_comment {
            match line.find("*/") {
                Some(end) => {
                    in_comment = false;
                    line = line[end + 2..].trim();
                }
                None => continue,
            }
        }
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("/*") {
            match rest.find("*/") {
                Some(end) if rest[end + 2..].trim().is_empty() => continue,
                Some(_) => return false,
                None => {
                    in_comment = true;
                    continue;
                }
            }
        }
        return line
            .strip_prefix("#include")
            .is_some_and(|target| target.trim() == "\"kernelx_policy.h\"");
    }
    false
}

/// `kernelx_policy.h` with `vmlinux.h` precompiled, next to `vmlinux.h`, built once per
/// headers and clang: parsing the kernel's types is most of a compile (about 15 of 22 s under
/// the lab's emulation, 0.3 of 0.5 s natively). `None` when clang cannot build it: the compile
/// then parses the headers itself, and reports their errors if there are any. `clang`:
/// [`clang_identity`].
fn precompiled_header(
    options: &CompileOptions,
    include: &Path,
    vmlinux_dir: &Path,
    clang: &str,
) -> Result<Option<PathBuf>, PolicyError> {
    let headers = include
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let path = vmlinux_dir.join(format!(
        "kernelx_policy-{}-{clang}.pch",
        headers.unwrap_or_default()
    ));
    if path.is_file() {
        return Ok(Some(path));
    }
    let temp = tempfile::Builder::new()
        .prefix(".kernelx_policy-")
        .suffix(".pch")
        .tempfile_in(vmlinux_dir)
        .map_err(|e| PolicyError::io(vmlinux_dir, e))?;
    let built = clang_command(options, include, vmlinux_dir)
        .args(["-x", "c-header"])
        .arg(include.join("kernelx_policy.h"))
        .arg("-o")
        .arg(temp.path())
        .output()
        .is_ok_and(|o| o.status.success());
    if !built {
        return Ok(None);
    }
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644))
        .map_err(|e| PolicyError::io(temp.path(), e))?;
    // A concurrent compile may have put the same header in place: either is complete.
    temp.persist(&path)
        .map_err(|e| PolicyError::io(&path, e.error))?;
    Ok(Some(path))
}

/// A short hash of the clang binary (its resolved path, size and mtime), so an upgraded clang
/// gets its own precompiled header; `None` when it cannot be found.
fn clang_identity(clang: &Path) -> Option<String> {
    let resolved = if clang.components().count() > 1 {
        clang.to_owned()
    } else {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(clang))
            .find(|candidate| candidate.is_file())?
    };
    let resolved = std::fs::canonicalize(resolved).ok()?;
    let meta = std::fs::metadata(&resolved).ok()?;
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let mut hasher = Sha256::new();
    hasher.update(resolved.as_os_str().as_encoded_bytes());
    hasher.update(meta.len().to_le_bytes());
    hasher.update(mtime.as_nanos().to_le_bytes());
    Some(hex(&hasher.finalize())[..16].to_owned())
}

/// `<cache>/include/<hash of the headers>/`, written once: a new KernelX with other headers
/// gets its own directory.
fn include_dir(cache: &Path) -> Result<PathBuf, PolicyError> {
    let mut hasher = Sha256::new();
    for (name, contents) in HEADERS {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(contents);
    }
    let root = cache.join("include");
    let dir = root.join(&hex(&hasher.finalize())[..16]);
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&root).map_err(|e| PolicyError::io(&root, e))?;
    // Written aside and renamed, so a directory in place is always complete.
    let temp = tempfile::Builder::new()
        .prefix(".include-")
        .tempdir_in(&root)
        .map_err(|e| PolicyError::io(&root, e))?;
    for (name, contents) in HEADERS {
        let path = temp.path().join(name);
        let parent = path.parent().expect("a header path has a parent");
        std::fs::create_dir_all(parent).map_err(|e| PolicyError::io(parent, e))?;
        std::fs::write(&path, contents).map_err(|e| PolicyError::io(&path, e))?;
    }
    // tempfile creates 0700; see vmlinux_header for why the cache stays readable.
    std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| PolicyError::io(temp.path(), e))?;
    let temp = temp.keep();
    if let Err(error) = std::fs::rename(&temp, &dir) {
        // A concurrent compile put the same headers in place first.
        let _ = std::fs::remove_dir_all(&temp);
        if !dir.is_dir() {
            return Err(PolicyError::io(&dir, error));
        }
    }
    Ok(dir)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_precompiled_header_serves_only_files_that_include_the_api_first() {
        for first in [
            "#include \"kernelx_policy.h\"\n",
            "// SPDX-License-Identifier: GPL-2.0\n/*\n * A policy.\n */\n\n#include \"kernelx_policy.h\"\n",
            "/* one line */\n  #include  \"kernelx_policy.h\"\nKX_POLICY(ctx, p, d) { return d; }\n",
        ] {
            assert!(includes_the_api_first(first.as_bytes()), "{first}");
        }
        for not_first in [
            "#define BPF_NO_PRESERVE_ACCESS_INDEX\n#include \"kernelx_policy.h\"\n",
            "#include \"vmlinux.h\"\n#include \"kernelx_policy.h\"\n",
            "/* x */ #define A 1\n#include \"kernelx_policy.h\"\n",
            "",
        ] {
            assert!(!includes_the_api_first(not_first.as_bytes()), "{not_first}");
        }
    }

    #[test]
    fn the_include_directory_holds_every_header_and_is_reused() {
        let cache = tempfile::tempdir().unwrap();
        let dir = include_dir(cache.path()).unwrap();
        for (name, contents) in HEADERS {
            assert_eq!(std::fs::read(dir.join(name)).unwrap(), contents, "{name}");
        }
        assert_eq!(include_dir(cache.path()).unwrap(), dir);
        let entries = std::fs::read_dir(cache.path().join("include"))
            .unwrap()
            .count();
        assert_eq!(entries, 1, "no temporary directory is left behind");
    }

    #[test]
    fn a_missing_source_is_named_before_any_btf_is_read() {
        let cache = tempfile::tempdir().unwrap();
        let mut options = CompileOptions::new(cache.path());
        options.btf = BtfSource::Elf(cache.path().join("no-vmlinux"));
        let source = cache.path().join("missing.bpf.c");
        let error = compile_policy(&source, &options).unwrap_err();
        assert!(
            matches!(&error, PolicyError::Source { file, .. } if file == &source),
            "{error}"
        );
    }

    #[test]
    fn unreadable_btf_is_named() {
        let cache = tempfile::tempdir().unwrap();
        let not_elf = cache.path().join("vmlinux");
        std::fs::write(&not_elf, "not an ELF file").unwrap();
        let source = cache.path().join("p.bpf.c");
        std::fs::write(&source, "").unwrap();
        let mut options = CompileOptions::new(cache.path());
        options.btf = BtfSource::Elf(not_elf.clone());
        let error = compile_policy(&source, &options).unwrap_err();
        assert!(
            matches!(&error, PolicyError::Btf { btf, .. } if btf == &not_elf),
            "{error}"
        );
        assert!(
            error.to_string().contains("CONFIG_DEBUG_INFO_BTF"),
            "{error}"
        );
    }
}
