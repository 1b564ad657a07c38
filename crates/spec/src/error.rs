//! What can be wrong with a tunable file, and where.
//!
//! Every error but [`SpecError::Io`] and the command-line ones ([`SpecError::BadMacroArgument`],
//! [`SpecError::NotASpecArgument`]) names the file and the
//! 1-based line and column of the thing at fault, and prints as `path:line:col: error: ...`, the
//! form editors and terminals turn into links.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Why a tunable file (or a macro named on the command line) was refused.
///
/// The first problem found is reported; its message says what is wrong and what to write
/// instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The file could not be read.
    #[error("{}: error: cannot read the tunable file: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
    },

    /// The text is not valid TOML, or a table or array of tables has the wrong shape (as
    /// reported by `toml`).
    #[error("{}:{line}:{col}: error: {message}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// What is wrong, on one line.
        message: String,
    },

    /// A required key is absent; the position is that of the table lacking it.
    #[error("{}:{line}:{col}: error: {table} has no `{field}`; {}", path.display(), missing_hint(field))]
    MissingField {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The table, as a user would name it (`[source]`, `[[tunables]] entry 2`, ...).
        table: String,
        /// The missing key.
        field: &'static str,
    },

    /// A key holds a value of the wrong TOML type.
    #[error("{}:{line}:{col}: error: `{field}` must be {expected}, found {found}", path.display())]
    WrongType {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The key (or `key` entry N for an array element).
        field: String,
        /// The type required, e.g. "a string".
        expected: &'static str,
        /// The type found, e.g. "an integer".
        found: &'static str,
    },

    /// A string that must say something is empty.
    #[error("{}:{line}:{col}: error: `{field}` is empty; give it a value", path.display())]
    EmptyValue {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The key.
        field: &'static str,
    },

    /// A tunable name has a character that cannot appear in the file and pin names built from it.
    #[error(
        "{}:{line}:{col}: error: tunable name `{name}` contains {found:?}; use letters, digits, `_`, `-` and `.`, starting with a letter, digit or `_` (the name becomes a file name under /sys/fs/bpf/kernelx)",
        path.display()
    )]
    InvalidName {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The name as written.
        name: String,
        /// The first character refused.
        found: char,
    },

    /// `macro` is not a C identifier.
    #[error(
        "{}:{line}:{col}: error: `macro` = {name:?} is not a C identifier; write the macro's name as in its #define, e.g. \"PIPE_DEF_BUFFERS\"",
        path.display()
    )]
    InvalidMacroName {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The value as written.
        name: String,
    },

    /// `values` does not hold exactly three entries.
    #[error(
        "{}:{line}:{col}: error: `values` must list exactly 3 integers [V1, V2, V3] (the value in the source, then the two probe values), found {found}",
        path.display()
    )]
    ValuesCount {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// How many entries there are.
        found: usize,
    },

    /// A `values` entry is not an integer.
    #[error(
        "{}:{line}:{col}: error: `values` entry {index} must be an integer, found {found}; write it as a TOML integer such as 16 or 0x10, without quotes",
        path.display()
    )]
    ValueNotInteger {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// 1-based entry number.
        index: usize,
        /// The type found.
        found: &'static str,
    },

    /// Two `values` entries are equal, so two builds would not differ.
    #[error(
        "{}:{line}:{col}: error: `values` must be distinct, but V{first} and V{second} are both {value}; pick probe values that differ from the source value and from each other",
        path.display()
    )]
    DuplicateValue {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The repeated value.
        value: i64,
        /// 1-based index of the first occurrence.
        first: usize,
        /// 1-based index of the repeat (the position points here).
        second: usize,
    },

    /// `modified` does not hold exactly two entries.
    #[error(
        "{}:{line}:{col}: error: `modified` must list exactly 2 replacement strings (the source text for V2, then for V3), found {found}",
        path.display()
    )]
    ModifiedCount {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// How many entries there are.
        found: usize,
    },

    /// A `modified` entry is not a string.
    #[error(
        "{}:{line}:{col}: error: `modified` entry {index} must be a string, found {found}; quote the replacement text",
        path.display()
    )]
    ModifiedNotString {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// 1-based entry number.
        index: usize,
        /// The type found.
        found: &'static str,
    },

    /// A replacement would build the same code as another build.
    #[error("{}:{line}:{col}: error: `modified` entry {index} {reason}", path.display())]
    ModifiedUnchanged {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// 1-based entry number.
        index: usize,
        /// Which text it repeats, and what to do.
        reason: &'static str,
    },

    /// A safe-span offset is not a non-negative integer or `0x` hex string that fits 32 bits.
    #[error(
        "{}:{line}:{col}: error: `{field}` = {text} is not a valid offset: {reason}; write a byte offset from the function start as an integer (107) or a hex string (\"0x6b\")",
        path.display()
    )]
    BadOffset {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// `start_offset` or `end_offset`.
        field: &'static str,
        /// The value as written in the file.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A safe span does not end after it starts.
    #[error(
        "{}:{line}:{col}: error: safe span in `{function}` is empty or reversed: start_offset {start:#x} must be below end_offset {end:#x}",
        path.display()
    )]
    EmptySpan {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The function named by the span.
        function: String,
        /// Its start offset.
        start: u32,
        /// Its end offset.
        end: u32,
    },

    /// A `lines` entry is not a 1-based line number or an increasing `first-last` range.
    #[error(
        "{}:{line}:{col}: error: `lines` entry {entry:?} {reason}; write 1-based line numbers or ranges separated by commas, e.g. \"156,248\" or \"10-20\"",
        path.display()
    )]
    BadLines {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The entry, between commas.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A source file path could escape the kernel tree.
    #[error(
        "{}:{line}:{col}: error: `file` = {value:?} {reason}; give the path relative to the kernel tree, e.g. \"block/blk-mq.c\"",
        path.display()
    )]
    BadFilePath {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// An `exclude_units` entry is not a string.
    #[error(
        "{}:{line}:{col}: error: `exclude_units` entry {index} must be a string, found {found}; quote the unit's source file, e.g. \"fs/splice.c\"",
        path.display()
    )]
    ExcludeUnitNotString {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// 1-based entry number.
        index: usize,
        /// The type found.
        found: &'static str,
    },

    /// An `exclude_units` entry is empty or could name a file outside the kernel tree.
    #[error(
        "{}:{line}:{col}: error: `exclude_units` entry {index} = {value:?} {reason}; give the unit's source file relative to the kernel tree, e.g. \"fs/splice.c\"",
        path.display()
    )]
    BadExcludeUnit {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// 1-based entry number.
        index: usize,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A unit is listed twice in `exclude_units`; the position is the second entry's.
    #[error(
        "{}:{line}:{col}: error: `exclude_units` entry {second} repeats entry {first}, {value:?}; list each unit once",
        path.display()
    )]
    DuplicateExcludeUnit {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The repeated unit, as written the second time.
        value: String,
        /// 1-based index of the first occurrence.
        first: usize,
        /// 1-based index of the repeat.
        second: usize,
    },

    /// `kernel_dir` cannot be turned into a directory.
    #[error("{}:{line}:{col}: error: `kernel_dir` = {value:?} {reason}", path.display())]
    BadKernelDir {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The value as written.
        value: String,
        /// What is wrong with it, and what to do.
        reason: &'static str,
    },

    /// Two tunables in one file share a name; the position is the second one's.
    #[error(
        "{}:{line}:{col}: error: tunable name `{name}` is already used at line {first_line}; give each tunable its own name",
        path.display()
    )]
    DuplicateName {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The name.
        name: String,
        /// Line of the first tunable with this name.
        first_line: usize,
    },

    /// Single-form keys (top-level `name`, `[source]`, ...) next to `[[tunables]]`; the
    /// position is the later of the two.
    #[error(
        "{}:{line}:{col}: error: {second} cannot be used together with {first} (line {first_line}): a file describes either one tunable (top-level `name` and [source], or `macro`) or a list of [[tunables]]; move the top-level tunable keys into a [[tunables]] entry",
        path.display()
    )]
    MixedForms {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The construct found first, e.g. `[source]`.
        first: String,
        /// Its line.
        first_line: usize,
        /// The construct at the position, e.g. `[[tunables]]`.
        second: String,
    },

    /// A source key is given both in the tunable's `[source]` table and next to it.
    #[error(
        "{}:{line}:{col}: error: `{field}` is given here and in the [source] table at line {source_line}; keep one of them",
        path.display()
    )]
    SourceTwice {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The key outside `[source]`.
        field: &'static str,
        /// Line of the `[source]` table.
        source_line: usize,
    },

    /// A tunable mixes the macro form with the pattern form; the position is the later key.
    #[error(
        "{}:{line}:{col}: error: `{key}` cannot be combined with `{other}` (line {other_line}): a tunable names either a macro (`macro`, optional `file` and `values`) or a pattern (`file`, `original`, `modified`, `values`, optional `lines`)",
        path.display()
    )]
    BothForms {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The key at the position.
        key: &'static str,
        /// The earlier key of the other form.
        other: &'static str,
        /// Its line.
        other_line: usize,
    },

    /// A tunable says neither what text to replace nor which macro it is.
    #[error(
        "{}:{line}:{col}: error: {table} says neither which macro nor which text to replace; add `macro = \"NAME\"`, or `file`, `original`, `modified` and `values` (in a [source] table for a single-tunable file)",
        path.display()
    )]
    NoSource {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
        /// The tunable's table.
        table: String,
    },

    /// The file describes no tunable at all.
    #[error(
        "{}:{line}:{col}: error: no tunable in this file; write `name` and a [source] table, `macro = \"NAME\"`, or [[tunables]] entries",
        path.display()
    )]
    NoTunables {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        col: usize,
    },

    /// A macro named on the command line is not a C identifier.
    #[error(
        "error: {name:?} is not a macro name; give the identifier from the #define, e.g. PIPE_DEF_BUFFERS"
    )]
    BadMacroArgument {
        /// The argument as given.
        name: String,
    },

    /// A command-line argument that is neither an existing file nor a macro name.
    #[error(
        "error: {argument:?} is neither a tunable file nor a macro name; give a .toml file that \
         exists, or the identifier from the #define, e.g. PIPE_DEF_BUFFERS"
    )]
    NotASpecArgument {
        /// The argument as given.
        argument: String,
    },
}

