//! Checks of single keys: each turns one raw [`Field`] into a typed value or a positioned error.

use std::path::{Component, Path, PathBuf};

use toml::Spanned;

use crate::error::SpecError;
use crate::position::{Loc, Locator};
use crate::raw::{Field, RawValue};
use crate::types::LineSel;

type Result<T> = std::result::Result<T, SpecError>;

/// The string in `field`, or a type error naming `name`.
pub(crate) fn string<'f>(loc: &Locator, name: &str, field: &'f Field) -> Result<&'f str> {
    match field.value.get_ref() {
        RawValue::String(s) => Ok(s),
        other => Err(wrong_type(loc, name, field.span().start, "a string", other)),
    }
}

/// Like [`string`], and refuses an empty string.
pub(crate) fn non_empty<'f>(
    loc: &Locator,
    name: &'static str,
    field: &'f Field,
) -> Result<&'f str> {
    let s = string(loc, name, field)?;
    if s.is_empty() {
        let Loc { path, line, col } = loc.at(field.span().start);
        return Err(SpecError::EmptyValue {
            path,
            line,
            col,
            field: name,
        });
    }
    Ok(s)
}

fn wrong_type(
    loc: &Locator,
    name: &str,
    at: usize,
    expected: &'static str,
    found: &RawValue,
) -> SpecError {
    let Loc { path, line, col } = loc.at(at);
    SpecError::WrongType {
        path,
        line,
        col,
        field: name.to_owned(),
        expected,
        found: found.kind(),
    }
}

/// A tunable's `name`. The name keys runtime state (pinned BPF objects, lock files), so it is
/// restricted to characters that are safe in one path component.
pub(crate) fn tunable_name(loc: &Locator, field: &Field) -> Result<String> {
    let name = non_empty(loc, "name", field)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let bad = name
        .chars()
        .enumerate()
        .find(|&(i, c)| !allowed(c) || (i == 0 && matches!(c, '-' | '.')));
    if let Some((_, found)) = bad {
        let Loc { path, line, col } = loc.at(field.span().start);
        return Err(SpecError::InvalidName {
            path,
            line,
            col,
            name: name.to_owned(),
            found,
        });
    }
    Ok(name.to_owned())
}

/// Whether `s` can name a C macro.
pub(crate) fn is_c_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The short form's `macro`.
pub(crate) fn macro_name(loc: &Locator, field: &Field) -> Result<String> {
    let name = non_empty(loc, "macro", field)?;
    if !is_c_identifier(name) {
        let Loc { path, line, col } = loc.at(field.span().start);
        return Err(SpecError::InvalidMacroName {
            path,
            line,
            col,
            name: name.to_owned(),
        });
    }
    Ok(name.to_owned())
}

/// A `file` inside the kernel tree. Variant builds map it into a private overlay of the tree,
/// so a path that could leave the tree (absolute, or with `..`) is refused here.
pub(crate) fn source_file(loc: &Locator, field: &Field) -> Result<PathBuf> {
    let value = non_empty(loc, "file", field)?;
    let path = Path::new(value);
    if let Some(reason) = outside_tree(path) {
        let Loc { path, line, col } = loc.at(field.span().start);
        return Err(SpecError::BadFilePath {
            path,
            line,
            col,
            value: value.to_owned(),
            reason,
        });
    }
    Ok(path.to_owned())
}

/// Why `path` could name something outside the kernel tree, if it could.
fn outside_tree(path: &Path) -> Option<&'static str> {
    if path.is_absolute() {
        Some("is absolute")
    } else if path.components().any(|c| c == Component::ParentDir) {
        Some("leaves the kernel tree through `..`")
    } else {
        None
    }
}

