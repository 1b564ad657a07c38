//! Diff of one function across builds: align, then compare aligned instructions field by field.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use iced_x86::{Mnemonic, OpKind, Register};

use super::Tools;
use crate::align::{Alignment, Hunk};
use crate::cfg::{BlockId, Cfg, Exit, Successor};
use crate::decode::{Insn, RelocField, Target, index_at};
use crate::elf::{Function, ObjectFile, Referent, ReferentKind, normalize_name};
use crate::format::referent_text;
use crate::report::{
    ChangedField, HexBytes, OperandChange, Seed, SeedInstance, UncoveredEffect, UncoveredKind,
};
use crate::shape::{Shape, is_add_sub_immediate};

/// What one function's diff found.
pub(super) struct Found {
    pub seeds: Vec<Seed>,
    pub uncovered: Vec<UncoveredEffect>,
    pub instructions: usize,
}

/// A run of instructions of build `.0`.
type BuildRun = (usize, Range<usize>);

/// One build of the function.
struct Build<'f, 'a> {
    object: &'f ObjectFile<'a>,
    function: &'f Function<'a>,
    insns: Vec<Insn>,
}

/// V1 aligned with build `k` (k >= 1): each V1 instruction's partner, the unaligned runs, and
/// where each V1 hunk starts in build k, so that a branch to the first instruction of a changed
/// run still counts as the same target.
///
/// Usually the partners are the stream alignment's (in order). When that leaves unaligned runs
/// but the builds' basic blocks correspond one to one ([`block_permutation`]), the partners
/// follow the blocks instead and nothing is unaligned.
struct Aligned {
    partners: Vec<Option<usize>>,
    hunks: Vec<Hunk>,
    hunk_starts: HashMap<usize, usize>,
}

impl Aligned {
    fn b_of(&self, i: usize) -> Option<usize> {
        self.partners.get(i).copied().flatten()
    }
}

/// Where an operand leads, in one build.
#[derive(Clone, Copy)]
enum Place<'a> {
    /// An instruction index of the function (or its length, for "just past the end"), or
    /// `None` for the middle of an instruction; plus the raw offset.
    Internal(Option<usize>, u32),
    External(Referent<'a>),
}

