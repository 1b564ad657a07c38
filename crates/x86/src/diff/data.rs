//! Diff of initialized data: data symbols, then bytes of data sections no symbol covers, and
//! executable sections without functions.

use super::{first_present, present_in};
use crate::elf::{DataSymbol, ObjectFile, ReferentKind, SectionId, SectionKind, normalize_name};
use crate::format::referent_text;
use crate::pair::{pair_by_key, pairing_key};
use crate::report::{ObjectDiff, SymbolKind, UncoveredEffect, UncoveredKind, UnmatchedSymbol};

pub(super) fn diff(objects: &[&ObjectFile<'_>], out: &mut ObjectDiff) {
    let keys: Vec<Vec<(String, String)>> = objects
        .iter()
        .map(|o| {
            o.data_symbols()
                .iter()
                .map(|d| pairing_key(d.name, d.section_name))
                .collect()
        })
        .collect();
    let pairing = pair_by_key(&keys);
    for tuple in &pairing.complete {
        let symbols: Vec<&DataSymbol<'_>> = tuple
            .iter()
            .zip(objects)
            .map(|(&i, o)| &o.data_symbols()[i])
            .collect();
        out.stats.data_symbols += 1;
        diff_symbol(objects, &symbols, out);
    }
    for tuple in &pairing.partial {
        let (v, i) = first_present(tuple);
        let d = &objects[v].data_symbols()[i];
        out.unmatched.push(UnmatchedSymbol {
            kind: SymbolKind::Data,
            name: d.name.to_owned(),
            section: d.section_name.to_owned(),
            present_in: present_in(tuple),
        });
    }
    diff_anonymous(objects, out);
    diff_unattributed_code(objects, out);
}

fn diff_symbol(objects: &[&ObjectFile<'_>], symbols: &[&DataSymbol<'_>], out: &mut ObjectDiff) {
    let d0 = symbols[0];
    let effect = |kind, offset, builds, detail, values| UncoveredEffect {
        kind,
        symbol: d0.name.to_owned(),
        section: d0.section_name.to_owned(),
        offset,
        builds,
        detail,
        values,
    };

    let sizes: Vec<u64> = symbols.iter().map(|d| d.size).collect();
    let resized = differing(&sizes);
    if !resized.is_empty() {
        let detail = format!(
            "the variable's size depends on the value ({} bytes): the layout of data the V1 \
             kernel already allocated cannot change",
            join(&sizes, |s| s.to_string())
        );
        out.uncovered.push(effect(
            UncoveredKind::DataSize,
            None,
            resized,
            detail,
            Some(sizes),
        ));
        return;
    }

    if d0.bytes.is_some() {
        let masked: Vec<Vec<u8>> = symbols.iter().map(|d| masked_bytes(d)).collect();
        let changed = differing(&masked);
        if !changed.is_empty() {
            let first = (0..masked[0].len())
                .find(|&at| masked.iter().any(|m| m[at] != masked[0][at]))
                .unwrap_or(0);
            let values: Option<Vec<u64>> = (d0.size <= 8).then(|| {
                masked
                    .iter()
                    .map(|m| m.iter().rev().fold(0u64, |acc, b| acc << 8 | u64::from(*b)))
                    .collect()
            });
            let shown = match &values {
                Some(v) => format!("initial value {}", join(v, |x| format!("{x:#x}"))),
                None => format!("initial bytes differ from offset {first:#x}"),
            };
            let detail = format!(
                "{shown}: the value sets this variable's initial contents, which SIE does not \
                 change (set the variable at run time if it is meant to follow the value)"
            );
            // A scalar changes as a whole; in an array or struct, say where.
            let offset = if values.is_some() { 0 } else { first as u32 };
            out.uncovered.push(effect(
                UncoveredKind::DataValue,
                Some(offset),
                changed,
                detail,
                values,
            ));
        }
    }

    // What the relocations refer to (pointers in initializers).
    let refs: Vec<Vec<(u32, String, Option<i64>)>> = symbols
        .iter()
        .zip(objects)
        .map(|(d, o)| {
            d.relocs
                .iter()
                .map(|r| {
                    let referent = o.resolve(r.target, r.addend);
                    // Offsets into code and anonymous bytes move with layout.
                    let offset =
                        matches!(referent.kind, ReferentKind::Data | ReferentKind::External)
                            .then_some(referent.offset);
                    (r.offset, normalize_name(referent.name).into_owned(), offset)
                })
                .collect()
        })
        .collect();
    let changed = differing(&refs);
    if !changed.is_empty() {
        let texts: Vec<String> = symbols
            .iter()
            .zip(objects)
            .map(|(d, o)| {
                let t: Vec<String> = d
                    .relocs
                    .iter()
                    .map(|r| {
                        format!(
                            "+{:#x}: {}",
                            r.offset,
                            referent_text(&o.resolve(r.target, r.addend))
                        )
                    })
                    .collect();
                format!("[{}]", t.join(", "))
            })
            .collect();
        let detail = format!(
            "the variable's initializer refers to different symbols ({})",
            texts.join(" vs ")
        );
        out.uncovered.push(effect(
            UncoveredKind::DataReference,
            None,
            changed,
            detail,
            None,
        ));
    }
}

/// Bytes of plain data sections that no data symbol covers, relocated bytes zeroed: string
/// literals (`.rodata.str1.1`), constant pools, static data the compiler did not name.
fn diff_anonymous(objects: &[&ObjectFile<'_>], out: &mut ObjectDiff) {
    let keys: Vec<Vec<String>> = objects
        .iter()
        .map(|o| {
            data_sections(o)
                .map(|id| normalize_name(o.section(id).name).into_owned())
                .collect()
        })
        .collect();
    let ids: Vec<Vec<SectionId>> = objects.iter().map(|o| data_sections(o).collect()).collect();
    let pairing = pair_by_key(&keys);
    let mut report = |name: &str, builds: Vec<usize>, detail: String| {
        out.uncovered.push(UncoveredEffect {
            kind: UncoveredKind::SectionData,
            symbol: name.to_owned(),
            section: name.to_owned(),
            offset: None,
            builds,
            detail,
            values: None,
        });
    };
    for tuple in &pairing.complete {
        let bytes: Vec<Vec<u8>> = tuple
            .iter()
            .zip(objects)
            .zip(&ids)
            .map(|((&i, o), ids)| anonymous_bytes(o, ids[i]))
            .collect();
        let changed = differing(&bytes);
        if !changed.is_empty() {
            let name = objects[0].section(ids[0][tuple[0]]).name;
            let detail = format!(
                "bytes no symbol covers (string literals, constants) differ ({} bytes): data \
                 the code reads, which SIE does not change",
                join(&bytes.iter().map(Vec::len).collect::<Vec<_>>(), |n| n
                    .to_string())
            );
            report(name, changed, detail);
        }
    }
    for tuple in &pairing.partial {
        let (v, i) = first_present(tuple);
        let id = ids[v][i];
        let has_anonymous = !anonymous_bytes(objects[v], id).is_empty();
        if has_anonymous {
            let present = present_in(tuple);
            let missing: Vec<usize> = (1..objects.len())
                .filter(|k| !present.contains(k))
                .collect();
            let builds = if present.contains(&0) {
                missing
            } else {
                present.clone()
            };
            let detail = format!(
                "the section exists only in builds {}",
                join(&present, |k| format!("V{}", k + 1))
            );
            report(objects[v].section(id).name, builds, detail);
        }
    }
}

/// Executable sections without any function symbol (`.altinstr_replacement`): their bytes with
/// relocated bytes zeroed, and what the relocations refer to. Padding between functions is not
/// compared: it changes with every function's size.
fn diff_unattributed_code(objects: &[&ObjectFile<'_>], out: &mut ObjectDiff) {
    let sections = |o: &ObjectFile<'_>| -> Vec<SectionId> {
        (0..o.sections().len() as u32)
            .map(SectionId)
            .filter(|&id| {
                o.section(id).kind == SectionKind::Code
                    && !o.section(id).data.is_empty()
                    && !o.functions().iter().any(|f| f.section == id)
            })
            .collect()
    };
    let ids: Vec<Vec<SectionId>> = objects.iter().map(|o| sections(o)).collect();
    let keys: Vec<Vec<String>> = objects
        .iter()
        .zip(&ids)
        .map(|(o, ids)| {
            ids.iter()
                .map(|&id| normalize_name(o.section(id).name).into_owned())
                .collect()
        })
        .collect();
    let pairing = pair_by_key(&keys);
    let contents = |o: &ObjectFile<'_>, id: SectionId| {
        let section = o.section(id);
        let mut bytes = section.data.to_vec();
        let mut refs = Vec::new();
        for r in &section.relocs {
            let start = (r.offset as usize).min(bytes.len());
            let end = (r.offset as usize + usize::from(r.width)).min(bytes.len());
            bytes[start..end].fill(0);
            refs.push(normalize_name(o.resolve(r.target, r.addend).name).into_owned());
        }
        (bytes, refs)
    };
    for tuple in &pairing.complete {
        let per_build: Vec<_> = tuple
            .iter()
            .zip(objects)
            .zip(&ids)
            .map(|((&i, o), ids)| contents(o, ids[i]))
            .collect();
        let changed = differing(&per_build);
        if !changed.is_empty() {
            let name = objects[0].section(ids[0][tuple[0]]).name;
            out.uncovered.push(UncoveredEffect {
                kind: UncoveredKind::UnattributedCode,
                symbol: name.to_owned(),
                section: name.to_owned(),
                offset: None,
                builds: changed,
                detail: format!(
                    "code outside any function differs ({} bytes), e.g. alternative \
                     replacements the kernel patches in at boot: SIE cannot follow it",
                    join(
                        &per_build.iter().map(|(b, _)| b.len()).collect::<Vec<_>>(),
                        |n| n.to_string()
                    )
                ),
                values: None,
            });
        }
    }
    for tuple in &pairing.partial {
        let (v, i) = first_present(tuple);
        let name = objects[v].section(ids[v][i]).name;
        let present = present_in(tuple);
        let builds = (1..objects.len())
            .filter(|k| present.contains(k) != present.contains(&0))
            .collect();
        out.uncovered.push(UncoveredEffect {
            kind: UncoveredKind::UnattributedCode,
            symbol: name.to_owned(),
            section: name.to_owned(),
            offset: None,
            builds,
            detail: format!(
                "code outside any function exists only in builds {}",
                join(&present, |k| format!("V{}", k + 1))
            ),
            values: None,
        });
    }
}

/// Sections that hold plain initialized data, as opposed to code or tables about code
/// (`__jump_table`, `__bug_table`, `.altinstructions`, `__mcount_loc`, ...), which change
/// whenever the code does and are covered by the code's diff.
fn data_sections<'o>(object: &'o ObjectFile<'_>) -> impl Iterator<Item = SectionId> + 'o {
    object
        .sections()
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            matches!(s.kind, SectionKind::Data | SectionKind::ReadOnlyData)
                && (s.name.contains(".data") || s.name.contains(".rodata"))
        })
        .map(|(i, _)| SectionId(i as u32))
}

