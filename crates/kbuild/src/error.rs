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
}

fn format_tail(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last lines of its stderr:\n{tail}")
    }
}