pub(super) fn diff(
    objects: &[&ObjectFile<'_>],
    functions: &[&Function<'_>],
    tools: &mut Tools,
) -> Found {
    let builds: Vec<Build<'_, '_>> = objects
        .iter()
        .zip(functions)
        .map(|(object, function)| Build {
            object,
            function,
            insns: tools.disassembler.decode(function),
        })
        .collect();
    let shapes: Vec<Vec<Shape>> = builds
        .iter()
        .map(|b| b.insns.iter().map(Shape::of).collect())
        .collect();
    let aligned: Vec<Aligned> = (1..builds.len())
        .map(|k| {
            let alignment = Alignment::of_slices(&shapes[0], &shapes[k]);
            let hunks = alignment.hunks();
            if !hunks.is_empty()
                && let Some(partners) =
                    block_permutation(&builds[0], &builds[k], &shapes[0], &shapes[k], &alignment)
            {
                return Aligned {
                    partners,
                    hunks: Vec::new(),
                    hunk_starts: HashMap::new(),
                };
            }
            let hunk_starts = hunks.iter().map(|h| (h.a.start, h.b.start)).collect();
            Aligned {
                partners: (0..shapes[0].len()).map(|i| alignment.b_of(i)).collect(),
                hunks,
                hunk_starts,
            }
        })
        .collect();

    let mut found = Found {
        seeds: Vec::new(),
        uncovered: Vec::new(),
        instructions: builds[0].insns.len(),
    };

    // Unaligned runs, merged across builds when V1's side is the same.
    let mut hunks: BTreeMap<(usize, usize), Vec<BuildRun>> = BTreeMap::new();
    for (k, a) in aligned.iter().enumerate() {
        for h in a.hunks.iter().cloned() {
            hunks
                .entry((h.a.start, h.a.end))
                .or_default()
                .push((k + 1, h.b));
        }
    }
    for ((start, end), others) in hunks {
        found
            .uncovered
            .push(hunk_effect(&builds, start..end, &others, tools));
    }

    // Instructions aligned in every build.
    for i in 0..builds[0].insns.len() {
        let partners: Option<Vec<usize>> = aligned.iter().map(|a| a.b_of(i)).collect();
        if let Some(partners) = partners {
            compare(&builds, &aligned, i, &partners, tools, &mut found);
        }
    }

    let frame: Vec<&Seed> = found.seeds.iter().filter(|s| s.frame_layout).collect();
    if let Some(first) = frame.first() {
        let f = builds[0].function;
        let offsets: Vec<String> = frame.iter().map(|s| format!("+{:#x}", s.offset)).collect();
        let mut builds_differing: Vec<usize> = Vec::new();
        for s in &frame {
            for c in &s.changes {
                for (k, v) in c.values.iter().enumerate().skip(1) {
                    if *v != c.values[0] && !builds_differing.contains(&k) {
                        builds_differing.push(k);
                    }
                }
            }
        }
        builds_differing.sort_unstable();
        let effect = UncoveredEffect {
            kind: UncoveredKind::FrameLayout,
            symbol: f.name.to_owned(),
            section: f.section_name.to_owned(),
            offset: Some(first.offset),
            builds: builds_differing,
            detail: format!(
                "the stack frame's size or layout depends on the value (seeds at {}): SIE \
                 cannot resize or rearrange a frame the V1 code already set up",
                offsets.join(", ")
            ),
            values: None,
        };
        found.uncovered.push(effect);
    }
    found
        .uncovered
        .sort_by_key(|e| (e.offset.unwrap_or(u32::MAX), e.kind));
    found
}

/// Maps V1's instructions to build `other`'s through a bijection of basic blocks, if the two
/// builds are the same code laid out in another block order (gcc places out-of-line blocks in
/// either order); `None` if that cannot be shown.
///
/// Blocks are paired from the entry along the CFG's edges, so branches are compared by the
/// block they lead to, never by offset. Paired blocks must have the same instruction shapes one
/// for one and the same successors: a fall-through pairs only with a fall-through (the blocks
/// stay adjacent), a taken branch with a taken branch, an exit with an exit of the same kind.
/// A block the CFG does not reach from the entry (a static-key target, padding) pairs only where
/// the stream alignment aligns all of it with a whole block, as it would without this. Functions
/// with indirect jumps (targets unknown) or branches into the middle of an instruction are
/// refused. Immediates, displacements and references are then compared as for any aligned
/// instruction, so only a pure permutation of equivalent blocks comes out effect-free.
fn block_permutation(
    v1: &Build<'_, '_>,
    other: &Build<'_, '_>,
    shapes_v1: &[Shape],
    shapes_other: &[Shape],
    alignment: &Alignment,
) -> Option<Vec<Option<usize>>> {
    if v1.insns.len() != other.insns.len() || v1.insns.is_empty() {
        return None;
    }
    let cfg_v1 = Cfg::build(v1.object, v1.function, &v1.insns);
    let cfg_other = Cfg::build(other.object, other.function, &other.insns);
    let (blocks_v1, blocks_other) = (cfg_v1.blocks(), cfg_other.blocks());
    if blocks_v1.len() != blocks_other.len() {
        return None;
    }
    let unprovable = |cfg: &Cfg| {
        cfg.exits()
            .any(|(_, x)| matches!(x, Exit::IndirectJump { .. } | Exit::BadTarget { .. }))
    };
    if unprovable(&cfg_v1) || unprovable(&cfg_other) {
        return None;
    }

    let mut p = BlockPairing {
        image: vec![None; blocks_v1.len()],
        preimage: vec![None; blocks_other.len()],
        work: Vec::new(),
    };
    if !p.pair(0, 0) {
        return None;
    }
    let mut next_unpaired = 0;
    loop {
        while let Some((a, b)) = p.work.pop() {
            let (ba, bb) = (&blocks_v1[a as usize], &blocks_other[b as usize]);
            if ba.insns.len() != bb.insns.len()
                || shapes_v1[ba.insns.clone()] != shapes_other[bb.insns.clone()]
                || ba.succs.len() != bb.succs.len()
            {
                return None;
            }
            for (sa, sb) in ba.succs.iter().zip(&bb.succs) {
                let ok = match (*sa, *sb) {
                    (Successor::FallThrough(x), Successor::FallThrough(y))
                    | (Successor::Branch(x), Successor::Branch(y)) => p.pair(x, y),
                    (Successor::Exit(x), Successor::Exit(y)) => {
                        std::mem::discriminant(&x) == std::mem::discriminant(&y)
                    }
                    _ => false,
                };
                if !ok {
                    return None;
                }
            }
        }
        // A block not reached from what is paired so far: only where the stream alignment
        // aligns it whole with a whole block.
        while next_unpaired < p.image.len() && p.image[next_unpaired].is_some() {
            next_unpaired += 1;
        }
        let Some(block) = blocks_v1.get(next_unpaired) else {
            break;
        };
        let start = alignment.b_of(block.insns.start)?;
        let partner = cfg_other.block_of(start);
        let whole = blocks_other[partner as usize].insns.start == start
            && blocks_other[partner as usize].insns.len() == block.insns.len()
            && block
                .insns
                .clone()
                .all(|i| alignment.b_of(i) == Some(start + (i - block.insns.start)));
        if !whole || !p.pair(next_unpaired as BlockId, partner) {
            return None;
        }
    }

    let mut partners = vec![None; v1.insns.len()];
    for (a, b) in p.image.iter().enumerate() {
        let (ba, bb) = (&blocks_v1[a], &blocks_other[(*b)? as usize]);
        for (i, j) in ba.insns.clone().zip(bb.insns.clone()) {
            partners[i] = Some(j);
        }
    }
    Some(partners)
}

/// Blocks of V1 paired with blocks of another build, one to one, and the pairs whose edges are
/// still to be followed.
struct BlockPairing {
    image: Vec<Option<BlockId>>,
    preimage: Vec<Option<BlockId>>,
    work: Vec<(BlockId, BlockId)>,
}

impl BlockPairing {
    /// Pairs `a` with `b`; false if either is already paired with another block.
    fn pair(&mut self, a: BlockId, b: BlockId) -> bool {
        match (self.image[a as usize], self.preimage[b as usize]) {
            (Some(x), Some(y)) => x == b && y == a,
            (None, None) => {
                self.image[a as usize] = Some(b);
                self.preimage[b as usize] = Some(a);
                self.work.push((a, b));
                true
            }
            _ => false,
        }
    }
}

fn hunk_effect(
    builds: &[Build<'_, '_>],
    a: Range<usize>,
    others: &[BuildRun],
    tools: &mut Tools,
) -> UncoveredEffect {
    let v1 = &builds[0];
    let offset = v1
        .insns
        .get(a.start)
        .map_or(v1.function.bytes.len() as u32, |i| i.offset);
    let mut parts = vec![describe_run(v1, 0, &a, tools)];
    for (k, b) in others {
        parts.push(describe_run(&builds[*k], *k, b, tools));
    }
    let what = if a.is_empty() {
        "instructions were added"
    } else if others.iter().all(|(_, b)| b.is_empty()) {
        "instructions were removed"
    } else {
        "instructions were replaced"
    };
    UncoveredEffect {
        kind: UncoveredKind::InstructionsChanged,
        symbol: v1.function.name.to_owned(),
        section: v1.function.section_name.to_owned(),
        offset: Some(offset),
        builds: others.iter().map(|(k, _)| *k).collect(),
        detail: format!(
            "{what} ({}): SIE rewrites state at existing instructions and cannot add, remove \
             or replace instructions",
            parts.join("; ")
        ),
        values: None,
    }
}

/// `V2 +0x20..+0x2c: mov $0x1,%eax; add %edx,%eax` (at most a few instructions).
fn describe_run(build: &Build<'_, '_>, k: usize, run: &Range<usize>, tools: &mut Tools) -> String {
    const SHOWN: usize = 4;
    let at = |i: usize| {
        build
            .insns
            .get(i)
            .map_or(build.function.bytes.len() as u32, |x| x.offset)
    };
    if run.is_empty() {
        return format!("V{} +{:#x}: nothing", k + 1, at(run.start));
    }
    let mut text: Vec<String> = build.insns[run.clone()]
        .iter()
        .take(SHOWN)
        .map(|insn| tools.formatter.format(build.object, build.function, insn))
        .collect();
    if run.len() > SHOWN {
        text.push(format!("... {} more", run.len() - SHOWN));
    }
    format!(
        "V{} +{:#x}..+{:#x}: {}",
        k + 1,
        at(run.start),
        at(run.end),
        text.join("; ")
    )
}

/// Compares V1's instruction `i` with its partners (`partners[k - 1]` in build k).
fn compare(
    builds: &[Build<'_, '_>],
    aligned: &[Aligned],
    i: usize,
    partners: &[usize],
    tools: &mut Tools,
    found: &mut Found,
) {
    let insns: Vec<&Insn> = std::iter::once(&builds[0].insns[i])
        .chain(partners.iter().zip(&builds[1..]).map(|(&j, b)| &b.insns[j]))
        .collect();
    let first = insns[0];
    let instruction = &first.instruction;
    let mut cmp = Comparison {
        builds,
        aligned,
        insns: &insns,
        changes: Vec::new(),
        mismatches: Vec::new(),
    };

    if first.is_invalid() {
        let bytes0 = masked(builds[0].function, first);
        let differing: Vec<usize> = (1..builds.len())
            .filter(|&k| masked(builds[k].function, insns[k]) != bytes0)
            .collect();
        if !differing.is_empty() {
            cmp.mismatches.push(Mismatch {
                kind: UncoveredKind::InstructionsChanged,
                builds: differing,
                what: "undecodable bytes differ".to_owned(),
            });
        }
    }

    for op in 0..instruction.op_count() {
        match instruction.op_kind(op) {
            kind @ (OpKind::Immediate8
            | OpKind::Immediate8_2nd
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64) => {
                // A relocation only ever patches the first immediate.
                if kind != OpKind::Immediate8_2nd && first.reloc(RelocField::Immediate).is_some() {
                    let places = cmp.reloc_places(RelocField::Immediate);
                    cmp.reference(op, false, &places);
                    continue;
                }
                let bits = insns.iter().map(|x| immediate_bits(x, kind)).max();
                let bits = bits.unwrap_or(0);
                let mixed = insns
                    .iter()
                    .any(|x| x.instruction.mnemonic() != instruction.mnemonic());
                if mixed && is_add_sub_immediate(instruction) {
                    let values = insns.iter().map(|x| addend(x)).collect();
                    cmp.value(op, ChangedField::Addend, bits, values);
                } else {
                    let values = insns.iter().map(|x| immediate(x, op)).collect();
                    cmp.value(op, ChangedField::Immediate, bits, values);
                }
            }
            OpKind::Memory if instruction.is_ip_rel_memory_operand() => {
                let places = cmp.places(|b, insn| {
                    insn.rip_target(b.object, b.function)
                        .map(|t| place(&b.insns, t))
                });
                cmp.reference(op, false, &places);
            }
            OpKind::Memory if first.reloc(RelocField::Displacement).is_some() => {
                let places = cmp.reloc_places(RelocField::Displacement);
                cmp.reference(op, false, &places);
            }
            OpKind::Memory => {
                let values = insns
                    .iter()
                    .map(|x| x.instruction.memory_displacement64())
                    .collect();
                let bits = insns
                    .iter()
                    .map(|x| x.constants.displacement_size() as u8 * 8)
                    .max()
                    .unwrap_or(0);
                cmp.value(op, ChangedField::Displacement, bits, values);
            }
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                let places = cmp.places(|b, insn| {
                    insn.branch_target(b.object, b.function)
                        .map(|t| place(&b.insns, t))
                });
                cmp.reference(op, true, &places);
            }
            OpKind::FarBranch16 | OpKind::FarBranch32 => {
                let values = insns
                    .iter()
                    .map(|x| {
                        u64::from(x.instruction.far_branch_selector()) << 32
                            | u64::from(x.instruction.far_branch32())
                    })
                    .collect();
                cmp.value(op, ChangedField::Immediate, 48, values);
            }
            _ => {}
        }
    }
    // A relocation that lines up with no field: only what it refers to can be compared.
    if first.reloc(RelocField::Other).is_some() {
        let places = cmp.reloc_places(RelocField::Other);
        let before = cmp.changes.len();
        cmp.reference(0, false, &places);
        cmp.changes.truncate(before);
    }

    let Comparison {
        changes,
        mismatches,
        ..
    } = cmp;
    let f0 = builds[0].function;
    for m in mismatches {
        let asm = tools.formatter.format(builds[0].object, f0, first);
        found.uncovered.push(UncoveredEffect {
            kind: m.kind,
            symbol: f0.name.to_owned(),
            section: f0.section_name.to_owned(),
            offset: Some(first.offset),
            builds: m.builds,
            detail: format!("`{asm}`: {}", m.what),
            values: None,
        });
    }
    if changes.is_empty() {
        return;
    }
    let frame_layout = is_frame_change(first, &changes);
    let encoding_changed = insns
        .iter()
        .any(|x| x.instruction.code() != instruction.code() || x.len() != first.len());
    let instances: Vec<SeedInstance> = insns
        .iter()
        .zip(builds)
        .map(|(insn, b)| SeedInstance {
            function: b.function.name.to_owned(),
            offset: insn.offset,
            bytes: HexBytes(insn.bytes(b.function).to_vec()),
            asm: tools.formatter.format(b.object, b.function, insn),
        })
        .collect();
    let mask = f0.reloc_mask()[first.offset as usize..first.end() as usize].to_vec();
    found.seeds.push(Seed {
        function: f0.name.to_owned(),
        section: f0.section_name.to_owned(),
        offset: first.offset,
        len: first.len() as u8,
        bytes: HexBytes(first.bytes(f0).to_vec()),
        mask: HexBytes(mask),
        asm: instances[0].asm.clone(),
        changes,
        instances,
        frame_layout,
        encoding_changed,
    });
}

/// Something about an aligned instruction that SIE cannot express.
struct Mismatch {
    kind: UncoveredKind,
    /// The builds that differ from V1.
    builds: Vec<usize>,
    what: String,
}

/// The comparison of one aligned instruction across builds, operand by operand.
struct Comparison<'r, 'f, 'a> {
    builds: &'r [Build<'f, 'a>],
    aligned: &'r [Aligned],
    /// The instruction in each build.
    insns: &'r [&'r Insn],
    changes: Vec<OperandChange>,
    mismatches: Vec<Mismatch>,
}

