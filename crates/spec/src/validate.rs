//! From the raw mirror to the validated types.
//!
//! 1. `kernel_dir`: type, then `KERNEL_DIR` override, `~` expansion.
//! 2. Which form: `[[tunables]]` (multi) or tunable keys at the top level (single/short); both
//!    at once is an error pointing at the later one.
//! 3. Each tunable, in file order: name, description, its source keys (in `[source]` or inline, not both),
//!    pattern or macro (not both), safe spans, excluded units.
//! 4. Names unique in the file, checked as each tunable is read, so the first error reported
//!    is the earliest; unknown keys become warnings, in file order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::env::{EnvOverrides, Expanded, expand_home};
use crate::error::{SpecError, SpecWarning};
use crate::position::{Loc, Locator};
use crate::raw::{Field, RawSafeSpan, RawSource, RawSpecFile, RawTunable};
use crate::scalar;
use crate::types::{Parsed, SafeSpan, SpecFile, Tunable, TunableSource};

type Result<T> = std::result::Result<T, SpecError>;

const SOURCE_KEYS: &[&str] = &["file", "original", "modified", "values", "lines", "macro"];
const TUNABLE_KEYS: &[&str] = &[
    "name",
    "description",
    "source",
    "safe_spans",
    "exclude_units",
];
const SPAN_KEYS: &[&str] = &["function", "start_offset", "end_offset"];

/// Checks a parsed file; see the module doc for the order of the checks.
pub(crate) fn validate(raw: RawSpecFile, loc: &Locator, env: &EnvOverrides) -> Result<Parsed> {
    let mut check = Checker {
        loc,
        warnings: Vec::new(),
    };
    let kernel_dir = check.kernel_dir(raw.kernel_dir.as_ref(), env)?;
    let root_keys: Vec<&str> = ["kernel_dir", "tunables"]
        .iter()
        .chain(TUNABLE_KEYS)
        .chain(SOURCE_KEYS)
        .copied()
        .collect();
    check.warn_unknown(&raw.unknown, "at the top level", &root_keys);

    let single = single_form_keys(&raw.single);
    let tunables = match raw.tunables {
        Some(list) => {
            let list_at = start(&list);
            if let Some((single_key, single_at)) = single.into_iter().next() {
                return Err(
                    check.mixed_forms(("[[tunables]]".into(), list_at), (single_key, single_at))
                );
            }
            let entries = list.value.into_inner().0;
            if entries.is_empty() {
                let Loc { path, line, col } = loc.at(list_at);
                return Err(SpecError::NoTunables { path, line, col });
            }
            let mut tunables: Vec<Tunable> = Vec::with_capacity(entries.len());
            // Name offsets, to point a duplicate back at the first use.
            let mut seen: HashMap<String, usize> = HashMap::new();
            for (i, entry) in entries.into_iter().enumerate() {
                let at = entry.span().start;
                let names = TableNames {
                    table: format!("[[tunables]] entry {}", i + 1),
                    context: format!("in [[tunables]] entry {}", i + 1),
                    source: "[tunables.source]",
                    spans: "[[tunables.safe_spans]]",
                };
                let (tunable, name_at) = check.tunable(entry.into_inner(), at, &names)?;
                if let Some(&first_at) = seen.get(&tunable.name) {
                    let Loc { path, line, col } = loc.at(name_at);
                    let (name, first_line) = (tunable.name, loc.line(first_at));
                    return Err(SpecError::DuplicateName {
                        path,
                        line,
                        col,
                        name,
                        first_line,
                    });
                }
                seen.insert(tunable.name.clone(), name_at);
                tunables.push(tunable);
            }
            tunables
        }
        None if single.is_empty() => {
            let Loc { path, line, col } = loc.at(0);
            return Err(SpecError::NoTunables { path, line, col });
        }
        None => {
            let names = TableNames {
                table: "the file".into(),
                context: "at the top level".into(),
                source: "[source]",
                spans: "[[safe_spans]]",
            };
            vec![check.tunable(raw.single, 0, &names)?.0]
        }
    };

    let mut warnings = check.warnings;
    warnings.sort_by_key(|w| (w.line, w.col));
    Ok(Parsed {
        spec: SpecFile {
            path: loc.path().to_owned(),
            kernel_dir,
            tunables,
        },
        warnings,
    })
}

