//! kbuild command lines as data: built by pure functions, rendered for humans, run in one
//! place.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{KbuildError, KernelTree};

/// The compiler a kernel was built with, as kbuild's make variables name it.
///
/// To reproduce the running kernel's code, a tree must be built with the same compiler and
/// the same make variables as the distribution used (`CONFIG_CC_VERSION_TEXT` in its config
/// records the compiler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    /// `ARCH=`: the kernel's source architecture (`x86`, not `x86_64`, as distributions pass
    /// it; kconfig's `CONFIG_64BIT` picks the word size).
    pub arch: String,
    /// `CROSS_COMPILE=`: the prefix of binutils' names, e.g. `x86_64-linux-gnu-`.
    pub cross_compile: String,
    /// `CC=`: the compiler driver, e.g. `x86_64-linux-gnu-gcc-12`.
    pub cc: String,
}

impl Toolchain {
    /// The toolchain Debian 12 (bookworm) builds its 6.12 kernels with:
    /// `x86_64-linux-gnu-gcc-12`, binutils prefixed `x86_64-linux-gnu-`.
    ///
    /// Passing `ARCH=x86` is what a native x86-64 build picks by default (kbuild's `SUBARCH`);
    /// it is spelled out so the command means the same on any build machine.
    pub fn debian_gcc12() -> Self {
        Toolchain {
            arch: "x86".to_owned(),
            cross_compile: "x86_64-linux-gnu-".to_owned(),
            cc: "x86_64-linux-gnu-gcc-12".to_owned(),
        }
    }
}

impl Default for Toolchain {
    /// [`Toolchain::debian_gcc12`], the toolchain of the kernel KernelX is developed against.
    fn default() -> Self {
        Self::debian_gcc12()
    }
}

/// The arguments of a `make` invocation on `tree` with `toolchain`, `jobs` parallel jobs and
/// `targets` (e.g. `["olddefconfig"]`, `["prepare"]`, `["fs/pipe.o"]`).
///
/// The result is `-C <tree> ARCH=.. CROSS_COMPILE=.. CC=.. -j<jobs> <targets>...`.
pub fn make_args(
    tree: &KernelTree,
    toolchain: &Toolchain,
    jobs: NonZeroUsize,
    targets: &[&str],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-C".into(), tree.path().into()];
    args.push(assignment("ARCH", &toolchain.arch));
    args.push(assignment("CROSS_COMPILE", &toolchain.cross_compile));
    args.push(assignment("CC", &toolchain.cc));
    args.push(format!("-j{jobs}").into());
    args.extend(targets.iter().map(OsString::from));
    args
}

/// The full `make` command for [`make_args`].
pub fn make_command(
    tree: &KernelTree,
    toolchain: &Toolchain,
    jobs: NonZeroUsize,
    targets: &[&str],
) -> CommandLine {
    CommandLine::new("make", make_args(tree, toolchain, jobs, targets))
}

fn assignment(name: &str, value: &str) -> OsString {
    format!("{name}={value}").into()
}

/// A command as data: the program, its arguments and the directory it runs in.
///
/// Its [`Display`](fmt::Display) renders it as a POSIX shell would need it typed, so error
/// messages show a command the user can copy and run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommandLine {
    /// The program, looked up on `PATH` when it has no slash.
    pub program: OsString,
    /// Its arguments, without the program name.
    pub args: Vec<OsString>,
    /// The working directory; `None` runs it where the caller is. kbuild's compile commands
    /// name files relative to the top of the tree, so they carry it.
    pub dir: Option<PathBuf>,
}

/// How many lines of standard error a [`KbuildError::CommandFailed`] keeps.
const STDERR_TAIL_LINES: usize = 20;

impl CommandLine {
    /// A command running `program` with `args`.
    pub fn new(program: impl Into<OsString>, args: Vec<OsString>) -> Self {
        CommandLine {
            program: program.into(),
            args,
            dir: None,
        }
    }

    /// The same command, run in `dir`.
    pub fn in_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// A [`std::process::Command`] for this command line, for callers that need to stream
    /// its output; [`CommandLine::run`] covers the common case.
    pub fn to_command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.args(&self.args);
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
    }

    /// Runs the command to completion, capturing its output.
    ///
    /// A command that cannot start, or that exits unsuccessfully, is an error naming the
    /// rendered command line (and, for a failure, the tail of its stderr).
    pub fn run(&self) -> Result<Output, KbuildError> {
        let output = self
            .to_command()
            .output()
            .map_err(|source| KbuildError::Spawn {
                command: self.clone(),
                source,
            })?;
        if output.status.success() {
            return Ok(output);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n");
        Err(KbuildError::CommandFailed {
            command: self.clone(),
            status: output.status,
            stderr_tail: tail,
        })
    }
}

