//! X-tune policies: a user's BPF C file (written against `bpf/kernelx_policy.h`) that decides
//! a tunable's value per trigger. This module turns the file into an object the loader can
//! take, and refuses what the loader must not load:
//!
//! * [`vmlinux_header`]: `vmlinux.h` generated from kernel BTF ([`BtfSource`]) with libbpf's
//!   btf_dump, cached under `<cache>/btf/<hash of the BTF>/`;
//! * [`compile_policy`]: clang against that `vmlinux.h` and the headers embedded in this crate
//!   (libbpf's and `kernelx_policy.h`, written once under `<cache>/include/<hash>/`);
//! * [`inspect`]: the object's policy function, observer programs and parameters;
//! * [`ParamSpec`], [`parse_assignments`], [`decode_params`]: `name=value` for the policy's
//!   `KX_PARAM` globals, and their values back for display.
//!
//! `<cache>` is the caller's: the CLI passes the KernelX cache directory (`$KERNELX_CACHE`,
//! else `$XDG_CACHE_HOME/kernelx`, else `~/.cache/kernelx`), which kernelx-kbuild resolves and
//! this crate may not depend on.

mod compile;
mod object;
mod params;
mod vmlinux;

use std::path::PathBuf;

pub use compile::{CompileOptions, CompiledPolicy, compile_policy};
pub use object::{ObserverProgram, PARAMS_SECTION, POLICY_SECTION, PolicyObject, inspect};
pub use params::{ParamAssignment, ParamSpec, ParamValue, decode_params, parse_assignments};
pub use vmlinux::{BtfSource, vmlinux_header};

/// Why a policy could not be compiled or is refused. Nothing is loaded in any of these cases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// libbpf could not read the kernel's BTF.
    #[error("cannot read the BTF of {}: {error} (is it a kernel with CONFIG_DEBUG_INFO_BTF?)", btf.display())]
    Btf {
        /// `/sys/kernel/btf/vmlinux` or the vmlinux ELF file.
        btf: PathBuf,
        /// What libbpf reported (its errno).
        error: std::io::Error,
    },
    /// btf_dump failed on a type of the kernel's BTF.
    #[error("cannot write type {type_id} of the BTF of {} as C: {error}", btf.display())]
    BtfDump {
        /// The BTF's source.
        btf: PathBuf,
        /// The BTF type id (0 when creating the dumper failed).
        type_id: u32,
        /// What libbpf or the write reported.
        error: std::io::Error,
    },
    /// The policy's source file could not be read.
    #[error("cannot read the policy {}: {error}", file.display())]
    Source {
        /// The source file, as given.
        file: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// A file of the cache or a temporary file could not be written or read.
    #[error(
        "{}: {error} (a file of the cache or a temporary file: check permissions and free space)",
        path.display()
    )]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// clang is not installed (or `CLANG` names no program).
    #[error(
        "cannot run {}: {error}; compiling a policy needs clang: install it (Debian: \
         `apt-get install clang`) or set CLANG to a clang that targets bpf",
        clang.display()
    )]
    ClangMissing {
        /// The program that was run.
        clang: PathBuf,
        /// The error of running it.
        error: std::io::Error,
    },
    /// clang rejected the policy.
    #[error(
        "compiling the policy {} failed; nothing was loaded. clang says:\n{}",
        file.display(),
        diagnostics.trim_end()
    )]
    Compile {
        /// The policy's source file.
        file: PathBuf,
        /// clang's diagnostics, each with its file:line:col.
        diagnostics: String,
    },
    /// The compiled object is not an ELF file `object` can read.
    #[error("the object compiled from {} is unreadable: {message}", file.display())]
    Object {
        /// The policy's source file.
        file: PathBuf,
        /// What the ELF reader said.
        message: String,
    },
    /// The object has no function in `freplace/kx_policy`, or more than one.
    #[error(
        "{} defines {} policy functions{}: define exactly one, with KX_POLICY(ctx, probe, dflt) \
         from kernelx_policy.h",
        file.display(),
        found.len(),
        if found.is_empty() { String::new() } else { format!(" ({})", found.join(", ")) }
    )]
    PolicyCount {
        /// The policy's source file.
        file: PathBuf,
        /// The functions found in `freplace/kx_policy`.
        found: Vec<String>,
    },
    /// A program in a section the loader does not attach.
    #[error(
        "{}: program {program} is in section {section:?}, which a policy may not use: the policy \
         is KX_POLICY, and further programs may be kprobe/, kretprobe/, tracepoint/, \
         raw_tracepoint/, fentry/ or fexit/ programs",
        file.display()
    )]
    ProgramSection {
        /// The policy's source file.
        file: PathBuf,
        /// The program (function) name.
        program: String,
        /// Its section.
        section: String,
    },
    /// The object calls a kfunc of the kernelx module.
    #[error(
        "{} calls {symbol}, a kfunc of the kernelx module: policies decide values; they may not \
         call the kernelx module's kfuncs",
        file.display()
    )]
    KernelxKfunc {
        /// The policy's source file.
        file: PathBuf,
        /// The undefined symbol.
        symbol: String,
    },
    /// A `KX_PARAM` whose size is not 1, 2, 4 or 8 bytes.
    #[error(
        "{}: parameter {name} is {size} bytes; a KX_PARAM is an integer of 1, 2, 4 or 8 bytes",
        file.display()
    )]
    ParamSize {
        /// The policy's source file.
        file: PathBuf,
        /// The parameter.
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A `--param` without `=`.
    #[error("--param {assignment:?} is not name=value")]
    ParamSyntax {
        /// The argument as given.
        assignment: String,
    },
    /// A `--param` naming no parameter of the policy.
    #[error(
        "the policy has no parameter {name:?}; its parameters are: {}",
        if known.is_empty() { "none (it declares no KX_PARAM)".to_owned() } else { known.join(", ") }
    )]
    UnknownParam {
        /// The name given.
        name: String,
        /// The policy's parameters.
        known: Vec<String>,
    },
    /// A `--param` value that is no integer of the parameter's size.
    #[error(
        "--param {name}={value}: {reason}; a {size}-byte parameter takes a decimal (possibly \
         negative) or 0x-hex integer from {} to {}",
        -(1i128 << (u32::from(*size) * 8 - 1)),
        (1u128 << (u32::from(*size) * 8)) - 1
    )]
    ParamValue {
        /// The parameter.
        name: String,
        /// The value as given.
        value: String,
        /// The parameter's size in bytes.
        size: u8,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A parameter that lies outside the section image it is written to or read from.
    #[error(
        "parameter {name} (bytes {offset}..{}) lies outside the {len}-byte .data.kx_params image",
        offset + u32::from(*size)
    )]
    ParamOutside {
        /// The parameter.
        name: String,
        /// Its offset in the section.
        offset: u32,
        /// Its size.
        size: u8,
        /// The image's length.
        len: usize,
    },
}

impl PolicyError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> PolicyError {
        PolicyError::Io {
            path: path.into(),
            error,
        }
    }
}