/// How messages name a tunable's tables.
struct TableNames {
    /// The tunable's table, as the subject of a sentence.
    table: String,
    /// Where its unknown keys are, for warnings.
    context: String,
    source: &'static str,
    spans: &'static str,
}

/// Where a key starts: its key for `key = ...`, its header for `[key]`.
fn start<T>(field: &Field<T>) -> usize {
    field.key.start.min(field.span().start)
}

/// The single-form keys present at the top level, as (name in messages, offset), earliest first.
fn single_form_keys(single: &RawTunable) -> Vec<(String, usize)> {
    let mut keys: Vec<(String, usize)> = Vec::new();
    let mut add = |what: String, at: Option<usize>| keys.extend(at.map(|at| (what, at)));
    add("top-level `name`".into(), single.name.as_ref().map(start));
    add(
        "top-level `description`".into(),
        single.description.as_ref().map(start),
    );
    add("[source]".into(), single.source.as_ref().map(start));
    add(
        "top-level [[safe_spans]]".into(),
        single.safe_spans.as_ref().map(start),
    );
    add(
        "top-level `exclude_units`".into(),
        single.exclude_units.as_ref().map(start),
    );
    for (key, field) in single.inline.present() {
        add(format!("top-level `{key}`"), Some(start(field)));
    }
    keys.sort_by_key(|&(_, at)| at);
    keys
}

struct Checker<'a> {
    loc: &'a Locator<'a>,
    warnings: Vec<SpecWarning>,
}