fn anonymous_bytes(object: &ObjectFile<'_>, id: SectionId) -> Vec<u8> {
    let section = object.section(id);
    let mut keep = vec![true; section.data.len()];
    for d in object.data_symbols().iter().filter(|d| d.section == id) {
        let start = (d.address as usize).min(keep.len());
        let end = ((d.address + d.size) as usize).min(keep.len());
        keep[start..end].fill(false);
    }
    let mut data = section.data.to_vec();
    for r in &section.relocs {
        let start = (r.offset as usize).min(data.len());
        let end = (r.offset as usize + usize::from(r.width)).min(data.len());
        data[start..end].fill(0);
    }
    data.into_iter()
        .zip(keep)
        .filter_map(|(b, k)| k.then_some(b))
        .collect()
}

fn masked_bytes(d: &DataSymbol<'_>) -> Vec<u8> {
    let mut bytes = d.bytes.unwrap_or_default().to_vec();
    for (b, m) in bytes.iter_mut().zip(d.reloc_mask()) {
        *b &= m;
    }
    bytes
}

/// The builds (indices > 0) whose item differs from build 0's.
fn differing<T: PartialEq>(items: &[T]) -> Vec<usize> {
    (1..items.len()).filter(|&k| items[k] != items[0]).collect()
}

fn join<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    items.iter().map(f).collect::<Vec<_>>().join(" / ")
}
