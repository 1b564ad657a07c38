//! What a tunable changes in the tree: one file, and its text for V1, V2 and V3.
//!
//! The pattern form (the prototype's) replaces `original` by each `modified` text. The macro
//! form finds the `#define`, evaluates its value as V1 and, unless the tunable gives them,
//! picks V2 and V3. Neither writes anything: the texts are handed to the overlay.

use std::fmt;
use std::path::{Path, PathBuf};

use kernelx_spec::{LineSel, Tunable, TunableSource};
use serde::Serialize;

use crate::KbuildError;
use crate::cexpr::{self, IntType, IntValue};
use crate::index::TreeIndex;

/// A tunable resolved against a tree: the file it edits and that file's three texts.
#[derive(Debug, Clone)]
pub struct SourceChange {
    /// The edited file, relative to the tree.
    pub file: PathBuf,
    /// `[V1, V2, V3]`.
    pub values: [i64; 3],
    /// The file's text for V1 (as the tree has it), V2 and V3.
    pub texts: [String; 3],
    /// What was changed and why these values, for reports.
    pub summary: ChangeSummary,
}

/// The human-facing part of a [`SourceChange`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeSummary {
    /// The edited file, relative to the tree.
    pub file: PathBuf,
    /// The identifier whose uses decide which translation units are candidates: the macro,
    /// or the macro a pattern's `#define` line defines; `None` for other patterns.
    pub identifier: Option<String>,
    /// The `#define` found, for the macro form.
    pub definition: Option<MacroDefinition>,
    /// How many replacements each of V2 and V3 makes.
    pub replacements: usize,
    /// The 1-based lines that change.
    pub lines: Vec<u32>,
    /// `[V1, V2, V3]`.
    pub values: [i64; 3],
    /// Where the values come from: the tunable, or why KernelX picked them.
    pub values_reason: String,
    /// V1's C type when KernelX picked V2 and V3 (the macro form without `values`): the
    /// values are KernelX's to replace ([`closer_values`]); `None` when the tunable gave them.
    #[serde(skip)]
    pub picked: Option<IntType>,
}

/// One `#define NAME value` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MacroDefinition {
    /// The macro.
    pub name: String,
    /// The file, relative to the tree.
    pub file: PathBuf,
    /// 1-based lines of its definitions in that file (more than one when an `#ifdef` chooses
    /// between equal values).
    pub lines: Vec<u32>,
    /// The value as written, e.g. `(16000U)`.
    pub value_text: String,
    /// Its value.
    pub value: i64,
    /// Its C type, e.g. `unsigned int`.
    pub c_type: String,
}

impl fmt::Display for ChangeSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.lines.iter().map(u32::to_string).collect();
        write!(
            f,
            "{}: {} replacement(s) on line(s) {}; values {:?} ({})",
            self.file.display(),
            self.replacements,
            lines.join(","),
            self.values,
            self.values_reason
        )
    }
}

/// The identifier whose uses make a translation unit a candidate, known before the tree is
/// read: the macro's name, or the name a pattern's `#define` line defines.
pub fn tunable_identifier(tunable: &Tunable) -> Option<String> {
    match &tunable.source {
        TunableSource::Macro { macro_name, .. } => Some(macro_name.clone()),
        TunableSource::Pattern { original, .. } => {
            parse_define(original.trim()).map(|d| d.name.to_owned())
        }
    }
}

impl SourceChange {
    /// Resolves `tunable` against the tree that `index` was scanned from (with
    /// [`tunable_identifier`] as its identifier).
    ///
    /// # Errors
    ///
    /// [`KbuildError::PatternNotFound`], [`KbuildError::MacroNotFound`],
    /// [`KbuildError::MacroAmbiguous`], [`KbuildError::MacroUnsupported`],
    /// [`KbuildError::ValueMismatch`], or [`KbuildError::Read`] for the file.
    pub fn resolve(tunable: &Tunable, index: &TreeIndex) -> Result<SourceChange, KbuildError> {
        let root = index.root();
        match &tunable.source {
            TunableSource::Pattern {
                file,
                original,
                modified,
                values,
                lines,
                ..
            } => {
                let text = read(root, file)?;
                let mut texts = [text.clone(), String::new(), String::new()];
                let mut changed_lines = Vec::new();
                let mut count = 0;
                for (i, replacement) in modified.iter().enumerate() {
                    let applied = apply_pattern(&text, original, replacement, lines.as_deref());
                    if applied.replacements == 0 {
                        return Err(KbuildError::PatternNotFound {
                            file: file.clone(),
                            pattern: original.clone(),
                            lines: lines.as_deref().map(format_lines),
                        });
                    }
                    count = applied.replacements;
                    changed_lines = applied.lines;
                    texts[i + 1] = applied.text;
                }
                Ok(SourceChange {
                    file: file.clone(),
                    values: *values,
                    summary: ChangeSummary {
                        file: file.clone(),
                        identifier: index.identifier().map(str::to_owned),
                        definition: None,
                        replacements: count,
                        lines: changed_lines,
                        values: *values,
                        values_reason: "given by the tunable".to_owned(),
                        picked: None,
                    },
                    texts,
                })
            }
            TunableSource::Macro {
                macro_name,
                file,
                values,
                ..
            } => resolve_macro(index, macro_name, file.as_deref(), *values),
        }
    }
}