impl fmt::Display for CommandLine {
    /// Shell-quoted: `make -C '/src/my tree' CC=x86_64-linux-gnu-gcc-12 prepare`, preceded by
    /// `cd <dir> && ` when the command has a working directory.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(dir) = &self.dir {
            write!(f, "cd {} && ", shell_quote(dir))?;
        }
        write_quoted(f, &self.program)?;
        for arg in &self.args {
            f.write_str(" ")?;
            write_quoted(f, arg)?;
        }
        Ok(())
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, word: &OsStr) -> fmt::Result {
    f.write_str(&shell_quote(word))
}

/// `word` as a POSIX shell reads it back as one word: unchanged when it holds only characters
/// no shell treats specially, otherwise in single quotes (with `'` as `'\''`).
///
/// Bytes that are not UTF-8 are shown as U+FFFD, so the rendering is lossy only for such
/// names. Used by [`CommandLine`]'s `Display`, and for paths in messages that show a shell
/// redirection.
pub fn shell_quote(word: impl AsRef<OsStr>) -> String {
    let word = word.as_ref().to_string_lossy();
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::tree::tests::fake_tree;

    fn jobs(n: usize) -> NonZeroUsize {
        NonZeroUsize::new(n).unwrap()
    }

    fn tree_at(dir: &Path) -> KernelTree {
        fake_tree(dir, "");
        KernelTree::open(dir).unwrap()
    }

    #[test]
    fn make_args_for_prepare() {
        let dir = tempfile::tempdir().unwrap();
        let tree = tree_at(dir.path());
        let args = make_args(&tree, &Toolchain::debian_gcc12(), jobs(2), &["prepare"]);
        let expected: Vec<OsString> = vec![
            "-C".into(),
            dir.path().into(),
            "ARCH=x86".into(),
            "CROSS_COMPILE=x86_64-linux-gnu-".into(),
            "CC=x86_64-linux-gnu-gcc-12".into(),
            "-j2".into(),
            "prepare".into(),
        ];
        assert_eq!(args, expected);
    }

    #[test]
    fn make_command_keeps_targets_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let tree = tree_at(dir.path());
        let toolchain = Toolchain {
            arch: "x86".into(),
            cross_compile: String::new(),
            cc: "gcc".into(),
        };
        let cmd = make_command(&tree, &toolchain, jobs(1), &["olddefconfig", "fs/pipe.o"]);
        assert_eq!(cmd.program, OsString::from("make"));
        assert_eq!(
            cmd.args[2..],
            [
                OsString::from("ARCH=x86"),
                "CROSS_COMPILE=".into(),
                "CC=gcc".into(),
                "-j1".into(),
                "olddefconfig".into(),
                "fs/pipe.o".into(),
            ]
        );
    }

    #[test]
    fn display_quotes_only_what_needs_it() {
        let cmd = CommandLine::new(
            "make",
            vec![
                "-C".into(),
                "/src/my tree".into(),
                "CC=x86_64-linux-gnu-gcc-12".into(),
                "it's".into(),
                "".into(),
                "$HOME".into(),
            ],
        );
        assert_eq!(
            cmd.to_string(),
            r#"make -C '/src/my tree' CC=x86_64-linux-gnu-gcc-12 'it'\''s' '' '$HOME'"#
        );
        let cmd = CommandLine::new("gcc", vec!["-c".into()]).in_dir("/src/my tree");
        assert_eq!(cmd.to_string(), "cd '/src/my tree' && gcc -c");
    }

    #[test]
    fn runs_in_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = CommandLine::new("pwd", vec![])
            .in_dir(dir.path())
            .run()
            .unwrap();
        let printed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            Path::new(printed.trim()).canonicalize().unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }

    #[test]
    fn run_reports_the_command_and_stderr_tail() {
        let ok = CommandLine::new("sh", vec!["-c".into(), "echo out".into()])
            .run()
            .unwrap();
        assert_eq!(ok.stdout, b"out\n");

        let script = "for i in $(seq 1 30); do echo line$i >&2; done; exit 3";
        let err = CommandLine::new("sh", vec!["-c".into(), script.into()])
            .run()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("`sh -c 'for i in"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("line30") && text.contains("line11"), "{text}");
        assert!(!text.contains("line10\n"), "{text}");

        let err = CommandLine::new("/nonexistent/kernelx-test-program", vec![])
            .run()
            .unwrap_err();
        assert!(matches!(err, KbuildError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("installed"), "{err}");
    }
}