/// `exclude_units = ["fs/splice.c", ...]`: distinct units inside the kernel tree. They are
/// compared with the tree's unit paths, so they follow the rules of `file`.
pub(crate) fn exclude_units(loc: &Locator, field: &Field) -> Result<Vec<PathBuf>> {
    let items = array(loc, "exclude_units", field)?;
    let mut units: Vec<PathBuf> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Loc { path, line, col } = loc.at(item.span().start);
        let value = match item.get_ref() {
            RawValue::String(s) => s,
            other => {
                return Err(SpecError::ExcludeUnitNotString {
                    path,
                    line,
                    col,
                    index: i + 1,
                    found: other.kind(),
                });
            }
        };
        let unit = Path::new(value);
        let reason = if value.is_empty() {
            Some("is empty")
        } else {
            outside_tree(unit)
        };
        if let Some(reason) = reason {
            return Err(SpecError::BadExcludeUnit {
                path,
                line,
                col,
                index: i + 1,
                value: value.clone(),
                reason,
            });
        }
        // `Path` equality ignores `//` and inner `./`, as the pipeline's comparison does.
        if let Some(first) = units.iter().position(|u| u == unit) {
            return Err(SpecError::DuplicateExcludeUnit {
                path,
                line,
                col,
                value: value.clone(),
                first: first + 1,
                second: i + 1,
            });
        }
        units.push(unit.to_owned());
    }
    Ok(units)
}

/// The elements of an array-valued field, or a type error.
fn array<'f>(loc: &Locator, name: &str, field: &'f Field) -> Result<&'f [Spanned<RawValue>]> {
    match field.value.get_ref() {
        RawValue::Array(items) => Ok(items),
        other => Err(wrong_type(loc, name, field.span().start, "an array", other)),
    }
}

/// `values = [V1, V2, V3]`: three distinct integers.
pub(crate) fn values(loc: &Locator, field: &Field) -> Result<[i64; 3]> {
    let items = array(loc, "values", field)?;
    let mut ints = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.get_ref() {
            RawValue::Integer(v) => ints.push(*v),
            other => {
                let Loc { path, line, col } = loc.at(item.span().start);
                return Err(SpecError::ValueNotInteger {
                    path,
                    line,
                    col,
                    index: i + 1,
                    found: other.kind(),
                });
            }
        }
    }
    let Ok(values) = <[i64; 3]>::try_from(ints) else {
        let Loc { path, line, col } = loc.at(field.span().start);
        return Err(SpecError::ValuesCount {
            path,
            line,
            col,
            found: items.len(),
        });
    };
    for second in 1..3 {
        if let Some(first) = (0..second).find(|&first| values[first] == values[second]) {
            let Loc { path, line, col } = loc.at(items[second].span().start);
            let value = values[second];
            return Err(SpecError::DuplicateValue {
                path,
                line,
                col,
                value,
                first: first + 1,
                second: second + 1,
            });
        }
    }
    Ok(values)
}

/// `modified = ["text for V2", "text for V3"]`; each must change the source, differently.
pub(crate) fn modified(loc: &Locator, field: &Field, original: &str) -> Result<[String; 2]> {
    let items = array(loc, "modified", field)?;
    let mut texts = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.get_ref() {
            RawValue::String(s) => texts.push(s.clone()),
            other => {
                let Loc { path, line, col } = loc.at(item.span().start);
                return Err(SpecError::ModifiedNotString {
                    path,
                    line,
                    col,
                    index: i + 1,
                    found: other.kind(),
                });
            }
        }
    }
    let Ok(texts) = <[String; 2]>::try_from(texts) else {
        let Loc { path, line, col } = loc.at(field.span().start);
        return Err(SpecError::ModifiedCount {
            path,
            line,
            col,
            found: items.len(),
        });
    };
    let unchanged = if texts[0] == original {
        Some((
            0,
            "is identical to `original`, so that build would not change; write the source text that gives V2",
        ))
    } else if texts[1] == original {
        Some((
            1,
            "is identical to `original`, so that build would not change; write the source text that gives V3",
        ))
    } else if texts[1] == texts[0] {
        Some((
            1,
            "is identical to entry 1, so the V2 and V3 builds would be the same; write the source text that gives V3",
        ))
    } else {
        None
    };
    if let Some((i, reason)) = unchanged {
        let Loc { path, line, col } = loc.at(items[i].span().start);
        return Err(SpecError::ModifiedUnchanged {
            path,
            line,
            col,
            index: i + 1,
            reason,
        });
    }
    Ok(texts)
}

