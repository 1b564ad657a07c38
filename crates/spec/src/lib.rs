#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

mod env;
mod error;
mod position;
mod raw;
mod scalar;
mod types;
mod validate;

use std::path::Path;

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
