//! Synthesis: from a seed in three builds to an update [`Recipe`].
//!
//! Step by step, for one seed:
//!
//! 1. If the seed belongs to a magic division sequence ([`magic::match_around`]), check the
//!    sequence's constants against the algorithm for V1, V2 and V3 and build a
//!    [`Update::Divide`] whose inputs (the dividend, and for the fix-up forms its second
//!    read) are read in place, re-read from memory when the sequence loads them, recovered
//!    from an earlier `mov`, or saved by the pre-probe. Otherwise:
//! 2. Compare the seed across versions: everything but one constant (an immediate, or a
//!    `lea` displacement) must be identical. Read the constant as a bit pattern of its width.
//! 3. Fit IV = f(V) ([`Fit`]); for compares, the signedness of the consumers picks the reading.
//!    An immediate load into a register that fits no relation is fitted to the low bits its
//!    consumers read when the rest of the register is dead (`narrow`: gcc stores a 16-bit
//!    constant through `%ecx` loaded with V sign-extended); the update then writes only those
//!    bits. No fit at all, with a source value the operand cannot hold, is
//!    [`SymexError::TruncatedValues`]: the values, not the code, are the likely cause.
//! 4. Classify the seed (load, combine, compare) and find each input the update needs: still
//!    in place at the post-probe, recoverable by inverting the seed, copied earlier by a `mov`
//!    whose source survives, or else saved by a pre-probe.
//! 5. Scan the following instructions for flag consumers; every flag they read must be one the
//!    update recomputes.
//! 6. Bound V' (IV width and signedness, immediate field, shift counts, relation domain).
//! 7. Self-check: on pseudo-random states, V1's instructions + the recipe at V2 (and V3) must
//!    give what V2's (V3's) own instructions give, under the concrete semantics.

use iced_x86::{Code, FlowControl, Instruction, Mnemonic, OpKind, Register};

use super::bv::Width;
use super::error::{SymexError, att};
use super::flags::{Flag, FlagSet, FlagSetExt};
use super::magic::{self, MagicForm, MagicMatch};
use super::narrow;
use super::range::{BoundReason, Restriction, ValueRange};
use super::recipe::{
    CombineOp, CompareOp, CriticalSpan, Input, Place, Recipe, RecipeSemantics, SynthesisKind,
    UndoOp, Update,
};
use super::relation::{Fit, IvDomain, MagicPart, Relation};
use super::sem::{self, Param};
use super::state::{Address, Gpr, MachineState, RegOperand, RegOperandExt, Segment};
use crate::decode::is_immediate;

/// One version of a seed: its block (decoded with the offsets as `ip`), where the seed is in
/// it, and the source value the build used.
#[derive(Clone, Copy, Debug)]
pub struct SeedVersion<'a> {
    /// The constant's source value V in this build.
    pub value: i64,
    /// The seed's basic block, or a window of it: the instructions before the seed (used to
    /// recover inputs and to recognise multi-instruction patterns) and after it, up to the
    /// flag consumers. For V2 and V3 the seed alone suffices unless it is part of a magic
    /// division sequence.
    pub block: &'a [Instruction],
    /// Index of the seed in `block`.
    pub seed: usize,
}

impl SeedVersion<'_> {
    fn insn(&self) -> &Instruction {
        &self.block[self.seed]
    }
}

/// The input of [`synthesize`]: the seed in V1, V2 and V3 (V1 first: its code is what runs).
#[derive(Clone, Copy, Debug)]
pub struct SeedContext<'a> {
    /// The versions.
    pub versions: [SeedVersion<'a>; 3],
}

