#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod env;
mod error;
mod position;
mod raw;
mod scalar;
mod types;
mod validate;

use std::path::{Path, PathBuf};

pub use env::EnvOverrides;
pub use error::{SpecError, SpecWarning};
pub use types::{LineSel, Parsed, SafeSpan, SpecFile, Tunable, TunableSource};

/// Parses and validates the text of a tunable file; `path` is only used in messages and to
/// resolve a relative `kernel_dir`.
///
/// # Errors
///
/// The first problem found, with the file, line and column; see [`SpecError`].
pub fn parse_str(
    text: &str,
    path: impl AsRef<Path>,
    env: &EnvOverrides,
) -> Result<Parsed, SpecError> {
    let path = path.as_ref();
    let loc = position::Locator::new(path, text);
    let raw = raw::parse(text, &loc)?;
    validate::validate(raw, &loc, env)
}

/// Reads and validates a tunable file.
///
/// # Errors
///
/// [`SpecError::Io`] naming the file when it cannot be read (or is not UTF-8), else as
/// [`parse_str`].
pub fn load(path: impl AsRef<Path>, env: &EnvOverrides) -> Result<Parsed, SpecError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|error| SpecError::Io {
        path: path.to_owned(),
        error,
    })?;
    parse_str(&text, path, env)
}

/// What a command line's `SPEC` argument names, as `kernelx build` and `run` take it: a tunable
/// file, or a bare macro name (`PIPE_DEF_BUFFERS`) for later stages to find in the tree.
///
/// An argument that names an existing file, contains a `/` or ends in `.toml` is read as a file;
/// otherwise it must be a C identifier. A macro name gets the `kernel_dir` of `env`.
///
/// # Errors
///
/// As [`load`] for files; [`SpecError::NotASpecArgument`] for anything else.
pub fn from_argument(argument: &str, env: &EnvOverrides) -> Result<Parsed, SpecError> {
    let path = Path::new(argument);
    if path.exists() || argument.contains('/') || argument.ends_with(".toml") {
        return load(path, env);
    }
    let tunable = Tunable::from_macro_name(argument).map_err(|_| SpecError::NotASpecArgument {
        argument: argument.to_owned(),
    })?;
    Ok(Parsed {
        spec: SpecFile {
            path: PathBuf::from("<command line>"),
            kernel_dir: env.kernel_dir.clone(),
            tunables: vec![tunable],
        },
        warnings: Vec::new(),
    })
}