fn read(root: &Path, file: &Path) -> Result<String, KbuildError> {
    let path = root.join(file);
    std::fs::read_to_string(&path).map_err(|source| KbuildError::Read { path, source })
}

fn format_lines(lines: &[LineSel]) -> String {
    lines
        .iter()
        .map(|l| {
            if l.first == l.last {
                l.first.to_string()
            } else {
                format!("{}-{}", l.first, l.last)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The result of [`apply_pattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The new text.
    pub text: String,
    /// How many occurrences were replaced.
    pub replacements: usize,
    /// The 1-based lines (of the original text) where they started.
    pub lines: Vec<u32>,
}

/// Replaces every occurrence of `original` in `text` by `replacement`, as the prototype does
/// (non-overlapping, left to right). With `lines`, only on those 1-based lines, each line
/// taken on its own (so a pattern cannot span lines there).
pub fn apply_pattern(
    text: &str,
    original: &str,
    replacement: &str,
    lines: Option<&[LineSel]>,
) -> Applied {
    let mut out = String::with_capacity(text.len());
    let mut replacements = 0;
    let mut changed = Vec::new();
    if original.is_empty() {
        return Applied {
            text: text.to_owned(),
            replacements: 0,
            lines: changed,
        };
    }
    match lines {
        None => {
            let mut rest = text;
            let mut line = 1u32;
            while let Some(pos) = rest.find(original) {
                line += rest[..pos].matches('\n').count() as u32;
                if changed.last() != Some(&line) {
                    changed.push(line);
                }
                line += original.matches('\n').count() as u32;
                out.push_str(&rest[..pos]);
                out.push_str(replacement);
                rest = &rest[pos + original.len()..];
                replacements += 1;
            }
            out.push_str(rest);
        }
        Some(selected) => {
            for (n, piece) in text.split_inclusive('\n').enumerate() {
                let line = n as u32 + 1;
                if selected.iter().any(|s| s.contains(line)) && piece.contains(original) {
                    replacements += piece.matches(original).count();
                    changed.push(line);
                    out.push_str(&piece.replace(original, replacement));
                } else {
                    out.push_str(piece);
                }
            }
        }
    }
    Applied {
        text: out,
        replacements,
        lines: changed,
    }
}

/// A `#define` line taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DefineLine<'a> {
    pub name: &'a str,
    /// The value without comments, trimmed; `None` for a function-like macro.
    pub value: Option<&'a str>,
    /// Byte range of the value in the line (before comment removal, trimmed).
    pub value_range: (usize, usize),
    /// The line ends with a `\` continuation.
    pub continued: bool,
}

/// Parses `line` as `#define NAME value` (any spacing). `None` if it is not a `#define`.
pub(crate) fn parse_define(line: &str) -> Option<DefineLine<'_>> {
    let rest = line.trim_start().strip_prefix('#')?.trim_start();
    let rest = rest.strip_prefix("define")?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let name_start = line.len() - rest.trim_start().len();
    let name_len = line[name_start..]
        .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .unwrap_or(line.len() - name_start);
    if name_len == 0 {
        return None;
    }
    let name = &line[name_start..name_start + name_len];
    let after = &line[name_start + name_len..];
    let continued = line.trim_end().ends_with('\\');
    if after.starts_with('(') {
        return Some(DefineLine {
            name,
            value: None,
            value_range: (0, 0),
            continued,
        });
    }
    // The value ends where a comment starts.
    let value_area_start = name_start + name_len;
    let mut end = line.len();
    for marker in ["/*", "//"] {
        if let Some(p) = line[value_area_start..].find(marker) {
            end = end.min(value_area_start + p);
        }
    }
    let area = &line[value_area_start..end];
    let trimmed_start = value_area_start + (area.len() - area.trim_start().len());
    let trimmed_end = value_area_start + area.trim_end().len();
    let value = &line[trimmed_start..trimmed_end.max(trimmed_start)];
    Some(DefineLine {
        name,
        value: Some(value),
        value_range: (trimmed_start, trimmed_end.max(trimmed_start)),
        continued,
    })
}

/// V2 and V3 for a macro whose value is `v1`, and why they were chosen.
///
/// Doubling and halving come first: they keep the sign and the C type of V1, a power of two
/// stays one (so `x / V` and `x * V` keep compiling to shifts, and the three builds line up
/// instruction for instruction), and they stay in V1's order of magnitude. `V1+1`, `V1-1`,
/// `3*V1`, `V1/4` follow for values where those collide, overflow the type or reach zero.
pub fn pick_values(v1: IntValue) -> Result<([i64; 3], String), &'static str> {
    let value = i64::try_from(v1.value).map_err(|_| "V1 does not fit in 64 signed bits")?;
    let v = i128::from(value);
    let candidates: Vec<(&str, i128)> = if v == 0 {
        vec![("1", 1), ("2", 2)]
    } else {
        vec![
            ("2*V1", 2 * v),
            ("V1/2", v / 2),
            ("V1+1", v + 1),
            ("V1-1", v - 1),
            ("3*V1", 3 * v),
            ("V1/4", v / 4),
        ]
    };
    let mut chosen: Vec<(&str, i64)> = Vec::new();
    for (how, candidate) in candidates {
        let fits = v1.ty.holds(candidate) && i64::try_from(candidate).is_ok();
        if !fits || candidate == 0 || candidate == v {
            continue;
        }
        let candidate = candidate as i64;
        if chosen.iter().any(|&(_, c)| c == candidate) {
            continue;
        }
        chosen.push((how, candidate));
        if chosen.len() == 2 {
            break;
        }
    }
    let [(how2, v2), (how3, v3)] = chosen[..] else {
        return Err("no two distinct nonzero values fit the macro's type");
    };
    let power = value > 0 && (value & (value - 1)) == 0;
    let keeps_power = power && [v2, v3].iter().all(|v| v & (v - 1) == 0);
    let reason = format!(
        "picked by KernelX: V2 = {how2} = {v2}, V3 = {how3} = {v3}; they keep the type ({}) and sign of V1 = {value}{}, are nonzero and distinct",
        v1.ty,
        if keeps_power {
            " and stay powers of two like it, so the compiler keeps the same instruction forms"
        } else {
            ""
        }
    );
    Ok(([value, v2, v3], reason))
}

/// Probe values KernelX picked, with the ones that changed code replaced by values closer to
/// V1, or `None` when no closer value is left for one of them.
///
/// `failed[0]` and `failed[1]` say whether V2 and V3 made the compiler choose other
/// instructions than for V1 (an immediate that no longer fits a sign-extended byte, a
/// multiplication that is no longer a shift). Each replacement stays on the same side of V1
/// and moves towards it, one rung at a time: `V1 ± |V1|`, `V1 ± |V1|/2`, `V1 ± |V1|/4`,
/// `V1 ± 1`, keeping what [`pick_values`] keeps (V1's C type, nonzero, distinct from V1 and
/// from the other value) and satisfying `keep` (the caller's rule for values that compile to
/// the same instructions as V1): from a rung that `keep` refuses, the nearest value between
/// it and V1 that it accepts, and when it refuses all of those, the value nearest V1 on
/// either side that it accepts. The reason names each replacement, for the plan's warnings.
pub fn closer_values(
    ty: IntType,
    values: [i64; 3],
    failed: [bool; 2],
    keep: &dyn Fn(i64) -> bool,
) -> Option<([i64; 3], String)> {
    let v1 = i128::from(values[0]);
    let mut next = values;
    let mut reasons = Vec::new();
    for slot in [1, 2] {
        if !failed[slot - 1] {
            continue;
        }
        let dropped = i128::from(values[slot]);
        let other = i128::from(next[3 - slot]);
        let up = dropped > v1;
        let magnitude = v1.abs();
        let fits = |c: i128| ty.holds(c) && c != 0 && c != other && i64::try_from(c).is_ok();
        let refused = std::cell::Cell::new(false);
        let acceptable = |c: i128| {
            let kept = fits(c) && keep(c as i64);
            refused.set(refused.get() || (fits(c) && !kept));
            kept
        };
        let towards = [
            (magnitude, "|V1|"),
            (magnitude / 2, "|V1|/2"),
            (magnitude / 4, "|V1|/4"),
            (1, "1"),
        ]
        .into_iter()
        .filter(|&(step, _)| step > 0 && step < (dropped - v1).abs())
        .find_map(|(step, how)| {
            // From the rung towards V1, nearest to the rung first.
            let c = (step.saturating_sub(MAX_KEEP_SCAN).max(1)..=step)
                .rev()
                .map(|s| if up { v1 + s } else { v1 - s })
                .find(|&c| acceptable(c))?;
            let sign = if up { '+' } else { '-' };
            let how = if (c - v1).abs() == step {
                format!("V1 {sign} {how}")
            } else {
                format!("V1 {sign} about {how}")
            };
            Some((c, how))
        });
        // `keep` refused every value on this side: the value nearest V1 it accepts, on
        // either side (not one that was just dropped).
        let (value, how) = match towards {
            Some(found) => found,
            None if refused.get() => (1..=MAX_KEEP_SCAN)
                .flat_map(|d| [v1 - d, v1 + d])
                .find(|&c| c != dropped && acceptable(c))
                .map(|c| (c, "the nearest value to V1 that keeps its code".to_owned()))?,
            None => return None,
        };
        next[slot] = value as i64;
        reasons.push(format!("V{} = {how} = {value}", slot + 1));
    }
    if reasons.is_empty() {
        return None;
    }
    Some((
        next,
        format!(
            "{}: closer to V1 = {}, same type ({ty})",
            reasons.join(", "),
            values[0]
        ),
    ))
}

/// How far [`closer_values`] looks from a rung for a value `keep` accepts.
const MAX_KEEP_SCAN: i128 = 1 << 16;

/// Directories whose definitions never reach this architecture's build.
fn foreign_arch(path: &str, arch: &str) -> bool {
    path.strip_prefix("arch/")
        .is_some_and(|rest| !rest.starts_with(&format!("{arch}/")))
}

fn in_include_dirs(path: &str, arch: &str) -> bool {
    path.starts_with("include/") || path.starts_with(&format!("arch/{arch}/include/"))
}

struct Found {
    file: PathBuf,
    line: u32,
    text: String,
    value: Option<String>,
    value_range: (usize, usize),
    continued: bool,
}

fn resolve_macro(
    index: &TreeIndex,
    name: &str,
    file: Option<&Path>,
    given: Option<[i64; 3]>,
) -> Result<SourceChange, KbuildError> {
    let root = index.root();
    let arch = index.arch();
    let mut found = Vec::new();
    let files: Vec<PathBuf> = match file {
        Some(f) => vec![f.to_owned()],
        None => index
            .mentions()
            .into_iter()
            .map(|(p, _)| p.to_owned())
            .filter(|p| !foreign_arch(&p.to_string_lossy(), arch))
            .collect(),
    };
    for path in &files {
        let text = read(root, path)?;
        for (n, line) in text.lines().enumerate() {
            if let Some(define) = parse_define(line)
                && define.name == name
            {
                found.push(Found {
                    file: path.clone(),
                    line: n as u32 + 1,
                    text: line.to_owned(),
                    value: define.value.map(str::to_owned),
                    value_range: define.value_range,
                    continued: define.continued,
                });
            }
        }
    }
    if found.is_empty() {
        return Err(KbuildError::MacroNotFound {
            name: name.to_owned(),
            searched: match file {
                Some(f) => f.display().to_string(),
                None => format!(
                    "the {} source files of {}",
                    index.file_count(),
                    root.display()
                ),
            },
        });
    }
    let list = |defs: &[&Found]| -> Vec<String> {
        defs.iter()
            .map(|d| format!("{}:{}: {}", d.file.display(), d.line, d.text.trim()))
            .collect()
    };
    // One file must hold the definition: the only one, or the only one in the include
    // directories (a header every unit sees beats file-local redefinitions elsewhere).
    let all: Vec<&Found> = found.iter().collect();
    let mut files_with: Vec<&PathBuf> = all.iter().map(|d| &d.file).collect();
    files_with.dedup();
    let chosen: Vec<&Found> = if files_with.len() == 1 {
        all
    } else {
        let in_include: Vec<&Found> = all
            .iter()
            .copied()
            .filter(|d| in_include_dirs(&d.file.to_string_lossy(), arch))
            .collect();
        let mut include_files: Vec<&PathBuf> = in_include.iter().map(|d| &d.file).collect();
        include_files.dedup();
        if include_files.len() == 1 {
            in_include
        } else {
            return Err(KbuildError::MacroAmbiguous {
                name: name.to_owned(),
                definitions: list(&all),
            });
        }
    };
    let first = chosen[0];
    let unsupported = |d: &Found, reason: &str| KbuildError::MacroUnsupported {
        file: d.file.clone(),
        line: d.line,
        text: d.text.trim().to_owned(),
        reason: reason.to_owned(),
    };
    let mut evaluated: Vec<IntValue> = Vec::new();
    for d in &chosen {
        if d.continued {
            return Err(unsupported(d, "the definition continues on the next line"));
        }
        let Some(value) = &d.value else {
            return Err(unsupported(d, "it is a function-like macro"));
        };
        let v = cexpr::evaluate(value).map_err(|why| {
            unsupported(
                d,
                &format!("its value is not an integer literal expression ({why})"),
            )
        })?;
        evaluated.push(v);
    }
    if evaluated.iter().any(|v| v.value != evaluated[0].value) {
        return Err(KbuildError::MacroAmbiguous {
            name: name.to_owned(),
            definitions: list(&chosen),
        });
    }
    let v1 = evaluated[0];
    let v1_i64 = i64::try_from(v1.value)
        .map_err(|_| unsupported(first, "its value does not fit in 64 signed bits"))?;
    let (values, values_reason, picked) = match given {
        Some(values) => {
            if values[0] != v1_i64 {
                return Err(KbuildError::ValueMismatch {
                    name: name.to_owned(),
                    file: first.file.clone(),
                    line: first.line,
                    given: values[0],
                    found: v1_i64,
                });
            }
            (values, "given by the tunable".to_owned(), None)
        }
        None => {
            let (values, reason) = pick_values(v1).map_err(|why| unsupported(first, why))?;
            (values, reason, Some(v1.ty))
        }
    };

    let text = read(root, &first.file)?;
    let def_lines: Vec<u32> = chosen.iter().map(|d| d.line).collect();
    let mut texts = [text.clone(), String::new(), String::new()];
    for (slot, &value) in texts[1..].iter_mut().zip(&values[1..]) {
        *slot = rewrite_definitions(&text, &chosen, v1.ty, value);
    }
    let definition = MacroDefinition {
        name: name.to_owned(),
        file: first.file.clone(),
        lines: def_lines.clone(),
        value_text: first.value.clone().unwrap_or_default(),
        value: v1_i64,
        c_type: v1.ty.to_string(),
    };
    Ok(SourceChange {
        file: first.file.clone(),
        values,
        summary: ChangeSummary {
            file: first.file.clone(),
            identifier: Some(name.to_owned()),
            definition: Some(definition),
            replacements: chosen.len(),
            lines: def_lines,
            values,
            values_reason,
            picked,
        },
        texts,
    })
}

fn rewrite_definitions(text: &str, defs: &[&Found], ty: IntType, value: i64) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (n, piece) in text.split_inclusive('\n').enumerate() {
        let line = n as u32 + 1;
        match defs.iter().find(|d| d.line == line) {
            Some(d) => {
                let (start, end) = d.value_range;
                out.push_str(&piece[..start]);
                out.push_str(&cexpr::rewrite_value(&piece[start..end], ty, value));
                out.push_str(&piece[end..]);
            }
            None => out.push_str(piece),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;

    use super::*;
    use crate::BuiltUnits;
    use crate::index::tests::write_files;

    fn sel(spec: &str) -> Vec<LineSel> {
        let toml = format!(
            "name = \"t\"\n[source]\nfile = \"a.c\"\noriginal = \"x\"\nmodified = [\"y\", \"z\"]\nvalues = [1, 2, 3]\nlines = \"{spec}\"\n"
        );
        let parsed = kernelx_spec::parse_str(&toml, "t.toml", &Default::default()).unwrap();
        match &parsed.spec.tunables[0].source {
            TunableSource::Pattern { lines, .. } => lines.clone().unwrap(),
            _ => unreachable!(),
        }
    }

    fn tunable(toml: &str) -> Tunable {
        kernelx_spec::parse_str(toml, "t.toml", &Default::default())
            .unwrap()
            .spec
            .tunables
            .remove(0)
    }

    #[test]
    fn pattern_replaces_every_occurrence_and_counts() {
        let text = "a = 10;\nb = 10;\nc = 100;\n";
        let applied = apply_pattern(text, "10;", "20;", None);
        assert_eq!(applied.text, "a = 20;\nb = 20;\nc = 100;\n");
        assert_eq!(applied.replacements, 2);
        assert_eq!(applied.lines, [1, 2]);

        let none = apply_pattern(text, "11;", "20;", None);
        assert_eq!(none.replacements, 0);
        assert_eq!(none.text, text);
    }

    #[test]
    fn lines_restrict_the_replacement() {
        let text = "x 10\nx 10\nx 10\nx 10\n";
        let applied = apply_pattern(text, "10", "20", Some(&sel("2,4")));
        assert_eq!(applied.text, "x 10\nx 20\nx 10\nx 20\n");
        assert_eq!((applied.replacements, applied.lines), (2, vec![2, 4]));
        let applied = apply_pattern(text, "10", "20", Some(&sel("1-2")));
        assert_eq!(applied.text, "x 20\nx 20\nx 10\nx 10\n");
        let applied = apply_pattern(text, "10", "20", Some(&sel("9")));
        assert_eq!(applied.replacements, 0);
    }

    #[test]
    fn parses_defines() {
        let d = parse_define("#define PIPE_DEF_BUFFERS\t16").unwrap();
        assert_eq!((d.name, d.value), ("PIPE_DEF_BUFFERS", Some("16")));
        let line = "  #  define MAX_SOFTIRQ_TIME (2 * HZ) /* 2 ms */";
        let d = parse_define(line).unwrap();
        assert_eq!((d.name, d.value), ("MAX_SOFTIRQ_TIME", Some("(2 * HZ)")));
        assert_eq!(&line[d.value_range.0..d.value_range.1], "(2 * HZ)");
        let d = parse_define("#define X(a) ((a) + 1)").unwrap();
        assert_eq!((d.name, d.value), ("X", None));
        assert!(parse_define("#define Y \\").unwrap().continued);
        assert_eq!(parse_define("#define Z").unwrap().value, Some(""));
        assert_eq!(parse_define("#defineX 1"), None);
        assert_eq!(parse_define("#undef X"), None);
        assert_eq!(parse_define("int x; // #define X 1"), None);
    }

    #[test]
    fn picks_values_that_keep_type_and_form() {
        let pick = |text: &str| pick_values(cexpr::evaluate(text).unwrap()).unwrap();
        let (values, reason) = pick("16");
        assert_eq!(values, [16, 32, 8]);
        assert!(reason.contains("powers of two"), "{reason}");
        assert!(reason.contains("(int)"), "{reason}");
        assert_eq!(pick("10").0, [10, 20, 5]);
        assert_eq!(pick("1").0, [1, 2, 3]);
        assert_eq!(pick("0").0, [0, 1, 2]);
        assert_eq!(pick("-1").0, [-1, -2, -3]);
        assert_eq!(
            pick("0x7fffffff").0,
            [0x7fff_ffff, 0x3fff_ffff, 0x7fff_fffe]
        );
        assert_eq!(pick("(16000U)").0, [16000, 32000, 8000]);
        assert_eq!(
            pick("0xffffffffU").0,
            [0xffff_ffff, 0x7fff_ffff, 0xffff_fffe]
        );
    }

    #[test]
    fn closer_values_step_towards_v1_on_the_failing_side() {
        let int = IntType::INT;
        // BLK_MAX_REQUEST_COUNT: 64 changes an instruction's form, 16 does not.
        let mut values = [32, 64, 16];
        let mut ladder = Vec::new();
        while let Some((next, reason)) = closer_values(int, values, [true, false], &|_| true) {
            assert_eq!(next[2], 16, "{reason}");
            ladder.push(next[1]);
            values = next;
        }
        assert_eq!(ladder, [48, 40, 33]);
        let (next, reason) = closer_values(int, [32, 64, 16], [true, false], &|_| true).unwrap();
        assert_eq!(next, [32, 48, 16]);
        assert_eq!(
            reason,
            "V2 = V1 + |V1|/2 = 48: closer to V1 = 32, same type (int)"
        );

        let mut values = [32, 64, 16];
        let mut ladder = Vec::new();
        while let Some((next, _)) = closer_values(int, values, [true, true], &|_| true) {
            ladder.push((next[1], next[2]));
            values = next;
        }
        // Below V1 the first rung (V1 - |V1| = 0) is not a value; then 16, 24, 31. Once one side
        // has no closer value left, the pair cannot be replaced.
        assert_eq!(ladder, [(48, 24), (40, 31)]);

        // Below zero the sides keep their meaning: -16 is further from -8 than -12.
        assert_eq!(
            closer_values(int, [-8, -16, -4], [true, true], &|_| true)
                .unwrap()
                .0,
            [-8, -12, -6]
        );
        // V1 = 1: 2 is its closest neighbour above; 3 can move to 2 only if V2 is not 2.
        assert_eq!(
            closer_values(int, [1, 2, 3], [true, false], &|_| true),
            None
        );
        assert_eq!(
            closer_values(int, [1, 2, 3], [false, true], &|_| true),
            None
        );
        assert_eq!(
            closer_values(int, [1, 3, 0x10], [false, true], &|_| true)
                .unwrap()
                .0,
            [1, 3, 2]
        );
        // Nothing failed: nothing to replace.
        assert_eq!(
            closer_values(int, [32, 64, 16], [false, false], &|_| true),
            None
        );
    }

    #[test]
    fn closer_values_keep_the_type_and_avoid_collisions() {
        let uint = cexpr::evaluate("0xffffffffU").unwrap().ty;
        // Every rung above V1 overflows the type, so V2 cannot move.
        assert_eq!(
            closer_values(
                uint,
                [0xffff_fffe, 0xffff_ffff, 0x7fff_ffff],
                [true, false],
                &|_| true
            ),
            None
        );
        // V1 = 4: V3 = 2 fails; 3 (V1 - 1) is the only rung left, and V2 = 3 would collide.
        assert_eq!(
            closer_values(IntType::INT, [4, 3, 2], [false, true], &|_| true),
            None
        );
        assert_eq!(
            closer_values(IntType::INT, [4, 8, 2], [false, true], &|_| true)
                .unwrap()
                .0,
            [4, 8, 3]
        );
        // A rung that reaches zero is skipped: V1 = 2, V3 = 1 is already the closest.
        assert_eq!(
            closer_values(IntType::INT, [2, 4, 1], [false, true], &|_| true),
            None
        );
    }

    #[test]
    fn closer_values_move_off_rungs_the_caller_refuses() {
        let int = IntType::INT;
        let ends_in_1 = |v: i64| v % 10 == 1;
        // V1 + |V1|/2 = 1513 and V1 - |V1|/2 = 505 are refused: the nearest accepted values
        // between each rung and V1.
        let (next, reason) = closer_values(int, [1009, 2018, 504], [true, true], &ends_in_1)
            .expect("accepted values");
        assert_eq!(next, [1009, 1511, 511]);
        assert!(reason.contains("V2 = V1 + about |V1|/2 = 1511"), "{reason}");
        // Nothing accepted between V1 and the rungs: no replacement.
        assert_eq!(
            closer_values(int, [4, 8, 2], [true, false], &|_| false),
            None
        );
    }

    fn index_of(dir: &Path, name: &str) -> TreeIndex {
        TreeIndex::scan(
            dir,
            "x86",
            Some(name),
            &BuiltUnits::Unrestricted,
            NonZeroUsize::MIN,
        )
        .unwrap()
    }

    #[test]
    fn macro_form_finds_and_rewrites_the_definition() {
        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            &[
                (
                    "include/linux/pipe_fs_i.h",
                    "#ifndef _P\n#define PIPE_DEF_BUFFERS\t(16U) /* pages */\n#endif\n",
                ),
                (
                    "fs/pipe.c",
                    "#include <linux/pipe_fs_i.h>\n#include <asm/x.h>\nint n = PIPE_DEF_BUFFERS;\n",
                ),
                // Another architecture's header, reached only by name: never the definition.
                ("arch/arm/include/asm/x.h", "#define PIPE_DEF_BUFFERS 4\n"),
                ("drivers/x/local.c", "#define PIPE_DEF_BUFFERS 3\n"),
            ],
        );
        let index = index_of(dir.path(), "PIPE_DEF_BUFFERS");
        let change = SourceChange::resolve(
            &Tunable::from_macro_name("PIPE_DEF_BUFFERS").unwrap(),
            &index,
        )
        .unwrap();
        assert_eq!(change.file, Path::new("include/linux/pipe_fs_i.h"));
        assert_eq!(change.values, [16, 32, 8]);
        assert_eq!(
            change.texts[1],
            "#ifndef _P\n#define PIPE_DEF_BUFFERS\t(32U) /* pages */\n#endif\n"
        );
        assert_eq!(
            change.texts[2],
            "#ifndef _P\n#define PIPE_DEF_BUFFERS\t(8U) /* pages */\n#endif\n"
        );
        let def = change.summary.definition.as_ref().unwrap();
        assert_eq!(
            (def.lines.as_slice(), def.value_text.as_str()),
            (&[2][..], "(16U)")
        );
        assert_eq!(def.c_type, "unsigned int");
        assert_eq!(change.summary.lines, [2]);
    }

    #[test]
    fn macro_form_errors_name_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            &[
                ("drivers/a/a.c", "#define RETRIES 3\n"),
                ("drivers/b/b.c", "#define RETRIES 5\n"),
                ("kernel/t.c", "#define TICKS (HZ / 10)\n#define F(x) x\n"),
                (
                    "kernel/u.c",
                    "#define TWICE 1\n#ifdef X\n#define TWICE 2\n#endif\n",
                ),
            ],
        );
        let resolve = |name: &str, toml: Option<&str>| {
            let index = index_of(dir.path(), name);
            let tunable = match toml {
                Some(t) => tunable(t),
                None => Tunable::from_macro_name(name).unwrap(),
            };
            SourceChange::resolve(&tunable, &index)
                .unwrap_err()
                .to_string()
        };
        let err = resolve("RETRIES", None);
        assert!(err.contains("2 different definitions"), "{err}");
        assert!(err.contains("drivers/a/a.c:1: #define RETRIES 3"), "{err}");
        assert!(err.contains("as `file`"), "{err}");
        let err = resolve("TICKS", None);
        assert!(err.contains("kernel/t.c:1:"), "{err}");
        assert!(err.contains("not an integer literal expression"), "{err}");
        assert!(err.contains("pattern form"), "{err}");
        assert!(resolve("F", None).contains("function-like"));
        assert!(resolve("TWICE", None).contains("2 different definitions"));
        let err = resolve("NOPE", None);
        assert!(err.contains("no `#define NOPE`"), "{err}");
        let err = resolve(
            "RETRIES",
            Some(
                "name = \"RETRIES\"\n[source]\nmacro = \"RETRIES\"\nfile = \"drivers/b/b.c\"\nvalues = [3, 6, 9]\n",
            ),
        );
        assert!(err.contains("is 5 in this tree"), "{err}");
        assert!(err.contains("V1 = 3"), "{err}");
    }

    #[test]
    fn macro_form_with_file_and_values() {
        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            &[
                ("drivers/a/a.c", "#define RETRIES 3\n"),
                ("drivers/b/b.c", "#define RETRIES 5\n"),
            ],
        );
        let index = index_of(dir.path(), "RETRIES");
        let t = tunable(
            "name = \"RETRIES\"\n[source]\nmacro = \"RETRIES\"\nfile = \"drivers/b/b.c\"\nvalues = [5, 7, 9]\n",
        );
        let change = SourceChange::resolve(&t, &index).unwrap();
        assert_eq!(
            change.texts[1..],
            ["#define RETRIES 7\n", "#define RETRIES 9\n"]
        );
        assert_eq!(change.summary.values_reason, "given by the tunable");
    }

    #[test]
    fn pattern_form_reports_missing_patterns() {
        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            &[("kernel/softirq.c", "#define MAX_SOFTIRQ_RESTART 10\n")],
        );
        let index = index_of(dir.path(), "MAX_SOFTIRQ_RESTART");
        let t = tunable(
            "name = \"m\"\n[source]\nfile = \"kernel/softirq.c\"\noriginal = \"#define MAX_SOFTIRQ_RESTART 11\"\nmodified = [\"a\", \"b\"]\nvalues = [11, 1, 2]\n",
        );
        let err = SourceChange::resolve(&t, &index).unwrap_err();
        assert!(matches!(err, KbuildError::PatternNotFound { .. }));
        let text = err.to_string();
        assert!(
            text.starts_with(
                "kernel/softirq.c: the pattern \"#define MAX_SOFTIRQ_RESTART 11\" does not occur"
            ),
            "{text}"
        );

        let t = tunable(
            "name = \"m\"\n[source]\nfile = \"kernel/softirq.c\"\noriginal = \"#define MAX_SOFTIRQ_RESTART 10\"\nmodified = [\"#define MAX_SOFTIRQ_RESTART 20\", \"#define MAX_SOFTIRQ_RESTART 5\"]\nvalues = [10, 20, 5]\n",
        );
        assert_eq!(
            tunable_identifier(&t).as_deref(),
            Some("MAX_SOFTIRQ_RESTART")
        );
        let change = SourceChange::resolve(&t, &index).unwrap();
        assert_eq!(change.texts[2], "#define MAX_SOFTIRQ_RESTART 5\n");
        assert_eq!(change.summary.replacements, 1);
    }
}