impl Checker<'_> {
    fn kernel_dir(&self, field: Option<&Field>, env: &EnvOverrides) -> Result<Option<PathBuf>> {
        let Some(field) = field else {
            return Ok(env.kernel_dir.clone());
        };
        // The file's value is checked even when the environment overrides it, so a file that
        // works on one machine does not fail on the next.
        let text = scalar::string(self.loc, "kernel_dir", field)?;
        let bad = |reason| {
            let Loc { path, line, col } = self.loc.at(field.span().start);
            SpecError::BadKernelDir {
                path,
                line,
                col,
                value: text.to_owned(),
                reason,
            }
        };
        if text.is_empty() {
            return Err(bad(
                "is empty; name the kernel source tree, or remove the key and set KERNEL_DIR",
            ));
        }
        if let Some(dir) = &env.kernel_dir {
            return Ok(Some(dir.clone()));
        }
        match expand_home(Path::new(text), env.home.as_deref()) {
            // Relative to the file, like paths in Cargo.toml, so the result does not depend on
            // the directory the tool runs in.
            Expanded::Path(dir) if dir.is_relative() => Ok(Some(
                self.loc
                    .path()
                    .parent()
                    .map_or(dir.clone(), |parent| parent.join(&dir)),
            )),
            Expanded::Path(dir) => Ok(Some(dir)),
            Expanded::NoHome => Err(bad(
                "starts with `~`, but HOME is not set; set HOME or KERNEL_DIR, or write the full path",
            )),
            Expanded::OtherUser => Err(bad(
                "starts with `~user`, which is not supported; write the full path",
            )),
        }
    }

    fn mixed_forms(&self, a: (String, usize), b: (String, usize)) -> SpecError {
        let (first, second) = if a.1 <= b.1 { (a, b) } else { (b, a) };
        let Loc { path, line, col } = self.loc.at(second.1);
        SpecError::MixedForms {
            path,
            line,
            col,
            first: first.0,
            first_line: self.loc.line(first.1),
            second: second.0,
        }
    }

    /// One tunable, and the offset its name is reported at (for duplicate names).
    fn tunable(
        &mut self,
        raw: RawTunable,
        at: usize,
        names: &TableNames,
    ) -> Result<(Tunable, usize)> {
        let loc = self.loc;
        let tunable_keys: Vec<&str> = TUNABLE_KEYS.iter().chain(SOURCE_KEYS).copied().collect();
        self.warn_unknown(&raw.unknown, &names.context, &tunable_keys);

        let name = raw
            .name
            .as_ref()
            .map(|f| scalar::tunable_name(loc, f))
            .transpose()?;
        let description = match &raw.description {
            Some(field) => scalar::string(loc, "description", field)?.to_owned(),
            None => String::new(),
        };

        // Source keys live in `[source]` (prototype single form) or next to `name`.
        let (source, source_table, source_at) = match &raw.source {
            Some(table) => {
                if let Some((key, field)) = raw.inline.present().min_by_key(|(_, f)| start(f)) {
                    let Loc { path, line, col } = loc.at(start(field));
                    let source_line = loc.line(start(table));
                    return Err(SpecError::SourceTwice {
                        path,
                        line,
                        col,
                        field: key,
                        source_line,
                    });
                }
                let source = table.value.get_ref();
                self.warn_unknown(
                    &source.unknown,
                    &format!("in {}", names.source),
                    SOURCE_KEYS,
                );
                (source, names.source.to_owned(), start(table))
            }
            None => (&raw.inline, names.table.clone(), at),
        };
        let source = self.source(source, &source_table, source_at, &names.table, at)?;

        let name_at = raw.name.as_ref().map_or(at, start);
        let name = match (name, &source) {
            (Some(name), _) => name,
            (None, TunableSource::Macro { macro_name, .. }) => macro_name.clone(),
            (None, TunableSource::Pattern { .. }) => {
                let Loc { path, line, col } = loc.at(at);
                return Err(SpecError::MissingField {
                    path,
                    line,
                    col,
                    table: names.table.clone(),
                    field: "name",
                });
            }
        };

        let safe_spans = match raw.safe_spans {
            Some(list) => {
                let mut spans = Vec::new();
                for (i, span) in list.value.into_inner().0.into_iter().enumerate() {
                    spans.push(self.safe_span(span, &format!("{} entry {}", names.spans, i + 1))?);
                }
                spans
            }
            None => Vec::new(),
        };
        let exclude_units = raw
            .exclude_units
            .as_ref()
            .map(|f| scalar::exclude_units(loc, f))
            .transpose()?
            .unwrap_or_default();

        Ok((
            Tunable {
                name,
                description,
                source,
                safe_spans,
                exclude_units,
            },
            name_at,
        ))
    }

    /// The pattern or macro form from a tunable's source keys. `table`/`at` name the table
    /// holding them (for missing keys); `tunable`/`tunable_at` the tunable itself.
    fn source(
        &self,
        src: &RawSource,
        table: &str,
        at: usize,
        tunable: &str,
        tunable_at: usize,
    ) -> Result<TunableSource> {
        let loc = self.loc;
        let pattern_keys = [
            ("original", &src.original),
            ("modified", &src.modified),
            ("lines", &src.lines),
        ];
        let first_pattern_key = pattern_keys
            .iter()
            .filter_map(|(key, field)| field.as_ref().map(|f| (*key, start(f))))
            .min_by_key(|&(_, at)| at);

        if let Some(macro_field) = &src.macro_name {
            if let Some((pattern_key, pattern_at)) = first_pattern_key {
                let macro_at = start(macro_field);
                let ((key, key_at), (other, other_at)) = if macro_at < pattern_at {
                    ((pattern_key, pattern_at), ("macro", macro_at))
                } else {
                    (("macro", macro_at), (pattern_key, pattern_at))
                };
                let Loc { path, line, col } = loc.at(key_at);
                return Err(SpecError::BothForms {
                    path,
                    line,
                    col,
                    key,
                    other,
                    other_line: loc.line(other_at),
                });
            }
            return Ok(TunableSource::Macro {
                macro_name: scalar::macro_name(loc, macro_field)?,
                file: src
                    .file
                    .as_ref()
                    .map(|f| scalar::source_file(loc, f))
                    .transpose()?,
                values: src
                    .values
                    .as_ref()
                    .map(|f| scalar::values(loc, f))
                    .transpose()?,
            });
        }

        if first_pattern_key.is_none() {
            let Loc { path, line, col } = loc.at(tunable_at);
            return Err(SpecError::NoSource {
                path,
                line,
                col,
                table: tunable.to_owned(),
            });
        }
        let file = require(loc, &src.file, "file", table, at)?;
        let original = require(loc, &src.original, "original", table, at)?;
        let modified = require(loc, &src.modified, "modified", table, at)?;
        let values = require(loc, &src.values, "values", table, at)?;
        let original = scalar::non_empty(loc, "original", original)?;
        Ok(TunableSource::Pattern {
            file: scalar::source_file(loc, file)?,
            original: original.to_owned(),
            modified: scalar::modified(loc, modified, original)?,
            values: scalar::values(loc, values)?,
            lines: src
                .lines
                .as_ref()
                .map(|f| scalar::lines(loc, f))
                .transpose()?
                .flatten(),
        })
    }

    fn safe_span(&mut self, span: Spanned<RawSafeSpan>, table: &str) -> Result<SafeSpan> {
        let loc = self.loc;
        let at = span.span().start;
        let raw = span.into_inner();
        self.warn_unknown(&raw.unknown, &format!("in {table}"), SPAN_KEYS);
        let function = require(loc, &raw.function, "function", table, at)?;
        let start_offset = require(loc, &raw.start_offset, "start_offset", table, at)?;
        let end_offset = require(loc, &raw.end_offset, "end_offset", table, at)?;
        let function = scalar::non_empty(loc, "function", function)?.to_owned();
        let (start, end) = (
            scalar::offset(loc, "start_offset", start_offset)?,
            scalar::offset(loc, "end_offset", end_offset)?,
        );
        if start >= end {
            let Loc { path, line, col } = loc.at(start_offset.span().start);
            return Err(SpecError::EmptySpan {
                path,
                line,
                col,
                function,
                start,
                end,
            });
        }
        Ok(SafeSpan {
            function,
            start_offset: start,
            end_offset: end,
        })
    }

    fn warn_unknown(&mut self, unknown: &[Spanned<String>], context: &str, known: &[&str]) {
        for key in unknown {
            let Loc { path, line, col } = self.loc.at(key.span().start);
            let key = key.get_ref().clone();
            let mut message = format!("unknown key `{key}` {context} is ignored");
            if let Some(near) = known.iter().find(|k| is_near(&key, k)) {
                message.push_str(&format!("; did you mean `{near}`?"));
            }
            self.warnings.push(SpecWarning {
                path,
                line,
                col,
                key,
                message,
            });
        }
    }
}