impl<'a> Comparison<'_, '_, 'a> {
    /// Per build, where an operand leads (`None` where the build has no such reference).
    fn places(
        &self,
        get: impl Fn(&Build<'_, 'a>, &Insn) -> Option<Place<'a>>,
    ) -> Vec<Option<Place<'a>>> {
        self.builds
            .iter()
            .zip(self.insns)
            .map(|(b, insn)| get(b, insn))
            .collect()
    }

    /// Per build, what the relocation patching `field` refers to.
    fn reloc_places(&self, field: RelocField) -> Vec<Option<Place<'a>>> {
        self.places(|b, insn| {
            insn.reloc(field)
                .map(|r| Place::External(insn.reloc_referent(b.object, b.function, r)))
        })
    }

    /// A value field: a change if the builds disagree.
    fn value(&mut self, op: u32, field: ChangedField, bits: u8, values: Vec<u64>) {
        if values.iter().all(|v| *v == values[0]) {
            return;
        }
        self.changes.push(OperandChange {
            operand: op as u8,
            field,
            bits,
            values,
        });
    }

    /// A reference (branch target, RIP-relative or relocated operand): the same place in every
    /// build, the same symbol at another offset (a change), or somewhere else (a mismatch).
    fn reference(&mut self, op: u32, branch: bool, places: &[Option<Place<'a>>]) {
        let mut different = Vec::new();
        let mut offset_only = false;
        for k in 1..self.builds.len() {
            let relation = match (places[0], places[k]) {
                (None, None) => Relation::Same,
                (Some(a), Some(b)) => {
                    relate(&self.builds[0], &self.builds[k], &self.aligned[k - 1], a, b)
                }
                _ => Relation::Different,
            };
            match relation {
                Relation::Same => {}
                Relation::OffsetOnly => offset_only = true,
                Relation::Different => different.push(k),
            }
        }
        if !different.is_empty() {
            let text: Vec<String> = places
                .iter()
                .enumerate()
                .map(|(k, p)| format!("V{}: {}", k + 1, place_text(p)))
                .collect();
            let (kind, what) = if branch {
                (
                    UncoveredKind::BranchTarget,
                    "the branch leads to a different place, so control flow differs",
                )
            } else {
                (
                    UncoveredKind::ReferenceTarget,
                    "the instruction refers to a different symbol or place",
                )
            };
            self.mismatches.push(Mismatch {
                kind,
                builds: different,
                what: format!("{what} ({})", text.join(", ")),
            });
        } else if offset_only && let Some(Place::External(r0)) = places[0] {
            let values = places
                .iter()
                .map(|p| match p {
                    Some(Place::External(r)) => r.offset as u64,
                    _ => 0,
                })
                .collect();
            let field = ChangedField::SymbolOffset {
                symbol: r0.name.to_owned(),
            };
            self.value(op, field, 32, values);
        }
    }
}