/// `lines = "156,248"` or `"10-20"`: where `original` may be replaced. An empty string means
/// no restriction, as in the prototype.
pub(crate) fn lines(loc: &Locator, field: &Field) -> Result<Option<Vec<LineSel>>> {
    let text = string(loc, "lines", field)?;
    if text.is_empty() {
        return Ok(None);
    }
    // Point into the string when it is written without escapes, so the column is the entry's.
    let span = field.span();
    let written = loc.text().get(span.clone()).unwrap_or("");
    let inner_start = (written.len() == text.len() + 2
        && written.get(1..written.len() - 1) == Some(text))
    .then_some(span.start + 1);

    let mut sels: Vec<LineSel> = Vec::new();
    let mut offset = 0;
    for entry in text.split(',') {
        let at = inner_start.map_or(span.start, |start| {
            start + offset + (entry.len() - entry.trim_start().len())
        });
        offset += entry.len() + 1;
        let bad = |reason: String| {
            let Loc { path, line, col } = loc.at(at);
            SpecError::BadLines {
                path,
                line,
                col,
                entry: entry.trim().to_owned(),
                reason,
            }
        };
        let sel = parse_line_sel(entry.trim()).map_err(&bad)?;
        if let Some(prev) = sels
            .iter()
            .find(|p| p.first <= sel.last && sel.first <= p.last)
        {
            let line = sel.first.max(prev.first);
            return Err(bad(format!("selects line {line} again")));
        }
        sels.push(sel);
    }
    Ok(Some(sels))
}

fn parse_line_sel(entry: &str) -> std::result::Result<LineSel, String> {
    if entry.is_empty() {
        return Err("is empty (a stray comma?)".into());
    }
    let number = |s: &str| -> std::result::Result<u32, String> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err("is not a line number or a `first-last` range".into());
        }
        match s.parse::<u32>() {
            Ok(0) => Err("names line 0, but lines are numbered from 1".into()),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("is above the largest line number, {}", u32::MAX)),
        }
    };
    match entry.split_once('-') {
        None => number(entry).map(|n| LineSel::new(n, n)),
        Some((first, last)) => {
            let (first, last) = (number(first)?, number(last)?);
            if first > last {
                return Err(format!(
                    "is a reversed range (did you mean {last}-{first}?)"
                ));
            }
            Ok(LineSel::new(first, last))
        }
    }
}

/// `start_offset`/`end_offset`: a TOML integer, or a string in hex with a `0x` prefix (the
/// prototype's form, e.g. "0x6b"). A string without the prefix is refused rather than guessed:
/// the prototype read it as hex, a reader would take it as decimal.
pub(crate) fn offset(loc: &Locator, name: &'static str, field: &Field) -> Result<u32> {
    let at = field.span().start;
    let bad = |text: String, reason: &'static str| {
        let Loc { path, line, col } = loc.at(at);
        SpecError::BadOffset {
            path,
            line,
            col,
            field: name,
            text,
            reason,
        }
    };
    match field.value.get_ref() {
        RawValue::Integer(v) => {
            if *v < 0 {
                return Err(bad(v.to_string(), "it is negative"));
            }
            u32::try_from(*v).map_err(|_| bad(v.to_string(), "it does not fit in 32 bits"))
        }
        RawValue::String(s) => {
            let quoted = format!("{s:?}");
            let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"));
            let Some(digits) = digits else {
                let reason = if s.starts_with('-') {
                    "it is negative"
                } else {
                    "a string offset is hexadecimal and needs the 0x prefix"
                };
                return Err(bad(quoted, reason));
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(quoted, "it is not a hexadecimal number"));
            }
            u32::from_str_radix(digits, 16).map_err(|_| bad(quoted, "it does not fit in 32 bits"))
        }
        other => Err(wrong_type(
            loc,
            name,
            at,
            "an integer or a hex string",
            other,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_line_selections() {
        assert_eq!(parse_line_sel("156"), Ok(LineSel::new(156, 156)));
        assert_eq!(parse_line_sel("10-20"), Ok(LineSel::new(10, 20)));
        assert_eq!(parse_line_sel("10 - 20"), Ok(LineSel::new(10, 20)));
        assert_eq!(parse_line_sel("7-7"), Ok(LineSel::new(7, 7)));
        for bad in [
            "",
            "abc",
            "0",
            "-5",
            "5-",
            "20-10",
            "1-2-3",
            "+4",
            "4294967296",
            "0x10",
        ] {
            assert!(parse_line_sel(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn recognises_c_identifiers() {
        assert!(is_c_identifier("PIPE_DEF_BUFFERS"));
        assert!(is_c_identifier("_x1"));
        assert!(!is_c_identifier(""));
        assert!(!is_c_identifier("9LIVES"));
        assert!(!is_c_identifier("A B"));
        assert!(!is_c_identifier("É"));
    }
}