/// IV = f(V) for a seed, checked on all three versions.
///
/// Where both the signed and the unsigned reading of the IVs fit, the signed one is returned
/// ([`synthesize`] refines the choice with the consumers).
pub fn derive_relation(versions: &[SeedVersion<'_>; 3]) -> Result<Relation, SymexError> {
    validate(versions)?;
    if let Some(m) = magic::match_around(versions[0].block, versions[0].seed) {
        divide_matches(versions, m)?;
        return Ok(division_relation(&m, magic_part(versions)?));
    }
    let (ch, _) = changing_read(versions, &Gpr::ALL)?;
    let fit = Fit::of(values(versions), ch.ivs, ch.width);
    fit.neutral()
        .map(|(r, _)| r)
        .ok_or_else(|| no_relation(versions, &ch))
}

/// The update recipe for a seed, with every register taken as live after the V1 block.
pub fn synthesize(ctx: &SeedContext<'_>) -> Result<Recipe, SymexError> {
    synthesize_with_live_out(ctx, &Gpr::ALL)
}

/// The update recipe for a seed, told which registers may be live after the last instruction
/// of the V1 block (from the function's liveness): an immediate load into a register that
/// dies there after narrower reads may be fitted to the bits that are read (`narrow`).
pub fn synthesize_with_live_out(
    ctx: &SeedContext<'_>,
    live_after_block: &[Gpr],
) -> Result<Recipe, SymexError> {
    let versions = &ctx.versions;
    validate(versions)?;
    let (recipe, prefix) = match magic::match_around(versions[0].block, versions[0].seed) {
        Some(m) => synthesize_divide(versions, m)?,
        None => synthesize_simple(versions, live_after_block)?,
    };
    self_check(versions, &recipe, prefix)?;
    Ok(recipe)
}

fn values(versions: &[SeedVersion<'_>; 3]) -> [i64; 3] {
    [versions[0].value, versions[1].value, versions[2].value]
}

fn validate(versions: &[SeedVersion<'_>; 3]) -> Result<(), SymexError> {
    let v = values(versions);
    if v[0] == v[1] || v[0] == v[2] || v[1] == v[2] {
        return Err(SymexError::BadValues { values: v });
    }
    for (i, ver) in versions.iter().enumerate() {
        if ver.seed >= ver.block.len() {
            return Err(SymexError::BadSeedIndex {
                version: i + 1,
                index: ver.seed,
                len: ver.block.len(),
            });
        }
    }
    Ok(())
}

/// The constant that changes across versions.
struct Changing {
    param: Param,
    /// IV bit patterns at `width`.
    ivs: [u64; 3],
    width: Width,
    /// Some versions encode `add $k` as `sub $-k` (or the reverse): normalised to `add`.
    add_sub_mixed: bool,
}

fn mismatch(versions: &[SeedVersion<'_>; 3], version: usize, what: &'static str) -> SymexError {
    SymexError::VersionMismatch {
        first: att(versions[0].insn()),
        other: att(versions[version].insn()),
        version: version + 1,
        what,
    }
}

fn changing(versions: &[SeedVersion<'_>; 3]) -> Result<Changing, SymexError> {
    let first = versions[0].insn();
    let n = first.op_count();
    let imm_op = (0..n).find(|&i| is_immediate(first.op_kind(i)));
    let is_add_sub = |m| matches!(m, Mnemonic::Add | Mnemonic::Sub);
    let mut add_sub_mixed = false;
    let mut imm_differs = false;
    let mut disp_differs = false;
    for (k, ver) in versions.iter().enumerate().skip(1) {
        let other = ver.insn();
        if other.mnemonic() != first.mnemonic() {
            if is_add_sub(other.mnemonic()) && is_add_sub(first.mnemonic()) && imm_op.is_some() {
                add_sub_mixed = true;
            } else {
                return Err(mismatch(versions, k, "different mnemonics"));
            }
        }
        if other.op_count() != n {
            return Err(mismatch(versions, k, "different operand counts"));
        }
        for i in 0..n {
            let (a, b) = (first.op_kind(i), other.op_kind(i));
            match a {
                OpKind::Register => {
                    if b != OpKind::Register || first.op_register(i) != other.op_register(i) {
                        return Err(mismatch(versions, k, "different registers"));
                    }
                }
                OpKind::Memory => {
                    if b != OpKind::Memory
                        || first.memory_base() != other.memory_base()
                        || first.memory_index() != other.memory_index()
                        || first.memory_index_scale() != other.memory_index_scale()
                        || first.memory_segment() != other.memory_segment()
                        || first.memory_size() != other.memory_size()
                    {
                        return Err(mismatch(versions, k, "different memory operands"));
                    }
                    if !first.is_ip_rel_memory_operand()
                        && first.memory_displacement64() != other.memory_displacement64()
                    {
                        disp_differs = true;
                    }
                }
                k2 if is_immediate(k2) => {
                    if !is_immediate(b) {
                        return Err(mismatch(versions, k, "an immediate became something else"));
                    }
                    let signed = |insn: &Instruction| {
                        let v = insn.immediate(i);
                        if insn.mnemonic() == Mnemonic::Sub {
                            v.wrapping_neg()
                        } else {
                            v
                        }
                    };
                    let (x, y) = if add_sub_mixed || is_add_sub(first.mnemonic()) {
                        (signed(first), signed(other))
                    } else {
                        (first.immediate(i), other.immediate(i))
                    };
                    if x != y {
                        imm_differs = true;
                    }
                }
                _ => return Err(mismatch(versions, k, "operand kind not modelled")),
            }
        }
    }
    let op_width = |insn: &Instruction| -> Option<Width> {
        match insn.op0_kind() {
            OpKind::Register => Width::from_bytes(insn.op0_register().size()),
            OpKind::Memory => Width::from_bytes(insn.memory_size().size()),
            _ => None,
        }
    };
    let unsupported = |reason| unsupported_seed(first, reason);
    let (param, width) = match (imm_differs, disp_differs) {
        (false, false) => {
            return Err(SymexError::NotASeed {
                ip: first.ip(),
                text: att(first),
            });
        }
        (true, true) => {
            return Err(mismatch(
                versions,
                1,
                "both an immediate and a displacement change",
            ));
        }
        (true, false) => {
            let w = if is_shift(first.mnemonic()) {
                Width::W8
            } else {
                op_width(first).ok_or_else(|| unsupported("operand width"))?
            };
            (Param::Immediate, w)
        }
        (false, true) => {
            if first.mnemonic() != Mnemonic::Lea {
                return Err(unsupported(
                    "a memory displacement depends on V (a layout change; only `lea` displacements are constants)",
                ));
            }
            (
                Param::Displacement,
                op_width(first).ok_or_else(|| unsupported("operand width"))?,
            )
        }
    };
    let iv_of = |insn: &Instruction| -> u64 {
        let raw = match param {
            Param::Immediate => {
                let i = imm_op.unwrap_or(0);
                let v = insn.immediate(i);
                if add_sub_mixed && insn.mnemonic() == Mnemonic::Sub {
                    v.wrapping_neg()
                } else {
                    v
                }
            }
            Param::Displacement => insn.memory_displacement64(),
        };
        raw & width.mask()
    };
    Ok(Changing {
        param,
        ivs: [
            iv_of(versions[0].insn()),
            iv_of(versions[1].insn()),
            iv_of(versions[2].insn()),
        ],
        width,
        add_sub_mixed,
    })
}

fn is_shift(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Shl | Mnemonic::Sal | Mnemonic::Shr | Mnemonic::Sar
    )
}

fn unsupported_seed(insn: &Instruction, reason: &'static str) -> SymexError {
    SymexError::UnsupportedSeed {
        ip: insn.ip(),
        text: att(insn),
        reason,
    }
}

fn no_relation(versions: &[SeedVersion<'_>; 3], ch: &Changing) -> SymexError {
    let points = versions
        .iter()
        .zip(ch.ivs)
        .map(|(v, iv)| format!("V={} -> IV={iv:#x}", v.value))
        .collect::<Vec<_>>()
        .join(", ");
    let text = att(versions[0].insn());
    let held = ch.width.signed_min()..=ch.width.unsigned_max();
    let truncated: Vec<i64> = values(versions)
        .into_iter()
        .filter(|v| !held.contains(&i128::from(*v)))
        .collect();
    if truncated.is_empty() {
        SymexError::NoRelation { text, points }
    } else {
        SymexError::TruncatedValues {
            text,
            points,
            width: ch.width,
            truncated,
        }
    }
}

/// The changing constant, narrowed to the bits its consumers read when no relation fits the
/// whole immediate of a load into a register and the rest of it is dead ([`narrow`]), with
/// the register view the update then writes.
fn changing_read(
    versions: &[SeedVersion<'_>; 3],
    live_after_block: &[Gpr],
) -> Result<(Changing, Option<RegOperand>), SymexError> {
    let ch = changing(versions)?;
    let v1 = &versions[0];
    let seed = v1.insn();
    let load_to_reg = seed.mnemonic() == Mnemonic::Mov
        && seed.op_count() == 2
        && seed.op0_kind() == OpKind::Register
        && ch.param == Param::Immediate;
    if !load_to_reg
        || Fit::of(values(versions), ch.ivs, ch.width)
            .neutral()
            .is_some()
    {
        return Ok((ch, None));
    }
    let narrowed = RegOperand::from_iced(seed.op0_register())
        .filter(|r| !r.high8)
        .and_then(|r| {
            narrow::consumed_width(v1.block, v1.seed, r.gpr, live_after_block)
                .filter(|w| *w < r.width)
                .map(|w| RegOperand::new(r.gpr, w))
        });
    Ok(match narrowed {
        Some(view) => (
            Changing {
                ivs: ch.ivs.map(|iv| iv & view.width.mask()),
                width: view.width,
                ..ch
            },
            Some(view),
        ),
        None => (ch, None),
    })
}

/// The view a narrowed load writes: the seed loads a wider register, whose other bits are
/// dead ([`changing_read`]).
fn narrowed_view(seed: &Instruction, recipe: &Recipe) -> Option<RegOperand> {
    match recipe.update {
        Update::Load {
            dest: Place::Reg { reg },
        } if seed.op0_kind() == OpKind::Register
            && Width::from_bytes(seed.op0_register().size()).is_some_and(|w| w > reg.width) =>
        {
            Some(reg)
        }
        _ => None,
    }
}

/// The operation a seed performs with its constant.
enum Form {
    Load {
        dest: Place,
    },
    Combine {
        op: CombineOp,
        dest: Place,
        source: Source,
    },
    Compare {
        op: CompareOp,
        width: Width,
        source: Source,
    },
}

/// Where the non-constant operand of the seed comes from, before availability analysis.
#[derive(Clone, Copy)]
enum Source {
    /// The destination's old value (2-operand ALU forms, shifts).
    Dest,
    /// Another register or memory operand.
    Operand(Place),
    /// `lea`'s base + index*scale.
    Address {
        base: Option<Gpr>,
        index: Option<Gpr>,
        scale: u8,
    },
}

fn place_of(insn: &Instruction, op: u32, span_start: u64) -> Option<Place> {
    match insn.op_kind(op) {
        OpKind::Register => Some(Place::Reg {
            reg: RegOperand::from_iced(insn.op_register(op))?,
        }),
        OpKind::Memory => Some(Place::Mem {
            addr: address_of(insn, span_start)?,
            width: Width::from_bytes(insn.memory_size().size())?,
        }),
        _ => None,
    }
}

fn address_of(insn: &Instruction, span_start: u64) -> Option<Address> {
    let segment = match insn.memory_segment() {
        Register::FS => Some(Segment::Fs),
        Register::GS => Some(Segment::Gs),
        _ => None,
    };
    if insn.is_ip_rel_memory_operand() {
        if insn.memory_base() != Register::RIP {
            return None;
        }
        let disp = insn.memory_displacement64().wrapping_sub(span_start) as i64;
        return Some(Address {
            segment,
            base: None,
            index: None,
            scale: 1,
            disp,
            rip_relative: true,
        });
    }
    let reg64 = |r: Register| -> Option<Option<Gpr>> {
        if r == Register::None {
            return Some(None);
        }
        RegOperand::from_iced(r)
            .filter(|r| r.width == Width::W64)
            .map(|r| Some(r.gpr))
    };
    Some(Address {
        segment,
        base: reg64(insn.memory_base())?,
        index: reg64(insn.memory_index())?,
        scale: insn.memory_index_scale() as u8,
        disp: insn.memory_displacement64() as i64,
        rip_relative: false,
    })
}

fn classify(insn: &Instruction, ch: &Changing, span_start: u64) -> Result<Form, SymexError> {
    let unsupported = |reason| unsupported_seed(insn, reason);
    let dest = || {
        place_of(insn, 0, span_start)
            .ok_or_else(|| unsupported("destination is not a GPR or memory"))
    };
    let m = insn.mnemonic();
    if ch.param == Param::Displacement {
        // changing() only lets lea through here.
        let dest = dest()?;
        let addr = address_of(insn, span_start)
            .ok_or_else(|| unsupported("32-bit or RIP-relative lea"))?;
        if addr.rip_relative || addr.segment.is_some() {
            return Err(unsupported(
                "a RIP-relative lea displacement is an address, not a constant",
            ));
        }
        let source = Source::Address {
            base: addr.base,
            index: addr.index,
            scale: addr.scale,
        };
        return Ok(Form::Combine {
            op: CombineOp::Lea,
            dest,
            source,
        });
    }
    let last_is_imm = insn.op_count() >= 2 && is_immediate(insn.op_kind(insn.op_count() - 1));
    if !last_is_imm {
        return Err(unsupported("the constant is not the last operand"));
    }
    Ok(match m {
        Mnemonic::Mov if insn.op_count() == 2 => Form::Load { dest: dest()? },
        Mnemonic::Add
        | Mnemonic::Sub
        | Mnemonic::And
        | Mnemonic::Or
        | Mnemonic::Xor
        | Mnemonic::Shl
        | Mnemonic::Sal
        | Mnemonic::Shr
        | Mnemonic::Sar
            if insn.op_count() == 2 =>
        {
            let op = match m {
                _ if ch.add_sub_mixed => CombineOp::Add,
                Mnemonic::Add => CombineOp::Add,
                Mnemonic::Sub => CombineOp::Sub,
                Mnemonic::And => CombineOp::And,
                Mnemonic::Or => CombineOp::Or,
                Mnemonic::Xor => CombineOp::Xor,
                Mnemonic::Shl | Mnemonic::Sal => CombineOp::Shl,
                Mnemonic::Shr => CombineOp::Shr,
                _ => CombineOp::Sar,
            };
            Form::Combine {
                op,
                dest: dest()?,
                source: Source::Dest,
            }
        }
        Mnemonic::Imul if insn.op_count() == 3 => {
            let src = place_of(insn, 1, span_start).ok_or_else(|| unsupported("imul source"))?;
            Form::Combine {
                op: CombineOp::Imul,
                dest: dest()?,
                source: Source::Operand(src),
            }
        }
        Mnemonic::Cmp | Mnemonic::Test if insn.op_count() == 2 => {
            let p = dest()?;
            let op = if m == Mnemonic::Cmp {
                CompareOp::Cmp
            } else {
                CompareOp::Test
            };
            Form::Compare {
                op,
                width: p.width(),
                source: Source::Operand(p),
            }
        }
        _ => return Err(unsupported("no update recipe for this instruction form")),
    })
}

/// Flags read after `from` (in `block`) before being redefined, with the reading
/// instructions, and whether some may still be live at the end of the block.
struct Consumers {
    reads: FlagSet,
    readers: Vec<(usize, FlagSet)>,
    live_out: bool,
}

fn consumers(block: &[Instruction], from: usize, written: FlagSet) -> Consumers {
    let mut live = written;
    let mut out = Consumers {
        reads: FlagSet::EMPTY,
        readers: Vec::new(),
        live_out: false,
    };
    for (i, insn) in block.iter().enumerate().skip(from) {
        if live.is_empty() {
            break;
        }
        let reads = FlagSet::from_iced(insn.rflags_read()).intersection(live);
        if !reads.is_empty() {
            out.reads = out.reads.union(reads);
            out.readers.push((i, reads));
        }
        // The ABI does not preserve flags across calls and returns: they are dead there.
        if matches!(
            insn.flow_control(),
            FlowControl::Call | FlowControl::IndirectCall | FlowControl::Return
        ) {
            live = FlagSet::EMPTY;
            break;
        }
        live = live.difference(FlagSet::from_iced(insn.rflags_modified()));
    }
    out.live_out = !live.is_empty();
    out
}

/// Whether the consumers compare unsigned (`Some(true)`: they read only CF and ZF, as
/// `ja/jb/jbe/jae/je/jne`, `sbb`, `adc` do) or signed (`Some(false)`: SF/OF and maybe ZF, as
/// `jl/jg/jle/jge`), or neither/both (`None`).
fn consumer_signedness(cons: &Consumers) -> Option<bool> {
    let unsigned = FlagSet::of(&[Flag::Cf, Flag::Zf]);
    let signed = FlagSet::of(&[Flag::Zf, Flag::Sf, Flag::Of]);
    let all = |set: FlagSet| {
        !cons.readers.is_empty() && cons.readers.iter().all(|(_, r)| set.contains_all(*r))
    };
    let any_sign = cons
        .readers
        .iter()
        .any(|(_, r)| r.contains(Flag::Sf) || r.contains(Flag::Of));
    if all(unsigned) {
        Some(true)
    } else if all(signed) && any_sign {
        Some(false)
    } else {
        None
    }
}

fn check_consumers(
    block: &[Instruction],
    seed: &Instruction,
    cons: &Consumers,
    covered: FlagSet,
) -> Result<(), SymexError> {
    for &(i, reads) in &cons.readers {
        if !covered.contains_all(reads) {
            return Err(SymexError::UncoveredFlags {
                seed: att(seed),
                consumer: att(&block[i]),
                ip: block[i].ip(),
                reads,
                covered,
            });
        }
    }
    Ok(())
}

/// Finds a `mov %x,%reg` (32 or 64-bit, so it defines all of `reg`) before `start` whose
/// source register is not written from there to `end`: the input can be read from `%x`.
/// Returns the input and the index of the `mov`.
fn recover(block: &[Instruction], start: usize, end: usize, reg: Gpr) -> Option<(Input, usize)> {
    for i in (0..start).rev() {
        let fx = sem::effects(&block[i]).ok()?;
        if !sem::written_gprs(&fx).contains(&reg) {
            continue;
        }
        let insn = &block[i];
        if insn.mnemonic() != Mnemonic::Mov
            || insn.op0_kind() != OpKind::Register
            || insn.op1_kind() != OpKind::Register
        {
            return None;
        }
        let (d, s) = (
            RegOperand::from_iced(insn.op0_register())?,
            RegOperand::from_iced(insn.op1_register())?,
        );
        if d.gpr != reg || s.gpr == reg || d.width < Width::W32 || s.width != d.width || s.high8 {
            return None;
        }
        for later in &block[i + 1..end] {
            if sem::written_gprs(&sem::effects(later).ok()?).contains(&s.gpr) {
                return None;
            }
        }
        return Some((
            Input::Read {
                place: Place::Reg { reg: s },
            },
            i,
        ));
    }
    None
}

fn address_regs(addr: &Address) -> impl Iterator<Item = Gpr> {
    addr.base.into_iter().chain(addr.index)
}

/// The modular inverse of an odd `a` modulo 2^width (Newton iteration).
fn inverse_mod_pow2(a: u64, width: Width) -> u64 {
    let mut x = a; // correct to 3 bits for odd a
    for _ in 0..6 {
        x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
    }
    x & width.mask()
}

/// A recipe and the V1 index from which the self-check must execute (before the span when
/// an input was recovered from an earlier `mov`).
type Synthesized = (Recipe, usize);

fn synthesize_simple(
    versions: &[SeedVersion<'_>; 3],
    live_after_block: &[Gpr],
) -> Result<Synthesized, SymexError> {
    let v1 = &versions[0];
    let seed = v1.insn();
    let span = CriticalSpan {
        start: seed.ip(),
        end: seed.next_ip(),
    };
    let (ch, narrowed) = changing_read(versions, live_after_block)?;
    let form = match narrowed {
        Some(reg) => Form::Load {
            dest: Place::Reg { reg },
        },
        None => classify(seed, &ch, span.start)?,
    };
    let fit = Fit::of(values(versions), ch.ivs, ch.width);
    let seed_fx = sem::effects(seed)?;
    let written_regs = sem::written_gprs(&seed_fx);
    let cons = consumers(v1.block, v1.seed + 1, sem::touched_flags(&seed_fx));
    let iv1 = ch.ivs[0];

    // Step 4: the update and where its input comes from.
    let mut save = None;
    let mut prefix = v1.seed;
    let (kind, update, iv_width, domain_pick) = match form {
        Form::Load { dest } => (
            SynthesisKind::ImmediateLoad,
            Update::Load { dest },
            dest.width(),
            None,
        ),
        Form::Combine { op, dest, source } => {
            let w = dest.width();
            let input = match source {
                Source::Operand(p) if !destroyed(&p, &dest, &written_regs) => {
                    Input::Read { place: p }
                }
                Source::Address { base, index, scale }
                    if !base
                        .into_iter()
                        .chain(index)
                        .any(|r| written_regs.contains(&r)) =>
                {
                    Input::Address { base, index, scale }
                }
                _ => {
                    // The seed destroyed its input: invert it, or find a copy, or save it.
                    let undo = match op {
                        CombineOp::Add | CombineOp::Lea => Some((UndoOp::Sub, iv1)),
                        CombineOp::Sub => Some((UndoOp::Add, iv1)),
                        CombineOp::Xor => Some((UndoOp::Xor, iv1)),
                        CombineOp::Imul if iv1 % 2 == 1 => {
                            Some((UndoOp::Mul, inverse_mod_pow2(iv1, w)))
                        }
                        _ => None,
                    };
                    let src_place = match source {
                        Source::Dest => Some(dest),
                        Source::Operand(p) => Some(p),
                        Source::Address { .. } => None,
                    };
                    let undo_ok = match source {
                        Source::Operand(p) => p == dest,
                        _ => true,
                    };
                    match (undo, undo_ok) {
                        (Some((uop, operand)), true) => Input::Undo {
                            place: dest,
                            op: uop,
                            operand,
                        },
                        _ => {
                            let reg = match src_place {
                                Some(Place::Reg { reg }) if !reg.high8 => Some(reg),
                                _ => None,
                            };
                            match reg.and_then(|r| recover(v1.block, v1.seed, v1.seed + 1, r.gpr)) {
                                Some((input, at)) => {
                                    prefix = at;
                                    input
                                }
                                None => {
                                    let p = src_place.ok_or_else(|| {
                                        unsupported_seed(
                                            seed,
                                            "lea destroys its own address registers",
                                        )
                                    })?;
                                    if let Place::Mem { addr, .. } = p
                                        && address_regs(&addr).any(|r| written_regs.contains(&r))
                                    {
                                        return Err(unsupported_seed(
                                            seed,
                                            "the seed overwrites its own address register",
                                        ));
                                    }
                                    save = Some(p);
                                    Input::Saved
                                }
                            }
                        }
                    }
                }
            };
            let mut flags = combine_flags(op, ch.add_sub_mixed);
            if op.is_shift() && cons.reads.is_empty() && !cons.live_out {
                // The flags are dead, and a shift by 0 (valid then) would leave the old ones:
                // claim none rather than recompute values the V' code may not have.
                flags = FlagSet::EMPTY;
            }
            let iv_width = if op.is_shift() { Width::W8 } else { w };
            (
                SynthesisKind::Combine,
                Update::Combine {
                    op,
                    dest,
                    input,
                    flags,
                },
                iv_width,
                None,
            )
        }
        Form::Compare { op, width, source } => {
            let Source::Operand(p) = source else {
                unreachable!("compares read an operand")
            };
            let flags = match op {
                CompareOp::Cmp => FlagSet::ARITHMETIC,
                CompareOp::Test => FlagSet::ARITHMETIC.difference(FlagSet::of(&[Flag::Af])),
            };
            let pick = consumer_signedness(&cons);
            (
                SynthesisKind::Compare,
                Update::Compare {
                    op,
                    width,
                    input: Input::Read { place: p },
                    flags,
                },
                width,
                pick,
            )
        }
    };

    // Step 3: the relation, with the reading the consumers ask for.
    let (relation, domain) = match domain_pick {
        Some(unsigned) => fit.prefer(unsigned),
        None => fit.neutral(),
    }
    .ok_or_else(|| no_relation(versions, &ch))?;

    // Step 5: consumers.
    let covered = match update {
        Update::Combine { flags, .. } | Update::Compare { flags, .. } => flags,
        _ => FlagSet::EMPTY,
    };
    check_consumers(v1.block, seed, &cons, covered)?;
    if ch.add_sub_mixed && cons.live_out {
        return Err(unsupported_seed(
            seed,
            "the builds mix `add $k` and `sub $-k`, which set CF/AF differently, and the flags may be read after the block",
        ));
    }

    // Step 6: bounds.
    let mut range = ValueRange::unbounded();
    let iv_bound = |range: &mut ValueRange, lo: i128, hi: i128, reason: BoundReason| match relation
        .v_interval(lo, hi)
    {
        Some((vlo, vhi)) => range.narrow(Some(vlo), Some(vhi), reason),
        None => range.narrow(Some(1), Some(0), reason),
    };
    let shift = matches!(update, Update::Combine { op, .. } if op.is_shift());
    if shift {
        let Update::Combine { dest, .. } = update else {
            unreachable!()
        };
        let w = dest.width();
        iv_bound(
            &mut range,
            0,
            i128::from(w.bits() - 1),
            BoundReason::ShiftCount { width: w },
        );
        if cons.live_out || !cons.reads.is_empty() {
            iv_bound(
                &mut range,
                1,
                i128::from(w.bits() - 1),
                BoundReason::ZeroShiftKeepsFlags,
            );
        }
    } else {
        let (lo, hi) = domain.window(ch.width);
        iv_bound(
            &mut range,
            lo,
            hi,
            BoundReason::IvOverflow {
                width: ch.width,
                domain,
            },
        );
        if let Some((lo, hi)) = immediate_field(seed, ch.width, domain, ch.ivs) {
            iv_bound(&mut range, lo, hi, BoundReason::ImmediateField { bits: 32 });
        }
    }
    match relation {
        Relation::Exp2 { .. } => range.narrow(Some(0), Some(62), BoundReason::Exponent),
        Relation::Log2 { .. } => {
            range.narrow(Some(1), None, BoundReason::Logarithm);
            range.restriction = Some(Restriction::PowerOfTwo);
        }
        _ => {}
    }
    if is_power_of_two_mask(&update, relation, values(versions)) {
        range.restriction = Some(Restriction::PowerOfTwo);
    }
    finish_range(versions, &range)?;
    Ok((
        Recipe {
            kind,
            span,
            relation,
            iv_width,
            save,
            update,
            consumers: cons.reads,
            range,
        },
        prefix,
    ))
}

/// Whether the seed masks with IV = 2^k*V - 1 (`x % V`, `x & (V - 1)`) or aligns with
/// IV = -2^k*V (`round_down(x, V)`), built only with powers of two: the compiler emits such an
/// `and`/`test` for `%` and `/` only because V is one, and a mask in the source means one. A
/// V' that is not a power of two would give neither the source's meaning nor the V' build's
/// code, so the range takes powers of two only.
fn is_power_of_two_mask(update: &Update, relation: Relation, values: [i64; 3]) -> bool {
    let masking = matches!(
        update,
        Update::Combine {
            op: CombineOp::And,
            ..
        } | Update::Compare {
            op: CompareOp::Test,
            ..
        }
    );
    let power_of_two = |x: i64| x > 0 && x.unsigned_abs().is_power_of_two();
    let mask_relation = match relation {
        Relation::Affine { a, b: -1 } => power_of_two(a),
        Relation::Affine { a, b: 0 } => a < 0 && power_of_two(a.saturating_neg()),
        _ => false,
    };
    masking && mask_relation && values.into_iter().all(power_of_two)
}

/// Whether the seed overwrote `p` (a register it writes, or the memory it stores to, or
/// memory addressed through a register it writes).
fn destroyed(p: &Place, dest: &Place, written: &[Gpr]) -> bool {
    match p {
        Place::Reg { reg } => written.contains(&reg.gpr),
        Place::Mem { addr, .. } => p == dest || address_regs(addr).any(|r| written.contains(&r)),
    }
}

fn combine_flags(op: CombineOp, add_sub_mixed: bool) -> FlagSet {
    let all = FlagSet::ARITHMETIC;
    match op {
        // add $k and sub $-k differ in CF and AF: only the others are the same for both.
        CombineOp::Add | CombineOp::Sub if add_sub_mixed => {
            all.difference(FlagSet::of(&[Flag::Cf, Flag::Af]))
        }
        CombineOp::Add | CombineOp::Sub => all,
        CombineOp::And | CombineOp::Or | CombineOp::Xor => all.difference(FlagSet::of(&[Flag::Af])),
        // OF only for 1-bit shifts, AF never.
        CombineOp::Shl | CombineOp::Shr | CombineOp::Sar => {
            FlagSet::of(&[Flag::Cf, Flag::Pf, Flag::Zf, Flag::Sf])
        }
        CombineOp::Imul => FlagSet::of(&[Flag::Cf, Flag::Of]),
        CombineOp::Lea => FlagSet::EMPTY,
    }
}

/// The IV interval a sign-extended imm32 (or disp32) field allows for a 64-bit operation, in
/// the integers of `domain` (the part of the unsigned reading the observed IVs are in).
fn immediate_field(
    insn: &Instruction,
    width: Width,
    domain: IvDomain,
    ivs: [u64; 3],
) -> Option<(i128, i128)> {
    if width != Width::W64 || insn.code() == Code::Mov_r64_imm64 {
        return None;
    }
    let lo32 = -(1i128 << 31);
    let hi32 = (1i128 << 31) - 1;
    Some(match domain {
        IvDomain::Unsigned if ivs.iter().all(|&v| v >= 1 << 63) => {
            ((1i128 << 64) + lo32, (1i128 << 64) - 1)
        }
        IvDomain::Unsigned | IvDomain::NonNegative => (0, hi32),
        IvDomain::Negative => (lo32, -1),
        IvDomain::Signed => (lo32, hi32),
    })
}

fn finish_range(versions: &[SeedVersion<'_>; 3], range: &ValueRange) -> Result<(), SymexError> {
    for (k, v) in versions.iter().enumerate() {
        if let Err(e) = range.check(v.value) {
            return Err(SymexError::SelfCheck {
                seed: att(versions[0].insn()),
                version: k + 1,
                other: att(v.insn()),
                detail: format!("the observed value is outside the computed range: {e}"),
            });
        }
    }
    Ok(())
}

/// The magic sequence of every version, checked against the algorithm.
fn divide_matches(
    versions: &[SeedVersion<'_>; 3],
    m1: MagicMatch,
) -> Result<[MagicMatch; 3], SymexError> {
    let mut out = [m1; 3];
    for (k, ver) in versions.iter().enumerate() {
        let mk = if k == 0 {
            m1
        } else {
            magic::match_around(ver.block, ver.seed).ok_or_else(|| {
                mismatch(versions, k, "V1 is a magic division sequence but this version is not (give its whole block)")
            })?
        };
        if mk.form != m1.form
            || mk.dividend != m1.dividend
            || mk.dest != m1.dest
            || mk.temp != m1.temp
            || mk.fixup != m1.fixup
            || mk.multiply - mk.start != m1.multiply - m1.start
            || mk.end - mk.start != m1.end - m1.start
        {
            return Err(mismatch(versions, k, "a different magic division sequence"));
        }
        if ver.seed - mk.start != versions[0].seed - m1.start {
            return Err(mismatch(
                versions,
                k,
                "the seed is at a different place in the sequence",
            ));
        }
        let expected = magic::check_form(ver.value, m1.width(), m1.form);
        if expected != Ok((mk.multiplier, mk.shift)) {
            return Err(SymexError::NoRelation {
                text: att(versions[0].insn()),
                points: format!(
                    "V={} -> multiplier {:#x}, shift {} in the code, but unsigned x / V gives {:?}",
                    ver.value, mk.multiplier, mk.shift, expected
                ),
            });
        }
        out[k] = mk;
    }
    Ok(out)
}

fn division_relation(m: &MagicMatch, part: MagicPart) -> Relation {
    let width = m.width();
    match m.form {
        MagicForm::SignedImulAdd => Relation::SignedDivision { width, part },
        _ => Relation::UnsignedDivision { width, part },
    }
}

fn magic_part(versions: &[SeedVersion<'_>; 3]) -> Result<MagicPart, SymexError> {
    let seed = versions[0].insn();
    let has_imm = (0..seed.op_count()).any(|i| is_immediate(seed.op_kind(i)));
    match seed.mnemonic() {
        Mnemonic::Shr | Mnemonic::Sar => Ok(MagicPart::Shift),
        Mnemonic::Mov | Mnemonic::Imul if has_imm => Ok(MagicPart::Multiplier),
        _ => Err(unsupported_seed(
            seed,
            "this instruction of the division sequence holds no constant",
        )),
    }
}

/// Where the update finds `reg` as the multiply (or the fix-up) of a division sequence
/// reads it: a load inside the sequence is read again from memory at the post-probe; a value
/// from before the sequence is read in place if the sequence leaves it, recovered from an
/// earlier `mov` (moving `prefix` back), or saved by the pre-probe (one value at most). The
/// sequence reads `width` bits of `reg`.
fn divide_input(
    block: &[Instruction],
    m: &MagicMatch,
    reg: Gpr,
    width: Width,
    save: &mut Option<Place>,
    prefix: &mut usize,
) -> Result<Input, SymexError> {
    let written = |insn: &Instruction| -> Result<Vec<Gpr>, SymexError> {
        Ok(sem::written_gprs(&sem::effects(insn)?))
    };
    let span = &block[m.start..m.end];
    let mut defined_inside = None;
    for (k, insn) in span.iter().enumerate().take(m.multiply - m.start) {
        if written(insn)?.contains(&reg) {
            defined_inside = Some(m.start + k);
        }
    }
    if let Some(at) = defined_inside {
        return reloaded(block, m, at, reg);
    }
    let mut overwritten = false;
    for insn in span {
        overwritten |= written(insn)?.contains(&reg);
    }
    let place = Place::Reg {
        reg: RegOperand::new(reg, width),
    };
    if !overwritten {
        return Ok(Input::Read { place });
    }
    if let Some((input, at)) = recover(block, m.start, m.end, reg) {
        *prefix = (*prefix).min(at);
        return Ok(input);
    }
    if save.is_some() {
        return Err(unsupported_seed(
            &block[m.start],
            "the division sequence destroys two inputs a pre-probe would have to save",
        ));
    }
    *save = Some(place);
    Ok(Input::Saved)
}

/// The index of `mov %x32,%src32` before `start` when it is the last write of `%src` and
/// `%x` is unchanged since: then `%src` holds `%x` zero-extended when the sequence starts.
fn zero_extended_copy(block: &[Instruction], start: usize, src: Gpr, x: Gpr) -> Option<usize> {
    let at = (0..start).rev().find(|&i| magic::writes(&block[i], src))?;
    let mov = &block[at];
    let is_copy = matches!(mov.code(), Code::Mov_r32_rm32 | Code::Mov_rm32_r32)
        && mov.op0_kind() == OpKind::Register
        && mov.op1_kind() == OpKind::Register
        && RegOperand::from_iced(mov.op0_register()).map(|r| r.gpr) == Some(src)
        && RegOperand::from_iced(mov.op1_register()).map(|r| r.gpr) == Some(x);
    (is_copy && !block[at + 1..start].iter().any(|i| magic::writes(i, x))).then_some(at)
}

/// The dividend loaded by `block[at]` inside the sequence (`mov mem,%reg`), read from the
/// same memory at the post-probe. Only the multiply may read the loaded value, and it must
/// overwrite it; nothing in the sequence may store to memory or change the address: then the
/// V' code, which loads once, behaves as if its load happened at the probe.
fn reloaded(
    block: &[Instruction],
    m: &MagicMatch,
    at: usize,
    reg: Gpr,
) -> Result<Input, SymexError> {
    let load = &block[at];
    let unsupported = |reason| Err(unsupported_seed(load, reason));
    let width = match load.code() {
        Code::Mov_r64_rm64 => Width::W64,
        Code::Mov_r32_rm32 => Width::W32,
        _ => return unsupported("the dividend is computed inside the division sequence"),
    };
    if load.op1_kind() != OpKind::Memory {
        return unsupported("the dividend is computed inside the division sequence");
    }
    let Some(addr) = address_of(load, block[m.start].ip()) else {
        return unsupported("the dividend's address cannot be recomputed at the post-probe");
    };
    for (k, insn) in block.iter().enumerate().take(m.end).skip(m.start) {
        let fx = sem::effects(insn)?;
        if fx.iter().any(|e| matches!(e, sem::Effect::Store { .. })) {
            return unsupported("the division sequence that loads its dividend stores to memory");
        }
        if k > at && address_regs(&addr).any(|r| sem::written_gprs(&fx).contains(&r)) {
            return unsupported("the division sequence changes the address of its dividend");
        }
        if k > at && k < m.multiply && magic::touches(insn, reg) {
            return unsupported("the loaded dividend is used besides the multiply");
        }
    }
    if !sem::written_gprs(&sem::effects(&block[m.multiply])?).contains(&reg) {
        return unsupported("the loaded dividend outlives the division sequence");
    }
    Ok(Input::Read {
        place: Place::Mem { addr, width },
    })
}

fn synthesize_divide(
    versions: &[SeedVersion<'_>; 3],
    m1: MagicMatch,
) -> Result<Synthesized, SymexError> {
    let v1 = &versions[0];
    divide_matches(versions, m1)?;
    let part = magic_part(versions)?;
    let width = m1.width();
    let block = v1.block;
    let span = CriticalSpan {
        start: block[m1.start].ip(),
        end: block[m1.end - 1].next_ip(),
    };

    let mut save = None;
    let mut prefix = m1.inputs_from;
    let (dividend, fixup) = match (m1.form, m1.fixup) {
        // The signed form multiplies the 32-bit dividend sign-extended (the matcher checked).
        (MagicForm::SignedImulAdd, _) => (
            divide_input(block, &m1, m1.dividend, Width::W32, &mut save, &mut prefix)?,
            None,
        ),
        (_, Some(x)) => match zero_extended_copy(block, m1.start, m1.dividend, x) {
            // `mov %x32,%src32` before the sequence: one 32-bit input serves both reads.
            Some(at) => {
                prefix = prefix.min(at);
                let input = divide_input(block, &m1, x, Width::W32, &mut save, &mut prefix)?;
                (input, Some(input))
            }
            None => (
                divide_input(block, &m1, m1.dividend, Width::W64, &mut save, &mut prefix)?,
                Some(divide_input(
                    block,
                    &m1,
                    x,
                    Width::W32,
                    &mut save,
                    &mut prefix,
                )?),
            ),
        },
        (_, None) => (
            divide_input(block, &m1, m1.dividend, Width::W64, &mut save, &mut prefix)?,
            None,
        ),
    };
    let flags = match m1.form {
        MagicForm::Mul { shifted: false } => FlagSet::of(&[Flag::Cf, Flag::Of]),
        MagicForm::SignedImulAdd => FlagSet::ARITHMETIC,
        _ => FlagSet::of(&[Flag::Cf, Flag::Pf, Flag::Zf, Flag::Sf]),
    };
    let last = &block[m1.end - 1];
    let cons = consumers(block, m1.end, sem::touched_flags(&sem::effects(last)?));
    check_consumers(block, last, &cons, flags)?;

    let mut range = ValueRange::unbounded();
    range.narrow(Some(1), None, BoundReason::DivisionByZero);
    range.narrow(
        None,
        Some(width.signed_max()),
        BoundReason::MagicShape {
            mismatch: magic::MagicMismatch::Compare,
        },
    );
    range.restriction = Some(Restriction::UnsignedMagic {
        width,
        form: m1.form,
    });
    finish_range(versions, &range)?;
    let iv_width = match part {
        MagicPart::Multiplier => width,
        MagicPart::Shift => Width::W8,
    };
    let recipe = Recipe {
        kind: SynthesisKind::Folded,
        span,
        relation: division_relation(&m1, part),
        iv_width,
        save,
        update: Update::Divide {
            width,
            form: m1.form,
            dividend,
            fixup,
            dest: m1.dest,
            temp: m1.temp,
            flags,
        },
        consumers: cons.reads,
        range,
    };
    Ok((recipe, prefix))
}

/// The instructions of the critical span in version `k`.
fn span_code<'a>(
    versions: &[SeedVersion<'a>; 3],
    k: usize,
    recipe: &Recipe,
) -> Result<&'a [Instruction], SymexError> {
    let v = &versions[k];
    match recipe.update {
        Update::Divide { .. } => {
            let m = magic::match_around(v.block, v.seed)
                .ok_or_else(|| mismatch(versions, k, "no division sequence"))?;
            Ok(&v.block[m.start..m.end])
        }
        _ => Ok(&v.block[v.seed..=v.seed]),
    }
}

/// A small deterministic generator (SplitMix64) for the self-check states.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

const SELF_CHECK_TRIALS: usize = 48;

/// Step 7: V1 code + recipe(V_k) must equal V_k code, for k = 2, 3, on pseudo-random states.
/// Both run V1's instructions from `prefix` up to the span first (identical in every build).
fn self_check(
    versions: &[SeedVersion<'_>; 3],
    recipe: &Recipe,
    prefix: usize,
) -> Result<(), SymexError> {
    let code1 = span_code(versions, 0, recipe)?;
    let cs_start = versions[0]
        .block
        .iter()
        .position(|i| i.ip() == recipe.span.start)
        .unwrap_or(prefix);
    let pre = &versions[0].block[prefix.min(cs_start)..cs_start];
    let coverage = recipe.coverage();
    let interesting: Vec<u64> = versions
        .iter()
        .filter_map(|v| recipe.relation.eval(v.value))
        .flat_map(|iv| {
            [
                iv as u64,
                (iv as u64).wrapping_add(1),
                (iv as u64).wrapping_sub(1),
            ]
        })
        .chain([
            0,
            1,
            u64::MAX,
            0x7f,
            0x80,
            0xff,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            1 << 63,
        ])
        .collect();
    // A narrowed load leaves dead bits as V1 had them; only the view it writes is compared.
    let narrowed = narrowed_view(versions[0].insn(), recipe);
    let live = |s: &MachineState, g: Gpr| match narrowed {
        Some(view) if view.gpr == g => view.read(s.get(g)),
        _ => s.get(g),
    };
    let mut rng = SplitMix(0x6b78_5f73_796d_6578);
    for k in 1..3 {
        let mut code_k = span_code(versions, k, recipe)?.to_vec();
        // Unrelocated RIP-relative operands point at different places in each build; they
        // address the same object once linked.
        for (a, b) in code1.iter().zip(code_k.iter_mut()) {
            if a.is_ip_rel_memory_operand() && b.is_ip_rel_memory_operand() {
                b.set_memory_displacement64(a.memory_displacement64());
            }
        }
        for trial in 0..SELF_CHECK_TRIALS {
            let mut s0 = MachineState::default();
            for g in Gpr::ALL {
                let r = rng.next();
                let v = if trial % 2 == 0 {
                    interesting[(r % interesting.len() as u64) as usize]
                } else {
                    rng.next()
                };
                s0.set(g, v);
            }
            s0.rflags = 0x2 | (rng.next() & FlagSet::ARITHMETIC.mask());
            s0.gs_base = rng.next() & 0x0000_7fff_ffff_f000;
            s0.fs_base = rng.next() & 0x0000_7fff_ffff_f000;
            for insn in pre.iter().chain(code1).chain(code_k.iter()) {
                map_operand_memory(insn, &mut s0, &mut rng);
            }
            for insn in pre {
                sem::execute(insn, &mut s0)?;
            }
            let fail = |detail: String| SymexError::SelfCheck {
                seed: att(versions[0].insn()),
                version: k + 1,
                other: att(versions[k].insn()),
                detail,
            };
            let mut a = s0.clone();
            a.rip = code1[0].ip();
            let saved = recipe.capture(&a)?;
            let mut undefined = FlagSet::EMPTY;
            for insn in code1 {
                undefined = undefined.union(sem::execute(insn, &mut a)?.undefined);
            }
            let before_apply = a.clone();
            recipe.apply(&mut a, saved, versions[k].value)?;
            let mut b = s0.clone();
            for insn in &code_k {
                undefined = undefined.union(sem::execute(insn, &mut b)?.undefined);
            }
            if let Some(g) = Gpr::ALL.into_iter().find(|&g| live(&a, g) != live(&b, g)) {
                return Err(fail(format!(
                    "{g}: recipe gives {:#x}, the code {:#x}",
                    live(&a, g),
                    live(&b, g)
                )));
            }
            if a.memory != b.memory {
                return Err(fail("memory differs".into()));
            }
            let flag_diff = a
                .flag_difference(&b)
                .intersection(coverage.flags)
                .difference(undefined);
            if !flag_diff.is_empty() {
                return Err(fail(format!("flags {flag_diff} differ")));
            }
            let touched = a.flag_difference(&before_apply).difference(coverage.flags);
            if !touched.is_empty() {
                return Err(fail(format!(
                    "the recipe changed flags {touched} it does not claim"
                )));
            }
        }
    }
    Ok(())
}

/// Maps 8 random bytes at each memory operand of `insn` (evaluated on the state as it is).
fn map_operand_memory(insn: &Instruction, s: &mut MachineState, rng: &mut SplitMix) {
    if !(0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory)
        || insn.mnemonic() == Mnemonic::Lea
    {
        return;
    }
    let Ok(fx) = sem::effects(insn) else { return };
    let mut addrs = Vec::new();
    for e in &fx {
        collect_loads(e, &mut addrs);
    }
    for addr in addrs {
        if let Ok(a) = addr.eval(s) {
            let a = a.unsigned();
            if s.memory.read(a, Width::W64).is_err() {
                s.memory.map(a, rng.next().to_le_bytes().to_vec());
            }
        }
    }
}

fn collect_loads(e: &sem::Effect, out: &mut Vec<super::expr::Expr>) {
    use super::expr::Expr;
    fn walk(x: &Expr, out: &mut Vec<Expr>) {
        match x {
            Expr::Load { addr, .. } => {
                out.push((**addr).clone());
                walk(addr, out);
            }
            Expr::Const(_) | Expr::Var(_) => {}
            Expr::Unary { arg, .. } | Expr::Cast { arg, .. } => walk(arg, out),
            Expr::Binary { lhs, rhs, .. } | Expr::Flag { lhs, rhs, .. } => {
                walk(lhs, out);
                walk(rhs, out);
            }
            Expr::Ite {
                cond,
                then,
                otherwise,
            } => {
                walk(cond, out);
                walk(then, out);
                walk(otherwise, out);
            }
        }
    }
    match e {
        sem::Effect::Reg { value, .. } | sem::Effect::Flag { value, .. } => walk(value, out),
        sem::Effect::Store { addr, value, .. } => {
            out.push(addr.clone());
            walk(addr, out);
            walk(value, out);
        }
        sem::Effect::Branch { cond, .. } => walk(cond, out),
    }
}

#[cfg(test)]
mod tests {
    use iced_x86::code_asm::*;
    use iced_x86::{Decoder, DecoderOptions};

    use super::*;
    use crate::symex::flags::Condition;
    use crate::symex::range::{BoundReason, OutOfRange};

    type Build = fn(&mut CodeAssembler, i64) -> Result<(), IcedError>;

    fn block(f: Build, v: i64) -> Vec<Instruction> {
        let mut a = CodeAssembler::new(64).unwrap();
        f(&mut a, v).unwrap();
        let bytes = a.assemble(0x40).unwrap();
        Decoder::with_ip(64, &bytes, 0x40, DecoderOptions::NONE)
            .into_iter()
            .collect()
    }

    fn synth(f: Build, values: [i64; 3]) -> Result<Recipe, SymexError> {
        let blocks = values.map(|v| block(f, v));
        synthesize(&SeedContext {
            versions: [0, 1, 2].map(|k| SeedVersion {
                value: values[k],
                block: &blocks[k],
                seed: 0,
            }),
        })
    }

    #[test]
    fn rejects_bad_inputs() {
        let f: Build = |a, v| a.mov(eax, v as i32);
        assert!(matches!(
            synth(f, [1, 1, 2]),
            Err(SymexError::BadValues { .. })
        ));
        let b = block(f, 1);
        let ctx = SeedContext {
            versions: [0, 1, 2].map(|k| SeedVersion {
                value: k as i64,
                block: &b,
                seed: 5,
            }),
        };
        assert!(matches!(
            synthesize(&ctx),
            Err(SymexError::BadSeedIndex { index: 5, .. })
        ));
        // Same constant everywhere: not a seed.
        assert!(matches!(
            synth(|a, _| a.mov(eax, 7), [1, 2, 3]),
            Err(SymexError::NotASeed { .. })
        ));
        // Register allocation changed with V.
        let e = synth(
            |a, v| {
                if v == 2 {
                    a.mov(ecx, 2)
                } else {
                    a.mov(eax, v as i32)
                }
            },
            [1, 2, 3],
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                SymexError::VersionMismatch {
                    version: 2,
                    what: "different registers",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn mixed_add_sub_needs_dead_flags() {
        let live: Build = |a, v| {
            if v == 128 {
                a.sub(eax, -128)
            } else {
                a.add(eax, v as i32)
            }
        };
        let e = synth(live, [32, 64, 128]).unwrap_err();
        assert!(e.to_string().contains("CF/AF"), "{e}");
        let dead: Build = |a, v| {
            if v == 128 {
                a.sub(eax, -128)?
            } else {
                a.add(eax, v as i32)?
            }
            a.ret()
        };
        let r = synth(dead, [32, 64, 128]).unwrap();
        assert!(matches!(
            r.update,
            Update::Combine {
                op: CombineOp::Add,
                ..
            }
        ));
    }

    #[test]
    fn compare_domain_follows_the_consumers() {
        let unsigned: Build = |a, v| {
            a.cmp(eax, v as i32)?;
            a.seta(cl)
        };
        let r = synth(unsigned, [1, 2, 3]).unwrap();
        assert_eq!(r.range.max, 0xffff_ffff);
        assert_eq!(r.consumers, Condition::A.reads());
        let signed: Build = |a, v| {
            a.cmp(eax, v as i32)?;
            a.setg(cl)
        };
        let r = synth(signed, [1, 2, 3]).unwrap();
        assert_eq!((r.range.min, r.range.max), (-(1 << 31), (1 << 31) - 1));
        assert_eq!(
            r.range.max_reason,
            BoundReason::IvOverflow {
                width: Width::W32,
                domain: IvDomain::Signed
            }
        );
    }

    #[test]
    fn shift_ranges_depend_on_flag_liveness() {
        let live: Build = |a, v| a.shl(eax, v as i32);
        let r = synth(live, [1, 2, 3]).unwrap();
        assert_eq!((r.range.min, r.range.max), (1, 31));
        assert_eq!(r.range.min_reason, BoundReason::ZeroShiftKeepsFlags);
        let dead: Build = |a, v| {
            a.shl(rax, v as i32)?;
            a.ret()
        };
        let r = synth(dead, [1, 2, 3]).unwrap();
        assert_eq!((r.range.min, r.range.max), (0, 63));
        assert_eq!(
            r.range.max_reason,
            BoundReason::ShiftCount { width: Width::W64 }
        );
        assert_eq!(
            r.save,
            Some(Place::Reg {
                reg: RegOperand::full(Gpr::Rax)
            })
        );
    }

    #[test]
    fn log2_relations_restrict_to_powers_of_two() {
        let f: Build = |a, v| {
            a.shr(edi, v.trailing_zeros() as i32)?;
            a.ret()
        };
        let r = synth(f, [16, 32, 64]).unwrap();
        assert_eq!(r.relation, Relation::Log2 { a: 1, b: 0 });
        assert!(r.range.contains(1 << 31));
        assert!(matches!(
            r.range.check(48),
            Err(OutOfRange {
                reason: BoundReason::NotPowerOfTwo,
                ..
            })
        ));
        assert!(r.range.check(1 << 32).is_err());
    }

    #[test]
    fn masks_built_with_powers_of_two_take_only_powers_of_two() {
        let not_power_of_two = |r: &Recipe, v: i64| {
            matches!(
                r.range.check(v),
                Err(OutOfRange {
                    reason: BoundReason::NotPowerOfTwo,
                    ..
                })
            )
        };
        // `x % V` as `and $V-1`, COMPACT_CLUSTER_MAX's `pfn % V` as `test $V-1`, and
        // `round_down(x, V)` as `and $-V`.
        let modulo: Build = |a, v| {
            a.and(eax, (v - 1) as i32)?;
            a.ret()
        };
        let aligned: Build = |a, v| {
            a.test(edi, (512 * v - 1) as i32)?;
            a.sete(al)?;
            a.ret()
        };
        let round_down: Build = |a, v| {
            a.and(rdi, -v as i32)?;
            a.mov(rax, rdi)?;
            a.ret()
        };
        for (f, relation) in [
            (modulo, Relation::Affine { a: 1, b: -1 }),
            (aligned, Relation::Affine { a: 512, b: -1 }),
            (round_down, Relation::Affine { a: -1, b: 0 }),
        ] {
            let r = synth(f, [32, 64, 16]).unwrap();
            assert_eq!(r.relation, relation);
            assert!(r.range.check(128).is_ok(), "{relation:?}");
            assert!(not_power_of_two(&r, 48), "{relation:?}");
        }
        // Built with values that are not all powers of two, the mask is what the source says.
        let r = synth(modulo, [32, 48, 16]).unwrap();
        assert!(r.range.check(48).is_ok() && r.range.check(40).is_ok());
        // `sub $V-1` is no mask.
        let sub: Build = |a, v| {
            a.sub(eax, (v - 1) as i32)?;
            a.ret()
        };
        assert!(synth(sub, [32, 64, 16]).unwrap().range.check(48).is_ok());
    }

    #[test]
    fn derive_relation_matches_synthesis() {
        let f: Build = |a, v| a.lea(rax, qword_ptr(rdi + rsi * 8 + (v * 64 - 1) as i32));
        let blocks = [1, 2, 5].map(|v| block(f, v));
        let versions = [0, 1, 2].map(|k| SeedVersion {
            value: [1, 2, 5][k],
            block: &blocks[k],
            seed: 0,
        });
        assert_eq!(
            derive_relation(&versions).unwrap(),
            Relation::Affine { a: 64, b: -1 }
        );
        let r = synthesize(&SeedContext { versions }).unwrap();
        assert_eq!(
            r.update,
            Update::Combine {
                op: CombineOp::Lea,
                dest: Place::Reg {
                    reg: RegOperand::full(Gpr::Rax)
                },
                input: Input::Address {
                    base: Some(Gpr::Rdi),
                    index: Some(Gpr::Rsi),
                    scale: 8
                },
                flags: FlagSet::EMPTY,
            }
        );
    }

    /// `short v = V; p[i] = v`: gcc loads V sign-extended into a 32-bit register and stores
    /// its low 16 bits.
    fn sext16(v: i64) -> i32 {
        i32::from(v as u16 as i16)
    }

    #[test]
    fn a_register_read_only_through_its_low_16_bits_is_narrowed() {
        let f: Build = |a, v| {
            a.mov(ecx, sext16(v))?;
            a.mov(word_ptr(rdx + rax * 2), cx)?;
            a.ret()
        };
        let r = synth(f, [0xbeef, 0xeeaa, 0x5f77]).unwrap();
        assert_eq!(r.relation, Relation::Affine { a: 1, b: 0 });
        assert_eq!(
            r.update,
            Update::Load {
                dest: Place::Reg {
                    reg: RegOperand::new(Gpr::Rcx, Width::W16)
                }
            }
        );
        assert_eq!(r.iv_width, Width::W16);
        assert_eq!((r.range.min, r.range.max), (0, 0xffff));
        assert_eq!(
            r.range.max_reason,
            BoundReason::IvOverflow {
                width: Width::W16,
                domain: IvDomain::Unsigned
            }
        );
        // The same values, but the sign-extended 32-bit value is read too: no relation.
        let wide: Build = |a, v| {
            a.mov(ecx, sext16(v))?;
            a.mov(word_ptr(rdx + rax * 2), cx)?;
            a.add(eax, ecx)?;
            a.ret()
        };
        let e = synth(wide, [0xbeef, 0xeeaa, 0x5f77]).unwrap_err();
        assert!(matches!(e, SymexError::NoRelation { .. }), "{e}");
        // A relation that fits the whole register is kept whole.
        let whole: Build = |a, v| {
            a.mov(ecx, v as i32)?;
            a.mov(word_ptr(rdx), cx)?;
            a.ret()
        };
        let r = synth(whole, [1, 2, 3]).unwrap();
        assert_eq!(r.iv_width, Width::W32);
    }

    #[test]
    fn values_the_operand_truncates_are_named() {
        // `movb $V` with V2 = 334: gcc stores its low byte.
        let f: Build = |a, v| a.mov(byte_ptr(rax + 0x10), v as u8 as i32);
        let e = synth(f, [0xa7, 334, 83]).unwrap_err();
        assert!(
            matches!(&e, SymexError::TruncatedValues { width: Width::W8, truncated, .. } if truncated == &[334]),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("V = [334] do not fit the 8 bits the constant occupies"),
            "{e}"
        );
        // Values the byte holds: IV = V, unsigned, 0..=255.
        let r = synth(f, [0xa7, 250, 83]).unwrap();
        assert_eq!(r.relation, Relation::Affine { a: 1, b: 0 });
        assert_eq!((r.range.min, r.range.max), (0, 0xff));
        // Values that fit and still have no relation are not blamed.
        let g: Build = |a, v| a.mov(byte_ptr(rax), (v * v) as i32);
        assert!(matches!(
            synth(g, [1, 2, 3]),
            Err(SymexError::NoRelation { .. })
        ));
    }

    #[test]
    fn modular_inverse() {
        for a in [1u64, 3, 5, 0xcccc_cccd, u64::MAX] {
            for w in [Width::W8, Width::W16, Width::W32, Width::W64] {
                assert_eq!(
                    a.wrapping_mul(inverse_mod_pow2(a, w)) & w.mask(),
                    1,
                    "{a} at {w}"
                );
            }
        }
    }
}