fn place<'a>(insns: &[Insn], target: Target<'a>) -> Place<'a> {
    match target {
        Target::Internal(off) => {
            let index = index_at(insns, off)
                .or_else(|| (insns.last().map(Insn::end) == Some(off)).then_some(insns.len()));
            Place::Internal(index, off)
        }
        Target::External(r) => Place::External(r),
    }
}

/// How build k's place relates to V1's.
enum Relation {
    Same,
    /// Same symbol, another offset into it.
    OffsetOnly,
    Different,
}

fn relate(
    v1: &Build<'_, '_>,
    other: &Build<'_, '_>,
    aligned: &Aligned,
    a: Place<'_>,
    b: Place<'_>,
) -> Relation {
    match (a, b) {
        (Place::Internal(Some(ia), _), Place::Internal(Some(ib), _)) => {
            let same = if ia == v1.insns.len() {
                ib == other.insns.len()
            } else {
                aligned.b_of(ia) == Some(ib) || aligned.hunk_starts.get(&ia) == Some(&ib)
            };
            if same {
                Relation::Same
            } else {
                Relation::Different
            }
        }
        (Place::Internal(_, oa), Place::Internal(_, ob)) => {
            if oa == ob {
                Relation::Same
            } else {
                Relation::Different
            }
        }
        (Place::External(ra), Place::External(rb)) => {
            let anonymous = ra.kind == ReferentKind::Anonymous;
            if anonymous != (rb.kind == ReferentKind::Anonymous)
                || normalize_name(ra.name) != normalize_name(rb.name)
            {
                return Relation::Different;
            }
            match ra.kind {
                // String literals and labels move when their section's contents change;
                // that is reported once for the section.
                ReferentKind::Anonymous => Relation::Same,
                // Offsets into code move with the code's layout; entry vs interior matters.
                ReferentKind::Function => {
                    if (ra.offset == 0) == (rb.offset == 0) {
                        Relation::Same
                    } else {
                        Relation::Different
                    }
                }
                ReferentKind::Data | ReferentKind::External => {
                    if ra.offset == rb.offset {
                        Relation::Same
                    } else {
                        Relation::OffsetOnly
                    }
                }
            }
        }
        _ => Relation::Different,
    }
}

