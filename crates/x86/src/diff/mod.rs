//! Diffing builds of one object compiled with different values of a constant.
//!
//! Step by step:
//!
//! 1. Pair the builds' functions and data symbols by normalized name and section
//!    ([`pair_by_key`]); what is missing from some build is reported as unmatched.
//! 2. For each function present everywhere ([`function`]): decode every build, align V1's
//!    instruction shapes with each other build's (Myers, [`Alignment`]), then
//!    * if the alignment leaves unaligned runs but the basic blocks of the two builds pair one
//!      to one (same instructions, branches to paired blocks), the builds differ only in block
//!      order and the instructions pair through the blocks instead;
//!    * runs of unaligned instructions are [`UncoveredKind::InstructionsChanged`];
//!    * aligned instructions are compared field by field: a different immediate, displacement
//!      or symbol offset makes a [`Seed`]; a branch or reference that leads somewhere else is
//!      uncovered; relocated fields are compared as symbols, never as bytes.
//! 3. For each data symbol present everywhere ([`data`]): its size, its initial bytes with
//!    relocated bytes masked, and what its relocations refer to; then the bytes of data
//!    sections that no symbol covers (string literals).
//!
//! [`Alignment`]: crate::Alignment

mod data;
mod function;

use crate::X86Error;
use crate::decode::Disassembler;
use crate::elf::ObjectFile;
use crate::format::AttFormatter;
use crate::pair::{pair_by_key, pairing_key};
use crate::report::{DiffStats, ObjectDiff, SymbolKind, UnmatchedSymbol};

/// Diffs builds of one object compiled with the constant at `values[v]` for `objects[v]`.
/// `objects[0]` is V1, the build that matches the running kernel; everything is reported in
/// its terms (function names, offsets).
///
/// # Errors
///
/// [`X86Error::BadValues`] if two builds were given the same value (nothing could depend on
/// it).
pub fn diff_objects<const N: usize>(
    objects: [&ObjectFile<'_>; N],
    values: [i64; N],
) -> Result<ObjectDiff, X86Error> {
    const { assert!(N >= 2, "a diff needs at least two builds") };
    diff_builds(&objects, &values)
}

/// [`diff_objects`] for any number of builds given as slices of the same length (at least 2).
///
/// # Errors
///
/// [`X86Error::BadValues`] if the slices differ in length, there are fewer than two builds, or
/// two builds have the same value.
pub fn diff_builds(objects: &[&ObjectFile<'_>], values: &[i64]) -> Result<ObjectDiff, X86Error> {
    let labels: Vec<String> = objects.iter().map(|o| o.label().to_owned()).collect();
    let bad = |reason: String| X86Error::BadValues {
        objects: labels.clone(),
        reason,
    };
    if objects.len() != values.len() {
        return Err(bad(format!(
            "{} objects but {} values",
            objects.len(),
            values.len()
        )));
    }
    if objects.len() < 2 {
        return Err(bad("a diff needs at least two builds".to_owned()));
    }
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(bad(format!(
                "value {v} is given twice; each build needs a different value"
            )));
        }
    }

    let mut out = ObjectDiff {
        objects: labels.clone(),
        values: values.to_vec(),
        seeds: Vec::new(),
        uncovered: Vec::new(),
        unmatched: Vec::new(),
        stats: DiffStats::default(),
    };
    let mut tools = Tools {
        disassembler: Disassembler::new(),
        formatter: AttFormatter::new(),
    };

    let keys: Vec<Vec<(String, String)>> = objects
        .iter()
        .map(|o| {
            o.functions()
                .iter()
                .map(|f| pairing_key(f.name, f.section_name))
                .collect()
        })
        .collect();
    let pairing = pair_by_key(&keys);
    for tuple in &pairing.complete {
        let functions: Vec<_> = tuple
            .iter()
            .zip(objects)
            .map(|(&i, o)| &o.functions()[i])
            .collect();
        let found = function::diff(objects, &functions, &mut tools);
        out.stats.functions += 1;
        out.stats.instructions += found.instructions;
        if !found.seeds.is_empty() || !found.uncovered.is_empty() {
            out.stats.functions_changed += 1;
        }
        out.seeds.extend(found.seeds);
        out.uncovered.extend(found.uncovered);
    }
    for tuple in &pairing.partial {
        let (v, i) = first_present(tuple);
        let f = &objects[v].functions()[i];
        out.unmatched.push(UnmatchedSymbol {
            kind: SymbolKind::Function,
            name: f.name.to_owned(),
            section: f.section_name.to_owned(),
            present_in: present_in(tuple),
        });
    }

    data::diff(objects, &mut out);
    Ok(out)
}

/// Scratch state reused across functions.
struct Tools {
    disassembler: Disassembler,
    formatter: AttFormatter,
}

fn first_present(tuple: &[Option<usize>]) -> (usize, usize) {
    tuple
        .iter()
        .enumerate()
        .find_map(|(v, i)| i.map(|i| (v, i)))
        .expect("a partial tuple has at least one member")
}

fn present_in(tuple: &[Option<usize>]) -> Vec<usize> {
    tuple
        .iter()
        .enumerate()
        .filter_map(|(v, i)| i.map(|_| v))
        .collect()
}
