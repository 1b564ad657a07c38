//! The validated description every other crate sees.
//!
//! Values of these types are only made by this crate (`#[non_exhaustive]` forbids struct
//! literals elsewhere), so holding one proves its checks passed: three distinct values, two
//! replacements, a C identifier for a macro, safe spans that end after they start.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{SpecError, SpecWarning};
use crate::scalar;

/// A parsed tunable file and the warnings it raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Parsed {
    /// The validated file.
    pub spec: SpecFile,
    /// Accepted but suspicious content (unknown keys), in file order.
    pub warnings: Vec<SpecWarning>,
}

/// One tunable file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SpecFile {
    /// Where it was read from (as given to [`load`](crate::load) or
    /// [`parse_str`](crate::parse_str)).
    pub path: PathBuf,
    /// The kernel source tree: `KERNEL_DIR` if set, else the file's `kernel_dir` with `~`
    /// expanded and a relative path taken from the file's directory; `None` when neither is
    /// given, for later stages to choose.
    pub kernel_dir: Option<PathBuf>,
    /// The tunables, in file order; their names are distinct.
    pub tunables: Vec<Tunable>,
}

/// One constant to make tunable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Tunable {
    /// Unique within its file; letters, digits, `_`, `-`, `.`. Defaults to the macro's name.
    pub name: String,
    /// Free text; empty when not given.
    pub description: String,
    /// Where the constant is in the kernel source.
    pub source: TunableSource,
    /// Instruction ranges where a value derived from the constant stays live, when the author
    /// gave them; empty means later stages derive them.
    pub safe_spans: Vec<SafeSpan>,
    /// Translation units (source files relative to the kernel tree, e.g. `fs/splice.c`) that
    /// keep the compiled value: the constant is tuned everywhere else. Distinct; empty when
    /// not given.
    pub exclude_units: Vec<PathBuf>,
}

/// How the constant is found in the kernel source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum TunableSource {
    /// The prototype's form: replace `original` by each `modified` text to build V2 and V3.
    #[non_exhaustive]
    Pattern {
        /// Source file, relative to the kernel tree.
        file: PathBuf,
        /// The text to replace (the source as it is, giving V1).
        original: String,
        /// The replacements that give V2 and V3; each differs from `original` and the other.
        modified: [String; 2],
        /// `[V1, V2, V3]`: the value in the source and the two probe values; distinct.
        values: [i64; 3],
        /// Restricts the replacement to these 1-based lines of `file`; `None` means everywhere.
        lines: Option<Vec<LineSel>>,
    },
    /// The short form: a macro's name; later stages find its definition, value and probe
    /// values.
    #[non_exhaustive]
    Macro {
        /// The macro, a C identifier.
        macro_name: String,
        /// Where it is defined, relative to the kernel tree, when the author knows.
        file: Option<PathBuf>,
        /// `[V1, V2, V3]` as in the pattern form, when the author chose them; distinct.
        values: Option<[i64; 3]>,
    },
}

/// A range of source lines, `first..=last`, 1-based; `first == last` for a single line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub struct LineSel {
    /// First line, at least 1.
    pub first: u32,
    /// Last line, not below `first`.
    pub last: u32,
}

impl LineSel {
    pub(crate) fn new(first: u32, last: u32) -> Self {
        debug_assert!(1 <= first && first <= last);
        LineSel { first, last }
    }

    /// Whether the 1-based `line` is selected.
    pub fn contains(&self, line: u32) -> bool {
        (self.first..=self.last).contains(&line)
    }
}

/// A byte range `[start_offset, end_offset)` of a kernel function.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[non_exhaustive]
pub struct SafeSpan {
    /// The function's symbol name.
    pub function: String,
    /// First byte of the span, from the function start.
    pub start_offset: u32,
    /// End of the span (exclusive), from the function start; above `start_offset`.
    pub end_offset: u32,
}

impl Tunable {
    /// The command-line form: a tunable named after a macro, e.g. `kernelx build
    /// PIPE_DEF_BUFFERS`. Later stages find the definition, its value and probe values.
    ///
    /// # Errors
    ///
    /// [`SpecError::BadMacroArgument`] when `name` is not a C identifier.
    pub fn from_macro_name(name: &str) -> Result<Tunable, SpecError> {
        if !scalar::is_c_identifier(name) {
            return Err(SpecError::BadMacroArgument {
                name: name.to_owned(),
            });
        }
        Ok(Tunable {
            name: name.to_owned(),
            description: String::new(),
            source: TunableSource::Macro {
                macro_name: name.to_owned(),
                file: None,
                values: None,
            },
            safe_spans: Vec::new(),
            exclude_units: Vec::new(),
        })
    }

    /// `[V1, V2, V3]` when known (always for the pattern form).
    pub fn values(&self) -> Option<[i64; 3]> {
        match &self.source {
            TunableSource::Pattern { values, .. } => Some(*values),
            TunableSource::Macro { values, .. } => *values,
        }
    }

    /// The source file, relative to the kernel tree, when known (always for the pattern form).
    pub fn file(&self) -> Option<&Path> {
        match &self.source {
            TunableSource::Pattern { file, .. } => Some(file),
            TunableSource::Macro { file, .. } => file.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_macro_name_builds_the_short_form() {
        let tunable = Tunable::from_macro_name("PIPE_DEF_BUFFERS").unwrap();
        assert_eq!(tunable.name, "PIPE_DEF_BUFFERS");
        assert_eq!(
            tunable.source,
            TunableSource::Macro {
                macro_name: "PIPE_DEF_BUFFERS".into(),
                file: None,
                values: None
            }
        );
        assert_eq!(tunable.values(), None);
        assert_eq!(tunable.file(), None);
    }

    #[test]
    fn from_macro_name_rejects_non_identifiers() {
        for bad in ["", "1X", "PIPE DEF", "a-b", "x;", "ca->delay_min"] {
            let err = Tunable::from_macro_name(bad).unwrap_err();
            assert!(matches!(err, SpecError::BadMacroArgument { .. }), "{bad:?}");
        }
        assert_eq!(
            Tunable::from_macro_name("1X").unwrap_err().to_string(),
            "error: \"1X\" is not a macro name; give the identifier from the #define, e.g. PIPE_DEF_BUFFERS"
        );
    }

    #[test]
    fn line_sel_contains_its_bounds() {
        let sel = LineSel::new(10, 20);
        assert!(sel.contains(10) && sel.contains(20) && !sel.contains(9) && !sel.contains(21));
    }
}