fn place_text(p: &Option<Place<'_>>) -> String {
    match p {
        None => "none".to_owned(),
        Some(Place::Internal(_, off)) => format!("+{off:#x}"),
        Some(Place::External(r)) => referent_text(r),
    }
}

/// The immediate at the width the instruction uses it, unsigned.
fn immediate(insn: &Insn, op: u32) -> u64 {
    let (value, width) = immediate_with_width(insn, op);
    truncate(value, width)
}

/// The immediate (sign-extended as encoded) and the width the instruction uses it at.
fn immediate_with_width(insn: &Insn, op: u32) -> (u64, u32) {
    let i = &insn.instruction;
    let width = match i.op_kind(op) {
        OpKind::Immediate8 | OpKind::Immediate8_2nd => 8,
        OpKind::Immediate16 | OpKind::Immediate8to16 => 16,
        OpKind::Immediate32 | OpKind::Immediate8to32 => 32,
        _ => 64,
    };
    (i.immediate(op), width)
}

fn truncate(value: u64, width: u32) -> u64 {
    if width >= 64 {
        value
    } else {
        value & ((1u64 << width) - 1)
    }
}

/// The effective addend of `add`/`sub $imm` at the operand size: `sub $N` is `add $-N`.
fn addend(insn: &Insn) -> u64 {
    let (value, width) = immediate_with_width(insn, 1);
    let value = if insn.instruction.mnemonic() == Mnemonic::Sub {
        value.wrapping_neg()
    } else {
        value
    };
    truncate(value, width)
}

