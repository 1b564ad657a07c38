//! Errors of symbolic execution, relation fitting and synthesis.

use iced_x86::{Formatter, GasFormatter, Instruction};

use super::bv::Width;
use super::expr::EvalError;
use super::flags::FlagSet;
use super::range::{BoundReason, OutOfRange};

/// The AT&T text of an instruction (iced's GAS formatter), as error messages show it.
pub fn att(insn: &Instruction) -> String {
    let mut out = String::new();
    GasFormatter::new().format(insn, &mut out);
    out
}

/// Why a seed could not be turned into a relation or an update recipe.
///
/// Every variant names the instruction (AT&T text and offset) or the values at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SymexError {
    /// The instruction is outside the modelled subset of x86-64.
    #[error("`{text}` at {ip:#x} is not modelled by the symbolic executor ({reason})")]
    UnknownInstruction {
        /// Offset of the instruction.
        ip: u64,
        /// AT&T text.
        text: String,
        /// What is missing.
        reason: &'static str,
    },
    /// The seed is a known instruction, but no update recipe exists for it.
    #[error("cannot synthesize an update for seed `{text}` at {ip:#x}: {reason}")]
    UnsupportedSeed {
        /// Offset of the seed.
        ip: u64,
        /// AT&T text.
        text: String,
        /// Why.
        reason: &'static str,
    },
    /// The seed differs between versions in more than one constant.
    #[error("seed `{first}` (V1) and `{other}` (V{version}) differ beyond one constant: {what}")]
    VersionMismatch {
        /// AT&T text of the V1 seed.
        first: String,
        /// AT&T text of the other version's seed.
        other: String,
        /// 2 or 3.
        version: usize,
        /// What differs.
        what: &'static str,
    },
    /// The constant does not change between the versions: not a seed.
    #[error("seed `{text}` at {ip:#x} has the same constant in every version")]
    NotASeed {
        /// Offset of the seed.
        ip: u64,
        /// AT&T text.
        text: String,
    },
    /// The three source values are not three distinct integers.
    #[error("the source values {values:?} must be three distinct integers")]
    BadValues {
        /// The values given.
        values: [i64; 3],
    },
    /// A seed index is outside its block.
    #[error("seed index {index} is outside the V{version} block of {len} instructions")]
    BadSeedIndex {
        /// 1, 2 or 3.
        version: usize,
        /// The index.
        index: usize,
        /// Block length.
        len: usize,
    },
    /// No supported form of f fits the three points exactly.
    #[error(
        "no relation IV = f(V) fits {points} exactly for `{text}` (tried a*V+b, k*2^V+b, a*log2(V)+b, magic division)"
    )]
    NoRelation {
        /// AT&T text of the V1 seed.
        text: String,
        /// The points, rendered `V -> IV`.
        points: String,
    },
    /// No relation fits, and some of the source values do not fit the operand the constant is
    /// encoded in: the compiler truncated them, so values closer to V1 may well fit.
    #[error(
        "no relation IV = f(V) fits {points} exactly for `{text}`: V = {truncated:?} do not fit the {bits} bits the constant occupies, which truncate them",
        bits = width.bits()
    )]
    TruncatedValues {
        /// AT&T text of the V1 seed.
        text: String,
        /// The points, rendered `V -> IV`.
        points: String,
        /// The width of the constant as its consumers read it (the operand's, or the low
        /// bits of a register that are read).
        width: Width,
        /// The source values outside both readings of that width.
        truncated: Vec<i64>,
    },
    /// A consumer reads a flag the update cannot reproduce.
    #[error(
        "`{consumer}` at {ip:#x} reads {reads} after seed `{seed}`, but the update can only reproduce {covered}"
    )]
    UncoveredFlags {
        /// AT&T text of the seed.
        seed: String,
        /// AT&T text of the consumer.
        consumer: String,
        /// Offset of the consumer.
        ip: u64,
        /// Flags the consumer reads.
        reads: FlagSet,
        /// Flags the update defines.
        covered: FlagSet,
    },
    /// A value of V' outside the recipe's valid range.
    #[error("V' = {value} is outside the valid range [{min}, {max}]: {reason}")]
    OutOfRange {
        /// The rejected value.
        value: i64,
        /// Smallest valid value.
        min: i64,
        /// Largest valid value.
        max: i64,
        /// The bound that rejects it.
        reason: BoundReason,
    },
    /// A recipe lacks a field its update needs (a hand-edited or truncated plan).
    #[error("malformed recipe: {what}")]
    MalformedRecipe {
        /// What is missing.
        what: &'static str,
    },
    /// Evaluating an expression failed (unmapped memory, missing saved value...).
    #[error("evaluation failed: {0}")]
    Eval(#[from] EvalError),
    /// The recipe was checked against the other versions' own instructions and disagreed: a
    /// bug in the analysis, reported instead of a wrong plan.
    #[error("self-check of the update for `{seed}` against V{version} `{other}` failed: {detail}")]
    SelfCheck {
        /// AT&T text of the V1 seed.
        seed: String,
        /// 2 or 3.
        version: usize,
        /// AT&T text of that version's seed.
        other: String,
        /// What differed.
        detail: String,
    },
}

impl From<OutOfRange> for SymexError {
    fn from(e: OutOfRange) -> SymexError {
        SymexError::OutOfRange {
            value: e.value,
            min: e.min,
            max: e.max,
            reason: e.reason,
        }
    }
}
