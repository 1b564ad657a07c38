//! The one error type of this crate.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use crate::command::CommandLine;

/// Everything that can go wrong while reading a kernel tree, a kernel config or running a
/// kbuild command.
///
/// Each variant names the file or command at fault; where the user can do something about it,
/// the message says what.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KbuildError {
    /// The directory is not the top of a kernel source tree.
    #[error("{}: not a kernel source tree: {reason}", path.display())]
    NotAKernelTree {
        /// The directory that was given.
        path: PathBuf,
        /// What is missing, and what to pass instead.
        reason: String,
    },

    /// The directory is not an external module's (no `Kbuild`/`Makefile`, no module objects).
    #[error("{}: not an external module directory: {reason}", path.display())]
    NotAModule {
        /// The directory that was given.
        path: PathBuf,
        /// What is wrong, and what to pass instead.
        reason: String,
    },

    /// The directory is not a prepared kernel build directory (KDIR) to build modules against.
    #[error("{}: not a kernel build directory: {reason}", path.display())]
    NotAKernelBuildDir {
        /// The directory that was given.
        path: PathBuf,
        /// What is missing, and what to pass instead.
        reason: String,
    },

    /// A built module (`.ko`) is not the module, or not for the kernel, being analysed.
    #[error("{}: {reason}", ko.display())]
    ModuleMismatch {
        /// The `.ko` file.
        ko: PathBuf,
        /// What differs, and what to do.
        reason: String,
    },

    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A kernel config is not in kconfig's `.config` syntax.
    #[error("{origin}:{line}: {message}")]
    ConfigSyntax {
        /// Where the text came from (a path, or a description such as `(gzip data)`).
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },

    /// Gzip-compressed config data (such as `/proc/config.gz`) could not be decompressed.
    #[error("cannot decompress {origin}: not a valid gzip stream")]
    Decompress {
        /// Where the bytes came from.
        origin: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A command could not be started at all (typically: the program is not installed).
    #[error("cannot start `{command}`: is `{}` installed and on PATH?", command.program.to_string_lossy())]
    Spawn {
        /// The command, as data.
        command: CommandLine,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A command ran and failed.
    #[error("`{command}` failed ({status}){}", format_tail(stderr_tail))]
    CommandFailed {
        /// The command, as data.
        command: CommandLine,
        /// How it ended.
        status: ExitStatus,
        /// The last lines of its standard error.
        stderr_tail: String,
    },

    /// A file or directory outside the kernel tree (the cache, a scratch area) could not be
    /// written.
    #[error("cannot write {}; check the permissions and free space of that directory (or set KERNELX_CACHE to another one)", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The `original` text of a pattern-form tunable does not occur in its file.
    #[error("{}: the pattern {pattern:?} does not occur{}; copy `original` from the file as it is in this tree (whitespace included){}", file.display(), lines.as_deref().map(|l| format!(" on lines {l}")).unwrap_or_default(), if lines.is_some() { ", or fix `lines`" } else { "" })]
    PatternNotFound {
        /// The file, relative to the tree.
        file: PathBuf,
        /// The `original` text.
        pattern: String,
        /// The `lines` restriction, as the spec gave it, if any.
        lines: Option<String>,
    },

    /// A macro-form tunable's macro has no `#define` where it was looked for.
    #[error(
        "no `#define {name}` in {searched}; check the name, or give the defining file as `file` in a tunable file"
    )]
    MacroNotFound {
        /// The macro.
        name: String,
        /// Where it was looked for: a file, or a description of the tree.
        searched: String,
    },

    /// Several different definitions of a macro, none preferred.
    #[error("`{name}` has {} different definitions:\n{}\nname the one to tune as `file` in a tunable file", definitions.len(), definitions.join("\n"))]
    MacroAmbiguous {
        /// The macro.
        name: String,
        /// Each definition as `file:line: text`.
        definitions: Vec<String>,
    },

    /// A macro's definition is not something KernelX can change by value.
    #[error("{}:{line}: `{text}`: {reason}; describe the constant with the pattern form (`original`, `modified`, `values`) instead", file.display())]
    MacroUnsupported {
        /// The file, relative to the tree.
        file: PathBuf,
        /// 1-based line of the definition.
        line: u32,
        /// The definition's text.
        text: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A tunable's V1 is not the value its definition has in this tree.
    #[error("{}:{line}: `{name}` is {found} in this tree, but the tunable says V1 = {given}; set values[0] to {found}, or use the tree the values were written for", file.display())]
    ValueMismatch {
        /// The macro.
        name: String,
        /// The file, relative to the tree.
        file: PathBuf,
        /// 1-based line of the definition.
        line: u32,
        /// V1 as the tunable gives it.
        given: i64,
        /// The value the definition evaluates to.
        found: i64,
    },

    /// kbuild printed no compile command for an object.
    #[error("`{command}` printed no compile command for {}; is it a kbuild object of this tree (a .c or .S file with a Makefile rule)?{}", object.display(), format_tail(stderr_tail))]
    NoCompileCommand {
        /// The object, relative to the tree.
        object: PathBuf,
        /// The `make -n` command that was asked.
        command: CommandLine,
        /// The last lines of make's standard error.
        stderr_tail: String,
    },

    /// kbuild wanted to update the tree's configuration while only printing commands.
    #[error("{}: kbuild would rewrite this tree's configuration (include/config, include/generated) to print its commands: .config, a Kconfig file, or a tool it records (the compiler, rustc, ar...) changed since the tree was prepared. KernelX does not write into kernel trees; run `make olddefconfig prepare` in it with the same toolchain variables, then retry. `{command}`{}", tree.display(), format_tail(stderr_tail))]
    TreeOutOfDate {
        /// The tree.
        tree: PathBuf,
        /// The `make -n` command.
        command: CommandLine,
        /// The last lines of make's standard error.
        stderr_tail: String,
    },

    /// A debug-info file (the debug vmlinux) could not be read as ELF with DWARF.
    #[error("{}: {message}; pass the vmlinux with debug info (Debian: linux-image-<release>-dbg, usr/lib/debug/boot/vmlinux-<release>)", path.display())]
    DebugInfo {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// The file a pattern-form tunable edits is not compiled in this configuration.
    #[error("{} is not compiled into this kernel (no compile unit of {origin} and no file including it is); check `file`, or the configuration", file.display())]
    NotBuilt {
        /// The file, relative to the tree.
        file: PathBuf,
        /// Which build's units were consulted.
        origin: String,
    },

    /// Changing the value changes the preprocessed text of no translation unit.
    #[error("changing {what} in {} changes no translation unit built in this kernel ({candidates} candidates preprocessed); it is unused in this configuration, or only used where KernelX cannot see (a computed #include, token pasting)", file.display())]
    NoAffectedUnits {
        /// The macro or pattern.
        what: String,
        /// The edited file, relative to the tree.
        file: PathBuf,
        /// How many candidate units were preprocessed.
        candidates: usize,
    },

    /// A variant's preprocessing read the tree's original of an edited file instead of the
    /// overlay's copy.
    #[error("preprocessing {} for V = {value} read the tree's {} instead of KernelX's modified copy (an include the private overlay cannot redirect: see the kernelx-kbuild README, \"Limits\"); describe the constant with the pattern form on the file that includes it", unit.display(), file.display())]
    OverlayBypassed {
        /// The translation unit, relative to the tree.
        unit: PathBuf,
        /// The edited file, relative to the tree.
        file: PathBuf,
        /// The variant's value.
        value: i64,
    },

    /// An edited file uses a construct the private overlay cannot reproduce.
    #[error("{}:{line}: {reason}; the private overlay cannot build this variant, describe the constant with the pattern form on another file", file.display())]
    OverlayUnsupported {
        /// The file, relative to the tree.
        file: PathBuf,
        /// 1-based line.
        line: u32,
        /// What the file does.
        reason: String,
    },

    /// Preprocessing or compiling one unit for one value failed.
    #[error("{}: {} with V = {value} failed; {}: {source}", unit.display(), if *preprocessing { "preprocessing" } else { "compiling" }, if *variant == 0 { "this is kbuild's own command for the unchanged tree, so the tree cannot build this object as it is (is it prepared with `make prepare`? some objects also need files only a full build generates)" } else { "the value may be invalid for this code (a BUILD_BUG_ON, an array bound, a shift width): choose other values with `values = [V1, V2, V3]`" })]
    UnitFailed {
        /// The translation unit, relative to the tree.
        unit: PathBuf,
        /// Which value: 0 for V1, 1 for V2, 2 for V3.
        variant: usize,
        /// The value.
        value: i64,
        /// Whether it was the preprocessing (`-E`) rather than the compilation.
        preprocessing: bool,
        /// The failure, with the rendered command and the tail of its stderr.
        #[source]
        source: Box<KbuildError>,
    },

    /// Candidate units could not be preprocessed, so KernelX cannot tell whether the constant
    /// reaches them.
    #[error("{} candidate unit(s) could not be preprocessed ({}); every candidate must be checked before KernelX can say where the constant reaches code. The first failure: {first}", units.len(), list_some(units))]
    UnitsFailed {
        /// The units, relative to the tree.
        units: Vec<PathBuf>,
        /// The first failure, with its command and stderr.
        first: Box<KbuildError>,
    },

    /// The compiler's dependency output could not be understood.
    #[error("{}: cannot parse the dependency file gcc wrote for `{command}`", path.display())]
    DepFile {
        /// The dependency file.
        path: PathBuf,
        /// The command that wrote it.
        command: CommandLine,
    },
}

impl KbuildError {
    pub(crate) fn write(path: impl Into<PathBuf>, source: io::Error) -> Self {
        KbuildError::Write {
            path: path.into(),
            source,
        }
    }
}

fn list_some(paths: &[PathBuf]) -> String {
    const SHOWN: usize = 5;
    let mut names: Vec<String> = paths
        .iter()
        .take(SHOWN)
        .map(|p| p.display().to_string())
        .collect();
    if paths.len() > SHOWN {
        names.push(format!("and {} more", paths.len() - SHOWN));
    }
    names.join(", ")
}

fn format_tail(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last lines of its stderr:\n{tail}")
    }
}