/// The field, or a missing-key error pointing at the table (at offset `at`) that lacks it.
fn require<'f>(
    loc: &Locator,
    value: &'f Option<Field>,
    field: &'static str,
    table: &str,
    at: usize,
) -> Result<&'f Field> {
    value.as_ref().ok_or_else(|| {
        let Loc { path, line, col } = loc.at(at);
        SpecError::MissingField {
            path,
            line,
            col,
            table: table.to_owned(),
            field,
        }
    })
}

/// Whether `typed` looks like a misspelling of `known`: same letters ignoring case, or at most
/// two single-character edits away (for keys long enough that two edits are not a new word).
fn is_near(typed: &str, known: &str) -> bool {
    let (a, b) = (typed.to_ascii_lowercase(), known.to_ascii_lowercase());
    if a == b {
        return true;
    }
    let limit = if b.len() >= 6 { 2 } else { 1 };
    edit_distance(a.as_bytes(), b.as_bytes()) <= limit
}

/// Levenshtein distance; keys are short, so the plain two-row table is enough.
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut row = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            row[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(row[j] + 1);
        }
        prev = row;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::{edit_distance, is_near};

    #[test]
    fn measures_edit_distance() {
        assert_eq!(edit_distance(b"values", b"values"), 0);
        assert_eq!(edit_distance(b"valeus", b"values"), 2);
        assert_eq!(edit_distance(b"vaules", b"values"), 2);
        assert_eq!(edit_distance(b"", b"abc"), 3);
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
    }

    #[test]
    fn suggests_only_close_keys() {
        assert!(is_near("valeus", "values"));
        assert!(is_near("Name", "name"));
        assert!(is_near("nam", "name"));
        assert!(!is_near("author", "macro"));
        assert!(!is_near("id", "file"));
    }
}