/// Width of the immediate's encoded field, in bits.
fn immediate_bits(insn: &Insn, kind: OpKind) -> u8 {
    let c = &insn.constants;
    let bytes = if kind == OpKind::Immediate8_2nd {
        c.immediate_size2()
    } else {
        c.immediate_size()
    };
    bytes as u8 * 8
}

/// The instruction's bytes with relocated bytes zeroed.
fn masked(function: &Function<'_>, insn: &Insn) -> Vec<u8> {
    let mut bytes = insn.bytes(function).to_vec();
    for r in &function.relocs {
        for at in r.offset..r.offset + u32::from(r.width) {
            if (insn.offset..insn.end()).contains(&at) {
                bytes[(at - insn.offset) as usize] = 0;
            }
        }
    }
    bytes
}

/// `sub/add $N,%rsp`, or an `%rsp`-based displacement that changed.
fn is_frame_change(insn: &Insn, changes: &[OperandChange]) -> bool {
    let i = &insn.instruction;
    let adjusts_rsp = matches!(i.mnemonic(), Mnemonic::Sub | Mnemonic::Add)
        && i.op_count() == 2
        && i.op0_kind() == OpKind::Register
        && i.op0_register() == Register::RSP;
    changes.iter().any(|c| match c.field {
        ChangedField::Immediate | ChangedField::Addend => adjusts_rsp,
        ChangedField::Displacement => i.memory_base() == Register::RSP,
        ChangedField::SymbolOffset { .. } => false,
    })
}