/// The rest of a [`SpecError::MissingField`] message: what the key holds.
fn missing_hint(field: &str) -> &'static str {
    match field {
        "name" => "add `name = \"...\"`, the tunable's name",
        "file" => "add `file = \"...\"`, the source file relative to the kernel tree",
        "original" => "add `original = \"...\"`, the source text to replace",
        "modified" => "add `modified = [\"...\", \"...\"]`, the replacements that give V2 and V3",
        "values" => "add `values = [V1, V2, V3]`, the value in the source and the two probe values",
        "function" => "add `function = \"...\"`, the kernel function holding the span",
        "start_offset" | "end_offset" => "add the span's byte offset from the function start",
        _ => "add it",
    }
}

impl SpecError {
    /// The file, 1-based line and column the error points at; `None` for errors without a
    /// position (I/O, command-line arguments).
    pub fn location(&self) -> Option<(&Path, usize, usize)> {
        use SpecError as E;
        match self {
            E::Io { .. } | E::BadMacroArgument { .. } | E::NotASpecArgument { .. } => None,
            E::Toml {
                path, line, col, ..
            }
            | E::MissingField {
                path, line, col, ..
            }
            | E::WrongType {
                path, line, col, ..
            }
            | E::EmptyValue {
                path, line, col, ..
            }
            | E::InvalidName {
                path, line, col, ..
            }
            | E::InvalidMacroName {
                path, line, col, ..
            }
            | E::ValuesCount {
                path, line, col, ..
            }
            | E::ValueNotInteger {
                path, line, col, ..
            }
            | E::DuplicateValue {
                path, line, col, ..
            }
            | E::ModifiedCount {
                path, line, col, ..
            }
            | E::ModifiedNotString {
                path, line, col, ..
            }
            | E::ModifiedUnchanged {
                path, line, col, ..
            }
            | E::BadOffset {
                path, line, col, ..
            }
            | E::EmptySpan {
                path, line, col, ..
            }
            | E::BadLines {
                path, line, col, ..
            }
            | E::BadFilePath {
                path, line, col, ..
            }
            | E::ExcludeUnitNotString {
                path, line, col, ..
            }
            | E::BadExcludeUnit {
                path, line, col, ..
            }
            | E::DuplicateExcludeUnit {
                path, line, col, ..
            }
            | E::BadKernelDir {
                path, line, col, ..
            }
            | E::DuplicateName {
                path, line, col, ..
            }
            | E::MixedForms {
                path, line, col, ..
            }
            | E::SourceTwice {
                path, line, col, ..
            }
            | E::BothForms {
                path, line, col, ..
            }
            | E::NoSource {
                path, line, col, ..
            }
            | E::NoTunables { path, line, col } => Some((path, *line, *col)),
        }
    }
}

/// Something accepted but probably not meant, e.g. an unknown key (a typo, or a key of a newer
/// format); it is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecWarning {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// The key warned about.
    pub key: String,
    /// What was ignored, and a suggestion when one is likely.
    pub message: String,
}

impl fmt::Display for SpecWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        write!(
            f,
            "{path}:{}:{}: warning: {}",
            self.line, self.col, self.message
        )
    }
}
